//! What the web console's tests share: a registry with a console on it, a
//! frontend that records input, raw HTTP over a real socket.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qchar_chardev::{FrontendHandlers, Registry};
use qchar_testkit::WAIT;
use qchar_web::{Consoles, WebConsole, WebOptions};
use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

/// A registry and a web console on it.
pub struct Setup {
    pub reg: Registry,
    pub consoles: Arc<Consoles>,
    pub web: WebConsole,
}

impl Setup {
    /// A console on loopback, any port, a random token.
    pub fn new(reg: &Registry) -> Setup {
        let consoles = Consoles::new(reg);
        let web = WebConsole::start(consoles.clone(), &WebOptions::default()).unwrap();
        Setup {
            reg: reg.clone(),
            consoles,
            web,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.web.local_addr()
    }

    pub fn token(&self) -> &str {
        self.web.token()
    }

    /// `GET path` with the token as a bearer.
    pub fn get(&self, path: &str) -> Reply {
        get(
            self.addr(),
            path,
            &[("Authorization", &format!("Bearer {}", self.token()))],
        )
    }

    /// A terminal's websocket on chardev `id` (`query`: `ro=1`...), as a
    /// page of the console opens it (its `Origin`), token in the URL.
    pub fn terminal(&self, id: &str, query: &str) -> Terminal {
        let url = format!(
            "ws://{}/ws/{id}?token={}{}{query}",
            self.addr(),
            self.token(),
            if query.is_empty() { "" } else { "&" }
        );
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("Origin", format!("http://{}", self.addr()).parse().unwrap());
        let s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let (ws, resp) = tungstenite::client(req, s).unwrap();
        assert_eq!(resp.status(), 101);
        let mut t = Terminal {
            ws,
            data: Vec::new(),
            notices: Vec::new(),
        };
        let hello = t.next_notice();
        assert_eq!(hello["type"], "hello", "{hello}");
        assert_eq!(hello["id"], id);
        t
    }
}

/// A terminal's websocket, read as the page reads it.
pub struct Terminal {
    pub ws: WebSocket<TcpStream>,
    /// Output bytes so far.
    pub data: Vec<u8>,
    /// Notices so far (`hello` first).
    pub notices: Vec<Value>,
}

impl Terminal {
    /// Reads one message into `data` or `notices`; `false` at the end.
    pub fn read_one(&mut self) -> bool {
        match self.ws.read() {
            Ok(Message::Binary(b)) => self.data.extend_from_slice(&b),
            Ok(Message::Text(t)) => self
                .notices
                .push(serde_json::from_str(t.as_str()).expect("a JSON notice")),
            Ok(Message::Close(_)) => return false,
            Ok(_) => {}
            Err(_) => return false,
        }
        true
    }

    /// Reads until a notice comes; returns it.
    pub fn next_notice(&mut self) -> Value {
        let n = self.notices.len();
        while self.notices.len() == n {
            assert!(self.read_one(), "the websocket ended before a notice");
        }
        self.notices[n].clone()
    }

    /// Reads until `data` holds at least `n` bytes.
    pub fn read_until(&mut self, n: usize) {
        while self.data.len() < n {
            assert!(
                self.read_one(),
                "the websocket ended after {} of {n} bytes",
                self.data.len()
            );
        }
    }

    /// Sends input as a binary frame.
    pub fn send(&mut self, data: &[u8]) {
        self.ws.send(Message::binary(data.to_vec())).unwrap();
    }

    /// Sends input as a text frame.
    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).unwrap();
    }
}

/// A frontend that keeps what it is sent.
pub struct Device {
    pub input: Arc<Mutex<Vec<u8>>>,
}

impl Device {
    pub fn new() -> (Device, Arc<Mutex<Vec<u8>>>) {
        let input = Arc::new(Mutex::new(Vec::new()));
        (
            Device {
                input: input.clone(),
            },
            input,
        )
    }
}

impl FrontendHandlers for Device {
    fn can_read(&mut self) -> usize {
        4096
    }
    fn read(&mut self, data: &[u8]) {
        self.input.lock().unwrap().extend_from_slice(data);
    }
    fn supports_hotswap(&self) -> bool {
        true
    }
}

/// An HTTP response as read off the wire.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value (first of that name, case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `raw` and reads everything until the server closes (bounded).
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Splits a response into status, head and body.
pub fn parse(raw: &[u8]) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Reply {
        status,
        head,
        body: raw[end + 4..].to_vec(),
    }
}

/// `GET path` with `headers`, `Connection: close`.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    parse(&exchange(addr, req.as_bytes()))
}

/// Whether the server has closed `s` (reads until EOF, bounded).
pub fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Pause between polls where a test waits on a socket.
pub const POLL: Duration = Duration::from_millis(5);

/// Record `i` of a stream: 16 bytes.
pub fn record(i: u64) -> Vec<u8> {
    format!("rec {i:010}\r\n").into_bytes()
}

/// The bytes at stream offsets `from..from + n` of the record stream.
pub fn records_at(from: u64, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 32);
    let mut i = from / 16;
    let skip = (from % 16) as usize;
    while v.len() < n + skip {
        v.extend_from_slice(&record(i));
        i += 1;
    }
    v.drain(..skip);
    v.truncate(n);
    v
}

/// Another chardev beside the one under test: a unix socket server whose
/// frontend writes records without pause (with backpressure) and whose
/// client, a thread of this process, reads them and checks each is the
/// next. It shows whether the console disturbs the other chardevs.
pub struct Bystander {
    pub received: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// The client's socket, to end its reader.
    shut: std::os::unix::net::UnixStream,
    _dir: tempfile::TempDir,
}

impl Bystander {
    pub fn start(reg: &Registry, id: &str) -> Bystander {
        use qchar_chardev::spec::{ChardevBackend, ChardevSocket, SocketAddressLegacy};
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.sock");
        let spec = ChardevSocket::new(
            SocketAddressLegacy::unix(path.to_string_lossy().as_ref()),
            true,
        );
        reg.add(id, ChardevBackend::Socket(spec)).unwrap();
        let fe = reg.attach(id).unwrap();
        let (dev, _) = Device::new();
        fe.set_handlers(Box::new(dev));
        let mut client = qchar_testkit::connect_unix(&path);
        client.set_read_timeout(Some(WAIT)).unwrap();
        let shut = client.try_clone().unwrap();
        // The chardev has its client before anything is written (a server
        // with no client drops output).
        qchar_testkit::wait_until("the bystander's client connected", || fe.is_open());
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0;
                let mut pending = record(0);
                while !stop.load(Ordering::Relaxed) {
                    let n = fe.write(&pending);
                    pending.drain(..n);
                    if pending.is_empty() {
                        i += 1;
                        pending = record(i);
                    } else {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
                fe.detach();
            })
        };
        let reader = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                let mut at = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let n = match client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    assert!(
                        buf[..n] == records_at(at, n)[..],
                        "the bystander's stream is wrong at byte {at}: {:?}",
                        String::from_utf8_lossy(&buf[..n.min(64)])
                    );
                    at += n as u64;
                    received.store(at, Ordering::Relaxed);
                }
            })
        };
        Bystander {
            received,
            stop,
            threads: vec![writer, reader],
            shut,
            _dir: dir,
        }
    }

    /// Bytes its client has read, in order, so far.
    pub fn received(&self) -> u64 {
        self.received.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until its client got `n` more bytes than now.
    pub fn still_flowing(&self, n: u64) {
        let from = self.received();
        qchar_testkit::wait_until("the bystander chardev's stream to go on", || {
            self.received() >= from + n
        });
    }

    /// Stops it; fails if its client found a byte out of place.
    pub fn finish(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.shut.shutdown(std::net::Shutdown::Both);
        for t in self.threads.drain(..) {
            t.join().expect("the bystander's threads");
        }
    }
}
