// Hand-written part: `resolve` calls getaddrinfo itself, because QEMU reports getaddrinfo's own error text, which std's resolver does not pass on.
//! Socket plumbing shared by the `socket` and `udp` backends, on socket2:
//! name resolution with getaddrinfo's own error texts (QEMU passes them
//! through), unix socket addresses (paths, abstract names with or without
//! `tight`), and non-blocking socket I/O driven by the tokio reactor.

use std::ffi::{CStr, CString, OsStr};
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::task::{Context, Poll};

pub(crate) use socket2::SockAddr;
use socket2::{SockRef, Socket};
use tokio::io::unix::AsyncFd;

/// Bytes in `sun_path`.
const SUN_PATH_LEN: usize =
    std::mem::size_of::<libc::sockaddr_un>() - std::mem::size_of::<libc::sa_family_t>();

/// A unix socket address. `abstract_` puts `path` in the abstract
/// namespace; `tight` then makes the address length cover only the name
/// (otherwise the whole, zero-padded `sun_path`, as QEMU's `tight=off`).
pub(crate) fn unix_addr(path: &str, abstract_: bool, tight: bool) -> io::Result<SockAddr> {
    let bytes = path.as_bytes();
    // A NUL a client sent (`\u0000`) is refused, as in every other path
    // (QEMU would use the bytes C0 80 in its place).
    if bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("UNIX socket path '{path}' contains a NUL byte"),
        ));
    }
    if bytes.len() + usize::from(abstract_) >= SUN_PATH_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("UNIX socket path '{path}' is too long"),
        ));
    }
    // socket2 reads a leading NUL as the abstract namespace and then takes
    // every byte given as the name, so padding gives `tight=off`'s length.
    let mut name = Vec::with_capacity(SUN_PATH_LEN);
    if abstract_ {
        name.push(0);
    }
    name.extend_from_slice(bytes);
    if abstract_ && !tight {
        name.resize(SUN_PATH_LEN, 0);
    }
    if name.is_empty() {
        // An empty path reaches the kernel as `sun_path` with only its
        // terminator, as C code passing "" does.
        name.push(0);
    }
    SockAddr::unix(OsStr::from_bytes(&name))
}

/// For unix addresses: the path, as C code prints `sun_path` (empty for
/// unnamed and abstract addresses).
pub(crate) fn unix_path(a: &SockAddr) -> String {
    let Some(p) = a.as_pathname() else {
        return String::new();
    };
    let bytes = p.as_os_str().as_bytes();
    let end = bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// `host:port` with the host numeric, IPv6 in brackets (`[::1]:4444`).
pub(crate) fn host_port(sa: &SocketAddr) -> String {
    match sa.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", sa.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", sa.port()),
    }
}

/// Resolves `host`/`port` (`port` may be a service name) with getaddrinfo.
/// `passive` is for addresses to bind (empty host: any address). The error
/// is getaddrinfo's own text.
pub(crate) fn resolve(
    host: &str,
    port: &str,
    socktype: libc::c_int,
    passive: bool,
    ipv4_only: bool,
    ipv6_only: bool,
) -> Result<Vec<SocketAddr>, String> {
    // A NUL a QMP client sent (`\u0000`) reaches QEMU's resolver as the
    // two bytes C0 80 it keeps it as: it is a name that does not resolve.
    let modified = |s: &str| {
        let mut b = Vec::with_capacity(s.len());
        for &c in s.as_bytes() {
            if c == 0 {
                b.extend_from_slice(&[0xC0, 0x80]);
            } else {
                b.push(c);
            }
        }
        CString::new(b)
    };
    let chost = modified(host).map_err(|_| "invalid host name".to_string())?;
    let cport = modified(port).map_err(|_| "invalid port".to_string())?;
    let hints = libc::addrinfo {
        // QEMU's flags: a connect (or a datagram's remote end) takes IPv4
        // addresses mapped into IPv6 when asked for IPv6 only.
        ai_flags: if passive {
            libc::AI_PASSIVE
        } else {
            libc::AI_CANONNAME | libc::AI_V4MAPPED | libc::AI_ADDRCONFIG
        },
        ai_family: if ipv4_only && !ipv6_only {
            libc::AF_INET
        } else if ipv6_only && !ipv4_only {
            libc::AF_INET6
        } else {
            libc::AF_UNSPEC
        },
        ai_socktype: socktype,
        ai_protocol: 0,
        ai_addrlen: 0,
        ai_addr: std::ptr::null_mut(),
        ai_canonname: std::ptr::null_mut(),
        ai_next: std::ptr::null_mut(),
    };
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // As QEMU: a listen without a host asks for the wildcard (no node); a
    // connect asks for the empty name, which does not resolve.
    let node = if host.is_empty() && passive {
        std::ptr::null()
    } else {
        chost.as_ptr()
    };
    // SAFETY: valid C strings (or NULL node), a hints struct we own, and an
    // out pointer getaddrinfo fills with a list we free below.
    let r = unsafe { libc::getaddrinfo(node, cport.as_ptr(), &hints, &mut res) };
    if r != 0 {
        let msg = if r == libc::EAI_SYSTEM {
            crate::error::os_message(&io::Error::last_os_error())
        } else {
            // SAFETY: gai_strerror returns a static NUL-terminated string.
            unsafe { CStr::from_ptr(libc::gai_strerror(r)) }
                .to_string_lossy()
                .into_owned()
        };
        return Err(msg);
    }
    let mut out = Vec::new();
    let mut p = res;
    while !p.is_null() {
        // SAFETY: `p` walks the list getaddrinfo returned, not yet freed.
        let ai = unsafe { &*p };
        let len = ai.ai_addrlen;
        if !ai.ai_addr.is_null() && len as usize <= std::mem::size_of::<libc::sockaddr_storage>() {
            // SAFETY: copies `len` bytes (checked to fit the storage) of the
            // address getaddrinfo gave, and sets the length to match.
            let copied = unsafe {
                SockAddr::try_init(|storage, storage_len| {
                    std::ptr::copy_nonoverlapping(
                        ai.ai_addr as *const u8,
                        storage.cast::<u8>(),
                        len as usize,
                    );
                    *storage_len = len;
                    Ok(())
                })
            };
            if let Some(sa) = copied.ok().and_then(|(_, a)| a.as_socket()) {
                if !out.contains(&sa) {
                    out.push(sa);
                }
            }
        }
        p = ai.ai_next;
    }
    // SAFETY: `res` came from a successful getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

/// connect(2), retried on EINTR.
pub(crate) fn connect(s: &Socket, a: &SockAddr) -> io::Result<()> {
    loop {
        match s.connect(a) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Shuts both directions of a connected socket down: the peer sees the
/// end at once, and reads here see it too.
pub(crate) fn shutdown(fd: BorrowedFd<'_>) -> io::Result<()> {
    SockRef::from(&fd).shutdown(std::net::Shutdown::Both)
}

/// accept4(2): a non-blocking, close-on-exec connection.
pub(crate) fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let (c, _) = SockRef::from(&fd).accept4(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)?;
    Ok(c.into())
}

/// Waits (blocking the calling thread) until `fd` is readable.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>) -> io::Result<()> {
    use rustix::event::{poll, PollFd, PollFlags};
    loop {
        match poll(&mut [PollFd::new(&fd, PollFlags::IN)], None) {
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A non-blocking socket registered with the reactor.
pub(crate) struct SockIo {
    fd: AsyncFd<OwnedFd>,
}

impl SockIo {
    /// Registers `fd` (made non-blocking) with the current runtime.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<SockIo> {
        SockRef::from(&fd).set_nonblocking(true)?;
        // SAFETY: the AsyncFd owns `fd`, so the descriptor stays open and
        // keeps its number for as long as the registration lives.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(SockIo { fd })
    }

    /// The socket's descriptor, borrowed for a call.
    pub(crate) fn raw(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }

    /// Runs a non-blocking operation when the socket is readable.
    pub(crate) fn poll_read_with<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(BorrowedFd<'_>) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let mut guard = match self.fd.poll_read_ready(cx) {
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            match guard.try_io(|inner| op(inner.get_ref().as_fd())) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    /// Runs a non-blocking operation when the socket is writable.
    pub(crate) fn poll_write_with<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(BorrowedFd<'_>) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let mut guard = match self.fd.poll_write_ready(cx) {
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            match guard.try_io(|inner| op(inner.get_ref().as_fd())) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    /// Whether the peer has ended the stream with nothing left unread,
    /// found without taking any input (for a connection whose frontend
    /// reads nothing now). Data waiting counts as "not gone": its end is
    /// seen when it is read.
    pub(crate) fn poll_gone(&self, cx: &mut Context<'_>) -> bool {
        loop {
            let mut guard = match self.fd.poll_read_ready(cx) {
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(_)) => return true,
                Poll::Pending => return false,
            };
            let mut b = [0u8; 1];
            let peeked = rustix::net::recv(
                self.raw(),
                &mut b,
                rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
            );
            match peeked {
                Ok((0, _)) => return true,
                Ok(_) => return false,
                Err(rustix::io::Errno::AGAIN) => guard.clear_ready(),
                Err(rustix::io::Errno::INTR) => continue,
                Err(
                    rustix::io::Errno::CONNRESET
                    | rustix::io::Errno::CONNABORTED
                    | rustix::io::Errno::TIMEDOUT
                    | rustix::io::Errno::PIPE,
                ) => return true,
                // Not a connection at all (a listening socket handed over as
                // a client's): nothing to hang up, as QEMU sees it. Waiting
                // for a new edge keeps this from spinning.
                Err(_) => {
                    guard.clear_ready();
                    return false;
                }
            }
        }
    }

    /// Reads what is there; `Ok(0)` is the peer's end of stream.
    pub(crate) fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_with(cx, |fd| recv(fd, buf))
    }

    /// Sends what the socket takes now (never raising SIGPIPE).
    pub(crate) fn poll_send(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |fd| send(fd, data))
    }
}

/// One recv(2), retried on EINTR.
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let s = SockRef::from(&fd);
    loop {
        match (&*s).read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// One send(2) with MSG_NOSIGNAL, retried on EINTR.
pub(crate) fn send(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    let s = SockRef::from(&fd);
    loop {
        match s.send_with_flags(data, libc::MSG_NOSIGNAL) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Whether an error means "try again later" rather than a dead socket.
pub(crate) fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
