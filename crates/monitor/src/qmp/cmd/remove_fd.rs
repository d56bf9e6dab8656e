//! `remove-fd`: removes a descriptor set's member, or all of them; the set
//! closes them by QEMU's rule (see [`qchar_chardev::fdset`]).

use super::{CommandDef, Ctx};
use crate::json::{Dict, Value};
use crate::qmp::error::{QmpError, QmpResult};
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "remove-fd",
    allow_oob: false,
    run,
};

fn run(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let fdset_id = args.req_int("fdset-id")?;
    let fd = args.opt_int("fd")?;
    args.finish()?;
    ctx.env
        .chardevs
        .fdsets()
        .remove_fd(fdset_id, fd)
        .map_err(|e| QmpError::generic(e.to_string()))?;
    Ok(Value::Dict(Dict::new()))
}
