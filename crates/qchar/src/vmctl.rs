//! The monitors' view of the guest ([`VmControl`] on top of the machine's
//! [`VmHandle`]), with QEMU's `STOP`/`RESUME`/`SHUTDOWN` events, and the
//! one place where every reason to end the process is posted
//! ([`ExitSignal`]).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use qchar_chardev::bridge::{BridgeError, BridgeSpec};
use qchar_chardev::spec::{ChardevBackend, ChardevInfo, ChardevReturn};
use qchar_chardev::{ChardevError, Done, Registry};
use qchar_machine::{ExitReason, RunState as MachineState, VmHandle};
use qchar_monitor::event::EventBus;
use qchar_monitor::json::Dict;
use qchar_monitor::ops::ChardevOps;
use qchar_monitor::vm::{shutdown_quit_data, RunState, VmControl};

/// Why the process ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// QMP/HMP `quit`, or Ctrl-a x on a mux. The `SHUTDOWN` event has
    /// been sent.
    Quit,
    /// The guest ended its run.
    Guest(ExitReason),
    /// SIGINT, SIGTERM or SIGHUP, with the sender's pid (0: the terminal
    /// or the kernel).
    Signal {
        /// The signal number.
        signo: i32,
        /// Who sent it.
        pid: i32,
    },
}

/// The first reason to exit, posted from any thread, waited for by `main`.
#[derive(Default)]
pub struct ExitSignal {
    cause: Mutex<Option<Cause>>,
    posted: Condvar,
}

impl ExitSignal {
    /// A signal nobody has posted yet.
    pub fn new() -> Arc<ExitSignal> {
        Arc::new(ExitSignal::default())
    }

    fn lock(&self) -> MutexGuard<'_, Option<Cause>> {
        self.cause.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Posts `cause` unless another came first. Returns whether it was the
    /// first.
    pub fn post(&self, cause: Cause) -> bool {
        let mut c = self.lock();
        if c.is_some() {
            return false;
        }
        *c = Some(cause);
        self.posted.notify_all();
        true
    }

    /// Whether a cause has been posted.
    pub fn is_posted(&self) -> bool {
        self.lock().is_some()
    }

    /// Waits for the first cause.
    pub fn wait(&self) -> Cause {
        let mut c = self.lock();
        loop {
            if let Some(cause) = c.clone() {
                return cause;
            }
            c = self.posted.wait(c).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Builds and starts the machine later (`cont` after `-S` where the
/// machine could not be made at start-up). `Err` is the text `cont` fails
/// with.
pub type Launcher = Box<dyn FnMut() -> Result<VmHandle, String> + Send>;

enum Guest {
    /// Not created yet: `cont` calls the launcher (none yet: set-up is
    /// still going on).
    Pending(Option<Launcher>),
    /// Created and started (possibly still in `prelaunch`).
    Started(VmHandle),
    /// `-machine none`: no vCPU; `cont` and `stop` only move the state
    /// (prelaunch, running or paused), with QEMU's events.
    Empty(RunState),
}

/// [`VmControl`] for qchar's machine.
pub struct VmCtl {
    guest: Mutex<Guest>,
    events: EventBus,
    exit: Arc<ExitSignal>,
    /// Commands wait here until set-up has finished.
    gate: Arc<SetUpGate>,
    /// `-name`.
    name: Option<String>,
}

/// Holds monitor commands until set-up has finished (or failed): QEMU
/// answers none before its machine is complete, and a qchar monitor is
/// live a moment before the UARTs and the vCPU are. Waiting on the chardev
/// I/O thread is safe here: the last set-up steps never need that thread.
#[derive(Default)]
pub struct SetUpGate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl SetUpGate {
    /// Lets every waiting and future command through.
    pub fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.opened.notify_all();
    }

    /// Waits until [`SetUpGate::open`].
    pub fn wait(&self) {
        let mut o = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*o {
            o = self.opened.wait(o).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The registry as the monitors use it, behind the set-up gate.
pub struct GatedChardevs {
    /// The registry.
    pub reg: Registry,
    /// The gate.
    pub gate: Arc<SetUpGate>,
    /// Ids of the command line's `-chardev` and monitor chardevs.
    pub option_ids: Vec<String>,
}

impl ChardevOps for GatedChardevs {
    fn add(&self, id: &str, backend: ChardevBackend) -> Result<ChardevReturn, ChardevError> {
        self.gate.wait();
        ChardevOps::add(&self.reg, id, backend)
    }
    fn change(&self, id: &str, backend: ChardevBackend) -> Result<ChardevReturn, ChardevError> {
        self.gate.wait();
        ChardevOps::change(&self.reg, id, backend)
    }
    fn remove(&self, id: &str) -> Result<(), ChardevError> {
        self.gate.wait();
        ChardevOps::remove(&self.reg, id)
    }
    fn query(&self) -> Vec<ChardevInfo> {
        self.gate.wait();
        ChardevOps::query(&self.reg)
    }
    fn send_break(&self, id: &str) -> Result<(), ChardevError> {
        self.gate.wait();
        ChardevOps::send_break(&self.reg, id)
    }
    fn yank_instances(&self) -> Vec<String> {
        self.gate.wait();
        ChardevOps::yank_instances(&self.reg)
    }
    fn yank(&self, ids: &[String]) -> Result<(), ChardevError> {
        self.gate.wait();
        ChardevOps::yank(&self.reg, ids)
    }
    fn ringbuf_write(&self, id: &str, data: &[u8]) -> Result<(), ChardevError> {
        self.gate.wait();
        ChardevOps::ringbuf_write(&self.reg, id, data)
    }
    fn ringbuf_read(&self, id: &str, max: usize) -> Result<Vec<u8>, ChardevError> {
        self.gate.wait();
        ChardevOps::ringbuf_read(&self.reg, id, max)
    }
    fn stats(&self) -> Vec<qchar_chardev::ChardevStatsInfo> {
        self.gate.wait();
        ChardevOps::stats(&self.reg)
    }
    fn history(&self, id: &str, max: usize) -> Result<Vec<u8>, ChardevError> {
        self.gate.wait();
        ChardevOps::history(&self.reg, id, max)
    }
    fn clients(&self) -> Vec<qchar_chardev::ChardevClientsInfo> {
        self.gate.wait();
        ChardevOps::clients(&self.reg)
    }
    fn backends(&self) -> Vec<String> {
        ChardevOps::backends(&self.reg)
    }
    fn fdsets(&self) -> Arc<qchar_chardev::fdset::FdSets> {
        self.gate.wait();
        ChardevOps::fdsets(&self.reg)
    }
    fn add_opts(&self, opts: &str) -> Result<ChardevReturn, String> {
        self.gate.wait();
        ChardevOps::add_opts(&self.reg, opts)
    }
    fn add_parsed(
        &self,
        text: &str,
        o: &qchar_chardev::opts::ChardevOptions,
    ) -> Result<ChardevReturn, ChardevError> {
        self.gate.wait();
        ChardevOps::add_parsed(&self.reg, text, o)
    }
    fn parse_backend(&self, id: &str, opts: &str) -> Result<ChardevBackend, String> {
        ChardevOps::parse_backend(&self.reg, id, opts)
    }
    fn add_then(&self, id: &str, backend: ChardevBackend, done: Done<ChardevReturn>) {
        self.gate.wait();
        ChardevOps::add_then(&self.reg, id, backend, done);
    }
    fn change_then(&self, id: &str, backend: ChardevBackend, done: Done<ChardevReturn>) {
        self.gate.wait();
        ChardevOps::change_then(&self.reg, id, backend, done);
    }
    fn add_parsed_then(
        &self,
        text: &str,
        o: &qchar_chardev::opts::ChardevOptions,
        done: Done<ChardevReturn>,
    ) {
        self.gate.wait();
        ChardevOps::add_parsed_then(&self.reg, text, o, done);
    }
    fn option_ids(&self) -> Vec<String> {
        self.option_ids.clone()
    }
    fn add_bridge(&self, spec: &BridgeSpec) -> Result<(), BridgeError> {
        self.gate.wait();
        ChardevOps::add_bridge(&self.reg, spec)
    }
    fn remove_bridge(&self, id: &str) -> Result<(), BridgeError> {
        self.gate.wait();
        ChardevOps::remove_bridge(&self.reg, id)
    }
    fn objects(&self) -> Option<qchar_chardev::tls::ObjectStore> {
        self.gate.wait();
        ChardevOps::objects(&self.reg)
    }
}

/// QEMU's `SHUTDOWN` event data.
pub fn shutdown_data(guest: bool, reason: &str) -> Dict {
    qchar_monitor::dict! { "guest" => guest, "reason" => reason }
}

impl VmCtl {
    /// A control without machine yet (in `prelaunch`), whose commands wait
    /// for `gate`.
    pub fn new(
        events: EventBus,
        exit: Arc<ExitSignal>,
        gate: Arc<SetUpGate>,
        name: Option<String>,
    ) -> Arc<VmCtl> {
        Arc::new(VmCtl {
            guest: Mutex::new(Guest::Pending(None)),
            events,
            exit,
            gate,
            name,
        })
    }

    fn wait_set_up(&self) {
        self.gate.wait();
    }

    /// Whether the guest runs now (QEMU's `runstate_is_running`), without
    /// waiting for set-up: before it, the guest is in prelaunch.
    pub fn is_running_now(&self) -> bool {
        match &*self.lock() {
            Guest::Pending(_) => false,
            Guest::Empty(st) => *st == RunState::Running,
            Guest::Started(vm) => map_state(vm.status()) == RunState::Running,
        }
    }

    /// The machine will be made by `launcher` on the first `cont`.
    pub fn set_launcher(&self, launcher: Launcher) {
        *self.lock() = Guest::Pending(Some(launcher));
    }

    /// There is no guest (`-machine none`): in `prelaunch` if `paused`,
    /// else running.
    pub fn set_empty(&self, paused: bool) {
        *self.lock() = Guest::Empty(if paused {
            RunState::Prelaunch
        } else {
            RunState::Running
        });
    }

    /// The machine is started.
    pub fn set_started(&self, vm: VmHandle) {
        watch(&vm, &self.exit, &self.events);
        *self.lock() = Guest::Started(vm);
    }

    fn lock(&self) -> MutexGuard<'_, Guest> {
        self.guest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The machine, once started.
    pub fn handle(&self) -> Option<VmHandle> {
        match &*self.lock() {
            Guest::Started(vm) => Some(vm.clone()),
            Guest::Pending(_) | Guest::Empty(_) => None,
        }
    }

    /// Stops the vCPU for good (at exit); returns once it has.
    pub fn halt_guest(&self) {
        if let Some(vm) = self.handle() {
            vm.quit();
        }
    }

    /// Sends `SHUTDOWN` with `data`.
    pub fn emit_shutdown(&self, data: Dict) {
        self.events.emit("SHUTDOWN", Some(data));
    }
}

/// Posts the guest's end to `exit` when it comes. A KVM failure does not
/// end the process: as QEMU, qchar reports it, sends `STOP` and stays in
/// `internal-error` with its monitors working.
fn watch(vm: &VmHandle, exit: &Arc<ExitSignal>, events: &EventBus) {
    let vm = vm.clone();
    let exit = exit.clone();
    let events = events.clone();
    let spawned = std::thread::Builder::new()
        .name("qchar-guest-wait".into())
        .spawn(move || match vm.wait() {
            ExitReason::Error(e) => {
                crate::report::error(&format!("KVM internal error: {e}"));
                events.emit("STOP", None);
            }
            reason => {
                exit.post(Cause::Guest(reason));
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot watch the guest: {e}");
    }
}

/// Returns once the vCPU thread has taken up a `cont` (QEMU's `cont`
/// answers with the machine running), or after [`RESUME_WAIT`] at most.
fn wait_running(vm: &VmHandle) {
    let start = Instant::now();
    while matches!(vm.status(), MachineState::Prelaunch | MachineState::Paused)
        && start.elapsed() < RESUME_WAIT
    {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Longest `cont` waits for the vCPU thread (it is woken at once; this only
/// bounds a machine under heavy load).
const RESUME_WAIT: Duration = Duration::from_secs(1);

fn map_state(s: MachineState) -> RunState {
    match s {
        MachineState::Prelaunch => RunState::Prelaunch,
        MachineState::Running => RunState::Running,
        MachineState::Paused => RunState::Paused,
        MachineState::Shutdown => RunState::Shutdown,
        MachineState::InternalError => RunState::InternalError,
    }
}

impl VmControl for VmCtl {
    fn status(&self) -> RunState {
        self.wait_set_up();
        match &*self.lock() {
            Guest::Pending(_) => RunState::Prelaunch,
            Guest::Empty(st) => *st,
            Guest::Started(vm) => map_state(vm.status()),
        }
    }

    fn stop(&self) {
        self.wait_set_up();
        let vm = match &mut *self.lock() {
            Guest::Started(vm) => Some(vm.clone()),
            Guest::Empty(st) if *st == RunState::Running => {
                *st = RunState::Paused;
                None
            }
            Guest::Empty(_) | Guest::Pending(_) => return,
        };
        let Some(vm) = vm else {
            self.events.emit("STOP", None);
            return;
        };
        // A machine in prelaunch stays there, without an event (QEMU).
        if vm.status() == MachineState::Running && vm.pause().is_ok() {
            self.events.emit("STOP", None);
        }
    }

    fn cont(&self) -> Result<(), String> {
        self.wait_set_up();
        let mut guest = self.lock();
        match &mut *guest {
            Guest::Started(vm) => match vm.status() {
                MachineState::Running => Ok(()),
                MachineState::Shutdown | MachineState::InternalError => {
                    Err("Resetting the Virtual Machine is required".into())
                }
                MachineState::Prelaunch | MachineState::Paused => {
                    vm.resume()
                        .map_err(|_| "Resetting the Virtual Machine is required".to_string())?;
                    wait_running(vm);
                    drop(guest);
                    self.events.emit("RESUME", None);
                    Ok(())
                }
            },
            Guest::Empty(st) => {
                if *st != RunState::Running {
                    *st = RunState::Running;
                    drop(guest);
                    self.events.emit("RESUME", None);
                }
                Ok(())
            }
            Guest::Pending(launch) => {
                let launch = launch
                    .as_mut()
                    .ok_or_else(|| "the machine is not set up yet".to_string())?;
                let vm = launch()?;
                wait_running(&vm);
                watch(&vm, &self.exit, &self.events);
                *guest = Guest::Started(vm);
                drop(guest);
                self.events.emit("RESUME", None);
                Ok(())
            }
        }
    }

    fn quit(&self) {
        self.wait_set_up();
        // The reply is written after this returns; `main` waits for it
        // before the process exits.
        if !self.exit.is_posted() {
            self.emit_shutdown(shutdown_quit_data());
        }
        self.exit.post(Cause::Quit);
    }

    fn name(&self) -> Option<String> {
        self.name.clone()
    }

    fn has_cpu(&self, index: i64) -> bool {
        // One vCPU, number 0; QEMU's empty machine has none.
        index == 0 && !matches!(&*self.lock(), Guest::Empty(_))
    }
}
