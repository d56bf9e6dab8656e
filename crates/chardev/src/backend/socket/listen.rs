//! The listening side of a server: bind and listen (or listen on a socket
//! handed over by descriptor), accept, and the unix socket file it created.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, Type};

use crate::backend::net::{self, SockAddr, SockIo};
use crate::error::{ChardevError, Result};

/// Listen backlog, as QEMU's chardev sockets.
const LISTEN_BACKLOG: libc::c_int = 1;
/// Pause before accepting again after accept failed (out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

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

/// The listening side of a server. It only hands out connected sockets;
/// what becomes of them (one connection at a time today) is the backend's
/// business.
pub(super) struct Listener {
    io: SockIo,
    _file: Option<SocketFile>,
    retry: Option<Pin<Box<tokio::time::Sleep>>>,
    error_logged: bool,
}

impl Listener {
    /// Listens on a socket that is bound already: one bound here, or one
    /// handed over by descriptor (listen(2) again only sets the backlog of
    /// a socket that already listens).
    pub(super) fn from_fd(fd: OwnedFd) -> Result<Listener> {
        Listener::listening(fd, "Failed to listen on socket")
    }

    /// A socket handed over by descriptor (`fd=N`, a `getfd` name) as
    /// QEMU takes one: listen(2) on it, backlog 1, with QEMU's error for one
    /// that cannot listen (connected, unbound). Like QEMU, which names it by
    /// the path it is bound to, the socket file is removed when the
    /// listener goes (if it is still that socket's).
    pub(super) fn from_passed(fd: OwnedFd) -> Result<Listener> {
        let path = crate::fdpass::bound_path(fd.as_fd());
        let mut l = Listener::listening(fd, "Failed to listen on fd socket")?;
        l._file = path.and_then(|path| {
            let m = std::fs::symlink_metadata(&path).ok()?;
            m.file_type().is_socket().then(|| SocketFile {
                dev: m.dev(),
                ino: m.ino(),
                path,
            })
        });
        Ok(l)
    }

    fn listening(fd: OwnedFd, failed: &str) -> Result<Listener> {
        SockRef::from(&fd)
            .listen(LISTEN_BACKLOG)
            .map_err(|e| ChardevError::io(failed, e))?;
        Ok(Listener {
            io: SockIo::new(fd).map_err(|e| ChardevError::io(failed, e))?,
            _file: None,
            retry: None,
            error_logged: false,
        })
    }

    /// The next client. `Ready(None)`: none this time (it gave up before
    /// being accepted, or accept failed and is tried again after a pause);
    /// poll again.
    pub(super) fn poll_accept(&mut self, cx: &mut Context<'_>, id: &str) -> Poll<Option<OwnedFd>> {
        if let Some(t) = self.retry.as_mut() {
            if t.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.retry = None;
        }
        match self.io.poll_read_with(cx, net::accept) {
            Poll::Ready(Ok(fd)) => {
                self.error_logged = false;
                Poll::Ready(Some(fd))
            }
            Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                if !self.error_logged {
                    self.error_logged = true;
                    log::error!("chardev '{id}': accept failed: {e}");
                }
                self.retry = Some(Box::pin(tokio::time::sleep(ACCEPT_RETRY)));
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Lets up to `n` clients wait to be accepted (a server of many
    /// clients; QEMU's one-client servers let one wait).
    pub(super) fn allow_waiting(&self, n: usize) {
        let _ = SockRef::from(&self.io.raw()).listen(n.min(128) as libc::c_int);
    }

    /// The address it listens on (`None` for a unix socket).
    pub(super) fn local_inet(&self) -> Option<SocketAddr> {
        SockRef::from(&self.io.raw())
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
    }

    /// `wait=on`: waits on the caller's thread for the first client.
    pub(super) fn accept_blocking(&self) -> Result<OwnedFd> {
        loop {
            net::wait_readable(self.io.raw())
                .map_err(|e| ChardevError::io("Failed to accept connection", e))?;
            match net::accept(self.io.raw()) {
                Ok(fd) => return Ok(fd),
                Err(e) if net::is_transient(&e) || e.raw_os_error() == Some(libc::ECONNABORTED) => {
                    continue
                }
                Err(e) => return Err(ChardevError::io("Failed to accept connection", e)),
            }
        }
    }
}

/// Binds and listens on a unix socket, replacing a stale file first as QEMU
/// does.
pub(super) fn listen_unix(path: &str, abstract_: bool, addr: &SockAddr) -> Result<Listener> {
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
    // Should listening fail, `file` goes with the error, and the file too.
    let mut l = Listener::from_fd(s.into())?;
    l._file = file;
    Ok(l)
}

/// Binds and listens on TCP, trying ports `port..=to`; returns the address
/// actually bound (the real port for `port=0`).
pub(super) fn listen_inet(
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
    let mut created = false;
    for sa in addrs {
        let first = sa.port();
        // QEMU tries `port..=to`; a `to` below a port other than 0 leaves
        // nothing to try.
        let last_port = match to {
            Some(t) if first != 0 => t,
            _ => first,
        };
        for p in first..=last_port {
            created = true;
            let mut sa = sa;
            sa.set_port(p);
            let s = Socket::new(Domain::for_address(sa), Type::STREAM, None)
                .map_err(|e| ChardevError::io("Failed to create socket", e))?;
            let _ = s.set_reuse_address(true);
            let v6only = ipv6 && !ipv4;
            if sa.is_ipv6() {
                // Dual stack unless IPv6 only was asked for.
                let _ = s.set_only_v6(v6only);
            }
            let mut bound = s.bind(&sa.into());
            // As QEMU: a dual-stack bind whose IPv4 half is taken (another
            // chardev on 127.0.0.1 or 0.0.0.0 and this port) is retried
            // IPv6 only.
            if sa.is_ipv6()
                && !v6only
                && bound
                    .as_ref()
                    .is_err_and(|e| e.raw_os_error() == Some(libc::EADDRINUSE))
                && s.set_only_v6(true).is_ok()
            {
                bound = s.bind(&sa.into());
            }
            if let Err(e) = bound {
                if e.raw_os_error() == Some(libc::EADDRINUSE) {
                    last = Some(e);
                    continue;
                }
                return Err(ChardevError::io("Failed to bind socket", e));
            }
            let l = Listener::from_fd(s.into())?;
            let bound = SockRef::from(&l.io.raw())
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .unwrap_or(sa);
            return Ok((l, bound));
        }
    }
    if !created {
        // QEMU appends whatever errno its thread was left with (nothing
        // when it is 0, as on a fresh monitor command): qchar says nothing.
        return Err(ChardevError::Invalid("Failed to create a socket".into()));
    }
    Err(ChardevError::io(
        "Failed to find an available port",
        last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EADDRINUSE)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpStream, UdpSocket};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn loopback_socket() -> Socket {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
        s.bind(&any_port.into()).unwrap();
        s
    }

    /// A socket handed over by descriptor, listening already or only bound,
    /// serves clients like one bound here.
    #[test]
    fn a_listener_from_a_descriptor_accepts_clients() {
        let rt = runtime();
        let _in_rt = rt.enter();
        for already_listening in [true, false] {
            let s = loopback_socket();
            if already_listening {
                s.listen(8).unwrap();
            }
            let addr = s.local_addr().unwrap().as_socket().unwrap();
            let l = Listener::from_fd(s.into()).unwrap();
            let mut client = TcpStream::connect(addr).unwrap();
            let accepted = Socket::from(l.accept_blocking().unwrap());
            assert_eq!(
                accepted.peer_addr().unwrap().as_socket(),
                Some(client.local_addr().unwrap()),
                "already listening: {already_listening}"
            );
            client.write_all(b"hi").unwrap();
            let mut got = [0u8; 2];
            (&accepted).read_exact(&mut got).unwrap();
            assert_eq!(&got, b"hi");
        }
    }

    #[test]
    fn a_descriptor_that_cannot_listen_is_refused() {
        let rt = runtime();
        let _in_rt = rt.enter();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let Err(e) = Listener::from_fd(udp.into()) else {
            panic!("a datagram socket was taken as a listener");
        };
        assert!(
            e.to_string().starts_with("Failed to listen on socket"),
            "{e}"
        );
    }
}
