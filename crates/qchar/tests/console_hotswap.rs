//! The main test: the demo guest runs under KVM and prints numbered
//! lines on COM1 while its console is moved 1,000 times (QMP
//! `chardev-change`) between files, unix sockets and ptys. Every numbered
//! line must be found exactly once, in order, in the targets' contents
//! concatenated in change order (a line may be split at a change), and input
//! sent through a new socket or pty after a change must come back as a
//! `qchar-echo` line.
//!
//! The test is the peer of the socket targets (it listens; the chardev
//! connects as a client, so the connection exists when the change returns)
//! and of the pty targets (it opens the slave the change returns; the pty
//! carries an `x-backlog` so output before that open waits for it).
//!
//! Leaving a pty needs care: when a pty master closes, the kernel discards
//! what its slave has not read. So before the console leaves a pty, the
//! guest is stopped and the test proves it has read everything: it drains
//! the slave, asks qchar to push its queued output out (`ringbuf-read` of a
//! chardev that is no ringbuf moves queued output into the backend before
//! it refuses), and drains again, until a round brings nothing. A read on a
//! slave that would block first waits for the bytes the master wrote to
//! arrive, so an empty round is proof, not a timeout.

mod common;

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{argv, kvm_or_skip, p, tempdir, wait_until, Proc, Qmp};
use serde_json::{json, Value};

const CHANGES: usize = 1000;
/// Bytes each target must receive before the next change (the guest
/// prints while the console moves, and lines get split at changes).
const MIN_BYTES_PER_TARGET: u64 = 40;
/// Every this many changes, a socket or pty target also checks input.
const ECHO_EVERY: usize = 10;
/// Replay buffer of pty targets (output before the test opens the slave).
const PTY_BACKLOG: u64 = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Socket,
    Pty,
}

/// Covers all nine ordered pairs of kinds, then wraps to its start.
const PATTERN: [Kind; 9] = [
    Kind::File,
    Kind::File,
    Kind::Socket,
    Kind::File,
    Kind::Pty,
    Kind::Socket,
    Kind::Socket,
    Kind::Pty,
    Kind::Pty,
];

enum Peer {
    File(PathBuf),
    Socket {
        s: UnixStream,
        data: Vec<u8>,
        eof: bool,
    },
    Pty {
        f: File,
        data: Vec<u8>,
    },
}

struct Target {
    kind: Kind,
    peer: Peer,
}

fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on a descriptor the caller owns.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

impl Target {
    /// Reads what is there without waiting; returns how many bytes.
    fn pump(&mut self) -> usize {
        let mut total = 0;
        let mut buf = [0u8; 65536];
        match &mut self.peer {
            Peer::File(_) => {}
            Peer::Socket { s, data, eof } => {
                while !*eof {
                    match s.read(&mut buf) {
                        Ok(0) => *eof = true,
                        Ok(n) => {
                            data.extend_from_slice(&buf[..n]);
                            total += n;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => panic!("socket read: {e}"),
                    }
                }
            }
            Peer::Pty { f, data } => loop {
                match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        data.extend_from_slice(&buf[..n]);
                        total += n;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // EIO: the master is gone.
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
                    Err(e) => panic!("pty read: {e}"),
                }
            },
        }
        total
    }

    fn len(&self) -> u64 {
        match &self.peer {
            Peer::File(path) => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            Peer::Socket { data, .. } | Peer::Pty { data, .. } => data.len() as u64,
        }
    }

    fn contains(&self, needle: &[u8]) -> bool {
        match &self.peer {
            Peer::File(_) => false,
            Peer::Socket { data, .. } | Peer::Pty { data, .. } => {
                data.windows(needle.len()).any(|w| w == needle)
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        match &mut self.peer {
            Peer::Socket { s, .. } => s.write_all(bytes).unwrap(),
            Peer::Pty { f, .. } => f.write_all(bytes).unwrap(),
            Peer::File(_) => unreachable!("files take no input"),
        }
    }

    /// Everything it received (sockets read to their end of stream).
    fn finish(mut self) -> Vec<u8> {
        if let Peer::Socket { s, .. } = &self.peer {
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(common::WAIT)).unwrap();
        }
        if let Peer::Socket { s, data, eof } = &mut self.peer {
            if !*eof {
                s.read_to_end(data).expect("socket target read to its end");
            }
        }
        match self.peer {
            Peer::File(path) => std::fs::read(path).unwrap(),
            Peer::Socket { data, .. } | Peer::Pty { data, .. } => data,
        }
    }
}

/// `chardev-change` of `con` to a new target of `kind`.
fn change_to(q: &mut Qmp, dir: &std::path::Path, kind: Kind, n: usize) -> Target {
    match kind {
        Kind::File => {
            let path = p(dir, &format!("t{n:04}.log"));
            q.cmd(
                "chardev-change",
                json!({"id": "con", "backend": {"type": "file",
                    "data": {"out": path.to_str().unwrap()}}}),
            );
            Target {
                kind,
                peer: Peer::File(path),
            }
        }
        Kind::Socket => {
            let path = p(dir, &format!("s{n:04}.sock"));
            let listener = UnixListener::bind(&path).unwrap();
            q.cmd(
                "chardev-change",
                json!({"id": "con", "backend": {"type": "socket", "data": {
                    "addr": {"type": "unix", "data": {"path": path.to_str().unwrap()}},
                    "server": false}}}),
            );
            // qchar connected while opening the backend.
            let (s, _) = listener.accept().unwrap();
            drop(listener);
            let _ = std::fs::remove_file(&path);
            s.set_nonblocking(true).unwrap();
            Target {
                kind,
                peer: Peer::Socket {
                    s,
                    data: Vec::new(),
                    eof: false,
                },
            }
        }
        Kind::Pty => {
            let r = q.cmd(
                "chardev-change",
                json!({"id": "con", "backend": {"type": "pty",
                    "data": {"x-backlog": PTY_BACKLOG}}}),
            );
            let path = r["pty"]
                .as_str()
                .expect("pty path in the reply")
                .to_string();
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            set_nonblocking(f.as_raw_fd());
            Target {
                kind,
                peer: Peer::Pty {
                    f,
                    data: Vec::new(),
                },
            }
        }
    }
}

/// With the guest stopped: reads the pty until qchar holds nothing more
/// for it (see the module docs).
fn drain_pty_completely(q: &mut Qmp, t: &mut Target) {
    for _ in 0..1000 {
        t.pump();
        let r = q.execute(json!({"execute": "ringbuf-read",
            "arguments": {"device": "con", "size": 1}}));
        assert_eq!(
            r["error"]["desc"], "con is not a ringbuf device",
            "unexpected reply {r}"
        );
        if t.pump() == 0 {
            return;
        }
    }
    panic!("the pty kept receiving output with the guest stopped");
}

#[test]
fn console_moves_1000_times_without_losing_a_line() {
    if !kvm_or_skip("console_moves_1000_times_without_losing_a_line") {
        return;
    }
    let started = Instant::now();
    let dir = tempdir();
    let mut proc = Proc::qchar(
        &argv(
            "-nodefaults -display none -S -chardev file,id=con,path=$D/t0000.log \
             -serial chardev:con -qmp unix:$D/qmp,server=on,wait=off -fda builtin:demo",
            dir.path(),
        ),
        dir.path(),
    );
    let mut q = Qmp::connect(&p(dir.path(), "qmp"));
    q.cmd("cont", Value::Null);

    let mut current = Target {
        kind: Kind::File,
        peer: Peer::File(p(dir.path(), "t0000.log")),
    };
    let mut done: Vec<Target> = Vec::new();
    let mut echoes_sent = Vec::new();
    let mut counts = [0usize; 3];
    for n in 1..=CHANGES {
        // Let the guest print into the current target first.
        let start = Instant::now();
        while current.len() < MIN_BYTES_PER_TARGET {
            if current.pump() == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            for t in done.iter_mut().filter(|t| t.kind == Kind::Socket) {
                t.pump();
            }
            assert!(
                start.elapsed() < common::WAIT,
                "target {n} ({:?}) got no output",
                current.kind
            );
        }
        // Input through a new socket or pty comes back as an echo line.
        if current.kind != Kind::File && n % ECHO_EVERY == 0 {
            let payload = format!("in{n:04}");
            current.send(payload.as_bytes());
            let line = format!("qchar-echo {payload}\r\n");
            wait_until(&format!("echo of {payload}"), || {
                current.pump();
                current.contains(line.as_bytes())
            });
            echoes_sent.push(payload);
        }
        let kind = PATTERN[n % PATTERN.len()];
        let leaving_pty = current.kind == Kind::Pty;
        if leaving_pty {
            q.cmd("stop", Value::Null);
            drain_pty_completely(&mut q, &mut current);
        }
        let next = change_to(&mut q, dir.path(), kind, n);
        if leaving_pty {
            q.cmd("cont", Value::Null);
        }
        counts[kind as usize] += 1;
        done.push(std::mem::replace(&mut current, next));
    }

    // The end: stop, take everything, quit.
    q.cmd("stop", Value::Null);
    if current.kind == Kind::Pty {
        drain_pty_completely(&mut q, &mut current);
    }
    let r = q.execute(json!({"execute": "quit"}));
    assert_eq!(r, json!({"return": {}}));
    q.read_to_end();
    let st = proc.wait();
    assert!(st.success(), "{st:?}: {}", proc.stderr());
    done.push(current);

    let changed = q
        .events
        .iter()
        .filter(|e| e["event"] == "X_QCHAR_CHARDEV_CHANGED")
        .count();
    assert_eq!(changed, CHANGES, "one X_QCHAR_CHARDEV_CHANGED per change");

    let mut all = Vec::new();
    for t in done {
        all.extend_from_slice(&t.finish());
    }
    let (lines, echoes) = common::check_demo_stream(&all);
    assert_eq!(echoes, echoes_sent, "every input echoed once, in order");
    assert!(lines > CHANGES as u64, "only {lines} lines");
    eprintln!(
        "{CHANGES} changes (file {}, socket {}, pty {}), {lines} lines, {} echoes, \
         {} bytes, none lost, repeated or reordered, in {:.1?}",
        counts[Kind::File as usize],
        counts[Kind::Socket as usize],
        counts[Kind::Pty as usize],
        echoes_sent.len(),
        all.len(),
        started.elapsed()
    );
}
