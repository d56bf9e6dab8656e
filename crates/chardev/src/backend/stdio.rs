// Hand-written part: atexit(3), so that the terminal is restored however the process exits; std and rustix offer no exit hook.
//! `stdio`: the process's standard input and output. The terminal is put in
//! raw mode while the backend lives and restored when it goes, or when the
//! process exits.

use std::io::{self, IsTerminal};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};

use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
use rustix::stdio::{stdin, stdout};

use super::fdio::{self, FdIo};
use super::{tty, Backend, BackendEvent};
use crate::error::{ChardevError, Result};

/// Only one chardev may own stdio, as in QEMU.
static IN_USE: AtomicBool = AtomicBool::new(false);
/// Terminal settings to put back at exit.
static SAVED: Mutex<Option<rustix::termios::Termios>> = Mutex::new(None);

extern "C" fn restore_at_exit() {
    restore();
}

fn restore() {
    if let Some(t) = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = tty::set_termios(stdin(), &t);
    }
}

/// The `stdio` backend.
pub(crate) struct StdioBackend {
    input: Option<FdIo>,
    output: FdIo,
    /// Descriptor flags of stdin/stdout to restore (O_NONBLOCK is shared
    /// with the shell through the open file description).
    flags: [Option<OFlags>; 2],
    eof: bool,
}

/// A close-on-exec duplicate of `fd`, numbered 3 or above.
fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 3)?)
}

impl StdioBackend {
    /// Takes stdio; `signals` keeps Ctrl-C raising SIGINT (`signal=on`).
    pub(crate) fn open(signals: bool) -> Result<StdioBackend> {
        if IN_USE.swap(true, Ordering::SeqCst) {
            return Err(ChardevError::Invalid(
                "cannot use stdio by multiple character devices".into(),
            ));
        }
        let flags = [fcntl_getfl(stdin()).ok(), fcntl_getfl(stdout()).ok()];
        let r = (|| -> io::Result<StdioBackend> {
            if io::stdin().is_terminal() {
                let old = tty::make_raw(stdin(), signals)?;
                let mut saved = SAVED.lock().unwrap_or_else(|e| e.into_inner());
                if saved.is_none() {
                    *saved = Some(old);
                    // SAFETY: registers a plain extern "C" fn with no captured state.
                    unsafe { libc::atexit(restore_at_exit) };
                }
            }
            let input = fdio::wrap(dup(stdin())?).ok();
            let output = fdio::wrap(dup(stdout())?)?;
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
        for (fd, fl) in [(stdin(), self.flags[0]), (stdout(), self.flags[1])] {
            if let Some(fl) = fl {
                let _ = fcntl_setfl(fd, fl);
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
