//! What the web console needs from the chardevs, as a trait: a listing,
//! a reader of one chardev's output (its history, then live) that can also
//! send input, and notice of backend changes.

use std::task::{Context, Poll};
use std::time::SystemTime;

use tokio::sync::broadcast;

/// One row of the index page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleInfo {
    /// The chardev's id.
    pub id: String,
    /// Its backend, as `query-chardev` prints it.
    pub filename: String,
    /// What uses it (`isa-serial COM1`, `QMP monitor`; empty when nothing).
    pub frontend: String,
    /// Readers attached other than this web console's terminals (socket
    /// clients of a multi-client chardev).
    pub clients: u64,
    /// Bytes delivered to the frontend.
    pub bytes_in: u64,
    /// Bytes the frontend sent out.
    pub bytes_out: u64,
    /// Backend changes so far.
    pub changes: u64,
    /// When the last change happened, if one did while it was watched.
    pub last_change: Option<SystemTime>,
}

/// What a read of a [`ConsoleTap`] gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapRead {
    /// This many bytes were put at the start of the buffer.
    Data(usize),
    /// The reader fell behind the chardev's history: this many bytes are
    /// gone; the next read goes on from the oldest byte kept.
    Skipped(u64),
    /// The chardev is gone; nothing more will come.
    Closed,
}

/// A reader of one chardev's output: its history first, then what comes
/// live, across backend changes, each byte once and in order.
pub trait ConsoleTap: Send + 'static {
    /// Reads what is there; `Pending` (waking `cx` later) when nothing is.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<TapRead>;

    /// Offers input for the chardev's frontend: how many bytes it took
    /// (at least one), or `Pending` (waking `cx`) until there is room.
    /// `Ready(0)` when input is refused for good (a read-only tap, a
    /// chardev that went away).
    fn poll_input(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<usize>;
}

/// A chardev event the console passes on to its pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// Chardev `id` has a new backend, `filename`.
    Changed {
        /// The chardev.
        id: String,
        /// The new backend as `query-chardev` prints it.
        filename: String,
    },
    /// Chardev `id` was removed.
    Removed(String),
}

/// Why a tap could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TapError {
    /// No such chardev.
    #[error("Chardev '{0}' does not exist")]
    NotFound(String),
    /// The chardev refused another reader or writer.
    #[error("{0}")]
    Refused(String),
}

/// The chardevs as the web console sees them.
pub trait Consoles: Send + Sync + 'static {
    /// Every chardev, in the order they were added.
    fn list(&self) -> Vec<ConsoleInfo>;
    /// The backend of chardev `id` as `query-chardev` prints it.
    fn filename(&self, id: &str) -> Option<String>;
    /// A reader of chardev `id` from the start of its history; one that
    /// takes no input when `read_only`.
    fn tap(&self, id: &str, read_only: bool) -> Result<Box<dyn ConsoleTap>, TapError>;
    /// Changes and removals from now on.
    fn events(&self) -> broadcast::Receiver<ConsoleEvent>;
}
