//! Bad input to the web console: malformed requests, oversized heads, a
//! client that never finishes its request, more connections than the
//! console serves, a terminal that never reads, a thousand page loads. Each
//! gets a clear refusal (or is closed), the console goes on serving, its
//! memory stays bounded and its descriptors come back, and another chardev
//! streams on undisturbed. The tests run one at a time (they measure the
//! process).

mod support;

use std::io::Write;
use std::net::TcpStream;

use qchar_chardev::spec::{ChardevBackend, ChardevRingbuf};
use qchar_chardev::Registry;
use qchar_testkit::wait_until;
use support::{closed_by_server, exchange, parse, Setup};

fn setup() -> Setup {
    let reg = Registry::new().unwrap();
    reg.add("con", ChardevBackend::Ringbuf(ChardevRingbuf::default()))
        .unwrap();
    Setup::new(&reg)
}

/// The console still answers a good request.
fn still_serves(s: &Setup) {
    assert_eq!(s.get("/api/chardevs").status, 200);
}

#[test]
fn malformed_requests_get_400_and_the_next_one_is_served() {
    let _g = qchar_testkit::one_at_a_time();
    let s = setup();
    let auth = format!("Authorization: Bearer {}\r\n", s.token());
    for raw in [
        b"\x00\x01\x02garbage\r\n\r\n".to_vec(),
        b"GET\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec(),
        format!("GET / HTTP/1.1\r\n{auth}Transfer-Encoding: gzip, chunked, zz\r\n\r\n")
            .into_bytes(),
        format!("GET / HTTP/1.1\r\n{auth}Content-Length: 99999999999999999999\r\n\r\n")
            .into_bytes(),
    ] {
        let out = exchange(s.addr(), &raw);
        let r = parse(&out);
        assert_eq!(
            r.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(&raw),
            r.head
        );
        still_serves(&s);
    }
    // A request cut short: the connection just ends.
    let mut c = TcpStream::connect(s.addr()).unwrap();
    c.write_all(b"GET /api/chard").unwrap();
    drop(c);
    still_serves(&s);
}

#[test]
fn an_oversized_head_gets_431() {
    let _g = qchar_testkit::one_at_a_time();
    let s = setup();
    let big = "x".repeat(20 * 1024);
    let out = exchange(
        s.addr(),
        format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    assert_eq!(parse(&out).status, 431);
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let out = exchange(
        s.addr(),
        format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    );
    assert_eq!(parse(&out).status, 431);
    // An endless head: cut off at the limit, not read forever.
    let mut c = TcpStream::connect(s.addr()).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nX-Endless: ").unwrap();
    let chunk = vec![b'y'; 4096];
    let mut sent = 0usize;
    while c.write_all(&chunk).is_ok() {
        sent += chunk.len();
        if sent > 8 << 20 {
            panic!("the console read 8 MiB of one header");
        }
    }
    still_serves(&s);
}

#[test]
fn a_client_that_never_finishes_its_head_is_dropped() {
    let _g = qchar_testkit::one_at_a_time();
    let s = setup();
    let mut c = TcpStream::connect(s.addr()).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    // The console closes it after its head timeout (10 s).
    assert!(closed_by_server(&mut c));
    still_serves(&s);
}

#[test]
fn connections_beyond_the_limit_are_closed_and_the_rest_served() {
    let _g = qchar_testkit::one_at_a_time();
    let s = setup();
    let fds = qchar_testkit::fd_count();
    let idle: Vec<TcpStream> = (0..qchar_web::MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(s.addr()).unwrap())
        .collect();
    // Served: each holds a slot (it has a head timeout, longer than this).
    wait_until("every connection accepted", || {
        qchar_testkit::fd_count() >= fds + 2 * qchar_web::MAX_CONNECTIONS
    });
    let mut extra = TcpStream::connect(s.addr()).unwrap();
    assert!(closed_by_server(&mut extra), "one more is closed at once");
    drop(idle);
    // Their slots come back.
    let req = format!(
        "GET /api/chardevs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        s.token()
    );
    wait_until("the slots free", || {
        exchange(s.addr(), req.as_bytes()).starts_with(b"HTTP/1.1 200 OK\r\n")
    });
    wait_until("descriptors back", || qchar_testkit::fd_count() <= fds + 1);
}

#[test]
fn a_terminal_that_never_reads_holds_only_itself() {
    let _g = qchar_testkit::one_at_a_time();
    let reg = Registry::new().unwrap();
    reg.add("flood", ChardevBackend::Null(Default::default()))
        .unwrap();
    let fe = reg.attach("flood").unwrap();
    let (dev, _) = support::Device::new();
    fe.set_handlers(Box::new(dev));
    let s = Setup::new(&reg);
    let bystander = support::Bystander::start(&reg, "other");
    bystander.still_flowing(100_000);
    let fds = qchar_testkit::fd_count();

    // One terminal never reads; another reads along.
    let mut stalled = s.terminal("flood", "");
    let mut live = s.terminal("flood", "");
    // 64 MiB through the chardev, 64 times its history.
    const TOTAL: u64 = 64 << 20;
    let growth = qchar_testkit::peak_growth(|| {
        let mut off = 0u64;
        while off < TOTAL {
            let chunk = support::records_at(off, 64 * 1024);
            fe.write_all(&chunk).unwrap();
            off += chunk.len() as u64;
            // The reading terminal keeps up as it can (and this test keeps
            // none of it: the memory measured is the console's).
            live.read_one();
            live.data.clear();
        }
        bystander.still_flowing(100_000);
    });
    eprintln!(
        "peak RSS growth over 64 MiB to a stalled terminal: {} KiB",
        growth >> 10
    );
    assert!(
        growth < 24 << 20,
        "memory grew by {} KiB for a terminal that reads nothing",
        growth >> 10
    );
    // The live terminal goes on; what it missed (if anything) it was told.
    let before = live.data.len();
    fe.write_all(b"end").unwrap();
    while !live.data.ends_with(b"end") {
        assert!(live.read_one());
    }
    assert!(live.data.len() > before);

    // The stalled one reads at last: what it had, a skip, then the oldest
    // byte kept, contiguous with what it had and was told it missed.
    let mut skipped = None;
    while skipped.is_none() {
        assert!(stalled.read_one());
        skipped = stalled
            .notices
            .iter()
            .find(|n| n["type"] == "skipped")
            .map(|n| n["bytes"].as_u64().unwrap());
    }
    let had = stalled.data.len();
    assert_eq!(stalled.data, support::records_at(0, had));
    let resume = had as u64 + skipped.unwrap();
    assert!(resume > 0 && resume < TOTAL);
    stalled.read_until(had + 4096);
    assert_eq!(
        stalled.data[had..had + 4096],
        support::records_at(resume, 4096)[..],
        "after the skip, the stream from offset {resume}"
    );
    drop((stalled, live));
    wait_until("descriptors back", || qchar_testkit::fd_count() <= fds);
    bystander.finish();
    fe.detach();
    drop(s);
    reg.shutdown();
}

#[test]
fn a_thousand_page_loads_and_closes_leak_nothing() {
    let _g = qchar_testkit::one_at_a_time();
    let reg = Registry::new().unwrap();
    reg.add("con", ChardevBackend::Null(Default::default()))
        .unwrap();
    let fe = reg.attach("con").unwrap();
    let (dev, _) = support::Device::new();
    fe.set_handlers(Box::new(dev));
    let s = Setup::new(&reg);
    fe.write_all(&support::records_at(0, 256 * 1024)).unwrap();
    let bystander = support::Bystander::start(&reg, "other");
    let load = |s: &Setup| {
        assert_eq!(s.get("/console/con").status, 200);
        assert_eq!(s.get("/static/console.js").status, 200);
        let mut t = s.terminal("con", "");
        t.read_until(1);
        t.ws.close(None).unwrap();
        while t.read_one() {}
    };
    for _ in 0..50 {
        load(&s);
    }
    let fds = qchar_testkit::fd_count();
    let rss = qchar_testkit::rss();
    let seen = bystander.received();
    for _ in 0..1000 {
        load(&s);
    }
    // The other chardev streamed on meanwhile.
    assert!(bystander.received() > seen);
    wait_until("descriptors back where they were", || {
        qchar_testkit::fd_count() <= fds
    });
    let grown = qchar_testkit::rss().saturating_sub(rss);
    eprintln!(
        "1,000 page loads: RSS {} KiB -> {} KiB, descriptors {fds} -> {}",
        rss >> 10,
        qchar_testkit::rss() >> 10,
        qchar_testkit::fd_count()
    );
    assert!(grown < 4 << 20, "RSS grew by {} KiB", grown >> 10);
    bystander.finish();
    fe.detach();
    drop(s);
    reg.shutdown();
}

#[test]
fn terminals_beyond_the_limit_get_503() {
    let _g = qchar_testkit::one_at_a_time();
    let s = setup();
    let mut open: Vec<support::Terminal> = (0..qchar_web::MAX_TERMINALS)
        .map(|_| s.terminal("con", "ro=1"))
        .collect();
    let ws = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let auth = format!("Bearer {}", s.token());
    let mut headers = ws.to_vec();
    headers.push(("Authorization", auth.as_str()));
    let r = support::get(s.addr(), "/ws/con", &headers);
    assert_eq!(r.status, 503, "{}", r.head);
    // One closes: its place is free again.
    let mut t = open.pop().unwrap();
    t.ws.close(None).unwrap();
    while t.read_one() {}
    wait_until("a terminal's place freed", || {
        support::get(s.addr(), "/ws/nope", &headers).status == 404
    });
    open.push(s.terminal("con", ""));
}
