//! `file`: output to a file (truncated or appended), input optionally read
//! from another file until its end.

use std::io;
use std::os::fd::OwnedFd;
use std::task::{Context, Poll};

use rustix::fs::{Mode, OFlags};

use super::fdio::{self, FdIo};
use super::{Backend, BackendEvent};
use crate::error::{ChardevError, Result};
use crate::fdset::{DupLease, FdSets, FDSET_PREFIX};
use crate::spec::ChardevFile;

/// The `file` backend.
pub(crate) struct FileBackend {
    out: FdIo,
    input: Option<FdIo>,
    /// Input reached its end and CLOSED was reported.
    input_done: bool,
    /// Counts descriptors taken from fdsets as open while the backend is.
    _leases: Vec<DupLease>,
}

/// A descriptor a backend opened from a path, and, when the path named an
/// fdset (`/dev/fdset/N`), the lease that counts it in its set.
pub(crate) struct Opened {
    pub(crate) fd: OwnedFd,
    pub(crate) lease: Option<DupLease>,
}

/// Opens `path` with `flags` (close-on-exec added) as QEMU opens chardev
/// paths: `/dev/fdset/N` duplicates a member of set N, anything else is
/// opened with mode 0666 (less the umask). Errors in QEMU's words.
pub(crate) fn open_path(fdsets: &FdSets, path: &str, flags: OFlags) -> Result<Opened> {
    let r = if path.starts_with(FDSET_PREFIX) {
        fdsets.open(path, flags).map(|d| Opened {
            fd: d.fd,
            lease: Some(d.lease),
        })
    } else {
        open_plain(path, flags).map(|fd| Opened { fd, lease: None })
    };
    r.map_err(|e| ChardevError::io(format!("Could not open '{path}'"), e))
}

/// open(2) of a path, close-on-exec, mode 0666 (less the umask). A path
/// with a NUL is refused as `std::fs` refuses one (QEMU opens the name with
/// the bytes C0 80 in its place: docs/differences.md, `nul-in-paths`).
fn open_plain(path: &str, flags: OFlags) -> io::Result<OwnedFd> {
    if path.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "file name contained an unexpected NUL byte",
        ));
    }
    let mode = Mode::from_bits_truncate(0o666);
    Ok(rustix::fs::open(path, flags | OFlags::CLOEXEC, mode)?)
}

/// The flags QEMU opens a file chardev's output with.
pub(crate) fn out_flags(append: bool) -> OFlags {
    OFlags::WRONLY
        | OFlags::CREATE
        | if append {
            OFlags::APPEND
        } else {
            OFlags::TRUNC
        }
}

impl FileBackend {
    /// Opens `out` (and `in`, if given).
    pub(crate) fn open(fdsets: &FdSets, spec: &ChardevFile) -> Result<FileBackend> {
        let out = open_path(fdsets, &spec.out, out_flags(spec.append.unwrap_or(false)))?;
        let mut leases: Vec<DupLease> = out.lease.into_iter().collect();
        let out = fdio::wrap(out.fd)
            .map_err(|e| ChardevError::io(format!("Could not open '{}'", spec.out), e))?;
        let input = match &spec.input {
            Some(p) => {
                // On failure the output's descriptor (and its lease) goes.
                let i = open_path(fdsets, p, OFlags::RDONLY)?;
                leases.extend(i.lease);
                Some(
                    fdio::wrap(i.fd)
                        .map_err(|e| ChardevError::io(format!("Could not open '{p}'"), e))?,
                )
            }
            None => None,
        };
        Ok(FileBackend {
            out,
            input,
            input_done: false,
            _leases: leases,
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
