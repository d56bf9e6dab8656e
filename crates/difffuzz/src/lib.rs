//! Differential fuzzing of qchar against QEMU 7.2: the same inputs go to
//! both programs, started with the same command line, and what comes back
//! is compared once what must differ is masked (docs/fuzzing.md).
//!
//! - [`gen`]: inputs per class (QMP, malformed JSON, HMP, readline keys,
//!   command-line options), seeded from the fuzz corpora and the recorded
//!   QEMU conversation; [`schema`]: arguments from QEMU's live QAPI schema;
//!   [`json`]: the JSON text and its mutations;
//! - [`target`] and [`runner`]: the processes, connections, and one input
//!   run on both sides; [`norm`]: masks and the path guard;
//! - [`known`]: the intended differences (docs/differences.md);
//! - [`campaign`]: compare, confirm, shrink, count; [`repro`]: reproducer
//!   files, replayed by `tests/reproducers.rs`.
#![deny(missing_docs)]

pub mod campaign;
pub mod gen;
pub mod json;
pub mod known;
pub mod norm;
pub mod repro;
pub mod runner;
pub mod schema;
pub mod target;

/// What can go wrong in the harness itself (not a difference).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A program did not speak as expected (did not start, no greeting).
    #[error("{0}")]
    Protocol(String),
    /// A reproducer file is malformed.
    #[error("reproducer: {0}")]
    Repro(String),
}

impl HarnessError {
    /// An I/O error while doing `what`.
    pub fn io(what: &'static str, source: std::io::Error) -> HarnessError {
        HarnessError::Io { what, source }
    }
}
