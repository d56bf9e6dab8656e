//! Fan-out: one serial source, N TCP clients that each get every byte, qchar
//! against ser2net 4 with `max-connections: N`, the same source and the same
//! client code in the same run.
//!
//! The source is a pty: a feeder thread writes `QCHAR_FANOUT_MIB` (default
//! 16) MiB into its master as fast as the server reads the slave. qchar's
//! side is the chardev library in a process of its own (this binary again,
//! in server mode): a `serial` chardev on the slave relayed by its frontend
//! into a multi-client TCP server (`x-clients=N`) whose history holds the
//! whole run, so that no client, however far behind, loses a byte (the
//! history is allocated as it fills, and counted in qchar's memory).
//! ser2net runs `connector: serialdev,SLAVE,local` behind
//! `accepter: tcp,127.0.0.1,PORT` with `max-connections: N`, tuned for
//! throughput: `chardelay: false` (by default it waits after each read for
//! two characters' time at the line's speed before sending) and
//! `dev-to-net-bufsize: 65536`. `QCHAR_FANOUT_SER2NET_DEFAULTS=1` adds a
//! column with ser2net's defaults for those two (slow: use a small
//! `QCHAR_FANOUT_MIB`).
//!
//! Every client checks the bytes it gets. The throughput is the bytes each
//! client got over the time from the first byte written to the last byte
//! read at the slowest client; the aggregate is that times N. Memory is the
//! server's resident set (VmRSS) once every client has everything; memory
//! per client is `(RSS at 100 clients - RSS at 1 client) / 99`.
//!
//! `cargo bench -p qchar-chardev --bench fanout`; `QCHAR_FANOUT_ROUNDS`
//! (default 3) alternating runs, the best throughput of each counts.
//! Skips ser2net, saying so, when it is not installed (fails instead under
//! `QCHAR_TEST_REQUIRE_ALL`). Prints `RESULT fanout` lines for
//! `scripts/bench.sh`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qchar_chardev::spec::{ChardevBackend, ChardevHostdev};
use qchar_chardev::{opts, Registry};
use qchar_testkit::{env_num, openpty, require, Prereq};
use tokio::io::AsyncReadExt;

#[path = "common/relay.rs"]
mod relay;

/// Runs this binary as qchar's server: `SLAVE PORT CLIENTS HISTORY`.
const SERVE: &str = "QCHAR_FANOUT_SERVE";
/// The clients first wait for this byte (the feeder repeats it until every
/// client has one), then for the start marker; the data never holds either.
const PROBE: u8 = 0xAA;
const START: u8 = 0xFF;

/// Byte `i` of the stream.
fn pattern(i: usize) -> u8 {
    (i % 127) as u8
}

/// qchar's server process: a serial chardev on the pty slave relayed into a
/// multi-client TCP server. Runs until its stdin closes.
fn serve(args: &str) {
    let a: Vec<&str> = args.split(' ').collect();
    let (slave, port, clients, history) = (a[0], a[1], a[2], a[3]);
    let reg = Registry::new().unwrap();
    reg.add(
        "src",
        ChardevBackend::Serial(ChardevHostdev {
            device: slave.into(),
            ..Default::default()
        }),
    )
    .unwrap();
    let o = opts::parse_chardev(&format!(
        "socket,id=out,host=127.0.0.1,port={port},server=on,wait=off,x-clients={clients},backlog={history}"
    ))
    .unwrap();
    reg.add_options(&o).unwrap();
    let (fa, fb) = relay::relay(&reg, "src", "out");
    println!("READY");
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    fa.detach();
    fb.detach();
    reg.shutdown();
}

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Peer {
    Qchar,
    /// Tuned for throughput.
    Ser2net,
    /// Its defaults (but `max-connections`).
    Ser2netDefaults,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Qchar => "qchar",
            Peer::Ser2net => "ser2net",
            Peer::Ser2netDefaults => "ser2net_defaults",
        }
    }
}

fn start(
    peer: Peer,
    slave: &str,
    port: u16,
    clients: usize,
    total: usize,
    dir: &std::path::Path,
) -> Server {
    match peer {
        Peer::Qchar => {
            let history = total + (1 << 20);
            let mut child = Command::new(std::env::current_exe().unwrap())
                .env(SERVE, format!("{slave} {port} {clients} {history}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("qchar server");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line.trim(), "READY", "qchar server did not start");
            Server { child }
        }
        Peer::Ser2net | Peer::Ser2netDefaults => {
            let buf = if peer == Peer::Ser2net {
                "\n    chardelay: false\n    dev-to-net-bufsize: 65536"
            } else {
                ""
            };
            let cfg = dir.join(format!("ser2net-{port}.yaml"));
            std::fs::write(
                &cfg,
                format!(
                    "connection: &fan\n  accepter: tcp,127.0.0.1,{port}\n  \
                     connector: serialdev,{slave},local\n  options:\n    \
                     max-connections: {clients}\n    kickolduser: false{buf}\n"
                ),
            )
            .unwrap();
            let child = Command::new("ser2net")
                .args(["-n", "-u", "-c"])
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("ser2net");
            Server { child }
        }
    }
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Makes the pty slave raw (no echo, no line editing) before a server
/// opens it.
fn raw(slave: &OwnedFd) {
    use rustix::termios::{tcgetattr, tcsetattr, OptionalActions};
    let mut t = tcgetattr(slave).unwrap();
    t.make_raw();
    tcsetattr(slave, OptionalActions::Now, &t).unwrap();
}

struct Outcome {
    /// Bytes per second each client got.
    per_client: f64,
    rss_kib: u64,
}

/// One run: `clients` clients of `peer`, `total` bytes.
fn run(peer: Peer, clients: usize, total: usize, dir: &std::path::Path) -> Outcome {
    let (master, slave) = openpty();
    let slave_fd: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&slave)
        .unwrap()
        .into();
    raw(&slave_fd);
    let port = free_port();
    let server = start(peer, &slave, port, clients, total, dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut master = std::fs::File::from(master);
    let (got_probe, finished) = rt.block_on(async {
        // Connect every client (the server may still be starting).
        let mut socks = Vec::new();
        for _ in 0..clients {
            let deadline = Instant::now() + Duration::from_secs(10);
            let s = loop {
                match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(s) => break s,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(e) => panic!("cannot connect to the server: {e}"),
                }
            };
            socks.push(s);
        }
        let probed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for mut s in socks {
            let probed = probed.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                let mut phase = 0; // 0: no probe yet, 1: probed, 2: started
                let mut at = 0usize;
                loop {
                    let n = s.read(&mut buf).await.expect("client read");
                    assert!(n > 0, "the server closed a client after {at} bytes");
                    let mut data = &buf[..n];
                    if phase < 2 {
                        if phase == 0 && data.contains(&PROBE) {
                            phase = 1;
                            probed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        match data.iter().position(|&b| b == START) {
                            Some(i) => {
                                phase = 2;
                                data = &data[i + 1..];
                            }
                            None => continue,
                        }
                    }
                    for (k, &b) in data.iter().enumerate() {
                        assert_eq!(b, pattern(at + k), "byte {} at a client", at + k);
                    }
                    at += data.len();
                    if at >= total {
                        assert_eq!(at, total, "more bytes than sent");
                        return Instant::now();
                    }
                }
            }));
        }
        (probed, tasks)
    });
    // Probe until every client has had a byte: then all are served.
    let deadline = Instant::now() + Duration::from_secs(30);
    while got_probe.load(std::sync::atomic::Ordering::SeqCst) < clients {
        master.write_all(&[PROBE]).unwrap();
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(5)).await });
        assert!(Instant::now() < deadline, "not every client was served");
    }
    let feeder = std::thread::spawn(move || {
        let mut chunk = vec![0u8; 64 << 10];
        let t0 = Instant::now();
        master.write_all(&[START]).unwrap();
        let mut sent = 0;
        while sent < total {
            let n = chunk.len().min(total - sent);
            for (k, b) in chunk[..n].iter_mut().enumerate() {
                *b = pattern(sent + k);
            }
            master.write_all(&chunk[..n]).unwrap();
            sent += n;
        }
        (t0, master)
    });
    let ends: Vec<Instant> = rt.block_on(async {
        let mut ends = Vec::new();
        for t in finished {
            ends.push(t.await.expect("a client failed"));
        }
        ends
    });
    let (t0, _master) = feeder.join().unwrap();
    let end = ends.into_iter().max().unwrap();
    let rss_kib = server.rss_kib();
    drop(server);
    drop(slave_fd);
    Outcome {
        per_client: total as f64 / (end - t0).as_secs_f64(),
        rss_kib,
    }
}

fn main() {
    if let Ok(args) = std::env::var(SERVE) {
        serve(&args);
        return;
    }
    // `cargo test --benches` runs this too: keep that to a token amount.
    let quick = !std::env::args().any(|a| a == "--bench");
    let mib = if quick {
        1
    } else {
        env_num("QCHAR_FANOUT_MIB", 16)
    };
    let rounds = if quick {
        1
    } else {
        env_num::<usize>("QCHAR_FANOUT_ROUNDS", 3).max(1)
    };
    let total = mib << 20;
    let dir = tempfile::tempdir().unwrap();
    let ser2net = require(Prereq::Ser2net);
    let mut peers = vec![Peer::Qchar];
    if ser2net {
        peers.push(Peer::Ser2net);
        if env_num::<usize>("QCHAR_FANOUT_SER2NET_DEFAULTS", 0) == 1 {
            peers.push(Peer::Ser2netDefaults);
        }
    }
    let sizes: &[usize] = if quick { &[1, 10] } else { &[1, 10, 100] };
    println!("fan-out: a pty source, {mib} MiB to each of N TCP clients, best of {rounds}");
    let mut rss_at: Vec<(usize, Peer, u64)> = Vec::new();
    for &n in sizes {
        let mut best: Vec<(Peer, f64, u64)> = peers.iter().map(|&p| (p, 0.0, 0)).collect();
        for _ in 0..rounds {
            for b in best.iter_mut() {
                let o = run(b.0, n, total, dir.path());
                if o.per_client > b.1 {
                    b.1 = o.per_client;
                }
                // The memory of the last run (it hardly varies).
                b.2 = o.rss_kib;
            }
        }
        let mut result = format!("RESULT fanout n{n}");
        for (p, rate, rss) in &best {
            println!(
                "  {n:3} clients  {:18} {:9.1} MiB/s per client {:9.1} MiB/s in all  RSS {rss} KiB",
                p.name(),
                rate / (1 << 20) as f64,
                rate * n as f64 / (1 << 20) as f64
            );
            result.push_str(&format!(
                " {}={:.1} {}_rss_kib={rss}",
                p.name(),
                rate * n as f64 / (1 << 20) as f64,
                p.name()
            ));
            rss_at.push((n, *p, *rss));
        }
        println!("{result}");
    }
    let (lo, hi) = (sizes[0], *sizes.last().unwrap());
    let mut result = "RESULT fanout_mem".to_string();
    for &p in &peers {
        let at = |n| rss_at.iter().find(|r| r.0 == n && r.1 == p).map(|r| r.2);
        if let (Some(a), Some(b)) = (at(lo), at(hi)) {
            let per = (b as f64 - a as f64) * 1024.0 / (hi - lo) as f64;
            let name = p.name();
            println!("  memory per client, {name}: {per:.0} bytes");
            result.push_str(&format!(" {name}={per:.0}"));
        }
    }
    println!("{result}");
}
