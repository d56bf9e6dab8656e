//! The chardev operations QMP and HMP commands need, as a trait so the
//! command layer can be tested without the real registry. The binary uses
//! the implementation for [`qchar_chardev::registry::Registry`].

use std::sync::Arc;

use qchar_chardev::bridge::{BridgeError, BridgeSpec};
use qchar_chardev::fdset::FdSets;
use qchar_chardev::opts::ChardevOptions;
use qchar_chardev::registry::{ChardevClientsInfo, ChardevStatsInfo, Registry};
use qchar_chardev::spec::{ChardevBackend, ChardevInfo, ChardevReturn, SUPPORTED_BACKENDS};
use qchar_chardev::tls::ObjectStore;
use qchar_chardev::{ChardevError, Done};

/// Registry operations used by the monitors. Error `Display` texts are
/// QEMU's (see [`ChardevError`]).
pub trait ChardevOps: Send + Sync {
    /// `chardev-add`.
    fn add(&self, id: &str, backend: ChardevBackend) -> Result<ChardevReturn, ChardevError>;
    /// `chardev-change`.
    fn change(&self, id: &str, backend: ChardevBackend) -> Result<ChardevReturn, ChardevError>;
    /// `chardev-remove`.
    fn remove(&self, id: &str) -> Result<(), ChardevError>;
    /// `query-chardev`.
    fn query(&self) -> Vec<ChardevInfo>;
    /// `chardev-send-break`.
    fn send_break(&self, id: &str) -> Result<(), ChardevError>;
    /// `ringbuf-write`.
    fn ringbuf_write(&self, id: &str, data: &[u8]) -> Result<(), ChardevError>;
    /// `ringbuf-read`.
    fn ringbuf_read(&self, id: &str, max: usize) -> Result<Vec<u8>, ChardevError>;
    /// `query-yank`: the chardevs `yank` acts on, in QEMU's order.
    fn yank_instances(&self) -> Vec<String>;
    /// `yank` of chardev instances (all or nothing).
    fn yank(&self, ids: &[String]) -> Result<(), ChardevError>;
    /// The descriptor sets (`add-fd`, `remove-fd`, `query-fdsets`).
    fn fdsets(&self) -> Arc<FdSets>;
    /// `x-query-chardev-stats`: every chardev's counters with its
    /// frontends'. None by default.
    fn stats(&self) -> Vec<ChardevStatsInfo> {
        Vec::new()
    }
    /// `x-query-chardev-clients`: the clients of every multi-client
    /// socket server. None by default.
    fn clients(&self) -> Vec<ChardevClientsInfo> {
        Vec::new()
    }
    /// `x-chardev-history`: the newest `max` bytes chardev `id` sent out.
    /// None by default.
    fn history(&self, id: &str, _max: usize) -> Result<Vec<u8>, ChardevError> {
        Err(ChardevError::NoHistory(id.to_string()))
    }
    /// `query-chardev-backends`, in QEMU's order (its help's, reversed).
    fn backends(&self) -> Vec<String> {
        SUPPORTED_BACKENDS
            .iter()
            .rev()
            .map(|s| s.to_string())
            .collect()
    }
    /// HMP `chardev-add`: an option string (`ringbuf,id=r0,size=4096`);
    /// `Err` is QEMU's text.
    fn add_opts(&self, opts: &str) -> Result<ChardevReturn, String>;
    /// `chardev-add` that may answer later (an open that waits for a peer
    /// runs off the I/O thread; see `Registry::add_then`). By default it
    /// answers at once.
    fn add_then(&self, id: &str, backend: ChardevBackend, done: Done<ChardevReturn>) {
        done(self.add(id, backend));
    }
    /// `chardev-change` that may answer later, as [`ChardevOps::add_then`].
    fn change_then(&self, id: &str, backend: ChardevBackend, done: Done<ChardevReturn>) {
        done(self.change(id, backend));
    }
    /// HMP `chardev-add` once `text` is parsed into `o`. The default adds
    /// `text` through [`ChardevOps::add_opts`], its error as
    /// [`ChardevError::Invalid`]; a registry adds `o` itself, so a taken id
    /// is [`ChardevError::DuplicateProperty`] as in QEMU.
    fn add_parsed(&self, text: &str, o: &ChardevOptions) -> Result<ChardevReturn, ChardevError> {
        let _ = o;
        self.add_opts(text).map_err(ChardevError::Invalid)
    }
    /// [`ChardevOps::add_parsed`] that may answer later, as
    /// [`ChardevOps::add_then`].
    fn add_parsed_then(&self, text: &str, o: &ChardevOptions, done: Done<ChardevReturn>) {
        done(self.add_parsed(text, o));
    }
    /// HMP `chardev-change ID OPTS`: parses OPTS (which has no id) into a
    /// backend; `Err` is QEMU's text.
    fn parse_backend(&self, id: &str, opts: &str) -> Result<ChardevBackend, String>;
    /// The objects (`object-add`, `qom-list /objects`) the chardevs use;
    /// `None` where there are none to manage.
    fn objects(&self) -> Option<ObjectStore> {
        None
    }
    /// Ids QEMU's option parser already holds (`-chardev` and monitor
    /// chardevs of the command line, kept even once removed): HMP's
    /// `chardev-add` and `chardev-change` refuse them as `Duplicate ID`.
    fn option_ids(&self) -> Vec<String> {
        Vec::new()
    }
    /// `object-add` of an `x-bridge`; refused where there are no bridges.
    fn add_bridge(&self, spec: &BridgeSpec) -> Result<(), BridgeError> {
        Err(BridgeError::InvalidType(format!(
            "{} ({})",
            spec.id, "no bridges here"
        )))
    }
    /// `object-del` of an `x-bridge`.
    fn remove_bridge(&self, id: &str) -> Result<(), BridgeError> {
        Err(BridgeError::NotFound(id.to_string()))
    }
}

impl ChardevOps for Registry {
    fn add(&self, id: &str, backend: ChardevBackend) -> Result<ChardevReturn, ChardevError> {
        Registry::add(self, id, backend)
    }
    fn change(&self, id: &str, backend: ChardevBackend) -> Result<ChardevReturn, ChardevError> {
        Registry::change(self, id, backend)
    }
    fn remove(&self, id: &str) -> Result<(), ChardevError> {
        Registry::remove(self, id)
    }
    fn query(&self) -> Vec<ChardevInfo> {
        Registry::query(self)
    }
    fn fdsets(&self) -> Arc<FdSets> {
        Registry::fdsets(self).clone()
    }
    fn yank_instances(&self) -> Vec<String> {
        Registry::yank_instances(self)
    }
    fn yank(&self, ids: &[String]) -> Result<(), ChardevError> {
        Registry::yank(self, ids)
    }
    fn send_break(&self, id: &str) -> Result<(), ChardevError> {
        Registry::send_break(self, id)
    }
    fn ringbuf_write(&self, id: &str, data: &[u8]) -> Result<(), ChardevError> {
        Registry::ringbuf_write(self, id, data)
    }
    fn ringbuf_read(&self, id: &str, max: usize) -> Result<Vec<u8>, ChardevError> {
        Registry::ringbuf_read(self, id, max)
    }
    fn stats(&self) -> Vec<ChardevStatsInfo> {
        Registry::all_stats(self)
    }
    fn history(&self, id: &str, max: usize) -> Result<Vec<u8>, ChardevError> {
        Registry::history(self, id, max)
    }
    fn clients(&self) -> Vec<ChardevClientsInfo> {
        Registry::clients(self)
    }
    fn add_opts(&self, opts: &str) -> Result<ChardevReturn, String> {
        let o = qchar_chardev::opts::parse_chardev(opts).map_err(|e| e.to_string())?;
        Registry::add_options(self, &o).map_err(|e| e.to_string())
    }
    fn add_parsed(&self, _text: &str, o: &ChardevOptions) -> Result<ChardevReturn, ChardevError> {
        Registry::add_options(self, o)
    }
    fn parse_backend(&self, id: &str, opts: &str) -> Result<ChardevBackend, String> {
        let o = qchar_chardev::opts::parse_chardev(&format!("{opts},id={id}"))
            .map_err(|e| e.to_string())?;
        Ok(o.backend)
    }
    fn add_then(&self, id: &str, backend: ChardevBackend, done: Done<ChardevReturn>) {
        Registry::add_then(self, id, backend, done);
    }
    fn change_then(&self, id: &str, backend: ChardevBackend, done: Done<ChardevReturn>) {
        Registry::change_then(self, id, backend, done);
    }
    fn add_parsed_then(&self, _text: &str, o: &ChardevOptions, done: Done<ChardevReturn>) {
        Registry::add_options_then(self, o, done);
    }
    fn objects(&self) -> Option<ObjectStore> {
        Some(Registry::objects(self).clone())
    }
    fn add_bridge(&self, spec: &BridgeSpec) -> Result<(), BridgeError> {
        Registry::add_bridge(self, spec)
    }
    fn remove_bridge(&self, id: &str) -> Result<(), BridgeError> {
        Registry::remove_bridge(self, id)
    }
}
