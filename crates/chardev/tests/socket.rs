//! The `socket` backend over real loopback and unix sockets: QEMU's
//! filenames and messages, server and client behaviour, telnet, websocket,
//! reconnect, backlog and backpressure.

#[path = "support/net.rs"]
mod net;
mod support;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use net::*;
use qchar_chardev::spec::{ChardevBackend, SocketAddressLegacy, UnixSocketAddress};
use qchar_chardev::{ChardevEvent, Registry, RegistryEvent};
use qchar_testkit::{connect_unix, require, wait_until, LogWatch, Prereq};
use support::{count, input, Recorder};

fn attach_recorder(
    reg: &Registry,
    id: &str,
) -> (qchar_chardev::CharFrontend, Arc<Mutex<support::Seen>>) {
    let fe = reg.attach(id).unwrap();
    let (r, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    (fe, seen)
}

#[test]
fn unix_server_filenames_data_both_ways_and_next_client() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let reg = Registry::new().unwrap();
    reg.add("s", unix_server(&path)).unwrap();
    let p = path.to_string_lossy().into_owned();
    assert_eq!(
        filename(&reg, "s"),
        format!("disconnected:unix:{p},server=on")
    );
    let (fe, seen) = attach_recorder(&reg, "s");
    assert!(!fe.is_open());

    let mut c = connect_unix(&path);
    bounded_unix(&c);
    wait_until("open", || fe.is_open());
    assert_eq!(filename(&reg, "s"), format!("unix:{p},server=on"));
    c.write_all(b"from peer").unwrap();
    wait_until("input", || input(&seen) == b"from peer");
    fe.write_all(b"to peer").unwrap();
    assert_eq!(read_n(&mut c, 7), b"to peer");
    drop(c);
    wait_until("closed", || count(&seen, ChardevEvent::Closed) == 1);
    assert_eq!(
        filename(&reg, "s"),
        format!("disconnected:unix:{p},server=on")
    );

    // The next client is served.
    let mut c2 = connect_unix(&path);
    bounded_unix(&c2);
    wait_until("second open", || count(&seen, ChardevEvent::Opened) == 2);
    fe.write_all(b"again").unwrap();
    assert_eq!(read_n(&mut c2, 5), b"again");
    drop(c2);
    wait_until("closed twice", || count(&seen, ChardevEvent::Closed) == 2);
    fe.detach();
    reg.remove("s").unwrap();
    assert!(
        !path.exists(),
        "socket file is removed with the chardev, as QEMU"
    );
    reg.shutdown();
}

#[test]
fn frontend_disconnect_ends_the_connection_and_the_next_client_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.sock");
    let reg = Registry::new().unwrap();
    reg.add("s", unix_server(&path)).unwrap();
    let (fe, seen) = attach_recorder(&reg, "s");
    let mut c = connect_unix(&path);
    bounded_unix(&c);
    wait_until("open", || count(&seen, ChardevEvent::Opened) == 1);
    fe.disconnect();
    let mut b = [0u8; 1];
    assert_eq!(c.read(&mut b).unwrap(), 0, "the peer sees the end");
    wait_until("closed", || count(&seen, ChardevEvent::Closed) == 1);
    let mut c2 = connect_unix(&path);
    bounded_unix(&c2);
    wait_until("second open", || count(&seen, ChardevEvent::Opened) == 2);
    fe.write_all(b"next").unwrap();
    assert_eq!(read_n(&mut c2, 4), b"next");
    fe.detach();
    reg.shutdown();
}

#[test]
fn unix_server_replaces_a_stale_file_and_keeps_a_successors_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    std::fs::write(&path, b"old").unwrap();
    let reg = Registry::new().unwrap();
    reg.add("a", unix_server(&path)).unwrap();
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket_like());
    // A second server on the same path takes it over; removing the first
    // must not delete the second one's socket.
    reg.add("b", unix_server(&path)).unwrap();
    reg.remove("a").unwrap();
    assert!(path.exists());
    let _c = connect_unix(&path);
    reg.remove("b").unwrap();
    assert!(!path.exists());
    reg.shutdown();
}

trait SocketLike {
    fn is_socket_like(&self) -> bool;
}
impl SocketLike for std::fs::FileType {
    fn is_socket_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_socket()
    }
}

#[test]
fn peer_hangup_delivers_every_byte_before_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sock");
    let reg = Registry::new().unwrap();
    reg.add("h", unix_server(&path)).unwrap();
    let fe = reg.attach("h").unwrap();
    let (mut r, seen) = Recorder::new(true);
    r.room = 7; // a slow frontend: many small reads
    fe.set_handlers(Box::new(r));
    let mut c = connect_unix(&path);
    wait_until("open", || fe.is_open());
    let data = numbered("hangup", 0, 5000);
    c.write_all(&data).unwrap();
    drop(c);
    wait_until("closed", || count(&seen, ChardevEvent::Closed) == 1);
    assert_eq!(input(&seen), data, "all input arrives before CLOSED");
    reg.shutdown();
}

#[test]
fn one_client_at_a_time_the_next_waits_in_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.sock");
    let reg = Registry::new().unwrap();
    reg.add("o", unix_server(&path)).unwrap();
    let (fe, seen) = attach_recorder(&reg, "o");
    let mut first = connect_unix(&path);
    wait_until("open", || fe.is_open());
    let mut second = connect_unix(&path);
    second.write_all(b"second").unwrap();
    first.write_all(b"first").unwrap();
    wait_until("first's input", || input(&seen) == b"first");
    // A round trip with the first client after the second has connected
    // and written: had the chardev served the second too, its bytes,
    // waiting since before, would be in by now.
    fe.write_all(b"ping").unwrap();
    bounded_unix(&first);
    assert_eq!(read_n(&mut first, 4), b"ping");
    first.write_all(b"more").unwrap();
    wait_until("first's second input", || input(&seen) == b"firstmore");
    assert_eq!(input(&seen), b"firstmore", "second client not served yet");
    drop(first);
    wait_until("second's input", || input(&seen) == b"firstmoresecond");
    fe.write_all(b"hi").unwrap();
    bounded_unix(&second);
    assert_eq!(read_n(&mut second, 2), b"hi");
    reg.shutdown();
}

#[test]
fn abstract_unix_names_as_qemu_prints_them() {
    let name = format!("qchar-test-{}", std::process::id());
    let reg = Registry::new().unwrap();
    let mk = |tight: Option<bool>, server: bool, n: &str| {
        ChardevBackend::Socket(socket(
            SocketAddressLegacy::Unix(UnixSocketAddress {
                path: n.into(),
                abstract_: Some(true),
                tight,
            }),
            server,
        ))
    };
    reg.add("t", mk(Some(true), true, &format!("{name}-t")))
        .unwrap();
    reg.add("l", mk(Some(false), true, &format!("{name}-l")))
        .unwrap();
    assert_eq!(
        filename(&reg, "t"),
        format!("disconnected:unix:{name}-t,abstract=on,tight=on,server=on")
    );
    assert_eq!(
        filename(&reg, "l"),
        format!("disconnected:unix:{name}-l,abstract=on,server=on")
    );
    // Tight by default: a server names the address it bound (QEMU 7.2
    // prints `tight=on` for it, given or not).
    reg.add("d", mk(None, true, &format!("{name}-d"))).unwrap();
    assert_eq!(
        filename(&reg, "d"),
        format!("disconnected:unix:{name}-d,abstract=on,tight=on,server=on")
    );
    // A client with the same tightness reaches each server.
    reg.add("tc", mk(Some(true), false, &format!("{name}-t")))
        .unwrap();
    reg.add("lc", mk(Some(false), false, &format!("{name}-l")))
        .unwrap();
    assert_eq!(filename(&reg, "tc"), "unix:");
    let (fe, _seen) = attach_recorder(&reg, "t");
    wait_until("abstract server open", || fe.is_open());
    assert_eq!(filename(&reg, "t"), "unix:,server=on");
    // Tight and padded names are different addresses.
    let e = reg
        .add("x", mk(Some(false), false, &format!("{name}-t")))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("Failed to connect to '{name}-t': Connection refused")
    );
    reg.shutdown();
}

#[test]
fn tcp_server_port_zero_shows_the_real_port_and_the_peer() {
    let reg = Registry::new().unwrap();
    reg.add("t", tcp_server(0)).unwrap();
    let port = server_port(&reg, "t");
    assert_ne!(port, 0);
    assert_eq!(
        filename(&reg, "t"),
        format!("disconnected:tcp:127.0.0.1:{port},server=on")
    );
    let (fe, seen) = attach_recorder(&reg, "t");
    let mut c = connect_tcp(port);
    bounded_tcp(&c);
    let local = c.local_addr().unwrap().port();
    wait_until("open", || fe.is_open());
    assert_eq!(
        filename(&reg, "t"),
        format!("tcp:127.0.0.1:{port},server=on <-> 127.0.0.1:{local}")
    );
    c.write_all(b"ping").unwrap();
    wait_until("input", || input(&seen) == b"ping");
    fe.write_all(b"pong").unwrap();
    assert_eq!(read_n(&mut c, 4), b"pong");
    reg.shutdown();
}

#[test]
fn tcp_server_port_range_and_port_in_use() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = busy.local_addr().unwrap().port();
    let reg = Registry::new().unwrap();
    let e = reg.add("x", tcp_server(p)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Failed to find an available port: Address already in use"
    );
    // `to=`: the next free port in the range.
    let mut spec = socket(inet_addr("127.0.0.1", p), true);
    if let SocketAddressLegacy::Inet(i) = &mut spec.addr {
        i.to = Some(p.saturating_add(20));
    }
    reg.add("r", ChardevBackend::Socket(spec)).unwrap();
    let got = server_port(&reg, "r");
    assert!(got > p && got <= p + 20, "{got} not in range after {p}");
    let e = reg
        .add(
            "y",
            ChardevBackend::Socket(socket(inet_addr("192.0.2.1", 0), true)),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Failed to bind socket: Cannot assign requested address"
    );
    reg.shutdown();
}

#[test]
fn tcp_over_ipv6_loopback() {
    if !require(Prereq::Ipv6Loopback) {
        return;
    }
    let reg = Registry::new().unwrap();
    reg.add(
        "s6",
        ChardevBackend::Socket(socket(inet_addr("::1", 0), true)),
    )
    .unwrap();
    let f = filename(&reg, "s6");
    assert!(f.starts_with("disconnected:tcp:::1:"), "{f}");
    let port: u16 = f
        .trim_end_matches(",server=on")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    reg.add(
        "c6",
        ChardevBackend::Socket(socket(inet_addr("::1", port), false)),
    )
    .unwrap();
    let f = filename(&reg, "c6");
    assert!(
        f.starts_with("tcp:[::1]:") && f.ends_with(&format!(" <-> [::1]:{port}")),
        "{f}"
    );
    let (fe_s, seen_s) = attach_recorder(&reg, "s6");
    let (fe_c, _) = attach_recorder(&reg, "c6");
    wait_until("server open", || fe_s.is_open());
    fe_c.write_all(b"v6").unwrap();
    wait_until("v6 data", || input(&seen_s) == b"v6");
    reg.shutdown();
}

#[test]
fn tcp_client_connects_and_reports_qemu_errors() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let reg = Registry::new().unwrap();
    let mut spec = socket(inet_addr("127.0.0.1", port), false);
    spec.nodelay = Some(true);
    reg.add("c", ChardevBackend::Socket(spec)).unwrap();
    let (mut s, peer) = l.accept().unwrap();
    bounded_tcp(&s);
    assert_eq!(
        filename(&reg, "c"),
        format!("tcp:127.0.0.1:{} <-> 127.0.0.1:{port}", peer.port())
    );
    let (fe, seen) = attach_recorder(&reg, "c");
    assert!(fe.is_open());
    fe.write_all(b"hello").unwrap();
    assert_eq!(read_n(&mut s, 5), b"hello");
    s.write_all(b"back").unwrap();
    wait_until("input", || input(&seen) == b"back");
    drop(s);
    wait_until("closed", || count(&seen, ChardevEvent::Closed) == 1);
    assert_eq!(
        filename(&reg, "c"),
        format!("disconnected:tcp:127.0.0.1:{port}")
    );
    drop(l);

    let e = reg.add("x", tcp_client(port)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("Failed to connect to '127.0.0.1:{port}': Connection refused")
    );
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.sock");
    let e = reg.add("u", unix_client(&missing)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "Failed to connect to '{}': No such file or directory",
            missing.display()
        )
    );
    let e = reg.add(
        "n",
        ChardevBackend::Socket(socket(inet_addr("127.0.0.1", 0), false)),
    );
    assert!(e.is_err());
    reg.shutdown();
}

#[test]
fn bad_option_combinations_have_qemu_messages() {
    let reg = Registry::new().unwrap();
    let base = socket(inet_addr("127.0.0.1", 1), false);
    let cases: Vec<(ChardevBackend, &str)> = vec![
        (
            ChardevBackend::Socket({
                let mut s = base.clone();
                s.websocket = Some(true);
                s
            }),
            "Websocket client is not implemented",
        ),
        (
            ChardevBackend::Socket({
                let mut s = socket(inet_addr("127.0.0.1", 0), true);
                s.reconnect = Some(1);
                s
            }),
            "'reconnect' option is incompatible with socket in server listen mode",
        ),
        (
            ChardevBackend::Socket({
                let mut s = base.clone();
                s.wait = Some(false);
                s
            }),
            "'wait' option is incompatible with socket in client connect mode",
        ),
        (
            ChardevBackend::Socket({
                let mut s = base.clone();
                s.reconnect = Some(1);
                s.reconnect_ms = Some(10);
                s
            }),
            "'reconnect' and 'reconnect-ms' are mutually exclusive",
        ),
    ];
    for (spec, msg) in cases {
        assert_eq!(reg.add("bad", spec).unwrap_err().to_string(), msg);
    }
    let e = reg
        .add(
            "r",
            ChardevBackend::Socket(socket(inet_addr("nosuchhost.invalid", 4444), false)),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("address resolution failed for nosuchhost.invalid:4444: "),
        "{e}"
    );
    assert!(reg.ids().is_empty());
    reg.shutdown();
}

#[test]
fn wait_on_blocks_creation_until_the_first_client() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.sock");
    let reg = Registry::new().unwrap();
    let mut spec = socket(unix_addr(&path), true);
    spec.wait = Some(true);
    let reg2 = reg.clone();
    let t = std::thread::spawn(move || reg2.add("w", ChardevBackend::Socket(spec)).map(|_| ()));
    let mut c = connect_unix(&path);
    t.join().unwrap().unwrap();
    let (fe, seen) = attach_recorder(&reg, "w");
    assert!(fe.is_open(), "created connected");
    wait_until("opened", || count(&seen, ChardevEvent::Opened) == 1);
    fe.write_all(b"hi").unwrap();
    bounded_unix(&c);
    assert_eq!(read_n(&mut c, 2), b"hi");
    // Input sent now reaches the handlers after any OPENED they were owed.
    c.write_all(b"in").unwrap();
    wait_until("input", || input(&seen) == b"in");
    assert_eq!(count(&seen, ChardevEvent::Opened), 1, "no duplicate OPENED");
    reg.shutdown();
}

#[test]
fn reconnecting_client_finds_a_late_server_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.sock");
    let reg = Registry::new().unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev2 = events.clone();
    reg.subscribe(move |e| ev2.lock().unwrap().push(e.clone()));
    let mut spec = socket(unix_addr(&path), false);
    spec.reconnect_ms = Some(20);
    let refused = LogWatch::new("Unable to connect character device late: ");
    reg.add("late", ChardevBackend::Socket(spec)).unwrap();
    assert_eq!(
        filename(&reg, "late"),
        format!("disconnected:unix:{}", path.display())
    );
    let (fe, seen) = attach_recorder(&reg, "late");
    // A few attempts are refused (the chardev logs each), and open nothing.
    wait_until("three refused attempts", || refused.count() >= 3);
    assert!(!fe.is_open());
    let l = UnixListener::bind(&path).unwrap();
    let (mut s, _) = l.accept().unwrap();
    bounded_unix(&s);
    wait_until("open", || fe.is_open());
    assert_eq!(filename(&reg, "late"), "unix:");
    fe.write_all(b"one").unwrap();
    assert_eq!(read_n(&mut s, 3), b"one");
    drop(s);
    wait_until("closed", || count(&seen, ChardevEvent::Closed) == 1);
    // Reconnects on its own.
    let (mut s, _) = l.accept().unwrap();
    bounded_unix(&s);
    wait_until("reopened", || count(&seen, ChardevEvent::Opened) == 2);
    fe.write_all(b"two").unwrap();
    assert_eq!(read_n(&mut s, 3), b"two");
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| *e == RegistryEvent::Opened("late".into())));
    reg.shutdown();
}

#[test]
fn reconnect_in_seconds_over_tcp() {
    let port = free_port();
    let reg = Registry::new().unwrap();
    let mut spec = socket(inet_addr("127.0.0.1", port), false);
    spec.reconnect = Some(1);
    reg.add("c", ChardevBackend::Socket(spec)).unwrap();
    assert_eq!(
        filename(&reg, "c"),
        format!("disconnected:tcp:127.0.0.1:{port}")
    );
    let (fe, _seen) = attach_recorder(&reg, "c");
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (mut s, _) = l.accept().unwrap();
    bounded_tcp(&s);
    wait_until("open", || fe.is_open());
    fe.write_all(b"late").unwrap();
    assert_eq!(read_n(&mut s, 4), b"late");
    reg.shutdown();
}

#[test]
fn telnet_server_negotiates_strips_commands_and_escapes_output() {
    let reg = Registry::new().unwrap();
    let mut spec = socket(inet_addr("127.0.0.1", 0), true);
    spec.telnet = Some(true);
    reg.add("t", ChardevBackend::Socket(spec)).unwrap();
    let port = server_port(&reg, "t");
    assert_eq!(
        filename(&reg, "t"),
        format!("disconnected:telnet:127.0.0.1:{port},server=on")
    );
    let (fe, seen) = attach_recorder(&reg, "t");
    let mut c = connect_tcp(port);
    bounded_tcp(&c);
    c.set_nodelay(true).unwrap();
    assert_eq!(
        read_n(&mut c, 12),
        [0xff, 0xfb, 0x01, 0xff, 0xfb, 0x03, 0xff, 0xfb, 0x00, 0xff, 0xfd, 0x00]
    );
    wait_until("open", || fe.is_open());
    assert!(filename(&reg, "t").starts_with(&format!("telnet:127.0.0.1:{port},server=on <-> ")));
    // Client answers, data, an escaped 0xff, a break, more data.
    c.write_all(&[0xff, 0xfd, 0x01, b'a', 0xff, 0xff, b'b', 0xff, 0xf3, b'c'])
        .unwrap();
    wait_until("input", || input(&seen) == b"a\xffbc");
    assert_eq!(count(&seen, ChardevEvent::Break), 1);
    {
        let s = seen.lock().unwrap();
        let pos = s
            .events
            .iter()
            .position(|e| *e == ChardevEvent::Break)
            .unwrap();
        assert!(pos > 0);
    }
    fe.write_all(&[1, 0xff, 2]).unwrap();
    assert_eq!(read_n(&mut c, 4), [1, 0xff, 0xff, 2]);
    reg.shutdown();
}

#[test]
fn telnet_sequences_split_at_every_boundary_decode_the_same() {
    let sample: &[u8] = &[
        b'x', 0xff, 0xff, b'y', 0xff, 0xfb, 0x01, b'z', 0xff, 0xf3, b'w', 0xff, 0xfa, 31, 0, 80,
        0xff, 0xf0, b'v',
    ];
    let expected_one: &[u8] = b"x\xffyzwv";
    let reg = Registry::new().unwrap();
    let mut spec = socket(inet_addr("127.0.0.1", 0), true);
    spec.telnet = Some(true);
    reg.add("t", ChardevBackend::Socket(spec)).unwrap();
    let port = server_port(&reg, "t");
    let (fe, seen) = attach_recorder(&reg, "t");
    let mut c = connect_tcp(port);
    c.set_nodelay(true).unwrap();
    bounded_tcp(&c);
    read_n(&mut c, 12);
    wait_until("open", || fe.is_open());
    let client_port = c.local_addr().unwrap().port();
    for cut in 0..=sample.len() {
        let before = input(&seen).len();
        c.write_all(&sample[..cut]).unwrap();
        // The first piece is read on its own: the chardev's end has nothing
        // unread before the second is sent.
        wait_until("the first piece read", || {
            tcp_unread(port, client_port) == Some(0)
        });
        c.write_all(&sample[cut..]).unwrap();
        wait_until("one round", || {
            input(&seen).len() == before + expected_one.len()
        });
    }
    let all = input(&seen);
    let rounds = sample.len() + 1;
    assert_eq!(all, expected_one.repeat(rounds));
    wait_until("breaks", || count(&seen, ChardevEvent::Break) == rounds);
    reg.shutdown();
}

#[test]
fn telnet_client_is_plain_bytes_as_qemu() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let reg = Registry::new().unwrap();
    let mut spec = socket(inet_addr("127.0.0.1", port), false);
    spec.telnet = Some(true);
    reg.add("c", ChardevBackend::Socket(spec)).unwrap();
    let (mut s, _) = l.accept().unwrap();
    assert!(filename(&reg, "c").starts_with("telnet:127.0.0.1:"));
    let (fe, seen) = attach_recorder(&reg, "c");
    s.write_all(&[0xff, 0xff]).unwrap();
    wait_until("raw", || input(&seen) == [0xff, 0xff]);
    fe.write_all(b"q").unwrap();
    bounded_tcp(&s);
    assert_eq!(read_n(&mut s, 1), b"q", "no negotiation sent by a client");
    reg.shutdown();
}

#[test]
fn websocket_handshake_frames_ping_and_close() {
    let reg = Registry::new().unwrap();
    let port = ws_server(&reg, "w");
    assert_eq!(
        filename(&reg, "w"),
        format!("disconnected:websocket:127.0.0.1:{port},server=on")
    );
    let (fe, seen) = attach_recorder(&reg, "w");
    let mut c = connect_tcp(port);
    bounded_tcp(&c);
    // Accepted but not shaken hands: still closed.
    let client_port = c.local_addr().unwrap().port();
    wait_until("the connection accepted", || {
        tcp_accepted(port, client_port)
    });
    assert!(!fe.is_open());
    let head = ws_handshake(&mut c, Some("binary"));
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(head.contains("Sec-WebSocket-Protocol: binary\r\n"));
    wait_until("open", || fe.is_open());
    assert!(filename(&reg, "w").starts_with(&format!("websocket:127.0.0.1:{port},server=on <-> ")));
    c.write_all(&ws_frame(2, b"in-")).unwrap();
    c.write_all(&ws_frame(1, b"text")).unwrap();
    wait_until("input", || input(&seen) == b"in-text");
    fe.write_all(b"out").unwrap();
    assert_eq!(ws_read_frame(&mut c), Some((2, b"out".to_vec())));
    c.write_all(&ws_frame(9, b"pp")).unwrap();
    assert_eq!(ws_read_frame(&mut c), Some((10, b"pp".to_vec())));
    c.write_all(&ws_frame(8, &1000u16.to_be_bytes())).unwrap();
    assert_eq!(ws_read_frame(&mut c).map(|f| f.0), Some(8));
    wait_until("closed", || count(&seen, ChardevEvent::Closed) == 1);
    reg.shutdown();
}

/// The bytes of records `0..` (16 bytes each), from byte `from` on, `n` bytes.
fn records(from: usize, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 32);
    let mut i = from / 16;
    while v.len() < n + from % 16 {
        v.extend_from_slice(format!("{i:015}\n").as_bytes());
        i += 1;
    }
    v.drain(..from % 16);
    v.truncate(n);
    v
}

#[test]
fn websocket_frame_owed_at_a_change_reaches_its_peer() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    // Over a unix socket: its buffers do not grow while the peer sleeps,
    // so the frame cut when they filled is still owed at the change.
    let path = dir.path().join("ws.sock");
    let mut spec = socket(unix_addr(&path), true);
    spec.websocket = Some(true);
    reg.add("w", ChardevBackend::Socket(spec)).unwrap();
    let (fe, _seen) = attach_recorder(&reg, "w");
    let mut c = connect_unix(&path);
    bounded_unix(&c);
    assert!(ws_handshake(&mut c, Some("binary")).starts_with("HTTP/1.1 101"));
    wait_until("open", || fe.is_open());
    // The client reads nothing: output piles up in the socket, the last
    // frame only partly sent, until the chardev's queue is full too. Full
    // is the absence of progress, which no event announces: it is taken as
    // 300 ms in which the queue took nothing. The checks below hold in
    // whatever state the change finds; the pause only makes the cut frame
    // all but certain.
    let mut written = 0;
    let mut idle_since = std::time::Instant::now();
    while idle_since.elapsed() < Duration::from_millis(300) {
        let n = fe.write(&records(written, 65536));
        if n > 0 {
            written += n;
            idle_since = std::time::Instant::now();
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let out = dir.path().join("after.out");
    reg.change("w", support::file_spec(&out)).unwrap();
    // Whatever the old connection had taken reaches the client, in whole
    // frames, then the connection ends; the file has the rest.
    let mut got = Vec::new();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    while let Some((op, payload)) = ws_read_frame(&mut c) {
        assert_eq!(op, 2, "binary frames only");
        got.extend_from_slice(&payload);
    }
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{} bytes of a cut frame", rest.len());
    wait_until("queue empty", || reg.stats("w").unwrap().queued == 0);
    let in_file = std::fs::read(&out).unwrap();
    assert_eq!(
        got.len() + in_file.len(),
        written,
        "client {} + file {} bytes",
        got.len(),
        in_file.len()
    );
    assert!(got == records(0, got.len()), "client stream in order");
    assert!(
        in_file == records(got.len(), in_file.len()),
        "file continues it"
    );
    fe.detach();
    reg.shutdown();
}

#[test]
fn websocket_takes_clients_without_subprotocol_and_text_frames_as_input() {
    // qchar's default: what a stock xterm.js attach addon does (no
    // subprotocol, typed keys as text frames) works.
    let reg = Registry::new().unwrap();
    let port = ws_server(&reg, "w");
    let (fe, seen) = attach_recorder(&reg, "w");
    // Offering only a protocol qchar does not speak is refused.
    let mut c = connect_tcp(port);
    bounded_tcp(&c);
    let head = ws_handshake(&mut c, Some("base64"));
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(!fe.is_open());
    // None at all is fine, and answered with none.
    let mut c = connect_tcp(port);
    bounded_tcp(&c);
    let head = ws_handshake(&mut c, None);
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(!head.contains("Sec-WebSocket-Protocol"), "{head}");
    wait_until("open", || fe.is_open());
    c.write_all(&ws_frame(1, b"typed ")).unwrap();
    c.write_all(&ws_frame(2, &[0, 0xff])).unwrap();
    c.write_all(&ws_frame(1, "\u{e9}\r".as_bytes())).unwrap();
    let mut want = b"typed \x00\xff".to_vec();
    want.extend_from_slice("\u{e9}\r".as_bytes());
    wait_until("input", || input(&seen) == want);
    fe.write_all(b"out").unwrap();
    assert_eq!(ws_read_frame(&mut c), Some((2, b"out".to_vec())));
    assert_eq!(count(&seen, ChardevEvent::Closed), 0);
    reg.shutdown();
}

#[test]
fn websocket_text_off_is_qemus_binary_only_websocket() {
    let reg = Registry::new().unwrap();
    let mut spec = socket(inet_addr("127.0.0.1", 0), true);
    spec.websocket = Some(true);
    spec.websocket_text = Some(false);
    reg.add("w", ChardevBackend::Socket(spec)).unwrap();
    let port = server_port(&reg, "w");
    let (fe, seen) = attach_recorder(&reg, "w");
    // The subprotocol `binary` is required, as QEMU requires it.
    let mut c = connect_tcp(port);
    bounded_tcp(&c);
    let head = ws_handshake(&mut c, None);
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(!fe.is_open());
    // The next client is fine; its text frame drops it, as QEMU does:
    // what came before is input, no close frame is sent.
    let mut c2 = connect_tcp(port);
    bounded_tcp(&c2);
    assert!(ws_handshake(&mut c2, Some("binary")).starts_with("HTTP/1.1 101"));
    wait_until("open", || fe.is_open());
    c2.write_all(&ws_frame(2, b"bin")).unwrap();
    c2.write_all(&ws_frame(1, b"text")).unwrap();
    wait_until("closed", || count(&seen, ChardevEvent::Closed) == 1);
    assert_eq!(input(&seen), b"bin");
    let mut rest = Vec::new();
    let _ = c2.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no close frame: {rest:?}");
    reg.shutdown();
}

#[test]
fn server_backlog_replays_output_written_before_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let reg = Registry::new().unwrap();
    reg.add("b", with_backlog(unix_server(&path), 64)).unwrap();
    let (fe, _seen) = attach_recorder(&reg, "b");
    let data = numbered("early", 0, 20); // 300 bytes, more than the cap
    fe.write_all(&data).unwrap();
    wait_until("queued into the backlog", || {
        reg.stats("b").unwrap().queued == 0
    });
    let mut c = connect_unix(&path);
    bounded_unix(&c);
    wait_until("open", || fe.is_open());
    let got = read_n(&mut c, 64);
    assert_eq!(
        got,
        data[data.len() - 64..],
        "the newest bytes up to the cap"
    );
    fe.write_all(b"live").unwrap();
    assert_eq!(read_n(&mut c, 4), b"live");
    reg.shutdown();
}

#[test]
fn output_without_a_client_is_dropped_as_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.sock");
    let reg = Registry::new().unwrap();
    reg.add("d", unix_server(&path)).unwrap();
    let (fe, _seen) = attach_recorder(&reg, "d");
    fe.write_all(b"lost").unwrap();
    wait_until("drained", || reg.stats("d").unwrap().queued == 0);
    let mut c = connect_unix(&path);
    bounded_unix(&c);
    wait_until("open", || fe.is_open());
    fe.write_all(b"kept").unwrap();
    assert_eq!(read_n(&mut c, 4), b"kept");
    reg.shutdown();
}

#[test]
fn a_peer_that_stops_reading_gets_backpressure_not_a_queue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow.sock");
    let reg = Registry::with_out_capacity(64 * 1024).unwrap();
    reg.add("s", unix_server(&path)).unwrap();
    let (fe, seen) = attach_recorder(&reg, "s");
    let c = connect_unix(&path);
    wait_until("open", || fe.is_open());
    // Write without reading until the chardev refuses more.
    let chunk = vec![b'z'; 4096];
    let mut written = 0usize;
    let mut refused = false;
    for _ in 0..100_000 {
        let n = fe.write(&chunk);
        written += n;
        if n < chunk.len() {
            refused = true;
            break;
        }
        if written > 64 * 1024 * 1024 {
            break;
        }
        std::thread::yield_now();
    }
    assert!(
        refused,
        "a full peer must push back (wrote {written} bytes)"
    );
    let st = reg.stats("s").unwrap();
    assert!(st.queued <= 64 * 1024);
    // Draining the peer lets everything through, and the writer hears of it.
    let drain = Drain::new(c);
    wait_until("all delivered", || drain.len() == written);
    wait_until("write_ready", || seen.lock().unwrap().write_ready > 0);
    reg.shutdown();
}

#[test]
fn mixed_clients_get_their_own_data_in_order() {
    // Many round trips on one server: each client sees exactly what was
    // written while it was connected.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sock");
    let reg = Registry::new().unwrap();
    reg.add("m", unix_server(&path)).unwrap();
    let (fe, seen) = attach_recorder(&reg, "m");
    for round in 0..20 {
        let mut c: UnixStream = connect_unix(&path);
        bounded_unix(&c);
        wait_until("open", || count(&seen, ChardevEvent::Opened) == round + 1);
        let data = numbered("r", round * 100, 100);
        fe.write_all(&data).unwrap();
        assert_eq!(read_n(&mut c, data.len()), data);
        drop(c);
        wait_until("closed", || count(&seen, ChardevEvent::Closed) == round + 1);
    }
    reg.shutdown();
}
