//! `query-name`: the guest's name, `{}` when it has none.

use super::{CommandDef, Ctx};
use crate::json::{Dict, Value};
use crate::qmp::error::QmpResult;
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "query-name",
    allow_oob: false,
    run,
};

fn run(ctx: &mut Ctx<'_>, args: ObjVisitor<'_>) -> QmpResult<Value> {
    args.finish()?;
    let mut d = Dict::new();
    if let Some(name) = ctx.env.vm.name() {
        d.insert("name", Value::str(&name));
    }
    Ok(Value::Dict(d))
}
