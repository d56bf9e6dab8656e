//! A chardev's history and its taps: what went out is kept across changes
//! (`backlog=SIZE` sizes it), `Registry::history` reads it without
//! consuming, taps read history then live output at their own pace, report
//! what they missed, type into the focused frontend through a bounded
//! queue, follow changes and end with the chardev.

#[path = "support/net.rs"]
mod net;
mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use net::*;
use qchar_chardev::spec::{ChardevBackend, ChardevCommon};
use qchar_chardev::tap::{Tap, TapOptions, TapRead, TAP_INPUT_CAP};
use qchar_chardev::{FrontendHandlers, Registry};
use qchar_testkit::{connect_unix, wait_until};
use support::{file_spec, input, read, ringbuf_spec, Recorder};

fn null(backlog: Option<u64>) -> ChardevBackend {
    ChardevBackend::Null(ChardevCommon {
        backlog,
        ..Default::default()
    })
}

fn attach(reg: &Registry, id: &str) -> (qchar_chardev::CharFrontend, Arc<Mutex<support::Seen>>) {
    let fe = reg.attach(id).unwrap();
    let (r, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    (fe, seen)
}

fn sent(reg: &Registry, id: &str) {
    wait_until("the chardev sent its output", || {
        reg.stats(id).unwrap().queued == 0
    });
}

/// Reads from `tap` until `want` bytes came, failing on a skip or the end.
fn tap_read(tap: &mut Tap, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 100];
    while got.len() < want {
        match tap.read_blocking(&mut buf) {
            TapRead::Data(n) => got.extend_from_slice(&buf[..n]),
            other => panic!("after {} bytes: {other:?}", got.len()),
        }
    }
    got
}

#[test]
fn history_keeps_what_went_out_across_changes_and_replays_to_the_next_peer() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    reg.add(
        "h",
        with_backlog(ChardevBackend::Pty(Default::default()), 32),
    )
    .unwrap();
    let (fe, _seen) = attach(&reg, "h");
    fe.write_all(b"no slave yet ").unwrap();
    sent(&reg, "h");
    assert_eq!(reg.history("h", 100).unwrap(), b"no slave yet ");
    // The file is the next peer: it gets what no peer had, then live output.
    let out = dir.path().join("out");
    reg.change("h", file_spec(&out)).unwrap();
    fe.write_all(b"then a file").unwrap();
    sent(&reg, "h");
    wait_until("the file has it all", || {
        read(&out) == b"no slave yet then a file"
    });
    assert_eq!(reg.history("h", 100).unwrap(), b"no slave yet then a file");
    assert_eq!(reg.history("h", 6).unwrap(), b"a file", "the newest bytes");
    // Not consumed.
    assert_eq!(reg.history("h", 6).unwrap(), b"a file");
    // A new backlog size keeps the newest bytes.
    reg.change("h", with_backlog(file_spec(&out), 4)).unwrap();
    assert_eq!(reg.history("h", 100).unwrap(), b"file");
    fe.detach();
    reg.shutdown();
}

#[test]
fn a_returning_peer_gets_only_what_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.sock");
    let reg = Registry::new().unwrap();
    reg.add("r", with_backlog(unix_server(&path), 1024))
        .unwrap();
    let (fe, _seen) = attach(&reg, "r");
    fe.write_all(b"before ").unwrap();
    let mut c = connect_unix(&path);
    bounded_unix(&c);
    assert_eq!(read_n(&mut c, 7), b"before ");
    fe.write_all(b"live ").unwrap();
    assert_eq!(read_n(&mut c, 5), b"live ");
    drop(c);
    wait_until("the client is gone", || !fe.is_open());
    fe.write_all(b"missed").unwrap();
    sent(&reg, "r");
    let mut c = connect_unix(&path);
    bounded_unix(&c);
    assert_eq!(read_n(&mut c, 6), b"missed", "not what the first one had");
    fe.write_all(b"!").unwrap();
    assert_eq!(read_n(&mut c, 1), b"!");
    wait_until("the history has it all", || {
        reg.history("r", 100).unwrap() == b"before live missed!"
    });
    fe.detach();
    reg.shutdown();
}

#[test]
fn history_errors_name_the_chardev() {
    let reg = Registry::new().unwrap();
    reg.add("plain", null(None)).unwrap();
    assert_eq!(
        reg.history("nope", 10).unwrap_err().to_string(),
        "Chardev 'nope' not found"
    );
    assert_eq!(
        reg.history("plain", 10).unwrap_err().to_string(),
        "Chardev 'plain' keeps no history (it needs backlog=SIZE)"
    );
    assert_eq!(
        reg.tap("nope", TapOptions::default())
            .unwrap_err()
            .to_string(),
        "Chardev 'nope' not found"
    );
    // A tap gives it one; a backlog=0 change without readers takes it away.
    let tap = reg.tap("plain", TapOptions::default()).unwrap();
    assert!(reg.history("plain", 10).unwrap().is_empty());
    reg.change("plain", null(Some(0))).unwrap();
    assert!(reg.history("plain", 10).is_ok(), "the tap still needs it");
    drop(tap);
    reg.change("plain", null(Some(0))).unwrap();
    assert!(reg.history("plain", 10).is_err());
    reg.shutdown();
}

#[test]
fn a_tap_reads_history_then_live_across_backend_changes() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    reg.add("t", null(Some(1 << 16))).unwrap();
    let (fe, _seen) = attach(&reg, "t");
    fe.write_all(b"early;").unwrap();
    sent(&reg, "t");
    let mut all = reg
        .tap(
            "t",
            TapOptions {
                read_only: true,
                from_history: true,
            },
        )
        .unwrap();
    let mut live = reg.tap("t", TapOptions::default()).unwrap();
    assert_eq!(all.position(), 0);
    assert_eq!(live.position(), 6);
    let mut want = b"early;".to_vec();
    let specs = [
        ringbuf_spec(1 << 16),
        file_spec(&dir.path().join("f")),
        with_backlog(unix_server(&dir.path().join("s.sock")), 1 << 16),
        ChardevBackend::Pty(Default::default()),
        null(None),
    ];
    for (i, spec) in specs.into_iter().enumerate() {
        reg.change("t", spec).unwrap();
        let line = format!("after change {i};");
        fe.write_all(line.as_bytes()).unwrap();
        want.extend_from_slice(line.as_bytes());
    }
    assert_eq!(tap_read(&mut all, want.len()), want);
    assert_eq!(tap_read(&mut live, want.len() - 6), want[6..]);
    assert_eq!(all.try_read(&mut [0u8; 8]), None, "nothing more");
    fe.detach();
    reg.shutdown();
}

#[test]
fn a_tap_that_falls_behind_is_told_what_it_missed() {
    let reg = Registry::new().unwrap();
    reg.add("s", null(Some(16))).unwrap();
    let (fe, _seen) = attach(&reg, "s");
    let mut tap = reg
        .tap(
            "s",
            TapOptions {
                read_only: true,
                from_history: true,
            },
        )
        .unwrap();
    let data: Vec<u8> = (b'a'..=b'z').chain(b'A'..=b'N').collect(); // 40 bytes
    fe.write_all(&data).unwrap();
    sent(&reg, "s");
    let mut buf = [0u8; 64];
    assert_eq!(tap.try_read(&mut buf), Some(TapRead::Skipped(24)));
    assert_eq!(tap.try_read(&mut buf), Some(TapRead::Data(16)));
    assert_eq!(&buf[..16], &data[24..]);
    assert_eq!(tap.position(), 40);
    fe.detach();
    reg.shutdown();
}

/// A frontend whose room is set by the test.
struct Gated {
    room: Arc<AtomicUsize>,
    got: Arc<Mutex<Vec<u8>>>,
}

impl FrontendHandlers for Gated {
    fn can_read(&mut self) -> usize {
        self.room.load(Ordering::SeqCst)
    }
    fn read(&mut self, data: &[u8]) {
        self.got.lock().unwrap().extend_from_slice(data);
    }
    fn supports_hotswap(&self) -> bool {
        true
    }
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn tap_input_reaches_the_frontend_bounded_and_in_order() {
    let reg = Registry::new().unwrap();
    reg.add("i", null(None)).unwrap();
    let fe = reg.attach("i").unwrap();
    let room = Arc::new(AtomicUsize::new(0));
    let got = Arc::new(Mutex::new(Vec::new()));
    fe.set_handlers(Box::new(Gated {
        room: room.clone(),
        got: got.clone(),
    }));
    let a = reg.tap("i", TapOptions::default()).unwrap();
    let b = reg.tap("i", TapOptions::default()).unwrap();
    // The frontend takes nothing: the queue fills to its bound and no more.
    let mut want = Vec::new();
    let mut i = 0u32;
    loop {
        let chunk = format!("<{i:05}>").into_bytes();
        let tap = if i % 2 == 0 { &a } else { &b };
        let n = tap.input(&chunk).unwrap();
        want.extend_from_slice(&chunk[..n]);
        if n < chunk.len() {
            break;
        }
        i += 1;
    }
    assert_eq!(want.len(), TAP_INPUT_CAP);
    assert_eq!(a.input(b"more").unwrap(), 0, "full");
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    assert!(a
        .poll_input(&mut Context::from_waker(&waker), b"x")
        .is_pending());
    // Room: everything arrives once, in order, and the waiting tap is woken.
    room.store(1000, Ordering::SeqCst);
    fe.accept_input();
    wait_until("all tap input delivered", || {
        got.lock().unwrap().len() == want.len()
    });
    assert_eq!(*got.lock().unwrap(), want);
    wait_until("the waiting tap is woken", || flag.0.load(Ordering::SeqCst));
    assert!(matches!(
        a.poll_input(&mut Context::from_waker(&waker), b"x"),
        Poll::Ready(Ok(1))
    ));
    wait_until("delivered", || got.lock().unwrap().ends_with(b"x"));
    assert_eq!(reg.stats("i").unwrap().bytes_in as usize, want.len() + 1);
    fe.detach();
    reg.shutdown();
}

#[test]
fn a_read_only_tap_may_not_type_and_removal_ends_taps() {
    let reg = Registry::new().unwrap();
    reg.add("e", null(Some(64))).unwrap();
    let (fe, seen) = attach(&reg, "e");
    let viewer = reg
        .tap(
            "e",
            TapOptions {
                read_only: true,
                from_history: false,
            },
        )
        .unwrap();
    assert!(viewer.is_read_only());
    assert_eq!(
        viewer.input(b"x").unwrap_err().to_string(),
        "tap on chardev 'e' is read-only"
    );
    let mut typist = reg.tap("e", TapOptions::default()).unwrap();
    typist.input(b"hi").unwrap();
    wait_until("typed", || input(&seen) == b"hi");
    fe.write_all(b"last words").unwrap();
    sent(&reg, "e");
    fe.detach();
    reg.remove("e").unwrap();
    // What went out before the removal is still read, then the end.
    assert_eq!(tap_read(&mut typist, 10), b"last words");
    assert_eq!(typist.read_blocking(&mut [0u8; 8]), TapRead::Closed);
    assert_eq!(
        typist.input(b"x").unwrap_err().to_string(),
        "Chardev 'e' not found"
    );
    // An id used again is another chardev: the old taps stay ended.
    reg.add("e", null(Some(64))).unwrap();
    assert_eq!(typist.read_blocking(&mut [0u8; 8]), TapRead::Closed);
    let mut fresh = reg
        .tap(
            "e",
            TapOptions {
                read_only: true,
                from_history: true,
            },
        )
        .unwrap();
    assert_eq!(fresh.try_read(&mut [0u8; 8]), None);
    reg.shutdown();
}

#[test]
fn a_tap_wakes_a_task_on_the_io_runtime_of_another_thread() {
    // poll_read from a tokio runtime of the caller's own: the waker is
    // that runtime's, woken by the chardev's I/O thread.
    let reg = Registry::new().unwrap();
    reg.add("w", null(Some(1 << 16))).unwrap();
    let (fe, _seen) = attach(&reg, "w");
    let mut tap = reg.tap("w", TapOptions::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let writer = {
        let fe = fe.clone();
        std::thread::spawn(move || {
            for i in 0..50 {
                fe.write_all(format!("{i:03};").as_bytes()).unwrap();
            }
        })
    };
    let got = rt.block_on(async {
        let mut got = Vec::new();
        let mut buf = [0u8; 7];
        while got.len() < 200 {
            match tap.read(&mut buf).await {
                TapRead::Data(n) => got.extend_from_slice(&buf[..n]),
                other => panic!("{other:?}"),
            }
        }
        got
    });
    writer.join().unwrap();
    let want: Vec<u8> = (0..50)
        .flat_map(|i| format!("{i:03};").into_bytes())
        .collect();
    assert_eq!(got, want);
    fe.detach();
    reg.shutdown();
}
