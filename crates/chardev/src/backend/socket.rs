//! `socket`: unix (paths, abstract names) and TCP stream sockets, as a
//! server (one client at a time; others wait in the listen backlog) or a
//! client (optionally reconnecting), with telnet and websocket framing.
//!
//! Behaviour follows QEMU 7.2: its option checks and messages, its
//! `query-chardev` filenames (`disconnected:tcp:127.0.0.1:4444,server=on`,
//! `tcp:127.0.0.1:4444,server=on <-> 127.0.0.1:50000`, `unix:` for a
//! connected unix client), a stale unix socket file removed before bind and
//! the socket file removed when the backend goes, output dropped while no
//! peer is connected (the chardev's backlog may keep it), telnet spoken only
//! by servers.
//!
//! `wait=on` makes opening the backend accept the first client before it
//! returns, on the caller's thread. For `-chardev` at start-up and for QMP
//! from another thread that is what QEMU does; a monitor running on the
//! chardev I/O thread stalls every chardev until the client comes (QEMU's
//! main loop stalls the same way).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, Type};
use tokio::task::JoinHandle;

use super::net::{self, SockAddr, SockIo};
use super::telnet::{self, TelnetDecoder};
use super::websocket::{self, WsAction, WsDecoder, WsDialect};
use super::{Backend, BackendEvent, Drain};
use crate::error::{ChardevError, Result};
use crate::spec::{ChardevSocket, SocketAddressLegacy};

/// Raw input read at once from a framed (telnet/websocket) connection.
const RX_CAP: usize = 4096;
/// Most protocol bytes (pongs) queued for a peer that does not read.
const TX_CONTROL_CAP: usize = 64 * 1024;
/// Listen backlog, as QEMU's chardev sockets.
const LISTEN_BACKLOG: libc::c_int = 1;
/// Pause before accepting again after accept failed (out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Checks options that QEMU refuses, with QEMU's messages, before anything
/// is opened.
pub(crate) fn validate(s: &ChardevSocket) -> Result<()> {
    let server = s.server.unwrap_or(true);
    let bad = |m: &str| Err(ChardevError::Invalid(m.to_string()));
    if s.tls_creds.is_some() || s.tls_authz.is_some() {
        return Err(ChardevError::Unsupported(
            "TLS is not supported by qchar socket chardevs".into(),
        ));
    }
    if s.tn3270.unwrap_or(false) {
        return Err(ChardevError::Unsupported(
            "tn3270 is not supported by qchar socket chardevs".into(),
        ));
    }
    if s.websocket.unwrap_or(false) && !server {
        return bad("Websocket client is not implemented");
    }
    if s.reconnect.is_some() && s.reconnect_ms.is_some() {
        return bad("'reconnect' and 'reconnect-ms' are mutually exclusive");
    }
    if server {
        if s.reconnect.is_some() {
            return bad("'reconnect' option is incompatible with socket in server listen mode");
        }
        if s.reconnect_ms.is_some() {
            return bad("'reconnect-ms' option is incompatible with socket in server listen mode");
        }
    } else if s.wait.is_some() {
        return bad("'wait' option is incompatible with socket in client connect mode");
    }
    match &s.addr {
        SocketAddressLegacy::Inet(_) | SocketAddressLegacy::Unix(_) => Ok(()),
        SocketAddressLegacy::Vsock(_) => Err(ChardevError::Unsupported(
            "vsock sockets are not supported by qchar".into(),
        )),
        SocketAddressLegacy::Fd(_) => Err(ChardevError::Unsupported(
            "sockets passed by descriptor are not supported by qchar".into(),
        )),
    }
}

/// Where a client connects.
#[derive(Clone)]
enum Target {
    Inet {
        host: String,
        port: String,
        ipv4: bool,
        ipv6: bool,
    },
    Unix(SockAddr, String),
}

impl Target {
    /// A blocking connect, trying each resolved address in turn; errors in
    /// QEMU's words.
    fn connect(&self) -> Result<OwnedFd> {
        match self {
            Target::Unix(addr, path) => {
                let s = Socket::new(Domain::UNIX, Type::STREAM, None)
                    .map_err(|e| ChardevError::io("Failed to create socket", e))?;
                net::connect(&s, addr)
                    .map_err(|e| ChardevError::io(format!("Failed to connect to '{path}'"), e))?;
                Ok(s.into())
            }
            Target::Inet {
                host,
                port,
                ipv4,
                ipv6,
            } => {
                let addrs = net::resolve(host, port, libc::SOCK_STREAM, false, *ipv4, *ipv6)
                    .map_err(|m| {
                        ChardevError::Invalid(format!(
                            "address resolution failed for {host}:{port}: {m}"
                        ))
                    })?;
                let mut last = io::Error::from(io::ErrorKind::AddrNotAvailable);
                for sa in &addrs {
                    let s = match Socket::new(Domain::for_address(*sa), Type::STREAM, None) {
                        Ok(s) => s,
                        Err(e) => {
                            last = e;
                            continue;
                        }
                    };
                    match net::connect(&s, &SockAddr::from(*sa)) {
                        Ok(()) => return Ok(s.into()),
                        Err(e) => last = e,
                    }
                }
                Err(ChardevError::io(
                    format!("Failed to connect to '{host}:{port}'"),
                    last,
                ))
            }
        }
    }
}

/// A unix socket file this backend created, removed when it goes unless
/// something else has replaced it since.
struct SocketFile {
    path: String,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if m.dev() == self.dev && m.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// The listening side of a server.
struct Listener {
    io: SockIo,
    _file: Option<SocketFile>,
    retry: Option<Pin<Box<tokio::time::Sleep>>>,
    error_logged: bool,
}

/// Framing of one connection.
#[derive(Clone, Copy)]
struct Proto {
    telnet: bool,
    websocket: bool,
    /// The websocket's dialect (`x-websocket-text`).
    dialect: WsDialect,
}

enum Phase {
    /// Websocket: reading the request.
    Handshake(Vec<u8>),
    /// Websocket: the request was refused; the reply is in `tx`.
    Refused,
    /// Data flows.
    Open,
}

/// One connected peer.
struct Conn {
    io: SockIo,
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
}

enum ConnEvent {
    Opened,
    Input(usize),
    Break,
    Closed,
}

impl Conn {
    fn new(fd: OwnedFd, proto: Proto, name: String) -> io::Result<Conn> {
        let io = SockIo::new(fd)?;
        let mut tx = Vec::new();
        if proto.telnet {
            tx.extend_from_slice(&telnet::NEGOTIATION);
        }
        Ok(Conn {
            io,
            proto,
            phase: if proto.websocket {
                Phase::Handshake(Vec::new())
            } else {
                Phase::Open
            },
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
        })
    }

    fn framed(&self) -> bool {
        self.proto.telnet || self.proto.websocket
    }

    fn is_open(&self) -> bool {
        self.announced && matches!(self.phase, Phase::Open) && !self.write_broken
    }

    /// Writes owed bytes. Ready(()) when `tx` is empty.
    fn flush_tx(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.tx_pos < self.tx.len() {
            if self.write_broken {
                self.tx.clear();
                self.tx_pos = 0;
                break;
            }
            match self.io.poll_send(cx, &self.tx[self.tx_pos..]) {
                Poll::Ready(Ok(n)) if n > 0 => self.tx_pos += n,
                Poll::Ready(Ok(_)) | Poll::Ready(Err(_)) => self.write_broken = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        self.tx.clear();
        self.tx_pos = 0;
        Poll::Ready(())
    }

    /// Queues protocol bytes; dropped past a bound (a peer that sends pings
    /// and never reads must not grow memory).
    fn queue_control(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        if self.tx.len() - self.tx_pos < TX_CONTROL_CAP {
            f(&mut self.tx);
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<ConnEvent> {
        let _ = self.flush_tx(cx);
        loop {
            match &mut self.phase {
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
                    let n = match self.io.poll_recv(cx, &mut chunk[..room]) {
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
            if self.eof && self.rx_pos == self.rx.len() && self.mid_pos == self.mid.len() {
                return Poll::Ready(ConnEvent::Closed);
            }
            return Poll::Pending;
        }
        if !self.framed() {
            if self.eof {
                return Poll::Ready(ConnEvent::Closed);
            }
            return match self.io.poll_recv(cx, buf) {
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
            let r = self.io.poll_recv(cx, &mut self.rx[start..]);
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

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
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
        match self.io.poll_send(cx, data) {
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

    /// Telnet output: 0xff doubled. Only input bytes whose encoding reached
    /// the socket count as taken; half of a doubled 0xff may wait in `tx`.
    fn write_telnet(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let mut enc = Vec::with_capacity(data.len() + 16);
        telnet::encode(data, &mut enc);
        match self.io.poll_send(cx, &enc) {
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
    fn retire(self) -> Option<Drain> {
        if self.write_broken || self.tx_pos >= self.tx.len() {
            return None;
        }
        Some(Drain::new(finish_owed(self.io, self.tx, self.tx_pos)))
    }

    /// One non-blocking attempt to send what is owed, for a connection that
    /// ends on its own (the peer closed, or a handshake was refused).
    fn send_owed_now(&mut self) {
        if !self.write_broken && self.tx_pos < self.tx.len() {
            let _ = net::send(self.io.raw(), &self.tx[self.tx_pos..]);
        }
    }
}

/// Writes `owed[pos..]` to the socket as its peer reads, then closes it.
async fn finish_owed(io: SockIo, owed: Vec<u8>, mut pos: usize) {
    let drain = std::future::poll_fn(|cx| {
        while pos < owed.len() {
            match io.poll_send(cx, &owed[pos..]) {
                Poll::Ready(Ok(n)) if n > 0 => pos += n,
                Poll::Ready(Err(e)) if net::is_transient(&e) => continue,
                Poll::Ready(_) => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    });
    drain.await;
}

/// The `socket` backend.
pub(crate) struct SocketBackend {
    id: String,
    proto: Proto,
    /// Protocol name in filenames: `tcp`, `telnet` or `websocket`.
    proto_name: &'static str,
    server: bool,
    nodelay: bool,
    keep_alive: bool,
    is_unix: bool,
    listener: Option<Listener>,
    target: Option<Target>,
    conn: Option<Conn>,
    reconnect: Option<Duration>,
    connecting: Option<JoinHandle<Result<OwnedFd>>>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A failed connect was logged since the last success.
    failure_logged: bool,
    /// `query-chardev` filename while no peer is connected.
    disconnected: String,
}

fn unix_parts(u: &crate::spec::UnixSocketAddress) -> (bool, bool) {
    let abstract_ = u.abstract_.unwrap_or(false);
    // QEMU's default for `tight` is on.
    let tight = u.tight.unwrap_or(true);
    (abstract_, tight)
}

impl SocketBackend {
    /// Opens the socket: binds and listens (and with `wait=on` accepts the
    /// first client), or connects.
    pub(crate) fn open(id: &str, spec: &ChardevSocket) -> Result<SocketBackend> {
        validate(spec)?;
        let server = spec.server.unwrap_or(true);
        let telnet_opt = spec.telnet.unwrap_or(false);
        let websocket = spec.websocket.unwrap_or(false);
        // As QEMU: only a server speaks telnet; a client just says so.
        let proto = Proto {
            telnet: telnet_opt && server,
            websocket,
            dialect: if spec.websocket_text == Some(false) {
                WsDialect::QemuBinary
            } else {
                WsDialect::TextToo
            },
        };
        let proto_name = if telnet_opt {
            "telnet"
        } else if websocket {
            "websocket"
        } else {
            "tcp"
        };
        let reconnect = match (spec.reconnect, spec.reconnect_ms) {
            (Some(s), _) if s > 0 => Some(Duration::from_secs(s as u64)),
            (_, Some(ms)) if ms > 0 => Some(Duration::from_millis(ms as u64)),
            _ => None,
        };
        let mut b = SocketBackend {
            id: id.to_string(),
            proto,
            proto_name,
            server,
            nodelay: spec.nodelay.unwrap_or(false),
            keep_alive: false,
            is_unix: matches!(spec.addr, SocketAddressLegacy::Unix(_)),
            listener: None,
            target: None,
            conn: None,
            reconnect,
            connecting: None,
            timer: None,
            failure_logged: false,
            disconnected: String::new(),
        };
        let srv = if server { ",server=on" } else { "" };
        match &spec.addr {
            SocketAddressLegacy::Unix(u) => {
                let (abstract_, tight) = unix_parts(u);
                let addr = net::unix_addr(&u.path, abstract_, tight)
                    .map_err(|e| ChardevError::Invalid(crate::error::os_message(&e)))?;
                b.disconnected = format!(
                    "disconnected:unix:{}{}{}{srv}",
                    u.path,
                    if abstract_ { ",abstract=on" } else { "" },
                    if abstract_ && u.tight == Some(true) {
                        ",tight=on"
                    } else {
                        ""
                    },
                );
                if server {
                    b.listener = Some(listen_unix(&u.path, abstract_, &addr)?);
                } else {
                    b.target = Some(Target::Unix(addr, u.path.clone()));
                }
            }
            SocketAddressLegacy::Inet(i) => {
                b.keep_alive = i.keep_alive.unwrap_or(false);
                let (ipv4, ipv6) = (i.ipv4.unwrap_or(false), i.ipv6.unwrap_or(false));
                if server {
                    let (l, bound) = listen_inet(&i.host, &i.port, i.to, ipv4, ipv6)?;
                    let host = match bound.ip() {
                        std::net::IpAddr::V4(a) => a.to_string(),
                        std::net::IpAddr::V6(a) => a.to_string(),
                    };
                    b.disconnected =
                        format!("disconnected:{proto_name}:{host}:{}{srv}", bound.port());
                    b.listener = Some(l);
                } else {
                    b.disconnected =
                        format!("disconnected:{proto_name}:{}:{}{srv}", i.host, i.port);
                    b.target = Some(Target::Inet {
                        host: i.host.clone(),
                        port: i.port.clone(),
                        ipv4,
                        ipv6,
                    });
                }
            }
            _ => unreachable!("refused by validate"),
        }
        if server {
            // Absent `wait` is QMP's default, false; `-chardev` spells out
            // its own default (true for a server).
            if spec.wait.unwrap_or(false) {
                log::info!("QEMU waiting for connection on: {}", b.disconnected);
                b.accept_blocking()?;
            }
        } else if b.reconnect.is_some() {
            // First attempt in the background; failures are retried.
            b.start_connect();
        } else {
            let fd = b.target.as_ref().map(Target::connect).transpose()?;
            if let Some(fd) = fd {
                b.adopt(fd, true)
                    .map_err(|e| ChardevError::io("Failed to set up socket", e))?;
            }
        }
        Ok(b)
    }

    /// `wait=on`: accepts the first client on the caller's thread.
    fn accept_blocking(&mut self) -> Result<()> {
        let Some(l) = &self.listener else {
            return Ok(());
        };
        let fd = loop {
            net::wait_readable(l.io.raw())
                .map_err(|e| ChardevError::io("Failed to accept connection", e))?;
            match net::accept(l.io.raw()) {
                Ok(fd) => break fd,
                Err(e) if net::is_transient(&e) || e.raw_os_error() == Some(libc::ECONNABORTED) => {
                    continue
                }
                Err(e) => return Err(ChardevError::io("Failed to accept connection", e)),
            }
        };
        self.adopt(fd, true)
            .map_err(|e| ChardevError::io("Failed to set up socket", e))?;
        // A websocket client must still shake hands: that is reported as
        // `Opened` later, like any client that comes after creation.
        Ok(())
    }

    /// Takes a connected socket. `at_open`: it comes with the backend, so no
    /// `Opened` is reported for it (the chardev starts open).
    fn adopt(&mut self, fd: OwnedFd, at_open: bool) -> io::Result<()> {
        let sock = SockRef::from(&fd);
        if !self.is_unix {
            if self.nodelay {
                let _ = sock.set_tcp_nodelay(true);
            }
            if self.keep_alive {
                let _ = sock.set_keepalive(true);
            }
        }
        let name = self.connected_name(&sock);
        let mut c = Conn::new(fd, self.proto, name)?;
        if at_open && !self.proto.websocket {
            c.announced = true;
        }
        self.conn = Some(c);
        self.failure_logged = false;
        Ok(())
    }

    /// QEMU's name for a connected socket.
    fn connected_name(&self, sock: &SockRef<'_>) -> String {
        let srv = if self.server { ",server=on" } else { "" };
        let (Ok(l), Ok(p)) = (sock.local_addr(), sock.peer_addr()) else {
            return "unknown".into();
        };
        match (l.as_socket(), p.as_socket()) {
            (Some(l), Some(p)) => format!(
                "{}:{}{srv} <-> {}",
                self.proto_name,
                net::host_port(&l),
                net::host_port(&p)
            ),
            _ if l.is_unix() => format!("unix:{}{srv}", net::unix_path(&l)),
            _ => "unknown".into(),
        }
    }

    fn start_connect(&mut self) {
        if let Some(t) = self.target.clone() {
            self.connecting = Some(tokio::task::spawn_blocking(move || t.connect()));
        }
    }

    fn lost_connection(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            c.send_owed_now();
        }
        self.conn = None;
        if !self.server && self.reconnect.is_some() {
            self.arm_timer();
        }
    }

    fn arm_timer(&mut self) {
        if let Some(d) = self.reconnect {
            self.timer = Some(Box::pin(tokio::time::sleep(d)));
        }
    }

    /// Server side: accepts a client when none is connected.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(l) = self.listener.as_mut() else {
            return Poll::Pending;
        };
        if let Some(t) = l.retry.as_mut() {
            if t.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            l.retry = None;
        }
        let r = l.io.poll_read_with(cx, net::accept);
        match r {
            Poll::Ready(Ok(fd)) => {
                l.error_logged = false;
                if let Err(e) = self.adopt(fd, false) {
                    log::warn!("chardev '{}': cannot use new connection: {e}", self.id);
                }
                Poll::Ready(())
            }
            Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc::ECONNABORTED) => Poll::Ready(()),
            Poll::Ready(Err(e)) => {
                if !l.error_logged {
                    l.error_logged = true;
                    log::error!("chardev '{}': accept failed: {e}", self.id);
                }
                l.retry = Some(Box::pin(tokio::time::sleep(ACCEPT_RETRY)));
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Client side: drives the background connect and the retry timer.
    fn poll_connect(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(j) = self.connecting.as_mut() {
            let r = match Pin::new(j).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r,
            };
            self.connecting = None;
            match r {
                Ok(Ok(fd)) => {
                    if let Err(e) = self.adopt(fd, false) {
                        log::warn!("chardev '{}': cannot use connection: {e}", self.id);
                        self.arm_timer();
                    }
                }
                Ok(Err(e)) => {
                    if !self.failure_logged {
                        self.failure_logged = true;
                        log::error!("Unable to connect character device {}: {e}", self.id);
                    } else {
                        log::debug!("Unable to connect character device {}: {e}", self.id);
                    }
                    self.arm_timer();
                }
                Err(_) => self.arm_timer(),
            }
            return Poll::Ready(());
        }
        if let Some(t) = self.timer.as_mut() {
            if t.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.timer = None;
            self.start_connect();
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// Binds and listens on a unix socket, replacing a stale file first as QEMU
/// does.
fn listen_unix(path: &str, abstract_: bool, addr: &SockAddr) -> Result<Listener> {
    let s = Socket::new(Domain::UNIX, Type::STREAM, None)
        .map_err(|e| ChardevError::io("Failed to create Unix socket", e))?;
    if !abstract_ {
        if let Err(e) = std::fs::remove_file(path) {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(ChardevError::io(
                    format!("Failed to unlink socket {path}"),
                    e,
                ));
            }
        }
    }
    s.bind(addr)
        .map_err(|e| ChardevError::io(format!("Failed to bind socket to {path}"), e))?;
    let file = if abstract_ {
        None
    } else {
        std::fs::symlink_metadata(path).ok().map(|m| SocketFile {
            path: path.to_string(),
            dev: m.dev(),
            ino: m.ino(),
        })
    };
    s.listen(LISTEN_BACKLOG)
        .map_err(|e| ChardevError::io("Failed to listen on socket", e))?;
    Ok(Listener {
        io: SockIo::new(s.into()).map_err(|e| ChardevError::io("Failed to listen on socket", e))?,
        _file: file,
        retry: None,
        error_logged: false,
    })
}

/// Binds and listens on TCP, trying ports `port..=to`; returns the address
/// actually bound (the real port for `port=0`).
fn listen_inet(
    host: &str,
    port: &str,
    to: Option<u16>,
    ipv4: bool,
    ipv6: bool,
) -> Result<(Listener, SocketAddr)> {
    let addrs = net::resolve(host, port, libc::SOCK_STREAM, true, ipv4, ipv6).map_err(|m| {
        ChardevError::Invalid(format!("address resolution failed for {host}:{port}: {m}"))
    })?;
    let mut last: Option<io::Error> = None;
    for sa in addrs {
        let first = sa.port();
        let last_port = match to {
            Some(t) if first != 0 && t > first => t,
            _ => first,
        };
        for p in first..=last_port {
            let mut sa = sa;
            sa.set_port(p);
            let s = Socket::new(Domain::for_address(sa), Type::STREAM, None)
                .map_err(|e| ChardevError::io("Failed to create socket", e))?;
            let _ = s.set_reuse_address(true);
            if sa.is_ipv6() {
                // Dual stack unless IPv6 only was asked for.
                let _ = s.set_only_v6(ipv6 && !ipv4);
            }
            if let Err(e) = s.bind(&sa.into()) {
                if e.raw_os_error() == Some(libc::EADDRINUSE) {
                    last = Some(e);
                    continue;
                }
                return Err(ChardevError::io("Failed to bind socket", e));
            }
            s.listen(LISTEN_BACKLOG)
                .map_err(|e| ChardevError::io("Failed to listen on socket", e))?;
            let bound = s
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .unwrap_or(sa);
            let io = SockIo::new(s.into())
                .map_err(|e| ChardevError::io("Failed to listen on socket", e))?;
            return Ok((
                Listener {
                    io,
                    _file: None,
                    retry: None,
                    error_logged: false,
                },
                bound,
            ));
        }
    }
    Err(ChardevError::io(
        "Failed to find an available port",
        last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EADDRINUSE)),
    ))
}

impl Backend for SocketBackend {
    fn poll_event(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<BackendEvent> {
        loop {
            if let Some(c) = self.conn.as_mut() {
                match c.poll_event(cx, buf) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(ConnEvent::Opened) => return Poll::Ready(BackendEvent::Opened),
                    Poll::Ready(ConnEvent::Input(n)) => return Poll::Ready(BackendEvent::Input(n)),
                    Poll::Ready(ConnEvent::Break) => return Poll::Ready(BackendEvent::Break),
                    Poll::Ready(ConnEvent::Closed) => {
                        let announced = c.announced;
                        self.lost_connection();
                        if announced {
                            return Poll::Ready(BackendEvent::Closed);
                        }
                        continue;
                    }
                }
            }
            let r = if self.server {
                self.poll_accept(cx)
            } else {
                self.poll_connect(cx)
            };
            if r.is_pending() {
                return Poll::Pending;
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.conn.as_mut() {
            // No peer: dropped, as QEMU (the chardev's backlog may keep it).
            None => Poll::Ready(Ok(data.len())),
            Some(c) => c.poll_write(cx, data),
        }
    }

    fn is_open(&self) -> bool {
        self.conn.as_ref().is_some_and(Conn::is_open)
    }

    /// Ends the current connection as if the peer had gone (QEMU's
    /// `qemu_chr_fe_disconnect`, and what `yank` does): the peer sees the
    /// end at once; the next poll reports CLOSED, then a server waits for
    /// its next client and a client with `reconnect` connects again.
    fn disconnect(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            let _ = net::shutdown(c.io.raw());
            c.eof = true;
            c.write_broken = true;
        }
    }

    fn filename(&self) -> String {
        match &self.conn {
            Some(c) if c.announced && matches!(c.phase, Phase::Open) => c.name.clone(),
            _ => self.disconnected.clone(),
        }
    }

    fn drops_output_when_closed(&self) -> bool {
        true
    }

    /// The listener closes (and its socket file goes) now; a connection
    /// that owes its peer bytes is finished by the drain.
    fn retire(self: Box<Self>) -> Option<Drain> {
        let SocketBackend { conn, .. } = *self;
        conn.and_then(Conn::retire)
    }
}
