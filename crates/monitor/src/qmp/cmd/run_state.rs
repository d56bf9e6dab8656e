//! Guest run state: `query-status`, `stop`, `cont`, `quit`, through
//! [`crate::vm::VmControl`].

use super::{CommandDef, Ctx};
use crate::json::{Dict, Value};
use crate::qmp::error::{QmpError, QmpResult};
use crate::qmp::visitor::ObjVisitor;

pub(super) const QUERY_STATUS: CommandDef = CommandDef {
    name: "query-status",
    allow_oob: false,
    run: query_status,
};
pub(super) const STOP: CommandDef = CommandDef {
    name: "stop",
    allow_oob: false,
    run: stop,
};
pub(super) const CONT: CommandDef = CommandDef {
    name: "cont",
    allow_oob: false,
    run: cont,
};
pub(super) const QUIT: CommandDef = CommandDef {
    name: "quit",
    allow_oob: false,
    run: quit,
};

fn query_status(ctx: &mut Ctx<'_>, args: ObjVisitor<'_>) -> QmpResult<Value> {
    args.finish()?;
    let st = ctx.env.vm.status();
    Ok(Value::Dict(crate::dict! {
        "running" => st.is_running(),
        "singlestep" => false,
        "status" => st.as_str(),
    }))
}

fn stop(ctx: &mut Ctx<'_>, args: ObjVisitor<'_>) -> QmpResult<Value> {
    args.finish()?;
    ctx.env.vm.stop();
    Ok(Value::Dict(Dict::new()))
}

fn cont(ctx: &mut Ctx<'_>, args: ObjVisitor<'_>) -> QmpResult<Value> {
    args.finish()?;
    ctx.env.vm.cont().map_err(QmpError::Generic)?;
    Ok(Value::Dict(Dict::new()))
}

fn quit(ctx: &mut Ctx<'_>, args: ObjVisitor<'_>) -> QmpResult<Value> {
    args.finish()?;
    ctx.caps.quitting = true;
    ctx.env.vm.quit();
    Ok(Value::Dict(Dict::new()))
}
