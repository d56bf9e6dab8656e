// Hand-written part: the handshake and frame codec, because the backend needs a streaming decoder that never buffers a frame's payload, over its own non-blocking socket, with QEMU's handshake rules.
//! The server side of RFC 6455 as a `websocket=on` chardev speaks it: the
//! opening handshake, a streaming frame decoder and a frame encoder. Pure
//! code, no I/O.
//!
//! Two dialects ([`WsDialect`]). qchar's default takes text frames as input
//! bytes like binary ones, and needs no subprotocol (a client that offers
//! some must offer `binary`), so that a stock xterm.js attach addon (which
//! sends typed keys as text), websockify-style and QEMU-style clients all
//! work. QEMU's (`x-websocket-text=off`) requires the subprotocol `binary`
//! and drops a client that sends a text frame, without a close frame.
//!
//! The decoder never holds a frame's payload: it unmasks payload bytes as
//! they come, so memory stays bounded whatever a peer sends. Frames longer
//! than [`MAX_FRAME`] are refused all the same (the connection is closed
//! with status 1009), so a peer cannot announce a frame that never ends.

/// Largest frame payload accepted from a client.
pub(crate) const MAX_FRAME: u64 = 1024 * 1024;
/// Largest handshake request accepted (QEMU's limit too).
pub(crate) const MAX_HANDSHAKE: usize = 4096;
/// Largest payload of an outgoing data frame.
pub(crate) const MAX_OUT_FRAME: usize = 64 * 1024;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const OP_CONT: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

/// Which websocket a chardev speaks: see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum WsDialect {
    /// Text frames are input too; no subprotocol needed.
    #[default]
    TextToo,
    /// QEMU's: subprotocol `binary` required, text frames drop the client.
    QemuBinary,
}

/// Close status: protocol error.
pub(crate) const CLOSE_PROTOCOL: u16 = 1002;
/// Close status: message too big.
pub(crate) const CLOSE_TOO_BIG: u16 = 1009;
/// Close status: normal closure.
pub(crate) const CLOSE_NORMAL: u16 = 1000;

// ----- handshake -------------------------------------------------------

/// Where the request ends (just past the blank line), if it is complete.
pub(crate) fn request_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn header<'a>(lines: &[&'a str], name: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks a complete handshake request and returns the response to send:
/// `Ok` with a 101 reply when the upgrade is accepted, `Err` with a 400 reply
/// (and the reason, for the log) when not.
pub(crate) fn handshake_response(
    req: &[u8],
    dialect: WsDialect,
) -> Result<Vec<u8>, (Vec<u8>, String)> {
    let refuse = |why: &str| {
        let body = b"HTTP/1.1 400 Bad Request\r\nServer: qchar\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec();
        Err((body, format!("websocket handshake refused: {why}")))
    };
    let Ok(text) = std::str::from_utf8(req) else {
        return refuse("request is not text");
    };
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let headers: Vec<&str> = lines.take_while(|l| !l.is_empty()).collect();
    let mut parts = first.split(' ');
    let (method, _path, version) = (parts.next(), parts.next(), parts.next());
    if method != Some("GET") {
        return refuse("unsupported method");
    }
    if version != Some("HTTP/1.1") {
        return refuse("unsupported HTTP version");
    }
    if header(&headers, "Host").is_none() {
        return refuse("missing Host header");
    }
    if !header(&headers, "Upgrade").is_some_and(|v| has_token(v, "websocket")) {
        return refuse("missing websocket upgrade header");
    }
    if !header(&headers, "Connection").is_some_and(|v| has_token(v, "upgrade")) {
        return refuse("missing websocket connection header");
    }
    if header(&headers, "Sec-WebSocket-Version") != Some("13") {
        return refuse("unsupported websocket version");
    }
    let protocols = header(&headers, "Sec-WebSocket-Protocol");
    let binary = protocols.is_some_and(|v| has_token(v, "binary"));
    let needed = match dialect {
        WsDialect::QemuBinary => true,
        // None at all is fine; offering only others is not.
        WsDialect::TextToo => protocols.is_some(),
    };
    if needed && !binary {
        return refuse("missing websocket protocol 'binary'");
    }
    let Some(key) = header(&headers, "Sec-WebSocket-Key") else {
        return refuse("missing websocket key");
    };
    if key.len() != 24 {
        return refuse("invalid websocket key");
    }
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nServer: qchar\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{}\r\n",
        accept_key(key),
        if binary {
            "Sec-WebSocket-Protocol: binary\r\n"
        } else {
            ""
        }
    );
    Ok(resp.into_bytes())
}

/// `Sec-WebSocket-Accept` for a client key: base64 of the SHA-1 of the key
/// followed by the RFC's GUID.
pub(crate) fn accept_key(key: &str) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let digest = Sha1::new()
        .chain_update(key.as_bytes())
        .chain_update(GUID.as_bytes())
        .finalize();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

// ----- frames ----------------------------------------------------------

/// Appends one unmasked server frame.
pub(crate) fn encode_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Appends binary frames carrying `data`.
pub(crate) fn encode_binary(data: &[u8], out: &mut Vec<u8>) {
    for c in data.chunks(MAX_OUT_FRAME) {
        encode_frame(OP_BINARY, c, out);
    }
}

/// Appends a close frame with `status`.
pub(crate) fn encode_close(status: u16, out: &mut Vec<u8>) {
    encode_frame(OP_CLOSE, &status.to_be_bytes(), out);
}

/// Appends a pong answering a ping with `payload`.
pub(crate) fn encode_pong(payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(OP_PONG, payload, out);
}

/// Something the decoder needs the connection to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WsAction {
    /// Answer a ping with this payload.
    Pong(Vec<u8>),
    /// The client closed; answer with a close frame and hang up.
    Close,
    /// The client broke the protocol (or sent too big a frame): send a
    /// close frame with this status and hang up.
    Fail(u16, &'static str),
    /// Hang up without a close frame, as QEMU does on a frame it does not
    /// take (a text frame in [`WsDialect::QemuBinary`]).
    Drop(&'static str),
}

/// Result of one [`WsDecoder::decode`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WsDecoded {
    /// Input bytes used.
    pub(crate) consumed: usize,
    /// Payload bytes written to the output.
    pub(crate) produced: usize,
    /// Ends the call, after the produced bytes.
    pub(crate) action: Option<WsAction>,
}

#[derive(Debug, Default)]
enum Stage {
    /// Reading a frame header (`have` bytes of `hdr` so far).
    #[default]
    Header,
    /// Reading payload.
    Payload,
    /// After a close or an error: everything else is ignored.
    Done,
}

/// The input side, streaming. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct WsDecoder {
    dialect: WsDialect,
    stage: Stage,
    hdr: [u8; 14],
    have: usize,
    opcode: u8,
    remaining: u64,
    mask: [u8; 4],
    mask_pos: usize,
    /// Payload of a control frame (at most 125 bytes, by the RFC).
    control: Vec<u8>,
}

/// Header length implied by the bytes read so far, if known.
fn header_len(hdr: &[u8]) -> Option<usize> {
    if hdr.len() < 2 {
        return None;
    }
    let ext = match hdr[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if hdr[1] & 0x80 != 0 { 4 } else { 0 };
    Some(2 + ext + mask)
}

impl WsDecoder {
    /// A decoder for `dialect`.
    pub(crate) fn new(dialect: WsDialect) -> WsDecoder {
        WsDecoder {
            dialect,
            ..WsDecoder::default()
        }
    }

    /// Decodes `input`, writing data payload to `out`, until the input is
    /// used, `out` is full, or an action is needed.
    pub(crate) fn decode(&mut self, input: &[u8], out: &mut [u8]) -> WsDecoded {
        let mut i = 0;
        let mut o = 0;
        let done = |i, o, a| WsDecoded {
            consumed: i,
            produced: o,
            action: a,
        };
        loop {
            match self.stage {
                Stage::Done => return done(input.len(), o, None),
                Stage::Header => {
                    let need = header_len(&self.hdr[..self.have]).unwrap_or(2);
                    if self.have < need {
                        if i == input.len() {
                            return done(i, o, None);
                        }
                        self.hdr[self.have] = input[i];
                        self.have += 1;
                        i += 1;
                        continue;
                    }
                    if let Some(a) = self.start_frame() {
                        self.stage = Stage::Done;
                        return done(i, o, Some(a));
                    }
                }
                Stage::Payload => {
                    if self.remaining == 0 {
                        self.stage = Stage::Header;
                        self.have = 0;
                        if let Some(a) = self.end_frame() {
                            return done(i, o, Some(a));
                        }
                        continue;
                    }
                    if i == input.len() {
                        return done(i, o, None);
                    }
                    let avail =
                        (input.len() - i).min(self.remaining.min(usize::MAX as u64) as usize);
                    if self.opcode >= OP_CLOSE {
                        for &b in &input[i..i + avail] {
                            let v = b ^ self.mask[self.mask_pos & 3];
                            self.mask_pos += 1;
                            self.control.push(v);
                        }
                        i += avail;
                        self.remaining -= avail as u64;
                    } else {
                        let n = avail.min(out.len() - o);
                        if n == 0 {
                            return done(i, o, None);
                        }
                        for (d, &b) in out[o..o + n].iter_mut().zip(&input[i..i + n]) {
                            *d = b ^ self.mask[self.mask_pos & 3];
                            self.mask_pos += 1;
                        }
                        i += n;
                        o += n;
                        self.remaining -= n as u64;
                    }
                }
            }
        }
    }

    /// A header is complete: check it and set up the payload.
    fn start_frame(&mut self) -> Option<WsAction> {
        let h = &self.hdr[..self.have];
        let fin = h[0] & 0x80 != 0;
        if h[0] & 0x70 != 0 {
            return Some(WsAction::Fail(CLOSE_PROTOCOL, "reserved bits set"));
        }
        let opcode = h[0] & 0x0f;
        if h[1] & 0x80 == 0 {
            return Some(WsAction::Fail(CLOSE_PROTOCOL, "client frame is not masked"));
        }
        let (len, off) = match h[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        self.mask.copy_from_slice(&h[off..off + 4]);
        self.mask_pos = 0;
        if opcode == OP_TEXT && self.dialect == WsDialect::QemuBinary {
            // QEMU's words for it.
            return Some(WsAction::Drop(
                "unsupported opcode: 0x01; only binary, ping, and pong websocket frames are supported",
            ));
        }
        match opcode {
            OP_CONT | OP_TEXT | OP_BINARY => {
                if len > MAX_FRAME {
                    return Some(WsAction::Fail(CLOSE_TOO_BIG, "frame too large"));
                }
            }
            OP_CLOSE | OP_PING | OP_PONG => {
                if len > 125 || !fin {
                    return Some(WsAction::Fail(CLOSE_PROTOCOL, "bad control frame"));
                }
                self.control.clear();
            }
            _ => return Some(WsAction::Fail(CLOSE_PROTOCOL, "unknown opcode")),
        }
        self.opcode = opcode;
        self.remaining = len;
        self.stage = Stage::Payload;
        None
    }

    /// A frame's payload is complete.
    fn end_frame(&mut self) -> Option<WsAction> {
        match self.opcode {
            OP_PING => Some(WsAction::Pong(std::mem::take(&mut self.control))),
            OP_CLOSE => {
                self.stage = Stage::Done;
                Some(WsAction::Close)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(opcode: u8, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut v = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let n = payload.len();
        if n < 126 {
            v.push(0x80 | n as u8);
        } else if n <= 0xffff {
            v.push(0x80 | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            v.push(0x80 | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        v
    }

    fn decode_all(d: &mut WsDecoder, input: &[u8], room: usize) -> (Vec<u8>, Vec<WsAction>) {
        let mut data = Vec::new();
        let mut acts = Vec::new();
        let mut rest = input;
        loop {
            let mut out = vec![0u8; room];
            let r = d.decode(rest, &mut out);
            data.extend_from_slice(&out[..r.produced]);
            rest = &rest[r.consumed..];
            let stop = r.action.is_none() && r.consumed == 0 && r.produced == 0;
            if let Some(a) = r.action {
                acts.push(a);
            }
            if stop || (rest.is_empty() && r.produced == 0) {
                return (data, acts);
            }
        }
    }

    #[test]
    fn accept_key_matches_the_rfc() {
        // RFC 6455, section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn handshake_accepts_a_binary_upgrade_and_refuses_others() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n";
        assert_eq!(request_end(req), Some(req.len()));
        for dialect in [WsDialect::TextToo, WsDialect::QemuBinary] {
            let ok = String::from_utf8(handshake_response(req, dialect).unwrap()).unwrap();
            assert!(ok.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
            assert!(ok.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
            assert!(ok.contains("Sec-WebSocket-Protocol: binary\r\n"));
            assert!(ok.ends_with("\r\n\r\n"));
        }
        let no_proto =
            String::from_utf8_lossy(req).replace("Sec-WebSocket-Protocol: binary\r\n", "");
        // QEMU's dialect needs `binary`...
        let (resp, why) =
            handshake_response(no_proto.as_bytes(), WsDialect::QemuBinary).unwrap_err();
        assert!(resp.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
        assert!(why.contains("binary"));
        // ... qchar's takes a client that asks for no subprotocol, and
        // answers with none.
        let ok = handshake_response(no_proto.as_bytes(), WsDialect::TextToo).unwrap();
        let ok = String::from_utf8(ok).unwrap();
        assert!(ok.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(!ok.contains("Sec-WebSocket-Protocol"));
        assert!(ok.ends_with("\r\n\r\n") && !ok.ends_with("\r\n\r\n\r\n"));
        // Offering only protocols it does not speak is refused by both.
        let base64 = String::from_utf8_lossy(req).replace("Protocol: binary", "Protocol: base64");
        for dialect in [WsDialect::TextToo, WsDialect::QemuBinary] {
            assert!(handshake_response(base64.as_bytes(), dialect).is_err());
            assert!(handshake_response(b"POST / HTTP/1.1\r\n\r\n", dialect).is_err());
            assert!(handshake_response(b"\xff\xfe\r\n\r\n", dialect).is_err());
        }
        assert_eq!(request_end(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn text_frames_are_input_unless_the_dialect_is_qemus() {
        let mut wire = client_frame(OP_BINARY, true, b"ab", [1, 2, 3, 4]);
        wire.extend(client_frame(OP_TEXT, true, b"cd", [5, 6, 7, 8]));
        wire.extend(client_frame(OP_BINARY, true, b"ef", [1, 2, 3, 4]));
        let (data, acts) = decode_all(&mut WsDecoder::new(WsDialect::TextToo), &wire, 64);
        assert_eq!(
            (data.as_slice(), acts.as_slice()),
            (&b"abcdef"[..], &[][..])
        );
        let (data, acts) = decode_all(&mut WsDecoder::new(WsDialect::QemuBinary), &wire, 64);
        assert_eq!(data, b"ab");
        assert_eq!(
            acts,
            vec![WsAction::Drop(
                "unsupported opcode: 0x01; only binary, ping, and pong websocket frames are supported"
            )]
        );
    }

    #[test]
    fn decodes_masked_frames_split_anywhere() {
        let mut wire = client_frame(OP_BINARY, false, b"hello ", [1, 2, 3, 4]);
        wire.extend(client_frame(OP_PING, true, b"p!", [9, 9, 9, 9]));
        wire.extend(client_frame(OP_CONT, true, &[0xffu8; 300], [7, 0, 7, 0]));
        wire.extend(client_frame(OP_TEXT, true, b"world", [0, 0, 0, 1]));
        wire.extend(client_frame(
            OP_CLOSE,
            true,
            &1000u16.to_be_bytes(),
            [5, 6, 7, 8],
        ));
        wire.extend(client_frame(
            OP_BINARY,
            true,
            b"ignored after close",
            [1, 1, 1, 1],
        ));
        let mut expect = b"hello ".to_vec();
        expect.extend([0xffu8; 300]);
        expect.extend(b"world");
        let (data, acts) = decode_all(&mut WsDecoder::default(), &wire, 4096);
        assert_eq!(data, expect);
        assert_eq!(acts, vec![WsAction::Pong(b"p!".to_vec()), WsAction::Close]);
        for cut in 0..wire.len() {
            let mut d = WsDecoder::default();
            let (mut a, mut x) = decode_all(&mut d, &wire[..cut], 7);
            let (b, y) = decode_all(&mut d, &wire[cut..], 7);
            a.extend(b);
            x.extend(y);
            assert_eq!(a, expect, "cut at {cut}");
            assert_eq!(x, vec![WsAction::Pong(b"p!".to_vec()), WsAction::Close]);
        }
    }

    #[test]
    fn oversized_unmasked_and_unknown_frames_fail() {
        let mut big = vec![0x82, 0x80 | 127];
        big.extend_from_slice(&(MAX_FRAME + 1).to_be_bytes());
        big.extend_from_slice(&[0, 0, 0, 0]);
        let (_, acts) = decode_all(&mut WsDecoder::default(), &big, 64);
        assert_eq!(acts, vec![WsAction::Fail(CLOSE_TOO_BIG, "frame too large")]);
        let (_, acts) = decode_all(&mut WsDecoder::default(), &[0x82, 0x01, b'x'], 64);
        assert!(matches!(acts[0], WsAction::Fail(CLOSE_PROTOCOL, _)));
        let (_, acts) = decode_all(
            &mut WsDecoder::default(),
            &client_frame(3, true, b"", [0; 4]),
            64,
        );
        assert!(matches!(acts[0], WsAction::Fail(CLOSE_PROTOCOL, _)));
        let (_, acts) = decode_all(
            &mut WsDecoder::default(),
            &client_frame(OP_PING, true, &[0; 126], [0; 4]),
            64,
        );
        assert!(matches!(acts[0], WsAction::Fail(CLOSE_PROTOCOL, _)));
    }

    #[test]
    fn encoder_writes_unmasked_frames_of_every_length_form() {
        let mut v = Vec::new();
        encode_frame(OP_BINARY, b"ab", &mut v);
        assert_eq!(v, [0x82, 2, b'a', b'b']);
        v.clear();
        encode_frame(OP_BINARY, &[0; 300], &mut v);
        assert_eq!(&v[..4], &[0x82, 126, 1, 44]);
        v.clear();
        encode_binary(&vec![0; MAX_OUT_FRAME + 1], &mut v);
        assert_eq!(&v[..2], &[0x82, 127]);
        assert_eq!(v.len(), 10 + MAX_OUT_FRAME + 2 + 1);
        v.clear();
        encode_close(CLOSE_NORMAL, &mut v);
        assert_eq!(v, [0x88, 2, 0x03, 0xe8]);
    }
}
