//! Keystroke-to-echo latency through the web console's terminal page,
//! against a direct socket client, on the same guest in the same run.
//!
//! `cargo bench -p qchar --bench web` (needs `/dev/kvm`, `chromium` and
//! `chromedriver`). qchar runs the demo guest with its console on a unix
//! socket server; the bench is that socket's client, and a headless
//! Chromium has the console's terminal page open. In rounds, each path
//! sends one key at a time and times it until the guest's `qchar-echo`
//! line for it comes back:
//! - page: the key enters xterm.js as typed input (`term.input`, which
//!   fires the same `onData` a key press does), goes over the page's
//!   websocket to the console, into the chardev through its tap, to the
//!   guest; the echo comes back through the chardev's history, the tap and
//!   the websocket, and is timed when it reaches the page (JavaScript's
//!   `performance.now()`, in the page);
//! - socket: the key is written to the socket and timed until the echo is
//!   read from it.
//!
//! The guest looks for input once per line it prints, so both include up
//! to one line's time (about 0.3 ms at the demo's rate).
//!
//! Environment: `QCHAR_BENCH_KEYS` keys per path and round (default 50),
//! `QCHAR_BENCH_ROUNDS` (default 4).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use qchar_testkit::webdriver::ChromeDriver;
use qchar_testkit::{env_num, require, wait_for, Prereq};
use serde_json::json;

/// qchar, killed on drop.
struct Qchar(Child);

impl Drop for Qchar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts qchar; returns it and the web console's URL.
fn start(dir: &Path) -> (Qchar, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qchar"))
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-chardev",
            &format!(
                "socket,id=con,path={},server=on,wait=off",
                dir.join("con.sock").display()
            ),
            "-serial",
            "chardev:con",
            "-fda",
            "builtin:demo",
            "-x-web",
            "port=0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qchar");
    let mut err = child.stderr.take().unwrap();
    let mut text = String::new();
    let url = loop {
        let mut b = [0u8; 256];
        let n = err.read(&mut b).expect("qchar's stderr");
        assert!(n > 0, "qchar ended: {text}");
        text.push_str(&String::from_utf8_lossy(&b[..n]));
        if let Some(at) = text.find("web console at ") {
            if let Some(end) = text[at..].find('\n') {
                break text[at + 15..at + end].trim().to_string();
            }
        }
    };
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = err.read_to_end(&mut sink);
    });
    (Qchar(child), url)
}

/// Median, p90 and p99 of `v` (sorted here), in the unit given.
fn summary(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.9), at(0.99))
}

/// The page's side: `n` keys, each timed until its echo reaches the page.
const PAGE_JS: &str = "
    const n = arguments[0];
    const done = arguments[arguments.length - 1];
    const q = window.qchar;
    const dec = new TextDecoder();
    let line = '';
    let waiting = null;
    const lat = [];
    // Each character of an echo line's payload, as it arrives: a key typed
    // while the guest prints the echo of the one before joins that line.
    const onMessage = (ev) => {
        if (typeof ev.data === 'string') return;
        for (const ch of dec.decode(new Uint8Array(ev.data))) {
            if (ch === '\\n') { line = ''; continue; }
            if (line.length < 64) line += ch;
            if (waiting && line.length > 11 && line.startsWith('qchar-echo ')
                && ch === waiting.key) {
                lat.push(performance.now() - waiting.t0);
                const w = waiting;
                waiting = null;
                w.resolve();
            }
        }
    };
    q.ws.addEventListener('message', onMessage);
    (async () => {
        for (let i = 0; i < n; i++) {
            const key = String.fromCharCode(97 + (i % 26));
            await new Promise((resolve) => {
                waiting = { key, t0: performance.now(), resolve };
                q.term.input(key, true);
            });
        }
        q.ws.removeEventListener('message', onMessage);
        done(lat);
    })();";

fn main() {
    if !require(Prereq::Kvm) || !require(Prereq::Chromium) {
        return;
    }
    let keys = env_num::<usize>("QCHAR_BENCH_KEYS", 50);
    let rounds = env_num::<usize>("QCHAR_BENCH_ROUNDS", 4);
    let dir = tempfile::Builder::new()
        .prefix("qchar-bench-web")
        .tempdir()
        .unwrap();
    let (_qchar, url) = start(dir.path());
    let base = url.split("/?token=").next().unwrap().to_string();

    // The direct client, with a reader that reports each echo line.
    let sock = qchar_testkit::connect_unix(&dir.path().join("con.sock"));
    let mut w = sock.try_clone().unwrap();
    let (tx, echoes) = mpsc::channel::<(Instant, u8)>();
    std::thread::spawn(move || reader(sock, tx));

    let driver = ChromeDriver::start();
    let b = driver.browser(1024, 640);
    b.goto(&url);
    b.goto(&format!("{base}/console/con"));
    b.wait_js(
        "the page's websocket",
        "return window.qchar && window.qchar.open",
    );
    b.wait_js("output in the page", "return window.qchar.written > 1000");

    let mut page: Vec<f64> = Vec::new();
    let mut direct: Vec<f64> = Vec::new();
    for _ in 0..rounds {
        let v = b.exec_async(PAGE_JS, json!([keys]));
        page.extend(v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()));
        while echoes.try_recv().is_ok() {}
        for i in 0..keys {
            let key = b'a' + (i % 26) as u8;
            let t0 = Instant::now();
            w.write_all(&[key]).unwrap();
            let at = wait_for("the echo on the socket", || {
                echoes
                    .recv_timeout(Duration::from_millis(100))
                    .ok()
                    .filter(|(_, k)| *k == key)
                    .map(|(t, _)| t)
            });
            direct.push((at - t0).as_secs_f64() * 1000.0);
        }
    }
    let (pm, p90, p99) = summary(&mut page);
    let (dm, d90, d99) = summary(&mut direct);
    println!("keystroke to echo, {} keys per path", page.len());
    println!("| path | median ms | p90 ms | p99 ms |");
    println!("| --- | --- | --- | --- |");
    println!("| browser page (xterm.js, websocket, tap) | {pm:.2} | {p90:.2} | {p99:.2} |");
    println!("| direct unix socket client | {dm:.2} | {d90:.2} | {d99:.2} |");
    println!("page / direct (median): {:.2}", pm / dm);
}

/// Reads the socket, reporting each byte of an echo line's payload
/// (`qchar-echo ...`) with the time it was read. (A key typed while the
/// guest prints the echo of the one before joins that line.)
fn reader(mut s: UnixStream, tx: mpsc::Sender<(Instant, u8)>) {
    let mut buf = vec![0u8; 65536];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = Instant::now();
        for &b in &buf[..n] {
            if b == b'\n' {
                line.clear();
                continue;
            }
            if line.len() < 64 {
                line.push(b);
            }
            if line.len() > ECHO.len() && line.starts_with(ECHO) && tx.send((now, b)).is_err() {
                return;
            }
        }
    }
}

const ECHO: &[u8] = b"qchar-echo ";
