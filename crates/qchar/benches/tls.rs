//! TLS consoles, qchar against QEMU 7.2 with the same options, certificates
//! (ECDSA P-256, made for the run) and client code:
//!
//! - guest serial output over a TLS socket chardev: the demo guest's lines
//!   leave COM1 through a TLS client chardev (`tls-creds`) to the bench's
//!   rustls server, timed from the first byte read to the last (QEMU's BIOS
//!   time does not count); bytes/s; and the same chardev without TLS, for
//!   what TLS costs (QEMU has no chardev-to-chardev relay: the guest's
//!   UART is the path through its TLS chardev a bench can drive);
//! - handshake time: a TLS server chardev with `verify-peer=on` and an
//!   `authz-simple` under an HMP monitor; the bench's rustls client (with a
//!   client certificate) connects, shakes hands and waits for the monitor's
//!   first byte, which comes once the server has checked the certificate
//!   and the authorization; then closes. Median and p99 of that time over
//!   `QCHAR_BENCH_HANDSHAKES` (default 300) connections, one after the
//!   other.
//!
//! `cargo bench -p qchar --bench tls` (the serial figure needs `/dev/kvm`;
//! QEMU figures where `qemu-system-x86_64` is installed).
//! `QCHAR_BENCH_LINES` (default 5000) lines per output run. Every socket
//! (both VMMs' chardevs, `nodelay=on`, and the bench's ends) sends without
//! Nagle's delay: with it, TLS's small records meet the peer's delayed
//! acknowledgements and both VMMs wait 40 ms at a time. `RESULT`
//! lines are for `scripts/bench.sh`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qchar_testkit::pki::{Pki, CLIENT_DN};
use qchar_testkit::tlspeer::{client_config, server_config, Tls, TlsClient};
use qchar_testkit::{env_num, percentile, require, wait_for, Prereq};

const LINE_LEN: u64 = 23; // "qchar-demo NNNNNNNNNN\r\n"

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Just enough QMP: connect, negotiate, one command at a time.
struct Qmp(BufReader<UnixStream>);

impl Qmp {
    fn connect(path: &Path) -> Qmp {
        let s = wait_for("the QMP socket", || UnixStream::connect(path).ok());
        let mut q = Qmp(BufReader::new(s));
        let mut greeting = String::new();
        q.0.read_line(&mut greeting).unwrap();
        q.cmd(r#"{"execute":"qmp_capabilities"}"#);
        q
    }

    /// Sends `json`, returns the reply line (events skipped).
    fn cmd(&mut self, json: &str) -> String {
        self.0.get_mut().write_all(json.as_bytes()).unwrap();
        loop {
            let mut line = String::new();
            if self.0.read_line(&mut line).unwrap() == 0 {
                return line;
            }
            if !line.contains("\"event\"") {
                return line;
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Vmm {
    Qchar,
    Qemu,
}

impl Vmm {
    fn name(self) -> &'static str {
        match self {
            Vmm::Qchar => "qchar",
            Vmm::Qemu => "qemu",
        }
    }

    fn spawn(self, args: &[String]) -> Proc {
        let program = match self {
            Vmm::Qchar => env!("CARGO_BIN_EXE_qchar"),
            Vmm::Qemu => "qemu-system-x86_64",
        };
        Proc(
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{program}: {e}")),
        )
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Guest output through a TLS client chardev (or, without `tls`, the same
/// chardev without `tls-creds`); bytes/s.
fn serial_over_tcp(vmm: Vmm, dir: &Path, pki: &Pki, image: &Path, lines: u64, tls: bool) -> f64 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let qmp = dir.join(format!("{}-q.sock", vmm.name()));
    let _ = std::fs::remove_file(&qmp);
    let accel = match vmm {
        Vmm::Qchar => "",
        Vmm::Qemu => "-enable-kvm",
    };
    let mut args = words(&format!(
        "{accel} -nodefaults -display none -S -drive file={},format=raw,if=ide \
         -chardev socket,id=con,host=127.0.0.1,port={port},nodelay=on{} -serial chardev:con \
         -qmp unix:{},server=on,wait=off",
        image.display(),
        if tls { ",tls-creds=cli0" } else { "" },
        qmp.display()
    ));
    args.push("-object".into());
    args.push(format!(
        "tls-creds-x509,id=cli0,dir={},endpoint=client",
        pki.dir_str("client")
    ));
    let _p = vmm.spawn(&args);
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    s.set_nodelay(true).unwrap();
    let mut stream: Box<dyn Read> = if tls {
        Box::new(
            Tls::server_over(s, server_config(&pki.dir("server"), true))
                .unwrap()
                .s,
        )
    } else {
        Box::new(s)
    };
    let mut q = Qmp::connect(&qmp);
    q.cmd(r#"{"execute":"cont"}"#);
    let total = lines * LINE_LEN;
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    let mut first: Option<(Instant, u64)> = None;
    while got < total {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended at {got} of {total} bytes");
        got += n as u64;
        if first.is_none() {
            first = Some((Instant::now(), got));
        }
    }
    let (t0, g0) = first.unwrap();
    let rate = (total - g0) as f64 / t0.elapsed().as_secs_f64();
    q.cmd(r#"{"execute":"quit"}"#);
    rate
}

/// Connect, handshake and the server's checks, up to the monitor's first
/// byte; sorted.
fn handshakes(vmm: Vmm, pki: &Pki, n: u64) -> Vec<Duration> {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = words(&format!(
        "-nodefaults -display none -S -machine none \
         -chardev socket,id=con,host=127.0.0.1,port={port},server=on,wait=off,nodelay=on,tls-creds=tls0,tls-authz=auth0 \
         -mon chardev=con,mode=readline"
    ));
    for o in [
        format!(
            "tls-creds-x509,id=tls0,dir={},endpoint=server",
            pki.dir_str("server")
        ),
        format!(
            "authz-simple,id=auth0,identity={}",
            CLIENT_DN.replace(',', ",,")
        ),
    ] {
        args.push("-object".into());
        args.push(o);
    }
    let _p = vmm.spawn(&args);
    let cfg = client_config(&pki.dir("client"));
    // The server is up once a connection goes through.
    wait_for("the TLS server", || {
        TlsClient::connect(port, "127.0.0.1", cfg.clone()).ok()
    });
    let mut out = Vec::with_capacity(n as usize);
    let mut b = [0u8; 1];
    for _ in 0..n {
        let t = Instant::now();
        let mut c = TlsClient::connect(port, "127.0.0.1", cfg.clone()).unwrap();
        c.s.read_exact(&mut b).unwrap();
        out.push(t.elapsed());
    }
    out.sort();
    out
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    // `cargo test --benches` runs this too: a token amount then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let lines = if quick {
        200
    } else {
        env_num("QCHAR_BENCH_LINES", 5000)
    };
    let n = if quick {
        10
    } else {
        env_num("QCHAR_BENCH_HANDSHAKES", 300)
    };
    let dir = tempfile::Builder::new()
        .prefix("qchar-tls")
        .tempdir()
        .unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let qemu = require(Prereq::Qemu);
    let mut vmms = vec![Vmm::Qchar];
    if qemu {
        vmms.push(Vmm::Qemu);
    }
    println!("TLS handshake to the monitor's first byte, {n} connections; guest output over TLS, {lines} lines");
    for &vmm in &vmms {
        let h = handshakes(vmm, &pki, n);
        println!(
            "{:6} handshake median {:.0} us  p99 {:.0} us  max {:.0} us",
            vmm.name(),
            us(percentile(&h, 0.5)),
            us(percentile(&h, 0.99)),
            us(h[h.len() - 1])
        );
        println!(
            "RESULT tls_handshake {} p50_us={:.1} p99_us={:.1}",
            vmm.name(),
            us(percentile(&h, 0.5)),
            us(percentile(&h, 0.99))
        );
    }
    if !require(Prereq::Kvm) {
        return;
    }
    let image = dir.path().join("demo-n.img");
    let st = Command::new(env!("CARGO_BIN_EXE_qchar"))
        .args([
            "--write-builtin-image",
            &format!("demo:{lines}"),
            image.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    for &vmm in &vmms {
        let r = serial_over_tcp(vmm, dir.path(), &pki, &image, lines, true);
        let plain = serial_over_tcp(vmm, dir.path(), &pki, &image, lines, false);
        println!(
            "{:6} guest output over TLS {:.1} KiB/s, over plain TCP {:.1} KiB/s",
            vmm.name(),
            r / 1024.0,
            plain / 1024.0
        );
        println!(
            "RESULT tls_serial {} rate_b_s={r:.0} plain_b_s={plain:.0}",
            vmm.name()
        );
    }
}
