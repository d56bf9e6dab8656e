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
use crate::chardev::{backlog_for, Backlog, Chardev, Installed};
use crate::error::{ChardevError, Result};
use crate::frontend::ChardevEvent;
use crate::registry::{Registry, RegistryEvent};
use crate::spec::{ChardevBackend, ChardevReturn};

/// How long a retired backend may take to hand its peer what it owed.
pub(crate) const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// Most retired backends finishing their output at once, per registry. One
/// more is closed at once (what it owed is lost, and logged): a management
/// loop changing backends faster than their peers read cannot pile up
/// descriptors.
pub(crate) const MAX_DRAINS: usize = 64;

/// Step 1: see the module documentation. `Registry::change` is this.
pub(crate) fn change(reg: &Registry, id: &str, spec: ChardevBackend) -> Result<ChardevReturn> {
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
    let inst = reg.open(&target.id, &spec)?;
    let ret = ChardevReturn {
        pty: inst.backend.pty_path(),
    };
    // Step 2. Asked from inside a handler of the chardev (a monitor on it)
    // or of the mux on it: that handler is on the stack, and this is the I/O
    // thread, so neither inline nor waiting will do.
    let host = std::iter::once(&target)
        .chain(above.as_ref())
        .find(|c| c.must_defer());
    if let Some(host) = host {
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
    pub(crate) fn apply_change(self: &Arc<Self>, inst: Installed) -> Result<()> {
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
        if !self.has_frontend() {
            self.replace_unused(inst);
        } else if self.blocks_hotswap() {
            return Err(ChardevError::HotswapUnsupported);
        } else {
            self.swap(inst)?;
        }
        self.stats.changes.fetch_add(1, Ordering::Relaxed);
        let filename = self.filename();
        self.listeners.emit(&RegistryEvent::Changed {
            id: self.id.clone(),
            filename,
        });
        self.kick();
        Ok(())
    }

    /// Replaces the backend of a chardev no frontend uses.
    fn replace_unused(self: &Arc<Self>, mut new: Installed) {
        self.register_for_yank(&new.spec, false);
        let old = {
            let mut st = self.state();
            hub::hand_over(&mut *st.inst.backend, &mut *new.backend);
            st.be_open = new.backend.is_open();
            st.backlog = backlog_for(&new.spec);
            // Become a mux: several frontends may attach from now on.
            st.multi |= matches!(new.spec, ChardevBackend::Mux(_));
            std::mem::replace(&mut st.inst, new)
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
    fn swap(self: &Arc<Self>, mut new: Installed) -> Result<()> {
        self.flush_now();
        // A hub replacing a hub takes over the members both name, after the
        // old one took what it could of the queue: before `new_open`, which
        // depends on them.
        hub::hand_over(&mut *self.state().inst.backend, &mut *new.backend);
        let new_open = new.backend.is_open();
        let (old, old_open, old_backlog) = {
            let mut st = self.state();
            let mut new_backlog = backlog_for(&new.spec);
            // Output kept for a peer that never came is not lost by a change:
            // it waits for the new backend's peer instead, ahead of the queue.
            if let Some(kept) = st.backlog.as_ref().filter(|b| !b.buf.is_empty()) {
                let nb = new_backlog.get_or_insert_with(|| Backlog {
                    buf: VecDeque::new(),
                    cap: kept.cap,
                });
                let carried: Vec<u8> = kept.buf.iter().copied().collect();
                nb.keep(&carried);
            }
            let old = std::mem::replace(&mut st.inst, new);
            let old_backlog = std::mem::replace(&mut st.backlog, new_backlog);
            (old, st.be_open, old_backlog)
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
                st.backlog = old_backlog;
                let mut rejected = std::mem::replace(&mut st.inst, old);
                hub::hand_over(&mut *rejected.backend, &mut *st.inst.backend);
                rejected
            };
            // Never offered output: nothing owed, only released.
            drop(rejected);
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
