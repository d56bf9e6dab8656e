//! A chardev's history: the newest bytes of everything it sent out, with
//! absolute stream offsets, so that several readers (taps, the clients of a
//! multi-client socket, QMP `x-chardev-history`) each keep their own place
//! in it and none holds up the writer or the others.
//!
//! Offsets count every byte the chardev ever sent out: `head` is the offset
//! of the next byte, `start` that of the oldest byte still kept, and
//! `head - start <= capacity`. A reader whose offset fell below `start` (it
//! read slower than the ring turns over) has lost `start - offset` bytes and
//! is told so ([`HistoryRead::Skipped`]) before it reads on from `start`.
//!
//! The ring hangs off the chardev, not off its backend, so it survives
//! `chardev-change`. Its memory is allocated as it fills, never beyond the
//! capacity. `backlog=SIZE` (`x-backlog`) sets the capacity; a chardev gets
//! [`DEFAULT_HISTORY`] when a tap or a multi-client socket needs a history
//! and none was configured.

use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::chardev::{Chardev, Installed, State};
use crate::spec::ChardevBackend;

/// Capacity a history gets when a reader needs one and `backlog` did not set
/// any: 1 MiB, the size LXD gives its console ring.
pub const DEFAULT_HISTORY: usize = 1 << 20;

/// What a read at an offset found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRead {
    /// `n` bytes were copied; the offset moved past them.
    Data(usize),
    /// The offset had fallen below the oldest byte kept: `n` bytes were lost
    /// to this reader, and its offset moved up to the oldest byte kept.
    Skipped(u64),
    /// Nothing new: the reader is at `head`.
    Empty,
    /// The chardev was removed and the reader has read everything.
    Closed,
}

struct Ring {
    /// Grows up to `cap` as bytes come; then the byte at offset `o` is at
    /// `(o - origin) % cap`.
    buf: Vec<u8>,
    cap: usize,
    origin: u64,
    start: u64,
    head: u64,
    closed: bool,
    /// Readers waiting for bytes, by reader number.
    waiting: Vec<(u64, Waker)>,
    next_reader: u64,
    readers: usize,
}

impl Ring {
    fn index(&self, off: u64) -> usize {
        ((off - self.origin) % self.cap as u64) as usize
    }

    /// The contiguous bytes from `off` (which must be in `start..head`) up to
    /// the end of the buffer or `head`.
    fn slice_at(&self, off: u64) -> &[u8] {
        let i = self.index(off);
        let avail = (self.head - off) as usize;
        let end = (i + avail).min(self.buf.len());
        &self.buf[i..end]
    }

    fn append(&mut self, data: &[u8]) {
        let total = data.len() as u64;
        if self.cap == 0 {
            self.head += total;
            self.start = self.head;
            return;
        }
        let keep = &data[data.len().saturating_sub(self.cap)..];
        let new_head = self.head + total;
        let filling = self.buf.len() as u64 == self.head - self.origin;
        if filling && new_head - self.origin <= self.cap as u64 {
            // Not full yet: the buffer grows, at most to `cap`.
            let want = self.buf.len() + keep.len();
            if want > self.buf.capacity() {
                let grow = want.max((self.buf.capacity() * 2).min(self.cap));
                self.buf.reserve_exact(grow - self.buf.len());
            }
            self.buf.extend_from_slice(keep);
        } else {
            if self.buf.len() < self.cap {
                // Wraps from now on; the bytes past the old head are
                // written below before anyone can read them.
                self.buf.resize(self.cap, 0);
            }
            let first = new_head - keep.len() as u64;
            let i = self.index(first);
            let n1 = keep.len().min(self.cap - i);
            self.buf[i..i + n1].copy_from_slice(&keep[..n1]);
            self.buf[..keep.len() - n1].copy_from_slice(&keep[n1..]);
        }
        self.head = new_head;
        self.start = self.start.max(self.head.saturating_sub(self.cap as u64));
    }

    /// The newest `max` bytes kept, oldest first.
    fn newest(&self, max: usize) -> Vec<u8> {
        let n = ((self.head - self.start) as usize).min(max);
        let mut out = Vec::with_capacity(n);
        let mut off = self.head - n as u64;
        while off < self.head {
            let s = self.slice_at(off);
            out.extend_from_slice(s);
            off += s.len() as u64;
        }
        out
    }

    /// Keeps the newest `cap` bytes in a new buffer of that capacity.
    fn resize(&mut self, cap: usize) {
        if cap == self.cap {
            return;
        }
        let buf = self.newest(cap);
        let kept = buf.len();
        self.buf = buf;
        self.cap = cap;
        self.origin = self.head - kept as u64;
        self.start = self.origin;
    }

    fn wake_all(&mut self) {
        for (_, w) in self.waiting.drain(..) {
            w.wake();
        }
    }
}

/// See the module documentation. Shared by the chardev (which appends) and
/// its readers; every method takes `&self`.
pub struct History {
    ring: Mutex<Ring>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.lock();
        f.debug_struct("History")
            .field("capacity", &r.cap)
            .field("start", &r.start)
            .field("head", &r.head)
            .finish()
    }
}

impl History {
    /// An empty history of `cap` bytes (0: none kept yet).
    pub(crate) fn new(cap: usize) -> History {
        History {
            ring: Mutex::new(Ring {
                buf: Vec::new(),
                cap,
                origin: 0,
                start: 0,
                head: 0,
                closed: false,
                waiting: Vec::new(),
                next_reader: 0,
                readers: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes kept at most (0: the chardev keeps no history).
    pub fn capacity(&self) -> usize {
        self.lock().cap
    }

    /// Offset of the oldest byte kept.
    pub fn start(&self) -> u64 {
        self.lock().start
    }

    /// Offset of the next byte the chardev sends out (bytes sent so far).
    pub fn head(&self) -> u64 {
        self.lock().head
    }

    /// The newest `max` bytes kept, oldest first, without consuming them.
    pub fn tail(&self, max: usize) -> Vec<u8> {
        self.lock().newest(max)
    }

    /// Copies bytes from `*pos` into `buf` and moves `*pos` past them; see
    /// [`HistoryRead`]. Never waits.
    pub fn read_at(&self, pos: &mut u64, buf: &mut [u8]) -> HistoryRead {
        let r = self.lock();
        Self::read_locked(&r, pos, buf)
    }

    fn read_locked(r: &Ring, pos: &mut u64, buf: &mut [u8]) -> HistoryRead {
        if *pos < r.start {
            let lost = r.start - *pos;
            *pos = r.start;
            return HistoryRead::Skipped(lost);
        }
        // A reader from another history (or the future) starts at head.
        if *pos > r.head {
            *pos = r.head;
        }
        if *pos == r.head {
            return if r.closed {
                HistoryRead::Closed
            } else {
                HistoryRead::Empty
            };
        }
        let mut n = 0;
        while n < buf.len() && *pos < r.head {
            let s = r.slice_at(*pos);
            let k = s.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&s[..k]);
            n += k;
            *pos += k as u64;
        }
        HistoryRead::Data(n)
    }

    /// [`Self::read_at`] for reader `reader` (see [`Self::add_reader`]):
    /// `Pending` instead of [`HistoryRead::Empty`], with the waker kept
    /// until the next append or the close.
    pub(crate) fn poll_read(
        &self,
        reader: u64,
        cx: &mut Context<'_>,
        pos: &mut u64,
        buf: &mut [u8],
    ) -> Poll<HistoryRead> {
        let mut r = self.lock();
        match Self::read_locked(&r, pos, buf) {
            HistoryRead::Empty => {
                match r.waiting.iter_mut().find(|(id, _)| *id == reader) {
                    Some((_, w)) if w.will_wake(cx.waker()) => {}
                    Some((_, w)) => *w = cx.waker().clone(),
                    None => r.waiting.push((reader, cx.waker().clone())),
                }
                Poll::Pending
            }
            other => Poll::Ready(other),
        }
    }

    /// Runs `send` on the contiguous bytes from `*pos` (at most up to the
    /// end of the ring's buffer), under the lock, and moves `*pos` past the
    /// bytes it reports sent. For writers that hand bytes straight to a
    /// socket without copying them. A `*pos` below `start` is first moved
    /// up, and the loss returned as `Err(n)`; nothing is sent then.
    pub(crate) fn send_from<E>(
        &self,
        pos: &mut u64,
        send: impl FnOnce(&[u8]) -> std::result::Result<usize, E>,
    ) -> SendFrom<E> {
        let r = self.lock();
        if *pos < r.start {
            let lost = r.start - *pos;
            *pos = r.start;
            return SendFrom::Skipped(lost);
        }
        if *pos > r.head {
            *pos = r.head;
        }
        if *pos == r.head {
            return SendFrom::Empty;
        }
        match send(r.slice_at(*pos)) {
            Ok(n) => {
                *pos += n as u64;
                SendFrom::Sent(n)
            }
            Err(e) => SendFrom::Failed(e),
        }
    }

    /// Moves `*pos` up to `start` if it fell below; returns by how much.
    pub(crate) fn skip_lost(&self, pos: &mut u64) -> u64 {
        let start = self.lock().start;
        let lost = start.saturating_sub(*pos);
        *pos += lost;
        lost
    }

    /// A reader number for [`Self::poll_read`]; give it back with
    /// [`Self::remove_reader`].
    pub(crate) fn add_reader(&self) -> u64 {
        let mut r = self.lock();
        r.next_reader += 1;
        r.readers += 1;
        r.next_reader
    }

    pub(crate) fn remove_reader(&self, reader: u64) {
        let mut r = self.lock();
        r.readers = r.readers.saturating_sub(1);
        r.waiting.retain(|(id, _)| *id != reader);
    }

    /// Readers registered (taps).
    pub(crate) fn readers(&self) -> usize {
        self.lock().readers
    }

    /// Records bytes the chardev sent out; wakes waiting readers.
    pub(crate) fn append(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut r = self.lock();
        r.append(data);
        r.wake_all();
    }

    /// Sets the capacity, keeping the newest bytes that fit.
    pub(crate) fn set_capacity(&self, cap: usize) {
        let mut r = self.lock();
        r.resize(cap);
        // Readers below the new start learn of the loss on their next read.
        r.wake_all();
    }

    /// The chardev is gone: readers get what is left, then
    /// [`HistoryRead::Closed`].
    pub(crate) fn close(&self) {
        let mut r = self.lock();
        r.closed = true;
        r.wake_all();
    }

    /// Whether [`Self::close`] ran.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// What [`History::send_from`] did.
#[derive(Debug)]
pub(crate) enum SendFrom<E> {
    /// `send` took this many bytes.
    Sent(usize),
    /// The reader had lost this many bytes and now stands at `start`.
    Skipped(u64),
    /// Nothing to send.
    Empty,
    /// `send` failed.
    Failed(E),
}

/// Replay of the history to a single peer (a pty slave, the one client of a
/// socket server), today's `backlog`: while `on`, output made with no peer
/// connected is kept in the history only, and a peer that connects first
/// gets the history from `peer_pos`, the offset the previous peer had
/// reached (clamped to `start`), then live output.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub(crate) on: bool,
    pub(crate) peer_pos: u64,
}

/// The history (and its replay) a chardev starts with.
pub(crate) fn history_for(inst: &Installed) -> (History, Replay) {
    let cap = match configured(&inst.spec) {
        Some(n) if n > 0 => n,
        _ if inst.backend.serves_from_history() => DEFAULT_HISTORY,
        _ => 0,
    };
    let replay = Replay {
        on: cap > 0 && configured(&inst.spec).is_some_and(|n| n > 0),
        peer_pos: 0,
    };
    (History::new(cap), replay)
}

/// The `backlog` a spec asks for, bounded by [`crate::MAX_BACKLOG`].
fn configured(spec: &ChardevBackend) -> Option<usize> {
    spec.common()
        .backlog
        .map(|n| n.min(crate::MAX_BACKLOG as u64) as usize)
}

impl Chardev {
    /// After a backend change: `backlog=SIZE` in the new spec resizes the
    /// history (keeping its newest bytes) and turns replay on, `backlog=0`
    /// turns both off (unless a reader needs the history); a spec without
    /// `backlog` keeps what the chardev had. A reader that needs a history
    /// gets [`DEFAULT_HISTORY`] if there was none.
    pub(crate) fn history_follows(&self, st: &mut State) {
        let needed = self.history.readers() > 0 || st.inst.backend.serves_from_history();
        match configured(&st.inst.spec) {
            Some(n) if n > 0 => {
                self.history.set_capacity(n);
                if !st.replay.on {
                    // What went out before is not owed to the next peer.
                    st.replay.on = true;
                    st.replay.peer_pos = self.history.head();
                }
            }
            Some(_) => {
                st.replay.on = false;
                if !needed {
                    self.history.set_capacity(0);
                }
            }
            None => {}
        }
        if needed && self.history.capacity() == 0 {
            self.history.set_capacity(DEFAULT_HISTORY);
        }
    }

    /// Records bytes the backend took (or dropped for want of a peer).
    pub(crate) fn record_sent(&self, st: &mut State, sent: &[u8]) {
        let before = self.history.head();
        self.history.append(sent);
        // The single peer has them if there is one and it was caught up.
        if st.inst.backend.is_open() && st.replay.peer_pos >= before {
            st.replay.peer_pos = before + sent.len() as u64;
        }
    }

    /// Sends the history owed to a peer that has connected; true once
    /// nothing is owed (live output may go on), false while the backend
    /// would block.
    pub(crate) fn replay_step(&self, st: &mut State, cx: &mut Context<'_>) -> bool {
        let backend = &mut st.inst.backend;
        if !st.replay.on || !backend.is_open() || backend.serves_from_history() {
            return true;
        }
        loop {
            let r = self.history.send_from(&mut st.replay.peer_pos, |s| {
                match backend.poll_write(cx, s) {
                    Poll::Ready(Ok(n)) if n > 0 => Ok(n),
                    Poll::Ready(Err(e)) => Err(Some(e)),
                    _ => Err(None),
                }
            });
            match r {
                SendFrom::Sent(n) => debug_assert!(n > 0),
                SendFrom::Skipped(n) => {
                    log::debug!(
                        "chardev '{}': {n} bytes of history lost to the next peer",
                        self.id
                    )
                }
                SendFrom::Empty => return true,
                SendFrom::Failed(None) => return false,
                SendFrom::Failed(Some(e)) => {
                    log::warn!("chardev '{}': history not replayed: {e}", self.id);
                    st.replay.peer_pos = self.history.head();
                    return true;
                }
            }
        }
    }

    /// The I/O task's turn at the replay: whether any was sent.
    pub(crate) fn replay_history(&self, cx: &mut Context<'_>) -> bool {
        let mut st = self.state();
        let before = st.replay.peer_pos;
        self.replay_step(&mut st, cx);
        st.replay.peer_pos != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(h: &History, pos: &mut u64) -> (Vec<u8>, u64) {
        let mut out = Vec::new();
        let mut lost = 0;
        let mut buf = [0u8; 3];
        loop {
            match h.read_at(pos, &mut buf) {
                HistoryRead::Data(n) => out.extend_from_slice(&buf[..n]),
                HistoryRead::Skipped(n) => lost += n,
                HistoryRead::Empty | HistoryRead::Closed => return (out, lost),
            }
        }
    }

    #[test]
    fn keeps_the_newest_bytes_with_absolute_offsets() {
        let h = History::new(8);
        h.append(b"0123");
        assert_eq!((h.start(), h.head()), (0, 4));
        h.append(b"456789ab");
        assert_eq!((h.start(), h.head()), (4, 12));
        assert_eq!(h.tail(100), b"456789ab");
        assert_eq!(h.tail(3), b"9ab");
        h.append(b"cdefghijklmnop");
        assert_eq!((h.start(), h.head()), (18, 26));
        assert_eq!(h.tail(8), b"ijklmnop");
        let mut pos = 5;
        let (got, lost) = read_all(&h, &mut pos);
        assert_eq!((got.as_slice(), lost), (&b"ijklmnop"[..], 13));
        assert_eq!(pos, 26);
    }

    #[test]
    fn grows_as_it_fills_and_never_past_its_capacity() {
        let h = History::new(1000);
        h.append(b"x");
        assert!(h.lock().buf.capacity() < 1000);
        for _ in 0..300 {
            h.append(b"abcdefg");
        }
        let r = h.lock();
        assert_eq!(r.buf.len(), 1000);
        assert!(r.buf.capacity() <= 1000, "{}", r.buf.capacity());
    }

    #[test]
    fn every_byte_once_for_a_reader_that_keeps_up_across_wraps() {
        let h = History::new(7);
        let mut pos = 0;
        let mut got = Vec::new();
        let mut want = Vec::new();
        for i in 0..200u32 {
            let chunk: Vec<u8> = (0..(i % 6)).map(|k| (i + k) as u8).collect();
            h.append(&chunk);
            want.extend_from_slice(&chunk);
            let (g, lost) = read_all(&h, &mut pos);
            assert_eq!(lost, 0);
            got.extend(g);
        }
        assert_eq!(got, want);
    }

    #[test]
    fn resize_keeps_the_newest_and_offsets() {
        let h = History::new(8);
        h.append(b"abcdefghij");
        h.set_capacity(4);
        assert_eq!((h.start(), h.head()), (6, 10));
        assert_eq!(h.tail(10), b"ghij");
        h.set_capacity(16);
        h.append(b"klmnopqrstuv");
        assert_eq!(h.tail(100), b"ghijklmnopqrstuv");
        h.set_capacity(0);
        h.append(b"w");
        assert_eq!((h.start(), h.head()), (23, 23));
        assert!(h.tail(10).is_empty());
    }

    #[test]
    fn send_from_hands_out_contiguous_bytes_and_reports_loss() {
        let h = History::new(4);
        h.append(b"abcdef");
        let mut pos = 0;
        assert!(matches!(
            h.send_from::<()>(&mut pos, |_| unreachable!()),
            SendFrom::Skipped(2)
        ));
        let mut got = Vec::new();
        while let SendFrom::Sent(n) = h.send_from::<()>(&mut pos, |s| {
            got.extend_from_slice(&s[..1]);
            Ok(1)
        }) {
            assert_eq!(n, 1);
        }
        assert_eq!(got, b"cdef");
    }

    #[test]
    fn closed_after_the_rest_is_read() {
        let h = History::new(4);
        h.append(b"ab");
        h.close();
        let mut pos = 0;
        let mut buf = [0u8; 4];
        assert_eq!(h.read_at(&mut pos, &mut buf), HistoryRead::Data(2));
        assert_eq!(h.read_at(&mut pos, &mut buf), HistoryRead::Closed);
    }
}
