//! The one trait every backend implements, and the table that opens a
//! backend from its [`ChardevBackend`] spec.
//!
//! Backends are poll-based so the chardev I/O task can drive any of them
//! the same way, and so a backend can be swapped between two polls without
//! any task holding a borrow of it. They never see the frontend: input goes
//! out through [`Backend::poll_event`], output comes in through
//! [`Backend::poll_write`]; buffering, logging, replay and hotswap live in
//! [`crate::chardev`], once for all backends.

use std::any::Any;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::error::{ChardevError, Result};
use crate::fdset::FdSets;
use crate::history::History;
use crate::registry::{ClientsInfo, RegistryEvent};
use crate::spec::ChardevBackend;
use crate::tls::ObjectStore;

mod fdio;
pub(crate) mod file;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod hub;
pub(crate) mod mux;
mod net;
mod null;
mod pipe;
mod pty;
mod ringbuf;
mod serial;
mod socket;
mod stdio;
mod telnet;
pub(crate) mod tty;
mod udp;
mod websocket;

pub use ringbuf::RingBuf;

/// Something a backend reports to its chardev.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendEvent {
    /// `n` bytes of input were placed at the start of the buffer.
    Input(usize),
    /// A peer connected (socket client, pty slave opened).
    Opened,
    /// The peer went away. All its input was reported before this.
    Closed,
    /// The peer sent a break (telnet IAC BREAK, tty break).
    Break,
    /// Mux only: move the input focus to the next frontend (Ctrl-a c).
    MuxFocusNext,
    /// Mux only: the user asked to quit (Ctrl-a x).
    QuitRequested,
}

/// Parity setting of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parity {
    /// No parity bit.
    #[default]
    None,
    /// Odd parity.
    Odd,
    /// Even parity.
    Even,
    /// Parity bit always 1.
    Mark,
    /// Parity bit always 0.
    Space,
}

/// Line parameters a UART programs (QEMU's `QEMUSerialSetParams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialParams {
    /// Bits per second.
    pub speed: u32,
    /// Parity.
    pub parity: Parity,
    /// Data bits, 5 to 8.
    pub data_bits: u8,
    /// Stop bits, 1 or 2.
    pub stop_bits: u8,
}

impl Default for SerialParams {
    fn default() -> Self {
        SerialParams {
            speed: 9600,
            parity: Parity::None,
            data_bits: 8,
            stop_bits: 1,
        }
    }
}

/// Modem line bits, numbered as Linux's `TIOCM_*`.
pub mod modem {
    /// Data terminal ready (output).
    pub const DTR: u32 = 0x002;
    /// Request to send (output).
    pub const RTS: u32 = 0x004;
    /// Clear to send (input).
    pub const CTS: u32 = 0x020;
    /// Data carrier detect (input).
    pub const CAR: u32 = 0x040;
    /// Ring indicator (input).
    pub const RNG: u32 = 0x080;
    /// Data set ready (input).
    pub const DSR: u32 = 0x100;
}

/// Serial-line requests a frontend makes of its backend (QEMU's
/// `CHR_IOCTL_SERIAL_*`). Backends without a tty ignore them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialIoctl {
    /// Apply speed, parity, data and stop bits.
    SetParams(SerialParams),
    /// Start (true) or stop (false) sending a break.
    SetBreak(bool),
    /// Read the modem lines.
    GetModem,
    /// Set the output modem lines (DTR, RTS).
    SetModem(u32),
}

/// Answer to a [`SerialIoctl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoctlReply {
    /// Applied.
    Done,
    /// The modem lines, for [`SerialIoctl::GetModem`].
    Modem(u32),
    /// This backend has no serial line; nothing was done.
    Unsupported,
}

/// What a retired backend still owes its peer: output it took from the
/// chardev before a change or remove and has not delivered yet (the unread
/// tail in a pty, the rest of a websocket frame). A future the registry runs
/// on its I/O thread for at most 5 seconds (fewer if the registry shuts
/// down); it owns the descriptors it needs and closes them when it ends.
pub struct Drain(Pin<Box<dyn Future<Output = ()> + Send + 'static>>);

impl Drain {
    /// Wraps the work; it runs on the registry's tokio runtime.
    pub fn new(work: impl Future<Output = ()> + Send + 'static) -> Drain {
        Drain(Box::pin(work))
    }

    pub(crate) fn into_work(self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.0
    }
}

impl std::fmt::Debug for Drain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Drain")
    }
}

/// What a chardev gives the backend it installs ([`Backend::link`]): the
/// chardev's id, its history, and where events about the backend's clients
/// go.
#[derive(Clone)]
pub struct BackendLink {
    pub(crate) id: String,
    pub(crate) history: Arc<History>,
    pub(crate) events: Arc<LinkEvents>,
}

impl BackendLink {
    /// The chardev's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The chardev's history.
    pub fn history(&self) -> &Arc<History> {
        &self.history
    }
}

/// Events a backend reports about its clients. The chardev emits them once
/// the backend call that made them has returned, with no lock held, so
/// that an observer may call back into the registry.
#[derive(Default)]
pub(crate) struct LinkEvents(Mutex<Vec<RegistryEvent>>);

impl LinkEvents {
    pub(crate) fn push(&self, ev: RegistryEvent) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(ev);
    }

    pub(crate) fn take(&self) -> Vec<RegistryEvent> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// What a socket server hands the backend that replaces it when both
/// listen on the same address: its listener and its connected clients
/// (see [`Backend::hand_over`]). Opaque outside the crate.
pub struct HandOver(pub(crate) Box<dyn Any + Send>);

impl std::fmt::Debug for HandOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandOver")
    }
}

/// A live backend: where a chardev's bytes go and come from.
///
/// Dropping a backend only releases what it holds; a backend that a change
/// or remove takes out is first [retired](Backend::retire).
pub trait Backend: Send {
    /// Polls for the next event. Input is read into `buf`, never more than
    /// `buf.len()` bytes; with an empty `buf` the backend must not consume
    /// input and reports only connection changes.
    fn poll_event(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<BackendEvent>;

    /// Offers output. Returns how many leading bytes of `data` the backend
    /// took; the rest stay queued for the next call (or for the next backend
    /// after a change). A backend with no peer may take and drop bytes, as
    /// QEMU does. `Err` means the bytes could not be delivered and are lost.
    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>>;

    /// Whether a peer is connected (always true for files, null, ringbuf).
    fn is_open(&self) -> bool {
        true
    }

    /// The backend as `query-chardev` prints it (`file`, `pty:/dev/pts/3`...).
    fn filename(&self) -> String;

    /// The pty slave path, for `ChardevReturn`.
    fn pty_path(&self) -> Option<String> {
        None
    }

    /// A serial-line request; the default ignores it.
    fn ioctl(&mut self, _req: SerialIoctl) -> Result<IoctlReply> {
        Ok(IoctlReply::Unsupported)
    }

    /// Whether [`Backend::ioctl`] does anything (a host tty, or a mux that
    /// passes requests to its base). Requests from other threads than the
    /// I/O thread are queued for a backend with a serial line and answered
    /// `Unsupported` at once for one without.
    fn has_serial_line(&self) -> bool {
        false
    }

    /// The ring buffer, for `ringbuf-read`/`ringbuf-write`.
    fn as_ringbuf(&mut self) -> Option<&mut RingBuf> {
        None
    }

    /// Takes the descriptor that came with the newest input carrying any
    /// (SCM_RIGHTS on a unix socket; QEMU's `qemu_chr_fe_get_msgfd`), if
    /// it still waits. The default has none.
    fn take_msgfd(&mut self) -> Option<std::os::fd::OwnedFd> {
        None
    }

    /// A frontend set its handlers on this chardev (QEMU's
    /// `chr_update_read_handler`). Called with the chardev's state held:
    /// it must not call back into the same chardev. The mux opens its
    /// base's frontend side then. The default does nothing.
    fn handlers_set(&mut self) {}

    /// Drops the current peer, if the backend has one (a socket client);
    /// QEMU's `qemu_chr_fe_disconnect`. The default does nothing.
    fn disconnect(&mut self) {}

    /// Whether output written while no peer is connected would be dropped;
    /// with `x-backlog`, such a backend is not offered output while it has
    /// no peer (the history keeps it for the next one).
    fn drops_output_when_closed(&self) -> bool {
        false
    }

    /// Whether the backend serves its peers from the chardev's history (a
    /// multi-client socket server): it takes all output at once, the core
    /// replays nothing to it, and the chardev keeps a history for it.
    fn serves_from_history(&self) -> bool {
        false
    }

    /// The chardev installs this backend: its id, its history, where
    /// client events go. Called on the I/O thread before the backend is
    /// first polled, and again after each change. The default ignores it.
    fn link(&mut self, _link: &BackendLink) {}

    /// Whether a backend of `spec` would listen where this one listens, so
    /// that a change to it takes this one's listener over (see
    /// [`Backend::take_over`]). Called with the chardev's state lock held,
    /// from any thread.
    fn hands_over_to(&self, _spec: &ChardevBackend) -> bool {
        false
    }

    /// Whether this backend was opened to take over the listener of the
    /// backend it replaces ([`Backend::take_over`]) rather than bind again.
    fn takes_over(&self) -> bool {
        false
    }

    /// Gives up the listener and the connected clients, for the backend
    /// that replaces this one; `None` if it has none.
    fn hand_over(&mut self) -> Option<HandOver> {
        None
    }

    /// Takes what the backend it replaces handed over. With `None` (that
    /// one had nothing to hand over) it binds its own listener, and may fail
    /// as opening would have.
    fn take_over(&mut self, _from: Option<HandOver>) -> Result<()> {
        Ok(())
    }

    /// The clients of a multi-client server (`x-query-chardev-clients`);
    /// `None` for any other backend.
    fn clients(&self) -> Option<ClientsInfo> {
        None
    }

    /// Takes the backend out of service (a change replaced it, or its
    /// chardev was removed). Output it already took counts as delivered, so
    /// what its peer has not got yet is handed back as a [`Drain`]; `None`
    /// (the default) when nothing is owed, and the backend is dropped.
    fn retire(self: Box<Self>) -> Option<Drain> {
        None
    }

    /// The backend as `Any`, for the registry's own kinds that a change
    /// must recognise (a hub handing its members to the next hub); `None`
    /// (the default) for every other backend.
    fn as_any(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
}

/// What opening a backend may need besides its spec: where `/dev/fdset/N`
/// paths come from, what a socket's `fd` string names (see
/// [`crate::fdpass`]), and where `tls-creds`/`tls-authz` are looked up.
#[derive(Clone)]
pub struct OpenCtx {
    /// The VM's descriptor sets.
    pub fdsets: Arc<FdSets>,
    /// The `getfd` names of the monitor whose command opens the backend;
    /// `None` outside monitor commands, where `fd` strings are numbers.
    pub names: Option<Arc<dyn crate::fdpass::NamedFds>>,
    /// Which descriptor numbers `fd=N` may take.
    pub fd_numbers: crate::fdpass::FdNumbers,
    /// The objects (`-object`, `object-add`) of the registry.
    pub objects: ObjectStore,
}

impl std::fmt::Debug for OpenCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenCtx")
            .field("fdsets", &self.fdsets)
            .field("names", &self.names.is_some())
            .field("fd_numbers", &self.fd_numbers)
            .finish_non_exhaustive()
    }
}

impl Default for OpenCtx {
    /// No descriptor sets, no monitor, any descriptor number, no objects.
    fn default() -> Self {
        OpenCtx {
            fdsets: FdSets::new(),
            names: None,
            fd_numbers: Default::default(),
            objects: ObjectStore::new(),
        }
    }
}

/// Opens the backend a spec describes. Called with the registry's runtime
/// entered, so tokio I/O objects can be registered. `id` is the chardev's id,
/// used in messages; `ctx` says where `/dev/fdset/N`, `fd` strings and
/// `tls-creds`/`tls-authz` are looked up.
pub fn open(id: &str, spec: &ChardevBackend, ctx: &OpenCtx) -> Result<Box<dyn Backend>> {
    open_after(id, spec, ctx, false)
}

/// [`open`] for a change whose old backend listens where `spec` would
/// (`take_over`, see [`Backend::hands_over_to`]): the new server takes that
/// listener over when it is installed instead of binding again
/// ([`Backend::take_over`]).
pub(crate) fn open_after(
    id: &str,
    spec: &ChardevBackend,
    ctx: &OpenCtx,
    take_over: bool,
) -> Result<Box<dyn Backend>> {
    if let (ChardevBackend::Socket(s), true) = (spec, take_over) {
        return Ok(Box::new(socket::SocketBackend::open_to_take_over(
            id, s, ctx,
        )?));
    }
    match spec {
        ChardevBackend::Null(_) => Ok(Box::new(null::NullBackend)),
        ChardevBackend::File(f) => Ok(Box::new(file::FileBackend::open(&ctx.fdsets, f)?)),
        ChardevBackend::Ringbuf(r) => Ok(Box::new(ringbuf::RingbufBackend::new(r.size)?)),
        ChardevBackend::Memory(r) => Ok(Box::new(ringbuf::RingbufBackend::memory(r.size)?)),
        ChardevBackend::Pipe(p) => Ok(Box::new(pipe::PipeBackend::open(&ctx.fdsets, &p.device)?)),
        ChardevBackend::Pty(_) => Ok(Box::new(pty::PtyBackend::open(id)?)),
        ChardevBackend::Stdio(s) => Ok(Box::new(stdio::StdioBackend::open(
            s.signal.unwrap_or(true),
        )?)),
        ChardevBackend::Parallel(_) => Err(ChardevError::UnknownDriver("parallel".into())),
        ChardevBackend::Socket(s) => Ok(Box::new(socket::SocketBackend::open(id, s, ctx)?)),
        ChardevBackend::Udp(u) => Ok(Box::new(udp::UdpBackend::open(u)?)),
        ChardevBackend::Serial(h) => Ok(Box::new(serial::SerialBackend::open(
            &ctx.fdsets,
            &h.device,
        )?)),
        // Needs the registry (the base chardev): see `Registry::open_mux`.
        ChardevBackend::Mux(m) => Err(ChardevError::Invalid(format!(
            "chardev '{id}': mux over '{}' must be opened by the registry",
            m.chardev
        ))),
        // Needs the registry (the members): see `Registry::open_hub`.
        ChardevBackend::Hub(_) => Err(ChardevError::Invalid(format!(
            "chardev '{id}': a hub must be opened by the registry"
        ))),
    }
}

/// Checks a spec for what can be refused before anything is opened, so a
/// change that cannot succeed leaves no trace (`objects`: as for [`open`]).
pub fn validate(spec: &ChardevBackend, objects: &ObjectStore) -> Result<()> {
    crate::logfile::LogSpec::from_common(spec.common())?;
    match spec {
        ChardevBackend::Ringbuf(r) | ChardevBackend::Memory(r) => {
            ringbuf::check_size(r.size).map(|_| ())
        }
        ChardevBackend::Socket(s) => socket::validate(s, objects),
        _ => Ok(()),
    }
}
