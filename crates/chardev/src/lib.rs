//! qchar's chardev library: QEMU's character-device layer in Rust, with live
//! backend hotswap.
//!
//! A *chardev* joins a *backend* (where bytes go: a file, a pty, a socket...)
//! to one or more *frontends* (the devices that use it: a UART, a monitor).
//! [`Registry::change`] swaps the backend while the frontend keeps running.
//!
//! Module map:
//! - [`spec`]: QEMU's QAPI `ChardevBackend` types (what a backend is), in
//!   QEMU's JSON form through serde with the `serde` feature.
//! - [`qemuopts`]: QEMU's option-string grammar, numbers and sizes (used
//!   by `-chardev` here and by the qchar binary's other options).
//! - [`opts`]: `-chardev` strings and `-serial` shorthands into specs.
//! - [`backend`]: the `Backend` trait and one file per backend kind.
//! - [`frontend`]: what a device holds ([`CharFrontend`]) and implements
//!   ([`FrontendHandlers`]).
//! - [`registry`]: chardevs by id: add, change, remove, query.
//! - [`bridge`]: `x-bridge`, two chardevs joined byte for byte.
//! - [`tls`]: TLS credentials and authorization objects (`-object`,
//!   `object-add`) and the TLS session of a socket connection.
//! - `chardev`: one chardev's I/O task.
//! - `change`: a backend change, in one place, and the retiring of the
//!   backend that goes.
//! - `outq`: the bounded output queue that carries bytes across a change.
//! - `iothread`: the one I/O thread and how other threads use it.
//! - [`logfile`]: `logfile=`, written off the I/O thread, with rotation.
//! - `ioctl`: serial-line requests without the caller waiting for a
//!   backend.
//!
//! Guarantees of [`Registry::change`]:
//! - the new backend is opened first; if that fails, or a frontend refuses
//!   it, the old backend stays, connection and all;
//! - no byte a frontend wrote is lost, repeated or reordered by a change:
//!   each leaves through the old backend or, if the old one had not taken it
//!   yet, through the new one;
//! - a change asked for from inside a handler of the same chardev (a monitor
//!   changing its own chardev) is applied when that handler returns, so its
//!   reply leaves through the old backend; opening errors are still returned
//!   at once.
//!
//! ```
//! use qchar_chardev::{Registry, spec::{ChardevBackend, ChardevFile, ChardevRingbuf}};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("out.log").to_string_lossy().into_owned();
//! let reg = Registry::new().unwrap();
//! reg.add("console", ChardevBackend::Ringbuf(ChardevRingbuf::default())).unwrap();
//! let fe = reg.attach("console").unwrap();
//! fe.write_all(b"before ").unwrap();
//! // No handlers registered: the chardev has no hotswap-capable user, so
//! // QEMU's rule applies and the change is refused.
//! let file = ChardevBackend::File(ChardevFile { out: path, ..Default::default() });
//! assert!(reg.change("console", file).is_err());
//! reg.shutdown();
//! ```
#![deny(missing_docs)]

pub mod backend;
pub mod bridge;
mod change;
mod chardev;
pub mod error;
pub mod frontend;
mod ioctl;
mod iothread;
pub mod logfile;
pub mod opts;
mod outq;
pub mod qemuopts;
pub mod registry;
pub mod spec;
pub mod tls;

pub use backend::{modem, IoctlReply, Parity, SerialIoctl, SerialParams};
pub use chardev::ChardevStats;
pub use error::{ChardevError, Result};
pub use frontend::{CharFrontend, ChardevEvent, FrontendHandlers, FrontendStats};
pub use outq::DEFAULT_OUT_CAPACITY;
pub use registry::{ChardevStatsInfo, Registry, RegistryEvent, StatsSnapshot};

/// Most frontends one mux chardev takes (QEMU's `MAX_MUX`).
pub const MAX_MUX_FRONTENDS: usize = 4;

/// Most members one hub chardev takes (QEMU 10's `MAX_HUB`).
pub const MAX_HUB: usize = 4;

/// Largest replay buffer (`x-backlog`) a chardev may ask for.
pub const MAX_BACKLOG: usize = 64 * 1024 * 1024;
