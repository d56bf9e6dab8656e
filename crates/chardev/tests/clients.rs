//! Multi-client socket servers (`x-clients`, `x-writers`) over real unix
//! and loopback sockets, raw, telnet and websocket: every client gets the
//! history, then live output; writers type, viewers do not; a client that
//! stops reading holds no one back, costs no memory beyond the history, and
//! skips ahead with a marker line; one client too many is told so; connects
//! and disconnects are events and in `Registry::clients`; a change to a
//! server on the same address keeps the clients attached.

#[path = "support/net.rs"]
mod net;
mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use net::*;
use qchar_chardev::spec::ChardevBackend;
use qchar_chardev::{CharFrontend, Registry, RegistryEvent};
use qchar_testkit::{connect_unix, fd_count, one_at_a_time, peak_growth, wait_until};
use support::{input, Recorder, Seen};

fn attach(reg: &Registry, id: &str) -> (CharFrontend, Arc<Mutex<Seen>>) {
    let fe = reg.attach(id).unwrap();
    let (r, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    (fe, seen)
}

/// Every client event of the registry, in order.
fn client_events(reg: &Registry) -> Arc<Mutex<Vec<RegistryEvent>>> {
    let evs = Arc::new(Mutex::new(Vec::new()));
    let e = evs.clone();
    reg.subscribe(move |ev| {
        if matches!(
            ev,
            RegistryEvent::ClientConnected { .. }
                | RegistryEvent::ClientDisconnected { .. }
                | RegistryEvent::ClientSkipped { .. }
        ) {
            e.lock().unwrap().push(ev.clone());
        }
    });
    evs
}

fn connected(evs: &Arc<Mutex<Vec<RegistryEvent>>>) -> usize {
    evs.lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, RegistryEvent::ClientConnected { .. }))
        .count()
}

fn unix_client(path: &std::path::Path) -> UnixStream {
    let c = connect_unix(path);
    bounded_unix(&c);
    c
}

fn clients_of(reg: &Registry, id: &str) -> qchar_chardev::ClientsInfo {
    reg.clients()
        .into_iter()
        .find(|c| c.label == id)
        .unwrap_or_else(|| panic!("{id} is no multi-client server"))
        .info
}

fn sent(reg: &Registry, id: &str) {
    wait_until("sent out", || reg.stats(id).unwrap().queued == 0);
}

#[test]
fn every_client_gets_the_history_then_live_output() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sock");
    let reg = Registry::new().unwrap();
    let evs = client_events(&reg);
    reg.add("m", with_clients(unix_server(&path), 4, None))
        .unwrap();
    assert_eq!(
        filename(&reg, "m"),
        format!("disconnected:unix:{},server=on", path.display())
    );
    let (fe, _seen) = attach(&reg, "m");
    fe.write_all(b"before anyone;").unwrap();
    sent(&reg, "m");
    let mut a = unix_client(&path);
    let mut b = unix_client(&path);
    assert_eq!(read_n(&mut a, 14), b"before anyone;");
    assert_eq!(read_n(&mut b, 14), b"before anyone;");
    wait_until("both served", || connected(&evs) == 2);
    assert!(fe.is_open());
    assert_eq!(
        filename(&reg, "m"),
        format!("unix:{},server=on", path.display()),
        "the oldest client's connection, as QEMU names one"
    );
    fe.write_all(b"live;").unwrap();
    assert_eq!(read_n(&mut a, 5), b"live;");
    assert_eq!(read_n(&mut b, 5), b"live;");
    // A late client: everything so far first, then live.
    let mut late = unix_client(&path);
    assert_eq!(read_n(&mut late, 19), b"before anyone;live;");
    fe.write_all(b"all three").unwrap();
    for c in [&mut a, &mut b, &mut late] {
        assert_eq!(read_n(c, 9), b"all three");
    }
    wait_until("three served", || connected(&evs) == 3);
    let info = clients_of(&reg, "m");
    assert_eq!(
        (info.max_clients, info.max_writers, info.refused),
        (4, 4, 0)
    );
    assert_eq!(info.clients.len(), 3);
    assert_eq!(
        info.clients.iter().map(|c| c.client).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(info
        .clients
        .iter()
        .all(|c| c.writer && c.peer == "unix" && !c.handshake));
    wait_until("all caught up", || {
        clients_of(&reg, "m")
            .clients
            .iter()
            .all(|c| c.behind == 0 && c.sent == 28)
    });
    // Disconnects: events with the count left; the last one closes.
    drop(b);
    wait_until("b gone", || clients_of(&reg, "m").clients.len() == 2);
    drop(a);
    drop(late);
    wait_until("all gone", || !fe.is_open());
    let evs = evs.lock().unwrap().clone();
    let gone: Vec<(u64, String, usize)> = evs
        .iter()
        .filter_map(|e| match e {
            RegistryEvent::ClientDisconnected {
                id,
                client,
                reason,
                clients,
                ..
            } if id == "m" => Some((*client, reason.clone(), *clients)),
            _ => None,
        })
        .collect();
    assert_eq!(gone.len(), 3, "{evs:?}");
    assert_eq!(gone[0], (2, "closed".to_string(), 2));
    assert_eq!(gone[2].2, 0);
    assert!(matches!(
        &evs[0],
        RegistryEvent::ClientConnected { id, client: 1, peer, writer: true, clients: 1 }
            if id == "m" && peer == "unix"
    ));
    fe.detach();
    reg.shutdown();
}

#[test]
fn tcp_telnet_and_websocket_clients_each_get_their_framing() {
    let _one = one_at_a_time();
    let reg = Registry::new().unwrap();
    reg.add("tcp", with_clients(tcp_server(0), 3, None))
        .unwrap();
    reg.add("tn", with_clients(telnet_server(0), 3, None))
        .unwrap();
    reg.add("ws", with_clients(websocket_server(0), 3, None))
        .unwrap();
    let mut fes = Vec::new();
    for id in ["tcp", "tn", "ws"] {
        let (fe, seen) = attach(&reg, id);
        fe.write_all(b"hist\xff").unwrap();
        fes.push((fe, seen));
    }
    let tcp_port = server_port(&reg, "tcp");
    let tn_port = server_port(&reg, "tn");
    let ws_port = server_port(&reg, "ws");
    let mut t1 = connect_tcp(tcp_port);
    let mut t2 = connect_tcp(tcp_port);
    let mut n1 = connect_tcp(tn_port);
    let mut n2 = connect_tcp(tn_port);
    let mut w1 = connect_tcp(ws_port);
    let mut w2 = connect_tcp(ws_port);
    for s in [&t1, &t2, &n1, &n2, &w1, &w2] {
        bounded_tcp(s);
    }
    for t in [&mut t1, &mut t2] {
        assert_eq!(read_n(t, 5), b"hist\xff");
    }
    for n in [&mut n1, &mut n2] {
        assert_eq!(read_n(n, 12)[..2], [0xff, 0xfb], "telnet negotiation");
        assert_eq!(read_n(n, 6), b"hist\xff\xff", "0xff doubled");
    }
    for w in [&mut w1, &mut w2] {
        assert!(ws_handshake(w, Some("binary")).starts_with("HTTP/1.1 101"));
        assert_eq!(ws_read_n(w, 5), b"hist\xff");
    }
    for (fe, _) in &fes {
        fe.write_all(b"live").unwrap();
    }
    for t in [&mut t1, &mut t2] {
        assert_eq!(read_n(t, 4), b"live");
    }
    for n in [&mut n1, &mut n2] {
        assert_eq!(read_n(n, 4), b"live");
    }
    for w in [&mut w1, &mut w2] {
        assert_eq!(ws_read_n(w, 4), b"live");
    }
    // Input from each kind reaches its frontend.
    t2.write_all(b"t").unwrap();
    n2.write_all(&[b'n', 0xff, 0xff]).unwrap();
    w2.write_all(&ws_frame(2, b"w")).unwrap();
    wait_until("tcp input", || input(&fes[0].1) == b"t");
    wait_until("telnet input", || input(&fes[1].1) == b"n\xff");
    wait_until("websocket input", || input(&fes[2].1) == b"w");
    let peer = clients_of(&reg, "tcp").clients[0].peer.clone();
    assert_eq!(
        peer,
        format!("127.0.0.1:{}", t1.local_addr().unwrap().port())
    );
    for (fe, _) in fes {
        fe.detach();
    }
    reg.shutdown();
}

#[test]
fn writers_type_and_viewers_only_watch() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.sock");
    let reg = Registry::new().unwrap();
    let evs = client_events(&reg);
    reg.add("w", with_clients(unix_server(&path), 3, Some(1)))
        .unwrap();
    let (fe, seen) = attach(&reg, "w");
    let mut first = unix_client(&path);
    wait_until("first served", || connected(&evs) == 1);
    let mut second = unix_client(&path);
    wait_until("second served", || connected(&evs) == 2);
    second.write_all(b"viewer typing").unwrap();
    first.write_all(b"writer").unwrap();
    wait_until("the writer's input", || input(&seen) == b"writer");
    wait_until("the viewer's counted", || {
        clients_of(&reg, "w").clients[1].dropped_input == 13
    });
    assert_eq!(input(&seen), b"writer", "nothing of the viewer's");
    let info = clients_of(&reg, "w");
    assert_eq!(
        info.clients.iter().map(|c| c.writer).collect::<Vec<_>>(),
        [true, false]
    );
    assert!(matches!(
        &evs.lock().unwrap()[1],
        RegistryEvent::ClientConnected {
            writer: false,
            clients: 2,
            ..
        }
    ));
    // The writer's place goes to the next client to connect, not to a
    // viewer already there.
    drop(first);
    wait_until("writer gone", || clients_of(&reg, "w").clients.len() == 1);
    second.write_all(b"x").unwrap();
    let mut third = unix_client(&path);
    wait_until("third served", || connected(&evs) == 3);
    third.write_all(b"third").unwrap();
    wait_until("the new writer's input", || input(&seen) == b"writerthird");
    // Output reaches viewers all the same.
    fe.write_all(b"to all").unwrap();
    assert_eq!(read_n(&mut second, 6), b"to all");
    assert_eq!(read_n(&mut third, 6), b"to all");
    fe.detach();
    reg.shutdown();

    // x-writers=0: nobody types.
    let reg = Registry::new().unwrap();
    let path = dir.path().join("v.sock");
    reg.add("v", with_clients(unix_server(&path), 2, Some(0)))
        .unwrap();
    let (fe, seen) = attach(&reg, "v");
    let mut c = unix_client(&path);
    c.write_all(b"ignored").unwrap();
    wait_until("counted", || {
        clients_of(&reg, "v")
            .clients
            .first()
            .is_some_and(|c| c.dropped_input == 7)
    });
    assert!(input(&seen).is_empty());
    fe.detach();
    reg.shutdown();
}

#[test]
fn one_client_too_many_is_told_and_closed() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sock");
    let reg = Registry::new().unwrap();
    let evs = client_events(&reg);
    reg.add("t", with_clients(unix_server(&path), 2, None))
        .unwrap();
    let (fe, _seen) = attach(&reg, "t");
    let mut a = unix_client(&path);
    let mut b = unix_client(&path);
    wait_until("two served", || connected(&evs) == 2);
    let mut extra = unix_client(&path);
    let mut told = Vec::new();
    extra.read_to_end(&mut told).unwrap();
    assert_eq!(told, b"qchar: too many clients\r\n");
    assert_eq!(clients_of(&reg, "t").refused, 1);
    fe.write_all(b"still fine").unwrap();
    assert_eq!(read_n(&mut a, 10), b"still fine");
    assert_eq!(read_n(&mut b, 10), b"still fine");
    // A place freed is taken again.
    drop(a);
    wait_until("one left", || clients_of(&reg, "t").clients.len() == 1);
    let mut again = unix_client(&path);
    assert_eq!(read_n(&mut again, 10), b"still fine", "history first");
    fe.detach();
    reg.shutdown();

    // A websocket client is refused in HTTP.
    let reg = Registry::new().unwrap();
    reg.add("ws", with_clients(websocket_server(0), 2, None))
        .unwrap();
    let port = server_port(&reg, "ws");
    let mut keep = Vec::new();
    for _ in 0..2 {
        let mut w = connect_tcp(port);
        bounded_tcp(&w);
        assert!(ws_handshake(&mut w, Some("binary")).starts_with("HTTP/1.1 101"));
        keep.push(w);
    }
    let mut extra = connect_tcp(port);
    bounded_tcp(&extra);
    let mut told = String::new();
    extra.read_to_string(&mut told).unwrap();
    assert!(
        told.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{told}"
    );
    assert!(
        told.ends_with("\r\n\r\nqchar: too many clients\r\n"),
        "{told}"
    );
    reg.shutdown();
}

/// Reads a stream and compares it with what it must be as it comes, keeping
/// nothing (so that the test's own memory does not grow with it).
struct Checker {
    good: Arc<std::sync::atomic::AtomicUsize>,
    join: std::thread::JoinHandle<usize>,
}

impl Checker {
    fn new(mut r: impl Read + Send + 'static, want: Arc<Vec<u8>>) -> Checker {
        let good = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let g = good.clone();
        let join = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            let mut at = 0;
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) | Err(_) => return at,
                    Ok(n) => n,
                };
                if want.get(at..at + n) != Some(&buf[..n]) {
                    return at;
                }
                at += n;
                g.store(at, std::sync::atomic::Ordering::SeqCst);
            }
        });
        Checker { good, join }
    }

    /// Bytes that came as they should, so far.
    fn len(&self) -> usize {
        self.good.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits for the stream's end; the bytes that came right.
    fn finish_ok(self) -> usize {
        self.join.join().unwrap()
    }
}

/// `stream` as a client that stopped reading saw it: its first `k` bytes,
/// the marker for the `n` it missed, the rest from `k + n`.
fn check_skip(stream: &[u8], got: &[u8]) -> (usize, u64) {
    let at = got
        .windows(10)
        .position(|w| w == b"\r\n[qchar: ")
        .expect("a skip marker");
    let rest = &got[at + 10..];
    let end = rest
        .windows(17)
        .position(|w| w == b" bytes skipped]\r\n")
        .expect("the marker's end");
    let n: u64 = std::str::from_utf8(&rest[..end]).unwrap().parse().unwrap();
    let after = &rest[end + 17..];
    assert_eq!(&got[..at], &stream[..at], "what came before the skip");
    let resume = at + n as usize;
    assert_eq!(
        after,
        &stream[resume..],
        "the rest, from where it skipped to"
    );
    (at, n)
}

#[test]
fn a_client_that_stops_reading_skips_ahead_with_a_marker_and_holds_no_one_back() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let reg = Registry::new().unwrap();
    let evs = client_events(&reg);
    const HISTORY: u64 = 256 << 10;
    reg.add(
        "s",
        with_backlog(with_clients(unix_server(&path), 3, None), HISTORY),
    )
    .unwrap();
    let (fe, _seen) = attach(&reg, "s");
    let stalled = unix_client(&path);
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // 14 MiB: many times the history and any socket buffer.
    let stream = Arc::new(numbered("line", 0, 1 << 20));
    let reader = Checker::new(unix_client(&path), stream.clone());
    wait_until("both served", || connected(&evs) == 2);
    // The writer is held to the reading client's pace (which a guest is
    // not): the reader must not fall a whole history behind.
    let growth = peak_growth(|| {
        let mut written = 0;
        for chunk in stream.chunks(64 << 10) {
            fe.write_all(chunk).unwrap();
            written += chunk.len();
            wait_until("the reader keeps up", || {
                reader.len() + (HISTORY as usize) / 2 >= written
            });
        }
        sent(&reg, "s");
        wait_until("the reading client has it all", || {
            reader.len() == stream.len()
        });
    });
    // The stalled client costs the history (allocated as it filled) and
    // its socket buffer, nothing per byte written.
    assert!(
        growth < HISTORY + (4 << 20),
        "memory grew by {growth} bytes"
    );
    // Every byte is sent, skipped or still owed, to each client.
    let info = clients_of(&reg, "s");
    let c = &info.clients[0];
    assert_eq!(
        c.sent + c.skipped + c.behind,
        stream.len() as u64,
        "{info:?}"
    );
    assert!(c.skipped > 0 && c.behind <= HISTORY, "{info:?}");
    // It reads again: what the socket held, the marker, then the newest.
    let got = Drain::new(stalled);
    wait_until("the stalled client caught up", || {
        clients_of(&reg, "s").clients[0].behind == 0
    });
    fe.detach();
    let shut = reg.clone();
    std::thread::spawn(move || shut.shutdown()).join().unwrap();
    let got = got.finish();
    assert_eq!(
        reader.finish_ok(),
        stream.len(),
        "every line once, in order"
    );
    let (at, n) = check_skip(&stream, &got);
    assert!(at > 0 && n > 0);
    let skipped: Vec<u64> = evs
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            RegistryEvent::ClientSkipped {
                client: 1, skipped, ..
            } => Some(*skipped),
            _ => None,
        })
        .collect();
    assert_eq!(skipped.iter().sum::<u64>(), n, "{skipped:?}");
}

#[test]
fn connects_and_disconnects_give_every_descriptor_back() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.sock");
    let reg = Registry::new().unwrap();
    let evs = client_events(&reg);
    reg.add("d", with_clients(unix_server(&path), 8, Some(2)))
        .unwrap();
    let (fe, _seen) = attach(&reg, "d");
    fe.write_all(b"x").unwrap();
    let before = fd_count();
    for round in 0..40 {
        let mut cs: Vec<UnixStream> = (0..6).map(|_| unix_client(&path)).collect();
        for c in &mut cs {
            assert_eq!(read_n(c, 1), b"x");
        }
        wait_until("served", || connected(&evs) == 6 * (round + 1));
        drop(cs);
        wait_until("all gone", || clients_of(&reg, "d").clients.is_empty());
    }
    assert_eq!(fd_count(), before);
    fe.detach();
    reg.shutdown();
}

#[test]
fn bad_options_are_refused_clearly() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let reg = Registry::new().unwrap();
    let err = |spec: ChardevBackend| reg.add("b", spec).unwrap_err().to_string();
    assert_eq!(
        err(with_clients(unix_server(&path), 0, None)),
        "'x-clients' must be between 1 and 1024"
    );
    assert_eq!(
        err(with_clients(unix_server(&path), 1025, None)),
        "'x-clients' must be between 1 and 1024"
    );
    assert_eq!(
        err(with_clients(net::unix_client(&path), 2, None)),
        "'x-clients' option is incompatible with socket in client connect mode"
    );
    assert_eq!(
        err(with_clients(unix_server(&path), 1, Some(1))),
        "'x-writers' needs 'x-clients' greater than 1"
    );
    assert_eq!(
        err(with_clients(unix_server(&path), 2, Some(3))),
        "'x-writers' cannot be greater than 'x-clients'"
    );
    assert!(!path.exists(), "nothing was bound");
    // x-clients=1 is QEMU's one client at a time: no client list.
    reg.add("one", with_clients(unix_server(&path), 1, None))
        .unwrap();
    assert!(reg.clients().is_empty());
    reg.shutdown();
}

/// Lines `from..from + n`, each `tag NNNNNNNN\n`.
fn lines(from: usize, n: usize) -> Vec<u8> {
    numbered("l", from, n)
}

#[test]
fn a_change_to_a_server_on_the_same_address_keeps_the_clients() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sock");
    let reg = Registry::new().unwrap();
    let evs = client_events(&reg);
    let spec = |writers| with_backlog(with_clients(unix_server(&path), 4, writers), 1 << 20);
    reg.add("h", spec(None)).unwrap();
    let (fe, seen) = attach(&reg, "h");
    let want = Arc::new(lines(0, 20_000));
    let a = Checker::new(unix_client(&path), want.clone());
    let b = Checker::new(unix_client(&path), want.clone());
    wait_until("both served", || connected(&evs) == 2);
    // Output goes on from another thread while the backend changes 200
    // times: every line reaches both clients once, in order.
    let writer = {
        let fe = fe.clone();
        std::thread::spawn(move || {
            for i in 0..20_000 {
                fe.write_all(&lines(i, 1)).unwrap();
            }
        })
    };
    for i in 0..200u64 {
        reg.change("h", spec(Some(i % 3))).unwrap();
    }
    writer.join().unwrap();
    wait_until("both have every line", || {
        a.len() == want.len() && b.len() == want.len()
    });
    assert_eq!(reg.stats("h").unwrap().changes, 200);
    assert_eq!(connected(&evs), 2, "nobody reconnected");
    assert!(
        !evs.lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, RegistryEvent::ClientDisconnected { .. })),
        "nobody left"
    );
    // The last spec let 1 of them write (i = 199: 199 % 3 = 1).
    let info = clients_of(&reg, "h");
    assert_eq!(info.max_writers, 1);
    assert_eq!(
        info.clients.iter().map(|c| c.writer).collect::<Vec<_>>(),
        [true, false]
    );
    assert_eq!(seen.lock().unwrap().changes, 200);
    fe.detach();
    let shut = reg.clone();
    std::thread::spawn(move || shut.shutdown()).join().unwrap();
    assert_eq!(a.finish_ok(), want.len());
    assert_eq!(b.finish_ok(), want.len());
}

#[test]
fn one_client_servers_hand_over_too_and_catch_up_from_many() {
    let _one = one_at_a_time();
    let reg = Registry::new().unwrap();
    let evs = client_events(&reg);
    // TCP: QEMU cannot bind the same port again; here the listener moves.
    reg.add("o", with_backlog(tcp_server(0), 1 << 20)).unwrap();
    let port = server_port(&reg, "o");
    let same = |clients: Option<u64>| {
        let spec = with_backlog(tcp_server(port), 1 << 20);
        match clients {
            Some(n) => with_clients(spec, n, None),
            None => spec,
        }
    };
    let (fe, _seen) = attach(&reg, "o");
    let mut c = connect_tcp(port);
    bounded_tcp(&c);
    fe.write_all(b"one;").unwrap();
    assert_eq!(read_n(&mut c, 4), b"one;");
    // One client to one client: still connected.
    reg.change("o", same(None)).unwrap();
    fe.write_all(b"two;").unwrap();
    assert_eq!(read_n(&mut c, 4), b"two;");
    // To many clients: it is one of them; a new one gets the history.
    reg.change("o", same(Some(3))).unwrap();
    fe.write_all(b"three;").unwrap();
    assert_eq!(read_n(&mut c, 6), b"three;");
    let mut d = connect_tcp(port);
    bounded_tcp(&d);
    assert_eq!(read_n(&mut d, 14), b"one;two;three;");
    wait_until("d served", || connected(&evs) == 1);
    // Back to one client: the oldest stays, the other is told by an event
    // and closed.
    reg.change("o", same(None)).unwrap();
    fe.write_all(b"four;").unwrap();
    assert_eq!(read_n(&mut c, 5), b"four;");
    let mut rest = Vec::new();
    d.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    wait_until("d's end reported", || {
        evs.lock().unwrap().iter().any(|e| {
            matches!(e, RegistryEvent::ClientDisconnected { reason, clients: 1, .. }
                if reason == "changed")
        })
    });
    assert_eq!(
        filename(&reg, "o"),
        format!(
            "tcp:127.0.0.1:{port},server=on <-> 127.0.0.1:{}",
            c.local_addr().unwrap().port()
        )
    );
    fe.detach();
    reg.shutdown();
}

#[test]
fn a_client_handed_to_one_client_server_first_gets_what_it_had_not_read() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sock");
    let reg = Registry::new().unwrap();
    let evs = client_events(&reg);
    reg.add("c", with_clients(unix_server(&path), 2, None))
        .unwrap();
    let (fe, _seen) = attach(&reg, "c");
    let slow = unix_client(&path);
    wait_until("served", || connected(&evs) == 1);
    // More than its socket holds: the rest waits in the history.
    let stream = lines(0, 100_000);
    fe.write_all(&stream).unwrap();
    sent(&reg, "c");
    wait_until("it is behind", || {
        clients_of(&reg, "c").clients[0].behind > 0
    });
    reg.change("c", unix_server(&path)).unwrap();
    fe.write_all(b"after").unwrap();
    let mut want = stream.clone();
    want.extend_from_slice(b"after");
    let got = Checker::new(slow, Arc::new(want.clone()));
    wait_until("everything, in order", || got.len() == want.len());
    fe.detach();
    reg.shutdown();
    assert_eq!(got.finish_ok(), want.len());
}

#[test]
fn clients_of_another_framing_are_closed_and_a_refused_change_keeps_them() {
    let _one = one_at_a_time();
    let reg = Registry::new().unwrap();
    let evs = client_events(&reg);
    reg.add("f", with_clients(telnet_server(0), 2, None))
        .unwrap();
    let port = server_port(&reg, "f");
    let fe = reg.attach("f").unwrap();
    let (r, _seen) = Recorder::new(true);
    let refuse = r.refuse.clone();
    fe.set_handlers(Box::new(r));
    let mut t = connect_tcp(port);
    bounded_tcp(&t);
    assert_eq!(read_n(&mut t, 12)[0], 0xff);
    wait_until("served", || connected(&evs) == 1);
    // A frontend that refuses: the old backend gets its listener and its
    // client back.
    *refuse.lock().unwrap() = Some("not now".into());
    let raw = with_clients(tcp_server(port), 2, None);
    assert!(reg.change("f", raw.clone()).is_err());
    *refuse.lock().unwrap() = None;
    fe.write_all(b"\xff").unwrap();
    assert_eq!(read_n(&mut t, 2), b"\xff\xff", "still telnet, still here");
    // Telnet to raw: the telnet client cannot stay.
    reg.change("f", raw).unwrap();
    let mut rest = Vec::new();
    t.read_to_end(&mut rest).unwrap();
    wait_until("its end reported", || {
        evs.lock().unwrap().iter().any(|e| {
            matches!(e, RegistryEvent::ClientDisconnected { reason, clients: 0, .. }
                if reason == "changed")
        })
    });
    let mut raw_client = connect_tcp(port);
    bounded_tcp(&raw_client);
    fe.write_all(b"raw").unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"raw") {
        let mut b = [0u8; 1];
        raw_client.read_exact(&mut b).unwrap();
        got.push(b[0]);
    }
    fe.detach();
    reg.shutdown();
}
