//! The command line: `qemu-system-x86_64`'s options that qchar supports,
//! parsed into a [`Config`]. No I/O happens here.
//!
//! Errors QEMU reports while it parses the command line (an unknown option,
//! a missing argument, a bad `-m`) are returned at once. Errors QEMU only
//! finds while it creates chardevs, monitors and devices are kept inside the
//! requests and reported by the setup in QEMU's creation order, so that the
//! first error printed is the one QEMU would print.
//!
//! Everything qchar lacks is refused as a QEMU 7.2 built without it would
//! refuse it: an option it does not know is an `invalid option`, a device
//! model it lacks `is not a valid device model name`, a chardev backend
//! `is not a valid char driver name`, a display type `does not accept
//! value`, an accelerator `invalid accelerator`. Settings QEMU has and qchar
//! cannot honour get a qchar message that says so.

use std::collections::HashSet;

use qchar_chardev::opts::{self, ChardevOptions, OptsError, SerialTarget};
use qchar_chardev::spec::ChardevBackend;
use qchar_machine::vm::{DEFAULT_MEM_SIZE, MAX_MEM_SIZE, MIN_MEM_SIZE};

use crate::qemuopts::{self, Pair, SizeError};

/// Marks a [`Diag`] that is help to print on stdout (then an exit status).
const HELP_EXIT: &str = "\u{0}help-exit\u{0}";

/// The QEMU version qchar speaks (its monitors report the same).
pub const QEMU_VERSION: &str = "7.2.0";

// ---------------------------------------------------------------------------
// Diagnostics

/// One line of a diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `PROG: LOC: TEXT` (or `PROG: TEXT` without a location).
    Msg {
        /// The option as typed (`-chardev null`), if any.
        loc: Option<String>,
        /// The message.
        text: String,
    },
    /// A line printed as is (QEMU's hints).
    Plain(String),
}

/// An error or warning as QEMU prints it: one or more lines, the program
/// name in front of each message line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    /// The lines, in order.
    pub lines: Vec<Line>,
}

impl Diag {
    /// A one-line message at `loc`.
    pub fn at(loc: Option<&str>, text: impl Into<String>) -> Diag {
        Diag {
            lines: vec![Line::Msg {
                loc: loc.map(str::to_string),
                text: text.into(),
            }],
        }
    }

    /// Adds a message line.
    pub fn then(mut self, loc: Option<&str>, text: impl Into<String>) -> Diag {
        self.lines.push(Line::Msg {
            loc: loc.map(str::to_string),
            text: text.into(),
        });
        self
    }

    /// Adds hint lines (printed without prefix).
    pub fn hint(mut self, text: &str) -> Diag {
        self.lines
            .extend(text.lines().map(|l| Line::Plain(l.to_string())));
        self
    }

    /// Text QEMU prints on stdout before it exits with `status` (a help
    /// request): a single plain line marked as such.
    pub fn help_exit(text: &str, status: u8) -> Diag {
        Diag {
            lines: vec![Line::Plain(format!("{HELP_EXIT}{status}{text}"))],
        }
    }

    /// The help text and exit status if this is a [`Diag::help_exit`].
    pub fn help_text(&self) -> Option<(&str, i32)> {
        match self.lines.as_slice() {
            [Line::Plain(t)] => {
                let rest = t.strip_prefix(HELP_EXIT)?;
                let status = rest.get(..1)?.parse().ok()?;
                Some((&rest[1..], status))
            }
            _ => None,
        }
    }

    /// A chardev option error with QEMU's hint, at `loc`.
    pub fn opts(loc: Option<&str>, e: &OptsError) -> Diag {
        let d = Diag::at(loc, e.to_string());
        match e.hint() {
            Some(h) => d.hint(h),
            None => d,
        }
    }

    /// A warning: `PROG: LOC: warning: TEXT`, further lines of `text` plain.
    pub fn warning(loc: Option<&str>, text: &str) -> Diag {
        let mut lines = text.lines();
        let d = Diag::at(loc, format!("warning: {}", lines.next().unwrap_or("")));
        d.hint(&lines.collect::<Vec<_>>().join("\n"))
    }

    /// The text, each message line prefixed with `prog: `, each line ended
    /// with a newline.
    pub fn render(&self, prog: &str) -> String {
        let mut s = String::new();
        for l in &self.lines {
            match l {
                Line::Msg {
                    loc: Some(loc),
                    text,
                } => s.push_str(&format!("{prog}: {loc}: {text}\n")),
                Line::Msg { loc: None, text } => s.push_str(&format!("{prog}: {text}\n")),
                Line::Plain(t) => {
                    s.push_str(t);
                    s.push('\n');
                }
            }
        }
        s
    }
}

impl std::fmt::Display for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.render("qchar").trim_end())
    }
}

impl std::error::Error for Diag {}

// ---------------------------------------------------------------------------
// The configuration

/// What the command line asks for.
#[derive(Debug)]
pub enum Action {
    /// Run a machine.
    Run(Box<Config>),
    /// Print this on stdout and exit 0 (`-h`, `-version`, `-device help`...).
    Print(String),
    /// `--write-builtin-image NAME PATH` (qchar extension).
    WriteImage {
        /// Built-in image name (`demo`, `demo:N`, `irq-demo`).
        name: String,
        /// Where to write it.
        path: String,
    },
}

/// A chardev to create, in QEMU's creation order (`-chardev` and monitor
/// chardevs interleaved as on the command line, the default monitor's
/// last).
#[derive(Debug)]
pub struct ChardevReq {
    /// The option as typed; `None` for a default device.
    pub loc: Option<String>,
    /// The parsed options, or the error QEMU reports when it creates it.
    pub options: Result<ChardevOptions, Diag>,
    /// Warnings QEMU prints when it creates it (before its error, if any;
    /// each once per process): the text and the line to print.
    pub create_warnings: Vec<(String, Diag)>,
    /// `help` as the backend: the list QEMU prints on stdout, exiting 0,
    /// when it comes to create this chardev.
    pub help: Option<String>,
}

/// Monitor flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonMode {
    /// HMP (`mode=readline`, `-monitor`).
    Readline,
    /// QMP (`mode=control`, `-qmp`).
    Control,
}

/// A monitor to start, on an existing chardev.
#[derive(Debug)]
pub struct MonitorReq {
    /// The option as typed.
    pub loc: Option<String>,
    /// Chardev label, mode, or the error QEMU reports when it starts it.
    pub spec: Result<(String, MonMode), Diag>,
    /// QMP printed in QEMU's pretty style (`pretty=on`, `-qmp-pretty`).
    pub pretty: bool,
}

/// Where a serial port's chardev comes from.
// Made once per -serial: boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialSource {
    /// A new chardev (`-serial DEV`); `monitor`: also put an HMP on it
    /// (`mon:DEV`).
    New {
        /// The chardev, labelled `serialN`.
        options: ChardevOptions,
        /// HMP on the mux too.
        monitor: bool,
    },
    /// `chardev:ID`.
    Existing(String),
}

/// A `-serial` (or the default serial), in order; `none` is left out.
#[derive(Debug)]
pub struct SerialReq {
    /// The option as typed (`None` for the default serial).
    pub loc: Option<String>,
    /// The DEV string as given (QEMU quotes it in its error).
    pub dev: String,
    /// What to connect, or the error.
    pub source: Result<SerialSource, Diag>,
}

/// A `-device isa-serial,...`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IsaSerial {
    /// `chardev=` (empty: none).
    pub chardev: Option<String>,
    /// `iobase=`.
    pub iobase: Option<u32>,
    /// `irq=`.
    pub irq: Option<u32>,
    /// `index=`.
    pub index: Option<u32>,
    /// `id=`.
    pub id: Option<String>,
}

/// A `-device`.
#[derive(Debug)]
pub struct DeviceReq {
    /// The option as typed.
    pub loc: String,
    /// The device, or the error QEMU reports when it creates it.
    pub spec: Result<IsaSerial, Diag>,
    /// The driver is `isa-serial` (QEMU looks for its bus before it looks
    /// at the properties).
    pub isa_serial: bool,
}

/// Where a boot image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A raw image file.
    File(String),
    /// `builtin:NAME` (qchar extension): an embedded demo guest.
    Builtin(String),
}

/// A boot drive (`-drive`, `-fda`, `-hda`, or a bare image argument).
#[derive(Debug)]
pub struct DriveReq {
    /// The option as typed.
    pub loc: String,
    /// Image and BIOS drive number (0x00 floppy A:, 0x80 first hard disk),
    /// or the error.
    pub spec: Result<(ImageSource, u8), Diag>,
    /// QEMU's warning about a format it had to probe.
    pub probe_warning: Option<Diag>,
    /// An error QEMU reports once the image is open (an option the format
    /// does not take).
    pub after_open: Option<Diag>,
}

/// Everything to set up a run.
#[derive(Debug)]
pub struct Config {
    /// Warnings QEMU prints while parsing (deprecated spellings).
    pub warnings: Vec<Diag>,
    /// Chardevs, in creation order.
    pub chardevs: Vec<ChardevReq>,
    /// Monitors, in creation order.
    pub monitors: Vec<MonitorReq>,
    /// Serial ports from `-serial` and the default, in order.
    pub serials: Vec<SerialReq>,
    /// `-device isa-serial`, in order.
    pub devices: Vec<DeviceReq>,
    /// Boot drives, in order.
    pub drives: Vec<DriveReq>,
    /// `-m`, in bytes.
    pub mem_size: u64,
    /// `-S`.
    pub start_paused: bool,
    /// `-machine none`: QEMU's empty machine, no vCPU, no UART, no drive;
    /// `cont` and `stop` only change the run state.
    pub machine_none: bool,
    /// `-daemonize`.
    pub daemonize: bool,
    /// `-pidfile`.
    pub pidfile: Option<String>,
    /// `-name` guest name.
    pub name: Option<String>,
    /// `-name ...,process=`.
    pub process_name: Option<String>,
    /// QEMU's refusal of `-nographic` with `-daemonize` when a default
    /// device would go to stdio.
    pub nographic_daemonize: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            warnings: Vec::new(),
            chardevs: Vec::new(),
            monitors: Vec::new(),
            serials: Vec::new(),
            devices: Vec::new(),
            drives: Vec::new(),
            mem_size: DEFAULT_MEM_SIZE,
            start_paused: false,
            machine_none: false,
            daemonize: false,
            pidfile: None,
            name: None,
            process_name: None,
            nographic_daemonize: false,
        }
    }
}

// ---------------------------------------------------------------------------
// Option table

/// The options qchar knows, `(name, takes an argument)`.
const OPTIONS: &[(&str, bool)] = &[
    ("h", false),
    ("help", false),
    ("version", false),
    ("chardev", true),
    ("serial", true),
    ("parallel", true),
    ("device", true),
    ("mon", true),
    ("monitor", true),
    ("qmp", true),
    ("qmp-pretty", true),
    ("display", true),
    ("nographic", false),
    ("nodefaults", false),
    ("S", false),
    ("m", true),
    ("machine", true),
    ("M", true),
    ("enable-kvm", false),
    ("accel", true),
    ("name", true),
    ("pidfile", true),
    ("daemonize", false),
    ("drive", true),
    ("fda", true),
    ("hda", true),
    ("no-reboot", false),
];

/// Machine types accepted by `-machine` (they all mean qchar's machine).
const MACHINES: &[(&str, &str)] = &[
    (
        "pc",
        "Standard PC (alias of pc-i440fx-7.2); qchar's machine",
    ),
    ("pc-i440fx-7.2", "Standard PC (default); qchar's machine"),
    ("q35", "Standard PC (alias of pc-q35-7.2); qchar's machine"),
    ("pc-q35-7.2", "Standard PC; qchar's machine"),
    ("none", "empty machine"),
];

/// `-drive if=` values QEMU has and qchar lacks.
const OTHER_DRIVE_BUSES: &[&str] = &["none", "scsi", "sd", "mtd", "pflash", "virtio", "xen"];

/// Properties of QEMU's isa-serial that qchar does not take.
const ISA_SERIAL_OTHER_PROPS: &[&str] = &["baudbase", "wakeup"];

fn lookup(arg: &str) -> Option<(&'static str, bool)> {
    let name = arg.strip_prefix('-')?;
    let name = name.strip_prefix('-').unwrap_or(name);
    OPTIONS.iter().find(|(n, _)| *n == name).copied()
}

/// The help text (`-h`).
pub fn help_text() -> String {
    format!(
        "usage: qchar [options] [disk_image]\n\
         \n\
         qchar runs a one-vCPU KVM guest with QEMU {QEMU_VERSION}'s serial ports, chardevs\n\
         and monitors. It takes qemu-system-x86_64's spelling for every option it\n\
         supports and refuses the others. 'disk_image' is a raw boot image (hard disk).\n\
         \n\
         Options:\n\
         -h, -help                 print this help and exit\n\
         -version                  print the version and exit\n\
         -chardev BACKEND,id=ID[,...]  add a chardev (file, pty, socket, udp, pipe,\n\
         \x20                         serial, stdio, null, ringbuf, memory; mux=on)\n\
         -serial DEV               next COM port on DEV (QEMU's shorthands, chardev:ID,\n\
         \x20                         mon:DEV, none); up to four get a UART\n\
         -device isa-serial[,chardev=ID][,iobase=N][,irq=N][,index=N][,id=ID]\n\
         \x20                         a 16550A UART\n\
         -mon [chardev=]ID[,mode=readline|control][,pretty=on|off]  a monitor on chardev ID\n\
         -monitor DEV              HMP monitor on DEV (chardev compat_monitorN)\n\
         -qmp DEV                  QMP monitor on DEV (chardev compat_monitorN)\n\
         -qmp-pretty DEV           the same, printing pretty JSON\n\
         -nographic                serial port and HMP monitor muxed on stdio\n\
         -nodefaults               no default serial port and monitor\n\
         -display none             the only display type (no display)\n\
         -S                        wait in prelaunch for QMP/HMP 'cont'\n\
         -m [size=]SIZE            guest RAM (default unit MiB; default 128M)\n\
         -machine/-M TYPE[,accel=kvm]  pc, q35 (qchar's machine) or none (no guest)\n\
         -enable-kvm, -accel kvm   KVM (the only accelerator)\n\
         -name NAME[,process=P][,debug-threads=on|off]\n\
         -pidfile FILE             write the process id to FILE (removed at exit)\n\
         -daemonize                detach once set up\n\
         -no-reboot                accepted: qchar never reboots the guest\n\
         -parallel none            accepted: qchar has no parallel port\n\
         -drive file=IMG[,format=raw][,if=floppy|ide][,index=0]  boot image\n\
         -fda IMG, -hda IMG        boot image as floppy (DL=0) / hard disk (DL=0x80)\n\
         \n\
         qchar extensions:\n\
         file=builtin:NAME         a built-in guest as image: demo (counts forever),\n\
         \x20                         demo:N (stops after line N), irq-demo\n\
         --write-builtin-image NAME PATH  write a built-in guest image to PATH\n\
         \n\
         The machine loads the boot image at 0000:7c00 and jumps there (no BIOS).\n\
         Ctrl-a h on a mux (-nographic) lists its keys; Ctrl-a x quits.\n\
         QCHAR_LOG=info|debug|trace in the environment shows more on stderr.\n"
    )
}

/// The version text (`-version`).
pub fn version_text() -> String {
    format!(
        "QEMU emulator version {QEMU_VERSION} (qchar {})\n\
         qchar: QEMU-compatible chardevs, serial ports and monitors on KVM\n",
        env!("CARGO_PKG_VERSION")
    )
}

fn machine_help() -> String {
    let mut s = String::from("Supported machines are:\n");
    for (name, desc) in MACHINES {
        s.push_str(&format!("{name:<20} {desc}\n"));
    }
    s
}

fn isa_serial_help() -> String {
    "isa-serial options:\n\
     \x20 chardev=<str>          - ID of a chardev to use as a backend\n\
     \x20 index=<uint32>         -  (default: 4294967295)\n\
     \x20 iobase=<uint32>        -  (default: 4294967295)\n\
     \x20 irq=<uint32>           -  (default: 4294967295)\n"
        .to_string()
}

// ---------------------------------------------------------------------------
// Parsing

/// State while scanning argv.
struct Scan {
    cfg: Config,
    has_defaults: bool,
    default_serial: bool,
    default_monitor: bool,
    default_parallel: bool,
    nographic: bool,
    monitor_index: usize,
    mon_ids: HashSet<String>,
    device_ids: HashSet<String>,
    /// Ids of `-chardev` options (QEMU refuses a second one while parsing).
    chardev_ids: HashSet<String>,
    /// `-serial` strings in order, with their location.
    serial_args: Vec<(Option<String>, String)>,
}

/// Parses the arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Action, Diag> {
    if let Some(first) = args.first() {
        if first == "-write-builtin-image" || first == "--write-builtin-image" {
            return match args {
                [_, name, path] => Ok(Action::WriteImage {
                    name: name.clone(),
                    path: path.clone(),
                }),
                _ => Err(Diag::at(
                    Some(first),
                    "expects two arguments: NAME PATH (NAME: demo, demo:N, irq-demo)",
                )),
            };
        }
    }
    let mut s = Scan {
        cfg: Config::default(),
        has_defaults: true,
        default_serial: true,
        default_monitor: true,
        default_parallel: true,
        nographic: false,
        monitor_index: 0,
        mon_ids: HashSet::new(),
        device_ids: HashSet::new(),
        chardev_ids: HashSet::new(),
        serial_args: Vec::new(),
    };
    // QEMU prints warnings as it reads the options: those before an error
    // come out before it.
    let scanned = (|| -> Result<Option<Action>, Diag> {
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if !arg.starts_with('-') {
                s.drive_image(arg, arg, 0x80);
                continue;
            }
            let Some((name, has_arg)) = lookup(arg) else {
                return Err(Diag::at(None, format!("{arg}: invalid option")));
            };
            let value = if has_arg {
                let Some(v) = args.get(i) else {
                    return Err(Diag::at(None, format!("{arg}: requires an argument")));
                };
                i += 1;
                v.as_str()
            } else {
                ""
            };
            let loc = format!("{arg} {value}");
            match name {
                "h" | "help" => return Ok(Some(Action::Print(help_text()))),
                "version" => return Ok(Some(Action::Print(version_text()))),
                "chardev" => s.chardev(&loc, value)?,
                "serial" => {
                    s.default_serial = false;
                    if value.starts_with("mon:") {
                        s.default_monitor = false;
                    }
                    s.serial_args.push((Some(loc), value.to_string()));
                }
                "parallel" => {
                    s.default_parallel = false;
                    if value != "none" {
                        return Err(Diag::at(
                            Some(&loc),
                            "qchar has no parallel port (only -parallel none is accepted)",
                        ));
                    }
                }
                "device" => {
                    if let Some(text) = s.device(&loc, value)? {
                        return Ok(Some(Action::Print(text)));
                    }
                }
                "mon" => s.mon(&loc, value)?,
                "monitor" => {
                    s.default_monitor = false;
                    if !value.starts_with("none") {
                        s.monitor_parse(Some(&loc), value, MonMode::Readline)?;
                    }
                }
                "qmp" | "qmp-pretty" => {
                    s.default_monitor = false;
                    s.monitor_parse(Some(&loc), value, MonMode::Control)?;
                    if name == "qmp-pretty" {
                        if let Some(m) = s.cfg.monitors.last_mut() {
                            m.pretty = true;
                        }
                    }
                }
                "display" => {
                    if let Some(text) = display(&loc, value)? {
                        return Ok(Some(Action::Print(text)));
                    }
                }
                "nographic" => s.nographic = true,
                "nodefaults" => s.has_defaults = false,
                "S" => s.cfg.start_paused = true,
                "m" => s.cfg.mem_size = mem_size(&loc, value, &mut s.cfg.warnings)?,
                "machine" | "M" => {
                    if let Some(text) = machine(&loc, value, &mut s.cfg.machine_none)? {
                        return Ok(Some(Action::Print(text)));
                    }
                }
                "enable-kvm" | "no-reboot" => {}
                "accel" => {
                    if let Some(text) = accel(&loc, value)? {
                        return Ok(Some(Action::Print(text)));
                    }
                }
                "name" => s.name(&loc, value)?,
                "pidfile" => s.cfg.pidfile = Some(value.to_string()),
                "daemonize" => s.cfg.daemonize = true,
                "drive" => s.drive(&loc, value),
                "fda" => s.drive_image(&loc, value, 0x00),
                "hda" => s.drive_image(&loc, value, 0x80),
                _ => unreachable!("option table and match disagree: {name}"),
            }
        }
        Ok(None)
    })();
    match scanned {
        Err(d) => {
            let mut lines: Vec<Line> = s
                .cfg
                .warnings
                .iter()
                .flat_map(|w| w.lines.clone())
                .collect();
            lines.extend(d.lines);
            return Err(Diag { lines });
        }
        Ok(Some(a)) => return Ok(a),
        Ok(None) => {}
    }
    s.finish();
    Ok(Action::Run(Box::new(s.cfg)))
}

impl Scan {
    /// `-chardev`: what QEMU's option parser refuses (the id, keys, typed
    /// values) fails the command line at once; the rest when the chardev
    /// is created.
    fn chardev(&mut self, loc: &str, value: &str) -> Result<(), Diag> {
        if let Some(id) = opts::option_id(value) {
            if qemuopts::is_identifier(&id) && !self.chardev_ids.insert(id.clone()) {
                return Err(Diag::at(
                    Some(loc),
                    format!("Duplicate ID '{id}' for chardev"),
                ));
            }
        }
        let r = opts::parse_chardev_reporting(value);
        for w in r.parse_warnings {
            self.cfg.warnings.push(Diag::warning(Some(loc), &w));
        }
        let create_warnings = r
            .create_warnings
            .iter()
            .map(|w| (w.clone(), Diag::warning(Some(loc), w)))
            .collect();
        let mut help = None;
        let options = match r.result {
            Ok(o) => Ok(o),
            Err(e) if e.is_parse_error() => return Err(Diag::opts(Some(loc), &e)),
            // A bare `help` key: QEMU's option parser prints the keys and
            // exits.
            Err(e @ OptsError::OptionHelp) => return Err(Diag::help_exit(&e.to_string(), 1)),
            // `help` as the backend: printed when the chardev would be made.
            Err(e @ OptsError::BackendHelp) => {
                help = Some(format!("{e}\n"));
                Err(Diag::opts(Some(loc), &e))
            }
            Err(e) => Err(Diag::opts(Some(loc), &e)),
        };
        self.cfg.chardevs.push(ChardevReq {
            loc: Some(loc.to_string()),
            options,
            create_warnings,
            help,
        });
        Ok(())
    }

    /// `-monitor DEV` / `-qmp DEV` (and the default monitor): a chardev
    /// `compat_monitorN` unless DEV is `chardev:ID`, and a monitor on it.
    fn monitor_parse(&mut self, loc: Option<&str>, dev: &str, mode: MonMode) -> Result<(), Diag> {
        let label = if let Some(id) = dev.strip_prefix("chardev:") {
            // The id names the monitor's options too: QEMU checks it first.
            if !qemuopts::is_identifier(id) {
                return Err(Diag::at(loc, "Parameter 'id' expects an identifier"));
            }
            id.to_string()
        } else {
            let label = format!("compat_monitor{}", self.monitor_index);
            let options = match opts::parse_serial_shorthand(dev, &label) {
                Ok(SerialTarget::New { options, .. }) => Ok(options),
                // QEMU names the device string after a `mon:` prefix.
                Ok(SerialTarget::None) | Err(OptsError::CompatUnknown(_)) => {
                    let name = dev.strip_prefix("mon:").unwrap_or(dev);
                    return Err(
                        Diag::at(loc, format!("'{name}' is not a valid char driver"))
                            .then(loc, format!("parse error: {dev}")),
                    );
                }
                Ok(SerialTarget::Existing(_)) | Err(OptsError::CompatSyntax(_)) => {
                    return Err(Diag::at(loc, format!("parse error: {dev}")));
                }
                // The trailing options' parser failed: QEMU stops at once.
                Err(e) if e.is_parse_error() => {
                    return Err(Diag::opts(loc, &e).then(loc, format!("parse error: {dev}")));
                }
                Err(e) => Err(Diag::opts(loc, &e)),
            };
            self.cfg.chardevs.push(ChardevReq {
                loc: loc.map(str::to_string),
                options,
                create_warnings: Vec::new(),
                help: None,
            });
            label
        };
        self.monitor_index += 1;
        if !self.mon_ids.insert(label.clone()) {
            return Err(Diag::at(loc, format!("Duplicate ID '{label}' for mon")));
        }
        self.cfg.monitors.push(MonitorReq {
            loc: loc.map(str::to_string),
            spec: Ok((label, mode)),
            pretty: false,
        });
        Ok(())
    }

    /// `-mon [chardev=]ID[,mode=...][,pretty=...][,id=...]`.
    fn mon(&mut self, loc: &str, value: &str) -> Result<(), Diag> {
        self.default_monitor = false;
        let mut chardev = None;
        let mut mode = Ok(MonMode::Readline);
        let mut pretty = false;
        let mut id = None;
        let pairs = qemuopts::split(value, Some("chardev"));
        // QEMU's option parser takes the first id, checks it before any
        // other key, and skips later ones.
        if let Some(p) = pairs.iter().find(|p| p.key == "id") {
            if !qemuopts::is_identifier(&p.value) {
                return Err(Diag::at(Some(loc), "Parameter 'id' expects an identifier")
                    .hint(qemuopts::IDENTIFIER_HINT));
            }
            id = Some(p.value.clone());
        }
        for p in pairs {
            if p.short_form {
                self.cfg
                    .warnings
                    .push(Diag::warning(Some(loc), &qemuopts::short_form_warning(&p)));
            }
            match p.key.as_str() {
                "chardev" => chardev = Some(p.value),
                "mode" => {
                    mode = match p.value.as_str() {
                        "readline" => Ok(MonMode::Readline),
                        "control" => Ok(MonMode::Control),
                        other => Err(Diag::at(
                            Some(loc),
                            format!("Parameter 'mode' does not accept value '{other}'"),
                        )),
                    }
                }
                "pretty" => {
                    pretty = qemuopts::parse_bool(&p.value).ok_or_else(|| {
                        Diag::at(Some(loc), "Parameter 'pretty' expects 'on' or 'off'")
                    })?
                }
                "id" => {}
                other => return Err(Diag::at(Some(loc), format!("Invalid parameter '{other}'"))),
            }
        }
        if let Some(id) = &id {
            if !self.mon_ids.insert(id.clone()) {
                return Err(Diag::at(Some(loc), format!("Duplicate ID '{id}' for mon")));
            }
        }
        let spec = match (chardev, mode) {
            (_, Err(e)) => Err(e),
            (None, _) => Err(Diag::at(Some(loc), "Parameter 'chardev' is missing")),
            // `pretty` on HMP is refused once the chardev is found (setup).
            (Some(c), Ok(m)) => Ok((c, m)),
        };
        self.cfg.monitors.push(MonitorReq {
            loc: Some(loc.to_string()),
            spec,
            pretty,
        });
        Ok(())
    }

    /// `-device DRIVER,...`: only `isa-serial`. Returns help text to print.
    fn device(&mut self, loc: &str, value: &str) -> Result<Option<String>, Diag> {
        let pairs = qemuopts::split(value, Some("driver"));
        let driver = pairs
            .iter()
            .find(|p| p.key == "driver")
            .map(|p| p.value.clone());
        if matches!(driver.as_deref(), Some("help") | Some("?")) {
            return Ok(Some(
                "Input devices:\nname \"isa-serial\", bus ISA\n".into(),
            ));
        }
        if driver.as_deref() == Some("isa-serial") {
            self.default_serial = false;
            if pairs.iter().any(|p| p.key == "help") {
                return Ok(Some(isa_serial_help()));
            }
        }
        let spec = match driver.as_deref() {
            None => Err(Diag::at(Some(loc), "Parameter 'driver' is missing")),
            Some("isa-serial") => self.isa_serial(loc, &pairs),
            Some(other) => Err(Diag::at(
                Some(loc),
                format!("'{other}' is not a valid device model name"),
            )),
        };
        self.cfg.devices.push(DeviceReq {
            loc: loc.to_string(),
            spec,
            isa_serial: driver.as_deref() == Some("isa-serial"),
        });
        Ok(None)
    }

    fn isa_serial(&mut self, loc: &str, pairs: &[Pair]) -> Result<IsaSerial, Diag> {
        let mut d = IsaSerial::default();
        let at = |t: String| Diag::at(Some(loc), t);
        let u32_prop = |p: &Pair| -> Result<u32, Diag> {
            let v = qemuopts::parse_c_u64(&p.value)
                .ok_or_else(|| at(format!("Parameter '{}' expects integer", p.key)))?;
            u32::try_from(v).map_err(|_| at(format!("Parameter '{}' expects uint32_t", p.key)))
        };
        for p in pairs {
            match p.key.as_str() {
                "driver" => {}
                "chardev" => d.chardev = Some(p.value.clone()).filter(|c| !c.is_empty()),
                "iobase" => d.iobase = Some(u32_prop(p)?),
                "irq" => d.irq = Some(u32_prop(p)?),
                "index" => d.index = Some(u32_prop(p)?),
                "id" => {
                    if !qemuopts::is_identifier(&p.value) {
                        return Err(at("Parameter 'id' expects an identifier".into())
                            .hint(qemuopts::IDENTIFIER_HINT));
                    }
                    if !self.device_ids.insert(p.value.clone()) {
                        return Err(at(format!("Duplicate ID '{}' for device", p.value)));
                    }
                    d.id = Some(p.value.clone());
                }
                "bus" => {
                    if p.value.starts_with("pci") {
                        return Err(at("Device 'isa-serial' can't go on PCI bus".into()));
                    }
                    if p.value != "isa.0" {
                        return Err(at(format!("Bus '{}' not found", p.value)));
                    }
                }
                "baudbase" if qemuopts::parse_c_u64(&p.value) == Some(115_200) => {}
                "wakeup" if qemuopts::parse_bool(&p.value) == Some(false) => {}
                k if ISA_SERIAL_OTHER_PROPS.contains(&k) => {
                    return Err(at(format!(
                        "qchar does not support isa-serial property '{k}={}'",
                        p.value
                    )))
                }
                k => return Err(at(format!("Property 'isa-serial.{k}' not found"))),
            }
        }
        Ok(d)
    }

    /// `-drive file=...`.
    fn drive(&mut self, loc: &str, value: &str) {
        let mut file = None;
        let mut format = None;
        let mut bus = "ide".to_string();
        let mut index = 0u64;
        let mut problem = None;
        let mut late = None;
        for p in qemuopts::split(value, None) {
            let err = |t: String| Some(Diag::at(Some(loc), t));
            match p.key.as_str() {
                "file" => file = Some(p.value),
                "format" => format = Some(p.value),
                "if" => bus = p.value,
                "index" => match qemuopts::parse_c_u64(&p.value) {
                    Some(n) => index = n,
                    None => problem = problem.or(err("Parameter 'index' expects a number".into())),
                },
                "media" if p.value == "disk" => {}
                "media" => {
                    problem = problem.or(err(format!(
                        "qchar does not support media={} (boot images are disks)",
                        p.value
                    )))
                }
                "readonly" | "snapshot" => {
                    if qemuopts::parse_bool(&p.value).is_none() {
                        problem =
                            problem.or(err(format!("Parameter '{}' expects 'on' or 'off'", p.key)));
                    }
                }
                "id" => {}
                // QEMU opens the image before it finds options the format
                // does not take.
                k => {
                    late = late.or(err(format!(
                        "Block format 'raw' does not support the option '{k}'"
                    )))
                }
            }
        }
        if let Some(f) = format.as_deref().filter(|f| *f != "raw") {
            late = late.or(Some(Diag::at(
                Some(loc),
                format!("qchar supports format=raw only, not format={f}"),
            )));
        }
        let spec = (|| {
            if let Some(p) = problem {
                return Err(p);
            }
            let drive = match bus.as_str() {
                "floppy" if index < 2 => index as u8,
                "floppy" => {
                    return Err(Diag::at(
                        Some(loc),
                        format!("machine type does not support if=floppy,bus=0,unit={index}"),
                    ))
                }
                "ide" if index < 4 => 0x80 + index as u8,
                "ide" => {
                    return Err(Diag::at(
                        Some(loc),
                        format!(
                            "machine type does not support if=ide,bus={},unit={}",
                            index / 2,
                            index % 2
                        ),
                    ))
                }
                b if OTHER_DRIVE_BUSES.contains(&b) => {
                    return Err(Diag::at(
                        Some(loc),
                        format!("qchar supports if=floppy and if=ide only, not if={b}"),
                    ))
                }
                b => return Err(Diag::at(Some(loc), format!("unsupported bus type '{b}'"))),
            };
            if drive != 0x00 && drive != 0x80 {
                return Err(Diag::at(
                    Some(loc),
                    "qchar boots the first floppy or the first hard disk only (index=0)",
                ));
            }
            let Some(file) = file.clone() else {
                return Err(Diag::at(
                    Some(loc),
                    "A block device must be specified for \"file\"",
                ));
            };
            Ok((image_source(&file), drive))
        })();
        let probe_warning = match (&spec, &format) {
            (Ok((ImageSource::File(f), _)), None) => Some(probe_warning(f)),
            _ => None,
        };
        self.cfg.drives.push(DriveReq {
            loc: loc.to_string(),
            spec,
            probe_warning,
            after_open: late,
        });
    }

    /// `-fda IMG`, `-hda IMG`, or a bare image argument.
    fn drive_image(&mut self, loc: &str, file: &str, drive: u8) {
        let source = image_source(file);
        let probe_warning = match &source {
            ImageSource::File(f) => Some(probe_warning(f)),
            ImageSource::Builtin(_) => None,
        };
        self.cfg.drives.push(DriveReq {
            loc: loc.to_string(),
            spec: Ok((source, drive)),
            probe_warning,
            after_open: None,
        });
    }

    /// `-name [guest=]NAME[,process=P][,debug-threads=on|off]`.
    fn name(&mut self, loc: &str, value: &str) -> Result<(), Diag> {
        for p in qemuopts::split(value, Some("guest")) {
            match p.key.as_str() {
                "guest" => self.cfg.name = Some(p.value),
                "process" => self.cfg.process_name = Some(p.value),
                "debug-threads" => {
                    // qchar's threads always carry names.
                    qemuopts::parse_bool(&p.value).ok_or_else(|| {
                        Diag::at(Some(loc), "Parameter 'debug-threads' expects 'on' or 'off'")
                    })?;
                }
                other => return Err(Diag::at(Some(loc), format!("Invalid parameter '{other}'"))),
            }
        }
        Ok(())
    }

    /// After the scan: the defaults QEMU adds, serial labels.
    fn finish(&mut self) {
        if !self.has_defaults {
            self.default_serial = false;
            self.default_monitor = false;
            self.default_parallel = false;
        }
        self.cfg.nographic_daemonize = self.cfg.daemonize
            && self.nographic
            && (self.default_parallel || self.default_serial || self.default_monitor);
        // Without a display QEMU puts the defaults on `vc` consoles that
        // nobody sees; qchar has no `vc` and uses `null` instead.
        if self.nographic {
            if self.default_serial && self.default_monitor {
                self.serial_args.push((None, "mon:stdio".into()));
            } else {
                if self.default_serial {
                    self.serial_args.push((None, "stdio".into()));
                }
                if self.default_monitor {
                    // Cannot fail: "stdio" parses.
                    let _ = self.monitor_parse(None, "stdio", MonMode::Readline);
                }
            }
        } else {
            if self.default_serial {
                self.serial_args.push((None, "null".into()));
            }
            if self.default_monitor {
                let _ = self.monitor_parse(None, "null", MonMode::Readline);
            }
        }
        let mut n = 0;
        for (loc, dev) in std::mem::take(&mut self.serial_args) {
            if dev == "none" {
                continue;
            }
            let label = format!("serial{n}");
            n += 1;
            let l = loc.as_deref();
            let connect = format!("could not connect serial device to character backend '{dev}'");
            let source = match opts::parse_serial_shorthand(&dev, &label) {
                Ok(SerialTarget::New { options, monitor }) => {
                    Ok(SerialSource::New { options, monitor })
                }
                Ok(SerialTarget::Existing(id)) => Ok(SerialSource::Existing(id)),
                Ok(SerialTarget::None) => unreachable!("'none' is skipped above"),
                Err(OptsError::CompatUnknown(name)) => {
                    Err(Diag::at(l, format!("'{name}' is not a valid char driver"))
                        .then(l, connect))
                }
                Err(OptsError::CompatSyntax(_)) => Err(Diag::at(l, connect)),
                Err(e) => Err(Diag::opts(l, &e).then(l, connect)),
            };
            self.cfg.serials.push(SerialReq { loc, dev, source });
        }
    }
}

fn image_source(file: &str) -> ImageSource {
    match file.strip_prefix("builtin:") {
        Some(name) => ImageSource::Builtin(name.to_string()),
        None => ImageSource::File(file.to_string()),
    }
}

/// QEMU's warning for an image whose format was not given.
fn probe_warning(file: &str) -> Diag {
    Diag {
        lines: vec![
            Line::Plain(format!(
                "WARNING: Image format was not specified for '{file}' and probing guessed raw."
            )),
            Line::Plain("         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.".into()),
            Line::Plain("         Specify the 'raw' format explicitly to remove the restrictions.".into()),
        ],
    }
}

/// `-m [size=]SIZE[,slots=N][,maxmem=SIZE]`.
fn mem_size(loc: &str, value: &str, warnings: &mut Vec<Diag>) -> Result<u64, Diag> {
    let mut size = None;
    for p in qemuopts::split(value, Some("size")) {
        match p.key.as_str() {
            "size" => size = Some(p.value),
            "slots" | "maxmem" => {
                return Err(Diag::at(
                    Some(loc),
                    format!("qchar does not support memory hotplug ({}=)", p.key),
                ))
            }
            other => return Err(Diag::at(Some(loc), format!("Invalid parameter '{other}'"))),
        }
    }
    let Some(size) = size else {
        return Ok(DEFAULT_MEM_SIZE);
    };
    let bad = |e: SizeError| match e {
        SizeError::Invalid => Diag::at(
            Some(loc),
            "Parameter 'size' expects a non-negative number below 2^64",
        )
        .hint(qemuopts::SIZE_HINT),
        SizeError::TooLarge => Diag::at(
            Some(loc),
            format!("Value '{size}' is out of range for parameter 'size'"),
        ),
    };
    // Checked as a size in bytes first, then, as QEMU does with a bare
    // number, read again in MiB.
    qemuopts::parse_size(&size, 'B').map_err(bad)?;
    let (bytes, warning) = if size.ends_with(|c: char| c.is_ascii_digit()) {
        qemuopts::parse_size(&format!("{size}M"), 'B').map_err(bad)?
    } else {
        qemuopts::parse_size(&size, 'B').map_err(bad)?
    };
    if let Some(w) = warning {
        warnings.push(Diag::warning(None, &w));
    }
    if bytes == 0 {
        return Ok(DEFAULT_MEM_SIZE);
    }
    if !(MIN_MEM_SIZE..=MAX_MEM_SIZE).contains(&bytes) {
        return Err(Diag::at(
            Some(loc),
            format!("qchar supports 1M to 3G of guest memory, not {bytes} bytes"),
        ));
    }
    Ok(bytes)
}

/// `-display TYPE`: `none` only. Returns help text to print.
fn display(loc: &str, value: &str) -> Result<Option<String>, Diag> {
    let pairs = qemuopts::split(value, Some("type"));
    match pairs.first() {
        Some(p) if p.key == "type" && (p.value == "help" || p.value == "?") => {
            return Ok(Some("Available display backend types:\nnone\n".into()))
        }
        Some(p) if p.key == "type" && p.value == "none" => {}
        Some(p) if p.key == "type" => {
            return Err(Diag::at(
                Some(loc),
                format!("Parameter 'type' does not accept value '{}'", p.value),
            ))
        }
        _ => return Err(Diag::at(Some(loc), "Parameter 'type' is missing")),
    }
    if let Some(p) = pairs.get(1) {
        return Err(Diag::at(
            Some(loc),
            format!("Parameter '{}' is unexpected", p.key),
        ));
    }
    Ok(None)
}

/// Whether an accelerator list (`kvm`, `kvm:tcg`) is usable: the first
/// entry QEMU could initialise must be kvm.
fn accel_list_ok(list: &str) -> Result<(), String> {
    match list.split(':').next() {
        Some("kvm") => Ok(()),
        Some(other) => Err(format!("invalid accelerator {other}")),
        None => Err("invalid accelerator ".into()),
    }
}

/// `-machine [type=]NAME[,accel=kvm]`; sets `none` (the last type given
/// counts). Returns help text to print.
fn machine(loc: &str, value: &str, none: &mut bool) -> Result<Option<String>, Diag> {
    for p in qemuopts::split(value, Some("type")) {
        match p.key.as_str() {
            "type" if p.value == "help" || p.value == "?" => return Ok(Some(machine_help())),
            "type" => {
                if !MACHINES.iter().any(|(m, _)| *m == p.value) {
                    return Err(Diag::at(None, "unsupported machine type")
                        .hint("Use -machine help to list supported machines"));
                }
                *none = p.value == "none";
            }
            "accel" => accel_list_ok(&p.value).map_err(|e| Diag::at(Some(loc), e))?,
            "help" => return Ok(Some(machine_help())),
            other => {
                return Err(Diag::at(
                    Some(loc),
                    format!("qchar does not support machine property '{other}'"),
                ))
            }
        }
    }
    Ok(None)
}

/// `-accel [accel=]kvm`. Returns help text to print.
fn accel(loc: &str, value: &str) -> Result<Option<String>, Diag> {
    for p in qemuopts::split(value, Some("accel")) {
        match p.key.as_str() {
            "accel" if p.value == "help" || p.value == "?" => {
                return Ok(Some("Accelerators supported in QEMU binary:\nkvm\n".into()))
            }
            "accel" => {
                if p.value != "kvm" {
                    return Err(Diag::at(
                        Some(loc),
                        format!("invalid accelerator {}", p.value),
                    ));
                }
            }
            other => {
                return Err(Diag::at(
                    Some(loc),
                    format!("qchar does not support accelerator property '{other}'"),
                ))
            }
        }
    }
    Ok(None)
}

/// Whether a chardev's backend (under a mux too) is stdio.
pub fn uses_stdio(o: &ChardevOptions) -> bool {
    matches!(o.backend, ChardevBackend::Stdio(_))
}

#[cfg(test)]
mod tests;
