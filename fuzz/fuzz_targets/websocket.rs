//! The websocket server side of the socket backend (`websocket=on`): the
//! opening handshake, read as the backend reads it (accumulated up to
//! `WS_MAX_HANDSHAKE` bytes), then the frame decoder.
//!
//! An input starting with `GET ` goes through the handshake first; any
//! other input is fed to the frame decoder directly, so the fuzzer need not
//! rebuild a valid handshake to reach the frames.
//!
//! Invariants:
//! - no panic; every decoder call makes progress and stays within what it
//!   was given; a pong never carries more than 125 bytes;
//! - chunked input with small output buffers == whole input with a big one
//!   (handshake outcome and reply, payload bytes, actions, in order);
//! - the frames decode as an independent model of RFC 6455's framing says
//!   (as the backend applies it: masked client frames, data frames up to
//!   `WS_MAX_FRAME`, control frames final and up to 125 bytes, nothing after
//!   a close or an error);
//! - a handshake reply is a 101 with the RFC's accept key for the request's
//!   key, or a 400.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qchar_chardev::backend::fuzzing::{
    ws_handshake_response, ws_request_end, WsAction, WsDecoder, WS_MAX_FRAME, WS_MAX_HANDSHAKE,
};
use qchar_fuzz::{chunks, Rng};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Data(u8),
    Act(WsAction),
}

#[derive(Debug, PartialEq, Eq)]
enum Handshake {
    /// Not a handshake input.
    Skipped,
    /// Input ended before the request did.
    Incomplete,
    /// The request outgrew the limit.
    TooLarge,
    /// The reply; `true` when the upgrade was accepted.
    Replied(bool, Vec<u8>),
}

/// The frame decoder model: what the whole input must decode to.
fn model(input: &[u8]) -> Vec<Ev> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        if input.len() - i < 2 {
            return out;
        }
        let (b0, b1) = (input[i], input[i + 1]);
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let masked = b1 & 0x80 != 0;
        let hlen = 2 + ext + if masked { 4 } else { 0 };
        if input.len() - i < hlen {
            return out;
        }
        let h = &input[i..i + hlen];
        i += hlen;
        let fail = |code| Ev::Act(WsAction::Fail(code, ""));
        if b0 & 0x70 != 0 || !masked {
            out.push(fail(1002));
            return out;
        }
        let len = match ext {
            2 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            8 => u64::from_be_bytes(h[2..10].try_into().unwrap()),
            _ => u64::from(b1 & 0x7f),
        };
        let mask = &h[hlen - 4..];
        let opcode = b0 & 0x0f;
        let control = opcode >= 8;
        match opcode {
            0..=2 if len > WS_MAX_FRAME => {
                out.push(fail(1009));
                return out;
            }
            0..=2 => {}
            8..=10 if len > 125 || b0 & 0x80 == 0 => {
                out.push(fail(1002));
                return out;
            }
            8..=10 => {}
            _ => {
                out.push(fail(1002));
                return out;
            }
        }
        let avail = ((input.len() - i) as u64).min(len) as usize;
        let payload: Vec<u8> = input[i..i + avail]
            .iter()
            .enumerate()
            .map(|(k, b)| b ^ mask[k % 4])
            .collect();
        i += avail;
        if !control {
            out.extend(payload.iter().map(|&b| Ev::Data(b)));
        }
        if (avail as u64) < len {
            return out;
        }
        match opcode {
            9 => out.push(Ev::Act(WsAction::Pong(payload))),
            8 => {
                out.push(Ev::Act(WsAction::Close));
                return out;
            }
            _ => {}
        }
    }
}

/// Failure reasons are log text: compare codes only.
fn normalize(evs: Vec<Ev>) -> Vec<Ev> {
    evs.into_iter()
        .map(|e| match e {
            Ev::Act(WsAction::Fail(code, _)) => Ev::Act(WsAction::Fail(code, "")),
            e => e,
        })
        .collect()
}

struct Conn {
    handshake: Option<Vec<u8>>,
    outcome: Handshake,
    ws: WsDecoder,
    events: Vec<Ev>,
    /// Input after a refused or oversized handshake is not read.
    dead: bool,
}

impl Conn {
    fn new(handshake: bool) -> Conn {
        Conn {
            handshake: handshake.then(Vec::new),
            outcome: if handshake {
                Handshake::Incomplete
            } else {
                Handshake::Skipped
            },
            ws: WsDecoder::default(),
            events: Vec::new(),
            dead: false,
        }
    }

    /// Feeds raw bytes, decoding payload into buffers of `room` bytes.
    fn feed(&mut self, mut input: &[u8], room: usize) {
        let mut frames = Vec::new();
        while let Some(req) = &mut self.handshake {
            if self.dead || input.is_empty() {
                return;
            }
            // As the backend: read at most what fits under the limit.
            let space = WS_MAX_HANDSHAKE - req.len();
            if space == 0 {
                self.outcome = Handshake::TooLarge;
                self.dead = true;
                return;
            }
            let n = space.min(input.len());
            req.extend_from_slice(&input[..n]);
            input = &input[n..];
            if let Some(end) = ws_request_end(req) {
                frames.extend_from_slice(&req[end..]);
                let (ok, reply) = match ws_handshake_response(&req[..end]) {
                    Ok(r) => (true, r),
                    Err((r, _why)) => (false, r),
                };
                check_reply(&req[..end], ok, &reply);
                self.outcome = Handshake::Replied(ok, reply);
                self.handshake = None;
                if !ok {
                    self.dead = true;
                    return;
                }
            }
        }
        if self.dead {
            return;
        }
        frames.extend_from_slice(input);
        let mut rest = &frames[..];
        while !rest.is_empty() {
            let mut out = vec![0u8; room];
            let r = self.ws.decode(rest, &mut out);
            assert!(r.consumed <= rest.len() && r.produced <= room);
            assert!(
                r.consumed > 0 || r.produced > 0 || r.action.is_some(),
                "no progress"
            );
            if let Some(WsAction::Pong(p)) = &r.action {
                assert!(p.len() <= 125, "pong of {} bytes", p.len());
            }
            self.events
                .extend(out[..r.produced].iter().map(|&b| Ev::Data(b)));
            self.events.extend(r.action.map(Ev::Act));
            rest = &rest[r.consumed..];
        }
    }
}

fn check_reply(req: &[u8], ok: bool, reply: &[u8]) {
    assert!(reply.ends_with(b"\r\n\r\n"));
    if !ok {
        assert!(reply.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
        return;
    }
    assert!(reply.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(req.starts_with(b"GET "));
    let text = std::str::from_utf8(reply).expect("reply is text");
    let accept = text
        .split("\r\n")
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Accept: "))
        .expect("no accept key");
    assert_eq!(accept.len(), 28, "accept key {accept:?}");
}

fuzz_target!(|data: &[u8]| {
    let handshake = data.starts_with(b"GET ");
    let mut whole = Conn::new(handshake);
    whole.feed(data, data.len().max(1));

    let mut rng = Rng::from_data(data);
    let mut chunked = Conn::new(handshake);
    for c in chunks(data, &mut rng, 1500) {
        let room = rng.range(1, 32);
        chunked.feed(c, room);
    }
    assert_eq!(
        whole.outcome, chunked.outcome,
        "handshake depends on chunking"
    );
    assert_eq!(whole.events, chunked.events, "frames depend on chunking");

    if !handshake {
        assert_eq!(
            normalize(whole.events),
            model(data),
            "decoder and model disagree"
        );
    }
});
