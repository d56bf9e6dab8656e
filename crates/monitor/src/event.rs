//! Events: `{"event": NAME, "data": {...}, "timestamp": {...}}` sent to
//! every QMP monitor that has completed capabilities negotiation.
//!
//! Besides QEMU's own events (`STOP`, `RESUME`, `SHUTDOWN`), qchar emits
//! these, with names QEMU never uses (clients must ignore unknown events):
//! - `X_QCHAR_CHARDEV_ADDED` `{"id": ID}`: a chardev was added;
//! - `X_QCHAR_CHARDEV_REMOVED` `{"id": ID}`: a chardev was removed;
//! - `X_QCHAR_CHARDEV_CHANGED` `{"id": ID, "filename": F}`: a chardev's
//!   backend was replaced (`F` as `query-chardev` prints it);
//! - `X_QCHAR_CHARDEV_OPENED` / `X_QCHAR_CHARDEV_CLOSED` `{"id": ID}`: a
//!   chardev's backend got / lost its peer (a socket client connected or
//!   went away).
//! - `X_QCHAR_CLIENT_CONNECTED` `{"id": ID, "client": N, "peer": P,
//!   "writer": B, "clients": COUNT}` / `X_QCHAR_CLIENT_DISCONNECTED` `{"id",
//!   "client", "peer", "reason", "clients"}`: a client of a multi-client
//!   socket server (`x-clients`) came or went (`reason`: `closed`,
//!   `disconnected`, `changed`, `retired`; `clients`: how many are
//!   connected now);
//! - `X_QCHAR_CLIENT_SKIPPED` `{"id", "client", "peer", "skipped": N}`: such
//!   a client read too slowly and skipped N bytes (it got a marker line).

use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::json::{Dict, Value};

/// Something that accepts events (a monitor's output).
pub trait EventSink: Send + Sync {
    /// One event: `line` is its compact line, `\r\n` included, `event` the
    /// same as a value (for a monitor that prints pretty). Sinks that have
    /// not negotiated capabilities drop it.
    fn send_event(&self, line: &[u8], event: &Value);
}

/// Fan-out of events to monitors. Cheap to clone.
#[derive(Clone, Default)]
pub struct EventBus {
    sinks: Arc<Mutex<Vec<Weak<dyn EventSink>>>>,
}

impl EventBus {
    /// A bus with no monitors yet.
    pub fn new() -> EventBus {
        EventBus::default()
    }

    /// Adds a sink; it is dropped from the bus once it is freed.
    pub fn register(&self, sink: Weak<dyn EventSink>) {
        let mut s = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        s.retain(|w| w.strong_count() > 0);
        s.push(sink);
    }

    /// Sends event `name` with optional `data` to every sink.
    pub fn emit(&self, name: &str, data: Option<Dict>) {
        let event = event_value(name, data, SystemTime::now());
        let line = crate::qmp::session::line(&event, false);
        let sinks: Vec<Arc<dyn EventSink>> = self
            .sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for s in sinks {
            s.send_event(&line, &event);
        }
    }
}

/// An event as QEMU builds it (member order included).
pub fn event_value(name: &str, data: Option<Dict>, now: SystemTime) -> Value {
    let t = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ts = crate::dict! { "seconds" => t.as_secs() as i64, "microseconds" => t.subsec_micros() as i64 };
    let mut d = Dict::new();
    d.insert("timestamp", Value::Dict(ts));
    d.insert("event", Value::str(name));
    if let Some(data) = data {
        d.insert("data", Value::Dict(data));
    }
    Value::Dict(d)
}

/// Serializes an event as QEMU does, compact, `\r\n` included.
pub fn event_line(name: &str, data: Option<Dict>, now: SystemTime) -> Vec<u8> {
    crate::qmp::session::line(&event_value(name, data, now), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn layout_matches_qemu() {
        // As QEMU 7.2 printed it for `quit`.
        let t = UNIX_EPOCH + Duration::new(1795586673, 833553000);
        let line = event_line("SHUTDOWN", Some(crate::vm::shutdown_quit_data()), t);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"timestamp\": {\"seconds\": 1795586673, \"microseconds\": 833553}, \"event\": \"SHUTDOWN\", \
             \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}\r\n"
        );
        let line = event_line("RESUME", None, t);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"timestamp\": {\"seconds\": 1795586673, \"microseconds\": 833553}, \"event\": \"RESUME\"}\r\n"
        );
    }
}
