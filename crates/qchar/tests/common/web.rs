//! The web console from the tests' side: qchar's printed URL, and a browser
//! on a terminal page read through xterm.js's own buffer API.

use std::net::SocketAddr;

use qchar_testkit::wait_for;
use qchar_testkit::webdriver::Browser;
use serde_json::{json, Value};

use super::Proc;

/// The console's URL (with its token) as qchar printed it on stderr.
pub fn url_from_stderr(p: &Proc) -> String {
    wait_for("qchar to print the web console's URL", || {
        let err = p.stderr();
        let at = err.find("web console at ")?;
        let rest = &err[at + "web console at ".len()..];
        let end = rest.find('\n')?;
        Some(rest[..end].trim().to_string())
    })
}

/// `http://ADDR/?token=T` -> (ADDR, T).
pub fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (addr, token) = rest.split_once("/?token=").expect("token in URL");
    (addr.parse().expect("address"), token.to_string())
}

/// The terminal's text: one string per line, wrapped lines joined, empty
/// lines at the end left out.
pub const BUFFER_JS: &str = "
    const b = window.qchar.term.buffer.active;
    const out = [];
    for (let i = 0; i < b.length; i++) {
        const l = b.getLine(i);
        const s = l.translateToString(true);
        if (l.isWrapped && out.length) { out[out.length - 1] += s; } else { out.push(s); }
    }
    while (out.length && out[out.length - 1] === '') out.pop();
    return out;";

/// A terminal page in a browser.
pub struct Term<'a> {
    pub b: &'a Browser,
}

impl<'a> Term<'a> {
    /// Loads `/console/ID` (`query` appended: `ro=1`...) and waits for its
    /// websocket to open.
    pub fn open(b: &'a Browser, base: &str, id: &str, query: &str) -> Term<'a> {
        let sep = if query.is_empty() { "" } else { "?" };
        b.goto(&format!("{base}/console/{id}{sep}{query}"));
        b.wait_js(
            "the terminal's websocket to open",
            "return window.qchar && window.qchar.open",
        );
        Term { b }
    }

    /// The lines in the terminal now.
    pub fn lines(&self) -> Vec<String> {
        let v = self.b.exec(BUFFER_JS, json!([]));
        v.as_array()
            .expect("lines")
            .iter()
            .map(|l| l.as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Bytes the terminal has processed (after xterm's write callback).
    pub fn written(&self) -> u64 {
        self.b
            .exec("return window.qchar.written", json!([]))
            .as_u64()
            .unwrap_or(0)
    }

    /// A member of the page's state (`window.qchar`).
    pub fn state(&self, name: &str) -> Value {
        self.b
            .exec("return window.qchar[arguments[0]]", json!([name]))
    }

    /// Waits until the terminal has processed at least `n` bytes.
    pub fn wait_written(&self, what: &str, n: u64) -> u64 {
        wait_for(what, || Some(self.written()).filter(|&w| w >= n))
    }

    /// Waits until some line satisfies `pred`; returns it.
    pub fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        wait_for(what, || self.lines().into_iter().find(|l| pred(l)))
    }

    /// The payloads of the guest's echo lines, joined: what it got as
    /// input (escaped as it prints it), however its lines cut it.
    pub fn echoed(&self) -> String {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix(qchar_machine::guest::ECHO_PREFIX))
            .collect()
    }

    /// Waits until the guest has echoed `input` (after what it echoed
    /// before).
    pub fn wait_echo(&self, what: &str, input: &[u8]) {
        let want = qchar_machine::guest::escape_echo(input);
        wait_for(what, || {
            Some(()).filter(|()| self.echoed().ends_with(&want))
        });
    }

    /// Types `text` (WebDriver key codes: `\u{E007}` is Enter) as a user
    /// would, into xterm's input element.
    pub fn type_text(&self, text: &str) {
        let el = self.b.find(".xterm-helper-textarea");
        self.b.send_keys(&el, text);
    }

    /// Types Ctrl and `key` into the terminal's input element, as
    /// [`Term::type_text`] types (so the element has the focus; key actions
    /// on their own go to whatever has it).
    pub fn ctrl(&self, key: &str) {
        self.type_text(&format!("\u{E009}{key}\u{E000}"));
    }

    /// Pastes `text` as the browser does on Ctrl-V: a `paste` event with
    /// the text as clipboard data, on xterm's input element.
    pub fn paste(&self, text: &str) {
        self.b.exec(
            "const dt = new DataTransfer();
             dt.setData('text/plain', arguments[0]);
             const ev = new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true });
             document.querySelector('.xterm-helper-textarea').dispatchEvent(ev);",
            json!([text]),
        );
    }

    /// The backend the page's header shows.
    pub fn backend(&self) -> String {
        self.b
            .exec(
                "return document.getElementById('backend').textContent",
                json!([]),
            )
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}
