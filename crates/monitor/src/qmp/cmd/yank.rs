//! `query-yank` and `yank`: the chardevs with a socket backend are QEMU's
//! yank instances of type `chardev`; yanking one drops its connection.
//! qchar has no block nodes or migration, so those instances never exist.

use super::{CommandDef, Ctx};
use crate::json::{Dict, Value};
use crate::qmp::error::{QmpError, QmpResult};
use crate::qmp::visitor::ObjVisitor;

pub(super) const QUERY: CommandDef = CommandDef {
    name: "query-yank",
    allow_oob: false,
    run: query,
};

pub(super) const DEF: CommandDef = CommandDef {
    name: "yank",
    allow_oob: true,
    run: yank,
};

/// QAPI `YankInstanceType`.
const TYPES: &[&str] = &["block-node", "chardev", "migration"];

fn query(ctx: &mut Ctx<'_>, args: ObjVisitor<'_>) -> QmpResult<Value> {
    args.finish()?;
    Ok(Value::List(
        ctx.env
            .chardevs
            .yank_instances()
            .into_iter()
            .map(|id| Value::Dict(crate::dict! { "type" => "chardev", "id" => id }))
            .collect(),
    ))
}

fn yank(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    // The whole argument is read before anything is looked up, as QEMU's
    // visitor does.
    let mut chardevs = Vec::new();
    let mut others = 0;
    for inst in args.req_obj_list("instances")? {
        let mut inst = inst?;
        match TYPES[inst.req_enum("type", TYPES)?] {
            "chardev" => chardevs.push(inst.req_str("id")?),
            "block-node" => {
                inst.req_str("node-name")?;
                others += 1;
            }
            _ => others += 1,
        }
        inst.finish()?;
    }
    args.finish()?;
    let not_found = || QmpError::DeviceNotFound("Instance not found".into());
    if others > 0 {
        return Err(not_found());
    }
    ctx.env.chardevs.yank(&chardevs).map_err(|e| match e {
        qchar_chardev::ChardevError::YankInstanceNotFound => not_found(),
        e => QmpError::generic(e.to_string()),
    })?;
    Ok(Value::Dict(Dict::new()))
}
