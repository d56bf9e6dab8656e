//! Guest serial output throughput and `chardev-change` latency, qchar
//! against QEMU on the same boot image.
//!
//! `cargo bench -p qchar --bench serial` (needs `/dev/kvm`; QEMU figures
//! where `qemu-system-x86_64` is installed). The guest is the demo guest
//! with a line limit, written to a file with `qchar --write-builtin-image`.
//! Both run it from a raw hard-disk image (`-drive if=ide`): QEMU boots
//! SeaBIOS, which loads the boot sector; qchar loads it directly.
//!
//! Throughput is measured on the console's receiving side, from its first
//! byte to its last (so QEMU's BIOS time does not count): a file polled for
//! its size, or a unix socket read by the bench. Latency is the QMP round
//! trip of `chardev-change` between two files while the guest prints.
//!
//! Environment: `QCHAR_BENCH_LINES` (default 5000) lines per throughput run,
//! `QCHAR_BENCH_CHANGES` (default 200) changes for the latency figure.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qchar_testkit::{env_num, percentile, require, Prereq};

const LINE_LEN: u64 = 23; // "qchar-demo NNNNNNNNNN\r\n"
const WAIT: Duration = Duration::from_secs(300);

struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
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
        let mut q = Qmp {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        };
        q.line();
        q.cmd(r#"{"execute":"qmp_capabilities"}"#);
        q
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l
    }

    /// `quit`; the process may have ended already (a guest that halted
    /// ends qchar), so write errors do not matter.
    fn quit(&mut self) {
        let _ = self.w.write_all(b"{\"execute\":\"quit\"}\n");
    }

    /// Sends a command, returns its reply line (events skipped).
    fn cmd(&mut self, json: &str) -> String {
        self.w.write_all(json.as_bytes()).unwrap();
        self.w.write_all(b"\n").unwrap();
        loop {
            let l = self.line();
            if l.is_empty() {
                return l;
            }
            if !l.contains("\"event\"") {
                assert!(!l.contains("\"error\""), "{json}: {l}");
                return l;
            }
        }
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &str, args: &[String]) -> Proc {
    Proc(
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}")),
    )
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Polls `file` until it holds `total` bytes; returns the time from its
/// first byte to its last, and the bytes counted over that time.
fn time_file(file: &Path, total: u64) -> (Duration, u64) {
    let start = Instant::now();
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        let now = Instant::now();
        if len > 0 && first.is_none() {
            first = Some((now, len));
        }
        if len >= total {
            let (t0, l0) = first.unwrap();
            return (now - t0, total - l0);
        }
        assert!(
            start.elapsed() < WAIT,
            "{file:?} stuck at {len} of {total} bytes"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Reads a socket until `total` bytes; time from the first byte to the
/// last.
fn time_socket(mut s: UnixStream, total: u64) -> (Duration, u64) {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    let mut first: Option<(Instant, u64)> = None;
    while got < total {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "socket closed at {got} of {total} bytes");
        got += n as u64;
        if first.is_none() {
            first = Some((Instant::now(), got));
        }
    }
    let (t0, g0) = first.unwrap();
    (t0.elapsed(), total - g0)
}

fn rate(d: (Duration, u64)) -> f64 {
    d.1 as f64 / d.0.as_secs_f64()
}

enum Vmm {
    Qchar,
    Qemu,
}

impl Vmm {
    fn program(&self) -> &'static str {
        match self {
            Vmm::Qchar => env!("CARGO_BIN_EXE_qchar"),
            Vmm::Qemu => "qemu-system-x86_64",
        }
    }

    fn common(&self, image: &Path) -> String {
        let accel = match self {
            Vmm::Qchar => "",
            Vmm::Qemu => "-enable-kvm",
        };
        format!(
            "{accel} -nodefaults -display none -S -drive file={},format=raw,if=ide",
            image.display()
        )
    }
}

fn throughput_file(vmm: &Vmm, dir: &Path, image: &Path, lines: u64) -> f64 {
    let out = dir.join("t.log");
    let _ = std::fs::remove_file(&out);
    let qmp = dir.join("q.sock");
    let _ = std::fs::remove_file(&qmp);
    let line = format!(
        "{} -chardev file,id=con,path={} -serial chardev:con -qmp unix:{},server=on,wait=off",
        vmm.common(image),
        out.display(),
        qmp.display()
    );
    let _p = spawn(vmm.program(), &args(&line));
    let mut q = Qmp::connect(&qmp);
    q.cmd(r#"{"execute":"cont"}"#);
    let r = rate(time_file(&out, lines * LINE_LEN));
    q.quit();
    r
}

fn throughput_socket(vmm: &Vmm, dir: &Path, image: &Path, lines: u64) -> f64 {
    let sock = dir.join("c.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).unwrap();
    let qmp = dir.join("q.sock");
    let _ = std::fs::remove_file(&qmp);
    let line = format!(
        "{} -chardev socket,id=con,path={},server=off -serial chardev:con \
         -qmp unix:{},server=on,wait=off",
        vmm.common(image),
        sock.display(),
        qmp.display()
    );
    let _p = spawn(vmm.program(), &args(&line));
    let (s, _) = listener.accept().unwrap();
    let mut q = Qmp::connect(&qmp);
    q.cmd(r#"{"execute":"cont"}"#);
    let r = rate(time_socket(s, lines * LINE_LEN));
    q.quit();
    r
}

/// `chardev-change` round trips while the guest prints (unbounded guest).
fn change_latency(vmm: &Vmm, dir: &Path, image: &Path, changes: u64) -> Vec<Duration> {
    let a = dir.join("a.log");
    let qmp = dir.join("q.sock");
    let _ = std::fs::remove_file(&qmp);
    let line = format!(
        "{} -chardev file,id=con,path={} -serial chardev:con -qmp unix:{},server=on,wait=off",
        vmm.common(image),
        a.display(),
        qmp.display()
    );
    let _p = spawn(vmm.program(), &args(&line));
    let mut q = Qmp::connect(&qmp);
    q.cmd(r#"{"execute":"cont"}"#);
    // Printing has started.
    time_file(&a, 1000);
    let mut out = Vec::new();
    for i in 0..changes {
        let f = dir.join(format!("l{}.log", i % 2));
        let cmd = format!(
            r#"{{"execute":"chardev-change","arguments":{{"id":"con","backend":{{"type":"file","data":{{"out":"{}"}}}}}}}}"#,
            f.display()
        );
        let t = Instant::now();
        q.cmd(&cmd);
        out.push(t.elapsed());
    }
    q.quit();
    out.sort();
    out
}

fn kib(r: f64) -> String {
    format!("{:.1} KiB/s", r / 1024.0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too:
    // do a token amount then.
    let quick = !std::env::args().any(|a| a == "--bench");
    if !require(Prereq::Kvm) {
        return;
    }
    let lines = if quick {
        200
    } else {
        env_num("QCHAR_BENCH_LINES", 5000)
    };
    let changes = if quick {
        10
    } else {
        env_num("QCHAR_BENCH_CHANGES", 200)
    };
    let dir = tempfile::Builder::new()
        .prefix("qchar-b")
        .tempdir()
        .unwrap();
    let bounded: PathBuf = dir.path().join("demo-n.img");
    let endless: PathBuf = dir.path().join("demo.img");
    for (name, path) in [
        (format!("demo:{lines}"), &bounded),
        ("demo".into(), &endless),
    ] {
        let st = Command::new(env!("CARGO_BIN_EXE_qchar"))
            .args(["--write-builtin-image", &name, path.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let qemu = Command::new("qemu-system-x86_64")
        .arg("-version")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let mut vmms = vec![("qchar", Vmm::Qchar)];
    if qemu {
        vmms.push(("qemu", Vmm::Qemu));
    } else {
        eprintln!("qemu-system-x86_64 not installed: qchar figures only");
    }
    println!(
        "guest serial output, {lines} lines ({} bytes) per run; {changes} chardev-changes",
        lines * LINE_LEN
    );
    let mut results = Vec::new();
    for (name, vmm) in &vmms {
        let f = throughput_file(vmm, dir.path(), &bounded, lines);
        let s = throughput_socket(vmm, dir.path(), &bounded, lines);
        let l = change_latency(vmm, dir.path(), &endless, changes);
        println!(
            "{name:6} file {:>14}  unix socket {:>14}  chardev-change median {:?} p99 {:?} max {:?}",
            kib(f),
            kib(s),
            percentile(&l, 0.5),
            percentile(&l, 0.99),
            l[l.len() - 1]
        );
        results.push((f, s, percentile(&l, 0.5)));
    }
    if results.len() == 2 {
        let (a, b) = (results[0], results[1]);
        println!(
            "qchar/qemu: file {:.2}x  socket {:.2}x  change latency {:.2}x (lower is faster)",
            a.0 / b.0,
            a.1 / b.1,
            a.2.as_secs_f64() / b.2.as_secs_f64()
        );
    }
}
