//! Reliability under faults (issue 6): a peer that leaves mid-stream, a
//! server that comes and goes under a reconnecting client, `remove`/`add`
//! racing `change` on one id, and changes to backends that cannot open while
//! data flows. Each test asserts the exact outcome: which records arrive
//! (contiguous, in order, none twice), which events pair up, which errors
//! (QEMU's) come back, and that the process has its descriptors back.
//!
//! Descriptor counts are per process, so every test here holds
//! `one_at_a_time` for its whole run.

#[path = "support/net.rs"]
mod net;
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use net::*;
use qchar_chardev::spec::{ChardevBackend, ChardevCommon, ChardevHostdev};
use qchar_chardev::{
    CharFrontend, ChardevError, ChardevEvent, Registry, RegistryEvent, DEFAULT_OUT_CAPACITY,
};
use qchar_testkit::{
    connect_unix, fd_count, mkfifo, one_at_a_time, wait_for, wait_until, LogWatch,
};
use support::{count, file_spec, Recorder, Seen};

// ----- numbered records -----------------------------------------------------

const TAG: &str = "rec";
/// Length of one record, `rec NNNNNNNN\n`.
const REC: usize = 13;

fn record(i: usize) -> Vec<u8> {
    numbered(TAG, i, 1)
}

/// The first `len` bytes of the record stream 0, 1, 2...
fn stream_prefix(len: usize) -> Vec<u8> {
    let mut v = numbered(TAG, 0, len / REC + 1);
    v.truncate(len);
    v
}

fn seq_of(line: &[u8]) -> Option<usize> {
    let digits = std::str::from_utf8(line).ok()?.strip_prefix("rec ")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Checks that `got` is consecutive records ending with a complete one, only
/// the first possibly cut at its front (a peer that joined mid-record).
/// Returns the first and last complete sequence numbers.
fn contiguous(got: &[u8]) -> (usize, usize) {
    assert!(got.ends_with(b"\n"), "the stream ends mid-record");
    let lines: Vec<&[u8]> = got[..got.len() - 1].split(|&b| b == b'\n').collect();
    let (head, rest) = lines.split_first().unwrap();
    let Some(&second) = rest.first() else {
        let s = seq_of(head).expect("a single record, complete");
        return (s, s);
    };
    let torn = |l: &[u8]| panic!("torn record {:?}", String::from_utf8_lossy(l));
    let from = seq_of(second).unwrap_or_else(|| torn(second));
    let mut next = from;
    for l in rest {
        let s = seq_of(l).unwrap_or_else(|| torn(l));
        assert_eq!(s, next, "record out of order, repeated or missing");
        next += 1;
    }
    if from > 0 && seq_of(head) == Some(from - 1) {
        return (from - 1, next - 1);
    }
    let mut tail = head.to_vec();
    tail.push(b'\n');
    assert!(
        from > 0 && record(from - 1).ends_with(&tail),
        "the first bytes {:?} are not the end of record {}",
        String::from_utf8_lossy(head),
        from.wrapping_sub(1)
    );
    (from, next - 1)
}

/// A frontend thread writing records 0, 1, 2... flat out with `write_all`
/// until `limit` or until stopped.
struct Writer {
    written: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    join: JoinHandle<usize>,
}

impl Writer {
    fn start(fe: &CharFrontend, limit: usize) -> Writer {
        let written = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (fe, w, s) = (fe.clone(), written.clone(), stop.clone());
        let join = std::thread::spawn(move || {
            let mut i = 0;
            while i < limit && !s.load(Ordering::Relaxed) {
                fe.write_all(&record(i)).expect("write_all");
                i += 1;
                w.store(i, Ordering::Release);
            }
            i
        });
        Writer {
            written,
            stop,
            join,
        }
    }

    /// Records queued so far.
    fn written(&self) -> usize {
        self.written.load(Ordering::Acquire)
    }

    /// Stops the writer; returns how many records it queued.
    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.join.join().expect("writer thread")
    }

    /// Waits for the writer to reach its limit.
    fn finish(self) -> usize {
        self.join.join().expect("writer thread")
    }
}

// ----- server chardevs and their clients ------------------------------------

#[derive(Clone, Copy, Debug)]
enum Kind {
    Unix,
    Tcp,
}

enum Endpoint {
    Unix(PathBuf),
    Tcp(u16),
}

/// A client of a server chardev, either family.
enum Peer {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Read for Peer {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Peer::Unix(s) => s.read(buf),
            Peer::Tcp(s) => s.read(buf),
        }
    }
}

impl Peer {
    fn try_clone(&self) -> Peer {
        match self {
            Peer::Unix(s) => Peer::Unix(s.try_clone().unwrap()),
            Peer::Tcp(s) => Peer::Tcp(s.try_clone().unwrap()),
        }
    }

    /// Ends the connection for every clone (a `Drain` sees end of file).
    fn shutdown(&self) {
        let _ = match self {
            Peer::Unix(s) => s.shutdown(Shutdown::Both),
            Peer::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Endpoint {
    fn connect(&self) -> Peer {
        match self {
            Endpoint::Unix(p) => {
                let s = connect_unix(p);
                bounded_unix(&s);
                Peer::Unix(s)
            }
            Endpoint::Tcp(port) => {
                let s = connect_tcp(*port);
                bounded_tcp(&s);
                Peer::Tcp(s)
            }
        }
    }
}

/// Adds server chardev `id` (with `backlog` bytes kept for the next client).
fn add_server(reg: &Registry, id: &str, kind: Kind, dir: &Path, backlog: Option<u64>) -> Endpoint {
    let path = dir.join(format!("{id}.sock"));
    let spec = match kind {
        Kind::Unix => unix_server(&path),
        Kind::Tcp => tcp_server(0),
    };
    let spec = match backlog {
        Some(n) => with_backlog(spec, n),
        None => spec,
    };
    reg.add(id, spec).unwrap();
    match kind {
        Kind::Unix => Endpoint::Unix(path),
        Kind::Tcp => Endpoint::Tcp(server_port(reg, id)),
    }
}

fn attach(reg: &Registry, id: &str) -> (CharFrontend, Arc<Mutex<Seen>>) {
    let fe = reg.attach(id).unwrap();
    let (r, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    (fe, seen)
}

/// One client in and out first, so lazily created descriptors of the
/// runtime exist before counting.
fn warm_up(ep: &Endpoint, seen: &Arc<Mutex<Seen>>) {
    drop(ep.connect());
    wait_until("warm-up client gone", || {
        count(seen, ChardevEvent::Closed) == 1
    });
}

fn descriptors_back(before: usize) {
    wait_until("descriptors back", || fd_count() <= before);
    assert_eq!(fd_count(), before);
}

fn ends_with(d: &Drain, tail: &[u8]) -> bool {
    d.got.lock().unwrap().ends_with(tail)
}

// ----- 1. a peer that disconnects mid-stream ---------------------------------

/// What the first client reads before it leaves.
const PART: usize = 100_000;

/// No backlog: output while nobody is connected is dropped, as QEMU; the
/// second client gets an unbroken run of records up to the last one.
fn peer_leaves_mid_stream(kind: Kind) {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    let ep = add_server(&reg, "s", kind, dir.path(), None);
    let (fe, seen) = attach(&reg, "s");
    warm_up(&ep, &seen);
    let before = fd_count();

    let mut c1 = ep.connect();
    wait_until("first client", || count(&seen, ChardevEvent::Opened) == 2);
    let w = Writer::start(&fe, usize::MAX);
    assert_eq!(read_n(&mut c1, PART), stream_prefix(PART));
    // Gone with output unread and more on the way: a reset over TCP,
    // EPIPE over unix.
    drop(c1);
    wait_until("first client gone", || {
        count(&seen, ChardevEvent::Closed) == 2
    });
    // Nobody connected: output is dropped, so the writer is not held back.
    let at_close = w.written();
    wait_until("the writer runs on", || w.written() > at_close + 100_000);
    let before_c2 = w.written();
    let c2 = ep.connect();
    let closer = c2.try_clone();
    let drain = Drain::new(c2);
    wait_until("second client", || count(&seen, ChardevEvent::Opened) == 3);
    wait_until("second client gets data", || drain.len() >= PART);
    let total = w.stop();
    wait_until("the last record", || ends_with(&drain, &record(total - 1)));
    closer.shutdown();
    let (first, last) = contiguous(&drain.finish());
    assert_eq!(last, total - 1);
    // At most a queue's worth of what was written before the second client
    // came reaches it; the rest was dropped while nobody was there.
    let queued = DEFAULT_OUT_CAPACITY / REC + 2;
    assert!(
        first + queued >= before_c2,
        "output written with no client connected was kept: first record {first}, \
         {before_c2} written before the client came"
    );
    wait_until("second client gone", || {
        count(&seen, ChardevEvent::Closed) == 3
    });
    assert_eq!(reg.stats("s").unwrap().bytes_lost, 0);
    drop(closer);
    descriptors_back(before);
    reg.shutdown();
}

/// With `backlog`: everything written after the first client left reaches
/// the second one (the backlog is larger than the whole run).
fn peer_leaves_mid_stream_backlog_keeps_the_rest(kind: Kind) {
    const N: usize = 300_000; // 3.9 MB
    const CAP: u64 = 16 << 20;
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    let ep = add_server(&reg, "b", kind, dir.path(), Some(CAP));
    let (fe, seen) = attach(&reg, "b");
    warm_up(&ep, &seen);
    let before = fd_count();

    let mut c1 = ep.connect();
    wait_until("first client", || count(&seen, ChardevEvent::Opened) == 2);
    let w = Writer::start(&fe, N);
    assert_eq!(read_n(&mut c1, PART), stream_prefix(PART));
    drop(c1);
    wait_until("first client gone", || {
        count(&seen, ChardevEvent::Closed) == 2
    });
    let at_close = w.written();
    assert!(at_close < N, "the first client left before the end");
    assert_eq!(w.finish(), N);
    wait_until("all kept in the backlog", || {
        reg.stats("b").unwrap().queued == 0
    });
    let c2 = ep.connect();
    let closer = c2.try_clone();
    let drain = Drain::new(c2);
    wait_until("second client", || count(&seen, ChardevEvent::Opened) == 3);
    wait_until("the last record", || ends_with(&drain, &record(N - 1)));
    closer.shutdown();
    let (first, last) = contiguous(&drain.finish());
    assert_eq!(last, N - 1);
    // Records after `at_close` were queued once the close was seen; record
    // `at_close` itself may have been queued just before (the counter moves
    // after `write_all` returns) and gone into the dead connection.
    assert!(
        first <= at_close + 1,
        "records written after the first client left were lost: the second \
         client starts at {first}, {at_close} had been written at the close"
    );
    wait_until("second client gone", || {
        count(&seen, ChardevEvent::Closed) == 3
    });
    drop(closer);
    descriptors_back(before);
    reg.shutdown();
}

#[test]
fn unix_peer_leaves_mid_stream_next_client_gets_contiguous_records() {
    peer_leaves_mid_stream(Kind::Unix);
}

#[test]
fn tcp_peer_leaves_mid_stream_next_client_gets_contiguous_records() {
    peer_leaves_mid_stream(Kind::Tcp);
}

#[test]
fn unix_peer_leaves_mid_stream_backlog_loses_nothing_after() {
    peer_leaves_mid_stream_backlog_keeps_the_rest(Kind::Unix);
}

#[test]
fn tcp_peer_leaves_mid_stream_backlog_loses_nothing_after() {
    peer_leaves_mid_stream_backlog_keeps_the_rest(Kind::Tcp);
}

// ----- 3. a server that comes and goes under a reconnecting client ----------

/// A free loopback port below the ephemeral range: a client retrying
/// against a port nobody listens on can otherwise, once in a while, connect
/// to itself (TCP simultaneous open when its own ephemeral port is the
/// target).
fn quiet_port() -> u16 {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let low = low.max(2048);
    let start = 1024 + (std::process::id() % u32::from(low - 1024)) as u16;
    (start..low)
        .chain(1024..start)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port below the ephemeral range")
}

/// The test's server: listens, accepts one client (bounded), and goes.
enum TestServer {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
}

impl TestServer {
    fn listen(kind: Kind, path: &Path, port: u16) -> TestServer {
        let s = match kind {
            Kind::Unix => TestServer::Unix(UnixListener::bind(path).unwrap(), path.into()),
            Kind::Tcp => TestServer::Tcp(TcpListener::bind(("127.0.0.1", port)).unwrap()),
        };
        match &s {
            TestServer::Unix(l, _) => l.set_nonblocking(true).unwrap(),
            TestServer::Tcp(l) => l.set_nonblocking(true).unwrap(),
        }
        s
    }

    fn accept(&self) -> Box<dyn ReadWrite> {
        wait_for("the chardev to reconnect", || {
            let r: std::io::Result<Box<dyn ReadWrite>> = match self {
                TestServer::Unix(l, _) => l.accept().map(|(s, _)| {
                    s.set_nonblocking(false).unwrap();
                    bounded_unix(&s);
                    Box::new(s) as Box<dyn ReadWrite>
                }),
                TestServer::Tcp(l) => l.accept().map(|(s, _)| {
                    s.set_nonblocking(false).unwrap();
                    bounded_tcp(&s);
                    Box::new(s) as Box<dyn ReadWrite>
                }),
            };
            match r {
                Ok(s) => Some(s),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                Err(e) => panic!("accept: {e}"),
            }
        })
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let TestServer::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

fn reconnecting_client_follows_a_server_that_comes_and_goes(kind: Kind) {
    const ROUNDS: usize = 5;
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("srv.sock");
    let port = quiet_port();
    let reg = Registry::new().unwrap();
    // Counted before the chardev exists: its retries hold a socket now and
    // then, so the comparison is made after it is removed.
    let before = fd_count();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    reg.subscribe(move |e| match e {
        RegistryEvent::Opened(id) | RegistryEvent::Closed(id) if id == "c" => {
            ev.lock().unwrap().push(e.clone())
        }
        _ => {}
    });
    let addr = match kind {
        Kind::Unix => unix_addr(&path),
        Kind::Tcp => inet_addr("127.0.0.1", port),
    };
    let mut spec = socket(addr, false);
    spec.reconnect_ms = Some(20);
    // What the chardev says of each refused attempt (the first as an
    // error, the rest at debug level).
    let refused = LogWatch::new("Unable to connect character device c: ");
    reg.add("c", ChardevBackend::Socket(spec)).unwrap();
    let disconnected = filename(&reg, "c");
    assert!(disconnected.starts_with("disconnected:"), "{disconnected}");
    let (fe, seen) = attach(&reg, "c");
    let mut upstream = Vec::new();
    for round in 0..ROUNDS {
        let server = TestServer::listen(kind, &path, port);
        let mut s = server.accept();
        wait_until("reconnected", || {
            count(&seen, ChardevEvent::Opened) == round + 1
        });
        assert_ne!(filename(&reg, "c"), disconnected);
        // Data written while connected arrives, and nothing written while
        // the server was away (dropped, as QEMU) comes before it.
        let down = format!("round {round}\n");
        fe.write_all(down.as_bytes()).unwrap();
        assert_eq!(read_n(&mut s, down.len()), down.as_bytes());
        let up = format!("up {round}\n");
        s.write_all(up.as_bytes()).unwrap();
        upstream.extend_from_slice(up.as_bytes());
        wait_until("input", || seen.lock().unwrap().input == upstream);
        // The server goes: the listener first, so no retry can land in its
        // accept queue, then the connection.
        drop(server);
        drop(s);
        wait_until("closed", || count(&seen, ChardevEvent::Closed) == round + 1);
        assert_eq!(filename(&reg, "c"), disconnected);
        fe.write_all(b"while away\n").unwrap();
        wait_until("dropped", || reg.stats("c").unwrap().queued == 0);
        // A few connection attempts are refused, and open nothing.
        let before = refused.count();
        wait_until("three refused attempts", || refused.count() >= before + 3);
        assert_eq!(count(&seen, ChardevEvent::Opened), round + 1);
    }
    let pairs: Vec<ChardevEvent> = [ChardevEvent::Opened, ChardevEvent::Closed].repeat(ROUNDS);
    assert_eq!(seen.lock().unwrap().events, pairs);
    let pairs: Vec<RegistryEvent> = (0..ROUNDS)
        .flat_map(|_| {
            [
                RegistryEvent::Opened("c".into()),
                RegistryEvent::Closed("c".into()),
            ]
        })
        .collect();
    assert_eq!(*events.lock().unwrap(), pairs);
    fe.detach();
    reg.remove("c").unwrap();
    descriptors_back(before);
    reg.shutdown();
}

#[test]
fn unix_reconnecting_client_follows_a_server_that_comes_and_goes() {
    reconnecting_client_follows_a_server_that_comes_and_goes(Kind::Unix);
}

#[test]
fn tcp_reconnecting_client_follows_a_server_that_comes_and_goes() {
    reconnecting_client_follows_a_server_that_comes_and_goes(Kind::Tcp);
}

// ----- 4. remove and add racing change on one id -----------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Change,
    Remove,
    Add,
}

/// One call as the racing threads saw it: logical start and end times, and
/// on success the state it left (`Some(n)`: backend number n, `None`: gone).
#[derive(Debug)]
struct Op {
    kind: OpKind,
    start: u64,
    end: u64,
    ok: Option<Option<usize>>,
}

/// A unix server spec whose `query-chardev` filename names it: `opNNNNN`.
fn numbered_server(dir: &Path, n: usize) -> ChardevBackend {
    unix_server(&dir.join(format!("op{n:05}.sock")))
}

fn op_number(filename: &str) -> usize {
    let i = filename.rfind("/op").expect("a numbered backend") + 3;
    filename[i..i + 5].parse().unwrap()
}

fn check_error(kind: OpKind, e: &ChardevError) {
    let want = match (kind, e) {
        (OpKind::Change, ChardevError::DoesNotExist(id)) if id == "r" => {
            "Chardev 'r' does not exist"
        }
        (OpKind::Remove, ChardevError::NotFound(id)) if id == "r" => "Chardev 'r' not found",
        (OpKind::Add, ChardevError::AlreadyExists(id)) if id == "r" => {
            "Chardev with id 'r' already exists"
        }
        _ => panic!("{kind:?}: unexpected error {e:?}"),
    };
    assert_eq!(e.to_string(), want);
}

/// The final state must be what one of the last successful calls left: a
/// success that no other success started after.
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
    // Each add makes one chardev and each remove ends one: never more
    // removes than chardevs, and what is left is what the count says.
    let adds = ok.iter().filter(|o| o.kind == OpKind::Add).count();
    let removes = ok.iter().filter(|o| o.kind == OpKind::Remove).count();
    assert_eq!(
        1 + adds as i64 - removes as i64,
        i64::from(fin.is_some()),
        "{adds} successful adds and {removes} removes after the first add"
    );
}

#[test]
fn remove_and_add_race_change_of_one_id() {
    const ROUNDS: usize = 300;
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let reg = Registry::new().unwrap();
    // Warm-up: one of each call.
    reg.add("r", numbered_server(&d, 0)).unwrap();
    reg.change("r", numbered_server(&d, 1)).unwrap();
    reg.remove("r").unwrap();
    let before = fd_count();
    reg.add("r", numbered_server(&d, 2)).unwrap();
    let next = Arc::new(AtomicUsize::new(3));
    let clock = Arc::new(AtomicU64::new(0));
    let ops = Arc::new(Mutex::new(Vec::new()));
    let call = {
        let (reg, d, next, clock, ops) = (reg.clone(), d.clone(), next, clock, ops.clone());
        move |kind: OpKind| {
            let n = next.fetch_add(1, Ordering::SeqCst);
            let start = clock.fetch_add(1, Ordering::SeqCst);
            let r = match kind {
                OpKind::Change => reg.change("r", numbered_server(&d, n)).map(|_| Some(n)),
                OpKind::Add => reg.add("r", numbered_server(&d, n)).map(|_| Some(n)),
                OpKind::Remove => reg.remove("r").map(|_| None),
            };
            let end = clock.fetch_add(1, Ordering::SeqCst);
            if let Err(e) = &r {
                check_error(kind, e);
            }
            ops.lock().unwrap().push(Op {
                kind,
                start,
                end,
                ok: r.ok(),
            });
        }
    };
    // Changes ended, and changing threads still at work.
    let changes_done = Arc::new(AtomicUsize::new(0));
    let changers = Arc::new(AtomicUsize::new(2));
    let mut threads = Vec::new();
    for t in 0..4 {
        let call = call.clone();
        let (changes_done, changers) = (changes_done.clone(), changers.clone());
        threads.push(std::thread::spawn(move || {
            if t < 2 {
                for _ in 0..ROUNDS {
                    call(OpKind::Change);
                    changes_done.fetch_add(1, Ordering::SeqCst);
                }
                changers.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            for _ in 0..ROUNDS {
                call(OpKind::Remove);
                call(OpKind::Add);
                // A change takes longer than a remove and an add (it opens
                // a socket first): leave it windows to land in. The next
                // remove waits until a change has ended since this add
                // (while the other changes go on racing).
                let seen = changes_done.load(Ordering::SeqCst);
                wait_until("a change to end", || {
                    changes_done.load(Ordering::SeqCst) > seen
                        || changers.load(Ordering::SeqCst) == 0
                });
            }
        }));
    }
    for t in threads {
        t.join().expect("racing thread");
    }
    let ops = std::mem::take(&mut *ops.lock().unwrap());
    let succeeded = |k| ops.iter().filter(|o| o.kind == k && o.ok.is_some()).count();
    eprintln!(
        "changes {} ok of {}, removes {} ok, adds {} ok",
        succeeded(OpKind::Change),
        2 * ROUNDS,
        succeeded(OpKind::Remove),
        succeeded(OpKind::Add)
    );
    assert!(
        succeeded(OpKind::Change) > 0 && succeeded(OpKind::Remove) > 0,
        "the race never happened"
    );
    let fin = reg
        .query()
        .into_iter()
        .find(|i| i.label == "r")
        .map(|i| i.filename);
    check_final(&ops, fin.as_deref().map(op_number));
    if let Some(f) = &fin {
        // And it is live: its socket takes a client.
        let n = op_number(f);
        assert_eq!(
            *f,
            format!("disconnected:unix:{}/op{n:05}.sock,server=on", d.display())
        );
        drop(connect_unix(&d.join(format!("op{n:05}.sock"))));
        reg.remove("r").unwrap();
    }
    assert!(reg.query().is_empty(), "{:?}", reg.query());
    // Every backend opened by the race is closed, its socket file gone.
    descriptors_back(before);
    let left: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "socket files left behind: {left:?}");
    reg.shutdown();
}

// ----- 5. changes to backends that cannot open, while data flows -----------

fn pipe_spec(base: &Path) -> ChardevBackend {
    ChardevBackend::Pipe(ChardevHostdev {
        device: base.to_string_lossy().into_owned(),
        ..Default::default()
    })
}

#[test]
fn changes_to_backends_that_fail_to_open_leave_the_old_one_delivering() {
    const N: usize = 200_000; // 2.6 MB
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reg = Registry::new().unwrap();
    let ep = add_server(&reg, "s", Kind::Unix, d, None);
    let (fe, seen) = attach(&reg, "s");
    let filename_before = filename(&reg, "s");
    let c = ep.connect();
    wait_until("client", || count(&seen, ChardevEvent::Opened) == 1);
    let connected = filename(&reg, "s");
    let closer = c.try_clone();
    let drain = Drain::new(c);

    let missing = d.join("missing");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    // A bad pipe: `bad.in` exists, `bad.out` and `bad` do not.
    mkfifo(&d.join("bad.in"));
    let no = |p: &Path| format!("{}: No such file or directory", p.display());
    let with_log = ChardevCommon {
        logfile: Some(missing.join("log").to_string_lossy().into_owned()),
        ..Default::default()
    };
    let failing: Vec<(ChardevBackend, String)> = vec![
        (
            file_spec(&missing.join("out.log")),
            format!("Could not open '{}'", missing.join("out.log").display())
                + ": No such file or directory",
        ),
        (
            tcp_server(busy_port),
            "Failed to find an available port: Address already in use".into(),
        ),
        (
            pipe_spec(&d.join("bad")),
            format!("Could not open '{}'", d.join("bad").display()) + ": No such file or directory",
        ),
        (
            unix_server(&missing.join("s.sock")),
            format!("Failed to bind socket to {}", no(&missing.join("s.sock"))),
        ),
        (
            unix_client(&d.join("none.sock")),
            format!("Failed to connect to '{}'", d.join("none.sock").display())
                + ": No such file or directory",
        ),
        (
            serial(&missing.join("ttyS9").to_string_lossy()),
            format!("Could not open '{}'", missing.join("ttyS9").display())
                + ": No such file or directory",
        ),
        (
            ChardevBackend::Null(with_log),
            format!("Could not create '{}'", missing.join("log").display())
                + ": No such file or directory",
        ),
    ];
    let before = fd_count();
    let w = Writer::start(&fe, N);
    let mut during = 0;
    let mut rounds = 0;
    while rounds < 3 || w.written() < N {
        for (spec, msg) in &failing {
            let flowing = w.written() < N;
            let e = reg.change("s", spec.clone()).unwrap_err();
            assert_eq!(e.to_string(), *msg);
            during += usize::from(flowing);
        }
        rounds += 1;
    }
    assert!(during > 0, "no change was tried while data flowed");
    assert_eq!(w.finish(), N);
    wait_until("everything delivered", || drain.len() >= N * REC);
    // The failed opens left nothing open.
    descriptors_back(before);
    closer.shutdown();
    assert_eq!(
        drain.finish(),
        numbered(TAG, 0, N),
        "lost, repeated or reordered"
    );
    wait_until("client gone", || count(&seen, ChardevEvent::Closed) == 1);
    let s = seen.lock().unwrap();
    assert_eq!(s.events, [ChardevEvent::Opened, ChardevEvent::Closed]);
    assert_eq!(s.changes, 0, "no frontend saw a backend change");
    drop(s);
    let st = reg.stats("s").unwrap();
    assert_eq!((st.changes, st.bytes_lost), (0, 0));
    assert_ne!(connected, filename_before);
    assert_eq!(filename(&reg, "s"), filename_before);
    reg.shutdown();
}
