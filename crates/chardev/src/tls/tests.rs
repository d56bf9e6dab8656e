//! Credentials from real files (a PKI made per test run) and sessions over
//! real loopback TCP.

use std::fs;
use std::future::poll_fn;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use qchar_testkit::pki::{self, Pki};
use tokio::net::{TcpListener, TcpStream};

use super::object::{ObjectOptions, ObjectStore, PropValue};
use super::session::RawIo;
use super::x509::{Endpoint, X509Creds, X509Props};
use super::*;

fn pki() -> (tempfile::TempDir, Pki) {
    let t = tempfile::tempdir().unwrap();
    let p = Pki::new(t.path());
    (t, p)
}

fn props(dir: &Path, endpoint: Endpoint) -> X509Props {
    X509Props {
        dir: Some(dir.to_string_lossy().into_owned()),
        endpoint,
        ..Default::default()
    }
}

fn load_err(p: X509Props) -> String {
    X509Creds::load(p).expect_err("should fail").to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// QEMU 7.2's texts for each broken credentials directory, in its order
/// of checks.
#[test]
fn load_errors_have_qemu_texts() {
    let (t, pki) = pki();
    let server = pki.dir("server");
    let s = |d: &Path| props(d, Endpoint::Server);
    let d = |name: &str| {
        let d = t.path().join(name);
        copy_dir(&server, &d);
        d
    };
    let p = |d: &Path, f: &str| format!("{}/{f}", d.display());

    assert_eq!(
        load_err(X509Props::default()),
        "Missing 'dir' property value"
    );
    let none = t.path().join("nonexistent");
    assert_eq!(
        load_err(s(&none)),
        format!(
            "Unable to access credentials {}: No such file or directory",
            p(&none, "ca-cert.pem")
        )
    );
    // The first missing required file, in QEMU's order.
    for f in ["ca-cert.pem", "server-cert.pem", "server-key.pem"] {
        let dd = d(&format!("missing-{f}"));
        fs::remove_file(dd.join(f)).unwrap();
        assert_eq!(
            load_err(s(&dd)),
            format!(
                "Unable to access credentials {}: No such file or directory",
                p(&dd, f)
            )
        );
    }
    let file = t.path().join("a-file");
    fs::write(&file, "x").unwrap();
    assert_eq!(
        load_err(s(&file)),
        format!(
            "Unable to access credentials {}: Not a directory",
            p(&file, "ca-cert.pem")
        )
    );
    let dd = d("ca-is-dir");
    fs::remove_file(dd.join("ca-cert.pem")).unwrap();
    fs::create_dir(dd.join("ca-cert.pem")).unwrap();
    let ca = p(&dd, "ca-cert.pem");
    assert_eq!(
        load_err(s(&dd)),
        format!("Cannot load CA cert list {ca}: Error reading file “{ca}”: Is a directory")
    );
    let dd = d("ca-not-pem");
    fs::write(dd.join("ca-cert.pem"), "not a certificate\n").unwrap();
    assert_eq!(
        load_err(s(&dd)),
        format!(
            "Unable to import CA certificate list {}",
            p(&dd, "ca-cert.pem")
        )
    );
    let dd = d("cert-not-pem");
    fs::write(dd.join("server-cert.pem"), "junk\n").unwrap();
    assert_eq!(
        load_err(s(&dd)),
        format!(
            "Unable to import server certificate {}: Base64 unexpected header error.",
            p(&dd, "server-cert.pem")
        )
    );
    let dd = d("key-not-pem");
    fs::write(dd.join("server-key.pem"), "junk\n").unwrap();
    let (cp, kp) = (p(&dd, "server-cert.pem"), p(&dd, "server-key.pem"));
    assert_eq!(
        load_err(s(&dd)),
        format!(
            "Cannot load certificate '{cp}' & key '{kp}': The requested data were not available."
        )
    );
    let dd = d("key-mismatch");
    fs::copy(
        pki.dir("server-expired").join("server-key.pem"),
        dd.join("server-key.pem"),
    )
    .unwrap();
    let (cp, kp) = (p(&dd, "server-cert.pem"), p(&dd, "server-key.pem"));
    assert_eq!(
        load_err(s(&dd)),
        format!(
            "Cannot load certificate '{cp}' & key '{kp}': The certificate and the given key do not match."
        )
    );
    let oc = pki.dir("server-otherca");
    assert_eq!(
        load_err(s(&oc)),
        format!(
            "Our own certificate {} failed validation against {}: The certificate hasn't got a known issuer",
            p(&oc, "server-cert.pem"),
            p(&oc, "ca-cert.pem")
        )
    );
    let ex = pki.dir("server-expired");
    assert_eq!(
        load_err(s(&ex)),
        format!(
            "The server certificate {} has expired",
            p(&ex, "server-cert.pem")
        )
    );
    let ex = pki.dir("client-expired");
    assert_eq!(
        load_err(props(&ex, Endpoint::Client)),
        format!(
            "The client certificate {} has expired",
            p(&ex, "client-cert.pem")
        )
    );
    let ny = pki.dir("client-notyet");
    assert_eq!(
        load_err(props(&ny, Endpoint::Client)),
        format!(
            "The client certificate {} is not yet active",
            p(&ny, "client-cert.pem")
        )
    );
    // Without the sanity check, the same files load (as in QEMU).
    X509Creds::load(X509Props {
        sanity_check: false,
        ..props(&ex, Endpoint::Client)
    })
    .unwrap();
    // The CA certificate where the server's should be.
    let dd = d("server-is-ca");
    fs::write(dd.join("server-cert.pem"), pki.ca_pem()).unwrap();
    assert_eq!(
        load_err(s(&dd)),
        format!(
            "The certificate {} basic constraints show a CA, but we need one for a server",
            p(&dd, "server-cert.pem")
        )
    );
    // A leaf certificate as the CA.
    let dd = d("ca-not-ca");
    fs::copy(
        pki.dir("client").join("client-cert.pem"),
        dd.join("ca-cert.pem"),
    )
    .unwrap();
    assert_eq!(
        load_err(s(&dd)),
        format!(
            "The certificate {} basic constraints do not show a CA",
            p(&dd, "ca-cert.pem")
        )
    );
    // A leaf whose critical extendedKeyUsage is for clients only.
    let mut only_client = pki::leaf_params(true, "localhost", 30);
    only_client.extended_key_usages = vec![pki::rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let dd = pki.issue("server-clientauth", true, &only_client, false);
    // rcgen marks the extension non-critical: QEMU lets it pass, so do we.
    X509Creds::load(s(&dd)).unwrap();
    let dd = d("crl-not-pem");
    fs::write(dd.join("ca-crl.pem"), "junk\n").unwrap();
    assert_eq!(
        load_err(s(&dd)),
        format!(
            "Cannot load CRL '{}': Base64 decoding error.",
            p(&dd, "ca-crl.pem")
        )
    );
    let dd = d("dh-not-pem");
    fs::write(dd.join("dh-params.pem"), "junk\n").unwrap();
    assert_eq!(
        load_err(s(&dd)),
        format!(
            "Unable to load DH parameters from {}: Base64 unexpected header error.",
            p(&dd, "dh-params.pem")
        )
    );
    assert_eq!(
        load_err(X509Props {
            passwordid: Some("nosuch".into()),
            ..s(&server)
        }),
        "No secret with id 'nosuch'"
    );
    // A client with half a key pair loads without a certificate.
    let dd = t.path().join("client-half");
    copy_dir(&pki.dir("client"), &dd);
    fs::remove_file(dd.join("client-key.pem")).unwrap();
    X509Creds::load(props(&dd, Endpoint::Client)).unwrap();
    // The CRL is not a client's file.
    let dd = t.path().join("client-junk-crl");
    copy_dir(&pki.dir("client"), &dd);
    fs::write(dd.join("ca-crl.pem"), "junk\n").unwrap();
    X509Creds::load(props(&dd, Endpoint::Client)).unwrap();
}

/// A tokio TCP stream as the session's byte stream.
struct Tcp(TcpStream);

impl RawIo for Tcp {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

async fn handshake(s: &mut TlsSession, io: &mut Tcp) -> Result<(), TlsFailure> {
    poll_fn(|cx| s.poll_handshake(cx, io)).await
}

async fn write_all(s: &mut TlsSession, io: &mut Tcp, mut data: &[u8]) {
    while !data.is_empty() {
        let n = poll_fn(|cx| s.poll_write(cx, io, data)).await.unwrap();
        data = &data[n..];
    }
    poll_fn(|cx| s.poll_flush(cx, io)).await.unwrap();
}

async fn read_exact(s: &mut TlsSession, io: &mut Tcp, n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    let mut got = 0;
    while got < n {
        let k = poll_fn(|cx| s.poll_read(cx, io, &mut out[got..]))
            .await
            .unwrap();
        assert!(k > 0, "early end after {got} of {n} bytes");
        got += k;
    }
    out
}

/// Credentials from `dir`. The sanity check is off: the bad certificates
/// under test would not load with it (QEMU's own check refuses them too),
/// and what is tested is how the *peer* treats them.
fn creds(dir: &Path, endpoint: Endpoint, verify_peer: bool) -> Arc<X509Creds> {
    Arc::new(
        X509Creds::load(X509Props {
            verify_peer,
            sanity_check: false,
            ..props(dir, endpoint)
        })
        .unwrap(),
    )
}

/// Outcome of one handshake pair: the server's and the client's.
struct Outcome {
    server: Result<Option<String>, String>,
    client: Result<(), String>,
}

/// Runs a server session and a client session against each other over
/// loopback TCP, then (if both opened) a few bytes each way.
async fn pair(
    server: Arc<X509Creds>,
    authz: Option<(String, ObjectStore)>,
    client: Arc<X509Creds>,
    host: &str,
) -> Outcome {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (sock, _) = l.accept().await.unwrap();
        let mut io = Tcp(sock);
        let mut s = TlsSession::server(&server, authz).unwrap();
        match handshake(&mut s, &mut io).await {
            Ok(()) => {
                let got = read_exact(&mut s, &mut io, 5).await;
                assert_eq!(got, b"hello");
                write_all(&mut s, &mut io, b"world").await;
                Ok(s.peer_identity().map(str::to_string))
            }
            Err(e) => Err(e.to_string()),
        }
    });
    let mut io = Tcp(TcpStream::connect(addr).await.unwrap());
    let mut c = match TlsSession::client(&client, Some(host)) {
        Ok(c) => c,
        Err(e) => {
            drop(io);
            let _ = srv.await;
            return Outcome {
                server: Err("not run".into()),
                client: Err(e.to_string()),
            };
        }
    };
    let client = match handshake(&mut c, &mut io).await {
        Ok(()) => {
            write_all(&mut c, &mut io, b"hello").await;
            // A refusal after TLS 1.3's handshake shows as an early end.
            let mut buf = [0u8; 5];
            let mut got = 0;
            let mut r = Ok(());
            while got < 5 {
                match poll_fn(|cx| c.poll_read(cx, &mut io, &mut buf[got..])).await {
                    Ok(0) => {
                        r = Err("connection closed".to_string());
                        break;
                    }
                    Ok(n) => got += n,
                    Err(e) => {
                        r = Err(e.to_string());
                        break;
                    }
                }
            }
            if r.is_ok() {
                assert_eq!(&buf, b"world");
            }
            r
        }
        Err(e) => Err(e.to_string()),
    };
    drop(io);
    Outcome {
        server: srv.await.unwrap(),
        client,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn authz_store(json: &[(&str, PropValue)]) -> ObjectStore {
    let store = ObjectStore::new();
    let j: Vec<(String, PropValue)> = json
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    store.add(&ObjectOptions::from_json(&j).unwrap()).unwrap();
    store
}

fn st(s: &str) -> PropValue {
    PropValue::Str(s.into())
}

#[test]
fn sessions_check_peers_as_qemu() {
    let (_t, pki) = pki();
    let rt = rt();
    let server = creds(&pki.dir("server"), Endpoint::Server, true);
    let client = |name: &str| creds(&pki.dir(name), Endpoint::Client, true);

    // A good client: data both ways, its identity in QEMU's form.
    let o = rt.block_on(pair(server.clone(), None, client("client"), "127.0.0.1"));
    assert_eq!(o.client, Ok(()));
    assert_eq!(o.server, Ok(Some(pki::CLIENT_DN.to_string())));
    for host in ["localhost", "::1"] {
        if host == "::1" && std::net::TcpListener::bind("[::1]:0").is_err() {
            continue;
        }
        let o = rt.block_on(pair(server.clone(), None, client("client"), host));
        assert_eq!(o.client, Ok(()), "{host}");
    }

    // Refused clients: the reason in QEMU's words.
    // (rustls's client, unlike QEMU's, sends its certificate even when the
    // server's CA list does not name its issuer.)
    let refused = [
        (
            "client-otherca",
            "The certificate hasn't got a known issuer",
        ),
        ("client-nocert", "Verify failed: No certificate was found."),
        ("client-expired", "The certificate has expired"),
        ("client-notyet", "The certificate is not yet activated"),
    ];
    for (name, why) in refused {
        let o = rt.block_on(pair(server.clone(), None, client(name), "127.0.0.1"));
        let e = o.server.expect_err(name);
        assert!(e.starts_with(why), "{name}: {e}");
        assert!(o.client.is_err(), "{name}");
    }
    let crl = creds(&pki.dir("server-crl"), Endpoint::Server, true);
    let o = rt.block_on(pair(
        crl.clone(),
        None,
        client("client-revoked"),
        "127.0.0.1",
    ));
    let e = o.server.unwrap_err();
    assert!(e.starts_with("The certificate has been revoked"), "{e}");
    let o = rt.block_on(pair(crl, None, client("client"), "127.0.0.1"));
    assert!(o.server.is_ok());

    // Authorization, looked up at the handshake.
    let store = authz_store(&[
        ("qom-type", st("authz-simple")),
        ("id", st("auth0")),
        ("identity", st(pki::CLIENT_DN)),
    ]);
    let az = Some(("auth0".to_string(), store.clone()));
    let o = rt.block_on(pair(
        server.clone(),
        az.clone(),
        client("client"),
        "127.0.0.1",
    ));
    assert!(o.server.is_ok(), "{:?}", o.server);
    let o = rt.block_on(pair(
        server.clone(),
        az.clone(),
        client("client-other-dn"),
        "127.0.0.1",
    ));
    assert_eq!(
        o.server.unwrap_err(),
        format!("TLS x509 authz check for {} is denied", pki::OTHER_DN)
    );
    assert!(o.client.is_err());
    let missing = Some(("nosuch".to_string(), store.clone()));
    let o = rt.block_on(pair(server.clone(), missing, client("client"), "127.0.0.1"));
    assert_eq!(o.server.unwrap_err(), "Cannot find QAuthZ object ID nosuch");
    store
        .add(
            &ObjectOptions::from_json(&[
                ("qom-type".into(), st("tls-creds-x509")),
                ("id".into(), st("tls0")),
                ("dir".into(), st(&pki.dir_str("server"))),
                ("endpoint".into(), st("server")),
            ])
            .unwrap(),
        )
        .unwrap();
    let wrong = Some(("tls0".to_string(), store.clone()));
    let o = rt.block_on(pair(server.clone(), wrong, client("client"), "127.0.0.1"));
    assert_eq!(
        o.server.unwrap_err(),
        "Object 'tls0' is not a QAuthZ subclass"
    );
    // A glob list.
    let list = authz_store(&[
        ("qom-type", st("authz-list")),
        ("id", st("l0")),
        (
            "rules",
            PropValue::List(vec![PropValue::Dict(vec![
                ("match".into(), st("*,CN=client.qchar.test")),
                ("policy".into(), st("allow")),
                ("format".into(), st("glob")),
            ])]),
        ),
    ]);
    let az = Some(("l0".to_string(), list));
    let o = rt.block_on(pair(
        server.clone(),
        az.clone(),
        client("client"),
        "127.0.0.1",
    ));
    assert!(o.server.is_ok());
    let o = rt.block_on(pair(
        server.clone(),
        az,
        client("client-other-dn"),
        "127.0.0.1",
    ));
    assert!(o.server.is_err());

    // verify-peer=off on the server: anyone in, tls-authz ignored.
    let open = creds(&pki.dir("server"), Endpoint::Server, false);
    let deny_all = authz_store(&[
        ("qom-type", st("authz-list")),
        ("id", st("none")),
        ("policy", st("deny")),
    ]);
    let o = rt.block_on(pair(
        open,
        Some(("none".into(), deny_all)),
        client("client-nocert"),
        "127.0.0.1",
    ));
    assert_eq!(o.server, Ok(None));

    // The client checks the server's name (SAN) unless verify-peer=off.
    let wrong = creds(&pki.dir("server-wrongname"), Endpoint::Server, true);
    let o = rt.block_on(pair(wrong.clone(), None, client("client"), "127.0.0.1"));
    let e = o.client.unwrap_err();
    assert!(
        e.starts_with("Certificate does not match the hostname"),
        "{e}"
    );
    let lax = creds(&pki.dir("client"), Endpoint::Client, false);
    let o = rt.block_on(pair(wrong, None, lax, "127.0.0.1"));
    assert_eq!(o.client, Ok(()));
}

/// A plaintext client and a client that stops halfway: each is dropped
/// with a reason; the stall after [`HANDSHAKE_TIMEOUT`] (tokio's clock is
/// paused, so the test does not wait 10 s).
#[test]
fn junk_and_stalls_end_the_handshake() {
    let (_t, pki) = pki();
    let server = creds(&pki.dir("server"), Endpoint::Server, true);
    let rt = rt();
    let e = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        io::Write::write_all(&mut c, b"hello\r\n").unwrap();
        let (sock, _) = l.accept().await.unwrap();
        let mut s = TlsSession::server(&server, None).unwrap();
        handshake(&mut s, &mut Tcp(sock)).await.unwrap_err()
    });
    assert!(
        e.to_string()
            .starts_with("An unexpected TLS packet was received."),
        "{e}"
    );
    let e = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        io::Write::write_all(&mut c, &[0x16, 0x03]).unwrap();
        let (sock, _) = l.accept().await.unwrap();
        tokio::time::pause();
        let mut s = TlsSession::server(&server, None).unwrap();
        let r = handshake(&mut s, &mut Tcp(sock)).await.unwrap_err();
        drop(c);
        r
    });
    assert!(matches!(e, TlsFailure::Timeout), "{e}");
    assert_eq!(e.to_string(), "TLS handshake not finished after 10 s");
}

#[test]
fn chardevs_take_x509_creds_of_their_endpoint_only() {
    let (t, pki) = pki();
    let store = ObjectStore::new();
    let add = |ty: &str, id: &str, extra: &[(&str, PropValue)]| {
        let mut j = vec![("qom-type".to_string(), st(ty)), ("id".to_string(), st(id))];
        j.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        store.add(&ObjectOptions::from_json(&j).unwrap()).unwrap();
    };
    add(
        "tls-creds-x509",
        "srv",
        &[
            ("dir", st(&pki.dir_str("server"))),
            ("endpoint", st("server")),
        ],
    );
    add(
        "tls-creds-x509",
        "cli",
        &[("dir", st(&pki.dir_str("client")))],
    );
    add("authz-simple", "az", &[("identity", st("x"))]);
    fs::write(t.path().join("keys.psk"), "qemu:0123abcd\n").unwrap();
    add(
        "tls-creds-psk",
        "psk",
        &[("dir", st(&t.path().to_string_lossy()))],
    );
    let e = |id: &str, server: bool| creds_for(&store, id, server).unwrap_err().to_string();
    assert!(creds_for(&store, "srv", true).is_ok());
    assert!(creds_for(&store, "cli", false).is_ok());
    assert_eq!(e("nosuch", true), "No TLS credentials with id 'nosuch'");
    assert_eq!(e("az", true), "Object with id 'az' is not TLS credentials");
    assert_eq!(
        e("cli", true),
        "Expected TLS credentials for a server endpoint"
    );
    assert_eq!(
        e("srv", false),
        "Expected TLS credentials for a client endpoint"
    );
    assert_eq!(
        e("psk", true),
        "Expected TLS credentials for a server endpoint"
    );
    assert!(e("psk", false)
        .starts_with("TLS credentials 'psk' are tls-creds-psk, which qchar cannot use"));
}

#[test]
fn psk_files_are_checked_as_qemu() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_string_lossy().into_owned();
    let load = |extra: &[(&str, PropValue)]| {
        let mut j = vec![
            ("qom-type".to_string(), st("tls-creds-psk")),
            ("id".to_string(), st("p")),
            ("dir".to_string(), st(&dir)),
        ];
        j.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        ObjectStore::new().add(&ObjectOptions::from_json(&j).unwrap())
    };
    assert_eq!(
        load(&[]).unwrap_err().to_string(),
        format!("Unable to access credentials {dir}/keys.psk: No such file or directory")
    );
    fs::write(t.path().join("keys.psk"), "alice:zz\nqemu:00ff\n").unwrap();
    load(&[]).unwrap();
    assert_eq!(
        load(&[("username", st("bob"))]).unwrap_err().to_string(),
        format!("Username bob not found in PSK file {dir}/keys.psk")
    );
    assert_eq!(
        load(&[("username", st("alice"))]).unwrap_err().to_string(),
        "Cannot set PSK client credentials: Error in parsing."
    );
    assert_eq!(
        load(&[("endpoint", st("server")), ("username", st("x"))])
            .unwrap_err()
            .to_string(),
        "username should not be set when endpoint=server"
    );
    load(&[("endpoint", st("server"))]).unwrap();
}
