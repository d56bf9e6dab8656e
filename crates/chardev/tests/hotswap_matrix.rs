//! Hotswap between every pair of backend kinds (file, ringbuf, pty, unix
//! server, unix client, tcp server, tcp client, udp), directly and under a
//! mux: numbered lines written before and after the change must all arrive,
//! in order, split between the old peer and the new one, none lost or
//! repeated. Server and pty targets get a backlog so that bytes moving over
//! before their peer connects are kept, as a user wanting zero loss would
//! configure them.

#[path = "support/net.rs"]
mod net;
mod support;

use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use net::*;
use qchar_chardev::opts::ChardevOptions;
use qchar_chardev::spec::{ChardevBackend, ChardevMux, ChardevReturn};
use qchar_chardev::{CharFrontend, ChardevError, Registry};
use qchar_testkit::{connect_unix, wait_until};
use support::{file_spec, ringbuf_spec, Recorder};

const LINES: usize = 300;
const BACKLOG: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Ringbuf,
    Pty,
    UnixServer,
    UnixClient,
    TcpServer,
    TcpClient,
    Udp,
}

const ALL: [Kind; 8] = [
    Kind::File,
    Kind::Ringbuf,
    Kind::Pty,
    Kind::UnixServer,
    Kind::UnixClient,
    Kind::TcpServer,
    Kind::TcpClient,
    Kind::Udp,
];

/// What reads one backend's output.
enum Sink {
    File(PathBuf),
    /// Read from the ring before the backend goes.
    Ring(Vec<u8>),
    /// A stream drained until its end.
    Stream(JoinHandle<Vec<u8>>),
    /// A pty slave drained (opened after the backend exists).
    Pty(Option<Drain>),
    /// A server's client, connected after the backend exists.
    Client(Option<Drain>),
    /// Datagrams, until told to stop.
    Udp(Arc<Mutex<Vec<u8>>>, Arc<AtomicBool>, Option<JoinHandle<()>>),
}

struct Ep {
    kind: Kind,
    spec: ChardevBackend,
    sink: Sink,
    path: Option<PathBuf>,
}

fn prepare(kind: Kind, dir: &Path, tag: &str) -> Ep {
    let p = dir.join(format!("{tag}.sock"));
    let (spec, sink) = match kind {
        Kind::File => {
            let f = dir.join(format!("{tag}.out"));
            (file_spec(&f), Sink::File(f))
        }
        Kind::Ringbuf => (ringbuf_spec(1 << 20), Sink::Ring(Vec::new())),
        Kind::Pty => (
            with_backlog(ChardevBackend::Pty(Default::default()), BACKLOG),
            Sink::Pty(None),
        ),
        Kind::UnixServer => (with_backlog(unix_server(&p), BACKLOG), Sink::Client(None)),
        Kind::TcpServer => (with_backlog(tcp_server(0), BACKLOG), Sink::Client(None)),
        Kind::UnixClient => {
            let l = UnixListener::bind(&p).unwrap();
            (unix_client(&p), Sink::Stream(drain_unix_listener(l)))
        }
        Kind::TcpClient => {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            (tcp_client(port), Sink::Stream(drain_tcp_listener(l)))
        }
        Kind::Udp => {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let port = s.local_addr().unwrap().port();
            let got = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let (g, st) = (got.clone(), stop.clone());
            let j = std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                // After the stop, what is already queued is still read:
                // everything was sent before the stop was given.
                loop {
                    match s.recv(&mut buf) {
                        Ok(n) => g.lock().unwrap().extend_from_slice(&buf[..n]),
                        Err(_) if st.load(Ordering::SeqCst) => break,
                        Err(_) => {}
                    }
                }
            });
            (udp(port, None), Sink::Udp(got, stop, Some(j)))
        }
    };
    Ep {
        kind,
        spec,
        sink,
        path: Some(p),
    }
}

impl Ep {
    /// The backend is in place: connect whatever connects to it, and wait
    /// until the chardev sees the peer.
    fn installed(&mut self, reg: &Registry, base: &str, ret: &ChardevReturn, fe: &CharFrontend) {
        match (&mut self.sink, self.kind) {
            (Sink::Pty(d), _) => {
                let path = ret.pty.clone().expect("pty path");
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .unwrap();
                *d = Some(Drain::new(f));
            }
            (Sink::Client(d), Kind::UnixServer) => {
                *d = Some(Drain::new(connect_unix(self.path.as_ref().unwrap())));
            }
            (Sink::Client(d), Kind::TcpServer) => {
                *d = Some(Drain::new(connect_tcp(server_port(reg, base))));
            }
            _ => return,
        }
        wait_until("peer connected", || fe.is_open());
    }

    /// The backend is about to go: take what only it holds.
    fn leaving(&mut self, reg: &Registry, id: &str, base: &str, written: usize) {
        match &mut self.sink {
            Sink::Ring(v) => {
                wait_until("queue empty", || queued(reg, id, base) == 0);
                *v = reg.ringbuf_read(base, 1 << 21).unwrap();
            }
            Sink::Pty(Some(d)) => {
                // Closing a pty master flushes what the slave has not read
                // (a kernel rule), so the reader catches up first.
                wait_until("pty reader caught up", || d.len() == written);
            }
            _ => {}
        }
    }

    /// The backend is gone: everything it delivered.
    fn finish(self) -> Vec<u8> {
        match self.sink {
            Sink::File(p) => std::fs::read(p).unwrap(),
            Sink::Ring(v) => v,
            Sink::Stream(j) => j.join().unwrap(),
            Sink::Pty(d) | Sink::Client(d) => d.map(Drain::finish).unwrap_or_default(),
            Sink::Udp(g, stop, j) => {
                stop.store(true, Ordering::SeqCst);
                if let Some(j) = j {
                    j.join().unwrap();
                }
                let v = g.lock().unwrap().clone();
                v
            }
        }
    }
}

fn queued(reg: &Registry, id: &str, base: &str) -> u64 {
    reg.stats(id).map(|s| s.queued).unwrap_or(0) + reg.stats(base).map(|s| s.queued).unwrap_or(0)
}

fn run_pair(a: Kind, b: Kind, mux: bool) {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    let (id, base) = if mux { ("m", "m-base") } else { ("c", "c") };
    let mut ea = prepare(a, dir.path(), "a");
    let ret = if mux {
        reg.add_options(&ChardevOptions {
            id: id.into(),
            backend: ea.spec.clone(),
            mux: true,
        })
        .unwrap()
    } else {
        reg.add(id, ea.spec.clone()).unwrap()
    };
    let fe = reg.attach(id).unwrap();
    let (r, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    ea.installed(&reg, base, &ret, &fe);
    let first = numbered("A", 0, LINES);
    let second = numbered("B", LINES, LINES);
    fe.write_all(&first).unwrap();
    ea.leaving(&reg, id, base, first.len());

    let mut eb = prepare(b, dir.path(), "b");
    let ret = reg
        .change(id, eb.spec.clone())
        .unwrap_or_else(|e| panic!("{a:?} -> {b:?} (mux {mux}): {e}"));
    eb.installed(&reg, base, &ret, &fe);
    fe.write_all(&second).unwrap();
    wait_until("queue empty", || queued(&reg, id, base) == 0);
    // The old backend is gone: its peer has everything it will get.
    let got_a = ea.finish();
    let total = first.len() + second.len();
    eb.leaving(&reg, id, base, total.saturating_sub(got_a.len()));
    // The last change closes B (sockets see their end of stream).
    reg.change(id, ChardevBackend::Null(Default::default()))
        .unwrap();
    let got_b = eb.finish();
    let mut all = got_a.clone();
    all.extend_from_slice(&got_b);
    let mut want = first.clone();
    want.extend_from_slice(&second);
    assert!(
        all == want,
        "{a:?} -> {b:?} (mux {mux}): old got {} bytes, new got {} bytes, want {} in order",
        got_a.len(),
        got_b.len(),
        want.len()
    );
    if !mux {
        // Under a mux the base changes; the mux follows it on its own.
        assert!(seen.lock().unwrap().changes >= 1);
    }
    reg.shutdown();
}

fn from(a: Kind) {
    for b in ALL {
        run_pair(a, b, false);
        run_pair(a, b, true);
    }
}

#[test]
fn from_file() {
    from(Kind::File);
}

#[test]
fn from_ringbuf() {
    from(Kind::Ringbuf);
}

#[test]
fn from_pty() {
    from(Kind::Pty);
}

#[test]
fn from_unix_server() {
    from(Kind::UnixServer);
}

#[test]
fn from_unix_client() {
    from(Kind::UnixClient);
}

#[test]
fn from_tcp_server() {
    from(Kind::TcpServer);
}

#[test]
fn from_tcp_client() {
    from(Kind::TcpClient);
}

#[test]
fn from_udp() {
    from(Kind::Udp);
}

#[test]
fn nothing_becomes_a_mux_by_change() {
    let reg = Registry::new().unwrap();
    reg.add("r", ringbuf_spec(4096)).unwrap();
    let fe = reg.attach("r").unwrap();
    let (r, _seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    let e = reg
        .change(
            "r",
            ChardevBackend::Mux(ChardevMux {
                common: Default::default(),
                chardev: "r".into(),
            }),
        )
        .unwrap_err();
    assert!(matches!(e, ChardevError::Invalid(_)));
    assert_eq!(e.to_string(), "Mux device hotswap not supported yet");
    reg.shutdown();
}
