//! The QMP command table. One file per command (or small group); adding a
//! command means one new file and one entry in [`COMMANDS`].

use std::sync::Arc;

use crate::event::EventBus;
use crate::json::Value;
use crate::ops::ChardevOps;
use crate::vm::VmControl;

use super::error::QmpResult;
use super::visitor::ObjVisitor;

mod bridge;
mod capabilities;
mod chardev_add;
mod chardev_change;
mod chardev_remove;
mod human_monitor;
mod object;
mod query_chardev;
mod query_chardev_stats;
mod query_commands;
mod query_name;
mod query_version;
mod ringbuf;
mod run_state;
mod send_break;
mod yank;

pub use object::from_json_value as object_options_from_json;
pub(crate) use object::{add_from_str as object_add_from_str, objects_or_error};
pub(crate) use query_chardev_stats::hmp_text as chardev_stats_text;
pub(crate) use ringbuf::{read_bytes as ringbuf_read_bytes, ringbuf_error};

/// What the commands act on; shared by every monitor of a process.
pub struct QmpEnv {
    /// The chardev registry.
    pub chardevs: Arc<dyn ChardevOps>,
    /// The guest.
    pub vm: Arc<dyn VmControl>,
    /// What `query-version` and the greeting report.
    pub version: VersionInfo,
    /// Where events go.
    pub events: EventBus,
}

/// The version a monitor reports (QEMU's `VersionInfo`). qchar claims the
/// QEMU version whose protocol it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// Major.
    pub major: i64,
    /// Minor.
    pub minor: i64,
    /// Micro.
    pub micro: i64,
    /// Free-form package string.
    pub package: String,
}

impl Default for VersionInfo {
    fn default() -> Self {
        VersionInfo {
            major: 7,
            minor: 2,
            micro: 0,
            package: format!("qchar {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl VersionInfo {
    /// The `VersionInfo` object, members in QEMU's order.
    pub fn to_value(&self) -> Value {
        let qemu =
            crate::dict! { "major" => self.major, "minor" => self.minor, "micro" => self.micro };
        Value::Dict(crate::dict! { "qemu" => qemu, "package" => self.package.as_str() })
    }
}

/// Per-session capability state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps {
    /// `qmp_capabilities` succeeded.
    pub negotiated: bool,
    /// The greeting offered `oob`.
    pub oob_offered: bool,
    /// The client enabled `oob`.
    pub oob_enabled: bool,
    /// `quit` succeeded: requests after it are not handled (QEMU exits
    /// before it gets to them).
    pub quitting: bool,
}

/// What a command gets.
pub struct Ctx<'a> {
    /// Shared environment.
    pub env: &'a QmpEnv,
    /// The session's capabilities.
    pub caps: &'a mut Caps,
}

/// A command's implementation: visits its arguments (ending with
/// [`ObjVisitor::finish`], as QEMU's marshallers do), then acts.
pub type CommandFn = fn(&mut Ctx<'_>, ObjVisitor<'_>) -> QmpResult<Value>;

/// One table entry.
pub struct CommandDef {
    /// The command name.
    pub name: &'static str,
    /// May run via `exec-oob`.
    pub allow_oob: bool,
    /// The implementation.
    pub run: CommandFn,
}

/// Every command qchar implements, in the order QEMU 7.2 lists them in
/// `query-commands` (qchar's `x-` extensions beside the command they
/// extend).
pub static COMMANDS: &[CommandDef] = &[
    human_monitor::DEF,
    run_state::CONT,
    run_state::STOP,
    query_name::DEF,
    yank::QUERY,
    yank::DEF,
    object::DEL,
    object::ADD,
    object::QOM_GET,
    object::QOM_LIST,
    run_state::QUIT,
    query_commands::DEF,
    query_version::DEF,
    capabilities::DEF,
    send_break::DEF,
    chardev_remove::DEF,
    chardev_change::DEF,
    chardev_add::DEF,
    ringbuf::READ,
    ringbuf::WRITE,
    query_chardev::BACKENDS,
    query_chardev::DEF,
    // qchar's own, beside the command it extends.
    query_chardev_stats::DEF,
    run_state::QUERY_STATUS,
];

/// Looks a command up.
pub fn find(name: &[u8]) -> Option<&'static CommandDef> {
    COMMANDS.iter().find(|c| c.name.as_bytes() == name)
}
