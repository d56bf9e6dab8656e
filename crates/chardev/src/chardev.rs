//! One chardev: its backend, its frontends, its output queue, and the I/O
//! task that moves bytes between them. A backend change is in
//! [`crate::change`].
//!
//! Locking: `state` is held around backend calls (non-blocking ones; the
//! log file only gets a copy, `logfile.rs`) and never while a frontend handler
//! runs, so handlers may call back into the chardev (ioctl, write) or the
//! registry (change, add) freely. What a vCPU thread calls (`write`, and
//! `ioctl` off the I/O thread) never takes it: see `current` and
//! [`crate::ioctl`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use crate::backend::{Backend, BackendEvent, BackendLink, LinkEvents};
use crate::change::Drains;
use crate::error::{ChardevError, Result};
use crate::frontend::{CharFrontend, ChardevEvent, FrontendHandlers, FrontendStats, StatsHook};
use crate::history::{history_for, History, Replay};
use crate::ioctl::{ModemCache, QueuedIoctls};
use crate::iothread::IoThread;
use crate::outq::OutQueue;
use crate::registry::{Listeners, RegistryEvent};
use crate::spec::ChardevBackend;
use crate::tap::TapInput;

/// How many bytes one backend read may deliver (frontends ask for less:
/// a UART its FIFO's room, a monitor 4 KiB).
const READ_CHUNK: usize = 64 * 1024;
/// How many bytes one backend write is offered.
const WRITE_CHUNK: usize = 64 * 1024;
/// Output coalescing. A writer on another thread that trickles bytes (a
/// vCPU, one byte per THR write, tens of microseconds apart) would wake the
/// I/O thread for each byte, which costs that writer a syscall and a
/// cross-CPU wake-up every time. Once a chardev has moved `STREAM_BYTES` of
/// output with no input in between, its task lingers: it looks at the queue
/// again `LINGER` after the last output it moved, and small writes from
/// other threads do not wake it meanwhile. A whole `LINGER` without output,
/// or any input (a frontend that may answer it, as a guest echoing), ends
/// that. The cost: the tail of a long stream leaves up to about two
/// milliseconds (tokio's timer tick) later; short answers are not delayed.
const STREAM_BYTES: u64 = 256;
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);
/// Rounds of work before the task yields to other chardevs.
const ROUNDS_PER_POLL: usize = 64;
/// Input delivered in one turn before the task yields: what a frontend does
/// with input (a monitor parsing it) can be costly, and other chardevs wait.
const TURN_INPUT_BUDGET: u64 = 256 * 1024;

/// Counters kept per chardev, readable at any time.
#[derive(Debug, Default)]
pub struct ChardevStats {
    /// Bytes the backends took from the frontends.
    pub bytes_out: AtomicU64,
    /// Bytes delivered to the frontends.
    pub bytes_in: AtomicU64,
    /// Bytes lost to backend write errors (a full disk, say).
    pub bytes_lost: AtomicU64,
    /// Backend changes applied.
    pub changes: AtomicU64,
    /// Bytes the log file could not keep up with (see `logfile.rs`).
    pub log_dropped: AtomicU64,
}

/// A frontend's place on a chardev.
struct FeSlot {
    gen: u64,
    handlers: Option<Box<dyn FrontendHandlers>>,
    hotswap: bool,
    fe_open: bool,
    /// Owes the handlers an `Opened` event (they arrived on an open backend).
    owe_open: bool,
    /// Reports the frontend's own counters.
    stats: Option<StatsHook>,
}

/// Output a change keeps for the new backend's first peer (see
/// `change.rs`, `hand_over`): a ring buffer's unread bytes and what is
/// written until that peer comes. Gone once replayed to it.
pub(crate) struct Backlog {
    pub(crate) buf: VecDeque<u8>,
    pub(crate) cap: usize,
}

impl Backlog {
    pub(crate) fn keep(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(self.cap)..];
        let over = (self.buf.len() + data.len()).saturating_sub(self.cap);
        self.buf.drain(..over);
        self.buf.extend(data);
    }
}

/// A backend with what came with it: its spec, its log file.
pub(crate) struct Installed {
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) spec: ChardevBackend,
    pub(crate) logfile: Option<crate::logfile::LogSink>,
}

pub(crate) struct State {
    pub(crate) inst: Installed,
    /// Replay of the history to the next peer (`backlog`): see
    /// [`crate::history`].
    pub(crate) replay: Replay,
    /// What a change kept for the new backend's first peer, when no
    /// `backlog` replays the history (see `change.rs`, `hand_over`).
    pub(crate) carry: Option<Backlog>,
    /// The open state last reported to the frontends.
    pub(crate) be_open: bool,
    frontends: Vec<Option<FeSlot>>,
    /// Several frontends may attach (a mux, or the base of `mux=on`).
    pub(crate) multi: bool,
    focus: usize,
    next_gen: u64,
    removed: bool,
    /// A handler of this chardev is running on the I/O thread right now.
    pub(crate) in_handler: bool,
    /// A change asked for from inside a handler of this chardev, applied
    /// when it returns: the chardev whose backend changes (this one, or the
    /// base under this mux) and its new backend.
    pub(crate) pending: Option<(Arc<Chardev>, Installed)>,
    /// First write error was logged; later ones are only counted.
    write_error_logged: bool,
    /// A mux focus change to announce from the I/O task.
    focus_to: Option<usize>,
}

/// See the module documentation.
pub(crate) struct Chardev {
    pub(crate) id: String,
    pub(crate) io: Arc<IoThread>,
    pub(crate) out: OutQueue,
    state: Mutex<State>,
    waker: Mutex<Option<Waker>>,
    pub(crate) listeners: Arc<Listeners>,
    /// Where retired backends finish what they owe (the registry's).
    pub(crate) drains: Arc<Drains>,
    pub(crate) stats: ChardevStats,
    /// Everything sent out, newest bytes kept; survives changes.
    pub(crate) history: Arc<History>,
    /// Events the backend reported about its clients, not emitted yet.
    pub(crate) link_events: Arc<LinkEvents>,
    /// Input from taps, for the focused frontend.
    pub(crate) tap_input: TapInput,
    /// Where this chardev stands among yank instances (`query-yank` order,
    /// see [`Chardev::yank_order`]); 0 while its backend is no socket.
    yank_order: AtomicU64,
    /// The mux (or hub) chardev whose backend is a frontend of this one, if
    /// any: its handlers write into this chardev.
    mux_above: Mutex<Weak<Chardev>>,
    /// Per frontend slot, the generation of the frontend holding it (0:
    /// free), so that `CharFrontend::write` knows whether its handle is
    /// current without the state lock, which the I/O thread holds across
    /// backend writes.
    current: [AtomicU64; crate::MAX_MUX_FRONTENDS],
    /// Serial-line settings from other threads, for the I/O task (see
    /// [`crate::ioctl`]).
    pub(crate) ioctls: Mutex<QueuedIoctls>,
    /// The installed backend has a serial line (`Backend::has_serial_line`).
    pub(crate) serial_line: AtomicBool,
    /// Its modem lines as the I/O thread read them last.
    pub(crate) modem: ModemCache,
    /// A queued setting failed and was logged; later failures are quieter.
    pub(crate) ioctl_error_logged: AtomicBool,
}

/// Hands out yank registration numbers: QEMU lists yank instances in the
/// order they registered, which is when a chardev got a socket backend.
static YANK_REGISTRATIONS: AtomicU64 = AtomicU64::new(1);

fn is_socket(spec: &ChardevBackend) -> bool {
    matches!(spec, ChardevBackend::Socket(_))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Chardev {
    pub(crate) fn new(
        id: String,
        io: Arc<IoThread>,
        mut inst: Installed,
        multi: bool,
        out_cap: usize,
        listeners: Arc<Listeners>,
        drains: Arc<Drains>,
    ) -> Arc<Chardev> {
        let be_open = inst.backend.is_open();
        let (history, replay) = history_for(&inst);
        let history = Arc::new(history);
        let link_events = Arc::new(LinkEvents::default());
        inst.backend.link(&BackendLink {
            id: id.clone(),
            history: history.clone(),
            events: link_events.clone(),
        });
        let yank_order = if is_socket(&inst.spec) {
            YANK_REGISTRATIONS.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        let cd = Arc::new(Chardev {
            id,
            io,
            out: OutQueue::new(out_cap),
            state: Mutex::new(State {
                inst,
                replay,
                carry: None,
                be_open,
                frontends: Vec::new(),
                multi,
                focus: 0,
                next_gen: 1,
                removed: false,
                in_handler: false,
                pending: None,
                write_error_logged: false,
                focus_to: None,
            }),
            waker: Mutex::new(None),
            listeners,
            drains,
            stats: ChardevStats::default(),
            history,
            link_events,
            tap_input: TapInput::default(),
            yank_order: AtomicU64::new(yank_order),
            mux_above: Mutex::new(Weak::new()),
            current: Default::default(),
            ioctls: Mutex::new(QueuedIoctls::default()),
            serial_line: AtomicBool::new(false),
            modem: ModemCache::default(),
            ioctl_error_logged: AtomicBool::new(false),
        });
        cd.note_serial_line();
        cd
    }

    /// Records that mux chardev `mux` sits on this one.
    pub(crate) fn set_mux_above(&self, mux: &Arc<Chardev>) {
        *lock(&self.mux_above) = Arc::downgrade(mux);
    }

    /// If the installed backend is a hub: its members know it is above.
    pub(crate) fn link_hub_members(self: &Arc<Self>) {
        crate::backend::hub::link(&mut *self.state().inst.backend, self);
    }

    /// Forgets the mux or hub above (a hub let go of this member).
    pub(crate) fn clear_mux_above(&self) {
        *lock(&self.mux_above) = Weak::new();
    }

    /// The mux chardev on this one, unless it is gone.
    pub(crate) fn mux_above(&self) -> Option<Arc<Chardev>> {
        lock(&self.mux_above).upgrade().filter(|m| !m.is_removed())
    }

    /// This chardev's place among yank instances, `None` if it is none (its
    /// backend is no socket). As in QEMU, a chardev registers when it gets
    /// a socket backend and keeps its place across a change from socket to
    /// socket of a chardev in use; a change of an unused chardev re-creates
    /// it, so it registers again, last.
    pub(crate) fn yank_order(&self) -> Option<u64> {
        Some(self.yank_order.load(Ordering::Relaxed)).filter(|&n| n != 0)
    }

    /// Follows a backend change: `keep` says whether a socket chardev
    /// keeps its registration (handed over to the new backend).
    pub(crate) fn register_for_yank(&self, spec: &ChardevBackend, keep: bool) {
        let now = self.yank_order.load(Ordering::Relaxed);
        let next = match (is_socket(spec), keep && now != 0) {
            (false, _) => 0,
            (true, true) => now,
            (true, false) => YANK_REGISTRATIONS.fetch_add(1, Ordering::Relaxed),
        };
        self.yank_order.store(next, Ordering::Relaxed);
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Spawns the I/O task of this chardev.
    pub(crate) fn start(self: &Arc<Self>) {
        let cd = self.clone();
        let mut linger = Linger::default();
        // A bare poll_fn owning what it uses: the smallest task there is
        // (10,000 chardevs are 10,000 of them).
        self.io.handle().spawn(std::future::poll_fn(move |cx| {
            cd.poll_task(cx, &mut linger)
        }));
    }

    /// Wakes the I/O task.
    pub(crate) fn kick(&self) {
        if let Some(w) = lock(&self.waker).as_ref() {
            w.wake_by_ref();
        }
    }

    // ----- frontends -------------------------------------------------------

    /// Attaches a new frontend.
    pub(crate) fn attach(self: &Arc<Self>) -> Result<CharFrontend> {
        let mut st = self.state();
        if st.removed {
            return Err(ChardevError::DoesNotExist(self.id.clone()));
        }
        let used = st.frontends.iter().filter(|f| f.is_some()).count();
        if used > 0 && !st.multi {
            return Err(ChardevError::InUse(self.id.clone()));
        }
        if used >= crate::MAX_MUX_FRONTENDS {
            return Err(ChardevError::Invalid(format!(
                "too many uses of multiplexed chardev '{}'",
                self.id
            )));
        }
        let gen = st.next_gen;
        st.next_gen += 1;
        let slot = FeSlot {
            gen,
            handlers: None,
            hotswap: false,
            fe_open: false,
            owe_open: false,
            stats: None,
        };
        let tag = match st.frontends.iter().position(|f| f.is_none()) {
            Some(i) => {
                st.frontends[i] = Some(slot);
                i
            }
            None => {
                st.frontends.push(Some(slot));
                st.frontends.len() - 1
            }
        };
        // At most MAX_MUX_FRONTENDS slots exist (checked above).
        if let Some(c) = self.current.get(tag) {
            c.store(gen, Ordering::Release);
        }
        Ok(CharFrontend {
            cd: self.clone(),
            tag,
            gen,
        })
    }

    /// Whether frontend handle (`tag`, `gen`) is attached; lock-free (see
    /// `current`).
    pub(crate) fn is_current(&self, tag: usize, gen: u64) -> bool {
        self.current
            .get(tag)
            .is_some_and(|c| c.load(Ordering::Acquire) == gen)
    }

    pub(crate) fn set_handlers(&self, tag: usize, gen: u64, h: Option<Box<dyn FrontendHandlers>>) {
        let mut st = self.state();
        let st = &mut *st;
        let be_open = st.be_open;
        let announces = h.as_ref().is_some_and(|h| h.announces());
        if let Some(Some(slot)) = st.frontends.get_mut(tag) {
            if slot.gen == gen {
                slot.hotswap = h.as_ref().is_some_and(|h| h.supports_hotswap());
                slot.fe_open = h.is_some();
                slot.owe_open = h.is_some() && be_open;
                slot.handlers = h;
                if st.multi && slot.fe_open {
                    // As in QEMU, a frontend that registers on a mux takes
                    // the focus; the events go out from the I/O task.
                    st.focus_to = Some(tag);
                }
                if slot.fe_open && announces {
                    st.inst.backend.handlers_set();
                }
            }
        }
        self.kick();
    }

    /// See [`crate::CharFrontend::announce_handlers`].
    pub(crate) fn announce_handlers(&self, tag: usize, gen: u64) {
        let mut st = self.state();
        let st = &mut *st;
        if let Some(Some(slot)) = st.frontends.get(tag) {
            if slot.gen == gen && slot.handlers.is_some() {
                st.inst.backend.handlers_set();
            }
        }
        self.kick();
    }

    pub(crate) fn set_stats_hook(&self, tag: usize, gen: u64, hook: StatsHook) {
        if let Some(Some(slot)) = self.state().frontends.get_mut(tag) {
            if slot.gen == gen {
                slot.stats = Some(hook);
            }
        }
    }

    /// The counters of the frontends that report some, in slot order; the
    /// hooks run with no lock held.
    pub(crate) fn frontend_stats(&self) -> Vec<FrontendStats> {
        let hooks: Vec<StatsHook> = self
            .state()
            .frontends
            .iter()
            .flatten()
            .filter_map(|s| s.stats.clone())
            .collect();
        hooks.iter().filter_map(|h| h()).collect()
    }

    pub(crate) fn set_fe_open(&self, tag: usize, gen: u64, open: bool) {
        if let Some(Some(slot)) = self.state().frontends.get_mut(tag) {
            if slot.gen == gen {
                slot.fe_open = open;
            }
        }
    }

    pub(crate) fn detach(&self, tag: usize, gen: u64) {
        let mut st = self.state();
        if matches!(st.frontends.get(tag), Some(Some(s)) if s.gen == gen) {
            st.frontends[tag] = None;
            if let Some(c) = self.current.get(tag) {
                c.store(0, Ordering::Release);
            }
            if st.focus == tag {
                st.focus = st.frontends.iter().position(|f| f.is_some()).unwrap_or(0);
            }
        }
    }

    /// Whether any frontend is attached.
    pub(crate) fn has_frontend(&self) -> bool {
        self.state().frontends.iter().any(|f| f.is_some())
    }

    /// Whether a frontend is attached that cannot follow a change.
    pub(crate) fn blocks_hotswap(&self) -> bool {
        self.state().frontends.iter().flatten().any(|f| !f.hotswap)
    }

    pub(crate) fn frontend_open(&self) -> bool {
        self.state().frontends.iter().flatten().any(|f| f.fe_open)
    }

    pub(crate) fn be_open(&self) -> bool {
        self.state().be_open
    }

    pub(crate) fn filename(&self) -> String {
        self.state().inst.backend.filename()
    }

    pub(crate) fn spec(&self) -> ChardevBackend {
        self.state().inst.spec.clone()
    }

    /// The descriptor waiting with the backend's input (SCM_RIGHTS).
    pub(crate) fn take_msgfd(&self) -> Option<std::os::fd::OwnedFd> {
        self.state().inst.backend.take_msgfd()
    }

    pub(crate) fn disconnect_peer(&self) {
        self.state().inst.backend.disconnect();
        self.kick();
    }

    /// Runs `f` with the handlers of frontend `tag` taken out of the slot,
    /// with no lock held. Returns None if there is no such frontend or its
    /// handlers are already running (a re-entrant call).
    pub(crate) fn with_handlers<R>(
        self: &Arc<Self>,
        tag: usize,
        f: impl FnOnce(&mut dyn FrontendHandlers, &CharFrontend) -> R,
    ) -> Option<R> {
        self.with_handlers_settling(tag, false, f)
    }

    /// [`Self::with_handlers`] for delivering OPENED (`opened`): handlers
    /// registered while the backend was already open are owed an OPENED
    /// (`owe_open`); if they are the handlers this delivery reaches, the debt
    /// is settled under the same lock that takes them, so a frontend that
    /// registers while a peer connects sees OPENED once, not twice.
    fn with_handlers_settling<R>(
        self: &Arc<Self>,
        tag: usize,
        opened: bool,
        f: impl FnOnce(&mut dyn FrontendHandlers, &CharFrontend) -> R,
    ) -> Option<R> {
        let (mut h, gen) = {
            let mut st = self.state();
            let slot = st.frontends.get_mut(tag)?.as_mut()?;
            let h = slot.handlers.take()?;
            if opened {
                slot.owe_open = false;
            }
            let gen = slot.gen;
            st.in_handler = true;
            (h, gen)
        };
        let fe = CharFrontend {
            cd: self.clone(),
            tag,
            gen,
        };
        let r = f(h.as_mut(), &fe);
        let mut st = self.state();
        st.in_handler = false;
        if let Some(Some(slot)) = st.frontends.get_mut(tag) {
            if slot.gen == gen && slot.handlers.is_none() {
                slot.handlers = Some(h);
            }
        }
        Some(r)
    }

    pub(crate) fn tags(&self) -> Vec<usize> {
        let st = self.state();
        (0..st.frontends.len())
            .filter(|&i| st.frontends[i].is_some())
            .collect()
    }

    /// Sends `ev` to every frontend.
    pub(crate) fn broadcast(self: &Arc<Self>, ev: ChardevEvent) {
        let opened = ev == ChardevEvent::Opened;
        for tag in self.tags() {
            self.with_handlers_settling(tag, opened, |h, _| h.event(ev));
        }
    }

    pub(crate) fn focus(&self) -> usize {
        self.state().focus
    }

    // ----- the I/O task ----------------------------------------------------

    fn poll_task(self: &Arc<Self>, cx: &mut Context<'_>, linger: &mut Linger) -> Poll<()> {
        {
            let mut w = lock(&self.waker);
            match w.as_ref() {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            }
        }
        let input_at_start = self.stats.bytes_in.load(Ordering::Relaxed);
        for _ in 0..ROUNDS_PER_POLL {
            if self.stats.bytes_in.load(Ordering::Relaxed) - input_at_start >= TURN_INPUT_BUDGET {
                break;
            }
            if self.state().removed {
                return Poll::Ready(());
            }
            let mut progress = self.apply_queued_ioctls();
            self.refresh_modem(false);
            progress |= self.deliver_owed_opens();
            progress |= self.apply_pending(cx);
            progress |= self.pump_tap_input();
            let input_before = self.stats.bytes_in.load(Ordering::Relaxed);
            progress |= self.pump_input(cx);
            if self.stats.bytes_in.load(Ordering::Relaxed) != input_before {
                linger.stop();
            }
            let (out_progress, moved) = self.pump_output(cx, linger.streaming());
            progress |= out_progress;
            linger.moved(moved);
            if !progress {
                if linger.expired(cx) {
                    // A whole interval without output: each write wakes the
                    // task again.
                    match self.out.park(cx.waker(), false) {
                        None => continue,
                        Some(owed) => {
                            if owed {
                                self.tell_writers();
                            }
                        }
                    }
                }
                return Poll::Pending;
            }
        }
        // Plenty of work: let the other chardevs run, then come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn deliver_owed_opens(self: &Arc<Self>) -> bool {
        let focus_to = self.state().focus_to.take();
        if let Some(tag) = focus_to {
            self.set_focus(tag);
        }
        let owed: Vec<usize> = {
            let mut st = self.state();
            let mut v = Vec::new();
            for (i, s) in st.frontends.iter_mut().enumerate() {
                if let Some(s) = s {
                    if s.owe_open && s.handlers.is_some() {
                        s.owe_open = false;
                        v.push(i);
                    }
                }
            }
            v
        };
        for &tag in &owed {
            self.with_handlers_settling(tag, true, |h, _| h.event(ChardevEvent::Opened));
        }
        focus_to.is_some() || !owed.is_empty()
    }

    /// Delivers one event of the backend (input, a connection change, a mux
    /// escape) to the frontends; nothing while the registry holds input
    /// (`Registry::hold_input`).
    fn pump_input(self: &Arc<Self>, cx: &mut Context<'_>) -> bool {
        if self.io.input_held() {
            return false;
        }
        let focus = self.focus();
        let room = self.with_handlers(focus, |h, _| h.can_read()).unwrap_or(0);
        let mut buf = ReadBuf::lend();
        let want = room.min(READ_CHUNK);
        let polled = self.state().inst.backend.poll_event(cx, &mut buf[..want]);
        self.emit_link_events();
        let ev = match polled {
            Poll::Ready(ev) => ev,
            Poll::Pending => return false,
        };
        match ev {
            BackendEvent::Input(n) => {
                let n = n.min(want);
                self.stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                self.with_handlers(focus, |h, _| h.read(&buf[..n]));
            }
            BackendEvent::Opened => {
                let was = std::mem::replace(&mut self.state().be_open, true);
                if !was {
                    self.listeners.emit(&RegistryEvent::Opened(self.id.clone()));
                }
                self.broadcast(ChardevEvent::Opened);
            }
            BackendEvent::Closed => {
                let was = std::mem::replace(&mut self.state().be_open, false);
                if was {
                    self.listeners.emit(&RegistryEvent::Closed(self.id.clone()));
                    self.broadcast(ChardevEvent::Closed);
                }
            }
            BackendEvent::Break => {
                self.with_handlers(focus, |h, _| h.event(ChardevEvent::Break));
            }
            BackendEvent::MuxFocusNext => {
                let next = {
                    let st = self.state();
                    let n = st.frontends.len();
                    (1..=n)
                        .map(|k| (focus + k) % n)
                        .find(|&i| st.frontends[i].is_some())
                };
                if let Some(next) = next {
                    self.set_focus(next);
                }
            }
            BackendEvent::QuitRequested => {
                self.listeners
                    .emit(&RegistryEvent::QuitRequested(self.id.clone()));
            }
        }
        true
    }

    /// Gives the input focus of a mux to frontend `tag`: the old holder sees
    /// MUX_OUT, the new one MUX_IN.
    fn set_focus(self: &Arc<Self>, tag: usize) {
        let old = std::mem::replace(&mut self.state().focus, tag);
        if old != tag {
            self.with_handlers(old, |h, _| h.event(ChardevEvent::MuxOut));
        }
        self.with_handlers(tag, |h, _| h.event(ChardevEvent::MuxIn));
    }

    /// Offers queued output to the backend until it is all taken or the
    /// backend would block; parks lingering if `lazy`. Returns whether
    /// anything happened and how many bytes the backend took.
    fn pump_output(self: &Arc<Self>, cx: &mut Context<'_>, lazy: bool) -> (bool, u64) {
        let mut progress = self.replay_history(cx);
        progress |= self.replay_carried(cx);
        let mut moved = 0u64;
        let mut chunk = Vec::with_capacity(WRITE_CHUNK.min(self.out.len().max(64)));
        let mut wake_writers = false;
        loop {
            self.out.peek(&mut chunk, WRITE_CHUNK);
            if chunk.is_empty() {
                match self.out.park(cx.waker(), lazy) {
                    Some(owed) => {
                        wake_writers |= owed;
                        break;
                    }
                    None => continue,
                }
            }
            let taken = {
                let mut st = self.state();
                self.offer(&mut st, cx, &chunk)
            };
            match taken {
                Some(n) => {
                    wake_writers |= self.out.consume(n);
                    progress = true;
                    moved += n as u64;
                }
                None => break,
            }
        }
        if wake_writers {
            self.tell_writers();
        }
        (progress, moved)
    }

    /// Tells every frontend that output has room again.
    fn tell_writers(self: &Arc<Self>) {
        for tag in self.tags() {
            self.with_handlers(tag, |h, _| h.write_ready());
        }
    }

    /// Offers `chunk` to the installed backend, once the history owed to a
    /// new peer is out (see [`crate::history`]). Returns how many bytes left
    /// the queue, None if the backend would block.
    fn offer(&self, st: &mut State, cx: &mut Context<'_>, chunk: &[u8]) -> Option<usize> {
        if !self.replay_step(st, cx) {
            return None;
        }
        // What a change kept for this backend's first peer is older: it
        // goes first, and output waits behind it until that peer comes.
        if replay_carry(st, cx).pending {
            return None;
        }
        if !st.inst.backend.is_open() && st.inst.backend.drops_output_when_closed() {
            if let Some(b) = st.carry.as_mut() {
                b.keep(chunk);
                self.log(st, chunk);
                self.stats
                    .bytes_out
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                self.record_sent(st, chunk);
                return Some(chunk.len());
            }
        }
        let keep_for_peer = st.replay.on
            && !st.inst.backend.is_open()
            && st.inst.backend.drops_output_when_closed();
        let r = if keep_for_peer {
            // No peer: kept in the history for the next one.
            Poll::Ready(Ok(chunk.len()))
        } else {
            st.inst.backend.poll_write(cx, chunk)
        };
        match r {
            Poll::Ready(Ok(n)) => {
                let n = n.min(chunk.len());
                self.log(st, &chunk[..n]);
                self.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                self.record_sent(st, &chunk[..n]);
                Some(n)
            }
            Poll::Ready(Err(e)) => {
                if !st.write_error_logged {
                    st.write_error_logged = true;
                    log::error!("chardev '{}': write failed, output lost: {e}", self.id);
                }
                self.stats
                    .bytes_lost
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Some(chunk.len())
            }
            Poll::Pending => None,
        }
    }

    /// Copies output that left the queue to the log file, if any; never
    /// waits for the file (see `logfile.rs`).
    fn log(&self, st: &State, data: &[u8]) {
        if let Some(log) = st.inst.logfile.as_ref() {
            let lost = log.append(data);
            if lost > 0 {
                self.stats.log_dropped.fetch_add(lost, Ordering::Relaxed);
            }
        }
    }

    /// Sends what a change kept to the new backend's first peer.
    fn replay_carried(&self, cx: &mut Context<'_>) -> bool {
        replay_carry(&mut self.state(), cx).progress
    }

    /// Moves queued output into the current backend as far as it takes it
    /// without waiting, so that bytes written before a change leave through
    /// the old backend where it can take them.
    ///
    /// A writer that came back short is told of the room by the I/O task,
    /// which this wakes: the caller may be a handler of another chardev, or
    /// the change, with this chardev's handlers not to be called from here.
    pub(crate) fn flush_now(&self) {
        self.flush_with(&mut Context::from_waker(Waker::noop()));
    }

    /// [`Self::flush_now`] with the task's context, so that a backend that
    /// cannot take more now wakes the task when it can.
    pub(crate) fn flush_with(&self, cx: &mut Context<'_>) {
        let mut chunk = Vec::new();
        let mut owed = false;
        loop {
            self.out.peek(&mut chunk, WRITE_CHUNK);
            if chunk.is_empty() {
                break;
            }
            let taken = {
                let mut st = self.state();
                self.offer(&mut st, cx, &chunk)
            };
            match taken {
                Some(n) if n > 0 => owed |= self.out.consume_quietly(n),
                _ => break,
            }
        }
        if owed {
            self.kick();
        }
    }

    /// Links a backend this chardev installs (see [`Backend::link`]).
    pub(crate) fn link(&self, backend: &mut dyn Backend) {
        backend.link(&BackendLink {
            id: self.id.clone(),
            history: self.history.clone(),
            events: self.link_events.clone(),
        });
    }

    /// Emits what the backend reported about its clients; no lock held.
    pub(crate) fn emit_link_events(&self) {
        for ev in self.link_events.take() {
            self.listeners.emit(&ev);
        }
    }

    /// Whether [`Chardev::remove`] has run.
    pub(crate) fn is_removed(&self) -> bool {
        self.state().removed
    }

    /// Marks the chardev removed and closes its backend now. Runs on the I/O
    /// thread.
    pub(crate) fn remove(&self) -> Result<()> {
        let mut st = self.state();
        if st.removed {
            // Another remove got here first; the id may already name a new
            // chardev, which this call must not touch.
            return Err(ChardevError::NotFound(self.id.clone()));
        }
        // As in QEMU, a mux counts as busy even without frontends (QEMU's
        // busy check of a mux compares its count of frontends with >= 0).
        if st.frontends.iter().any(|f| f.is_some())
            || matches!(st.inst.spec, ChardevBackend::Mux(_))
        {
            return Err(ChardevError::Busy(self.id.clone()));
        }
        st.removed = true;
        let old = take_backend(&mut st);
        drop(st);
        self.end_taps();
        self.serial_line.store(false, Ordering::Release);
        self.retire(old);
        self.kick();
        Ok(())
    }

    /// At shutdown: marks the chardev removed and closes its backend, with
    /// nothing finished for its peer. Its users' handles stay valid and
    /// inert. Runs on the I/O thread (its descriptors are registered there).
    pub(crate) fn close(&self) {
        let mut st = self.state();
        st.removed = true;
        let pending = st.pending.take();
        let old = take_backend(&mut st);
        drop(st);
        self.end_taps();
        self.serial_line.store(false, Ordering::Release);
        drop((old, pending));
        self.kick();
    }

    /// Delivers a break to the focused frontend, as if the backend got one.
    pub(crate) fn send_break(self: &Arc<Self>) {
        let focus = self.focus();
        self.with_handlers(focus, |h, _| h.event(ChardevEvent::Break));
    }

    /// Runs `f` on the ring buffer, after moving queued output into it.
    pub(crate) fn with_ringbuf<R>(
        &self,
        f: impl FnOnce(&mut crate::backend::RingBuf) -> R,
    ) -> Result<R> {
        self.flush_now();
        let mut st = self.state();
        match st.inst.backend.as_ringbuf() {
            Some(r) => Ok(f(r)),
            None => Err(ChardevError::NotRingbuf(self.id.clone())),
        }
    }

    /// Drops every frontend's handlers, breaking the reference cycles
    /// handlers that hold their own handle create. Used at shutdown.
    pub(crate) fn clear_frontends(&self) {
        let slots = std::mem::take(&mut self.state().frontends);
        for c in &self.current {
            c.store(0, Ordering::Release);
        }
        drop(slots);
    }
}

/// A chardev task's output coalescing state (see `STREAM_BYTES`).
#[derive(Default)]
struct Linger {
    /// Output moved since the last input or the last idle interval.
    streak: u64,
    /// When to look at the queue again; set while streaming.
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Linger {
    fn streaming(&self) -> bool {
        self.timer.is_some()
    }

    fn stop(&mut self) {
        self.streak = 0;
        self.timer = None;
    }

    fn moved(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        self.streak = self.streak.saturating_add(n);
        if self.streak < STREAM_BYTES {
            return;
        }
        let at = tokio::time::Instant::now() + LINGER;
        match self.timer.as_mut() {
            Some(t) => t.as_mut().reset(at),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }

    /// Polls the timer; true (and streaming ends) once it has fired.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(t) = self.timer.as_mut() else {
            return false;
        };
        if std::future::Future::poll(t.as_mut(), cx).is_ready() {
            self.stop();
            true
        } else {
            false
        }
    }
}

thread_local! {
    /// The input buffer of the I/O thread, lent to one `pump_input` at a
    /// time: allocated once, never cleared (a backend fills what it
    /// reports), instead of a zeroed array on the stack for every poll.
    static READ_BUF: std::cell::Cell<Option<Box<[u8]>>> = const { std::cell::Cell::new(None) };
}

/// The thread's input buffer while lent; given back on drop.
struct ReadBuf(Option<Box<[u8]>>);

impl ReadBuf {
    fn lend() -> ReadBuf {
        let buf = READ_BUF
            .take()
            .unwrap_or_else(|| vec![0u8; READ_CHUNK].into_boxed_slice());
        ReadBuf(Some(buf))
    }
}

impl std::ops::Deref for ReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_deref().unwrap_or_default()
    }
}

impl std::ops::DerefMut for ReadBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().unwrap_or_default()
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        READ_BUF.set(self.0.take());
    }
}

/// What [`replay_carry`] did.
struct Replayed {
    /// Bytes went out.
    progress: bool,
    /// Bytes are left that an open backend did not take now.
    pending: bool,
}

/// Sends what a change kept ([`State::carry`]) to the backend if it has a
/// peer now; once all of it is out, it is gone.
fn replay_carry(st: &mut State, cx: &mut Context<'_>) -> Replayed {
    let mut r = Replayed {
        progress: false,
        pending: false,
    };
    let Some(b) = st.carry.as_mut() else {
        return r;
    };
    if b.buf.is_empty() || !st.inst.backend.is_open() {
        return r;
    }
    while !b.buf.is_empty() {
        let (front, _) = b.buf.as_slices();
        match st.inst.backend.poll_write(cx, front) {
            Poll::Ready(Ok(n)) if n > 0 => {
                b.buf.drain(..n.min(front.len()));
                r.progress = true;
            }
            Poll::Ready(Err(_)) => {
                b.buf.clear();
                break;
            }
            _ => break,
        }
    }
    r.pending = !b.buf.is_empty();
    if !r.pending {
        st.carry = None;
    }
    r
}

/// Puts [`Removed`] in place of the installed backend; returns that.
fn take_backend(st: &mut State) -> Installed {
    let spec = st.inst.spec.clone();
    std::mem::replace(
        &mut st.inst,
        Installed {
            backend: Box::new(Removed),
            spec,
            logfile: None,
        },
    )
}

/// Stands in for the backend of a removed chardev until its task ends.
struct Removed;

impl Backend for Removed {
    fn poll_event(&mut self, _cx: &mut Context<'_>, _buf: &mut [u8]) -> Poll<BackendEvent> {
        Poll::Pending
    }
    fn poll_write(&mut self, _cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(data.len()))
    }
    fn filename(&self) -> String {
        "removed".into()
    }
}
