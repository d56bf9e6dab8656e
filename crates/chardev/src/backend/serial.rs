//! `serial` (alias `tty`): a host serial line such as `/dev/ttyS0` or a pty
//! slave. Raw mode at 115200 8N1 on open, as QEMU; the frontend's line
//! settings, modem lines and break reach the tty through `ioctl`. As in
//! QEMU, a device that is not a tty is accepted and the settings are
//! skipped. `query-chardev` calls it `serial`.

use std::fs::OpenOptions;
use std::io::{self, IsTerminal};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::task::{Context, Poll};

use super::fdio::FdIo;
use super::{tty, Backend, BackendEvent, IoctlReply, SerialIoctl, SerialParams};
use crate::error::Result;

/// The `serial` backend.
pub(crate) struct SerialBackend {
    dev: FdIo,
    is_tty: bool,
    /// The line reported end of input (a pty whose master went away).
    closed: bool,
}

impl SerialBackend {
    /// Opens `path` read-write, without making it our controlling tty.
    pub(crate) fn open(path: &str) -> Result<SerialBackend> {
        let fd = super::file::open_path(
            path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK),
        )?;
        let is_tty = fd.is_terminal();
        if is_tty {
            let _ = tty::make_raw(fd.as_fd(), false);
            let _ = tty::apply_params(
                fd.as_fd(),
                &SerialParams {
                    speed: 115200,
                    ..SerialParams::default()
                },
            );
        }
        // Devices that cannot be polled (/dev/null) are used directly.
        let dev = match fd.try_clone().and_then(FdIo::new) {
            Ok(polled) => polled,
            Err(_) => FdIo::plain(fd),
        };
        Ok(SerialBackend {
            dev,
            is_tty,
            closed: false,
        })
    }
}

impl Backend for SerialBackend {
    fn poll_event(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<BackendEvent> {
        if self.closed || buf.is_empty() {
            return Poll::Pending;
        }
        match self.dev.poll_read(cx, buf) {
            Poll::Ready(Ok(n)) if n > 0 => Poll::Ready(BackendEvent::Input(n)),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            Poll::Ready(_) => {
                self.closed = true;
                Poll::Ready(BackendEvent::Closed)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.dev.poll_write(cx, data) {
            // The other end of a pty went away: output is dropped.
            Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc::EIO) => {
                Poll::Ready(Ok(data.len()))
            }
            other => other,
        }
    }

    fn filename(&self) -> String {
        "serial".into()
    }

    fn has_serial_line(&self) -> bool {
        self.is_tty
    }

    fn ioctl(&mut self, req: SerialIoctl) -> Result<IoctlReply> {
        if !self.is_tty {
            return Ok(IoctlReply::Unsupported);
        }
        tty::serial_ioctl(self.dev.fd(), req)
    }
}
