//! qchar's monitors: QMP (QEMU Machine Protocol, wire-compatible with QEMU
//! 7.2) and HMP, each a frontend of a chardev.
//!
//! Module map:
//! - [`json`]: streaming JSON parser (QEMU's limits and error recovery),
//!   QEMU's value model, and a writer that prints exactly what QEMU prints.
//! - [`qmp`]: the QMP session state machine, command table (one file per
//!   command under `qmp/cmd/`), argument visitor, and the chardev frontend.
//! - [`hmp`]: the human monitor, also used by `human-monitor-command`.
//! - [`event`]: events fan-out, and qchar's own `X_QCHAR_*` events.
//! - [`fds`]: a monitor's descriptors (`getfd` names, SCM_RIGHTS receipt).
//! - [`later`]: a command's answer that comes later (a slow connect).
//! - [`vm`]: the [`vm::VmControl`] trait the binary implements for its guest.
//! - [`web`]: the [`web::WebControl`] trait behind `x-web-start`/`x-web-stop`.
//! - [`ops`]: the chardev operations commands use (implemented for the
//!   registry).
//! - `output`: a monitor's non-blocking, capped output queue.
//!
//! Starting a QMP monitor on chardev `mon0`:
//! ```no_run
//! use std::sync::Arc;
//! use qchar_chardev::registry::Registry;
//! use qchar_monitor::{event::EventBus, qmp::{QmpEnv, QmpMonitor, QmpOptions, VersionInfo}, vm::NoGuest};
//! let reg = Registry::new().unwrap();
//! let events = EventBus::new();
//! let env = Arc::new(QmpEnv {
//!     chardevs: Arc::new(reg.clone()),
//!     vm: Arc::new(NoGuest::new(events.clone(), true, || std::process::exit(0))),
//!     version: VersionInfo::default(),
//!     events: events.clone(),
//!     web: None,
//! });
//! qchar_monitor::qmp::monitor::forward_registry_events(&reg, events);
//! let _mon = QmpMonitor::attach(&reg, "mon0", env, QmpOptions::default()).unwrap();
//! ```
#![deny(missing_docs)]

pub mod event;
pub mod fds;
pub mod hmp;
pub mod json;
pub mod later;
pub mod ops;
mod output;
pub mod qmp;
pub mod vm;
pub mod web;
