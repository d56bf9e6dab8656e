//! Parser for QEMU's `-chardev` option strings and the legacy
//! `-serial`/`-monitor`/`-parallel` device shorthands, producing the
//! [`crate::spec`] types a backend is opened from.
//!
//! The behaviour follows QEMU 7.2 as observed from its command line: the
//! key/value syntax with `,,` escapes, the implied first key `backend`, the
//! first `id` winning while every other key's last value wins, the accepted
//! boolean, number and size spellings, the defaults QEMU fills into the QAPI
//! structs, and the error texts: for every mistake QEMU also refuses, an
//! [`OptsError`]'s `Display` is exactly what QEMU prints after
//! `-chardev STRING: `. Deprecation warnings are available through
//! [`parse_chardev_with_warnings`].
//!
//! `memory` parses to [`ChardevBackend::Memory`] (QEMU stores it as a ringbuf
//! but reports the `memory` name), and QEMU-only backends (`vc`, `msmouse`,
//! ...) are refused as unknown drivers.
//!
//! The parser does what QEMU does while *parsing*. Checks QEMU makes when it
//! *opens* a backend (ringbuf size a power of two, `reconnect` on a server,
//! a websocket client, `wait` on a client, `tls-authz` without `tls-creds`,
//! fd addresses, TLS, tn3270, parallel ports) are left to the backend, which
//! needs them for QMP's `chardev-add` anyway.
//!
//! qchar extensions that QEMU 7.2 lacks: `backlog=SIZE` (the replay buffer,
//! [`ChardevCommon::backlog`]), `input-path=` for `file`, `reconnect-ms=`,
//! and `numeric=`/`keep-alive=` for TCP sockets.

use crate::spec::{
    ChardevBackend, ChardevCommon, ChardevFile, ChardevHostdev, ChardevMux, ChardevRingbuf,
    ChardevSocket, ChardevStdio, ChardevUdp, InetSocketAddress, SocketAddressLegacy, StringWrapper,
    UnixSocketAddress, SUPPORTED_BACKENDS,
};
use thiserror::Error;

/// A parsed `-chardev` (or shorthand): the id, the backend spec and whether
/// QEMU would put a mux in front of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChardevOptions {
    /// The chardev id (`id=`, or the label given for a shorthand).
    pub id: String,
    /// The backend, with QEMU's command-line defaults filled in.
    pub backend: ChardevBackend,
    /// `mux=on`: QEMU registers the backend as `ID-base` and a mux named `ID`
    /// on top of it.
    pub mux: bool,
}

/// What a `-serial`/`-monitor`/`-parallel` DEV string asks for.
// Built once per command-line option: boxing the big variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialTarget {
    /// Create a new chardev.
    New {
        /// The chardev to create, with the caller's label as id.
        options: ChardevOptions,
        /// QEMU attaches a human monitor to it too. Equal to `options.mux`:
        /// QEMU ties the two (`mon:DEV`, or an explicit `mux=on` in the
        /// trailing options of `tcp:`/`unix:`).
        monitor: bool,
    },
    /// `chardev:ID`: use the existing chardev `ID` (the caller checks it
    /// exists).
    Existing(String),
    /// `none`: no device at all. QEMU's `-monitor` also treats any string
    /// *starting* with `none` this way; that prefix test is the caller's.
    None,
}

/// Why an option string was refused. `Display` is QEMU 7.2's text for the
/// same mistake; [`OptsError::hint`] gives the extra line QEMU prints under
/// some of them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OptsError {
    /// `id=` is not letters, digits, `-`, `.`, `_` starting with a letter.
    #[error("Parameter 'id' expects an identifier")]
    InvalidId(String),
    /// No `id=` at all.
    #[error("chardev: no id specified")]
    NoId,
    /// An id but no backend name (`id=x` alone); carries the id.
    #[error("chardev: \"{0}\" missing backend")]
    MissingBackend(String),
    /// A backend name qchar does not know (QEMU-only ones such as `vc` too).
    #[error("'{0}' is not a valid char driver name")]
    UnknownDriver(String),
    /// A key that no backend accepts.
    #[error("Invalid parameter '{0}'")]
    InvalidParameter(String),
    /// A boolean key with a value other than on/off/yes/no/true/false/y/n.
    #[error("Parameter '{0}' expects 'on' or 'off'")]
    ExpectsBool(String),
    /// A number key whose value is not a C integer literal.
    #[error("Parameter '{0}' expects a number")]
    ExpectsNumber(String),
    /// A number key whose value does not fit in 64 bits.
    #[error("Value '{value}' is too large for parameter '{name}'")]
    NumberTooLarge {
        /// The key.
        name: String,
        /// The value as given.
        value: String,
    },
    /// A size key whose value is not a size.
    #[error("Parameter '{0}' expects a non-negative number below 2^64")]
    ExpectsSize(String),
    /// A size above 2^64 - 1, or (qchar) a value too big for its QAPI field.
    #[error("Value '{value}' is out of range for parameter '{name}'")]
    OutOfRange {
        /// The key.
        name: String,
        /// The value as given.
        value: String,
    },
    /// `file` without `path=`.
    #[error("chardev: file: no filename given")]
    NoFilename,
    /// `pipe`, `serial`/`tty` or `parallel`/`parport` without `path=`;
    /// carries QEMU's name for the backend (`pipe`, `serial/tty`, `parallel`).
    #[error("chardev: {0}: no device path given")]
    NoDevicePath(&'static str),
    /// `mux` without `chardev=`.
    #[error("chardev: mux: no chardev given")]
    NoMuxChardev,
    /// `socket` with more than one of `path=`, `fd=`, `host=`.
    #[error("None or one of 'path', 'fd' or 'host' option required.")]
    SocketAddressConflict,
    /// `socket` with `host=` but no `port=`.
    #[error("chardev: socket: no port given")]
    SocketNoPort,
    /// `socket` with none of `path=`, `fd=`, `host=`. QEMU 7.2 turns this
    /// into an fd address without a number: a client then fails to open
    /// with this text (trailing space included), a server even starts
    /// listening on nothing. qchar cannot open fd addresses, so it refuses
    /// both while parsing, with QEMU's text.
    #[error("Unable to parse FD number ")]
    SocketNoAddress,
    /// `socket` with both `delay=` and `nodelay=` (a bare `nodelay` counts
    /// as `delay=off`).
    #[error("'delay' and 'nodelay' are mutually exclusive")]
    DelayConflict,
    /// `udp` without a non-empty `port=`.
    #[error("chardev: udp: remote port not specified")]
    UdpNoPort,
    /// Shorthand whose device name QEMU does not recognise.
    #[error("'{0}' is not a valid char driver")]
    CompatUnknown(String),
    /// Shorthand with a malformed address (`tcp:`, `udp:host`...). QEMU
    /// prints no text of its own for these, only the caller's line: `-monitor`
    /// and `-qmp` say this text, `-serial` says
    /// `could not connect serial device to character backend 'DEV'`.
    #[error("parse error: {0}")]
    CompatSyntax(String),
    /// Backend `help` or `?`: the text lists the backends qchar can open.
    #[error("Available chardev backend types: {}", backend_help())]
    BackendHelp,
    /// A bare `help` or `?` key: the text lists the keys qchar accepts.
    #[error("chardev options:{}", option_help())]
    OptionHelp,
}

impl OptsError {
    /// Whether QEMU finds this while it parses the option string (its
    /// option parser checks the id, the keys and typed values) rather than
    /// when it creates the chardev: HMP then adds `Parsing chardev args
    /// failed`, and the command line reports it before creating anything.
    pub fn is_parse_error(&self) -> bool {
        matches!(
            self,
            OptsError::InvalidId(_)
                | OptsError::InvalidParameter(_)
                | OptsError::ExpectsBool(_)
                | OptsError::ExpectsNumber(_)
                | OptsError::NumberTooLarge { .. }
                | OptsError::ExpectsSize(_)
                | OptsError::OutOfRange { .. }
        )
    }

    /// The extra line(s) QEMU prints under this error, if any.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            OptsError::InvalidId(_) => Some(
                "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.",
            ),
            OptsError::ExpectsSize(_) => Some(
                "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n\
                 and exabytes, respectively.",
            ),
            _ => None,
        }
    }
}

/// The `id=` of an option string, found as QEMU's option parser finds it
/// (before any other key is looked at).
pub fn option_id(s: &str) -> Option<String> {
    scan_id(s)
}

/// Parses a `-chardev` option string, dropping deprecation warnings.
pub fn parse_chardev(s: &str) -> Result<ChardevOptions, OptsError> {
    parse_chardev_with_warnings(s).map(|(options, _)| options)
}

/// Parses a `-chardev` option string and also returns the deprecation
/// warnings QEMU 7.2 would print (short-form booleans such as `server`,
/// the `tty`/`parport` aliases, hex sizes with a suffix). Each warning is the
/// text after QEMU's `warning: ` prefix; a second line, when QEMU prints one,
/// follows a `\n`. Warnings are only returned with a successful parse.
pub fn parse_chardev_with_warnings(s: &str) -> Result<(ChardevOptions, Vec<String>), OptsError> {
    let r = parse_chardev_reporting(s);
    let o = r.result?;
    Ok((o, [r.parse_warnings, r.create_warnings].concat()))
}

/// What [`parse_chardev_reporting`] found.
#[derive(Debug)]
pub struct Reported {
    /// The options, or the error.
    pub result: Result<ChardevOptions, OptsError>,
    /// Warnings QEMU prints while it parses the string (short-form
    /// booleans, hex sizes with a suffix), up to an error.
    pub parse_warnings: Vec<String>,
    /// Warnings QEMU prints when it creates the chardev (the `tty` and
    /// `parport` aliases; once per process, see [`warn_once`]).
    pub create_warnings: Vec<String>,
}

/// Whether a creation warning (the `tty`/`parport` aliases) is to be
/// printed: QEMU prints each once per process. Marks it printed.
pub fn warn_once(warning: &str) -> bool {
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen.iter().any(|w| w == warning) {
        return false;
    }
    seen.push(warning.to_string());
    true
}

/// [`parse_chardev_with_warnings`] that also gives, on an error, the
/// warnings QEMU prints before it, each at its moment.
pub fn parse_chardev_reporting(s: &str) -> Reported {
    let mut parse_warnings = Vec::new();
    let mut create_warnings = Vec::new();
    let result = parse_chardev_warning_into(s, &mut parse_warnings, &mut create_warnings);
    Reported {
        result,
        parse_warnings,
        create_warnings,
    }
}

fn parse_chardev_warning_into(
    s: &str,
    warnings: &mut Vec<String>,
    create_warnings: &mut Vec<String>,
) -> Result<ChardevOptions, OptsError> {
    let id = scan_id(s);
    if let Some(id) = &id {
        check_id(id)?;
    }
    let mut opts = Opts::default();
    parse_into(&mut opts, s, Some("backend"), true, warnings)?;
    let backend = opts.string("backend");
    if backend.is_some_and(is_help_word) {
        return Err(OptsError::BackendHelp);
    }
    let Some(id) = id else {
        // QEMU resolves the backend's name (and warns of an alias) first.
        if let Some(real) = backend.and_then(alias_of) {
            create_warnings.push(alias_warning(backend.unwrap_or_default(), real));
        }
        return Err(OptsError::NoId);
    };
    let Some(backend) = backend else {
        return Err(OptsError::MissingBackend(id));
    };
    let backend = build_backend(backend, &opts, create_warnings)?;
    let mux = opts.boolean("mux").unwrap_or(false);
    Ok(ChardevOptions { id, backend, mux })
}

/// Parses a legacy `-serial`/`-monitor`/`-parallel` DEV string the way QEMU
/// 7.2 does (`mon:` allowed). `id` is the label the caller gives the new
/// chardev (QEMU uses `serial0`, `compat_monitor0`...) and must be a valid
/// identifier. `vc`, `msmouse` and other QEMU-only devices are refused with
/// [`OptsError::UnknownDriver`], as qchar cannot open them.
pub fn parse_serial_shorthand(s: &str, id: &str) -> Result<SerialTarget, OptsError> {
    if s == "none" {
        return Ok(SerialTarget::None);
    }
    if let Some(existing) = s.strip_prefix("chardev:") {
        return Ok(SerialTarget::Existing(existing.to_string()));
    }
    check_id(id)?;
    let mut opts = Opts::default();
    let mut warnings = Vec::new();
    let mut dev = s;
    if let Some(rest) = s.strip_prefix("mon:") {
        dev = rest;
        opts.set("mux", "on", &mut warnings)?;
        if dev == "stdio" {
            // Ctrl-C goes to the guest when the monitor shares stdio.
            opts.set("signal", "off", &mut warnings)?;
        }
    }
    compat_fill(&mut opts, s, dev, &mut warnings)?;
    let backend = opts.string("backend").unwrap_or_default();
    let backend = build_backend(backend, &opts, &mut warnings)?;
    let mux = opts.boolean("mux").unwrap_or(false);
    Ok(SerialTarget::New {
        options: ChardevOptions {
            id: id.to_string(),
            backend,
            mux,
        },
        monitor: mux,
    })
}

// ---------------------------------------------------------------------------
// Keys and their value types.

/// How a key's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    Number,
    Size,
}

/// Every key the option string accepts, sorted: QEMU 7.2's `-chardev` keys
/// (some only matter to backends qchar lacks, and are accepted and ignored
/// as QEMU ignores keys a backend does not use) plus qchar's own.
const KEYS: &[(&str, Kind)] = &[
    ("abstract", Kind::Bool),
    ("append", Kind::Bool),
    ("backend", Kind::Str),
    ("backlog", Kind::Size),
    ("chardev", Kind::Str),
    ("clipboard", Kind::Bool),
    ("cols", Kind::Number),
    ("debug", Kind::Number),
    ("delay", Kind::Bool),
    ("fd", Kind::Str),
    ("height", Kind::Number),
    ("host", Kind::Str),
    ("input-path", Kind::Str),
    ("ipv4", Kind::Bool),
    ("ipv6", Kind::Bool),
    ("keep-alive", Kind::Bool),
    ("localaddr", Kind::Str),
    ("localport", Kind::Str),
    ("logappend", Kind::Bool),
    ("logfile", Kind::Str),
    ("mouse", Kind::Bool),
    ("mux", Kind::Bool),
    ("name", Kind::Str),
    ("nodelay", Kind::Bool),
    ("numeric", Kind::Bool),
    ("path", Kind::Str),
    ("port", Kind::Str),
    ("reconnect", Kind::Number),
    ("reconnect-ms", Kind::Number),
    ("rows", Kind::Number),
    ("server", Kind::Bool),
    ("signal", Kind::Bool),
    ("size", Kind::Size),
    ("telnet", Kind::Bool),
    ("tight", Kind::Bool),
    ("tls-authz", Kind::Str),
    ("tls-creds", Kind::Str),
    ("tn3270", Kind::Bool),
    ("to", Kind::Number),
    ("wait", Kind::Bool),
    ("websocket", Kind::Bool),
    ("width", Kind::Number),
];

fn key_kind(name: &str) -> Option<Kind> {
    KEYS.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

fn backend_help() -> String {
    SUPPORTED_BACKENDS
        .iter()
        .map(|b| format!("\n  {b}"))
        .collect()
}

fn option_help() -> String {
    KEYS.iter()
        .map(|(name, kind)| {
            let ty = match kind {
                Kind::Str => "str",
                Kind::Bool => "bool (on/off)",
                Kind::Number => "num",
                Kind::Size => "size",
            };
            format!("\n  {name}=<{ty}>")
        })
        .collect()
}

fn is_help_word(s: &str) -> bool {
    s == "help" || s == "?"
}

/// QEMU's identifier rule: an ASCII letter, then ASCII letters, digits,
/// `-`, `.` or `_`.
fn check_id(id: &str) -> Result<(), OptsError> {
    let mut bytes = id.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(OptsError::InvalidId(id.to_string()))
    }
}

// ---------------------------------------------------------------------------
// Splitting the string into elements.

/// One `key=value`, bare `key`, or implied-key element.
struct Element {
    name: String,
    value: String,
    /// Bare key (no `=`): value is `on`, or `off` with a stripped `no` prefix.
    bare: bool,
    /// The bare key had a `no` prefix.
    negated: bool,
}

/// Reads a value starting at `pos` up to the next single comma, turning
/// `,,` into `,`. Returns the value and the position of the ending comma
/// (or the end of the string).
fn read_value(s: &str, mut pos: usize) -> (String, usize) {
    let b = s.as_bytes();
    let mut out = String::new();
    loop {
        let seg_end = b[pos..]
            .iter()
            .position(|&c| c == b',')
            .map_or(b.len(), |i| pos + i);
        out.push_str(&s[pos..seg_end]);
        if seg_end + 1 < b.len() && b[seg_end + 1] == b',' {
            out.push(',');
            pos = seg_end + 2;
        } else {
            return (out, seg_end);
        }
    }
}

/// Reads the element at `pos` (which is < `s.len()`); `implied` names the key
/// of a first element without `=`. Returns the element and where the next
/// one starts.
fn next_element(s: &str, pos: usize, implied: Option<&str>) -> (Element, usize) {
    let b = s.as_bytes();
    let len = b[pos..]
        .iter()
        .position(|&c| c == b'=' || c == b',')
        .unwrap_or(b.len() - pos);
    let (element, end) = if b.get(pos + len) == Some(&b'=') {
        let (value, end) = read_value(s, pos + len + 1);
        let name = s[pos..pos + len].to_string();
        (
            Element {
                name,
                value,
                bare: false,
                negated: false,
            },
            end,
        )
    } else if let Some(key) = implied {
        let (value, end) = read_value(s, pos);
        (
            Element {
                name: key.to_string(),
                value,
                bare: false,
                negated: false,
            },
            end,
        )
    } else {
        let raw = &s[pos..pos + len];
        let (name, value, negated) = match raw.strip_prefix("no") {
            Some(rest) => (rest.to_string(), "off".to_string(), true),
            None => (raw.to_string(), "on".to_string(), false),
        };
        (
            Element {
                name,
                value,
                bare: true,
                negated,
            },
            pos + len,
        )
    };
    let next = if end < b.len() { end + 1 } else { end };
    (element, next)
}

/// QEMU looks up `id` in a separate first pass in which even the first
/// element counts as a key, and the first `id` found wins.
fn scan_id(s: &str) -> Option<String> {
    let mut pos = 0;
    while pos < s.len() {
        let (element, next) = next_element(s, pos, None);
        if element.name == "id" {
            return Some(element.value);
        }
        pos = next;
    }
    None
}

/// Parses the elements of `s` into `opts`. `implied` is the key of a first
/// element without `=`. With `interactive` (the `-chardev` form) a bare
/// `help`/`?` asks for help and bare keys produce deprecation warnings;
/// otherwise (trailing options of a shorthand) they are plain flags.
fn parse_into(
    opts: &mut Opts,
    s: &str,
    mut implied: Option<&str>,
    interactive: bool,
    warnings: &mut Vec<String>,
) -> Result<(), OptsError> {
    let mut pos = 0;
    while pos < s.len() {
        let (element, next) = next_element(s, pos, implied);
        pos = next;
        implied = None;
        if element.bare && interactive {
            if !element.negated && is_help_word(&element.name) {
                return Err(OptsError::OptionHelp);
            }
            warnings.push(short_form_warning(&element));
        }
        if element.name == "id" {
            continue;
        }
        opts.set(&element.name, &element.value, warnings)?;
    }
    Ok(())
}

fn short_form_warning(element: &Element) -> String {
    let prefix = if element.negated { "no" } else { "" };
    let advice = if element.name == "delay" {
        // `nodelay` means delay=off, and the modern spelling is nodelay=on.
        format!("nodelay={}", if element.negated { "on" } else { "off" })
    } else {
        format!("{}={}", element.name, element.value)
    };
    format!(
        "short-form boolean option '{prefix}{}' deprecated\nPlease use {advice} instead",
        element.name
    )
}

// ---------------------------------------------------------------------------
// Typed values.

#[derive(Debug, Clone)]
enum Value {
    Str(String),
    Bool(bool),
    Number(u64),
}

/// The parsed keys in order of appearance; lookups take the last value, as
/// QEMU does.
#[derive(Default)]
struct Opts {
    list: Vec<(String, String, Value)>,
}

impl Opts {
    /// Checks the key, parses its value by type and records it.
    fn set(&mut self, name: &str, raw: &str, warnings: &mut Vec<String>) -> Result<(), OptsError> {
        let kind = key_kind(name).ok_or_else(|| OptsError::InvalidParameter(name.to_string()))?;
        let value = match kind {
            Kind::Str => Value::Str(raw.to_string()),
            Kind::Bool => Value::Bool(parse_bool(name, raw)?),
            Kind::Number => Value::Number(parse_number(name, raw)?),
            Kind::Size => Value::Number(parse_size(name, raw, warnings)?),
        };
        self.list.push((name.to_string(), raw.to_string(), value));
        Ok(())
    }

    fn last(&self, name: &str) -> Option<&(String, String, Value)> {
        self.list.iter().rev().find(|(n, _, _)| n == name)
    }

    fn has(&self, name: &str) -> bool {
        self.last(name).is_some()
    }

    fn string(&self, name: &str) -> Option<&str> {
        match self.last(name) {
            Some((_, _, Value::Str(s))) => Some(s),
            _ => None,
        }
    }

    fn owned(&self, name: &str) -> Option<String> {
        self.string(name).map(str::to_string)
    }

    fn boolean(&self, name: &str) -> Option<bool> {
        match self.last(name) {
            Some((_, _, Value::Bool(b))) => Some(*b),
            _ => None,
        }
    }

    fn number(&self, name: &str) -> Option<u64> {
        match self.last(name) {
            Some((_, _, Value::Number(n))) => Some(*n),
            _ => None,
        }
    }

    /// A number narrowed to its QAPI field type. QEMU truncates silently;
    /// qchar refuses instead.
    fn narrow<T: TryFrom<u64>>(&self, name: &str) -> Result<Option<T>, OptsError> {
        let Some((_, raw, Value::Number(n))) = self.last(name) else {
            return Ok(None);
        };
        T::try_from(*n)
            .map(Some)
            .map_err(|_| OptsError::OutOfRange {
                name: name.to_string(),
                value: raw.clone(),
            })
    }
}

fn parse_bool(name: &str, raw: &str) -> Result<bool, OptsError> {
    match raw {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(OptsError::ExpectsBool(name.to_string())),
    }
}

/// Why a C-style integer conversion failed.
#[derive(Debug, PartialEq, Eq)]
enum NumError {
    Invalid,
    Range,
}

/// C `strtoull` on `s[start..]`: leading whitespace, an optional sign (a
/// minus negates modulo 2^64), and with `radix` 0 a `0x` prefix for hex or
/// a leading `0` for octal; with `radix` 16 an optional `0x` prefix.
/// Returns the value (or a range error) and where the digits ended; `None`
/// when there are no digits.
fn c_strtou64(s: &str, radix: u32) -> Option<(Result<u64, NumError>, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let negative = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let has_hex_prefix = b.get(i) == Some(&b'0')
        && matches!(b.get(i + 1), Some(b'x' | b'X'))
        && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
    let radix = match radix {
        0 if has_hex_prefix => 16,
        0 if b.get(i) == Some(&b'0') => 8,
        0 => 10,
        r => r,
    };
    if radix == 16 && has_hex_prefix {
        i += 2;
    }
    let start = i;
    let mut value: u64 = 0;
    let mut overflow = false;
    while let Some(d) = b.get(i).and_then(|&c| (c as char).to_digit(radix)) {
        match value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
        i += 1;
    }
    if i == start {
        return None;
    }
    let result = if overflow {
        Err(NumError::Range)
    } else if negative {
        Ok(value.wrapping_neg())
    } else {
        Ok(value)
    };
    Some((result, i))
}

/// A number key: the whole value must be one C integer literal.
fn parse_number(name: &str, raw: &str) -> Result<u64, OptsError> {
    match c_strtou64(raw, 0) {
        Some((_, end)) if end != raw.len() => Err(OptsError::ExpectsNumber(name.to_string())),
        Some((Ok(v), _)) => Ok(v),
        Some((Err(_), _)) => Err(OptsError::NumberTooLarge {
            name: name.to_string(),
            value: raw.to_string(),
        }),
        None => Err(OptsError::ExpectsNumber(name.to_string())),
    }
}

/// A size key: a decimal number with an optional fraction, or a hex number,
/// then an optional binary suffix (b, k, M, G, T, P, E in either case).
fn parse_size(name: &str, raw: &str, warnings: &mut Vec<String>) -> Result<u64, OptsError> {
    let out_of_range = || OptsError::OutOfRange {
        name: name.to_string(),
        value: raw.to_string(),
    };
    let (value, mul, fraction) = size_parts(raw, warnings).map_err(|e| match e {
        NumError::Invalid => OptsError::ExpectsSize(name.to_string()),
        NumError::Range => out_of_range(),
    })?;
    // The fraction is below 1, so its share of `mul` fits in u64.
    let extra = (fraction * mul as f64) as u64;
    if value > (u64::MAX - extra) / mul {
        return Err(out_of_range());
    }
    Ok(value * mul + extra)
}

/// Splits a size into integer part, multiplier and fraction. Anything left
/// unparsed makes the size invalid, even after an overflow; an overflow in
/// the digits stops the parse before any suffix.
fn size_parts(raw: &str, warnings: &mut Vec<String>) -> Result<(u64, u64, f64), NumError> {
    let b = raw.as_bytes();
    let whole = |result: Result<u64, NumError>, end: usize| match result {
        Ok(v) => Ok(v),
        Err(_) if end == b.len() => Err(NumError::Range),
        Err(_) => Err(NumError::Invalid),
    };
    let (result, mut end) = c_strtou64(raw, 10).ok_or(NumError::Invalid)?;
    let mut value = whole(result, end)?;
    if b[..end].contains(&b'-') {
        return Err(NumError::Invalid);
    }
    let mut hex = false;
    let mut fraction = 0.0f64;
    if value == 0 && matches!(b.get(end), Some(b'x' | b'X')) {
        let (result, hex_end) = c_strtou64(raw, 16).ok_or(NumError::Invalid)?;
        end = hex_end;
        value = whole(result, end)?;
        if b.get(end) == Some(&b'.') {
            return Err(NumError::Invalid);
        }
        hex = true;
    } else if b.get(end) == Some(&b'.') {
        let digits = b[end + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            // `1.` and `1.k` are accepted: the dot is skipped.
            end += 1;
        } else {
            let after = end + 1 + digits;
            if has_exponent(&b[after..]) {
                return Err(NumError::Invalid);
            }
            let text = &raw[end..after];
            let parsed: f64 = format!("0{text}").parse().map_err(|_| NumError::Invalid)?;
            if parsed < f64::MIN_POSITIVE && text.bytes().any(|c| (b'1'..=b'9').contains(&c)) {
                // C's strtod reports an underflow here, which QEMU refuses.
                return Err(NumError::Invalid);
            }
            fraction = parsed;
            end = after;
        }
    }
    let suffix = match b.get(end).map(u8::to_ascii_uppercase) {
        Some(b'B') => Some(1u64),
        Some(b'K') => Some(1 << 10),
        Some(b'M') => Some(1 << 20),
        Some(b'G') => Some(1 << 30),
        Some(b'T') => Some(1 << 40),
        Some(b'P') => Some(1 << 50),
        Some(b'E') => Some(1 << 60),
        _ => None,
    };
    if suffix.is_some() {
        end += 1;
    }
    if end != b.len() {
        return Err(NumError::Invalid);
    }
    let mul = suffix.unwrap_or(1);
    if mul == 1 && fraction != 0.0 {
        // No fractional bytes.
        return Err(NumError::Invalid);
    }
    if hex && suffix.is_some() {
        warnings.push(format!(
            "Using a multiplier suffix on hex numbers is deprecated: {raw}"
        ));
    }
    Ok((value, mul, fraction))
}

/// Whether `b` starts with a C floating-point exponent (`e`, optional sign,
/// at least one digit).
fn has_exponent(b: &[u8]) -> bool {
    if !matches!(b.first(), Some(b'e' | b'E')) {
        return false;
    }
    let rest = match b.get(1) {
        Some(b'+' | b'-') => &b[2..],
        _ => &b[1..],
    };
    rest.first().is_some_and(u8::is_ascii_digit)
}

// ---------------------------------------------------------------------------
// From keys to the QAPI structs.

fn common(opts: &Opts) -> ChardevCommon {
    ChardevCommon {
        logfile: opts.owned("logfile"),
        logappend: Some(opts.boolean("logappend").unwrap_or(false)),
        backlog: opts.number("backlog"),
    }
}

fn hostdev(opts: &Opts, what: &'static str) -> Result<ChardevHostdev, OptsError> {
    let device = opts.owned("path").ok_or(OptsError::NoDevicePath(what))?;
    Ok(ChardevHostdev {
        common: common(opts),
        device,
    })
}

fn ringbuf(opts: &Opts) -> Result<ChardevRingbuf, OptsError> {
    // QEMU treats size=0 as "not given" (the backend's default).
    let size = opts.narrow::<i64>("size")?.filter(|&s| s != 0);
    Ok(ChardevRingbuf {
        common: common(opts),
        size,
    })
}

/// The backend a deprecated alias names.
fn alias_of(name: &str) -> Option<&'static str> {
    match name {
        "tty" => Some("serial"),
        "parport" => Some("parallel"),
        _ => None,
    }
}

fn alias_warning(alias: &str, real: &str) -> String {
    format!("The alias '{alias}' is deprecated, use '{real}' instead")
}

/// Builds the backend named `name` from the keys.
fn build_backend(
    name: &str,
    opts: &Opts,
    warnings: &mut Vec<String>,
) -> Result<ChardevBackend, OptsError> {
    let name = match alias_of(name) {
        Some(real) => {
            warnings.push(alias_warning(name, real));
            real
        }
        None => name,
    };
    Ok(match name {
        "null" => ChardevBackend::Null(common(opts)),
        "pty" => ChardevBackend::Pty(common(opts)),
        "file" => {
            let out = opts.owned("path").ok_or(OptsError::NoFilename)?;
            ChardevBackend::File(ChardevFile {
                common: common(opts),
                input: opts.owned("input-path"),
                out,
                append: Some(opts.boolean("append").unwrap_or(false)),
            })
        }
        "pipe" => ChardevBackend::Pipe(hostdev(opts, "pipe")?),
        "serial" => ChardevBackend::Serial(hostdev(opts, "serial/tty")?),
        "parallel" => ChardevBackend::Parallel(hostdev(opts, "parallel")?),
        "stdio" => ChardevBackend::Stdio(ChardevStdio {
            common: common(opts),
            signal: Some(opts.boolean("signal").unwrap_or(true)),
        }),
        "ringbuf" => ChardevBackend::Ringbuf(ringbuf(opts)?),
        "memory" => ChardevBackend::Memory(ringbuf(opts)?),
        "mux" => {
            let chardev = opts.owned("chardev").ok_or(OptsError::NoMuxChardev)?;
            ChardevBackend::Mux(ChardevMux {
                common: common(opts),
                chardev,
            })
        }
        "socket" => ChardevBackend::Socket(socket(opts)?),
        "udp" => ChardevBackend::Udp(udp(opts)?),
        other => return Err(OptsError::UnknownDriver(other.to_string())),
    })
}

fn socket(opts: &Opts) -> Result<ChardevSocket, OptsError> {
    let path = opts.string("path");
    let host = opts.string("host");
    let fd = opts.string("fd");
    let given = [path.is_some(), host.is_some(), fd.is_some()];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err(OptsError::SocketAddressConflict);
    }
    if host.is_some() && !opts.has("port") {
        return Err(OptsError::SocketNoPort);
    }
    if opts.has("delay") && opts.has("nodelay") {
        return Err(OptsError::DelayConflict);
    }
    let nodelay = if opts.has("delay") || opts.has("nodelay") {
        Some(!opts.boolean("delay").unwrap_or(true) || opts.boolean("nodelay").unwrap_or(false))
    } else {
        None
    };
    let server = opts.boolean("server").unwrap_or(false);
    let wait = if opts.has("wait") || server {
        Some(opts.boolean("wait").unwrap_or(true))
    } else {
        None
    };
    let addr = if let Some(path) = path {
        SocketAddressLegacy::Unix(UnixSocketAddress {
            path: path.to_string(),
            abstract_: Some(opts.boolean("abstract").unwrap_or(false)),
            tight: Some(opts.boolean("tight").unwrap_or(true)),
        })
    } else if let Some(host) = host {
        SocketAddressLegacy::Inet(InetSocketAddress {
            host: host.to_string(),
            port: opts.owned("port").unwrap_or_default(),
            numeric: opts.boolean("numeric"),
            to: opts.narrow::<u16>("to")?,
            ipv4: opts.boolean("ipv4"),
            ipv6: opts.boolean("ipv6"),
            keep_alive: opts.boolean("keep-alive"),
        })
    } else if let Some(fd) = fd {
        SocketAddressLegacy::Fd(StringWrapper {
            str: fd.to_string(),
        })
    } else {
        return Err(OptsError::SocketNoAddress);
    };
    Ok(ChardevSocket {
        common: common(opts),
        addr,
        tls_creds: opts.owned("tls-creds"),
        tls_authz: opts.owned("tls-authz"),
        server: Some(server),
        wait,
        nodelay,
        telnet: opts.boolean("telnet"),
        tn3270: opts.boolean("tn3270"),
        websocket: opts.boolean("websocket"),
        reconnect: opts.narrow::<i64>("reconnect")?,
        reconnect_ms: opts.narrow::<i64>("reconnect-ms")?,
    })
}

fn udp(opts: &Opts) -> Result<ChardevUdp, OptsError> {
    let non_empty = |k: &str| opts.string(k).filter(|v| !v.is_empty());
    let host = non_empty("host").unwrap_or("localhost");
    let port = non_empty("port").ok_or(OptsError::UdpNoPort)?;
    let localaddr = non_empty("localaddr");
    let localport = non_empty("localport");
    let local = (localaddr.is_some() || localport.is_some()).then(|| {
        SocketAddressLegacy::Inet(InetSocketAddress {
            host: localaddr.unwrap_or("").to_string(),
            port: localport.unwrap_or("0").to_string(),
            ..InetSocketAddress::default()
        })
    });
    Ok(ChardevUdp {
        common: common(opts),
        remote: SocketAddressLegacy::Inet(InetSocketAddress {
            host: host.to_string(),
            port: port.to_string(),
            ipv4: opts.boolean("ipv4"),
            ipv6: opts.boolean("ipv6"),
            ..InetSocketAddress::default()
        }),
        local,
    })
}

// ---------------------------------------------------------------------------
// The legacy DEV shorthand.

/// Like C's `%N[^stops]`: one to `max` bytes none of which is in `stops`
/// (cut back to a character boundary). Returns the match and the rest.
fn scan_set<'a>(s: &'a str, max: usize, stops: &[u8]) -> Option<(&'a str, &'a str)> {
    let b = s.as_bytes();
    let mut end = b
        .iter()
        .take(max)
        .take_while(|c| !stops.contains(c))
        .count();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (end > 0).then(|| s.split_at(end))
}

/// `HOST:PORT` or `:PORT` as QEMU scans it: host up to 64 bytes without `:`,
/// port up to 32 bytes without any of `port_stops`; anything after an
/// over-long port is ignored by the caller unless it starts with a stop.
fn scan_host_port<'a>(p: &'a str, port_stops: &[u8]) -> Option<(&'a str, &'a str, &'a str)> {
    if let Some((host, rest)) = scan_set(p, 64, b":") {
        if let Some((port, rest)) = rest
            .strip_prefix(':')
            .and_then(|r| scan_set(r, 32, port_stops))
        {
            return Some((host, port, rest));
        }
    }
    let (port, rest) = scan_set(p.strip_prefix(':')?, 32, port_stops)?;
    Some(("", port, rest))
}

/// `vc:WxH` (pixels) or `vc:WCxHC` (characters), each number 1 to 7 digits.
fn vc_size_ok(p: &str) -> bool {
    fn digits(s: &str) -> Option<&str> {
        let n = s.bytes().take(7).take_while(u8::is_ascii_digit).count();
        (n > 0).then(|| &s[n..])
    }
    let pixels = digits(p)
        .and_then(|r| r.strip_prefix('x'))
        .and_then(digits)
        .is_some();
    let chars = digits(p)
        .and_then(|r| r.strip_prefix("Cx"))
        .and_then(digits)
        .is_some();
    pixels || chars
}

/// Fills `opts` from the DEV string `dev` (after any `mon:`); `whole` is the
/// full string for error texts.
fn compat_fill(
    opts: &mut Opts,
    whole: &str,
    dev: &str,
    warnings: &mut Vec<String>,
) -> Result<(), OptsError> {
    let syntax = || OptsError::CompatSyntax(whole.to_string());
    if [
        "null", "pty", "msmouse", "wctablet", "braille", "testdev", "stdio",
    ]
    .contains(&dev)
    {
        return opts.set("backend", dev, warnings);
    }
    if let Some(p) = dev.strip_prefix("vc") {
        if let Some(size) = p.strip_prefix(':') {
            if !vc_size_ok(size) {
                return Err(syntax());
            }
        }
        return opts.set("backend", "vc", warnings);
    }
    if dev == "con:" {
        return opts.set("backend", "console", warnings);
    }
    if dev.starts_with("COM") {
        opts.set("backend", "serial", warnings)?;
        return opts.set("path", dev, warnings);
    }
    for (prefix, backend) in [("file:", "file"), ("pipe:", "pipe")] {
        if let Some(path) = dev.strip_prefix(prefix) {
            opts.set("backend", backend, warnings)?;
            return opts.set("path", path, warnings);
        }
    }
    for (prefix, flag) in [
        ("tcp:", None),
        ("telnet:", Some("telnet")),
        ("tn3270:", Some("tn3270")),
        ("websocket:", Some("websocket")),
    ] {
        let Some(p) = dev.strip_prefix(prefix) else {
            continue;
        };
        let (host, port, rest) = scan_host_port(p, b",").ok_or_else(syntax)?;
        opts.set("backend", "socket", warnings)?;
        opts.set("host", host, warnings)?;
        opts.set("port", port, warnings)?;
        if let Some(more) = rest.strip_prefix(',') {
            parse_into(opts, more, None, false, warnings)?;
        }
        if let Some(flag) = flag {
            opts.set(flag, "on", warnings)?;
        }
        return Ok(());
    }
    if let Some(p) = dev.strip_prefix("udp:") {
        opts.set("backend", "udp", warnings)?;
        let (host, port, rest) = scan_host_port(p, b"@,").ok_or_else(syntax)?;
        opts.set("host", host, warnings)?;
        opts.set("port", port, warnings)?;
        if let Some(local) = rest.strip_prefix('@') {
            let (host, port, _) = scan_host_port(local, b",").ok_or_else(syntax)?;
            opts.set("localaddr", host, warnings)?;
            opts.set("localport", port, warnings)?;
        }
        return Ok(());
    }
    if let Some(p) = dev.strip_prefix("unix:") {
        opts.set("backend", "socket", warnings)?;
        return parse_into(opts, p, Some("path"), false, warnings);
    }
    if dev.starts_with("/dev/parport") || dev.starts_with("/dev/ppi") {
        opts.set("backend", "parallel", warnings)?;
        return opts.set("path", dev, warnings);
    }
    if dev.starts_with("/dev/") {
        opts.set("backend", "serial", warnings)?;
        return opts.set("path", dev, warnings);
    }
    Err(OptsError::CompatUnknown(dev.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> ChardevOptions {
        parse_chardev(s).unwrap_or_else(|e| panic!("{s:?} refused: {e}"))
    }

    fn warned(s: &str) -> (ChardevOptions, Vec<String>) {
        parse_chardev_with_warnings(s).unwrap_or_else(|e| panic!("{s:?} refused: {e}"))
    }

    fn err(s: &str) -> OptsError {
        match parse_chardev(s) {
            Ok(o) => panic!("{s:?} accepted as {o:?}"),
            Err(e) => e,
        }
    }

    fn new(s: &str, id: &str) -> (ChardevOptions, bool) {
        match parse_serial_shorthand(s, id) {
            Ok(SerialTarget::New { options, monitor }) => (options, monitor),
            other => panic!("{s:?} gave {other:?}"),
        }
    }

    fn compat_err(s: &str) -> OptsError {
        match parse_serial_shorthand(s, "serial0") {
            Ok(t) => panic!("{s:?} accepted as {t:?}"),
            Err(e) => e,
        }
    }

    fn c0() -> ChardevCommon {
        ChardevCommon {
            logfile: None,
            logappend: Some(false),
            backlog: None,
        }
    }

    fn unix(path: &str) -> SocketAddressLegacy {
        SocketAddressLegacy::Unix(UnixSocketAddress {
            path: path.into(),
            abstract_: Some(false),
            tight: Some(true),
        })
    }

    fn inet(host: &str, port: &str) -> InetSocketAddress {
        InetSocketAddress {
            host: host.into(),
            port: port.into(),
            ..InetSocketAddress::default()
        }
    }

    fn socket_of(o: &ChardevOptions) -> &ChardevSocket {
        match &o.backend {
            ChardevBackend::Socket(s) => s,
            other => panic!("not a socket: {other:?}"),
        }
    }

    fn base_socket(addr: SocketAddressLegacy) -> ChardevSocket {
        ChardevSocket {
            common: c0(),
            ..ChardevSocket::new(addr, false)
        }
    }

    fn backlog(v: &str) -> Result<Option<u64>, OptsError> {
        parse_chardev(&format!("null,id=a,backlog={v}")).map(|o| o.backend.common().backlog)
    }

    // --- backends ---------------------------------------------------------

    #[test]
    fn null_and_pty_carry_only_common_options() {
        let o = ok("null,id=a");
        assert_eq!(
            o,
            ChardevOptions {
                id: "a".into(),
                backend: ChardevBackend::Null(c0()),
                mux: false
            }
        );
        assert_eq!(ok("pty,id=p").backend, ChardevBackend::Pty(c0()));
        assert_eq!(ok("id=p,backend=pty").backend, ChardevBackend::Pty(c0()));
    }

    #[test]
    fn common_options_and_backlog() {
        let o = ok("null,id=a,logfile=/l,,og,logappend=on,backlog=64k");
        let want = ChardevCommon {
            logfile: Some("/l,og".into()),
            logappend: Some(true),
            backlog: Some(65536),
        };
        assert_eq!(o.backend, ChardevBackend::Null(want));
        let json = serde_json::to_string(&o.backend).unwrap();
        assert!(json.contains(r#""x-backlog":65536"#), "{json}");
        assert_eq!(ok("null,id=a,backlog=0").backend.common().backlog, Some(0));
    }

    #[test]
    fn file_backend() {
        let want = ChardevFile {
            common: c0(),
            input: None,
            out: "/o".into(),
            append: Some(false),
        };
        assert_eq!(
            ok("file,id=f,path=/o").backend,
            ChardevBackend::File(want.clone())
        );
        let o = ok("file,id=f,path=/o,append=on,input-path=/i");
        let want2 = ChardevFile {
            input: Some("/i".into()),
            append: Some(true),
            ..want
        };
        assert_eq!(o.backend, ChardevBackend::File(want2));
        let (o, w) = warned("file,id=f,path=/o,append");
        assert!(matches!(o.backend, ChardevBackend::File(ref f) if f.append == Some(true)));
        assert_eq!(
            w,
            ["short-form boolean option 'append' deprecated\nPlease use append=on instead"]
        );
        // QEMU checks the path only when opening.
        assert!(
            matches!(ok("file,id=f,path=").backend, ChardevBackend::File(ref f) if f.out.is_empty())
        );
    }

    #[test]
    fn escaped_commas_in_values() {
        let out = |s: &str| match ok(s).backend {
            ChardevBackend::File(f) => f.out,
            other => panic!("{other:?}"),
        };
        assert_eq!(out("file,id=f,path=/srv/a,,b"), "/srv/a,b");
        assert_eq!(out("file,id=f,path=x,,,,y"), "x,,y");
        assert_eq!(out("file,id=f,path=x,,"), "x,");
        assert_eq!(out("file,path=,,,id=f"), ",");
    }

    #[test]
    fn host_device_backends() {
        let hd = |d: &str| ChardevHostdev {
            common: c0(),
            device: d.into(),
        };
        assert_eq!(
            ok("pipe,id=p,path=/p").backend,
            ChardevBackend::Pipe(hd("/p"))
        );
        assert_eq!(
            ok("serial,id=s,path=/dev/ttyS0").backend,
            ChardevBackend::Serial(hd("/dev/ttyS0"))
        );
        assert_eq!(
            ok("parallel,id=p,path=/dev/parport0").backend,
            ChardevBackend::Parallel(hd("/dev/parport0"))
        );
        let (o, w) = warned("tty,id=s,path=/dev/null");
        assert_eq!(o.backend, ChardevBackend::Serial(hd("/dev/null")));
        assert_eq!(w, ["The alias 'tty' is deprecated, use 'serial' instead"]);
        let (o, w) = warned("parport,id=p,path=/dev/parport0");
        assert_eq!(o.backend, ChardevBackend::Parallel(hd("/dev/parport0")));
        assert_eq!(
            w,
            ["The alias 'parport' is deprecated, use 'parallel' instead"]
        );
    }

    #[test]
    fn stdio_signal_defaults_on() {
        let st = |s: Option<bool>| {
            ChardevBackend::Stdio(ChardevStdio {
                common: c0(),
                signal: s,
            })
        };
        assert_eq!(ok("stdio,id=s").backend, st(Some(true)));
        assert_eq!(ok("stdio,id=s,signal=off").backend, st(Some(false)));
        assert_eq!(ok("stdio,id=s,signal=no").backend, st(Some(false)));
    }

    #[test]
    fn ringbuf_and_memory() {
        let rb = |size| ChardevRingbuf { common: c0(), size };
        assert_eq!(
            ok("ringbuf,id=r").backend,
            ChardevBackend::Ringbuf(rb(None))
        );
        assert_eq!(
            ok("ringbuf,id=r,size=1k").backend,
            ChardevBackend::Ringbuf(rb(Some(1024)))
        );
        assert_eq!(
            ok("memory,id=r,size=4M").backend,
            ChardevBackend::Memory(rb(Some(4 << 20)))
        );
        // size=0 means "not given", as in QEMU.
        assert_eq!(
            ok("ringbuf,id=r,size=0").backend,
            ChardevBackend::Ringbuf(rb(None))
        );
        // Power-of-two is an open-time check (the backend's), not a parse error.
        assert_eq!(
            ok("ringbuf,id=r,size=100").backend,
            ChardevBackend::Ringbuf(rb(Some(100)))
        );
        // qchar: a size beyond the QAPI int64 field is refused, not wrapped.
        assert_eq!(
            err("ringbuf,id=r,size=15E").to_string(),
            "Value '15E' is out of range for parameter 'size'"
        );
    }

    #[test]
    fn mux_backend() {
        let want = ChardevMux {
            common: c0(),
            chardev: "r".into(),
        };
        assert_eq!(ok("mux,id=m,chardev=r").backend, ChardevBackend::Mux(want));
    }

    #[test]
    fn mux_flag_last_value_wins() {
        assert!(ok("null,id=a,mux=on").mux);
        assert!(!ok("null,id=a,mux=on,mux=off").mux);
        assert!(!ok("null,id=a").mux);
        let (o, w) = warned("null,id=a,mux");
        assert!(o.mux);
        assert_eq!(
            w,
            ["short-form boolean option 'mux' deprecated\nPlease use mux=on instead"]
        );
        let (o, w) = warned("null,id=a,mux=on,nomux");
        assert!(!o.mux);
        assert_eq!(
            w,
            ["short-form boolean option 'nomux' deprecated\nPlease use mux=off instead"]
        );
    }

    #[test]
    fn booleans_as_qemu_spells_them() {
        for v in ["on", "yes", "true", "y"] {
            assert!(ok(&format!("null,id=a,mux={v}")).mux, "{v}");
        }
        for v in ["off", "no", "false", "n"] {
            assert!(!ok(&format!("null,id=a,mux={v}")).mux, "{v}");
        }
        for v in ["ON", "On", "1", "0", "", "enable"] {
            assert_eq!(
                err(&format!("null,id=a,mux={v}")).to_string(),
                "Parameter 'mux' expects 'on' or 'off'",
                "{v}"
            );
        }
    }

    // --- ids ------------------------------------------------------------------

    #[test]
    fn id_first_occurrence_wins_and_is_scanned_separately() {
        assert_eq!(ok("null,id=a,id=1b").id, "a");
        assert_eq!(ok("id=a.b-c_d,backend=null").id, "a.b-c_d");
        assert_eq!(ok("null,id=a.b-c_d").id, "a.b-c_d");
        let (o, w) = warned("null,id,id=a");
        assert_eq!(o.id, "on");
        assert_eq!(
            w,
            ["short-form boolean option 'id' deprecated\nPlease use id=on instead"]
        );
        assert_eq!(ok("null,noid").id, "off");
    }

    // --- sockets ----------------------------------------------------------------

    #[test]
    fn unix_socket_defaults() {
        assert_eq!(
            *socket_of(&ok("socket,id=s,path=/p")),
            base_socket(unix("/p"))
        );
        let o = ok("socket,id=s,path=/p,server=on");
        assert_eq!(socket_of(&o).wait, Some(true), "servers wait by default");
        let o = ok("socket,id=s,path=/p,server=on,wait=off");
        let want = ChardevSocket {
            server: Some(true),
            wait: Some(false),
            ..base_socket(unix("/p"))
        };
        assert_eq!(*socket_of(&o), want);
        // A client keeps an explicit wait; QEMU refuses it when opening.
        assert_eq!(
            socket_of(&ok("socket,id=s,path=/p,wait=off")).wait,
            Some(false)
        );
    }

    #[test]
    fn legacy_bare_flags_match_modern_spelling() {
        let (legacy, w) = warned("socket,id=s,path=/p,server,nowait,nodelay,telnet");
        let modern = ok("socket,id=s,path=/p,server=on,wait=off,nodelay=on,telnet=on");
        assert_eq!(socket_of(&legacy), socket_of(&modern));
        assert_eq!(
            w,
            [
                "short-form boolean option 'server' deprecated\nPlease use server=on instead",
                "short-form boolean option 'nowait' deprecated\nPlease use wait=off instead",
                "short-form boolean option 'nodelay' deprecated\nPlease use nodelay=on instead",
                "short-form boolean option 'telnet' deprecated\nPlease use telnet=on instead",
            ]
        );
        let (o, w) = warned("socket,id=s,path=/p,delay");
        assert_eq!(socket_of(&o).nodelay, Some(false));
        assert_eq!(
            w,
            ["short-form boolean option 'delay' deprecated\nPlease use nodelay=off instead"]
        );
        assert_eq!(
            socket_of(&ok("socket,id=s,path=/p,delay=off")).nodelay,
            Some(true)
        );
        assert_eq!(
            socket_of(&ok("socket,id=s,path=/p,nodelay=off")).nodelay,
            Some(false)
        );
    }

    #[test]
    fn abstract_unix_socket() {
        let o = ok("socket,id=s,path=sock,abstract=on,tight=off");
        let want = SocketAddressLegacy::Unix(UnixSocketAddress {
            path: "sock".into(),
            abstract_: Some(true),
            tight: Some(false),
        });
        assert_eq!(socket_of(&o).addr, want);
    }

    #[test]
    fn tcp_socket_with_every_option() {
        let o = ok(
            "socket,id=s,host=localhost,port=4444,to=4450,ipv4=on,ipv6=off,numeric=on,\
                    keep-alive=on,server=on,wait=off,nodelay=on,telnet=on,websocket=off,\
                    tls-creds=c,tls-authz=z,tn3270=off,logfile=/l",
        );
        let addr = InetSocketAddress {
            to: Some(4450),
            ipv4: Some(true),
            ipv6: Some(false),
            numeric: Some(true),
            keep_alive: Some(true),
            ..inet("localhost", "4444")
        };
        let want = ChardevSocket {
            common: ChardevCommon {
                logfile: Some("/l".into()),
                ..c0()
            },
            tls_creds: Some("c".into()),
            tls_authz: Some("z".into()),
            server: Some(true),
            wait: Some(false),
            nodelay: Some(true),
            telnet: Some(true),
            tn3270: Some(false),
            websocket: Some(false),
            ..base_socket(SocketAddressLegacy::Inet(addr))
        };
        assert_eq!(*socket_of(&o), want);
    }

    #[test]
    fn tcp_socket_edge_values() {
        let addr = |s: &str| socket_of(&ok(s)).addr.clone();
        assert_eq!(
            addr("socket,id=s,host=,port=4444"),
            SocketAddressLegacy::Inet(inet("", "4444"))
        );
        assert_eq!(
            addr("socket,id=s,host=h,port="),
            SocketAddressLegacy::Inet(inet("h", ""))
        );
        let to = |v: &str| match addr(&format!("socket,id=s,host=h,port=1,to={v}")) {
            SocketAddressLegacy::Inet(i) => i.to,
            other => panic!("{other:?}"),
        };
        assert_eq!(to("010"), Some(8), "octal, as strtoull");
        assert_eq!(to("0x10"), Some(16));
        assert_eq!(to("65535"), Some(65535));
        assert_eq!(
            err("socket,id=s,host=h,port=1,to=70000").to_string(),
            "Value '70000' is out of range for parameter 'to'"
        );
        assert_eq!(
            addr("socket,id=s,fd=3"),
            SocketAddressLegacy::Fd(StringWrapper { str: "3".into() })
        );
    }

    #[test]
    fn reconnect_options() {
        let o = ok("socket,id=s,host=h,port=1,reconnect=5");
        assert_eq!(socket_of(&o).reconnect, Some(5));
        assert_eq!(socket_of(&o).reconnect_ms, None);
        let o = ok("socket,id=s,host=h,port=1,reconnect-ms=250");
        assert_eq!(socket_of(&o).reconnect_ms, Some(250));
        assert_eq!(
            err("socket,id=s,host=h,port=1,reconnect=-1").to_string(),
            "Value '-1' is out of range for parameter 'reconnect'"
        );
    }

    // --- udp ----------------------------------------------------------------------

    #[test]
    fn udp_defaults_and_local_address() {
        let udp = |s: &str| match ok(s).backend {
            ChardevBackend::Udp(u) => u,
            other => panic!("{other:?}"),
        };
        let u = udp("udp,id=u,port=4555");
        assert_eq!(
            u.remote,
            SocketAddressLegacy::Inet(inet("localhost", "4555"))
        );
        assert_eq!(u.local, None);
        assert_eq!(u.common, c0());
        let u = udp("udp,id=u,host=,port=4555,localaddr=,localport=");
        assert_eq!(
            u.remote,
            SocketAddressLegacy::Inet(inet("localhost", "4555"))
        );
        assert_eq!(u.local, None);
        let u = udp("udp,id=u,host=10.0.0.1,port=4555,localport=4556,ipv4=on");
        let remote = InetSocketAddress {
            ipv4: Some(true),
            ..inet("10.0.0.1", "4555")
        };
        assert_eq!(u.remote, SocketAddressLegacy::Inet(remote));
        assert_eq!(u.local, Some(SocketAddressLegacy::Inet(inet("", "4556"))));
        let u = udp("udp,id=u,port=4555,localaddr=127.0.0.1");
        assert_eq!(
            u.local,
            Some(SocketAddressLegacy::Inet(inet("127.0.0.1", "0")))
        );
    }

    // --- numbers and sizes ------------------------------------------------------

    #[test]
    fn sizes_as_qemu_reads_them() {
        let table: &[(&str, u64)] = &[
            ("16", 16),
            ("016", 16),
            (" 16", 16),
            ("+16", 16),
            ("16b", 16),
            ("16B", 16),
            ("0x10", 16),
            ("0X10", 16),
            ("+0x10", 16),
            ("  0x10", 16),
            ("1k", 1024),
            ("1K", 1024),
            ("1.5k", 1536),
            ("0.5k", 512),
            ("1.k", 1024),
            ("1.", 1),
            ("1.0", 1),
            ("1.0b", 1),
            ("1m", 1 << 20),
            ("1g", 1 << 30),
            ("1t", 1 << 40),
            ("1p", 1 << 50),
            ("1e", 1 << 60),
            ("1.5E", 3 << 59),
            ("15E", 15 << 60),
            ("0.0009765625M", 1024),
            ("2.00000000000000000000000001k", 2048),
            ("0xffffffffffffffff", u64::MAX),
            ("0x1e", 30),
        ];
        for (v, want) in table {
            assert_eq!(backlog(v), Ok(Some(*want)), "{v}");
        }
        let (o, w) = warned("null,id=a,backlog=0x1k");
        assert_eq!(o.backend.common().backlog, Some(1024));
        assert_eq!(
            w,
            ["Using a multiplier suffix on hex numbers is deprecated: 0x1k"]
        );
    }

    #[test]
    fn bad_sizes_give_qemu_texts() {
        let invalid = [
            "1x",
            "",
            "-1",
            "-0",
            "16 ",
            "1e3",
            ".5k",
            "0x10.0",
            "1.5",
            "1.5b",
            "1KB",
            "k",
            "0x",
            "1.0e2k",
            "1.5e3",
            "1.5E+",
            "1e+3",
            "0x1.5k",
            "99999999999999999999k",
        ];
        for v in invalid {
            let e = err(&format!("null,id=a,size={v}"));
            assert_eq!(
                e.to_string(),
                "Parameter 'size' expects a non-negative number below 2^64",
                "{v}"
            );
            assert_eq!(
                e.hint(),
                Some(
                    "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n\
                     and exabytes, respectively."
                )
            );
        }
        for v in [
            "99999999999999999999",
            "16E",
            "0x10000000000000000",
            "-99999999999999999999",
        ] {
            assert_eq!(
                err(&format!("null,id=a,size={v}")).to_string(),
                format!("Value '{v}' is out of range for parameter 'size'"),
            );
        }
        assert_eq!(
            backlog("1q").map_err(|e| e.to_string()),
            Err("Parameter 'backlog' expects a non-negative number below 2^64".to_string())
        );
    }

    #[test]
    fn numbers_as_qemu_reads_them() {
        for v in [
            " 5",
            "+5",
            "010",
            "0X1f",
            "-0x5",
            "-1",
            "18446744073709551615",
            "-18446744073709551615",
        ] {
            assert!(parse_chardev(&format!("null,id=a,to={v}")).is_ok(), "{v}");
        }
        for v in [
            "x",
            "",
            "08",
            "0x",
            "5 ",
            " ",
            "+",
            "-",
            "0b1",
            "- 5",
            "0x-5",
            "1k",
            "99999999999999999999x",
        ] {
            assert_eq!(
                err(&format!("null,id=a,to={v}")).to_string(),
                "Parameter 'to' expects a number",
                "{v:?}"
            );
        }
        for v in [
            "99999999999999999999",
            "18446744073709551616",
            "-18446744073709551616",
        ] {
            assert_eq!(
                err(&format!("null,id=a,to={v}")).to_string(),
                format!("Value '{v}' is too large for parameter 'to'")
            );
        }
    }

    // --- errors -------------------------------------------------------------------

    /// Texts observed from QEMU 7.2's `-chardev STRING` (the part after the
    /// `-chardev STRING: ` prefix).
    #[test]
    fn malformed_strings_give_qemu_texts() {
        const ID: &str = "Parameter 'id' expects an identifier";
        let table: &[(&str, &str)] = &[
            ("", "chardev: no id specified"),
            (",", "chardev: no id specified"),
            ("null", "chardev: no id specified"),
            ("foo", "chardev: no id specified"),
            ("=", "Invalid parameter ''"),
            ("=,id=a", "Invalid parameter ''"),
            ("id=", ID),
            ("null,id=", ID),
            ("null,id=1a", ID),
            ("null,id=a b", ID),
            ("null,id=é", ID),
            ("null,id=a,,", ID),
            ("null,id=a,,b", ID),
            ("null,id=a,,,", ID),
            ("null,id=1a,id=b", ID),
            ("null,bogus=1,id=1a", ID),
            ("id=a", "chardev: \"a\" missing backend"),
            (",id=a", "'' is not a valid char driver name"),
            ("foo,id=a", "'foo' is not a valid char driver name"),
            ("NULL,id=a", "'NULL' is not a valid char driver name"),
            ("console,id=c", "'console' is not a valid char driver name"),
            ("null,,x,id=a", "'null,x' is not a valid char driver name"),
            (
                "null,,id=b,id=a",
                "'null,id=b' is not a valid char driver name",
            ),
            ("null,id=a,bogus=1", "Invalid parameter 'bogus'"),
            ("null,id=a,bogus", "Invalid parameter 'bogus'"),
            ("null,id=a,nobogus", "Invalid parameter 'bogus'"),
            ("null,id=a,nohelp", "Invalid parameter 'help'"),
            ("null,id=a,=", "Invalid parameter ''"),
            ("null,=x,id=a", "Invalid parameter ''"),
            ("null,id=a,x=,", "Invalid parameter 'x'"),
            ("null,ID=a", "Invalid parameter 'ID'"),
            ("null,id=a,Mux=on", "Invalid parameter 'Mux'"),
            ("id=a,null", "Invalid parameter 'null'"),
            ("null=,id=a", "Invalid parameter 'null'"),
            ("foo,bogus=1", "Invalid parameter 'bogus'"),
            ("null,bogus=1,server=x", "Invalid parameter 'bogus'"),
            (
                "null,server=x,bogus=1",
                "Parameter 'server' expects 'on' or 'off'",
            ),
            ("foo,server=x", "Parameter 'server' expects 'on' or 'off'"),
            (
                "socket,id=s,server=maybe",
                "Parameter 'server' expects 'on' or 'off'",
            ),
            ("null,id=a,mux=", "Parameter 'mux' expects 'on' or 'off'"),
            ("null,id=a,to=x", "Parameter 'to' expects a number"),
            (
                "null,id=a,size=1x",
                "Parameter 'size' expects a non-negative number below 2^64",
            ),
            ("file,id=f", "chardev: file: no filename given"),
            ("null,id=a,backend=file", "chardev: file: no filename given"),
            ("file,id=f,append=on", "chardev: file: no filename given"),
            ("pipe,id=p", "chardev: pipe: no device path given"),
            ("serial,id=s", "chardev: serial/tty: no device path given"),
            ("tty,id=s", "chardev: serial/tty: no device path given"),
            ("parallel,id=p", "chardev: parallel: no device path given"),
            ("parport,id=p", "chardev: parallel: no device path given"),
            ("mux,id=m", "chardev: mux: no chardev given"),
            ("udp,id=u", "chardev: udp: remote port not specified"),
            ("udp,id=u,port=", "chardev: udp: remote port not specified"),
            ("socket,id=s", "Unable to parse FD number "),
            ("socket,id=s,port=4444", "Unable to parse FD number "),
            (
                "socket,id=s,path=/a,host=x",
                "None or one of 'path', 'fd' or 'host' option required.",
            ),
            (
                "socket,id=s,path=/a,fd=3",
                "None or one of 'path', 'fd' or 'host' option required.",
            ),
            (
                "socket,id=s,host=localhost",
                "chardev: socket: no port given",
            ),
            (
                "socket,id=s,path=/b,delay=on,nodelay=on",
                "'delay' and 'nodelay' are mutually exclusive",
            ),
            (
                "socket,id=s,path=/b,nodelay,nodelay=on",
                "'delay' and 'nodelay' are mutually exclusive",
            ),
        ];
        for (input, want) in table {
            assert_eq!(err(input).to_string(), *want, "input {input:?}");
        }
        assert_eq!(
            err("null,id=1a").hint(),
            Some("Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.")
        );
        assert_eq!(err("null,id=a,bogus=1").hint(), None);
        assert_eq!(err("null,id=a,,").to_string(), ID);
        assert_eq!(err("null,id=a,,"), OptsError::InvalidId("a,".into()));
    }

    #[test]
    fn qemu_only_backends_are_unknown_to_qchar() {
        for b in [
            "vc",
            "msmouse",
            "testdev",
            "wctablet",
            "braille",
            "spicevmc",
            "qemu-vdagent",
        ] {
            assert_eq!(
                err(&format!("{b},id=a")).to_string(),
                format!("'{b}' is not a valid char driver name")
            );
        }
        // Keys QEMU knows are accepted and type-checked even if unused.
        assert!(
            parse_chardev("null,id=a,width=80,cols=3,name=x,mouse=on,clipboard=off,debug=1")
                .is_ok()
        );
        assert_eq!(
            err("null,id=a,width=x").to_string(),
            "Parameter 'width' expects a number"
        );
    }

    #[test]
    fn help_requests() {
        for s in ["help", "?", "help,id=a", "backend=help"] {
            let e = err(s);
            assert_eq!(e, OptsError::BackendHelp, "{s}");
            let text = e.to_string();
            assert!(
                text.starts_with("Available chardev backend types: \n  file\n  serial"),
                "{text}"
            );
        }
        for s in ["null,id=a,help", "null,id=a,?", "foo,help,bogus=1"] {
            let e = err(s);
            assert_eq!(e, OptsError::OptionHelp, "{s}");
            let text = e.to_string();
            assert!(
                text.starts_with("chardev options:\n  abstract=<bool (on/off)>\n"),
                "{text}"
            );
            assert!(text.contains("\n  size=<size>\n") && text.contains("\n  to=<num>\n"));
            assert!(text.ends_with("\n  width=<num>"));
        }
        // Errors before the help key still win.
        assert_eq!(
            err("null,bogus=1,help").to_string(),
            "Invalid parameter 'bogus'"
        );
        assert_eq!(
            err("help,id=1").to_string(),
            "Parameter 'id' expects an identifier"
        );
    }

    // --- shorthands -----------------------------------------------------------------

    #[test]
    fn shorthand_none_and_existing() {
        assert_eq!(
            parse_serial_shorthand("none", "serial0"),
            Ok(SerialTarget::None)
        );
        assert_eq!(
            parse_serial_shorthand("chardev:foo", "x"),
            Ok(SerialTarget::Existing("foo".into()))
        );
        assert_eq!(
            parse_serial_shorthand("chardev:", "x"),
            Ok(SerialTarget::Existing(String::new()))
        );
        // Only the exact word: "none2" is an unknown device.
        assert_eq!(
            compat_err("none2").to_string(),
            "'none2' is not a valid char driver"
        );
    }

    #[test]
    fn shorthand_simple_devices() {
        let (o, mon) = new("null", "serial0");
        assert_eq!(
            o,
            ChardevOptions {
                id: "serial0".into(),
                backend: ChardevBackend::Null(c0()),
                mux: false
            }
        );
        assert!(!mon);
        assert_eq!(new("pty", "s").0.backend, ChardevBackend::Pty(c0()));
        let stdio = ChardevBackend::Stdio(ChardevStdio {
            common: c0(),
            signal: Some(true),
        });
        assert_eq!(new("stdio", "s").0.backend, stdio);
        let hd = |d: &str| ChardevHostdev {
            common: c0(),
            device: d.into(),
        };
        assert_eq!(
            new("pipe:/p", "s").0.backend,
            ChardevBackend::Pipe(hd("/p"))
        );
        assert_eq!(
            new("/dev/ttyS0", "s").0.backend,
            ChardevBackend::Serial(hd("/dev/ttyS0"))
        );
        assert_eq!(
            new("COM1", "s").0.backend,
            ChardevBackend::Serial(hd("COM1"))
        );
        assert_eq!(
            new("/dev/parport0", "s").0.backend,
            ChardevBackend::Parallel(hd("/dev/parport0"))
        );
        assert_eq!(
            new("/dev/ppi0", "s").0.backend,
            ChardevBackend::Parallel(hd("/dev/ppi0"))
        );
        // file: takes the rest verbatim, commas included.
        let file = ChardevFile {
            common: c0(),
            input: None,
            out: "/f1,x".into(),
            append: Some(false),
        };
        assert_eq!(new("file:/f1,x", "s").0.backend, ChardevBackend::File(file));
        assert!(
            matches!(new("file:", "s").0.backend, ChardevBackend::File(ref f) if f.out.is_empty())
        );
    }

    #[test]
    fn shorthand_mon_prefix_muxes_and_flags_monitor() {
        let (o, mon) = new("mon:stdio", "serial0");
        assert!(mon && o.mux);
        assert_eq!(
            o.backend,
            ChardevBackend::Stdio(ChardevStdio {
                common: c0(),
                signal: Some(false)
            })
        );
        let (o, mon) = new("mon:null", "m");
        assert!(mon && o.mux);
        assert_eq!(o.backend, ChardevBackend::Null(c0()));
        let (o, mon) = new("mon:tcp::4444,server=on,wait=off,mux=off", "m");
        assert!(!mon && !o.mux);
        let (o, mon) = new("tcp::4444,server=on,wait=off,mux=on", "m");
        assert!(mon && o.mux);
    }

    #[test]
    fn shorthand_tcp_family() {
        let (o, _) = new("tcp::4444,server,nowait", "serial0");
        let want = ChardevSocket {
            server: Some(true),
            wait: Some(false),
            ..base_socket(SocketAddressLegacy::Inet(inet("", "4444")))
        };
        assert_eq!(*socket_of(&o), want);
        let (o, _) = new("tcp:127.0.0.1:4444,server=on,wait=off,id=zz", "serial0");
        assert_eq!(o.id, "serial0");
        assert_eq!(
            socket_of(&o).addr,
            SocketAddressLegacy::Inet(inet("127.0.0.1", "4444"))
        );
        let (o, _) = new("tcp:h:1", "s");
        assert_eq!(
            *socket_of(&o),
            base_socket(SocketAddressLegacy::Inet(inet("h", "1")))
        );
        let (o, _) = new("telnet::4444,server=on,wait=off,telnet=off", "s");
        assert_eq!(
            socket_of(&o).telnet,
            Some(true),
            "the prefix wins over the options"
        );
        assert_eq!(
            socket_of(&new("websocket::1,server", "s").0).websocket,
            Some(true)
        );
        assert_eq!(
            socket_of(&new("tn3270::1,server", "s").0).tn3270,
            Some(true)
        );
        // QEMU's scanner: host stops at the first colon, no brackets.
        let (o, _) = new("tcp:[::1]:4444", "s");
        assert_eq!(
            socket_of(&o).addr,
            SocketAddressLegacy::Inet(inet("[", ":1]:4444"))
        );
        assert_eq!(
            socket_of(&new("tcp::4444x", "s").0).addr,
            SocketAddressLegacy::Inet(inet("", "4444x"))
        );
        // Ports are cut at 32 bytes and the rest, options included, ignored.
        let long = format!("tcp::{},server=on", "9".repeat(40));
        let s = new(&long, "s").0;
        assert_eq!(
            socket_of(&s).addr,
            SocketAddressLegacy::Inet(inet("", &"9".repeat(32)))
        );
        assert_eq!(socket_of(&s).server, Some(false));
        // Later options override what the shorthand set.
        assert_eq!(
            new("tcp::1,server=on,wait=off,backend=null", "s").0.backend,
            ChardevBackend::Null(c0())
        );
    }

    #[test]
    fn shorthand_unix() {
        let (o, _) = new("unix:/p,server,nowait", "s");
        let want = ChardevSocket {
            server: Some(true),
            wait: Some(false),
            ..base_socket(unix("/p"))
        };
        assert_eq!(*socket_of(&o), want);
        let (o, _) = new("unix:/u,,2,server=on,wait=off", "s");
        assert_eq!(socket_of(&o).addr, unix("/u,2"));
        let (o, _) = new("unix:path=/q", "s");
        assert_eq!(socket_of(&o).addr, unix("/q"));
    }

    #[test]
    fn shorthand_udp() {
        let udp = |s: &str| match new(s, "s").0.backend {
            ChardevBackend::Udp(u) => u,
            other => panic!("{other:?}"),
        };
        let u = udp("udp::4555");
        assert_eq!(
            u.remote,
            SocketAddressLegacy::Inet(inet("localhost", "4555"))
        );
        assert_eq!(u.local, None);
        let u = udp("udp:h:1@:2");
        assert_eq!(u.remote, SocketAddressLegacy::Inet(inet("h", "1")));
        assert_eq!(u.local, Some(SocketAddressLegacy::Inet(inet("", "2"))));
        let u = udp("udp:h:1@l:2");
        assert_eq!(u.local, Some(SocketAddressLegacy::Inet(inet("l", "2"))));
        // No trailing options for udp: the rest is ignored.
        assert_eq!(
            udp("udp:h:1,junk").remote,
            SocketAddressLegacy::Inet(inet("h", "1"))
        );
    }

    /// Texts observed from QEMU 7.2's `-serial DEV` (the line before its
    /// "could not connect serial device" line), plus qchar's choices for the
    /// devices QEMU has and qchar lacks.
    #[test]
    fn shorthand_errors() {
        let table: &[(&str, &str)] = &[
            ("foo", "'foo' is not a valid char driver"),
            ("ringbuf", "'ringbuf' is not a valid char driver"),
            ("", "'' is not a valid char driver"),
            ("mon:mon:null", "'mon:null' is not a valid char driver"),
            ("mon:chardev:x", "'chardev:x' is not a valid char driver"),
            ("null,id=x", "'null,id=x' is not a valid char driver"),
            ("pty:/x", "'pty:/x' is not a valid char driver"),
            (
                "tcp:127.0.0.1:1,server=on,bogus=1",
                "Invalid parameter 'bogus'",
            ),
            ("tcp::1,help", "Invalid parameter 'help'"),
            ("unix:/a=b", "Invalid parameter '/a'"),
            ("unix:", "Unable to parse FD number "),
            ("con:", "'console' is not a valid char driver name"),
            // QEMU prints only its caller's line for these.
            ("tcp:", "parse error: tcp:"),
            ("tcp:host", "parse error: tcp:host"),
            ("tcp::", "parse error: tcp::"),
            ("tcp:h:", "parse error: tcp:h:"),
            ("udp:", "parse error: udp:"),
            ("udp:1", "parse error: udp:1"),
            ("udp:h:1@", "parse error: udp:h:1@"),
            ("vc:80", "parse error: vc:80"),
            ("mon:vc:x", "parse error: mon:vc:x"),
            // QEMU opens these; qchar cannot.
            ("vc", "'vc' is not a valid char driver name"),
            ("vcxyz", "'vc' is not a valid char driver name"),
            ("vc:80x24", "'vc' is not a valid char driver name"),
            ("vc:80Cx24C", "'vc' is not a valid char driver name"),
            ("msmouse", "'msmouse' is not a valid char driver name"),
        ];
        for (input, want) in table {
            assert_eq!(compat_err(input).to_string(), *want, "input {input:?}");
        }
        assert_eq!(
            parse_serial_shorthand("null", "0bad"),
            Err(OptsError::InvalidId("0bad".into()))
        );
    }

    // --- robustness -----------------------------------------------------------------

    const VALID: &[&str] = &[
        "null,id=a",
        "file,id=f,path=/srv/a,,b,append=on,input-path=/i,logfile=/l,logappend=off",
        "socket,id=s,path=/p,server,nowait,nodelay,abstract,notight",
        "socket,id=s,host=::1,port=4444,to=4450,ipv4=on,reconnect=3,reconnect-ms=5,telnet=on",
        "udp,id=u,host=h,port=1,localaddr=l,localport=2,ipv6=on",
        "ringbuf,id=r,size=1.5k,backlog=0x1k,mux=on",
        "stdio,id=s,signal=off",
        "mux,id=m,chardev=r",
        "tty,id=t,path=/dev/ttyS0",
    ];

    const SHORTHANDS: &[&str] = &[
        "mon:stdio",
        "tcp:127.0.0.1:4444,server=on,wait=off,nodelay",
        "telnet::4444,server,nowait",
        "udp:h:1@l:2",
        "unix:/p,,q,server=on",
        "file:/f",
        "vc:80Cx24C",
        "/dev/ttyS0",
        "chardev:x",
    ];

    /// What an accepted result must satisfy: a well-formed id and a backend
    /// that survives the QMP JSON form.
    fn check_accepted(input: &str, o: &ChardevOptions) {
        assert!(check_id(&o.id).is_ok(), "{input:?} gave bad id {:?}", o.id);
        let json = serde_json::to_string(&o.backend).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        let back: ChardevBackend =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{input:?}: {json}: {e}"));
        assert_eq!(back, o.backend, "{input:?}");
    }

    fn exercise(input: &str) {
        if let Ok(o) = parse_chardev(input) {
            check_accepted(input, &o);
        }
        if let Ok(SerialTarget::New { options, monitor }) = parse_serial_shorthand(input, "serial0")
        {
            check_accepted(input, &options);
            assert_eq!(monitor, options.mux);
        }
    }

    #[test]
    fn every_prefix_parses_or_errs() {
        for s in VALID.iter().chain(SHORTHANDS) {
            for (i, _) in s.char_indices().chain([(s.len(), ' ')]) {
                exercise(&s[..i]);
            }
        }
    }

    #[test]
    fn mutations_never_panic() {
        const BITS: &[&str] = &[
            ",",
            "=",
            ",,",
            ":",
            "@",
            "no",
            "id=",
            "0x",
            "é",
            "€",
            "\u{10348}",
            "\0",
            " ",
            "k",
            "E",
            ".",
            "-",
            "server",
            "help",
            "?",
            "9999999999999999999999",
            "path=",
            "host=",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for s in VALID.iter().chain(SHORTHANDS) {
            for _ in 0..400 {
                let mut m = s.to_string();
                for _ in 0..1 + rand(3) {
                    let cuts: Vec<usize> =
                        m.char_indices().map(|(i, _)| i).chain([m.len()]).collect();
                    let at = cuts[rand(cuts.len())];
                    match rand(3) {
                        0 => m.insert_str(at, BITS[rand(BITS.len())]),
                        1 => {
                            let to = cuts[rand(cuts.len())].max(at);
                            m.replace_range(at..to, "");
                        }
                        _ => {
                            let to = cuts[rand(cuts.len())].max(at);
                            m.replace_range(at..to, BITS[rand(BITS.len())]);
                        }
                    }
                }
                exercise(&m);
            }
        }
    }

    #[test]
    fn huge_inputs_are_handled() {
        let long_value = format!("file,id=f,path={}", "x".repeat(1 << 20));
        assert!(
            matches!(ok(&long_value).backend, ChardevBackend::File(ref f) if f.out.len() == 1 << 20)
        );
        let commas = format!("file,id=f,path={}", ",,".repeat(100_000));
        assert!(
            matches!(ok(&commas).backend, ChardevBackend::File(ref f) if f.out.len() == 100_000)
        );
        let many = format!("null,id=a{}", ",mux=on".repeat(100_000));
        assert!(ok(&many).mux);
        exercise(&",".repeat(100_000));
        exercise(&"=".repeat(100_000));
        assert_eq!(
            backlog(&"9".repeat(10_000)).map_err(|e| e.to_string()),
            Err(format!(
                "Value '{}' is out of range for parameter 'backlog'",
                "9".repeat(10_000)
            ))
        );
        let host = "h".repeat(100_000);
        assert_eq!(
            compat_err(&format!("tcp:{host}:1")).to_string(),
            format!("parse error: tcp:{host}:1")
        );
    }
}
