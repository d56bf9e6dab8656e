//! `query-version`.

use super::{CommandDef, Ctx};
use crate::json::Value;
use crate::qmp::error::QmpResult;
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "query-version",
    allow_oob: false,
    run,
};

fn run(ctx: &mut Ctx<'_>, args: ObjVisitor<'_>) -> QmpResult<Value> {
    args.finish()?;
    Ok(ctx.env.version.to_value())
}
