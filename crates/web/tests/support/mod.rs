//! What the web console's tests share: a registry with a console on it, a
//! frontend that records input, raw HTTP over a real socket.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qchar_chardev::{FrontendHandlers, Registry};
use qchar_testkit::WAIT;
use qchar_web::{RegistryConsoles, WebConsole, WebOptions};

/// A registry and a web console on it.
pub struct Setup {
    pub reg: Registry,
    pub consoles: Arc<RegistryConsoles>,
    pub web: WebConsole,
}

impl Setup {
    /// A console on loopback, any port, a random token.
    pub fn new(reg: &Registry) -> Setup {
        let consoles = RegistryConsoles::new(reg);
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
