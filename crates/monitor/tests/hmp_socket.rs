//! HMP over a real unix socket: banner, prompt, QEMU's echo and outputs.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{Client, Harness};
use qchar_monitor::hmp::HmpMonitor;

/// Reads until `end` has been seen (or 5 s pass).
fn read_until(c: &mut Client, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut b = [0u8; 4096];
    while !got.ends_with(end) && Instant::now() < deadline {
        match c.r.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    got
}

#[test]
fn banner_echo_and_commands_like_qemu() {
    let h = Harness::qemu_compatible();
    let path = h.add_socket("hmp0");
    let m = HmpMonitor::attach(&h.reg, "hmp0", h.env.clone()).expect("attach");
    let mut c = Client::connect(&path);
    assert_eq!(
        String::from_utf8_lossy(&read_until(&mut c, b"(qemu) ")),
        "QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) "
    );
    c.send(b"stop\r");
    // As recorded from QEMU 7.2 (prelaunch: stop changes nothing).
    assert_eq!(
        read_until(&mut c, b"(qemu) "),
        b"s\x1b[K\x1b[Dst\x1b[K\x1b[D\x1b[Dsto\x1b[K\x1b[D\x1b[D\x1b[Dstop\x1b[K\r\n(qemu) "
    );
    c.send(b"info status\r");
    let out = read_until(&mut c, b"(qemu) ");
    assert!(
        out.ends_with(b"info status\x1b[K\r\nVM status: paused (prelaunch)\r\n(qemu) "),
        "{out:?}"
    );
    c.send(b"info\x1b[A\r");
    let out = read_until(&mut c, b"(qemu) ");
    assert!(out.ends_with(b"\x1b[D\x1b[D\x1b[D\x1b[Dinfo status\x1b[K\r\nVM status: paused (prelaunch)\r\n(qemu) "), "{out:?}");
    c.send(b"chardev-remove nope\r");
    let out = read_until(&mut c, b"(qemu) ");
    assert!(
        out.ends_with(b"\r\nError: Chardev 'nope' not found\r\n(qemu) "),
        "{out:?}"
    );
    m.detach();
}

/// Found by differential fuzzing: a long line typed in one burst (the echo
/// of each key redraws the line, 2 MiB in all here) overflowed the output
/// queue, and the echo was cut. Keys now wait until the client has read.
/// The whole echo must arrive: as qchar's line editor (whose echo is
/// checked byte for byte against QEMU's above and in its unit tests)
/// produces it, then the command's output and the prompt.
#[test]
fn a_long_line_in_one_burst_is_echoed_whole() {
    let h = Harness::qemu_compatible();
    let path = h.add_socket("hmp0");
    let m = HmpMonitor::attach(&h.reg, "hmp0", h.env.clone()).expect("attach");
    let mut c = Client::connect(&path);
    read_until(&mut c, b"(qemu) ");
    let mut keys = b"ringbuf_write nope ".to_vec();
    keys.extend(std::iter::repeat_n(b'c', 1000));
    keys.push(b'\r');
    let mut rl = qchar_monitor::hmp::readline::Readline::new();
    let mut want = Vec::new();
    for &k in &keys {
        rl.feed(k, &mut want);
    }
    want.extend_from_slice(b"Error: Device 'nope' not found\r\n(qemu) ");
    assert!(want.len() > 1 << 20, "the echo is {} bytes", want.len());
    c.send(&keys);
    let got = read_until(&mut c, b"(qemu) ");
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the echo differs");
    m.detach();
}
