//! The rules of `Registry::change`, add, remove and query, over real files.

mod support;

use std::sync::{Arc, Mutex};

use qchar_chardev::spec::{ChardevBackend, ChardevCommon, ChardevFile};
use qchar_chardev::{CharFrontend, ChardevEvent, FrontendHandlers, Registry};
use qchar_testkit::wait_until;
use support::*;

#[test]
fn change_without_frontend_replaces_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    reg.add("c", ringbuf_spec(16)).unwrap();
    let out = dir.path().join("new.txt");
    reg.change("c", file_spec(&out)).unwrap();
    assert_eq!(reg.query()[0].filename, "file");
    let fe = reg.attach("c").unwrap();
    fe.write_all(b"after").unwrap();
    wait_until("output in the new file", || read(&out) == b"after");
    reg.shutdown();
}

#[test]
fn failed_open_without_frontend_keeps_the_old_backend() {
    let reg = Registry::new().unwrap();
    reg.add("c", ringbuf_spec(16)).unwrap();
    let bad = file_spec(std::path::Path::new("/nonexistent-dir/x"));
    let e = reg.change("c", bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Could not open '/nonexistent-dir/x': No such file or directory"
    );
    assert_eq!(reg.query()[0].filename, "ringbuf");
    reg.shutdown();
}

#[test]
fn qemu_messages_for_unknown_busy_and_duplicate_ids() {
    let reg = Registry::new().unwrap();
    let e = reg.change("nope", ringbuf_spec(16)).unwrap_err();
    assert_eq!(e.to_string(), "Chardev 'nope' does not exist");
    let e = reg.remove("nope").unwrap_err();
    assert_eq!(e.to_string(), "Chardev 'nope' not found");
    reg.add("a", ringbuf_spec(16)).unwrap();
    let e = reg.add("a", ringbuf_spec(16)).unwrap_err();
    assert_eq!(e.to_string(), "Chardev with id 'a' already exists");
    let fe = reg.attach("a").unwrap();
    let e = reg.remove("a").unwrap_err();
    assert_eq!(e.to_string(), "Chardev 'a' is busy");
    let e = reg.attach("a").unwrap_err();
    assert_eq!(e.to_string(), "Device 'a' is in use");
    fe.detach();
    reg.remove("a").unwrap();
    assert!(reg.query().is_empty());
    reg.shutdown();
}

#[test]
fn frontend_without_hotswap_refuses_change() {
    let reg = Registry::new().unwrap();
    reg.add("c", ringbuf_spec(16)).unwrap();
    let fe = reg.attach("c").unwrap();
    let (rec, _seen) = Recorder::new(false);
    fe.set_handlers(Box::new(rec));
    let e = reg.change("c", ringbuf_spec(32)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Chardev user does not support chardev hotswap"
    );
    reg.shutdown();
}

#[test]
fn refused_change_leaves_the_old_backend_delivering() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.txt");
    let new = dir.path().join("new.txt");
    let reg = Registry::new().unwrap();
    reg.add("c", file_spec(&old)).unwrap();
    let fe = reg.attach("c").unwrap();
    let (rec, seen) = Recorder::new(true);
    let refuse = rec.refuse.clone();
    fe.set_handlers(Box::new(rec));
    fe.write_all(b"one ").unwrap();
    *refuse.lock().unwrap() = Some("not today".into());
    let e = reg.change("c", file_spec(&new)).unwrap_err();
    assert_eq!(e.to_string(), "Chardev 'c' change failed");
    fe.write_all(b"two").unwrap();
    wait_until("both writes in the old file", || read(&old) == b"one two");
    assert_eq!(read(&new), b"", "the refused backend got nothing");
    assert_eq!(reg.query()[0].filename, "file");
    assert_eq!(seen.lock().unwrap().changes, 0);
    reg.shutdown();
}

#[test]
fn accepted_change_moves_output_and_tells_the_frontend() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.txt");
    let reg = Registry::new().unwrap();
    reg.add("c", file_spec(&old)).unwrap();
    let fe = reg.attach("c").unwrap();
    let (rec, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(rec));
    fe.write_all(b"one ").unwrap();
    let ret = reg.change("c", ringbuf_spec(64)).unwrap();
    assert_eq!(ret.pty, None);
    fe.write_all(b"two").unwrap();
    wait_until("first write in the old file", || read(&old) == b"one ");
    wait_until("second write in the ring", || {
        let mut got = Vec::new();
        got.extend(reg.ringbuf_read("c", 100).unwrap());
        got == b"two"
    });
    let s = seen.lock().unwrap();
    assert_eq!(s.changes, 1);
    // Both backends are open: no CLOSED, an OPENED for the new one.
    assert!(!s.events.contains(&ChardevEvent::Closed), "{:?}", s.events);
    assert_eq!(
        s.events
            .iter()
            .filter(|e| **e == ChardevEvent::Opened)
            .count(),
        2,
        "{:?}",
        s.events
    );
    drop(s);
    reg.shutdown();
}

#[test]
fn change_to_a_closed_backend_sends_closed_then_opened_when_back() {
    let reg = Registry::new().unwrap();
    reg.add("c", ringbuf_spec(64)).unwrap();
    let fe = reg.attach("c").unwrap();
    let (rec, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(rec));
    wait_until("opened", || {
        seen.lock().unwrap().events == [ChardevEvent::Opened]
    });
    let ret = reg
        .change("c", ChardevBackend::Pty(ChardevCommon::default()))
        .unwrap();
    let pty = ret.pty.expect("a pty path");
    assert!(pty.starts_with("/dev/pts/"), "{pty}");
    assert_eq!(reg.query()[0].filename, format!("pty:{pty}"));
    assert_eq!(
        seen.lock().unwrap().events,
        [ChardevEvent::Opened, ChardevEvent::Closed]
    );
    reg.change("c", ringbuf_spec(64)).unwrap();
    assert_eq!(
        seen.lock().unwrap().events,
        [
            ChardevEvent::Opened,
            ChardevEvent::Closed,
            ChardevEvent::Opened
        ]
    );
    reg.shutdown();
}

/// The core promise: with writers going flat out on several threads, a
/// thousand changes lose, repeat or reorder nothing.
#[test]
fn four_writers_and_a_thousand_changes_lose_nothing() {
    const WRITERS: usize = 4;
    const CHANGES: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let path = |i: usize| dir.path().join(format!("out{i:04}.txt"));
    let reg = Registry::with_out_capacity(4096).unwrap();
    reg.add("c", file_spec(&path(0))).unwrap();
    let fe = reg.attach("c").unwrap();
    let (rec, _seen) = Recorder::new(true);
    fe.set_handlers(Box::new(rec));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::new();
    for w in 0..WRITERS {
        let fe = fe.clone();
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 1000 {
                let rec = format!("w{w} {n:010}\n");
                fe.write_all(rec.as_bytes()).unwrap();
                n += 1;
            }
            n
        }));
    }
    for i in 1..=CHANGES {
        reg.change("c", file_spec(&path(i))).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let counts: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    wait_until("queue drained", || reg.stats("c").unwrap().queued == 0);
    let mut all = Vec::new();
    for i in 0..=CHANGES {
        all.extend(read(&path(i)));
    }
    let mut next = [0u64; WRITERS];
    for line in all.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = std::str::from_utf8(line).unwrap();
        let (w, n) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("torn record {line:?}"));
        let w: usize = w[1..].parse().unwrap();
        let n: u64 = n.parse().unwrap_or_else(|_| panic!("torn record {line:?}"));
        assert_eq!(n, next[w], "writer {w}: record out of order or repeated");
        next[w] += 1;
    }
    assert_eq!(next.to_vec(), counts, "every record found exactly once");
    assert_eq!(reg.stats("c").unwrap().changes, CHANGES as u64);
    reg.shutdown();
}

/// A frontend that changes its own chardev when it reads "swap", the way a
/// monitor on that chardev would, and answers on the old backend.
struct SelfChanger {
    reg: Registry,
    fe: Arc<Mutex<Option<CharFrontend>>>,
    target: ChardevBackend,
    result: Arc<Mutex<Option<String>>>,
}

impl FrontendHandlers for SelfChanger {
    fn can_read(&mut self) -> usize {
        64
    }
    fn read(&mut self, data: &[u8]) {
        if data.starts_with(b"swap") {
            let r = self.reg.change("c", self.target.clone());
            *self.result.lock().unwrap() = Some(format!("{r:?}"));
            if let Some(fe) = self.fe.lock().unwrap().as_ref() {
                // The reply to the command goes out on the old backend.
                assert_eq!(fe.write(b"reply"), 5);
            }
        }
    }
    fn supports_hotswap(&self) -> bool {
        true
    }
}

#[test]
fn change_requested_from_inside_a_read_handler_of_the_same_chardev() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, b"swap").unwrap();
    let old = dir.path().join("old.txt");
    let new = dir.path().join("new.txt");
    let reg = Registry::new().unwrap();
    reg.add("c", file_in_spec(&old, &input)).unwrap();
    let fe = reg.attach("c").unwrap();
    let slot = Arc::new(Mutex::new(Some(fe.clone())));
    let result = Arc::new(Mutex::new(None));
    fe.set_handlers(Box::new(SelfChanger {
        reg: reg.clone(),
        fe: slot.clone(),
        target: file_spec(&new),
        result: result.clone(),
    }));
    wait_until("the handler ran the change", || {
        result.lock().unwrap().is_some()
    });
    assert_eq!(
        result.lock().unwrap().as_deref(),
        Some("Ok(ChardevReturn { pty: None })")
    );
    wait_until("the change applied", || {
        reg.stats("c").unwrap().changes == 1
    });
    fe.write_all(b"later").unwrap();
    wait_until("later output in the new file", || read(&new) == b"later");
    assert_eq!(
        read(&old),
        b"reply",
        "the reply left through the old backend"
    );
    slot.lock().unwrap().take();
    reg.shutdown();
}

#[test]
fn query_lists_in_order_with_frontend_open() {
    let reg = Registry::new().unwrap();
    reg.add("b", ringbuf_spec(16)).unwrap();
    reg.add("a", ChardevBackend::Null(ChardevCommon::default()))
        .unwrap();
    let fe = reg.attach("a").unwrap();
    let (rec, _) = Recorder::new(false);
    fe.set_handlers(Box::new(rec));
    let q = serde_json::to_string(&reg.query()).unwrap();
    assert_eq!(
        q,
        r#"[{"label":"b","filename":"ringbuf","frontend-open":false},{"label":"a","filename":"null","frontend-open":true}]"#
    );
    reg.shutdown();
}

#[test]
fn logfile_gets_every_byte_the_backend_took() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.txt");
    let reg = Registry::new().unwrap();
    let spec = ChardevBackend::Null(ChardevCommon {
        logfile: Some(log.to_string_lossy().into_owned()),
        ..Default::default()
    });
    reg.add("c", spec).unwrap();
    let fe = reg.attach("c").unwrap();
    fe.write_all(b"logged").unwrap();
    wait_until("log written", || read(&log) == b"logged");
    // logappend keeps what was there.
    let spec = ChardevBackend::File(ChardevFile {
        out: dir.path().join("o").to_string_lossy().into_owned(),
        common: ChardevCommon {
            logfile: Some(log.to_string_lossy().into_owned()),
            logappend: Some(true),
            ..Default::default()
        },
        ..Default::default()
    });
    fe.detach();
    reg.change("c", spec).unwrap();
    let fe = reg.attach("c").unwrap();
    fe.write_all(b" more").unwrap();
    wait_until("log appended", || read(&log) == b"logged more");
    reg.shutdown();
}

#[test]
fn write_is_bounded_and_write_ready_follows_room() {
    // A pty with a slave that does not read: the kernel buffer fills, then
    // the chardev queue, and write() comes back short instead of blocking.
    let reg = Registry::with_out_capacity(1024).unwrap();
    let ret = reg
        .add("c", ChardevBackend::Pty(ChardevCommon::default()))
        .unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(ret.pty.unwrap())
        .unwrap();
    let fe = reg.attach("c").unwrap();
    let (rec, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(rec));
    wait_until("pty connected", || fe.is_open());
    let chunk = [b'x'; 512];
    let mut total = 0usize;
    let mut short = false;
    for _ in 0..100_000 {
        let n = fe.write(&chunk);
        total += n;
        if n < chunk.len() {
            short = true;
            break;
        }
    }
    assert!(short, "write never came back short after {total} bytes");
    assert!(reg.stats("c").unwrap().queued <= 1024);
    // Drain the slave: room comes back and the frontend hears of it.
    use std::io::Read;
    let mut slave = slave;
    let mut got = 0usize;
    let mut buf = [0u8; 4096];
    while got < total {
        got += slave.read(&mut buf).unwrap();
    }
    wait_until("write_ready", || seen.lock().unwrap().write_ready > 0);
    assert_eq!(got, total);
    reg.shutdown();
}
