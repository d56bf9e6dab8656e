//! `hub` (QEMU 10's `-chardev hub,id=H,chardevs.0=A,chardevs.1=B`): one
//! frontend over up to four member chardevs. Output goes to every member;
//! input comes from any of them.
//!
//! As the mux is of its base, the hub backend is a hotswap-capable
//! frontend of each member, so a member can be changed under a running hub
//! (QEMU cannot), and the hub chardev itself can be changed: into another
//! hub, which takes over the members both name (their frontend, how far
//! each has got, undelivered input) without a gap, or into any backend,
//! which frees the members.
//!
//! Output: a member that is open holds the hub back until it has taken the
//! bytes (the hub takes the least any open member took, and offers each
//! member only what it has not got yet, as QEMU's hub does). A closed member
//! does not hold the hub back, but still gets what its queue takes: its own
//! core then drops it, or keeps it for its next peer (`x-backlog`), as for
//! a frontend of its own. With no member open the hub drops nothing itself.
//!
//! Events: OPENED when the first member opens, CLOSED when the last one
//! closes, a break from any member. Line settings are not passed on (QEMU's
//! hub has no ioctl either).

use std::any::Any;
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::{Backend, BackendEvent};
use crate::chardev::Chardev;
use crate::error::{ChardevError, Result};
use crate::frontend::{CharFrontend, ChardevEvent, FrontendHandlers};

/// Input bytes buffered between the members and the hub.
const INPUT_CAP: usize = 4096;
/// Member events buffered for the hub.
const EVENTS_CAP: usize = 64;

/// QEMU's text for a member that is a mux or a hub.
pub(crate) fn stacked(id: &str) -> ChardevError {
    ChardevError::Invalid(format!(
        "hub: multiplexers and hub devices can't be stacked, check chardev '{id}', \
         chardev should not be a hub device or have 'mux=on' enabled"
    ))
}

/// State shared by the hub backend and its handlers on the members.
#[derive(Default)]
struct Shared {
    input: VecDeque<u8>,
    /// (member index, event), in order.
    events: VecDeque<(usize, ChardevEvent)>,
    /// The hub's I/O task, waiting for input or events.
    reader: Option<Waker>,
    /// The hub's I/O task, waiting for room in a member's queue.
    writer: Option<Waker>,
}

fn lock(s: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

/// The hub's handlers on member `index`.
struct MemberHandlers {
    shared: Arc<Mutex<Shared>>,
    index: usize,
}

impl FrontendHandlers for MemberHandlers {
    fn can_read(&mut self) -> usize {
        INPUT_CAP.saturating_sub(lock(&self.shared).input.len())
    }

    fn read(&mut self, data: &[u8]) {
        let mut s = lock(&self.shared);
        let n = data.len().min(INPUT_CAP.saturating_sub(s.input.len()));
        s.input.extend(&data[..n]);
        let w = s.reader.take();
        drop(s);
        wake(w);
    }

    fn event(&mut self, event: ChardevEvent) {
        if !matches!(
            event,
            ChardevEvent::Opened | ChardevEvent::Closed | ChardevEvent::Break
        ) {
            return;
        }
        let mut s = lock(&self.shared);
        if s.events.len() < EVENTS_CAP {
            s.events.push_back((self.index, event));
        }
        let w = s.reader.take();
        drop(s);
        wake(w);
    }

    fn supports_hotswap(&self) -> bool {
        true
    }

    fn write_ready(&mut self) {
        let w = lock(&self.shared).writer.take();
        wake(w);
    }
}

/// One member: its chardev, the hub's frontend on it (none while a change
/// hands it over), whether it is open, and how many bytes at the head of
/// the hub's output it has taken beyond what the hub reported taken.
struct Member {
    id: String,
    cd: Arc<Chardev>,
    fe: Option<CharFrontend>,
    open: bool,
    ahead: usize,
}

/// The `hub` backend. See the module documentation.
pub(crate) struct HubBackend {
    members: Vec<Member>,
    shared: Arc<Mutex<Shared>>,
    /// Members open: the hub is open while there is one.
    open_count: usize,
}

impl HubBackend {
    /// A hub without members yet.
    pub(crate) fn new() -> HubBackend {
        HubBackend {
            members: Vec::new(),
            shared: Arc::new(Mutex::new(Shared::default())),
            open_count: 0,
        }
    }

    /// Members so far.
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// Adds member `id`: attaches to it now, or, with `later`, when a
    /// change installs this hub in place of the hub that holds it
    /// ([`hand_over`]).
    pub(crate) fn add_member(&mut self, id: &str, cd: Arc<Chardev>, later: bool) -> Result<()> {
        let index = self.members.len();
        self.members.push(Member {
            id: id.to_string(),
            cd: cd.clone(),
            fe: None,
            open: false,
            ahead: 0,
        });
        if !later {
            let fe = cd.attach();
            let fe = match fe {
                Ok(fe) => fe,
                Err(e) => {
                    self.members.pop();
                    return Err(e);
                }
            };
            self.install(index, fe, None);
        }
        Ok(())
    }

    /// Puts frontend `fe` in member slot `index` with the hub's handlers;
    /// `from` is (open, ahead) carried over from another hub, else the
    /// member starts from now.
    fn install(&mut self, index: usize, fe: CharFrontend, from: Option<(bool, usize)>) {
        fe.set_handlers(Box::new(MemberHandlers {
            shared: self.shared.clone(),
            index,
        }));
        let (open, ahead) = from.unwrap_or_else(|| (fe.is_open(), 0));
        let m = &mut self.members[index];
        m.fe = Some(fe);
        m.ahead = ahead;
        if open && !m.open {
            self.open_count += 1;
        }
        m.open = open;
    }

    /// Takes the members this hub waits for from `old` (a hub being
    /// replaced by this one), or attaches to them now if `old` does not
    /// hold them. Input `old` had not delivered comes along, first.
    fn take_over(&mut self, mut old: Option<&mut HubBackend>) {
        for i in 0..self.members.len() {
            if self.members[i].fe.is_some() {
                continue;
            }
            let id = self.members[i].id.clone();
            let from_old = old.as_deref_mut().and_then(|o| o.give_up(&id));
            match from_old {
                Some((fe, open, ahead)) => self.install(i, fe, Some((open, ahead))),
                None => match self.members[i].cd.attach() {
                    Ok(fe) => self.install(i, fe, None),
                    Err(e) => log::error!("hub: member '{id}' could not be taken over: {e}"),
                },
            }
        }
        if let Some(o) = old {
            let carried: Vec<u8> = lock(&o.shared).input.drain(..).collect();
            if !carried.is_empty() {
                let mut s = lock(&self.shared);
                for &b in carried.iter().rev() {
                    s.input.push_front(b);
                }
            }
        }
    }

    /// Lets go of member `id` (for the hub taking over): its frontend, and
    /// whether it was open and how far ahead it was.
    fn give_up(&mut self, id: &str) -> Option<(CharFrontend, bool, usize)> {
        let m = self
            .members
            .iter_mut()
            .find(|m| m.id == id && m.fe.is_some())?;
        let fe = m.fe.take()?;
        let open = std::mem::replace(&mut m.open, false);
        if open {
            self.open_count -= 1;
        }
        Some((fe, open, m.ahead))
    }

    /// Records that the members' mux-or-hub above is `hub`, so that a change
    /// of a member asked from inside the hub's frontend waits for it, as
    /// under a mux.
    pub(crate) fn link(&self, hub: &Arc<Chardev>) {
        for m in self.members.iter().filter(|m| m.fe.is_some()) {
            m.cd.set_mux_above(hub);
        }
    }

    fn apply_event(&mut self, index: usize, ev: ChardevEvent) -> Option<BackendEvent> {
        let m = self.members.get_mut(index)?;
        m.fe.as_ref()?;
        match ev {
            ChardevEvent::Opened if !m.open => {
                m.open = true;
                self.open_count += 1;
                (self.open_count == 1).then_some(BackendEvent::Opened)
            }
            ChardevEvent::Closed if m.open => {
                m.open = false;
                self.open_count -= 1;
                (self.open_count == 0).then_some(BackendEvent::Closed)
            }
            ChardevEvent::Break => Some(BackendEvent::Break),
            _ => None,
        }
    }

    /// Offers each member what it has not taken of `data`; returns the
    /// least an open member has taken (all of it with none open).
    fn spread(&mut self, data: &[u8]) -> usize {
        let mut least: Option<usize> = None;
        for m in &mut self.members {
            let Some(fe) = &m.fe else {
                continue;
            };
            if m.ahead < data.len() {
                m.ahead += fe.write(&data[m.ahead..]);
            }
            if m.open {
                least = Some(least.map_or(m.ahead, |l| l.min(m.ahead)));
            }
        }
        least.unwrap_or(data.len()).min(data.len())
    }
}

impl Drop for HubBackend {
    fn drop(&mut self) {
        for m in &self.members {
            if let Some(fe) = &m.fe {
                fe.clear_handlers();
                fe.detach();
                m.cd.clear_mux_above();
            }
        }
    }
}

impl Backend for HubBackend {
    fn poll_event(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<BackendEvent> {
        loop {
            let next = {
                let mut s = lock(&self.shared);
                match &s.reader {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => s.reader = Some(cx.waker().clone()),
                }
                s.events.pop_front()
            };
            let Some((index, ev)) = next else {
                break;
            };
            if let Some(ev) = self.apply_event(index, ev) {
                return Poll::Ready(ev);
            }
        }
        if buf.is_empty() {
            return Poll::Pending;
        }
        let (n, was_full) = {
            let mut s = lock(&self.shared);
            let was_full = s.input.len() >= INPUT_CAP;
            let n = s.input.len().min(buf.len());
            for (dst, src) in buf.iter_mut().zip(s.input.drain(..n)) {
                *dst = src;
            }
            (n, was_full)
        };
        if was_full {
            for fe in self.members.iter().filter_map(|m| m.fe.as_ref()) {
                fe.accept_input();
            }
        }
        if n == 0 {
            return Poll::Pending;
        }
        Poll::Ready(BackendEvent::Input(n))
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let mut taken = self.spread(data);
        if taken == 0 && !data.is_empty() {
            // A member is full: wait for its write_ready, offering once
            // more after parking so that room made meanwhile is not missed.
            lock(&self.shared).writer = Some(cx.waker().clone());
            taken = self.spread(data);
            if taken == 0 {
                return Poll::Pending;
            }
        }
        for m in &mut self.members {
            m.ahead = m.ahead.saturating_sub(taken);
        }
        Poll::Ready(Ok(taken))
    }

    fn is_open(&self) -> bool {
        self.open_count > 0
    }

    fn filename(&self) -> String {
        "hub".into()
    }

    fn as_any(&mut self) -> Option<&mut dyn Any> {
        Some(self)
    }
}

fn as_hub(b: &mut dyn Backend) -> Option<&mut HubBackend> {
    b.as_any()?.downcast_mut::<HubBackend>()
}

/// A change installs `new` in place of `old`: if `new` is a hub, it takes
/// over the members it shares with `old` (when that is a hub) and attaches
/// to the others it still waits for. Called again with the two swapped
/// when a frontend refuses the change, which gives the members back.
pub(crate) fn hand_over(old: &mut dyn Backend, new: &mut dyn Backend) {
    let Some(new) = as_hub(new) else {
        return;
    };
    new.take_over(as_hub(old));
}

/// After a hub is installed on chardev `cd`: links its members to it.
pub(crate) fn link(backend: &mut dyn Backend, cd: &Arc<Chardev>) {
    if let Some(h) = as_hub(backend) {
        h.link(cd);
    }
}
