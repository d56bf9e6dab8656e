//! `tls-creds-psk`: pre-shared keys from `DIR/keys.psk` (lines
//! `username:hexkey`, what `psktool` writes), checked as QEMU 7.2 checks
//! them at load. qchar accepts these objects (a configuration written for
//! QEMU loads) but no chardev can use them: rustls has no external-PSK
//! support, so a socket chardev naming one is refused with
//! [`super::UseError::PskUnsupported`].

use super::x509::{cred_path, CredsError, Endpoint};

/// The properties of a `tls-creds-psk` object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PskProps {
    /// Directory holding `keys.psk` (and a server's optional `dh-params.pem`).
    pub dir: Option<String>,
    /// Which side.
    pub endpoint: Endpoint,
    /// Accepted for QEMU compatibility (PSK has no certificates to verify).
    pub verify_peer: bool,
    /// A GnuTLS priority string; kept, not used.
    pub priority: Option<String>,
    /// Client only: the name to look up (QEMU's default `qemu`).
    pub username: Option<String>,
}

/// Why PSK credentials could not be loaded (QEMU's texts).
#[derive(Debug, thiserror::Error)]
pub enum PskError {
    /// A server with `username`.
    #[error("username should not be set when endpoint=server")]
    ServerUsername,
    /// A missing file or directory.
    #[error(transparent)]
    Path(#[from] CredsError),
    /// `keys.psk` cannot be read.
    #[error("Cannot read PSK file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// GLib's words.
        reason: String,
    },
    /// No line for the user.
    #[error("Username {user} not found in PSK file {path}")]
    NoUser {
        /// The name looked up.
        user: String,
        /// The file.
        path: String,
    },
    /// The key is not hexadecimal.
    #[error("Cannot set PSK client credentials: Error in parsing.")]
    BadKey,
}

/// Loaded `tls-creds-psk`.
#[derive(Debug, Clone)]
pub struct PskCreds {
    props: PskProps,
}

impl PskCreds {
    /// Checks the files as QEMU does at load: a server needs `keys.psk`
    /// (parsed only at handshake time by GnuTLS, so not here), a client
    /// needs its user's line with a hex key.
    pub fn load(props: PskProps) -> Result<PskCreds, PskError> {
        let dir = props.dir.as_deref();
        if props.endpoint == Endpoint::Server {
            if props.username.is_some() {
                return Err(PskError::ServerUsername);
            }
            cred_path(dir, "dh-params.pem", false)?;
            cred_path(dir, "keys.psk", true)?;
        } else {
            let path = cred_path(dir, "keys.psk", true)?.expect("required");
            let user = props.username.as_deref().unwrap_or("qemu");
            let content = std::fs::read(&path).map_err(|e| PskError::Read {
                path: path.clone(),
                reason: format!(
                    "Failed to open file “{path}”: {}",
                    crate::error::os_message(&e)
                ),
            })?;
            let content = String::from_utf8_lossy(&content);
            let key = content
                .split('\n')
                .find_map(|l| l.strip_prefix(user).and_then(|r| r.strip_prefix(':')))
                .ok_or_else(|| PskError::NoUser {
                    user: user.to_string(),
                    path: path.clone(),
                })?;
            if key.is_empty() || key.len() % 2 != 0 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(PskError::BadKey);
            }
        }
        Ok(PskCreds { props })
    }

    /// The properties it was loaded from.
    pub fn props(&self) -> &PskProps {
        &self.props
    }
}
