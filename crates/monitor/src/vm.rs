//! What the machine-related commands (`stop`, `cont`, `quit`,
//! `query-status`) act on. The binary implements [`VmControl`] for its
//! guest; [`NoGuest`] serves a process without one.

use std::sync::Mutex;

use crate::event::EventBus;
use crate::json::Dict;

/// QEMU's `RunState` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum RunState {
    Debug,
    InMigrate,
    InternalError,
    IoError,
    Paused,
    PostMigrate,
    Prelaunch,
    FinishMigrate,
    RestoreVm,
    Running,
    SaveVm,
    Shutdown,
    Suspended,
    Watchdog,
    GuestPanicked,
    Colo,
}

impl RunState {
    /// The QAPI name (`"running"`, `"prelaunch"`...).
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Debug => "debug",
            RunState::InMigrate => "inmigrate",
            RunState::InternalError => "internal-error",
            RunState::IoError => "io-error",
            RunState::Paused => "paused",
            RunState::PostMigrate => "postmigrate",
            RunState::Prelaunch => "prelaunch",
            RunState::FinishMigrate => "finish-migrate",
            RunState::RestoreVm => "restore-vm",
            RunState::Running => "running",
            RunState::SaveVm => "save-vm",
            RunState::Shutdown => "shutdown",
            RunState::Suspended => "suspended",
            RunState::Watchdog => "watchdog",
            RunState::GuestPanicked => "guest-panicked",
            RunState::Colo => "colo",
        }
    }

    /// Whether guest CPUs run in this state (`running` in `query-status`).
    pub fn is_running(self) -> bool {
        self == RunState::Running
    }
}

/// The guest, as the monitor sees it. Implementations emit QEMU's events
/// themselves (`STOP`, `RESUME`, `SHUTDOWN`) through the [`EventBus`], while
/// the command runs, so they reach the client before the command's reply,
/// as in QEMU. Methods run on the chardev I/O thread: they must not block
/// for long.
pub trait VmControl: Send + Sync {
    /// Current run state.
    fn status(&self) -> RunState;
    /// Pauses the guest (no-op unless running).
    fn stop(&self);
    /// Resumes the guest; `Err` carries QEMU's text for why it cannot.
    fn cont(&self) -> Result<(), String>;
    /// Asks the process to exit. Must return promptly: the `quit` reply is
    /// written after this returns, so the exit itself has to happen later
    /// (typically on the main thread, after flushing the monitors).
    fn quit(&self);
    /// The guest's name (`-name`), for `query-name`; none by default.
    fn name(&self) -> Option<String> {
        None
    }
    /// Whether vCPU `index` exists (`human-monitor-command`'s
    /// `cpu-index`); by default there is one vCPU, number 0.
    fn has_cpu(&self, index: i64) -> bool {
        index == 0
    }
}

/// [`VmControl`] for a process without a guest: a run state that `stop` and
/// `cont` toggle, with QEMU's events, and a quit callback.
pub struct NoGuest {
    state: Mutex<RunState>,
    events: EventBus,
    on_quit: Box<dyn Fn() + Send + Sync>,
}

impl NoGuest {
    /// Starts in `prelaunch` when `paused` (like `qemu -S`), else `running`.
    pub fn new(
        events: EventBus,
        paused: bool,
        on_quit: impl Fn() + Send + Sync + 'static,
    ) -> NoGuest {
        let state = if paused {
            RunState::Prelaunch
        } else {
            RunState::Running
        };
        NoGuest {
            state: Mutex::new(state),
            events,
            on_quit: Box::new(on_quit),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl VmControl for NoGuest {
    fn status(&self) -> RunState {
        *self.lock()
    }

    fn stop(&self) {
        let mut st = self.lock();
        if st.is_running() {
            *st = RunState::Paused;
            drop(st);
            self.events.emit("STOP", None);
        }
    }

    fn cont(&self) -> Result<(), String> {
        let mut st = self.lock();
        match *st {
            RunState::Running => Ok(()),
            RunState::Shutdown | RunState::InternalError | RunState::GuestPanicked => {
                Err("Resetting the Virtual Machine is required".into())
            }
            _ => {
                *st = RunState::Running;
                drop(st);
                self.events.emit("RESUME", None);
                Ok(())
            }
        }
    }

    fn quit(&self) {
        let data = crate::dict! { "guest" => false, "reason" => "host-qmp-quit" };
        self.events.emit("SHUTDOWN", Some(data));
        (self.on_quit)();
    }
}

/// The `SHUTDOWN` event's data for a quit command (for implementors).
pub fn shutdown_quit_data() -> Dict {
    crate::dict! { "guest" => false, "reason" => "host-qmp-quit" }
}
