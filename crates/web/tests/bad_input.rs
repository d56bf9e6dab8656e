//! Bad input to the web console's HTTP side: malformed requests, oversized
//! heads, a client that never finishes its request, more connections than
//! the console serves. Each gets a clear refusal (or is closed) and the
//! console goes on serving the next request.

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
