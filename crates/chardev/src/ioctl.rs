//! Serial-line requests of frontends (QEMU's `CHR_IOCTL_SERIAL_*`) without
//! the caller waiting for a backend: a UART makes them on its vCPU thread,
//! which must never wait for the I/O thread (busy in a backend or log write
//! under the chardev's state lock).
//!
//! - On the I/O thread a request goes to the backend at once, after any
//!   queued ones (frontends' handlers, `backend_changed`, the mux).
//! - From another thread, settings (line parameters, break, DTR/RTS) are
//!   queued and the I/O task applies them on its next turn; the caller gets
//!   `Done` (or `Unsupported` from a backend without a serial line). The
//!   queue is bounded: only the newest parameters and modem lines matter,
//!   and break transitions are kept in order up to a bound, the newest
//!   replacing the last one past it.
//! - `GetModem` from another thread is answered from the modem lines the
//!   I/O thread read last; a read finding them older than
//!   [`MODEM_POLL_INTERVAL`] asks the I/O task for a fresh reading (as
//!   QEMU's serial polls them), so a guest polling MSR sees a change within
//!   about 10 ms, and the lines are read at most 100 times a second.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::backend::{IoctlReply, SerialIoctl, SerialParams};
use crate::chardev::Chardev;
use crate::error::{ChardevError, Result};

/// How old the modem lines may be before a read asks for new ones.
pub(crate) const MODEM_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Break transitions kept while the I/O task has not applied them.
const MAX_QUEUED_BREAKS: usize = 16;

/// Settings waiting for the I/O task.
#[derive(Debug, Default)]
pub(crate) struct QueuedIoctls {
    params: Option<SerialParams>,
    modem: Option<u32>,
    breaks: VecDeque<bool>,
}

impl QueuedIoctls {
    fn push(&mut self, req: SerialIoctl) {
        match req {
            SerialIoctl::SetParams(p) => self.params = Some(p),
            SerialIoctl::SetModem(m) => self.modem = Some(m),
            SerialIoctl::SetBreak(on) => {
                if self.breaks.len() < MAX_QUEUED_BREAKS {
                    self.breaks.push_back(on);
                } else if let Some(last) = self.breaks.back_mut() {
                    *last = on;
                }
            }
            SerialIoctl::GetModem => {}
        }
    }

    /// The requests, in the order they are to be applied.
    fn take(&mut self) -> Vec<SerialIoctl> {
        let mut v = Vec::new();
        v.extend(self.params.take().map(SerialIoctl::SetParams));
        v.extend(self.modem.take().map(SerialIoctl::SetModem));
        v.extend(self.breaks.drain(..).map(SerialIoctl::SetBreak));
        v
    }

    fn is_empty(&self) -> bool {
        self.params.is_none() && self.modem.is_none() && self.breaks.is_empty()
    }
}

/// The modem lines as the I/O thread last read them, in one atomic word:
/// the kind of answer in the high half, the bits (or errno) in the low.
#[derive(Debug)]
pub(crate) struct ModemCache {
    word: AtomicU64,
    /// When a reader last asked for a fresh reading (ns since [`epoch`]).
    asked_at: AtomicU64,
    /// The I/O task owes a reading.
    wanted: AtomicBool,
}

/// `asked_at` before the first request.
const NEVER: u64 = u64::MAX;
const KIND_UNSUPPORTED: u64 = 0;
const KIND_BITS: u64 = 1;
const KIND_ERRNO: u64 = 2;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

impl Default for ModemCache {
    fn default() -> Self {
        ModemCache {
            word: AtomicU64::new(KIND_UNSUPPORTED << 32),
            asked_at: AtomicU64::new(NEVER),
            wanted: AtomicBool::new(false),
        }
    }
}

impl ModemCache {
    /// Stores the answer of a `GetModem` made on the backend.
    pub(crate) fn store(&self, r: &Result<IoctlReply>) {
        let word = match r {
            Ok(IoctlReply::Modem(bits)) => (KIND_BITS << 32) | u64::from(*bits),
            Ok(_) => KIND_UNSUPPORTED << 32,
            Err(ChardevError::Io { source, .. }) => {
                (KIND_ERRNO << 32) | u64::from(source.raw_os_error().unwrap_or(libc::EIO) as u32)
            }
            Err(_) => (KIND_ERRNO << 32) | libc::EIO as u64,
        };
        self.word.store(word, Ordering::Release);
    }

    /// The last answer, as the backend gave it.
    fn answer(&self) -> Result<IoctlReply> {
        let word = self.word.load(Ordering::Acquire);
        let low = word as u32;
        match word >> 32 {
            KIND_BITS => Ok(IoctlReply::Modem(low)),
            KIND_ERRNO => Err(ChardevError::io(
                "serial ioctl failed",
                std::io::Error::from_raw_os_error(low as i32),
            )),
            _ => Ok(IoctlReply::Unsupported),
        }
    }

    /// Whether this reader should ask for a fresh reading: the last request
    /// is older than the poll interval, and no other reader won the race.
    fn should_ask(&self) -> bool {
        let now = now_ns();
        let last = self.asked_at.load(Ordering::Relaxed);
        (last == NEVER || now.saturating_sub(last) >= MODEM_POLL_INTERVAL.as_nanos() as u64)
            && self
                .asked_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl Chardev {
    /// See the module documentation.
    pub(crate) fn ioctl(&self, req: SerialIoctl) -> Result<IoctlReply> {
        if self.io.on_io_thread() {
            self.apply_queued_ioctls();
            let r = self.state().inst.backend.ioctl(req);
            if req == SerialIoctl::GetModem {
                self.modem.store(&r);
            }
            return r;
        }
        if !self.serial_line.load(Ordering::Acquire) {
            return Ok(IoctlReply::Unsupported);
        }
        if req == SerialIoctl::GetModem {
            if self.modem.should_ask() {
                self.modem.wanted.store(true, Ordering::Release);
                self.kick();
            }
            return self.modem.answer();
        }
        lock(&self.ioctls).push(req);
        self.kick();
        Ok(IoctlReply::Done)
    }

    /// Applies the queued settings to the backend; on the I/O thread.
    /// Returns whether there were any. Errors are logged: their caller has
    /// long returned.
    pub(crate) fn apply_queued_ioctls(&self) -> bool {
        let reqs = {
            let mut q = lock(&self.ioctls);
            if q.is_empty() {
                return false;
            }
            q.take()
        };
        for req in reqs {
            let r = self.state().inst.backend.ioctl(req);
            if let Err(e) = r {
                if !self.ioctl_error_logged.swap(true, Ordering::Relaxed) {
                    log::warn!("chardev '{}': {req:?}: {e}", self.id);
                } else {
                    log::debug!("chardev '{}': {req:?}: {e}", self.id);
                }
            }
        }
        true
    }

    /// Reads the modem lines from the backend if a reader asked (or `force`,
    /// for a new backend); on the I/O thread.
    pub(crate) fn refresh_modem(&self, force: bool) {
        if self.modem.wanted.swap(false, Ordering::AcqRel) || force {
            let r = self.state().inst.backend.ioctl(SerialIoctl::GetModem);
            self.modem.store(&r);
        }
    }

    /// Follows the installed backend: whether it has a serial line, and its
    /// modem lines. Called with the new backend in place.
    pub(crate) fn note_serial_line(&self) {
        let has = self.state().inst.backend.has_serial_line();
        self.serial_line.store(has, Ordering::Release);
        if has && self.io.on_io_thread() {
            self.refresh_modem(true);
        } else if has {
            // Opened on the caller's thread: read there too (not a vCPU).
            let r = self.state().inst.backend.ioctl(SerialIoctl::GetModem);
            self.modem.store(&r);
        } else {
            self.modem.store(&Ok(IoctlReply::Unsupported));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_settings_keep_the_newest_and_bounded_breaks() {
        let mut q = QueuedIoctls::default();
        let p = |speed| {
            SerialIoctl::SetParams(SerialParams {
                speed,
                ..SerialParams::default()
            })
        };
        q.push(p(9600));
        q.push(SerialIoctl::SetModem(2));
        q.push(p(19200));
        for i in 0..100 {
            q.push(SerialIoctl::SetBreak(i % 2 == 0));
        }
        q.push(SerialIoctl::SetModem(4));
        let v = q.take();
        assert_eq!(v[0], p(19200));
        assert_eq!(v[1], SerialIoctl::SetModem(4));
        assert_eq!(v.len(), 2 + MAX_QUEUED_BREAKS);
        assert_eq!(v[2], SerialIoctl::SetBreak(true), "the first in order");
        assert_eq!(
            v.last(),
            Some(&SerialIoctl::SetBreak(false)),
            "the newest last"
        );
        assert!(q.is_empty());
    }

    #[test]
    fn modem_cache_gives_back_what_the_backend_said() {
        let c = ModemCache::default();
        assert_eq!(c.answer().unwrap(), IoctlReply::Unsupported);
        c.store(&Ok(IoctlReply::Modem(0x1e6)));
        assert_eq!(c.answer().unwrap(), IoctlReply::Modem(0x1e6));
        c.store(&Err(ChardevError::io(
            "serial ioctl failed",
            std::io::Error::from_raw_os_error(libc::ENOTTY),
        )));
        let e = c.answer().unwrap_err().to_string();
        assert!(e.starts_with("serial ioctl failed"), "{e}");
        assert!(c.should_ask(), "never asked");
        assert!(!c.should_ask(), "at most once per interval");
    }
}
