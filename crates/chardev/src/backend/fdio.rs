//! Non-blocking I/O on a raw descriptor (pipe, pty, tty, stdio, file) driven
//! by the tokio reactor; regular files, which epoll refuses, are read and
//! written directly since they never block for long.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;

/// A descriptor polled through the reactor when it can be, directly when not.
pub(crate) enum FdIo {
    /// Registered with the reactor (pipes, ttys, sockets).
    Polled(AsyncFd<OwnedFd>),
    /// A regular file: always ready.
    Plain(OwnedFd),
}

impl FdIo {
    /// Makes `fd` non-blocking and registers it with the reactor.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<FdIo> {
        set_nonblocking(fd.as_fd())?;
        // SAFETY: the AsyncFd owns `fd` (an OwnedFd), so the descriptor stays
        // open and keeps its number for as long as the registration lives.
        let a = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(FdIo::Polled(a))
    }

    /// Wraps a descriptor known to be a regular file.
    pub(crate) fn plain(fd: OwnedFd) -> FdIo {
        FdIo::Plain(fd)
    }

    /// Registers the descriptor with the reactor afresh (through a
    /// duplicate). Tokio keeps a hang-up as a final state; a pty master
    /// whose slave was closed and has been opened again needs this, or it
    /// stays "readable" forever and reads spin on EAGAIN.
    pub(crate) fn refresh(&mut self) -> io::Result<()> {
        if let FdIo::Polled(a) = self {
            let dup = a.get_ref().try_clone()?;
            *self = FdIo::new(dup)?;
        }
        Ok(())
    }

    /// The descriptor, borrowed for a call (ioctls, termios).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            FdIo::Polled(a) => a.get_ref().as_fd(),
            FdIo::Plain(f) => f.as_fd(),
        }
    }

    /// Reads what is available; `Ready(Ok(0))` is end of file.
    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self {
            FdIo::Plain(f) => Poll::Ready(read_fd(f.as_fd(), buf)),
            FdIo::Polled(a) => loop {
                let mut guard = match a.poll_read_ready(cx) {
                    Poll::Ready(Ok(g)) => g,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                };
                match guard.try_io(|inner| read_fd(inner.get_ref().as_fd(), buf)) {
                    Ok(r) => return Poll::Ready(r),
                    Err(_would_block) => continue,
                }
            },
        }
    }

    /// Writes what the descriptor takes now.
    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            FdIo::Plain(f) => Poll::Ready(write_fd(f.as_fd(), data)),
            FdIo::Polled(a) => loop {
                let mut guard = match a.poll_write_ready(cx) {
                    Poll::Ready(Ok(g)) => g,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                };
                match guard.try_io(|inner| write_fd(inner.get_ref().as_fd(), data)) {
                    Ok(r) => return Poll::Ready(r),
                    Err(_would_block) => continue,
                }
            },
        }
    }
}

/// Sets O_NONBLOCK.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    let flags = fcntl_getfl(fd)?;
    fcntl_setfl(fd, flags | OFlags::NONBLOCK)?;
    Ok(())
}

/// One read(2), retried on EINTR.
pub(crate) fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// One write(2), retried on EINTR.
pub(crate) fn write_fd(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::io::write(fd, data) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// Whether `fd` is a regular file (which epoll cannot watch).
pub(crate) fn is_regular_file(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file())
}

/// Wraps `fd`: plain for regular files and for the other descriptors
/// epoll refuses (EPERM: `/dev/null`, `/dev/zero`, which never block
/// either), polled otherwise.
pub(crate) fn wrap(fd: OwnedFd) -> io::Result<FdIo> {
    if is_regular_file(fd.as_fd()) {
        return Ok(FdIo::plain(fd));
    }
    let spare = fd.try_clone()?;
    match FdIo::new(fd) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(FdIo::plain(spare)),
        r => r,
    }
}
