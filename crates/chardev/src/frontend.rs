//! The frontend side: what a device (a UART, a monitor) holds to use a
//! chardev, QEMU's `CharBackend`.
//!
//! A device writes through [`CharFrontend::write`] from any thread (a vCPU
//! thread, typically); that never blocks and never touches the backend, it
//! only fills the chardev's bounded output queue, and it takes no lock the
//! I/O thread holds across a system call. [`CharFrontend::ioctl`] from such
//! a thread does not wait for the backend either. Everything else reaches
//! the device through its [`FrontendHandlers`], called on the chardev I/O
//! thread.

use std::sync::Arc;

use crate::backend::{IoctlReply, SerialIoctl};
use crate::chardev::Chardev;
use crate::error::{ChardevError, Result};

/// Events a chardev reports to its frontends (QEMU's `QEMUChrEvent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChardevEvent {
    /// The backend has a peer (or is always open, like a file).
    Opened,
    /// The backend lost its peer.
    Closed,
    /// A break was received.
    Break,
    /// This frontend got the focus of a mux.
    MuxIn,
    /// This frontend lost the focus of a mux.
    MuxOut,
}

/// Callbacks a frontend registers. All run on the chardev I/O thread, one at
/// a time per chardev, never while a chardev lock is held, so they may call
/// back into the frontend handle or the registry.
pub trait FrontendHandlers: Send + 'static {
    /// How many input bytes the device can take now. Returning 0 pauses
    /// input until [`CharFrontend::accept_input`].
    fn can_read(&mut self) -> usize;

    /// Input bytes, never more than the last `can_read` allowed.
    fn read(&mut self, data: &[u8]);

    /// A connection or mux-focus change, or a break.
    fn event(&mut self, _event: ChardevEvent) {}

    /// Whether this frontend can follow a backend change. Frontends that
    /// return false make `change` fail with
    /// `Chardev user does not support chardev hotswap`, as in QEMU.
    fn supports_hotswap(&self) -> bool {
        false
    }

    /// The backend was replaced. The new backend is already in place: re-apply
    /// line settings here through `fe`. An `Err` refuses the new backend: the
    /// old one is put back and the change fails.
    fn backend_changed(&mut self, _fe: &CharFrontend) -> std::result::Result<(), String> {
        Ok(())
    }

    /// Output space is free again after a [`CharFrontend::write`] came back
    /// short.
    fn write_ready(&mut self) {}

    /// Whether registering these handlers counts as a frontend setting its
    /// handlers on the chardev (QEMU's `chr_update_read_handler`, which
    /// opens a mux's base). A mux's link to its base does not: as in QEMU,
    /// the base hears of it only once a frontend sets handlers on the mux.
    fn announces(&self) -> bool {
        true
    }
}

/// Counters a frontend keeps (a UART's bytes, overruns, FIFO clears),
/// reported beside its chardev's own by [`crate::Registry::all_stats`] and
/// QMP `x-query-chardev-stats`. The chardev layer knows nothing of what they
/// count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendStats {
    /// What the frontend is (`"uart"`).
    pub kind: String,
    /// Each counter's name (QMP style, `tx-bytes`) and value, in the
    /// frontend's order.
    pub counters: Vec<(String, u64)>,
}

/// A frontend's stats callback (see [`CharFrontend::set_stats_hook`]).
pub(crate) type StatsHook = std::sync::Arc<dyn Fn() -> Option<FrontendStats> + Send + Sync>;

/// A device's handle on a chardev. Cheap to clone; stays attached until
/// [`CharFrontend::detach`] (a handler that holds its own handle would
/// otherwise keep the chardev alive forever, as it does in QEMU).
#[derive(Clone)]
pub struct CharFrontend {
    pub(crate) cd: Arc<Chardev>,
    pub(crate) tag: usize,
    pub(crate) gen: u64,
}

impl std::fmt::Debug for CharFrontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CharFrontend")
            .field("id", &self.cd.id)
            .field("tag", &self.tag)
            .finish()
    }
}

impl CharFrontend {
    /// The chardev's id.
    pub fn id(&self) -> String {
        self.cd.id.clone()
    }

    /// Registers the device's handlers (replacing any earlier ones). If the
    /// backend is open, the handlers get [`ChardevEvent::Opened`] first.
    pub fn set_handlers(&self, handlers: Box<dyn FrontendHandlers>) {
        self.cd.set_handlers(self.tag, self.gen, Some(handlers));
    }

    /// Registers the callback that reports this frontend's counters (the
    /// device's, beside the chardev's own). It runs on whichever thread asks
    /// for stats (a monitor's command: the I/O thread), with no chardev lock
    /// held, and must not block; `None` reports nothing (a device gone).
    pub fn set_stats_hook(&self, hook: impl Fn() -> Option<FrontendStats> + Send + Sync + 'static) {
        self.cd
            .set_stats_hook(self.tag, self.gen, std::sync::Arc::new(hook));
    }

    /// Unregisters the handlers; input stops and the frontend is closed.
    pub fn clear_handlers(&self) {
        self.cd.set_handlers(self.tag, self.gen, None);
    }

    /// Queues output without blocking: returns how many leading bytes of
    /// `data` were taken (0 when the chardev's buffer is full, or the handle
    /// is detached). After a short write the handlers get `write_ready` once
    /// there is room again.
    pub fn write(&self, data: &[u8]) -> usize {
        if !self.cd.is_current(self.tag, self.gen) {
            return 0;
        }
        self.cd.out.push(data, !self.cd.io.on_io_thread())
    }

    /// Queues all of `data`, waiting for room. Up to the buffer's capacity,
    /// the bytes stay contiguous even with other threads writing. Must not
    /// be called on the chardev I/O thread (from a handler), which is the
    /// thread that makes room: there it fails instead of deadlocking.
    pub fn write_all(&self, data: &[u8]) -> Result<()> {
        if !self.cd.is_current(self.tag, self.gen) {
            return Err(ChardevError::Invalid(format!(
                "chardev '{}': frontend is detached",
                self.cd.id
            )));
        }
        self.cd.out.push_all(data, self.cd.io.on_io_thread())
    }

    /// Resumes input after `can_read` returned 0.
    pub fn accept_input(&self) {
        self.cd.kick();
    }

    /// A serial-line request to the backend; backends without a tty answer
    /// [`IoctlReply::Unsupported`].
    ///
    /// On the chardev I/O thread (a handler, `backend_changed`) it is
    /// carried out at once. From any other thread it never waits for the
    /// backend: a setting is handed to the I/O thread, which applies it on
    /// its next turn (so `Done` means queued; a failure is logged there),
    /// and [`SerialIoctl::GetModem`] answers with the modem lines the I/O
    /// thread read last, at most about 10 ms old while someone keeps asking.
    /// A change applies the settings queued before it to the old backend
    /// first.
    pub fn ioctl(&self, req: SerialIoctl) -> Result<IoctlReply> {
        self.cd.ioctl(req)
    }

    /// Marks the frontend open or closed (`frontend-open` in `query-chardev`).
    pub fn set_open(&self, open: bool) {
        self.cd.set_fe_open(self.tag, self.gen, open);
    }

    /// Tells the chardev that handlers which did not announce themselves
    /// ([`FrontendHandlers::announces`]) now count: a mux whose own
    /// frontend set its handlers.
    pub(crate) fn announce_handlers(&self) {
        self.cd.announce_handlers(self.tag, self.gen);
    }

    /// Whether the backend currently has a peer.
    pub fn is_open(&self) -> bool {
        self.cd.be_open()
    }

    /// Drops the backend's current peer (a socket client), e.g. one that
    /// stopped reading; a server backend then waits for the next client.
    pub fn disconnect(&self) {
        self.cd.disconnect_peer();
    }

    /// Takes the descriptor that came with the newest input carrying any
    /// (SCM_RIGHTS on a unix socket), if it still waits; what a monitor's
    /// `getfd` takes. Later ones replace (close) one not taken.
    pub fn take_msgfd(&self) -> Option<std::os::fd::OwnedFd> {
        if !self.cd.is_current(self.tag, self.gen) {
            return None;
        }
        self.cd.take_msgfd()
    }

    /// Bytes that `write` would take right now.
    pub fn free_space(&self) -> usize {
        self.cd.out.free()
    }

    /// [`Self::free_space`], and when that is 0 the handlers get
    /// `write_ready` once there is room, as after a short write: for a
    /// frontend that sizes its input by this chardev's room (a bridge).
    pub fn free_space_or_notify(&self) -> usize {
        self.cd.out.free_or_flag()
    }

    /// Detaches from the chardev; the handlers are dropped. Other clones of
    /// this handle become inert.
    pub fn detach(&self) {
        self.cd.detach(self.tag, self.gen);
    }
}
