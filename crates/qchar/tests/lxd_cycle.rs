//! LXD's (and Incus') console cycle, replayed against qchar with the demo
//! guest printing numbered lines on its serial console:
//!
//! 1. the console is a `ringbuf` of 1 MiB; `ringbuf-read` until it is empty;
//! 2. a unix socket is bound and passed with `getfd consoleSocket`;
//! 3. `chardev-change` of the console to a server on that descriptor
//!    (`{"type": "fd", "data": {"str": "consoleSocket"}}`, `wait: false`);
//! 4. a client connects and reads the guest's output through it;
//! 5. `chardev-change` back to a `ringbuf` of 1 MiB; the client reads what
//!    the socket still had, to its end.
//!
//! After 1,000 rounds every line is found exactly once and in order in the
//! ring reads and socket reads joined in their order, and qchar holds the
//! descriptors it held before the first round. QEMU 7.2 loses lines at each
//! swap (the ring's unread tail, and what is written before the client
//! connects): qchar keeps them for the new backend (README, "Where qchar
//! goes further").
//! Where QEMU is installed, a few rounds against it check that its replies
//! are the same.

mod common;

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use common::{argv, check_demo_stream, normalise, p, tempdir, Proc, RawQmp};
use qchar_testkit::{proc_fds, require, wait_until, Prereq, WAIT};
use serde_json::{json, Value};

/// Rounds against qchar.
const ROUNDS: usize = 1000;
/// Rounds against QEMU (its replies only).
const QEMU_ROUNDS: usize = 5;
/// Bytes the client reads through the socket before the console goes back.
const SOCKET_BYTES: usize = 200;

/// `ringbuf-read` of the console until it is empty.
fn drain_ring(q: &mut RawQmp) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let r = q.exec(
            &json!({"execute": "ringbuf-read", "arguments":
                {"device": "console", "size": 65536, "format": "base64"}}),
            &[],
        );
        let v: Value = serde_json::from_str(&r).unwrap();
        let data = v["return"].as_str().unwrap_or_else(|| panic!("{r}"));
        if data.is_empty() {
            return out;
        }
        out.extend(base64_decode(data));
    }
}

/// Standard base64 (what QEMU's `ringbuf-read` answers).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let n = chunk.iter().filter(|&&c| c != b'=').count();
        let mut v = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            if c != b'=' {
                v |= u32::from(val(c)) << (18 - 6 * i);
            }
        }
        out.extend(&v.to_be_bytes()[1..n]);
    }
    out
}

/// One round of the cycle (steps 2 to 5), the client reading at least
/// `min` bytes through the socket; returns what the socket gave and the
/// replies, masked.
fn round(q: &mut RawQmp, d: &Path, min: usize) -> (Vec<u8>, Vec<String>) {
    let path = p(d, "console.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let mut replies = Vec::new();
    replies.push(q.exec(
        &json!({"execute": "getfd", "arguments": {"fdname": "consoleSocket"}}),
        &[listener.as_fd()],
    ));
    replies.push(q.exec(
        &json!({"execute": "chardev-change", "arguments": {"id": "console", "backend":
            {"type": "socket", "data": {"addr": {"type": "fd", "data": {"str": "consoleSocket"}},
            "server": true, "wait": false}}}}),
        &[],
    ));
    replies.push(normalise(
        &q.exec(&json!({"execute": "query-chardev"}), &[]),
        d,
    ));
    let mut client = UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while got.len() < min {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "the console's socket ended early");
        got.extend_from_slice(&buf[..n]);
    }
    replies.push(q.exec(
        &json!({"execute": "chardev-change", "arguments": {"id": "console", "backend":
            {"type": "ringbuf", "data": {"size": 1048576}}}}),
        &[],
    ));
    replies.push(format!(
        "socket file there after the change: {}",
        path.exists()
    ));
    // LXD closes its copy of the listener after the change back; a client
    // still in its queue (never taken) is then refused.
    drop(listener);
    // What the socket took before the change is the client's: to the end.
    let r = client.read_to_end(&mut got);
    if min > 0 {
        r.unwrap();
    }
    (got, replies)
}

/// Starts `program` with the demo guest on a 1 MiB ring console.
fn start(program: &str, image: &str, d: &Path) -> (Proc, RawQmp) {
    let line = format!(
        "-nodefaults -display none -machine pc -accel kvm -m 32 \
         -chardev ringbuf,id=console,size=1048576 -device isa-serial,chardev=console \
         {image} -qmp unix:$D/qmp,server=on,wait=off"
    );
    let proc = Proc::spawn_program(program, &argv(&line, d), d);
    let q = RawQmp::connect(&p(d, "qmp"));
    (proc, q)
}

#[test]
fn lxd_console_cycle_keeps_every_line() {
    if !require(Prereq::Kvm) {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    let (mut proc, mut q) = start(common::qchar_bin(), "-fda builtin:demo", d);
    let mut stream = Vec::new();
    let fds_start = proc_fds(proc.pid()).len();
    let ok = "{\"return\": {}}\r\n";
    for i in 0..ROUNDS {
        stream.extend(drain_ring(&mut q));
        let (got, replies) = round(&mut q, d, SOCKET_BYTES);
        stream.extend(got);
        assert_eq!(replies[0], ok);
        assert_eq!(replies[1], ok);
        assert!(
            replies[2].contains(
                "{\"frontend-open\": true, \"filename\": \"disconnected:unix:$D/console.sock,server=on\", \"label\": \"console\"}"
            ),
            "{}",
            replies[2]
        );
        assert_eq!(replies[3], ok);
        assert_eq!(
            replies[4], "socket file there after the change: false",
            "round {i}"
        );
    }
    stream.extend(drain_ring(&mut q));
    // The last old connection is closed once its client has read it to
    // the end; its descriptor may go a moment after that client saw EOF.
    let pid = proc.pid();
    wait_until(
        &format!("qchar's descriptors back to the {fds_start} it held before the first round"),
        || proc_fds(pid).len() == fds_start,
    );
    q.exec(&json!({"execute": "quit"}), &[]);
    assert!(proc.wait().success());
    let (lines, _) = check_demo_stream(&stream);
    assert!(
        lines > ROUNDS as u64,
        "only {lines} lines in {ROUNDS} rounds"
    );
    eprintln!(
        "lxd_console_cycle: {ROUNDS} rounds, lines 1..{lines} each once and in order, {} bytes",
        stream.len()
    );
}

#[test]
fn lxd_console_cycle_replies_as_qemu() {
    if !require(Prereq::Kvm) || !require(Prereq::Qemu) {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    let image = p(d, "demo.img");
    let mut w = Proc::qchar(
        &[
            "--write-builtin-image".into(),
            "demo".into(),
            image.to_str().unwrap().into(),
        ],
        d,
    );
    assert!(w.wait().success());
    let drive = format!(
        "-drive file={},format=raw,if=ide,snapshot=on",
        image.display()
    );
    let mut all = Vec::new();
    // Only replies are compared: QEMU's client does not wait for bytes (in
    // one run QEMU sent none through the socket within a minute).
    for (program, img, min) in [
        (
            common::qchar_bin(),
            "-fda builtin:demo".to_string(),
            SOCKET_BYTES,
        ),
        ("qemu-system-x86_64", drive, 0),
    ] {
        let run = tempdir();
        let (mut proc, mut q) = start(program, &img, run.path());
        let mut replies = Vec::new();
        for _ in 0..QEMU_ROUNDS {
            drain_ring(&mut q);
            let (_, r) = round(&mut q, run.path(), min);
            replies.extend(r);
        }
        q.exec(&json!({"execute": "quit"}), &[]);
        assert!(proc.wait().success());
        all.push(replies);
    }
    // query-chardev lists in hash order in QEMU: compare the console's entry.
    let console = |l: &String| {
        if !l.starts_with("{\"return\": [") {
            return l.clone();
        }
        let v: Value = serde_json::from_str(l).unwrap();
        v["return"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["label"] == "console")
            .unwrap()
            .to_string()
    };
    let a: Vec<String> = all[0].iter().map(console).collect();
    let b: Vec<String> = all[1].iter().map(console).collect();
    assert_eq!(a, b);
}
