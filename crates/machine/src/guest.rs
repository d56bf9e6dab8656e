//! The demo guests, built from `guest/*.s` by `build.rs` with GNU binutils
//! and embedded here. Each is a single 512-byte boot sector that needs no
//! BIOS: the machine loads it at 0000:7c00 and jumps there.
//!
//! # `demo` (counting and echo, polled)
//!
//! Initialises COM1 (0x3f8) for 115200 baud 8N1 with FIFOs on, then prints
//! numbered lines as fast as the UART takes them, polling LSR.THRE before
//! every THR write:
//!
//! ```text
//! qchar-demo 0000000001\r\n
//! qchar-demo 0000000002\r\n
//! ...
//! ```
//!
//! The counter is 10 decimal digits, starts at 1 and goes up by one per line
//! ([`demo_line`] formats line N). After each numbered line, if LSR.DR says
//! input is waiting, it prints one echo line holding up to 16 received bytes
//! ([`ECHO_PREFIX`]), printable ASCII as is and anything else (and `\`) as
//! `\xHH` ([`escape_echo`]). Echo lines therefore never split a numbered
//! line.
//!
//! Bounding it: the image carries a configuration block at offset
//! [`CONFIG_OFFSET`]: the magic `QCHD` and a little-endian `u32` line limit.
//! 0 (the default) counts forever; [`demo_image`]`(Some(n))` patches in `n`,
//! and the guest then stops after line `n`: it waits for LSR.TEMT (so held
//! output drains first) and executes `cli; hlt`, which ends the run.
//!
//! # `irq-demo` (interrupt-driven)
//!
//! Programs both 8259 PICs (master vectors 0x08..0x0f, slave 0x70..0x77,
//! only IRQ 4 unmasked), installs an IRQ 4 handler in the real-mode vector
//! table, initialises COM1 like `demo`, prints `qchar-irq ready`, enables
//! IER.ERBFI and sleeps in `sti; hlt`. Each received-data interrupt prints
//! `qchar-irq NNNN PAYLOAD` (NNNN: 4-digit count of handled batches from
//! 0001; PAYLOAD escaped as above) from the handler. Byte 0x04 (EOT) makes it
//! print `qchar-irq bye`, drain and `cli; hlt`.

use std::path::Path;

/// The counting/echo guest as built (line limit 0: counts forever).
pub const DEMO_IMAGE: &[u8; 512] = include_bytes!(concat!(env!("OUT_DIR"), "/demo.img"));
/// The interrupt-driven echo guest.
pub const IRQ_DEMO_IMAGE: &[u8; 512] = include_bytes!(concat!(env!("OUT_DIR"), "/irq-demo.img"));

/// Offset of the demo guest's configuration block in its image.
pub const CONFIG_OFFSET: usize = 0x1f0;
/// Magic at [`CONFIG_OFFSET`].
pub const CONFIG_MAGIC: &[u8; 4] = b"QCHD";
/// Prefix of a numbered line.
pub const LINE_PREFIX: &str = "qchar-demo ";
/// Prefix of an echo line of the counting guest.
pub const ECHO_PREFIX: &str = "qchar-echo ";
/// Prefix of every line of the interrupt-driven guest.
pub const IRQ_PREFIX: &str = "qchar-irq ";
/// Banner of the interrupt-driven guest once its handler is installed.
pub const IRQ_READY_LINE: &str = "qchar-irq ready";
/// Last line of the interrupt-driven guest.
pub const IRQ_BYE_LINE: &str = "qchar-irq bye";
/// Byte that makes the interrupt-driven guest stop.
pub const IRQ_STOP_BYTE: u8 = 0x04;

/// The counting guest's image, stopping after `max_lines` lines (`None` or
/// `Some(0)`: never).
pub fn demo_image(max_lines: Option<u32>) -> [u8; 512] {
    let mut image = *DEMO_IMAGE;
    let limit = max_lines.unwrap_or(0).to_le_bytes();
    image[CONFIG_OFFSET + 4..CONFIG_OFFSET + 8].copy_from_slice(&limit);
    image
}

/// The line limit configured in a counting-guest image, or `None` if the
/// image has no configuration block.
pub fn demo_line_limit(image: &[u8]) -> Option<u32> {
    let block = image.get(CONFIG_OFFSET..CONFIG_OFFSET + 8)?;
    if &block[..4] != CONFIG_MAGIC {
        return None;
    }
    Some(u32::from_le_bytes([block[4], block[5], block[6], block[7]]))
}

/// Numbered line `n` as the counting guest prints it, without `\r\n`.
pub fn demo_line(n: u64) -> String {
    format!("{LINE_PREFIX}{:010}", n % 10_000_000_000)
}

/// How the guests print a received byte in an echo line.
pub fn escape_echo(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if (0x20..=0x7e).contains(&b) && b != b'\\' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// Names of the built-in guests, for a command line.
pub const BUILTIN_NAMES: &[&str] = &["demo", "irq-demo"];

/// A built-in guest by name: `demo` (counts forever), `demo:N` (stops after
/// line N), `irq-demo`.
pub fn builtin_image(name: &str) -> Option<Vec<u8>> {
    match name {
        "demo" => Some(DEMO_IMAGE.to_vec()),
        "irq-demo" => Some(IRQ_DEMO_IMAGE.to_vec()),
        _ => {
            let n = name.strip_prefix("demo:")?.parse::<u32>().ok()?;
            Some(demo_image(Some(n)).to_vec())
        }
    }
}

/// Writes an image to `path` (for `qchar -drive file=...` or a test).
pub fn write_image(path: &Path, image: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_boot_sectors() {
        for image in [DEMO_IMAGE, IRQ_DEMO_IMAGE] {
            assert_eq!(image.len(), 512);
            assert_eq!(&image[510..], &[0x55, 0xaa]);
        }
    }

    #[test]
    fn line_limit_patch() {
        assert_eq!(demo_line_limit(DEMO_IMAGE), Some(0));
        let image = demo_image(Some(1234));
        assert_eq!(demo_line_limit(&image), Some(1234));
        assert_eq!(demo_line_limit(IRQ_DEMO_IMAGE), None);
    }

    #[test]
    fn builtins() {
        assert_eq!(builtin_image("demo").as_deref(), Some(&DEMO_IMAGE[..]));
        assert_eq!(
            builtin_image("irq-demo").as_deref(),
            Some(&IRQ_DEMO_IMAGE[..])
        );
        assert_eq!(demo_line_limit(&builtin_image("demo:7").unwrap()), Some(7));
        assert!(builtin_image("demo:x").is_none());
        assert!(builtin_image("nope").is_none());
    }

    #[test]
    fn formats() {
        assert_eq!(demo_line(1), "qchar-demo 0000000001");
        assert_eq!(demo_line(9_999_999_999), "qchar-demo 9999999999");
        assert_eq!(escape_echo(b"hi \\\r\n\x7f"), "hi \\x5c\\x0d\\x0a\\x7f");
    }
}
