//! The clients of a multi-client server (`x-clients=N`, N > 1): every
//! client reads the chardev's history at its own offset (from the oldest
//! byte kept when it connects, then live output), so the backend takes all
//! output at once and no client holds back the guest or the others.
//!
//! Per client there is one offset and the connection's own small buffers
//! (a websocket frame, telnet's escaped bytes); output goes from the
//! history straight to the socket. A client that stops reading lets the
//! kernel's socket buffer fill and is then passed over until it is
//! writable again. If by then the history has turned over past its offset
//! (it missed bytes), it skips ahead to the oldest byte kept and is sent a
//! marker line, `\r\n[qchar: N bytes skipped]\r\n`, before the rest: the
//! overflow policy; the skip is also an event (`ClientSkipped`).
//!
//! Input: the first `x-writers` clients to connect are writers, whose input
//! goes to the frontend (round robin between them, each only as fast as the
//! frontend takes it); the rest are viewers, whose input is read and
//! dropped (counted). A writer's place is not passed on when it leaves; the
//! next client to connect gets it.
//!
//! A client beyond `x-clients` is accepted, told `qchar: too many clients`
//! (a websocket client: in an HTTP 503 reply) and closed.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::{Context, Poll};

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
/// What a client beyond the limit is told.
pub(super) const TOO_MANY: &str = "qchar: too many clients\r\n";

/// The marker a client that skipped ahead gets before the rest.
pub(super) fn skip_marker(n: u64) -> Vec<u8> {
    format!("\r\n[qchar: {n} bytes skipped]\r\n").into_bytes()
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
    /// It reported `Opened` (its handshake is done): it is served.
    active: bool,
    writer: bool,
    /// Its offset in the history.
    pub(super) pos: u64,
    /// A skip marker not fully sent yet, and the bytes it reports.
    marker: Vec<u8>,
    marker_pos: usize,
    marker_skip: u64,
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
            active: false,
            writer: false,
            pos: 0,
            marker: Vec::new(),
            marker_pos: 0,
            marker_skip: 0,
            sent: 0,
            skipped: 0,
            dropped_input: 0,
            ended_by_us: false,
        }
    }

    /// Sends what it can of the history from its offset; never waits.
    fn serve(&mut self, cx: &mut Context<'_>, link: &Link) {
        loop {
            if self.marker_pos == 0 {
                // Lost more while nothing of its marker went out yet: one
                // marker says it all.
                let lost = link.history.skip_lost(&mut self.pos);
                if lost > 0 {
                    self.note_skip(link, lost);
                }
            }
            if self.marker_pos < self.marker.len() {
                match self.conn.poll_write(cx, &self.marker[self.marker_pos..]) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        self.marker_pos += n;
                        if self.marker_pos == self.marker.len() {
                            self.marker = Vec::new();
                            self.marker_pos = 0;
                            self.marker_skip = 0;
                        }
                        continue;
                    }
                    _ => return,
                }
            }
            let conn = &mut self.conn;
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

    /// It missed `n` bytes: its marker (not sent yet) says so, and an event.
    fn note_skip(&mut self, link: &Link, n: u64) {
        self.skipped += n;
        self.marker_skip += n;
        self.marker = skip_marker(self.marker_skip);
        self.marker_pos = 0;
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
            self.refused += 1;
            log::warn!(
                "chardev '{}': client {peer} refused: too many clients (x-clients={})",
                self.id(),
                self.max
            );
            let msg = if setup.proto.websocket {
                format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{TOO_MANY}",
                    TOO_MANY.len()
                )
            } else {
                TOO_MANY.to_string()
            };
            // One attempt; a new connection's send buffer takes it.
            let _ = net::send(std::os::fd::AsFd::as_fd(&fd), msg.as_bytes());
            let _ = net::shutdown(std::os::fd::AsFd::as_fd(&fd));
            return;
        }
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

    /// The backend is retired: every client goes (what a connection owes
    /// its peer is dropped with it).
    pub(super) fn retire(mut self) {
        while let Some(c) = self.list.pop() {
            self.gone(&c, "retired");
            c.conn.close();
        }
    }

    /// Serves output, then reports the next event: a writer's input, a
    /// break, the first client served (`Opened`) or the last one gone
    /// (`Closed`).
    pub(super) fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<BackendEvent> {
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
