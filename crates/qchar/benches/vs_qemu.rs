//! The monitor and memory figures of qchar against QEMU: both processes
//! started with the same options (`-enable-kvm -nodefaults -display none -S
//! -qmp unix:...`, plus the chardevs named below) and driven by the same
//! client code over QMP on a unix socket.
//!
//! - QMP round trip: `query-status`, one at a time, median and p99.
//! - QMP bulk input: (a) many `query-status` commands written as fast as the
//!   socket takes them while another thread reads the replies, (b) one
//!   `ringbuf-write` of several MiB; MB/s of request bytes, from the first
//!   byte written to the last reply read.
//! - Idle resident memory: `VmRSS` from `/proc/PID/status` after start-up
//!   settles (QMP negotiated, one command answered, then a second's pause).
//! - 10,000 chardevs: `chardev-add` of null backends one after the other,
//!   then one `query-chardev`, and the RSS growth per chardev. QEMU gets a
//!   time budget (`QCHAR_BENCH_MANY_BUDGET`, seconds, default 300); past it
//!   the bench says so and reports the rate it had.
//! - Another monitor during a hung connect: monitor A asks `chardev-add` of
//!   a TCP client to a loopback listener whose accept queue is full (the
//!   connect is neither accepted nor refused); monitor B's `query-status`
//!   round trips are timed while A's reply has not come. The bench closes
//!   the listener after [`HANG`]; the connect then ends at the kernel's
//!   next SYN retry. QEMU's whole main loop waits for the connect, so its
//!   first round trip lasts until then; qchar answers B meanwhile.
//!
//! `cargo bench -p qchar --bench vs_qemu` (needs `/dev/kvm`; QEMU figures
//! where `qemu-system-x86_64` is installed). Environment:
//! `QCHAR_BENCH_RTT` (default 5000) round trips, `QCHAR_BENCH_STREAM`
//! (default 20000) streamed commands, `QCHAR_BENCH_RINGBUF_MIB` (default 8),
//! `QCHAR_BENCH_MANY` (default 10000) chardevs, `QCHAR_BENCH_ONLY` (`qchar`
//! or `qemu`) to run one side. `RESULT` lines are for `scripts/bench.sh`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qchar_testkit::{env_num, require, Prereq};

const WAIT: Duration = Duration::from_secs(60);
/// How long the bench keeps a connect hanging before it lets it fail.
const HANG: Duration = Duration::from_secs(2);

/// The QMP client both VMMs get.
struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
    line: String,
}

impl Qmp {
    fn connect(path: &Path) -> Qmp {
        let start = Instant::now();
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if start.elapsed() > WAIT => panic!("QMP {path:?}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        s.set_read_timeout(Some(WAIT * 10)).unwrap();
        let mut q = Qmp {
            w: s.try_clone().unwrap(),
            r: BufReader::with_capacity(1 << 16, s),
            line: String::new(),
        };
        q.read_line();
        q.cmd(r#"{"execute":"qmp_capabilities"}"#);
        q
    }

    fn read_line(&mut self) -> &str {
        self.line.clear();
        let n = self.r.read_line(&mut self.line).unwrap();
        assert!(n > 0, "QMP connection closed");
        &self.line
    }

    /// Reads up to the next reply (events skipped) and checks it is no error.
    fn reply(&mut self) -> &str {
        loop {
            self.read_line();
            if !self.line.starts_with("{\"timestamp\"") && !self.line.contains("\"event\"") {
                break;
            }
        }
        assert!(!self.line.contains("\"error\""), "{}", self.line);
        &self.line
    }

    /// Sends one command and returns its reply.
    fn cmd(&mut self, json: &str) -> &str {
        let mut msg = Vec::with_capacity(json.len() + 1);
        msg.extend_from_slice(json.as_bytes());
        msg.push(b'\n');
        self.w.write_all(&msg).unwrap();
        self.reply()
    }

    /// `quit`; errors do not matter (the process may be gone).
    fn quit(&mut self) {
        let _ = self.w.write_all(b"{\"execute\":\"quit\"}\n");
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Vmm {
    Qchar,
    Qemu,
}

impl Vmm {
    fn name(self) -> &'static str {
        match self {
            Vmm::Qchar => "qchar",
            Vmm::Qemu => "qemu",
        }
    }

    fn program(self) -> &'static str {
        match self {
            Vmm::Qchar => env!("CARGO_BIN_EXE_qchar"),
            Vmm::Qemu => "qemu-system-x86_64",
        }
    }

    /// Starts the VMM with the common options plus `extra`; returns the
    /// process and a negotiated QMP session.
    fn start(self, dir: &Path, extra: &[String]) -> (Proc, Qmp) {
        let qmp = dir.join(format!("{}-qmp.sock", self.name()));
        let _ = std::fs::remove_file(&qmp);
        let mut args: Vec<String> = "-enable-kvm -nodefaults -display none -S"
            .split_whitespace()
            .map(str::to_string)
            .collect();
        args.push("-qmp".into());
        args.push(format!("unix:{},server=on,wait=off", qmp.display()));
        args.extend_from_slice(extra);
        let p = Proc(
            Command::new(self.program())
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| panic!("{}: {e}", self.program())),
        );
        let q = Qmp::connect(&qmp);
        (p, q)
    }
}

fn rss_kib(p: &Proc) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{}/status", p.0.id())).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn pct(v: &[Duration], p: f64) -> f64 {
    qchar_testkit::percentile(v, p).as_secs_f64() * 1e6
}

fn round_trip(vmm: Vmm, dir: &Path, n: u64) -> (f64, f64) {
    let (_p, mut q) = vmm.start(dir, &[]);
    for _ in 0..200 {
        q.cmd(r#"{"execute":"query-status"}"#);
    }
    let mut lat = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = Instant::now();
        q.cmd(r#"{"execute":"query-status"}"#);
        lat.push(t.elapsed());
    }
    q.quit();
    lat.sort();
    (pct(&lat, 0.5), pct(&lat, 0.99))
}

/// Writes `input` from another thread while this one reads `replies`
/// replies; MB/s of `input` from the first write to the last reply.
fn stream(q: &mut Qmp, input: Vec<u8>, replies: u64) -> f64 {
    let mut w = q.w.try_clone().unwrap();
    let len = input.len();
    let t = Instant::now();
    let writer = std::thread::spawn(move || w.write_all(&input).unwrap());
    for _ in 0..replies {
        q.reply();
    }
    let d = t.elapsed();
    writer.join().unwrap();
    len as f64 / d.as_secs_f64() / 1e6
}

fn bulk(vmm: Vmm, dir: &Path, cmds: u64, ring_mib: u64) -> (f64, f64, f64) {
    let (_p, mut q) = vmm.start(
        dir,
        &["-chardev".into(), "ringbuf,id=rb,size=1048576".into()],
    );
    let one = b"{\"execute\":\"query-status\"}\n";
    let input = one.repeat(cmds as usize);
    let t = Instant::now();
    let mbs = stream(&mut q, input, cmds);
    let cmds_s = cmds as f64 / t.elapsed().as_secs_f64();
    let data = "x".repeat((ring_mib << 20) as usize);
    let big = format!(
        "{{\"execute\":\"ringbuf-write\",\"arguments\":{{\"device\":\"rb\",\"data\":\"{data}\"}}}}\n"
    );
    let ring = stream(&mut q, big.into_bytes(), 1);
    q.quit();
    (mbs, cmds_s, ring)
}

fn idle_rss(vmm: Vmm, dir: &Path) -> u64 {
    let sock = dir.join(format!("{}-idle.sock", vmm.name()));
    let file = dir.join(format!("{}-idle.log", vmm.name()));
    let _ = std::fs::remove_file(&sock);
    let extra = vec![
        "-chardev".into(),
        format!("socket,id=s0,path={},server=on,wait=off", sock.display()),
        "-chardev".into(),
        format!("file,id=f0,path={}", file.display()),
        "-chardev".into(),
        "ringbuf,id=r0".into(),
    ];
    let (p, mut q) = vmm.start(dir, &extra);
    q.cmd(r#"{"execute":"query-status"}"#);
    std::thread::sleep(Duration::from_secs(1));
    let rss = rss_kib(&p);
    q.quit();
    rss
}

struct Many {
    added: u64,
    add_s: f64,
    query_ms: f64,
    query_bytes: usize,
    per_chardev: f64,
}

fn many(vmm: Vmm, dir: &Path, n: u64, budget: Duration) -> Many {
    let (p, mut q) = vmm.start(dir, &[]);
    q.cmd(r#"{"execute":"query-chardev"}"#);
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(&p);
    let t = Instant::now();
    let mut added = 0;
    for i in 0..n {
        q.cmd(&format!(
            r#"{{"execute":"chardev-add","arguments":{{"id":"c{i}","backend":{{"type":"null","data":{{}}}}}}}}"#
        ));
        added += 1;
        if t.elapsed() > budget {
            break;
        }
    }
    let add_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let query_bytes = q.cmd(r#"{"execute":"query-chardev"}"#).len();
    let query_ms = t.elapsed().as_secs_f64() * 1e3;
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(&p);
    q.quit();
    Many {
        added,
        add_s,
        query_ms,
        query_bytes,
        per_chardev: (after.saturating_sub(before) * 1024) as f64 / added as f64,
    }
}

/// Monitor B's round trips while monitor A's `chardev-add` connect hangs
/// (see the module documentation): median and worst, in microseconds, and
/// how many round trips were made before A's reply.
fn hung_connect(vmm: Vmm, dir: &Path) -> (f64, f64, usize) {
    let b_path = dir.join(format!("{}-b.sock", vmm.name()));
    let _ = std::fs::remove_file(&b_path);
    let (_p, mut a) = vmm.start(
        dir,
        &[
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", b_path.display()),
        ],
    );
    let mut b = Qmp::connect(&b_path);
    for _ in 0..200 {
        b.cmd(r#"{"execute":"query-status"}"#);
    }
    let (listener, _clients, port) = qchar_testkit::full_tcp_listener();
    let add = format!(
        r#"{{"execute":"chardev-add","arguments":{{"id":"slow","backend":{{"type":"socket","data":{{"addr":{{"type":"inet","data":{{"host":"127.0.0.1","port":"{port}"}}}},"server":false}}}}}}}}"#
    );
    a.w.write_all(format!("{add}\n").as_bytes()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        // A's reply: the connect's refusal, once the listener is gone.
        loop {
            let line = a.read_line().to_string();
            if !line.contains("\"event\"") {
                let _ = tx.send(());
                return (a, line);
            }
        }
    });
    // The hang's length is the bench's choice, on a clock of its own: a
    // VMM whose loop waits for the connect would hold the round trip below.
    let ender = std::thread::spawn(move || {
        std::thread::sleep(HANG);
        drop(listener);
    });
    let mut lat = Vec::new();
    while rx.try_recv().is_err() {
        let t = Instant::now();
        b.cmd(r#"{"execute":"query-status"}"#);
        lat.push(t.elapsed());
    }
    ender.join().unwrap();
    let (mut a, reply) = reader.join().unwrap();
    assert!(reply.contains("Connection refused"), "{reply}");
    a.quit();
    lat.sort();
    let max = lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e6);
    (pct(&lat, 0.5), max, lat.len())
}

fn main() {
    // `cargo test --benches` runs this too: do a token amount then.
    let quick = !std::env::args().any(|a| a == "--bench");
    if !require(Prereq::Kvm) {
        return;
    }
    let pick = |name, full, token| if quick { token } else { env_num(name, full) };
    let rtt_n = pick("QCHAR_BENCH_RTT", 5000, 100);
    let stream_n = pick("QCHAR_BENCH_STREAM", 20000, 100);
    let ring_mib = pick("QCHAR_BENCH_RINGBUF_MIB", 8, 1);
    let many_n = pick("QCHAR_BENCH_MANY", 10000, 100);
    let budget = Duration::from_secs(env_num("QCHAR_BENCH_MANY_BUDGET", 300));
    let dir = tempfile::Builder::new()
        .prefix("qchar-vs")
        .tempdir()
        .unwrap();
    let dir: PathBuf = dir.path().to_path_buf();
    let mut vmms = vec![Vmm::Qchar];
    // Without QEMU (said so, or a failure under QCHAR_TEST_REQUIRE_ALL):
    // qchar's figures only.
    if require(Prereq::Qemu) {
        vmms.push(Vmm::Qemu);
    }
    if let Ok(only) = std::env::var("QCHAR_BENCH_ONLY") {
        vmms.retain(|v| v.name() == only);
    }
    for &vmm in &vmms {
        let name = vmm.name();
        let (p50, max, n) = hung_connect(vmm, &dir);
        println!(
            "{name:6} another monitor's query-status round trip while a connect hangs: {n} answered, median {p50:.1} us, worst {max:.1} us"
        );
        println!("RESULT hung_connect {name} p50_us={p50:.1} max_us={max:.1} n={n}");
        let (p50, p99) = round_trip(vmm, &dir, rtt_n);
        println!("{name:6} QMP query-status round trip over {rtt_n}: median {p50:.1} us, p99 {p99:.1} us");
        println!("RESULT qmp_rtt {name} p50_us={p50:.1} p99_us={p99:.1}");
        let (mbs, cmds_s, ring) = bulk(vmm, &dir, stream_n, ring_mib);
        println!(
            "{name:6} QMP bulk input: {stream_n} query-status streamed {mbs:.2} MB/s ({cmds_s:.0} commands/s); one {ring_mib} MiB ringbuf-write {ring:.1} MB/s"
        );
        println!(
            "RESULT qmp_bulk {name} stream_mb_s={mbs:.3} cmds_s={cmds_s:.0} ringbuf_mb_s={ring:.2}"
        );
        let rss = idle_rss(vmm, &dir);
        println!("{name:6} idle VmRSS {rss} KiB");
        println!("RESULT idle_rss {name} kib={rss}");
        let m = many(vmm, &dir, many_n, budget);
        if m.added < many_n {
            println!(
                "{name:6} chardev-add: time budget of {budget:?} used up after {} of {many_n}",
                m.added
            );
        }
        println!(
            "{name:6} {} chardev-add over QMP in {:.2} s ({:.0}/s); query-chardev then {:.1} ms ({} bytes); RSS {:.0} bytes per chardev",
            m.added,
            m.add_s,
            m.added as f64 / m.add_s,
            m.query_ms,
            m.query_bytes,
            m.per_chardev
        );
        println!(
            "RESULT many_qmp {name} added={} add_s={:.3} query_ms={:.2} bytes_per_chardev={:.0}",
            m.added, m.add_s, m.query_ms, m.per_chardev
        );
    }
}
