//! Socket plumbing shared by the `socket` and `udp` backends: name
//! resolution with getaddrinfo's own error texts (QEMU passes them through),
//! raw socket addresses (unix paths, abstract names with or without `tight`),
//! and non-blocking socket I/O driven by the tokio reactor.

use std::ffi::{CStr, CString};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;

/// A socket address as the kernel takes it.
#[derive(Clone, Copy)]
pub(crate) struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    fn zeroed() -> RawAddr {
        // SAFETY: sockaddr_storage is plain data for which all-zero is valid.
        let storage = unsafe { std::mem::zeroed() };
        RawAddr {
            storage,
            len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    /// An IPv4 or IPv6 address.
    pub(crate) fn inet(sa: &SocketAddr) -> RawAddr {
        let mut r = RawAddr::zeroed();
        match sa {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is larger than and aligned for
                // sockaddr_in.
                let sin = unsafe { &mut *(&mut r.storage as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                r.len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            SocketAddr::V6(a) => {
                // SAFETY: sockaddr_storage is larger than and aligned for
                // sockaddr_in6.
                let sin6 = unsafe { &mut *(&mut r.storage as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                r.len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
        }
        r
    }

    /// A unix socket address. `abstract_` puts `path` in the abstract
    /// namespace; `tight` then makes the address length cover only the name
    /// (otherwise the whole, zero-padded `sun_path`, as QEMU's `tight=off`).
    pub(crate) fn unix(path: &str, abstract_: bool, tight: bool) -> io::Result<RawAddr> {
        let mut r = RawAddr::zeroed();
        // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_un.
        let sun = unsafe { &mut *(&mut r.storage as *mut _ as *mut libc::sockaddr_un) };
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = path.as_bytes();
        let off = usize::from(abstract_);
        if bytes.len() + off >= sun.sun_path.len() || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("UNIX socket path '{path}' is too long"),
            ));
        }
        for (i, b) in bytes.iter().enumerate() {
            sun.sun_path[i + off] = *b as libc::c_char;
        }
        let base = std::mem::size_of::<libc::sa_family_t>();
        r.len = if abstract_ && !tight {
            std::mem::size_of::<libc::sockaddr_un>()
        } else if abstract_ {
            base + 1 + bytes.len()
        } else {
            base + bytes.len() + 1
        } as libc::socklen_t;
        Ok(r)
    }

    pub(crate) fn family(&self) -> libc::c_int {
        self.storage.ss_family as libc::c_int
    }

    fn ptr(&self) -> *const libc::sockaddr {
        &self.storage as *const _ as *const libc::sockaddr
    }

    /// The address as a std one, for inet families.
    pub(crate) fn as_inet(&self) -> Option<SocketAddr> {
        match self.family() {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin = unsafe { &*(self.ptr() as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6 = unsafe { &*(self.ptr() as *const libc::sockaddr_in6) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    /// For unix addresses: `sun_path` up to its first NUL, as C code prints
    /// it (empty for unnamed and abstract addresses).
    pub(crate) fn unix_path(&self) -> String {
        if self.family() != libc::AF_UNIX {
            return String::new();
        }
        // SAFETY: the family says the storage holds a sockaddr_un.
        let sun = unsafe { &*(self.ptr() as *const libc::sockaddr_un) };
        let base = std::mem::size_of::<libc::sa_family_t>();
        let n = (self.len as usize)
            .saturating_sub(base)
            .min(sun.sun_path.len());
        let bytes: Vec<u8> = sun.sun_path[..n]
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// `host:port` with the host numeric, IPv6 in brackets (`[::1]:4444`).
pub(crate) fn host_port(sa: &SocketAddr) -> String {
    match sa.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", sa.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", sa.port()),
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
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
    // SAFETY: addrinfo is plain data for which all-zero is a valid value.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = if ipv4_only && !ipv6_only {
        libc::AF_INET
    } else if ipv6_only && !ipv4_only {
        libc::AF_INET6
    } else {
        libc::AF_UNSPEC
    };
    hints.ai_socktype = socktype;
    // QEMU's flags: a connect (or a datagram's remote end) takes IPv4
    // addresses mapped into IPv6 when asked for IPv6 only.
    hints.ai_flags = if passive {
        libc::AI_PASSIVE
    } else {
        libc::AI_CANONNAME | libc::AI_V4MAPPED | libc::AI_ADDRCONFIG
    };
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    let node = if host.is_empty() {
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
        if !ai.ai_addr.is_null()
            && ai.ai_addrlen as usize <= std::mem::size_of::<libc::sockaddr_storage>()
        {
            let mut ra = RawAddr::zeroed();
            // SAFETY: copies `ai_addrlen` bytes (checked to fit) from the
            // address getaddrinfo gave into our storage.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    ai.ai_addr as *const u8,
                    &mut ra.storage as *mut _ as *mut u8,
                    ai.ai_addrlen as usize,
                );
            }
            ra.len = ai.ai_addrlen;
            if let Some(sa) = ra.as_inet() {
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

/// A new socket, close-on-exec, optionally non-blocking.
pub(crate) fn socket(family: libc::c_int, ty: libc::c_int, nonblock: bool) -> io::Result<OwnedFd> {
    let flags = libc::SOCK_CLOEXEC | if nonblock { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: socket() returns a new descriptor or -1.
    let fd = cvt(unsafe { libc::socket(family, ty | flags, 0) })?;
    // SAFETY: `fd` is fresh and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets an integer socket option.
pub(crate) fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to one c_int we own, with its size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &v as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

pub(crate) fn bind(fd: RawFd, a: &RawAddr) -> io::Result<()> {
    // SAFETY: the address is valid for `a.len` bytes.
    cvt(unsafe { libc::bind(fd, a.ptr(), a.len) }).map(|_| ())
}

pub(crate) fn listen(fd: RawFd, backlog: libc::c_int) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::listen(fd, backlog) }).map(|_| ())
}

/// connect(2), retried on EINTR.
pub(crate) fn connect(fd: RawFd, a: &RawAddr) -> io::Result<()> {
    loop {
        // SAFETY: the address is valid for `a.len` bytes.
        let r = unsafe { libc::connect(fd, a.ptr(), a.len) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// accept4(2): a non-blocking, close-on-exec connection.
/// Shuts both directions of a connected socket down: the peer sees the
/// end at once, and reads here see it too.
pub(crate) fn shutdown(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown takes a descriptor and a flag, no memory; a stale
    // descriptor only makes it fail.
    cvt(unsafe { libc::shutdown(fd, libc::SHUT_RDWR) }).map(|_| ())
}

pub(crate) fn accept(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: NULL address pointers are allowed; returns a new fd or -1.
    let c = cvt(unsafe {
        libc::accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    })?;
    // SAFETY: `c` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(c) })
}

fn name_of(
    fd: RawFd,
    f: unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int,
) -> io::Result<RawAddr> {
    let mut r = RawAddr::zeroed();
    // SAFETY: `f` is getsockname or getpeername; both write at most `r.len`
    // bytes into our storage and update `r.len`.
    cvt(unsafe {
        f(
            fd,
            &mut r.storage as *mut _ as *mut libc::sockaddr,
            &mut r.len,
        )
    })?;
    Ok(r)
}

pub(crate) fn local_addr(fd: RawFd) -> io::Result<RawAddr> {
    name_of(fd, libc::getsockname)
}

pub(crate) fn peer_addr(fd: RawFd) -> io::Result<RawAddr> {
    name_of(fd, libc::getpeername)
}

/// Waits (blocking the calling thread) until `fd` is readable.
pub(crate) fn wait_readable(fd: RawFd) -> io::Result<()> {
    loop {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on the one pollfd we own, no timeout.
        let r = unsafe { libc::poll(&mut p, 1, -1) };
        if r > 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if r < 0 && e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
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
        super::fdio::set_nonblocking(fd.as_raw_fd())?;
        // SAFETY: the AsyncFd owns `fd`, so the descriptor stays open and
        // keeps its number for as long as the registration lives.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(SockIo { fd })
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }

    /// A second descriptor for the same socket (close-on-exec).
    pub(crate) fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.get_ref().try_clone()
    }

    /// Runs a non-blocking operation when the socket is readable.
    pub(crate) fn poll_read_with<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(RawFd) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let mut guard = match self.fd.poll_read_ready(cx) {
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            match guard.try_io(|inner| op(inner.get_ref().as_raw_fd())) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    /// Runs a non-blocking operation when the socket is writable.
    pub(crate) fn poll_write_with<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(RawFd) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let mut guard = match self.fd.poll_write_ready(cx) {
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            match guard.try_io(|inner| op(inner.get_ref().as_raw_fd())) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
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
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid and writable for `buf.len()` bytes.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One send(2) with MSG_NOSIGNAL, retried on EINTR.
pub(crate) fn send(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `data` is valid and readable for `data.len()` bytes.
        let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
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
