//! A hostile QMP client: floods of garbage, deeply nested JSON, huge
//! strings, and a client that sends and never reads. Whatever it sends:
//! - the process's peak RSS grows by less than a stated bound (`VmRSS`
//!   before, the kernel's high-water mark `VmHWM` after, reset before each
//!   flood through `/proc/self/clear_refs`, so a short peak counts too);
//! - nothing panics: the monitor serves a fresh client afterwards;
//! - another chardev is untouched: an echo chardev `b` next to the monitor
//!   returns every byte its own client sends, byte for byte, while the
//!   flood runs.
//!
//! The tests of this file run one at a time (RSS is per process).

mod common;
#[path = "../../chardev/tests/support/hostile.rs"]
mod hostile;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Client, Harness};
use hostile::{Echo, EchoTraffic, MIB};
use qchar_testkit::{one_at_a_time, peak_growth};

/// QEMU's (and qchar's default) limit on one JSON message.
const JSON_MESSAGE_LIMIT: u64 = 64 * MIB;

/// Peak RSS growth allowed for a flood that holds no message: everything
/// else (I/O buffers, the output cap of 1 MiB, thread stacks, allocator
/// slack).
const SLACK: u64 = 32 * MIB;

// ----- chardev b: an echo next to the monitor ----------------------------

fn add_echo(h: &Harness, id: &str) -> PathBuf {
    let path = h.add_socket(id);
    let fe = h.reg.attach(id).unwrap();
    fe.set_handlers(Box::new(Echo {
        fe: fe.clone(),
        pending: Vec::new(),
    }));
    fe.set_open(true);
    path
}

// ----- the hostile client ------------------------------------------------

/// Connects to the monitor, reads and drops everything it answers (counting
/// lines) in the background, and sends `total` bytes made by `fill` in
/// 64 KiB pieces, without ever holding the flood in memory. Returns the
/// reply lines (after the greeting) seen by the time the monitor closed
/// the connection after the client's end of input.
fn flood(path: &Path, total: u64, mut fill: impl FnMut(u64, &mut [u8])) -> u64 {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut r = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = 0u64;
        let mut buf = vec![0u8; 65536];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return lines.saturating_sub(1),
                Ok(n) => lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64,
                Err(e) => panic!("reading the monitor's replies: {e}"),
            }
        }
    });
    let mut w = s;
    let mut buf = vec![0u8; 65536];
    let mut off = 0;
    while off < total {
        let n = (total - off).min(buf.len() as u64) as usize;
        fill(off, &mut buf[..n]);
        w.write_all(&buf[..n]).unwrap();
        off += n as u64;
    }
    w.shutdown(std::net::Shutdown::Write).unwrap();
    reader.join().expect("reader")
}

/// xorshift bytes: the same garbage every run.
fn garbage(seed: &mut u64, out: &mut [u8]) {
    for b in out {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *b = *seed as u8;
    }
}

/// The monitor still works: a new client is greeted and answered.
fn monitor_answers(path: &Path) {
    let mut c = Client::connect(path);
    c.handshake();
    let r = c.cmd("{\"execute\": \"query-chardev\", \"id\": 42}");
    assert!(
        r.contains("\"label\": \"b\"") && r.contains("\"label\": \"qmp\"") && r.contains("42"),
        "{r}"
    );
}

struct Setup {
    _h: Harness,
    qmp: PathBuf,
    echo: PathBuf,
}

fn setup() -> Setup {
    let mut h = Harness::new();
    let qmp = h.qmp_socket("qmp");
    let echo = add_echo(&h, "b");
    // Warm up both, so lazily made buffers exist before measuring.
    monitor_answers(&qmp);
    EchoTraffic::start(Client::connect(&echo).w).finish();
    Setup { _h: h, qmp, echo }
}

/// Runs a flood against the monitor with echo traffic alongside; returns
/// (peak RSS growth, reply lines).
fn flood_with_traffic(s: &Setup, total: u64, fill: impl FnMut(u64, &mut [u8])) -> (u64, u64) {
    let mut lines = 0;
    let mut echoed = 0;
    let growth = peak_growth(|| {
        let traffic = EchoTraffic::start(Client::connect(&s.echo).w);
        lines = flood(&s.qmp, total, fill);
        echoed = traffic.finish();
    });
    assert!(echoed > 0);
    eprintln!(
        "flood of {} MiB: {lines} replies, peak RSS +{:.1} MiB, {echoed} bytes echoed intact by b",
        total / MIB,
        growth as f64 / MIB as f64
    );
    monitor_answers(&s.qmp);
    (growth, lines)
}

#[test]
fn huge_string_of_200_mb_is_cut_at_the_message_limit() {
    let _g = one_at_a_time();
    let s = setup();
    let head = b"{\"execute\": \"";
    let (growth, lines) = flood_with_traffic(&s, 200 * MIB, |off, buf| {
        buf.fill(b'a');
        if off == 0 {
            buf[..head.len()].copy_from_slice(head);
        }
    });
    // The string passes 64 MiB once: one error; the rest is an invalid
    // keyword (one more error) then skipped.
    assert!((1..=4).contains(&lines), "{lines} replies");
    assert!(
        growth < JSON_MESSAGE_LIMIT + SLACK,
        "peak RSS grew by {} MiB",
        growth / MIB
    );
}

#[test]
fn nesting_64_mb_deep_is_refused_without_growing() {
    let _g = one_at_a_time();
    let s = setup();
    let (growth, lines) = flood_with_traffic(&s, 64 * MIB, |_, buf| buf.fill(b'['));
    // One error per 1025 brackets (QEMU's depth limit is 1024).
    assert_eq!(lines, 64 * MIB / 1025);
    assert!(growth < SLACK, "peak RSS grew by {} MiB", growth / MIB);
}

#[test]
fn binary_garbage_of_200_mb_is_skipped_without_growing() {
    let _g = one_at_a_time();
    let s = setup();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let (growth, lines) = flood_with_traffic(&s, 200 * MIB, |off, buf| {
        garbage(&mut seed, buf);
        // High bytes only, so the lexer stays in error recovery, and a
        // structural byte every 4 KiB to make it start over (and err again).
        for (i, b) in buf.iter_mut().enumerate() {
            *b |= 0x80;
            if *b >= 0xfe {
                *b = 0x80;
            }
            if (off + i as u64) % 4096 == 4095 {
                *b = b'}';
            }
        }
    });
    // Per 4 KiB: the first high byte is a stray error, the `}` ends an
    // (empty, unbalanced) message, another error.
    assert_eq!(lines, 2 * 200 * MIB / 4096);
    assert!(growth < SLACK, "peak RSS grew by {} MiB", growth / MIB);
}

#[test]
fn random_bytes_answered_error_by_error_without_growing() {
    let _g = one_at_a_time();
    let s = setup();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    // Plain random bytes: an error every few bytes, so many replies.
    let (growth, lines) = flood_with_traffic(&s, 4 * MIB, |_, buf| garbage(&mut seed, buf));
    assert!(lines > 4 * MIB / 64, "{lines} replies");
    assert!(growth < SLACK, "peak RSS grew by {} MiB", growth / MIB);
}

#[test]
fn client_that_never_reads_cannot_make_the_monitor_hold_its_replies() {
    let _g = one_at_a_time();
    let s = setup();
    let growth = peak_growth(|| {
        let traffic = EchoTraffic::start(Client::connect(&s.echo).w);
        let mut c = UnixStream::connect(&s.qmp).unwrap();
        // Each command's reply is about 1.5 KiB; the client asks for
        // 200 MB of them and reads nothing. The monitor stops reading once
        // its output is held, so the writes stop being taken: give up when
        // a write has waited for a while (a bound, not a measurement).
        c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut cmds = b"{\"execute\":\"qmp_capabilities\"}".to_vec();
        cmds.extend(b"{\"execute\":\"query-commands\"}".repeat(2048));
        let mut sent = 0u64;
        while sent < 200 * MIB {
            match c.write(&cmds) {
                Ok(n) => sent += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        assert!(
            sent < 200 * MIB,
            "the monitor took 200 MB from a non-reader"
        );
        let echoed = traffic.finish();
        assert!(echoed > 0);
        eprintln!("non-reader: {sent} bytes taken before the monitor stopped reading");
        drop(c);
    });
    eprintln!(
        "non-reader: peak RSS +{:.1} MiB",
        growth as f64 / MIB as f64
    );
    assert!(growth < SLACK, "peak RSS grew by {} MiB", growth / MIB);
    monitor_answers(&s.qmp);
}

/// The measurement itself: a short-lived 64 MiB allocation, touched and
/// freed inside the closure, shows up in the peak (so the bounds above
/// could fail).
#[test]
fn peak_measurement_sees_a_transient_allocation() {
    let _g = one_at_a_time();
    let growth = peak_growth(|| {
        let v = vec![1u8; 64 * MIB as usize];
        assert_eq!(std::hint::black_box(&v)[12345], 1);
    });
    assert!(
        growth >= 60 * MIB,
        "peak RSS grew by {} MiB only",
        growth / MIB
    );
}
