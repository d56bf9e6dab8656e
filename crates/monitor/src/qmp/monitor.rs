//! The QMP monitor as a chardev frontend: bytes from the chardev go to a
//! [`QmpSession`], replies and events go back through the chardev.
//!
//! Lifecycle, per QEMU: when the chardev's backend gets a peer (`Opened`),
//! the session starts afresh and the greeting is sent; when the peer goes
//! (`Closed`), the session is reset. Commands run on the chardev I/O thread,
//! inside the read handler, as QEMU runs them in its main loop.
//!
//! Hotswap (QEMU refuses it for monitors, qchar supports it): the session
//! survives a change of its chardev's backend. A `chardev-change` of the
//! monitor's own chardev is answered on the old backend; the monitor then
//! continues on the new one. When both the old and the new backend have a
//! peer at the moment of the change, the session carries on as is (no new
//! greeting). When the new backend has no peer yet (a listening socket, say),
//! the next peer to connect is a new connection: it gets a greeting and must
//! negotiate capabilities, as with QEMU.

use std::sync::Arc;

use qchar_chardev::registry::{Registry, RegistryEvent};
use qchar_chardev::{CharFrontend, ChardevError, ChardevEvent, FrontendHandlers};

use crate::event::EventSink;
use crate::json::{JsonLimits, Value};
use crate::output::{Shared, DEFAULT_OUTPUT_CAP};

use super::cmd::QmpEnv;
use super::session::QmpSession;

/// Input bytes taken per read.
const READ_CHUNK: usize = 64 << 10;

/// Monitor settings.
#[derive(Debug, Clone, Copy)]
pub struct QmpOptions {
    /// Offer the `oob` capability in the greeting (QEMU does on sockets).
    pub offer_oob: bool,
    /// Cap on output held for a client that does not read (see
    /// [`crate::output`]).
    pub output_cap: usize,
    /// JSON limits (QEMU's by default).
    pub json_limits: JsonLimits,
    /// Print replies, events and the greeting in QEMU's pretty style
    /// (`-mon ...,pretty=on`, `-qmp-pretty`).
    pub pretty: bool,
}

impl Default for QmpOptions {
    fn default() -> Self {
        QmpOptions {
            offer_oob: true,
            output_cap: DEFAULT_OUTPUT_CAP,
            json_limits: JsonLimits::default(),
            pretty: false,
        }
    }
}

/// A running QMP monitor. Dropping it does not stop it; [`QmpMonitor::detach`]
/// does.
pub struct QmpMonitor {
    fe: CharFrontend,
}

impl QmpMonitor {
    /// Starts a QMP monitor on chardev `id` of `registry`.
    pub fn attach(
        registry: &Registry,
        id: &str,
        env: Arc<QmpEnv>,
        opts: QmpOptions,
    ) -> Result<QmpMonitor, ChardevError> {
        let fe = registry.attach(id)?;
        Ok(QmpMonitor::on_frontend(fe, env, opts))
    }

    /// Starts a QMP monitor on an attached frontend.
    pub fn on_frontend(fe: CharFrontend, env: Arc<QmpEnv>, opts: QmpOptions) -> QmpMonitor {
        let shared = Shared::new(opts.output_cap);
        {
            let mut out = shared.out();
            out.set_frontend(fe.clone());
            out.pretty = opts.pretty;
        }
        let sink: Arc<dyn EventSink> = shared.clone();
        env.events.register(Arc::downgrade(&sink));
        let mut session = QmpSession::with_limits(opts.offer_oob, opts.json_limits);
        session.set_pretty(opts.pretty);
        let h = QmpHandlers {
            session,
            env,
            shared,
            swap_keeps_peer: false,
        };
        fe.set_handlers(Box::new(h));
        QmpMonitor { fe }
    }

    /// The chardev id.
    pub fn chardev_id(&self) -> String {
        self.fe.id()
    }

    /// Stops the monitor and releases its chardev.
    pub fn detach(self) {
        self.fe.clear_handlers();
        self.fe.detach();
    }
}

/// Turns registry happenings into qchar's `X_QCHAR_*` events (see
/// [`crate::event`]). Call once per registry.
pub fn forward_registry_events(registry: &Registry, events: crate::event::EventBus) {
    registry.subscribe(move |ev| {
        let (name, data) = match ev {
            RegistryEvent::Added(id) => (
                "X_QCHAR_CHARDEV_ADDED",
                crate::dict! { "id" => id.as_str() },
            ),
            RegistryEvent::Removed(id) => (
                "X_QCHAR_CHARDEV_REMOVED",
                crate::dict! { "id" => id.as_str() },
            ),
            RegistryEvent::Changed { id, filename } => (
                "X_QCHAR_CHARDEV_CHANGED",
                crate::dict! { "id" => id.as_str(), "filename" => filename.as_str() },
            ),
            RegistryEvent::Opened(id) => (
                "X_QCHAR_CHARDEV_OPENED",
                crate::dict! { "id" => id.as_str() },
            ),
            RegistryEvent::Closed(id) => (
                "X_QCHAR_CHARDEV_CLOSED",
                crate::dict! { "id" => id.as_str() },
            ),
            RegistryEvent::ClientConnected {
                id,
                client,
                peer,
                writer,
                clients,
            } => (
                "X_QCHAR_CLIENT_CONNECTED",
                crate::dict! {
                    "id" => id.as_str(),
                    "client" => Value::UInt(*client),
                    "peer" => peer.as_str(),
                    "writer" => *writer,
                    "clients" => Value::UInt(*clients as u64),
                },
            ),
            RegistryEvent::ClientDisconnected {
                id,
                client,
                peer,
                reason,
                clients,
            } => (
                "X_QCHAR_CLIENT_DISCONNECTED",
                crate::dict! {
                    "id" => id.as_str(),
                    "client" => Value::UInt(*client),
                    "peer" => peer.as_str(),
                    "reason" => reason.as_str(),
                    "clients" => Value::UInt(*clients as u64),
                },
            ),
            RegistryEvent::ClientSkipped {
                id,
                client,
                peer,
                skipped,
            } => (
                "X_QCHAR_CLIENT_SKIPPED",
                crate::dict! {
                    "id" => id.as_str(),
                    "client" => Value::UInt(*client),
                    "peer" => peer.as_str(),
                    "skipped" => Value::UInt(*skipped),
                },
            ),
            _ => return,
        };
        events.emit(name, Some(data));
    });
}

struct QmpHandlers {
    session: QmpSession,
    env: Arc<QmpEnv>,
    shared: Arc<Shared>,
    /// The last backend change happened with a peer on both sides: the
    /// `Opened` that follows belongs to it.
    swap_keeps_peer: bool,
}

impl QmpHandlers {
    fn reset(&mut self) {
        self.session.reset();
        let mut out = self.shared.out();
        out.events_wanted = false;
        out.overflowed = false;
    }

    fn check_overflow(&mut self) {
        if self.shared.out().overflowed {
            self.reset();
        }
    }
}

impl FrontendHandlers for QmpHandlers {
    fn can_read(&mut self) -> usize {
        self.check_overflow();
        self.shared.out().input_room(READ_CHUNK)
    }

    fn read(&mut self, data: &[u8]) {
        self.check_overflow();
        self.swap_keeps_peer = false;
        let shared = self.shared.clone();
        let env = self.env.clone();
        self.session.feed(&env, data, &mut |s, line| {
            let mut out = shared.out();
            out.push(line);
            if !out.overflowed {
                out.events_wanted = s.negotiated();
            }
        });
    }

    fn event(&mut self, event: ChardevEvent) {
        match event {
            ChardevEvent::Opened => {
                if std::mem::take(&mut self.swap_keeps_peer) {
                    return;
                }
                self.reset();
                let greeting = self.session.greeting(&self.env);
                self.shared.out().push(greeting);
            }
            ChardevEvent::Closed => {
                self.swap_keeps_peer = false;
                self.reset();
                self.shared.out().clear();
            }
            _ => {}
        }
    }

    fn supports_hotswap(&self) -> bool {
        true
    }

    fn backend_changed(&mut self, fe: &CharFrontend) -> Result<(), String> {
        self.swap_keeps_peer = fe.is_open();
        Ok(())
    }

    fn write_ready(&mut self) {
        self.shared.output_ready();
    }
}
