//! [`Consoles`] for a chardev [`Registry`]: the listing from its queries
//! and counters, the time of each chardev's last change from its events,
//! and what uses each chardev from whoever attached it (the binary says).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use qchar_chardev::{Registry, RegistryEvent};
use tokio::sync::broadcast;

use crate::source::{ConsoleEvent, ConsoleInfo, ConsoleTap, Consoles, TapError};

/// Events kept for a page that is slow to take them (it then asks for the
/// chardev's state instead).
const EVENT_BACKLOG: usize = 256;

#[derive(Default)]
struct Notes {
    frontends: HashMap<String, String>,
    last_change: HashMap<String, SystemTime>,
}

/// The chardevs of a [`Registry`] as the web console shows them. Make one
/// per registry, early (it records changes from then on), and keep it for
/// every console started on that registry.
pub struct RegistryConsoles {
    reg: Registry,
    notes: Arc<Mutex<Notes>>,
    events: broadcast::Sender<ConsoleEvent>,
}

impl RegistryConsoles {
    /// Watches `reg` from now on.
    pub fn new(reg: &Registry) -> Arc<RegistryConsoles> {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let notes = Arc::new(Mutex::new(Notes::default()));
        {
            let events = events.clone();
            let notes = notes.clone();
            reg.subscribe(move |ev| {
                let out = match ev {
                    RegistryEvent::Changed { id, filename } => {
                        lock(&notes)
                            .last_change
                            .insert(id.clone(), SystemTime::now());
                        ConsoleEvent::Changed {
                            id: id.clone(),
                            filename: filename.clone(),
                        }
                    }
                    RegistryEvent::Removed(id) => {
                        let mut n = lock(&notes);
                        n.last_change.remove(id);
                        n.frontends.remove(id);
                        ConsoleEvent::Removed(id.clone())
                    }
                    _ => return,
                };
                // No page listening is no error.
                let _ = events.send(out);
            });
        }
        Arc::new(RegistryConsoles {
            reg: reg.clone(),
            notes,
            events,
        })
    }

    /// Adds `what` to what uses chardev `id` (`isa-serial COM1`), for the
    /// index page.
    pub fn add_frontend(&self, id: &str, what: &str) {
        let mut n = lock(&self.notes);
        let e = n.frontends.entry(id.to_string()).or_default();
        if !e.is_empty() {
            e.push_str(", ");
        }
        e.push_str(what);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Consoles for RegistryConsoles {
    fn list(&self) -> Vec<ConsoleInfo> {
        let stats: HashMap<String, qchar_chardev::StatsSnapshot> = self
            .reg
            .all_stats()
            .into_iter()
            .map(|s| (s.label, s.stats))
            .collect();
        let notes = lock(&self.notes);
        self.reg
            .query()
            .into_iter()
            .map(|c| {
                let s = stats.get(&c.label).copied().unwrap_or_default();
                ConsoleInfo {
                    frontend: notes.frontends.get(&c.label).cloned().unwrap_or_default(),
                    last_change: notes.last_change.get(&c.label).copied(),
                    clients: 0,
                    bytes_in: s.bytes_in,
                    bytes_out: s.bytes_out,
                    changes: s.changes,
                    filename: c.filename,
                    id: c.label,
                }
            })
            .collect()
    }

    fn filename(&self, id: &str) -> Option<String> {
        self.reg
            .query()
            .into_iter()
            .find(|c| c.label == id)
            .map(|c| c.filename)
    }

    fn tap(&self, id: &str, _read_only: bool) -> Result<Box<dyn ConsoleTap>, TapError> {
        if !self.reg.contains(id) {
            return Err(TapError::NotFound(id.to_string()));
        }
        // Stand-in until the chardev library's taps land.
        Err(TapError::Refused("taps are not available yet".into()))
    }

    fn events(&self) -> broadcast::Receiver<ConsoleEvent> {
        self.events.subscribe()
    }
}
