//! The machine's run state as QMP `query-status` reports it, and the
//! hand-shake between the threads that ask for a state (monitor) and the
//! vCPU thread that enters it.
//!
//! The vCPU thread calls [`RunControl::gate`] before every `KVM_RUN`; that is
//! where a pause or stop request takes effect. Requesters kick the vCPU out
//! of `KVM_RUN` (see `vm.rs`) and then wait for the vCPU thread to confirm.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// QMP `RunState`, the subset this machine can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Created but never run (`-S`): waits for `cont`.
    Prelaunch,
    /// The vCPU is executing guest code.
    Running,
    /// Stopped by `stop`; `cont` resumes.
    Paused,
    /// The guest shut down (halted with interrupts off, triple fault) or the
    /// machine was told to quit.
    Shutdown,
    /// KVM reported an error it cannot continue from.
    InternalError,
}

impl RunState {
    /// The name `query-status` uses (QAPI `RunState` spelling).
    pub fn as_qapi_str(self) -> &'static str {
        match self {
            RunState::Prelaunch => "prelaunch",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Shutdown => "shutdown",
            RunState::InternalError => "internal-error",
        }
    }

    /// `query-status`'s `running` member.
    pub fn is_running(self) -> bool {
        self == RunState::Running
    }

    /// The vCPU thread has ended; the state does not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, RunState::Shutdown | RunState::InternalError)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_qapi_str())
    }
}

/// Why the vCPU thread ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest executed HLT with interrupts disabled.
    Halted,
    /// The guest triple-faulted (`KVM_EXIT_SHUTDOWN`) or asked for a system
    /// shutdown/reset.
    GuestShutdown,
    /// [`crate::vm::VmHandle::quit`] was called.
    Quit,
    /// KVM failed; the text says how.
    Error(String),
}

/// What the requesters want the vCPU to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Run,
    Pause,
    Quit,
}

#[derive(Debug)]
struct Inner {
    state: RunState,
    request: Request,
    /// The vCPU thread sits in `gate`, not in KVM_RUN.
    parked: bool,
    exit: Option<ExitReason>,
}

/// Shared run state of one machine.
#[derive(Debug)]
pub struct RunControl {
    inner: Mutex<Inner>,
    changed: Condvar,
}

/// What [`RunControl::gate`] tells the vCPU thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Enter the guest.
    Run,
    /// Leave the run loop: quit was requested.
    Quit,
}

impl RunControl {
    /// A control in `Prelaunch` (held until `resume`) or about to run.
    pub fn new(start_paused: bool) -> RunControl {
        RunControl {
            inner: Mutex::new(Inner {
                state: RunState::Prelaunch,
                request: if start_paused {
                    Request::Pause
                } else {
                    Request::Run
                },
                parked: false,
                exit: None,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current state.
    pub fn state(&self) -> RunState {
        self.lock().state
    }

    /// Why the run ended, once it has.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.lock().exit.clone()
    }

    /// Called by the vCPU thread before each entry into the guest: blocks
    /// while a pause is requested, reports quit.
    pub fn gate(&self) -> Gate {
        let mut inner = self.lock();
        loop {
            match inner.request {
                Request::Quit => return Gate::Quit,
                Request::Run => {
                    if inner.parked || inner.state != RunState::Running {
                        inner.parked = false;
                        inner.state = RunState::Running;
                        self.changed.notify_all();
                    }
                    return Gate::Run;
                }
                Request::Pause => {
                    if !inner.parked {
                        inner.parked = true;
                        if inner.state == RunState::Running {
                            inner.state = RunState::Paused;
                        }
                        self.changed.notify_all();
                    }
                    inner = self.changed.wait(inner).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }

    /// Asks for a pause. Returns false if the machine has already ended.
    pub fn request_pause(&self) -> bool {
        let mut inner = self.lock();
        if inner.state.is_final() || inner.request == Request::Quit {
            return false;
        }
        inner.request = Request::Pause;
        self.changed.notify_all();
        true
    }

    /// Asks for running (`cont`). Returns false if the machine has ended.
    pub fn request_run(&self) -> bool {
        let mut inner = self.lock();
        if inner.state.is_final() || inner.request == Request::Quit {
            return false;
        }
        inner.request = Request::Run;
        self.changed.notify_all();
        true
    }

    /// Asks the vCPU thread to leave.
    pub fn request_quit(&self) {
        let mut inner = self.lock();
        inner.request = Request::Quit;
        self.changed.notify_all();
    }

    /// Waits until the vCPU thread is parked by a pause (true), the run
    /// ended (false), or `timeout` passed (false).
    pub fn wait_parked(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        loop {
            if inner.parked && inner.request == Request::Pause {
                return true;
            }
            if inner.state.is_final() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            inner = self
                .changed
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Records the end of the run (vCPU thread, once).
    pub fn finish(&self, reason: ExitReason) {
        let mut inner = self.lock();
        inner.state = match reason {
            ExitReason::Error(_) => RunState::InternalError,
            _ => RunState::Shutdown,
        };
        inner.parked = false;
        inner.exit = Some(reason);
        self.changed.notify_all();
    }

    /// Waits for the end of the run, at most `timeout` (`None`: forever).
    pub fn wait_exit(&self, timeout: Option<Duration>) -> Option<ExitReason> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut inner = self.lock();
        loop {
            if let Some(reason) = &inner.exit {
                return Some(reason.clone());
            }
            match deadline {
                None => inner = self.changed.wait(inner).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    inner = self
                        .changed
                        .wait_timeout(inner, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn prelaunch_pause_resume_quit() {
        let rc = Arc::new(RunControl::new(true));
        assert_eq!(rc.state(), RunState::Prelaunch);
        let vcpu = {
            let rc = rc.clone();
            std::thread::spawn(move || {
                let mut entries = 0;
                while rc.gate() == Gate::Run {
                    entries += 1;
                    std::thread::yield_now();
                }
                rc.finish(ExitReason::Quit);
                entries
            })
        };
        assert!(rc.wait_parked(Duration::from_secs(10)));
        assert_eq!(
            rc.state(),
            RunState::Prelaunch,
            "a held start stays prelaunch"
        );
        assert!(rc.request_run());
        assert!(rc.request_pause());
        assert!(rc.wait_parked(Duration::from_secs(10)));
        assert!(matches!(rc.state(), RunState::Paused | RunState::Prelaunch));
        rc.request_quit();
        assert_eq!(
            rc.wait_exit(Some(Duration::from_secs(10))),
            Some(ExitReason::Quit)
        );
        assert_eq!(rc.state(), RunState::Shutdown);
        assert!(!rc.request_run());
        vcpu.join().unwrap();
    }

    #[test]
    fn qapi_names() {
        assert_eq!(RunState::Prelaunch.as_qapi_str(), "prelaunch");
        assert_eq!(RunState::Running.as_qapi_str(), "running");
        assert_eq!(RunState::Paused.as_qapi_str(), "paused");
        assert_eq!(RunState::Shutdown.as_qapi_str(), "shutdown");
        assert!(RunState::Running.is_running());
    }
}
