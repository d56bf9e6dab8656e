//! The `udp` backend on loopback.

#[path = "support/net.rs"]
mod net;
mod support;

use std::net::UdpSocket;
use std::time::Duration;

use net::*;
use qchar_chardev::spec::ChardevBackend;
use qchar_chardev::Registry;
use qchar_testkit::wait_until;
use support::Recorder;

#[test]
fn datagrams_both_ways_with_a_fixed_local_port() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let peer_port = peer.local_addr().unwrap().port();
    let local = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let reg = Registry::new().unwrap();
    reg.add("u", udp(peer_port, Some(local))).unwrap();
    assert_eq!(filename(&reg, "u"), "udp");
    let fe = reg.attach("u").unwrap();
    let (r, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    assert!(fe.is_open(), "udp is always open");
    fe.write_all(b"hello").unwrap();
    let mut buf = [0u8; 8192];
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(from.port(), local, "sent from localport");
    peer.send_to(b"dgram one", ("127.0.0.1", local)).unwrap();
    peer.send_to(b"+two", ("127.0.0.1", local)).unwrap();
    wait_until("input", || seen.lock().unwrap().input == b"dgram one+two");
    reg.shutdown();
}

#[test]
fn a_big_datagram_reaches_a_slow_frontend_whole() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_port = peer.local_addr().unwrap().port();
    let local = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let reg = Registry::new().unwrap();
    reg.add("u", udp(peer_port, Some(local))).unwrap();
    let fe = reg.attach("u").unwrap();
    let (mut r, seen) = Recorder::new(true);
    r.room = 100;
    fe.set_handlers(Box::new(r));
    let big: Vec<u8> = (0..30000u32).map(|i| (i % 251) as u8).collect();
    peer.send_to(&big, ("127.0.0.1", local)).unwrap();
    wait_until("all of it", || {
        seen.lock().unwrap().input.len() == big.len()
    });
    assert_eq!(seen.lock().unwrap().input, big);
    reg.shutdown();
}

#[test]
fn output_is_coalesced_into_bounded_datagrams_and_nobody_listening_is_fine() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let port = peer.local_addr().unwrap().port();
    let reg = Registry::new().unwrap();
    reg.add("u", udp(port, None)).unwrap();
    let fe = reg.attach("u").unwrap();
    let data = numbered("u", 0, 1000); // 11 kB
    fe.write_all(&data).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while got.len() < data.len() {
        let n = peer.recv(&mut buf).unwrap();
        assert!(n <= 4096, "datagrams are at most 4 KiB");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, data);
    drop(peer);
    // Nobody listening now: output is dropped, the chardev carries on.
    for _ in 0..10 {
        fe.write_all(b"into the void").unwrap();
    }
    wait_until("drained", || reg.stats("u").unwrap().queued == 0);
    reg.shutdown();
}

#[test]
fn udp_errors_are_qemus() {
    let reg = Registry::new().unwrap();
    let mut spec = udp(4444, None);
    if let ChardevBackend::Udp(u) = &mut spec {
        u.remote = inet_addr("127.0.0.1", 0);
        if let qchar_chardev::spec::SocketAddressLegacy::Inet(i) = &mut u.remote {
            i.port = "abc".into();
        }
    }
    let e = reg.add("u", spec).unwrap_err().to_string();
    assert!(
        e.starts_with("address resolution failed for 127.0.0.1:abc: "),
        "{e}"
    );
    let mut spec = udp(4444, Some(5));
    if let ChardevBackend::Udp(u) = &mut spec {
        u.local = Some(inet_addr("192.0.2.1", 5));
    }
    let e = reg.add("u", spec).unwrap_err().to_string();
    assert_eq!(e, "Failed to bind socket: Cannot assign requested address");
    reg.shutdown();
}
