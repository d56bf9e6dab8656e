//! `object-add` and `object-del` for qchar's `x-bridge` objects (two
//! chardevs joined byte for byte; `qchar_chardev::bridge`), called by
//! `object.rs`, which has the commands and QEMU's other object types.
//!
//! `{"execute": "object-add", "arguments": {"qom-type": "x-bridge",
//! "id": "br0", "chardev-a": "vm", "chardev-b": "console"}}`

use qchar_chardev::bridge::{BridgeError, BridgeSpec, BRIDGE_TYPE};

use super::Ctx;
use crate::json::{Dict, Value};
use crate::qmp::error::{QmpError, QmpResult};
use crate::qmp::visitor::ObjVisitor;

fn err(e: BridgeError) -> QmpError {
    QmpError::generic(e.to_string())
}

pub(super) fn add(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let ty = args.req_str("qom-type")?;
    if ty != BRIDGE_TYPE {
        return Err(err(BridgeError::InvalidType(ty)));
    }
    let id = args.req_str("id")?;
    let chardev_a = args.req_str("chardev-a")?;
    let chardev_b = args.req_str("chardev-b")?;
    args.finish()?;
    ctx.env
        .chardevs
        .add_bridge(&BridgeSpec {
            id,
            chardev_a,
            chardev_b,
        })
        .map_err(err)?;
    Ok(Value::Dict(Dict::new()))
}
