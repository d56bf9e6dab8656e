//! The web console of the process (`-x-web`, QMP `x-web-start` /
//! `x-web-stop` / `x-query-web`): at most one at a time, on the registry's
//! chardevs, with what uses each chardev as set-up attached it.

use std::sync::{Arc, Mutex, MutexGuard};

use qchar_chardev::Registry;
use qchar_monitor::web::{WebControl, WebStatus};
use qchar_web::{Consoles, WebConsole, WebOptions};

use crate::report;

/// See the module documentation.
pub struct WebCtl {
    consoles: Arc<Consoles>,
    running: Mutex<Option<WebConsole>>,
}

impl WebCtl {
    /// Watches `reg` from now on (the index page's "last change" column).
    pub fn new(reg: &Registry) -> Arc<WebCtl> {
        Arc::new(WebCtl {
            consoles: Consoles::new(reg),
            running: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<WebConsole>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `what` to what uses chardev `id` (the index page's frontend
    /// column): `isa-serial COM1`, `QMP monitor`...
    pub fn note_frontend(&self, id: &str, what: &str) {
        self.consoles.add_frontend(id, what);
    }

    /// Starts the console as `opts` says and prints where (stderr).
    pub fn start_with(&self, opts: &WebOptions) -> Result<WebStatus, String> {
        let mut running = self.lock();
        if let Some(w) = running.as_ref() {
            return Err(format!(
                "The web console is already running on {}",
                w.local_addr()
            ));
        }
        let w = WebConsole::start(self.consoles.clone(), opts).map_err(|e| e.to_string())?;
        let s = status(&w);
        report::note(&format!("web console at {}", s.url));
        *running = Some(w);
        Ok(s)
    }

    /// Stops the console, if one runs, waiting for its thread (not for the
    /// chardev I/O thread).
    pub fn shutdown(&self) {
        let w = self.lock().take();
        if let Some(w) = w {
            w.stop();
        }
    }
}

fn status(w: &WebConsole) -> WebStatus {
    let a = w.local_addr();
    WebStatus {
        host: a.ip().to_string(),
        port: a.port(),
        token: w.token().to_string(),
        url: w.url(),
    }
}

impl WebControl for WebCtl {
    fn start(
        &self,
        host: Option<String>,
        port: u16,
        token: Option<String>,
        tls_creds: Option<String>,
        tls_authz: Option<String>,
    ) -> Result<WebStatus, String> {
        self.start_with(&WebOptions {
            host,
            port,
            token,
            tls_creds,
            tls_authz,
        })
    }

    fn stop(&self) -> Result<(), String> {
        // On the chardev I/O thread: the port is freed before the reply,
        // the open terminals close on the console's own thread.
        match self.lock().take() {
            Some(w) => {
                w.stop_nowait();
                Ok(())
            }
            None => Err("The web console is not running".into()),
        }
    }

    fn status(&self) -> Option<WebStatus> {
        self.lock().as_ref().map(status)
    }
}
