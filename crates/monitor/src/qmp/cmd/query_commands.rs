//! `query-commands`: the commands qchar implements.

use super::{CommandDef, Ctx, COMMANDS};
use crate::json::Value;
use crate::qmp::error::QmpResult;
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "query-commands",
    allow_oob: false,
    run,
};

fn run(_ctx: &mut Ctx<'_>, args: ObjVisitor<'_>) -> QmpResult<Value> {
    args.finish()?;
    Ok(Value::List(
        COMMANDS
            .iter()
            .map(|c| Value::Dict(crate::dict! { "name" => c.name }))
            .collect(),
    ))
}
