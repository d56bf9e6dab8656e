//! `file`: output to a file (truncated or appended), input optionally read
//! from another file until its end.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::task::{Context, Poll};

use super::fdio::{self, FdIo};
use super::{Backend, BackendEvent};
use crate::error::{ChardevError, Result};
use crate::spec::ChardevFile;

/// The `file` backend.
pub(crate) struct FileBackend {
    out: FdIo,
    input: Option<FdIo>,
    /// Input reached its end and CLOSED was reported.
    input_done: bool,
}

/// Opens `path` as QEMU does for chardev files, with its error wording.
pub(crate) fn open_path(path: &str, opts: &mut OpenOptions) -> Result<OwnedFd> {
    opts.custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| ChardevError::io(format!("Could not open '{path}'"), e))
}

impl FileBackend {
    /// Opens `out` (and `in`, if given).
    pub(crate) fn open(spec: &ChardevFile) -> Result<FileBackend> {
        let mut o = OpenOptions::new();
        o.write(true).create(true).mode(0o666);
        if spec.append.unwrap_or(false) {
            o.append(true);
        } else {
            o.truncate(true);
        }
        let out = open_path(&spec.out, &mut o)?;
        let out = fdio::wrap(out)
            .map_err(|e| ChardevError::io(format!("Could not open '{}'", spec.out), e))?;
        let input = match &spec.input {
            Some(p) => {
                let fd = open_path(p, OpenOptions::new().read(true))?;
                Some(
                    fdio::wrap(fd)
                        .map_err(|e| ChardevError::io(format!("Could not open '{p}'"), e))?,
                )
            }
            None => None,
        };
        Ok(FileBackend {
            out,
            input,
            input_done: false,
        })
    }
}

impl Backend for FileBackend {
    fn poll_event(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<BackendEvent> {
        let Some(input) = &self.input else {
            return Poll::Pending;
        };
        if self.input_done || buf.is_empty() {
            return Poll::Pending;
        }
        match input.poll_read(cx, buf) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                self.input_done = true;
                Poll::Ready(BackendEvent::Closed)
            }
            Poll::Ready(Ok(n)) => Poll::Ready(BackendEvent::Input(n)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.out.poll_write(cx, data)
    }

    fn filename(&self) -> String {
        "file".into()
    }
}
