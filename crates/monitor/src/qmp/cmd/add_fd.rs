//! `add-fd`: puts the descriptor received with SCM_RIGHTS into a
//! descriptor set (see [`qchar_chardev::fdset`]).

use super::{CommandDef, Ctx};
use crate::fds::NO_FD_SUPPLIED;
use crate::json::Value;
use crate::qmp::error::{QmpError, QmpResult};
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "add-fd",
    allow_oob: false,
    run,
};

fn run(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let fdset_id = args.opt_int("fdset-id")?;
    let opaque = args.opt_str("opaque")?;
    args.finish()?;
    // Arguments first: a descriptor sent with a malformed request stays
    // waiting, as in QEMU.
    let fd = ctx
        .fds
        .take_received()
        .ok_or_else(|| QmpError::generic(NO_FD_SUPPLIED))?;
    let info = ctx
        .env
        .chardevs
        .fdsets()
        .add_fd(fd, fdset_id, opaque)
        .map_err(|e| QmpError::generic(e.to_string()))?;
    Ok(Value::Dict(crate::dict! {
        "fdset-id" => info.fdset_id,
        "fd" => i64::from(info.fd),
    }))
}
