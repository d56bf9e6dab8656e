//! JSON as QEMU's QMP speaks it: a streaming parser fed in bulk
//! ([`JsonStreamer`]), QEMU's value model ([`Value`]) and a writer that
//! prints what QEMU prints, byte for byte.
//!
//! Extensions QEMU accepts and so do we: single-quoted strings, `\'` escape,
//! `C0 80` for U+0000 inside strings (modified UTF-8).

mod parser;
mod stream;
pub mod utf8;
mod value;
mod writer;

pub use stream::{JsonError, JsonLimits, JsonStreamer};
pub use value::{Dict, Value};

#[cfg(test)]
mod tests;
