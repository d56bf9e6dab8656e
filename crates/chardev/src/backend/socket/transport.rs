//! A connection's byte stream: what its framing (telnet, websocket) reads
//! from and writes to. Today only the plain socket. The connection calls
//! nothing else for I/O, so a stream with its own buffers and a handshake of
//! its own (TLS) can be added here as another kind without changing the
//! framing: it reports when it carries data (`poll_ready`), counts what it
//! buffered as written and sends it in `poll_flush`, and says whether it
//! still owes its peer anything (`owes`).

use std::io;
use std::os::fd::OwnedFd;
use std::task::{Context, Poll};

use crate::backend::net::{self, SockIo};
use crate::fdpass;

/// The stream under a connection's framing.
pub(super) enum Transport {
    /// Bytes go to and come from the socket as they are.
    Plain(SockIo),
    /// A unix socket: as `Plain`, and descriptors sent with the bytes
    /// (SCM_RIGHTS) are received; the one the newest message that carried
    /// any brought waits here, replacing (closing) an older one.
    Unix(SockIo, Option<OwnedFd>),
}

impl Transport {
    /// The connected socket itself, registered with the reactor.
    pub(super) fn plain(fd: OwnedFd) -> io::Result<Transport> {
        if fdpass::is_unix_socket(&fd) {
            return Ok(Transport::Unix(SockIo::new(fd)?, None));
        }
        Ok(Transport::Plain(SockIo::new(fd)?))
    }

    /// Whether the peer has gone with nothing left unread (see
    /// [`SockIo::poll_gone`]); takes no input.
    pub(super) fn poll_gone(&mut self, cx: &mut Context<'_>) -> bool {
        match self {
            Transport::Plain(s) | Transport::Unix(s, _) => s.poll_gone(cx),
        }
    }

    /// Takes the descriptor received last, if one waits.
    pub(super) fn take_received(&mut self) -> Option<OwnedFd> {
        match self {
            Transport::Plain(_) => None,
            Transport::Unix(_, fd) => fd.take(),
        }
    }

    /// Whether it carries data yet. A plain socket does from the start.
    pub(super) fn is_ready(&self) -> bool {
        match self {
            Transport::Plain(_) | Transport::Unix(..) => true,
        }
    }

    /// Drives what comes before data (a handshake) until it carries data.
    /// An error ends the connection.
    pub(super) fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Plain(_) | Transport::Unix(..) => Poll::Ready(Ok(())),
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
            Transport::Unix(s, waiting) => {
                match s.poll_read_with(cx, |fd| fdpass::recv_with_fds(fd, buf)) {
                    Poll::Ready(Ok((n, fd))) => {
                        if fd.is_some() {
                            // The older one, not taken, closes.
                            *waiting = fd;
                        }
                        Poll::Ready(Ok(n))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            }
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
            Transport::Plain(s) | Transport::Unix(s, _) => s.poll_send(cx, data),
        }
    }

    /// Sends what it took and still keeps; `Ready(Ok)` once it keeps
    /// nothing. A plain socket keeps nothing.
    pub(super) fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Plain(_) | Transport::Unix(..) => Poll::Ready(Ok(())),
        }
    }

    /// Whether it keeps bytes its peer has not got yet.
    pub(super) fn owes(&self) -> bool {
        match self {
            Transport::Plain(_) | Transport::Unix(..) => false,
        }
    }

    /// One attempt to send `data` that never waits, for a connection that
    /// is closing.
    pub(super) fn write_now(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) | Transport::Unix(s, _) => net::send(s.raw(), data),
        }
    }

    /// Ends both directions: the peer sees the end at once, and reads here
    /// see it too.
    pub(super) fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) | Transport::Unix(s, _) => net::shutdown(s.raw()),
        }
    }
}
