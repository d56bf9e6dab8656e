//! The demo guests under real KVM with COM1 on real chardevs: a file
//! backend swapped for another mid-run (nothing lost, nothing repeated), a
//! small output queue (write_ready backpressure), and a pipe backend that
//! carries input, breaks and the interrupt-driven guest's echo.
//! Every test skips (with a message) where /dev/kvm cannot be opened, and
//! fails there instead under `QCHAR_TEST_REQUIRE_ALL`.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use qchar_chardev::spec::{ChardevBackend, ChardevFile, ChardevHostdev};
use qchar_chardev::Registry;
use qchar_machine::guest::{self, demo_image, demo_line, IRQ_DEMO_IMAGE};
use qchar_machine::ExitReason;
use qchar_testkit::{mkfifo, require, wait_until_within, Prereq};

use common::{boot_on, check_numbered, TIMEOUT};

fn file_spec(path: &Path) -> ChardevBackend {
    ChardevBackend::File(ChardevFile {
        out: path.to_string_lossy().into_owned(),
        ..Default::default()
    })
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

fn count_numbered(out: &[u8]) -> u64 {
    String::from_utf8_lossy(out)
        .split("\r\n")
        .filter(|l| l.starts_with(guest::LINE_PREFIX) && l.len() == demo_line(1).len())
        .count() as u64
}

#[test]
fn hotswap_file_backend_mid_run_loses_nothing() {
    if !require(Prereq::Kvm) {
        return;
    }
    const LINES: u64 = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    // A small output queue: the UART is pushed back often and resumes on
    // write_ready.
    let reg = Registry::with_out_capacity(256).unwrap();
    reg.add("ser0", file_spec(&a)).unwrap();
    let vm = boot_on(&reg, "ser0", &demo_image(Some(LINES as u32)));
    wait_until_within("100 lines in a.log", TIMEOUT, || {
        count_numbered(&read(&a)) >= 100
    });
    reg.change("ser0", file_spec(&b)).expect("hotswap to b.log");
    assert_eq!(vm.wait_timeout(TIMEOUT), Some(ExitReason::Halted));
    let last = format!("{}\r\n", demo_line(LINES));
    wait_until_within("the last line in b.log", TIMEOUT, || {
        read(&b).ends_with(last.as_bytes())
    });
    let (out_a, out_b) = (read(&a), read(&b));
    assert!(!out_b.is_empty(), "the change happened before the end");
    let mut all = out_a.clone();
    all.extend_from_slice(&out_b);
    assert!(check_numbered(&all, LINES).is_empty());
    assert_eq!(vm.serial_ports()[0].uart().stats().tx_dropped, 0);
    let stats = reg.stats("ser0").unwrap();
    assert_eq!(stats.changes, 1);
    assert_eq!(stats.bytes_lost, 0);
    reg.shutdown();
}

/// A `pipe` chardev at `base` (`base.in` / `base.out` FIFOs) with a thread
/// collecting what comes out.
struct PipePeer {
    input: File,
    out: Option<File>,
    output: Arc<(Mutex<Vec<u8>>, Condvar)>,
}

impl PipePeer {
    fn new(base: &Path) -> PipePeer {
        let mut peer = PipePeer::new_not_reading(base);
        peer.start_reading();
        peer
    }

    /// The FIFOs, with nobody reading the output yet.
    fn new_not_reading(base: &Path) -> PipePeer {
        for ext in ["in", "out"] {
            mkfifo(Path::new(&format!("{}.{ext}", base.display())));
        }
        // Read-write opens of a FIFO never block.
        let rw = |ext: &str| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(format!("{}.{ext}", base.display()))
                .unwrap()
        };
        PipePeer {
            input: rw("in"),
            out: Some(rw("out")),
            output: Arc::new((Mutex::new(Vec::new()), Condvar::new())),
        }
    }

    fn start_reading(&mut self) {
        let Some(mut out) = self.out.take() else {
            return;
        };
        let sink = self.output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.0.lock().unwrap().extend_from_slice(&buf[..n]);
                sink.1.notify_all();
            }
        });
    }

    fn send(&mut self, data: &[u8]) {
        self.input.write_all(data).unwrap();
    }

    fn output(&self) -> Vec<u8> {
        self.output.0.lock().unwrap().clone()
    }

    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + TIMEOUT;
        let mut out = self.output.0.lock().unwrap();
        while !String::from_utf8_lossy(&out).contains(text) {
            let now = Instant::now();
            assert!(now < deadline, "guest never printed {text:?}");
            out = self.output.1.wait_timeout(out, deadline - now).unwrap().0;
        }
    }
}

fn pipe_spec(base: &Path) -> ChardevBackend {
    ChardevBackend::Pipe(ChardevHostdev {
        device: base.to_string_lossy().into_owned(),
        ..Default::default()
    })
}

#[test]
fn input_and_break_through_a_pipe_chardev() {
    if !require(Prereq::Kvm) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("ser");
    let mut peer = PipePeer::new(&base);
    let reg = Registry::new().unwrap();
    reg.add("ser0", pipe_spec(&base)).unwrap();
    let vm = boot_on(&reg, "ser0", &demo_image(None));
    peer.wait_for(&demo_line(20));
    peer.send(b"hello");
    peer.wait_for("qchar-echo hello\r\n");
    // A break arrives as LSR.BI plus a NUL character, which the guest echoes.
    reg.send_break("ser0").unwrap();
    peer.wait_for("qchar-echo \\x00\r\n");
    // Much more input than the 64-byte FIFO: the chardev waits for the
    // guest (can_read/accept_input) and every byte is echoed in order.
    let long: Vec<u8> = (0..500u32).map(|i| b'a' + (i % 26) as u8).collect();
    peer.send(&long);
    let n = count_numbered(&peer.output());
    peer.wait_for(&demo_line(n + 100));
    let echoed = || -> String {
        String::from_utf8_lossy(&peer.output())
            .split("\r\n")
            .filter_map(|l| l.strip_prefix(guest::ECHO_PREFIX))
            .collect()
    };
    wait_until_within("every input byte echoed", TIMEOUT, || {
        echoed().len() >= 5 + 4 + long.len()
    });
    assert_eq!(
        echoed(),
        format!("hello\\x00{}", String::from_utf8(long.clone()).unwrap())
    );
    assert_eq!(vm.quit(), ExitReason::Quit);
    let out = peer.output();
    let end = out.windows(2).rposition(|w| w == b"\r\n").unwrap() + 2;
    check_numbered(&out[..end], count_numbered(&out[..end]));
    reg.shutdown();
}

#[test]
fn interrupt_driven_guest_on_a_pipe_chardev() {
    if !require(Prereq::Kvm) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("irq");
    let mut peer = PipePeer::new(&base);
    let reg = Registry::new().unwrap();
    reg.add("ser0", pipe_spec(&base)).unwrap();
    let vm = boot_on(&reg, "ser0", IRQ_DEMO_IMAGE);
    peer.wait_for("qchar-irq ready\r\n");
    peer.send(b"ping");
    peer.wait_for("qchar-irq 0001 ping\r\n");
    peer.send(&[guest::IRQ_STOP_BYTE]);
    assert_eq!(vm.wait_timeout(TIMEOUT), Some(ExitReason::Halted));
    peer.wait_for("qchar-irq bye\r\n");
    reg.shutdown();
}

#[test]
fn stalled_pipe_peer_holds_the_guest_without_loss() {
    if !require(Prereq::Kvm) {
        return;
    }
    // 4000 lines (88 KB) overflow the 64 KiB pipe and the chardev's 256-byte
    // queue while nobody reads: the UART must hold the guest on LSR.THRE.
    const LINES: u64 = 4_000;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("stall");
    let mut peer = PipePeer::new_not_reading(&base);
    let reg = Registry::with_out_capacity(256).unwrap();
    reg.add("ser0", pipe_spec(&base)).unwrap();
    let vm = boot_on(&reg, "ser0", &demo_image(Some(LINES as u32)));
    let uart = vm.serial_ports()[0].uart().clone();
    wait_until_within("backpressure on the UART", TIMEOUT, || {
        uart.tx_pending() > 0 && uart.stats().tx_blocked > 0
    });
    assert!(
        vm.exit_reason().is_none(),
        "the guest is held, not finished"
    );
    peer.start_reading();
    assert_eq!(vm.wait_timeout(TIMEOUT), Some(ExitReason::Halted));
    peer.wait_for(&format!("{}\r\n", demo_line(LINES)));
    assert!(check_numbered(&peer.output(), LINES).is_empty());
    assert_eq!(uart.stats().tx_dropped, 0);
    reg.shutdown();
}
