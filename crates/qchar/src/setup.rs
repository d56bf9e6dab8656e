//! From a [`Config`] to a running process: the chardev registry, the
//! machine and its serial ports, the monitors. Steps run in the order QEMU
//! 7.2 creates the same things, so the first failure is the one QEMU would
//! report, worded as QEMU words it:
//!
//! 0. the `-object`s (TLS credentials, authorization), in order;
//! 1. `-chardev` chardevs and the chardevs of `-monitor`/`-qmp`, in command
//!    line order (the default monitor's last);
//! 2. the boot image;
//! 3. the machine (KVM);
//! 4. the monitors (`-mon`, `-monitor`, `-qmp`, default): their chardevs
//!    are taken now, their handlers registered at step 7, and their
//!    commands wait for the end of set-up (QEMU answers none before);
//! 5. the `-serial` chardevs (`mon:` ones get their HMP now);
//! 6. the UARTs: one per `-serial` up to four (COM1..COM4), then every
//!    `-device isa-serial`;
//! 7. the vCPU starts (in `prelaunch` with `-S`).
//!
//! `-machine none` makes no guest: steps 2, 3 and 6 do nothing (a drive or
//! an `isa-serial` is refused, as by QEMU's `none` machine) and KVM is
//! never opened; the chardevs, bridges and monitors work as ever: qchar is
//! a console server. `-object x-bridge` bridges are made right after step 1.
//!
//! Without `/dev/kvm` (or without a boot image) `-S` still gives working
//! monitors and UARTs; the machine is made by `cont`, which fails with the
//! reason until it can be.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use qchar_chardev::opts::ChardevOptions;
use qchar_chardev::registry::RegistryEvent;
use qchar_chardev::{CharFrontend, ChardevError, Registry};
use qchar_machine::bus::PioBus;
use qchar_machine::serial::ChardevSink;
use qchar_machine::uart::{ControlReply, NoIrq, SerialControl, SerialSink, UartError, UART_PORTS};
use qchar_machine::vm::{BOOT_ADDR, BOOT_IMAGE_LIMIT, MAX_ISA_IRQ};
use qchar_machine::{
    guest, ComPort, ExitReason, Machine, MachineConfig, SerialPort, VmError, VmHandle,
};
use qchar_monitor::event::EventBus;
use qchar_monitor::hmp::HmpMonitor;
use qchar_monitor::qmp::{monitor::forward_registry_events, QmpEnv, QmpMonitor, QmpOptions};
use qchar_monitor::vm::shutdown_quit_data;

use crate::cli::{
    uses_stdio, Config, Diag, ImageSource, IsaSerial, Line, MonMode, PrintAndExit, SerialSource,
};
use crate::report;
use crate::vmctl::{shutdown_data, Cause, ExitSignal, GatedChardevs, Launcher, SetUpGate, VmCtl};
use crate::web::WebCtl;

/// Most ISA serial ports (QEMU's `MAX_ISA_SERIAL_PORTS`).
const MAX_ISA_SERIAL: usize = 4;

/// A set-up process.
pub struct Running {
    /// The chardevs.
    pub reg: Registry,
    /// The guest, as the monitors see it.
    pub vmctl: Arc<VmCtl>,
    /// Where the reasons to exit arrive.
    pub exit: Arc<ExitSignal>,
    /// The web console (`-x-web`, QMP `x-web-start`).
    pub web: Arc<WebCtl>,
    /// The monitors, kept for the life of the process.
    _monitors: Vec<Monitor>,
    /// UARTs made without a machine (`-S` without KVM or image), kept too.
    _placeholders: Vec<Arc<SerialPort>>,
}

/// A started monitor (held, never looked at: it lives on its chardev).
#[allow(dead_code)]
pub enum Monitor {
    /// QMP.
    Qmp(QmpMonitor),
    /// HMP.
    Hmp(HmpMonitor),
}

/// A serial port to put on the machine.
struct PortPlan {
    loc: Option<String>,
    port: ComPort,
    fe: Option<CharFrontend>,
}

/// A serial sink for a UART without chardev (`-device isa-serial` without
/// `chardev=`): output is dropped, there is never input.
struct NullSink;

impl SerialSink for NullSink {
    fn write(&self, data: &[u8]) -> usize {
        data.len()
    }
    fn control(&self, _request: SerialControl) -> Result<ControlReply, UartError> {
        Ok(ControlReply::Unsupported)
    }
    fn accept_input(&self) {}
}

fn diag(loc: Option<&str>, text: impl Into<String>) -> anyhow::Error {
    Diag::at(loc, text).into()
}

/// Opens a chardev from parsed options (with `mux=on`: `ID-base` and the
/// mux `ID`), printing QEMU's pty line.
fn add_chardev(reg: &Registry, o: &ChardevOptions, loc: Option<&str>) -> Result<(), ChardevError> {
    report::set_location(loc);
    let r = reg.add_options(o);
    report::set_location(None);
    let ret = r?;
    if let Some(pty) = ret.pty {
        let label = if o.mux {
            format!("{}-base", o.id)
        } else {
            o.id.clone()
        };
        // On stdout, as QEMU 7.2 prints it.
        println!("char device redirected to {pty} (label {label})");
    }
    Ok(())
}

/// The boot image, read (or taken from the built-ins) and cut to what the
/// real-mode load area holds.
fn load_image(cfg: &Config) -> Result<Option<(Vec<u8>, u8)>> {
    let mut found: Option<(Vec<u8>, u8)> = None;
    for d in &cfg.drives {
        let (source, drive) = d.spec.clone()?;
        let loc = Some(d.loc.as_str());
        let mut image = match &source {
            ImageSource::File(path) => std::fs::read(path).map_err(|e| {
                diag(
                    loc,
                    format!(
                        "Could not open '{path}': {}",
                        qchar_chardev::error::os_message(&e)
                    ),
                )
            })?,
            ImageSource::Builtin(name) => guest::builtin_image(name).ok_or_else(|| {
                diag(
                    loc,
                    format!("unknown built-in image '{name}' (built-ins: demo, demo:N, irq-demo)"),
                )
            })?,
        };
        if let Some(e) = &d.after_open {
            return Err(e.clone().into());
        }
        if let Some(w) = &d.probe_warning {
            report::print(w);
        }
        if cfg.machine_none {
            // QEMU's empty machine has no floppy controller; its IDE
            // drives are made and left unused.
            if drive < 0x80 {
                return Err(diag(
                    loc,
                    format!("machine type does not support if=floppy,bus=0,unit={drive}"),
                ));
            }
            continue;
        }
        if found.is_some() {
            return Err(diag(
                loc,
                "qchar boots a single drive and has no other disks",
            ));
        }
        if image.is_empty() {
            return Err(diag(loc, "the image is empty"));
        }
        // A BIOS would load one sector; the machine loads what fits below
        // 0x9fc00, so larger images (a padded floppy) are cut.
        image.truncate((BOOT_IMAGE_LIMIT - BOOT_ADDR) as usize);
        found = Some((image, drive));
    }
    Ok(found)
}

/// QEMU's two lines for a missing `/dev/kvm`.
fn kvm_diag(e: &VmError) -> Diag {
    let reason = match e {
        VmError::KvmUnavailable(k) => {
            qchar_chardev::error::os_message(&std::io::Error::from_raw_os_error(k.errno()))
        }
        other => other.to_string(),
    };
    Diag {
        lines: vec![
            Line::Plain(format!("Could not access KVM kernel module: {reason}")),
            Line::Msg {
                loc: None,
                text: format!("failed to initialize kvm: {reason}"),
            },
        ],
    }
}

/// What `cont` says when KVM is missing.
fn kvm_cont_error(e: &VmError) -> String {
    match e {
        VmError::KvmUnavailable(k) => format!(
            "Could not access KVM kernel module (/dev/kvm): {}",
            qchar_chardev::error::os_message(&std::io::Error::from_raw_os_error(k.errno()))
        ),
        other => other.to_string(),
    }
}

const NO_IMAGE: &str = "no boot image: qchar has no BIOS; give a raw boot sector with \
-drive file=IMG,format=raw,if=floppy, -fda IMG or -hda IMG (file=builtin:demo for the demo guest)";

/// Builds a machine, loads `image`, puts the ports on it and starts it.
fn build_machine(
    mcfg: MachineConfig,
    image: &[u8],
    ports: &[PortPlan],
) -> Result<VmHandle, (Option<String>, VmError)> {
    let mut m = Machine::new(mcfg).map_err(|e| (None, e))?;
    m.load_boot_image(image).map_err(|e| (None, e))?;
    for p in ports {
        let r = match &p.fe {
            Some(fe) => m.add_serial_chardev(p.port, fe.clone()),
            None => m.add_serial(p.port, Arc::new(NullSink)),
        };
        r.map_err(|e| (p.loc.clone(), e))?;
    }
    m.start().map_err(|e| (None, e))
}

/// Sets everything up; `set_members` go into the descriptor sets first.
/// Errors are [`Diag`]s where QEMU has a text.
pub fn setup(
    cfg: &Config,
    exit: Arc<ExitSignal>,
    set_members: Vec<crate::fds::SetMember>,
) -> Result<Running> {
    if cfg.nographic_daemonize {
        return Err(diag(None, "-nographic cannot be used with -daemonize"));
    }
    let reg = Registry::new().context("cannot start the chardev I/O thread")?;
    // `-chardev socket,fd=N` takes descriptors the parent passed, never one
    // of qchar's own.
    reg.set_fd_numbers(qchar_chardev::fdpass::FdNumbers::Inherited);
    for m in set_members {
        // A set id is never negative here: `-add-fd` checked it.
        let _ = reg.fdsets().add_fd(m.fd, Some(m.set), m.opaque);
    }
    // Nothing is read until set-up is over (QEMU's main loop has not started
    // either): a key typed meanwhile, Ctrl-a c on the -nographic mux, then
    // meets the monitor and the serial port both registered, the serial
    // port (the last) holding the focus.
    let _input = reg.hold_input();
    let events = EventBus::new();
    forward_registry_events(&reg, events.clone());
    {
        // Ctrl-a x on a mux: QEMU 7.2 reports it as a QMP quit.
        let events = events.clone();
        let exit = exit.clone();
        reg.subscribe(move |ev| {
            if let RegistryEvent::QuitRequested(_) = ev {
                if !exit.is_posted() {
                    events.emit("SHUTDOWN", Some(shutdown_quit_data()));
                }
                exit.post(Cause::Quit);
            }
        });
    }
    // The monitors' view of the guest: in prelaunch until the machine
    // starts (or, without one, until `cont` makes it).
    let gate = Arc::new(SetUpGate::default());
    let vmctl = VmCtl::new(events.clone(), exit.clone(), gate.clone(), cfg.name.clone());
    {
        // Descriptor sets close members only while the guest runs.
        let vm = Arc::downgrade(&vmctl);
        reg.fdsets()
            .set_running_probe(move || vm.upgrade().is_some_and(|v| v.is_running_now()));
    }
    let web = WebCtl::new(&reg);
    match setup_on(cfg, &reg, &events, (&exit, &gate), &vmctl, &web) {
        Ok(r) => {
            // Signals go to `main`'s teardown (QEMU's SHUTDOWN event) from
            // before the first input is read: a client that got an answer
            // knows a signal now ends qchar in order.
            crate::process::setup_done();
            Ok(r)
        }
        Err(e) => {
            // A monitor command waiting for set-up must not hold the I/O
            // thread that shutdown joins.
            gate.open();
            reg.shutdown();
            Err(e)
        }
    }
}

fn setup_on(
    cfg: &Config,
    reg: &Registry,
    events: &EventBus,
    (exit, gate): (&Arc<ExitSignal>, &Arc<SetUpGate>),
    vmctl: &Arc<VmCtl>,
    web: &Arc<WebCtl>,
) -> Result<Running> {
    // 0. Objects (TLS credentials, authorization), before the chardevs
    // that name them; QEMU reports their errors without a location.
    for o in &cfg.objects {
        reg.objects()
            .add(o)
            .map_err(|e| diag(None, e.to_string()))?;
    }

    // 1. Chardevs.
    let monitor_labels: Vec<&str> = cfg
        .monitors
        .iter()
        .filter_map(|m| m.spec.as_ref().ok().map(|(label, _)| label.as_str()))
        .collect();
    for c in &cfg.chardevs {
        let loc = c.loc.as_deref();
        for (text, w) in &c.create_warnings {
            if qchar_chardev::opts::warn_once(text) {
                report::print(w);
            }
        }
        if let Some(text) = &c.help {
            return Err(PrintAndExit {
                text: text.clone(),
                status: 0,
            }
            .into());
        }
        let mut o = c.options.clone()?;
        if monitor_labels.contains(&o.id.as_str()) {
            monitor_on_loopback(&mut o.backend);
        }
        if cfg.daemonize && uses_stdio(&o) {
            return Err(diag(loc, "cannot use stdio with -daemonize"));
        }
        add_chardev(reg, &o, loc).map_err(|e| diag(loc, e.to_string()))?;
        note_mux(web, &o);
    }
    // 1b. Bridges (`-object x-bridge`), which need their chardevs, as QEMU
    // creates objects that depend on chardevs after them; reported, as
    // QEMU reports objects, without a location.
    for b in &cfg.bridges {
        reg.add_bridge(b).map_err(|e| diag(None, e.to_string()))?;
    }

    // 2. Boot image (`-machine none` has no floppy; its IDE drives go unused).
    let image = load_image(cfg)?;

    // 3. Machine.
    let boot_drive = image.as_ref().map(|(_, d)| *d).unwrap_or(0);
    let mcfg = MachineConfig {
        mem_size: cfg.mem_size,
        boot_drive,
        start_paused: cfg.start_paused,
    };
    let mut machine = None;
    let mut pending_reason: Option<String> = None;
    match &image {
        None if cfg.machine_none => {}
        // Reported when the machine would start (QEMU would boot its BIOS
        // and report the later problems first).
        None => pending_reason = Some(NO_IMAGE.to_string()),
        Some(_) => match Machine::new(mcfg) {
            Ok(m) => machine = Some(m),
            Err(e @ VmError::KvmUnavailable(_)) if cfg.start_paused => {
                pending_reason = Some(kvm_cont_error(&e));
            }
            Err(e @ VmError::KvmUnavailable(_)) => return Err(kvm_diag(&e).into()),
            Err(e) => return Err(diag(None, e.to_string())),
        },
    }
    if let (Some(m), Some((img, _))) = (machine.as_mut(), &image) {
        m.load_boot_image(img)
            .map_err(|e| diag(cfg.drives.first().map(|d| d.loc.as_str()), e.to_string()))?;
    }

    let env = Arc::new(QmpEnv {
        chardevs: Arc::new(GatedChardevs {
            reg: reg.clone(),
            gate: gate.clone(),
            option_ids: cfg
                .chardevs
                .iter()
                .filter_map(|c| c.options.as_ref().ok().map(|o| o.id.clone()))
                .collect(),
        }),
        vm: vmctl.clone(),
        version: Default::default(),
        events: events.clone(),
        web: Some(web.clone()),
    });

    // 4. Monitors. Their frontends are attached now (a chardev in use is
    // refused here, and a mux orders its users by it), their handlers only
    // once everything exists: QEMU answers no monitor before its set-up is
    // complete either.
    let mut monitor_fes: Vec<(CharFrontend, MonMode, bool)> = Vec::new();
    for m in &cfg.monitors {
        let loc = m.loc.as_deref();
        let (label, mode) = m.spec.clone()?;
        if !reg.contains(&label) {
            return Err(diag(loc, format!("chardev \"{label}\" not found")));
        }
        if m.pretty && mode == MonMode::Readline {
            return Err(diag(loc, "'pretty' is not compatible with HMP monitors"));
        }
        let fe = reg.attach(&label).map_err(|e| diag(loc, e.to_string()))?;
        restrict_monitor_socket(reg, &label);
        web.note_frontend(
            &label,
            match mode {
                MonMode::Control => "QMP monitor",
                MonMode::Readline => "HMP monitor",
            },
        );
        monitor_fes.push((fe, mode, m.pretty));
    }

    // 5. Serial chardevs.
    // (option, chardev, index among the -serial options)
    let mut serial_hds: Vec<(Option<String>, String, usize)> = Vec::new();
    for s in &cfg.serials {
        let loc = s.loc.as_deref();
        let connect = format!(
            "could not connect serial device to character backend '{}'",
            s.dev
        );
        match s.source.clone()? {
            SerialSource::New {
                mut options,
                monitor,
            } => {
                if monitor {
                    monitor_on_loopback(&mut options.backend);
                }
                if cfg.daemonize && uses_stdio(&options) {
                    return Err(Diag::at(loc, "cannot use stdio with -daemonize")
                        .then(loc, connect)
                        .into());
                }
                add_chardev(reg, &options, loc)
                    .map_err(|e| Diag::at(loc, e.to_string()).then(loc, connect.clone()))?;
                note_mux(web, &options);
                if monitor {
                    let fe = reg
                        .attach(&options.id)
                        .map_err(|e| diag(loc, e.to_string()))?;
                    web.note_frontend(&options.id, "HMP monitor");
                    monitor_fes.push((fe, MonMode::Readline, false));
                }
                serial_hds.push((s.loc.clone(), options.id.clone(), s.index));
            }
            SerialSource::Existing(id) => {
                if !reg.contains(&id) {
                    return Err(diag(loc, connect));
                }
                serial_hds.push((s.loc.clone(), id, s.index));
            }
        }
    }

    // 6. UARTs (none on `-machine none`: its serial chardevs stay free).
    let mut ports = Vec::new();
    let mut isa_index = 0usize;
    // QEMU's empty machine leaves the serial chardevs without a device.
    let serial_uarts = if cfg.machine_none { 0 } else { MAX_ISA_SERIAL };
    // As QEMU's: the serial at index N (a `-serial none` holds its index)
    // is COM(N+1); `-device isa-serial` without an index then counts on
    // from the number of ports made.
    for (loc, id, index) in serial_hds.iter().filter(|s| s.2 < serial_uarts) {
        let fe = reg
            .attach(id)
            .map_err(|e| diag(loc.as_deref(), e.to_string()))?;
        let port = ComPort::standard(*index).expect("index below MAX_ISA_SERIAL");
        web.note_frontend(id, &format!("isa-serial COM{}", index + 1));
        isa_index += 1;
        ports.push(PortPlan {
            loc: loc.clone(),
            port,
            fe: Some(fe),
        });
    }
    for d in &cfg.devices {
        let loc = Some(d.loc.as_str());
        if cfg.machine_none && d.isa_serial {
            return Err(diag(loc, "No 'ISA' bus found for device 'isa-serial'"));
        }
        let spec: IsaSerial = d.spec.clone()?;
        let index = spec.index.map(|i| i as usize).unwrap_or(isa_index);
        if index >= MAX_ISA_SERIAL {
            return Err(diag(
                loc,
                format!("Max. supported number of ISA serial ports is {MAX_ISA_SERIAL}."),
            ));
        }
        let std = ComPort::standard(index).expect("index checked");
        let iobase = spec.iobase.unwrap_or(u32::from(std.iobase));
        let irq = spec.irq.unwrap_or(std.irq);
        if iobase + u32::from(UART_PORTS) > 0x1_0000 {
            return Err(diag(
                loc,
                format!("iobase {iobase:#x} is out of range: the UART needs 8 ports below 0x10000"),
            ));
        }
        if irq > MAX_ISA_IRQ {
            return Err(diag(
                loc,
                format!("irq {irq} is out of range: ISA IRQs are 0..={MAX_ISA_IRQ}"),
            ));
        }
        isa_index += 1;
        let fe = match &spec.chardev {
            None => None,
            Some(id) if !reg.contains(id) => {
                return Err(diag(
                    loc,
                    format!("Property 'serial.chardev' can't find value '{id}'"),
                ))
            }
            Some(id) => {
                let fe = reg.attach(id).map_err(|e| {
                    diag(
                        loc,
                        format!("Property 'serial.chardev' can't take value '{id}': {e}"),
                    )
                })?;
                web.note_frontend(id, &format!("isa-serial {iobase:#x}"));
                Some(fe)
            }
        };
        ports.push(PortPlan {
            loc: d.loc.clone().into(),
            port: ComPort::new(iobase as u16, irq),
            fe,
        });
    }

    // The web console (qchar extension), before anything runs.
    if let Some(opts) = &cfg.web {
        web.start_with(opts).map_err(|e| diag(None, e))?;
    }

    // 7. Start: the monitors take their chardevs first (on a mux the last
    // user to register has the focus: the serial port, as in QEMU).
    let monitors: Vec<Monitor> = monitor_fes
        .into_iter()
        .map(|(fe, mode, pretty)| match mode {
            MonMode::Readline => Monitor::Hmp(HmpMonitor::on_frontend(fe, env.clone())),
            MonMode::Control => Monitor::Qmp(QmpMonitor::on_frontend(
                fe,
                env.clone(),
                QmpOptions {
                    pretty,
                    ..QmpOptions::default()
                },
            )),
        })
        .collect();
    let mut placeholders = Vec::new();
    match machine {
        None if cfg.machine_none => vmctl.set_empty(cfg.start_paused),
        Some(mut m) => {
            for p in &ports {
                let r = match &p.fe {
                    Some(fe) => m.add_serial_chardev(p.port, fe.clone()),
                    None => m.add_serial(p.port, Arc::new(NullSink)),
                };
                r.map_err(|e| diag(p.loc.as_deref(), e.to_string()))?;
            }
            let vm = m.start().map_err(|e| diag(None, e.to_string()))?;
            vmctl.set_started(vm);
        }
        None if !cfg.start_paused => {
            return Err(diag(None, pending_reason.unwrap_or_default()));
        }
        None => {
            // UARTs that work (input, output, hotswap) while the machine
            // does not exist yet; `cont` builds the machine around the same
            // frontends.
            let mut bus = PioBus::new();
            for p in &ports {
                let sink: Arc<dyn SerialSink> = match &p.fe {
                    Some(fe) => Arc::new(ChardevSink::new(fe.clone())),
                    None => Arc::new(NullSink),
                };
                let sp = Arc::new(SerialPort::new(p.port, sink, Arc::new(NoIrq)));
                bus.insert(p.port.iobase, UART_PORTS, sp.clone())
                    .map_err(|e| diag(p.loc.as_deref(), e.to_string()))?;
                if let Some(fe) = &p.fe {
                    sp.attach_frontend(fe);
                }
                placeholders.push(sp);
            }
            let reason = pending_reason.unwrap_or_default();
            let image = image.map(|(i, _)| i);
            let launcher: Launcher = Box::new(move || {
                let Some(image) = &image else {
                    return Err(reason.clone());
                };
                let mcfg = MachineConfig {
                    start_paused: false,
                    ..mcfg
                };
                build_machine(mcfg, image, &ports).map_err(|(_, e)| match e {
                    e @ VmError::KvmUnavailable(_) => kvm_cont_error(&e),
                    e => e.to_string(),
                })
            });
            vmctl.set_launcher(launcher);
        }
    }
    gate.open();
    Ok(Running {
        reg: reg.clone(),
        vmctl: vmctl.clone(),
        exit: exit.clone(),
        web: web.clone(),
        _monitors: monitors,
        _placeholders: placeholders,
    })
}

/// Tells the web console that mux chardev `ID` uses `ID-base`.
fn note_mux(web: &WebCtl, o: &ChardevOptions) {
    if o.mux {
        web.note_frontend(&format!("{}-base", o.id), &format!("mux {}", o.id));
    }
}

/// Ends the process in order after `cause`: QEMU's message and `SHUTDOWN`
/// event, the vCPU stopped, output (a monitor's last reply, the guest's last
/// line) flushed as far as peers take it, backends closed (the terminal
/// restored), the pid file removed. Returns the exit status.
pub fn teardown(running: Running, cause: Cause) -> i32 {
    match &cause {
        Cause::Signal { signo, pid } => {
            report::error(&crate::process::signal_message(*signo, *pid));
            running
                .vmctl
                .emit_shutdown(shutdown_data(false, "host-signal"));
        }
        Cause::Quit => {}
        Cause::Guest(ExitReason::Halted) => running
            .vmctl
            .emit_shutdown(shutdown_data(true, "guest-shutdown")),
        Cause::Guest(ExitReason::GuestShutdown) => running
            .vmctl
            .emit_shutdown(shutdown_data(true, "guest-reset")),
        Cause::Guest(_) => {}
    }
    running.vmctl.halt_guest();
    running.web.shutdown();
    drain(&running.reg);
    running.reg.shutdown();
    crate::process::remove_pidfile();
    0
}

/// Waits until every chardev's queued output has left, as long as it keeps
/// leaving: gives up after [`DRAIN_STALL`] without progress or
/// [`DRAIN_MAX`] in all (a peer that does not read).
fn drain(reg: &Registry) {
    // A monitor's handler that is running (the `quit` being answered) queues
    // its reply before this returns.
    let _ = reg.sync();
    let start = Instant::now();
    let mut best = u64::MAX;
    let mut since = start;
    loop {
        let queued: u64 = reg
            .ids()
            .iter()
            .filter_map(|id| reg.stats(id))
            .map(|s| s.queued)
            .sum();
        if queued == 0 {
            return;
        }
        let now = Instant::now();
        if queued < best {
            best = queued;
            since = now;
        }
        if now - since > DRAIN_STALL || now - start > DRAIN_MAX {
            log::debug!("exiting with {queued} bytes of output not taken");
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How long output may make no progress before the exit stops waiting.
const DRAIN_STALL: Duration = Duration::from_millis(500);
/// Longest wait for output at exit.
const DRAIN_MAX: Duration = Duration::from_secs(5);

/// A monitor listening on a unix socket file answers its owner only: the
/// file is made mode 0600 (QEMU leaves it to the umask). Whoever wants
/// others in can widen it after start-up.
fn restrict_monitor_socket(reg: &Registry, label: &str) {
    use qchar_chardev::spec::{ChardevBackend, SocketAddressLegacy};
    use std::os::unix::fs::PermissionsExt;
    let Some(ChardevBackend::Socket(s)) = reg.backend_spec(label) else {
        return;
    };
    let SocketAddressLegacy::Unix(u) = &s.addr else {
        return;
    };
    if s.server != Some(true) || u.abstract_ == Some(true) {
        return;
    }
    if let Err(e) = std::fs::set_permissions(&u.path, std::fs::Permissions::from_mode(0o600)) {
        eprintln!(
            "qchar: cannot make monitor socket '{}' owner-only: {e}",
            u.path
        );
    }
}

/// A monitor's TCP server given no host (`-qmp tcp::4444,server=on`)
/// listens on loopback only, where QEMU listens on every address: a
/// monitor controls the machine. Naming a host (`tcp:0.0.0.0:4444`) asks
/// for something else and gets it.
fn monitor_on_loopback(spec: &mut qchar_chardev::spec::ChardevBackend) {
    use qchar_chardev::spec::{ChardevBackend, SocketAddressLegacy};
    let ChardevBackend::Socket(s) = spec else {
        return;
    };
    let SocketAddressLegacy::Inet(i) = &mut s.addr else {
        return;
    };
    if s.server != Some(true) || !i.host.is_empty() {
        return;
    }
    let v6_only = i.ipv6 == Some(true) && i.ipv4 != Some(true);
    i.host = if v6_only { "::1" } else { "127.0.0.1" }.to_string();
}
