//! Socket addresses: the checks QEMU makes before anything is opened,
//! where a client connects, and QEMU's `query-chardev` names.

use std::fmt::Display;
use std::io;
use std::os::fd::OwnedFd;

use socket2::{Domain, SockRef, Socket, Type};

use crate::backend::net::{self, SockAddr};
use crate::error::{ChardevError, Result};
use crate::spec::{ChardevSocket, SocketAddressLegacy, UnixSocketAddress};
use crate::tls::{self, ObjectStore};

/// Checks options that QEMU refuses, with QEMU's messages and in its
/// order (the `tls-creds` object first), before anything is opened.
pub(crate) fn validate(s: &ChardevSocket, objects: &ObjectStore) -> Result<()> {
    let server = s.server.unwrap_or(true);
    let bad = |m: &str| Err(ChardevError::Invalid(m.to_string()));
    if let Some(id) = &s.tls_creds {
        tls::creds_for(objects, id, server).map_err(|e| ChardevError::Invalid(e.to_string()))?;
    }
    // QEMU checks what depends on the address type next. It refuses TLS on
    // unix sockets; qchar takes it (see the module docs).
    if matches!(s.addr, SocketAddressLegacy::Fd(_)) && s.reconnect.is_some() {
        return bad("'reconnect' option is incompatible with 'fd' address type");
    }
    if matches!(s.addr, SocketAddressLegacy::Fd(_)) && s.tls_creds.is_some() && !server {
        return bad("'tls_creds' option is incompatible with 'fd' address type as client");
    }
    if s.tls_authz.is_some() && s.tls_creds.is_none() {
        return bad("'tls_authz' option requires 'tls_creds' option");
    }
    if s.tn3270.unwrap_or(false) {
        return Err(ChardevError::Unsupported(
            "tn3270 is not supported by qchar socket chardevs".into(),
        ));
    }
    if s.websocket.unwrap_or(false) && !server {
        return bad("Websocket client is not implemented");
    }
    if s.reconnect.is_some() && s.reconnect_ms.is_some() {
        return bad("'reconnect' and 'reconnect-ms' are mutually exclusive");
    }
    if server {
        if s.reconnect.is_some() {
            return bad("'reconnect' option is incompatible with socket in server listen mode");
        }
        if s.reconnect_ms.is_some() {
            return bad("'reconnect-ms' option is incompatible with socket in server listen mode");
        }
    } else if s.wait.is_some() {
        return bad("'wait' option is incompatible with socket in client connect mode");
    }
    match &s.addr {
        SocketAddressLegacy::Inet(_) | SocketAddressLegacy::Unix(_) => Ok(()),
        SocketAddressLegacy::Vsock(_) => Err(ChardevError::Unsupported(
            "vsock sockets are not supported by qchar".into(),
        )),
        SocketAddressLegacy::Fd(_) => Err(ChardevError::Unsupported(
            "sockets passed by descriptor are not supported by qchar".into(),
        )),
    }
}

/// Where a client connects.
#[derive(Clone)]
pub(super) enum Target {
    Inet {
        host: String,
        port: String,
        ipv4: bool,
        ipv6: bool,
    },
    Unix(SockAddr, String),
}

impl Target {
    /// A blocking connect, trying each resolved address in turn; errors in
    /// QEMU's words.
    pub(super) fn connect(&self) -> Result<OwnedFd> {
        match self {
            Target::Unix(addr, path) => {
                let s = Socket::new(Domain::UNIX, Type::STREAM, None)
                    .map_err(|e| ChardevError::io("Failed to create socket", e))?;
                net::connect(&s, addr)
                    .map_err(|e| ChardevError::io(format!("Failed to connect to '{path}'"), e))?;
                Ok(s.into())
            }
            Target::Inet {
                host,
                port,
                ipv4,
                ipv6,
            } => {
                let addrs = net::resolve(host, port, libc::SOCK_STREAM, false, *ipv4, *ipv6)
                    .map_err(|m| {
                        ChardevError::Invalid(format!(
                            "address resolution failed for {host}:{port}: {m}"
                        ))
                    })?;
                let mut last = io::Error::from(io::ErrorKind::AddrNotAvailable);
                for sa in &addrs {
                    let s = match Socket::new(Domain::for_address(*sa), Type::STREAM, None) {
                        Ok(s) => s,
                        Err(e) => {
                            last = e;
                            continue;
                        }
                    };
                    match net::connect(&s, &SockAddr::from(*sa)) {
                        Ok(()) => return Ok(s.into()),
                        Err(e) => last = e,
                    }
                }
                Err(ChardevError::io(
                    format!("Failed to connect to '{host}:{port}'"),
                    last,
                ))
            }
        }
    }
}

pub(super) fn unix_parts(u: &UnixSocketAddress) -> (bool, bool) {
    let abstract_ = u.abstract_.unwrap_or(false);
    // QEMU's default for `tight` is on.
    let tight = u.tight.unwrap_or(true);
    (abstract_, tight)
}

/// QEMU's `query-chardev` name of a unix socket backend with no peer.
pub(super) fn disconnected_unix(u: &UnixSocketAddress, server: bool) -> String {
    let abstract_ = u.abstract_.unwrap_or(false);
    format!(
        "disconnected:unix:{}{}{}{}",
        u.path,
        if abstract_ { ",abstract=on" } else { "" },
        // Only when given: QEMU prints the option, not its default.
        if abstract_ && u.tight == Some(true) {
            ",tight=on"
        } else {
            ""
        },
        if server { ",server=on" } else { "" },
    )
}

/// QEMU's `query-chardev` name of a TCP backend with no peer; a server
/// names the address it bound (the real port for `port=0`).
pub(super) fn disconnected_inet(
    proto_name: &str,
    host: impl Display,
    port: impl Display,
    server: bool,
) -> String {
    let srv = if server { ",server=on" } else { "" };
    format!("disconnected:{proto_name}:{host}:{port}{srv}")
}

/// QEMU's `query-chardev` name for a connected socket:
/// `tcp:127.0.0.1:4444,server=on <-> 127.0.0.1:50000` (`telnet:`,
/// `websocket:` as `proto_name` says), `unix:PATH,server=on`.
pub(super) fn connected_name(sock: &SockRef<'_>, proto_name: &str, server: bool) -> String {
    let srv = if server { ",server=on" } else { "" };
    let (Ok(l), Ok(p)) = (sock.local_addr(), sock.peer_addr()) else {
        return "unknown".into();
    };
    match (l.as_socket(), p.as_socket()) {
        (Some(l), Some(p)) => format!(
            "{proto_name}:{}{srv} <-> {}",
            net::host_port(&l),
            net::host_port(&p)
        ),
        _ if l.is_unix() => format!("unix:{}{srv}", net::unix_path(&l)),
        _ => "unknown".into(),
    }
}
