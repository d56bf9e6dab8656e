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
//!
//! Over TLS: the same relay with `b` a TCP server with `tls-creds` (ECDSA
//! P-256 certificates made for the run) read by a rustls client, next to
//! `socat -b 65536 UNIX-LISTEN:a OPENSSL-LISTEN:PORT` (OpenSSL) read by the
//! same client, and to qchar's relay with `b` a plain TCP server, for what
//! TLS costs. (QEMU has no relay from one chardev to another; its TLS
//! chardev is measured under the guest's output, `cargo bench -p qchar
//! --bench tls`.) `QCHAR_RELAY_TLS_MIB` (default 256) MiB per run.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::net::TcpStream;

use qchar_chardev::qemuopts;
use qchar_chardev::tls::object::OBJECT_OPTS;
use qchar_chardev::tls::ObjectOptions;
use qchar_chardev::{opts, Registry};
use qchar_testkit::pki::Pki;
use qchar_testkit::tlspeer::{client_config, TlsClient};
use qchar_testkit::{connect_unix, env_num, require, Prereq};

#[path = "common/relay.rs"]
mod relay;

const CHUNK: usize = 64 * 1024;

/// The client side, the same for both relays: writes `total` bytes into
/// `src` in 64 KiB writes while another thread reads them all from `dst`.
/// Returns the time from the first write to the last byte read.
fn pump(mut src: UnixStream, mut dst: impl Read + Send + 'static, total: usize) -> Duration {
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

/// What `b` is in qchar's relay.
#[derive(Clone, Copy, PartialEq)]
enum Out {
    Unix,
    Tcp,
    Tls,
}

fn through_qchar(dir: &Path, round: usize, total: usize, out: Out, pki: &Pki) -> Duration {
    let pa = dir.join(format!("qa{round}.sock"));
    let pb = dir.join(format!("qb{round}.sock"));
    let reg = Registry::new().unwrap();
    let _ = std::fs::remove_file(&pa);
    let _ = std::fs::remove_file(&pb);
    let b = match out {
        Out::Unix => format!("socket,id=b,path={},server=on,wait=off", pb.display()),
        Out::Tcp => "socket,id=b,host=127.0.0.1,port=0,server=on,wait=off,nodelay=on".into(),
        Out::Tls => {
            reg.objects()
                .add(
                    &ObjectOptions::from_opts(
                        &qemuopts::parse(
                            &OBJECT_OPTS,
                            &format!(
                                "tls-creds-x509,id=tls0,dir={},endpoint=server,verify-peer=off",
                                pki.dir_str("server")
                            ),
                            &mut Vec::new(),
                        )
                        .unwrap(),
                    )
                    .unwrap(),
                )
                .unwrap();
            "socket,id=b,host=127.0.0.1,port=0,server=on,wait=off,nodelay=on,tls-creds=tls0".into()
        }
    };
    for o in [
        format!("socket,id=a,path={},server=on,wait=off", pa.display()),
        b,
    ] {
        reg.add_options(&opts::parse_chardev(&o).unwrap()).unwrap();
    }
    let (fa, fb) = relay::relay(&reg, "a", "b");
    let src = connect_unix(&pa);
    let port = || {
        let f = reg
            .query()
            .into_iter()
            .find(|i| i.label == "b")
            .unwrap()
            .filename;
        let head = f.split(",server=on").next().unwrap_or("").to_string();
        head.rsplit(':').next().unwrap().parse::<u16>().unwrap()
    };
    let dst: Box<dyn Read + Send> = match out {
        Out::Unix => Box::new(connect_unix(&pb)),
        Out::Tcp => {
            let s = TcpStream::connect(("127.0.0.1", port())).unwrap();
            s.set_nodelay(true).unwrap();
            Box::new(s)
        }
        Out::Tls => Box::new(
            TlsClient::connect(port(), "127.0.0.1", client_config(&pki.dir("client")))
                .unwrap()
                .s,
        ),
    };
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

/// `socat -b 65536 UNIX-LISTEN:a OPENSSL-LISTEN:PORT` with the server
/// certificate, read by the same rustls client.
fn through_socat_tls(dir: &Path, round: usize, total: usize, pki: &Pki) -> Duration {
    let pa = dir.join(format!("sta{round}.sock"));
    let _ = std::fs::remove_file(&pa);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = pki.dir("server");
    let _p = Proc(
        Command::new("socat")
            .args(["-b", "65536"])
            .arg(format!("UNIX-LISTEN:{}", pa.display()))
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,nodelay,cert={},key={},verify=0",
                s.join("server-cert.pem").display(),
                s.join("server-key.pem").display()
            ))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat"),
    );
    let src = connect_unix(&pa);
    // socat listens for the TLS side once `a` has its client.
    let dst = qchar_testkit::wait_for("socat's TLS listener", || {
        TlsClient::connect(port, "127.0.0.1", client_config(&pki.dir("client"))).ok()
    });
    pump(src, dst.s, total)
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
    let pki = Pki::new(&dir.join("pki"));
    let mut q = Vec::new();
    let mut s = Vec::new();
    let mut s64 = Vec::new();
    for round in 0..rounds {
        q.push(mib_s(
            total,
            through_qchar(&dir, round, total, Out::Unix, &pki),
        ));
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

    // Over TLS.
    let tls_mib = if quick {
        4
    } else {
        env_num("QCHAR_RELAY_TLS_MIB", 256)
    };
    let tls_total = tls_mib << 20;
    let (mut qt, mut qp, mut st) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        qt.push(mib_s(
            tls_total,
            through_qchar(&dir, round, tls_total, Out::Tls, &pki),
        ));
        qp.push(mib_s(
            tls_total,
            through_qchar(&dir, round, tls_total, Out::Tcp, &pki),
        ));
        if socat {
            st.push(mib_s(
                tls_total,
                through_socat_tls(&dir, round, tls_total, &pki),
            ));
        }
    }
    println!("relay unix socket -> chardev a -> frontend -> TLS chardev b -> TLS client, {tls_mib} MiB per run");
    println!(
        "  qchar relay, b over TLS:       best {:8.1} MiB/s  (runs: {})",
        best(&qt),
        show(&qt)
    );
    println!(
        "  qchar relay, b plain TCP:      best {:8.1} MiB/s  (runs: {})",
        best(&qp),
        show(&qp)
    );
    if socat {
        println!(
            "  socat -b 65536 OPENSSL-LISTEN: best {:8.1} MiB/s  (runs: {})",
            best(&st),
            show(&st)
        );
        println!(
            "RESULT relay_tls qchar={:.1} qchar_plain_tcp={:.1} socat_openssl={:.1}",
            best(&qt),
            best(&qp),
            best(&st)
        );
    }
}
