//! The local backends over real files, FIFOs and ptys.

mod support;

use std::io::{Read, Write};

use qchar_chardev::spec::{ChardevBackend, ChardevCommon, ChardevHostdev};
use qchar_chardev::{ChardevEvent, Registry};
use qchar_testkit::{fd_count, mkfifo, wait_until};
use support::*;

/// Opens a pty slave in raw mode, as a terminal program would set it up
/// (Linux resets a pty's settings when its last opener closes).
fn open_raw(path: &str) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    // SAFETY: tcgetattr/cfmakeraw/tcsetattr work on a termios we own and a
    // descriptor that stays open for the calls.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(f.as_raw_fd(), &mut t), 0);
        libc::cfmakeraw(&mut t);
        assert_eq!(libc::tcsetattr(f.as_raw_fd(), libc::TCSANOW, &t), 0);
    }
    f
}

fn pty_spec() -> ChardevBackend {
    ChardevBackend::Pty(ChardevCommon::default())
}

#[test]
fn pty_is_usable_without_a_slave_and_talks_once_one_opens() {
    let reg = Registry::new().unwrap();
    let path = reg.add("p", pty_spec()).unwrap().pty.unwrap();
    let fe = reg.attach("p").unwrap();
    let (rec, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(rec));
    // No slave: writes are taken (and dropped, as QEMU does), nothing blocks.
    for _ in 0..100 {
        fe.write_all(&[b'z'; 1024]).unwrap();
    }
    wait_until("dropped output drained", || {
        reg.stats("p").unwrap().queued == 0
    });
    assert!(!fe.is_open());

    let mut slave = open_raw(&path);
    wait_until("OPENED after the slave opens", || {
        seen.lock().unwrap().events.contains(&ChardevEvent::Opened)
    });
    fe.write_all(b"to slave").unwrap();
    let mut buf = [0u8; 8];
    slave.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"to slave", "raw mode: bytes arrive unaltered");
    slave.write_all(b"from slave\n").unwrap();
    wait_until("input from the slave", || {
        seen.lock().unwrap().input == b"from slave\n"
    });
    drop(slave);
    wait_until("CLOSED when the slave goes", || {
        seen.lock().unwrap().events.contains(&ChardevEvent::Closed)
    });
    // And again: a second opener is noticed too.
    let _slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    wait_until("OPENED again", || {
        seen.lock()
            .unwrap()
            .events
            .iter()
            .filter(|e| **e == ChardevEvent::Opened)
            .count()
            == 2
    });
    reg.shutdown();
}

#[test]
fn pty_left_by_a_change_keeps_its_output_until_the_slave_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    let path = reg.add("p", pty_spec()).unwrap().pty.unwrap();
    let fe = reg.attach("p").unwrap();
    let (rec, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(rec));
    let mut slave = open_raw(&path);
    wait_until("OPENED", || {
        seen.lock().unwrap().events.contains(&ChardevEvent::Opened)
    });
    // Output the slave has not read yet when the console moves on.
    let sent: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
    fe.write_all(&sent).unwrap();
    wait_until("all handed to the pty", || {
        reg.stats("p").unwrap().queued == 0
    });
    reg.change("p", support::file_spec(&dir.path().join("next")))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < sent.len() {
        match slave.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => panic!("after {} bytes: {other:?}", got.len()),
        }
    }
    assert!(
        got == sent,
        "the slave read what was sent before the change"
    );
    reg.shutdown();
}

#[test]
fn pty_backlog_replays_output_made_before_the_slave_opened() {
    let reg = Registry::new().unwrap();
    let spec = ChardevBackend::Pty(ChardevCommon {
        backlog: Some(8),
        ..Default::default()
    });
    let path = reg.add("p", spec).unwrap().pty.unwrap();
    let fe = reg.attach("p").unwrap();
    fe.write_all(b"0123456789abcdef").unwrap();
    wait_until("output parked in the backlog", || {
        reg.stats("p").unwrap().queued == 0
    });
    let mut slave = open_raw(&path);
    let mut buf = [0u8; 8];
    slave.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"89abcdef", "the newest 8 bytes, in order");
    reg.shutdown();
}

#[test]
fn pipe_pair_carries_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("p");
    mkfifo(&dir.path().join("p.in"));
    mkfifo(&dir.path().join("p.out"));
    let reg = Registry::new().unwrap();
    let spec = ChardevBackend::Pipe(ChardevHostdev {
        device: base.to_string_lossy().into_owned(),
        ..Default::default()
    });
    reg.add("p", spec).unwrap();
    assert_eq!(reg.query()[0].filename, "pipe");
    let fe = reg.attach("p").unwrap();
    let (rec, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(rec));
    let mut to_qchar = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("p.in"))
        .unwrap();
    let mut from_qchar = std::fs::File::open(dir.path().join("p.out")).unwrap();
    to_qchar.write_all(b"in").unwrap();
    wait_until("pipe input", || seen.lock().unwrap().input == b"in");
    fe.write_all(b"out").unwrap();
    let mut buf = [0u8; 3];
    from_qchar.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"out");
    reg.shutdown();
}

#[test]
fn pipe_without_fifos_is_refused_with_qemus_text() {
    let reg = Registry::new().unwrap();
    let spec = ChardevBackend::Pipe(ChardevHostdev {
        device: "/nonexistent/p".into(),
        ..Default::default()
    });
    let e = reg.add("p", spec).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Could not open '/nonexistent/p': No such file or directory"
    );
    assert!(reg.query().is_empty());
    reg.shutdown();
}

#[test]
fn file_input_is_read_then_closed_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::write(&input, b"typed").unwrap();
    let reg = Registry::new().unwrap();
    reg.add("f", file_in_spec(&dir.path().join("out"), &input))
        .unwrap();
    let fe = reg.attach("f").unwrap();
    let (rec, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(rec));
    wait_until("input then CLOSED", || {
        let s = seen.lock().unwrap();
        s.input == b"typed" && s.events.contains(&ChardevEvent::Closed)
    });
    reg.shutdown();
}

#[test]
fn file_append_keeps_old_content() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::write(&out, b"old ").unwrap();
    let reg = Registry::new().unwrap();
    let spec = ChardevBackend::File(qchar_chardev::spec::ChardevFile {
        out: out.to_string_lossy().into_owned(),
        append: Some(true),
        ..Default::default()
    });
    reg.add("f", spec).unwrap();
    reg.attach("f").unwrap().write_all(b"new").unwrap();
    wait_until("appended", || read(&out) == b"old new");
    // Without append the file is truncated.
    reg.add("g", file_spec(&out)).unwrap();
    wait_until("truncated", || read(&out).is_empty());
    reg.shutdown();
}

#[test]
fn ringbuf_size_is_checked_and_oldest_bytes_overwritten() {
    let reg = Registry::new().unwrap();
    let e = reg.add("r", ringbuf_spec(1000)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "size of ringbuf chardev must be power of two"
    );
    assert!(reg.query().is_empty());
    reg.add("r", ringbuf_spec(8)).unwrap();
    let fe = reg.attach("r").unwrap();
    fe.write_all(b"0123456789").unwrap();
    assert_eq!(reg.ringbuf_read("r", 100).unwrap(), b"23456789");
    reg.ringbuf_write("r", b"xy").unwrap();
    assert_eq!(reg.ringbuf_read("r", 1).unwrap(), b"x");
    assert_eq!(reg.ringbuf_read("r", 1).unwrap(), b"y");
    reg.add("n", ChardevBackend::Null(ChardevCommon::default()))
        .unwrap();
    assert_eq!(
        reg.ringbuf_read("n", 1).unwrap_err().to_string(),
        "n is not a ringbuf device"
    );
    reg.shutdown();
}

#[test]
fn add_and_remove_leave_no_descriptor_behind() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    // Warm up lazily created runtime descriptors first.
    reg.add("w", pty_spec()).unwrap();
    reg.remove("w").unwrap();
    let before = fd_count();
    for i in 0..200 {
        reg.add("x", pty_spec()).unwrap();
        reg.change("x", file_spec(&dir.path().join(format!("f{}", i % 3))))
            .unwrap();
        reg.remove("x").unwrap();
    }
    wait_until("descriptors back to start", || fd_count() <= before);
    reg.shutdown();
}

#[test]
fn backlog_survives_a_change_and_reaches_the_next_peer() {
    let reg = Registry::new().unwrap();
    let spec = ChardevBackend::Pty(ChardevCommon {
        backlog: Some(64),
        ..Default::default()
    });
    reg.add("p", spec).unwrap();
    let fe = reg.attach("p").unwrap();
    let (rec, _seen) = Recorder::new(true);
    fe.set_handlers(Box::new(rec));
    fe.write_all(b"kept for later ").unwrap();
    wait_until("output parked in the backlog", || {
        reg.stats("p").unwrap().queued == 0
    });
    // Change to another pty without a backlog of its own: the kept bytes
    // move with the change and reach whoever opens the new slave.
    let path = reg.change("p", pty_spec()).unwrap().pty.unwrap();
    let mut slave = open_raw(&path);
    let mut buf = [0u8; 15];
    slave.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"kept for later ");
    reg.shutdown();
}

/// A NUL in a path (a QMP client's `\u0000`) is refused with a clear
/// error, nothing is created, and the directory stays as it was: QEMU
/// would put the bytes C0 80 in its place (docs/differences.md,
/// `nul-in-paths`).
#[test]
fn a_nul_in_a_path_is_refused_and_creates_nothing() {
    use qchar_chardev::spec::{ChardevFile, ChardevSocket, SocketAddressLegacy, UnixSocketAddress};
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| format!("{}/{name}", dir.path().display());
    let reg = Registry::new().unwrap();
    let nul_msg = "file name contained an unexpected NUL byte";
    let file = ChardevBackend::File(ChardevFile {
        out: p("f\0x"),
        ..Default::default()
    });
    let e = reg.add("f", file).unwrap_err().to_string();
    assert_eq!(e, format!("Could not open '{}': {nul_msg}", p("f\0x")));
    let hostdev = ChardevHostdev {
        device: p("d\0x"),
        ..Default::default()
    };
    for spec in [
        ChardevBackend::Pipe(hostdev.clone()),
        ChardevBackend::Serial(hostdev.clone()),
    ] {
        let e = reg.add("d", spec).unwrap_err().to_string();
        assert_eq!(e, format!("Could not open '{}': {nul_msg}", p("d\0x")));
    }
    let logged = ChardevBackend::Null(ChardevCommon {
        logfile: Some(p("l\0x")),
        ..Default::default()
    });
    let e = reg.add("l", logged).unwrap_err().to_string();
    assert_eq!(e, format!("Could not create '{}': {nul_msg}", p("l\0x")));
    let mut sock = ChardevSocket::new(
        SocketAddressLegacy::Unix(UnixSocketAddress {
            path: p("s\0x"),
            abstract_: None,
            tight: None,
        }),
        true,
    );
    sock.wait = Some(false);
    let sock = ChardevBackend::Socket(sock);
    let e = reg.add("s", sock).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("UNIX socket path '{}' contains a NUL byte", p("s\0x"))
    );
    assert!(reg.query().is_empty());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    reg.shutdown();
}

/// Found by differential fuzzing: added from options (`-chardev`, HMP
/// `chardev-add`), a taken id is found only once the backend is open, as
/// in QEMU (its log file is created, a pty is named), with QEMU's text;
/// QMP's `chardev-add` checks first and opens nothing.
#[test]
fn a_taken_id_from_options_is_found_once_the_backend_is_open() {
    use qchar_chardev::opts::parse_chardev;
    use qchar_chardev::ChardevError;
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    reg.add("x", ChardevBackend::Null(ChardevCommon::default()))
        .unwrap();
    let first = dir.path().join("first.log");
    let common = ChardevCommon {
        logfile: Some(first.display().to_string()),
        ..Default::default()
    };
    let e = reg.add("x", ChardevBackend::Null(common)).unwrap_err();
    assert_eq!(e.to_string(), "Chardev with id 'x' already exists");
    assert!(!first.exists());
    let log = dir.path().join("x.log");
    let o = parse_chardev(&format!("null,id=x,logfile={}", log.display())).unwrap();
    let e = reg.add_options(&o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "attempt to add duplicate property 'x' to object (type 'container')"
    );
    assert!(log.exists());
    let e = reg
        .add_options(&parse_chardev("pty,id=x").unwrap())
        .unwrap_err();
    assert!(
        matches!(&e, ChardevError::DuplicateProperty { id, pty: Some(p) } if id == "x" && p.starts_with("/dev/pts/")),
        "{e:?}"
    );
    // mux=on: the base's id first, and nothing is left of a half-made pair.
    reg.add_options(&parse_chardev("null,id=m,mux=on").unwrap())
        .unwrap();
    let e = reg
        .add_options(&parse_chardev("null,id=m,mux=on").unwrap())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "attempt to add duplicate property 'm-base' to object (type 'container')"
    );
    let e = reg
        .add_options(&parse_chardev("null,id=x,mux=on").unwrap())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "attempt to add duplicate property 'x' to object (type 'container')"
    );
    let mut ids: Vec<String> = reg.query().into_iter().map(|c| c.label).collect();
    ids.sort();
    assert_eq!(ids, ["m", "m-base", "x"]);
    reg.shutdown();
}
