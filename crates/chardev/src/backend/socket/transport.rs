//! A connection's byte stream: what its framing (telnet, websocket) reads
//! from and writes to: the plain socket, or a TLS session over it
//! (`tls-creds`). The connection calls nothing else for I/O, so the framing
//! runs inside TLS as it runs over the socket (QEMU 7.2 writes its telnet
//! options beside the session instead, in clear text). A stream reports
//! when it carries data (`poll_ready`: a TLS handshake and QEMU's checks
//! after it, bounded by [`crate::tls::HANDSHAKE_TIMEOUT`]), counts what it
//! buffered as written and sends it in `poll_flush`, and says whether it
//! still owes its peer anything (`owes`).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::backend::net::{self, SockIo};
use crate::error::{ChardevError, Result};
use crate::spec::{ChardevSocket, SocketAddressLegacy};
use crate::tls::session::RawIo;
use crate::tls::{self, ObjectStore, TlsSession, X509Creds};

/// The stream under a connection's framing.
pub(super) enum Transport {
    /// Bytes go to and come from the socket as they are.
    Plain(SockIo),
    /// A TLS session over the socket.
    Tls(Box<TlsStream>),
}

/// A TLS session and its socket.
pub(super) struct TlsStream {
    io: SockIo,
    session: TlsSession,
}

impl RawIo for SockIo {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            match self.poll_recv(cx, buf) {
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            match self.poll_send(cx, buf) {
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
}

impl Transport {
    /// The connected socket itself, registered with the reactor.
    pub(super) fn plain(fd: OwnedFd) -> io::Result<Transport> {
        Ok(Transport::Plain(SockIo::new(fd)?))
    }

    /// `session` over the connected socket; it carries data once its
    /// handshake is done.
    pub(super) fn tls(fd: OwnedFd, session: TlsSession) -> io::Result<Transport> {
        Ok(Transport::Tls(Box::new(TlsStream {
            io: SockIo::new(fd)?,
            session,
        })))
    }

    /// Whether it carries data yet. A plain socket does from the start.
    pub(super) fn is_ready(&self) -> bool {
        match self {
            Transport::Plain(_) => true,
            Transport::Tls(t) => t.session.is_open(),
        }
    }

    /// Drives what comes before data (a handshake) until it carries data.
    /// An error ends the connection; its text is the reason, worded for a
    /// log.
    pub(super) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Plain(_) => Poll::Ready(Ok(())),
            Transport::Tls(t) => t
                .session
                .poll_handshake(cx, &mut t.io)
                .map_err(io::Error::other),
        }
    }

    /// Reads what is there; `Ok(0)` is the end of the stream.
    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self {
            Transport::Plain(s) => s.poll_recv(cx, buf),
            Transport::Tls(t) => t.session.poll_read(cx, &mut t.io, buf),
        }
    }

    /// Takes what it can of `data` now. Bytes it takes count as sent; what
    /// it keeps of them goes out in [`Transport::poll_flush`].
    pub(super) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self {
            Transport::Plain(s) => s.poll_send(cx, data),
            Transport::Tls(t) => t.session.poll_write(cx, &mut t.io, data),
        }
    }

    /// Sends what it took and still keeps; `Ready(Ok)` once it keeps
    /// nothing. A plain socket keeps nothing.
    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Plain(_) => Poll::Ready(Ok(())),
            Transport::Tls(t) => t.session.poll_flush(cx, &mut t.io),
        }
    }

    /// Whether it keeps bytes its peer has not got yet.
    pub(super) fn owes(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => t.session.has_pending_output(),
        }
    }

    /// Tells the peer the stream ends here, after what was sent (TLS's
    /// close_notify; nothing for a plain socket, whose close says it).
    pub(super) fn close_notify(&mut self) {
        if let Transport::Tls(t) = self {
            if t.session.is_open() {
                t.session.send_close_notify();
            }
        }
    }

    /// One attempt to send `data` (and what the stream keeps) that never
    /// waits, for a connection that is closing.
    pub(super) fn write_now(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => net::send(s.raw(), data),
            Transport::Tls(t) => {
                let waker = std::task::Waker::noop();
                let mut cx = Context::from_waker(waker);
                let n = match t.session.poll_write(&mut cx, &mut t.io, data) {
                    Poll::Ready(r) => r?,
                    Poll::Pending => 0,
                };
                let _ = t.session.poll_flush(&mut cx, &mut t.io);
                Ok(n)
            }
        }
    }

    /// Ends both directions: the peer sees the end at once, and reads here
    /// see it too.
    pub(super) fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => net::shutdown(s.raw()),
            Transport::Tls(_) => {
                self.close_notify();
                let _ = self.write_now(&[]);
                match self {
                    Transport::Tls(t) => net::shutdown(t.io.raw()),
                    Transport::Plain(_) => unreachable!(),
                }
            }
        }
    }
}

/// What a backend with `tls-creds` makes each connection's TLS session
/// from. The credentials and the authorization object are looked up by id
/// for every new connection, so objects replaced at run time (`object-del`
/// then `object-add`) apply to the next connection; credentials that are
/// gone, or that the id now names wrongly, leave the last good ones in use.
pub(super) struct TlsSetup {
    id: String,
    store: ObjectStore,
    creds_id: String,
    authz: Option<String>,
    server: bool,
    /// A client's `host=`, checked against the server's certificate; none
    /// over a unix socket (only the chain is checked there).
    host: Option<String>,
    last: Mutex<Arc<X509Creds>>,
}

impl TlsSetup {
    /// Resolves the credentials as QEMU does when it opens the chardev,
    /// with its texts; warns about a `tls-authz` QEMU would ignore too.
    pub(super) fn new(
        id: &str,
        spec: &ChardevSocket,
        store: &ObjectStore,
        server: bool,
    ) -> Result<Option<TlsSetup>> {
        let Some(creds_id) = &spec.tls_creds else {
            return Ok(None);
        };
        let creds = tls::creds_for(store, creds_id, server)
            .map_err(|e| ChardevError::Invalid(e.to_string()))?;
        if let Some(a) = &spec.tls_authz {
            if !server {
                log::warn!("chardev '{id}': tls-authz '{a}' is ignored by a client (as in QEMU)");
            } else if !creds.verify_peer() {
                log::warn!(
                    "chardev '{id}': tls-authz '{a}' is ignored: credentials '{creds_id}' have \
                     verify-peer=off, so clients are not checked (as in QEMU)"
                );
            }
        }
        let host = match &spec.addr {
            SocketAddressLegacy::Inet(i) => Some(i.host.clone()),
            _ => None,
        };
        Ok(Some(TlsSetup {
            id: id.to_string(),
            store: store.clone(),
            creds_id: creds_id.clone(),
            authz: spec.tls_authz.clone().filter(|_| server),
            server,
            host,
            last: Mutex::new(creds),
        }))
    }

    /// The credentials for a new connection: the object that has the id
    /// now, or the last good one.
    fn creds(&self) -> Arc<X509Creds> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match tls::creds_for(&self.store, &self.creds_id, self.server) {
            Ok(c) => {
                if !Arc::ptr_eq(&c, &last) {
                    log::info!(
                        "chardev '{}': new connections use the credentials now named '{}'",
                        self.id,
                        self.creds_id
                    );
                    *last = c;
                }
            }
            Err(tls::UseError::NoCreds(_)) => {}
            Err(e) => log::warn!(
                "chardev '{}': '{}' cannot be used ({e}); keeping the credentials it named before",
                self.id,
                self.creds_id
            ),
        }
        last.clone()
    }

    /// A session for a new connection.
    pub(super) fn session(&self) -> io::Result<TlsSession> {
        let creds = self.creds();
        let s = if self.server {
            let authz = self.authz.clone().map(|a| (a, self.store.clone()));
            TlsSession::server(&creds, authz)
        } else {
            TlsSession::client(&creds, self.host.as_deref())
        };
        s.map_err(io::Error::other)
    }
}
