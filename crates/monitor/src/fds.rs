//! A monitor's descriptors, as QEMU keeps them per monitor: the names
//! `getfd` gave (they outlive client connections and are private to the
//! monitor), and where a descriptor received with SCM_RIGHTS on the
//! monitor's connection waits until `getfd` or `add-fd` takes it.
//!
//! `human-monitor-command` runs on a temporary monitor of its own: empty
//! names, no connection, so nothing is ever received there.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};

/// Where a monitor's connection hands over the descriptor waiting there
/// (the one that came with the newest message that carried any).
pub type ReceivedFd = Arc<dyn Fn() -> Option<OwnedFd> + Send + Sync>;

/// See the module documentation.
#[derive(Default)]
pub struct MonitorFds {
    names: Mutex<BTreeMap<String, OwnedFd>>,
    received: Mutex<Option<ReceivedFd>>,
}

impl std::fmt::Debug for MonitorFds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorFds")
            .field("names", &self.names().keys().collect::<Vec<_>>())
            .finish()
    }
}

/// QEMU's text when `getfd`/`add-fd` find nothing received.
pub const NO_FD_SUPPLIED: &str = "No file descriptor supplied via SCM_RIGHTS";

impl MonitorFds {
    /// No names, nothing received (a temporary monitor's).
    pub fn new() -> Arc<MonitorFds> {
        Arc::new(MonitorFds::default())
    }

    /// Names the source of received descriptors (the monitor's chardev).
    pub fn set_received(&self, source: ReceivedFd) {
        *self.received.lock().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    fn names(&self) -> MutexGuard<'_, BTreeMap<String, OwnedFd>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the descriptor waiting on the connection, if any.
    pub fn take_received(&self) -> Option<OwnedFd> {
        let source = self
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        source.and_then(|s| s())
    }

    /// `getfd NAME`: takes the received descriptor and names it; a name
    /// taken before is given the new descriptor and its old one is closed.
    /// Errors are QEMU's texts; the received descriptor is closed on them.
    pub fn getfd(&self, name: &str) -> Result<(), String> {
        let fd = self.take_received().ok_or(NO_FD_SUPPLIED)?;
        if name.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            drop(fd);
            return Err("Parameter 'fdname' expects a name not starting with a digit".into());
        }
        let old = self.names().insert(name.to_string(), fd);
        drop(old);
        Ok(())
    }

    /// `closefd NAME`.
    pub fn closefd(&self, name: &str) -> Result<(), String> {
        match self.names().remove(name) {
            Some(fd) => {
                drop(fd);
                Ok(())
            }
            None => Err(format!("File descriptor named '{name}' not found")),
        }
    }

    /// Takes the descriptor named `name` out of the list (a socket chardev
    /// whose address names it uses it from now on).
    pub fn take_named(&self, name: &str) -> Option<OwnedFd> {
        self.names().remove(name)
    }

    /// How many names are held.
    pub fn named_count(&self) -> usize {
        self.names().len()
    }
}

impl qchar_chardev::fdpass::NamedFds for MonitorFds {
    fn take(&self, name: &str) -> Option<OwnedFd> {
        self.take_named(name)
    }
}

/// One monitor's place in its VM's count of open monitor connections,
/// which the descriptor sets' cleanup rule reads (QEMU counts QMP and HMP
/// connections alike). The sets are looked up when a client first
/// connects, as commands look them up (behind the binary's set-up gate).
pub(crate) struct ConnectionCount {
    ops: Arc<dyn crate::ops::ChardevOps>,
    counted: Option<Arc<qchar_chardev::fdset::FdSets>>,
}

impl ConnectionCount {
    pub(crate) fn new(ops: Arc<dyn crate::ops::ChardevOps>) -> ConnectionCount {
        ConnectionCount { ops, counted: None }
    }

    /// A client connected.
    pub(crate) fn opened(&mut self) {
        if self.counted.is_none() {
            let sets = self.ops.fdsets();
            sets.monitor_opened();
            self.counted = Some(sets);
        }
    }

    /// The client left: the sets' cleanup rule runs.
    pub(crate) fn closed(&mut self) {
        if let Some(sets) = self.counted.take() {
            sets.monitor_closed();
        }
    }
}

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.closed();
    }
}
