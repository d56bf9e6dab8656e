//! qchar's machine.
#![deny(missing_docs)]

pub mod guest;
pub mod sink;
pub mod uart;
