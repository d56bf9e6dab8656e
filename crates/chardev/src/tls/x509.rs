//! `tls-creds-x509`: certificates and keys from a directory in QEMU's
//! layout, checked as QEMU 7.2 checks them (which files must exist, its
//! `sanity-check` of the own certificate and the CA list), with QEMU's
//! error texts, then turned into rustls configurations.
//!
//! Files in `dir`: `ca-cert.pem` (both endpoints), `ca-crl.pem` (server,
//! optional), `server-cert.pem` + `server-key.pem` (server),
//! `client-cert.pem` + `client-key.pem` (client, optional: a client with
//! only one of them presents no certificate), `dh-params.pem` (server,
//! optional; checked to be a PEM `DH PARAMETERS` block, then unused: rustls
//! does ephemeral elliptic-curve key exchange only).
//!
//! Differences from GnuTLS that a certificate can run into (README.md has
//! recipes whose certificates avoid them all): a server certificate needs a
//! subjectAltName with the name or address clients put in `host=` (no
//! fallback to the CN), certificates must be X.509 v3, a client certificate
//! with an extendedKeyUsage must list clientAuth (and a server certificate
//! serverAuth), and ECDSA keys whose private scalar certtool 3.7 wrote with
//! a leading zero byte must be re-encoded (`openssl pkey -in K -out K2`).
//! `priority=` (a GnuTLS priority string) is kept for `qom-get` and not
//! used: rustls offers TLS 1.3 and 1.2 with its safe default suites.

use std::fs::File;
use std::io::{self, Read};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use x509_parser::certificate::X509Certificate;

use crate::error::os_message;

/// QEMU's limit on the certificates of `ca-cert.pem` its sanity check reads.
const MAX_CA_CERTS: usize = 16;

/// Which side of a connection credentials are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Endpoint {
    /// The connecting side (QEMU's default).
    #[default]
    Client,
    /// The listening side.
    Server,
}

impl Endpoint {
    /// QAPI names, in QAPI order (`QCryptoTLSCredsEndpoint`).
    pub const NAMES: &'static [&'static str] = &["client", "server"];

    /// The QAPI name.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// The properties of a `tls-creds-x509` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509Props {
    /// Directory of the PEM files.
    pub dir: Option<String>,
    /// Which file set is loaded.
    pub endpoint: Endpoint,
    /// Check the peer's certificate (and, on a server, ask for one).
    pub verify_peer: bool,
    /// A GnuTLS priority string; kept, not used.
    pub priority: Option<String>,
    /// QEMU's load-time checks of the own certificate and the CA list.
    pub sanity_check: bool,
    /// Id of a `secret` holding the key's password (qchar has no `secret`
    /// objects, so any value fails as QEMU fails for an unknown secret).
    pub passwordid: Option<String>,
}

impl Default for X509Props {
    fn default() -> Self {
        X509Props {
            dir: None,
            endpoint: Endpoint::Client,
            verify_peer: true,
            priority: None,
            sanity_check: true,
            passwordid: None,
        }
    }
}

/// Why credentials could not be loaded. `Display` is QEMU 7.2's text for
/// the same problem, where QEMU has one.
#[derive(Debug, thiserror::Error)]
pub enum CredsError {
    /// No `dir` property.
    #[error("Missing 'dir' property value")]
    MissingDir,
    /// A required file (or the directory) cannot be `stat`ed.
    #[error("Unable to access credentials {path}: {}", os_message(source))]
    Access {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading a certificate file for the sanity check failed (QEMU words
    /// it so for the own certificate too).
    #[error("Cannot load CA cert list {path}: {}", glib_read_message(path, source))]
    ReadForCheck {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: ReadError,
    },
    /// The own certificate does not parse.
    #[error("Unable to import {role} certificate {path}: {reason}")]
    ImportCert {
        /// `server` or `client`.
        role: &'static str,
        /// The file.
        path: String,
        /// GnuTLS's words for what is wrong.
        reason: &'static str,
    },
    /// `ca-cert.pem` has no certificate, a broken one, or more than 16.
    #[error("Unable to import CA certificate list {0}")]
    ImportCaList(String),
    /// A certificate's notAfter is past.
    #[error("The {what} certificate {path} has expired")]
    Expired {
        /// `CA`, `server` or `client`.
        what: &'static str,
        /// The file.
        path: String,
    },
    /// A certificate's notBefore is ahead.
    #[error("The {what} certificate {path} is not yet active")]
    NotYetActive {
        /// `CA`, `server` or `client`.
        what: &'static str,
        /// The file.
        path: String,
    },
    /// The own certificate is a CA certificate.
    #[error("The certificate {path} basic constraints show a CA, but we need one for a {role}")]
    LeafIsCa {
        /// The file.
        path: String,
        /// `server` or `client`.
        role: &'static str,
    },
    /// A CA certificate with basicConstraints CA:FALSE.
    #[error("The certificate {0} basic constraints do not show a CA")]
    CaNotCa(String),
    /// A CA certificate without basicConstraints.
    #[error("The certificate {0} is missing basic constraints for a CA")]
    CaWithoutConstraints(String),
    /// An extension that does not parse.
    #[error("Unable to query certificate {path} {what}: {reason}")]
    Query {
        /// The file.
        path: String,
        /// `basic constraints`, `key usage`, `key purpose`.
        what: &'static str,
        /// The parser's words.
        reason: String,
    },
    /// A CA whose critical keyUsage lacks keyCertSign.
    #[error("Certificate {0} usage does not permit certificate signing")]
    NoCertSign(String),
    /// A leaf whose critical keyUsage lacks digitalSignature.
    #[error("Certificate {0} usage does not permit digital signature")]
    NoDigitalSignature(String),
    /// A leaf whose critical extendedKeyUsage lacks the role's purpose.
    #[error("Certificate {path} purpose does not allow use with a TLS {role}")]
    Purpose {
        /// The file.
        path: String,
        /// `server` or `client`.
        role: &'static str,
    },
    /// The own certificate is not issued by a certificate of `ca-cert.pem`.
    #[error("Our own certificate {cert} failed validation against {ca}: {reason}")]
    OwnCertNotTrusted {
        /// The own certificate file.
        cert: String,
        /// `ca-cert.pem`.
        ca: String,
        /// GnuTLS's reason.
        reason: &'static str,
    },
    /// `ca-cert.pem` cannot be read.
    #[error("Cannot load CA certificate '{path}': {reason}")]
    LoadCa {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The own certificate or key cannot be read or used.
    #[error("Cannot load certificate '{cert}' & key '{key}': {reason}")]
    LoadCertKey {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// Why.
        reason: String,
    },
    /// `ca-crl.pem` cannot be read or used.
    #[error("Cannot load CRL '{path}': {reason}")]
    LoadCrl {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// `dh-params.pem` cannot be read (GLib's words).
    #[error("{}", glib_read_message(path, source))]
    ReadDhParams {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: ReadError,
    },
    /// `dh-params.pem` is not a PEM `DH PARAMETERS` block.
    #[error("Unable to load DH parameters from {0}: Base64 unexpected header error.")]
    DhParams(String),
    /// `passwordid` names a secret; qchar has no `secret` objects.
    #[error("No secret with id '{0}'")]
    NoSecret(String),
    /// rustls refused the configuration (not expected with loaded files).
    #[error("Cannot set up TLS: {0}")]
    Rustls(String),
}

/// A failed read, split as GLib's `g_file_get_contents` words it.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// `open` failed.
    #[error("open: {0}")]
    Open(#[source] io::Error),
    /// `read` failed.
    #[error("read: {0}")]
    Read(#[source] io::Error),
}

fn glib_read_message(path: &str, e: &ReadError) -> String {
    match e {
        ReadError::Open(e) => format!("Failed to open file “{path}”: {}", os_message(e)),
        ReadError::Read(e) => format!("Error reading file “{path}”: {}", os_message(e)),
    }
}

fn read_file(path: &str) -> Result<Vec<u8>, ReadError> {
    let mut f = File::open(path).map_err(ReadError::Open)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v).map_err(ReadError::Read)?;
    Ok(v)
}

/// Whether the process may read `path` (QEMU skips its sanity check of a
/// file it may not read, and fails later with GnuTLS's read error).
fn readable(path: &str) -> bool {
    rustix::fs::access(path, rustix::fs::Access::READ_OK).is_ok()
}

/// QEMU's path of a credential file: `DIR/NAME` as written. `Ok(None)` for
/// an optional file that does not exist.
pub(crate) fn cred_path(
    dir: Option<&str>,
    name: &str,
    required: bool,
) -> Result<Option<String>, CredsError> {
    let Some(dir) = dir else {
        return if required {
            Err(CredsError::MissingDir)
        } else {
            Ok(None)
        };
    };
    let path = format!("{dir}/{name}");
    match std::fs::metadata(&path) {
        Ok(_) => Ok(Some(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => Ok(None),
        Err(source) => Err(CredsError::Access { path, source }),
    }
}

/// The one crypto provider qchar uses (ring), shared by every config.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Loaded `tls-creds-x509`: the properties and what a connection needs.
pub struct X509Creds {
    props: X509Props,
    config: Config,
}

enum Config {
    Server(Arc<ServerConfig>),
    /// Checking the server's name, and (over a unix socket, where there is
    /// none) its chain only.
    Client(Arc<ClientConfig>, Arc<ClientConfig>),
}

impl std::fmt::Debug for X509Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509Creds")
            .field("props", &self.props)
            .finish_non_exhaustive()
    }
}

impl X509Creds {
    /// Loads and checks the files `props` name, in QEMU's order, with its
    /// texts; the first problem is returned.
    pub fn load(props: X509Props) -> Result<X509Creds, CredsError> {
        let dir = props.dir.as_deref();
        let server = props.endpoint == Endpoint::Server;
        let ca = cred_path(dir, "ca-cert.pem", true)?.expect("required");
        let (crl, cert, key, dh) = if server {
            let crl = cred_path(dir, "ca-crl.pem", false)?;
            let cert = cred_path(dir, "server-cert.pem", true)?;
            let key = cred_path(dir, "server-key.pem", true)?;
            let dh = cred_path(dir, "dh-params.pem", false)?;
            (crl, cert, key, dh)
        } else {
            let cert = cred_path(dir, "client-cert.pem", false)?;
            let key = cred_path(dir, "client-key.pem", false)?;
            (None, cert, key, None)
        };
        if props.sanity_check {
            sanity_check(server, &ca, cert.as_deref())?;
        }
        let roots = load_roots(&ca)?;
        let identity = match (&cert, &key) {
            (Some(c), Some(k)) => {
                if let Some(id) = &props.passwordid {
                    return Err(CredsError::NoSecret(id.clone()));
                }
                Some(load_cert_key(c, k)?)
            }
            _ => None,
        };
        let crls = match &crl {
            Some(p) => load_crls(p)?,
            None => Vec::new(),
        };
        if let Some(p) = &dh {
            check_dh_params(p)?;
        }
        if let Some(p) = &props.priority {
            log::warn!(
                "tls-creds-x509: priority '{p}' is not used: qchar's TLS library (rustls) \
                 offers its own safe TLS 1.3 and 1.2 suites"
            );
        }
        let p = provider();
        let rustls_err = |e: rustls::Error| CredsError::Rustls(e.to_string());
        let config = if server {
            let (chain, key_der, cert_path, key_path) = identity.expect("server has cert and key");
            let verifier = if props.verify_peer {
                let mut b =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots.clone()), p.clone());
                if !crls.is_empty() {
                    b = b
                        .with_crls(crls)
                        .only_check_end_entity_revocation()
                        .allow_unknown_revocation_status();
                }
                b.build().map_err(|e| match &crl {
                    Some(path) => CredsError::LoadCrl {
                        path: path.clone(),
                        reason: e.to_string(),
                    },
                    None => CredsError::ImportCaList(ca.clone()),
                })?
            } else {
                WebPkiClientVerifier::no_client_auth()
            };
            let cfg = ServerConfig::builder_with_provider(p)
                .with_safe_default_protocol_versions()
                .map_err(rustls_err)?
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key_der)
                .map_err(|e| cert_key_error(&cert_path, &key_path, &e))?;
            Config::Server(Arc::new(cfg))
        } else {
            let verifier: Arc<dyn ServerCertVerifier> = if props.verify_peer {
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), p.clone())
                    .build()
                    .map_err(|_| CredsError::ImportCaList(ca.clone()))?
            } else {
                Arc::new(AnyServerCert(p.clone()))
            };
            let chain_only: Arc<dyn ServerCertVerifier> = Arc::new(ChainOnly(verifier.clone()));
            let build = |v: Arc<dyn ServerCertVerifier>| -> Result<ClientConfig, CredsError> {
                let b = ClientConfig::builder_with_provider(p.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(rustls_err)?
                    .dangerous()
                    .with_custom_certificate_verifier(v);
                let mut cfg = match &identity {
                    Some((chain, key_der, cert_path, key_path)) => b
                        .with_client_auth_cert(chain.clone(), key_der.clone_key())
                        .map_err(|e| cert_key_error(cert_path, key_path, &e))?,
                    None => b.with_no_client_auth(),
                };
                // QEMU sends no server name.
                cfg.enable_sni = false;
                Ok(cfg)
            };
            Config::Client(Arc::new(build(verifier)?), Arc::new(build(chain_only)?))
        };
        Ok(X509Creds { props, config })
    }

    /// The properties it was loaded from.
    pub fn props(&self) -> &X509Props {
        &self.props
    }

    /// The endpoint.
    pub fn endpoint(&self) -> Endpoint {
        self.props.endpoint
    }

    /// Whether peers' certificates are checked.
    pub fn verify_peer(&self) -> bool {
        self.props.verify_peer
    }

    pub(crate) fn server_config(&self) -> Option<Arc<ServerConfig>> {
        match &self.config {
            Config::Server(c) => Some(c.clone()),
            Config::Client(..) => None,
        }
    }

    /// The client configuration; `check_name`: the server's certificate
    /// must be for the name given to the session (else only its chain is
    /// checked, for a unix socket).
    pub(crate) fn client_config(&self, check_name: bool) -> Option<Arc<ClientConfig>> {
        match &self.config {
            Config::Client(named, _) if check_name => Some(named.clone()),
            Config::Client(_, chain_only) => Some(chain_only.clone()),
            Config::Server(_) => None,
        }
    }
}

/// Own certificate chain, key, and their paths.
type Identity = (
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    String,
    String,
);

fn cert_key_error(cert: &str, key: &str, e: &rustls::Error) -> CredsError {
    let reason = match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "The certificate and the given key do not match.".to_string()
        }
        rustls::Error::General(m) if m.contains("failed to parse private key") => format!(
            "{m} (qchar's TLS library cannot use this key: re-encode it as PKCS#8 with \
             'openssl pkey -in {key} -out NEW.pem', then use NEW.pem)"
        ),
        e => e.to_string(),
    };
    CredsError::LoadCertKey {
        cert: cert.to_string(),
        key: key.to_string(),
        reason,
    }
}

/// GnuTLS's words for a PEM problem.
fn pem_reason(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::Base64Decode(_) => "Base64 decoding error.",
        _ => "Base64 unexpected header error.",
    }
}

/// Every certificate of a PEM file's contents.
fn pem_certs(data: &[u8]) -> Result<Vec<CertificateDer<'static>>, pem::Error> {
    let certs = CertificateDer::pem_slice_iter(data).collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(pem::Error::NoItemsFound);
    }
    Ok(certs)
}

fn parse_x509<'a>(der: &'a CertificateDer<'_>) -> Option<X509Certificate<'a>> {
    x509_parser::parse_x509_certificate(der.as_ref())
        .ok()
        .map(|(_, c)| c)
}

/// QEMU's `sanity-check`: the own certificate and each CA certificate,
/// then the own certificate against the CA list. A file the process may
/// not read is skipped here (its load fails later).
fn sanity_check(server: bool, ca_path: &str, cert_path: Option<&str>) -> Result<(), CredsError> {
    let role = if server { "server" } else { "client" };
    let own = match cert_path {
        Some(p) if readable(p) => {
            let data = read_file(p).map_err(|source| CredsError::ReadForCheck {
                path: p.to_string(),
                source,
            })?;
            let import = |reason| CredsError::ImportCert {
                role,
                path: p.to_string(),
                reason,
            };
            let first = pem_certs(&data)
                .map_err(|e| import(pem_reason(&e)))?
                .swap_remove(0);
            if parse_x509(&first).is_none() {
                return Err(import("ASN1 parser: Error in DER parsing."));
            }
            Some((p, first))
        }
        _ => None,
    };
    let cas = if readable(ca_path) {
        let data = read_file(ca_path).map_err(|source| CredsError::ReadForCheck {
            path: ca_path.to_string(),
            source,
        })?;
        let certs = pem_certs(&data).map_err(|_| CredsError::ImportCaList(ca_path.into()))?;
        if certs.len() > MAX_CA_CERTS || certs.iter().any(|c| parse_x509(c).is_none()) {
            return Err(CredsError::ImportCaList(ca_path.into()));
        }
        certs
    } else {
        Vec::new()
    };
    let now = UnixTime::now().as_secs() as i64;
    if let Some((p, der)) = &own {
        let c = parse_x509(der).expect("parsed above");
        check_cert(&c, p, server, false, now)?;
    }
    let parsed: Vec<X509Certificate<'_>> = cas.iter().filter_map(parse_x509).collect();
    for c in &parsed {
        check_cert(c, ca_path, server, true, now)?;
    }
    if let Some((p, der)) = &own {
        if !parsed.is_empty() {
            let c = parse_x509(der).expect("parsed above");
            check_pair(&c, p, &parsed, ca_path)?;
        }
    }
    Ok(())
}

/// Validity, basic constraints, key usage and (for a leaf) key purpose.
fn check_cert(
    c: &X509Certificate<'_>,
    path: &str,
    server: bool,
    ca: bool,
    now: i64,
) -> Result<(), CredsError> {
    let what = if ca {
        "CA"
    } else if server {
        "server"
    } else {
        "client"
    };
    let role = if server { "server" } else { "client" };
    let v = c.validity();
    if v.not_after.timestamp() < now {
        return Err(CredsError::Expired {
            what,
            path: path.into(),
        });
    }
    if v.not_before.timestamp() > now {
        return Err(CredsError::NotYetActive {
            what,
            path: path.into(),
        });
    }
    let query = |what, e: x509_parser::error::X509Error| CredsError::Query {
        path: path.into(),
        what,
        reason: e.to_string(),
    };
    match c
        .basic_constraints()
        .map_err(|e| query("basic constraints", e))?
    {
        Some(bc) if bc.value.ca && !ca => {
            return Err(CredsError::LeafIsCa {
                path: path.into(),
                role,
            });
        }
        Some(bc) if bc.value.ca => {}
        Some(_) if ca => return Err(CredsError::CaNotCa(path.into())),
        None if ca => return Err(CredsError::CaWithoutConstraints(path.into())),
        _ => {}
    }
    if let Some(ku) = c.key_usage().map_err(|e| query("key usage", e))? {
        if ku.critical {
            if ca && !ku.value.key_cert_sign() {
                return Err(CredsError::NoCertSign(path.into()));
            }
            if !ca && !ku.value.digital_signature() {
                return Err(CredsError::NoDigitalSignature(path.into()));
            }
        }
    }
    if !ca {
        if let Some(eku) = c
            .extended_key_usage()
            .map_err(|e| query("key purpose", e))?
        {
            let allowed = eku.value.any
                || if server {
                    eku.value.server_auth
                } else {
                    eku.value.client_auth
                };
            if eku.critical && !allowed {
                return Err(CredsError::Purpose {
                    path: path.into(),
                    role,
                });
            }
        }
    }
    Ok(())
}

/// The own certificate must be signed by a certificate of the CA list.
fn check_pair(
    c: &X509Certificate<'_>,
    path: &str,
    cas: &[X509Certificate<'_>],
    ca_path: &str,
) -> Result<(), CredsError> {
    let fail = |reason| CredsError::OwnCertNotTrusted {
        cert: path.into(),
        ca: ca_path.into(),
        reason,
    };
    let issuers: Vec<&X509Certificate<'_>> = cas
        .iter()
        .filter(|ca| ca.subject().as_raw() == c.issuer().as_raw())
        .collect();
    if issuers.is_empty() {
        return Err(fail("The certificate hasn't got a known issuer"));
    }
    let mut reason = "The certificate is not trusted";
    for ca in issuers {
        match c.verify_signature(Some(ca.public_key())) {
            Ok(()) => return Ok(()),
            Err(x509_parser::error::X509Error::SignatureUnsupportedAlgorithm) => {
                reason = "The certificate uses an insecure algorithm"
            }
            Err(_) => {}
        }
    }
    Err(fail(reason))
}

/// `ca-cert.pem` as rustls trust anchors.
fn load_roots(path: &str) -> Result<RootCertStore, CredsError> {
    let data = read_file(path).map_err(|_| CredsError::LoadCa {
        path: path.into(),
        reason: "Error while reading file.".into(),
    })?;
    let certs = pem_certs(&data).map_err(|_| CredsError::ImportCaList(path.into()))?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(CredsError::ImportCaList(path.into()));
    }
    Ok(roots)
}

/// The own certificate chain and key.
fn load_cert_key(cert: &str, key: &str) -> Result<Identity, CredsError> {
    let fail = |reason: &str| CredsError::LoadCertKey {
        cert: cert.into(),
        key: key.into(),
        reason: reason.into(),
    };
    let cdata = read_file(cert).map_err(|_| fail("Error while reading file."))?;
    let kdata = read_file(key).map_err(|_| fail("Error while reading file."))?;
    let chain = pem_certs(&cdata).map_err(|e| fail(pem_reason(&e)))?;
    let key_der = PrivateKeyDer::from_pem_slice(&kdata)
        .map_err(|_| fail("The requested data were not available."))?;
    Ok((chain, key_der, cert.into(), key.into()))
}

fn load_crls(path: &str) -> Result<Vec<CertificateRevocationListDer<'static>>, CredsError> {
    let fail = |reason: &str| CredsError::LoadCrl {
        path: path.into(),
        reason: reason.into(),
    };
    let data = read_file(path).map_err(|_| fail("Error while reading file."))?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| fail("Base64 decoding error."))?;
    if crls.is_empty() {
        return Err(fail("Base64 decoding error."));
    }
    Ok(crls)
}

fn check_dh_params(path: &str) -> Result<(), CredsError> {
    let data = read_file(path).map_err(|source| CredsError::ReadDhParams {
        path: path.into(),
        source,
    })?;
    // Only the framing is checked: the parameters themselves are not used.
    let text = String::from_utf8_lossy(&data);
    let begin = text.find("-----BEGIN DH PARAMETERS-----");
    let end = text.find("-----END DH PARAMETERS-----");
    if !matches!((begin, end), (Some(b), Some(e)) if b < e) {
        return Err(CredsError::DhParams(path.into()));
    }
    Ok(())
}

/// A client over a unix socket: the server's certificate chain is checked
/// as usual, but not the name (a unix socket has none). The chain is
/// checked before the name, so only a name error is waived.
#[derive(Debug)]
struct ChainOnly(Arc<dyn ServerCertVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError as C;
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                C::NotValidForName | C::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A client with `verify-peer=off`: any server certificate is accepted (as
/// QEMU does), but the handshake signatures are still checked, so the
/// session is with whoever holds that certificate's key.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
