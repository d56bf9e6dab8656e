//! Taps: readers of a chardev at chardev level, beside its backend.
//!
//! A [`Tap`] reads what the chardev sends out from its
//! [history](crate::history) at its own offset: from the oldest byte kept
//! (`from_history`) or from now, then live output as it goes out. It never
//! holds the chardev back: a tap that reads slower than the history turns
//! over is told how many bytes it lost ([`TapRead::Skipped`]) and reads on
//! from the oldest byte kept. A tap that is not read-only may also type:
//! its input goes to the chardev's focused frontend as backend input does
//! (only as fast as the frontend's `can_read` allows), through a bounded
//! queue per chardev ([`TAP_INPUT_CAP`]).
//!
//! Taps hang off the chardev, so they follow `chardev-change` without
//! noticing; `chardev-remove` ends them ([`TapRead::Closed`] once they have
//! read the rest).
//!
//! ```
//! use std::sync::mpsc;
//! use qchar_chardev::{FrontendHandlers, Registry};
//! use qchar_chardev::spec::{ChardevBackend, ChardevCommon};
//! use qchar_chardev::tap::{TapOptions, TapRead};
//!
//! /// A device that takes any input and passes it on.
//! struct Device(mpsc::Sender<Vec<u8>>);
//! impl FrontendHandlers for Device {
//!     fn can_read(&mut self) -> usize { 64 }
//!     fn read(&mut self, data: &[u8]) { self.0.send(data.to_vec()).unwrap(); }
//!     fn supports_hotswap(&self) -> bool { true }
//! }
//!
//! let reg = Registry::new().unwrap();
//! // `backlog=SIZE`: the chardev keeps a history from the start (a tap
//! // would give it one of 1 MiB, holding what comes after).
//! let common = ChardevCommon { backlog: Some(4096), ..Default::default() };
//! reg.add("con", ChardevBackend::Null(common)).unwrap();
//! let fe = reg.attach("con").unwrap();
//! let (tx, typed) = mpsc::channel();
//! fe.set_handlers(Box::new(Device(tx)));
//! fe.write_all(b"boot log\n").unwrap();
//! while reg.history("con", 100).unwrap().is_empty() {
//!     std::thread::yield_now(); // the chardev has not sent it out yet
//! }
//!
//! // History first, then live output; a change of backend goes unnoticed.
//! let mut tap = reg.tap("con", TapOptions { read_only: false, from_history: true }).unwrap();
//! reg.change("con", ChardevBackend::Null(Default::default())).unwrap();
//! fe.write_all(b"live\n").unwrap();
//! let mut seen = Vec::new();
//! let mut buf = [0u8; 64];
//! while seen != b"boot log\nlive\n" {
//!     match tap.read_blocking(&mut buf) {
//!         TapRead::Data(n) => seen.extend_from_slice(&buf[..n]),
//!         other => panic!("{other:?}"),
//!     }
//! }
//!
//! // Input reaches the device; a read-only tap may not type.
//! assert_eq!(tap.input(b"ls\r").unwrap(), 3);
//! assert_eq!(typed.recv().unwrap(), b"ls\r");
//! let viewer = reg.tap("con", TapOptions { read_only: true, from_history: false }).unwrap();
//! assert!(viewer.input(b"x").is_err());
//!
//! // Removal ends the tap.
//! fe.detach();
//! reg.remove("con").unwrap();
//! assert_eq!(tap.read_blocking(&mut buf), TapRead::Closed);
//! reg.shutdown();
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::chardev::Chardev;
use crate::error::{ChardevError, Result};
use crate::history::{HistoryRead, DEFAULT_HISTORY};

/// Most tap input waiting for a chardev's frontend, per chardev.
pub const TAP_INPUT_CAP: usize = 16 * 1024;
/// Most bytes delivered to the frontend at once.
const INPUT_CHUNK: usize = 4096;

/// How a tap reads and whether it may type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TapOptions {
    /// The tap only reads; [`Tap::input`] fails.
    pub read_only: bool,
    /// Start at the oldest byte the history keeps (else at the next byte
    /// the chardev sends out).
    pub from_history: bool,
}

/// What a tap read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapRead {
    /// `n` bytes were copied into the buffer.
    Data(usize),
    /// The tap fell behind by more than the history keeps: this many bytes
    /// went by unread. The next read goes on from the oldest byte kept.
    Skipped(u64),
    /// The chardev was removed and everything it had sent was read.
    Closed,
}

/// A reader (and, unless read-only, a writer) of a chardev; see the module
/// documentation. Made by [`crate::Registry::tap`].
pub struct Tap {
    cd: Arc<Chardev>,
    reader: u64,
    pos: u64,
    read_only: bool,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("id", &self.cd.id)
            .field("pos", &self.pos)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Tap {
    pub(crate) fn new(cd: Arc<Chardev>, opts: TapOptions) -> Result<Tap> {
        if cd.is_removed() {
            return Err(ChardevError::NotFound(cd.id.clone()));
        }
        // Registered first, so that a change that runs meanwhile sees a
        // reader and keeps the history.
        let reader = cd.history.add_reader();
        if cd.history.capacity() == 0 {
            cd.history.set_capacity(DEFAULT_HISTORY);
        }
        let pos = if opts.from_history {
            cd.history.start()
        } else {
            cd.history.head()
        };
        Ok(Tap {
            cd,
            reader,
            pos,
            read_only: opts.read_only,
        })
    }

    /// The chardev's id.
    pub fn id(&self) -> &str {
        &self.cd.id
    }

    /// The stream offset of the next byte this tap reads.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Whether [`Tap::input`] is refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Reads what the chardev sent out since the last read; `Pending` (the
    /// waker kept) while there is nothing new.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<TapRead> {
        self.cd
            .history
            .poll_read(self.reader, cx, &mut self.pos, buf)
            .map(convert)
    }

    /// [`Tap::poll_read`] as a future.
    pub async fn read(&mut self, buf: &mut [u8]) -> TapRead {
        std::future::poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    /// Reads without waiting; `None` when there is nothing new.
    pub fn try_read(&mut self, buf: &mut [u8]) -> Option<TapRead> {
        match self.cd.history.read_at(&mut self.pos, buf) {
            HistoryRead::Empty => None,
            r => Some(convert(r)),
        }
    }

    /// Waits on the calling thread for [`Tap::poll_read`] (not on the
    /// chardev I/O thread, whose work it would wait for).
    pub fn read_blocking(&mut self, buf: &mut [u8]) -> TapRead {
        let thread = std::thread::current();
        let waker = Waker::from(Arc::new(ThreadWaker(thread)));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(r) = self.poll_read(&mut cx, buf) {
                return r;
            }
            std::thread::park();
        }
    }

    /// Queues input for the chardev's focused frontend; returns how many
    /// leading bytes of `data` fit (0 while the queue is full). Fails on a
    /// read-only tap or a removed chardev.
    pub fn input(&self, data: &[u8]) -> Result<usize> {
        self.check_input()?;
        let n = self.cd.tap_input.push(data);
        if n > 0 {
            self.cd.kick();
        }
        Ok(n)
    }

    /// [`Tap::input`] that waits (`Pending`, the waker kept) while the
    /// queue is full.
    pub fn poll_input(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<Result<usize>> {
        self.check_input()?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match self.cd.tap_input.push_or_wait(self.reader, cx, data) {
            0 => Poll::Pending,
            n => {
                self.cd.kick();
                Poll::Ready(Ok(n))
            }
        }
    }

    fn check_input(&self) -> Result<()> {
        if self.read_only {
            return Err(ChardevError::Invalid(format!(
                "tap on chardev '{}' is read-only",
                self.cd.id
            )));
        }
        if self.cd.history.is_closed() {
            return Err(ChardevError::NotFound(self.cd.id.clone()));
        }
        Ok(())
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.cd.history.remove_reader(self.reader);
        self.cd.tap_input.forget(self.reader);
    }
}

fn convert(r: HistoryRead) -> TapRead {
    match r {
        HistoryRead::Data(n) => TapRead::Data(n),
        HistoryRead::Skipped(n) => TapRead::Skipped(n),
        // Only `read_at` reports Empty, and its callers filter it.
        HistoryRead::Empty | HistoryRead::Closed => TapRead::Closed,
    }
}

struct ThreadWaker(std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Input from a chardev's taps, waiting for its focused frontend.
#[derive(Default)]
pub(crate) struct TapInput(Mutex<TapInputQueue>);

#[derive(Default)]
struct TapInputQueue {
    buf: VecDeque<u8>,
    /// Taps waiting for room, by reader number.
    waiting: Vec<(u64, Waker)>,
}

impl TapInput {
    fn lock(&self) -> MutexGuard<'_, TapInputQueue> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, data: &[u8]) -> usize {
        let mut q = self.lock();
        let n = (TAP_INPUT_CAP - q.buf.len()).min(data.len());
        q.buf.extend(&data[..n]);
        n
    }

    fn push_or_wait(&self, reader: u64, cx: &mut Context<'_>, data: &[u8]) -> usize {
        let mut q = self.lock();
        let n = (TAP_INPUT_CAP - q.buf.len()).min(data.len());
        if n == 0 {
            match q.waiting.iter_mut().find(|(id, _)| *id == reader) {
                Some((_, w)) => w.clone_from(cx.waker()),
                None => q.waiting.push((reader, cx.waker().clone())),
            }
            return 0;
        }
        q.buf.extend(&data[..n]);
        n
    }

    fn forget(&self, reader: u64) {
        self.lock().waiting.retain(|(id, _)| *id != reader);
    }

    /// Takes up to `max` bytes and wakes taps waiting for room.
    fn take(&self, max: usize) -> Vec<u8> {
        let mut q = self.lock();
        let n = q.buf.len().min(max);
        let out: Vec<u8> = q.buf.drain(..n).collect();
        if n > 0 {
            for (_, w) in q.waiting.drain(..) {
                w.wake();
            }
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.lock().buf.is_empty()
    }
}

impl Chardev {
    /// The I/O task's turn at tap input: delivers what the focused frontend
    /// takes now. Returns whether any was delivered.
    pub(crate) fn pump_tap_input(self: &Arc<Self>) -> bool {
        if self.tap_input.is_empty() {
            return false;
        }
        let focus = self.focus();
        let room = self.with_handlers(focus, |h, _| h.can_read()).unwrap_or(0);
        let data = self.tap_input.take(room.min(INPUT_CHUNK));
        if data.is_empty() {
            return false;
        }
        self.stats
            .bytes_in
            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.with_handlers(focus, |h, _| h.read(&data));
        true
    }

    /// The chardev is gone: taps read the rest, then end; queued tap input
    /// is dropped.
    pub(crate) fn end_taps(&self) {
        self.history.close();
        self.tap_input.take(usize::MAX);
    }
}
