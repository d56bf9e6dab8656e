//! Helpers for the socket, udp, serial and mux tests: specs, peers that
//! read in the background, a minimal websocket client, ptys.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use qchar_chardev::spec::{
    ChardevBackend, ChardevCommon, ChardevHostdev, ChardevSocket, ChardevUdp, InetSocketAddress,
    SocketAddressLegacy, UnixSocketAddress,
};
use qchar_chardev::Registry;

/// A socket spec with every option off.
pub fn socket(addr: SocketAddressLegacy, server: bool) -> ChardevSocket {
    ChardevSocket::new(addr, server)
}

pub fn unix_addr(path: &std::path::Path) -> SocketAddressLegacy {
    SocketAddressLegacy::Unix(UnixSocketAddress {
        path: path.to_string_lossy().into_owned(),
        abstract_: None,
        tight: None,
    })
}

pub fn inet_addr(host: &str, port: u16) -> SocketAddressLegacy {
    SocketAddressLegacy::Inet(InetSocketAddress {
        host: host.into(),
        port: port.to_string(),
        ..Default::default()
    })
}

pub fn unix_server(path: &std::path::Path) -> ChardevBackend {
    ChardevBackend::Socket(socket(unix_addr(path), true))
}

pub fn unix_client(path: &std::path::Path) -> ChardevBackend {
    ChardevBackend::Socket(socket(unix_addr(path), false))
}

pub fn tcp_server(port: u16) -> ChardevBackend {
    ChardevBackend::Socket(socket(inet_addr("127.0.0.1", port), true))
}

pub fn tcp_client(port: u16) -> ChardevBackend {
    ChardevBackend::Socket(socket(inet_addr("127.0.0.1", port), false))
}

pub fn udp(remote_port: u16, local_port: Option<u16>) -> ChardevBackend {
    ChardevBackend::Udp(ChardevUdp {
        common: ChardevCommon::default(),
        remote: inet_addr("127.0.0.1", remote_port),
        local: local_port.map(|p| inet_addr("127.0.0.1", p)),
    })
}

pub fn serial(path: &str) -> ChardevBackend {
    ChardevBackend::Serial(ChardevHostdev {
        common: ChardevCommon::default(),
        device: path.into(),
    })
}

/// Sets the backlog (`x-backlog`) of a spec.
pub fn with_backlog(mut spec: ChardevBackend, n: u64) -> ChardevBackend {
    spec.common_mut().backlog = Some(n);
    spec
}

/// The `query-chardev` filename of `id`.
pub fn filename(reg: &Registry, id: &str) -> String {
    reg.query()
        .into_iter()
        .find(|i| i.label == id)
        .map(|i| i.filename)
        .unwrap_or_default()
}

/// The real port of a TCP server chardev, from its filename.
pub fn server_port(reg: &Registry, id: &str) -> u16 {
    let f = filename(reg, id);
    let head = f.split(",server=on").next().unwrap_or("");
    head.rsplit(':').next().unwrap().parse().unwrap()
}

/// A websocket server chardev `id` on a loopback port; returns the port.
pub fn ws_server(reg: &Registry, id: &str) -> u16 {
    let mut spec = socket(inet_addr("127.0.0.1", 0), true);
    spec.websocket = Some(true);
    reg.add(id, ChardevBackend::Socket(spec)).unwrap();
    server_port(reg, id)
}

/// A free loopback TCP port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Anything a test reads from in the background.
pub trait Stream: Read + Send + 'static {}
impl<T: Read + Send + 'static> Stream for T {}

/// Reads `r` into a shared buffer until end of file or error.
pub struct Drain {
    pub got: Arc<Mutex<Vec<u8>>>,
    join: Option<JoinHandle<()>>,
}

impl Drain {
    pub fn new(mut r: impl Stream) -> Drain {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let join = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => g.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
        });
        Drain {
            got,
            join: Some(join),
        }
    }

    pub fn len(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    pub fn snapshot(&self) -> Vec<u8> {
        self.got.lock().unwrap().clone()
    }

    /// Waits for end of file and returns everything read.
    pub fn finish(mut self) -> Vec<u8> {
        if let Some(j) = self.join.take() {
            j.join().unwrap();
        }
        self.snapshot()
    }
}

/// Accepts one connection on `l` in the background and drains it.
pub fn drain_unix_listener(l: UnixListener) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        Drain::new(s).finish()
    })
}

/// Accepts one connection on `l` in the background and drains it.
pub fn drain_tcp_listener(l: TcpListener) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        Drain::new(s).finish()
    })
}

/// Connects to a loopback TCP port, retrying while nothing listens there.
pub fn connect_tcp(port: u16) -> TcpStream {
    qchar_testkit::wait_for(&format!("a listener on port {port}"), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    })
}

/// Reads exactly `n` bytes (panics after a generous time).
pub fn read_n(r: &mut impl Read, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match r.read(&mut v[got..]) {
            Ok(0) => panic!("end of stream after {got} of {n} bytes"),
            Ok(k) => got += k,
            Err(e) => panic!("read failed after {got} of {n} bytes: {e}"),
        }
    }
    v
}

/// Sets a 30 s read timeout so a test fails rather than hangs.
pub fn bounded_unix(s: &UnixStream) {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
}

pub fn bounded_tcp(s: &TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
}

/// `n` numbered lines, `tag` in each, for loss and order checks.
pub fn numbered(tag: &str, from: usize, n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in from..from + n {
        v.extend_from_slice(format!("{tag} {i:08}\n").as_bytes());
    }
    v
}

// ----- a minimal websocket client ----------------------------------------

/// Sends a websocket upgrade request and reads the response head.
pub fn ws_handshake(s: &mut (impl Read + Write), protocol: Option<&str>) -> String {
    let mut req = String::from(
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    if let Some(p) = protocol {
        req.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A masked client frame.
pub fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut v = vec![0x80 | opcode];
    let n = payload.len();
    if n < 126 {
        v.push(0x80 | n as u8);
    } else if n <= 0xffff {
        v.push(0x80 | 126);
        v.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        v.push(0x80 | 127);
        v.extend_from_slice(&(n as u64).to_be_bytes());
    }
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    v
}

/// Reads one server frame: (opcode, payload). None at end of stream.
pub fn ws_read_frame(s: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let n = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut p = vec![0u8; n];
    s.read_exact(&mut p).ok()?;
    Some((h[0] & 0x0f, p))
}

// ----- ptys --------------------------------------------------------------

/// The termios of an open descriptor.
pub fn termios(fd: &impl AsRawFd) -> libc::termios {
    // SAFETY: tcgetattr fills the zeroed struct we own.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(fd.as_raw_fd(), &mut t), 0);
        t
    }
}

/// A file over a raw descriptor we own.
pub fn fd_file(fd: OwnedFd) -> std::fs::File {
    std::fs::File::from(fd)
}

// ----- the kernel's view of loopback TCP sockets -------------------------

/// One IPv4 TCP socket of this network namespace, from `/proc/net/tcp`.
#[derive(Debug, Clone, Copy)]
pub struct TcpRow {
    pub local_port: u16,
    pub remote_port: u16,
    /// The kernel's state number: 0x01 established, 0x0A listening.
    pub state: u8,
    /// Bytes received and not yet read; for a listener, the connections
    /// waiting to be accepted.
    pub rx_queue: u64,
}

pub const TCP_ESTABLISHED: u8 = 0x01;
pub const TCP_LISTEN: u8 = 0x0a;

/// Every IPv4 TCP socket the kernel lists.
pub fn tcp_rows() -> Vec<TcpRow> {
    let text = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            TcpRow {
                local_port: port(f[1]),
                remote_port: port(f[2]),
                state: u8::from_str_radix(f[3], 16).unwrap(),
                rx_queue: u64::from_str_radix(f[4].split(':').nth(1).unwrap(), 16).unwrap(),
            }
        })
        .collect()
}

/// The receive queue of the established socket from local port `local` to
/// remote port `remote` (`None` if there is none).
pub fn tcp_unread(local: u16, remote: u16) -> Option<u64> {
    tcp_rows()
        .into_iter()
        .find(|r| r.state == TCP_ESTABLISHED && r.local_port == local && r.remote_port == remote)
        .map(|r| r.rx_queue)
}

/// Whether the listener on `port` has accepted the connection from client
/// port `client`: the server's end exists and nothing waits in the
/// listener's accept queue.
pub fn tcp_accepted(port: u16, client: u16) -> bool {
    let rows = tcp_rows();
    let server_end = rows
        .iter()
        .any(|r| r.state == TCP_ESTABLISHED && r.local_port == port && r.remote_port == client);
    let waiting = rows
        .iter()
        .filter(|r| r.state == TCP_LISTEN && r.local_port == port)
        .map(|r| r.rx_queue)
        .sum::<u64>();
    server_end && waiting == 0
}

// ----- multi-client servers ----------------------------------------------

/// A socket spec with `x-clients` (and `x-writers`) set.
pub fn with_clients(mut spec: ChardevBackend, n: u64, writers: Option<u64>) -> ChardevBackend {
    if let ChardevBackend::Socket(s) = &mut spec {
        s.clients = Some(n);
        s.writers = writers;
    }
    spec
}

/// A telnet server spec on a loopback port.
pub fn telnet_server(port: u16) -> ChardevBackend {
    let mut s = socket(inet_addr("127.0.0.1", port), true);
    s.telnet = Some(true);
    ChardevBackend::Socket(s)
}

/// A websocket server spec on a loopback port.
pub fn websocket_server(port: u16) -> ChardevBackend {
    let mut s = socket(inet_addr("127.0.0.1", port), true);
    s.websocket = Some(true);
    ChardevBackend::Socket(s)
}

/// Reads websocket frames until `n` payload bytes came; returns them.
pub fn ws_read_n(s: &mut impl Read, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let (op, p) = ws_read_frame(s).expect("a frame");
        assert_eq!(op, 2, "binary frames");
        got.extend(p);
    }
    got
}
