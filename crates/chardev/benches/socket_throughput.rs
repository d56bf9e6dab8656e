//! Frontend-to-unix-socket throughput: a frontend `write_all`s a large
//! volume through a unix server chardev to a client that reads it all,
//! next to a raw unix socket pair moving the same volume in the same run.
//! Prints both and the ratio. Run with `cargo bench -p qchar-chardev`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use qchar_chardev::spec::{ChardevBackend, ChardevSocket, SocketAddressLegacy};
use qchar_chardev::{CharFrontend, FrontendHandlers, Registry};

const TOTAL: usize = 1 << 30;
const CHUNK: usize = 64 * 1024;
const ROUNDS: usize = 3;

struct Idle;

impl FrontendHandlers for Idle {
    fn can_read(&mut self) -> usize {
        4096
    }
    fn read(&mut self, _data: &[u8]) {}
}

fn reader(mut s: UnixStream, total: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        while got < total {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => panic!("stream ended after {got} bytes"),
                Ok(n) => got += n,
            }
        }
    })
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

fn raw_pair() -> Duration {
    let (mut a, b) = UnixStream::pair().unwrap();
    let chunk = vec![0x5au8; CHUNK];
    let t = Instant::now();
    let r = reader(b, TOTAL);
    let mut sent = 0;
    while sent < TOTAL {
        a.write_all(&chunk).unwrap();
        sent += CHUNK;
    }
    r.join().unwrap();
    t.elapsed()
}

fn through_chardev(dir: &std::path::Path, round: usize) -> Duration {
    let path = dir.join(format!("bench{round}.sock"));
    let reg = Registry::new().unwrap();
    let spec = ChardevBackend::Socket(ChardevSocket::new(
        SocketAddressLegacy::unix(path.to_string_lossy()),
        true,
    ));
    reg.add("bench", spec).unwrap();
    let fe: CharFrontend = reg.attach("bench").unwrap();
    fe.set_handlers(Box::new(Idle));
    let client = UnixStream::connect(&path).unwrap();
    while !fe.is_open() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let chunk = vec![0x5au8; CHUNK];
    let t = Instant::now();
    let r = reader(client, TOTAL);
    let mut sent = 0;
    while sent < TOTAL {
        fe.write_all(&chunk).unwrap();
        sent += CHUNK;
    }
    r.join().unwrap();
    let d = t.elapsed();
    fe.detach();
    reg.shutdown();
    d
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = Vec::new();
    let mut cd = Vec::new();
    for round in 0..ROUNDS {
        raw.push(raw_pair());
        cd.push(through_chardev(dir.path(), round));
    }
    let best = |v: &[Duration]| *v.iter().min().unwrap();
    let (r, c) = (mib_s(TOTAL, best(&raw)), mib_s(TOTAL, best(&cd)));
    println!(
        "socket_throughput: {} MiB per run, best of {ROUNDS}, {} KiB writes",
        TOTAL >> 20,
        CHUNK >> 10
    );
    println!("  raw unix socket pair:          {r:9.1} MiB/s");
    println!("  frontend -> unix server chardev: {c:7.1} MiB/s");
    println!("  ratio chardev / raw:           {:9.2}", c / r);
}
