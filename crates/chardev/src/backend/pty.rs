//! `pty`: a new pseudo-terminal whose slave path is returned to the user.
//! Usable with no slave open: output is then dropped (or kept in the
//! backlog), as in QEMU; the slave opening is noticed by polling for the
//! master's hang-up to clear.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::fdio::FdIo;
use super::{tty, Backend, BackendEvent, Drain};
use crate::error::{ChardevError, Result};

/// How often a pty without a slave checks whether one has opened.
const RECHECK: Duration = Duration::from_millis(50);
/// How often a retired pty looks whether its slave has read everything.
const UNREAD_RECHECK: Duration = Duration::from_millis(10);

/// The `pty` backend.
pub(crate) struct PtyBackend {
    master: FdIo,
    path: String,
    connected: bool,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Whether the slave side has no opener (the master reads hang-up).
fn slave_closed(fd: BorrowedFd<'_>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut p = [PollFd::new(&fd, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut p, Some(&now)), Ok(n) if n > 0) && p[0].revents().contains(PollFlags::HUP)
}

impl PtyBackend {
    /// Creates the pty, with the slave in raw mode.
    pub(crate) fn open(id: &str) -> Result<PtyBackend> {
        use rustix::fs::{open, Mode, OFlags};
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        let err = |e| ChardevError::io(format!("chardev '{id}': cannot create a pty"), e);
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .map_err(|e| err(e.into()))?;
        grantpt(&master).map_err(|e| err(e.into()))?;
        unlockpt(&master).map_err(|e| err(e.into()))?;
        let name = ptsname(&master, Vec::new()).map_err(|e| err(e.into()))?;
        let path = name.to_string_lossy().into_owned();
        // Make the slave raw once, so whoever opens it gets bytes unaltered.
        {
            let slave = open(
                name.as_c_str(),
                OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| err(e.into()))?;
            tty::make_raw(slave.as_fd(), false).map_err(err)?;
        }
        let master = FdIo::new(master).map_err(err)?;
        Ok(PtyBackend {
            master,
            path,
            connected: false,
            timer: None,
        })
    }

    fn check_connected(&mut self) -> bool {
        if !self.connected && !slave_closed(self.master.fd()) {
            self.connected = true;
            self.timer = None;
            // Clear the hang-up the reactor latched while no slave was open.
            if let Err(e) = self.master.refresh() {
                log::warn!("pty {}: cannot re-register the master: {e}", self.path);
            }
        }
        self.connected
    }
}

/// Keeps `master` open until the slave at `path` has nothing left to read
/// (seen twice, so that bytes still on their way count); the registry ends
/// it after its drain limit (a reader that stopped reading).
async fn hold_until_read(master: FdIo, path: String) {
    use rustix::fs::{open, Mode, OFlags};
    let Ok(slave) = open(
        path.as_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let mut empty_checks = 0;
    while empty_checks < 2 {
        tokio::time::sleep(UNREAD_RECHECK).await;
        // Bytes the slave can read now.
        match rustix::io::ioctl_fionread(&slave) {
            Ok(0) => empty_checks += 1,
            Ok(_) => empty_checks = 0,
            Err(_) => break,
        }
    }
    drop(master);
}

impl Backend for PtyBackend {
    fn poll_event(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<BackendEvent> {
        if !self.connected {
            if self.check_connected() {
                return Poll::Ready(BackendEvent::Opened);
            }
            loop {
                let t = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(RECHECK)));
                match t.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => {
                        self.timer = None;
                        if self.check_connected() {
                            return Poll::Ready(BackendEvent::Opened);
                        }
                    }
                }
            }
        }
        if buf.is_empty() {
            // Hang-up shows up as readiness too; without room for input we
            // cannot tell it from data, so we wait for room.
            return Poll::Pending;
        }
        match self.master.poll_read(cx, buf) {
            Poll::Ready(Ok(n)) if n > 0 => Poll::Ready(BackendEvent::Input(n)),
            // EIO (or EOF): the last slave opener has gone.
            Poll::Ready(_) => {
                self.connected = false;
                Poll::Ready(BackendEvent::Closed)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if !self.check_connected() {
            return Poll::Ready(Ok(data.len()));
        }
        match self.master.poll_write(cx, data) {
            Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc::EIO) => {
                Poll::Ready(Ok(data.len()))
            }
            other => other,
        }
    }

    fn is_open(&self) -> bool {
        self.connected
    }

    fn filename(&self) -> String {
        format!("pty:{}", self.path)
    }

    fn pty_path(&self) -> Option<String> {
        Some(self.path.clone())
    }

    fn drops_output_when_closed(&self) -> bool {
        true
    }

    /// The kernel discards what the slave has not read when the master
    /// closes; while a slave is open, the master is kept until it has read
    /// what it was sent.
    fn retire(self: Box<Self>) -> Option<Drain> {
        if !self.connected {
            return None;
        }
        let PtyBackend { master, path, .. } = *self;
        Some(Drain::new(hold_until_read(master, path)))
    }
}
