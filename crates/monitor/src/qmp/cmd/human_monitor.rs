//! `human-monitor-command`: runs an HMP command line and returns its output.

use super::{CommandDef, Ctx};
use crate::json::Value;
use crate::qmp::error::{QmpError, QmpResult};
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "human-monitor-command",
    allow_oob: false,
    run,
};

fn run(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let line = args.req_str("command-line")?;
    let cpu = args.opt_int("cpu-index")?;
    args.finish()?;
    // QEMU passes the index on as a C int.
    if cpu.is_some_and(|i| !ctx.env.vm.has_cpu(i64::from(i as i32))) {
        return Err(QmpError::generic(
            "Parameter 'cpu-index' expects a CPU number",
        ));
    }
    // Bytes that are not UTF-8 (from a ringbuf) become U+FFFD in JSON.
    Ok(Value::Str(crate::hmp::execute_bytes(ctx.env, &line)))
}
