//! `hub` (QEMU 10): one frontend over several member chardevs, with QEMU's
//! rules and texts, and what qchar adds: members changed under a running
//! hub, and the hub itself changed (into another hub or any backend).

#[path = "support/net.rs"]
mod net;
mod support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use net::*;
use qchar_chardev::opts::{parse_chardev, ChardevOptions};
use qchar_chardev::spec::{ChardevBackend, ChardevHub};
use qchar_chardev::{CharFrontend, ChardevEvent, Registry};
use qchar_testkit::{connect_unix, wait_until};
use support::*;

fn hub(members: &[&str]) -> ChardevBackend {
    ChardevBackend::Hub(ChardevHub {
        chardevs: members.iter().map(|m| m.to_string()).collect(),
        ..Default::default()
    })
}

fn attach(reg: &Registry, id: &str) -> (CharFrontend, Arc<Mutex<Seen>>) {
    let fe = reg.attach(id).unwrap();
    let (r, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    (fe, seen)
}

/// A thread writing numbered lines into `fe` until told to stop (and at
/// least `min` of them); returns how many it wrote.
struct Writer {
    stop: Arc<AtomicBool>,
    join: JoinHandle<usize>,
}

impl Writer {
    fn start(fe: &CharFrontend, min: usize) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let (fe, s) = (fe.clone(), stop.clone());
        let join = std::thread::spawn(move || {
            let mut n = 0;
            while !s.load(Ordering::Relaxed) || n < min {
                fe.write_all(format!("line {n:08}\n").as_bytes()).unwrap();
                n += 1;
            }
            n
        });
        Writer { stop, join }
    }

    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.join.join().unwrap()
    }
}

/// Whether socket chardev `id` has a peer (QEMU's filename says so).
fn connected(reg: &Registry, id: &str) -> bool {
    !filename(reg, id).starts_with("disconnected:")
}

/// Bytes of one [`Writer`] line.
const LINE: usize = "line 00000000\n".len();

/// Where `part` sits in the stream of [`Writer`] lines (it may start and
/// end mid-line): checks it is a contiguous piece of that stream and
/// returns its offset there.
fn offset_in_stream(part: &[u8]) -> usize {
    let at = if part.starts_with(b"line ") && part.len() >= 13 {
        0
    } else {
        part.iter().position(|&b| b == b'\n').expect("a whole line") + 1
    };
    let num: usize = std::str::from_utf8(&part[at + 5..at + 13])
        .unwrap()
        .parse()
        .unwrap();
    let start = num * LINE - at;
    let want = lines(num + part.len() / LINE + 2);
    assert!(
        want[start..start + part.len()] == *part,
        "not a contiguous piece of the stream"
    );
    start
}

fn lines(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("line {i:08}\n").into_bytes())
        .collect()
}

#[test]
fn output_goes_to_every_member_input_comes_from_any() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    let (pa, pb) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    reg.add("a", unix_server(&pa)).unwrap();
    reg.add("b", unix_server(&pb)).unwrap();
    reg.add("h", hub(&["a", "b"])).unwrap();
    let (fe, seen) = attach(&reg, "h");
    let q = reg.query();
    assert_eq!(q.last().unwrap().filename, "hub", "QEMU 10's filename");
    // Closed until a member opens (no member has a client yet).
    assert_eq!(count(&seen, ChardevEvent::Opened), 0);
    let mut ca = connect_unix(&pa);
    wait_until("OPENED on the first member's client", || {
        count(&seen, ChardevEvent::Opened) == 1
    });
    let mut cb = connect_unix(&pb);
    let (da, db) = (
        Drain::new(ca.try_clone().unwrap()),
        Drain::new(cb.try_clone().unwrap()),
    );
    wait_until("b's client seen", || connected(&reg, "b"));
    fe.write_all(b"to both\n").unwrap();
    wait_until("both members got it", || {
        da.snapshot() == b"to both\n" && db.snapshot() == b"to both\n"
    });
    ca.write_all(b"from a ").unwrap();
    wait_until("a's input", || input(&seen) == b"from a ");
    cb.write_all(b"from b").unwrap();
    wait_until("b's input", || input(&seen) == b"from a from b");
    assert_eq!(count(&seen, ChardevEvent::Opened), 1, "one OPENED");
    ca.shutdown(std::net::Shutdown::Both).unwrap();
    drop((ca, da));
    wait_until("a's client gone", || !connected(&reg, "a"));
    assert_eq!(count(&seen, ChardevEvent::Closed), 0, "b is still open");
    cb.shutdown(std::net::Shutdown::Both).unwrap();
    drop((cb, db));
    wait_until("CLOSED on the last member's close", || {
        count(&seen, ChardevEvent::Closed) == 1
    });
    reg.shutdown();
}

/// The `-chardev` form: `chardevs.N` up to the first gap, at most four
/// keys (a fifth is an unknown key, as in QEMU 10).
#[test]
fn command_line_form() {
    let o = parse_chardev("hub,id=h,chardevs.0=a,chardevs.1=b,logfile=/l").unwrap();
    let ChardevBackend::Hub(h) = &o.backend else {
        panic!("{o:?}")
    };
    assert_eq!(h.chardevs, ["a", "b"]);
    assert_eq!(h.common.logfile.as_deref(), Some("/l"));
    let gap = parse_chardev("hub,id=h,chardevs.0=a,chardevs.2=c").unwrap();
    let ChardevBackend::Hub(gap) = gap.backend else {
        panic!("not a hub")
    };
    assert_eq!(gap.chardevs, ["a"], "QEMU stops at the first gap");
    assert_eq!(
        parse_chardev("hub,id=h,chardevs.4=e")
            .unwrap_err()
            .to_string(),
        "Invalid parameter 'chardevs.4'"
    );
    let json = serde_json::to_string(&o.backend).unwrap();
    assert!(
        json.starts_with(r#"{"type":"hub","data":{"logfile":"/l""#)
            && json.contains(r#""chardevs":["a","b"]"#),
        "{json}"
    );
}

/// QEMU 10's checks, in its order and words; a refused hub leaves its
/// would-be members free and nothing else changed.
#[test]
fn bad_hubs_are_refused_with_qemus_texts() {
    let reg = Registry::new().unwrap();
    for id in ["a", "b", "c", "d", "e"] {
        reg.add(id, ringbuf_spec(64)).unwrap();
    }
    reg.add_options(&ChardevOptions {
        id: "m".into(),
        backend: ringbuf_spec(64),
        mux: true,
    })
    .unwrap();
    reg.add("h", hub(&["a"])).unwrap();
    let used = reg.attach("e").unwrap();
    let e = |members: &[&str]| reg.add("x", hub(members)).unwrap_err().to_string();
    assert_eq!(e(&[]), "hub: 'chardevs' list is not defined");
    assert_eq!(
        e(&["b", "nope"]),
        "hub: chardev can't be found by id 'nope'"
    );
    let stacked = |id: &str| {
        format!(
            "hub: multiplexers and hub devices can't be stacked, check chardev '{id}', \
             chardev should not be a hub device or have 'mux=on' enabled"
        )
    };
    assert_eq!(e(&["b", "m"]), stacked("m"), "a mux=on chardev");
    assert_eq!(e(&["h"]), stacked("h"), "a hub");
    assert_eq!(e(&["b", "e"]), "Device 'e' is in use");
    assert_eq!(e(&["b", "a"]), "Device 'a' is in use", "a's hub has it");
    assert_eq!(e(&["b", "b"]), "Device 'b' is in use", "twice");
    assert_eq!(
        e(&["b", "c", "d", "m-base", "a"]),
        "Device 'm-base' is in use",
        "checks in list order"
    );
    reg.add("f", ringbuf_spec(64)).unwrap();
    reg.add("g", ringbuf_spec(64)).unwrap();
    assert_eq!(
        e(&["b", "c", "d", "f", "g"]),
        "hub: too many uses of chardevs 'x' (maximum is 4)"
    );
    // A hub cannot list itself: it does not exist yet when added, and is a
    // hub when changed.
    assert_eq!(
        reg.add("self", hub(&["self"])).unwrap_err().to_string(),
        "hub: chardev can't be found by id 'self'"
    );
    assert_eq!(
        reg.change("h", hub(&["h"])).unwrap_err().to_string(),
        stacked("h")
    );
    // A member cannot become a hub (or a mux) under its hub.
    assert_eq!(
        reg.change("a", hub(&["b"])).unwrap_err().to_string(),
        stacked("a")
    );
    // A member cannot be removed while its hub holds it.
    assert_eq!(
        reg.remove("a").unwrap_err().to_string(),
        "Chardev 'a' is busy"
    );
    // Nothing was disturbed: every refused hub let its members go.
    assert!(!reg.contains("x") && !reg.contains("self"));
    for id in ["b", "c", "d", "f", "g"] {
        let fe = reg.attach(id).unwrap_or_else(|e| panic!("{id} held: {e}"));
        fe.detach();
    }
    used.detach();
    let (h, _) = attach(&reg, "h");
    h.write_all(b"still a hub").unwrap();
    wait_until("h still feeds a", || {
        reg.ringbuf_read("a", 100).unwrap() == b"still a hub"
    });
    reg.shutdown();
}

/// A member changed under a running hub, 200 times: every line reaches
/// it once and in order, joined across its backends in change order, and
/// the other member gets the whole stream.
#[test]
fn members_change_under_a_running_hub() {
    const CHANGES: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let path = |i: usize| dir.path().join(format!("a{i:04}"));
    let other = dir.path().join("b");
    let reg = Registry::with_out_capacity(4096).unwrap();
    reg.add("a", file_spec(&path(0))).unwrap();
    reg.add("b", file_spec(&other)).unwrap();
    reg.add("h", hub(&["a", "b"])).unwrap();
    let (fe, _) = attach(&reg, "h");
    let w = Writer::start(&fe, 2000);
    for i in 1..=CHANGES {
        reg.change("a", file_spec(&path(i))).unwrap();
    }
    let n = w.finish();
    let want = lines(n);
    wait_until("the member has it all", || read(&other).len() == want.len());
    wait_until("a has it all", || {
        (0..=CHANGES).map(|i| read(&path(i)).len()).sum::<usize>() == want.len()
    });
    let joined: Vec<u8> = (0..=CHANGES).flat_map(|i| read(&path(i))).collect();
    assert!(joined == want, "a, joined in change order");
    assert!(read(&other) == want, "b");
    assert_eq!(reg.stats("a").unwrap().changes, CHANGES as u64);
    reg.shutdown();
}

/// The hub changed into another hub while it runs: the member both name
/// (b) goes on without a gap or a repeat; the one dropped (a) got a prefix
/// and is free again; the one added (c) gets the rest from the change on.
/// A refused change gives the members back. Then into a file: all free.
#[test]
fn the_hub_changes_into_another_hub_and_into_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let reg = Registry::with_out_capacity(4096).unwrap();
    for id in ["a", "b", "c"] {
        reg.add(id, file_spec(&p(id))).unwrap();
    }
    reg.add("h", hub(&["a", "b"])).unwrap();
    let fe = reg.attach("h").unwrap();
    let (r, _) = Recorder::new(true);
    let refuse = r.refuse.clone();
    fe.set_handlers(Box::new(r));
    let w = Writer::start(&fe, 3000);
    wait_until("output flowing", || read(&p("b")).len() > 10_000);
    // Refused: nothing moves.
    *refuse.lock().unwrap() = Some("not now".into());
    assert_eq!(
        reg.change("h", hub(&["b", "c"])).unwrap_err().to_string(),
        "Chardev 'h' change failed"
    );
    *refuse.lock().unwrap() = None;
    assert!(reg.attach("a").is_err() && reg.attach("b").is_err());
    let c_fe = reg.attach("c").unwrap();
    c_fe.detach();
    reg.change("h", hub(&["b", "c"])).unwrap();
    let at_change = read(&p("b")).len();
    wait_until("output flowing on", || {
        read(&p("b")).len() > at_change + 10_000
    });
    let a = reg.attach("a").expect("a is free again");
    a.detach();
    reg.change("h", file_spec(&p("h"))).unwrap();
    wait_until("output to the file", || read(&p("h")).len() > 2 * LINE);
    let n = w.finish();
    let want = lines(n);
    wait_until("h's file has the last line", || {
        read(&p("h")).ends_with(&lines(n)[(n - 1) * LINE..])
    });
    // Each member got a run of lines without gap or repeat: b from the
    // start across the hub-to-hub change, c from that change on, a up to
    // it; the file from the change into it to the end. A member may have
    // been ahead of the others when its hub went: runs may overlap there.
    let (a, b, c, h) = (read(&p("a")), read(&p("b")), read(&p("c")), read(&p("h")));
    assert!(want.starts_with(&a) && !a.is_empty(), "a: from the start");
    assert!(
        want.starts_with(&b),
        "b: from the start, through the change"
    );
    let c_from = offset_in_stream(&c);
    assert!(
        c_from + 4096 >= a.len() && c_from <= a.len(),
        "c: from a's end"
    );
    let h_from = offset_in_stream(&h);
    assert!(
        h_from <= b.len() && h_from + 4096 >= b.len(),
        "h: from b's end"
    );
    assert_eq!(h_from + h.len(), want.len(), "the file to the end");
    for id in ["b", "c"] {
        reg.attach(id).expect("free after the hub went").detach();
    }
    reg.shutdown();
}

/// An open member that does not read holds the hub back (as in QEMU); a
/// closed one does not.
#[test]
fn an_open_member_that_does_not_read_holds_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::with_out_capacity(4096).unwrap();
    let (pa, pb) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    reg.add("a", unix_server(&pa)).unwrap();
    reg.add("b", unix_server(&pb)).unwrap();
    reg.add("h", hub(&["a", "b"])).unwrap();
    let (fe, _) = attach(&reg, "h");
    // Only a has a client: b is closed and does not count.
    let ca = connect_unix(&pa);
    let da = Drain::new(ca.try_clone().unwrap());
    wait_until("a's client", || connected(&reg, "a"));
    let big = vec![b'z'; 1 << 20];
    let w = {
        let fe = fe.clone();
        let big = big.clone();
        std::thread::spawn(move || fe.write_all(&big).unwrap())
    };
    wait_until("a got it all although b is closed", || {
        da.len() == big.len()
    });
    w.join().unwrap();
    wait_until("b dropped its share", || {
        reg.stats("b").unwrap().queued == 0
    });
    // b opens and does not read: the hub stops at b's pace.
    let cb = connect_unix(&pb);
    wait_until("b's client", || connected(&reg, "b"));
    let more = vec![b'y'; 16 << 20];
    let mut sent = 0;
    wait_until("the hub stalled at b", || {
        let n = fe.write(&more[sent..]);
        sent += n;
        let (h, b) = (reg.stats("h").unwrap(), reg.stats("b").unwrap());
        n == 0 && h.queued as usize == 4096 && b.queued > 0
    });
    assert!(sent < more.len());
    // b reads: everything flows.
    let db = Drain::new(cb);
    let rest = more[sent..].to_vec();
    let fe2 = fe.clone();
    std::thread::spawn(move || fe2.write_all(&rest).unwrap())
        .join()
        .unwrap();
    wait_until("b got everything", || db.len() == more.len());
    wait_until("a too", || da.len() == big.len() + more.len());
    reg.shutdown();
}

/// A frontend of the hub that changes member `a` when it reads "swap" (a
/// monitor on a hub would) and answers at once.
struct MemberChanger {
    reg: Registry,
    fe: Arc<Mutex<Option<CharFrontend>>>,
    target: ChardevBackend,
    result: Arc<Mutex<Option<String>>>,
}

impl qchar_chardev::FrontendHandlers for MemberChanger {
    fn can_read(&mut self) -> usize {
        64
    }
    fn read(&mut self, data: &[u8]) {
        if data.starts_with(b"swap") {
            let r = self.reg.change("a", self.target.clone());
            *self.result.lock().unwrap() = Some(format!("{r:?}"));
            if let Some(fe) = self.fe.lock().unwrap().as_ref() {
                assert_eq!(fe.write(b"reply"), 5);
            }
        }
    }
    fn supports_hotswap(&self) -> bool {
        true
    }
}

/// As under a mux: a member changed from inside the hub's frontend waits
/// until that handler returns, and its reply leaves through the member's
/// old backend (and to the other member).
#[test]
fn a_member_changed_from_inside_the_hubs_frontend() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("in"), b"swap").unwrap();
    let reg = Registry::new().unwrap();
    reg.add("a", file_in_spec(&p("old"), &p("in"))).unwrap();
    reg.add("b", file_spec(&p("b"))).unwrap();
    reg.add("h", hub(&["a", "b"])).unwrap();
    let fe = reg.attach("h").unwrap();
    let slot = Arc::new(Mutex::new(Some(fe.clone())));
    let result = Arc::new(Mutex::new(None));
    fe.set_handlers(Box::new(MemberChanger {
        reg: reg.clone(),
        fe: slot.clone(),
        target: file_spec(&p("new")),
        result: result.clone(),
    }));
    wait_until("the change applied", || {
        reg.stats("a").unwrap().changes == 1
    });
    assert_eq!(
        result.lock().unwrap().as_deref(),
        Some("Ok(ChardevReturn { pty: None })")
    );
    fe.write_all(b" later").unwrap();
    wait_until("later output", || read(&p("new")) == b" later");
    assert_eq!(read(&p("old")), b"reply", "through a's old backend");
    wait_until("b has both", || read(&p("b")) == b"reply later");
    slot.lock().unwrap().take();
    reg.shutdown();
}
