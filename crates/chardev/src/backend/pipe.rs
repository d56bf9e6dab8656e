//! `pipe`: a FIFO pair `PATH.in` (input) and `PATH.out` (output), or a
//! single FIFO `PATH` for both, as QEMU opens them.

use std::fs::OpenOptions;
use std::io;
use std::task::{Context, Poll};

use super::fdio::{self, FdIo};
use super::file::open_path;
use super::{Backend, BackendEvent};
use crate::error::{ChardevError, Result};

/// The `pipe` backend.
pub(crate) struct PipeBackend {
    input: FdIo,
    output: FdIo,
}

impl PipeBackend {
    /// Opens `PATH.in`/`PATH.out`, falling back to `PATH` alone.
    pub(crate) fn open(path: &str) -> Result<PipeBackend> {
        // Read-write opens never block on a FIFO without a peer.
        let rw = || {
            let mut o = OpenOptions::new();
            o.read(true).write(true);
            o
        };
        let pair = open_path(&format!("{path}.in"), &mut rw())
            .and_then(|i| open_path(&format!("{path}.out"), &mut rw()).map(|o| (i, o)));
        let (i, o) = match pair {
            Ok(p) => p,
            Err(_) => {
                let fd = open_path(path, &mut rw())?;
                let dup = fd
                    .try_clone()
                    .map_err(|e| ChardevError::io(format!("Could not open '{path}'"), e))?;
                (fd, dup)
            }
        };
        let wrap = |fd| {
            fdio::wrap(fd).map_err(|e| ChardevError::io(format!("Could not open '{path}'"), e))
        };
        Ok(PipeBackend {
            input: wrap(i)?,
            output: wrap(o)?,
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
