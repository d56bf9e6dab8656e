//! The two programs under comparison: starting one with a command line in
//! its own directory, its stderr collected, and the raw connections the
//! harness speaks to it through (QMP lines, a readline monitor's bytes).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::HarnessError;

/// Which program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// `qemu-system-x86_64` 7.2.
    Qemu,
    /// The `qchar` binary.
    Qchar,
}

impl Side {
    /// Both, QEMU first.
    pub const BOTH: [Side; 2] = [Side::Qemu, Side::Qchar];

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Side::Qemu => "qemu",
            Side::Qchar => "qchar",
        }
    }

    /// Index into per-side arrays.
    pub fn idx(self) -> usize {
        self as usize
    }
}

/// Where the two programs are, and each side's private resources.
#[derive(Debug, Clone)]
pub struct Programs {
    /// QEMU's binary (found on `PATH` by default).
    pub qemu: PathBuf,
    /// qchar's binary; it is started through a link named
    /// `qemu-system-x86_64`, so both print the same program name.
    pub qchar: PathBuf,
    /// The parent of the per-side directories (short: unix socket paths are
    /// limited to 107 bytes).
    pub root: PathBuf,
}

impl Programs {
    /// The side's directory (`$D` in inputs).
    pub fn dir(&self, side: Side) -> PathBuf {
        self.root.join(match side {
            Side::Qemu => "q",
            Side::Qchar => "c",
        })
    }

    /// The program to run for `side`.
    pub fn program(&self, side: Side) -> PathBuf {
        match side {
            Side::Qemu => self.qemu.clone(),
            Side::Qchar => self.root.join("bin").join("qemu-system-x86_64"),
        }
    }

    /// The side's directory for command-line inputs (apart from the
    /// long-lived processes' own).
    pub fn cli_dir(&self, side: Side) -> PathBuf {
        self.root.join(match side {
            Side::Qemu => "qc",
            Side::Qchar => "cc",
        })
    }

    /// Empties the side's command-line directory (made anew).
    pub fn reset_cli_dir(&self, side: Side) -> Result<(), HarnessError> {
        fresh_dir(&self.cli_dir(side))
    }

    /// Creates the directories and the qchar link.
    pub fn prepare(&self) -> Result<(), HarnessError> {
        let bin = self.root.join("bin");
        std::fs::create_dir_all(&bin).map_err(|e| HarnessError::io("create dir", e))?;
        let link = bin.join("qemu-system-x86_64");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&self.qchar, &link)
            .map_err(|e| HarnessError::io("link qchar", e))?;
        for s in Side::BOTH {
            self.reset_dir(s)?;
        }
        Ok(())
    }

    /// Empties the side's directory (made anew).
    pub fn reset_dir(&self, side: Side) -> Result<(), HarnessError> {
        fresh_dir(&self.dir(side))
    }

    /// TCP/UDP port `i` (0..4) reserved for `side` (`$PORTi` in inputs):
    /// the sides run at the same time, so each has its own.
    pub fn port(&self, side: Side, i: usize) -> u16 {
        let base = std::env::var("DIFFFUZZ_PORT_BASE")
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(23_400);
        base + (side.idx() as u16) * 10 + i as u16
    }
}

/// Whether QEMU 7.2 can be run.
pub fn qemu_available(qemu: &Path) -> bool {
    Command::new(qemu)
        .arg("-version")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("version 7.2"))
        .unwrap_or(false)
}

/// A started program; killed when dropped.
pub struct Proc {
    child: Child,
    err: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `program args` in `dir`, stdin and stdout on /dev/null.
    pub fn start(program: &Path, args: &[String], dir: &Path) -> Result<Proc, HarnessError> {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the child between fork and exec and
        // only calls prctl, which is async-signal-safe; it touches no
        // memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                // The program dies with the harness (killed or crashed).
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| HarnessError::io("spawn", e))?;
        let err = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let into = err.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&buf[..n]);
            }
        });
        Ok(Proc {
            child,
            err,
            reader: Some(reader),
            status: None,
        })
    }

    /// Stderr so far.
    pub fn stderr(&self) -> Vec<u8> {
        self.err.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The exit status if it has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
            }
        }
        self.status
    }

    /// Waits up to `limit` for the exit.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut patience = Patience::new(Some(self.pid()), limit);
        loop {
            if let Some(st) = self.try_status() {
                return Some(st);
            }
            if patience.give_up() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills it and waits.
    pub fn kill(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            if let Ok(st) = self.child.wait() {
                self.status = Some(st);
            }
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Connects to a unix socket, retrying until `limit` (the program may not
/// be listening yet; with its `peer` process known, counted as
/// [`Patience`] counts); gives up early if `alive` says the program ended.
pub fn connect_unix(
    path: &Path,
    limit: Duration,
    peer: Option<u32>,
    mut alive: impl FnMut() -> bool,
) -> Result<UnixStream, HarnessError> {
    let mut patience = Patience::new(peer, limit);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) => {
                if patience.give_up() || !alive() {
                    return Err(HarnessError::io("connect", e));
                }
                std::thread::sleep(Duration::from_millis(3));
            }
        }
    }
}

/// What reading a connection ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// The awaited line came.
    Found,
    /// The peer closed the connection.
    Closed,
    /// Nothing more came for the idle time (readline) or the limit passed.
    Quiet,
}

/// How many times a wait's limit a peer that keeps running (or waiting
/// for a CPU) may take before it counts as stuck anyway (a busy loop).
const BUSY_LIMITS: u32 = 6;

/// The scheduler's time of process `pid`, all threads: nanoseconds on a
/// CPU plus nanoseconds runnable and waiting for one
/// (`/proc/PID/task/*/schedstat`). It does not move while the process is
/// blocked; on a loaded machine it moves while the process waits its turn.
pub fn sched_time(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .map(|s| {
            s.split_whitespace()
                .take(2)
                .filter_map(|n| n.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// A bound on a wait for process `pid`'s answer that counts only the time
/// the process is blocked: one that ran or waited for a CPU for a tenth of
/// the window or more (a loaded machine) is not stuck, and gets another
/// window, up to [`BUSY_LIMITS`] in all (a busy loop is stuck too).
pub struct Patience {
    pid: Option<u32>,
    limit: Duration,
    start: Instant,
    window: Instant,
    sched: Option<u64>,
}

impl Patience {
    /// Starts waiting `limit` for `pid` (for nothing in particular: `None`,
    /// then `limit` is wall time).
    pub fn new(pid: Option<u32>, limit: Duration) -> Patience {
        let now = Instant::now();
        Patience {
            pid,
            limit,
            start: now,
            window: now,
            sched: pid.map(sched_time),
        }
    }

    /// When the current window ends.
    pub fn deadline(&self) -> Instant {
        self.window + self.limit
    }

    /// Whether to give up now: the window is over and the process was
    /// blocked through it (or had all its windows). Otherwise, past the
    /// window, another one starts.
    pub fn give_up(&mut self) -> bool {
        let now = Instant::now();
        if now < self.deadline() {
            return false;
        }
        let sched = self.pid.map(sched_time);
        let busy = matches!((self.sched, sched),
            (Some(a), Some(b)) if u128::from(b.saturating_sub(a)) >= self.limit.as_nanos() / 10);
        if !busy || now - self.start >= self.limit * BUSY_LIMITS {
            return true;
        }
        self.sched = sched;
        self.window = now;
        false
    }
}

/// A byte connection with a read buffer.
pub struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    /// The process at the other end, if known: a wait for its answer
    /// counts only the time it is blocked (see [`Conn::lines_until`]).
    peer: Option<u32>,
}

impl Conn {
    /// Wraps a connected stream.
    pub fn new(stream: UnixStream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
            peer: None,
        }
    }

    /// Wraps a stream connected to process `pid`.
    pub fn with_peer(stream: UnixStream, pid: u32) -> Conn {
        Conn {
            peer: Some(pid),
            ..Conn::new(stream)
        }
    }

    /// Sends bytes; a peer that has gone is not an error here (what it
    /// answered, or not, is compared).
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    fn fill(&mut self, until: Instant) -> Option<usize> {
        let now = Instant::now();
        if now >= until {
            return Some(0);
        }
        let _ = self
            .stream
            .set_read_timeout(Some((until - now).max(Duration::from_millis(1))));
        let mut b = [0u8; 8192];
        match self.stream.read(&mut b) {
            Ok(0) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                Some(n)
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                Some(0)
            }
            Err(_) => None,
        }
    }

    /// Reads whole lines (`\n`-ended, kept as sent) until one contains
    /// `marker`, the peer closes, or `limit` passes. Returns the lines,
    /// the marker's included. With a known peer, `limit` counts only while
    /// the peer is blocked ([`Patience`]).
    pub fn lines_until(&mut self, marker: &[u8], limit: Duration) -> (Vec<Vec<u8>>, ReadEnd) {
        let mut patience = Patience::new(self.peer, limit);
        let mut lines = Vec::new();
        loop {
            while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let found = contains(&line, marker);
                lines.push(line);
                if found {
                    return (lines, ReadEnd::Found);
                }
            }
            match self.fill(patience.deadline()) {
                None => {
                    if !self.buf.is_empty() {
                        lines.push(std::mem::take(&mut self.buf));
                    }
                    return (lines, ReadEnd::Closed);
                }
                Some(0) if patience.give_up() => return (lines, ReadEnd::Quiet),
                Some(_) => {}
            }
        }
    }

    /// Reads everything until nothing has come for `idle` (after at least
    /// `first` for the first byte), the peer closes, or `limit` passes.
    /// Output beyond [`READ_CAP`] is read and dropped: the bytes kept end
    /// exactly there, followed by [`CUT_MARK`], so two sides that stream
    /// the same bytes compare equal wherever their writes were split. A
    /// cut output is drained until it is idle for up to [`DRAIN_LIMITS`]
    /// times `limit`, so that the next read does not start inside it at a
    /// point that depends on the sides' speed.
    pub fn bytes_until_idle(
        &mut self,
        first: Duration,
        idle: Duration,
        limit: Duration,
    ) -> (Vec<u8>, ReadEnd) {
        let start = Instant::now();
        let mut last = start;
        let mut got_any = !self.buf.is_empty();
        let mut cut = false;
        let end = |buf: &mut Vec<u8>, cut: bool| {
            let mut out = std::mem::take(buf);
            if cut {
                out.extend_from_slice(CUT_MARK);
            }
            out
        };
        loop {
            let wait = if got_any { idle } else { first };
            let end_by = start + if cut { limit * DRAIN_LIMITS } else { limit };
            let until = (last + wait).min(end_by);
            let r = self.fill(until);
            if self.buf.len() > READ_CAP {
                // A side that streams (a key burst echoed without end):
                // hundreds of MB per step made one input take many
                // minutes to compare.
                self.buf.truncate(READ_CAP);
                cut = true;
            }
            match r {
                None => return (end(&mut self.buf, cut), ReadEnd::Closed),
                Some(0) => {
                    if Instant::now() >= until {
                        return (end(&mut self.buf, cut), ReadEnd::Quiet);
                    }
                }
                Some(_) => {
                    got_any = true;
                    last = Instant::now();
                }
            }
        }
    }
}

/// Most bytes one read of a side's output keeps (the rest is dropped).
const READ_CAP: usize = 4 << 20;

/// How many times its limit a read cut at [`READ_CAP`] may go on draining
/// a side that still streams (a 4,095-byte line typed key by key echoes
/// about 50 MB; a debug build may take a while to write it).
const DRAIN_LIMITS: u32 = 6;

/// What follows the bytes kept of an output cut at [`READ_CAP`].
pub const CUT_MARK: &[u8] = b"\n[difffuzz: output cut at 4 MiB]\n";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Makes `d` anew, with `null` in it: a character device like /dev/null
/// (made with mknod when the harness may, else an empty file), the one
/// device inputs name. Inputs never name /dev/null itself: a socket server
/// on a path unlinks what is there first, in QEMU and in qchar alike, and
/// the machine's /dev/null would go.
fn fresh_dir(d: &Path) -> Result<(), HarnessError> {
    let _ = std::fs::remove_dir_all(d);
    std::fs::create_dir_all(d).map_err(|e| HarnessError::io("create dir", e))?;
    let null = d.join("null");
    let made = rustix::fs::mknodat(
        rustix::fs::CWD,
        &null,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    );
    if made.is_err() {
        std::fs::File::create(&null).map_err(|e| HarnessError::io("create null", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The same stream of more than [`READ_CAP`] bytes, written in pieces
    /// of different sizes, reads as the same bytes: the first
    /// [`READ_CAP`], then [`CUT_MARK`]; the rest is read and dropped, not
    /// left for the next read.
    #[test]
    fn a_cut_output_ends_at_the_cap_wherever_writes_split() {
        let data: Vec<u8> = (0..READ_CAP + 300_000).map(|i| (i % 251) as u8).collect();
        let mut outs = Vec::new();
        for piece in [4096, 65_537, 1 << 20] {
            let (a, mut b) = UnixStream::pair().unwrap();
            let mut conn = Conn::new(a);
            let d = data.clone();
            let writer = std::thread::spawn(move || {
                for c in d.chunks(piece) {
                    b.write_all(c).unwrap();
                }
                b
            });
            let (out, end) = conn.bytes_until_idle(
                Duration::from_secs(10),
                Duration::from_secs(3),
                Duration::from_secs(30),
            );
            let b = writer.join().unwrap();
            assert_eq!(end, ReadEnd::Quiet);
            assert_eq!(out.len(), READ_CAP + CUT_MARK.len(), "pieces of {piece}");
            assert_eq!(&out[..READ_CAP], &data[..READ_CAP]);
            assert_eq!(&out[READ_CAP..], CUT_MARK);
            // Nothing of the stream is left for the next read.
            drop(b);
            let (rest, end) = conn.bytes_until_idle(
                Duration::from_millis(100),
                Duration::from_millis(100),
                Duration::from_secs(5),
            );
            assert!(rest.is_empty(), "{} bytes left", rest.len());
            assert_eq!(end, ReadEnd::Closed);
            outs.push(out);
        }
        assert!(outs.windows(2).all(|w| w[0] == w[1]));
    }
}
