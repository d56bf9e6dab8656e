//! `x-bridge` (a qchar extension object): joins two chardevs byte for
//! byte, so that qchar can stand in front of the console of a VM it does
//! not run. `-object x-bridge,id=BR,chardev-a=A,chardev-b=B` on the command
//! line, `object-add` / `object-del` over QMP.
//!
//! A bridge is a hotswap-capable frontend of both chardevs: what A's
//! backend receives is written into B's output queue and the other way
//! round. Backpressure holds both ways: A is read only as far as B's queue
//! has room (its `can_read` is that room), and when B's queue drains the
//! bridge resumes A (B's `write_ready`); so a reader that stops holds its
//! writer back instead of growing a buffer. Either chardev can be changed
//! (`chardev-change`) under a bridge. Typical: A a socket client with
//! `reconnect-ms` to the other VMM's console socket, B a socket server (or
//! pty) for users, with a log.
//!
//! Refused: a chardev that does not exist or is in use (QEMU's texts for a
//! chardev property), A and B the same, and A and B already joined (one a
//! member of the hub that is the other, or the base of the mux that is the
//! other), which would carry a chardev's output back into it.
//!
//! The bridges of a registry are kept by id beside its chardevs, in the
//! shape of QEMU's `/objects` (ids shared with nothing else yet: the
//! registry has no other objects).

// Hand-written: two frontends wired to each other over the registry's own
// flow control; nothing outside the crate knows its queues.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::chardev::Chardev;
use crate::frontend::{CharFrontend, FrontendHandlers};
use crate::qemuopts::{is_identifier, OptsList, QemuOpts};
use crate::spec::ChardevBackend;

/// The qom-type.
pub const BRIDGE_TYPE: &str = "x-bridge";

/// QEMU's `-object` option list: any key, the type implied.
pub static OBJECT_OPTS: OptsList = OptsList {
    name: "object",
    implied: Some("qom-type"),
    merge_lists: false,
    desc: None,
};

/// Why a bridge was refused. `Display` is QEMU's text where QEMU has one
/// for the same mistake with an object or a chardev property.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    /// A mandatory member is absent.
    #[error("Parameter '{0}' is missing")]
    Missing(&'static str),
    /// A member the type does not have (QemuOpts form).
    #[error("Invalid parameter '{0}'")]
    InvalidParameter(String),
    /// A type other than `x-bridge` (where qchar has no other object).
    #[error("invalid object type: {0}")]
    InvalidType(String),
    /// `id` is not an identifier.
    #[error("Parameter 'id' expects an identifier")]
    BadId,
    /// The id is taken.
    #[error("attempt to add duplicate property '{0}' to object (type 'container')")]
    Duplicate(String),
    /// `object-del` of an unknown id.
    #[error("object '{0}' not found")]
    NotFound(String),
    /// `chardev-a`/`chardev-b` names no chardev.
    #[error("Property 'x-bridge.{prop}' can't find value '{id}'")]
    NoChardev {
        /// `chardev-a` or `chardev-b`.
        prop: &'static str,
        /// The id given.
        id: String,
    },
    /// The chardev has a frontend already.
    #[error("Property 'x-bridge.{prop}' can't take value '{id}': {reason}")]
    InUse {
        /// `chardev-a` or `chardev-b`.
        prop: &'static str,
        /// The id given.
        id: String,
        /// Why (`Device 'ID' is in use`).
        reason: String,
    },
    /// `chardev-a` and `chardev-b` are one chardev.
    #[error("x-bridge '{bridge}': chardev-a and chardev-b are both '{id}'")]
    Same {
        /// The bridge.
        bridge: String,
        /// The chardev.
        id: String,
    },
    /// The two are joined already: bridging them would be a loop.
    #[error(
        "x-bridge '{bridge}': '{inner}' is {how} '{outer}' already; bridging them would make a loop"
    )]
    Loop {
        /// The bridge.
        bridge: String,
        /// The member (or mux base).
        inner: String,
        /// `a member of hub` or `the base of mux`.
        how: &'static str,
        /// The hub (or mux).
        outer: String,
    },
    /// The registry is shutting down.
    #[error("chardev I/O thread is not running")]
    Shutdown,
}

/// What a bridge joins (an `-object x-bridge` / `object-add` read, not
/// created yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    /// The object id.
    pub id: String,
    /// One side (typically the VMM's console).
    pub chardev_a: String,
    /// The other side (typically the users').
    pub chardev_b: String,
}

impl BridgeSpec {
    /// Reads `-object x-bridge,id=ID,chardev-a=A,chardev-b=B`, already
    /// split by [`crate::qemuopts::parse`] with [`OBJECT_OPTS`].
    pub fn from_opts(opts: &QemuOpts) -> Result<BridgeSpec, BridgeError> {
        let ty = opts
            .get("qom-type")
            .ok_or(BridgeError::Missing("qom-type"))?;
        if ty != BRIDGE_TYPE {
            return Err(BridgeError::InvalidType(ty.to_string()));
        }
        let id = opts.id().ok_or(BridgeError::Missing("id"))?.to_string();
        if let Some(o) = opts
            .iter()
            .find(|o| !["qom-type", "chardev-a", "chardev-b"].contains(&o.name.as_str()))
        {
            return Err(BridgeError::InvalidParameter(o.name.clone()));
        }
        let a = opts
            .get("chardev-a")
            .ok_or(BridgeError::Missing("chardev-a"))?;
        let b = opts
            .get("chardev-b")
            .ok_or(BridgeError::Missing("chardev-b"))?;
        Ok(BridgeSpec {
            id,
            chardev_a: a.to_string(),
            chardev_b: b.to_string(),
        })
    }
}

/// A bridge's counters and sides, as [`crate::Registry::bridges`] lists
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeInfo {
    /// What it joins.
    pub spec: BridgeSpec,
    /// Bytes from A's backend into B.
    pub a_to_b: u64,
    /// Bytes from B's backend into A.
    pub b_to_a: u64,
}

/// One side's handlers: attached to one chardev, writing into the other.
struct Side {
    /// The frontend on the other chardev.
    other: CharFrontend,
    /// Bytes carried this way.
    carried: Arc<AtomicU64>,
}

impl FrontendHandlers for Side {
    fn can_read(&mut self) -> usize {
        self.other.free_space_or_notify()
    }

    fn read(&mut self, data: &[u8]) {
        // The room was asked for on this thread, and only this side writes
        // into the other chardev: it all fits.
        let n = self.other.write(data);
        if n < data.len() {
            log::error!(
                "x-bridge into '{}': {} bytes lost",
                self.other.id(),
                data.len() - n
            );
        }
        self.carried.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn supports_hotswap(&self) -> bool {
        true
    }

    /// This chardev's queue has room again: the other side's input, which
    /// fills it, may resume.
    fn write_ready(&mut self) {
        self.other.accept_input();
    }
}

/// A live bridge.
struct Bridge {
    spec: BridgeSpec,
    fe_a: CharFrontend,
    fe_b: CharFrontend,
    a_to_b: Arc<AtomicU64>,
    b_to_a: Arc<AtomicU64>,
}

impl Bridge {
    fn unhook(&self) {
        for fe in [&self.fe_a, &self.fe_b] {
            fe.clear_handlers();
            fe.detach();
        }
    }
}

/// The bridges of one registry, by id, in creation order. `None` once the
/// registry shut down.
#[derive(Default)]
pub(crate) struct Bridges(Mutex<Option<Vec<Bridge>>>);

impl Bridges {
    pub(crate) fn new() -> Bridges {
        Bridges(Mutex::new(Some(Vec::new())))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Vec<Bridge>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a bridge over chardevs `a` and `b` (looked up by the
    /// caller; `None`: not found), checks in this order: id, duplicate,
    /// A found, B found, A == B, a loop, A free, B free.
    pub(crate) fn add(
        &self,
        spec: &BridgeSpec,
        a: Option<Arc<Chardev>>,
        b: Option<Arc<Chardev>>,
    ) -> Result<(), BridgeError> {
        if !is_identifier(&spec.id) {
            return Err(BridgeError::BadId);
        }
        let mut g = self.lock();
        let list = g.as_mut().ok_or(BridgeError::Shutdown)?;
        if list.iter().any(|br| br.spec.id == spec.id) {
            return Err(BridgeError::Duplicate(spec.id.clone()));
        }
        let a = a.ok_or_else(|| BridgeError::NoChardev {
            prop: "chardev-a",
            id: spec.chardev_a.clone(),
        })?;
        let b = b.ok_or_else(|| BridgeError::NoChardev {
            prop: "chardev-b",
            id: spec.chardev_b.clone(),
        })?;
        if Arc::ptr_eq(&a, &b) {
            return Err(BridgeError::Same {
                bridge: spec.id.clone(),
                id: a.id.clone(),
            });
        }
        for (inner, outer) in [(&a, &b), (&b, &a)] {
            if inner.mux_above().is_some_and(|m| Arc::ptr_eq(&m, outer)) {
                let how = match outer.spec() {
                    ChardevBackend::Hub(_) => "a member of hub",
                    _ => "the base of mux",
                };
                return Err(BridgeError::Loop {
                    bridge: spec.id.clone(),
                    inner: inner.id.clone(),
                    how,
                    outer: outer.id.clone(),
                });
            }
        }
        let in_use = |prop, cd: &Arc<Chardev>| {
            let id = cd.id.clone();
            move |e: crate::ChardevError| BridgeError::InUse {
                prop,
                id,
                reason: e.to_string(),
            }
        };
        let fe_a = a.attach().map_err(in_use("chardev-a", &a))?;
        let fe_b = match b.attach() {
            Ok(fe) => fe,
            Err(e) => {
                fe_a.detach();
                return Err(in_use("chardev-b", &b)(e));
            }
        };
        let a_to_b = Arc::new(AtomicU64::new(0));
        let b_to_a = Arc::new(AtomicU64::new(0));
        fe_a.set_handlers(Box::new(Side {
            other: fe_b.clone(),
            carried: a_to_b.clone(),
        }));
        fe_b.set_handlers(Box::new(Side {
            other: fe_a.clone(),
            carried: b_to_a.clone(),
        }));
        list.push(Bridge {
            spec: spec.clone(),
            fe_a,
            fe_b,
            a_to_b,
            b_to_a,
        });
        Ok(())
    }

    /// Takes bridge `id` apart: both chardevs are free again, with what
    /// their queues hold still going out.
    pub(crate) fn remove(&self, id: &str) -> Result<(), BridgeError> {
        let br = {
            let mut g = self.lock();
            let list = g.as_mut().ok_or(BridgeError::Shutdown)?;
            let i = list
                .iter()
                .position(|br| br.spec.id == id)
                .ok_or_else(|| BridgeError::NotFound(id.to_string()))?;
            list.remove(i)
        };
        br.unhook();
        Ok(())
    }

    /// Every bridge, in creation order.
    pub(crate) fn list(&self) -> Vec<BridgeInfo> {
        self.lock()
            .iter()
            .flatten()
            .map(|br| BridgeInfo {
                spec: br.spec.clone(),
                a_to_b: br.a_to_b.load(Ordering::Relaxed),
                b_to_a: br.b_to_a.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// At shutdown: forgets every bridge (the chardevs' handlers, which
    /// hold each other's frontends, are dropped by the registry).
    pub(crate) fn clear(&self) {
        self.lock().take();
    }
}
