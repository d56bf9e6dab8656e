//! A test PKI made at run time (ECDSA P-256 keys, rcgen), laid out as
//! directories for `tls-creds-x509,dir=...` in QEMU's file names. Its
//! certificates satisfy both GnuTLS's (QEMU's) checks and rustls's: X.509
//! v3, a CA with critical basicConstraints CA:TRUE and keyCertSign, leaves
//! with digitalSignature and the right extendedKeyUsage, servers with a
//! subjectAltName for `localhost`, `127.0.0.1` and `::1`.
//!
//! Directories ([`Pki::dir`]):
//! - `server`: ca-cert, server-cert, server-key.
//! - `server-crl`: the same plus `ca-crl.pem` revoking `client-revoked`'s
//!   certificate.
//! - `server-wrongname`: a server certificate only for `wrong.example.org`.
//! - `server-expired`, `server-otherca`: a server certificate expired, or
//!   issued by the other CA (its ca-cert.pem is the real CA).
//! - `client`: a client certificate with subject [`CLIENT_DN`].
//! - `client-nocert`: ca-cert only.
//! - `client-otherca`: a client certificate issued by another CA.
//! - `client-expired`, `client-notyet`: validity 2020–2021, 2099–2100.
//! - `client-revoked`: revoked by `server-crl`'s CRL.
//! - `client-other-dn`: valid, subject [`OTHER_DN`].
//! - `ca`: the CA's `ca-cert.pem` and `ca-key.pem` (to issue more with
//!   other tools).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use rcgen;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};

/// The authz identity of `client`'s certificate, as QEMU computes it.
pub const CLIENT_DN: &str =
    "C=GB,ST=London,L=City Of London,O=qchar,OU=consoles,CN=client.qchar.test";

/// The identity of `client-other-dn`'s certificate.
pub const OTHER_DN: &str =
    "C=GB,ST=London,L=City Of London,O=qchar,OU=consoles,CN=other.qchar.test";

/// Serial of the revoked client certificate.
const REVOKED_SERIAL: u64 = 25;

/// A CA: its parameters (as issuer), key and certificate.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl Ca {
    fn new(cn: &str, serial: u64) -> Ca {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "qchar");
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.serial_number = Some(SerialNumber::from(serial));
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2099, 1, 1);
        p.key_identifier_method = KeyIdMethod::Sha256;
        let key = KeyPair::generate().expect("CA key");
        let pem = p.self_signed(&key).expect("CA certificate").pem();
        Ca {
            params: p,
            key,
            pem,
        }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
}

/// Parameters of a leaf certificate for `role` (`server` or `client`).
pub fn leaf_params(server: bool, cn: &str, serial: u64) -> CertificateParams {
    let mut p = if server {
        CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .expect("names")
    } else {
        CertificateParams::default()
    };
    let mut dn = DistinguishedName::new();
    if server {
        dn.push(DnType::OrganizationName, "qchar");
    } else {
        // PrintableString, as openssl and certtool write it (GnuTLS, and so
        // QEMU's authz, reads a UTF8String country only as hex).
        dn.push(
            DnType::CountryName,
            DnValue::PrintableString("GB".try_into().expect("printable")),
        );
        dn.push(DnType::StateOrProvinceName, "London");
        dn.push(DnType::LocalityName, "City Of London");
        dn.push(DnType::OrganizationName, "qchar");
        dn.push(DnType::OrganizationalUnitName, "consoles");
    }
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    p.serial_number = Some(SerialNumber::from(serial));
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2099, 1, 1);
    p.use_authority_key_identifier_extension = true;
    p
}

/// The test PKI, under a directory the caller owns.
pub struct Pki {
    root: PathBuf,
    ca: Ca,
    other: Ca,
}

impl Pki {
    /// Makes every directory listed in the module docs under `root`.
    pub fn new(root: &Path) -> Pki {
        let pki = Pki {
            root: root.to_path_buf(),
            ca: Ca::new("qchar test CA", 1),
            other: Ca::new("other test CA", 2),
        };
        let server = |cn: &str, serial| leaf_params(true, cn, serial);
        let client = |cn: &str, serial| leaf_params(false, cn, serial);
        pki.issue("server", true, &server("localhost", 10), false);
        pki.issue("server-crl", true, &server("localhost", 10), false);
        let mut wrong = server("wrong.example.org", 11);
        wrong.subject_alt_names = CertificateParams::new(vec!["wrong.example.org".to_string()])
            .expect("name")
            .subject_alt_names;
        pki.issue("server-wrongname", true, &wrong, false);
        let mut expired = server("localhost", 12);
        expired.not_after = rcgen::date_time_ymd(2021, 1, 1);
        pki.issue("server-expired", true, &expired, false);
        pki.issue("server-otherca", true, &server("localhost", 13), true);
        pki.issue("client", false, &client("client.qchar.test", 20), false);
        pki.issue(
            "client-other-dn",
            false,
            &client("other.qchar.test", 21),
            false,
        );
        pki.issue(
            "client-otherca",
            false,
            &client("client.qchar.test", 22),
            true,
        );
        let mut expired = client("expired.qchar.test", 23);
        expired.not_after = rcgen::date_time_ymd(2021, 1, 1);
        pki.issue("client-expired", false, &expired, false);
        let mut notyet = client("notyet.qchar.test", 24);
        notyet.not_before = rcgen::date_time_ymd(2099, 1, 1);
        notyet.not_after = rcgen::date_time_ymd(2100, 1, 1);
        pki.issue("client-notyet", false, &notyet, false);
        pki.issue(
            "client-revoked",
            false,
            &client("revoked.qchar.test", REVOKED_SERIAL),
            false,
        );
        let ca = pki.dir("ca");
        fs::create_dir_all(&ca).expect("mkdir");
        fs::write(ca.join("ca-cert.pem"), &pki.ca.pem).expect("write");
        fs::write(ca.join("ca-key.pem"), pki.ca.key.serialize_pem()).expect("write");
        let dir = pki.dir("client-nocert");
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join("ca-cert.pem"), &pki.ca.pem).expect("write");
        let crl = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(REVOKED_SERIAL),
                revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&pki.ca.issuer())
        .expect("CRL");
        fs::write(
            pki.dir("server-crl").join("ca-crl.pem"),
            crl.pem().expect("CRL PEM"),
        )
        .expect("write");
        pki
    }

    /// The directory `name` (see the module docs).
    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The directory `name` as a string, for `dir=`.
    pub fn dir_str(&self, name: &str) -> String {
        self.dir(name).to_string_lossy().into_owned()
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca.pem
    }

    /// Makes directory `name` with `ca-cert.pem` (the real CA) and a
    /// certificate from `params` with a new key, as `server-*` or
    /// `client-*` files, issued by the real CA or (`other_ca`) the other
    /// one. Returns the directory.
    pub fn issue(
        &self,
        name: &str,
        server: bool,
        params: &CertificateParams,
        other_ca: bool,
    ) -> PathBuf {
        let dir = self.dir(name);
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join("ca-cert.pem"), &self.ca.pem).expect("write");
        let key = KeyPair::generate().expect("key");
        let ca = if other_ca { &self.other } else { &self.ca };
        let cert = params.signed_by(&key, &ca.issuer()).expect("certificate");
        let role = if server { "server" } else { "client" };
        fs::write(dir.join(format!("{role}-cert.pem")), cert.pem()).expect("write");
        let key_path = dir.join(format!("{role}-key.pem"));
        fs::write(&key_path, key.serialize_pem()).expect("write");
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).expect("chmod");
        dir
    }
}
