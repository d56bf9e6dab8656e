//! `chardev-add`.

use qchar_chardev::spec::ChardevReturn;
use qchar_chardev::ChardevError;

use super::{CommandDef, Ctx};
use crate::json::{Dict, Value};
use crate::qmp::error::{QmpError, QmpResult};
use crate::qmp::qapi::{visit_backend, UnsupportedKind};
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "chardev-add",
    allow_oob: false,
    run,
};

fn run(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let id = args.req_str("id")?;
    let backend = visit_backend(&mut args, "backend")?;
    args.finish()?;
    let backend = backend.map_err(|UnsupportedKind(k)| {
        QmpError::generic(format!(
            "Failed to add chardev '{id}': '{k}' is not a valid char driver name"
        ))
    })?;
    // The open may wait for a peer: the answer then comes later.
    let answer = ctx.answer_later();
    ctx.env.chardevs.add_then(
        &id.clone(),
        backend,
        Box::new(move |r| {
            answer.finish(
                r.map(|ret| chardev_return(&ret))
                    .map_err(|e| add_error(&id, e)),
            )
        }),
    );
    Ok(Value::Null)
}

/// QEMU words a failure to create the backend as
/// `Failed to add chardev 'ID': REASON`; a taken id is reported plain.
pub(super) fn add_error(id: &str, e: ChardevError) -> QmpError {
    match e {
        ChardevError::AlreadyExists(_) => QmpError::generic(e.to_string()),
        e => QmpError::generic(format!("Failed to add chardev '{id}': {e}")),
    }
}

/// The `ChardevReturn` object.
pub(super) fn chardev_return(r: &ChardevReturn) -> Value {
    let mut d = Dict::new();
    if let Some(pty) = &r.pty {
        d.insert("pty", Value::str(pty));
    }
    Value::Dict(d)
}
