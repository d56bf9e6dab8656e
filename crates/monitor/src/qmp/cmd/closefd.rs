//! `closefd`: closes a descriptor `getfd` named on this monitor.

use super::{CommandDef, Ctx};
use crate::json::{Dict, Value};
use crate::qmp::error::{QmpError, QmpResult};
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "closefd",
    allow_oob: false,
    run,
};

fn run(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let name = args.req_str("fdname")?;
    args.finish()?;
    ctx.fds.closefd(&name).map_err(QmpError::generic)?;
    Ok(Value::Dict(Dict::new()))
}
