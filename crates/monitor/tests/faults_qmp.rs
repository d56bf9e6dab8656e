//! Reliability under faults through QMP (issue 6): `chardev-remove` and
//! `chardev-add` racing `chardev-change` of one id from QMP clients and
//! from other threads at once, and a hundred QMP clients changing the same
//! chardev at the same moment while its frontend writes numbered records.
//! Real unix and loopback TCP sockets; every reply is checked to be exactly
//! one `return` or one of QEMU's errors.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{socket_spec, Client, Harness};
use qchar_chardev::registry::RegistryEvent;
use qchar_chardev::spec::{ChardevBackend, ChardevSocket, InetSocketAddress, SocketAddressLegacy};
use qchar_chardev::{ChardevError, FrontendHandlers};
use qchar_monitor::json::{JsonLimits, JsonStreamer, Value};
use qchar_testkit::{fd_count, one_at_a_time, wait_for, wait_until};

/// Generous bound for anything here; only a hang reaches it.
const TIMEOUT: Duration = Duration::from_secs(60);

fn parse(line: &str) -> Value {
    let mut v = JsonStreamer::new(JsonLimits::default()).feed(line.as_bytes());
    assert_eq!(v.len(), 1, "one JSON value per line: {line}");
    v.remove(0)
        .unwrap_or_else(|e| panic!("bad JSON {line:?}: {e:?}"))
}

/// Sends `cmd` (which carries `"id": id`) and returns its reply, skipping
/// events.
fn call(c: &mut Client, cmd: &str, id: usize) -> Value {
    c.send(cmd.as_bytes());
    loop {
        let line = c.line_str();
        assert!(line.ends_with("\r\n"), "reply cut short: {line:?}");
        let v = parse(&line);
        let d = v.as_dict().expect("an object").clone();
        if d.contains("event") {
            continue;
        }
        assert_eq!(d.get("id"), Some(&Value::Int(id as i64)), "{line}");
        return v;
    }
}

/// `Ok` for a `return`, else the desc of a `GenericError`.
fn outcome(reply: &Value) -> Result<(), String> {
    let d = reply.as_dict().unwrap();
    if d.contains("return") {
        assert!(!d.contains("error"), "{}", reply.to_json_string());
        return Ok(());
    }
    let e = d
        .get("error")
        .and_then(Value::as_dict)
        .unwrap_or_else(|| panic!("neither return nor error: {}", reply.to_json_string()));
    assert_eq!(e.get("class"), Some(&Value::str("GenericError")));
    Err(e.get("desc").and_then(Value::as_string).expect("desc"))
}

/// Proves a client got exactly one reply per command: the next non-event
/// line is the reply to a fresh `query-status`.
fn no_extra_reply(c: &mut Client) {
    const END: usize = 999_999;
    let r = call(
        c,
        &format!("{{\"execute\":\"query-status\",\"id\":{END}}}"),
        END,
    );
    assert!(outcome(&r).is_ok());
}

fn unix_server_json(path: &Path) -> String {
    format!(
        "{{\"type\":\"socket\",\"data\":{{\"addr\":{{\"type\":\"unix\",\"data\":{{\"path\":\"{}\"}}}},\"server\":true,\"wait\":false}}}}",
        path.display()
    )
}

fn tcp_client_json(port: u16) -> String {
    format!(
        "{{\"type\":\"socket\",\"data\":{{\"addr\":{{\"type\":\"inet\",\"data\":{{\"host\":\"127.0.0.1\",\"port\":\"{port}\"}}}},\"server\":false}}}}"
    )
}

fn tcp_client(port: u16) -> ChardevBackend {
    ChardevBackend::Socket(ChardevSocket::new(
        SocketAddressLegacy::Inet(InetSocketAddress {
            host: "127.0.0.1".into(),
            port: port.to_string(),
            ..Default::default()
        }),
        false,
    ))
}

/// `query-chardev` through a client: label to filename.
fn query(c: &mut Client) -> Vec<(String, String)> {
    let r = call(c, "{\"execute\":\"query-chardev\",\"id\":0}", 0);
    let Some(Value::List(l)) = r.as_dict().unwrap().get("return") else {
        panic!("{}", r.to_json_string());
    };
    l.iter()
        .map(|i| {
            let d = i.as_dict().unwrap();
            let s = |k| d.get(k).and_then(Value::as_string).unwrap();
            (s("label"), s("filename"))
        })
        .collect()
}

// ----- chardev-remove / chardev-add racing chardev-change --------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Change,
    Remove,
    Add,
}

/// One call: logical start and end, and on success the state it left
/// (`Some(n)`: backend number n, `None`: no chardev).
#[derive(Debug)]
struct Op {
    kind: OpKind,
    start: u64,
    end: u64,
    ok: Option<Option<usize>>,
}

/// QEMU's error for each call that may lose the race; anything else fails.
fn expected_error(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Change => "Chardev 'r' does not exist",
        OpKind::Remove => "Chardev 'r' not found",
        OpKind::Add => "Chardev with id 'r' already exists",
    }
}

fn op_path(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("op{n:05}.sock"))
}

fn op_number(filename: &str) -> usize {
    let i = filename.rfind("/op").expect("a numbered backend") + 3;
    filename[i..i + 5].parse().unwrap()
}

/// The final state must be what one of the last successful calls left (one
/// that no other success started after), and adds and removes must add up.
fn check_final(ops: &[Op], fin: Option<usize>) {
    let ok: Vec<&Op> = ops.iter().filter(|o| o.ok.is_some()).collect();
    let last_start = ok.iter().map(|o| o.start).max().unwrap();
    let candidates: Vec<Option<usize>> = ok
        .iter()
        .filter(|o| o.end > last_start || o.start == last_start)
        .map(|o| o.ok.unwrap())
        .collect();
    assert!(
        candidates.contains(&fin),
        "final state {fin:?} is none of the last successful calls' {candidates:?}"
    );
    let adds = ok.iter().filter(|o| o.kind == OpKind::Add).count() as i64;
    let removes = ok.iter().filter(|o| o.kind == OpKind::Remove).count() as i64;
    assert_eq!(
        1 + adds - removes,
        i64::from(fin.is_some()),
        "{adds} successful adds and {removes} removes after the first add"
    );
}

#[test]
fn chardev_remove_and_add_race_chardev_change_over_qmp_and_registry() {
    const ROUNDS: usize = 150;
    let _serial = one_at_a_time();
    let mut h = Harness::new();
    let mut paths = Vec::new();
    for i in 0..4 {
        let p = h.qmp_socket(&format!("mon{i}"));
        paths.push(p);
    }
    let ctl_path = h.qmp_socket("ctl");
    let ops_dir = h.path("ops");
    std::fs::create_dir(&ops_dir).unwrap();
    let mut clients: Vec<Client> = paths.iter().map(|p| Client::connect(p)).collect();
    for c in &mut clients {
        c.handshake();
    }
    let mut ctl = Client::connect(&ctl_path);
    ctl.handshake();
    // Warm-up: one of each call, then count.
    let reg = h.reg.clone();
    reg.add("r", socket_spec(&op_path(&ops_dir, 0))).unwrap();
    reg.change("r", socket_spec(&op_path(&ops_dir, 1))).unwrap();
    reg.remove("r").unwrap();
    let before = fd_count();
    reg.add("r", socket_spec(&op_path(&ops_dir, 2))).unwrap();

    let next = Arc::new(AtomicUsize::new(3));
    let clock = Arc::new(AtomicU64::new(0));
    let ops = Arc::new(Mutex::new(Vec::new()));
    let record = {
        let (clock, ops) = (clock.clone(), ops.clone());
        move |kind: OpKind, start: u64, r: Result<Option<usize>, String>| {
            let end = clock.fetch_add(1, Ordering::SeqCst);
            if let Err(e) = &r {
                assert_eq!(e, expected_error(kind), "{kind:?}");
            }
            ops.lock().unwrap().push(Op {
                kind,
                start,
                end,
                ok: r.ok(),
            });
        }
    };
    let mut threads: Vec<JoinHandle<Option<Client>>> = Vec::new();
    // Four QMP clients: two change, two remove and add again.
    for (t, mut c) in clients.into_iter().enumerate() {
        let (next, clock, record, dir) =
            (next.clone(), clock.clone(), record.clone(), ops_dir.clone());
        threads.push(std::thread::spawn(move || {
            let mut id = 0;
            let mut qmp = |kind: OpKind, c: &mut Client| {
                let n = next.fetch_add(1, Ordering::SeqCst);
                id += 1;
                let cmd = match kind {
                    OpKind::Change => format!(
                        "{{\"execute\":\"chardev-change\",\"arguments\":{{\"id\":\"r\",\"backend\":{}}},\"id\":{id}}}",
                        unix_server_json(&op_path(&dir, n))
                    ),
                    OpKind::Add => format!(
                        "{{\"execute\":\"chardev-add\",\"arguments\":{{\"id\":\"r\",\"backend\":{}}},\"id\":{id}}}",
                        unix_server_json(&op_path(&dir, n))
                    ),
                    OpKind::Remove => format!(
                        "{{\"execute\":\"chardev-remove\",\"arguments\":{{\"id\":\"r\"}},\"id\":{id}}}"
                    ),
                };
                let start = clock.fetch_add(1, Ordering::SeqCst);
                let reply = call(c, &cmd, id);
                let r = outcome(&reply).map(|()| (kind != OpKind::Remove).then_some(n));
                if r.is_ok() {
                    assert_eq!(
                        reply.as_dict().unwrap().get("return"),
                        Some(&Value::Dict(Default::default()))
                    );
                }
                record(kind, start, r);
            };
            for _ in 0..ROUNDS {
                if t < 2 {
                    qmp(OpKind::Change, &mut c);
                } else {
                    qmp(OpKind::Remove, &mut c);
                    qmp(OpKind::Add, &mut c);
                }
            }
            no_extra_reply(&mut c);
            // Kept open until the descriptors are counted.
            Some(c)
        }));
    }
    // Two threads on the registry directly, at the same time.
    for t in 0..2 {
        let (next, clock, record, dir, reg) = (
            next.clone(),
            clock.clone(),
            record.clone(),
            ops_dir.clone(),
            reg.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let direct = |kind: OpKind| {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let start = clock.fetch_add(1, Ordering::SeqCst);
                let spec = socket_spec(&op_path(&dir, n));
                let r: Result<Option<usize>, ChardevError> = match kind {
                    OpKind::Change => reg.change("r", spec).map(|_| Some(n)),
                    OpKind::Add => reg.add("r", spec).map(|_| Some(n)),
                    OpKind::Remove => reg.remove("r").map(|_| None),
                };
                record(kind, start, r.map_err(|e| e.to_string()));
            };
            for _ in 0..ROUNDS {
                if t == 0 {
                    direct(OpKind::Change);
                } else {
                    direct(OpKind::Remove);
                    direct(OpKind::Add);
                }
            }
            None
        }));
    }
    let clients: Vec<Client> = threads
        .into_iter()
        .filter_map(|t| t.join().expect("racing thread"))
        .collect();
    let ops = std::mem::take(&mut *ops.lock().unwrap());
    let won = |k| ops.iter().filter(|o| o.kind == k && o.ok.is_some()).count();
    assert!(
        won(OpKind::Change) > 0 && won(OpKind::Remove) > 0 && won(OpKind::Add) > 0,
        "the race never happened"
    );
    let fin = query(&mut ctl)
        .into_iter()
        .find(|(label, _)| label == "r")
        .map(|(_, f)| f);
    check_final(&ops, fin.as_deref().map(op_number));
    if let Some(f) = &fin {
        let n = op_number(f);
        assert_eq!(
            *f,
            format!(
                "disconnected:unix:{},server=on",
                op_path(&ops_dir, n).display()
            )
        );
        // Live: its socket takes a client.
        drop(std::os::unix::net::UnixStream::connect(op_path(&ops_dir, n)).unwrap());
        let r = call(
            &mut ctl,
            "{\"execute\":\"chardev-remove\",\"arguments\":{\"id\":\"r\"},\"id\":1}",
            1,
        );
        assert_eq!(outcome(&r), Ok(()));
    }
    assert!(query(&mut ctl).iter().all(|(label, _)| label != "r"));
    // Every backend the race opened is closed and its socket file gone.
    wait_until("descriptors back", || fd_count() <= before);
    assert_eq!(fd_count(), before);
    let left: Vec<_> = std::fs::read_dir(&ops_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "socket files left behind: {left:?}");
    drop(clients);
}

// ----- a hundred clients change one chardev at the same moment ------------

fn record(i: usize) -> Vec<u8> {
    format!("rec {i:08}\n").into_bytes()
}

/// A hotswap-capable frontend that only writes.
struct Writes;

impl FrontendHandlers for Writes {
    fn can_read(&mut self) -> usize {
        0
    }
    fn read(&mut self, _data: &[u8]) {}
    fn supports_hotswap(&self) -> bool {
        true
    }
}

/// A loopback listener that takes one connection (if one comes before
/// `done`) and reads it to its end.
struct Target {
    port: u16,
    join: JoinHandle<Vec<u8>>,
}

impl Target {
    fn listen(done: &Arc<AtomicBool>) -> Target {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let done = done.clone();
        let join = std::thread::spawn(move || {
            let s = wait_for("the target used or the run done", || match l.accept() {
                Ok((s, _)) => Some(Some(s)),
                Err(_) if done.load(Ordering::SeqCst) => Some(None),
                Err(_) => None,
            });
            let Some(mut s) = s else {
                return Vec::new();
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).expect("target read");
            got
        });
        Target { port, join }
    }
}

#[test]
fn hundred_qmp_clients_change_one_chardev_at_the_same_moment() {
    const CLIENTS: usize = 100;
    let _serial = one_at_a_time();
    let mut h = Harness::new();
    let mut paths = Vec::new();
    for i in 0..CLIENTS {
        let p = h.qmp_socket(&format!("mon{i}"));
        paths.push(p);
    }
    let ctl_path = h.qmp_socket("ctl");
    // Target 0 is where the chardev starts; client i changes it to i + 1.
    let done = Arc::new(AtomicBool::new(false));
    let targets: Vec<Target> = (0..=CLIENTS).map(|_| Target::listen(&done)).collect();
    let ports: Vec<u16> = targets.iter().map(|t| t.port).collect();
    let changed = Arc::new(Mutex::new(Vec::new()));
    let ch = changed.clone();
    h.reg.subscribe(move |e| {
        if let RegistryEvent::Changed { id, filename } = e {
            if id == "t" {
                ch.lock().unwrap().push(filename.clone());
            }
        }
    });
    h.reg.add("t", tcp_client(ports[0])).unwrap();
    let fe = h.reg.attach("t").unwrap();
    fe.set_handlers(Box::new(Writes));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (fe, stop) = (fe.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                fe.write_all(&record(i)).expect("write_all");
                i += 1;
            }
            i
        })
    };
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<JoinHandle<Result<(), String>>> = paths
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let (barrier, port) = (barrier.clone(), ports[i + 1]);
            std::thread::spawn(move || {
                let mut c = Client::connect(&p);
                c.handshake();
                let cmd = format!(
                    "{{\"execute\":\"chardev-change\",\"arguments\":{{\"id\":\"t\",\"backend\":{}}},\"id\":{i}}}",
                    tcp_client_json(port)
                );
                barrier.wait();
                let r = outcome(&call(&mut c, &cmd, i));
                no_extra_reply(&mut c);
                r
            })
        })
        .collect();
    let results: Vec<Result<(), String>> = clients
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();
    let total = {
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap()
    };
    let won: Vec<usize> = (0..CLIENTS).filter(|&i| results[i].is_ok()).collect();
    for (i, r) in results.iter().enumerate() {
        if let Err(e) = r {
            // Only QEMU's message for a failed change can come back.
            assert_eq!(e, "Chardev 't' change failed", "client {i}");
        }
    }
    assert!(!won.is_empty(), "no change succeeded");
    wait_until("output drained", || h.reg.stats("t").unwrap().queued == 0);
    // The order the changes took effect, as target numbers.
    let target_of = |f: &str| -> usize {
        let port: u16 = f
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("filename {f}"));
        ports
            .iter()
            .position(|&p| p == port)
            .expect("a target port")
    };
    let order: Vec<usize> = changed
        .lock()
        .unwrap()
        .iter()
        .map(|f| target_of(f))
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        won.iter().map(|i| i + 1).collect::<Vec<_>>(),
        "one change applied per successful reply"
    );
    let mut ctl = Client::connect(&ctl_path);
    ctl.handshake();
    let fin = query(&mut ctl)
        .into_iter()
        .find(|(label, _)| label == "t")
        .map(|(_, f)| f)
        .expect("t is there");
    assert_eq!(target_of(&fin), *order.last().unwrap());
    assert!(
        fin.starts_with("tcp:127.0.0.1:")
            && fin.ends_with(&format!(" <-> 127.0.0.1:{}", ports[*order.last().unwrap()])),
        "{fin}"
    );
    // Close the last connection so its reader sees the end.
    h.reg
        .change("t", ChardevBackend::Null(Default::default()))
        .unwrap();
    done.store(true, Ordering::SeqCst);
    let mut got: Vec<Vec<u8>> = targets
        .into_iter()
        .map(|t| t.join.join().unwrap())
        .collect();
    let mut all = std::mem::take(&mut got[0]);
    for &t in &order {
        all.extend(std::mem::take(&mut got[t]));
    }
    for (t, rest) in got.iter().enumerate() {
        assert!(rest.is_empty(), "target {t} got data but was never current");
    }
    let want: Vec<u8> = (0..total).flat_map(record).collect();
    assert!(total > 0);
    assert!(
        all == want,
        "records lost, repeated or reordered across the targets ({} bytes, want {})",
        all.len(),
        want.len()
    );
    fe.detach();
}
