//! `chardev-remove`.

use super::{CommandDef, Ctx};
use crate::json::{Dict, Value};
use crate::qmp::error::{QmpError, QmpResult};
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "chardev-remove",
    allow_oob: false,
    run,
};

fn run(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let id = args.req_str("id")?;
    args.finish()?;
    ctx.env
        .chardevs
        .remove(&id)
        .map_err(|e| QmpError::generic(e.to_string()))?;
    Ok(Value::Dict(Dict::new()))
}
