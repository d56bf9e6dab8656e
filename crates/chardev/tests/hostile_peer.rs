//! Hostile socket peers: a telnet subnegotiation that never ends, a
//! websocket handshake that never ends, pings whose pongs are never read,
//! a frame announcing 2^63 bytes, a raw flood into a frontend that does not
//! read. Whatever the peer sends:
//! - the process's peak RSS grows by less than a stated bound (`VmRSS`
//!   before, the kernel's high-water mark `VmHWM` after, reset through
//!   `/proc/self/clear_refs` before each flood, so a short peak counts too);
//! - nothing panics and the chardev keeps working for the next peer;
//! - another chardev is untouched: an echo chardev `b` returns every byte
//!   its own client sends, byte for byte, while the flood runs.
//!
//! The tests of this file run one at a time (RSS is per process).

#[path = "support/hostile.rs"]
mod hostile;
#[path = "support/net.rs"]
mod net;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hostile::{Echo, EchoTraffic, MIB};
use net::{connect_tcp, server_port, socket, unix_server, ws_frame, ws_handshake};
use qchar_chardev::spec::ChardevBackend;
use qchar_chardev::{CharFrontend, ChardevEvent, FrontendHandlers, Registry};
use qchar_testkit::{connect_unix, one_at_a_time, peak_growth, wait_until};

/// Peak RSS growth allowed during a flood: the chardev layer holds no
/// message, so this covers I/O buffers, thread stacks, allocator slack.
const BOUND: u64 = 32 * MIB;

fn check_growth(what: &str, growth: u64) {
    eprintln!("{what}: peak RSS +{:.1} MiB", growth as f64 / MIB as f64);
    assert!(
        growth < BOUND,
        "{what}: peak RSS grew by {} MiB",
        growth / MIB
    );
}

// ----- frontends ---------------------------------------------------------

/// Counts input without keeping it; keeps the first bytes, and can be held
/// (`can_read` 0) to apply backpressure.
#[derive(Clone, Default)]
struct Counter {
    bytes: Arc<AtomicU64>,
    head: Arc<Mutex<Vec<u8>>>,
    opened: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
    hold: Arc<AtomicBool>,
}

impl FrontendHandlers for Counter {
    fn can_read(&mut self) -> usize {
        if self.hold.load(Ordering::SeqCst) {
            0
        } else {
            65536
        }
    }
    fn read(&mut self, data: &[u8]) {
        self.bytes.fetch_add(data.len() as u64, Ordering::SeqCst);
        let mut h = self.head.lock().unwrap();
        let room = 4096usize.saturating_sub(h.len());
        h.extend_from_slice(&data[..room.min(data.len())]);
    }
    fn event(&mut self, e: ChardevEvent) {
        match e {
            ChardevEvent::Opened => self.opened.fetch_add(1, Ordering::SeqCst),
            ChardevEvent::Closed => self.closed.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
    }
}

struct Setup {
    reg: Registry,
    _dir: tempfile::TempDir,
    echo: PathBuf,
    /// The hostile peer's chardev `a` and its frontend.
    a: CharFrontend,
    seen: Counter,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.reg.shutdown();
    }
}

/// Chardev `a` (TCP server on loopback with `telnet`/`websocket` as
/// asked) with a [`Counter`], and chardev `b`, a unix-socket echo.
fn setup(telnet: bool, websocket: bool) -> (Setup, u16) {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    let echo = dir.path().join("b.sock");
    reg.add("b", unix_server(&echo)).unwrap();
    let fe = reg.attach("b").unwrap();
    fe.set_handlers(Box::new(Echo {
        fe: fe.clone(),
        pending: Vec::new(),
    }));
    let mut spec = socket(net::inet_addr("127.0.0.1", 0), true);
    spec.telnet = Some(telnet);
    spec.websocket = Some(websocket);
    reg.add("a", ChardevBackend::Socket(spec)).unwrap();
    let port = server_port(&reg, "a");
    let a = reg.attach("a").unwrap();
    let seen = Counter::default();
    a.set_handlers(Box::new(seen.clone()));
    // Warm up b, so lazily made buffers exist before measuring.
    EchoTraffic::start(connect_unix(&echo)).finish();
    (
        Setup {
            reg,
            _dir: dir,
            echo,
            a,
            seen,
        },
        port,
    )
}

/// Sends `total` bytes made by `fill` in 64 KiB pieces (never holding the
/// flood in memory), with b's traffic alongside. Stops early, without
/// failing, if the chardev stops taking input for 2 s (backpressure) or
/// drops the connection; returns the bytes sent.
fn flood(s: &Setup, w: &mut TcpStream, total: u64, mut fill: impl FnMut(u64, &mut [u8])) -> u64 {
    w.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let traffic = EchoTraffic::start(connect_unix(&s.echo));
    let mut buf = vec![0u8; 65536];
    let mut off = 0;
    'send: while off < total {
        let n = (total - off).min(buf.len() as u64) as usize;
        fill(off, &mut buf[..n]);
        let mut done = 0;
        while done < n {
            match w.write(&buf[done..n]) {
                Ok(k) => {
                    done += k;
                    off += k as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Timed out (backpressure), reset or broken pipe (dropped).
                Err(_) => break 'send,
            }
        }
    }
    let echoed = traffic.finish();
    assert!(echoed > 0);
    eprintln!("flood: {off} bytes sent, {echoed} bytes echoed intact by b");
    off
}

// ----- the tests ---------------------------------------------------------

#[test]
fn telnet_subnegotiation_that_never_ends() {
    let _g = one_at_a_time();
    let (s, port) = setup(true, false);
    let mut c = connect_tcp(port);
    wait_until("a open", || s.a.is_open());
    let growth = peak_growth(|| {
        let sent = flood(&s, &mut c, 200 * MIB, |off, buf| {
            buf.fill(b'x');
            if off == 0 {
                buf[..2].copy_from_slice(&[255, 250]); // IAC SB, and no IAC SE
            }
        });
        assert_eq!(sent, 200 * MIB, "the telnet server stopped reading");
    });
    check_growth("telnet IAC SB without end, 200 MiB", growth);
    // All skipped; the connection still works once the peer ends it.
    c.write_all(&[255, 240]).unwrap();
    c.write_all(b"still here").unwrap();
    wait_until("data after IAC SE", || {
        s.seen.head.lock().unwrap().as_slice() == b"still here"
    });
}

#[test]
fn websocket_handshake_that_never_ends_is_refused_at_4_kib() {
    let _g = one_at_a_time();
    let (s, port) = setup(false, true);
    let mut c = connect_tcp(port);
    let growth = peak_growth(|| {
        let sent = flood(&s, &mut c, 200 * MIB, |off, buf| {
            if off == 0 {
                buf.fill(b'a');
                buf[..16].copy_from_slice(b"GET / HTTP/1.1\r\n");
                return;
            }
            for (i, b) in buf.iter_mut().enumerate() {
                *b = if i % 64 == 63 { b'\n' } else { b'h' };
            }
        });
        assert!(sent < 200 * MIB, "the server read 200 MiB of handshake");
    });
    check_growth("websocket handshake without end", growth);
    assert_eq!(s.seen.opened.load(Ordering::SeqCst), 0);
    // The next client is served.
    let mut good = connect_tcp(port);
    let head = ws_handshake(&mut good, Some("binary"));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    good.write_all(&ws_frame(2, b"hello")).unwrap();
    wait_until("frame data", || {
        s.seen.head.lock().unwrap().as_slice() == b"hello"
    });
}

#[test]
fn websocket_pings_whose_pongs_are_never_read() {
    let _g = one_at_a_time();
    let (s, port) = setup(false, true);
    let mut c = connect_tcp(port);
    let head = ws_handshake(&mut c, Some("binary"));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let ping = ws_frame(9, &[0x55; 125]);
    let growth = peak_growth(|| {
        flood(&s, &mut c, 200 * MIB, |off, buf| {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = ping[((off + i as u64) % ping.len() as u64) as usize];
            }
        });
    });
    check_growth("websocket pings, pongs unread", growth);
    assert_eq!(s.seen.bytes.load(Ordering::SeqCst), 0, "pings are not data");
}

#[test]
fn websocket_frame_of_2_pow_63_bytes_is_closed_with_1009() {
    let _g = one_at_a_time();
    let (s, port) = setup(false, true);
    let mut c = connect_tcp(port);
    assert!(ws_handshake(&mut c, Some("binary")).starts_with("HTTP/1.1 101 "));
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(1u64 << 63).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(&[0u8; 4096]);
    c.write_all(&frame).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let (op, payload) = net::ws_read_frame(&mut c).expect("a close frame");
    assert_eq!((op, payload), (8, 1009u16.to_be_bytes().to_vec()));
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after the close frame");
    wait_until("a closed", || s.seen.closed.load(Ordering::SeqCst) == 1);
    assert_eq!(s.seen.bytes.load(Ordering::SeqCst), 0);
}

#[test]
fn raw_flood_into_a_frontend_that_does_not_read() {
    let _g = one_at_a_time();
    let (s, port) = setup(false, false);
    s.seen.hold.store(true, Ordering::SeqCst);
    let mut c = connect_tcp(port);
    wait_until("a open", || s.a.is_open());
    let mut sent = 0;
    let growth = peak_growth(|| {
        sent = flood(&s, &mut c, 200 * MIB, |off, buf| {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = ((off + i as u64) % 251) as u8;
            }
        });
        assert!(
            sent < 200 * MIB,
            "200 MiB taken by a frontend that reads nothing"
        );
    });
    check_growth("raw flood, frontend not reading", growth);
    // Nothing was lost: once the frontend reads, every byte sent arrives.
    s.seen.hold.store(false, Ordering::SeqCst);
    s.a.accept_input();
    drop(c);
    wait_until("all input delivered", || {
        s.seen.bytes.load(Ordering::SeqCst) >= sent
    });
    assert_eq!(s.seen.bytes.load(Ordering::SeqCst), sent);
    let head = s.seen.head.lock().unwrap().clone();
    let want: Vec<u8> = (0..head.len() as u64).map(|i| (i % 251) as u8).collect();
    assert_eq!(head, want);
}

#[test]
fn frontend_writes_to_a_peer_that_never_reads() {
    let _g = one_at_a_time();
    let (s, port) = setup(false, false);
    let c = connect_tcp(port);
    wait_until("a open", || s.a.is_open());
    let traffic = EchoTraffic::start(connect_unix(&s.echo));
    let block = vec![0xa5u8; 65536];
    let mut taken = 0u64;
    let growth = peak_growth(|| {
        // 200 MiB offered; `write` never blocks and takes only what the
        // bounded queue has room for.
        for _ in 0..(200 * MIB / block.len() as u64) {
            taken += s.a.write(&block) as u64;
        }
    });
    let echoed = traffic.finish();
    assert!(echoed > 0);
    eprintln!("writer: {taken} of 200 MiB taken while the peer read nothing");
    check_growth("frontend output to a non-reading peer", growth);
    assert!(taken < 200 * MIB);
    drop(c);
}

#[test]
fn unix_peer_garbage_does_not_reach_another_chardev() {
    let _g = one_at_a_time();
    let (s, _) = setup(false, false);
    // A second hostile peer, on b's sibling: a unix server `c` whose input
    // goes to a counter; b's traffic must not change.
    let path = s._dir.path().join("c.sock");
    s.reg.add("c", unix_server(&path)).unwrap();
    let fe = s.reg.attach("c").unwrap();
    let seen = Counter::default();
    fe.set_handlers(Box::new(seen.clone()));
    let mut c: UnixStream = connect_unix(&path);
    let traffic = EchoTraffic::start(connect_unix(&s.echo));
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut buf = vec![0u8; 65536];
    let mut sent = 0u64;
    let growth = peak_growth(|| {
        while sent < 64 * MIB {
            for b in buf.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            c.write_all(&buf).unwrap();
            sent += buf.len() as u64;
        }
    });
    let echoed = traffic.finish();
    assert!(echoed > 0);
    check_growth("unix peer garbage, 64 MiB", growth);
    wait_until("garbage delivered to c", || {
        seen.bytes.load(Ordering::SeqCst) == sent
    });
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
