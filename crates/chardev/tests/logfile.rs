//! `logfile=` with qchar's options: rotation followed by a real `tail -F`,
//! `logappend=on` across registries, timestamps, a log continued across
//! changes, and a log that cannot keep up (a FIFO nobody reads), which
//! must stall neither the chardev, nor another chardev, nor the I/O thread.

#[path = "support/net.rs"]
mod net;
mod support;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use net::numbered;
use qchar_chardev::spec::{ChardevBackend, ChardevCommon};
use qchar_chardev::Registry;
use qchar_testkit::{mkfifo, wait_until};
use support::*;

fn null_logged(log: &Path, f: impl FnOnce(&mut ChardevCommon)) -> ChardevBackend {
    let mut c = ChardevCommon {
        logfile: Some(log.to_string_lossy().into_owned()),
        ..Default::default()
    };
    f(&mut c);
    ChardevBackend::Null(c)
}

/// `PATH.N` .. `PATH.1`, `PATH`, joined: the whole log, oldest first.
fn joined(log: &Path, keep: usize) -> Vec<u8> {
    let mut all = Vec::new();
    for i in (1..=keep).rev() {
        all.extend(read(&PathBuf::from(format!("{}.{i}", log.display()))));
    }
    all.extend(read(log));
    all
}

/// Every file of a rotated log: none larger than `max`.
fn sizes(log: &Path, keep: usize) -> Vec<u64> {
    (1..=keep)
        .map(|i| PathBuf::from(format!("{}.{i}", log.display())))
        .chain([log.to_path_buf()])
        .filter_map(|p| std::fs::metadata(p).ok().map(|m| m.len()))
        .collect()
}

/// A `tail -F -n +1 PATH` whose standard output is collected.
struct Tail {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Tail {
    fn start(path: &Path) -> Tail {
        let mut child = Command::new("tail")
            .args(["-F", "-n", "+1", "-s", "0.01"])
            .arg(path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tail");
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut r = child.stdout.take().unwrap();
        let o = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Tail { child, out }
    }

    fn output(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Rotation renames, then reopens: `tail -F` follows the name and shows
/// every line once, in order, across 20 rotations; the rotated files,
/// joined, are the same stream, and none is larger than `x-logsize`.
#[test]
fn rotation_keeps_tail_f_following() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let reg = Registry::new().unwrap();
    reg.add(
        "c",
        null_logged(&log, |c| {
            c.logsize = Some(4096);
            c.logkeep = Some(50);
        }),
    )
    .unwrap();
    let fe = reg.attach("c").unwrap();
    wait_until("the log exists", || log.exists());
    let tail = Tail::start(&log);
    // Half a file at a time, each burst seen by tail before the next: a
    // rotation every second burst, each under tail's eyes.
    let per_burst = 2048 / 11;
    let mut want = Vec::new();
    for burst in 0..44 {
        let lines = numbered("l", burst * per_burst, per_burst);
        fe.write_all(&lines).unwrap();
        want.extend_from_slice(&lines);
        wait_until("tail shows the burst", || tail.output().len() >= want.len());
    }
    assert_eq!(tail.output(), want, "tail -F lost, repeated or reordered");
    assert_eq!(joined(&log, 50), want, "the rotated files joined");
    let sizes = sizes(&log, 50);
    assert!(sizes.len() >= 20, "rotations: {}", sizes.len() - 1);
    assert!(sizes.iter().all(|&s| s <= 4096), "{sizes:?}");
    // Whole lines per file: each rotated file ends a line.
    for i in 1..sizes.len() {
        let f = read(&PathBuf::from(format!("{}.{i}", log.display())));
        assert_eq!(f.last(), Some(&b'\n'), "{}.{i}", log.display());
    }
    reg.shutdown();
}

/// Only `x-logkeep` old files stay; the oldest go.
#[test]
fn rotation_keeps_the_newest_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("l");
    let reg = Registry::new().unwrap();
    reg.add(
        "c",
        null_logged(&log, |c| {
            c.logsize = Some(100);
            c.logkeep = Some(2);
        }),
    )
    .unwrap();
    let fe = reg.attach("c").unwrap();
    let all = numbered("k", 0, 100);
    fe.write_all(&all).unwrap();
    reg.shutdown();
    let kept = joined(&log, 2);
    assert!(all.ends_with(&kept), "the newest lines are kept");
    assert!(kept.len() > 100 && kept.len() <= 300, "{}", kept.len());
    assert!(!Path::new(&format!("{}.3", log.display())).exists());
}

/// `logappend=on`: a second run continues the file, and its size counts
/// towards `x-logsize`.
#[test]
fn logappend_continues_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("l");
    let run = |from: usize| {
        let reg = Registry::new().unwrap();
        reg.add(
            "c",
            null_logged(&log, |c| {
                c.logappend = Some(true);
                c.logsize = Some(500);
                c.logkeep = Some(10);
            }),
        )
        .unwrap();
        let fe = reg.attach("c").unwrap();
        fe.write_all(&numbered("r", from, 30)).unwrap();
        // Shutdown writes the log out.
        reg.shutdown();
    };
    run(0);
    assert_eq!(read(&log), numbered("r", 0, 30));
    run(30);
    run(60);
    assert_eq!(joined(&log, 10), numbered("r", 0, 90));
    assert!(sizes(&log, 10).iter().all(|&s| s <= 500));
    assert!(Path::new(&format!("{}.1", log.display())).exists());
}

/// `x-logtimestamp=on`: each line starts with a UTC timestamp, in order.
#[test]
fn timestamps_in_front_of_each_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("l");
    let reg = Registry::new().unwrap();
    reg.add("c", null_logged(&log, |c| c.logtimestamp = Some(true)))
        .unwrap();
    let fe = reg.attach("c").unwrap();
    // A line written in pieces gets one stamp.
    fe.write_all(b"first ").unwrap();
    fe.write_all(b"line\nsecond\n").unwrap();
    let want = numbered("t", 0, 50);
    fe.write_all(&want).unwrap();
    reg.shutdown();
    let text = String::from_utf8(read(&log)).unwrap();
    let mut stamps = Vec::new();
    let mut lines = Vec::new();
    for l in text.lines() {
        let (ts, rest) = l.split_once(' ').unwrap();
        assert!(ts.len() == 24 && ts.ends_with('Z'), "{l}");
        stamps.push(ts.to_string());
        lines.push(rest.to_string());
    }
    assert_eq!(lines[..2], ["first line", "second"]);
    let want: Vec<String> = String::from_utf8(want)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines[2..], want[..]);
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
}

/// A change to a backend logging to the same file continues the log (no
/// truncation, nothing lost or repeated), a hundred times over.
#[test]
fn the_log_continues_across_changes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("l");
    let reg = Registry::new().unwrap();
    let spec = null_logged(&log, |c| {
        c.logsize = Some(2000);
        c.logkeep = Some(100);
    });
    reg.add("c", spec.clone()).unwrap();
    let fe = reg.attach("c").unwrap();
    let (rec, _) = Recorder::new(true);
    fe.set_handlers(Box::new(rec));
    let mut want = Vec::new();
    for i in 0..100 {
        let lines = numbered("c", i * 10, 10);
        fe.write_all(&lines).unwrap();
        want.extend_from_slice(&lines);
        reg.change("c", spec.clone()).unwrap();
    }
    reg.shutdown();
    assert_eq!(joined(&log, 100), want);
}

/// Bytes in a pipe not read yet.
fn unread(f: &File) -> u64 {
    rustix::io::ioctl_fionread(f).expect("FIONREAD")
}

/// Whether the registry's I/O thread sleeps in a pipe write.
fn io_thread_in_pipe_write() -> bool {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .any(|t| {
            let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
            read("comm").trim() == "qchar-io" && read("wchan").contains("pipe_write")
        })
}

/// Regression test: the log was written by the I/O thread itself, so a log
/// on a FIFO whose reader stalls held every chardev of the registry. Now
/// the chardev's output keeps flowing, another chardev answers, the I/O
/// thread never sleeps in the FIFO, and what the log could not take is
/// counted and announced by a marker when the reader comes back: logged
/// bytes plus announced ones are exactly what was written.
#[test]
fn a_stalled_fifo_log_stalls_nothing_and_is_told_what_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("log.fifo");
    mkfifo(&fifo);
    // A reader that does not read (yet).
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let reg = Registry::new().unwrap();
    reg.add("c", null_logged(&fifo, |_| {})).unwrap();
    reg.add("other", ringbuf_spec(1024)).unwrap();
    let fe = reg.attach("c").unwrap();
    let other = reg.attach("other").unwrap();
    // Four times the log's buffer (plus the FIFO's 64 KiB): the log must
    // fall behind.
    let total = 4 * qchar_chardev::logfile::LOG_BUFFER + (1 << 16);
    let chunk = vec![b'x'; 4096];
    let mut written = 0;
    while written < total {
        fe.write_all(&chunk).unwrap();
        written += chunk.len();
    }
    wait_until("the chardev's output all taken", || {
        reg.stats("c").unwrap().bytes_out == written as u64
    });
    wait_until("the log fell behind", || {
        reg.stats("c").unwrap().log_dropped > 0 && unread(&reader) > 0
    });
    assert!(!io_thread_in_pipe_write(), "the I/O thread writes the log");
    // Another chardev of the registry answers at once.
    other.write_all(b"still here").unwrap();
    wait_until("the other chardev works", || {
        reg.ringbuf_read("other", 100).unwrap() == b"still here"
    });
    // The reader comes back. A line written while the log is still full is
    // dropped (and counted) too; once a quarter of its buffer is free, one
    // is taken, after the marker.
    let mut reader = reader;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut drain = |got: &mut Vec<u8>| {
        if let Ok(n) = reader.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    };
    let tail = b"end of the stream\n";
    loop {
        let before = reg.stats("c").unwrap().log_dropped;
        fe.write_all(tail).unwrap();
        written += tail.len();
        wait_until("the line taken", || {
            reg.stats("c").unwrap().bytes_out == written as u64
        });
        if reg.stats("c").unwrap().log_dropped == before {
            break;
        }
        let had = got.len();
        wait_until("the reader got more of the log", || {
            drain(&mut got);
            got.len() >= had + (1 << 16)
        });
    }
    wait_until("the line logged", || {
        drain(&mut got);
        got.ends_with(tail)
    });
    let dropped = reg.stats("c").unwrap().log_dropped;
    let text = String::from_utf8(got).unwrap();
    assert_eq!(text.matches("[qchar: ").count(), 1, "one marker");
    let (before, rest) = text.split_once("\r\n[qchar: ").unwrap();
    let (n, after) = rest.split_once(" bytes not logged]\r\n").unwrap();
    let announced: u64 = n.parse().unwrap();
    assert_eq!(announced, dropped, "the marker says what the counter says");
    assert_eq!(after.as_bytes(), tail, "after the marker: the line taken");
    let logged = (before.len() + after.len()) as u64;
    assert_eq!(logged + announced, written as u64, "logged + announced");
    drop(fe);
    reg.shutdown();
}

/// Bad log options and log files: clear errors, nothing opened.
#[test]
fn bad_log_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    let e = |spec: ChardevBackend| reg.add("c", spec).unwrap_err().to_string();
    // A FIFO without reader: QEMU would hang in open; qchar says so.
    let fifo = dir.path().join("f");
    mkfifo(&fifo);
    assert_eq!(
        e(null_logged(&fifo, |_| {})),
        format!(
            "Could not create '{}': No such device or address",
            fifo.display()
        )
    );
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    assert_eq!(
        e(null_logged(&fifo, |c| c.logsize = Some(10))),
        format!(
            "x-logsize needs a regular file, and '{}' is not one",
            fifo.display()
        )
    );
    let log = dir.path().join("l");
    assert_eq!(
        e(null_logged(&log, |c| c.logkeep = Some(3))),
        "x-logkeep needs x-logsize"
    );
    assert_eq!(
        e(ChardevBackend::Null(ChardevCommon {
            logsize: Some(10),
            ..Default::default()
        })),
        "x-logsize needs logfile"
    );
    assert!(!log.exists(), "a refused spec opens nothing");
    assert!(reg.query().is_empty());
    reg.shutdown();
}

/// Output kept for a socket's next client (`x-backlog`) is logged when it
/// leaves the queue, as QEMU logs what a peerless socket drops, and not a
/// second time when the client connects and gets it.
#[test]
fn output_kept_in_the_backlog_is_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("l");
    let sock = dir.path().join("s");
    let reg = Registry::new().unwrap();
    let mut spec = net::with_backlog(net::unix_server(&sock), 4096);
    spec.common_mut().logfile = Some(log.to_string_lossy().into_owned());
    reg.add("c", spec).unwrap();
    let fe = reg.attach("c").unwrap();
    fe.write_all(b"nobody there yet\n").unwrap();
    wait_until("logged without a peer", || {
        read(&log) == b"nobody there yet\n"
    });
    let mut client = qchar_testkit::connect_unix(&sock);
    let mut got = vec![0u8; 17];
    client.read_exact(&mut got).unwrap();
    assert_eq!(got, b"nobody there yet\n", "replayed to the client");
    fe.write_all(b"live\n").unwrap();
    client.read_exact(&mut got[..5]).unwrap();
    reg.shutdown();
    assert_eq!(read(&log), b"nobody there yet\nlive\n");
}
