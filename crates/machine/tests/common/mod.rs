//! What the machine's integration tests share: the bound on anything a
//! guest does, booting a demo image with COM1 on a chardev, and checking the
//! demo guest's numbered lines. (Waits and prerequisite checks are in
//! `qchar-testkit`.)
#![allow(dead_code)]

use std::time::Duration;

use qchar_chardev::Registry;
use qchar_machine::guest::{self, demo_line};
use qchar_machine::{ComPort, Machine, MachineConfig, VmHandle};

/// Generous bound for anything the guest does; only a hang reaches it.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Boots `image` with COM1 on chardev `id` of `reg`.
pub fn boot_on(reg: &Registry, id: &str, image: &[u8]) -> VmHandle {
    let mut m = Machine::new(MachineConfig::default()).expect("create VM");
    m.load_boot_image(image).expect("load image");
    let fe = reg.attach(id).expect("attach");
    m.add_serial_chardev(ComPort::COM1, fe).expect("COM1");
    m.start().expect("start")
}

/// Checks that the numbered lines of the complete lines of `out` are
/// 1..=n exactly once, in order; returns the other complete lines.
pub fn check_numbered(out: &[u8], n: u64) -> Vec<String> {
    let text = String::from_utf8_lossy(out);
    let all: Vec<&str> = text.split("\r\n").collect();
    let mut next = 1;
    let mut others = Vec::new();
    for line in &all[..all.len() - 1] {
        if line.starts_with(guest::LINE_PREFIX) {
            assert_eq!(*line, demo_line(next), "numbered line out of sequence");
            next += 1;
        } else {
            others.push(line.to_string());
        }
    }
    assert_eq!(next - 1, n, "number of numbered lines");
    others
}
