//! `chardev-change`: replaces a chardev's backend while its frontend keeps
//! running. Unlike QEMU, a failed change leaves the chardev exactly as it was
//! (QEMU 7.2 deletes a frontend-less chardev before re-creating it, so a
//! failure loses it), and errors are reported without QEMU's
//! `Failed to add chardev` prefix.

use super::chardev_add::chardev_return;
use super::{CommandDef, Ctx};
use crate::json::Value;
use crate::qmp::error::{QmpError, QmpResult};
use crate::qmp::qapi::{visit_backend, UnsupportedKind};
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "chardev-change",
    allow_oob: false,
    run,
};

fn run(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let id = args.req_str("id")?;
    let backend = visit_backend(&mut args, "backend")?;
    args.finish()?;
    let backend = backend.map_err(|UnsupportedKind(k)| {
        QmpError::generic(format!("'{k}' is not a valid char driver name"))
    })?;
    // The open may wait for a peer: the answer then comes later.
    let answer = ctx.answer_later();
    ctx.env.chardevs.change_then(
        &id,
        backend,
        Box::new(move |r| {
            answer.finish(
                r.map(|ret| chardev_return(&ret))
                    .map_err(|e| QmpError::generic(e.to_string())),
            )
        }),
    );
    Ok(Value::Null)
}
