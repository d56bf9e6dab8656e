//! `human-monitor-command`: runs an HMP command line and returns its output.

use super::{CommandDef, Ctx};
use crate::json::Value;
use crate::qmp::error::QmpResult;
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "human-monitor-command",
    allow_oob: false,
    run,
};

fn run(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let line = args.req_str("command-line")?;
    let _cpu = args.opt_int("cpu-index")?;
    args.finish()?;
    // A `chardev-add` whose open waits for a peer answers later.
    let answer = ctx.answer_later();
    crate::hmp::execute(ctx.env, &line).then(move |text| answer.finish(Ok(Value::str(text))));
    Ok(Value::Null)
}
