//! A backend change (QMP `chardev-change`), in one place: what happens to
//! a chardev's bytes, users and events when its backend is replaced, and
//! how the backend that goes is retired. docs/DESIGN.md's "A backend
//! change" describes this file, step by step:
//!
//! 1. [`change`]: look-up, the redirect of a mux to its base, and the new
//!    backend opened on the caller's thread (errors return at once; nothing
//!    of the old backend is touched).
//! 2. A change asked for from inside a handler of the chardev, or of the mux
//!    on it, is parked ([`Chardev::defer`]) and applied by that chardev's
//!    I/O task once the handler has returned ([`Chardev::apply_pending`]);
//!    any other runs on the I/O thread at once.
//! 3. [`Chardev::apply_change`]: a chardev without users gets the backend
//!    as is ([`Chardev::replace_unused`]), one whose users follow changes
//!    gets it through [`Chardev::swap`]; the `Changed` event is emitted
//!    here, and only here.
//! 4. [`Chardev::retire`]: the old backend hands back what it still owes its
//!    peer ([`crate::backend::Backend::retire`]) and [`Drains`] finishes that, bounded in
//!    number and time, ended at shutdown. The old backend's `Drop` only
//!    releases resources.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinSet;

use crate::backend::{hub, Drain};
use crate::chardev::{Backlog, Chardev, Installed};
use crate::error::{ChardevError, Result};
use crate::frontend::ChardevEvent;
use crate::registry::{Registry, RegistryEvent};
use crate::slow_open::Done;
use crate::spec::{ChardevBackend, ChardevReturn};

/// What a change keeps, besides a ring buffer's unread content, for the
/// new backend's first peer (see `Chardev::hand_over`).
pub(crate) const HANDOVER_BACKLOG: usize = 1 << 20;

/// How long a retired backend may take to hand its peer what it owed.
pub(crate) const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// Most retired backends finishing their output at once, per registry. One
/// more is closed at once (what it owed is lost, and logged): a management
/// loop changing backends faster than their peers read cannot pile up
/// descriptors.
pub(crate) const MAX_DRAINS: usize = 64;

/// Step 1: see the module documentation. `Registry::change` is this.
pub(crate) fn change(reg: &Registry, id: &str, spec: ChardevBackend) -> Result<ChardevReturn> {
    let (target, above) = look_up(reg, id, &spec)?;
    let inst = reg.open(&target.id, &spec)?;
    let ret = ChardevReturn {
        pty: inst.backend.pty_path(),
    };
    // Step 2. Asked from inside a handler of the chardev (a monitor on it)
    // or of the mux on it: that handler is on the stack, and this is the I/O
    // thread, so neither inline nor waiting will do.
    if let Some(host) = host_of(&target, above.as_ref()) {
        host.defer(target.clone(), inst)?;
        return Ok(ret);
    }
    let changed = target.clone();
    reg.io().run(move || changed.apply_change(inst))??;
    if let ChardevBackend::Mux(m) = &spec {
        if let Some(base) = reg.get(&m.chardev) {
            base.set_mux_above(&target);
        }
    }
    Ok(ret)
}

/// The chardev a change of `id` to `spec` replaces the backend of, and the
/// mux above it if any; refuses what QEMU refuses before opening.
fn look_up(
    reg: &Registry,
    id: &str,
    spec: &ChardevBackend,
) -> Result<(Arc<Chardev>, Option<Arc<Chardev>>)> {
    let cd = reg
        .get(id)
        .ok_or_else(|| ChardevError::DoesNotExist(id.to_string()))?;
    if let ChardevBackend::Mux(m) = &spec {
        // As QEMU, a chardev no frontend uses becomes the mux asked for
        // (QEMU re-creates it); a mux is not changed into another. Unlike
        // QEMU, a chardev in use does not become a mux under its frontend.
        if matches!(cd.spec(), ChardevBackend::Mux(_)) || cd.has_frontend() {
            return Err(mux_hotswap());
        }
        // QEMU has let the chardev go by then: it is not there to be a base.
        if m.chardev == id {
            return Err(ChardevError::Invalid(format!(
                "mux: base chardev {} not found",
                m.chardev
            )));
        }
    }
    // Better than QEMU: the change of a mux goes under it, to its base,
    // whose frontend (the mux) keeps its frontends, focus and settings.
    let (target, above) = match cd.spec() {
        ChardevBackend::Mux(m) => {
            let base = reg
                .get(&m.chardev)
                .ok_or_else(|| ChardevError::DoesNotExist(m.chardev.clone()))?;
            (base, Some(cd))
        }
        _ => {
            let above = cd.mux_above();
            (cd, above)
        }
    };
    if target.has_frontend() && target.blocks_hotswap() {
        return Err(ChardevError::HotswapUnsupported);
    }
    Ok((target, above))
}

/// The chardev whose handler is running and asked for the change of
/// `target` (the target itself, or the mux above it), if one is.
fn host_of(target: &Arc<Chardev>, above: Option<&Arc<Chardev>>) -> Option<Arc<Chardev>> {
    std::iter::once(target)
        .chain(above)
        .find(|c| c.must_defer())
        .cloned()
}

/// Steps 1 to 3 for an open that may wait (see [`crate::slow_open`]): the
/// checks now, the open on a thread of its own, then on the I/O thread the
/// change and `done`. A change asked for by a handler of the chardev (a
/// monitor changing its own) answers first, so that the answer leaves
/// through the old backend, as in step 2; any other answers with the
/// change's outcome.
pub(crate) fn change_then(
    reg: &Registry,
    id: &str,
    spec: ChardevBackend,
    done: Done<ChardevReturn>,
) {
    let (target, above) = match look_up(reg, id, &spec) {
        Ok(t) => t,
        Err(e) => return done(Err(e)),
    };
    if let Err(e) = crate::backend::validate(&spec, reg.objects()) {
        return done(Err(e));
    }
    let host = host_of(&target, above.as_ref());
    let name = target.id.clone();
    crate::slow_open::open_elsewhere(reg, name, spec, move |r| {
        let inst = match r {
            Ok(inst) => inst,
            Err(e) => return done(Err(e)),
        };
        let ret = ChardevReturn {
            pty: inst.backend.pty_path(),
        };
        match host {
            Some(host) => {
                done(Ok(ret));
                // What the host's handler wrote, the answer among it, goes
                // down into the target's queue first when the host is the
                // mux above it.
                if !Arc::ptr_eq(&host, &target) {
                    host.flush_now();
                }
                if let Err(e) = target.apply_change(inst) {
                    log::error!("{e}");
                }
            }
            None => done(target.apply_change(inst).map(|()| ret)),
        }
    });
}

/// QEMU's refusal of a change that involves a mux.
fn mux_hotswap() -> ChardevError {
    ChardevError::Invalid("Mux device hotswap not supported yet".into())
}

impl Chardev {
    /// Whether a change asked for now must wait until the running handler of
    /// this chardev returns (the change came from inside it).
    pub(crate) fn must_defer(&self) -> bool {
        self.io.on_io_thread() && self.state().in_handler
    }

    /// Parks a change of `target` (this chardev, or the base under this mux)
    /// until the running handler of this one returns.
    pub(crate) fn defer(&self, target: Arc<Chardev>, inst: Installed) -> Result<()> {
        let mut st = self.state();
        if st.pending.is_some() {
            return Err(ChardevError::Invalid(format!(
                "Chardev '{}' change already in progress",
                target.id
            )));
        }
        st.pending = Some((target, inst));
        Ok(())
    }

    /// Applies a parked change; called by this chardev's I/O task between
    /// handlers. What the handler wrote is queued on this chardev: for a
    /// change of the base under this mux it is moved down into the base
    /// first, so that it leaves through the base's old backend like the
    /// base's own queue. Returns whether there was one.
    pub(crate) fn apply_pending(self: &Arc<Self>, cx: &mut std::task::Context<'_>) -> bool {
        let Some((target, inst)) = self.state().pending.take() else {
            return false;
        };
        if !Arc::ptr_eq(&target, self) {
            self.flush_with(cx);
        }
        if let Err(e) = target.apply_change(inst) {
            log::error!("{e}");
        }
        true
    }

    /// Step 3, on the I/O thread.
    pub(crate) fn apply_change(self: &Arc<Self>, mut inst: Installed) -> Result<()> {
        debug_assert!(self.io.on_io_thread());
        if self.is_removed() {
            // A remove ran between the look-up and now: the change lost the
            // race, and says so as QEMU would after it.
            return Err(ChardevError::DoesNotExist(self.id.clone()));
        }
        // Settings asked for before the change reach the old backend first
        // (through the mux on it, if any), as they would have without it.
        if let Some(mux) = self.mux_above() {
            mux.apply_queued_ioctls();
        }
        self.apply_queued_ioctls();
        let to_mux = matches!(inst.spec, ChardevBackend::Mux(_));
        if to_mux && self.has_frontend() {
            // A frontend attached since the check in `change`.
            return Err(mux_hotswap());
        }
        self.link(inst.backend.as_mut());
        let handed = self.take_listener(&mut inst)?;
        if !self.has_frontend() {
            self.replace_unused(inst);
        } else if self.blocks_hotswap() {
            if handed {
                self.give_listener_back(inst);
            }
            return Err(ChardevError::HotswapUnsupported);
        } else {
            self.swap(inst, handed)?;
        }
        self.emit_link_events();
        self.stats.changes.fetch_add(1, Ordering::Relaxed);
        let filename = self.filename();
        self.listeners.emit(&RegistryEvent::Changed {
            id: self.id.clone(),
            filename,
        });
        self.kick();
        Ok(())
    }

    /// A socket server opened on the address this chardev's server listens
    /// on takes the listener and the connected clients over (a qchar
    /// improvement: QEMU cannot bind the same TCP port again, and for a unix
    /// path orphans the old listener). Returns whether anything was handed
    /// over; if the old backend had nothing, the new one binds now, which
    /// may fail as opening would have (the old backend stays then).
    fn take_listener(&self, new: &mut Installed) -> Result<bool> {
        if !new.backend.takes_over() {
            return Ok(false);
        }
        // Output queued before the change reaches the clients through the
        // old backend, as far as it takes it, before they move.
        self.flush_now();
        let from = self.state().inst.backend.hand_over();
        let handed = from.is_some();
        new.backend.take_over(from)?;
        Ok(handed)
    }

    /// A change that took the listener over failed: the old backend, back
    /// in place, gets it again with its clients.
    fn give_listener_back(&self, mut rejected: Installed) {
        let back = rejected.backend.hand_over();
        if let Err(e) = self.state().inst.backend.take_over(back) {
            log::error!("chardev '{}': listener lost: {e}", self.id);
        }
    }

    /// Replaces the backend of a chardev no frontend uses.
    fn replace_unused(self: &Arc<Self>, mut new: Installed) {
        self.register_for_yank(&new.spec, false);
        let old = {
            let mut st = self.state();
            hub::hand_over(&mut *st.inst.backend, &mut *new.backend);
            st.be_open = new.backend.is_open();
            // Become a mux: several frontends may attach from now on.
            st.multi |= matches!(new.spec, ChardevBackend::Mux(_));
            let old = std::mem::replace(&mut st.inst, new);
            self.history_follows(&mut st);
            old
        };
        self.note_serial_line();
        self.retire(old);
        self.link_hub_members();
    }

    /// Replaces the backend of a chardev in use. Output queued before the
    /// call goes to the old backend as far as it takes it now, the rest to
    /// the new one. The frontends see CLOSED if the old backend was open and
    /// the new one is not, then `backend_changed`; if one refuses, the old
    /// backend is put back, its connection untouched, and they see OPENED
    /// again if they had seen CLOSED.
    fn swap(self: &Arc<Self>, mut new: Installed, handed: bool) -> Result<()> {
        self.flush_now();
        // A hub replacing a hub takes over the members both name, after the
        // old one took what it could of the queue: before `new_open`, which
        // depends on them.
        hub::hand_over(&mut *self.state().inst.backend, &mut *new.backend);
        let new_open = new.backend.is_open();
        // Output kept for a peer that never came is not lost by a change:
        // the history stays with the chardev, and the new backend's peer
        // gets it ahead of the queue.
        let (old, old_open) = {
            let mut st = self.state();
            let old = std::mem::replace(&mut st.inst, new);
            (old, st.be_open)
        };
        self.note_serial_line();
        let closed_sent = old_open && !new_open;
        if closed_sent {
            self.state().be_open = false;
            self.broadcast(ChardevEvent::Closed);
        }
        let mut refused = None;
        for tag in self.tags() {
            if let Some(Err(reason)) = self.with_handlers(tag, |h, fe| h.backend_changed(fe)) {
                refused = Some(reason);
                break;
            }
        }
        if let Some(reason) = refused {
            let rejected = {
                let mut st = self.state();
                let mut rejected = std::mem::replace(&mut st.inst, old);
                hub::hand_over(&mut *rejected.backend, &mut *st.inst.backend);
                rejected
            };
            if handed {
                self.give_listener_back(rejected);
            }
            // Otherwise never offered output: nothing owed, only released.
            self.note_serial_line();
            if closed_sent {
                self.state().be_open = true;
                self.broadcast(ChardevEvent::Opened);
            }
            self.kick();
            log::error!(
                "chardev '{}': frontend refused the new backend: {reason}",
                self.id
            );
            return Err(ChardevError::ChangeRefused {
                id: self.id.clone(),
                reason,
            });
        }
        self.history_follows(&mut self.state());
        let mut old = old;
        self.hand_over(&mut old);
        // Step 4: the old backend goes, after the new one is in.
        self.retire(old);
        self.link_hub_members();
        let spec = self.spec();
        self.register_for_yank(&spec, true);
        if new_open {
            self.state().be_open = true;
            self.broadcast(ChardevEvent::Opened);
        }
        Ok(())
    }

    /// Better than QEMU, which loses both at a change: what the old backend
    /// holds that no reader has had yet (a ring buffer's unread content), and
    /// what is written until the new backend's first peer if it drops output
    /// while it has none (a socket server before its client), are kept for
    /// the new backend, in order, ahead of later output: up to
    /// [`HANDOVER_BACKLOG`] bytes besides the ring's, the newest kept. Once
    /// the first peer has them, the new backend drops output without a peer
    /// again, as QEMU (unless its own `x-backlog` says otherwise).
    fn hand_over(&self, old: &mut Installed) {
        let unread = old
            .backend
            .as_ringbuf()
            .map(|r| r.read(usize::MAX))
            .unwrap_or_default();
        let mut st = self.state();
        if st.replay.on || st.inst.backend.serves_from_history() {
            // The history goes to the next peer (`backlog`) or to every
            // client (`x-clients`) already.
            return;
        }
        let waits = !st.inst.backend.is_open() && st.inst.backend.drops_output_when_closed();
        if unread.is_empty() && !waits {
            return;
        }
        let b = st.carry.get_or_insert_with(|| Backlog {
            buf: VecDeque::new(),
            cap: HANDOVER_BACKLOG,
        });
        // Older than anything kept meanwhile: in front.
        let mut buf: VecDeque<u8> = unread.into();
        buf.extend(b.buf.drain(..));
        b.cap = b
            .cap
            .max(buf.len() + HANDOVER_BACKLOG)
            .min(crate::MAX_BACKLOG);
        b.buf = buf;
    }

    /// Step 4: retires a backend that a change or a remove took out. Its log
    /// file closes now; what it still owes its peer is finished by the
    /// registry's [`Drains`].
    pub(crate) fn retire(&self, old: Installed) {
        let Installed {
            backend, logfile, ..
        } = old;
        drop(logfile);
        if let Some(drain) = backend.retire() {
            self.drains.start(self.io.handle(), &self.id, drain);
        }
        self.emit_link_events();
    }
}

/// The drains of retired backends of one registry: each runs on the I/O
/// runtime for at most [`DRAIN_LIMIT`], at most [`MAX_DRAINS`] at once, and
/// all end at shutdown.
pub(crate) struct Drains {
    /// `None` once ended: later drains are dropped at once.
    tasks: Mutex<Option<JoinSet<()>>>,
    limit: Duration,
}

impl Drains {
    /// Drains that can run, each for at most [`DRAIN_LIMIT`].
    pub(crate) fn new() -> Drains {
        Drains::with_limit(DRAIN_LIMIT)
    }

    fn with_limit(limit: Duration) -> Drains {
        Drains {
            tasks: Mutex::new(Some(JoinSet::new())),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<JoinSet<()>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `drain` (of chardev `id`) on `rt`, if the bound allows.
    pub(crate) fn start(&self, rt: &Handle, id: &str, drain: Drain) {
        let mut g = self.lock();
        let Some(set) = g.as_mut() else {
            return;
        };
        // Forget the ones that finished.
        while set.try_join_next().is_some() {}
        if set.len() >= MAX_DRAINS {
            log::warn!(
                "chardev '{id}': {MAX_DRAINS} retired backends are still finishing their \
                 output; this one closes now and what it owed its peer is lost"
            );
            return;
        }
        let limit = self.limit;
        set.spawn_on(
            async move {
                let _ = tokio::time::timeout(limit, drain.into_work()).await;
            },
            rt,
        );
    }

    /// Drains still running.
    #[cfg(test)]
    fn running(&self) -> usize {
        let mut g = self.lock();
        let Some(set) = g.as_mut() else {
            return 0;
        };
        while set.try_join_next().is_some() {}
        set.len()
    }

    /// Ends every drain (their descriptors close) and refuses new ones.
    pub(crate) fn end_all(&self) {
        let set = self.lock().take();
        if let Some(mut set) = set {
            set.abort_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;

    #[test]
    fn drains_are_bounded_in_number_and_end_at_shutdown() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let drains = Drains::new();
        for _ in 0..MAX_DRAINS + 3 {
            drains.start(rt.handle(), "x", Drain::new(std::future::pending()));
        }
        assert_eq!(
            drains.running(),
            MAX_DRAINS,
            "the ones past the bound close"
        );
        drains.end_all();
        assert_eq!(drains.running(), 0);
        drains.start(rt.handle(), "x", Drain::new(std::future::pending()));
        assert_eq!(drains.running(), 0, "none after the end");
    }

    #[test]
    fn a_drain_that_never_finishes_ends_after_the_limit() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let drains = Drains::with_limit(Duration::from_millis(20));
        drains.start(rt.handle(), "x", Drain::new(std::future::pending()));
        let started = std::time::Instant::now();
        rt.block_on(async {
            while drains.running() > 0 {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the drain outlived its limit"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    /// A backend without a peer owes nothing.
    #[test]
    fn default_retire_owes_nothing() {
        struct Plain;
        impl Backend for Plain {
            fn poll_event(
                &mut self,
                _cx: &mut std::task::Context<'_>,
                _buf: &mut [u8],
            ) -> std::task::Poll<crate::backend::BackendEvent> {
                std::task::Poll::Pending
            }
            fn poll_write(
                &mut self,
                _cx: &mut std::task::Context<'_>,
                data: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::task::Poll::Ready(Ok(data.len()))
            }
            fn filename(&self) -> String {
                "plain".into()
            }
        }
        let b: Box<dyn Backend> = Box::new(Plain);
        assert!(b.retire().is_none());
    }
}
