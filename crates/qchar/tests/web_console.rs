//! The web console in a real browser: headless Chromium driven over
//! WebDriver (Debian's `chromium` and `chromedriver`) against the qchar
//! binary running the demo guest under KVM.
//!
//! - The demo guest's console in a terminal page: numbered lines arrive
//!   live; a typed line comes back as the guest's `qchar-echo` line; the
//!   console is moved 100 times (file, pty, unix socket) underneath the
//!   open page, which follows without a reload, and at the end every line
//!   is in the terminal's buffer (read through xterm.js's buffer API) once
//!   and in order. A second browser opened half-way shows the history
//!   first and ends with the same lines; a read-only page cannot type.
//! - A mux's Ctrl-a keys, a paste and a window resize in the page.
//! - A wrong token gets a 403 page and nothing else.
//! - A stock xterm.js with its attach addon types into a `websocket=on`
//!   chardev (text frames), and is dropped by one with
//!   `x-websocket-text=off` (QEMU's websocket).
//! - `x-web-start`, `x-query-web`, `x-web-stop` over QMP.
//!
//! Screenshots of the index and a terminal page are written to the test's
//! temporary directory, and to `docs/` with `QCHAR_UPDATE_SCREENSHOTS=1`.

mod common;

use std::path::PathBuf;

use common::web::{split_url, url_from_stderr, Term};
use common::{argv, check_demo_stream, p, tempdir, Proc, Qmp};
use qchar_machine::guest::{demo_line, escape_echo, ECHO_PREFIX};
use qchar_testkit::webdriver::{Browser, ChromeDriver};
use qchar_testkit::{require, wait_for, wait_until, Prereq};
use serde_json::{json, Value};

/// History kept for the console (every line of the run fits).
const HISTORY: &str = "16M";

/// Enter, as WebDriver types it.
const ENTER: &str = "\u{E007}";

/// qchar in `dir` with the demo guest, its console `con` on `console`, a
/// QMP socket `qmp.sock` and a web console; returns the process, QMP, the
/// console's base URL and its URL with the token. Paths are relative to
/// `dir` (they show in the screenshots).
fn start(dir: &std::path::Path, console: &str) -> (Proc, Qmp, String, String) {
    let line = format!(
        "-nodefaults -display none -chardev {console} -serial chardev:con \
         -qmp unix:qmp.sock,server=on,wait=off -fda builtin:demo -x-web port=0"
    );
    let proc = Proc::qchar(&argv(&line, dir), dir);
    let url = url_from_stderr(&proc);
    let (addr, _token) = split_url(&url);
    let q = Qmp::connect(&p(dir, "qmp.sock"));
    (proc, q, format!("http://{addr}"), url)
}

/// A browser that has been to the console's URL (it holds the cookie).
fn logged_in(driver: &ChromeDriver, url: &str, width: u32, height: u32) -> Browser {
    let b = driver.browser(width, height);
    b.goto(url);
    b
}

/// Saves a screenshot as `name` in the test's temporary directory, and in
/// `docs/` when asked to.
fn screenshot(b: &Browser, name: &str) {
    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is no PNG");
    assert!(png.len() > 10_000, "{name}: {} bytes", png.len());
    std::fs::write(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name), &png).unwrap();
    if std::env::var_os("QCHAR_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        std::fs::write(docs.join(name), &png).unwrap();
    }
}

/// The demo's output as the terminal shows it: the numbered lines must be
/// 1, 2, 3... with nothing missing or twice; returns their count and the
/// echo lines' payloads.
fn demo_lines(lines: &[String]) -> (u64, Vec<String>) {
    check_demo_stream(lines.join("\r\n").as_bytes())
}

/// `x-query-chardev-stats`' `bytes-out` of chardev `id`.
fn bytes_out(q: &mut Qmp, id: &str) -> u64 {
    let all = q.cmd("x-query-chardev-stats", Value::Null);
    all.as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == id)
        .and_then(|c| c["bytes-out"].as_u64())
        .unwrap_or_else(|| panic!("no {id} in {all}"))
}

/// The backend of change number `i`: a file, a pty or a unix socket
/// server, in turn (each keeping the history), paths relative to qchar's
/// directory.
fn target(i: usize) -> Value {
    let common = json!({ "x-backlog": 16u64 << 20 });
    let mut data = match i % 3 {
        0 => json!({ "out": format!("console{i}.log") }),
        1 => json!({}),
        _ => json!({
            "addr": { "type": "unix", "data": { "path": format!("console{i}.sock") } },
            "server": true,
            "wait": false,
        }),
    };
    for (k, v) in common.as_object().unwrap() {
        data[k] = v.clone();
    }
    let kind = ["file", "pty", "socket"][i % 3];
    json!({ "type": kind, "data": data })
}

#[test]
fn the_demo_console_in_browsers_across_100_changes() {
    if !require(Prereq::Kvm) || !require(Prereq::Chromium) {
        return;
    }
    let dir = tempdir();
    let console = format!("file,id=con,path=console.log,backlog={HISTORY}");
    let (_proc, mut q, base, url) = start(dir.path(), &console);
    let driver = ChromeDriver::start();

    // The index: the token moved into a cookie, the chardevs listed.
    let a = logged_in(&driver, &url, 1024, 640);
    assert_eq!(a.current_url(), format!("{base}/"));
    let row = a.wait_js(
        "the index to list con",
        "const r = document.querySelector('#chardevs tr[data-id=\"con\"]');
         return r && [...r.cells].map(c => c.textContent)",
    );
    assert_eq!(row[0], "con");
    assert_eq!(row[1], "file:console.log");
    assert_eq!(row[2], "isa-serial COM1");

    // Numbered lines arrive live; a typed line comes back as an echo.
    let ta = Term::open(&a, &base, "con", "scrollback=1000000");
    ta.wait_line("line 100 in the terminal", |l| l == demo_line(100));
    ta.type_text(&format!("hello{ENTER}"));
    ta.wait_echo("the guest's echo", b"hello\r");
    // The picture: the guest paused with the echo in view.
    q.cmd("stop", Value::Null);
    a.exec(
        "const b = window.qchar.term.buffer.active;
         let at = 0;
         for (let i = 0; i < b.length; i++) {
             if (b.getLine(i).translateToString(true).startsWith(arguments[0])) at = i;
         }
         window.qchar.term.scrollToLine(Math.max(0, at - 20));",
        json!([ECHO_PREFIX]),
    );
    screenshot(&a, "web-terminal.png");
    a.exec("window.qchar.term.scrollToBottom()", json!([]));
    q.cmd("cont", Value::Null);

    // A read-only page: its keys go nowhere. Proven by order: its line is
    // typed first, then one in the read-write page; the guest echoes input
    // in the order it gets it, so the read-only line would come first.
    let c = logged_in(&driver, &url, 800, 600);
    let tc = Term::open(&c, &base, "con", "ro=1");
    assert_eq!(tc.state("readOnly"), json!(true));
    tc.type_text(&format!("nope{ENTER}"));
    ta.type_text(&format!("sync{ENTER}"));
    ta.wait_echo("the echo of the read-write page's line", b"sync\r");
    assert_eq!(ta.echoed(), escape_echo(b"hello\rsync\r"));
    assert_eq!(tc.state("sent"), json!(0));
    drop(c);

    // 100 changes under the open page; a second browser joins half-way.
    let mut late: Option<(Browser, u64)> = None;
    for i in 0..100 {
        let before = ta.written();
        q.cmd(
            "chardev-change",
            json!({ "id": "con", "backend": target(i) }),
        );
        ta.wait_written("output after the change", before + 100);
        if i == 50 {
            let b = logged_in(&driver, &url, 1024, 640);
            let seen_by_a = ta.written();
            late = Some((b, seen_by_a));
        }
    }
    let (b, seen_by_a_then) = late.unwrap();
    let tb = Term::open(&b, &base, "con", "scrollback=1000000");
    // History first: the late page starts at line 1, and has at once what
    // the first page had when it came.
    tb.wait_written("the history in the late page", seen_by_a_then);
    assert_eq!(tb.lines()[0], demo_line(1));

    // Stop the guest; both pages get everything the chardev sent.
    q.cmd("stop", Value::Null);
    let total = wait_for("the chardev's output to settle", || {
        let a = bytes_out(&mut q, "con");
        std::thread::sleep(std::time::Duration::from_millis(50));
        (bytes_out(&mut q, "con") == a).then_some(a)
    });
    wait_until("the first page to have all output", || {
        ta.written() == total
    });
    wait_until("the late page to have all output", || tb.written() == total);
    let lines_a = ta.lines();
    let (n, echoes) = demo_lines(&lines_a);
    assert!(n > 1000, "{n} lines");
    assert_eq!(
        echoes.concat(),
        escape_echo(b"hello\rsync\r"),
        "only the read-write page typed"
    );
    assert_eq!(tb.lines(), lines_a, "the late page shows the same");
    // The page followed the changes: its header names the last backend.
    assert_eq!(ta.backend(), "file:console99.log");
    assert_eq!(ta.state("skipped"), json!(0));

    // The index: the changes, and the late page still open.
    a.goto(&format!("{base}/"));
    let row = a.wait_js(
        "the index to show the changes",
        "const r = document.querySelector('#chardevs tr[data-id=\"con\"]');
         return r && r.cells[3].textContent === '1' && [...r.cells].map(c => c.textContent)",
    );
    assert!(row[6].as_str().unwrap().ends_with("(100)"), "{row}");
    screenshot(&a, "web-index.png");
    q.cmd("quit", Value::Null);
}

#[test]
fn mux_keys_paste_and_resize_in_the_page() {
    if !require(Prereq::Kvm) || !require(Prereq::Chromium) {
        return;
    }
    let dir = tempdir();
    // The console and an HMP monitor on one mux, as -nographic has them.
    let line = "-nodefaults -display none \
                -chardev socket,id=char0,path=$D/con.sock,server=on,wait=off,mux=on \
                -serial chardev:char0 -mon chardev=char0,mode=readline \
                -qmp unix:$D/a,server=on,wait=off -fda builtin:demo -x-web port=0";
    let proc = Proc::qchar(&argv(line, dir.path()), dir.path());
    let url = url_from_stderr(&proc);
    let (addr, _) = split_url(&url);
    let base = format!("http://{addr}");
    let mut q = Qmp::connect(&p(dir.path(), "a"));
    let driver = ChromeDriver::start();
    let a = logged_in(&driver, &url, 1024, 640);
    let t = Term::open(&a, &base, "char0", "scrollback=1000000");
    t.wait_line("the guest's lines", |l| l == demo_line(50));

    // Ctrl-a c: the monitor gets the keys; it answers a command. The guest
    // is stopped meanwhile: its output goes to the mux's base whatever has
    // the focus, and could cut the answer's line (as in QEMU).
    q.cmd("stop", Value::Null);
    t.ctrl("a");
    t.type_text("c");
    t.type_text(&format!("info chardev{ENTER}"));
    t.wait_line("info chardev's answer", |l| {
        l.starts_with("char0-base: filename=") && l.contains("con.sock")
    });
    t.wait_line("the monitor's prompt", |l| l.contains("(qemu) "));
    // Ctrl-a c again: back to the guest, which echoes.
    q.cmd("cont", Value::Null);
    t.ctrl("a");
    t.type_text("c");
    t.type_text(&format!("typed{ENTER}"));
    t.wait_echo("the guest's echo after Ctrl-a c", b"typed\r");

    // A paste reaches the guest as typed keys do.
    t.paste("pasted\r");
    t.wait_echo("the guest's echo of the paste", b"typed\rpasted\r");

    // The terminal follows the window's size.
    let cols = |t: &Term| {
        t.b.exec("return window.qchar.term.cols", json!([]))
            .as_u64()
            .unwrap()
    };
    let wide = cols(&t);
    a.set_window_size(640, 480);
    wait_until("fewer columns", || cols(&t) < wide);
    a.set_window_size(1280, 800);
    wait_until("more columns", || cols(&t) > wide);
    q.cmd("quit", Value::Null);
}

#[test]
fn a_wrong_token_gets_a_403_page_and_nothing_else() {
    if !require(Prereq::Kvm) || !require(Prereq::Chromium) {
        return;
    }
    let dir = tempdir();
    let (_proc, mut q, base, url) = start(dir.path(), "file,id=con,path=console.log");
    let (_, token) = split_url(&url);
    let driver = ChromeDriver::start();
    let b = driver.browser(800, 600);
    let wrong: String = token.chars().rev().collect();
    for path in [
        format!("/?token={wrong}"),
        "/".into(),
        "/console/con".into(),
        "/api/chardevs".into(),
    ] {
        b.goto(&format!("{base}{path}"));
        let text = b.exec("return document.body.innerText.trim()", json!([]));
        assert_eq!(text, json!("403 Forbidden"), "{path}");
    }
    // And a websocket from such a page opens nothing.
    let closed = b.exec(
        "return new Promise(done => {
             const ws = new WebSocket(`ws://${location.host}/ws/con`);
             ws.onopen = () => done('opened');
             ws.onerror = () => done('refused');
         })",
        json!([]),
    );
    assert_eq!(closed, json!("refused"));
    q.cmd("quit", Value::Null);
}

/// Serves `html` to every request on a loopback port (a page of the
/// test's own); returns its URL.
fn serve_once(html: String) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&b[..n]),
                }
            }
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    url
}

#[test]
fn a_stock_xterm_attach_addon_types_into_a_websocket_chardev() {
    if !require(Prereq::Kvm) || !require(Prereq::Chromium) {
        return;
    }
    let dir = tempdir();
    let (_proc, mut q, base, url) = start(dir.path(), "file,id=con,path=console.log");
    let (_, token) = split_url(&url);
    let driver = ChromeDriver::start();
    let b = driver.browser(1024, 640);
    // A page of its own (the console's pages may connect nowhere else),
    // served from loopback, with xterm.js and the attach addon as npm ships
    // them (from the console's /static/).
    let page = format!(
        "<!DOCTYPE html><html><head>\
         <script src=\"{base}/static/xterm.js?token={token}\"></script>\
         <script src=\"{base}/static/addon-attach.js?token={token}\"></script>\
         </head><body><div id=t></div></body></html>"
    );
    let page_url = serve_once(page);
    b.goto(&page_url);
    assert_eq!(
        b.exec(
            "return typeof Terminal + ' ' + typeof AttachAddon",
            json!([])
        ),
        json!("function object")
    );

    for (text_frames, port) in [(true, 0u16), (false, 0u16)] {
        // The console becomes a websocket server.
        let mut data = json!({
            "addr": { "type": "inet", "data": { "host": "127.0.0.1", "port": port.to_string() } },
            "server": true, "wait": false, "websocket": true,
        });
        if !text_frames {
            data["x-websocket-text"] = json!(false);
        }
        q.cmd(
            "chardev-change",
            json!({ "id": "con", "backend": { "type": "socket", "data": data } }),
        );
        let filename = q
            .cmd("query-chardev", Value::Null)
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["label"] == "con")
            .map(|c| c["filename"].as_str().unwrap().to_string())
            .unwrap();
        let port: u16 = filename
            .split(",server=on")
            .next()
            .and_then(|h| h.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("port in {filename}"));
        b.exec(
            "if (window.qterm) { window.qterm.dispose(); }
             window.qterm = new Terminal({ scrollback: 1000000 });
             window.qterm.open(document.getElementById('t'));
             window.wsClosed = null;
             // QEMU's websocket needs the subprotocol, as QEMU-style
             // clients (noVNC, websockify) ask for it.
             const ws = arguments[1]
                 ? new WebSocket(`ws://127.0.0.1:${arguments[0]}/`)
                 : new WebSocket(`ws://127.0.0.1:${arguments[0]}/`, ['binary']);
             ws.onclose = (e) => { window.wsClosed = e.code; };
             window.qterm.loadAddon(new AttachAddon.AttachAddon(ws));
             window.ws = ws;",
            json!([port, text_frames]),
        );
        b.wait_js(
            "numbered lines through the websocket",
            "const b = window.qterm.buffer.active;
             for (let i = 0; i < b.length; i++) {
                 if (b.getLine(i).translateToString(true).startsWith('qchar-demo ')) return true;
             }
             return false;",
        );
        // Typed keys: the addon sends them as text frames.
        let el = b.find(".xterm-helper-textarea");
        b.send_keys(&el, &format!("ws{ENTER}"));
        if text_frames {
            // The guest echoes what waits at each line's end: the keys
            // (one text frame each) may come back over several echo lines.
            let want = escape_echo(b"ws\r");
            wait_until("the guest's echo through the websocket", || {
                let echoed = b.exec(
                    "const b = window.qterm.buffer.active;
                     let e = '';
                     for (let i = 0; i < b.length; i++) {
                         const s = b.getLine(i).translateToString(true);
                         if (s.startsWith(arguments[0])) e += s.slice(arguments[0].length);
                     }
                     return e;",
                    json!([ECHO_PREFIX]),
                );
                echoed == json!(want)
            });
        } else {
            // QEMU's websocket drops a client that sends text.
            b.wait_js(
                "the websocket to be closed",
                "return window.wsClosed !== null",
            );
        }
    }
    q.cmd("quit", Value::Null);
}

#[test]
fn qmp_starts_queries_and_stops_the_web_console() {
    if !require(Prereq::Kvm) {
        return;
    }
    let dir = tempdir();
    let line = "-nodefaults -display none -chardev file,id=con,path=$D/c.log \
                -serial chardev:con -qmp unix:$D/a,server=on,wait=off -fda builtin:demo";
    let _proc = Proc::qchar(&argv(line, dir.path()), dir.path());
    let mut q = Qmp::connect(&p(dir.path(), "a"));
    assert_eq!(
        q.cmd("x-query-web", Value::Null),
        json!({ "running": false })
    );
    let r = q.execute(json!({ "execute": "x-web-stop" }));
    assert_eq!(r["error"]["desc"], "The web console is not running");
    let r = q.execute(json!({ "execute": "x-web-start", "arguments": {} }));
    assert_eq!(r["error"]["desc"], "Parameter 'port' is missing");
    let r =
        q.execute(json!({ "execute": "x-web-start", "arguments": { "port": 0, "token": "x" } }));
    assert_eq!(
        r["error"]["desc"],
        "web console: the token must be 16 to 256 characters of A-Z a-z 0-9 - . _ ~"
    );
    let started = q.cmd(
        "x-web-start",
        json!({ "port": 0, "token": "a-token-of-my-own-0123" }),
    );
    assert_eq!(started["host"], "127.0.0.1");
    assert_eq!(started["token"], "a-token-of-my-own-0123");
    let port = started["port"].as_u64().unwrap() as u16;
    assert_eq!(
        started["url"],
        format!("http://127.0.0.1:{port}/?token=a-token-of-my-own-0123")
    );
    let mut running = started.clone();
    running["running"] = json!(true);
    assert_eq!(q.cmd("x-query-web", Value::Null), running);
    let r = q.execute(json!({ "execute": "x-web-start", "arguments": { "port": 0 } }));
    assert_eq!(
        r["error"]["desc"],
        format!("The web console is already running on 127.0.0.1:{port}")
    );
    let api = |port: u16| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(
            b"GET /api/chardevs HTTP/1.1\r\nHost: x\r\n\
              Authorization: Bearer a-token-of-my-own-0123\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let listing = api(port);
    assert!(listing.starts_with("HTTP/1.1 200 OK\r\n"), "{listing}");
    assert!(listing.contains("\"id\":\"con\""), "{listing}");
    assert_eq!(q.cmd("x-web-stop", Value::Null), json!({}));
    assert_eq!(
        q.cmd("x-query-web", Value::Null),
        json!({ "running": false })
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    // The port is free again at once.
    let again = q.cmd("x-web-start", json!({ "port": port }));
    assert_eq!(again["port"].as_u64(), Some(u64::from(port)));
    q.cmd("quit", Value::Null);
}
