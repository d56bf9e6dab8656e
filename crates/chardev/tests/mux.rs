//! `mux=on`: several frontends on one base chardev, QEMU's Ctrl-a escapes,
//! and backend changes under the mux that keep every frontend, the focus
//! and the line settings.

#[path = "support/net.rs"]
mod net;
mod support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use net::*;
use qchar_chardev::opts::ChardevOptions;
use qchar_chardev::spec::{ChardevBackend, ChardevMux};
use qchar_chardev::{
    CharFrontend, ChardevEvent, Parity, Registry, RegistryEvent, SerialIoctl, SerialParams,
};
use qchar_testkit::{connect_unix, openpty, wait_until};
use support::{count, input, Recorder, Seen};

type Shared = Arc<Mutex<Seen>>;

/// A mux `m` over a unix server, two frontends, a connected client.
struct Setup {
    reg: Registry,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    fe: [CharFrontend; 2],
    seen: [Shared; 2],
    client: UnixStream,
    drain: Drain,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mux.sock");
    let reg = Registry::new().unwrap();
    reg.add_options(&ChardevOptions {
        id: "m".into(),
        backend: unix_server(&path),
        mux: true,
    })
    .unwrap();
    let fe0 = reg.attach("m").unwrap();
    let fe1 = reg.attach("m").unwrap();
    let (r0, s0) = Recorder::new(true);
    let (r1, s1) = Recorder::new(true);
    fe0.set_handlers(Box::new(r0));
    // The last frontend to register takes the focus, as in QEMU.
    fe1.set_handlers(Box::new(r1));
    let client = connect_unix(&path);
    wait_until("both opened", || {
        count(&s0, ChardevEvent::Opened) == 1 && count(&s1, ChardevEvent::Opened) == 1
    });
    wait_until("focus on fe1", || count(&s1, ChardevEvent::MuxIn) >= 1);
    let drain = Drain::new(client.try_clone().unwrap());
    Setup {
        reg,
        _dir: dir,
        path,
        fe: [fe0, fe1],
        seen: [s0, s1],
        client,
        drain,
    }
}

#[test]
fn mux_on_makes_id_base_and_a_mux_as_qemu() {
    let s = setup();
    let ids = s.reg.ids();
    assert_eq!(ids, vec!["m-base".to_string(), "m".to_string()]);
    assert_eq!(filename(&s.reg, "m"), "mux");
    assert_eq!(
        filename(&s.reg, "m-base"),
        format!("unix:{},server=on", s.path.display())
    );
    // The base has its one frontend (the mux).
    assert!(s.reg.attach("m-base").is_err());
    let e = s
        .reg
        .add(
            "x",
            ChardevBackend::Mux(ChardevMux {
                common: Default::default(),
                chardev: "nope".into(),
            }),
        )
        .unwrap_err();
    assert_eq!(e.to_string(), "mux: base chardev nope not found");
    s.reg.shutdown();
}

#[test]
fn ctrl_a_c_moves_the_input_focus() {
    let mut s = setup();
    s.client.write_all(b"to-one").unwrap();
    wait_until("fe1 input", || input(&s.seen[1]) == b"to-one");
    s.client.write_all(b"\x01c").unwrap();
    wait_until("fe0 focused", || {
        count(&s.seen[0], ChardevEvent::MuxIn) >= 1
    });
    wait_until("fe1 unfocused", || {
        count(&s.seen[1], ChardevEvent::MuxOut) >= 1
    });
    s.client.write_all(b"to-zero").unwrap();
    wait_until("fe0 input", || input(&s.seen[0]) == b"to-zero");
    s.client.write_all(b"\x01c!").unwrap();
    wait_until("back to fe1", || input(&s.seen[1]) == b"to-one!");
    assert_eq!(input(&s.seen[0]), b"to-zero");
    // Both frontends write; output interleaves by write.
    s.fe[0].write_all(b"A").unwrap();
    s.fe[1].write_all(b"B").unwrap();
    wait_until("output", || s.drain.snapshot() == b"AB");
    s.reg.shutdown();
}

#[test]
fn escapes_break_literal_ctrl_a_unknown_and_help() {
    let mut s = setup();
    s.client.write_all(b"a\x01\x01b\x01bc\x01zd").unwrap();
    wait_until("input", || input(&s.seen[1]) == b"a\x01bcd");
    assert_eq!(count(&s.seen[1], ChardevEvent::Break), 1);
    {
        // The break came between "a\x01b" and "c".
        let seen = s.seen[1].lock().unwrap();
        assert!(seen.events.contains(&ChardevEvent::Break));
    }
    s.client.write_all(b"\x01h").unwrap();
    let help = qchar_chardev_help();
    wait_until("help text", || s.drain.snapshot() == help.as_bytes());
    assert!(help.starts_with("\n\rC-a h    print this help\n\rC-a x    exit emulator\n\r"));
    assert!(help.ends_with("C-a C-a  sends C-a\n\r"));
    s.client.write_all(b"\x01?").unwrap();
    wait_until("help again", || s.drain.len() == 2 * help.len());
    s.reg.shutdown();
}

fn qchar_chardev_help() -> String {
    [
        "\n\r",
        "C-a h    print this help\n\r",
        "C-a x    exit emulator\n\r",
        "C-a t    toggle console timestamps\n\r",
        "C-a b    send break (magic sysrq)\n\r",
        "C-a c    switch between console and monitor\n\r",
        "C-a C-a  sends C-a\n\r",
    ]
    .concat()
}

#[test]
fn ctrl_a_t_stamps_output_lines() {
    let mut s = setup();
    s.client.write_all(b"\x01t").unwrap();
    // The toggle is processed before the next byte.
    s.client.write_all(b"k").unwrap();
    wait_until("k", || input(&s.seen[1]) == b"k");
    s.fe[1].write_all(b"one\ntwo\nthree").unwrap();
    wait_until("stamped", || s.drain.snapshot().ends_with(b"three"));
    let out = String::from_utf8(s.drain.snapshot()).unwrap();
    let lines: Vec<&str> = out.split('\n').collect();
    assert_eq!(lines[0], "one", "the line in progress is not stamped");
    for (l, want) in lines[1..].iter().zip(["two", "three"]) {
        // "[00:00:00.000] two"
        assert_eq!(l.len(), 15 + want.len(), "{l:?}");
        assert!(l.starts_with("[00:00:") && l.as_bytes()[9] == b'.' && &l[13..15] == "] ");
        assert!(l.ends_with(want));
    }
    s.client.write_all(b"\x01t").unwrap();
    s.client.write_all(b"k").unwrap();
    wait_until("kk", || input(&s.seen[1]) == b"kk");
    s.fe[1].write_all(b"\nplain").unwrap();
    wait_until("plain", || s.drain.snapshot().ends_with(b"three\nplain"));
    s.reg.shutdown();
}

#[test]
fn ctrl_a_x_says_terminated_and_asks_to_quit() {
    let mut s = setup();
    let quit = Arc::new(Mutex::new(Vec::new()));
    let q2 = quit.clone();
    s.reg.subscribe(move |e| {
        if let RegistryEvent::QuitRequested(id) = e {
            q2.lock().unwrap().push(id.clone());
        }
    });
    s.client.write_all(b"\x01x").unwrap();
    wait_until("quit", || !quit.lock().unwrap().is_empty());
    assert_eq!(*quit.lock().unwrap(), vec!["m".to_string()]);
    wait_until("notice", || s.drain.snapshot() == b"QEMU: Terminated\n\r");
    s.reg.shutdown();
}

#[test]
fn change_under_the_mux_keeps_frontends_focus_and_data() {
    let mut s = setup();
    // Focus to fe0, then change the backend of "m" (the base changes).
    s.client.write_all(b"\x01c").unwrap();
    wait_until("fe0 focused", || {
        count(&s.seen[0], ChardevEvent::MuxIn) >= 1
    });
    s.fe[0].write_all(&numbered("old", 0, 100)).unwrap();
    wait_until("old data out", || s.drain.len() == 100 * 13);
    let dir2 = tempfile::tempdir().unwrap();
    let path2 = dir2.path().join("new.sock");
    let l = std::os::unix::net::UnixListener::bind(&path2).unwrap();
    s.reg.change("m", unix_client(&path2)).unwrap();
    assert_eq!(filename(&s.reg, "m"), "mux");
    assert_eq!(filename(&s.reg, "m-base"), "unix:");
    let old = s.drain.finish();
    assert_eq!(old, numbered("old", 0, 100));
    let (mut c2, _) = l.accept().unwrap();
    bounded_unix(&c2);
    // Focus stayed on fe0; output from both frontends goes to the new peer.
    c2.write_all(b"after").unwrap();
    wait_until("fe0 input", || input(&s.seen[0]) == b"after");
    let data = numbered("new", 0, 50);
    s.fe[1].write_all(&data).unwrap();
    assert_eq!(read_n(&mut c2, data.len()), data);
    // Another frontend can still take the focus on the new base.
    c2.write_all(b"\x01cX").unwrap();
    wait_until("fe1 input", || input(&s.seen[1]) == b"X");
    // A mux cannot become something else but through its base.
    let e = s
        .reg
        .change(
            "m",
            ChardevBackend::Mux(ChardevMux {
                common: Default::default(),
                chardev: "m-base".into(),
            }),
        )
        .unwrap_err();
    assert_eq!(e.to_string(), "Mux device hotswap not supported yet");
    s.reg.shutdown();
}

#[test]
fn mux_output_pushes_back_when_the_base_peer_stops_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow.sock");
    let reg = Registry::with_out_capacity(16 * 1024).unwrap();
    reg.add_options(&ChardevOptions {
        id: "m".into(),
        backend: unix_server(&path),
        mux: true,
    })
    .unwrap();
    let fe = reg.attach("m").unwrap();
    let (r, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    let c = connect_unix(&path);
    wait_until("open", || fe.is_open());
    let mut sent = Vec::new();
    let mut refused = false;
    for round in 0..100_000 {
        let block = numbered("s", round * 300, 300);
        let n = fe.write(&block);
        sent.extend_from_slice(&block[..n]);
        if n < block.len() {
            refused = true;
            break;
        }
    }
    assert!(refused, "a mux over a full peer must push back");
    assert!(reg.stats("m").unwrap().queued <= 16 * 1024);
    assert!(reg.stats("m-base").unwrap().queued <= 16 * 1024);
    let drain = Drain::new(c);
    wait_until("all delivered", || drain.len() == sent.len());
    assert_eq!(drain.snapshot(), sent);
    wait_until("write_ready", || seen.lock().unwrap().write_ready > 0);
    reg.shutdown();
}

#[test]
fn line_settings_through_the_mux_survive_a_change_of_serial_line() {
    let (_m1, slave1) = openpty();
    let (_m2, slave2) = openpty();
    let reg = Registry::new().unwrap();
    reg.add_options(&ChardevOptions {
        id: "m".into(),
        backend: serial(&slave1),
        mux: true,
    })
    .unwrap();
    let fe = reg.attach("m").unwrap();
    let (r, _seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    let p = SerialParams {
        speed: 2400,
        parity: Parity::Odd,
        data_bits: 8,
        stop_bits: 2,
    };
    fe.ioctl(SerialIoctl::SetParams(p)).unwrap();
    reg.change("m", serial(&slave2)).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&slave2)
        .unwrap();
    let t = termios(&f);
    // SAFETY: reads the speed from a termios we own.
    assert_eq!(unsafe { libc::cfgetospeed(&t) }, libc::B2400);
    assert_ne!(t.c_cflag & libc::CSTOPB, 0);
    assert_ne!(t.c_cflag & libc::PARODD, 0);
    reg.shutdown();
}

/// Input that arrives while the registry holds it (a VMM setting up) is
/// read only once the hold ends, and then meets every frontend in place: a
/// Ctrl-a c typed before the second frontend registered moves the focus
/// from that one (the last to register holds it) to the first, as in QEMU,
/// whose main loop reads nothing during set-up. Read at once, it moved the
/// focus from the first frontend to the second's empty slot, and the second
/// then took the focus by registering: the keys after it reached the wrong
/// frontend (`-nographic`: typed into the serial port, not the monitor).
#[test]
fn input_held_during_set_up_meets_every_frontend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peer.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let reg = Registry::new().unwrap();
    let hold = reg.hold_input();
    reg.add_options(&ChardevOptions {
        id: "m".into(),
        backend: unix_client(&path),
        mux: true,
    })
    .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    bounded_unix(&peer);
    let fe0 = reg.attach("m").unwrap();
    let fe1 = reg.attach("m").unwrap();
    let (r0, s0) = Recorder::new(true);
    let (r1, s1) = Recorder::new(true);
    fe0.set_handlers(Box::new(r0));
    wait_until("fe0 focused", || count(&s0, ChardevEvent::MuxIn) == 1);
    peer.write_all(b"\x01cto-zero").unwrap();
    // Output flows while input is held: once this comes back, the I/O
    // thread has run both tasks since the keys were sent.
    fe0.write_all(b"ping").unwrap();
    assert_eq!(read_n(&mut peer, 4), b"ping");
    reg.sync().unwrap();
    assert_eq!(reg.stats("m-base").unwrap().bytes_in, 0, "read while held");
    assert_eq!(count(&s0, ChardevEvent::MuxOut), 0, "escape acted on");
    fe1.set_handlers(Box::new(r1));
    wait_until("fe1 focused", || count(&s1, ChardevEvent::MuxIn) == 1);
    drop(hold);
    wait_until("fe0 input", || input(&s0) == b"to-zero");
    assert_eq!(input(&s1), b"", "fe1 got input");
    assert_eq!(count(&s1, ChardevEvent::MuxOut), 1);
    assert_eq!(count(&s0, ChardevEvent::MuxIn), 2);
    // Input is read at once again.
    peer.write_all(b"!").unwrap();
    wait_until("more fe0 input", || input(&s0) == b"to-zero!");
    reg.shutdown();
}

/// `frontend-open` of chardev `id` in `query-chardev`.
fn frontend_open(reg: &Registry, id: &str) -> bool {
    reg.query()
        .into_iter()
        .find(|c| c.label == id)
        .unwrap_or_else(|| panic!("no chardev {id}"))
        .frontend_open
}

/// Found by differential fuzzing (QEMU 7.2's answers): a mux's base counts
/// as frontend-open only once a frontend has set its handlers on the mux;
/// a chardev no frontend uses becomes the mux a change asks for (QEMU
/// re-creates it), and a mux, even without frontends, is busy.
#[test]
fn an_unused_chardev_becomes_a_mux_by_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("base.sock");
    let reg = Registry::new().unwrap();
    reg.add("b", unix_server(&path)).unwrap();
    reg.add("x", ChardevBackend::Null(Default::default()))
        .unwrap();
    let to_mux = |base: &str| {
        ChardevBackend::Mux(ChardevMux {
            common: Default::default(),
            chardev: base.into(),
        })
    };
    let e = reg.change("x", to_mux("x")).unwrap_err();
    assert_eq!(e.to_string(), "mux: base chardev x not found");
    reg.change("x", to_mux("b")).unwrap();
    assert_eq!(filename(&reg, "x"), "mux");
    assert!(!frontend_open(&reg, "x"));
    assert!(!frontend_open(&reg, "b"));
    for id in ["x", "b"] {
        assert_eq!(
            reg.remove(id).unwrap_err().to_string(),
            format!("Chardev '{id}' is busy")
        );
    }
    assert_eq!(
        reg.change("x", to_mux("b")).unwrap_err().to_string(),
        "Mux device hotswap not supported yet"
    );
    // Now a mux: two frontends share it, the base is open to them.
    let fe0 = reg.attach("x").unwrap();
    let fe1 = reg.attach("x").unwrap();
    let (r0, s0) = Recorder::new(true);
    let (r1, s1) = Recorder::new(true);
    fe0.set_handlers(Box::new(r0));
    assert!(frontend_open(&reg, "b"));
    assert!(frontend_open(&reg, "x"));
    fe1.set_handlers(Box::new(r1));
    let mut client = connect_unix(&path);
    wait_until("both opened", || {
        count(&s0, ChardevEvent::Opened) == 1 && count(&s1, ChardevEvent::Opened) == 1
    });
    client.write_all(b"in").unwrap();
    wait_until("input to the focused frontend", || input(&s1) == b"in");
    fe0.write_all(b"out").unwrap();
    assert_eq!(read_n(&mut client, 3), b"out");
    reg.shutdown();
}

/// A chardev in use does not become a mux under its frontend, and the
/// chardev stays as it was.
#[test]
fn a_chardev_in_use_does_not_become_a_mux() {
    let reg = Registry::new().unwrap();
    reg.add("b", ChardevBackend::Null(Default::default()))
        .unwrap();
    reg.add("x", ChardevBackend::Null(Default::default()))
        .unwrap();
    let _fe = reg.attach("x").unwrap();
    let e = reg
        .change(
            "x",
            ChardevBackend::Mux(ChardevMux {
                common: Default::default(),
                chardev: "b".into(),
            }),
        )
        .unwrap_err();
    assert_eq!(e.to_string(), "Mux device hotswap not supported yet");
    assert_eq!(filename(&reg, "x"), "null");
    reg.remove("b").unwrap();
    reg.shutdown();
}
