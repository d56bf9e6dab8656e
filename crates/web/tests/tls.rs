//! The web console over HTTPS (`tls_creds`): with `verify-peer=on` a
//! client certificate the object's CA signed lets a browser-less client in
//! without the token, and a client without one (or with another CA's) gets
//! nothing; with `verify-peer=off` TLS only encrypts and the token is still
//! needed; credentials that cannot serve are refused with QEMU's texts;
//! `tls_authz` lets in only the subject DNs its object allows.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use qchar_chardev::spec::{ChardevBackend, ChardevRingbuf};
use qchar_chardev::tls::{ObjectOptions, PropValue};
use qchar_chardev::Registry;
use qchar_testkit::pki::Pki;
use qchar_testkit::tlspeer::{client_config, TlsClient};
use qchar_web::{Consoles, WebConsole, WebOptions};

fn add_x509(reg: &Registry, id: &str, dir: &str, server: bool, verify_peer: bool) {
    let st = |s: &str| PropValue::Str(s.into());
    let j = vec![
        ("qom-type".to_string(), st("tls-creds-x509")),
        ("id".to_string(), st(id)),
        ("dir".to_string(), st(dir)),
        (
            "endpoint".to_string(),
            st(if server { "server" } else { "client" }),
        ),
        ("verify-peer".to_string(), PropValue::Bool(verify_peer)),
    ];
    reg.objects()
        .add(&ObjectOptions::from_json(&j).unwrap())
        .unwrap();
}

/// A registry with chardev `con`, server credentials `web-on`
/// (verify-peer=on) and `web-off` (verify-peer=off), client credentials
/// `cli`, and a console on `tls_creds`.
fn setup(pki: &Pki, tls_creds: &str) -> (Registry, Arc<Consoles>, WebConsole) {
    let reg = Registry::new().unwrap();
    reg.add("con", ChardevBackend::Ringbuf(ChardevRingbuf::default()))
        .unwrap();
    add_x509(&reg, "web-on", &pki.dir_str("server"), true, true);
    add_x509(&reg, "web-off", &pki.dir_str("server"), true, false);
    add_x509(&reg, "cli", &pki.dir_str("client"), false, true);
    let consoles = Consoles::new(&reg);
    let opts = WebOptions {
        tls_creds: Some(tls_creds.to_string()),
        ..WebOptions::default()
    };
    let web = WebConsole::start(consoles.clone(), &opts).unwrap();
    (reg, consoles, web)
}

/// One request over HTTPS with the client credentials in `dir`: the
/// response's status and body, or why there was none.
fn https_get(
    port: u16,
    dir: &Path,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let mut c = TlsClient::connect(port, "127.0.0.1", client_config(dir))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n");
    // A refused certificate may show only here (TLS 1.3 ends the
    // client's handshake before the server has checked it).
    c.s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    c.s.flush().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match c.s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if out.is_empty() => return Err(e.to_string()),
        // No close_notify after a complete answer: the answer counts.
        Err(_) => {}
    }
    if !out.starts_with(b"HTTP/1.1 ") {
        return Err(format!(
            "no HTTP answer: {:?}",
            String::from_utf8_lossy(&out)
        ));
    }
    let r = support::parse(&out);
    Ok((r.status, String::from_utf8_lossy(&r.body).into_owned()))
}

#[test]
fn a_client_certificate_is_the_pass_and_none_gets_nothing() {
    let _g = qchar_testkit::one_at_a_time();
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(t.path());
    let (reg, _consoles, web) = setup(&pki, "web-on");
    assert!(web.is_tls() && web.cert_access());
    let port = web.local_addr().port();
    assert_eq!(web.url(), format!("https://127.0.0.1:{port}/"));

    // With the certificate: in, without any token.
    let (status, body) = https_get(port, &pki.dir("client"), "/api/chardevs", None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"con\""), "{body}");
    let (status, _) = https_get(port, &pki.dir("client"), "/console/con", None).unwrap();
    assert_eq!(status, 200);

    // Without one, or with another CA's: no answer at all, token or not.
    for dir in ["client-nocert", "client-otherca", "client-expired"] {
        let r = https_get(port, &pki.dir(dir), "/api/chardevs", Some(web.token()));
        assert!(r.is_err(), "{dir}: {r:?}");
    }
    // Plain HTTP to the HTTPS port: no HTTP answer.
    let out = support::exchange(
        web.local_addr(),
        format!(
            "GET /api/chardevs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
            web.token()
        )
        .as_bytes(),
    );
    assert!(
        !out.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );

    // And the console still serves the certificate's holder.
    let (status, _) = https_get(port, &pki.dir("client"), "/api/chardevs", None).unwrap();
    assert_eq!(status, 200);
    drop(web);
    reg.shutdown();
}

/// `tls_authz`: of two certificates the CA signed, only the one whose
/// subject DN the `authz-simple` names gets an answer; the other gets
/// none, as a chardev's refused client. The object is looked up for each
/// connection: replaced (`object-del`, `object-add`) by one naming the
/// other DN, it lets that one in and no longer the first. Without
/// credentials that verify the client, `tls_authz` is refused at start.
#[test]
fn tls_authz_lets_in_only_the_dns_it_allows() {
    use qchar_testkit::pki::{CLIENT_DN, OTHER_DN};
    let _g = qchar_testkit::one_at_a_time();
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(t.path());
    let reg = Registry::new().unwrap();
    reg.add("con", ChardevBackend::Ringbuf(ChardevRingbuf::default()))
        .unwrap();
    add_x509(&reg, "web-on", &pki.dir_str("server"), true, true);
    add_x509(&reg, "web-off", &pki.dir_str("server"), true, false);
    let authz = |identity: &str| {
        let st = |s: &str| PropValue::Str(s.into());
        let j = vec![
            ("qom-type".to_string(), st("authz-simple")),
            ("id".to_string(), st("auth0")),
            ("identity".to_string(), st(identity)),
        ];
        reg.objects()
            .add(&ObjectOptions::from_json(&j).unwrap())
            .unwrap();
    };
    authz(CLIENT_DN);
    let consoles = Consoles::new(&reg);
    let opts = WebOptions {
        tls_creds: Some("web-on".into()),
        tls_authz: Some("auth0".into()),
        ..WebOptions::default()
    };
    let web = WebConsole::start(consoles.clone(), &opts).unwrap();
    let port = web.local_addr().port();

    let get = |dir: &str| https_get(port, &pki.dir(dir), "/api/chardevs", None);
    assert_eq!(get("client").map(|r| r.0), Ok(200));
    let r = get("client-other-dn");
    assert!(r.is_err(), "a DN the authz does not allow: {r:?}");

    reg.objects().del("auth0").unwrap();
    authz(OTHER_DN);
    assert_eq!(get("client-other-dn").map(|r| r.0), Ok(200));
    let r = get("client");
    assert!(r.is_err(), "the DN the authz no longer allows: {r:?}");
    // An id that names nothing: nobody gets in.
    reg.objects().del("auth0").unwrap();
    let r = get("client-other-dn");
    assert!(r.is_err(), "no authz object: {r:?}");
    drop(web);

    let opts = WebOptions {
        tls_creds: Some("web-off".into()),
        tls_authz: Some("auth0".into()),
        ..WebOptions::default()
    };
    let e = WebConsole::start(consoles.clone(), &opts)
        .err()
        .expect("refused");
    assert_eq!(
        e.to_string(),
        "web console: tls-authz 'auth0' needs tls-creds with verify-peer=on"
    );
    reg.shutdown();
}

#[test]
fn without_verify_peer_tls_only_encrypts_and_the_token_is_needed() {
    let _g = qchar_testkit::one_at_a_time();
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(t.path());
    let (reg, _consoles, web) = setup(&pki, "web-off");
    assert!(web.is_tls() && !web.cert_access());
    let port = web.local_addr().port();
    let nocert = pki.dir("client-nocert");
    let (status, _) = https_get(port, &nocert, "/api/chardevs", None).unwrap();
    assert_eq!(status, 403);
    let (status, _) = https_get(
        port,
        &nocert,
        "/api/chardevs",
        Some("wrong-token-wrong-token"),
    )
    .unwrap();
    assert_eq!(status, 403);
    let (status, body) = https_get(port, &nocert, "/api/chardevs", Some(web.token())).unwrap();
    assert_eq!(status, 200, "{body}");
    drop(web);
    reg.shutdown();
}

#[test]
fn credentials_that_cannot_serve_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(t.path());
    let reg = Registry::new().unwrap();
    add_x509(&reg, "cli", &pki.dir_str("client"), false, true);
    let consoles = Consoles::new(&reg);
    for (id, want) in [
        ("nope", "web console: No TLS credentials with id 'nope'"),
        (
            "cli",
            "web console: Expected TLS credentials for a server endpoint",
        ),
    ] {
        let opts = WebOptions {
            tls_creds: Some(id.to_string()),
            ..WebOptions::default()
        };
        let e = WebConsole::start(consoles.clone(), &opts)
            .err()
            .expect("refused");
        assert_eq!(e.to_string(), want);
    }
    reg.shutdown();
}
