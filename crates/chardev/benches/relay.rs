//! Relay throughput: bytes from a unix-socket client into chardev `a`, whose
//! frontend relays them into chardev `b`, out to another unix-socket client,
//! next to `socat UNIX-LISTEN:a UNIX-LISTEN:b` carrying the same bytes with
//! the same client code in the same run (socat is the practical ceiling:
//! one process, one read and one write per buffer).
//!
//! `cargo bench -p qchar-chardev --bench relay`. Environment:
//! `QCHAR_RELAY_MIB` (default 1024) MiB per run, `QCHAR_RELAY_ROUNDS`
//! (default 3) alternating runs of each; the best run of each counts.
//! Skips socat, saying so, when it is not installed (fails instead under
//! `QCHAR_TEST_REQUIRE_ALL`). Prints a `RESULT`
//! line for `scripts/bench.sh`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qchar_chardev::{opts, Registry};
use qchar_testkit::{connect_unix, require, Prereq};

#[path = "common/relay.rs"]
mod relay;

const CHUNK: usize = 64 * 1024;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The client side, the same for both relays: writes `total` bytes into
/// `src` in 64 KiB writes while another thread reads them all from `dst`.
/// Returns the time from the first write to the last byte read.
fn pump(mut src: UnixStream, mut dst: UnixStream, total: usize) -> Duration {
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        while got < total {
            match dst.read(&mut buf) {
                Ok(0) | Err(_) => panic!("relay ended after {got} of {total} bytes"),
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
        src.write_all(&chunk[..n]).unwrap();
        sent += n;
    }
    reader.join().unwrap() - t0
}

fn through_qchar(dir: &Path, round: usize, total: usize) -> Duration {
    let pa = dir.join(format!("qa{round}.sock"));
    let pb = dir.join(format!("qb{round}.sock"));
    let reg = Registry::new().unwrap();
    for (id, p) in [("a", &pa), ("b", &pb)] {
        let o = opts::parse_chardev(&format!(
            "socket,id={id},path={},server=on,wait=off",
            p.display()
        ))
        .unwrap();
        reg.add_options(&o).unwrap();
    }
    let (fa, fb) = relay::relay(&reg, "a", "b");
    let src = connect_unix(&pa);
    let dst = connect_unix(&pb);
    // Output to `b` before its client is there would be dropped.
    while !(fa.is_open() && fb.is_open()) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let d = pump(src, dst, total);
    fa.detach();
    fb.detach();
    reg.shutdown();
    d
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `socat [extra] UNIX-LISTEN:a UNIX-LISTEN:b`.
fn through_socat(dir: &Path, round: usize, total: usize, extra: &[&str]) -> Duration {
    let pa = dir.join(format!("sa{round}.sock"));
    let pb = dir.join(format!("sb{round}.sock"));
    let _p = Proc(
        Command::new("socat")
            .args(extra)
            .arg(format!("UNIX-LISTEN:{}", pa.display()))
            .arg(format!("UNIX-LISTEN:{}", pb.display()))
            .stdin(Stdio::null())
            .spawn()
            .expect("socat"),
    );
    // socat listens on `b` once `a` has its client.
    let src = connect_unix(&pa);
    let dst = connect_unix(&pb);
    pump(src, dst, total)
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

fn main() {
    // `cargo test --benches` runs this too: keep that to a token amount.
    let quick = !std::env::args().any(|a| a == "--bench");
    let mib = if quick {
        16
    } else {
        env_num("QCHAR_RELAY_MIB", 1024)
    };
    let rounds = if quick {
        1
    } else {
        env_num("QCHAR_RELAY_ROUNDS", 3).max(1)
    };
    let total = mib << 20;
    let dir = tempfile::tempdir().unwrap();
    let dir: PathBuf = dir.path().to_path_buf();
    // Without socat (said so, or a failure under QCHAR_TEST_REQUIRE_ALL):
    // the qchar figure only.
    let socat = require(Prereq::Socat);
    let mut q = Vec::new();
    let mut s = Vec::new();
    let mut s64 = Vec::new();
    for round in 0..rounds {
        q.push(mib_s(total, through_qchar(&dir, round, total)));
        if socat {
            let _ = std::fs::remove_file(dir.join(format!("sa{round}.sock")));
            s.push(mib_s(total, through_socat(&dir, round, total, &[])));
            let _ = std::fs::remove_file(dir.join(format!("sa{round}.sock")));
            let _ = std::fs::remove_file(dir.join(format!("sb{round}.sock")));
            s64.push(mib_s(
                total,
                through_socat(&dir, round, total, &["-b", "65536"]),
            ));
        }
    }
    let best = |v: &[f64]| v.iter().cloned().fold(f64::NAN, f64::max);
    let show = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "relay unix socket -> chardev a -> frontend -> chardev b -> unix socket, {mib} MiB per run"
    );
    println!(
        "  qchar relay:  best {:8.1} MiB/s  (runs: {})",
        best(&q),
        show(&q)
    );
    if socat {
        println!(
            "  socat:        best {:8.1} MiB/s  (runs: {})",
            best(&s),
            show(&s)
        );
        println!(
            "  socat -b 65536: best {:6.1} MiB/s  (runs: {})",
            best(&s64),
            show(&s64)
        );
        println!(
            "  qchar / socat: {:.2}   qchar / socat -b 65536: {:.2}",
            best(&q) / best(&s),
            best(&q) / best(&s64)
        );
        println!(
            "RESULT relay qchar={:.1} socat={:.1} socat_b65536={:.1}",
            best(&q),
            best(&s),
            best(&s64)
        );
    }
}
