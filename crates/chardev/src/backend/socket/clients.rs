//! The clients of a multi-client server (`x-clients=N`, N > 1): every
//! client reads the chardev's history at its own offset (from the oldest
//! byte kept when it connects, then live output), so the backend takes all
//! output at once and no client holds back the guest or the others.
//!
//! Per client there is one offset and the connection's own small buffers
//! (a websocket frame, telnet's escaped bytes); output goes from the
//! history straight to the socket, whose kernel send buffer is capped
//! ([`CLIENT_SNDBUF`]). A client that stops reading lets that buffer fill
//! and is then passed over until it is writable again. If by then the history has turned over past its offset
//! (it missed bytes), it skips ahead to the oldest byte kept and is sent a
//! marker line, `\r\n[qchar: N bytes skipped]\r\n`, before the rest: the
//! overflow policy. The skip is also an event (`ClientSkipped`), once per
//! marker: skips that follow before the client reads the marker only add
//! to the marker's count (and to the client's `skipped` counter).
//!
//! Input: the first `x-writers` clients to connect are writers, whose input
//! goes to the frontend (round robin between them, each only as fast as the
//! frontend takes it); the rest are viewers, whose input is read and
//! dropped (counted). A writer's place is not passed on when it leaves; the
//! next client to connect gets it.
//!
//! A client beyond `x-clients` is accepted, told `qchar: too many clients`
//! (a websocket client: in an HTTP 503 reply) and closed. Under TLS it is
//! told inside the session, once its handshake is done (at most
//! [`MAX_REFUSING`] such handshakes at once, each bounded by
//! [`crate::tls::HANDSHAKE_TIMEOUT`]; beyond that the oldest is closed
//! untold). A client still shaking hands (TLS, websocket) holds its place
//! until a client comes that would be one too many: if the oldest still
//! shaking hands has been at it for [`HANDSHAKE_GRACE`], it is closed and
//! the new one takes its place, so clients that connect and stall keep
//! others out for a second at most, and a stray connect does not end a
//! real client's handshake.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use socket2::SockRef;

use super::conn::{Conn, ConnEvent, ConnSetup};
use crate::backend::net;
use crate::backend::{BackendEvent, BackendLink, LinkEvents};
use crate::history::{History, SendFrom};
use crate::registry::{ClientInfo, ClientsInfo, RegistryEvent};

/// Most output bytes handed to one client's connection at once.
const CHUNK: usize = 64 * 1024;
/// Input read (and dropped) from a viewer at once.
const VIEWER_CHUNK: usize = 4096;
/// Each client's kernel send buffer (SO_SNDBUF; the kernel doubles it for
/// its bookkeeping). Clients are served from the history, so a large buffer
/// gains nothing; capped, a client that stops reading holds little kernel
/// memory (TCP's autotuning would let it hold megabytes) and falls behind
/// in the history, where it shows, soon after it stops.
const CLIENT_SNDBUF: usize = 64 * 1024;
/// What a client beyond the limit is told.
pub(super) const TOO_MANY: &str = "qchar: too many clients\r\n";
/// Most refused TLS clients shaking hands at once, to be told why.
const MAX_REFUSING: usize = 16;
/// How long a client may shake hands (TLS, websocket) before a client
/// that would be one too many takes its place: far more than a real
/// handshake takes, far less than its deadline.
pub(super) const HANDSHAKE_GRACE: Duration = Duration::from_secs(1);

/// The marker line a client that skipped ahead is sent before the rest.
#[derive(Default)]
pub(super) struct Marker {
    /// Bytes skipped that it reports (0: no marker owed).
    count: u64,
    text: Vec<u8>,
    /// How much of `text` went out.
    sent: usize,
}

impl Marker {
    /// Adds `n` skipped bytes; true if this starts a new marker. Once part
    /// of the marker went out, it is left as it is (`n` is then lost from
    /// its count; the client's own counter keeps it).
    pub(super) fn add(&mut self, n: u64) -> bool {
        let first = self.count == 0;
        if self.sent == 0 {
            self.count += n;
            self.text = format!("\r\n[qchar: {} bytes skipped]\r\n", self.count).into_bytes();
        }
        first
    }

    /// Whether no marker is owed.
    pub(super) fn is_none(&self) -> bool {
        self.text.is_empty()
    }

    /// Whether nothing of it went out yet (more skips may still join it).
    pub(super) fn unstarted(&self) -> bool {
        self.sent == 0
    }

    /// Writes what is left of it through `write`; Ready(true) once it is
    /// all out (or none is owed), Ready(false) if the connection failed.
    pub(super) fn poll_send(
        &mut self,
        mut write: impl FnMut(&[u8]) -> Poll<std::io::Result<usize>>,
    ) -> Poll<bool> {
        while self.sent < self.text.len() {
            match write(&self.text[self.sent..]) {
                Poll::Ready(Ok(n)) if n > 0 => self.sent += n,
                Poll::Ready(_) => return Poll::Ready(false),
                Poll::Pending => return Poll::Pending,
            }
        }
        *self = Marker::default();
        Poll::Ready(true)
    }
}

/// Where a client's events go, and what it reads from.
struct Link {
    id: String,
    history: Arc<History>,
    events: Arc<LinkEvents>,
}

/// One client.
pub(super) struct Client {
    pub(super) conn: Conn,
    pub(super) client: u64,
    pub(super) peer: String,
    /// When it connected (its handshake began).
    since: Instant,
    /// It reported `Opened` (its handshake is done): it is served.
    active: bool,
    writer: bool,
    /// Its offset in the history.
    pub(super) pos: u64,
    /// A skip marker not fully sent yet.
    pub(super) marker: Marker,
    pub(super) sent: u64,
    pub(super) skipped: u64,
    pub(super) dropped_input: u64,
    /// Set when qchar ends it (`yank`): the reason its end is reported with.
    ended_by_us: bool,
}

impl Client {
    pub(super) fn new(conn: Conn, client: u64, peer: String) -> Client {
        Client {
            conn,
            client,
            peer,
            since: Instant::now(),
            active: false,
            writer: false,
            pos: 0,
            marker: Marker::default(),
            sent: 0,
            skipped: 0,
            dropped_input: 0,
            ended_by_us: false,
        }
    }

    /// Sends what it can of the history from its offset; never waits.
    fn serve(&mut self, cx: &mut Context<'_>, link: &Link) {
        loop {
            if self.marker.unstarted() {
                // Lost more while nothing of its marker went out yet: one
                // marker says it all.
                let lost = link.history.skip_lost(&mut self.pos);
                if lost > 0 {
                    self.note_skip(link, lost);
                }
            }
            let conn = &mut self.conn;
            if self
                .marker
                .poll_send(|m| conn.poll_write(cx, m))
                .is_pending()
            {
                return;
            }
            let r = link.history.send_from(&mut self.pos, |s| {
                let s = &s[..s.len().min(CHUNK)];
                match conn.poll_write(cx, s) {
                    Poll::Ready(Ok(n)) if n > 0 => Ok(n),
                    _ => Err(()),
                }
            });
            match r {
                SendFrom::Sent(n) => self.sent += n as u64,
                SendFrom::Skipped(n) => self.note_skip(link, n),
                SendFrom::Empty | SendFrom::Failed(()) => return,
            }
        }
    }

    /// It missed `n` bytes: its marker (not sent yet) says so. The first
    /// skip since its last marker went out is logged and an event; more
    /// skips before it reads again only grow the marker's count.
    fn note_skip(&mut self, link: &Link, n: u64) {
        self.skipped += n;
        if !self.marker.add(n) {
            return;
        }
        log::info!(
            "chardev '{}': client {} ({}) reads too slowly: {n} bytes skipped",
            link.id,
            self.client,
            self.peer
        );
        link.events.push(RegistryEvent::ClientSkipped {
            id: link.id.clone(),
            client: self.client,
            peer: self.peer.clone(),
            skipped: n,
        });
    }
}

/// The clients of one server; see the module documentation.
pub(super) struct Clients {
    max: usize,
    max_writers: usize,
    link: Option<Link>,
    list: Vec<Client>,
    /// Where the next input poll starts (round robin).
    next_input: usize,
    pub(super) next_client: u64,
    pub(super) refused: u64,
    /// Refused TLS clients shaking hands, to be told why once they can
    /// read it; oldest first.
    refusing: Vec<Conn>,
    scratch: Box<[u8]>,
}

impl Clients {
    pub(super) fn new(max: usize, max_writers: usize) -> Clients {
        Clients {
            max,
            max_writers,
            link: None,
            list: Vec::new(),
            next_input: 0,
            next_client: 1,
            refused: 0,
            refusing: Vec::new(),
            scratch: vec![0u8; VIEWER_CHUNK].into_boxed_slice(),
        }
    }

    /// `x-clients`.
    pub(super) fn max(&self) -> usize {
        self.max
    }

    pub(super) fn link(&mut self, link: &BackendLink) {
        self.link = Some(Link {
            id: link.id.clone(),
            history: link.history.clone(),
            events: link.events.clone(),
        });
    }

    fn id(&self) -> &str {
        self.link.as_ref().map_or("", |l| l.id.as_str())
    }

    fn head(&self) -> u64 {
        self.link.as_ref().map_or(0, |l| l.history.head())
    }

    fn active(&self) -> usize {
        self.list.iter().filter(|c| c.active).count()
    }

    /// Clients served now.
    pub(super) fn served(&self) -> usize {
        self.active()
    }

    fn writers(&self) -> usize {
        self.list.iter().filter(|c| c.writer).count()
    }

    /// Whether any client is served.
    pub(super) fn is_open(&self) -> bool {
        self.list.iter().any(|c| c.active)
    }

    /// QEMU's name of the oldest served client's connection.
    pub(super) fn filename(&self) -> Option<&str> {
        self.list
            .iter()
            .filter(|c| c.active)
            .find_map(|c| c.conn.filename())
    }

    /// A client accepted by the listener: served once it reports `Opened`,
    /// or refused if there are `max` already.
    pub(super) fn accept(&mut self, fd: OwnedFd, setup: &ConnSetup) {
        let peer = peer_of(&fd);
        if self.list.len() >= self.max {
            // A client still shaking hands after HANDSHAKE_GRACE gives its
            // place up to a new one: clients that connect and stall (TLS,
            // websocket) cannot keep others out for the handshake's whole
            // deadline, and a connect that comes while a real client shakes
            // hands (a port scan, a health check) does not end it.
            let now = Instant::now();
            if let Some(i) = self
                .list
                .iter()
                .position(|c| !c.active && now.duration_since(c.since) >= HANDSHAKE_GRACE)
            {
                let c = self.list.remove(i);
                if i < self.next_input {
                    self.next_input -= 1;
                }
                log::warn!(
                    "chardev '{}': client {} ({}) closed: still shaking hands after {} ms when {peer} came and there are {} clients (x-clients)",
                    self.id(),
                    c.client,
                    c.peer,
                    now.duration_since(c.since).as_millis(),
                    self.max
                );
                c.conn.close();
            }
        }
        if self.list.len() >= self.max {
            self.refused += 1;
            log::warn!(
                "chardev '{}': client {peer} refused: too many clients (x-clients={})",
                self.id(),
                self.max
            );
            if setup.tls.is_some() {
                // Told inside TLS once its handshake is done.
                match setup.connection(fd, false) {
                    Ok(c) => {
                        if self.refusing.len() >= MAX_REFUSING {
                            self.refusing.remove(0).close();
                        }
                        self.refusing.push(c);
                    }
                    Err(e) => {
                        log::warn!("chardev '{}': cannot use new connection: {e}", self.id())
                    }
                }
                return;
            }
            // One attempt; a new connection's send buffer takes it.
            let _ = net::send(std::os::fd::AsFd::as_fd(&fd), too_many(setup).as_bytes());
            let _ = net::shutdown(std::os::fd::AsFd::as_fd(&fd));
            return;
        }
        let _ = SockRef::from(&fd).set_send_buffer_size(CLIENT_SNDBUF);
        match setup.connection(fd, false) {
            Ok(conn) => {
                let n = self.next_client;
                self.next_client += 1;
                self.list.push(Client::new(conn, n, peer));
            }
            Err(e) => log::warn!("chardev '{}': cannot use new connection: {e}", self.id()),
        }
    }

    /// Adds a client handed over by the backend this one replaces, in its
    /// connect order: `pos` is its offset if it was being served.
    pub(super) fn adopt(&mut self, mut c: Client, pos: Option<u64>) {
        c.active = c.conn.announced();
        if c.active {
            c.pos = pos.unwrap_or_else(|| self.head());
            c.writer = self.writers() < self.max_writers;
        }
        self.list.push(c);
    }

    /// Takes the clients out, oldest first, for the backend that replaces
    /// this one: each with its offset if it was being served.
    pub(super) fn hand_over(&mut self) -> Vec<(Client, Option<u64>)> {
        self.list
            .drain(..)
            .map(|c| {
                let pos = c.active.then_some(c.pos);
                (c, pos)
            })
            .collect()
    }

    /// Ends a client's connection as if its peer had gone.
    pub(super) fn disconnect_all(&mut self) {
        for c in &mut self.list {
            c.ended_by_us = true;
            c.conn.disconnect();
        }
    }

    /// Reports a client that goes for `reason`.
    fn gone(&self, c: &Client, reason: &str) {
        if !c.active {
            return;
        }
        log::info!(
            "chardev '{}': client {} ({}) {reason}",
            self.id(),
            c.client,
            c.peer
        );
        if let Some(l) = &self.link {
            l.events.push(RegistryEvent::ClientDisconnected {
                id: l.id.clone(),
                client: c.client,
                peer: c.peer.clone(),
                reason: reason.to_string(),
                clients: self.active(),
            });
        }
    }

    /// The backend is retired: every client goes, told so (what a
    /// connection owes its peer gets one attempt, then is dropped).
    pub(super) fn retire(mut self) {
        while let Some(c) = self.list.pop() {
            self.gone(&c, "retired");
            c.conn.end();
        }
    }

    /// Drives the refused TLS clients' handshakes; each is told why once
    /// its handshake is done, and closed.
    fn poll_refusing(&mut self, cx: &mut Context<'_>, setup: &ConnSetup) {
        let mut i = 0;
        while i < self.refusing.len() {
            match self.refusing[i].poll_transport(cx) {
                Poll::Pending => i += 1,
                Poll::Ready(false) => self.refusing.remove(i).close(),
                Poll::Ready(true) => self.refusing.remove(i).refuse(too_many(setup).as_bytes()),
            }
        }
    }

    /// Serves output, then reports the next event: a writer's input, a
    /// break, the first client served (`Opened`) or the last one gone
    /// (`Closed`).
    pub(super) fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        setup: &ConnSetup,
    ) -> Poll<BackendEvent> {
        if !self.refusing.is_empty() {
            self.poll_refusing(cx, setup);
        }
        if let Some(link) = &self.link {
            for c in self.list.iter_mut().filter(|c| c.active) {
                c.serve(cx, link);
            }
        }
        let n = self.list.len();
        let mut k = 0;
        while k < n.min(self.list.len()) {
            let i = (self.next_input + k) % self.list.len();
            let c = &mut self.list[i];
            let ev = if c.writer {
                c.conn.poll_event(cx, buf)
            } else {
                c.conn.poll_event(cx, &mut self.scratch)
            };
            match ev {
                Poll::Pending => k += 1,
                Poll::Ready(ConnEvent::Opened) => {
                    let was_open = self.is_open();
                    let start = self.link.as_ref().map_or(0, |l| l.history.start());
                    let writer = self.writers() < self.max_writers;
                    let c = &mut self.list[i];
                    c.active = true;
                    c.writer = writer;
                    c.pos = start;
                    let (client, peer) = (c.client, c.peer.clone());
                    let link = self.link.as_ref();
                    if let Some(link) = link {
                        self.list[i].serve(cx, link);
                    }
                    log::info!(
                        "chardev '{}': client {client} ({peer}) connected{}",
                        self.id(),
                        if writer { "" } else { " as a viewer" }
                    );
                    if let Some(l) = &self.link {
                        l.events.push(RegistryEvent::ClientConnected {
                            id: l.id.clone(),
                            client,
                            peer,
                            writer,
                            clients: self.active(),
                        });
                    }
                    if !was_open {
                        return Poll::Ready(BackendEvent::Opened);
                    }
                }
                Poll::Ready(ConnEvent::Input(got)) => {
                    if c.writer {
                        self.next_input = i + 1;
                        return Poll::Ready(BackendEvent::Input(got));
                    }
                    c.dropped_input += got as u64;
                }
                Poll::Ready(ConnEvent::Break) => {
                    if c.writer {
                        self.next_input = i + 1;
                        return Poll::Ready(BackendEvent::Break);
                    }
                }
                Poll::Ready(ConnEvent::Closed) => {
                    let c = self.list.remove(i);
                    let reason = if c.ended_by_us {
                        "disconnected"
                    } else {
                        "closed"
                    };
                    let was_active = c.active;
                    self.gone(&c, reason);
                    c.conn.close();
                    if was_active && !self.is_open() {
                        return Poll::Ready(BackendEvent::Closed);
                    }
                    if self.list.is_empty() {
                        break;
                    }
                }
            }
        }
        Poll::Pending
    }

    /// `x-query-chardev-clients`.
    pub(super) fn info(&self) -> ClientsInfo {
        let head = self.head();
        ClientsInfo {
            max_clients: self.max as u64,
            max_writers: self.max_writers as u64,
            refused: self.refused,
            clients: self
                .list
                .iter()
                .map(|c| ClientInfo {
                    client: c.client,
                    peer: c.peer.clone(),
                    writer: c.writer,
                    handshake: !c.active,
                    sent: c.sent,
                    skipped: c.skipped,
                    dropped_input: c.dropped_input,
                    behind: if c.active {
                        head.saturating_sub(c.pos)
                    } else {
                        0
                    },
                })
                .collect(),
        }
    }
}

/// What a client beyond the limit is sent: the line, in an HTTP 503 reply
/// for a websocket client.
fn too_many(setup: &ConnSetup) -> String {
    if setup.proto.websocket {
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{TOO_MANY}",
            TOO_MANY.len()
        )
    } else {
        TOO_MANY.to_string()
    }
}

/// Where a connected socket's peer is: `127.0.0.1:50000`, or `unix`.
pub(super) fn peer_of(fd: &OwnedFd) -> String {
    match SockRef::from(fd).peer_addr() {
        Ok(a) => match a.as_socket() {
            Some(sa) => net::host_port(&sa),
            None => "unix".into(),
        },
        Err(_) => "unknown".into(),
    }
}
