//! `stdio`: the process's standard input and output. The terminal is put in
//! raw mode while the backend lives and restored when it goes, or when the
//! process exits.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};

use super::fdio::{self, FdIo};
use super::{tty, Backend, BackendEvent};
use crate::error::{ChardevError, Result};

/// Only one chardev may own stdio, as in QEMU.
static IN_USE: AtomicBool = AtomicBool::new(false);
/// Terminal settings to put back at exit.
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

extern "C" fn restore_at_exit() {
    restore();
}

fn restore() {
    if let Some(t) = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = tty::set_termios(0, &t);
    }
}

/// The `stdio` backend.
pub(crate) struct StdioBackend {
    input: Option<FdIo>,
    output: FdIo,
    /// Descriptor flags of stdin/stdout to restore (O_NONBLOCK is shared
    /// with the shell through the open file description).
    flags: [libc::c_int; 2],
    eof: bool,
}

fn dup(fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we then own alone.
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `n` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

fn getfl(fd: i32) -> libc::c_int {
    // SAFETY: F_GETFL takes and returns plain integers.
    unsafe { libc::fcntl(fd, libc::F_GETFL) }
}

impl StdioBackend {
    /// Takes stdio; `signals` keeps Ctrl-C raising SIGINT (`signal=on`).
    pub(crate) fn open(signals: bool) -> Result<StdioBackend> {
        if IN_USE.swap(true, Ordering::SeqCst) {
            return Err(ChardevError::Invalid(
                "cannot use stdio by multiple character devices".into(),
            ));
        }
        let flags = [getfl(0), getfl(1)];
        let r = (|| -> io::Result<StdioBackend> {
            // SAFETY: isatty only inspects the descriptor.
            if unsafe { libc::isatty(0) } == 1 {
                let old = tty::make_raw(0, signals)?;
                let mut saved = SAVED.lock().unwrap_or_else(|e| e.into_inner());
                if saved.is_none() {
                    *saved = Some(old);
                    // SAFETY: registers a plain extern "C" fn with no captured state.
                    unsafe { libc::atexit(restore_at_exit) };
                }
            }
            let input = fdio::wrap(dup(0)?).ok();
            let output = fdio::wrap(dup(1)?)?;
            Ok(StdioBackend {
                input,
                output,
                flags,
                eof: false,
            })
        })();
        r.map_err(|e| {
            IN_USE.store(false, Ordering::SeqCst);
            ChardevError::io("cannot set up stdio", e)
        })
    }
}

impl Drop for StdioBackend {
    fn drop(&mut self) {
        restore();
        for (fd, fl) in [(0, self.flags[0]), (1, self.flags[1])] {
            if fl >= 0 {
                // SAFETY: F_SETFL with the flags the descriptor had before.
                unsafe { libc::fcntl(fd, libc::F_SETFL, fl) };
            }
        }
        IN_USE.store(false, Ordering::SeqCst);
    }
}

impl Backend for StdioBackend {
    fn poll_event(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<BackendEvent> {
        let Some(input) = &self.input else {
            return Poll::Pending;
        };
        if self.eof || buf.is_empty() {
            return Poll::Pending;
        }
        match input.poll_read(cx, buf) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                self.eof = true;
                Poll::Ready(BackendEvent::Closed)
            }
            Poll::Ready(Ok(n)) => Poll::Ready(BackendEvent::Input(n)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.output.poll_write(cx, data)
    }

    fn filename(&self) -> String {
        "stdio".into()
    }
}
