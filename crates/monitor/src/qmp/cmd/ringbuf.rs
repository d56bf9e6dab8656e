//! `ringbuf-write` and `ringbuf-read`, with QEMU's data formats:
//! - `utf8` writes the string's bytes as received (modified UTF-8: a
//!   `\u0000` escape is stored as `C0 80`) and reads the ring's bytes as a
//!   string cut at the first NUL byte, invalid sequences printed as U+FFFD;
//! - `base64` decodes leniently like GLib (QEMU first rejects characters
//!   outside `A-Za-z0-9+/=` and newline; `=` decodes as zero bits, an
//!   incomplete final group is dropped).

use qchar_chardev::ChardevError;

use super::{CommandDef, Ctx};
use crate::json::{Dict, Value};
use crate::qmp::error::{QmpError, QmpResult};
use crate::qmp::visitor::ObjVisitor;

pub(super) const WRITE: CommandDef = CommandDef {
    name: "ringbuf-write",
    allow_oob: false,
    run: write,
};
pub(super) const READ: CommandDef = CommandDef {
    name: "ringbuf-read",
    allow_oob: false,
    run: read,
};

pub(crate) const FORMATS: &[&str] = &["utf8", "base64"];

fn write(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let device = args.req_str("device")?;
    let data = args.req_bytes("data")?;
    let format = args.opt_enum("format", FORMATS)?.unwrap_or(0);
    args.finish()?;
    let bytes = if format == 1 {
        match base64_decode(&data) {
            Ok(b) => b,
            Err(e) => {
                // QEMU checks the device before decoding.
                ctx.env
                    .chardevs
                    .ringbuf_write(&device, &[])
                    .map_err(|e| ringbuf_error(&device, e))?;
                return Err(e);
            }
        }
    } else {
        data
    };
    ctx.env
        .chardevs
        .ringbuf_write(&device, &bytes)
        .map_err(|e| ringbuf_error(&device, e))?;
    Ok(Value::Dict(Dict::new()))
}

fn read(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let device = args.req_str("device")?;
    let size = args.req_int("size")?;
    let format = args.opt_enum("format", FORMATS)?.unwrap_or(0);
    args.finish()?;
    let data = read_bytes(ctx.env.chardevs.as_ref(), &device, size)?;
    Ok(encoded(data, format))
}

/// Bytes read as `ringbuf-read` returns them: `format` indexes
/// [`FORMATS`] (utf8, base64).
pub(crate) fn encoded(data: Vec<u8>, format: usize) -> Value {
    Value::Str(if format == 1 {
        base64_encode(&data).into_bytes()
    } else {
        utf8_text(data)
    })
}

/// Reads for `ringbuf-read`/`ringbuf_read`, with QEMU's checks.
pub(crate) fn read_bytes(
    ops: &dyn crate::ops::ChardevOps,
    device: &str,
    size: i64,
) -> QmpResult<Vec<u8>> {
    // QEMU looks the device up before checking the size.
    if size <= 0 {
        // A missing device is reported first.
        if let Err(e) = ops.ringbuf_read(device, 0) {
            return Err(ringbuf_error(device, e));
        }
        return Err(QmpError::generic("size must be greater than zero"));
    }
    let max = usize::try_from(size).unwrap_or(usize::MAX);
    ops.ringbuf_read(device, max)
        .map_err(|e| ringbuf_error(device, e))
}

/// The ring's bytes as QEMU returns them in `utf8` format: up to the first
/// NUL, as a C string.
pub(crate) fn utf8_text(mut data: Vec<u8>) -> Vec<u8> {
    if let Some(n) = data.iter().position(|&b| b == 0) {
        data.truncate(n);
    }
    data
}

/// QEMU names a missing device differently in the ringbuf commands.
pub(crate) fn ringbuf_error(device: &str, e: ChardevError) -> QmpError {
    match e {
        ChardevError::DoesNotExist(_) | ChardevError::NotFound(_) => {
            QmpError::generic(format!("Device '{device}' not found"))
        }
        e => QmpError::generic(e.to_string()),
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(v >> (18 - 6 * i) & 0x3F) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// QEMU's `qbase64_decode`: validation, then GLib's lenient decoder.
pub(crate) fn base64_decode(s: &[u8]) -> QmpResult<Vec<u8>> {
    let valid = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'\n');
    if !s.iter().all(|&c| valid(c)) {
        return Err(QmpError::generic("Base64 data contains invalid characters"));
    }
    let rank = |c: u8| -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some((c - b'A') as u32),
            b'a'..=b'z' => Some((c - b'a') as u32 + 26),
            b'0'..=b'9' => Some((c - b'0') as u32 + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            b'=' => Some(0),
            _ => None,
        }
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut v, mut n, mut last) = (0u32, 0, [0u8; 2]);
    for &c in s {
        let Some(r) = rank(c) else { continue };
        last = [c, last[0]];
        v = v << 6 | r;
        n += 1;
        if n == 4 {
            out.push((v >> 16) as u8);
            if last[1] != b'=' {
                out.push((v >> 8) as u8);
            }
            if last[0] != b'=' {
                out.push(v as u8);
            }
            n = 0;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_like_qemu() {
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_decode(b"aGVsbG8=").unwrap(), b"hello");
        // Inputs QEMU 7.2 took, and what it stored: see the module docs.
        assert_eq!(base64_decode(b"QQ").unwrap(), b"");
        assert_eq!(base64_decode(b"Q=Q=").unwrap(), [0x40, 0x04]);
        assert_eq!(base64_decode(b"QUJD\nREVG=").unwrap(), b"ABCDEF");
        assert_eq!(
            base64_decode(b"!!!").unwrap_err().to_string(),
            "Base64 data contains invalid characters"
        );
    }

    #[test]
    fn utf8_read_stops_at_nul() {
        assert_eq!(utf8_text(vec![0, b'a']), b"");
        assert_eq!(
            utf8_text(vec![0xC3, 0xA9, 0xC0, 0x80, b'x']),
            [0xC3, 0xA9, 0xC0, 0x80, b'x']
        );
    }
}
