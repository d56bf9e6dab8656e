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
//! - this file: the backend, which takes connected sockets from its
//!   endpoint (listener or connector) and holds the one connection, and a
//!   TLS server's clients still shaking hands.
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
//! logs none).

mod address;
mod conn;
mod connect;
mod listen;
mod transport;

use std::io;
use std::os::fd::OwnedFd;
use std::task::{Context, Poll};
use std::time::Duration;

use self::address::{unix_parts, Target};
use self::conn::{Conn, ConnEvent, ConnSetup, Proto};
use self::connect::Connector;
use self::listen::{listen_inet, listen_unix, Listener};
use self::transport::TlsSetup;
use super::net;
use super::{Backend, BackendEvent, Drain};
use crate::error::{ChardevError, Result};
use crate::spec::{ChardevSocket, SocketAddressLegacy};
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
}

/// What a socket address opened to, before the backend starts.
enum Origin {
    /// A server's listening socket.
    Listen(Listener),
    /// Where a client connects.
    Target(Target),
}

/// The `socket` backend.
pub(crate) struct SocketBackend {
    id: String,
    setup: ConnSetup,
    endpoint: Endpoint,
    /// The connected peer; a server takes the next client once it is gone.
    conn: Option<Conn>,
    /// A TLS server's clients shaking hands, or done and waiting for the
    /// chardev, oldest first.
    pending: Vec<Conn>,
    /// `query-chardev` filename while no peer is connected.
    disconnected: String,
}

impl SocketBackend {
    /// Opens the socket: binds and listens (and with `wait=on` accepts the
    /// first client), or connects.
    pub(crate) fn open(
        id: &str,
        spec: &ChardevSocket,
        objects: &ObjectStore,
    ) -> Result<SocketBackend> {
        validate(spec, objects)?;
        let server = spec.server.unwrap_or(true);
        let tls = TlsSetup::new(id, spec, objects, server)?.map(std::sync::Arc::new);
        let telnet_opt = spec.telnet.unwrap_or(false);
        let websocket = spec.websocket.unwrap_or(false);
        // As QEMU: only a server speaks telnet; a client just says so.
        let proto = Proto {
            telnet: telnet_opt && server,
            websocket,
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
        let mut setup = ConnSetup {
            id: id.to_string(),
            tls,
            proto,
            proto_name,
            server,
            nodelay: spec.nodelay.unwrap_or(false),
            keep_alive: false,
            is_unix: matches!(spec.addr, SocketAddressLegacy::Unix(_)),
        };
        let (origin, disconnected) = match &spec.addr {
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
                setup.keep_alive = i.keep_alive.unwrap_or(false);
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
            _ => unreachable!("refused by validate"),
        };
        let mut b = SocketBackend {
            id: id.to_string(),
            setup,
            endpoint: Endpoint::Connect(None),
            conn: None,
            pending: Vec::new(),
            disconnected,
        };
        match origin {
            // Absent `wait` is QMP's default, false; `-chardev` spells out
            // its own default (true for a server).
            Origin::Listen(l) => b.start_server(l, spec.wait.unwrap_or(false))?,
            Origin::Target(t) => b.start_client(t, reconnect)?,
        }
        Ok(b)
    }

    /// A server: with `wait`, accepts the first client on the caller's
    /// thread before it returns.
    fn start_server(&mut self, l: Listener, wait: bool) -> Result<()> {
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
        self.conn = Some(self.setup.connection(fd, at_open)?);
        if let Endpoint::Connect(Some(c)) = &mut self.endpoint {
            c.connected();
        }
        Ok(())
    }

    /// A socket the endpoint produced after open (an accepted or a
    /// reconnected client) becomes the connection; a TLS server's client
    /// joins the pending handshakes first.
    fn adopt_new(&mut self, fd: OwnedFd) {
        let r = if matches!(self.endpoint, Endpoint::Listen(_)) && self.setup.tls.is_some() {
            self.setup.connection(fd, false).map(|c| {
                if self.pending.len() >= MAX_PENDING {
                    if let Some(i) = self.pending.iter().position(|p| !p.transport_ready()) {
                        let old = self.pending.remove(i);
                        log::warn!(
                            "{} dropped: too many TLS handshakes pending (at most {MAX_PENDING})",
                            old.who()
                        );
                        old.close();
                    }
                }
                self.pending.push(c);
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
        }
    }

    fn lost_connection(&mut self) {
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
            match self.pending[i].poll_transport(cx) {
                Poll::Ready(false) => self.pending.remove(i).close(),
                Poll::Ready(true) | Poll::Pending => i += 1,
            }
        }
    }
}

impl Backend for SocketBackend {
    fn poll_event(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<BackendEvent> {
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
            if let Some(i) = self.pending.iter().position(Conn::transport_ready) {
                self.conn = Some(self.pending.remove(i));
                continue;
            }
            let next = match &mut self.endpoint {
                Endpoint::Listen(l) => l.poll_accept(cx, &self.id),
                Endpoint::Connect(Some(c)) => c.poll_connect(cx, &self.id),
                Endpoint::Connect(None) => Poll::Pending,
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
            c.disconnect();
        }
    }

    fn filename(&self) -> String {
        match self.conn.as_ref().and_then(Conn::filename) {
            Some(name) => name.to_string(),
            None => self.disconnected.clone(),
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
