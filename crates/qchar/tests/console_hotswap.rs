//! Soak: the demo guest runs under KVM and prints numbered lines on COM1
//! while QMP `chardev-change` moves its console through every backend kind
//! qchar has that a peer can read: file, pipe, pty, host serial line (the
//! slave of a pty the test owns), unix and TCP sockets as client and as
//! server, telnet, websocket, TLS (a TCP server and a TCP client with
//! `tls-creds`, the test at the other end of each session), udp, ringbuf,
//! memory, null and stdio (qchar's stdout is a pipe the test reads). The kinds follow
//! a de Bruijn sequence, so every ordered pair (`a` -> `b`) is changed across
//! about equally often (stdio -> stdio is refused, as in QEMU: the new
//! backend is opened before the old one goes, and stdio has one user; the
//! old one must go on). Afterwards:
//!
//! - every numbered line is found exactly once, in order, in the targets'
//!   contents joined in change order (a line may be split at a change);
//! - input typed into every kind that takes input came back as a
//!   `qchar-echo` line, each once and in order;
//! - qchar's open descriptors are exactly what they were after the warm-up
//!   (both counted with a file as the console), and its resident memory is
//!   within [`RSS_SLACK_KIB`] of it.
//!
//! The test is the peer of every target and reads all of them without
//! blocking from this one thread, so that "I read nothing" is a fact about
//! the descriptor, not about a reader thread lagging behind. Client sockets
//! are accepted when the change returns (qchar connected while opening the
//! backend); server, telnet, websocket and pty targets carry an `x-backlog`
//! so output before the test connects waits for it.
//!
//! Some targets lose what their peer has not read when qchar leaves them,
//! by nature, not by qchar's choice: a pty master's close discards what the
//! slave has not read, a ring buffer is gone with its backend, and null
//! discards everything it gets. Around such a change the guest is stopped
//! and the test proves the old target has delivered all it holds (see
//! [`settle`]) before it changes, then continues the guest.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{argv, p, tempdir, Proc, Qmp};
use qchar_testkit::pki::Pki;
use qchar_testkit::tlspeer::{client_config, rustls, server_config, Tls};
use qchar_testkit::{mkfifo, openpty, require, wait_for, wait_until, Prereq, WAIT};
use serde_json::{json, Value};

/// Bytes each target must receive before the next change (the guest
/// prints while the console moves, and lines get split at changes).
const MIN_BYTES_PER_TARGET: usize = 40;
/// Every this many visits of a kind that takes input, input is typed into
/// it and its echo awaited.
const ECHO_EVERY: usize = 5;
/// Replay buffer of the targets whose peer connects after the change.
const BACKLOG: u64 = 4 << 20;
/// Size of ringbuf and memory targets.
const RING: u64 = 1 << 20;
/// Changes before the descriptor and memory baseline is taken.
const WARMUP: usize = 500;
/// How far qchar's resident memory may end above the baseline.
const RSS_SLACK_KIB: u64 = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Pipe,
    Pty,
    Serial,
    UnixClient,
    UnixServer,
    TcpClient,
    TcpServer,
    Telnet,
    Websocket,
    TlsServer,
    TlsClient,
    Udp,
    Ringbuf,
    Memory,
    Null,
    Stdio,
}

const ALL: [Kind; 17] = [
    Kind::File,
    Kind::Pipe,
    Kind::Pty,
    Kind::Serial,
    Kind::UnixClient,
    Kind::UnixServer,
    Kind::TcpClient,
    Kind::TcpServer,
    Kind::Telnet,
    Kind::Websocket,
    Kind::TlsServer,
    Kind::TlsClient,
    Kind::Udp,
    Kind::Ringbuf,
    Kind::Memory,
    Kind::Null,
    Kind::Stdio,
];

impl Kind {
    fn index(self) -> usize {
        ALL.iter().position(|&k| k == self).unwrap()
    }

    /// Whether a change away from (or, for null, into) this kind must
    /// happen with the guest stopped and the target settled.
    fn needs_quiet_change(self) -> bool {
        matches!(self, Kind::Pty | Kind::Ringbuf | Kind::Memory | Kind::Null)
    }

    /// Whether the test can type into it.
    fn takes_input(self) -> bool {
        !matches!(
            self,
            Kind::File | Kind::Udp | Kind::Ringbuf | Kind::Memory | Kind::Null | Kind::Stdio
        )
    }
}

/// Every ordered pair of `0..k` once, as consecutive elements of the
/// returned cycle (a de Bruijn sequence of order 2; it starts with 0).
fn de_bruijn(k: usize) -> Vec<usize> {
    fn db(t: usize, p: usize, k: usize, a: &mut [usize], out: &mut Vec<usize>) {
        if t > 2 {
            if 2 % p == 0 {
                out.extend_from_slice(&a[1..=p]);
            }
            return;
        }
        a[t] = a[t - p];
        db(t + 1, p, k, a, out);
        for j in a[t - p] + 1..k {
            a[t] = j;
            db(t + 1, t, k, a, out);
        }
    }
    let mut a = vec![0; 3];
    let mut out = Vec::with_capacity(k * k);
    db(1, 1, k, &mut a, &mut out);
    out
}

/// One backend the console was moved to, and the test's end of it.
struct Target {
    kind: Kind,
    /// The chardev that holds the backend: `con`, or `con-base` under a mux.
    base: &'static str,
    /// Where the test reads (non-blocking) and, unless `tx` is set, writes.
    rx: Option<File>,
    /// Where input goes when it is not `rx` (a pipe's `PATH.in`).
    tx: Option<File>,
    /// Held open for the target's life (a serial target's own slave, so
    /// qchar's close does not hang the line up).
    _keep: Option<File>,
    /// A file target's path.
    path: Option<PathBuf>,
    /// A TLS target's session (instead of `rx`).
    tls: Option<TlsEnd>,
    /// Bytes as read (telnet and websocket framing included).
    raw: Vec<u8>,
    eof: bool,
}

fn set_nonblocking(f: &impl AsRawFd) {
    // SAFETY: fcntl on a descriptor the caller owns; no memory is passed.
    unsafe {
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        assert!(fl >= 0);
        assert_eq!(
            libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK),
            0
        );
    }
}

/// A descriptor as a `File`, for plain read(2)/write(2) on any kind.
fn as_file(fd: impl Into<OwnedFd>) -> File {
    let f = File::from(fd.into());
    set_nonblocking(&f);
    f
}

impl Target {
    fn new(kind: Kind, base: &'static str) -> Target {
        Target {
            kind,
            base,
            rx: None,
            tx: None,
            _keep: None,
            path: None,
            tls: None,
            raw: Vec::new(),
            eof: false,
        }
    }

    /// Reads what is there without waiting; returns how many bytes.
    fn pump(&mut self, q: &mut Qmp) -> usize {
        let before = self.raw.len();
        if matches!(self.kind, Kind::Ringbuf | Kind::Memory) {
            if self.base != "con" {
                flush(q, "con");
            }
            // ringbuf-read first moves queued output into the ring. One read
            // a call: with the guest printing, the ring is seldom empty.
            let r = q.cmd(
                "ringbuf-read",
                json!({"device": self.base, "size": RING, "format": "utf8"}),
            );
            let s = r.as_str().expect("ringbuf-read returns a string");
            self.raw.extend_from_slice(s.as_bytes());
        }
        if let (Some(t), false) = (self.tls.as_mut(), self.eof) {
            self.eof = t.pump(&mut self.raw);
        }
        let mut buf = [0u8; 65536];
        while let (Some(f), false) = (self.rx.as_mut(), self.eof) {
            match f.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // EIO: a pty whose master qchar closed.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => self.eof = true,
                Err(e) => panic!("{:?} read: {e}", self.kind),
            }
        }
        self.raw.len() - before
    }

    fn len(&self) -> usize {
        match &self.path {
            Some(path) => std::fs::metadata(path).map_or(0, |m| m.len() as usize),
            None => self.raw.len(),
        }
    }

    /// What the guest wrote, framing removed.
    fn data(&self) -> Vec<u8> {
        match (self.kind, &self.path) {
            (_, Some(path)) => std::fs::read(path).unwrap(),
            (Kind::Telnet, _) => strip_telnet(&self.raw),
            (Kind::Websocket, _) => ws_payloads(&self.raw),
            _ => self.raw.clone(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        if let Some(t) = self.tls.as_mut() {
            t.send(bytes);
            return;
        }
        let frame;
        let bytes = if self.kind == Kind::Websocket {
            frame = ws_client_frame(bytes);
            &frame[..]
        } else {
            bytes
        };
        let f = self.tx.as_mut().or(self.rx.as_mut()).expect("an input end");
        let mut rest = bytes;
        let start = Instant::now();
        while !rest.is_empty() {
            match f.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock && start.elapsed() < WAIT => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("{:?} write: {e}", self.kind),
            }
        }
    }

    /// Called once qchar has left the target: everything it received.
    fn finish(mut self, q: &mut Qmp) -> Vec<u8> {
        if matches!(self.kind, Kind::Ringbuf | Kind::Memory) {
            // Read to the end by `settle` before the change.
            return self.raw;
        }
        // Streams end when qchar closes its side; qchar did so before the
        // change returned, so the end of stream is already on its way.
        let streams = matches!(
            self.kind,
            Kind::Pipe
                | Kind::UnixClient
                | Kind::UnixServer
                | Kind::TcpClient
                | Kind::TcpServer
                | Kind::Telnet
                | Kind::Websocket
                | Kind::TlsServer
                | Kind::TlsClient
        );
        let start = Instant::now();
        while self.pump(q) > 0 || (streams && !self.eof) {
            assert!(start.elapsed() < WAIT, "{:?}: no end of stream", self.kind);
            std::thread::sleep(Duration::from_micros(200));
        }
        let data = self.data();
        if let Some(path) = &self.path {
            std::fs::remove_file(path).unwrap();
        }
        data
    }
}

/// The test's end of a TLS session over a non-blocking socket.
struct TlsEnd {
    conn: rustls::Connection,
    sock: TcpStream,
}

impl TlsEnd {
    fn new(conn: impl Into<rustls::Connection>, sock: TcpStream) -> TlsEnd {
        sock.set_nonblocking(true).unwrap();
        TlsEnd {
            conn: conn.into(),
            sock,
        }
    }

    /// Reads and decrypts what is there into `out`; `true` at the end (a
    /// close_notify, or the socket's end).
    fn pump(&mut self, out: &mut Vec<u8>) -> bool {
        let mut buf = [0u8; 65536];
        loop {
            loop {
                match self.conn.reader().read(&mut buf) {
                    Ok(0) => return true,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => return true,
                    Err(e) => panic!("TLS read: {e}"),
                }
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(_) => {
                    self.conn
                        .process_new_packets()
                        .expect("TLS records from qchar");
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("TLS socket read: {e}"),
            }
            self.flush();
        }
    }

    /// Sends what rustls has queued, as far as the socket takes it now.
    fn flush(&mut self) -> bool {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) => panic!("TLS socket write: {e}"),
            }
        }
        true
    }

    fn send(&mut self, bytes: &[u8]) {
        self.conn.writer().write_all(bytes).unwrap();
        let start = Instant::now();
        while !self.flush() {
            assert!(start.elapsed() < WAIT, "TLS write: no room");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Telnet's commands removed (the server's opening negotiation; `IAC IAC`
/// stands for a 0xff data byte).
fn strip_telnet(raw: &[u8]) -> Vec<u8> {
    const IAC: u8 = 255;
    const SB: u8 = 250;
    const SE: u8 = 240;
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != IAC {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        match raw.get(i + 1) {
            Some(&IAC) => {
                out.push(IAC);
                i += 2;
            }
            Some(251..=254) => i += 3,
            Some(&SB) => {
                let end = raw[i..]
                    .windows(2)
                    .position(|w| w == [IAC, SE])
                    .expect("subnegotiation ends");
                i += end + 2;
            }
            _ => i += 2,
        }
    }
    out
}

/// The payloads of a stream of server websocket frames (data frames only;
/// a trailing partial frame is left out).
fn ws_payloads(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i + 2 <= raw.len() {
        let opcode = raw[i] & 0x0f;
        assert_eq!(raw[i + 1] & 0x80, 0, "server frames are not masked");
        let (len, head) = match raw[i + 1] & 0x7f {
            126 if i + 4 <= raw.len() => {
                (usize::from(u16::from_be_bytes([raw[i + 2], raw[i + 3]])), 4)
            }
            127 if i + 10 <= raw.len() => (
                usize::try_from(u64::from_be_bytes(raw[i + 2..i + 10].try_into().unwrap()))
                    .unwrap(),
                10,
            ),
            126 | 127 => break,
            n => (usize::from(n), 2),
        };
        if i + head + len > raw.len() {
            break;
        }
        if opcode <= 2 {
            out.extend_from_slice(&raw[i + head..i + head + len]);
        }
        i += head + len;
    }
    out
}

/// A masked client frame carrying `payload` (binary).
fn ws_client_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x5a, 0xc3, 0x01, 0x7e];
    let len = u8::try_from(payload.len()).expect("short input");
    assert!(len < 126);
    let mut v = vec![0x82, 0x80 | len];
    v.extend_from_slice(&mask);
    v.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    v
}

/// The port of the TCP server the chardev `base` listens on, from its
/// `query-chardev` filename (`disconnected:tcp:127.0.0.1:PORT,server=on`).
fn listening_port(q: &mut Qmp, base: &str) -> u16 {
    let list = q.cmd("query-chardev", Value::Null);
    let name = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == base)
        .and_then(|c| c["filename"].as_str())
        .expect("the console in query-chardev")
        .to_string();
    let addr = name.split(',').next().unwrap();
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {name:?}"))
}

/// A UDP receiver on loopback whose buffer holds far more than a target
/// gets, so that no datagram is dropped by the kernel while the test is
/// busy elsewhere.
fn udp_receiver() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let size: libc::c_int = 16 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt reads `size` (a c_int that outlives the call)
        // for the length given; the socket is ours.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            break;
        }
    }
    s
}

fn open_rw(path: &str, flags: libc::c_int) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | flags)
        .open(path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"))
}

fn inet(port: u16) -> Value {
    json!({"type": "inet", "data": {"host": "127.0.0.1", "port": port.to_string()}})
}

/// `chardev-change` of `con` to a new target of `kind`; the target is
/// connected and readable when this returns. `base` is the chardev that
/// holds the real backend (`con`, or `con-base` under a mux).
fn change_to(
    q: &mut Qmp,
    dir: &Path,
    stdout: &File,
    kind: Kind,
    n: usize,
    base: &'static str,
    pki: &Pki,
) -> Target {
    let mut t = Target::new(kind, base);
    let change = |q: &mut Qmp, ty: &str, data: Value| {
        q.cmd(
            "chardev-change",
            json!({"id": "con", "backend": {"type": ty, "data": data}}),
        )
    };
    let sock = p(dir, &format!("s{n}.sock"));
    let server = |addr: Value, extra: Value| {
        let mut d = json!({"addr": addr, "server": true, "wait": false, "x-backlog": BACKLOG});
        for (k, v) in extra.as_object().unwrap() {
            d[k] = v.clone();
        }
        d
    };
    match kind {
        Kind::File => {
            let path = p(dir, &format!("t{n}.log"));
            change(q, "file", json!({"out": path.to_str().unwrap()}));
            t.path = Some(path);
        }
        Kind::Pipe => {
            let base_path = p(dir, &format!("p{n}"));
            let (pin, pout) = (
                base_path.with_extension("in"),
                base_path.with_extension("out"),
            );
            mkfifo(&pin);
            mkfifo(&pout);
            // A read-only open of a FIFO does not wait for a writer.
            t.rx = Some(
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&pout)
                    .unwrap(),
            );
            change(q, "pipe", json!({"device": base_path.to_str().unwrap()}));
            // qchar holds PATH.in open, so a write-only open succeeds.
            t.tx = Some(
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&pin)
                    .unwrap(),
            );
            std::fs::remove_file(&pin).unwrap();
            std::fs::remove_file(&pout).unwrap();
        }
        Kind::Pty => {
            let r = change(q, "pty", json!({"x-backlog": BACKLOG}));
            let path = r["pty"].as_str().expect("pty path in the reply");
            t.rx = Some(open_rw(path, libc::O_NONBLOCK));
        }
        Kind::Serial => {
            let (master, slave) = openpty();
            t._keep = Some(open_rw(&slave, 0));
            change(q, "serial", json!({"device": slave}));
            t.rx = Some(as_file(master));
        }
        Kind::UnixClient => {
            let l = UnixListener::bind(&sock).unwrap();
            change(
                q,
                "socket",
                json!({"addr": {"type": "unix", "data": {"path": sock.to_str().unwrap()}},
                       "server": false}),
            );
            // qchar connected while opening the backend.
            t.rx = Some(as_file(l.accept().unwrap().0));
            std::fs::remove_file(&sock).unwrap();
        }
        Kind::UnixServer => {
            let addr = json!({"type": "unix", "data": {"path": sock.to_str().unwrap()}});
            change(q, "socket", server(addr, json!({})));
            t.rx = Some(as_file(UnixStream::connect(&sock).unwrap()));
        }
        Kind::TcpClient => {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            change(
                q,
                "socket",
                json!({"addr": inet(port), "server": false, "nodelay": true}),
            );
            t.rx = Some(as_file(l.accept().unwrap().0));
        }
        Kind::TcpServer | Kind::Telnet | Kind::Websocket => {
            // TCP targets send at once: with Nagle's algorithm, the test's
            // delayed acknowledgements would hold small output for up to
            // 40 ms at every change, and the soak is about changes.
            let extra = match kind {
                Kind::Telnet => json!({"telnet": true, "nodelay": true}),
                Kind::Websocket => json!({"websocket": true, "nodelay": true}),
                _ => json!({"nodelay": true}),
            };
            change(q, "socket", server(inet(0), extra));
            let mut s = TcpStream::connect(("127.0.0.1", listening_port(q, base))).unwrap();
            if kind == Kind::Websocket {
                ws_handshake(&mut s);
            }
            t.rx = Some(as_file(s));
        }
        Kind::TlsServer => {
            let extra = json!({"nodelay": true, "tls-creds": "tls0"});
            change(q, "socket", server(inet(0), extra));
            let s = TcpStream::connect(("127.0.0.1", listening_port(q, base))).unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            let tls = Tls::client_over(s, "127.0.0.1", client_config(&pki.dir("client")))
                .expect("TLS handshake with qchar");
            t.tls = Some(TlsEnd::new(tls.s.conn, tls.s.sock));
        }
        Kind::TlsClient => {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            change(
                q,
                "socket",
                json!({"addr": inet(port), "server": false, "nodelay": true,
                       "tls-creds": "cli0"}),
            );
            let (s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            let tls = Tls::server_over(s, server_config(&pki.dir("server"), true))
                .expect("TLS handshake with qchar");
            t.tls = Some(TlsEnd::new(tls.s.conn, tls.s.sock));
        }
        Kind::Udp => {
            let s = udp_receiver();
            let port = s.local_addr().unwrap().port();
            change(q, "udp", json!({"remote": inet(port)}));
            t.rx = Some(as_file(s));
        }
        Kind::Ringbuf => {
            change(q, "ringbuf", json!({"size": RING}));
        }
        Kind::Memory => {
            change(q, "memory", json!({"size": RING}));
        }
        Kind::Null => {
            change(q, "null", json!({}));
        }
        Kind::Stdio => {
            change(q, "stdio", json!({}));
            t.rx = Some(stdout.try_clone().unwrap());
        }
    }
    t
}

/// Sends the upgrade request and reads the response head, byte by byte
/// so that no frame after it is taken.
fn ws_handshake(s: &mut TcpStream) {
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Protocol: binary\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).expect("websocket response head");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
}

/// With the guest stopped: reads `t` until qchar holds nothing more for
/// it. [`flush`] moves qchar's queued output into the backend: a round in
/// which that brought nothing to the target proves the queue was empty. Reads
/// here are of a descriptor, not of a reader thread: for sockets, pipes
/// and ptys the bytes qchar wrote are readable when its write returned
/// (a pty read that would block first waits for the line's pending input).
fn settle(q: &mut Qmp, t: &mut Target) {
    let mut quiet_rounds = 0;
    for _ in 0..1000 {
        t.pump(q);
        if !matches!(t.kind, Kind::Ringbuf | Kind::Memory) {
            flush(q, "con");
            if t.base != "con" {
                flush(q, t.base);
            }
        }
        if t.pump(q) == 0 {
            quiet_rounds += 1;
            if quiet_rounds == 2 {
                return;
            }
        } else {
            quiet_rounds = 0;
        }
    }
    panic!("{:?} kept receiving output with the guest stopped", t.kind);
}

/// Moves what chardev `id` has queued into its backend, as far as the
/// backend takes it now (`ringbuf-read` does so before it refuses a
/// chardev that is no ring). Under a mux, `con`'s queue goes into
/// `con-base`'s, so `con` is flushed first.
fn flush(q: &mut Qmp, id: &str) {
    let r = q.execute(json!({"execute": "ringbuf-read",
        "arguments": {"device": id, "size": 1}}));
    assert_eq!(
        r["error"]["desc"],
        format!("{id} is not a ringbuf device"),
        "unexpected reply {r}"
    );
}

/// qchar's open descriptors and resident memory (KiB), once it has no pty
/// open: a pty just left keeps its master open until its slave has read
/// what it was sent (the test has read it all), so qchar closes it soon
/// after the change.
fn usage(pid: u32) -> (usize, u64) {
    let fds = wait_for("qchar to close the pty it left", || {
        let links: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .map(|e| {
                // A descriptor closed since the listing reads as gone.
                std::fs::read_link(e.unwrap().path())
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect();
        let pty = links
            .iter()
            .any(|l| l.ends_with("/ptmx") || l.starts_with("/dev/pts/"));
        (!pty).then_some(links.len())
    });
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    (fds, rss)
}

/// Moves the console `changes` times (the last move is to a file) and
/// checks everything the module docs promise.
fn soak(name: &str, changes: usize, mux: bool) {
    if !require(Prereq::Kvm) {
        return;
    }
    assert!(changes > WARMUP + ALL.len() * ALL.len());
    let started = Instant::now();
    let dir = tempdir();
    let d = dir.path();
    let mux_opt = if mux { ",mux=on" } else { "" };
    // qchar's stdout is a pipe this thread reads, for the stdio targets.
    let mut ends = [0; 2];
    // SAFETY: pipe2 fills the two-element array it is given.
    let r = unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0);
    // SAFETY: both descriptors are new and owned by nobody else.
    let (stdout, child_stdout) =
        unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    let stdout = as_file(stdout);
    // Credentials for the TLS targets: qchar serves with `tls0` and
    // connects with `cli0`.
    let pki = Pki::new(&d.join("pki"));
    let mut args = argv(
        &format!(
            "-nodefaults -display none -S -chardev file,id=con,path=$D/t0.log{mux_opt} \
             -serial chardev:con -qmp unix:$D/qmp,server=on,wait=off -fda builtin:demo"
        ),
        d,
    );
    for (id, dir, endpoint) in [("tls0", "server", "server"), ("cli0", "client", "client")] {
        args.push("-object".into());
        args.push(format!(
            "tls-creds-x509,id={id},dir={},endpoint={endpoint}",
            pki.dir_str(dir)
        ));
    }
    let mut proc = Proc::qchar_stdout_to(&args, d, child_stdout);
    let base = if mux { "con-base" } else { "con" };
    let mut q = Qmp::connect(&p(d, "qmp"));
    q.cmd("cont", Value::Null);
    let mut running = true;

    let order = de_bruijn(ALL.len());
    assert_eq!(
        ALL[order[0]],
        Kind::File,
        "the cycle starts where qchar does"
    );
    let mut current = Target::new(Kind::File, base);
    current.path = Some(p(d, "t0.log"));
    let mut all = Vec::new();
    let mut echoes_sent = Vec::new();
    let mut visits = [0usize; ALL.len()];
    let mut pairs = [[0usize; ALL.len()]; ALL.len()];
    let mut baseline = None;
    let mut refused = 0;
    for n in 1..=changes {
        if current.kind != Kind::Null {
            // Let the guest print into the current target first.
            let start = Instant::now();
            while current.len() < MIN_BYTES_PER_TARGET {
                if current.pump(&mut q) == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
                assert!(
                    start.elapsed() < WAIT,
                    "change {n}: the {:?} target got no output",
                    current.kind
                );
            }
        }
        visits[current.kind.index()] += 1;
        if current.kind.takes_input() && visits[current.kind.index()] % ECHO_EVERY == 1 {
            let payload = format!("in{n}");
            current.send(payload.as_bytes());
            let line = format!("qchar-echo {payload}\r\n");
            wait_until(&format!("echo of {payload} by {:?}", current.kind), || {
                current.pump(&mut q);
                current
                    .data()
                    .windows(line.len())
                    .any(|w| w == line.as_bytes())
            });
            echoes_sent.push(payload);
        }

        let next_kind = if n == changes {
            Kind::File
        } else {
            ALL[order[n % order.len()]]
        };
        if current.kind == Kind::Stdio && next_kind == Kind::Stdio {
            // The new backend is opened before the old one goes (as in
            // QEMU), and stdio has one user: refused, the old one stays.
            let r = q.execute(json!({"execute": "chardev-change", "arguments": {
                "id": "con", "backend": {"type": "stdio", "data": {}}}}));
            assert_eq!(
                r["error"]["desc"], "cannot use stdio by multiple character devices",
                "{r}"
            );
            refused += 1;
            pairs[current.kind.index()][next_kind.index()] += 1;
            continue;
        }
        if running && (current.kind.needs_quiet_change() || next_kind == Kind::Null) {
            q.cmd("stop", Value::Null);
            running = false;
            settle(&mut q, &mut current);
        }
        let next = change_to(&mut q, d, &stdout, next_kind, n, base, &pki);
        if !running && next_kind != Kind::Null {
            q.cmd("cont", Value::Null);
            running = true;
        }
        pairs[current.kind.index()][next_kind.index()] += 1;
        let old = std::mem::replace(&mut current, next);
        all.extend_from_slice(&old.finish(&mut q));
        if baseline.is_none() && n >= WARMUP && next_kind == Kind::File {
            baseline = Some(usage(proc.pid()));
        }
    }
    let end = usage(proc.pid());
    let (fds0, rss0) = baseline.unwrap();

    // The end: stop, take everything, quit.
    q.cmd("stop", Value::Null);
    let r = q.execute(json!({"execute": "quit"}));
    assert_eq!(r, json!({"return": {}}));
    q.read_to_end();
    let st = proc.wait();
    assert!(st.success(), "{st:?}: {}", proc.stderr());
    all.extend_from_slice(&current.finish(&mut q));

    let changed = q
        .events
        .iter()
        .filter(|e| e["event"] == "X_QCHAR_CHARDEV_CHANGED")
        .count();
    assert_eq!(
        changed,
        changes - refused,
        "one X_QCHAR_CHARDEV_CHANGED per change"
    );
    for (i, row) in pairs.iter().enumerate() {
        for (j, &c) in row.iter().enumerate() {
            assert!(c > 0, "no change from {:?} to {:?}", ALL[i], ALL[j]);
        }
    }
    let (lines, echoes) = common::check_demo_stream(&all);
    assert_eq!(echoes, echoes_sent, "every input echoed once, in order");
    assert!(lines > changes as u64, "only {lines} lines");
    assert_eq!(
        end.0, fds0,
        "qchar's open descriptors: {fds0} after the warm-up, {} at the end",
        end.0
    );
    assert!(
        end.1 <= rss0 + RSS_SLACK_KIB,
        "qchar's resident memory grew from {rss0} KiB to {} KiB",
        end.1
    );
    let per_kind: Vec<String> = ALL
        .iter()
        .map(|k| format!("{k:?} {}", visits[k.index()]))
        .collect();
    eprintln!(
        "{name}: {changes} changes ({refused} refused; mux {mux}; {}), {lines} lines, {} echoes, {} bytes, \
         none lost, repeated or reordered; descriptors {fds0} -> {}, RSS {rss0} -> {} KiB; \
         in {:.1?}",
        per_kind.join(", "),
        echoes_sent.len(),
        all.len(),
        end.0,
        end.1,
        started.elapsed()
    );
}

#[test]
fn de_bruijn_cycle_has_every_ordered_pair_once() {
    for k in [1, 2, 3, 14] {
        let s = de_bruijn(k);
        assert_eq!(s.len(), k * k);
        let mut seen = vec![0; k * k];
        for i in 0..s.len() {
            seen[s[i] * k + s[(i + 1) % s.len()]] += 1;
        }
        assert!(seen.iter().all(|&c| c == 1), "k={k}: {seen:?}");
    }
}

#[test]
fn soak_10000_changes_through_every_backend_kind() {
    soak(
        "soak_10000_changes_through_every_backend_kind",
        10_000,
        false,
    );
}

#[test]
fn soak_under_a_mux() {
    soak("soak_under_a_mux", 1_000, true);
}
