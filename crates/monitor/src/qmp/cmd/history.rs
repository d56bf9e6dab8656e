//! `x-chardev-history` (a qchar extension): the newest `size` bytes a
//! chardev sent out, from its history (`backlog=SIZE`, or the one a tap or
//! a multi-client socket gave it), without consuming them and without
//! connecting. Arguments and formats as `ringbuf-read`'s (`device`, `size`,
//! `format` `utf8`|`base64`); HMP `x-chardev-history device size` prints
//! the same as `ringbuf_read` does.

use qchar_chardev::ChardevError;

use super::ringbuf::{encoded, FORMATS};
use super::{CommandDef, Ctx};
use crate::json::Value;
use crate::ops::ChardevOps;
use crate::qmp::error::{QmpError, QmpResult};
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "x-chardev-history",
    allow_oob: false,
    run,
};

fn run(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let device = args.req_str("device")?;
    let size = args.req_int("size")?;
    let format = args.opt_enum("format", FORMATS)?.unwrap_or(0);
    args.finish()?;
    let data = read_bytes(ctx.env.chardevs.as_ref(), &device, size)?;
    Ok(encoded(data, format))
}

/// Reads for `x-chardev-history` and its HMP twin, with `ringbuf-read`'s
/// order of checks: the device first, then the size.
pub(crate) fn read_bytes(ops: &dyn ChardevOps, device: &str, size: i64) -> QmpResult<Vec<u8>> {
    if size <= 0 {
        ops.history(device, 0).map_err(history_error)?;
        return Err(QmpError::generic("size must be greater than zero"));
    }
    let max = usize::try_from(size).unwrap_or(usize::MAX);
    ops.history(device, max).map_err(history_error)
}

fn history_error(e: ChardevError) -> QmpError {
    QmpError::generic(e.to_string())
}
