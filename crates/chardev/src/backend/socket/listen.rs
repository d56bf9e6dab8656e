//! The listening side of a server: bind, listen, accept, and the unix
//! socket file it created.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::pin::Pin;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::backend::net::{self, SockAddr, SockIo};
use crate::error::{ChardevError, Result};

/// Listen backlog, as QEMU's chardev sockets.
pub(super) const LISTEN_BACKLOG: libc::c_int = 1;
/// Pause before accepting again after accept failed (out of descriptors).
pub(super) const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A unix socket file this backend created, removed when it goes unless
/// something else has replaced it since.
pub(super) struct SocketFile {
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
pub(super) struct Listener {
    pub(super) io: SockIo,
    _file: Option<SocketFile>,
    pub(super) retry: Option<Pin<Box<tokio::time::Sleep>>>,
    pub(super) error_logged: bool,
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
