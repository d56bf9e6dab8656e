//! qchar's monitors: QMP (QEMU Machine Protocol, wire-compatible with QEMU
//! 7.2) and HMP, each a frontend of a chardev.
//!
//! Module map:
//! - [`json`]: streaming JSON parser (QEMU's limits and error recovery),
//!   QEMU's value model, and a writer that prints exactly what QEMU prints.
#![deny(missing_docs)]

pub mod json;
