//! `udp`: output as datagrams to `remote`, input from datagrams that come
//! from it (the socket is connected, as QEMU's), bound to `local` if given.
//! Always open; `query-chardev` calls it `udp`.

use std::io;
use std::task::{Context, Poll};

use socket2::{Domain, SockAddr, Socket, Type};

use super::net::{self, SockIo};
use super::{Backend, BackendEvent};
use crate::error::{ChardevError, Result};
use crate::spec::{ChardevUdp, InetSocketAddress, SocketAddressLegacy};

/// Largest datagram sent: a QEMU peer reads datagrams into 4 KiB and would
/// cut longer ones.
const MAX_DATAGRAM: usize = 4096;
/// Largest datagram received.
const RX_CAP: usize = 65536;

/// The `udp` backend.
pub(crate) struct UdpBackend {
    io: SockIo,
    /// The last datagram, delivered as the frontend takes it.
    rx: Vec<u8>,
    rx_pos: usize,
}

fn inet(a: &SocketAddressLegacy) -> Result<&InetSocketAddress> {
    match a {
        SocketAddressLegacy::Inet(i) => Ok(i),
        // QEMU's text for a datagram socket of another kind.
        _ => Err(ChardevError::Unsupported(
            "socket type unsupported for datagram".into(),
        )),
    }
}

fn resolve(i: &InetSocketAddress, passive: bool) -> Result<Vec<std::net::SocketAddr>> {
    // As QEMU: an empty remote host is `localhost`; an empty local one is
    // the wildcard.
    let host = if i.host.is_empty() && !passive {
        "localhost"
    } else {
        i.host.as_str()
    };
    let (ipv4_only, ipv6_only) = qemu_family(i.ipv4, i.ipv6, host);
    net::resolve(
        host,
        &i.port,
        libc::SOCK_DGRAM,
        passive,
        ipv4_only,
        ipv6_only,
    )
    .map_err(|m| {
        // QEMU names an empty remote host `localhost` and prints an empty
        // local one as C prints a null string.
        let host = match (i.host.is_empty(), passive) {
            (false, _) => i.host.as_str(),
            (true, false) => "localhost",
            (true, true) => "(null)",
        };
        let port = if i.port.is_empty() && passive {
            "0"
        } else {
            &i.port
        };
        ChardevError::Invalid(format!("address resolution failed for {host}:{port}: {m}"))
    })
}

/// The address family QEMU looks a datagram address up in, from its
/// `ipv4`/`ipv6` flags, as `net::resolve`'s (IPv4 only, IPv6 only): one flag
/// off means the other family (`ipv6: false` is IPv4 only, so `::1` does
/// not resolve); both on is either family for a host, IPv6 for none.
fn qemu_family(ipv4: Option<bool>, ipv6: Option<bool>, host: &str) -> (bool, bool) {
    match (ipv4, ipv6) {
        (Some(true), Some(true)) => (false, host.is_empty()),
        (_, Some(true)) | (Some(false), _) => (false, true),
        (Some(true), _) | (_, Some(false)) => (true, false),
        (None, None) => (false, false),
    }
}

impl UdpBackend {
    /// Creates the socket, binds `local`, connects to `remote`.
    pub(crate) fn open(spec: &ChardevUdp) -> Result<UdpBackend> {
        let remote = inet(&spec.remote)?;
        // QEMU works out the address family first.
        if remote.ipv4 == Some(false) && remote.ipv6 == Some(false) {
            return Err(ChardevError::Invalid(
                "Cannot disable IPv4 and IPv6 at same time".into(),
            ));
        }
        if remote.port.is_empty() {
            return Err(ChardevError::Invalid("remote port not specified".into()));
        }
        let remotes = resolve(remote, false)?;
        let Some(dest) = remotes.first().copied() else {
            return Err(ChardevError::Invalid(format!(
                "address resolution failed for {}:{}: no address",
                remote.host, remote.port
            )));
        };
        let local = match &spec.local {
            Some(l) => {
                // As QEMU: the local end is looked up in the remote end's
                // family, whatever its own ipv4/ipv6 say (`localaddr=0.0.0.0`
                // with an IPv6 remote is an address resolution error).
                let in_family = InetSocketAddress {
                    ipv4: Some(dest.is_ipv4()),
                    ipv6: Some(dest.is_ipv6()),
                    ..inet(l)?.clone()
                };
                resolve(&in_family, true)?.first().copied()
            }
            None => None,
        };
        let s = Socket::new(Domain::for_address(dest), Type::DGRAM, None)
            .map_err(|e| ChardevError::io("Failed to create socket", e))?;
        if let Some(l) = local {
            let _ = s.set_reuse_address(true);
            s.bind(&SockAddr::from(l))
                .map_err(|e| ChardevError::io("Failed to bind socket", e))?;
        }
        net::connect(&s, &SockAddr::from(dest)).map_err(|e| {
            ChardevError::io(
                format!("Failed to connect to '{}:{}'", remote.host, remote.port),
                e,
            )
        })?;
        let io =
            SockIo::new(s.into()).map_err(|e| ChardevError::io("Failed to create socket", e))?;
        Ok(UdpBackend {
            io,
            rx: Vec::new(),
            rx_pos: 0,
        })
    }
}

impl Backend for UdpBackend {
    fn poll_event(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<BackendEvent> {
        if buf.is_empty() {
            return Poll::Pending;
        }
        loop {
            if self.rx_pos < self.rx.len() {
                let n = (self.rx.len() - self.rx_pos).min(buf.len());
                buf[..n].copy_from_slice(&self.rx[self.rx_pos..self.rx_pos + n]);
                self.rx_pos += n;
                return Poll::Ready(BackendEvent::Input(n));
            }
            self.rx.resize(RX_CAP, 0);
            self.rx_pos = 0;
            let r = self.io.poll_recv(cx, &mut self.rx);
            let n = match r {
                Poll::Ready(Ok(n)) => n,
                // ICMP errors from earlier sends (nobody listening) and the
                // like: a datagram socket carries on.
                Poll::Ready(Err(_)) => 0,
                Poll::Pending => {
                    self.rx.clear();
                    return Poll::Pending;
                }
            };
            self.rx.truncate(n);
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let data = &data[..data.len().min(MAX_DATAGRAM)];
        match self.io.poll_send(cx, data) {
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(n)),
            Poll::Ready(Err(e)) if net::is_transient(&e) => Poll::Pending,
            // Nobody listening (ECONNREFUSED) and other per-datagram errors:
            // the datagram is lost, as with QEMU.
            Poll::Ready(Err(_)) => Poll::Ready(Ok(data.len())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn filename(&self) -> String {
        "udp".into()
    }
}
