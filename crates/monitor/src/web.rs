//! qchar's web console as the monitor drives it (QMP `x-web-start`,
//! `x-web-stop`, `x-query-web`). The binary implements [`WebControl`]; the
//! monitor crate knows nothing of HTTP.

/// Where a running web console is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebStatus {
    /// The address it listens on (`127.0.0.1`).
    pub host: String,
    /// Its TCP port.
    pub port: u16,
    /// The token every request must carry.
    pub token: String,
    /// The index page's URL, token included.
    pub url: String,
}

/// Starts and stops the web console. Methods run on the chardev I/O
/// thread: they must not wait for it.
pub trait WebControl: Send + Sync {
    /// Starts it (`host`: loopback if none; `port` 0: any free one;
    /// `token`: a random one if none; `tls_creds`: the id of server
    /// `tls-creds-x509` for HTTPS; `tls_authz`: the id of the authz object
    /// client certificates must pass). `Err` is the message for the client.
    fn start(
        &self,
        host: Option<String>,
        port: u16,
        token: Option<String>,
        tls_creds: Option<String>,
        tls_authz: Option<String>,
    ) -> Result<WebStatus, String>;
    /// Stops it; `Err` when it is not running.
    fn stop(&self) -> Result<(), String>;
    /// Where it runs, if it does.
    fn status(&self) -> Option<WebStatus>;
}
