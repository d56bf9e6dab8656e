//! A terminal's websocket, driven as a page drives it (no browser: the
//! browser tests are `crates/qchar/tests/web_console.rs`): history then
//! live output across backend changes, every byte once and in order, for
//! a terminal opened at the start and one opened late; input to the
//! frontend, refused (and the socket closed) on a read-only terminal; the
//! end of a removed chardev.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use qchar_chardev::spec::{ChardevBackend, ChardevCommon, ChardevFile, ChardevRingbuf};
use qchar_chardev::Registry;
use qchar_testkit::{wait_until, Budget};
use support::{Device, Setup};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

/// Record `i`: 16 bytes.
fn record(i: u64) -> Vec<u8> {
    format!("rec {i:010}\r\n").into_bytes()
}

/// Checks that `data` is records 0, 1, 2... each once and in order.
fn check_records(data: &[u8]) -> u64 {
    assert_eq!(data.len() % 16, 0, "{} bytes: a record cut", data.len());
    for (i, r) in data.chunks(16).enumerate() {
        assert_eq!(
            r,
            record(i as u64).as_slice(),
            "record {i} (lost, repeated or reordered output)"
        );
    }
    data.len() as u64 / 16
}

fn backlog(n: u64) -> ChardevCommon {
    ChardevCommon {
        backlog: Some(n),
        ..Default::default()
    }
}

#[test]
fn terminals_show_history_then_live_across_100_changes() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    let file = |i: usize| {
        ChardevBackend::File(ChardevFile {
            common: backlog(8 << 20),
            out: dir.path().join(format!("{i}.log")).to_string_lossy().into(),
            ..Default::default()
        })
    };
    reg.add("con", file(0)).unwrap();
    let fe = reg.attach("con").unwrap();
    let (dev, _input) = Device::new();
    fe.set_handlers(Box::new(dev));
    let s = Setup::new(&reg);
    // Output before any terminal: the history.
    for i in 0..1000 {
        fe.write_all(&record(i)).unwrap();
    }
    let mut early = s.terminal("con", "");
    early.read_until(16_000);
    // A writer goes on while the backend changes under the terminal. None
    // of these backends paces it, so it may run at most AHEAD records (3.2
    // MB) past the slower terminal: well inside the 8 MiB history, so
    // neither terminal ever skips however the machine schedules them.
    const AHEAD: u64 = 200_000;
    let stop = Arc::new(AtomicBool::new(false));
    let budget = Budget::new(AHEAD);
    let writer = {
        let (fe, stop, budget) = (fe.clone(), stop.clone(), budget.clone());
        std::thread::spawn(move || {
            let mut i = 1000;
            while !stop.load(Ordering::Relaxed) || i < 20_000 {
                if !budget.wait_below(i, || stop.load(Ordering::Relaxed)) {
                    // Stopped while waiting: the loop's test decides.
                    continue;
                }
                fe.write_all(&record(i)).unwrap();
                i += 1;
            }
            i
        })
    };
    let mut late: Option<support::Terminal> = None;
    for i in 1..=100 {
        let spec = match i % 3 {
            0 => file(i),
            1 => ChardevBackend::Null(backlog(8 << 20)),
            _ => ChardevBackend::Ringbuf(ChardevRingbuf {
                common: backlog(8 << 20),
                size: Some(1 << 20),
            }),
        };
        reg.change("con", spec).unwrap();
        let before = early.data.len();
        early.read_until(before + 16);
        if i == 50 {
            late = Some(s.terminal("con", ""));
        }
        let mut slower = early.data.len();
        if let Some(l) = late.as_mut() {
            l.read_until(early.data.len());
            slower = slower.min(l.data.len());
        }
        budget.set(slower as u64 / 16 + AHEAD);
    }
    stop.store(true, Ordering::Relaxed);
    budget.set(u64::MAX);
    let written = writer.join().unwrap();
    let total = (written * 16) as usize;
    early.read_until(total);
    assert_eq!(check_records(&early.data), written);
    // The late terminal started with the history: the same bytes.
    let mut late = late.unwrap();
    late.read_until(total);
    assert_eq!(late.data, early.data);
    // Both were told of the changes; the last notice names the last
    // backend (a null one).
    for t in [&mut early, &mut late] {
        while t
            .notices
            .last()
            .map(|n| n["filename"] != "null")
            .unwrap_or(true)
        {
            t.next_notice();
        }
        let backends = t.notices.iter().filter(|n| n["type"] == "backend").count();
        assert!((1..=100).contains(&backends), "{backends} backend notices");
    }
    assert!(early.notices.iter().all(|n| n["type"] != "skipped"));
    assert!(late.notices.iter().all(|n| n["type"] != "skipped"));
    fe.detach();
    drop(s);
    reg.shutdown();
}

#[test]
fn input_reaches_the_frontend_and_a_read_only_terminal_is_closed() {
    let reg = Registry::new().unwrap();
    reg.add("con", ChardevBackend::Null(Default::default()))
        .unwrap();
    let fe = reg.attach("con").unwrap();
    let (dev, input) = Device::new();
    fe.set_handlers(Box::new(dev));
    let s = Setup::new(&reg);
    let mut rw = s.terminal("con", "");
    rw.send(b"bin\x00\xff ");
    rw.send_text("text \u{e9}");
    let mut want = b"bin\x00\xff text ".to_vec();
    want.extend_from_slice("\u{e9}".as_bytes());
    wait_until("the frontend got the input", || {
        *input.lock().unwrap() == want
    });

    let mut ro = s.terminal("con", "ro=1");
    assert_eq!(ro.notices[0]["readOnly"], true);
    ro.send(b"nope");
    let close = loop {
        match ro.ws.read() {
            Ok(Message::Close(c)) => break c,
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    let close = close.expect("a close frame with a code");
    assert_eq!(close.code, CloseCode::Policy);
    assert_eq!(close.reason.as_str(), "read-only");
    // Proven by order: the read-write terminal's next input arrives, and
    // nothing of the read-only one's before it.
    rw.send(b"!");
    want.push(b'!');
    wait_until("the frontend got the next input", || {
        *input.lock().unwrap() == want
    });
    fe.detach();
    drop(s);
    reg.shutdown();
}

#[test]
fn a_removed_chardev_ends_its_terminals() {
    let reg = Registry::new().unwrap();
    reg.add("con", ChardevBackend::Null(Default::default()))
        .unwrap();
    let s = Setup::new(&reg);
    let fe = reg.attach("con").unwrap();
    fe.write_all(b"last words").unwrap();
    let mut t = s.terminal("con", "");
    t.read_until(10);
    assert_eq!(t.data, b"last words");
    fe.detach();
    reg.remove("con").unwrap();
    let n = t.next_notice();
    assert_eq!(
        n,
        serde_json::json!({"type": "closed", "reason": "removed"})
    );
    while t.read_one() {}
    // A terminal of a chardev that is not there: 404.
    let auth = format!("Bearer {}", s.token());
    let r = support::get(
        s.addr(),
        "/ws/con",
        &[
            ("Authorization", auth.as_str()),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    );
    assert_eq!(r.status, 404);
    drop(s);
    reg.shutdown();
}

#[test]
fn the_index_counts_terminals_and_socket_clients() {
    use qchar_chardev::spec::{ChardevSocket, SocketAddressLegacy};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sock");
    let reg = Registry::new().unwrap();
    let mut spec = ChardevSocket::new(
        SocketAddressLegacy::unix(path.to_string_lossy().as_ref()),
        true,
    );
    spec.clients = Some(4);
    reg.add("multi", ChardevBackend::Socket(spec)).unwrap();
    let s = Setup::new(&reg);
    s.consoles.add_frontend("multi", "isa-serial COM1");
    let clients = || {
        let r = s.get("/api/chardevs");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v[0]["id"], "multi");
        assert_eq!(v[0]["frontend"], "isa-serial COM1");
        v[0]["clients"].as_u64().unwrap()
    };
    assert_eq!(clients(), 0);
    let _a = qchar_testkit::connect_unix(&path);
    let _b = qchar_testkit::connect_unix(&path);
    wait_until("two socket clients counted", || clients() == 2);
    let t = s.terminal("multi", "ro=1");
    assert_eq!(clients(), 3);
    drop(t);
    wait_until("the terminal gone", || clients() == 2);
    drop(s);
    reg.shutdown();
}
