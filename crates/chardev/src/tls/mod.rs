//! TLS for socket chardevs, compatible with QEMU 7.2's `tls-creds` and
//! `tls-authz`: the objects (`tls-creds-x509`, `tls-creds-psk`,
//! `authz-simple`, `authz-list`) with QEMU's options and texts, and the
//! session a connection runs.
//!
//! - [`object`]: reading `-object`/`object-add` options, the per-registry
//!   [`ObjectStore`], `qom-get` values.
//! - [`x509`]: credentials from a directory in QEMU's layout, QEMU's load
//!   checks, rustls configurations.
//! - [`psk`]: `tls-creds-psk` (loaded and checked; rustls has no external
//!   PSK, so chardevs refuse them).
//! - [`authz`]: the authorization objects and their matching.
//! - [`dn`]: the peer identity string, exactly as QEMU/GnuTLS writes it.
//! - [`session`]: one connection's handshake, checks and data.
//!
//! The TLS library is rustls (with the ring provider); certificates are
//! parsed with x509-parser.

pub mod authz;
pub mod dn;
pub mod object;
pub mod psk;
pub mod session;
pub mod x509;

use std::sync::Arc;

pub use object::{ObjectError, ObjectOptions, ObjectStore, PropValue};
pub use session::{authorize_peer, TlsFailure, TlsSession, HANDSHAKE_TIMEOUT};
pub use x509::{Endpoint, X509Creds};

use object::Object;

/// Why a chardev cannot use the object its `tls-creds` names. `Display` is
/// QEMU 7.2's text where QEMU has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UseError {
    /// No object has this id.
    #[error("No TLS credentials with id '{0}'")]
    NoCreds(String),
    /// The object is not TLS credentials.
    #[error("Object with id '{0}' is not TLS credentials")]
    NotCreds(String),
    /// Credentials of the other endpoint.
    #[error("Expected TLS credentials for a {0} endpoint")]
    Endpoint(&'static str),
    /// `tls-creds-psk`, which qchar loads but cannot run.
    #[error(
        "TLS credentials '{0}' are tls-creds-psk, which qchar cannot use: its TLS library \
         (rustls) has no pre-shared-key support; use tls-creds-x509"
    )]
    PskUnsupported(String),
}

/// The x509 credentials `id` names, for a server or a client chardev,
/// checked in QEMU's order.
pub fn creds_for(store: &ObjectStore, id: &str, server: bool) -> Result<Arc<X509Creds>, UseError> {
    let want = if server {
        Endpoint::Server
    } else {
        Endpoint::Client
    };
    let o = store
        .lookup(id)
        .ok_or_else(|| UseError::NoCreds(id.to_string()))?;
    let (endpoint, x509) = match &*o {
        Object::X509(c) => (c.endpoint(), Some(c.clone())),
        Object::Psk(p) => (p.props().endpoint, None),
        Object::Authz(_) => return Err(UseError::NotCreds(id.to_string())),
    };
    if endpoint != want {
        return Err(UseError::Endpoint(want.name()));
    }
    x509.ok_or_else(|| UseError::PskUnsupported(id.to_string()))
}

#[cfg(test)]
mod tests;
