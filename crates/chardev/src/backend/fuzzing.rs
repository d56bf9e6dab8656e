//! Entry points for the fuzz targets (the `fuzz/` crate) into the socket
//! backend's pure protocol code, which is otherwise crate-private. Not part
//! of the API: thin wrappers, no behaviour of their own.

use super::{telnet, websocket};

/// Result of [`TelnetDecoder::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelnetDecoded {
    /// Input bytes used.
    pub consumed: usize,
    /// Data bytes written to the output.
    pub produced: usize,
    /// An IAC BREAK ended the call, after the produced bytes.
    pub brk: bool,
}

/// The telnet input decoder the socket backend uses.
#[derive(Debug, Default)]
pub struct TelnetDecoder(telnet::TelnetDecoder);

impl TelnetDecoder {
    /// Decodes `input` into `out` (see the socket backend).
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> TelnetDecoded {
        let r = self.0.decode(input, out);
        TelnetDecoded {
            consumed: r.consumed,
            produced: r.produced,
            brk: r.brk,
        }
    }
}

/// Appends `data` telnet-escaped (0xff doubled) to `out`.
pub fn telnet_encode(data: &[u8], out: &mut Vec<u8>) {
    telnet::encode(data, out)
}

/// Largest websocket handshake request the socket backend reads.
pub const WS_MAX_HANDSHAKE: usize = websocket::MAX_HANDSHAKE;
/// Largest websocket frame payload accepted from a client.
pub const WS_MAX_FRAME: u64 = websocket::MAX_FRAME;

/// Where a websocket handshake request ends, if it is complete.
pub fn ws_request_end(buf: &[u8]) -> Option<usize> {
    websocket::request_end(buf)
}

/// The reply to a complete handshake request in QEMU's dialect
/// (`x-websocket-text=off`: subprotocol `binary` required): `Ok` (101) or
/// `Err` (400 and the reason).
pub fn ws_handshake_response(req: &[u8]) -> Result<Vec<u8>, (Vec<u8>, String)> {
    websocket::handshake_response(req, websocket::WsDialect::QemuBinary)
}

/// What the websocket decoder asks the connection to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsAction {
    /// Answer a ping with this payload.
    Pong(Vec<u8>),
    /// The client closed.
    Close,
    /// Protocol error: close with this status.
    Fail(u16, &'static str),
    /// Hang up without a close frame (QEMU's dialect, on a text frame).
    Drop(&'static str),
}

/// Result of [`WsDecoder::decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsDecoded {
    /// Input bytes used.
    pub consumed: usize,
    /// Payload bytes written to the output.
    pub produced: usize,
    /// Ends the call, after the produced bytes.
    pub action: Option<WsAction>,
}

/// The websocket frame decoder the socket backend uses (qchar's default
/// dialect: text frames are data).
#[derive(Debug, Default)]
pub struct WsDecoder(websocket::WsDecoder);

impl WsDecoder {
    /// Decodes `input`, writing data payload to `out` (see the socket
    /// backend).
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> WsDecoded {
        let r = self.0.decode(input, out);
        WsDecoded {
            consumed: r.consumed,
            produced: r.produced,
            action: r.action.map(|a| match a {
                websocket::WsAction::Pong(p) => WsAction::Pong(p),
                websocket::WsAction::Close => WsAction::Close,
                websocket::WsAction::Fail(code, why) => WsAction::Fail(code, why),
                websocket::WsAction::Drop(why) => WsAction::Drop(why),
            }),
        }
    }
}
