//! A peer that never reads (issue 6): the demo guest under real KVM prints
//! into a unix-socket chardev whose only client connects and then reads
//! nothing for 60 s. The guest must be held back (its output counter stops
//! once the UART, the chardev queue and the socket are full), memory must
//! stay bounded meanwhile, and once the client reads, every numbered line
//! must arrive exactly once, in order. Skips (with a message) where
//! /dev/kvm cannot be opened; fails there under `QCHAR_TEST_REQUIRE_ALL`.

mod common;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qchar_chardev::opts::parse_chardev;
use qchar_chardev::Registry;
use qchar_machine::guest::{demo_image, demo_line};
use qchar_machine::{ComPort, ExitReason, Machine, MachineConfig};
use qchar_testkit::{require, rss, wait_until_within, Prereq};

use common::TIMEOUT;

/// How long the client does not read. A sleep, not a timing assertion.
const STALL: Duration = Duration::from_secs(60);
/// Bound on the resident set's growth while the output is held. The guest
/// counts forever, so had qchar buffered its output instead of holding it,
/// 60 s would add megabytes (tens of kB/s even with costly VM exits).
const RSS_GROWTH_WHILE_HELD: u64 = 1 << 20;
/// Bound on the resident set's growth from before the VM to the end of the
/// stall: the vCPU thread, the pages the guest touches, the 64 KiB queue.
const RSS_GROWTH_TOTAL: u64 = 8 << 20;
/// Lines read after the stall before the VM is stopped.
const LINES_AFTER: u64 = 2_000;
/// Polls `f` until it holds, for as long as anything the guest does may take.
fn wait_until(what: &str, f: impl FnMut() -> bool) {
    wait_until_within(what, TIMEOUT, f);
}

fn filename(reg: &Registry, id: &str) -> String {
    reg.query()
        .into_iter()
        .find(|i| i.label == id)
        .map(|i| i.filename)
        .unwrap_or_default()
}

#[test]
fn guest_is_held_by_a_peer_that_never_reads_and_loses_nothing() {
    if !require(Prereq::Kvm) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ser0.sock");
    let reg = Registry::new().unwrap();
    let opts = parse_chardev(&format!(
        "socket,id=ser0,path={},server=on,wait=off",
        path.display()
    ))
    .unwrap();
    reg.add_options(&opts).unwrap();
    let mut client = UnixStream::connect(&path).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    wait_until("the client is accepted", || {
        !filename(&reg, "ser0").starts_with("disconnected:")
    });
    let rss_before = rss();

    let mut m = Machine::new(MachineConfig::default()).expect("create VM");
    // Counts forever: only qchar can hold it back.
    m.load_boot_image(&demo_image(None)).expect("load image");
    m.add_serial_chardev(ComPort::COM1, reg.attach("ser0").unwrap())
        .expect("COM1");
    let vm = m.start().expect("start");
    let uart = vm.serial_ports()[0].uart().clone();

    // Held: the UART is pushed back and its count of bytes handed to the
    // chardev stops moving once the UART FIFO, the chardev's queue and the
    // socket are full. Being held is the absence of progress, which no
    // event announces: it is seen as 200 ms with the UART blocked and its
    // count still. Too short a look would make the 60 s check below fail;
    // it cannot make the test pass wrongly.
    wait_until("the guest to be held", || {
        let a = uart.stats();
        if a.tx_blocked == 0 || uart.tx_pending() == 0 {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
        uart.stats().tx_bytes == a.tx_bytes
    });
    let held_at = uart.stats().tx_bytes;
    let rss_held = rss();
    assert!(vm.exit_reason().is_none(), "the guest runs, held");

    // The peer does not read for STALL (the stall is what is under test);
    // memory is sampled meanwhile.
    let mut rss_max = rss_held;
    let end = Instant::now() + STALL;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(250));
        rss_max = rss_max.max(rss());
    }
    assert_eq!(
        uart.stats().tx_bytes,
        held_at,
        "the guest's output advanced while nobody read"
    );
    assert!(vm.exit_reason().is_none(), "the guest is still running");
    eprintln!(
        "held after {held_at} bytes; RSS {rss_before} before the VM, {rss_held} when held, \
         {rss_max} at most during the stall"
    );
    assert!(
        rss_max - rss_held < RSS_GROWTH_WHILE_HELD,
        "RSS grew by {} bytes while output was held",
        rss_max - rss_held
    );
    assert!(
        rss_max.saturating_sub(rss_before) < RSS_GROWTH_TOTAL,
        "RSS grew by {} bytes since before the VM",
        rss_max.saturating_sub(rss_before)
    );

    // The client reads: the guest moves on.
    let got = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (got, stop) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                match client.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.lock().unwrap().extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("read: {e}"),
                }
            }
            client
        })
    };
    let line_len = demo_line(1).len() as u64 + 2;
    let past_hold = format!("{}\r\n", demo_line(held_at / line_len + LINES_AFTER));
    wait_until("lines past the hold", || {
        let g = got.lock().unwrap();
        g.len() > held_at as usize && {
            let tail = &g[g.len().saturating_sub(64 * 1024)..];
            tail.windows(past_hold.len())
                .any(|w| w == past_hold.as_bytes())
        }
    });
    assert_eq!(vm.quit(), ExitReason::Quit);
    // Whatever the UART still held goes to the chardev, then to the client:
    // every byte the guest got out, once, in order.
    wait_until("the UART drained", || uart.tx_pending() == 0);
    let total = uart.stats().tx_bytes as usize;
    wait_until("everything delivered", || {
        got.lock().unwrap().len() >= total
    });
    stop.store(true, Ordering::Relaxed);
    let client = reader.join().expect("reader");
    let got = std::mem::take(&mut *got.lock().unwrap());
    let mut want = Vec::with_capacity(total + line_len as usize);
    let mut n = 1;
    while want.len() < total {
        want.extend_from_slice(format!("{}\r\n", demo_line(n)).as_bytes());
        n += 1;
    }
    want.truncate(total);
    assert_eq!(
        got.len(),
        total,
        "bytes delivered vs handed over by the UART"
    );
    assert!(got == want, "lines lost, repeated or reordered");
    assert_eq!(uart.stats().tx_dropped, 0);
    let st = reg.stats("ser0").unwrap();
    assert_eq!((st.bytes_lost, st.queued), (0, 0));
    drop(client);
    reg.shutdown();
}
