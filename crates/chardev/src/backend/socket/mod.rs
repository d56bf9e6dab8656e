//! `socket`: unix (paths, abstract names) and TCP stream sockets, as a
//! server (one client at a time, others waiting in the listen backlog; or,
//! with qchar's `x-clients=N`, up to N at once: `clients.rs`) or a client
//! (optionally reconnecting), with telnet and websocket framing.
//!
//! Behaviour follows QEMU 7.2: its option checks and messages, its
//! `query-chardev` filenames (`disconnected:tcp:127.0.0.1:4444,server=on`,
//! `tcp:127.0.0.1:4444,server=on <-> 127.0.0.1:50000`, `unix:` for a
//! connected unix client), a stale unix socket file removed before bind and
//! the socket file removed when the backend goes, output dropped while no
//! peer is connected (the chardev's history may keep it), telnet spoken
//! only by servers.
//!
//! `wait=on` makes opening the backend accept the first client before it
//! returns, on the caller's thread. For `-chardev` at start-up and for QMP
//! from another thread that is what QEMU does; a monitor's command (on the
//! chardev I/O thread) has it opened on a thread of its own
//! (`crate::slow_open`), so that nothing else stalls meanwhile, where
//! QEMU's whole main loop does.
//!
//! An address of type `fd` takes a socket handed over by descriptor
//! (`crate::fdpass`): a server listens on it, a client uses it as its
//! connection as it is; a unix socket's connection also receives the
//! descriptors its peer sends (SCM_RIGHTS), for a monitor's `getfd`.
//!
//! The parts, each knowing nothing of the others' insides:
//! - `address.rs`: the option checks, where a client connects, QEMU's
//!   filenames.
//! - `listen.rs`: bind and listen (or a listening socket handed over as a
//!   descriptor), accept, the unix socket file.
//! - `connect.rs`: a reconnecting client's background connect and pause.
//! - `conn.rs`: one connection, made from any connected descriptor by
//!   `ConnSetup`: its phases, telnet/websocket framing (codecs in
//!   `backend/telnet.rs`, `backend/websocket.rs`), the bytes it owes its
//!   peer, its retirement.
//! - `transport.rs`: the byte stream under the framing: the plain socket,
//!   or a TLS session over it (`tls-creds`, see [`crate::tls`]).
//! - `clients.rs`: the clients of a multi-client server (`x-clients`),
//!   each served from the chardev's history at its own offset.
//! - this file: the backend, which takes connected sockets from its
//!   endpoint (listener or connector) and holds the one connection (or the
//!   clients), a TLS server's clients still shaking hands, and hands its
//!   listener and connections to a server that replaces it on the same
//!   address.
//!
//! Hand-over (a qchar improvement): a change to a server spec listening on
//! the address this server listens on opens the new backend without
//! binding ([`SocketBackend::open_to_take_over`]); when it is installed it
//! takes the listener and the connected clients over, so clients stay
//! attached while options change. Clients that speak another framing than
//! the new spec's, or another TLS setting (`tls-creds`, `tls-authz`), are
//! closed, so a change to TLS never keeps a plain client. A client handed
//! to a one-client server first gets the history it had not read yet.
//! `wait=on` is not waited for then: the listener is live already.
//!
//! TLS (`tls-creds`, `tls-authz`), as QEMU 7.2 with these differences:
//! unix sockets take it too (a unix client checks the server's chain, not
//! a name); a handshake has [`crate::tls::HANDSHAKE_TIMEOUT`] to finish
//! (QEMU: no limit); a server accepts while it has no connection, as QEMU
//! does, but shakes hands with up to [`MAX_PENDING`] clients at once: the
//! first to finish gets the chardev, the others finish theirs and wait for
//! it to be free, a client that stalls is dropped at its deadline whatever
//! the chardev is doing, and a new client beyond the bound drops the oldest
//! one still shaking hands. So a client that stalls never keeps others out
//! for long (QEMU takes one client, which holds the chardev until its
//! handshake ends, if ever). Every refusal is logged with its reason (QEMU
//! logs none). A multi-client server's clients shake hands each on their
//! own, as part of their connection, before they are served.

mod address;
mod clients;
mod conn;
mod connect;
mod listen;
mod transport;

use std::io;
use std::os::fd::OwnedFd;
use std::task::{Context, Poll};
use std::time::Duration;

use self::address::{unix_parts, Target};
use self::clients::{peer_of, Client, Clients, Marker};
use self::conn::{Conn, ConnEvent, ConnSetup, Proto};
use self::connect::Connector;
use self::listen::{listen_inet, listen_unix, Listener};
use self::transport::TlsSetup;
use super::net;
use super::websocket::WsDialect;
use super::{Backend, BackendEvent, BackendLink, Drain, HandOver, OpenCtx};
use crate::error::{ChardevError, Result};
use crate::fdpass;
use crate::history::SendFrom;
use crate::registry::{ClientsInfo, RegistryEvent};
use crate::spec::{ChardevBackend, ChardevSocket, SocketAddressLegacy};
use crate::tls::ObjectStore;

pub(crate) use self::address::validate;

/// Most TLS clients a server shakes hands with at once.
pub(crate) const MAX_PENDING: usize = 16;

/// Where a backend's connections come from.
enum Endpoint {
    /// A server: clients are accepted here.
    Listen(Listener),
    /// A client. With a connector it connects again after losing its
    /// connection (`reconnect`); without one it had its one connection at
    /// open.
    Connect(Option<Connector>),
    /// A server opened to take over the listener of the server it replaces
    /// (same address); binds its own only if none is handed over.
    TakeOver(Box<(ChardevSocket, OpenCtx)>),
}

/// What a server hands the server that replaces it.
struct Handed {
    listener: Listener,
    /// Connections, oldest first, each with its history offset if it was
    /// being served.
    conns: Vec<(Client, Option<u64>)>,
    next_client: u64,
    refused: u64,
}

/// What a socket address opened to, before the backend starts.
enum Origin {
    /// A server's listening socket.
    Listen(Listener),
    /// Where a client connects.
    Target(Target),
    /// A client's connection, handed over by descriptor.
    Connected(OwnedFd),
    /// Nothing: QEMU 7.2's server on an empty `fd` string, which listens on
    /// no socket (accepted for compatibility; nothing ever connects).
    Nothing,
}

/// The `socket` backend.
pub(crate) struct SocketBackend {
    id: String,
    setup: ConnSetup,
    endpoint: Endpoint,
    /// The connected peer; a server takes the next client once it is gone.
    conn: Option<Conn>,
    /// Its number and where it is (kept for a hand-over to many clients).
    conn_peer: (u64, String),
    /// A multi-client server's clients (`x-clients` > 1); `conn` is unused.
    clients: Option<Clients>,
    /// The connection, handed over from a multi-client server, is owed the
    /// history from this offset before new output.
    catch_up: Option<u64>,
    /// The skip marker owed to that connection.
    catch_up_marker: Marker,
    /// The chardev this backend is installed on.
    link: Option<BackendLink>,
    /// Number of the next client.
    next_client: u64,
    /// Connections handed over that this backend cannot keep (another
    /// framing, or more than one for a one-client server): closed when it
    /// is first polled, given back if the change is refused.
    unkept: Vec<(Client, Option<u64>)>,
    /// A server's spec, for [`Backend::hands_over_to`].
    spec: Option<Box<ChardevSocket>>,
    /// A TLS server's clients shaking hands, or done and waiting for the
    /// chardev, oldest first, each with where it is.
    pending: Vec<(Conn, String)>,
    /// `query-chardev` filename while no peer is connected.
    disconnected: String,
}

/// Most history bytes handed to a catching-up connection at once.
const CATCH_UP_CHUNK: usize = 64 * 1024;

impl SocketBackend {
    /// Opens the socket: binds and listens (and with `wait=on` accepts the
    /// first client), or connects; or takes the socket an `fd` address
    /// names (see [`crate::fdpass`]).
    pub(crate) fn open(id: &str, spec: &ChardevSocket, ctx: &OpenCtx) -> Result<SocketBackend> {
        let mut b = SocketBackend::unbound(id, spec, &ctx.objects)?;
        let (origin, disconnected) = b.bind(spec, ctx)?;
        b.disconnected = disconnected;
        let reconnect = match (spec.reconnect, spec.reconnect_ms) {
            (Some(s), _) if s > 0 => Some(Duration::from_secs(s as u64)),
            (_, Some(ms)) if ms > 0 => Some(Duration::from_millis(ms as u64)),
            _ => None,
        };
        match origin {
            // Absent `wait` is QMP's default, false; `-chardev` spells out
            // its own default (true for a server).
            Origin::Listen(l) => b.start_server(l, spec.wait.unwrap_or(false))?,
            Origin::Target(t) => b.start_client(t, reconnect)?,
            Origin::Connected(fd) => b
                .adopt(fd, true)
                .map_err(|e| ChardevError::io("Failed to set up socket", e))?,
            Origin::Nothing => {}
        }
        Ok(b)
    }

    /// A server on the address the server it replaces listens on: opened
    /// without binding; its listener comes with [`Backend::take_over`].
    pub(crate) fn open_to_take_over(
        id: &str,
        spec: &ChardevSocket,
        ctx: &OpenCtx,
    ) -> Result<SocketBackend> {
        let mut b = SocketBackend::unbound(id, spec, &ctx.objects)?;
        if let SocketAddressLegacy::Unix(u) = &spec.addr {
            b.disconnected = address::disconnected_unix(u, true);
        }
        b.endpoint = Endpoint::TakeOver(Box::new((spec.clone(), ctx.clone())));
        Ok(b)
    }

    /// The backend with its options checked and nothing opened.
    fn unbound(id: &str, spec: &ChardevSocket, objects: &ObjectStore) -> Result<SocketBackend> {
        validate(spec, objects)?;
        let server = spec.server.unwrap_or(true);
        let tls = TlsSetup::new(id, spec, objects, server)?.map(std::sync::Arc::new);
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
        let setup = ConnSetup {
            id: id.to_string(),
            tls,
            proto,
            proto_name,
            server,
            nodelay: spec.nodelay.unwrap_or(false),
            keep_alive: match &spec.addr {
                SocketAddressLegacy::Inet(i) => i.keep_alive.unwrap_or(false),
                _ => false,
            },
            is_unix: matches!(spec.addr, SocketAddressLegacy::Unix(_)),
        };
        let clients = match spec.clients {
            Some(n) if n > 1 => {
                let n = n as usize;
                let writers = spec.writers.map_or(n, |k| k as usize);
                Some(Clients::new(n, writers))
            }
            _ => None,
        };
        Ok(SocketBackend {
            id: id.to_string(),
            setup,
            endpoint: Endpoint::Connect(None),
            conn: None,
            conn_peer: (0, String::new()),
            clients,
            catch_up: None,
            catch_up_marker: Marker::default(),
            link: None,
            next_client: 1,
            unkept: Vec::new(),
            pending: Vec::new(),
            spec: server.then(|| Box::new(spec.clone())),
            disconnected: String::new(),
        })
    }

    /// Binds and listens (a server) or resolves where to connect (a
    /// client); returns that and QEMU's name of the backend with no peer.
    fn bind(&mut self, spec: &ChardevSocket, ctx: &OpenCtx) -> Result<(Origin, String)> {
        let server = self.setup.server;
        let proto_name = self.setup.proto_name;
        Ok(match &spec.addr {
            SocketAddressLegacy::Unix(u) => {
                let (abstract_, tight) = unix_parts(u);
                let addr = net::unix_addr(&u.path, abstract_, tight)
                    .map_err(|e| ChardevError::Invalid(crate::error::os_message(&e)))?;
                let name = address::disconnected_unix(u, server);
                if server {
                    (
                        Origin::Listen(listen_unix(&u.path, abstract_, &addr)?),
                        name,
                    )
                } else {
                    (Origin::Target(Target::Unix(addr, u.path.clone())), name)
                }
            }
            SocketAddressLegacy::Inet(i) => {
                let (ipv4, ipv6) = (i.ipv4.unwrap_or(false), i.ipv6.unwrap_or(false));
                if server {
                    let (l, bound) = listen_inet(&i.host, &i.port, i.to, ipv4, ipv6)?;
                    let name =
                        address::disconnected_inet(proto_name, bound.ip(), bound.port(), server);
                    (Origin::Listen(l), name)
                } else {
                    let name = address::disconnected_inet(proto_name, &i.host, &i.port, server);
                    let target = Target::Inet {
                        host: i.host.clone(),
                        port: i.port.clone(),
                        ipv4,
                        ipv6,
                    };
                    (Origin::Target(target), name)
                }
            }
            SocketAddressLegacy::Fd(w) if server && w.str.is_empty() => {
                (Origin::Nothing, format!("disconnected:fd:{}", ",server=on"))
            }
            SocketAddressLegacy::Fd(w) => {
                let fd = fdpass::socket_fd(&w.str, ctx.names.as_ref(), ctx.fd_numbers)?;
                self.setup.is_unix = fdpass::is_unix_socket(&fd);
                if server {
                    let name = address::disconnected_passed(&fd, proto_name, &w.str, server);
                    (Origin::Listen(Listener::from_passed(fd)?), name)
                } else {
                    // Used as the connection as it is, as QEMU does.
                    (Origin::Connected(fd), format!("disconnected:fd:{}", w.str))
                }
            }
            _ => unreachable!("refused by validate"),
        })
    }

    /// A server: with `wait`, accepts the first client on the caller's
    /// thread before it returns.
    fn start_server(&mut self, l: Listener, wait: bool) -> Result<()> {
        if let Some(cl) = &self.clients {
            l.allow_waiting(cl.max());
        }
        let first = if wait {
            log::info!("QEMU waiting for connection on: {}", self.disconnected);
            Some(l.accept_blocking()?)
        } else {
            None
        };
        self.endpoint = Endpoint::Listen(l);
        if let Some(fd) = first {
            // A websocket client must still shake hands: that is reported
            // as `Opened` later, like any later client.
            self.adopt(fd, true)
                .map_err(|e| ChardevError::io("Failed to set up socket", e))?;
        }
        Ok(())
    }

    /// A client: connects now on the caller's thread, or with `reconnect`
    /// in the background (failures are retried).
    fn start_client(&mut self, t: Target, reconnect: Option<Duration>) -> Result<()> {
        match reconnect {
            Some(every) => {
                let mut c = Connector::new(t, every);
                c.start();
                self.endpoint = Endpoint::Connect(Some(c));
            }
            None => {
                let fd = t.connect()?;
                self.adopt(fd, true)
                    .map_err(|e| ChardevError::io("Failed to set up socket", e))?;
            }
        }
        Ok(())
    }

    /// Takes a connected socket as the connection. `at_open`: it comes with
    /// the backend (see [`ConnSetup::connection`]).
    fn adopt(&mut self, fd: OwnedFd, at_open: bool) -> io::Result<()> {
        if let Some(cl) = self.clients.as_mut() {
            // Every client of a multi-client server reports `Opened`.
            cl.accept(fd, &self.setup);
            return Ok(());
        }
        let peer = peer_of(&fd);
        self.conn = Some(self.setup.connection(fd, at_open)?);
        self.conn_peer = (self.next_client, peer);
        self.next_client += 1;
        if let Endpoint::Connect(Some(c)) = &mut self.endpoint {
            c.connected();
        }
        Ok(())
    }

    /// A socket the endpoint produced after open (an accepted or a
    /// reconnected client) becomes the connection; a TLS server's client
    /// joins the pending handshakes first.
    fn adopt_new(&mut self, fd: OwnedFd) {
        let one_tls_server = matches!(self.endpoint, Endpoint::Listen(_))
            && self.setup.tls.is_some()
            && self.clients.is_none();
        let r = if one_tls_server {
            let peer = peer_of(&fd);
            self.setup.connection(fd, false).map(|c| {
                if self.pending.len() >= MAX_PENDING {
                    if let Some(i) = self.pending.iter().position(|p| !p.0.transport_ready()) {
                        let (old, _) = self.pending.remove(i);
                        log::warn!(
                            "{} dropped: too many TLS handshakes pending (at most {MAX_PENDING})",
                            old.who()
                        );
                        old.close();
                    }
                }
                self.pending.push((c, peer));
            })
        } else {
            self.adopt(fd, false)
        };
        let Err(e) = r else {
            return;
        };
        match &mut self.endpoint {
            Endpoint::Listen(_) => {
                log::warn!("chardev '{}': cannot use new connection: {e}", self.id)
            }
            Endpoint::Connect(c) => {
                log::warn!("chardev '{}': cannot use connection: {e}", self.id);
                if let Some(c) = c {
                    c.retry_later();
                }
            }
            Endpoint::TakeOver(_) => {}
        }
    }

    fn lost_connection(&mut self) {
        self.catch_up = None;
        if let Some(c) = self.conn.take() {
            c.close();
        }
        if let Endpoint::Connect(Some(c)) = &mut self.endpoint {
            c.retry_later();
        }
    }

    /// Drives the pending TLS handshakes, whether or not the chardev has a
    /// connection (so a stalled one meets its deadline); failed ones are
    /// dropped (the reason is logged), finished ones wait.
    fn drive_pending(&mut self, cx: &mut Context<'_>) {
        let mut i = 0;
        while i < self.pending.len() {
            match self.pending[i].0.poll_transport(cx) {
                Poll::Ready(false) => self.pending.remove(i).0.close(),
                Poll::Ready(true) | Poll::Pending => i += 1,
            }
        }
    }
}

impl SocketBackend {
    /// A multi-client server's turn: its clients' events, then new clients.
    fn poll_clients(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<BackendEvent> {
        loop {
            let Some(cl) = self.clients.as_mut() else {
                return Poll::Pending;
            };
            if let Poll::Ready(ev) = cl.poll_event(cx, buf, &self.setup) {
                return Poll::Ready(ev);
            }
            let next = match &mut self.endpoint {
                Endpoint::Listen(l) => l.poll_accept(cx, &self.id),
                _ => Poll::Pending,
            };
            match next {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(fd)) => cl.accept(fd, &self.setup),
                Poll::Ready(None) => {}
            }
        }
    }

    /// Sends the connection what it is owed from the history (a hand-over
    /// from a multi-client server) before new output; Ready once done. If
    /// the history turned over past it meanwhile, it skips ahead with the
    /// marker a client of many would get.
    fn poll_catch_up(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (Some(pos), Some(link), Some(c)) = (
            self.catch_up.as_mut(),
            self.link.as_ref(),
            self.conn.as_mut(),
        ) else {
            self.catch_up = None;
            return Poll::Ready(());
        };
        loop {
            if self.catch_up_marker.unstarted() {
                let lost = link.history.skip_lost(pos);
                if lost > 0 {
                    log::info!("chardev '{}': {lost} bytes of history skipped", self.id);
                    self.catch_up_marker.add(lost);
                }
            }
            match self.catch_up_marker.poll_send(|m| c.poll_write(cx, m)) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(false) => break,
                Poll::Ready(true) => {}
            }
            let r = link.history.send_from(pos, |s| {
                match c.poll_write(cx, &s[..s.len().min(CATCH_UP_CHUNK)]) {
                    Poll::Ready(Ok(n)) if n > 0 => Ok(n),
                    Poll::Ready(Err(_)) => Err(true),
                    _ => Err(false),
                }
            });
            match r {
                SendFrom::Sent(_) => {}
                SendFrom::Skipped(n) => {
                    log::info!("chardev '{}': {n} bytes of history skipped", self.id);
                    self.catch_up_marker.add(n);
                }
                SendFrom::Failed(false) => return Poll::Pending,
                SendFrom::Empty | SendFrom::Failed(true) => break,
            }
        }
        self.catch_up = None;
        self.catch_up_marker = Marker::default();
        Poll::Ready(())
    }

    /// Reports a handed-over client this backend cannot keep, and closes
    /// it.
    fn drop_handed(&self, c: Client, remaining: usize) {
        if c.conn.announced() {
            if let Some(l) = &self.link {
                l.events.push(RegistryEvent::ClientDisconnected {
                    id: l.id.clone(),
                    client: c.client,
                    peer: c.peer.clone(),
                    reason: "changed".into(),
                    clients: remaining,
                });
            }
        }
        c.conn.end();
    }

    /// Takes what the server this one replaces handed over.
    fn receive(&mut self, h: Handed) {
        if let (false, Some(a)) = (self.setup.is_unix, h.listener.local_inet()) {
            self.disconnected =
                address::disconnected_inet(self.setup.proto_name, a.ip(), a.port(), true);
        }
        h.listener
            .allow_waiting(self.clients.as_ref().map_or(1, Clients::max));
        self.endpoint = Endpoint::Listen(h.listener);
        self.next_client = self.next_client.max(h.next_client);
        let proto = self.setup.proto;
        let tls = self.setup.tls_key();
        let (keep, other): (Vec<_>, Vec<_>) = h
            .conns
            .into_iter()
            .partition(|(c, _)| c.conn.proto() == proto && c.conn.tls_key() == tls.as_ref());
        if !other.is_empty() {
            log::info!(
                "chardev '{}': {} client(s) to close: the new backend speaks another protocol \
                 or has another TLS setting",
                self.id,
                other.len()
            );
        }
        self.unkept.extend(other);
        let mut keep = keep.into_iter();
        if let Some(cl) = self.clients.as_mut() {
            cl.refused = h.refused;
            cl.next_client = cl.next_client.max(h.next_client);
            for (c, pos) in keep {
                cl.adopt(c, pos);
            }
        } else {
            // One connection: the oldest; it first gets the history it had
            // not read.
            if let Some((mut c, pos)) = keep.next() {
                let head = self.link.as_ref().map_or(0, |l| l.history.head());
                self.catch_up_marker = std::mem::take(&mut c.marker);
                let owes_marker = !self.catch_up_marker.is_none();
                self.catch_up = pos.filter(|&p| p < head || owes_marker);
                self.conn_peer = (c.client, c.peer);
                self.conn = Some(c.conn);
            }
            for (c, pos) in keep {
                if self.setup.tls.is_some()
                    && !c.conn.announced()
                    && self.pending.len() < MAX_PENDING
                {
                    // Still shaking hands: waits for the chardev as it did.
                    self.pending.push((c.conn, c.peer));
                } else {
                    self.unkept.push((c, pos));
                }
            }
        }
    }

    /// Closes the connections handed over that this backend cannot keep:
    /// it is in service now.
    fn close_unkept(&mut self) {
        let remaining = match &self.clients {
            Some(cl) => cl.served(),
            None => usize::from(self.conn.is_some()),
        };
        for (c, _) in std::mem::take(&mut self.unkept) {
            self.drop_handed(c, remaining);
        }
    }
}

impl Backend for SocketBackend {
    fn poll_event(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<BackendEvent> {
        if !self.unkept.is_empty() {
            self.close_unkept();
        }
        if self.clients.is_some() {
            return self.poll_clients(cx, buf);
        }
        if self.catch_up.is_some() {
            // Owed history goes out even while the chardev sends nothing new.
            let _ = self.poll_catch_up(cx);
        }
        self.drive_pending(cx);
        loop {
            if let Some(c) = self.conn.as_mut() {
                match c.poll_event(cx, buf) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(ConnEvent::Opened) => return Poll::Ready(BackendEvent::Opened),
                    Poll::Ready(ConnEvent::Input(n)) => return Poll::Ready(BackendEvent::Input(n)),
                    Poll::Ready(ConnEvent::Break) => return Poll::Ready(BackendEvent::Break),
                    Poll::Ready(ConnEvent::Closed) => {
                        let announced = c.announced();
                        self.lost_connection();
                        if announced {
                            return Poll::Ready(BackendEvent::Closed);
                        }
                        continue;
                    }
                }
            }
            // No connection: a pending TLS client that finished its
            // handshake, or the next client.
            if let Some(i) = self.pending.iter().position(|p| p.0.transport_ready()) {
                let (conn, peer) = self.pending.remove(i);
                self.conn = Some(conn);
                self.conn_peer = (self.next_client, peer);
                self.next_client += 1;
                continue;
            }
            let next = match &mut self.endpoint {
                Endpoint::Listen(l) => l.poll_accept(cx, &self.id),
                Endpoint::Connect(Some(c)) => c.poll_connect(cx, &self.id),
                Endpoint::Connect(None) | Endpoint::TakeOver(_) => Poll::Pending,
            };
            match next {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(fd)) => {
                    self.adopt_new(fd);
                    // A new pending handshake starts now.
                    self.drive_pending(cx);
                }
                Poll::Ready(None) => {}
            }
        }
    }

    fn take_msgfd(&mut self) -> Option<OwnedFd> {
        self.conn.as_mut().and_then(Conn::take_received)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if self.clients.is_some() {
            // Served from the history, into which the chardev puts it now.
            return Poll::Ready(Ok(data.len()));
        }
        if self.catch_up.is_some() && self.poll_catch_up(cx).is_pending() {
            return Poll::Pending;
        }
        match self.conn.as_mut() {
            // No peer: dropped, as QEMU (the chardev's history may keep it).
            None => Poll::Ready(Ok(data.len())),
            Some(c) => c.poll_write(cx, data),
        }
    }

    fn is_open(&self) -> bool {
        match &self.clients {
            Some(cl) => cl.is_open(),
            None => self.conn.as_ref().is_some_and(Conn::is_open),
        }
    }

    /// Ends the current connection as if the peer had gone (QEMU's
    /// `qemu_chr_fe_disconnect`, and what `yank` does): the peer sees the
    /// end at once; the next poll reports CLOSED, then a server waits for
    /// its next client and a client with `reconnect` connects again.
    fn disconnect(&mut self) {
        if let Some(cl) = self.clients.as_mut() {
            cl.disconnect_all();
        }
        if let Some(c) = self.conn.as_mut() {
            c.disconnect();
        }
    }

    /// A multi-client server: QEMU's name of its oldest client's
    /// connection, or of the listener while none is connected.
    fn filename(&self) -> String {
        let name = match &self.clients {
            Some(cl) => cl.filename(),
            None => self.conn.as_ref().and_then(Conn::filename),
        };
        match name {
            Some(name) => name.to_string(),
            None => self.disconnected.clone(),
        }
    }

    fn drops_output_when_closed(&self) -> bool {
        self.clients.is_none()
    }

    fn serves_from_history(&self) -> bool {
        self.clients.is_some()
    }

    fn link(&mut self, link: &BackendLink) {
        if let Some(cl) = self.clients.as_mut() {
            cl.link(link);
        }
        self.link = Some(link.clone());
    }

    fn hands_over_to(&self, spec: &ChardevBackend) -> bool {
        let (Some(old), ChardevBackend::Socket(new)) = (&self.spec, spec) else {
            return false;
        };
        let bound = match &self.endpoint {
            Endpoint::Listen(l) => l.local_inet().map(|a| a.port()),
            Endpoint::TakeOver(_) => None,
            Endpoint::Connect(_) => return false,
        };
        address::same_listen_address(old, bound, new)
    }

    fn takes_over(&self) -> bool {
        matches!(self.endpoint, Endpoint::TakeOver(_))
    }

    fn hand_over(&mut self) -> Option<HandOver> {
        if !matches!(self.endpoint, Endpoint::Listen(_)) {
            return None;
        }
        let Endpoint::Listen(listener) =
            std::mem::replace(&mut self.endpoint, Endpoint::Connect(None))
        else {
            return None;
        };
        let mut conns = match self.clients.as_mut() {
            Some(cl) => cl.hand_over(),
            None => {
                let head = self.link.as_ref().map_or(0, |l| l.history.head());
                let pos = self.catch_up.take().unwrap_or(head);
                let (client, peer) = std::mem::take(&mut self.conn_peer);
                let marker = std::mem::take(&mut self.catch_up_marker);
                self.conn
                    .take()
                    .map(|conn| {
                        let served = conn.announced().then_some(pos);
                        let mut c = Client::new(conn, client, peer);
                        c.marker = marker;
                        (c, served)
                    })
                    .into_iter()
                    .collect()
            }
        };
        // Clients still shaking hands go along, not served yet.
        for (conn, peer) in std::mem::take(&mut self.pending) {
            let n = self.next_client;
            self.next_client += 1;
            conns.push((Client::new(conn, n, peer), None));
        }
        // Connect order is number order.
        conns.append(&mut self.unkept);
        conns.sort_by_key(|(c, _)| c.client);
        let (next_client, refused) = match &self.clients {
            Some(cl) => (cl.next_client, cl.refused),
            None => (self.next_client, 0),
        };
        Some(HandOver(Box::new(Handed {
            listener,
            conns,
            next_client,
            refused,
        })))
    }

    fn take_over(&mut self, from: Option<HandOver>) -> Result<()> {
        let handed = from.and_then(|h| h.0.downcast::<Handed>().ok());
        if let Some(h) = handed {
            self.receive(*h);
            return Ok(());
        }
        // Nothing handed over: bind as opening would have.
        let Endpoint::TakeOver(to) = &self.endpoint else {
            return Ok(());
        };
        let (spec, ctx) = (**to).clone();
        let (origin, disconnected) = self.bind(&spec, &ctx)?;
        self.disconnected = disconnected;
        if let Origin::Listen(l) = origin {
            if let Some(cl) = &self.clients {
                l.allow_waiting(cl.max());
            }
            self.endpoint = Endpoint::Listen(l);
        }
        Ok(())
    }

    fn clients(&self) -> Option<ClientsInfo> {
        self.clients.as_ref().map(Clients::info)
    }

    /// The listener closes (and its socket file goes) now; a connection
    /// that owes its peer bytes is finished by the drain. A multi-client
    /// server's clients are closed.
    fn retire(self: Box<Self>) -> Option<Drain> {
        let mut this = *self;
        this.close_unkept();
        let SocketBackend { conn, clients, .. } = this;
        if let Some(cl) = clients {
            cl.retire();
        }
        conn.and_then(Conn::retire)
    }
}
