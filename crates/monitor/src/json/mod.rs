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

/// One whole JSON text (`-object '{...}'`, HMP's `object_add {...}`), as
/// QEMU's `qobject_from_json` reads it: an unfinished text is `JSON parse
/// error, premature EOI`.
pub fn parse_one(s: &str) -> Result<Value, JsonError> {
    let mut js = JsonStreamer::default();
    match js.feed(s.as_bytes()).into_iter().next() {
        Some(r) => r,
        None => Err(JsonError::Parse(b"premature EOI".to_vec())),
    }
}
