//! QEMU's `-chardev` option strings and the legacy
//! `-serial`/`-monitor`/`-parallel` device shorthands, read into the
//! [`crate::spec`] types a backend is opened from.
//!
//! The behaviour follows QEMU 7.2 as observed from its command line. The
//! option string itself (the key/value syntax with `,,` escapes, the implied
//! first key `backend`, the first `id` winning while every other key's last
//! value wins, the boolean, number and size spellings) is QEMU's QemuOpts
//! format, read by [`crate::qemuopts`] against [`CHARDEV_OPTS`]; this module
//! adds what QEMU does when it creates the chardev: the backend's defaults in
//! the QAPI structs and its checks (`opts/backends.rs`), and the shorthands
//! (`opts/legacy.rs`). For every mistake QEMU also refuses, an [`OptsError`]'s
//! `Display` is exactly what QEMU prints after `-chardev STRING: `.
//! Deprecation warnings are available through
//! [`parse_chardev_with_warnings`].
//!
//! QEMU reports the errors of the first step ([`OptsError::Parse`]) while it
//! reads its command line and the others when it creates chardevs; callers
//! that need that order (the qchar binary) run the steps apart:
//! [`crate::qemuopts::parse`] with [`CHARDEV_OPTS`], then
//! [`chardev_from_opts`].
//!
//! `memory` parses to [`ChardevBackend::Memory`] (QEMU stores it as a ringbuf
//! but reports the `memory` name), and QEMU-only backends (`vc`, `msmouse`,
//! ...) are refused as unknown drivers.
//!
//! The parser does what QEMU does while *parsing*. Checks QEMU makes when it
//! *opens* a backend (ringbuf size a power of two, `reconnect` on a server,
//! a websocket client, `wait` on a client, `tls-creds` naming an object
//! that does not fit, `tls-authz` without `tls-creds`, fd addresses, tn3270,
//! parallel ports) are left to the backend, which needs them for QMP's
//! `chardev-add` anyway.
//!
//! qchar extensions that QEMU 7.2 lacks: TLS on unix sockets, `backlog=SIZE` (the replay buffer,
//! [`ChardevCommon::backlog`](crate::spec::ChardevCommon::backlog)), `input-path=` for `file`, `reconnect-ms=`,
//! `numeric=`/`keep-alive=` for TCP sockets, `x-logsize=`, `x-logkeep=`
//! and `x-logtimestamp=` for `logfile=` ([`crate::logfile`]), and QEMU
//! 10's `hub` backend with `chardevs.0=`..`chardevs.3=`.

// Hand-written: QEMU's -chardev semantics and error texts are the specification.

mod backends;
mod legacy;

use crate::qemuopts::{self, grammar::is_help_word, is_identifier, QemuOpts, QemuOptsError};
use crate::spec::{ChardevBackend, SUPPORTED_BACKENDS};
use thiserror::Error;

pub use backends::CHARDEV_OPTS;

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
    /// The string is not a valid `-chardev` QemuOpts string (a bad or
    /// unknown key, a bad value, an id that is not an identifier, a help
    /// request); QEMU reports these while it reads its command line. Also
    /// (qchar) a number too big for its QAPI field, where QEMU truncates.
    #[error(transparent)]
    Parse(#[from] QemuOptsError),
    /// No `id=` at all.
    #[error("chardev: no id specified")]
    NoId,
    /// An id but no backend name (`id=x` alone); carries the id.
    #[error("chardev: \"{0}\" missing backend")]
    MissingBackend(String),
    /// A backend name qchar does not know (QEMU-only ones such as `vc` too).
    #[error("'{0}' is not a valid char driver name")]
    UnknownDriver(String),
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
    /// Backend `help` or `?`: the text lists the backends qchar can open
    /// (QEMU prints it on standard output and exits with status 0).
    #[error("Available chardev backend types: {}", backend_help())]
    BackendHelp,
}

impl OptsError {
    /// Whether QEMU's option parser reports this (the id, the keys, the
    /// typed values, a help request) rather than the creation of the
    /// chardev: HMP then adds `Parsing chardev args failed`, and the
    /// command line stops at once.
    pub fn is_parse_error(&self) -> bool {
        matches!(self, OptsError::Parse(_))
    }

    /// The extra line(s) QEMU prints under this error, if any.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            OptsError::Parse(e) => e.hint(),
            _ => None,
        }
    }
}

fn backend_help() -> String {
    SUPPORTED_BACKENDS
        .iter()
        .map(|b| format!("\n  {b}"))
        .collect()
}

/// Parses a `-chardev` option string, dropping deprecation warnings.
pub fn parse_chardev(s: &str) -> Result<ChardevOptions, OptsError> {
    parse_chardev_with_warnings(s).map(|(options, _)| options)
}

/// Parses a `-chardev` option string and also returns the deprecation
/// warnings QEMU 7.2 would print (short-form booleans such as `server`,
/// the `tty`/`parport` aliases, hex sizes with a suffix). Each warning is the
/// text after QEMU's `warning: ` prefix; a second line, when QEMU prints one,
/// follows a `\n`. Warnings are only returned with a successful parse (QEMU
/// prints those before an error too; [`crate::qemuopts::parse`] and
/// [`chardev_from_opts`] give them either way).
pub fn parse_chardev_with_warnings(s: &str) -> Result<(ChardevOptions, Vec<String>), OptsError> {
    let mut warnings = Vec::new();
    let opts = qemuopts::parse(&CHARDEV_OPTS, s, &mut warnings)?;
    let options = chardev_from_opts(&opts, &mut warnings)?;
    Ok((options, warnings))
}

/// What QEMU does with a parsed `-chardev` when it creates the chardev:
/// the alias warning (first of all), help for backend `help`, the id and
/// backend checks, the backend's defaults and checks. `opts` comes from
/// [`crate::qemuopts::parse`] with [`CHARDEV_OPTS`]; warnings (the
/// deprecated aliases, to print through [`warn_once`]) go onto `warnings`.
pub fn chardev_from_opts(
    opts: &QemuOpts,
    warnings: &mut Vec<String>,
) -> Result<ChardevOptions, OptsError> {
    let backend = opts
        .get("backend")
        .map(|name| legacy::translate_alias(name, warnings));
    if backend.is_some_and(is_help_word) {
        return Err(OptsError::BackendHelp);
    }
    let id = opts.id().ok_or(OptsError::NoId)?.to_string();
    let Some(backend) = backend else {
        return Err(OptsError::MissingBackend(id));
    };
    let backend = backends::build_backend(backend, opts, warnings)?;
    let mux = opts.get_bool("mux").unwrap_or(false);
    Ok(ChardevOptions { id, backend, mux })
}

/// The backend alone, as QEMU builds it from parsed options for HMP's
/// `chardev-change` (`qemu_chr_parse_opts`): the alias warning, then the
/// backend's checks; no id is needed (one missing backend is reported for
/// the id `(null)`, as C prints it), `mux` and a backend named `help` mean
/// nothing special.
pub fn backend_from_opts(
    opts: &QemuOpts,
    warnings: &mut Vec<String>,
) -> Result<ChardevBackend, OptsError> {
    let Some(backend) = opts.get("backend") else {
        let id = opts.id().unwrap_or("(null)");
        return Err(OptsError::MissingBackend(id.to_string()));
    };
    let backend = legacy::translate_alias(backend, warnings);
    backends::build_backend(backend, opts, warnings)
}

/// Whether a creation warning (the `tty`/`parport` aliases) is to be
/// printed now: QEMU prints each at most once per process. Marks it
/// printed.
pub fn warn_once(warning: &str) -> bool {
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen.iter().any(|w| w == warning) {
        return false;
    }
    seen.push(warning.to_string());
    true
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
    if !is_identifier(id) {
        return Err(QemuOptsError::InvalidId(id.to_string()).into());
    }
    let mut opts = QemuOpts::new(&CHARDEV_OPTS);
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
    legacy::compat_fill(&mut opts, s, dev, &mut warnings)?;
    let backend = opts.get("backend").unwrap_or_default();
    let backend = backends::build_backend(backend, &opts, &mut warnings)?;
    let mux = opts.get_bool("mux").unwrap_or(false);
    Ok(SerialTarget::New {
        options: ChardevOptions {
            id: id.to_string(),
            backend,
            mux,
        },
        monitor: mux,
    })
}

#[cfg(test)]
mod tests;
