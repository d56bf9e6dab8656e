//! What the integration tests share: running the built `qchar` (and QEMU
//! where installed), a small QMP client over a unix socket.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qchar_testkit::{connect_unix, WAIT};
use serde_json::{json, Value};

/// The binary under test.
pub fn qchar_bin() -> &'static str {
    env!("CARGO_BIN_EXE_qchar")
}

/// A running child whose stdout and stderr are collected; killed if the
/// test ends without waiting for it.
pub struct Proc {
    pub child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(mut r: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

impl Proc {
    /// Starts `program args` in `dir` with stdin from /dev/null.
    pub fn spawn_program(program: &str, args: &[String], dir: &Path) -> Proc {
        Proc::spawn(program, args, dir, None)
    }

    /// Starts `program args` in `dir` with stdin from /dev/null and stdout
    /// to `stdout` (collected only if `None`).
    fn spawn(program: &str, args: &[String], dir: &Path, stdout: Option<OwnedFd>) -> Proc {
        let collect_out = stdout.is_none();
        let mut child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(stdout.map_or_else(Stdio::piped, Stdio::from))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let mut readers = vec![collect(child.stderr.take().unwrap(), err.clone())];
        if collect_out {
            readers.push(collect(child.stdout.take().unwrap(), out.clone()));
        }
        Proc {
            child,
            out,
            err,
            readers,
        }
    }

    /// Starts qchar.
    pub fn qchar(args: &[String], dir: &Path) -> Proc {
        Proc::spawn_program(qchar_bin(), args, dir)
    }

    /// Starts qchar with its stdout on `stdout` (a pipe the test reads).
    pub fn qchar_stdout_to(args: &[String], dir: &Path, stdout: OwnedFd) -> Proc {
        Proc::spawn(qchar_bin(), args, dir, Some(stdout))
    }

    /// Stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    /// Waits for the exit (bounded) and for the output pipes to close.
    pub fn wait(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return st;
            }
            if start.elapsed() > WAIT {
                let _ = self.child.kill();
                panic!("process did not exit; stderr so far:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Turns a command line written with `$D` for the test directory into
/// arguments.
pub fn argv(line: &str, dir: &Path) -> Vec<String> {
    let d = dir.to_str().unwrap();
    line.split_whitespace()
        .map(|a| a.replace("$D", d))
        .collect()
}

/// A QMP client.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// The greeting.
    pub greeting: Value,
    /// Events received so far (in order), with the position of the reply
    /// they preceded.
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connects (retrying while the socket does not exist yet), reads the
    /// greeting and negotiates capabilities.
    pub fn connect(path: &Path) -> Qmp {
        let stream = connect_unix(path);
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let writer = stream.try_clone().unwrap();
        let mut q = Qmp {
            reader: BufReader::new(stream),
            writer,
            greeting: Value::Null,
            events: Vec::new(),
        };
        q.greeting = q.read_line().expect("greeting");
        let r = q.execute(json!({"execute": "qmp_capabilities"}));
        assert_eq!(r, json!({"return": {}}));
        q
    }

    /// One JSON line; `None` at end of stream.
    pub fn read_line(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}")),
            ),
            Err(e) => panic!("QMP read failed: {e}"),
        }
    }

    /// Sends a command and returns its reply (`{"return": ...}` or
    /// `{"error": ...}`); events that come first are kept in `events`.
    pub fn execute(&mut self, cmd: Value) -> Value {
        let mut text = cmd.to_string();
        text.push('\n');
        self.writer.write_all(text.as_bytes()).unwrap();
        loop {
            let v = self
                .read_line()
                .expect("QMP connection closed before the reply");
            if v.get("event").is_some() {
                self.events.push(v);
            } else {
                return v;
            }
        }
    }

    /// `execute` for a command that must succeed; returns its `return`.
    pub fn cmd(&mut self, name: &str, args: Value) -> Value {
        let mut c = json!({ "execute": name });
        if !args.is_null() {
            c["arguments"] = args;
        }
        let r = self.execute(c.clone());
        match r.get("return") {
            Some(v) => v.clone(),
            None => panic!("{c} failed: {r}"),
        }
    }

    /// Names of the events received so far.
    pub fn event_names(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| e["event"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Reads until event `name` arrives (bounded by the read timeout).
    pub fn wait_event(&mut self, name: &str) -> Value {
        if let Some(e) = self.events.iter().find(|e| e["event"] == name) {
            return e.clone();
        }
        loop {
            let v = self
                .read_line()
                .unwrap_or_else(|| panic!("connection closed before event {name}"));
            if v.get("event").is_some() {
                self.events.push(v.clone());
                if v["event"] == name {
                    return v;
                }
            }
        }
    }

    /// Everything until the connection closes (after `quit`).
    pub fn read_to_end(&mut self) -> Vec<Value> {
        let mut all = Vec::new();
        while let Some(v) = self.read_line() {
            all.push(v);
        }
        all
    }
}

/// `query-chardev` as `(label, filename, frontend-open)` sorted by label
/// (QEMU lists them in hash order), with `dir` written `$D` and pty numbers
/// as `N`.
pub fn chardevs_masked(list: &Value, dir: &Path) -> Vec<(String, String, bool)> {
    let d = dir.to_str().unwrap();
    let mut v: Vec<(String, String, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["label"].as_str().unwrap().to_string(),
                mask_pts(&e["filename"].as_str().unwrap().replace(d, "$D")),
                e["frontend-open"].as_bool().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// `/dev/pts/12` -> `/dev/pts/N`.
pub fn mask_pts(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("/dev/pts/") {
        out.push_str(&rest[..i + 9]);
        rest = &rest[i + 9..];
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits > 0 {
            out.push('N');
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// A temporary directory with a short path (unix socket paths are limited
/// to 107 bytes).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("qchar-t")
        .tempdir_in(std::env::temp_dir())
        .unwrap()
}

/// Starts qchar with `line` (`$D` for a new test directory, which the
/// caller keeps) and connects to its QMP socket `$D/a`.
pub fn qchar_and_qmp(line: &str) -> (tempfile::TempDir, Proc, Qmp) {
    let dir = tempdir();
    let proc = Proc::qchar(&argv(line, dir.path()), dir.path());
    let q = Qmp::connect(&p(dir.path(), "a"));
    (dir, proc, q)
}

/// Path of `name` in `dir`.
pub fn p(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Numbered lines of the demo guest in `data` (`qchar-demo N\r\n`), echo
/// lines left out, checked to be 1, 2, 3... in order; returns the count and
/// the echo payloads. A trailing partial line is allowed (the guest may be
/// stopped mid-line).
pub fn check_demo_stream(data: &[u8]) -> (u64, Vec<String>) {
    let text = String::from_utf8_lossy(data);
    let mut next = 1u64;
    let mut echoes = Vec::new();
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let Some(end) = rest.find("\r\n") else {
            // Only a prefix of the next expected line may trail.
            let want = format!("{}\r\n", qchar_machine::guest::demo_line(next));
            let echo_prefix = qchar_machine::guest::ECHO_PREFIX;
            assert!(
                want.starts_with(rest)
                    || rest.starts_with(echo_prefix)
                    || echo_prefix.starts_with(rest),
                "trailing bytes {rest:?} are not the start of line {next}"
            );
            break;
        };
        let line = &rest[..end];
        rest = &rest[end + 2..];
        if let Some(payload) = line.strip_prefix(qchar_machine::guest::ECHO_PREFIX) {
            echoes.push(payload.to_string());
            continue;
        }
        let want = qchar_machine::guest::demo_line(next);
        assert_eq!(
            line, want,
            "line {next} is wrong (lost, repeated or reordered output)"
        );
        next += 1;
    }
    (next - 1, echoes)
}

/// Runs qchar with `line` where `/dev` is an empty tmpfs (a private mount
/// namespace), so `/dev/kvm` is absent for real. `None` (the test skips,
/// saying why) where namespaces are not allowed.
pub fn qchar_without_kvm(dir: &Path, line: &str) -> Option<Proc> {
    if !qchar_testkit::require(qchar_testkit::Prereq::MountNamespace) {
        return None;
    }
    let script = format!(
        "mount -t tmpfs none /dev && exec {} {}",
        qchar_bin(),
        argv(line, dir).join(" ")
    );
    Some(Proc::spawn_program(
        "unshare",
        &["-m".into(), "sh".into(), "-c".into(), script],
        dir,
    ))
}

/// Whether process `pid` has `/dev/kvm` open.
pub fn has_kvm_open(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == Path::new("/dev/kvm")))
        })
        .unwrap_or(false)
}

/// A QEMU 7.2 running qchar's demo guest (from a floppy image) with its
/// serial port a unix socket server (`-serial unix:PATH,server=on,wait=off`),
/// started paused (`-S`) so that a test can connect before the first line.
/// TCG: it needs no `/dev/kvm`, and a guest that does nothing but port I/O
/// runs faster under it than under nested KVM (every UART access an exit
/// through two hypervisors). Killed when dropped.
pub struct QemuGuest {
    pub proc: Proc,
    pub qmp: Qmp,
    /// The serial port's socket.
    pub serial: PathBuf,
}

impl QemuGuest {
    /// Starts QEMU in `dir`: image `image`, serial socket `serial`, QMP on
    /// `dir/NAME.qmp`.
    pub fn start(dir: &Path, name: &str, image: &Path, serial: &Path) -> QemuGuest {
        let qmp = dir.join(format!("{name}.qmp"));
        let _ = std::fs::remove_file(&qmp);
        let args: Vec<String> = [
            "-accel".into(),
            "tcg".into(),
            "-nodefaults".into(),
            "-display".into(),
            "none".into(),
            "-S".into(),
            "-m".into(),
            "32".into(),
            "-drive".into(),
            format!("file={},format=raw,if=floppy", image.display()),
            "-serial".into(),
            format!("unix:{},server=on,wait=off", serial.display()),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", qmp.display()),
        ]
        .into();
        let proc = Proc::spawn_program("qemu-system-x86_64", &args, dir);
        let qmp = Qmp::connect(&qmp);
        QemuGuest {
            proc,
            qmp,
            serial: serial.to_path_buf(),
        }
    }

    /// Whether a client is connected to the serial port's socket.
    pub fn serial_connected(&mut self) -> bool {
        let list = self.qmp.cmd("query-chardev", Value::Null);
        list.as_array().unwrap().iter().any(|c| {
            c["label"] == "serial0"
                && !c["filename"]
                    .as_str()
                    .unwrap_or("disconnected:")
                    .starts_with("disconnected:")
        })
    }

    /// Starts the guest (`cont`).
    pub fn cont(&mut self) {
        self.qmp.cmd("cont", Value::Null);
    }

    /// Kills QEMU at once (a crash, or a host killing the VM).
    pub fn kill(mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
    }
}

/// Writes the built-in demo guest to `dir/demo.img` with qchar's own
/// `--write-builtin-image`.
pub fn demo_image(dir: &Path) -> PathBuf {
    let path = dir.join("demo.img");
    let st = Command::new(qchar_bin())
        .args(["--write-builtin-image", "demo"])
        .arg(&path)
        .status()
        .expect("qchar --write-builtin-image");
    assert!(st.success());
    path
}
