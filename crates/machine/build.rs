//! Builds the demo guests in `guest/` (GNU as, real mode) into one-sector
//! boot images in `OUT_DIR`, for `src/guest.rs` to `include_bytes!`.
//!
//! Only binutils is needed (`as`, `ld`; override with the `AS` and `LD`
//! environment variables). No network, no nasm.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The guests: source file stem -> image name.
const GUESTS: &[&str] = &["demo", "irq-demo"];
/// Files the guests include.
const INCLUDES: &[&str] = &["uart-regs.inc", "serial.inc"];

fn run(cmd: &mut Command) {
    let shown = format!("{cmd:?}");
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("building the demo guest: {shown} failed with {status}"),
        Err(e) => panic!(
            "building the demo guest: cannot run {shown}: {e} (GNU binutils `as` and `ld` are needed)"
        ),
    }
}

fn build(guest_dir: &Path, out_dir: &Path, name: &str, assembler: &str, linker: &str) {
    let source = guest_dir.join(format!("{name}.s"));
    let object = out_dir.join(format!("{name}.o"));
    let image = out_dir.join(format!("{name}.img"));
    run(Command::new(assembler)
        .arg("--32")
        .arg("-I")
        .arg(guest_dir)
        .arg("-o")
        .arg(&object)
        .arg(&source));
    run(Command::new(linker)
        .args([
            "-m",
            "elf_i386",
            "-Ttext=0x7c00",
            "-e",
            "_start",
            "--oformat",
            "binary",
        ])
        .arg("-o")
        .arg(&image)
        .arg(&object));
    let bytes = std::fs::read(&image).expect("reading the built guest image");
    assert_eq!(
        bytes.len(),
        512,
        "{name}.img must be exactly one 512-byte sector"
    );
    assert_eq!(
        &bytes[510..],
        &[0x55, 0xaa],
        "{name}.img lacks the boot signature"
    );
}

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let guest_dir = manifest.join("../../guest");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let assembler = env::var("AS").unwrap_or_else(|_| "as".to_string());
    let linker = env::var("LD").unwrap_or_else(|_| "ld".to_string());
    println!("cargo:rerun-if-env-changed=AS");
    println!("cargo:rerun-if-env-changed=LD");
    for inc in INCLUDES {
        println!("cargo:rerun-if-changed={}", guest_dir.join(inc).display());
    }
    for name in GUESTS {
        println!(
            "cargo:rerun-if-changed={}",
            guest_dir.join(format!("{name}.s")).display()
        );
        build(&guest_dir, &out_dir, name, &assembler, &linker);
    }
}
