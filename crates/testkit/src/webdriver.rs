// Hand-written: the dozen W3C WebDriver commands the browser tests use, over ureq; fantoccini and thirtyfour would bring an async HTTP stack, url/ICU and TLS crates for a local chromedriver.
//! Headless Chromium driven over WebDriver: [`ChromeDriver`] runs Debian's
//! `chromedriver`, [`Browser`] is one browser session (its own profile
//! directory), with what the tests do in a page: load a URL, run a script,
//! type into an element, resize the window, take a screenshot.
//!
//! Check [`crate::Prereq::Chromium`] first.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use base64::Engine;
use serde_json::{json, Value};

use crate::{wait_for, WAIT};

/// Chromium's flags: headless, as root, on a machine without a network
/// (the background-networking flags keep it from waiting for one).
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
];

/// A running `chromedriver` on a loopback port; killed on drop.
pub struct ChromeDriver {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(WAIT))
            .build(),
    )
}

impl ChromeDriver {
    /// Starts `chromedriver` on a free port and waits until it serves.
    pub fn start() -> ChromeDriver {
        let mut child = Command::new("chromedriver")
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run chromedriver: {e}"));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port: u16 = loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!("chromedriver exited before it said its port"),
            };
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                break rest
                    .trim_end_matches('.')
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("chromedriver's port in {line:?}: {e}"));
            }
        };
        // Keep reading its stdout so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let d = ChromeDriver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            agent: agent(),
        };
        wait_for("chromedriver to be ready", || {
            let v = d.call("GET", "/status", None).ok()?;
            v["ready"].as_bool().filter(|r| *r)
        });
        d
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        call(&self.agent, method, &format!("{}{path}", self.base), body)
    }

    /// A new headless browser with an empty profile and a `width` x
    /// `height` window.
    pub fn browser(&self, width: u32, height: u32) -> Browser {
        let profile = tempfile_dir();
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--window-size={width},{height}"));
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium_binary(),
                        "args": args,
                    },
                    "timeouts": { "script": WAIT.as_millis() as u64, "pageLoad": WAIT.as_millis() as u64 },
                }
            }
        });
        let v = self
            .call("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("cannot start a browser: {e}"));
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {v}"))
            .to_string();
        Browser {
            base: format!("{}/session/{id}", self.base),
            agent: self.agent.clone(),
            profile,
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `chromium` is on the PATH.
fn chromium_binary() -> String {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("chromium"))
                .find(|p| p.is_file())
        })
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "chromium".into())
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "qchar-chromium-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}

/// One WebDriver call; `Err` carries WebDriver's error.
fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let resp = match method {
        "GET" => agent.get(url).call(),
        "DELETE" => agent.delete(url).call(),
        _ => agent.post(url).send_json(body.unwrap_or_else(|| json!({}))),
    };
    let mut resp = resp.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = resp.status();
    let v: Value = resp
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_json()
        .map_err(|e| format!("{method} {url}: reply is not JSON: {e}"))?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if status.is_success() {
        Ok(value)
    } else {
        Err(format!(
            "{method} {url}: {status}: {} {}",
            value["error"].as_str().unwrap_or(""),
            value["message"].as_str().unwrap_or("")
        ))
    }
}

/// One browser (a WebDriver session); closed on drop.
pub struct Browser {
    base: String,
    agent: ureq::Agent,
    profile: std::path::PathBuf,
}

impl Browser {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        call(&self.agent, method, &format!("{}{path}", self.base), body)
    }

    #[track_caller]
    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, path, body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Loads `url` and waits for the page to load.
    pub fn goto(&self, url: &str) {
        self.ok("POST", "/url", Some(json!({ "url": url })));
    }

    /// The page's URL.
    pub fn current_url(&self) -> String {
        self.ok("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the
    /// page and returns what it returns.
    #[track_caller]
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.ok(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Runs `script` in the page as an asynchronous script: it finishes by
    /// calling its last argument with the result (WebDriver's
    /// `execute/async`), within [`WAIT`].
    #[track_caller]
    pub fn exec_async(&self, script: &str, args: Value) -> Value {
        self.ok(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// [`Browser::exec`] that may fail (a page still loading).
    pub fn try_exec(&self, script: &str, args: Value) -> Result<Value, String> {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Polls `script` until it returns something other than `null`,
    /// `false`, `0` or `""`, and returns that; panics naming `what` after
    /// [`WAIT`].
    #[track_caller]
    pub fn wait_js(&self, what: &str, script: &str) -> Value {
        wait_for(what, || {
            let v = self.try_exec(script, json!([])).ok()?;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            truthy.then_some(v)
        })
    }

    /// The first element matching CSS `selector` (its WebDriver id).
    #[track_caller]
    pub fn find(&self, selector: &str) -> String {
        let v = self.ok(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": selector })),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element id in {v}"))
            .to_string()
    }

    /// Types `text` into element `id` as key presses (WebDriver's key
    /// codes: `\u{E007}` is Enter).
    #[track_caller]
    pub fn send_keys(&self, id: &str, text: &str) {
        self.ok(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Presses `key` with Control held (`"a"`: Ctrl-a), through the
    /// actions API, as a user's keyboard would.
    #[track_caller]
    pub fn ctrl(&self, key: &str) {
        let actions = json!({ "actions": [{
            "type": "key", "id": "keyboard",
            "actions": [
                { "type": "keyDown", "value": "\u{E009}" },
                { "type": "keyDown", "value": key },
                { "type": "keyUp", "value": key },
                { "type": "keyUp", "value": "\u{E009}" },
            ]
        }]});
        self.ok("POST", "/actions", Some(actions));
        self.ok("DELETE", "/actions", None);
    }

    /// Sets the window's outer size.
    pub fn set_window_size(&self, width: u32, height: u32) {
        self.ok(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.ok("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("screenshot is not base64: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.call("DELETE", "", None);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
