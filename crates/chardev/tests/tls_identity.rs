//! The identity `tls-authz` compares, computed by qchar from a certificate,
//! against the one QEMU 7.2 computes (GnuTLS's DN string, which QEMU shows
//! in its `qauthz_is_allowed` trace) for the same certificate presented to
//! a QEMU TLS server chardev.

use std::time::Duration;

use qchar_chardev::tls::dn::subject_dn;
use qchar_testkit::pki::rcgen::{DistinguishedName, DnType, DnValue};
use qchar_testkit::pki::{leaf_params, Pki};
use qchar_testkit::tlspeer::{client_config, openssl_client, Qemu, TlsClient};
use qchar_testkit::{require, wait_for_within, Prereq};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Subjects with what makes GnuTLS's format particular: RDN order,
/// multi-valued RDNs, escapes, `EMAIL`/`UID` names, an unknown OID in hex,
/// leading `#` and spaces, UTF-8.
const SUBJECTS: &[&str] = &[
    "/C=GB/ST=London/L=City Of London/O=qchar/OU=consoles/CN=client.qchar.test",
    "/DC=org/DC=example/C=GB/O=Acme, Inc./OU=ops+OU=dev/CN=J\"Q\" Doe <j;d>\\\\x/emailAddress=j@example.org/serialNumber=42/UID=jdoe",
    "/CN=u/title=Boss",
    "/CN=#hash",
    "/CN= spaced /O=x=y",
    "/CN=Jöhn Dœ/O=Ünïcode",
    "/CN=a+CN=b/street=1 Main St/postalCode=N1/givenName=J/surname=D/initials=JD",
];

#[test]
fn identities_match_qemus() {
    if !require(Prereq::Qemu) || !require(Prereq::Openssl) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(t.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args: Vec<String> = [
        format!(
            "tls-creds-x509,id=tls0,dir={},endpoint=server",
            pki.dir_str("server")
        ),
        "authz-simple,id=auth0,identity=nobody".to_string(),
    ]
    .iter()
    .flat_map(|o| ["-object".to_string(), o.clone()])
    .chain([
        "-chardev".to_string(),
        format!("socket,id=c0,host=127.0.0.1,port={port},server=on,wait=off,tls-creds=tls0,tls-authz=auth0"),
        "-serial".to_string(),
        "chardev:c0".to_string(),
        "-trace".to_string(),
        "qauthz_is_allowed".to_string(),
    ])
    .collect();
    let qemu = Qemu::start(t.path(), &args);
    // An attribute GnuTLS has no name for (openssl drops it): rcgen.
    let mut custom = leaf_params(false, "u", 99);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "u");
    dn.push(
        DnType::CustomDnType(vec![1, 2, 3, 4]),
        DnValue::Utf8String("custom".into()),
    );
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 12]), "Boss");
    custom.distinguished_name = dn;
    pki.issue("dn-custom", false, &custom, false);
    // String types GnuTLS reads only as hex: a UTF8String country, a
    // UniversalString and a non-ASCII TeletexString CN, a BMPString O.
    let mut types = leaf_params(false, "t", 98);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, DnValue::Utf8String("GB".into()));
    dn.push(
        DnType::CommonName,
        DnValue::UniversalString("uni".try_into().unwrap()),
    );
    dn.push(
        DnType::OrganizationName,
        DnValue::BmpString("Bmp Ö".try_into().unwrap()),
    );
    dn.push(
        DnType::OrganizationalUnitName,
        DnValue::TeletexString("tel".try_into().unwrap()),
    );
    types.distinguished_name = dn;
    pki.issue("dn-types", false, &types, false);
    let dirs = SUBJECTS
        .iter()
        .enumerate()
        .map(|(i, subj)| {
            (
                subj.to_string(),
                openssl_client(&pki, &format!("dn{i}"), subj),
            )
        })
        .chain([
            ("rcgen CN=u,1.2.3.4,title".to_string(), pki.dir("dn-custom")),
            ("rcgen string types".to_string(), pki.dir("dn-types")),
            ("the test PKI's client".to_string(), pki.dir("client")),
        ]);
    for (subj, dir) in dirs {
        let pem = std::fs::read(dir.join("client-cert.pem")).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        let ours = subject_dn(&der).unwrap();
        let seen = qemu.stderr().matches("identity=").count();
        // QEMU denies (the identity is not "nobody") and closes; the
        // handshake itself completes.
        let mut c = TlsClient::connect(port, "127.0.0.1", client_config(&dir))
            .unwrap_or_else(|e| panic!("{subj}: {e}"));
        let _ = c.read_to_end();
        let theirs = wait_for_within("QEMU's authz trace", Duration::from_secs(30), || {
            let err = qemu.stderr();
            let lines: Vec<&str> = err.lines().filter(|l| l.contains("identity=")).collect();
            (lines.len() > seen).then(|| {
                let l = lines[seen];
                let from = l.find("identity=").unwrap() + "identity=".len();
                let to = l.rfind(" allowed=").unwrap();
                l[from..to].to_string()
            })
        });
        assert_eq!(ours, theirs, "subject {subj}");
    }
}
