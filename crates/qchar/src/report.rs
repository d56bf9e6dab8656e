//! Messages on stderr the way QEMU prints them: `PROG: LOCATION: TEXT`,
//! where PROG is the program's file name (as QEMU takes `argv[0]`'s base
//! name: `qchar`, or `qemu-system-x86_64` for a link of that name) and
//! LOCATION the option being acted on. Library log records go through the
//! same format.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use crate::cli::Diag;

static PROG: OnceLock<String> = OnceLock::new();
static LOCATION: Mutex<Option<String>> = Mutex::new(None);

/// Sets the program name from `argv[0]`.
pub fn set_prog(argv0: &str) {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    let _ = PROG.set(if base.is_empty() { "qchar" } else { base }.to_string());
}

/// The program name messages start with.
pub fn prog() -> &'static str {
    PROG.get().map(String::as_str).unwrap_or("qchar")
}

/// The option being acted on, for messages logged meanwhile.
pub fn set_location(loc: Option<&str>) {
    *LOCATION.lock().unwrap_or_else(|e| e.into_inner()) = loc.map(str::to_string);
}

fn location() -> Option<String> {
    LOCATION.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Prints a diagnostic on stderr.
pub fn print(d: &Diag) {
    let _ = std::io::stderr().write_all(d.render(prog()).as_bytes());
}

/// Prints a one-line message `PROG: TEXT` on stderr.
pub fn error(text: &str) {
    print(&Diag::at(None, text));
}

/// Prints a notice `PROG: TEXT` on stderr (where QEMU prints its own, such
/// as a VNC server's address).
pub fn note(text: &str) {
    print(&Diag::at(None, text));
}

/// Routes `log` records to stderr: warnings and errors always, QEMU's
/// `info:` lines (a server socket waiting for its client), and everything
/// down to the level in `QCHAR_LOG` (`error`, `warn`, `info`, `debug`,
/// `trace`) when set.
struct Logger {
    level: log::LevelFilter,
}

/// Messages QEMU prints as `info:` although qchar's library logs them.
const INFO_PREFIXES: &[&str] = &["QEMU waiting for connection on:"];

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
            || (metadata.level() == log::Level::Info
                && metadata.target().starts_with("qchar_chardev"))
    }

    fn log(&self, record: &log::Record<'_>) {
        let text = record.args().to_string();
        let qemu_info =
            record.level() == log::Level::Info && INFO_PREFIXES.iter().any(|p| text.starts_with(p));
        if !qemu_info && record.level() > self.level {
            return;
        }
        let loc = location();
        let kind = match record.level() {
            log::Level::Error => "",
            log::Level::Warn => "warning: ",
            log::Level::Info => "info: ",
            log::Level::Debug => "debug: ",
            log::Level::Trace => "trace: ",
        };
        let text = format!("{kind}{text}");
        print(&Diag::at(
            if qemu_info { loc.as_deref() } else { None },
            text,
        ));
    }

    fn flush(&self) {}
}

/// Installs the logger (once).
pub fn init_logging() {
    let level = match std::env::var("QCHAR_LOG").ok().as_deref() {
        Some("error") => log::LevelFilter::Error,
        Some("info") => log::LevelFilter::Info,
        Some("debug") => log::LevelFilter::Debug,
        Some("trace") => log::LevelFilter::Trace,
        Some("off") => log::LevelFilter::Off,
        _ => log::LevelFilter::Warn,
    };
    static LOGGER: OnceLock<Logger> = OnceLock::new();
    let logger = LOGGER.get_or_init(|| Logger { level });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level.max(log::LevelFilter::Info));
    }
}
