//! TLS socket chardevs (`tls-creds`, `tls-authz`) over real loopback and
//! unix sockets: rustls, gnutls-cli and openssl clients; QEMU 7.2's own
//! TLS chardevs (GnuTLS) as the peer, both ways; refused clients, stalled
//! handshakes, credentials replaced at run time, telnet and websocket
//! inside TLS, reconnecting clients, and changes between plain and TLS
//! backends that keep every byte; a multi-client server over TLS.

#[path = "support/net.rs"]
mod net;
mod support;
#[path = "support/tls.rs"]
mod tlsh;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use net::*;
use qchar_chardev::spec::ChardevBackend;
use qchar_chardev::{CharFrontend, ChardevEvent, Registry};
use qchar_testkit::pki::{Pki, CLIENT_DN, OTHER_DN};
use qchar_testkit::tlspeer::{client_config, server_config, Qemu, Tls, TlsClient};
use qchar_testkit::{require, wait_for_within, wait_until, Budget, LogWatch, Prereq, WAIT};
use support::{count, input, Recorder, Seen};
use tlsh::*;

fn setup() -> (tempfile::TempDir, Pki, Registry) {
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(t.path());
    (t, pki, Registry::new().unwrap())
}

fn attach(reg: &Registry, id: &str) -> (CharFrontend, Arc<Mutex<Seen>>) {
    let fe = reg.attach(id).unwrap();
    let (r, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(r));
    (fe, seen)
}

/// A TLS server chardev `con` on a loopback port with `server`'s
/// credentials (`tls0`) and, if given, `authz-simple` `auth0`; returns the
/// port.
fn tls_server(reg: &Registry, pki: &Pki, authz: Option<&str>) -> u16 {
    add_x509(reg, "tls0", &pki.dir_str("server"), true, true);
    if let Some(id) = authz {
        add_authz(reg, "auth0", id);
    }
    let spec = tls_socket(
        inet_addr("127.0.0.1", 0),
        true,
        "tls0",
        authz.map(|_| "auth0"),
    );
    reg.add("con", tls_spec(spec)).unwrap();
    server_port(reg, "con")
}

fn client(pki: &Pki, dir: &str, port: u16) -> TlsClient {
    TlsClient::connect(port, "127.0.0.1", client_config(&pki.dir(dir))).unwrap()
}

/// A client the server refuses: whatever the handshake's outcome on the
/// client side (TLS 1.3 finishes it before the server has checked the
/// client), the connection ends without data reaching anyone.
fn refused(port: u16, dir: &Path) -> String {
    match TlsClient::connect(port, "127.0.0.1", client_config(dir)) {
        Err(e) => format!("handshake failed: {e}"),
        Ok(mut c) => {
            let _ = c.s.write_all(b"sneaked in");
            let _ = c.s.flush();
            let (data, end) = c.read_to_end();
            assert!(data.is_empty(), "a refused client got {data:?}");
            format!("closed after the handshake: {end:?}")
        }
    }
}

#[test]
fn good_clients_get_in_bad_ones_are_dropped_with_qemus_reason() {
    let (_t, pki, reg) = setup();
    let port = tls_server(&reg, &pki, Some(CLIENT_DN));
    let (fe, seen) = attach(&reg, "con");
    assert!(filename(&reg, "con").starts_with("disconnected:tcp:127.0.0.1:"));

    let mut c = client(&pki, "client", port);
    c.send(b"hello qchar");
    wait_until("the client's bytes", || input(&seen) == b"hello qchar");
    fe.write_all(b"hello client").unwrap();
    assert_eq!(c.recv(12).unwrap(), b"hello client");
    let name = filename(&reg, "con");
    assert!(
        name.starts_with(&format!("tcp:127.0.0.1:{port},server=on <-> 127.0.0.1:")),
        "{name}"
    );
    assert_eq!(count(&seen, ChardevEvent::Opened), 1);
    drop(c);
    wait_until("CLOSED", || count(&seen, ChardevEvent::Closed) == 1);

    let cases = [
        (
            "client-otherca",
            "The certificate hasn't got a known issuer".to_string(),
        ),
        ("client-expired", "The certificate has expired".to_string()),
        (
            "client-notyet",
            "The certificate is not yet activated".to_string(),
        ),
        (
            "client-nocert",
            "Verify failed: No certificate was found.".to_string(),
        ),
        (
            "client-other-dn",
            format!("TLS x509 authz check for {OTHER_DN} is denied"),
        ),
    ];
    for (dir, why) in cases {
        let log = LogWatch::new(&why);
        let how = refused(port, &pki.dir(dir));
        // (Other tests of this file may log the same reason: at least one.)
        wait_until(&format!("{dir}: '{why}' logged"), || log.count() >= 1);
        let line = log.last();
        assert!(line.contains("chardev 'con'"), "{line}");
        eprintln!("{dir}: client saw {how}; qchar logged: {line}");
    }
    // A plaintext client on the TLS port.
    let log = LogWatch::new("An unexpected TLS packet was received.");
    let mut s = connect_tcp(port);
    s.write_all(b"hello\r\n").unwrap();
    bounded_tcp(&s);
    let mut b = [0u8; 64];
    // Nothing but an alert comes back, then the end.
    let mut got = Vec::new();
    while let Ok(n) = s.read(&mut b) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&b[..n]);
    }
    assert!(got.len() < 16 && !got.windows(5).any(|w| w == b"hello"));
    wait_until("the plaintext client's reason logged", || log.count() >= 1);

    // The chardev listened on all along: the next good client gets in.
    let mut c = client(&pki, "client", port);
    c.send(b"!");
    wait_until("the last client's byte", || input(&seen) == b"hello qchar!");
    assert_eq!(
        count(&seen, ChardevEvent::Opened),
        2,
        "no refused client was announced"
    );
    reg.shutdown();
}

/// Sockets on the server side of loopback port `port` that a process still
/// holds (established, or closed by the peer and not yet by the holder),
/// from /proc/net/tcp: the test's client ends are on other ports.
fn held_server_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port = f[1].rsplit(':').next().unwrap();
            u16::from_str_radix(local_port, 16).unwrap() == port && matches!(f[3], "01" | "08")
        })
        .count()
}

#[test]
fn stalled_handshakes_end_after_10s_and_never_keep_a_client_out() {
    let (_t, pki, reg) = setup();
    let port = tls_server(&reg, &pki, None);
    let (_fe, seen) = attach(&reg, "con");
    let timeout = LogWatch::new("TLS handshake not finished after 10 s");
    let evicted = LogWatch::new("too many TLS handshakes pending");
    // 40 clients that send the first bytes of a record and stop.
    let stallers: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = connect_tcp(port);
            s.write_all(&[0x16, 0x03, 0x01]).unwrap();
            s
        })
        .collect();
    // A good client is served while they hang.
    let mut c = client(&pki, "client", port);
    c.send(b"through");
    wait_until("the good client's bytes", || input(&seen) == b"through");
    // Pending handshakes are bounded: qchar holds at most 16 of them and
    // the good client.
    let held = held_server_sockets(port);
    assert!(held <= 17, "qchar holds {held} connections");
    // Every staller is dropped: the oldest at once for newer ones, the rest
    // at the deadline. None waits longer than it (reads time out after 60 s).
    for mut s in stallers {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut b = [0u8; 64];
        loop {
            match s.read(&mut b) {
                Ok(0) => break,
                // An alert, at most.
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset,
                        "a staller was kept: {e}"
                    );
                    break;
                }
            }
        }
    }
    assert!(evicted.count() >= 24, "{} evicted", evicted.count());
    assert!(timeout.count() >= 1, "none timed out");
    drop(c);
    wait_until("every connection let go", || held_server_sockets(port) == 0);
    reg.shutdown();
}

/// Sends `data` from the chardev to QEMU's UART one byte (one TLS record)
/// at a time, each read before the next is written. QEMU 7.2 reads a TLS
/// chardev only when its socket is readable: the rest of a record GnuTLS
/// decrypted but the UART (one byte at a time without its FIFO) did not
/// take yet waits there until more bytes arrive on the socket.
fn to_qemu(fe: &CharFrontend, qemu: &mut Qemu, data: &[u8]) {
    for b in data {
        fe.write_all(&[*b]).unwrap();
        assert_eq!(qemu.uart_read(1), [*b]);
    }
}

#[test]
fn qemu_tls_client_and_qchar_tls_server_talk_both_ways() {
    if !require(Prereq::Qemu) {
        return;
    }
    let (t, pki, reg) = setup();
    let port = tls_server(&reg, &pki, Some(CLIENT_DN));
    let (fe, seen) = attach(&reg, "con");
    let mut args = qemu_objects(("cli0", &pki.dir_str("client"), "client"), None);
    args.extend([
        "-chardev".to_string(),
        format!("socket,id=c0,host=127.0.0.1,port={port},tls-creds=cli0"),
        "-serial".into(),
        "chardev:c0".into(),
    ]);
    let mut qemu = Qemu::start(t.path(), &args);
    wait_until("QEMU's connection announced", || {
        count(&seen, ChardevEvent::Opened) == 1
    });
    qemu.uart_write(b"from QEMU");
    wait_until("QEMU's bytes", || input(&seen) == b"from QEMU");
    to_qemu(&fe, &mut qemu, b"from qchar");
    reg.shutdown();
}

#[test]
fn qchar_tls_client_and_qemu_tls_server_talk_both_ways() {
    if !require(Prereq::Qemu) {
        return;
    }
    let (t, pki, reg) = setup();
    let port = free_port();
    let mut args = qemu_objects(
        ("srv0", &pki.dir_str("server"), "server"),
        Some(("auth0", CLIENT_DN)),
    );
    args.extend([
        "-chardev".to_string(),
        format!(
            "socket,id=c0,host=127.0.0.1,port={port},server=on,wait=off,tls-creds=srv0,tls-authz=auth0"
        ),
        "-serial".into(),
        "chardev:c0".into(),
    ]);
    let mut qemu = Qemu::start(t.path(), &args);
    add_x509(&reg, "cli0", &pki.dir_str("client"), false, true);
    let mut spec = tls_socket(inet_addr("127.0.0.1", port), false, "cli0", None);
    spec.reconnect = Some(1);
    reg.add("con", tls_spec(spec)).unwrap();
    let (fe, seen) = attach(&reg, "con");
    wait_until("the handshake with QEMU", || {
        count(&seen, ChardevEvent::Opened) == 1
    });
    to_qemu(&fe, &mut qemu, b"from qchar");
    qemu.uart_write(b"from QEMU");
    wait_until("QEMU's bytes", || input(&seen) == b"from QEMU");
    reg.shutdown();
}

/// The same refused clients against QEMU's TLS server chardev and qchar's:
/// both let no byte through and end the connection; QEMU says nothing
/// (its trace shows the refusal), qchar logs why.
#[test]
fn qemu_and_qchar_refuse_the_same_clients() {
    if !require(Prereq::Qemu) {
        return;
    }
    let (t, pki, reg) = setup();
    let qport = free_port();
    let mut args = qemu_objects(
        ("srv0", &pki.dir_str("server"), "server"),
        Some(("auth0", CLIENT_DN)),
    );
    args.extend([
        "-chardev".to_string(),
        format!(
            "socket,id=c0,host=127.0.0.1,port={qport},server=on,wait=off,tls-creds=srv0,tls-authz=auth0"
        ),
        "-serial".into(),
        "chardev:c0".into(),
        "-trace".into(),
        "qio_channel_tls_credentials_*".into(),
        "-trace".into(),
        "qio_channel_tls_handshake_fail".into(),
    ]);
    let mut qemu = Qemu::start(t.path(), &args);
    let port = tls_server(&reg, &pki, Some(CLIENT_DN));
    let (_fe, seen) = attach(&reg, "con");
    for dir in [
        "client-otherca",
        "client-expired",
        "client-notyet",
        "client-nocert",
        "client-other-dn",
    ] {
        let verdicts =
            qemu.stderr().matches("deny").count() + qemu.stderr().matches("handshake_fail").count();
        let theirs = refused(qport, &pki.dir(dir));
        wait_until(&format!("QEMU's trace of refusing {dir}"), || {
            qemu.stderr().matches("deny").count() + qemu.stderr().matches("handshake_fail").count()
                > verdicts
        });
        assert!(qemu.uart_read_now().is_empty(), "{dir}: QEMU let bytes in");
        let ours = refused(port, &pki.dir(dir));
        eprintln!("{dir}: QEMU: {theirs}; qchar: {ours}");
    }
    // Both still serve the good client (one byte: see `to_qemu`).
    let mut c = client(&pki, "client", qport);
    c.send(b"!");
    assert_eq!(qemu.uart_read(1), b"!");
    let mut c = client(&pki, "client", port);
    c.send(b"ok");
    wait_until("qchar's good client", || input(&seen) == b"ok");
    assert_eq!(count(&seen, ChardevEvent::Opened), 1);
    reg.shutdown();
}

/// A line through an external client to the chardev and one back.
fn external_client(mut cmd: Command, port: u16, reg: &Registry, tag: &str) {
    let (fe, seen) = attach(reg, "con");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the TLS client");
    let opened = count(&seen, ChardevEvent::Opened);
    wait_until(&format!("{tag} connected"), || {
        count(&seen, ChardevEvent::Opened) > opened
    });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("from {tag}\n").as_bytes()).unwrap();
    wait_until(&format!("{tag}'s line"), || {
        input(&seen) == format!("from {tag}\n").as_bytes()
    });
    fe.write_all(format!("to {tag}\n").as_bytes()).unwrap();
    let mut out = child.stdout.take().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        let mut b = [0u8; 1024];
        while let Ok(n) = out.read(&mut b) {
            if n == 0 {
                break;
            }
            g.lock().unwrap().extend_from_slice(&b[..n]);
        }
    });
    let want = format!("to {tag}\n");
    wait_until(&format!("the line to {tag}"), || {
        String::from_utf8_lossy(&got.lock().unwrap()).contains(&want)
    });
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    fe.detach();
    let _ = port;
}

#[test]
fn gnutls_cli_and_openssl_s_client_connect() {
    let (_t, pki, reg) = setup();
    let port = tls_server(&reg, &pki, Some(CLIENT_DN));
    let c = pki.dir("client");
    let p = |f: &str| c.join(f).to_string_lossy().into_owned();
    if require(Prereq::GnutlsTools) {
        let mut cmd = Command::new("gnutls-cli");
        cmd.args([
            "--x509cafile",
            &p("ca-cert.pem"),
            "--x509certfile",
            &p("client-cert.pem"),
            "--x509keyfile",
            &p("client-key.pem"),
            "-p",
            &port.to_string(),
            "127.0.0.1",
        ]);
        external_client(cmd, port, &reg, "gnutls-cli");
    }
    reg.remove("con").unwrap();
    reg.add(
        "con",
        tls_spec(tls_socket(
            inet_addr("127.0.0.1", port),
            true,
            "tls0",
            Some("auth0"),
        )),
    )
    .unwrap();
    if require(Prereq::Openssl) {
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_client",
            "-quiet",
            "-verify_return_error",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-CAfile",
            &p("ca-cert.pem"),
            "-cert",
            &p("client-cert.pem"),
            "-key",
            &p("client-key.pem"),
        ]);
        external_client(cmd, port, &reg, "openssl");
    }
    reg.shutdown();
}

#[test]
fn socket_options_name_their_errors_as_qemu() {
    let (t, pki, reg) = setup();
    add_x509(&reg, "srv", &pki.dir_str("server"), true, true);
    add_x509(&reg, "cli", &pki.dir_str("client"), false, true);
    add_authz(&reg, "az", CLIENT_DN);
    std::fs::write(t.path().join("keys.psk"), "qemu:0123abcd\n").unwrap();
    let psk = vec![
        ("qom-type".to_string(), st("tls-creds-psk")),
        ("id".to_string(), st("psk")),
        ("dir".to_string(), st(&t.path().to_string_lossy())),
        ("endpoint".to_string(), st("server")),
    ];
    reg.objects()
        .add(&qchar_chardev::tls::ObjectOptions::from_json(&psk).unwrap())
        .unwrap();
    let err = |server: bool, creds: Option<&str>, authz: Option<&str>| {
        let mut s = tls_socket(inet_addr("127.0.0.1", 0), server, "x", authz);
        s.tls_creds = creds.map(str::to_string);
        reg.add("e", tls_spec(s)).unwrap_err().to_string()
    };
    assert_eq!(
        err(true, Some("nope"), None),
        "No TLS credentials with id 'nope'"
    );
    assert_eq!(
        err(true, Some("az"), None),
        "Object with id 'az' is not TLS credentials"
    );
    assert_eq!(
        err(true, Some("cli"), None),
        "Expected TLS credentials for a server endpoint"
    );
    assert_eq!(
        err(false, Some("srv"), None),
        "Expected TLS credentials for a client endpoint"
    );
    assert_eq!(
        err(true, None, Some("az")),
        "'tls_authz' option requires 'tls_creds' option"
    );
    assert!(err(true, Some("psk"), None)
        .starts_with("TLS credentials 'psk' are tls-creds-psk, which qchar cannot use"));
    reg.shutdown();
}

#[test]
fn unix_sockets_take_tls_too() {
    let (t, pki, reg) = setup();
    add_x509(&reg, "tls0", &pki.dir_str("server"), true, true);
    let path = t.path().join("con.sock");
    reg.add(
        "con",
        tls_spec(tls_socket(unix_addr(&path), true, "tls0", None)),
    )
    .unwrap();
    let (fe, seen) = attach(&reg, "con");
    let s = UnixStream::connect(&path).unwrap();
    bounded_unix(&s);
    let mut c = Tls::client_over(s, "localhost", client_config(&pki.dir("client"))).unwrap();
    c.send(b"over unix");
    wait_until("bytes over unix", || input(&seen) == b"over unix");
    fe.write_all(b"back").unwrap();
    assert_eq!(c.recv(4).unwrap(), b"back");

    // A unix client chardev checks the server's chain (there is no name).
    let cpath = t.path().join("peer.sock");
    let l = std::os::unix::net::UnixListener::bind(&cpath).unwrap();
    add_x509(&reg, "cli0", &pki.dir_str("client"), false, true);
    reg.add(
        "out",
        tls_spec(tls_socket(unix_addr(&cpath), false, "cli0", None)),
    )
    .unwrap();
    let (ofe, oseen) = attach(&reg, "out");
    let (s, _) = l.accept().unwrap();
    bounded_unix(&s);
    let mut srv = Tls::server_over(s, server_config(&pki.dir("server"), true)).unwrap();
    wait_until("the unix client's handshake", || {
        count(&oseen, ChardevEvent::Opened) == 1
    });
    ofe.write_all(b"client out").unwrap();
    assert_eq!(srv.recv(10).unwrap(), b"client out");
    srv.send(b"in");
    wait_until("bytes in", || input(&oseen) == b"in");
    reg.shutdown();
}

#[test]
fn telnet_and_websocket_run_inside_tls() {
    let (_t, pki, reg) = setup();
    add_x509(&reg, "tls0", &pki.dir_str("server"), true, true);
    let mut tn = tls_socket(inet_addr("127.0.0.1", 0), true, "tls0", None);
    tn.telnet = Some(true);
    reg.add("con", tls_spec(tn)).unwrap();
    let port = server_port(&reg, "con");
    let (fe, seen) = attach(&reg, "con");
    let mut c = client(&pki, "client", port);
    // QEMU 7.2 writes these 12 bytes in clear text beside the session;
    // qchar sends them inside it.
    assert_eq!(
        c.recv(12).unwrap(),
        [0xff, 0xfb, 0x01, 0xff, 0xfb, 0x03, 0xff, 0xfb, 0x00, 0xff, 0xfd, 0x00]
    );
    c.send(b"telnet\xff\xff");
    wait_until("telnet input", || input(&seen) == b"telnet\xff");
    fe.write_all(b"\xffx").unwrap();
    assert_eq!(c.recv(3).unwrap(), b"\xff\xffx");

    let mut ws = tls_socket(inet_addr("127.0.0.1", 0), true, "tls0", None);
    ws.websocket = Some(true);
    reg.add("ws", tls_spec(ws)).unwrap();
    let port = server_port(&reg, "ws");
    let (wfe, wseen) = attach(&reg, "ws");
    let mut c = client(&pki, "client", port);
    let reply = ws_handshake(&mut c.s, Some("binary"));
    assert!(reply.starts_with("HTTP/1.1 101"), "{reply}");
    c.send(&ws_frame(2, b"wss in"));
    wait_until("websocket input", || input(&wseen) == b"wss in");
    wfe.write_all(b"wss out").unwrap();
    let (op, payload) = ws_read_frame(&mut c.s).unwrap();
    assert_eq!((op, &payload[..]), (2, &b"wss out"[..]));
    reg.shutdown();
}

/// `object-del` then `object-add` of the same id with other certificates:
/// the next connection uses them, the open one goes on; with the id gone,
/// or naming an object it cannot use, the last credentials stay.
#[test]
fn replaced_credentials_apply_to_new_connections() {
    let (_t, pki, reg) = setup();
    let port = tls_server(&reg, &pki, None);
    let (fe, seen) = attach(&reg, "con");
    let cert_of = |c: &TlsClient| c.s.conn.peer_certificates().unwrap()[0].to_vec();
    let file_cert = |dir: &str| {
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read(pki.dir(dir).join("server-cert.pem")).unwrap();
        rustls::pki_types::CertificateDer::from_pem_slice(&pem)
            .unwrap()
            .to_vec()
    };
    let mut a = client(&pki, "client", port);
    assert_eq!(cert_of(&a), file_cert("server"));
    reg.objects().del("tls0").unwrap();
    add_x509(&reg, "tls0", &pki.dir_str("server-crl"), true, true);
    // The open connection goes on with what it has.
    a.send(b"a");
    wait_until("a", || input(&seen) == b"a");
    fe.write_all(b"A").unwrap();
    assert_eq!(a.recv(1).unwrap(), b"A");
    drop(a);
    wait_until("a closed", || count(&seen, ChardevEvent::Closed) == 1);
    let b = client(&pki, "client", port);
    assert_eq!(cert_of(&b), file_cert("server-crl"));
    drop(b);
    wait_until("b closed", || count(&seen, ChardevEvent::Closed) == 2);
    // Deleted and not re-added: the last credentials stay in use.
    reg.objects().del("tls0").unwrap();
    let c = client(&pki, "client", port);
    assert_eq!(cert_of(&c), file_cert("server-crl"));
    drop(c);
    wait_until("c closed", || count(&seen, ChardevEvent::Closed) == 3);
    // Re-added for the wrong endpoint: kept, with a warning.
    let warn = LogWatch::new("Expected TLS credentials for a server endpoint");
    add_x509(&reg, "tls0", &pki.dir_str("client"), false, true);
    let d = client(&pki, "client", port);
    assert_eq!(cert_of(&d), file_cert("server-crl"));
    assert_eq!(warn.count(), 1);
    reg.shutdown();
}

/// A reconnecting client chardev: a failed handshake is logged and
/// retried; the connection comes once the server has the right
/// certificate, and again after the server dropped it.
#[test]
fn reconnecting_client_retries_failed_handshakes() {
    let (_t, pki, reg) = setup();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    add_x509(&reg, "cli0", &pki.dir_str("client"), false, true);
    let mut spec = tls_socket(inet_addr("127.0.0.1", port), false, "cli0", None);
    spec.reconnect = Some(1);
    let log = LogWatch::new("Certificate does not match the hostname");
    reg.add("con", tls_spec(spec)).unwrap();
    let (fe, seen) = attach(&reg, "con");
    // First a server with the wrong name: the client refuses it.
    let (s, _) = l.accept().unwrap();
    bounded_tcp(&s);
    let _ = Tls::server_over(s, server_config(&pki.dir("server-wrongname"), true))
        .map(|mut t| t.read_to_end());
    wait_until("the refusal logged", || log.count() >= 1);
    assert_eq!(count(&seen, ChardevEvent::Opened), 0);
    for round in 0..2 {
        let (s, _) = l.accept().unwrap();
        bounded_tcp(&s);
        let mut srv = Tls::server_over(s, server_config(&pki.dir("server"), true)).unwrap();
        wait_until("connected", || {
            count(&seen, ChardevEvent::Opened) == round + 1
        });
        fe.write_all(format!("round {round}").as_bytes()).unwrap();
        assert_eq!(srv.recv(7).unwrap(), format!("round {round}").as_bytes());
        drop(srv);
        wait_until("closed", || count(&seen, ChardevEvent::Closed) == round + 1);
    }
    reg.shutdown();
}

/// Numbered lines written without pause while the chardev moves between a
/// plain TCP server, a TLS server and a TLS client: every line arrives
/// once, in order, split between the peers in change order.
///
/// While no peer is connected the writer is not paced, and a server's
/// backlog keeps only its newest 1 MiB; so from each change until the new
/// peer has output the writer may write at most `IN_FLIGHT` lines (well
/// under the backlog), and runs free again once the peer reads.
#[test]
fn changes_between_plain_and_tls_keep_every_byte() {
    let (_t, pki, reg) = setup();
    add_x509(&reg, "srv", &pki.dir_str("server"), true, true);
    add_x509(&reg, "cli", &pki.dir_str("client"), false, true);
    const BACKLOG: u64 = 1 << 20;
    reg.add("con", with_backlog(tcp_server(0), BACKLOG))
        .unwrap();
    let (fe, _seen) = attach(&reg, "con");
    let first = Drain::new(connect_tcp(server_port(&reg, "con")));
    // Lines are written until the changes are done, paced by the peers
    // and, between a change and its new peer's first output, by `budget`.
    const IN_FLIGHT: usize = 20_000;
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let budget = Budget::new(u64::MAX);
    let writer = {
        let (stop, written, budget) = (stop.clone(), written.clone(), budget.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                budget.wait_below(n as u64, || false);
                fe.write_all(&numbered("L", n, 1)).unwrap();
                n += 1;
                written.store(n, Ordering::Relaxed);
            }
            (fe, n)
        })
    };
    let mut drains = vec![first];
    /// A target: its spec, and how its peer is reached once it is in place.
    type Target = (ChardevBackend, Box<dyn FnOnce(&Registry) -> Drain>);
    for round in 0..9 {
        let (spec, connect): Target = match round % 3 {
            0 => {
                let s = tls_socket(inet_addr("127.0.0.1", 0), true, "srv", None);
                let cfg = client_config(&pki.dir("client"));
                (
                    with_backlog(tls_spec(s), BACKLOG),
                    Box::new(move |reg: &Registry| {
                        let port = server_port(reg, "con");
                        Drain::new(TlsClient::connect(port, "127.0.0.1", cfg).unwrap().s)
                    }),
                )
            }
            1 => {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let port = l.local_addr().unwrap().port();
                let s = tls_socket(inet_addr("127.0.0.1", port), false, "cli", None);
                let cfg = server_config(&pki.dir("server"), true);
                (
                    tls_spec(s),
                    Box::new(move |_: &Registry| {
                        let (s, _) = l.accept().unwrap();
                        bounded_tcp(&s);
                        Drain::new(Tls::server_over(s, cfg).unwrap().s)
                    }),
                )
            }
            _ => (
                with_backlog(tcp_server(0), BACKLOG),
                Box::new(|reg: &Registry| Drain::new(connect_tcp(server_port(reg, "con")))),
            ),
        };
        // Let some lines reach the current peer first.
        let n = drains.last().unwrap().len();
        wait_until("output to the current peer", || {
            drains.last().unwrap().len() > n + 1000
        });
        budget.set((written.load(Ordering::Relaxed) + IN_FLIGHT) as u64);
        reg.change("con", spec).unwrap();
        drains.push(connect(&reg));
        wait_until("output to the new peer", || {
            drains.last().unwrap().len() > 0
        });
        budget.set(u64::MAX);
    }
    // And some to the last one.
    let n = drains.last().unwrap().len();
    wait_until("output to the last peer", || {
        drains.last().unwrap().len() > n + 1000
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (fe, lines) = writer.join().unwrap();
    let want = numbered("L", 0, lines);
    wait_until("every byte at a peer", || {
        drains.iter().map(Drain::len).sum::<usize>() >= want.len()
    });
    fe.detach();
    reg.remove("con").unwrap();
    let mut all = Vec::new();
    for d in drains {
        all.extend(d.finish());
    }
    assert_eq!(all.len(), want.len());
    assert!(all == want, "lines lost, repeated or reordered");
    eprintln!("{lines} lines across 9 changes, each once and in order");
    reg.shutdown();
}

/// README's recipe, `scripts/tls-certs.sh`, with openssl and with certtool,
/// ECDSA and RSA keys: the directories it makes load in qchar with QEMU's
/// checks on; a qchar TLS server takes the client certificate and its
/// printed identity, and QEMU's TLS server takes qchar's client.
#[test]
fn the_certificate_recipes_work_with_qchar_and_qemu() {
    let t = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/tls-certs.sh");
    for tool in ["openssl", "certtool"] {
        let have = match tool {
            "openssl" => require(Prereq::Openssl),
            _ => require(Prereq::GnutlsTools) && require(Prereq::Openssl),
        };
        if !have {
            continue;
        }
        for key in ["ecdsa", "rsa"] {
            let out = t.path().join(format!("{tool}-{key}"));
            let run = Command::new("sh")
                .arg(&script)
                .args(["-t", tool, "-k", key])
                .arg(&out)
                .output()
                .unwrap();
            assert!(
                run.status.success(),
                "{tool} {key}: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            let identity = String::from_utf8(run.stdout).unwrap().trim().to_string();
            let dir = |d: &str| out.join(d).to_string_lossy().into_owned();
            let reg = Registry::new().unwrap();
            // QEMU's checks stay on here.
            let add = |id: &str, d: &str, endpoint: &str| {
                let j = vec![
                    ("qom-type".to_string(), st("tls-creds-x509")),
                    ("id".to_string(), st(id)),
                    ("dir".to_string(), st(&dir(d))),
                    ("endpoint".to_string(), st(endpoint)),
                ];
                reg.objects()
                    .add(&qchar_chardev::tls::ObjectOptions::from_json(&j).unwrap())
                    .unwrap_or_else(|e| panic!("{tool} {key} {d}: {e}"));
            };
            add("tls0", "server", "server");
            add("cli0", "client", "client");
            add_authz(&reg, "auth0", &identity);
            let spec = tls_socket(inet_addr("127.0.0.1", 0), true, "tls0", Some("auth0"));
            reg.add("con", tls_spec(spec)).unwrap();
            let port = server_port(&reg, "con");
            let (_fe, seen) = attach(&reg, "con");
            for host in ["127.0.0.1", "localhost"] {
                let mut c =
                    TlsClient::connect(port, host, client_config(&out.join("client"))).unwrap();
                c.send(host.as_bytes());
                wait_until(&format!("{tool} {key} via {host}"), || {
                    input(&seen).ends_with(host.as_bytes())
                });
            }
            if require(Prereq::Qemu) {
                let qport = free_port();
                let mut args =
                    qemu_objects(("srv0", &dir("server"), "server"), Some(("a0", &identity)));
                args.extend([
                    "-chardev".to_string(),
                    format!(
                        "socket,id=c0,host=127.0.0.1,port={qport},server=on,wait=off,tls-creds=srv0,tls-authz=a0"
                    ),
                    "-serial".into(),
                    "chardev:c0".into(),
                ]);
                let mut qemu = Qemu::start(t.path(), &args);
                let mut spec = tls_socket(inet_addr("127.0.0.1", qport), false, "cli0", None);
                spec.reconnect = Some(1);
                reg.add("out", tls_spec(spec)).unwrap();
                let (ofe, oseen) = attach(&reg, "out");
                wait_until(&format!("{tool} {key}: QEMU's server"), || {
                    count(&oseen, ChardevEvent::Opened) == 1
                });
                to_qemu(&ofe, &mut qemu, b"ok");
            }
            reg.shutdown();
        }
    }
}

fn clients_of(reg: &Registry, id: &str) -> qchar_chardev::ClientsInfo {
    reg.clients()
        .into_iter()
        .find(|c| c.label == id)
        .unwrap_or_else(|| panic!("{id} is no multi-client server"))
        .info
}

/// Clients served (past their handshake) on `id`.
fn served(reg: &Registry, id: &str) -> usize {
    clients_of(reg, id)
        .clients
        .iter()
        .filter(|c| !c.handshake)
        .count()
}

/// Clients that connect to a multi-client TLS server and never shake
/// hands keep others out for a second at most: with `x-clients=2` taken by
/// two such clients, a TLS client that comes after that second is served
/// (the oldest stalled one is closed for it), and so is the next; only
/// when both places are served is a client one too many. Before, a stalled client held its place for the
/// handshake's whole deadline (10 s), and the TLS client was told
/// `too many clients`.
#[test]
fn stalled_handshakes_give_their_places_up() {
    let (_t, pki, reg) = setup();
    add_x509(&reg, "tls0", &pki.dir_str("server"), true, true);
    let spec = with_backlog(
        with_clients(
            tls_spec(tls_socket(inet_addr("127.0.0.1", 0), true, "tls0", None)),
            2,
            Some(1),
        ),
        1 << 20,
    );
    reg.add("con", spec).unwrap();
    let port = server_port(&reg, "con");
    let (fe, _seen) = attach(&reg, "con");
    fe.write_all(b"history;").unwrap();
    wait_until("sent out", || reg.stats("con").unwrap().queued == 0);

    let stalled: Vec<TcpStream> = (0..2).map(|_| connect_tcp(port)).collect();
    wait_until("two clients shaking hands", || {
        clients_of(&reg, "con").clients.len() == 2
    });
    assert_eq!(served(&reg, "con"), 0);
    // A client that comes within the grace is one too many; once the
    // stalled ones have shaken hands for a second, one comes in. Well
    // before their 10 s deadline, which is what would let it in otherwise.
    let mut a = wait_for_within(
        "a TLS client served in a stalled client's place",
        Duration::from_secs(5),
        || {
            let mut c = client(&pki, "client", port);
            (c.recv(8).ok()? == b"history;").then_some(c)
        },
    );
    let mut b = client(&pki, "client", port);
    assert_eq!(b.recv(8).unwrap(), b"history;");
    wait_until("a and b served", || served(&reg, "con") == 2);
    // Both stalled clients were closed, untold.
    for mut s in stalled {
        bounded_tcp(&s);
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert!(got.is_empty(), "a stalled client was sent {got:?}");
    }
    // Both places served: the next one is one too many.
    let refused = clients_of(&reg, "con").refused;
    let mut extra = client(&pki, "client", port);
    let (told, end) = extra.read_to_end();
    assert_eq!(told, b"qchar: too many clients\r\n", "{end:?}");
    assert_eq!(clients_of(&reg, "con").refused, refused + 1);
    fe.write_all(b"live;").unwrap();
    assert_eq!(a.recv(5).unwrap(), b"live;");
    assert_eq!(b.recv(5).unwrap(), b"live;");
    reg.shutdown();
}

/// The shared console over TLS: a TLS server with `x-clients=3` and a
/// history serves TLS clients, each of which gets the history, then live
/// output; the first is the one writer (`x-writers=1`), the second a
/// viewer whose input is dropped; a late one gets the history first; one
/// too many is told so inside TLS and closed; a plaintext client or one
/// with a bad certificate never counts. A change to the same address with
/// the same credentials keeps the clients; a change to a plain server there
/// closes them (a plain chardev keeps no TLS client, nor the reverse).
#[test]
fn many_tls_clients_share_one_console() {
    let (_t, pki, reg) = setup();
    add_x509(&reg, "tls0", &pki.dir_str("server"), true, true);
    let spec = |port: u16, writers: u64| {
        with_backlog(
            with_clients(
                tls_spec(tls_socket(inet_addr("127.0.0.1", port), true, "tls0", None)),
                3,
                Some(writers),
            ),
            1 << 20,
        )
    };
    reg.add("con", spec(0, 1)).unwrap();
    let port = server_port(&reg, "con");
    let (fe, seen) = attach(&reg, "con");
    fe.write_all(b"history;").unwrap();
    wait_until("sent out", || reg.stats("con").unwrap().queued == 0);

    // A plaintext client and a refused certificate get nothing and take no
    // place.
    let mut plain = connect_tcp(port);
    bounded_tcp(&plain);
    plain.write_all(b"hello\r\n").unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(!got.windows(8).any(|w| w == b"history;"), "{got:?}");
    refused(port, &pki.dir("client-otherca"));

    let mut a = client(&pki, "client", port);
    assert_eq!(a.recv(8).unwrap(), b"history;");
    wait_until("a served", || served(&reg, "con") == 1);
    let mut b = client(&pki, "client", port);
    assert_eq!(b.recv(8).unwrap(), b"history;");
    wait_until("b served", || served(&reg, "con") == 2);
    assert_eq!(count(&seen, ChardevEvent::Opened), 1, "one OPENED for all");
    fe.write_all(b"live;").unwrap();
    assert_eq!(a.recv(5).unwrap(), b"live;");
    assert_eq!(b.recv(5).unwrap(), b"live;");
    let info = clients_of(&reg, "con");
    assert_eq!(info.clients.len(), 2, "{info:?}");
    assert!(
        info.clients[0].writer && !info.clients[1].writer,
        "{info:?}"
    );

    // The writer's input reaches the frontend; the viewer's is dropped.
    a.send(b"typed");
    wait_until("the writer's input", || input(&seen) == b"typed");
    b.send(b"nope");
    wait_until("the viewer's input dropped", || {
        clients_of(&reg, "con").clients[1].dropped_input == 4
    });
    assert_eq!(input(&seen), b"typed");

    // A late client: the history first, then live.
    let mut late = client(&pki, "client", port);
    assert_eq!(late.recv(13).unwrap(), b"history;live;");
    wait_until("three served", || served(&reg, "con") == 3);
    // One too many: told inside TLS, then closed; the others go on.
    let mut extra = client(&pki, "client", port);
    let (told, end) = extra.read_to_end();
    assert_eq!(told, b"qchar: too many clients\r\n", "{end:?}");
    assert_eq!(clients_of(&reg, "con").refused, 1);
    fe.write_all(b"all three;").unwrap();
    for c in [&mut a, &mut b, &mut late] {
        assert_eq!(c.recv(10).unwrap(), b"all three;");
    }

    // Options change on the same address (two writers now): the clients
    // stay, with their places.
    reg.change("con", spec(port, 2)).unwrap();
    fe.write_all(b"changed;").unwrap();
    for c in [&mut a, &mut b, &mut late] {
        assert_eq!(c.recv(8).unwrap(), b"changed;");
    }
    b.send(b"!");
    wait_until("b writes now", || input(&seen) == b"typed!");

    // A plain server on that address: no TLS client is kept.
    reg.change(
        "con",
        with_backlog(with_clients(tcp_server(port), 3, None), 1 << 20),
    )
    .unwrap();
    wait_until("the TLS clients closed", || {
        clients_of(&reg, "con").clients.is_empty()
    });
    // Each is told the end inside TLS (a close_notify), not cut off.
    for c in [&mut a, &mut b, &mut late] {
        let (rest, end) = c.read_to_end();
        assert!(rest.is_empty(), "{rest:?}");
        assert_eq!(end, Ok(()), "no close_notify");
    }
    let mut p = connect_tcp(port);
    bounded_tcp(&p);
    assert_eq!(read_n(&mut p, 31), b"history;live;all three;changed;");
    fe.detach();
    reg.shutdown();
}
