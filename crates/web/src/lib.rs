//! qchar's web console: every chardev in a browser terminal.
//!
//! [`WebConsole::start`] serves, on its own thread:
//! - `/`: the chardevs (id, backend, frontend, clients, bytes in and out,
//!   last change), refreshed every second from `/api/chardevs`;
//! - `/console/ID` (`?ro=1`: view only): an xterm.js terminal on chardev
//!   `ID`, which shows the chardev's history, then its output live, and
//!   sends what is typed or pasted to the chardev's frontend (the guest);
//! - `/ws/ID` (`?ro=1`): the websocket behind that page (see
//!   `www/src/console.js` for what it carries);
//! - `/static/...`: the pages' scripts and styles, xterm.js among them,
//!   embedded in the binary at build time (`build.rs`).
//!
//! Each terminal reads its chardev through a tap
//! ([`qchar_chardev::tap`]), which hangs off the chardev, not off its
//! backend: a `chardev-change` under an open page goes unnoticed by the
//! terminal (the page shows the new backend's name), and no byte is lost or
//! shown twice. A page opened late shows the chardev's history first: while
//! a console runs, every chardev keeps one (its `backlog=` size, or the
//! library's default, 1 MiB). Read-only pages get a tap that takes no
//! input; a read-only websocket that sends input anyway is closed (1008).
//! A mux chardev's page reads and types into the chardev under the mux, so
//! the mux's Ctrl-a keys work there as on a terminal.
//!
//! Access (see [`auth`](crate::auth)): the console listens on loopback
//! unless given a host; every request needs the token (random unless
//! given), or, with `tls_creds` naming `tls-creds-x509` with
//! `verify-peer=on`, comes over HTTPS with a client certificate its CA
//! signed (no certificate: no TLS session, so no request at all) and, with
//! `tls_authz`, whose subject DN that authz object allows; a
//! browser's websocket must come from the console's own pages. Anything
//! else gets `403 Forbidden` and nothing else.
//!
//! Limits: at most [`MAX_CONNECTIONS`] connections (more are closed at
//! once) and [`MAX_TERMINALS`] terminals (more get `503`), request heads
//! up to 16 KiB (`431` beyond), 10 s to send one,
//! websocket messages from a page up to 64 KiB; a page that stops reading
//! holds only its own tap (the chardev's history moves on without it, and
//! the page is told how much it missed).
#![deny(missing_docs)]

mod assets;
pub mod auth;
mod consoles;
mod server;
mod session;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use consoles::{ConsoleEvent, ConsoleInfo, Consoles};

/// Most connections served at once; more are closed as they come.
pub const MAX_CONNECTIONS: usize = 256;
/// Most terminals (websockets) open at once; more are refused (`503`).
pub const MAX_TERMINALS: usize = 256;

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The address did not resolve.
    #[error("web console: cannot resolve '{host}': {source}")]
    Resolve {
        /// The host given.
        host: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The port could not be bound.
    #[error("web console: cannot listen on {addr}: {}", qchar_chardev::error::os_message(.source))]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A token the user gave is unfit.
    #[error(
        "web console: the token must be {} to {} characters of A-Z a-z 0-9 - . _ ~",
        auth::MIN_TOKEN,
        auth::MAX_TOKEN
    )]
    BadToken,
    /// No random bytes for a token.
    #[error("web console: cannot make a token: {0}")]
    Random(#[source] std::io::Error),
    /// The server thread or its runtime did not start.
    #[error("web console: cannot start: {0}")]
    Start(#[source] std::io::Error),
    /// `tls-creds` names no usable server credentials (QEMU's texts, as
    /// a chardev's `tls-creds` gets them).
    #[error("web console: {0}")]
    Tls(#[source] qchar_chardev::tls::UseError),
    /// `tls-authz` without credentials that verify the client: no
    /// certificate would be there to check.
    #[error("web console: tls-authz '{0}' needs tls-creds with verify-peer=on")]
    AuthzWithoutVerify(String),
}

/// Where and how the console listens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebOptions {
    /// Host name or address to listen on; loopback (`127.0.0.1`) if none.
    pub host: Option<String>,
    /// TCP port; 0 picks a free one.
    pub port: u16,
    /// The token every request must carry; a random one if none.
    pub token: Option<String>,
    /// Id of a `tls-creds-x509` object (server endpoint): the console
    /// speaks HTTPS with it. With `verify-peer=on` a client certificate the
    /// object's CA signed is what lets a request in (no token is needed);
    /// with `verify-peer=off` TLS only encrypts, and the token is needed.
    pub tls_creds: Option<String>,
    /// Id of an `authz-simple`/`authz-list` object (needs `tls_creds` with
    /// `verify-peer=on`): only a client certificate whose subject DN it
    /// allows gets in, as a chardev's `tls-authz`. Looked up for each
    /// connection, so a replaced object applies to the next one.
    pub tls_authz: Option<String>,
}

/// State the server's tasks share.
pub(crate) struct Shared {
    pub(crate) consoles: Arc<Consoles>,
    pub(crate) token: String,
    pub(crate) port: u16,
    /// The TLS acceptor, when the console speaks HTTPS.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// Whether a verified client certificate lets requests in (TLS with
    /// `verify-peer=on`): then every connection that got through the
    /// handshake may come in, without the token.
    pub(crate) cert_access: bool,
    /// `tls-authz`: the id of the object that must allow a client
    /// certificate's DN.
    pub(crate) authz: Option<String>,
    /// Open terminals per chardev.
    pub(crate) sessions: Mutex<HashMap<String, u64>>,
    /// A permit per open terminal ([`MAX_TERMINALS`]).
    pub(crate) terminals: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    /// Counts a terminal of chardev `id` in (`+1`) or out (`-1`).
    pub(crate) fn count_session(&self, id: &str, delta: i64) {
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let n = s.entry(id.to_string()).or_insert(0);
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            s.remove(id);
        }
    }

    /// Open terminals of chardev `id`.
    pub(crate) fn sessions_of(&self, id: &str) -> u64 {
        let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        s.get(id).copied().unwrap_or(0)
    }
}

/// A running web console. Dropping it stops it, as [`WebConsole::stop`].
pub struct WebConsole {
    addr: SocketAddr,
    token: String,
    tls: bool,
    cert_access: bool,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    closed: std::sync::mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl WebConsole {
    /// Listens as `opts` says and serves `consoles` from a thread of its
    /// own (`qchar-web`). Returns once the port is bound.
    ///
    /// With `opts.tls_creds`, it speaks HTTPS with that `tls-creds-x509`
    /// object from the registry `consoles` shows (`-object`/`object-add`);
    /// credentials that cannot serve are refused before anything listens.
    pub fn start(consoles: Arc<Consoles>, opts: &WebOptions) -> Result<WebConsole, WebError> {
        let tls = match &opts.tls_creds {
            Some(id) => {
                let creds = qchar_chardev::tls::creds_for(consoles.objects(), id, true)
                    .map_err(WebError::Tls)?;
                let config = creds.rustls_server_config().ok_or(WebError::Tls(
                    qchar_chardev::tls::UseError::Endpoint("server"),
                ))?;
                Some((tokio_rustls::TlsAcceptor::from(config), creds.verify_peer()))
            }
            None => None,
        };
        let token = match &opts.token {
            Some(t) => {
                auth::check_token(t)?;
                t.clone()
            }
            None => auth::new_token()?,
        };
        let cert_access = tls.as_ref().is_some_and(|(_, verify)| *verify);
        if let (Some(a), false) = (&opts.tls_authz, cert_access) {
            return Err(WebError::AuthzWithoutVerify(a.clone()));
        }
        let host = opts.host.as_deref().unwrap_or("127.0.0.1");
        let listener = bind(host, opts.port)?;
        let addr = listener.local_addr().map_err(WebError::Start)?;
        listener.set_nonblocking(true).map_err(WebError::Start)?;
        // Before anything else: output from now on is kept for the pages.
        consoles.keep_histories(None);
        let shared = Arc::new(Shared {
            consoles,
            token: token.clone(),
            port: addr.port(),
            tls: tls.as_ref().map(|(a, _)| a.clone()),
            cert_access,
            authz: opts.tls_authz.clone(),
            sessions: Mutex::new(HashMap::new()),
            terminals: Arc::new(tokio::sync::Semaphore::new(MAX_TERMINALS)),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(WebError::Start)?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (closed_tx, closed_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("qchar-web".into())
            .spawn(move || {
                rt.block_on(server::serve(listener, shared, stop_rx));
                // The listener is closed: the port is free again.
                let _ = closed_tx.send(());
                // Dropping the runtime ends every connection's task, and
                // with them the taps.
                drop(rt);
            })
            .map_err(WebError::Start)?;
        log::info!("web console listening on {addr}");
        Ok(WebConsole {
            addr,
            token,
            tls: tls.is_some(),
            cert_access,
            stop: Some(stop_tx),
            closed: closed_rx,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token requests must carry.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether it speaks HTTPS (`tls_creds`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether a client certificate, not the token, lets requests in.
    pub fn cert_access(&self) -> bool {
        self.cert_access
    }

    /// The index page's URL, with the token where one is needed.
    pub fn url(&self) -> String {
        match (self.tls, self.cert_access) {
            (true, true) => format!("https://{}/", self.addr),
            (true, false) => format!("https://{}/?token={}", self.addr, self.token),
            (false, _) => format!("http://{}/?token={}", self.addr, self.token),
        }
    }

    /// Stops listening, closes every connection and waits for the thread.
    pub fn stop(mut self) {
        self.close_listener();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops listening (the port is free when this returns) and lets the
    /// thread close the connections on its own: for a caller that must
    /// not wait for them (the chardev I/O thread, which closing a
    /// terminal's tap may need).
    pub fn stop_nowait(mut self) {
        self.close_listener();
        self.thread.take();
    }

    fn close_listener(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
            let _ = self.closed.recv();
        }
    }
}

impl Drop for WebConsole {
    fn drop(&mut self) {
        self.close_listener();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds the first address `host` resolves to that binds.
fn bind(host: &str, port: u16) -> Result<TcpListener, WebError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| WebError::Resolve {
            host: host.to_string(),
            source,
        })?
        .collect();
    let mut last = None;
    for a in &addrs {
        match TcpListener::bind(a) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some((a.to_string(), e)),
        }
    }
    let (addr, source) = last.unwrap_or_else(|| {
        (
            format!("{host}:{port}"),
            std::io::Error::from(std::io::ErrorKind::AddrNotAvailable),
        )
    });
    Err(WebError::Bind { addr, source })
}
