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

/// The stream under a connection's framing.
pub(super) enum Transport {
    /// Bytes go to and come from the socket as they are.
    Plain(SockIo),
}

impl Transport {
    /// The connected socket itself, registered with the reactor.
    pub(super) fn plain(fd: OwnedFd) -> io::Result<Transport> {
        Ok(Transport::Plain(SockIo::new(fd)?))
    }

    /// Whether it carries data yet. A plain socket does from the start.
    pub(super) fn is_ready(&self) -> bool {
        match self {
            Transport::Plain(_) => true,
        }
    }

    /// Drives what comes before data (a handshake) until it carries data.
    /// An error ends the connection.
    pub(super) fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Plain(_) => Poll::Ready(Ok(())),
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
        }
    }

    /// Sends what it took and still keeps; `Ready(Ok)` once it keeps
    /// nothing. A plain socket keeps nothing.
    pub(super) fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Plain(_) => Poll::Ready(Ok(())),
        }
    }

    /// Whether it keeps bytes its peer has not got yet.
    pub(super) fn owes(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
        }
    }

    /// One attempt to send `data` that never waits, for a connection that
    /// is closing.
    pub(super) fn write_now(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => net::send(s.raw(), data),
        }
    }

    /// Ends both directions: the peer sees the end at once, and reads here
    /// see it too.
    pub(super) fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => net::shutdown(s.raw()),
        }
    }
}
