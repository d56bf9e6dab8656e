//! QMP, wire-compatible with QEMU 7.2.
//!
//! - [`session`]: one connection's protocol state machine;
//! - [`cmd`]: the command table, one file per command;
//! - [`visitor`] and [`qapi`]: argument decoding with QEMU's error texts;
//! - [`monitor`]: the chardev frontend that runs a session on a chardev.

pub mod cmd;
pub mod error;
pub mod monitor;
pub mod qapi;
pub mod session;
pub mod visitor;

pub use cmd::{QmpEnv, VersionInfo};
pub use error::{QmpError, QmpResult};
pub use monitor::{QmpMonitor, QmpOptions};
pub use session::QmpSession;

#[cfg(test)]
pub(crate) mod tests;
