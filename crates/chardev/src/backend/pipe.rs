//! `pipe`: a FIFO pair `PATH.in` (input) and `PATH.out` (output), or a
//! single FIFO `PATH` for both, as QEMU opens them.

use std::io;
use std::task::{Context, Poll};

use rustix::fs::OFlags;

use super::fdio::{self, FdIo};
use super::file::open_path;
use super::{Backend, BackendEvent};
use crate::error::{ChardevError, Result};
use crate::fdset::{DupLease, FdSets};

/// The `pipe` backend.
pub(crate) struct PipeBackend {
    input: FdIo,
    output: FdIo,
    /// Counts descriptors taken from fdsets as open while the backend is.
    _leases: Vec<DupLease>,
}

impl PipeBackend {
    /// Opens `PATH.in`/`PATH.out`, falling back to `PATH` alone (which is
    /// what `/dev/fdset/N` always ends up as: `N.in` does not parse).
    pub(crate) fn open(fdsets: &FdSets, path: &str) -> Result<PipeBackend> {
        // Read-write opens never block on a FIFO without a peer.
        let pair = open_path(fdsets, &format!("{path}.in"), OFlags::RDWR)
            .and_then(|i| open_path(fdsets, &format!("{path}.out"), OFlags::RDWR).map(|o| (i, o)));
        let (i, o, leases) = match pair {
            Ok((i, o)) => (i.fd, o.fd, i.lease.into_iter().chain(o.lease).collect()),
            Err(_) => {
                let one = open_path(fdsets, path, OFlags::RDWR)?;
                let dup = one
                    .fd
                    .try_clone()
                    .map_err(|e| ChardevError::io(format!("Could not open '{path}'"), e))?;
                (one.fd, dup, one.lease.into_iter().collect())
            }
        };
        let wrap = |fd| {
            fdio::wrap(fd).map_err(|e| ChardevError::io(format!("Could not open '{path}'"), e))
        };
        Ok(PipeBackend {
            input: wrap(i)?,
            output: wrap(o)?,
            _leases: leases,
        })
    }
}

impl Backend for PipeBackend {
    fn poll_event(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<BackendEvent> {
        if buf.is_empty() {
            return Poll::Pending;
        }
        match self.input.poll_read(cx, buf) {
            Poll::Ready(Ok(n)) if n > 0 => Poll::Ready(BackendEvent::Input(n)),
            // Opened read-write, a FIFO never reports end of file; errors
            // leave the backend silent rather than spinning.
            Poll::Ready(_) => Poll::Pending,
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.output.poll_write(cx, data)
    }

    fn filename(&self) -> String {
        "pipe".into()
    }
}
