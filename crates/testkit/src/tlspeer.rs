//! Peers for TLS tests: QEMU 7.2 with a byte-level hold of its first UART
//! (so a test can put bytes into a QEMU chardev and read what it got),
//! a blocking rustls client, and `openssl` issuing certificates with any
//! subject from a [`Pki`]'s CA.
//!
//! QEMU runs without a guest: `-qtest` gives the test the machine's port
//! I/O, so `outb 0x3f8` sends a byte out of the UART into its chardev and
//! `inb 0x3f8` (after `inb 0x3fd` shows data ready) takes one that came in.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned,
};

use crate::pki::Pki;
use crate::{wait_for, WAIT};

/// UART registers of COM1.
const THR: u16 = 0x3f8;
const LSR: u16 = 0x3fd;

/// A `qemu-system-x86_64` process: stderr collected, killed on drop.
pub struct Qemu {
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    qtest: Option<(BufReader<UnixStream>, UnixStream)>,
}

impl Qemu {
    /// Starts QEMU with `-machine pc -S -nodefaults -display none`, qtest
    /// on a socket in `dir`, and `args`; returns once qtest answers.
    /// Panics (with QEMU's stderr) if QEMU exits first.
    pub fn start(dir: &Path, args: &[String]) -> Qemu {
        let sock = dir.join(format!("qtest-{}.sock", unique()));
        let mut all: Vec<String> = [
            "-machine",
            "pc",
            "-S",
            "-nodefaults",
            "-display",
            "none",
            "-qtest-log",
            "/dev/null",
            "-qtest",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        all.push(format!("unix:{},server=on,wait=off", sock.display()));
        all.extend(args.iter().cloned());
        let mut q = Qemu::spawn(&all);
        let s = wait_for("QEMU's qtest socket", || {
            if let Some(st) = q.try_wait() {
                panic!("QEMU exited ({st}): {}", q.stderr());
            }
            UnixStream::connect(&sock).ok()
        });
        s.set_read_timeout(Some(WAIT)).unwrap();
        q.qtest = Some((BufReader::new(s.try_clone().unwrap()), s));
        q
    }

    /// Runs QEMU with exactly `args` (no qtest), for a command line it
    /// should refuse or to drive otherwise.
    pub fn spawn(args: &[String]) -> Qemu {
        let mut child = Command::new("qemu-system-x86_64")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn qemu-system-x86_64");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err = child.stderr.take().unwrap();
        let into = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = err.read(&mut b) {
                if n == 0 {
                    break;
                }
                into.lock().unwrap().extend_from_slice(&b[..n]);
            }
        });
        Qemu {
            child,
            stderr,
            reader: Some(reader),
            qtest: None,
        }
    }

    /// Everything QEMU printed on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The exit status, if QEMU has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for QEMU to exit; returns its status and all of its stderr.
    pub fn wait(&mut self) -> (ExitStatus, String) {
        let st = wait_for("QEMU to exit", || self.try_wait());
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (st, self.stderr())
    }

    fn qtest(&mut self, cmd: &str) -> String {
        let (r, w) = self.qtest.as_mut().expect("started with qtest");
        w.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut line = String::new();
        r.read_line(&mut line).expect("qtest answer");
        assert!(line.starts_with("OK"), "qtest {cmd}: {line}");
        line.trim_end().to_string()
    }

    fn inb(&mut self, port: u16) -> u8 {
        let l = self.qtest(&format!("inb {port:#x}"));
        let hex = l.trim_start_matches("OK 0x");
        u8::from_str_radix(hex, 16).expect("inb value")
    }

    /// Sends `data` out of COM1 (into its chardev), one THR write a byte.
    pub fn uart_write(&mut self, data: &[u8]) {
        for b in data {
            self.qtest(&format!("outb {THR:#x} {b:#x}"));
        }
    }

    /// The bytes COM1 has received so far (reads until none is ready).
    pub fn uart_read_now(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.inb(LSR) & 1 != 0 {
            out.push(self.inb(THR));
        }
        out
    }

    /// Reads COM1 until `n` bytes came, within [`WAIT`].
    pub fn uart_read(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let deadline = Instant::now() + WAIT;
        while out.len() < n {
            let got = self.uart_read_now();
            if got.is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "QEMU's UART got {:?} of {n} bytes",
                    String::from_utf8_lossy(&out)
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            out.extend(got);
        }
        out
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    u64::from(std::process::id()) << 20 | N.fetch_add(1, Ordering::Relaxed)
}

/// The rustls client configuration of a client directory: `ca-cert.pem`
/// as roots, `client-cert.pem` + `client-key.pem` if both are there.
pub fn client_config(dir: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca-cert.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let (cert, key) = (dir.join("client-cert.pem"), dir.join("client-key.pem"));
    Arc::new(if cert.exists() && key.exists() {
        let chain = CertificateDer::pem_file_iter(&cert)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        b.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&key).unwrap())
            .unwrap()
    } else {
        b.with_no_client_auth()
    })
}

/// The rustls server configuration of a server directory: its
/// certificate and key; with `verify_clients`, client certificates
/// required and checked against `ca-cert.pem`.
pub fn server_config(dir: &Path, verify_clients: bool) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = if verify_clients {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(dir.join("ca-cert.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap()
    } else {
        WebPkiClientVerifier::no_client_auth()
    };
    let chain = CertificateDer::pem_file_iter(dir.join("server-cert.pem"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server-key.pem")).unwrap();
    Arc::new(
        ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

/// A blocking TLS connection, client or server side, over a TCP or unix
/// stream (reads time out after [`WAIT`]).
pub struct Tls<C, S: Read + Write = TcpStream> {
    /// The session over its socket.
    pub s: StreamOwned<C, S>,
}

/// A TLS client over TCP.
pub type TlsClient = Tls<ClientConnection, TcpStream>;

impl TlsClient {
    /// Connects to `127.0.0.1:port`, checking the server against `host`,
    /// and completes the handshake; `Err` is rustls's or the socket's
    /// error.
    pub fn connect(port: u16, host: &str, cfg: Arc<ClientConfig>) -> Result<TlsClient, String> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        // Small TLS records go out at once (no Nagle delay).
        tcp.set_nodelay(true).unwrap();
        Tls::client_over(tcp, host, cfg)
    }
}

impl<S: Read + Write> Tls<ClientConnection, S> {
    /// The client side of a handshake over `sock`, completed.
    pub fn client_over(sock: S, host: &str, cfg: Arc<ClientConfig>) -> Result<Self, String> {
        let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let conn = ClientConnection::new(cfg, name).map_err(|e| e.to_string())?;
        let mut s = StreamOwned::new(conn, sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).map_err(|e| e.to_string())?;
        }
        Ok(Tls { s })
    }
}

impl<S: Read + Write> Tls<ServerConnection, S> {
    /// The server side of a handshake over `sock`, completed.
    pub fn server_over(sock: S, cfg: Arc<ServerConfig>) -> Result<Self, String> {
        let conn = ServerConnection::new(cfg).map_err(|e| e.to_string())?;
        let mut s = StreamOwned::new(conn, sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).map_err(|e| e.to_string())?;
        }
        Ok(Tls { s })
    }
}

impl<C, S: Read + Write> Tls<C, S>
where
    StreamOwned<C, S>: Read + Write,
{
    /// Writes all of `data`.
    pub fn send(&mut self, data: &[u8]) {
        self.s.write_all(data).unwrap();
        self.s.flush().unwrap();
    }

    /// Reads exactly `n` bytes; `Err` with what came if the stream ended.
    pub fn recv(&mut self, n: usize) -> Result<Vec<u8>, (Vec<u8>, String)> {
        let mut out = vec![0u8; n];
        let mut got = 0;
        while got < n {
            match self.s.read(&mut out[got..]) {
                Ok(0) => {
                    out.truncate(got);
                    return Err((out, "end of stream".into()));
                }
                Ok(k) => got += k,
                Err(e) => {
                    out.truncate(got);
                    return Err((out, e.to_string()));
                }
            }
        }
        Ok(out)
    }

    /// Reads until the stream ends; returns what came and how it ended
    /// (`Ok` for a close_notify, `Err` with the error otherwise).
    pub fn read_to_end(&mut self) -> (Vec<u8>, Result<(), String>) {
        let mut out = Vec::new();
        let mut b = [0u8; 4096];
        loop {
            match self.s.read(&mut b) {
                Ok(0) => return (out, Ok(())),
                Ok(n) => out.extend_from_slice(&b[..n]),
                Err(e) => return (out, Err(e.to_string())),
            }
        }
    }
}

/// Issues a client certificate with `openssl` for subject `subj` (openssl's
/// `-subj` syntax, `+` for a multi-valued RDN, UTF-8 allowed), signed by
/// `pki`'s CA, into directory `name` of the PKI (ca-cert, client-cert,
/// client-key). Returns the directory.
pub fn openssl_client(pki: &Pki, name: &str, subj: &str) -> PathBuf {
    let dir = pki.dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = pki.dir("ca");
    std::fs::copy(ca.join("ca-cert.pem"), dir.join("ca-cert.pem")).unwrap();
    let key = dir.join("client-key.pem");
    let csr = dir.join("client.csr");
    let ext = dir.join("client.ext");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let p = |p: &Path| p.to_string_lossy().into_owned();
    run(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &p(&key),
    ]);
    run(&[
        "req",
        "-new",
        "-utf8",
        "-multivalue-rdn",
        "-key",
        &p(&key),
        "-subj",
        subj,
        "-out",
        &p(&csr),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(&ca.join("ca-cert.pem")),
        "-CAkey",
        &p(&ca.join("ca-key.pem")),
        "-set_serial",
        "0x5eed",
        "-days",
        "3650",
        "-sha256",
        "-extfile",
        &p(&ext),
        "-out",
        &p(&dir.join("client-cert.pem")),
    ]);
    dir
}
