//! The set of chardevs by id, with QEMU's add / change / remove / query
//! semantics and messages. A registry owns one I/O thread that drives all of
//! its chardevs.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend;
use crate::backend::OpenCtx;
use crate::bridge::{BridgeError, BridgeInfo, BridgeSpec, Bridges};
use crate::change::{self, Drains};
use crate::chardev::{Chardev, Installed};
use crate::error::{ChardevError, Result};
use crate::fdpass::FdNumbers;
use crate::fdset::FdSets;
use crate::frontend::{CharFrontend, FrontendStats};
use crate::iothread::IoThread;
use crate::logfile::{LogSpec, Logger};
use crate::opts::ChardevOptions;
use crate::outq::DEFAULT_OUT_CAPACITY;
use crate::slow_open::{self, Done, WeakRegistry};
use crate::spec::{ChardevBackend, ChardevHub, ChardevInfo, ChardevMux, ChardevReturn};
use crate::tap::{Tap, TapOptions};
use crate::tls::ObjectStore;

/// Something that happened to a chardev, for observers such as a QMP
/// monitor that turns them into events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryEvent {
    /// A chardev was added.
    Added(String),
    /// A chardev was removed.
    Removed(String),
    /// A chardev's backend was changed; `filename` describes the new one.
    Changed {
        /// The chardev.
        id: String,
        /// The new backend as `query-chardev` prints it.
        filename: String,
    },
    /// A chardev's backend got a peer.
    Opened(String),
    /// A chardev's backend lost its peer.
    Closed(String),
    /// A mux user typed the quit escape (Ctrl-a x).
    QuitRequested(String),
    /// A client of a multi-client socket server (`x-clients`) connected
    /// (its handshake, if any, done) and is being sent the history.
    ClientConnected {
        /// The chardev.
        id: String,
        /// The client's number, unique on this chardev.
        client: u64,
        /// Where it connected from (`127.0.0.1:50000`, `unix`).
        peer: String,
        /// Whether its input reaches the frontend (`x-writers`).
        writer: bool,
        /// Clients connected now, this one included.
        clients: usize,
    },
    /// A client of a multi-client socket server went away.
    ClientDisconnected {
        /// The chardev.
        id: String,
        /// The client's number.
        client: u64,
        /// Where it had connected from.
        peer: String,
        /// Why: `closed` (by the peer, or an I/O error), `disconnected`
        /// (`yank`, or the frontend asked), `changed` (a change to a server
        /// on the same address that could not keep it: another framing),
        /// `retired` (a change to another backend, or the chardev removed).
        reason: String,
        /// Clients still connected.
        clients: usize,
    },
    /// A client of a multi-client socket server read slower than the
    /// history turns over: it skips ahead, and is sent a marker line saying
    /// how much it missed. Once per marker: what it misses until it reads
    /// the marker is added to the marker, not reported again.
    ClientSkipped {
        /// The chardev.
        id: String,
        /// The client's number.
        client: u64,
        /// Where it connected from.
        peer: String,
        /// Bytes it had missed when it started skipping.
        skipped: u64,
    },
}

type Listener = Arc<dyn Fn(&RegistryEvent) + Send + Sync>;

/// Registered observers of [`RegistryEvent`]s.
#[derive(Default)]
pub(crate) struct Listeners(Mutex<Vec<Listener>>);

impl Listeners {
    /// Calls every observer, with no lock held.
    pub(crate) fn emit(&self, ev: &RegistryEvent) {
        let list: Vec<Listener> = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for l in list {
            l(ev);
        }
    }
}

/// A snapshot of a chardev's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Bytes the backends took from the frontends.
    pub bytes_out: u64,
    /// Bytes delivered to the frontends.
    pub bytes_in: u64,
    /// Bytes lost to backend write errors.
    pub bytes_lost: u64,
    /// Backend changes applied.
    pub changes: u64,
    /// Bytes waiting in the output queue.
    pub queued: u64,
    /// Bytes the log file could not keep up with (dropped from the log,
    /// not from the output).
    pub log_dropped: u64,
}

/// One client of a multi-client socket server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// Its number, unique on its chardev.
    pub client: u64,
    /// Where it connected from (`127.0.0.1:50000`, `unix`).
    pub peer: String,
    /// Whether its input reaches the frontend.
    pub writer: bool,
    /// Whether it is still shaking hands (websocket): nothing sent yet.
    pub handshake: bool,
    /// Output bytes sent to it (history and live).
    pub sent: u64,
    /// Output bytes it missed by reading too slowly.
    pub skipped: u64,
    /// Input bytes it typed that were dropped (it is a viewer).
    pub dropped_input: u64,
    /// Output bytes sent out by the chardev that it has not got yet.
    pub behind: u64,
}

/// A multi-client socket server's clients (`x-query-chardev-clients`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientsInfo {
    /// `x-clients`.
    pub max_clients: u64,
    /// `x-writers` (`max_clients` when absent).
    pub max_writers: u64,
    /// Clients refused for being one too many, since the listener opened.
    pub refused: u64,
    /// The connected clients, oldest first.
    pub clients: Vec<ClientInfo>,
}

/// [`ClientsInfo`] of one chardev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChardevClientsInfo {
    /// The chardev's id.
    pub label: String,
    /// Its clients.
    pub info: ClientsInfo,
}

/// One chardev's counters and its frontends' (QMP `x-query-chardev-stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChardevStatsInfo {
    /// The chardev's id.
    pub label: String,
    /// The chardev's own counters.
    pub stats: StatsSnapshot,
    /// Counters of its frontends that keep some (a UART's).
    pub frontends: Vec<FrontendStats>,
}

/// When an add looks for its id among the chardevs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    /// Before anything is opened (QMP's `chardev-add`).
    First,
    /// Once the backend is open, as QEMU's option-based adds find out.
    AfterOpen,
}

struct Map {
    by_id: HashMap<String, (u64, Arc<Chardev>)>,
    seq: u64,
}

pub(crate) struct Inner {
    io: Arc<IoThread>,
    map: Mutex<Map>,
    listeners: Arc<Listeners>,
    fdsets: Arc<FdSets>,
    fd_numbers: Mutex<FdNumbers>,
    drains: Arc<Drains>,
    out_cap: usize,
    /// The log files and their writer thread.
    logger: Logger,
    /// The bridges (`x-bridge` objects).
    bridges: Bridges,
    /// The objects (`-object`, `object-add`) chardevs look up by id.
    objects: ObjectStore,
}

impl Inner {
    /// Stops everything: see [`Registry::shutdown`]. Idempotent.
    fn shutdown(&self) {
        let all: Vec<Arc<Chardev>> = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .drain()
            .map(|(_, (_, c))| c)
            .collect();
        // Handlers first: they may hold frontends (their own, or a mux's on
        // its base), which would keep chardevs alive.
        for cd in &all {
            cd.clear_frontends();
        }
        self.bridges.clear();
        self.drains.end_all();
        // Backends close on the I/O thread, where their descriptors are
        // registered. Fails only if that thread is already gone.
        if !all.is_empty() {
            let _ = self.io.run(move || {
                for cd in all {
                    cd.close();
                }
            });
        }
        // The backends are gone: their logs are written out now.
        self.logger.shutdown();
        self.io.shutdown();
    }
}

impl Drop for Inner {
    /// The last handle went without `shutdown`: do it now, so that neither
    /// the I/O thread nor a descriptor outlives the registry.
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The chardevs of one process (or one VM), by id. Cheap to clone.
///
/// ```
/// use qchar_chardev::{Registry, spec::{ChardevBackend, ChardevRingbuf}};
/// let reg = Registry::new().unwrap();
/// reg.add("log", ChardevBackend::Ringbuf(ChardevRingbuf::default())).unwrap();
/// let fe = reg.attach("log").unwrap();
/// fe.write_all(b"hello").unwrap();
/// assert_eq!(reg.ringbuf_read("log", 100).unwrap(), b"hello");
/// reg.shutdown();
/// ```
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl Registry {
    /// A registry with its I/O thread, and output queues of the default size.
    pub fn new() -> Result<Registry> {
        Registry::with_out_capacity(DEFAULT_OUT_CAPACITY)
    }

    /// A registry whose chardevs buffer up to `cap` bytes of output each.
    pub fn with_out_capacity(cap: usize) -> Result<Registry> {
        Ok(Registry {
            inner: Arc::new(Inner {
                io: Arc::new(IoThread::start()?),
                map: Mutex::new(Map {
                    by_id: HashMap::new(),
                    seq: 0,
                }),
                listeners: Arc::new(Listeners::default()),
                fdsets: FdSets::new(),
                fd_numbers: Mutex::new(FdNumbers::Any),
                drains: Arc::new(Drains::new()),
                out_cap: cap.max(1),
                logger: Logger::default(),
                bridges: Bridges::new(),
                objects: ObjectStore::new(),
            }),
        })
    }

    fn map(&self) -> MutexGuard<'_, Map> {
        self.inner.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Chardev>> {
        self.map().by_id.get(id).map(|(_, c)| c.clone())
    }

    /// The objects (`-object`, `object-add`) this registry's chardevs look
    /// up by id: TLS credentials and authorization.
    pub fn objects(&self) -> &ObjectStore {
        &self.inner.objects
    }

    /// Whether `id` is registered.
    pub fn contains(&self, id: &str) -> bool {
        self.map().by_id.contains_key(id)
    }

    /// The descriptor sets (`/dev/fdset/N`) of this registry's VM.
    pub fn fdsets(&self) -> &Arc<FdSets> {
        &self.inner.fdsets
    }

    /// Observes chardev events. The callback runs on the thread where the
    /// event happened (often the I/O thread) and must not block.
    pub fn subscribe(&self, f: impl Fn(&RegistryEvent) + Send + Sync + 'static) {
        self.inner
            .listeners
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(f));
    }

    /// The I/O thread.
    pub(crate) fn io(&self) -> &IoThread {
        &self.inner.io
    }

    /// What opening a backend needs besides its spec; on this thread, for
    /// a command of the monitor running here, if one is.
    pub(crate) fn open_ctx(&self) -> OpenCtx {
        OpenCtx {
            fdsets: self.inner.fdsets.clone(),
            names: crate::fdpass::current_monitor(),
            fd_numbers: *self
                .inner
                .fd_numbers
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
            objects: self.inner.objects.clone(),
        }
    }

    /// Which descriptor numbers a socket's `fd=N` may take from now on
    /// (outside monitor commands); [`FdNumbers::Any`] by default.
    pub fn set_fd_numbers(&self, numbers: FdNumbers) {
        *self
            .inner
            .fd_numbers
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = numbers;
    }

    /// Opens a backend and what comes with it, on the calling thread with
    /// the runtime entered.
    pub(crate) fn open(&self, id: &str, spec: &ChardevBackend) -> Result<Installed> {
        let ctx = self.open_ctx();
        // A change: a server on the address the chardev listens on now
        // takes that listener over when installed.
        let take_over = self.hands_over(id, spec);
        open_with(
            self.inner.io.handle(),
            &ctx,
            &self.inner.logger,
            spec,
            |ctx| match spec {
                ChardevBackend::Mux(m) => self.open_mux(id, m),
                ChardevBackend::Hub(h) => self.open_hub(id, h),
                _ => backend::open_after(id, spec, ctx, take_over),
            },
        )
    }

    /// Whether chardev `id`'s backend listens where `spec` would, so that
    /// the new backend takes its listener over (and opens at once).
    pub(crate) fn hands_over(&self, id: &str, spec: &ChardevBackend) -> bool {
        self.get(id)
            .is_some_and(|cd| cd.state().inst.backend.hands_over_to(spec))
    }

    /// The log files, for opens made elsewhere (see [`slow_open`]).
    pub(crate) fn logger(&self) -> &Logger {
        &self.inner.logger
    }

    /// A weak handle, for the I/O thread's tasks (see
    /// [`crate::slow_open::WeakRegistry`]).
    pub(crate) fn downgrade(&self) -> WeakRegistry {
        Arc::downgrade(&self.inner)
    }

    /// The registry behind a weak handle, if it is still there.
    pub(crate) fn upgrade(weak: &WeakRegistry) -> Option<Registry> {
        weak.upgrade().map(|inner| Registry { inner })
    }

    /// A mux backend: attaches to the base chardev as its frontend.
    fn open_mux(&self, id: &str, m: &ChardevMux) -> Result<Box<dyn backend::Backend>> {
        let _ = id;
        let base = self.get(&m.chardev).ok_or_else(|| {
            ChardevError::Invalid(format!("mux: base chardev {} not found", m.chardev))
        })?;
        let fe = base.attach()?;
        Ok(Box::new(backend::mux::MuxBackend::new(fe)))
    }

    /// A hub backend: attaches to each member as its frontend, with QEMU
    /// 10's checks and texts in its order (found, not a mux or hub, not in
    /// use, at most [`crate::MAX_HUB`]). When chardev `id` is a hub already
    /// (a change into another hub), the members it holds are taken over
    /// when the change installs the new hub.
    fn open_hub(&self, id: &str, h: &ChardevHub) -> Result<Box<dyn backend::Backend>> {
        use backend::hub::{stacked, HubBackend};
        if h.chardevs.is_empty() {
            return Err(ChardevError::Invalid(
                "hub: 'chardevs' list is not defined".into(),
            ));
        }
        let current = self.get(id);
        // A member of a hub (or the base of a mux) cannot become a hub.
        if current.as_ref().is_some_and(|c| c.mux_above().is_some()) {
            return Err(stacked(id));
        }
        let held = match current.as_ref().map(|c| c.spec()) {
            Some(ChardevBackend::Hub(old)) => old.chardevs,
            _ => Vec::new(),
        };
        let mut hub = HubBackend::new();
        let mut taken_over: Vec<&str> = Vec::new();
        for m in &h.chardevs {
            let cd = self.get(m).ok_or_else(|| {
                ChardevError::Invalid(format!("hub: chardev can't be found by id '{m}'"))
            })?;
            if matches!(cd.spec(), ChardevBackend::Mux(_) | ChardevBackend::Hub(_)) {
                return Err(stacked(m));
            }
            if hub.len() >= crate::MAX_HUB {
                return Err(ChardevError::Invalid(format!(
                    "hub: too many uses of chardevs '{id}' (maximum is {})",
                    crate::MAX_HUB
                )));
            }
            let later = held.contains(m) && !taken_over.contains(&m.as_str());
            if later {
                taken_over.push(m);
            }
            hub.add_member(m, cd, later)?;
        }
        Ok(Box::new(hub))
    }

    /// Adds a chardev from parsed `-chardev` options. With `mux=on` this
    /// makes `ID-base` with the backend and `ID` multiplexing it, as QEMU.
    /// As in QEMU, a taken id is found only once the backend is open
    /// ([`ChardevError::DuplicateProperty`], `ID-base` first).
    pub fn add_options(&self, opts: &ChardevOptions) -> Result<ChardevReturn> {
        if !opts.mux {
            return self.add_inner(&opts.id, opts.backend.clone(), false, Taken::AfterOpen);
        }
        let base = format!("{}-base", opts.id);
        let ret = self.add_inner(&base, opts.backend.clone(), false, Taken::AfterOpen)?;
        let mux = ChardevBackend::Mux(ChardevMux {
            common: Default::default(),
            chardev: base.clone(),
        });
        if let Err(e) = self.add_inner(&opts.id, mux, true, Taken::AfterOpen) {
            let _ = self.remove(&base);
            return Err(e);
        }
        Ok(ret)
    }

    /// Adds chardev `id` with a new backend (QMP `chardev-add`).
    pub fn add(&self, id: &str, spec: ChardevBackend) -> Result<ChardevReturn> {
        self.add_inner(id, spec, false, Taken::First)
    }

    fn add_inner(
        &self,
        id: &str,
        spec: ChardevBackend,
        multi: bool,
        taken: Taken,
    ) -> Result<ChardevReturn> {
        if taken == Taken::First && self.contains(id) {
            return Err(ChardevError::AlreadyExists(id.to_string()));
        }
        let inst = self.open(id, &spec)?;
        self.install(id, inst, multi, taken)
    }

    /// Registers and starts chardev `id` on an opened backend.
    fn install(
        &self,
        id: &str,
        inst: Installed,
        multi: bool,
        taken: Taken,
    ) -> Result<ChardevReturn> {
        let ret = ChardevReturn {
            pty: inst.backend.pty_path(),
        };
        let spec = inst.spec.clone();
        let taken_error = || match taken {
            Taken::First => ChardevError::AlreadyExists(id.to_string()),
            Taken::AfterOpen => ChardevError::DuplicateProperty {
                id: id.to_string(),
                pty: ret.pty.clone(),
            },
        };
        if self.contains(id) {
            // The backend opened for nothing goes (a mux lets its base go).
            drop(inst);
            return Err(taken_error());
        }
        let multi = multi || matches!(spec, ChardevBackend::Mux(_));
        let cd = Chardev::new(
            id.to_string(),
            self.inner.io.clone(),
            inst,
            multi,
            self.inner.out_cap,
            self.inner.listeners.clone(),
            self.inner.drains.clone(),
        );
        {
            let mut map = self.map();
            if map.by_id.contains_key(id) {
                // Another add took the id while this one opened.
                return Err(taken_error());
            }
            map.seq += 1;
            let seq = map.seq;
            map.by_id.insert(id.to_string(), (seq, cd.clone()));
        }
        if let ChardevBackend::Mux(m) = &spec {
            if let Some(base) = self.get(&m.chardev) {
                base.set_mux_above(&cd);
            }
        }
        cd.link_hub_members();
        cd.start();
        self.inner
            .listeners
            .emit(&RegistryEvent::Added(id.to_string()));
        Ok(ret)
    }

    /// [`Registry::add`] for a caller on the I/O thread that must not wait
    /// (a monitor): an open that may wait for a peer (see
    /// [`may_block`](crate::slow_open)) runs elsewhere and `done` gets the
    /// answer when it ends; anything else, and every call from another
    /// thread, answers before this returns.
    pub fn add_then(&self, id: &str, spec: ChardevBackend, done: Done<ChardevReturn>) {
        self.add_inner_then(id, spec, Taken::First, done)
    }

    /// [`Registry::add_then`] with the id looked for when `taken` says.
    fn add_inner_then(
        &self,
        id: &str,
        spec: ChardevBackend,
        taken: Taken,
        done: Done<ChardevReturn>,
    ) {
        if !self.inner.io.on_io_thread() || !slow_open::may_block(&spec) {
            return done(self.add_inner(id, spec, false, taken));
        }
        if taken == Taken::First && self.contains(id) {
            return done(Err(ChardevError::AlreadyExists(id.to_string())));
        }
        if let Err(e) = backend::validate(&spec, &self.inner.objects) {
            return done(Err(e));
        }
        let weak = self.downgrade();
        let id2 = id.to_string();
        slow_open::open_elsewhere(self, id.to_string(), spec, {
            move |r| {
                let Some(reg) = Registry::upgrade(&weak) else {
                    return;
                };
                done(r.and_then(|inst| reg.install(&id2, inst, false, taken)));
            }
        });
    }

    /// [`Registry::add_options`] that may answer later, as
    /// [`Registry::add_then`]: with `mux=on`, `ID-base` is opened so and
    /// the mux `ID` made on it once it is there.
    pub fn add_options_then(&self, opts: &ChardevOptions, done: Done<ChardevReturn>) {
        if !opts.mux {
            return self.add_inner_then(&opts.id, opts.backend.clone(), Taken::AfterOpen, done);
        }
        let base = format!("{}-base", opts.id);
        let weak = self.downgrade();
        let id = opts.id.clone();
        let base2 = base.clone();
        self.add_inner_then(
            &base,
            opts.backend.clone(),
            Taken::AfterOpen,
            Box::new(move |r| {
                let ret = match r {
                    Ok(ret) => ret,
                    Err(e) => return done(Err(e)),
                };
                let Some(reg) = Registry::upgrade(&weak) else {
                    return;
                };
                let mux = ChardevBackend::Mux(ChardevMux {
                    common: Default::default(),
                    chardev: base2.clone(),
                });
                if let Err(e) = reg.add_inner(&id, mux, true, Taken::AfterOpen) {
                    let _ = reg.remove(&base2);
                    return done(Err(e));
                }
                done(Ok(ret));
            }),
        );
    }

    /// [`Registry::change`] for a caller on the I/O thread that must not
    /// wait, as [`Registry::add_then`].
    pub fn change_then(&self, id: &str, spec: ChardevBackend, done: Done<ChardevReturn>) {
        // A server taking the old one's listener over binds nothing.
        if !self.inner.io.on_io_thread()
            || !slow_open::may_block(&spec)
            || self.hands_over(id, &spec)
        {
            return done(self.change(id, spec));
        }
        change::change_then(self, id, spec, done);
    }

    /// Changes the backend of chardev `id` while its frontend keeps running
    /// (QMP `chardev-change`). See [`crate`] docs for the guarantees, and
    /// [`crate::change`] for how.
    pub fn change(&self, id: &str, spec: ChardevBackend) -> Result<ChardevReturn> {
        change::change(self, id, spec)
    }

    /// Removes chardev `id` (QMP `chardev-remove`); refused while a frontend
    /// uses it.
    pub fn remove(&self, id: &str) -> Result<()> {
        let cd = self
            .get(id)
            .ok_or_else(|| ChardevError::NotFound(id.to_string()))?;
        let cd2 = cd.clone();
        self.inner.io.run(move || cd2.remove())??;
        let mut map = self.map();
        // Only the chardev this call removed: the id may name a new one by now.
        if map.by_id.get(id).is_some_and(|(_, c)| Arc::ptr_eq(c, &cd)) {
            map.by_id.remove(id);
        }
        drop(map);
        self.inner
            .listeners
            .emit(&RegistryEvent::Removed(id.to_string()));
        Ok(())
    }

    /// `query-chardev`: every chardev, in the order they were added.
    pub fn query(&self) -> Vec<ChardevInfo> {
        let mut all: Vec<(u64, Arc<Chardev>)> = self.map().by_id.values().cloned().collect();
        all.sort_by_key(|(seq, _)| *seq);
        all.into_iter()
            .map(|(_, cd)| ChardevInfo {
                label: cd.id.clone(),
                filename: cd.filename(),
                frontend_open: cd.frontend_open(),
            })
            .collect()
    }

    /// The spec of chardev `id`'s current backend.
    pub fn backend_spec(&self, id: &str) -> Option<ChardevBackend> {
        self.get(id).map(|cd| cd.spec())
    }

    /// Attaches a frontend to chardev `id` (what a device does at realize).
    pub fn attach(&self, id: &str) -> Result<CharFrontend> {
        self.get(id)
            .ok_or_else(|| ChardevError::DoesNotExist(id.to_string()))?
            .attach()
    }

    /// `chardev-send-break`: the frontend sees a break, as if the backend
    /// received one.
    pub fn send_break(&self, id: &str) -> Result<()> {
        let cd = self
            .get(id)
            .ok_or_else(|| ChardevError::NotFound(id.to_string()))?;
        self.inner.io.run(move || cd.send_break())
    }

    /// `ringbuf-write`: appends to a ringbuf chardev's ring.
    pub fn ringbuf_write(&self, id: &str, data: &[u8]) -> Result<()> {
        let cd = self
            .get(id)
            .ok_or_else(|| ChardevError::NotFound(id.to_string()))?;
        let data = data.to_vec();
        self.inner
            .io
            .run(move || cd.with_ringbuf(|r| r.write(&data)))?
    }

    /// `ringbuf-read`: takes up to `max` bytes from a ringbuf chardev.
    pub fn ringbuf_read(&self, id: &str, max: usize) -> Result<Vec<u8>> {
        let cd = self
            .get(id)
            .ok_or_else(|| ChardevError::NotFound(id.to_string()))?;
        self.inner
            .io
            .run(move || cd.with_ringbuf(|r| r.read(max)))?
    }

    /// A reader of chardev `id` beside its backend: see [`crate::tap`].
    /// The chardev gets a history of [`crate::history::DEFAULT_HISTORY`]
    /// bytes if it had none.
    pub fn tap(&self, id: &str, opts: TapOptions) -> Result<Tap> {
        let cd = self
            .get(id)
            .ok_or_else(|| ChardevError::NotFound(id.to_string()))?;
        Tap::new(cd, opts)
    }

    /// QMP `x-chardev-history`: the newest `max` bytes chardev `id` sent
    /// out, oldest first, without consuming them and without connecting.
    pub fn history(&self, id: &str, max: usize) -> Result<Vec<u8>> {
        let cd = self
            .get(id)
            .ok_or_else(|| ChardevError::NotFound(id.to_string()))?;
        if cd.history.capacity() == 0 {
            return Err(ChardevError::NoHistory(id.to_string()));
        }
        Ok(cd.history.tail(max))
    }

    /// QMP `x-query-chardev-clients`: the clients of every multi-client
    /// socket server, in the order the chardevs were added.
    pub fn clients(&self) -> Vec<ChardevClientsInfo> {
        let mut all: Vec<(u64, Arc<Chardev>)> = self.map().by_id.values().cloned().collect();
        all.sort_by_key(|(seq, _)| *seq);
        all.into_iter()
            .filter_map(|(_, cd)| {
                let info = cd.state().inst.backend.clients()?;
                Some(ChardevClientsInfo {
                    label: cd.id.clone(),
                    info,
                })
            })
            .collect()
    }

    /// QMP `query-yank`'s chardev instances: the chardevs whose backend is
    /// a socket, in the order QEMU registers them (see [`Registry::yank`]).
    pub fn yank_instances(&self) -> Vec<String> {
        let mut v: Vec<(u64, String)> = self
            .map()
            .by_id
            .values()
            .filter_map(|(_, cd)| cd.yank_order().map(|n| (n, cd.id.clone())))
            .collect();
        v.sort();
        v.into_iter().map(|(_, id)| id).collect()
    }

    /// QMP `yank` of chardev instances: drops the connection of every socket
    /// chardev in `ids` at once, as QEMU shuts its channel down (a server
    /// waits for its next client, a client with `reconnect` connects
    /// again). All or nothing: an id that is not a socket chardev fails the
    /// call before any connection is touched.
    pub fn yank(&self, ids: &[String]) -> Result<()> {
        let mut cds = Vec::with_capacity(ids.len());
        for id in ids {
            match self.get(id) {
                Some(cd) if cd.yank_order().is_some() => cds.push(cd),
                _ => return Err(ChardevError::YankInstanceNotFound),
            }
        }
        self.inner.io.run(move || {
            for cd in cds {
                cd.disconnect_peer();
            }
        })
    }

    /// Creates bridge `spec.id` between two chardevs (`-object x-bridge`,
    /// `object-add`): see [`crate::bridge`].
    pub fn add_bridge(&self, spec: &BridgeSpec) -> Result<(), BridgeError> {
        let (a, b) = (self.get(&spec.chardev_a), self.get(&spec.chardev_b));
        let inner = self.inner.clone();
        let spec = spec.clone();
        self.inner
            .io
            .run(move || inner.bridges.add(&spec, a, b))
            .map_err(|_| BridgeError::Shutdown)?
    }

    /// Takes bridge `id` apart (`object-del`); its chardevs are free again.
    pub fn remove_bridge(&self, id: &str) -> Result<(), BridgeError> {
        let inner = self.inner.clone();
        let id = id.to_string();
        self.inner
            .io
            .run(move || inner.bridges.remove(&id))
            .map_err(|_| BridgeError::Shutdown)?
    }

    /// Every bridge with its counters, in creation order.
    pub fn bridges(&self) -> Vec<BridgeInfo> {
        self.inner.bridges.list()
    }

    /// Counters of chardev `id`.
    pub fn stats(&self, id: &str) -> Option<StatsSnapshot> {
        self.get(id).map(|cd| snapshot(&cd))
    }

    /// Every chardev's counters with its frontends', in the order they were
    /// added (QMP `x-query-chardev-stats`).
    pub fn all_stats(&self) -> Vec<ChardevStatsInfo> {
        let mut all: Vec<(u64, Arc<Chardev>)> = self.map().by_id.values().cloned().collect();
        all.sort_by_key(|(seq, _)| *seq);
        all.into_iter()
            .map(|(_, cd)| ChardevStatsInfo {
                label: cd.id.clone(),
                stats: snapshot(&cd),
                frontends: cd.frontend_stats(),
            })
            .collect()
    }

    /// Ids in the order they were added.
    pub fn ids(&self) -> Vec<String> {
        self.query().into_iter().map(|i| i.label).collect()
    }

    /// Holds input until the returned guard is dropped: meanwhile no chardev
    /// of this registry reads its backend, so input, connections coming and
    /// going and a mux's escape keys wait (in the kernel, in the backend)
    /// and are acted on in order afterwards. Output still flows, and
    /// frontends attach and register as usual (an `Opened` owed to a
    /// registering frontend is delivered). Holds nest.
    ///
    /// For a VMM's set-up: QEMU's main loop reads nothing before the machine
    /// is complete, so a key typed meanwhile (Ctrl-a c on a mux) meets every
    /// frontend in place; read early, it would be acted on with half of them
    /// (the focus moved to a frontend that then takes it by registering).
    pub fn hold_input(&self) -> InputHold {
        self.inner.io.hold_input();
        InputHold { reg: self.clone() }
    }

    /// Returns once the I/O thread has finished the work it was doing when
    /// called: a frontend handler running then (a monitor executing `quit`)
    /// has returned and queued what it wrote. A process that exits on a
    /// monitor's request calls this before waiting for output to drain.
    pub fn sync(&self) -> Result<()> {
        self.inner.io.run(|| ())
    }

    /// Stops the I/O thread and closes every backend, ending what retired
    /// backends were still finishing. Frontends' handlers are dropped first,
    /// breaking cycles through handles they hold; frontend handles still
    /// held elsewhere stay valid and inert. Dropping the last handle of a
    /// registry does the same (a handler that holds a clone of the registry
    /// keeps it alive: call this then).
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

/// A hold on a registry's input (see [`Registry::hold_input`]); input
/// resumes when the last one is dropped.
#[must_use = "input resumes as soon as the hold is dropped"]
pub struct InputHold {
    reg: Registry,
}

impl std::fmt::Debug for InputHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InputHold")
    }
}

impl Drop for InputHold {
    fn drop(&mut self) {
        if !self.reg.inner.io.release_input() {
            return;
        }
        let all: Vec<Arc<Chardev>> = self
            .reg
            .map()
            .by_id
            .values()
            .map(|(_, c)| c.clone())
            .collect();
        for cd in all {
            cd.kick();
        }
    }
}

fn snapshot(cd: &Chardev) -> StatsSnapshot {
    StatsSnapshot {
        bytes_out: cd.stats.bytes_out.load(Ordering::Relaxed),
        bytes_in: cd.stats.bytes_in.load(Ordering::Relaxed),
        bytes_lost: cd.stats.bytes_lost.load(Ordering::Relaxed),
        changes: cd.stats.changes.load(Ordering::Relaxed),
        queued: cd.out.len() as u64,
        log_dropped: cd.stats.log_dropped.load(Ordering::Relaxed),
    }
}

/// Opens a backend (not a mux or hub) and its log file on the calling
/// thread, with `rt` entered so that its descriptors register with the I/O
/// thread.
pub(crate) fn open_backend(
    rt: &tokio::runtime::Handle,
    ctx: &OpenCtx,
    logger: &Logger,
    id: &str,
    spec: &ChardevBackend,
) -> Result<Installed> {
    open_with(rt, ctx, logger, spec, |ctx| backend::open(id, spec, ctx))
}

/// Checks `spec`, opens its log file, then the backend with `open`, with
/// `rt` entered.
fn open_with(
    rt: &tokio::runtime::Handle,
    ctx: &OpenCtx,
    logger: &Logger,
    spec: &ChardevBackend,
    open: impl FnOnce(&OpenCtx) -> Result<Box<dyn backend::Backend>>,
) -> Result<Installed> {
    backend::validate(spec, &ctx.objects)?;
    let _rt = rt.enter();
    let logfile = match LogSpec::from_common(spec.common())? {
        Some(log) => Some(logger.open(&log, &ctx.fdsets)?),
        None => None,
    };
    let backend = open(ctx)?;
    Ok(Installed {
        backend,
        spec: spec.clone(),
        logfile,
    })
}
