//! Misbehaving peers: connection storms, oversized and broken websocket
//! frames, garbage, resets. The process must keep its descriptors and
//! memory bounded and keep serving the next client.

#[path = "support/net.rs"]
mod net;
mod support;

use std::io::{Read, Write};

use net::*;
use qchar_chardev::spec::ChardevBackend;
use qchar_chardev::{ChardevEvent, Registry};
use qchar_testkit::{connect_unix, fd_count, one_at_a_time, wait_until};
use support::{count, Recorder};

#[test]
fn disconnect_storm_leaves_no_descriptor_behind() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("storm.sock");
    let reg = Registry::new().unwrap();
    reg.add("s", unix_server(&path)).unwrap();
    let fe = reg.attach("s").unwrap();
    let (r, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    // Warm up (lazy allocations of the runtime), then count.
    drop(connect_unix(&path));
    wait_until("warm-up closed", || count(&seen, ChardevEvent::Closed) == 1);
    let before = fd_count();
    const CYCLES: usize = 10_000;
    for i in 0..CYCLES {
        let mut c = connect_unix(&path);
        if i % 3 == 0 {
            let _ = c.write_all(b"x");
        }
        drop(c);
    }
    wait_until("every client seen and gone", || {
        count(&seen, ChardevEvent::Closed) == CYCLES + 1
    });
    wait_until("descriptors back", || fd_count() <= before);
    assert_eq!(fd_count(), before);
    // Still serving.
    let mut c = connect_unix(&path);
    bounded_unix(&c);
    wait_until("open", || fe.is_open());
    fe.write_all(b"alive").unwrap();
    assert_eq!(read_n(&mut c, 5), b"alive");
    reg.shutdown();
}

#[test]
fn tcp_disconnect_storm_with_resets() {
    let _serial = one_at_a_time();
    let reg = Registry::new().unwrap();
    reg.add("t", tcp_server(0)).unwrap();
    let port = server_port(&reg, "t");
    let fe = reg.attach("t").unwrap();
    let (r, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    drop(connect_tcp(port));
    wait_until("warm-up closed", || count(&seen, ChardevEvent::Closed) == 1);
    let before = fd_count();
    const CYCLES: usize = 500;
    for i in 0..CYCLES {
        let c = connect_tcp(port);
        // One client at a time with a listen backlog of 1 (as QEMU): a
        // burst beyond it would only measure SYN retransmission timers.
        wait_until("accepted", || count(&seen, ChardevEvent::Opened) == i + 2);
        if i % 2 == 0 {
            // Linger 0: the close is a reset.
            set_reset_on_close(&c);
        }
        drop(c);
    }
    wait_until("all gone", || {
        count(&seen, ChardevEvent::Closed) == CYCLES + 1
    });
    wait_until("descriptors back", || fd_count() <= before);
    reg.shutdown();
}

/// Sets SO_LINGER to zero so closing sends a reset.
fn set_reset_on_close(s: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: passes a linger struct we own with its size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

#[test]
fn oversized_websocket_frame_closes_that_connection_only() {
    let _serial = one_at_a_time();
    let reg = Registry::new().unwrap();
    let port = ws_server(&reg, "w");
    let fe = reg.attach("w").unwrap();
    let (r, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    let mut c = connect_tcp(port);
    bounded_tcp(&c);
    assert!(ws_handshake(&mut c, Some("binary")).starts_with("HTTP/1.1 101"));
    wait_until("open", || fe.is_open());
    c.write_all(&ws_frame(2, b"ok")).unwrap();
    // Announce a 1 GiB frame.
    let mut hdr = vec![0x82, 0x80 | 127];
    hdr.extend_from_slice(&(1u64 << 30).to_be_bytes());
    hdr.extend_from_slice(&[1, 2, 3, 4]);
    c.write_all(&hdr).unwrap();
    let _ = c.write_all(&[0u8; 4096]);
    // A close frame with status 1009 (message too big), then the end.
    let mut saw_close = None;
    while let Some((op, p)) = ws_read_frame(&mut c) {
        if op == 8 {
            saw_close = Some(p);
            break;
        }
    }
    assert_eq!(saw_close, Some(1009u16.to_be_bytes().to_vec()));
    wait_until("closed", || count(&seen, ChardevEvent::Closed) == 1);
    assert_eq!(seen.lock().unwrap().input, b"ok");
    // The next client is accepted and served.
    let mut c2 = connect_tcp(port);
    bounded_tcp(&c2);
    assert!(ws_handshake(&mut c2, Some("binary")).starts_with("HTTP/1.1 101"));
    wait_until("reopened", || count(&seen, ChardevEvent::Opened) == 2);
    fe.write_all(b"next").unwrap();
    assert_eq!(ws_read_frame(&mut c2), Some((2, b"next".to_vec())));
    reg.shutdown();
}

#[test]
fn websocket_garbage_and_unmasked_frames_are_refused() {
    let _serial = one_at_a_time();
    let reg = Registry::new().unwrap();
    let port = ws_server(&reg, "w");
    let fe = reg.attach("w").unwrap();
    let (r, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    // A handshake that never ends: refused at the size limit.
    let mut c = connect_tcp(port);
    bounded_tcp(&c);
    let _ = c.write_all(&vec![b'A'; 8192]);
    let mut sink = Vec::new();
    let _ = c.read_to_end(&mut sink);
    // Binary garbage as a request.
    let mut c = connect_tcp(port);
    bounded_tcp(&c);
    let _ = c.write_all(b"\x00\xff\xfe\r\n\r\n");
    let mut resp = Vec::new();
    let _ = c.read_to_end(&mut resp);
    assert!(resp.starts_with(b"HTTP/1.1 400"));
    // An unmasked frame after a good handshake.
    let mut c = connect_tcp(port);
    bounded_tcp(&c);
    assert!(ws_handshake(&mut c, Some("binary")).starts_with("HTTP/1.1 101"));
    wait_until("open", || fe.is_open());
    c.write_all(&[0x82, 0x01, b'x']).unwrap();
    let mut op = None;
    while let Some((o, _)) = ws_read_frame(&mut c) {
        if o == 8 {
            op = Some(o);
            break;
        }
    }
    assert_eq!(op, Some(8));
    wait_until("closed", || count(&seen, ChardevEvent::Closed) == 1);
    assert!(seen.lock().unwrap().input.is_empty());
    reg.shutdown();
}

#[test]
fn telnet_garbage_never_hurts() {
    let _serial = one_at_a_time();
    let reg = Registry::new().unwrap();
    let mut spec = socket(inet_addr("127.0.0.1", 0), true);
    spec.telnet = Some(true);
    reg.add("t", ChardevBackend::Socket(spec)).unwrap();
    let port = server_port(&reg, "t");
    let fe = reg.attach("t").unwrap();
    let (r, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    let mut c = connect_tcp(port);
    wait_until("open", || fe.is_open());
    // Pseudo-random bytes, heavy on 0xff and command codes.
    let mut x: u32 = 12345;
    let mut data = Vec::new();
    for _ in 0..200_000 {
        x = x.wrapping_mul(1103515245).wrapping_add(12345);
        let b = (x >> 16) as u8;
        data.push(if b % 4 == 0 { 0xff } else { b });
    }
    // An unterminated subnegotiation swallows the rest, which is fine.
    c.write_all(&data).unwrap();
    drop(c);
    wait_until("closed", || count(&seen, ChardevEvent::Closed) == 1);
    assert!(seen.lock().unwrap().input.len() <= data.len());
    reg.shutdown();
}

#[test]
fn peer_reset_mid_output_is_survived() {
    let _serial = one_at_a_time();
    let reg = Registry::new().unwrap();
    reg.add("t", tcp_server(0)).unwrap();
    let port = server_port(&reg, "t");
    let fe = reg.attach("t").unwrap();
    let (r, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    let c = connect_tcp(port);
    wait_until("open", || fe.is_open());
    let writer = {
        let fe = fe.clone();
        std::thread::spawn(move || {
            let chunk = vec![b'q'; 65536];
            for _ in 0..64 {
                if fe.write_all(&chunk).is_err() {
                    break;
                }
            }
        })
    };
    // Mid-output: the backend has started sending.
    wait_until("output under way", || reg.stats("t").unwrap().bytes_out > 0);
    set_reset_on_close(&c);
    drop(c);
    writer.join().unwrap();
    wait_until("closed", || count(&seen, ChardevEvent::Closed) == 1);
    // With no peer the old output is dropped (as QEMU); it must be gone
    // before the next client comes, or that client would rightly get it.
    wait_until("old output drained", || reg.stats("t").unwrap().queued == 0);
    let mut c2 = connect_tcp(port);
    bounded_tcp(&c2);
    wait_until("reopened", || count(&seen, ChardevEvent::Opened) == 2);
    fe.write_all(b"fresh").unwrap();
    let got = read_n(&mut c2, 5);
    assert_eq!(got, b"fresh");
    reg.shutdown();
}
