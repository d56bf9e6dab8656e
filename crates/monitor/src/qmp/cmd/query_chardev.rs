//! `query-chardev` and `query-chardev-backends`.

use super::{CommandDef, Ctx};
use crate::json::Value;
use crate::qmp::error::QmpResult;
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "query-chardev",
    allow_oob: false,
    run,
};
pub(super) const BACKENDS: CommandDef = CommandDef {
    name: "query-chardev-backends",
    allow_oob: false,
    run: backends,
};

fn run(ctx: &mut Ctx<'_>, args: ObjVisitor<'_>) -> QmpResult<Value> {
    args.finish()?;
    Ok(Value::List(
        ctx.env
            .chardevs
            .query()
            .into_iter()
            .map(|i| {
                Value::Dict(crate::dict! {
                    "label" => i.label,
                    "filename" => i.filename,
                    "frontend-open" => i.frontend_open,
                })
            })
            .collect(),
    ))
}

fn backends(ctx: &mut Ctx<'_>, args: ObjVisitor<'_>) -> QmpResult<Value> {
    args.finish()?;
    Ok(Value::List(
        ctx.env
            .chardevs
            .backends()
            .into_iter()
            .map(|n| Value::Dict(crate::dict! { "name" => n }))
            .collect(),
    ))
}
