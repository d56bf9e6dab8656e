//! `pty`: a new pseudo-terminal whose slave path is returned to the user.
//! Usable with no slave open: output is then dropped (or kept in the
//! backlog), as in QEMU; the slave opening is noticed by polling for the
//! master's hang-up to clear.

use std::ffi::CStr;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Whether the slave side has no opener (the master reads hang-up).
fn slave_closed(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd we own; timeout 0.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r > 0 && (p.revents & libc::POLLHUP) != 0
}

impl PtyBackend {
    /// Creates the pty, with the slave in raw mode.
    pub(crate) fn open(id: &str) -> Result<PtyBackend> {
        let err = |e| ChardevError::io(format!("chardev '{id}': cannot create a pty"), e);
        // SAFETY: posix_openpt returns a new descriptor or -1.
        let m = cvt(unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })
            .map_err(err)?;
        // SAFETY: `m` is a fresh descriptor we own from here on.
        let master = unsafe { OwnedFd::from_raw_fd(m) };
        // SAFETY: grantpt/unlockpt act on the master descriptor only.
        cvt(unsafe { libc::grantpt(master.as_raw_fd()) }).map_err(err)?;
        // SAFETY: as above.
        cvt(unsafe { libc::unlockpt(master.as_raw_fd()) }).map_err(err)?;
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: ptsname_r writes a NUL-terminated name of at most
        // `name.len()` bytes into the buffer we own.
        let r = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
        if r != 0 {
            return Err(err(io::Error::from_raw_os_error(r)));
        }
        // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated string.
        let path = unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        // Make the slave raw once, so whoever opens it gets bytes unaltered.
        {
            let c = std::ffi::CString::new(path.clone())
                .map_err(|_| err(io::ErrorKind::InvalidData.into()))?;
            // SAFETY: open with a valid C string; the result is owned below.
            let s = cvt(unsafe {
                libc::open(c.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC)
            })
            .map_err(err)?;
            // SAFETY: `s` is a fresh descriptor we own; dropped at block end.
            let slave = unsafe { OwnedFd::from_raw_fd(s) };
            tty::make_raw(slave.as_raw_fd(), false).map_err(err)?;
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
        if !self.connected && !slave_closed(self.master.raw()) {
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

/// Bytes the slave of a pty can read now (FIONREAD on a slave descriptor).
fn unread(slave: RawFd) -> io::Result<libc::c_int> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points
    // to `n`, alive for the call.
    cvt(unsafe { libc::ioctl(slave, libc::FIONREAD, &mut n as *mut libc::c_int) })?;
    Ok(n)
}

/// Keeps `master` open until the slave at `path` has nothing left to read
/// (seen twice, so that bytes still on their way count); the registry ends
/// it after its drain limit (a reader that stopped reading).
async fn hold_until_read(master: FdIo, path: String) {
    let Ok(c) = std::ffi::CString::new(path) else {
        return;
    };
    // SAFETY: open with a valid C string; the result is owned below.
    let Ok(s) = cvt(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    }) else {
        return;
    };
    // SAFETY: `s` is a fresh descriptor owned by nobody else.
    let slave = unsafe { OwnedFd::from_raw_fd(s) };
    let mut empty_checks = 0;
    while empty_checks < 2 {
        tokio::time::sleep(UNREAD_RECHECK).await;
        match unread(slave.as_raw_fd()) {
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
