//! `qmp_capabilities`: ends capabilities negotiation, optionally enabling
//! `oob`.

use super::{CommandDef, Ctx};
use crate::json::{Dict, Value};
use crate::qmp::error::{QmpError, QmpResult};
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "qmp_capabilities",
    allow_oob: false,
    run,
};

const CAPABILITIES: &[&str] = &["oob"];

fn run(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let enable = args
        .opt_enum_list("enable", CAPABILITIES)?
        .unwrap_or_default();
    args.finish()?;
    if ctx.caps.negotiated {
        return Err(QmpError::CommandNotFound(
            "Capabilities negotiation is already complete, command ignored".into(),
        ));
    }
    if !enable.is_empty() && !ctx.caps.oob_offered {
        return Err(QmpError::generic("Capability oob not available"));
    }
    ctx.caps.oob_enabled = !enable.is_empty();
    ctx.caps.negotiated = true;
    Ok(Value::Dict(Dict::new()))
}
