//! Errors of the chardev layer. Where QEMU has a message for the same
//! mistake, the `Display` text is QEMU's, so monitors can pass it through.

use thiserror::Error;

/// Everything the chardev registry, its backends and its frontends can refuse.
#[derive(Debug, Error)]
pub enum ChardevError {
    /// `change`/`send-break`... of an id that is not registered.
    #[error("Chardev '{0}' does not exist")]
    DoesNotExist(String),
    /// `remove` of an id that is not registered.
    #[error("Chardev '{0}' not found")]
    NotFound(String),
    /// `add` of an id that is taken.
    #[error("Chardev with id '{0}' already exists")]
    AlreadyExists(String),
    /// Adding from options (`-chardev`, HMP `chardev-add`) an id that is
    /// taken: QEMU finds out only once it has opened the backend, and says
    /// so in its object model's words. `pty` is the pty opened meanwhile
    /// (QEMU has printed its line by then).
    #[error("attempt to add duplicate property '{id}' to object (type 'container')")]
    DuplicateProperty {
        /// The id.
        id: String,
        /// The pty's path, for a pty backend.
        pty: Option<String>,
    },
    /// `remove` of a chardev a frontend still uses.
    #[error("Chardev '{0}' is busy")]
    Busy(String),
    /// Attaching a second frontend to a chardev without `mux=on`.
    #[error("Device '{0}' is in use")]
    InUse(String),
    /// `change` of a chardev whose frontend cannot follow a backend change.
    #[error("Chardev user does not support chardev hotswap")]
    HotswapUnsupported,
    /// The frontend refused the new backend; the old one stays. QEMU's text
    /// does not carry the reason; it is logged.
    #[error("Chardev '{id}' change failed")]
    ChangeRefused {
        /// The chardev.
        id: String,
        /// What the frontend said.
        reason: String,
    },
    /// A ringbuf command on a chardev of another kind.
    #[error("{0} is not a ringbuf device")]
    NotRingbuf(String),
    /// `x-chardev-history` of a chardev that keeps none (qchar's own text).
    #[error("Chardev '{0}' keeps no history (it needs backlog=SIZE)")]
    NoHistory(String),
    /// Ringbuf size not a power of two.
    #[error("size of ringbuf chardev must be power of two")]
    RingbufSize,
    /// A backend type qchar does not implement.
    #[error("'{0}' is not a valid char driver name")]
    UnknownDriver(String),
    /// A backend option that qchar does not implement.
    #[error("{0}")]
    Unsupported(String),
    /// An invalid option value or combination (QEMU's text where it has one).
    #[error("{0}")]
    Invalid(String),
    /// An OS-level failure while opening or using a backend, with what was
    /// being done (QEMU's wording, e.g. `Could not open '/x': No such file...`).
    #[error("{context}: {}", os_message(source))]
    Io {
        /// What failed, on which input.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `yank` of an instance that is not registered (QEMU's text; a
    /// chardev is one only while its backend is a socket).
    #[error("Instance not found")]
    YankInstanceNotFound,
    /// The I/O thread has stopped (the registry is shutting down).
    #[error("chardev I/O thread is not running")]
    Shutdown,
}

impl ChardevError {
    /// Wraps an OS error with QEMU-style context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ChardevError::Io {
            context: context.into(),
            source,
        }
    }
}

/// An OS error as C's `strerror` words it (std appends " (os error N)",
/// which QEMU's messages do not have).
pub fn os_message(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if e.raw_os_error().is_some() => s[..i].to_string(),
        _ => s,
    }
}

/// Short alias used throughout the crate.
pub type Result<T, E = ChardevError> = std::result::Result<T, E>;
