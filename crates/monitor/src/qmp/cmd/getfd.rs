//! `getfd`: names the descriptor received with SCM_RIGHTS on this
//! monitor's connection; names are kept per monitor (see [`crate::fds`]).

use super::{CommandDef, Ctx};
use crate::json::{Dict, Value};
use crate::qmp::error::{QmpError, QmpResult};
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "getfd",
    allow_oob: false,
    run,
};

fn run(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let name = args.req_str("fdname")?;
    args.finish()?;
    ctx.fds.getfd(&name).map_err(QmpError::generic)?;
    Ok(Value::Dict(Dict::new()))
}
