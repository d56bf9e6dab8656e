//! Helpers shared by the integration tests: a registry with QMP monitors on
//! unix socket chardevs, and a raw line-oriented client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use qchar_chardev::registry::Registry;
use qchar_chardev::spec::{ChardevBackend, ChardevSocket, SocketAddressLegacy};
use qchar_monitor::event::EventBus;
use qchar_monitor::qmp::monitor::forward_registry_events;
use qchar_monitor::qmp::{QmpEnv, QmpMonitor, QmpOptions, VersionInfo};
use qchar_monitor::vm::NoGuest;

pub struct Harness {
    pub reg: Registry,
    pub env: Arc<QmpEnv>,
    pub dir: tempfile::TempDir,
    pub monitors: Vec<QmpMonitor>,
}

/// The version QEMU 7.2 in the recorded transcript reported, so replies
/// compare byte for byte.
pub fn qemu_version() -> VersionInfo {
    VersionInfo {
        major: 7,
        minor: 2,
        micro: 22,
        package: "Debian 1:7.2+dfsg-7+deb12u18+b3".into(),
    }
}

impl Harness {
    /// With qchar's `X_QCHAR_*` events.
    pub fn new() -> Harness {
        Harness::build(true)
    }

    /// Without qchar's own events: replies as QEMU would send them.
    pub fn qemu_compatible() -> Harness {
        Harness::build(false)
    }

    fn build(qchar_events: bool) -> Harness {
        let reg = Registry::new().expect("registry");
        let events = EventBus::new();
        if qchar_events {
            forward_registry_events(&reg, events.clone());
        }
        let env = Arc::new(QmpEnv {
            chardevs: Arc::new(reg.clone()),
            vm: Arc::new(NoGuest::new(events.clone(), true, || {})),
            version: qemu_version(),
            events,
            web: None,
        });
        Harness {
            reg,
            env,
            dir: tempfile::tempdir().expect("tempdir"),
            monitors: Vec::new(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Adds a listening unix socket chardev and returns its path. A failure
    /// is a failure of the test, never a skip.
    pub fn add_socket(&self, id: &str) -> PathBuf {
        let path = self.path(&format!("{id}.sock"));
        if let Err(e) = self.reg.add(id, socket_spec(&path)) {
            panic!("cannot add socket chardev {id} at {}: {e}", path.display());
        }
        path
    }

    /// A QMP monitor on a new listening socket chardev.
    pub fn qmp_socket(&mut self, id: &str) -> PathBuf {
        self.qmp_socket_with(id, QmpOptions::default())
    }

    /// [`Harness::qmp_socket`] with options.
    pub fn qmp_socket_with(&mut self, id: &str, opts: QmpOptions) -> PathBuf {
        let path = self.add_socket(id);
        let m = QmpMonitor::attach(&self.reg, id, self.env.clone(), opts).expect("attach");
        self.monitors.push(m);
        path
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for m in self.monitors.drain(..) {
            m.detach();
        }
        self.reg.shutdown();
    }
}

pub fn socket_spec(path: &Path) -> ChardevBackend {
    ChardevBackend::Socket(ChardevSocket::new(
        SocketAddressLegacy::unix(path.to_string_lossy()),
        true,
    ))
}

/// A raw client that reads `\r\n`-terminated lines.
pub struct Client {
    pub r: BufReader<UnixStream>,
    pub w: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let s = qchar_testkit::connect_unix(path);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    pub fn send(&mut self, b: &[u8]) {
        self.w.write_all(b).unwrap();
    }

    pub fn line(&mut self) -> Vec<u8> {
        let mut l = Vec::new();
        self.r.read_until(b'\n', &mut l).expect("read line");
        l
    }

    pub fn line_str(&mut self) -> String {
        String::from_utf8_lossy(&self.line()).into_owned()
    }

    /// Sends `b` and returns the next `n` lines.
    pub fn cmd_lines(&mut self, b: &[u8], n: usize) -> Vec<u8> {
        self.send(b);
        let mut out = Vec::new();
        for _ in 0..n {
            out.extend(self.line());
        }
        out
    }

    pub fn cmd(&mut self, b: &str) -> String {
        String::from_utf8_lossy(&self.cmd_lines(b.as_bytes(), 1)).into_owned()
    }

    /// Reads the greeting and negotiates capabilities.
    pub fn handshake(&mut self) -> String {
        let g = self.line_str();
        assert!(g.starts_with("{\"QMP\": "), "greeting: {g}");
        assert_eq!(
            self.cmd("{\"execute\":\"qmp_capabilities\"}"),
            "{\"return\": {}}\r\n"
        );
        g
    }

    /// Whether the server closed the connection (EOF within the timeout).
    pub fn at_eof(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
    }
}

/// Replaces event timestamps' digits with S/U.
pub fn mask_timestamps(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    'outer: while i < b.len() {
        for (key, rep) in [
            (&b"\"seconds\": "[..], b'S'),
            (&b"\"microseconds\": "[..], b'U'),
        ] {
            if b[i..].starts_with(key) {
                out.extend_from_slice(key);
                i += key.len();
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                out.push(rep);
                continue 'outer;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}
