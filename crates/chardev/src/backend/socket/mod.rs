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

mod address;
mod conn;
mod listen;

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::task::JoinHandle;

use self::address::{unix_parts, Target};
use self::conn::{Conn, ConnEvent, ConnSetup, Proto};
use self::listen::{listen_inet, listen_unix, Listener, ACCEPT_RETRY};
use super::net;
use super::{Backend, BackendEvent, Drain};
use crate::error::{ChardevError, Result};
use crate::spec::{ChardevSocket, SocketAddressLegacy};

pub(crate) use self::address::validate;

/// The `socket` backend.
pub(crate) struct SocketBackend {
    id: String,
    setup: ConnSetup,
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
            setup: ConnSetup {
                proto,
                proto_name,
                server,
                nodelay: spec.nodelay.unwrap_or(false),
                keep_alive: false,
                is_unix: matches!(spec.addr, SocketAddressLegacy::Unix(_)),
            },
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
                b.setup.keep_alive = i.keep_alive.unwrap_or(false);
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

    /// Takes a connected socket as the connection. `at_open`: it comes with
    /// the backend (see [`ConnSetup::connection`]).
    fn adopt(&mut self, fd: OwnedFd, at_open: bool) -> io::Result<()> {
        self.conn = Some(self.setup.connection(fd, at_open)?);
        self.failure_logged = false;
        Ok(())
    }

    fn start_connect(&mut self) {
        if let Some(t) = self.target.clone() {
            self.connecting = Some(tokio::task::spawn_blocking(move || t.connect()));
        }
    }

    fn lost_connection(&mut self) {
        if let Some(c) = self.conn.take() {
            c.close();
        }
        if !self.setup.server && self.reconnect.is_some() {
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
                        let announced = c.announced();
                        self.lost_connection();
                        if announced {
                            return Poll::Ready(BackendEvent::Closed);
                        }
                        continue;
                    }
                }
            }
            let r = if self.setup.server {
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
