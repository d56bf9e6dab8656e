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
//! - `transport.rs`: the byte stream under the framing (the plain socket).
//! - `clients.rs`: the clients of a multi-client server (`x-clients`),
//!   each served from the chardev's history at its own offset.
//! - this file: the backend, which takes connected sockets from its
//!   endpoint (listener or connector) and holds the one connection (or the
//!   clients), and hands its listener and connections to a server that
//!   replaces it on the same address.
//!
//! Hand-over (a qchar improvement): a change to a server spec listening on
//! the address this server listens on opens the new backend without
//! binding ([`SocketBackend::open_to_take_over`]); when it is installed it
//! takes the listener and the connected clients over, so clients stay
//! attached while options change. Clients that speak another framing than
//! the new spec's are closed. A client handed to a one-client server
//! first gets the history it had not read yet. `wait=on` is not waited
//! for then: the listener is live already.

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
use self::clients::{peer_of, Client, Clients};
use self::conn::{Conn, ConnEvent, ConnSetup, Proto};
use self::connect::Connector;
use self::listen::{listen_inet, listen_unix, Listener};
use super::net;
use super::websocket::WsDialect;
use super::{Backend, BackendEvent, BackendLink, Drain, HandOver};
use crate::error::{ChardevError, Result};
use crate::history::SendFrom;
use crate::registry::{ClientsInfo, RegistryEvent};
use crate::spec::{ChardevBackend, ChardevSocket, SocketAddressLegacy};

pub(crate) use self::address::validate;

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
    TakeOver(Box<ChardevSocket>),
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
    /// `query-chardev` filename while no peer is connected.
    disconnected: String,
}

/// Most history bytes handed to a catching-up connection at once.
const CATCH_UP_CHUNK: usize = 64 * 1024;

impl SocketBackend {
    /// Opens the socket: binds and listens (and with `wait=on` accepts the
    /// first client), or connects.
    pub(crate) fn open(id: &str, spec: &ChardevSocket) -> Result<SocketBackend> {
        let mut b = SocketBackend::unbound(id, spec)?;
        let (origin, disconnected) = b.bind(spec)?;
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
        }
        Ok(b)
    }

    /// A server on the address the server it replaces listens on: opened
    /// without binding; its listener comes with [`Backend::take_over`].
    pub(crate) fn open_to_take_over(id: &str, spec: &ChardevSocket) -> Result<SocketBackend> {
        let mut b = SocketBackend::unbound(id, spec)?;
        if let SocketAddressLegacy::Unix(u) = &spec.addr {
            b.disconnected = address::disconnected_unix(u, true);
        }
        b.endpoint = Endpoint::TakeOver(Box::new(spec.clone()));
        Ok(b)
    }

    /// The backend with its options checked and nothing opened.
    fn unbound(id: &str, spec: &ChardevSocket) -> Result<SocketBackend> {
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
        let setup = ConnSetup {
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
            link: None,
            next_client: 1,
            unkept: Vec::new(),
            spec: server.then(|| Box::new(spec.clone())),
            disconnected: String::new(),
        })
    }

    /// Binds and listens (a server) or resolves where to connect (a
    /// client); returns that and QEMU's name of the backend with no peer.
    fn bind(&self, spec: &ChardevSocket) -> Result<(Origin, String)> {
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
    /// reconnected client) becomes the connection.
    fn adopt_new(&mut self, fd: OwnedFd) {
        let Err(e) = self.adopt(fd, false) else {
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
}

impl SocketBackend {
    /// A multi-client server's turn: its clients' events, then new clients.
    fn poll_clients(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<BackendEvent> {
        loop {
            let Some(cl) = self.clients.as_mut() else {
                return Poll::Pending;
            };
            if let Poll::Ready(ev) = cl.poll_event(cx, buf) {
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
    /// from a multi-client server) before new output; Ready once done.
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
                    log::info!("chardev '{}': {n} bytes of history skipped", self.id)
                }
                SendFrom::Failed(false) => return Poll::Pending,
                SendFrom::Empty | SendFrom::Failed(true) => break,
            }
        }
        self.catch_up = None;
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
        c.conn.close();
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
        let (keep, other): (Vec<_>, Vec<_>) = h
            .conns
            .into_iter()
            .partition(|(c, _)| c.conn.proto() == proto);
        if !other.is_empty() {
            log::info!(
                "chardev '{}': {} client(s) to close: the new backend speaks another protocol",
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
            if let Some((c, pos)) = keep.next() {
                let head = self.link.as_ref().map_or(0, |l| l.history.head());
                self.catch_up = pos.filter(|&p| p < head);
                self.conn_peer = (c.client, c.peer);
                self.conn = Some(c.conn);
            }
            self.unkept.extend(keep);
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
            // No connection: wait for the next one.
            let next = match &mut self.endpoint {
                Endpoint::Listen(l) => l.poll_accept(cx, &self.id),
                Endpoint::Connect(Some(c)) => c.poll_connect(cx, &self.id),
                Endpoint::Connect(None) | Endpoint::TakeOver(_) => Poll::Pending,
            };
            match next {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(fd)) => self.adopt_new(fd),
                Poll::Ready(None) => {}
            }
        }
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
            // No peer: dropped, as QEMU (the chardev's backlog may keep it).
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
                self.conn
                    .take()
                    .map(|conn| {
                        let served = conn.announced().then_some(pos);
                        (Client::new(conn, client, peer), served)
                    })
                    .into_iter()
                    .collect()
            }
        };
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
        let Endpoint::TakeOver(spec) = &self.endpoint else {
            return Ok(());
        };
        let spec = spec.clone();
        let (origin, disconnected) = self.bind(&spec)?;
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
