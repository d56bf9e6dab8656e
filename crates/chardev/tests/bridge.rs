//! `x-bridge`: two chardevs joined byte for byte over real sockets, with
//! backpressure both ways, a VMM side that reconnects, changes under the
//! bridge, and the refusals.

#[path = "support/net.rs"]
mod net;
mod support;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use net::*;
use qchar_chardev::bridge::{BridgeError, BridgeSpec};
use qchar_chardev::opts::{parse_chardev, ChardevOptions};
use qchar_chardev::qemuopts;
use qchar_chardev::spec::{ChardevBackend, ChardevHub};
use qchar_chardev::Registry;
use qchar_testkit::{connect_unix, wait_until};
use support::*;

fn spec(id: &str, a: &str, b: &str) -> BridgeSpec {
    BridgeSpec {
        id: id.into(),
        chardev_a: a.into(),
        chardev_b: b.into(),
    }
}

/// Two unix socket servers `a` and `b` bridged as `br`, a client on each.
fn two_servers(dir: &Path, reg: &Registry) -> (UnixStream, UnixStream) {
    let (pa, pb) = (dir.join("a.sock"), dir.join("b.sock"));
    reg.add("a", unix_server(&pa)).unwrap();
    reg.add("b", unix_server(&pb)).unwrap();
    reg.add_bridge(&spec("br", "a", "b")).unwrap();
    let (ca, cb) = (connect_unix(&pa), connect_unix(&pb));
    for id in ["a", "b"] {
        wait_until("connected", || {
            !filename(reg, id).starts_with("disconnected")
        });
    }
    (ca, cb)
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn bytes_cross_both_ways_at_once_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    let (ca, cb) = two_servers(dir.path(), &reg);
    const N: usize = 8 << 20;
    let (to_b, to_a) = (pattern(N, 1), pattern(N, 7));
    let (da, db) = (
        Drain::new(ca.try_clone().unwrap()),
        Drain::new(cb.try_clone().unwrap()),
    );
    let wa = {
        let (mut ca, d) = (ca.try_clone().unwrap(), to_b.clone());
        std::thread::spawn(move || ca.write_all(&d).unwrap())
    };
    let wb = {
        let (mut cb, d) = (cb.try_clone().unwrap(), to_a.clone());
        std::thread::spawn(move || cb.write_all(&d).unwrap())
    };
    wa.join().unwrap();
    wb.join().unwrap();
    wait_until("all crossed", || da.len() == N && db.len() == N);
    assert!(db.snapshot() == to_b, "a -> b exact");
    assert!(da.snapshot() == to_a, "b -> a exact");
    let info = &reg.bridges()[0];
    assert_eq!((info.a_to_b, info.b_to_a), (N as u64, N as u64));
    for c in [&ca, &cb] {
        c.shutdown(std::net::Shutdown::Both).unwrap();
    }
    reg.shutdown();
}

/// A reader that stops holds its writer back: the bridge stops reading
/// the other side (its data waits in the kernel), qchar's queues stay at
/// their bound; once it reads again, everything arrives, in order.
#[test]
fn backpressure_holds_the_writer_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::with_out_capacity(4096).unwrap();
    let (ca, cb) = two_servers(dir.path(), &reg);
    const N: usize = 32 << 20;
    let data = pattern(N, 3);
    let mut ca_w = ca.try_clone().unwrap();
    ca_w.set_nonblocking(true).unwrap();
    // Write until the kernel refuses: the chain a -> bridge -> b is full.
    let mut sent = 0;
    wait_until("the writer held back", || {
        match ca_w.write(&data[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let b = reg.stats("b").unwrap();
                return b.queued == 4096;
            }
            Err(e) => panic!("{e}"),
        }
        false
    });
    assert!(sent < N, "held back before the end");
    let moved = reg.stats("a").unwrap().bytes_in;
    assert!(
        moved < sent as u64,
        "a stopped reading: the rest waits in the kernel"
    );
    assert_eq!(
        reg.stats("b").unwrap().queued,
        4096,
        "b's queue at its bound"
    );
    // The reader comes back.
    let db = Drain::new(cb.try_clone().unwrap());
    ca_w.set_nonblocking(false).unwrap();
    ca_w.write_all(&data[sent..]).unwrap();
    wait_until("all through", || db.len() == N);
    assert!(db.snapshot() == data, "in order, nothing lost or repeated");
    for c in [&ca, &cb] {
        c.shutdown(std::net::Shutdown::Both).unwrap();
    }
    reg.shutdown();
}

/// The VMM side: a socket client with `reconnect-ms` to a VMM's console
/// socket (here a plain listener standing in for it). The VMM restarts
/// (its socket goes and comes back): the bridge reconnects and what the
/// VMM writes after that arrives, in order.
#[test]
fn the_vmm_side_reconnects_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let vmm_path = dir.path().join("vmm.sock");
    let user_path = dir.path().join("user.sock");
    let vmm = UnixListener::bind(&vmm_path).unwrap();
    let reg = Registry::new().unwrap();
    let o = parse_chardev(&format!(
        "socket,id=vm,path={},reconnect-ms=50",
        vmm_path.display()
    ))
    .unwrap();
    reg.add_options(&o).unwrap();
    reg.add("user", unix_server(&user_path)).unwrap();
    reg.add_bridge(&spec("br", "vm", "user")).unwrap();
    let user = connect_unix(&user_path);
    let du = Drain::new(user.try_clone().unwrap());
    let (mut con, _) = vmm.accept().unwrap();
    let mut want = numbered("boot1", 0, 500);
    con.write_all(&want).unwrap();
    wait_until("first run's lines", || du.len() == want.len());
    // Input from the user reaches the VM.
    (&user).write_all(b"root\n").unwrap();
    let mut got = [0u8; 5];
    con.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"root\n");
    // The VMM goes away and comes back on the same path.
    drop(con);
    drop(vmm);
    std::fs::remove_file(&vmm_path).unwrap();
    wait_until("the bridge saw it go", || {
        filename(&reg, "vm").starts_with("disconnected")
    });
    let vmm = UnixListener::bind(&vmm_path).unwrap();
    let (mut con, _) = vmm.accept().unwrap();
    let second = numbered("boot2", 0, 500);
    con.write_all(&second).unwrap();
    want.extend_from_slice(&second);
    wait_until("second run's lines", || du.len() == want.len());
    assert!(du.snapshot() == want, "both runs, in order");
    user.shutdown(std::net::Shutdown::Both).unwrap();
    reg.shutdown();
}

/// Either side can be changed under the bridge; output keeps flowing.
#[test]
fn a_side_changes_under_the_bridge() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::with_out_capacity(4096).unwrap();
    let pa = dir.path().join("a.sock");
    reg.add("a", unix_server(&pa)).unwrap();
    reg.add("b", file_spec(&dir.path().join("b0"))).unwrap();
    reg.add_bridge(&spec("br", "a", "b")).unwrap();
    let mut ca = connect_unix(&pa);
    let mut all = Vec::new();
    for i in 0..20 {
        let lines = numbered("x", i * 50, 50);
        ca.write_all(&lines).unwrap();
        all.extend_from_slice(&lines);
        reg.change("b", file_spec(&dir.path().join(format!("b{}", i + 1))))
            .unwrap();
    }
    let joined = || -> Vec<u8> {
        (0..=20)
            .flat_map(|i| read(&dir.path().join(format!("b{i}"))))
            .collect()
    };
    wait_until("everything in b's files", || joined().len() == all.len());
    assert!(joined() == all, "joined in change order: once, in order");
    ca.shutdown(std::net::Shutdown::Both).unwrap();
    reg.shutdown();
}

#[test]
fn bad_bridges_are_refused_and_disturb_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (out, input) = (dir.path().join("out"), dir.path().join("in"));
    std::fs::write(&input, b"ping").unwrap();
    let reg = Registry::new().unwrap();
    // a's input ("ping") goes through br into ringbuf b.
    reg.add("a", file_in_spec(&out, &input)).unwrap();
    for id in ["b", "c", "used"] {
        reg.add(id, ringbuf_spec(64)).unwrap();
    }
    reg.add(
        "h",
        ChardevBackend::Hub(ChardevHub {
            chardevs: vec!["c".into()],
            ..Default::default()
        }),
    )
    .unwrap();
    reg.add_options(&ChardevOptions {
        id: "m".into(),
        backend: ringbuf_spec(64),
        mux: true,
    })
    .unwrap();
    let user = reg.attach("used").unwrap();
    reg.add_bridge(&spec("br", "a", "b")).unwrap();
    let e = |s: BridgeSpec| reg.add_bridge(&s).unwrap_err().to_string();
    assert_eq!(
        e(spec("x", "nope", "b")),
        "Property 'x-bridge.chardev-a' can't find value 'nope'"
    );
    assert_eq!(
        e(spec("x", "c", "nope")),
        "Property 'x-bridge.chardev-b' can't find value 'nope'"
    );
    assert_eq!(
        e(spec("x", "used", "used")),
        "x-bridge 'x': chardev-a and chardev-b are both 'used'"
    );
    assert_eq!(
        e(spec("x", "h", "c")),
        "x-bridge 'x': 'c' is a member of hub 'h' already; bridging them would make a loop"
    );
    assert_eq!(
        e(spec("x", "m-base", "m")),
        "x-bridge 'x': 'm-base' is the base of mux 'm' already; bridging them would make a loop"
    );
    assert_eq!(
        e(spec("x", "used", "h")),
        "Property 'x-bridge.chardev-a' can't take value 'used': Device 'used' is in use"
    );
    assert_eq!(
        e(spec("x", "h", "a")),
        "Property 'x-bridge.chardev-b' can't take value 'a': Device 'a' is in use"
    );
    assert_eq!(
        e(spec("br", "h", "m")),
        "attempt to add duplicate property 'br' to object (type 'container')"
    );
    assert_eq!(
        e(spec("1x", "h", "m")),
        "Parameter 'id' expects an identifier"
    );
    assert_eq!(
        reg.remove_bridge("nope").unwrap_err(),
        BridgeError::NotFound("nope".into())
    );
    assert_eq!(
        reg.remove("a").unwrap_err().to_string(),
        "Chardev 'a' is busy"
    );
    // Nothing disturbed: the refused bridges hold nothing, br still works.
    assert_eq!(reg.bridges().len(), 1);
    reg.attach("h").expect("h free").detach();
    wait_until("through br", || {
        reg.ringbuf_read("b", 64).unwrap() == b"ping"
    });
    reg.remove_bridge("br").unwrap();
    reg.attach("a").expect("a free after object-del").detach();
    reg.attach("b").expect("b free after object-del").detach();
    user.detach();
    reg.shutdown();
}

/// The `-object` form, QEMU's texts for its mistakes.
#[test]
fn object_option_form() {
    let parse = |s: &str| {
        let mut w = Vec::new();
        let o = qemuopts::parse(&qchar_chardev::bridge::OBJECT_OPTS, s, &mut w)
            .map_err(|e| e.to_string())?;
        BridgeSpec::from_opts(&o).map_err(|e| e.to_string())
    };
    assert_eq!(
        parse("x-bridge,id=br,chardev-a=vm,chardev-b=user"),
        Ok(spec("br", "vm", "user"))
    );
    assert_eq!(
        parse("tls-creds-x509,id=t"),
        Err("invalid object type: tls-creds-x509".into())
    );
    assert_eq!(
        parse("x-bridge,chardev-a=a,chardev-b=b"),
        Err("Parameter 'id' is missing".into())
    );
    assert_eq!(
        parse("x-bridge,id=br,chardev-a=a"),
        Err("Parameter 'chardev-b' is missing".into())
    );
    assert_eq!(
        parse("x-bridge,id=br,chardev-a=a,chardev-b=b,bogus=1"),
        Err("Invalid parameter 'bogus'".into())
    );
}
