//! Helpers for the TLS tests: objects in a registry, TLS socket specs,
//! QEMU's command-line pieces for its TLS chardevs.
#![allow(dead_code)]

use qchar_chardev::spec::{ChardevBackend, ChardevSocket, SocketAddressLegacy};
use qchar_chardev::tls::{ObjectOptions, PropValue};
use qchar_chardev::Registry;

/// `object-add` of `tls-creds-x509` into the registry's objects.
pub fn add_x509(reg: &Registry, id: &str, dir: &str, server: bool, verify_peer: bool) {
    let j = vec![
        ("qom-type".to_string(), st("tls-creds-x509")),
        ("id".to_string(), st(id)),
        ("dir".to_string(), st(dir)),
        (
            "endpoint".to_string(),
            st(if server { "server" } else { "client" }),
        ),
        ("verify-peer".to_string(), PropValue::Bool(verify_peer)),
        // Test certificates that QEMU's own check refuses (expired, other
        // CA) are loaded to be presented to a peer.
        ("sanity-check".to_string(), PropValue::Bool(false)),
    ];
    reg.objects()
        .add(&ObjectOptions::from_json(&j).unwrap())
        .unwrap();
}

/// `object-add` of `authz-simple`.
pub fn add_authz(reg: &Registry, id: &str, identity: &str) {
    let j = vec![
        ("qom-type".to_string(), st("authz-simple")),
        ("id".to_string(), st(id)),
        ("identity".to_string(), st(identity)),
    ];
    reg.objects()
        .add(&ObjectOptions::from_json(&j).unwrap())
        .unwrap();
}

pub fn st(s: &str) -> PropValue {
    PropValue::Str(s.into())
}

/// A socket spec with TLS.
pub fn tls_socket(
    addr: SocketAddressLegacy,
    server: bool,
    creds: &str,
    authz: Option<&str>,
) -> ChardevSocket {
    let mut s = ChardevSocket::new(addr, server);
    s.tls_creds = Some(creds.into());
    s.tls_authz = authz.map(str::to_string);
    s
}

pub fn tls_spec(s: ChardevSocket) -> ChardevBackend {
    ChardevBackend::Socket(s)
}

/// QEMU's `-object tls-creds-x509,...` and `-object authz-simple,...`
/// arguments (commas in the identity doubled).
pub fn qemu_objects(creds: (&str, &str, &str), authz: Option<(&str, &str)>) -> Vec<String> {
    let (id, dir, endpoint) = creds;
    let mut v = vec![
        "-object".to_string(),
        format!("tls-creds-x509,id={id},dir={dir},endpoint={endpoint}"),
    ];
    if let Some((aid, identity)) = authz {
        v.push("-object".into());
        v.push(format!(
            "authz-simple,id={aid},identity={}",
            identity.replace(',', ",,")
        ));
    }
    v
}
