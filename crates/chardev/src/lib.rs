//! qchar's chardev library: QEMU's character-device layer in Rust, with live
//! backend hotswap.
#![deny(missing_docs)]

pub mod error;
pub mod opts;
pub mod spec;

pub use error::{ChardevError, Result};
