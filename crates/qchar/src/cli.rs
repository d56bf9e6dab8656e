//! The command line: `qemu-system-x86_64`'s options that qchar supports,
//! parsed into a [`Config`]. No I/O happens here.
//!
//! Errors QEMU reports while it parses the command line (an unknown option,
//! a missing argument, an option string its QemuOpts or keyval parser
//! refuses, a duplicate id) are returned at once, after the warnings QEMU
//! printed up to there. Errors QEMU only finds while it creates chardevs,
//! monitors and devices are kept inside the requests and reported by the
//! setup in QEMU's creation order, so that the first error printed is the
//! one QEMU would print. Option strings are read with
//! `qchar_chardev::qemuopts`, which `-chardev` shares.
//!
//! Everything qchar lacks is refused as a QEMU 7.2 built without it would
//! refuse it: an option it does not know is an `invalid option`, a device
//! model it lacks `is not a valid device model name`, a chardev backend
//! `is not a valid char driver name`, a display type `does not accept
//! value`, an accelerator `invalid accelerator`. Settings QEMU has and qchar
//! cannot honour get a qchar message that says so.

use std::collections::HashSet;

use qchar_chardev::bridge::{self, BridgeSpec};
use qchar_chardev::opts::{self, ChardevOptions, OptsError, SerialTarget};
use qchar_chardev::qemuopts::{
    self, KeyvalItem, OptDesc, OptType, OptsList, QemuOpts, QemuOptsError,
};
use qchar_chardev::spec::ChardevBackend;
use qchar_chardev::tls::object::{IMPLEMENTED_TYPES, OBJECT_OPTS};
use qchar_chardev::tls::{ObjectError, ObjectOptions};
use qchar_machine::vm::{DEFAULT_MEM_SIZE, MAX_MEM_SIZE, MIN_MEM_SIZE};

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

    /// A chardev option error with QEMU's hint, at `loc`.
    pub fn opts(loc: Option<&str>, e: &OptsError) -> Diag {
        let d = Diag::at(loc, e.to_string());
        match e.hint() {
            Some(h) => d.hint(h),
            None => d,
        }
    }

    /// An option-string error with QEMU's hint, at `loc`.
    pub fn qemuopts(loc: Option<&str>, e: &QemuOptsError) -> Diag {
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
    /// Print `warnings` on stderr, `text` on stdout, and exit with
    /// `status`: a help request inside an option string
    /// (`-chardev null,id=c,help`, `-mon c,help`: status 1, as in QEMU), or
    /// [`Action::Print`] after options that warned.
    PrintAfterWarnings {
        /// The warnings QEMU printed before (short-form booleans...).
        warnings: Vec<Diag>,
        /// What to print.
        text: String,
        /// The exit status.
        status: i32,
    },
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

/// One `-add-fd fd=N,set=M[,opaque=S]`, as parsed (QEMU checks the
/// values once the command line is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddFdReq {
    /// The option as typed.
    pub loc: String,
    /// `fd=`, as QEMU reads it into an `int`.
    pub fd: Option<i32>,
    /// `set=`.
    pub set: Option<i64>,
    /// `opaque=`.
    pub opaque: Option<String>,
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

/// A `-serial` (or the default serial), in order; `none` is left out but
/// keeps its place, as in QEMU: `-serial none -serial X` makes X `serial1`,
/// on COM2.
#[derive(Debug)]
pub struct SerialReq {
    /// Its place among the `-serial` options (`none` counted): the N of
    /// `serialN` and of its UART.
    pub index: usize,
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

/// What QEMU prints on standard output, then exiting with `status`, when
/// it comes to create something that asks for help (`-chardev help`): the
/// set-up stops with it as its error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintAndExit {
    /// What to print.
    pub text: String,
    /// The exit status.
    pub status: i32,
}

impl std::fmt::Display for PrintAndExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for PrintAndExit {}

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
    /// `-object`s, in order: read while parsing, created by the setup
    /// before any chardev (as QEMU does), with errors without location.
    pub objects: Vec<ObjectOptions>,
    /// Chardevs, in creation order.
    pub chardevs: Vec<ChardevReq>,
    /// `-object x-bridge`s, in order: created once the chardevs exist.
    pub bridges: Vec<BridgeSpec>,
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
    /// `-add-fd`, in order.
    pub add_fds: Vec<AddFdReq>,
    /// `-x-web` (qchar extension): the web console.
    pub web: Option<qchar_web::WebOptions>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            warnings: Vec::new(),
            objects: Vec::new(),
            chardevs: Vec::new(),
            bridges: Vec::new(),
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
            add_fds: Vec::new(),
            web: None,
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
    ("object", true),
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
    ("add-fd", true),
    ("x-web", true),
];

/// Machine types accepted by `-machine` (all but `none` mean qchar's
/// machine).
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

// The QemuOpts lists of QEMU's options that qchar reads itself (`-chardev`
// has its own, `qchar_chardev::opts::CHARDEV_OPTS`). `-machine` and
// `-display` are keyval strings in QEMU 7.2, not QemuOpts.

/// `-mon`.
static MON_OPTS: OptsList = OptsList {
    name: "mon",
    implied: Some("chardev"),
    merge_lists: false,
    desc: Some(&[
        OptDesc::new("mode", OptType::String),
        OptDesc::new("chardev", OptType::String),
        OptDesc::new("pretty", OptType::Bool),
    ]),
};

/// `-add-fd`.
static ADD_FD_OPTS: OptsList = OptsList {
    name: "add-fd",
    implied: None,
    merge_lists: false,
    desc: Some(&[
        OptDesc::with_help(
            "fd",
            OptType::Number,
            "file descriptor of which a duplicate is added to fd set",
        ),
        OptDesc::with_help("set", OptType::Number, "ID of the fd set to add fd to"),
        OptDesc::with_help(
            "opaque",
            OptType::String,
            "free-form string used to describe fd",
        ),
    ]),
};

/// `-name`.
static NAME_OPTS: OptsList = OptsList {
    name: "name",
    implied: Some("guest"),
    merge_lists: true,
    desc: Some(&[
        OptDesc::with_help("guest", OptType::String, "the guest's name"),
        OptDesc::with_help(
            "process",
            OptType::String,
            "the process name (as top shows it)",
        ),
        OptDesc::with_help(
            "debug-threads",
            OptType::Bool,
            "accepted; qchar always names its threads",
        ),
    ]),
};

/// `-m`.
static MEMORY_OPTS: OptsList = OptsList {
    name: "memory",
    implied: Some("size"),
    merge_lists: true,
    desc: Some(&[
        OptDesc::new("size", OptType::Size),
        OptDesc::new("slots", OptType::Number),
        OptDesc::new("maxmem", OptType::Size),
    ]),
};

/// `-device`: any key at first; the device checks its properties later.
static DEVICE_OPTS: OptsList = OptsList {
    name: "device",
    implied: Some("driver"),
    merge_lists: false,
    desc: None,
};

/// `-drive`: any key, and no implied key.
static DRIVE_OPTS: OptsList = OptsList {
    name: "drive",
    implied: None,
    merge_lists: false,
    desc: None,
};

/// `-x-web` (qchar extension).
static WEB_OPTS: OptsList = OptsList {
    name: "x-web",
    implied: Some("port"),
    merge_lists: true,
    desc: Some(&[
        OptDesc::with_help(
            "host",
            OptType::String,
            "address to listen on (default: 127.0.0.1)",
        ),
        OptDesc::with_help("port", OptType::Number, "TCP port (0: any free one)"),
        OptDesc::with_help(
            "token",
            OptType::String,
            "the token every page needs (default: a random one, printed on stderr)",
        ),
        OptDesc::with_help(
            "tls-creds",
            OptType::String,
            "ID of a tls-creds-x509 object (endpoint=server): HTTPS; with verify-peer=on a client certificate instead of the token",
        ),
        OptDesc::with_help(
            "tls-authz",
            OptType::String,
            "ID of an authz-simple or authz-list object: only client certificates whose DN it allows (needs verify-peer=on)",
        ),
    ]),
};

/// `-accel`.
static ACCEL_OPTS: OptsList = OptsList {
    name: "accel",
    implied: Some("accel"),
    merge_lists: false,
    desc: None,
};

/// One argument after QEMU's first pass: an image, or an option's name
/// and value (empty without one).
type Arg<'a> = (&'a str, Option<(&'static str, &'a str)>);

/// QEMU's first pass over argv, before any option is acted on: every
/// option must exist and have its argument.
fn first_pass(args: &[String]) -> Result<Vec<Arg<'_>>, Diag> {
    let mut out = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if !arg.starts_with('-') {
            out.push((arg.as_str(), None));
            continue;
        }
        let Some((name, has_arg)) = lookup(arg) else {
            return Err(Diag::at(None, format!("{arg}: invalid option")));
        };
        let value = if has_arg {
            rest.next()
                .ok_or_else(|| Diag::at(None, format!("{arg}: requires an argument")))?
        } else {
            ""
        };
        out.push((arg.as_str(), Some((name, value))));
    }
    Ok(out)
}

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
         -object TYPE,id=ID[,...]  tls-creds-x509, tls-creds-psk, authz-simple, authz-list\n\
         \x20                         (or QEMU's JSON form -object '{{\"qom-type\":...}}')\n\
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
         -machine/-M TYPE[,accel=kvm]  pc, q35 (the same machine); none: no guest,\n\
         \x20                         no KVM, qchar serves its chardevs (a console server)\n\
         -enable-kvm, -accel kvm   KVM (the only accelerator)\n\
         -name NAME[,process=P][,debug-threads=on|off]\n\
         -pidfile FILE             write the process id to FILE (removed at exit)\n\
         -daemonize                detach once set up\n\
         -add-fd fd=N,set=M[,opaque=S]  put inherited descriptor N into fd set M\n\
         \x20                         (chardevs open it as /dev/fdset/M)\n\
         -no-reboot                accepted: qchar never reboots the guest\n\
         -parallel none            accepted: qchar has no parallel port\n\
         -drive file=IMG[,format=raw][,if=floppy|ide][,index=0]  boot image\n\
         -fda IMG, -hda IMG        boot image as floppy (DL=0) / hard disk (DL=0x80)\n\
         \n\
         qchar extensions:\n\
         file=builtin:NAME         a built-in guest as image: demo (counts forever),\n\
         \x20                         demo:N (stops after line N), irq-demo\n\
         --write-builtin-image NAME PATH  write a built-in guest image to PATH\n\
         -object x-bridge,id=ID,chardev-a=A,chardev-b=B  join two chardevs byte for byte\n\
         -chardev hub,id=ID,chardevs.0=A[,chardevs.1=B...]  one frontend, up to 4 chardevs\n\
         logfile options: x-logsize=SIZE, x-logkeep=N, x-logtimestamp=on\n\
         -x-web [host=H,]port=P[,token=T][,tls-creds=ID][,tls-authz=ID]  a web console: every chardev\n\
         \x20                         in a browser terminal; listens on loopback unless\n\
         \x20                         given a host; the URL with its token is printed on\n\
         \x20                         stderr; tls-creds: HTTPS, and with verify-peer=on a\n\
         \x20                         client certificate instead of the token, and with\n\
         \x20                         tls-authz only one whose DN that object allows\n\
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

/// `-object help`.
fn object_types_help() -> String {
    let mut s = String::from("List of user creatable objects:\n");
    for t in IMPLEMENTED_TYPES.iter().chain([&bridge::BRIDGE_TYPE]) {
        s.push_str(&format!("  {t}\n"));
    }
    s
}

/// `-object TYPE,help`.
fn object_props_help(ty: &str) -> String {
    let props: &[&str] = match ty {
        "tls-creds-x509" => &[
            "  dir=<string>",
            "  endpoint=<QCryptoTLSCredsEndpoint>",
            "  passwordid=<string>",
            "  priority=<string>",
            "  sanity-check=<bool>",
            "  verify-peer=<bool>",
        ],
        "tls-creds-psk" => &[
            "  dir=<string>",
            "  endpoint=<QCryptoTLSCredsEndpoint>",
            "  priority=<string>",
            "  username=<string>",
            "  verify-peer=<bool>",
        ],
        "authz-simple" => &["  identity=<string>"],
        "authz-list" => &["  policy=<QAuthZListPolicy>", "  rules=<QAuthZListRule>"],
        "x-bridge" => &["  chardev-a=<string>", "  chardev-b=<string>"],
        _ => return object_types_help(),
    };
    format!("{ty} options:\n{}\n", props.join("\n"))
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
    /// The warnings QEMU prints while it reads the command line (a copy of
    /// those in `cfg.warnings`): printed before an error that stops the
    /// scan.
    early_warnings: Vec<Diag>,
    has_defaults: bool,
    default_serial: bool,
    default_monitor: bool,
    default_parallel: bool,
    nographic: bool,
    monitor_index: usize,
    /// Ids in QEMU's option lists, for its "Duplicate ID" errors.
    mon_ids: HashSet<String>,
    object_ids: HashSet<String>,
    chardev_ids: HashSet<String>,
    device_ids: HashSet<String>,
    drive_ids: HashSet<String>,
    /// `-serial` strings in order, with their location.
    serial_args: Vec<(Option<String>, String)>,
}

/// Why the scan of the command line stops early.
enum Stop {
    /// An error, printed (after the warnings so far) with status 1.
    Error(Diag),
    /// Something to print instead of running.
    Action(Action),
    /// An option list's help text (stdout, status 1).
    Help(String),
}

/// Which of QEMU's option lists an id is checked in.
#[derive(Debug, Clone, Copy)]
enum IdList {
    Object,
    Chardev,
    Mon,
    Device,
    Drive,
}

impl From<Diag> for Stop {
    fn from(d: Diag) -> Stop {
        Stop::Error(d)
    }
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
        early_warnings: Vec::new(),
        has_defaults: true,
        default_serial: true,
        default_monitor: true,
        default_parallel: true,
        nographic: false,
        monitor_index: 0,
        mon_ids: HashSet::new(),
        object_ids: HashSet::new(),
        chardev_ids: HashSet::new(),
        device_ids: HashSet::new(),
        drive_ids: HashSet::new(),
        serial_args: Vec::new(),
    };
    match s.scan(args) {
        Ok(()) => {}
        Err(Stop::Action(Action::Print(text))) if !s.early_warnings.is_empty() => {
            return Ok(Action::PrintAfterWarnings {
                warnings: s.early_warnings,
                text,
                status: 0,
            })
        }
        Err(Stop::Action(a)) => return Ok(a),
        Err(Stop::Help(text)) => {
            return Ok(Action::PrintAfterWarnings {
                warnings: s.early_warnings,
                text,
                status: 1,
            })
        }
        Err(Stop::Error(d)) => {
            // QEMU has printed its warnings as it went.
            let mut lines: Vec<Line> = s.early_warnings.into_iter().flat_map(|w| w.lines).collect();
            lines.extend(d.lines);
            return Err(Diag { lines });
        }
    }
    s.finish();
    Ok(Action::Run(Box::new(s.cfg)))
}

impl Scan {
    /// Reads argv up to its end or the first option that stops it.
    fn scan(&mut self, args: &[String]) -> Result<(), Stop> {
        for (arg, option) in first_pass(args)? {
            let Some((name, value)) = option else {
                self.drive_image(arg, arg, 0x80);
                continue;
            };
            let loc = format!("{arg} {value}");
            let print = |text: String| Err(Stop::Action(Action::Print(text)));
            match name {
                "h" | "help" => return print(help_text()),
                "version" => return print(version_text()),
                "object" => {
                    if let Some(text) = self.object(&loc, value)? {
                        return print(text);
                    }
                }
                "chardev" => self.chardev(&loc, value)?,
                "serial" => {
                    self.default_serial = false;
                    if value.starts_with("mon:") {
                        self.default_monitor = false;
                    }
                    self.serial_args.push((Some(loc), value.to_string()));
                }
                "parallel" => {
                    self.default_parallel = false;
                    if value != "none" {
                        return Err(Diag::at(
                            Some(&loc),
                            "qchar has no parallel port (only -parallel none is accepted)",
                        )
                        .into());
                    }
                }
                "device" => {
                    if let Some(text) = self.device(&loc, value)? {
                        return print(text);
                    }
                }
                "mon" => self.mon(&loc, value)?,
                "monitor" => {
                    self.default_monitor = false;
                    if !value.starts_with("none") {
                        self.monitor_parse(Some(&loc), value, MonMode::Readline)?;
                    }
                }
                "qmp" | "qmp-pretty" => {
                    self.default_monitor = false;
                    self.monitor_parse(Some(&loc), value, MonMode::Control)?;
                    if name == "qmp-pretty" {
                        if let Some(m) = self.cfg.monitors.last_mut() {
                            m.pretty = true;
                        }
                    }
                }
                "display" => {
                    if let Some(text) = display(&loc, value)? {
                        return print(text);
                    }
                }
                "nographic" => self.nographic = true,
                "nodefaults" => self.has_defaults = false,
                "S" => self.cfg.start_paused = true,
                "m" => self.cfg.mem_size = self.mem_size(&loc, value)?,
                "machine" | "M" => {
                    if let Some(text) = machine(&loc, value, &mut self.cfg.machine_none)? {
                        return print(text);
                    }
                }
                "enable-kvm" | "no-reboot" => {}
                "accel" => {
                    if let Some(text) = self.accel(&loc, value)? {
                        return print(text);
                    }
                }
                "name" => self.name(&loc, value)?,
                "add-fd" => {
                    let o = self.read_opts(&loc, &ADD_FD_OPTS, value, None)?;
                    // QEMU reads both as unsigned 64-bit numbers into an
                    // `int` and an `int64_t`.
                    self.cfg.add_fds.push(AddFdReq {
                        loc: loc.clone(),
                        fd: o.get_number("fd").map(|n| n as i32),
                        set: o.get_number("set").map(|n| n as i64),
                        opaque: o.get("opaque").map(str::to_string),
                    });
                }
                "pidfile" => self.cfg.pidfile = Some(value.to_string()),
                "daemonize" => self.cfg.daemonize = true,
                "x-web" => self.web(&loc, value)?,
                "drive" => self.drive(&loc, value)?,
                "fda" => self.drive_image(&loc, value, 0x00),
                "hda" => self.drive_image(&loc, value, 0x80),
                _ => unreachable!("option table and match disagree: {name}"),
            }
        }
        Ok(())
    }

    /// Records warnings QEMU prints while it reads option `loc`.
    fn warn(&mut self, loc: Option<&str>, warnings: Vec<String>) {
        for w in warnings {
            let d = Diag::warning(loc, &w);
            self.early_warnings.push(d.clone());
            self.cfg.warnings.push(d);
        }
    }

    /// Parses `value` against `list` as QEMU does when it reads the option
    /// at `loc` (checking its id against `ids` when given): warnings
    /// recorded, errors and help requests stop the scan.
    fn read_opts(
        &mut self,
        loc: &str,
        list: &'static OptsList,
        value: &str,
        ids: Option<IdList>,
    ) -> Result<QemuOpts, Stop> {
        let mut warnings = Vec::new();
        let parsed = match ids {
            None => qemuopts::parse(list, value, &mut warnings),
            Some(which) => {
                let ids = match which {
                    IdList::Object => &mut self.object_ids,
                    IdList::Chardev => &mut self.chardev_ids,
                    IdList::Mon => &mut self.mon_ids,
                    IdList::Device => &mut self.device_ids,
                    IdList::Drive => &mut self.drive_ids,
                };
                qemuopts::parse_unique(list, value, ids, &mut warnings)
            }
        };
        self.warn(Some(loc), warnings);
        parsed.map_err(|e| match e {
            QemuOptsError::Help(list) => Stop::Help(format!("{}\n", list.help_text())),
            e => Stop::Error(Diag::qemuopts(Some(loc), &e)),
        })
    }

    /// `-object`: read now (errors carry the option as location). TLS
    /// credentials and authorization objects are created by the setup
    /// before the chardevs (as QEMU does), qchar's `x-bridge` once the
    /// chardevs exist. `help` lists the types qchar creates, `TYPE,help` a
    /// type's properties (both exit 0, as QEMU).
    fn object(&mut self, loc: &str, value: &str) -> Result<Option<String>, Stop> {
        let err = |e: ObjectError| {
            let d = Diag::at(Some(loc), e.to_string());
            Stop::Error(match e.hint() {
                Some(h) => d.hint(h),
                None => d,
            })
        };
        if qemuopts::grammar::is_help_word(value) {
            return Ok(Some(object_types_help()));
        }
        let options = if value.starts_with('{') {
            let v = qchar_monitor::json::parse_one(value)
                .map_err(|e| Diag::at(Some(loc), e.to_string()))?;
            qchar_monitor::qmp::cmd::object_options_from_json(&v).map_err(err)?
        } else {
            let parsed = self.read_opts(loc, &OBJECT_OPTS, value, Some(IdList::Object))?;
            if let Some(ty) = parsed.get("qom-type") {
                if parsed.iter().any(|o| o.name == "help" || o.name == "?") {
                    return Ok(Some(object_props_help(ty)));
                }
                if ty == bridge::BRIDGE_TYPE {
                    let spec = BridgeSpec::from_opts(&parsed)
                        .map_err(|e| Diag::at(Some(loc), e.to_string()))?;
                    self.cfg.bridges.push(spec);
                    return Ok(None);
                }
            }
            ObjectOptions::from_opts(&parsed).map_err(err)?
        };
        self.cfg.objects.push(options);
        Ok(None)
    }

    /// `-chardev`: the option string is checked now, the chardev made
    /// (and its errors and warnings reported) later, in creation order.
    fn chardev(&mut self, loc: &str, value: &str) -> Result<(), Stop> {
        let parsed = self.read_opts(loc, &opts::CHARDEV_OPTS, value, Some(IdList::Chardev))?;
        let mut warnings = Vec::new();
        let mut help = None;
        let options = match opts::chardev_from_opts(&parsed, &mut warnings) {
            Ok(o) => Ok(o),
            // `help` as the backend: printed when the chardev would be made.
            Err(e @ OptsError::BackendHelp) => {
                help = Some(format!("{e}\n"));
                Err(Diag::opts(Some(loc), &e))
            }
            Err(e) => Err(Diag::opts(Some(loc), &e)),
        };
        // QEMU warns about an alias when it creates the chardev.
        let create_warnings = warnings
            .into_iter()
            .map(|w| {
                let d = Diag::warning(Some(loc), &w);
                (w, d)
            })
            .collect();
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
            if !self.chardev_ids.insert(label.clone()) {
                return Err(Diag::at(loc, format!("Duplicate ID '{label}' for chardev"))
                    .then(loc, format!("parse error: {dev}")));
            }
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
                Err(e @ OptsError::Parse(_)) => {
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
    fn mon(&mut self, loc: &str, value: &str) -> Result<(), Stop> {
        self.default_monitor = false;
        let o = self.read_opts(loc, &MON_OPTS, value, Some(IdList::Mon))?;
        let mode = match o.get("mode") {
            None | Some("readline") => Ok(MonMode::Readline),
            Some("control") => Ok(MonMode::Control),
            Some(other) => Err(Diag::at(
                Some(loc),
                format!("Parameter 'mode' does not accept value '{other}'"),
            )),
        };
        let pretty = o.get_bool("pretty").unwrap_or(false);
        let spec = match (o.get("chardev"), mode) {
            (_, Err(e)) => Err(e),
            (None, _) => Err(Diag::at(Some(loc), "Parameter 'chardev' is missing")),
            // `pretty` on HMP is refused once the chardev is found (setup).
            (Some(c), Ok(m)) => Ok((c.to_string(), m)),
        };
        self.cfg.monitors.push(MonitorReq {
            loc: Some(loc.to_string()),
            spec,
            pretty,
        });
        Ok(())
    }

    /// `-device DRIVER,...`: only `isa-serial`. Returns help text to print.
    fn device(&mut self, loc: &str, value: &str) -> Result<Option<String>, Stop> {
        let o = self.read_opts(loc, &DEVICE_OPTS, value, Some(IdList::Device))?;
        let driver = o.get("driver");
        if driver.is_some_and(qemuopts::grammar::is_help_word) {
            return Ok(Some(
                "Input devices:\nname \"isa-serial\", bus ISA\n".into(),
            ));
        }
        if driver == Some("isa-serial") {
            self.default_serial = false;
            // QEMU looks for a key named help (`nohelp` too).
            if o.iter().any(|p| qemuopts::grammar::is_help_word(&p.name)) {
                return Ok(Some(isa_serial_help()));
            }
        }
        let spec = match driver {
            None => Err(Diag::at(Some(loc), "Parameter 'driver' is missing")),
            Some("isa-serial") => Self::isa_serial(loc, &o),
            Some(other) => Err(Diag::at(
                Some(loc),
                format!("'{other}' is not a valid device model name"),
            )),
        };
        self.cfg.devices.push(DeviceReq {
            loc: loc.to_string(),
            spec,
            isa_serial: driver == Some("isa-serial"),
        });
        Ok(None)
    }

    /// The properties of an isa-serial (its id was checked when read).
    fn isa_serial(loc: &str, o: &QemuOpts) -> Result<IsaSerial, Diag> {
        let mut d = IsaSerial {
            id: o.id().map(str::to_string),
            ..IsaSerial::default()
        };
        let at = |t: String| Diag::at(Some(loc), t);
        // QEMU's property visitor: qemu_strtou64, then the range.
        let u32_prop = |name: &str, value: &str| -> Result<u32, Diag> {
            let v = qemuopts::strtou64(value)
                .map_err(|_| at(format!("Parameter '{name}' expects integer")))?;
            u32::try_from(v).map_err(|_| at(format!("Parameter '{name}' expects uint32_t")))
        };
        for p in o.iter() {
            let value = p.text.as_str();
            match p.name.as_str() {
                "driver" => {}
                "chardev" => d.chardev = Some(value.to_string()).filter(|c| !c.is_empty()),
                "iobase" => d.iobase = Some(u32_prop("iobase", value)?),
                "irq" => d.irq = Some(u32_prop("irq", value)?),
                "index" => d.index = Some(u32_prop("index", value)?),
                "bus" => {
                    if value.starts_with("pci") {
                        return Err(at("Device 'isa-serial' can't go on PCI bus".into()));
                    }
                    if value != "isa.0" {
                        return Err(at(format!("Bus '{value}' not found")));
                    }
                }
                "baudbase" if qemuopts::strtou64(value) == Ok(115_200) => {}
                "wakeup" if qemuopts::parse_bool(value) == Some(false) => {}
                k if ISA_SERIAL_OTHER_PROPS.contains(&k) => {
                    return Err(at(format!(
                        "qchar does not support isa-serial property '{k}={value}'"
                    )))
                }
                k => return Err(at(format!("Property 'isa-serial.{k}' not found"))),
            }
        }
        Ok(d)
    }

    /// `-drive file=...`: its id is checked now, the rest when QEMU makes
    /// the drive.
    fn drive(&mut self, loc: &str, value: &str) -> Result<(), Stop> {
        let o = self.read_opts(loc, &DRIVE_OPTS, value, Some(IdList::Drive))?;
        let mut file = None;
        let mut format = None;
        let mut bus = "ide".to_string();
        // QEMU keeps the index in a C int; -1 means none given.
        let mut index: i32 = -1;
        let mut problem = None;
        let mut late = None;
        for p in o.iter() {
            let err = |t: String| Some(Diag::at(Some(loc), t));
            let value = p.text.clone();
            match p.name.as_str() {
                "file" => file = Some(value),
                "format" => format = Some(value),
                "if" => bus = value,
                // Truncated to int as QEMU does.
                "index" => match qemuopts::parse_number("index", &value) {
                    Ok(n) => index = n as i32,
                    Err(e) => problem = problem.or(Some(Diag::qemuopts(Some(loc), &e))),
                },
                "media" if value == "disk" => {}
                "media" => {
                    problem = problem.or(err(format!(
                        "qchar does not support media={value} (boot images are disks)"
                    )))
                }
                "readonly" | "snapshot" => {
                    if qemuopts::parse_bool(&value).is_none() {
                        problem = problem
                            .or(err(format!("Parameter '{}' expects 'on' or 'off'", p.name)));
                    }
                }
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
            let unsupported = |bus_id: i32, unit: i32| {
                Err(Diag::at(
                    Some(loc),
                    format!("machine type does not support if={bus},bus={bus_id},unit={unit}"),
                ))
            };
            // QEMU's bus and unit for an index (C division), a unit of -1
            // being the first free one.
            let auto = |unit: i32| if unit == -1 { 0 } else { unit };
            let drive = match bus.as_str() {
                "floppy" => {
                    let unit = auto(index);
                    if !(0..2).contains(&unit) {
                        return unsupported(0, unit);
                    }
                    unit as u8
                }
                "ide" => {
                    let (bus_id, unit) = if index == -1 {
                        (0, 0)
                    } else {
                        (index / 2, auto(index % 2))
                    };
                    if !(0..2).contains(&bus_id) || !(0..2).contains(&unit) {
                        return unsupported(bus_id, unit);
                    }
                    0x80 + (bus_id * 2 + unit) as u8
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
        Ok(())
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

    /// `-name [guest=]NAME[,process=P][,debug-threads=on|off]`
    /// (`debug-threads` is only checked: qchar's threads always have names).
    fn name(&mut self, loc: &str, value: &str) -> Result<(), Stop> {
        let o = self.read_opts(loc, &NAME_OPTS, value, None)?;
        if let Some(guest) = o.get("guest") {
            self.cfg.name = Some(guest.to_string());
        }
        if let Some(process) = o.get("process") {
            self.cfg.process_name = Some(process.to_string());
        }
        Ok(())
    }

    /// `-x-web [host=H,]port=P[,token=T][,tls-creds=ID][,tls-authz=ID]` (qchar extension; a later one
    /// replaces an earlier one).
    fn web(&mut self, loc: &str, value: &str) -> Result<(), Stop> {
        let o = self.read_opts(loc, &WEB_OPTS, value, None)?;
        let Some(port) = o.get_number("port") else {
            return Err(Diag::at(Some(loc), "Parameter 'port' is missing").into());
        };
        let port = u16::try_from(port).map_err(|_| {
            Diag::at(
                Some(loc),
                "Parameter 'port' expects a TCP port number (0 to 65535)",
            )
        })?;
        let token = o.get("token").map(str::to_string);
        if let Some(t) = &token {
            if qchar_web::auth::check_token(t).is_err() {
                return Err(Diag::at(Some(loc), qchar_web::WebError::BadToken.to_string()).into());
            }
        }
        self.cfg.web = Some(qchar_web::WebOptions {
            host: o.get("host").map(str::to_string),
            port,
            token,
            tls_creds: o.get("tls-creds").map(str::to_string),
            tls_authz: o.get("tls-authz").map(str::to_string),
        });
        Ok(())
    }

    /// `-m [size=]SIZE[,slots=N][,maxmem=SIZE]`.
    fn mem_size(&mut self, loc: &str, value: &str) -> Result<u64, Stop> {
        let o = self.read_opts(loc, &MEMORY_OPTS, value, None)?;
        if let Some(p) = o.iter().find(|p| p.name != "size") {
            let text = format!("qchar does not support memory hotplug ({}=)", p.name);
            return Err(Diag::at(Some(loc), text).into());
        }
        let Some(size) = o.get("size") else {
            return Ok(DEFAULT_MEM_SIZE);
        };
        // When it sets the machine up, QEMU reads the size again, in MiB
        // if it ends in a digit, warning (without location) again.
        let again = if size.ends_with(|c: char| c.is_ascii_digit()) {
            format!("{size}M")
        } else {
            size.to_string()
        };
        let mut warnings = Vec::new();
        let bytes = qemuopts::strtosz(&again, &mut warnings);
        for w in warnings {
            self.cfg.warnings.push(Diag::warning(None, &w));
        }
        let bytes = bytes.map_err(|_| Diag::at(None, "Parameter 'memory.size' expects size"))?;
        if bytes == 0 {
            return Ok(DEFAULT_MEM_SIZE);
        }
        if !(MIN_MEM_SIZE..=MAX_MEM_SIZE).contains(&bytes) {
            return Err(Diag::at(
                Some(loc),
                format!("qchar supports 1M to 3G of guest memory, not {bytes} bytes"),
            )
            .into());
        }
        Ok(bytes)
    }

    /// `-accel [accel=]kvm`. Returns help text to print.
    fn accel(&mut self, loc: &str, value: &str) -> Result<Option<String>, Stop> {
        let o = self.read_opts(loc, &ACCEL_OPTS, value, None)?;
        for p in o.iter() {
            let value = p.text.as_str();
            match p.name.as_str() {
                "accel" if qemuopts::grammar::is_help_word(value) => {
                    return Ok(Some("Accelerators supported in QEMU binary:\nkvm\n".into()))
                }
                "accel" => {
                    if value != "kvm" {
                        return Err(
                            Diag::at(Some(loc), format!("invalid accelerator {value}")).into()
                        );
                    }
                }
                other => {
                    return Err(Diag::at(
                        Some(loc),
                        format!("qchar does not support accelerator property '{other}'"),
                    )
                    .into())
                }
            }
        }
        Ok(None)
    }

    /// After the scan: the defaults QEMU adds, serial labels.
    fn finish(&mut self) {
        if self.cfg.machine_none {
            // QEMU's `none` machine has no serial port of its own.
            self.default_serial = false;
        }
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
        for (index, (loc, dev)) in std::mem::take(&mut self.serial_args)
            .into_iter()
            .enumerate()
        {
            if dev == "none" {
                continue;
            }
            let label = format!("serial{index}");
            let l = loc.as_deref();
            let connect = format!("could not connect serial device to character backend '{dev}'");
            // QEMU makes the chardev in the same option list as -chardev's.
            let taken = !dev.starts_with("chardev:") && self.chardev_ids.contains(&label);
            let source = match opts::parse_serial_shorthand(&dev, &label) {
                _ if taken => {
                    Err(Diag::at(l, format!("Duplicate ID '{label}' for chardev")).then(l, connect))
                }
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
            self.cfg.serials.push(SerialReq {
                index,
                loc,
                dev,
                source,
            });
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

/// `-display TYPE`: `none` only (a keyval string in QEMU 7.2). Returns
/// help text to print.
fn display(loc: &str, value: &str) -> Result<Option<String>, Diag> {
    if qemuopts::grammar::is_help_word(value) {
        return Ok(Some("Available display backend types:\nnone\n".into()));
    }
    let at = |text: String| Diag::at(Some(loc), text);
    let items = qemuopts::keyval(value, Some("type")).map_err(|e| Diag::qemuopts(Some(loc), &e))?;
    if items.contains(&KeyvalItem::Help) {
        return Err(at("Help is not available for this option".into()));
    }
    let pairs = || {
        items.iter().filter_map(|i| match i {
            KeyvalItem::Pair { key, value } => Some((key.as_str(), value.as_str())),
            KeyvalItem::Help => None,
        })
    };
    match pairs().rfind(|(k, _)| *k == "type") {
        None => return Err(at("Parameter 'type' is missing".into())),
        Some((_, "none")) => {}
        Some((_, other)) => {
            return Err(at(format!(
                "Parameter 'type' does not accept value '{other}'"
            )))
        }
    }
    if let Some((key, _)) = pairs().find(|(k, _)| *k != "type") {
        let member = key.split('.').next().unwrap_or(key);
        return Err(at(format!("Parameter '{member}' is unexpected")));
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

/// `-machine [type=]NAME[,accel=kvm]` (a keyval string in QEMU 7.2);
/// sets `none` (the last type given counts). Returns help text to print.
fn machine(loc: &str, value: &str, none: &mut bool) -> Result<Option<String>, Diag> {
    let items = qemuopts::keyval(value, Some("type")).map_err(|e| Diag::qemuopts(Some(loc), &e))?;
    if items.contains(&KeyvalItem::Help) {
        return Ok(Some(machine_help()));
    }
    for item in &items {
        let KeyvalItem::Pair { key, value } = item else {
            continue;
        };
        match key.as_str() {
            "type" if qemuopts::grammar::is_help_word(value) => return Ok(Some(machine_help())),
            "type" => {
                if !MACHINES.iter().any(|(m, _)| m == value) {
                    return Err(Diag::at(None, "unsupported machine type")
                        .hint("Use -machine help to list supported machines"));
                }
                *none = value == "none";
            }
            "accel" => accel_list_ok(value).map_err(|e| Diag::at(Some(loc), e))?,
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

/// Whether a chardev's backend (under a mux too) is stdio.
pub fn uses_stdio(o: &ChardevOptions) -> bool {
    matches!(o.backend, ChardevBackend::Stdio(_))
}

#[cfg(test)]
mod tests;
