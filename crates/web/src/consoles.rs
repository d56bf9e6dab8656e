//! The chardevs of a [`Registry`] as the web console shows them: the
//! listing (from `query-chardev` and the counters), the time of each
//! chardev's last change and what uses it, the taps the terminals read,
//! and the chardevs' events passed on to the pages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use qchar_chardev::spec::ChardevBackend;
use qchar_chardev::tap::{Tap, TapOptions};
use qchar_chardev::tls::ObjectStore;
use qchar_chardev::{ChardevError, Registry, RegistryEvent};
use tokio::sync::broadcast;

/// Events kept for a page that is slow to take them (it then asks for the
/// chardev's state instead).
const EVENT_BACKLOG: usize = 256;

/// One row of the index page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleInfo {
    /// The chardev's id.
    pub id: String,
    /// Its backend: what `query-chardev` prints, with the path where that
    /// is only the kind (`file:console.log` for `file`).
    pub filename: String,
    /// What uses it (`isa-serial COM1`, `QMP monitor`; empty when nothing).
    pub frontend: String,
    /// Clients of a multi-client socket server (`x-clients`) on it.
    pub socket_clients: u64,
    /// Bytes delivered to the frontend.
    pub bytes_in: u64,
    /// Bytes the frontend sent out.
    pub bytes_out: u64,
    /// Backend changes so far.
    pub changes: u64,
    /// When the last change happened, if one did while it was watched.
    pub last_change: Option<SystemTime>,
}

/// A chardev event the console passes on to its pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// Chardev `id` was added.
    Added(String),
    /// Chardev `id` has a new backend, `filename`.
    Changed {
        /// The chardev.
        id: String,
        /// The new backend as `query-chardev` prints it.
        filename: String,
    },
    /// Chardev `id` was removed.
    Removed(String),
}

#[derive(Default)]
struct Notes {
    frontends: HashMap<String, String>,
    last_change: HashMap<String, SystemTime>,
}

/// See the module documentation. Make one per registry, early (it records
/// changes from then on), and give it to every console started on that
/// registry.
pub struct Consoles {
    reg: Registry,
    notes: Arc<Mutex<Notes>>,
    events: broadcast::Sender<ConsoleEvent>,
    /// While a console runs: a tap per chardev that reads nothing, so that
    /// every chardev keeps a history from then on for the pages opened
    /// later (its `backlog` size, or the library's default).
    keepers: Mutex<Option<HashMap<String, Tap>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Consoles {
    /// Watches `reg` from now on.
    pub fn new(reg: &Registry) -> Arc<Consoles> {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let notes = Arc::new(Mutex::new(Notes::default()));
        {
            let events = events.clone();
            let notes = notes.clone();
            reg.subscribe(move |ev| {
                let out = match ev {
                    RegistryEvent::Added(id) => ConsoleEvent::Added(id.clone()),
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
        Arc::new(Consoles {
            reg: reg.clone(),
            notes,
            events,
            keepers: Mutex::new(None),
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

    /// Every chardev, in the order they were added.
    pub fn list(&self) -> Vec<ConsoleInfo> {
        let stats: HashMap<String, qchar_chardev::StatsSnapshot> = self
            .reg
            .all_stats()
            .into_iter()
            .map(|s| (s.label, s.stats))
            .collect();
        let clients: HashMap<String, u64> = self
            .reg
            .clients()
            .into_iter()
            .map(|c| (c.label, c.info.clients.len() as u64))
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
                    socket_clients: clients.get(&c.label).copied().unwrap_or(0),
                    bytes_in: s.bytes_in,
                    bytes_out: s.bytes_out,
                    changes: s.changes,
                    filename: self.describe(&c.label, c.filename),
                    id: c.label,
                }
            })
            .collect()
    }

    /// The backend of chardev `id`, as in [`ConsoleInfo::filename`].
    pub fn filename(&self, id: &str) -> Option<String> {
        self.reg
            .query()
            .into_iter()
            .find(|c| c.label == id)
            .map(|c| self.describe(id, c.filename))
    }

    /// `filename` with the path added where QEMU's name is only the kind.
    fn describe(&self, id: &str, filename: String) -> String {
        let path = match self.reg.backend_spec(id) {
            Some(ChardevBackend::File(f)) if filename == "file" => f.out,
            Some(ChardevBackend::Pipe(h) | ChardevBackend::Serial(h))
                if !filename.contains(':') =>
            {
                h.device
            }
            Some(ChardevBackend::Mux(m)) if filename == "mux" => m.chardev,
            _ => return filename,
        };
        format!("{filename}:{path}")
    }

    /// The chardev a terminal of `id` reads and types into: `id` itself,
    /// or for a mux (`mux=on`) the chardev under it, so that typed keys go
    /// through the mux (its Ctrl-a keys work) and every frontend's output
    /// is shown.
    fn terminal_of(&self, id: &str) -> String {
        match self.reg.backend_spec(id) {
            Some(ChardevBackend::Mux(m)) => m.chardev,
            _ => id.to_string(),
        }
    }

    /// A reader of chardev `id` from the start of its history; one that
    /// takes no input when `read_only`.
    pub fn tap(&self, id: &str, read_only: bool) -> Result<Tap, ChardevError> {
        self.reg.tap(
            &self.terminal_of(id),
            TapOptions {
                read_only,
                from_history: true,
            },
        )
    }

    /// The registry's `-object`/`object-add` store (the console's
    /// `tls_creds` are looked up there).
    pub(crate) fn objects(&self) -> &ObjectStore {
        self.reg.objects()
    }

    /// Changes and removals from now on.
    pub fn events(&self) -> broadcast::Receiver<ConsoleEvent> {
        self.events.subscribe()
    }

    /// From now on, until [`Consoles::forget_histories`], every chardev
    /// keeps a history (see `keepers`); `id` names one just added.
    pub(crate) fn keep_histories(&self, id: Option<&str>) {
        let mut k = lock(&self.keepers);
        let keepers = k.get_or_insert_with(HashMap::new);
        let ids = match id {
            Some(id) => vec![id.to_string()],
            None => self.reg.ids(),
        };
        let opts = TapOptions {
            read_only: true,
            from_history: false,
        };
        for id in ids {
            if let std::collections::hash_map::Entry::Vacant(e) = keepers.entry(id) {
                if let Ok(t) = self.reg.tap(e.key(), opts) {
                    e.insert(t);
                }
            }
        }
    }

    /// Drops the keeper of a removed chardev.
    pub(crate) fn forget(&self, id: &str) {
        if let Some(k) = lock(&self.keepers).as_mut() {
            k.remove(id);
        }
    }

    /// Ends [`Consoles::keep_histories`]: the histories stay as large as
    /// they are.
    pub(crate) fn forget_histories(&self) {
        lock(&self.keepers).take();
    }
}
