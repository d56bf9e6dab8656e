//! The console bridge against socat, between the same two sockets, in the
//! same run: a "VM" console socket the bench listens on (as QEMU's
//! `-serial unix:PATH,server=on` does), the relay connecting to it and
//! listening for a user on a second socket, the bench the user.
//!
//! - qchar: `qchar -machine none -chardev socket,id=vm,path=VM
//!   -chardev socket,id=user,path=USER,server=on,wait=on
//!   -object x-bridge,id=br,chardev-a=vm,chardev-b=user`
//! - socat: `socat UNIX-CONNECT:VM UNIX-LISTEN:USER` (and with `-b 65536`)
//!
//! Throughput: MiB/s of console output written on the VM side until the
//! last byte is read on the user side, best of `QCHAR_BRIDGE_ROUNDS`
//! (default 3) alternating runs of `QCHAR_BRIDGE_MIB` (default 512) MiB.
//! Latency: one byte from the VM to the user and one back (a keystroke's
//! echo), `QCHAR_BRIDGE_PINGS` (default 20000) round trips, p50 / p99.
//!
//! `cargo bench -p qchar --bench bridge`. Prints `RESULT` lines for
//! `scripts/bench.sh`. Without socat (said so; a failure under
//! `QCHAR_TEST_REQUIRE_ALL`) the qchar figures only.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qchar_testkit::{connect_unix, env_num, require, Prereq};

const CHUNK: usize = 64 * 1024;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Relay {
    Qchar,
    Socat,
    Socat64k,
}

impl Relay {
    fn name(self) -> &'static str {
        match self {
            Relay::Qchar => "qchar",
            Relay::Socat => "socat",
            Relay::Socat64k => "socat_b65536",
        }
    }

    /// Starts the relay between `vm` (which the bench listens on) and
    /// `user`; returns it with the VM's and the user's connections.
    fn start(self, dir: &Path, tag: &str) -> (Proc, UnixStream, UnixStream) {
        let vm_path = dir.join(format!("vm-{tag}.sock"));
        let user_path = dir.join(format!("user-{tag}.sock"));
        let _ = std::fs::remove_file(&vm_path);
        let _ = std::fs::remove_file(&user_path);
        let listener = UnixListener::bind(&vm_path).unwrap();
        let mut cmd = match self {
            Relay::Qchar => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_qchar"));
                c.args(["-machine", "none", "-nodefaults", "-display", "none"])
                    .arg("-chardev")
                    .arg(format!("socket,id=vm,path={}", vm_path.display()))
                    .arg("-chardev")
                    .arg(format!(
                        "socket,id=user,path={},server=on,wait=on",
                        user_path.display()
                    ))
                    .args(["-object", "x-bridge,id=br,chardev-a=vm,chardev-b=user"]);
                c
            }
            Relay::Socat | Relay::Socat64k => {
                let mut c = Command::new("socat");
                if self == Relay::Socat64k {
                    c.args(["-b", "65536"]);
                }
                c.arg(format!("UNIX-CONNECT:{}", vm_path.display()))
                    .arg(format!("UNIX-LISTEN:{}", user_path.display()));
                c
            }
        };
        let p = Proc(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{}: {e}", self.name())),
        );
        let (vm, _) = listener.accept().unwrap();
        let user = connect_unix(&user_path);
        (p, vm, user)
    }
}

/// Writes `total` bytes on `vm` in 64 KiB writes while another thread
/// reads them all from `user`: the time from the first write to the last
/// byte read.
fn throughput(mut vm: UnixStream, mut user: UnixStream, total: usize) -> Duration {
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        while got < total {
            match user.read(&mut buf) {
                Ok(0) | Err(_) => panic!("bridge ended after {got} of {total} bytes"),
                Ok(n) => got += n,
            }
        }
        Instant::now()
    });
    let chunk = vec![0x5au8; CHUNK];
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < total {
        let n = CHUNK.min(total - sent);
        vm.write_all(&chunk[..n]).unwrap();
        sent += n;
    }
    reader.join().unwrap() - t0
}

/// `n` round trips of one byte, VM -> user -> VM; sorted.
fn round_trips(mut vm: UnixStream, mut user: UnixStream, n: usize) -> Vec<Duration> {
    vm.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    user.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut b = [0u8; 1];
    // The first crossing also proves the path is complete.
    vm.write_all(b"w").unwrap();
    user.read_exact(&mut b).unwrap();
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let c = [b'a' + (i % 26) as u8];
        let t = Instant::now();
        vm.write_all(&c).unwrap();
        user.read_exact(&mut b).unwrap();
        user.write_all(&b).unwrap();
        vm.read_exact(&mut b).unwrap();
        v.push(t.elapsed());
        assert_eq!(b, c);
    }
    v.sort();
    v
}

fn pct_us(v: &[Duration], p: f64) -> f64 {
    qchar_testkit::percentile(v, p).as_secs_f64() * 1e6
}

fn main() {
    // `cargo test --benches` runs this too: keep that to a token amount.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (mib, rounds, pings) = if quick {
        (8, 1, 200)
    } else {
        (
            env_num("QCHAR_BRIDGE_MIB", 512),
            env_num::<usize>("QCHAR_BRIDGE_ROUNDS", 3).max(1),
            env_num("QCHAR_BRIDGE_PINGS", 20000),
        )
    };
    let total = mib << 20;
    let dir = tempfile::tempdir().unwrap();
    let mut relays = vec![Relay::Qchar];
    if require(Prereq::Socat) {
        relays.extend([Relay::Socat, Relay::Socat64k]);
    }
    let mut best = vec![0f64; relays.len()];
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); relays.len()];
    for round in 0..rounds {
        for (i, r) in relays.iter().enumerate() {
            let (_p, vm, user) = r.start(dir.path(), &format!("t{round}"));
            let d = throughput(vm, user, total);
            let rate = total as f64 / (1024.0 * 1024.0) / d.as_secs_f64();
            runs[i].push(rate);
            best[i] = best[i].max(rate);
        }
    }
    let mut lat = Vec::new();
    for r in &relays {
        let (_p, vm, user) = r.start(dir.path(), "ping");
        let v = round_trips(vm, user, pings);
        lat.push((pct_us(&v, 0.5), pct_us(&v, 0.99)));
    }
    println!("console bridge, VM socket -> relay -> user socket, {mib} MiB per run, {pings} pings");
    for (i, r) in relays.iter().enumerate() {
        let show: Vec<String> = runs[i].iter().map(|x| format!("{x:.0}")).collect();
        println!(
            "  {:<13} best {:8.1} MiB/s (runs: {})   round trip p50 {:6.1} us  p99 {:6.1} us",
            r.name(),
            best[i],
            show.join(" "),
            lat[i].0,
            lat[i].1
        );
    }
    let kv = |f: &dyn Fn(usize) -> f64, key: &str| -> String {
        relays
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{}{key}={:.1}", r.name(), f(i)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("RESULT bridge {}", kv(&|i| best[i], ""));
    println!("RESULT bridge_rtt {}", kv(&|i| lat[i].0, "_p50_us"));
    println!("RESULT bridge_rtt99 {}", kv(&|i| lat[i].1, "_p99_us"));
}
