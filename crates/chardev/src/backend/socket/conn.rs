//! One connection: its phases (the transport's handshake, the websocket
//! handshake), its framing (telnet, websocket), the bytes it owes its peer,
//! and its retirement. It holds no backend state, so a backend can hold one
//! or several.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::{Context, Poll};

use socket2::SockRef;

use super::address;
use super::transport::{TlsSetup, Transport};
use crate::backend::net;
use crate::backend::telnet::{self, TelnetDecoder};
use crate::backend::websocket::{self, WsAction, WsDecoder, WsDialect};
use crate::backend::Drain;

/// Raw input read at once from a framed (telnet/websocket) connection.
const RX_CAP: usize = 4096;
/// Most protocol bytes (pongs) queued for a peer that does not read.
const TX_CONTROL_CAP: usize = 64 * 1024;

/// Framing of one connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Proto {
    pub(super) telnet: bool,
    pub(super) websocket: bool,
    /// The websocket's dialect (`x-websocket-text`).
    pub(super) dialect: WsDialect,
}

/// How a backend sets up each connection it gets, accepted or connected:
/// framing, socket options and QEMU's name for it. Kept apart from any one
/// connection so that every connection of a backend is made the same way.
#[derive(Clone)]
pub(super) struct ConnSetup {
    /// The chardev, for messages.
    pub(super) id: String,
    /// `tls-creds`: each connection runs a TLS session under its framing.
    pub(super) tls: Option<Arc<TlsSetup>>,
    pub(super) proto: Proto,
    /// Protocol name in filenames: `tcp`, `telnet` or `websocket`.
    pub(super) proto_name: &'static str,
    pub(super) server: bool,
    pub(super) nodelay: bool,
    pub(super) keep_alive: bool,
    pub(super) is_unix: bool,
}

impl ConnSetup {
    /// The TLS setting its connections are made with (`tls-creds`,
    /// `tls-authz` ids): a connection handed to another backend is kept
    /// only if that backend's setting is the same.
    pub(super) fn tls_key(&self) -> Option<(String, Option<String>)> {
        self.tls.as_ref().map(|t| t.key())
    }

    /// A connection on a connected socket (accepted, connected, or one
    /// handed over already connected). `at_open`: it comes with the backend,
    /// so no `Opened` is reported for it (the chardev starts open), unless
    /// it must still shake hands.
    pub(super) fn connection(&self, fd: OwnedFd, at_open: bool) -> io::Result<Conn> {
        let sock = SockRef::from(&fd);
        if !self.is_unix {
            if self.nodelay {
                let _ = sock.set_tcp_nodelay(true);
            }
            if self.keep_alive {
                let _ = sock.set_keepalive(true);
            }
        }
        let name = address::connected_name(&sock, self.proto_name, self.server);
        let peer = match sock.peer_addr().ok().and_then(|a| a.as_socket()) {
            Some(a) => net::host_port(&a),
            None => "on a unix socket".to_string(),
        };
        let transport = match &self.tls {
            None => Transport::plain(fd)?,
            Some(t) => Transport::tls(fd, t.session()?)?,
        };
        let who = format!(
            "chardev '{}': TLS {} {peer}",
            self.id,
            if self.server { "client" } else { "server" }
        );
        let mut c = Conn::new(transport, self.proto, name, who);
        c.tls = self.tls_key();
        if at_open && matches!(c.phase, Phase::Open) {
            c.announced = true;
        }
        Ok(c)
    }
}

enum Phase {
    /// The transport does not carry data yet (its own handshake).
    Transport,
    /// Websocket: reading the request.
    Handshake(Vec<u8>),
    /// Websocket: the request was refused; the reply is in `tx`.
    Refused,
    /// Data flows.
    Open,
}

impl Phase {
    /// The phase once the transport carries data.
    fn first(proto: Proto) -> Phase {
        if proto.websocket {
            Phase::Handshake(Vec::new())
        } else {
            Phase::Open
        }
    }
}

/// One connected peer. Everything about it lives here, so a backend may
/// hold one (today) or several.
pub(super) struct Conn {
    /// The byte stream under the framing.
    transport: Transport,
    proto: Proto,
    phase: Phase,
    /// `Opened` was reported (or the connection came with the backend).
    announced: bool,
    /// Bytes owed to the peer before any new output: telnet options,
    /// handshake reply, pongs, the rest of a partly written frame.
    tx: Vec<u8>,
    tx_pos: usize,
    /// Raw input not decoded yet (framed connections only).
    rx: Vec<u8>,
    rx_pos: usize,
    /// Websocket payload not telnet-decoded yet (both framings).
    mid: Vec<u8>,
    mid_pos: usize,
    telnet: TelnetDecoder,
    ws: WsDecoder,
    /// A break to report after the data that came before it.
    pending_break: bool,
    /// End of input: the peer closed, a read failed, or the protocol ended.
    eof: bool,
    /// Writes fail: output is dropped until the input side sees the end.
    write_broken: bool,
    name: String,
    /// Who the peer is, for messages (`chardev 'ID': TLS client ADDR`).
    who: String,
    /// The TLS setting it was made with ([`ConnSetup::tls_key`]).
    tls: Option<(String, Option<String>)>,
}

/// What a connection reports; the backend passes it on as its own event.
pub(super) enum ConnEvent {
    /// Ready for data (a websocket handshake done), the first time.
    Opened,
    /// `n` bytes of decoded input at the start of the buffer.
    Input(usize),
    /// A telnet break, after the input that came before it.
    Break,
    /// The connection ended: the peer closed, I/O failed, the protocol
    /// ended, or a handshake failed. All its input was reported before.
    Closed,
}

impl Conn {
    fn new(transport: Transport, proto: Proto, name: String, who: String) -> Conn {
        let mut tx = Vec::new();
        if proto.telnet {
            tx.extend_from_slice(&telnet::NEGOTIATION);
        }
        Conn {
            phase: if transport.is_ready() {
                Phase::first(proto)
            } else {
                Phase::Transport
            },
            transport,
            proto,
            announced: false,
            tx,
            tx_pos: 0,
            rx: Vec::new(),
            rx_pos: 0,
            mid: Vec::new(),
            mid_pos: 0,
            telnet: TelnetDecoder::default(),
            ws: WsDecoder::new(proto.dialect),
            pending_break: false,
            eof: false,
            write_broken: false,
            name,
            who,
            tls: None,
        }
    }

    /// Drives only the transport's handshake (a server's pending TLS
    /// client): `Ready(true)` once it carries data, `Ready(false)` when it
    /// failed (the reason is logged).
    pub(super) fn poll_transport(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if !matches!(self.phase, Phase::Transport) {
            return Poll::Ready(true);
        }
        match self.transport.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                self.phase = Phase::first(self.proto);
                Poll::Ready(true)
            }
            Poll::Ready(Err(e)) => {
                log::warn!("{} dropped: {e}", self.who);
                Poll::Ready(false)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether the transport carries data (its handshake is done).
    pub(super) fn transport_ready(&self) -> bool {
        !matches!(self.phase, Phase::Transport)
    }

    /// Whose it is, for messages.
    pub(super) fn who(&self) -> &str {
        &self.who
    }

    fn framed(&self) -> bool {
        self.proto.telnet || self.proto.websocket
    }

    /// Whether data flows both ways (announced, handshake done, writes work).
    pub(super) fn is_open(&self) -> bool {
        self.announced && matches!(self.phase, Phase::Open) && !self.write_broken
    }

    /// Its framing.
    pub(super) fn proto(&self) -> Proto {
        self.proto
    }

    /// The TLS setting it was made with ([`ConnSetup::tls_key`]).
    pub(super) fn tls_key(&self) -> Option<&(String, Option<String>)> {
        self.tls.as_ref()
    }

    /// Whether `Opened` was reported (or the connection came with the
    /// backend): only then is its end reported as `Closed`.
    pub(super) fn announced(&self) -> bool {
        self.announced
    }

    /// QEMU's `query-chardev` name for it, once it is announced and open.
    pub(super) fn filename(&self) -> Option<&str> {
        (self.announced && matches!(self.phase, Phase::Open)).then_some(self.name.as_str())
    }

    /// Takes the descriptor that came with the newest input that carried
    /// any (SCM_RIGHTS on a unix socket), if it waits still.
    pub(super) fn take_received(&mut self) -> Option<OwnedFd> {
        self.transport.take_received()
    }

    /// Ends it as if the peer had gone: the peer sees the end at once; the
    /// next poll reports `Closed`, and output is dropped until then.
    pub(super) fn disconnect(&mut self) {
        let _ = self.transport.shutdown();
        self.eof = true;
        self.write_broken = true;
    }

    /// Writes owed bytes, then what the transport keeps. Ready(()) when
    /// both are out (or writes are broken).
    fn flush_tx(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if matches!(self.phase, Phase::Transport) {
            // Owed bytes wait until the transport carries data.
            return Poll::Pending;
        }
        while self.tx_pos < self.tx.len() {
            if self.write_broken {
                self.tx.clear();
                self.tx_pos = 0;
                break;
            }
            match self.transport.poll_write(cx, &self.tx[self.tx_pos..]) {
                Poll::Ready(Ok(n)) if n > 0 => self.tx_pos += n,
                Poll::Ready(Ok(_)) | Poll::Ready(Err(_)) => self.write_broken = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        self.tx.clear();
        self.tx_pos = 0;
        if !self.write_broken {
            match self.transport.poll_flush(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => self.write_broken = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    }

    /// Queues protocol bytes; dropped past a bound (a peer that sends pings
    /// and never reads must not grow memory).
    fn queue_control(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        if self.tx.len() - self.tx_pos < TX_CONTROL_CAP {
            f(&mut self.tx);
        }
    }

    pub(super) fn poll_event(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<ConnEvent> {
        let _ = self.flush_tx(cx);
        loop {
            match &mut self.phase {
                Phase::Transport => match self.poll_transport(cx) {
                    Poll::Ready(true) => {
                        let _ = self.flush_tx(cx);
                    }
                    Poll::Ready(false) => return Poll::Ready(ConnEvent::Closed),
                    Poll::Pending => return Poll::Pending,
                },
                Phase::Refused => {
                    // Best effort: the reply went out above or is dropped.
                    return Poll::Ready(ConnEvent::Closed);
                }
                Phase::Handshake(req) => {
                    let mut chunk = [0u8; 1024];
                    let room = (websocket::MAX_HANDSHAKE - req.len()).min(chunk.len());
                    if room == 0 {
                        log::warn!("websocket handshake refused: request too large");
                        return Poll::Ready(ConnEvent::Closed);
                    }
                    let n = match self.transport.poll_read(cx, &mut chunk[..room]) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                            return Poll::Ready(ConnEvent::Closed)
                        }
                        Poll::Ready(Ok(n)) => n,
                        Poll::Pending => return Poll::Pending,
                    };
                    req.extend_from_slice(&chunk[..n]);
                    if let Some(end) = websocket::request_end(req) {
                        // Bytes after the request are the first frames.
                        self.rx.extend_from_slice(&req[end..]);
                        match websocket::handshake_response(&req[..end], self.proto.dialect) {
                            Ok(resp) => {
                                self.tx.splice(0..0, resp);
                                self.phase = Phase::Open;
                            }
                            Err((resp, why)) => {
                                log::warn!("{why}");
                                self.tx = resp;
                                self.tx_pos = 0;
                                self.phase = Phase::Refused;
                            }
                        }
                        let _ = self.flush_tx(cx);
                    }
                }
                Phase::Open => break,
            }
        }
        if !self.announced {
            self.announced = true;
            return Poll::Ready(ConnEvent::Opened);
        }
        if self.pending_break {
            self.pending_break = false;
            return Poll::Ready(ConnEvent::Break);
        }
        if buf.is_empty() {
            let drained = self.rx_pos == self.rx.len() && self.mid_pos == self.mid.len();
            // No room for input (no frontend, or one that waits): a peer
            // that went away with nothing left unread is still noticed, as
            // QEMU's hang-up watch notices it.
            if !self.eof && drained && self.transport.poll_gone(cx) {
                self.eof = true;
            }
            if self.eof && drained {
                return Poll::Ready(ConnEvent::Closed);
            }
            return Poll::Pending;
        }
        if !self.framed() {
            if self.eof {
                return Poll::Ready(ConnEvent::Closed);
            }
            return match self.transport.poll_read(cx, buf) {
                Poll::Ready(Ok(0)) => {
                    self.eof = true;
                    Poll::Ready(ConnEvent::Closed)
                }
                Poll::Ready(Ok(n)) => Poll::Ready(ConnEvent::Input(n)),
                Poll::Ready(Err(e)) if net::is_transient(&e) => Poll::Pending,
                Poll::Ready(Err(_)) => {
                    self.eof = true;
                    Poll::Ready(ConnEvent::Closed)
                }
                Poll::Pending => Poll::Pending,
            };
        }
        self.poll_framed(cx, buf)
    }

    fn poll_framed(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<ConnEvent> {
        loop {
            // Telnet stage: from `mid` (after websocket) or straight from rx.
            if self.proto.telnet {
                let (src, pos) = if self.proto.websocket {
                    (&self.mid, &mut self.mid_pos)
                } else {
                    (&self.rx, &mut self.rx_pos)
                };
                if *pos < src.len() {
                    let r = self.telnet.decode(&src[*pos..], buf);
                    *pos += r.consumed;
                    if r.brk {
                        if r.produced > 0 {
                            self.pending_break = true;
                            return Poll::Ready(ConnEvent::Input(r.produced));
                        }
                        return Poll::Ready(ConnEvent::Break);
                    }
                    if r.produced > 0 {
                        return Poll::Ready(ConnEvent::Input(r.produced));
                    }
                    if r.consumed > 0 {
                        continue;
                    }
                }
            }
            // Websocket stage.
            if self.proto.websocket && self.rx_pos < self.rx.len() {
                let r = if self.proto.telnet {
                    if self.mid_pos == self.mid.len() {
                        self.mid.clear();
                        self.mid_pos = 0;
                    }
                    let start = self.mid.len();
                    self.mid.resize(RX_CAP, 0);
                    let r = self
                        .ws
                        .decode(&self.rx[self.rx_pos..], &mut self.mid[start..]);
                    self.mid.truncate(start + r.produced);
                    r
                } else {
                    self.ws.decode(&self.rx[self.rx_pos..], buf)
                };
                self.rx_pos += r.consumed;
                match r.action {
                    None => {}
                    Some(WsAction::Pong(p)) => {
                        self.queue_control(|tx| websocket::encode_pong(&p, tx))
                    }
                    Some(WsAction::Close) => {
                        self.queue_control(|tx| {
                            websocket::encode_close(websocket::CLOSE_NORMAL, tx)
                        });
                        self.eof = true;
                    }
                    Some(WsAction::Fail(code, why)) => {
                        log::warn!("websocket client dropped: {why}");
                        self.queue_control(|tx| websocket::encode_close(code, tx));
                        self.eof = true;
                    }
                    Some(WsAction::Drop(why)) => {
                        log::warn!("websocket client dropped: {why}");
                        self.eof = true;
                    }
                }
                if self.eof {
                    // Nothing after a close frame counts.
                    self.rx.clear();
                    self.rx_pos = 0;
                }
                if self.tx_pos < self.tx.len() {
                    // A pong or close frame: out now, or when writable.
                    let _ = self.flush_tx(cx);
                }
                if !self.proto.telnet && r.produced > 0 {
                    return Poll::Ready(ConnEvent::Input(r.produced));
                }
                if r.consumed > 0 || r.produced > 0 || self.eof {
                    continue;
                }
            }
            if self.rx_pos == self.rx.len() {
                self.rx.clear();
                self.rx_pos = 0;
            }
            let drained = self.rx_pos == self.rx.len() && self.mid_pos == self.mid.len();
            if self.eof {
                if drained {
                    return Poll::Ready(ConnEvent::Closed);
                }
                continue;
            }
            // Read more raw input.
            if self.rx.len() >= RX_CAP {
                // Cannot happen: every stage above made room. Be safe.
                return Poll::Pending;
            }
            let start = self.rx.len();
            self.rx.resize(RX_CAP, 0);
            let r = self.transport.poll_read(cx, &mut self.rx[start..]);
            let got = match &r {
                Poll::Ready(Ok(n)) => *n,
                _ => 0,
            };
            self.rx.truncate(start + got);
            match r {
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) if net::is_transient(&e) => continue,
                Poll::Ready(Err(_)) => self.eof = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    pub(super) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if matches!(self.phase, Phase::Transport) && !self.write_broken {
            // A TLS handshake under way: output waits for it, as it would
            // wait for a slow plain peer (the handshake wakes the task).
            return Poll::Pending;
        }
        if self.write_broken || !matches!(self.phase, Phase::Open) {
            return Poll::Ready(Ok(data.len()));
        }
        if self.flush_tx(cx).is_pending() {
            return Poll::Pending;
        }
        if self.write_broken {
            return Poll::Ready(Ok(data.len()));
        }
        if self.proto.websocket {
            // Raw bytes become one frame per write: the frame is owed in
            // full once any of it is out, so it is queued whole.
            let mut payload = Vec::new();
            let take = data.len().min(websocket::MAX_OUT_FRAME);
            let data = &data[..take];
            let payload = if self.proto.telnet {
                telnet::encode(data, &mut payload);
                &payload[..]
            } else {
                data
            };
            websocket::encode_binary(payload, &mut self.tx);
            let _ = self.flush_tx(cx);
            return Poll::Ready(Ok(take));
        }
        if self.proto.telnet {
            return self.write_telnet(cx, data);
        }
        match self.transport.poll_write(cx, data) {
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(n)),
            Poll::Ready(Err(e)) if net::is_transient(&e) => Poll::Pending,
            Poll::Ready(Err(_)) => {
                // The peer is gone; the input side reports it after its
                // last bytes. Until then output is dropped, as QEMU.
                self.write_broken = true;
                Poll::Ready(Ok(data.len()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Telnet output: 0xff doubled. Only input bytes whose encoding the
    /// transport took count as taken; half of a doubled 0xff may wait in `tx`.
    fn write_telnet(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let mut enc = Vec::with_capacity(data.len() + 16);
        telnet::encode(data, &mut enc);
        match self.transport.poll_write(cx, &enc) {
            Poll::Ready(Ok(n)) => {
                // Map encoded bytes sent back to input bytes.
                let mut used = 0;
                let mut k = 0;
                while k < n {
                    if data[used] == telnet::IAC {
                        if k + 1 == n {
                            // First half out: the second is owed.
                            self.tx.push(telnet::IAC);
                            used += 1;
                            break;
                        }
                        k += 2;
                    } else {
                        k += 1;
                    }
                    used += 1;
                }
                Poll::Ready(Ok(used))
            }
            Poll::Ready(Err(e)) if net::is_transient(&e) => Poll::Pending,
            Poll::Ready(Err(_)) => {
                self.write_broken = true;
                Poll::Ready(Ok(data.len()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Conn {
    /// Bytes owed to a live peer (the tail of a websocket frame, half of a
    /// doubled telnet 0xff) were already taken from the chardev's queue, so
    /// they must not be lost when the backend is retired: the connection
    /// goes to a drain that writes them as the peer reads, then closes.
    pub(super) fn retire(mut self) -> Option<Drain> {
        // A TLS peer is told the stream ends after what it was sent.
        if !self.write_broken {
            self.transport.close_notify();
        }
        let owes = self.tx_pos < self.tx.len() || self.transport.owes();
        if self.write_broken || !self.transport.is_ready() || !owes {
            return None;
        }
        Some(Drain::new(finish_owed(
            self.transport,
            self.tx,
            self.tx_pos,
        )))
    }

    /// Says `msg` to a peer that is refused, as the transport's own bytes
    /// (past any framing: a websocket client's HTTP reply), in one attempt
    /// that never waits, then ends the connection (inside TLS: after a
    /// close_notify).
    pub(super) fn refuse(mut self, msg: &[u8]) {
        let _ = self.transport.write_now(msg);
        let _ = self.transport.shutdown();
    }

    /// Ends a connection qchar chooses to end while its peer is there (a
    /// change that keeps no client of its kind, a multi-client server
    /// retired): one non-blocking attempt to send what is owed, then the
    /// end, which a TLS peer is told by a close_notify (a truncation
    /// otherwise, to a client that checks).
    pub(super) fn end(mut self) {
        if self.write_broken {
            return;
        }
        if self.tx_pos < self.tx.len() || self.transport.owes() {
            let _ = self.transport.write_now(&self.tx[self.tx_pos..]);
        }
        let _ = self.transport.shutdown();
    }

    /// Closes a connection that ended on its own (the peer closed, or a
    /// handshake was refused), after one non-blocking attempt to send what
    /// is owed.
    pub(super) fn close(mut self) {
        let owes = self.tx_pos < self.tx.len() || self.transport.owes();
        if !self.write_broken && owes {
            let _ = self.transport.write_now(&self.tx[self.tx_pos..]);
        }
    }
}

/// Writes `owed[pos..]` (and what the transport keeps) as the peer reads,
/// then closes the connection.
async fn finish_owed(mut transport: Transport, owed: Vec<u8>, mut pos: usize) {
    let drain = std::future::poll_fn(|cx| {
        while pos < owed.len() {
            match transport.poll_write(cx, &owed[pos..]) {
                Poll::Ready(Ok(n)) if n > 0 => pos += n,
                Poll::Ready(Err(e)) if net::is_transient(&e) => continue,
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
        transport.poll_flush(cx).map(|_| ())
    });
    drain.await;
}
