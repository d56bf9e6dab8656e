//! The bounded output queue between a chardev's frontends and its backend.
//!
//! This is where bytes live while a backend changes: writers (any thread)
//! append here and never touch a backend; only the I/O thread takes bytes
//! out, and only as many as the current backend accepted. A byte is thus
//! either taken by the old backend before a change or still here for the new
//! one: none is lost, repeated or reordered by a change.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::Waker;

use crate::error::{ChardevError, Result};

/// Default capacity of a chardev's output queue.
pub const DEFAULT_OUT_CAPACITY: usize = 64 * 1024;

struct Inner {
    buf: VecDeque<u8>,
    /// The I/O task, parked waiting for output.
    waker: Option<Waker>,
    /// A write came back short; frontends want `write_ready`.
    short: bool,
    /// Writers blocked in `push_all` waiting for room.
    waiting: usize,
    /// The I/O task, parked, comes back by itself within a millisecond
    /// (it is lingering after a stream of output): a small push from
    /// another thread need not wake it.
    lazy: bool,
}

/// While the I/O task lingers, a push still wakes it once this many bytes
/// wait (or when the push does not fit).
const LAZY_WAKE: usize = 4096;

/// See the module documentation.
pub(crate) struct OutQueue {
    inner: Mutex<Inner>,
    room: Condvar,
    cap: usize,
}

impl OutQueue {
    /// An empty queue of `cap` bytes.
    pub(crate) fn new(cap: usize) -> OutQueue {
        OutQueue {
            inner: Mutex::new(Inner {
                // Allocated on first use: an idle chardev costs no buffer.
                buf: VecDeque::new(),
                waker: None,
                short: false,
                waiting: 0,
                lazy: false,
            }),
            room: Condvar::new(),
            cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes that fit now.
    pub(crate) fn free(&self) -> usize {
        self.cap - self.lock().buf.len()
    }

    /// Bytes that fit now; when none, flags a writer waiting for room, as a
    /// short write does.
    pub(crate) fn free_or_flag(&self) -> usize {
        let mut g = self.lock();
        let free = self.cap - g.buf.len();
        if free == 0 {
            g.short = true;
        }
        free
    }

    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.lock().buf.len()
    }

    /// Appends what fits and wakes the I/O task if it sleeps, unless
    /// `may_defer` (the caller is not the I/O thread) and the task is
    /// lingering and will look by itself soon.
    pub(crate) fn push(&self, data: &[u8], may_defer: bool) -> usize {
        let mut g = self.lock();
        let n = (self.cap - g.buf.len()).min(data.len());
        g.buf.extend(&data[..n]);
        if n < data.len() {
            g.short = true;
        }
        let defer = may_defer && g.lazy && n == data.len() && g.buf.len() < LAZY_WAKE;
        let w = if n > 0 && !defer {
            g.waker.take()
        } else {
            None
        };
        drop(g);
        if let Some(w) = w {
            w.wake();
        }
        n
    }

    /// Appends all of `data`, waiting for room. Up to `cap` bytes are
    /// appended in one piece. On the I/O thread, waiting would deadlock, so
    /// there it fails if the bytes do not fit at once.
    pub(crate) fn push_all(&self, data: &[u8], on_io_thread: bool) -> Result<()> {
        let mut rest = data;
        let mut g = self.lock();
        while !rest.is_empty() {
            let want = rest.len().min(self.cap);
            if self.cap - g.buf.len() < want {
                if on_io_thread {
                    return Err(ChardevError::Invalid(
                        "write_all on the chardev I/O thread with a full output buffer".into(),
                    ));
                }
                if let Some(w) = g.waker.take() {
                    drop(g);
                    w.wake();
                    g = self.lock();
                    continue;
                }
                g.waiting += 1;
                g = self.room.wait(g).unwrap_or_else(|e| e.into_inner());
                g.waiting -= 1;
                continue;
            }
            g.buf.extend(&rest[..want]);
            rest = &rest[want..];
            if let Some(w) = g.waker.take() {
                drop(g);
                w.wake();
                g = self.lock();
            }
        }
        Ok(())
    }

    /// Copies up to `max` bytes from the front into `out` (cleared first).
    pub(crate) fn peek(&self, out: &mut Vec<u8>, max: usize) {
        out.clear();
        let g = self.lock();
        let (a, b) = g.buf.as_slices();
        let n1 = a.len().min(max);
        out.extend_from_slice(&a[..n1]);
        let n2 = b.len().min(max - n1);
        out.extend_from_slice(&b[..n2]);
    }

    /// Drops `n` bytes from the front (the backend took them). Returns true
    /// when a writer had come back short and should hear of the room.
    pub(crate) fn consume(&self, n: usize) -> bool {
        let mut g = self.lock();
        let n = self.drain_front(&mut g, n);
        if n > 0 && g.short {
            g.short = false;
            true
        } else {
            false
        }
    }

    /// Drops `n` bytes from the front on behalf of a flush outside the I/O
    /// task's own pump (`ringbuf-read`, a change), where the chardev's
    /// handlers are not called. A writer that came back short stays flagged
    /// and hears of the room from the task's next pump (see [`Self::park`]).
    /// Returns whether one is owed that, so that the caller wakes the task.
    pub(crate) fn consume_quietly(&self, n: usize) -> bool {
        let mut g = self.lock();
        self.drain_front(&mut g, n);
        g.short
    }

    /// Drops up to `n` bytes from the front and wakes writers blocked for
    /// room; returns how many went.
    fn drain_front(&self, g: &mut Inner, n: usize) -> usize {
        let n = n.min(g.buf.len());
        g.buf.drain(..n);
        if g.waiting > 0 {
            // Only then: notify_all is a futex syscall even with no waiter.
            self.room.notify_all();
        }
        n
    }

    /// Parks the I/O task: stores its waker if the queue is empty, and
    /// whether it lingers (see `push`). Returns `None` (nothing stored) if
    /// there are bytes to take, else whether a writer came back short and
    /// has not heard of room since (an empty queue has room; the flag is
    /// cleared).
    pub(crate) fn park(&self, waker: &Waker, lazy: bool) -> Option<bool> {
        let mut g = self.lock();
        if g.buf.is_empty() {
            g.lazy = lazy;
            match &g.waker {
                Some(w) if w.will_wake(waker) => {}
                _ => g.waker = Some(waker.clone()),
            }
            Some(std::mem::take(&mut g.short))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_takes_what_fits_and_flags_short_writes() {
        let q = OutQueue::new(4);
        assert_eq!(q.push(b"abcdef", false), 4);
        assert_eq!(q.push(b"x", false), 0);
        let mut v = Vec::new();
        q.peek(&mut v, 3);
        assert_eq!(v, b"abc");
        assert!(q.consume(3), "a short writer must hear of the room");
        assert!(!q.consume(1));
        assert_eq!(q.free(), 4);
    }

    #[test]
    fn push_all_waits_for_room_made_by_another_thread() {
        let q = std::sync::Arc::new(OutQueue::new(8));
        q.push(b"12345678", false);
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.push_all(b"abcdefgh", false));
        let mut v = Vec::new();
        let mut got = Vec::new();
        while got.len() < 16 {
            q.peek(&mut v, 3);
            got.extend_from_slice(&v);
            q.consume(v.len());
            std::thread::yield_now();
        }
        t.join().unwrap().unwrap();
        assert_eq!(got, b"12345678abcdefgh");
    }

    #[test]
    fn room_made_quietly_is_owed_at_the_next_park() {
        let q = OutQueue::new(4);
        assert_eq!(q.push(b"abcdef", false), 4);
        assert!(q.consume_quietly(4), "the short writer is still owed");
        assert_eq!(q.park(Waker::noop(), false), Some(true));
        assert_eq!(q.park(Waker::noop(), false), Some(false), "told once");
        q.push(b"x", false);
        assert_eq!(q.park(Waker::noop(), false), None, "bytes to take");
    }

    #[test]
    fn push_all_on_the_io_thread_fails_instead_of_deadlocking() {
        let q = OutQueue::new(4);
        q.push(b"1234", false);
        assert!(q.push_all(b"x", true).is_err());
    }
}
