//! Descriptor sets, QEMU's fdsets: descriptors a management stack hands
//! over (`-add-fd`, QMP `add-fd`) so that the process can "open" paths it
//! could not open itself. A chardev that opens `/dev/fdset/N` gets a
//! duplicate of a member of set `N` whose access mode matches.
//!
//! The rules are QEMU 7.2's:
//! - a set has an id (0 or more), members (newest first) and the
//!   duplicates handed out of it; `query-fdsets` lists sets by descending
//!   id and members oldest first, never the duplicates;
//! - `add-fd` without an id takes the lowest free one;
//! - opening `/dev/fdset/N` needs a member whose access mode equals the
//!   open's exactly, takes the newest such member, duplicates it
//!   (close-on-exec), sets the open's file status flags on the shared
//!   description and truncates it when the open would have;
//! - members are closed by the cleanup rule, applied to a set on
//!   `remove-fd`, when its last duplicate closes, and to every set when a
//!   monitor connection closes: while the VM runs, a member goes if it was
//!   removed, or if the set has no duplicate open and no monitor is
//!   connected; a set with neither members nor duplicates goes. With the VM
//!   not running (`-S`) nothing is closed.
//!
//! One difference, deliberate: QEMU forgets to count the duplicates of
//! chardev log files as closed (it closes them with a plain `close`), so a
//! set that served a log file can never be freed and its stale entry can
//! be mistaken for another set's. Here every duplicate, log files' too, is
//! counted until it closes ([`DupLease`]).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use rustix::fs::OFlags;
use thiserror::Error;

/// Prefix of the paths that name a set.
pub const FDSET_PREFIX: &str = "/dev/fdset/";

/// What `add-fd` and `remove-fd` refuse, in QEMU's words.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum FdsetError {
    /// `add-fd` would create a set with a negative id.
    #[error("Parameter 'fdset-id' expects a non-negative value")]
    NegativeId,
    /// `remove-fd` of a set, or of a member of a set, that is not there.
    #[error("File descriptor named '{}' not found", removal_name(*fdset_id, *fd))]
    NotFound {
        /// The set asked for.
        fdset_id: i64,
        /// The member asked for, if one was.
        fd: Option<i64>,
    },
}

fn removal_name(fdset_id: i64, fd: Option<i64>) -> String {
    match fd {
        Some(fd) => format!("fdset-id:{fdset_id}, fd:{fd}"),
        None => format!("fdset-id:{fdset_id}"),
    }
}

/// One member as `query-fdsets` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdsetFdInfo {
    /// The member's descriptor number in this process.
    pub fd: RawFd,
    /// The string given with it, if one was.
    pub opaque: Option<String>,
}

/// One set as `query-fdsets` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdsetInfo {
    /// The set's id.
    pub fdset_id: i64,
    /// Its members, oldest first.
    pub fds: Vec<FdsetFdInfo>,
}

/// What `add-fd` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddFdInfo {
    /// The set the descriptor went into.
    pub fdset_id: i64,
    /// The descriptor's number in this process.
    pub fd: RawFd,
}

struct Member {
    fd: OwnedFd,
    opaque: Option<String>,
    removed: bool,
}

#[derive(Default)]
struct Set {
    /// Newest first, as QEMU keeps them (the newest match serves an open).
    members: Vec<Member>,
    /// Duplicates handed out and not closed yet.
    dups: usize,
}

type RunningProbe = Arc<dyn Fn() -> bool + Send + Sync>;

/// The descriptor sets of one VM (one [`crate::Registry`]), with the
/// counters their cleanup rule needs.
pub struct FdSets {
    me: Weak<FdSets>,
    sets: Mutex<BTreeMap<i64, Set>>,
    /// Monitor connections open now (QEMU's `mon_refcount`).
    monitors: Mutex<usize>,
    running: Mutex<RunningProbe>,
}

impl std::fmt::Debug for FdSets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdSets")
            .field("sets", &self.lock().keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Locks a mutex whose holder may have panicked (the data stays usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FdSets {
    /// No sets; the VM counts as running until [`FdSets::set_running_probe`]
    /// says otherwise (QEMU without `-S`).
    pub fn new() -> Arc<FdSets> {
        Arc::new_cyclic(|me| FdSets {
            me: me.clone(),
            sets: Mutex::new(BTreeMap::new()),
            monitors: Mutex::new(0),
            running: Mutex::new(Arc::new(|| true)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<i64, Set>> {
        lock(&self.sets)
    }

    /// Tells the sets how to learn whether the VM runs: members are only
    /// ever closed while it does.
    pub fn set_running_probe(&self, running: impl Fn() -> bool + Send + Sync + 'static) {
        *lock(&self.running) = Arc::new(running);
    }

    fn running(&self) -> bool {
        let probe = lock(&self.running).clone();
        probe()
    }

    /// Adds `fd` to set `fdset_id`, or to a new set with the lowest free id
    /// when none is given (QMP `add-fd`, `-add-fd`). On error the
    /// descriptor is closed.
    pub fn add_fd(
        &self,
        fd: OwnedFd,
        fdset_id: Option<i64>,
        opaque: Option<String>,
    ) -> Result<AddFdInfo, FdsetError> {
        let mut sets = self.lock();
        let id = match fdset_id {
            Some(id) if sets.contains_key(&id) => id,
            Some(id) if id < 0 => return Err(FdsetError::NegativeId),
            Some(id) => id,
            None => {
                let mut next = 0i64;
                for &id in sets.keys() {
                    if id != next {
                        break;
                    }
                    next += 1;
                }
                next
            }
        };
        let raw = fd.as_raw_fd();
        sets.entry(id).or_default().members.insert(
            0,
            Member {
                fd,
                opaque,
                removed: false,
            },
        );
        Ok(AddFdInfo {
            fdset_id: id,
            fd: raw,
        })
    }

    /// Marks set `fdset_id`'s member `fd`, or all its members, removed and
    /// applies the cleanup rule to the set (QMP `remove-fd`).
    pub fn remove_fd(&self, fdset_id: i64, fd: Option<i64>) -> Result<(), FdsetError> {
        let running = self.running();
        let monitors = *lock(&self.monitors);
        let mut sets = self.lock();
        let not_found = FdsetError::NotFound { fdset_id, fd };
        let set = sets.get_mut(&fdset_id).ok_or(not_found.clone())?;
        match fd {
            Some(fd) => {
                let m = set
                    .members
                    .iter_mut()
                    .find(|m| i64::from(m.fd.as_raw_fd()) == fd)
                    .ok_or(not_found)?;
                m.removed = true;
            }
            None => set.members.iter_mut().for_each(|m| m.removed = true),
        }
        cleanup(&mut sets, fdset_id, running, monitors);
        Ok(())
    }

    /// Every set, by descending id, members oldest first (QMP
    /// `query-fdsets`).
    pub fn query(&self) -> Vec<FdsetInfo> {
        self.lock()
            .iter()
            .rev()
            .map(|(&id, set)| FdsetInfo {
                fdset_id: id,
                fds: set
                    .members
                    .iter()
                    .rev()
                    .map(|m| FdsetFdInfo {
                        fd: m.fd.as_raw_fd(),
                        opaque: m.opaque.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// A monitor connection opened (QMP or HMP, as QEMU counts them).
    pub fn monitor_opened(&self) {
        *lock(&self.monitors) += 1;
    }

    /// A monitor connection closed: the cleanup rule runs on every set.
    pub fn monitor_closed(&self) {
        let monitors = {
            let mut n = lock(&self.monitors);
            *n = n.saturating_sub(1);
            *n
        };
        let running = self.running();
        let mut sets = self.lock();
        let ids: Vec<i64> = sets.keys().copied().collect();
        for id in ids {
            cleanup(&mut sets, id, running, monitors);
        }
    }

    /// Opens `/dev/fdset/N` with `flags`: a duplicate of the newest member
    /// of set N whose access mode equals the one asked for. Errors are
    /// QEMU's errnos: `EINVAL` for an N that does not parse (or an O_SYNC
    /// mismatch), `ENOENT` for no such set, `EACCES` for no member with
    /// that access mode.
    pub fn open(&self, path: &str, flags: OFlags) -> io::Result<Dup> {
        let id = path
            .strip_prefix(FDSET_PREFIX)
            .and_then(parse_fd)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        self.dup(id, flags)
    }

    /// See [`FdSets::open`]; `id` is already parsed.
    fn dup(&self, id: i64, flags: OFlags) -> io::Result<Dup> {
        let mut sets = self.lock();
        let set = sets
            .get_mut(&id)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        let want = flags & OFlags::ACCMODE;
        let mut source = None;
        for m in &set.members {
            if rustix::fs::fcntl_getfl(&m.fd)? & OFlags::ACCMODE == want {
                source = Some(m.fd.as_fd());
                break;
            }
        }
        let source = source.ok_or_else(|| io::Error::from_raw_os_error(libc::EACCES))?;
        let fd = rustix::io::fcntl_dupfd_cloexec(source, 0)?;
        let have = rustix::fs::fcntl_getfl(&fd)?;
        if have & OFlags::SYNC != flags & OFlags::SYNC {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // What fcntl can set (append, non-blocking) lands on the
        // description the member shares with its sender, as in QEMU.
        rustix::fs::fcntl_setfl(&fd, flags)?;
        if flags.contains(OFlags::TRUNC) || flags.contains(OFlags::CREATE | OFlags::EXCL) {
            rustix::fs::ftruncate(&fd, 0)?;
        }
        set.dups += 1;
        Ok(Dup {
            fd,
            lease: DupLease {
                sets: self.me.clone(),
                id,
            },
        })
    }

    /// A duplicate of set `id` closed.
    fn dup_closed(&self, id: i64) {
        let running = self.running();
        let monitors = *lock(&self.monitors);
        let mut sets = self.lock();
        let Some(set) = sets.get_mut(&id) else {
            return;
        };
        set.dups = set.dups.saturating_sub(1);
        if set.dups == 0 {
            cleanup(&mut sets, id, running, monitors);
        }
    }
}

/// QEMU's cleanup rule for set `id` (see the module documentation).
fn cleanup(sets: &mut BTreeMap<i64, Set>, id: i64, running: bool, monitors: usize) {
    let Some(set) = sets.get_mut(&id) else {
        return;
    };
    if running {
        let unused = set.dups == 0 && monitors == 0;
        // Dropping a member closes its descriptor.
        set.members.retain(|m| !(m.removed || unused));
    }
    if set.members.is_empty() && set.dups == 0 {
        sets.remove(&id);
    }
}

/// A descriptor number as QEMU parses one (`strtol` rules: leading white
/// space and a sign allowed, decimal digits to the end, 0..=INT_MAX).
pub fn parse_fd(s: &str) -> Option<i64> {
    strtol_decimal(s).filter(|v| (0..=i64::from(i32::MAX)).contains(v))
}

/// C's `strtol` in base 10 taking the whole string: optional leading white
/// space and sign, then decimal digits to the end; `None` for anything
/// else or beyond `i64` (ERANGE).
pub(crate) fn strtol_decimal(s: &str) -> Option<i64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// A descriptor duplicated out of a set, with the lease that counts it.
#[derive(Debug)]
pub struct Dup {
    /// The duplicate.
    pub fd: OwnedFd,
    /// Counts the duplicate as open until dropped: keep it as long as the
    /// descriptor.
    pub lease: DupLease,
}

/// Keeps a duplicate counted in its set; dropping it counts the duplicate
/// closed (and may free the set).
#[derive(Debug)]
pub struct DupLease {
    sets: Weak<FdSets>,
    id: i64,
}

impl Drop for DupLease {
    fn drop(&mut self) {
        if let Some(sets) = self.sets.upgrade() {
            sets.dup_closed(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read-only and a write-only descriptor (on /dev/null: each its own
    /// file description).
    fn pipe_fds() -> (OwnedFd, OwnedFd) {
        let open = |w: bool| {
            let f = std::fs::OpenOptions::new()
                .read(!w)
                .write(w)
                .open("/dev/null")
                .unwrap();
            OwnedFd::from(f)
        };
        (open(false), open(true))
    }

    #[test]
    fn fd_numbers_parse_as_strtol_into_an_int() {
        assert_eq!(parse_fd("5"), Some(5));
        assert_eq!(parse_fd(" 5"), Some(5));
        assert_eq!(parse_fd("+5"), Some(5));
        assert_eq!(parse_fd("-0"), Some(0));
        assert_eq!(parse_fd("2147483647"), Some(2147483647));
        for bad in [
            "",
            " ",
            "-1",
            "0x5",
            "5 ",
            "abc",
            "2147483648",
            "4294967296",
            "+",
            "5.in",
        ] {
            assert_eq!(parse_fd(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn auto_ids_fill_the_lowest_gap() {
        let s = FdSets::new();
        let id =
            |s: &FdSets, want: Option<i64>| s.add_fd(pipe_fds().0, want, None).unwrap().fdset_id;
        assert_eq!(id(&s, None), 0);
        assert_eq!(id(&s, None), 1);
        assert_eq!(id(&s, Some(5)), 5);
        assert_eq!(id(&s, Some(3)), 3);
        assert_eq!(id(&s, None), 2);
        assert_eq!(id(&s, Some(i64::MAX)), i64::MAX);
        assert_eq!(id(&s, None), 4);
        assert_eq!(id(&s, None), 6);
        assert_eq!(
            s.add_fd(pipe_fds().0, Some(-1), None),
            Err(FdsetError::NegativeId)
        );
        let q = s.query();
        let ids: Vec<i64> = q.iter().map(|i| i.fdset_id).collect();
        assert_eq!(ids, [i64::MAX, 6, 5, 4, 3, 2, 1, 0]);
    }

    #[test]
    fn removal_errors_name_what_was_asked() {
        let s = FdSets::new();
        let e = |id, fd| s.remove_fd(id, fd).unwrap_err().to_string();
        assert_eq!(e(99, None), "File descriptor named 'fdset-id:99' not found");
        assert_eq!(
            e(99, Some(999)),
            "File descriptor named 'fdset-id:99, fd:999' not found"
        );
        s.add_fd(pipe_fds().0, Some(5), None).unwrap();
        assert_eq!(
            e(5, Some(999)),
            "File descriptor named 'fdset-id:5, fd:999' not found"
        );
    }

    #[test]
    fn opens_need_the_exact_access_mode_and_take_the_newest_match() {
        let s = FdSets::new();
        let (r1, w1) = pipe_fds();
        let (_r2, w2) = pipe_fds();
        // Append set on w2's description only tells the two members apart.
        rustix::fs::fcntl_setfl(&w2, OFlags::APPEND).unwrap();
        s.add_fd(r1, Some(1), None).unwrap();
        s.add_fd(w1, Some(1), None).unwrap();
        s.add_fd(w2, Some(1), None).unwrap();
        let err = |p: &str, f| s.open(p, f).unwrap_err().raw_os_error().unwrap();
        assert_eq!(err("/dev/fdset/1", OFlags::RDWR), libc::EACCES);
        assert_eq!(err("/dev/fdset/2", OFlags::WRONLY), libc::ENOENT);
        assert_eq!(err("/dev/fdset/x", OFlags::WRONLY), libc::EINVAL);
        let d = s
            .open("/dev/fdset/1", OFlags::WRONLY | OFlags::APPEND)
            .unwrap();
        let q = s.query();
        let newest = q[0].fds.last().unwrap().fd;
        // SAFETY: `newest` is a member of `s`, open for the whole test.
        let newest = unsafe { std::os::fd::BorrowedFd::borrow_raw(newest) };
        assert!(rustix::fs::fcntl_getfl(newest)
            .unwrap()
            .contains(OFlags::APPEND));
        // The duplicate shares the newest member's description: clearing
        // append through one shows on the other.
        rustix::fs::fcntl_setfl(&d.fd, OFlags::WRONLY).unwrap();
        assert!(!rustix::fs::fcntl_getfl(newest)
            .unwrap()
            .contains(OFlags::APPEND));
        let fl = rustix::io::fcntl_getfd(&d.fd).unwrap();
        assert!(fl.contains(rustix::io::FdFlags::CLOEXEC));
    }

    #[test]
    fn running_sets_go_when_removed_and_unused() {
        let s = FdSets::new();
        s.add_fd(pipe_fds().1, Some(7), None).unwrap();
        let d = s.open("/dev/fdset/7", OFlags::WRONLY).unwrap();
        s.remove_fd(7, None).unwrap();
        // The member is closed, the set stays for its live duplicate.
        assert_eq!(
            s.query(),
            [FdsetInfo {
                fdset_id: 7,
                fds: vec![]
            }]
        );
        assert_eq!(
            s.open("/dev/fdset/7", OFlags::WRONLY)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EACCES)
        );
        drop(d);
        assert!(s.query().is_empty());
    }

    #[test]
    fn nothing_closes_while_the_vm_does_not_run() {
        let s = FdSets::new();
        let running = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = running.clone();
        s.set_running_probe(move || r.load(std::sync::atomic::Ordering::SeqCst));
        s.add_fd(pipe_fds().1, Some(0), None).unwrap();
        s.remove_fd(0, None).unwrap();
        s.remove_fd(0, None).unwrap();
        s.monitor_opened();
        s.monitor_closed();
        assert_eq!(s.query().len(), 1);
        // A removed member still serves opens before the VM runs.
        drop(s.open("/dev/fdset/0", OFlags::WRONLY).unwrap());
        running.store(true, std::sync::atomic::Ordering::SeqCst);
        s.monitor_opened();
        s.monitor_closed();
        assert!(s.query().is_empty());
    }

    #[test]
    fn the_last_monitor_leaving_frees_unused_sets_only() {
        let s = FdSets::new();
        s.add_fd(pipe_fds().1, Some(1), None).unwrap();
        s.add_fd(pipe_fds().1, Some(2), None).unwrap();
        let d = s.open("/dev/fdset/2", OFlags::WRONLY).unwrap();
        s.monitor_opened();
        s.monitor_opened();
        s.monitor_closed();
        assert_eq!(s.query().len(), 2, "one monitor still connected");
        s.monitor_closed();
        let q = s.query();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].fdset_id, 2);
        assert_eq!(q[0].fds.len(), 1);
        drop(d);
        // Its duplicate closed with no monitor connected: the set goes.
        assert!(s.query().is_empty());
    }
}
