//! One TLS session over a non-blocking byte stream, driven by polls like
//! every backend: the handshake (bounded in time by [`HANDSHAKE_TIMEOUT`],
//! in memory by rustls's own buffer limits), QEMU's checks after it (a
//! peer certificate when `verify-peer=on`, its DN readable, `tls-authz`
//! looked up by id at that moment and asked), then application data.
//!
//! The session never blocks: every call takes the task's context and
//! returns `Pending` after registering interest with the stream, as
//! [`RawIo`] does. Bytes [`TlsSession::poll_write`] took are encrypted at
//! once into rustls's outgoing buffer (at most 64 KiB), which
//! [`TlsSession::poll_flush`] empties.

use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConnection, Connection, ServerConnection};

use super::authz::Authz;
use super::dn;
use super::object::{Object, ObjectStore};
use super::x509::X509Creds;

/// Longest a TLS handshake (and QEMU's checks after it) may take before
/// the peer is dropped. QEMU has no bound: a client that stops halfway
/// holds its server chardev for good.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most TLS bytes rustls queues for a peer that does not read.
const OUT_BUFFER: usize = 64 * 1024;

/// A non-blocking byte stream (a socket).
pub trait RawIo {
    /// Reads into `buf`; `Ready(Ok(0))` at the end of the stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Writes from `buf`.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
}

/// `RawIo` as `std::io` for rustls: `Pending` becomes `WouldBlock`.
struct Adapter<'a, 'b> {
    io: &'a mut dyn RawIo,
    cx: &'a mut Context<'b>,
}

impl Read for Adapter<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.io.poll_read(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Adapter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.io.poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why a session ended before data could flow. `Display` is the reason
/// logged when the peer is dropped: QEMU's text for the same refusal where
/// it has one (QEMU builds it and discards it), then rustls's detail.
#[derive(Debug)]
pub enum TlsFailure {
    /// The handshake did not finish within [`HANDSHAKE_TIMEOUT`].
    Timeout,
    /// The peer closed the connection during the handshake.
    Eof,
    /// The stream failed.
    Io(io::Error),
    /// The handshake failed (a protocol error, or a certificate rustls
    /// refused).
    Tls(rustls::Error),
    /// The handshake succeeded but a check after it refused the peer.
    Refused(String),
    /// `host=` is not a name or address a certificate can be checked
    /// against.
    BadHost(String),
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::Timeout => write!(
                f,
                "TLS handshake not finished after {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ),
            TlsFailure::Eof => f.write_str("peer closed the connection during the TLS handshake"),
            TlsFailure::Io(e) => write!(f, "TLS handshake: {e}"),
            TlsFailure::Tls(e) => match qemu_reason(e) {
                Some(r) => write!(f, "{r} (rustls: {e})"),
                None => write!(f, "TLS handshake failed: {e}"),
            },
            TlsFailure::Refused(r) => f.write_str(r),
            TlsFailure::BadHost(h) => write!(f, "Certificate does not match the hostname {h}"),
        }
    }
}

impl std::error::Error for TlsFailure {}

/// QEMU's (GnuTLS's) words for a refusal rustls reports.
fn qemu_reason(e: &rustls::Error) -> Option<&'static str> {
    use CertificateError as C;
    Some(match e {
        rustls::Error::NoCertificatesPresented => "Verify failed: No certificate was found.",
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "The certificate hasn't got a known issuer",
            C::Expired | C::ExpiredContext { .. } => "The certificate has expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "The certificate is not yet activated",
            C::Revoked => "The certificate has been revoked",
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "Certificate does not match the hostname"
            }
            C::BadSignature | C::UnsupportedSignatureAlgorithmContext { .. } => {
                "The certificate uses an insecure algorithm"
            }
            _ => "The certificate is not trusted",
        },
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => {
            "An unexpected TLS packet was received."
        }
        rustls::Error::AlertReceived(_) => "A TLS fatal alert has been received.",
        _ => return None,
    })
}

/// Which side, and what the checks after the handshake need.
enum Role {
    Server {
        /// `tls-authz`: the id, resolved in `store` for each handshake.
        authz: Option<(String, ObjectStore)>,
    },
    Client,
}

/// One TLS connection's state.
pub struct TlsSession {
    conn: Connection,
    role: Role,
    verify_peer: bool,
    open: bool,
    started: tokio::time::Instant,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    identity: Option<String>,
}

impl fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSession")
            .field("open", &self.open)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    /// A server session with credentials of the server endpoint (checked
    /// by the caller). `authz` is `tls-authz`, consulted only when the
    /// credentials have `verify-peer=on`, as in QEMU. Must be called inside
    /// a tokio runtime (the handshake deadline starts now).
    pub fn server(
        creds: &X509Creds,
        authz: Option<(String, ObjectStore)>,
    ) -> Result<TlsSession, TlsFailure> {
        let cfg = creds.server_config().expect("server endpoint");
        let mut conn = ServerConnection::new(cfg).map_err(TlsFailure::Tls)?;
        conn.set_buffer_limit(Some(OUT_BUFFER));
        Ok(TlsSession::new(
            conn.into(),
            Role::Server { authz },
            creds.verify_peer(),
        ))
    }

    /// A client session checking the server's certificate (when
    /// `verify-peer=on`) against `host`, the chardev's `host=` as written;
    /// with no host (a unix socket), its chain only.
    pub fn client(creds: &X509Creds, host: Option<&str>) -> Result<TlsSession, TlsFailure> {
        let cfg = creds
            .client_config(host.is_some())
            .expect("client endpoint");
        let unnamed = || {
            ServerName::try_from("qchar.invalid")
                .expect("valid name")
                .to_owned()
        };
        let name = match host.map(|h| ServerName::try_from(h.to_string())) {
            Some(Ok(n)) => n,
            None => unnamed(),
            // Nothing is checked without verify-peer; any name will do.
            Some(Err(_)) if !creds.verify_peer() => unnamed(),
            Some(Err(_)) => return Err(TlsFailure::BadHost(host.unwrap_or("").to_string())),
        };
        let mut conn = ClientConnection::new(cfg, name).map_err(TlsFailure::Tls)?;
        conn.set_buffer_limit(Some(OUT_BUFFER));
        Ok(TlsSession::new(
            conn.into(),
            Role::Client,
            creds.verify_peer(),
        ))
    }

    fn new(conn: Connection, role: Role, verify_peer: bool) -> TlsSession {
        TlsSession {
            conn,
            role,
            verify_peer,
            open: false,
            started: tokio::time::Instant::now(),
            deadline: None,
            identity: None,
        }
    }

    /// Whether the handshake and the checks are done.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The peer's certificate DN in QEMU's form, once checked
    /// (`verify-peer=on` only).
    pub fn peer_identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// The protocol version and cipher suite, once open (for logs).
    pub fn describe(&self) -> String {
        match (
            self.conn.protocol_version(),
            self.conn.negotiated_cipher_suite(),
        ) {
            (Some(v), Some(s)) => format!("{v:?} {:?}", s.suite()),
            _ => "handshaking".into(),
        }
    }

    /// Drives the handshake. `Ready(Ok(()))` once data can flow;
    /// `Ready(Err(why))` means drop the peer.
    pub fn poll_handshake(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut dyn RawIo,
    ) -> Poll<Result<(), TlsFailure>> {
        if self.open {
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut blocked = false;
            while self.conn.wants_write() {
                match self.conn.write_tls(&mut Adapter { io, cx }) {
                    Ok(0) => return Poll::Ready(Err(TlsFailure::Eof)),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        blocked = true;
                        break;
                    }
                    Err(e) => return Poll::Ready(Err(TlsFailure::Io(e))),
                }
            }
            if !self.conn.is_handshaking() {
                return Poll::Ready(match self.post_checks() {
                    Ok(()) => {
                        self.open = true;
                        self.deadline = None;
                        Ok(())
                    }
                    Err(e) => Err(e),
                });
            }
            if self.conn.wants_read() {
                match self.conn.read_tls(&mut Adapter { io, cx }) {
                    Ok(n) => {
                        if let Err(e) = self.conn.process_new_packets() {
                            // Best effort: the alert rustls queued.
                            let _ = self.conn.write_tls(&mut Adapter { io, cx });
                            return Poll::Ready(Err(TlsFailure::Tls(e)));
                        }
                        if n == 0 && self.conn.is_handshaking() {
                            return Poll::Ready(Err(TlsFailure::Eof));
                        }
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(TlsFailure::Io(e))),
                }
            }
            let _ = blocked;
            let started = self.started;
            let deadline = self.deadline.get_or_insert_with(|| {
                Box::pin(tokio::time::sleep_until(started + HANDSHAKE_TIMEOUT))
            });
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(TlsFailure::Timeout));
            }
            return Poll::Pending;
        }
    }

    /// QEMU's checks once the handshake is done (`verify-peer=on` only):
    /// a certificate, a readable subject DN, then `tls-authz`.
    fn post_checks(&mut self) -> Result<(), TlsFailure> {
        if !self.verify_peer {
            return Ok(());
        }
        let leaf = self.conn.peer_certificates().and_then(|c| c.first());
        let authz = match &self.role {
            Role::Server {
                authz: Some((id, store)),
            } => Some((id.as_str(), store)),
            _ => None,
        };
        let dn = authorize_peer(leaf.map(|c| c.as_ref()), authz)?;
        self.identity = Some(dn);
        Ok(())
    }

    /// Sends what rustls has queued. `Ready(Ok(()))` when nothing is left.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>, io: &mut dyn RawIo) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Adapter { io, cx }) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Whether bytes wait in rustls's outgoing buffer.
    pub fn has_pending_output(&self) -> bool {
        self.conn.wants_write()
    }

    /// Reads application data into `buf` (which must not be empty).
    /// `Ready(Ok(0))` at the end: the peer's close_notify, or the stream's
    /// end without one (QEMU never sends close_notify).
    pub fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut dyn RawIo,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(0)),
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Answers rustls owes (a key update) go out first.
            let _ = self.poll_flush(cx, io);
            match self.conn.read_tls(&mut Adapter { io, cx }) {
                Ok(_) => {
                    if let Err(e) = self.conn.process_new_packets() {
                        let _ = self.poll_flush(cx, io);
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Takes application data: encrypts up to what rustls's outgoing
    /// buffer holds and sends what the stream takes now. `Pending` only
    /// when the buffer is full and the stream takes nothing.
    pub fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut dyn RawIo,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Err(e)) = self.poll_flush(cx, io) {
            return Poll::Ready(Err(e));
        }
        let n = self.conn.writer().write(data)?;
        if n == 0 && !data.is_empty() {
            // Full: the flush above registered for writability.
            return Poll::Pending;
        }
        if let Poll::Ready(Err(e)) = self.poll_flush(cx, io) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    /// Queues a close_notify (sent by the next flush).
    pub fn send_close_notify(&mut self) {
        self.conn.send_close_notify();
    }
}

/// QEMU's checks of a verified peer once its handshake is done: it sent a
/// certificate (`leaf`, DER), the subject DN reads, and `tls-authz` (an id
/// looked up in a store now, so a replaced object applies) lets that DN
/// in. Returns the DN; the refusal's text is QEMU's. Used by the socket
/// chardevs and by the web console.
pub fn authorize_peer(
    leaf: Option<&[u8]>,
    authz: Option<(&str, &ObjectStore)>,
) -> Result<String, TlsFailure> {
    let leaf =
        leaf.ok_or_else(|| TlsFailure::Refused("Verify failed: No certificate was found.".into()))?;
    let dn = dn::subject_dn(leaf).map_err(|e| TlsFailure::Refused(e.to_string()))?;
    if let Some((id, store)) = authz {
        let allowed = match store.lookup(id).as_deref() {
            None => {
                return Err(TlsFailure::Refused(format!(
                    "Cannot find QAuthZ object ID {id}"
                )))
            }
            Some(Object::Authz(a)) => Authz::is_allowed(a, &dn),
            Some(_) => {
                return Err(TlsFailure::Refused(format!(
                    "Object '{id}' is not a QAuthZ subclass"
                )))
            }
        };
        if !allowed {
            return Err(TlsFailure::Refused(format!(
                "TLS x509 authz check for {dn} is denied"
            )));
        }
    }
    Ok(dn)
}
