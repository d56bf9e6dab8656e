//! What the qchar crates' integration tests and benches share: bounded
//! waits on a condition, the prerequisite checks behind every skip, and the
//! process-wide helpers the support modules used to copy (descriptor and
//! memory counts, the lock that runs a file's tests one at a time, ptys,
//! FIFOs, unix-socket connects, a watch on the library's log).
//!
//! A test skips only through [`require`], for a named missing
//! prerequisite, and says why; with `QCHAR_TEST_REQUIRE_ALL=1` in the
//! environment (CI sets it: its machines have them all) a missing
//! prerequisite fails the test instead.

use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub mod webdriver;

// ----- waits ---------------------------------------------------------------

/// Default bound of every wait: generous, so that a loaded machine does not
/// fail a test, yet a hang ends with a message. Only a bug reaches it.
pub const WAIT: Duration = Duration::from_secs(60);

/// Longest pause between two polls.
const MAX_BACKOFF: Duration = Duration::from_millis(10);

/// A benchmark's size from the environment variable `name`, or `default`
/// when it is unset or does not parse.
pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0 to 1) of sorted durations, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Polls `cond` until it holds; panics naming `what` after [`WAIT`].
#[track_caller]
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_until_within(what, WAIT, cond);
}

/// [`wait_until`] with an explicit bound.
#[track_caller]
pub fn wait_until_within(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    wait_for_within(what, within, || cond().then_some(()));
}

/// Polls `f` until it returns `Some`, and returns that; panics naming
/// `what` after [`WAIT`].
#[track_caller]
pub fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_for_within(what, WAIT, f)
}

/// [`wait_for`] with an explicit bound. Polls at once, then with a back-off
/// from 1 ms doubling up to 10 ms.
#[track_caller]
pub fn wait_for_within<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(v) = f() {
            return v;
        }
        let now = Instant::now();
        if now >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_BACKOFF);
    }
}

// ----- prerequisites ---------------------------------------------------------

/// The environment variable that turns every skip into a failure.
pub const REQUIRE_ALL: &str = "QCHAR_TEST_REQUIRE_ALL";

/// Something outside the repository a test needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prereq {
    /// `/dev/kvm`, openable read-write.
    Kvm,
    /// `qemu-system-x86_64` on the PATH (a live peer to compare with).
    Qemu,
    /// `socat` on the PATH.
    Socat,
    /// `ser2net` (version 4) on the PATH.
    Ser2net,
    /// `python3` with the `qemu.qmp` module (QEMU's own QMP client).
    PythonQemuQmp,
    /// An IPv6 loopback address (`::1`) to bind to.
    Ipv6Loopback,
    /// `unshare -m` with permission to mount (a private `/dev`).
    MountNamespace,
    /// Debian's `chromium` and `chromedriver` on the PATH (browser tests,
    /// driven over WebDriver: [`webdriver`]).
    Chromium,
    /// GnuTLS's `certtool` (and `gnutls-cli`), the tools QEMU's TLS docs use.
    GnutlsTools,
    /// The `openssl` command.
    Openssl,
}

impl fmt::Display for Prereq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Prereq::Kvm => "/dev/kvm",
            Prereq::Qemu => "qemu-system-x86_64",
            Prereq::Socat => "socat",
            Prereq::Ser2net => "ser2net",
            Prereq::PythonQemuQmp => "python3 with qemu.qmp",
            Prereq::Ipv6Loopback => "an IPv6 loopback (::1)",
            Prereq::MountNamespace => "a private mount namespace (unshare -m)",
            Prereq::Chromium => "chromium and chromedriver",
            Prereq::GnutlsTools => "certtool and gnutls-cli (gnutls-bin)",
            Prereq::Openssl => "openssl",
        })
    }
}

/// Whether `p` is there: `Ok`, or why not.
fn probe(p: Prereq) -> Result<(), String> {
    match p {
        Prereq::Kvm => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .map(drop)
            .map_err(|e| format!("cannot open /dev/kvm: {e}")),
        Prereq::Qemu => runs("qemu-system-x86_64", &["-version"]),
        Prereq::Socat => runs("socat", &["-V"]),
        Prereq::Ser2net => runs("ser2net", &["-v"]),
        Prereq::PythonQemuQmp => runs("python3", &["-c", "import qemu.qmp"]),
        Prereq::Ipv6Loopback => std::net::TcpListener::bind("[::1]:0")
            .map(drop)
            .map_err(|e| format!("cannot bind [::1]:0: {e}")),
        Prereq::MountNamespace => runs("unshare", &["-m", "sh", "-c", "mount -t tmpfs none /dev"]),
        Prereq::Chromium => {
            runs("chromium", &["--version"]).and_then(|()| runs("chromedriver", &["--version"]))
        }
        Prereq::GnutlsTools => {
            runs("certtool", &["--version"]).and_then(|()| runs("gnutls-cli", &["--version"]))
        }
        Prereq::Openssl => runs("openssl", &["version"]),
    }
}

/// Runs `program args`; `Ok` when it exits with status 0.
fn runs(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            err.trim()
        ))
    }
}

/// Whether the environment asks for every prerequisite ([`REQUIRE_ALL`]
/// set to anything but empty or `0`).
pub fn require_all() -> bool {
    std::env::var_os(REQUIRE_ALL).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Whether prerequisite `p` is present (checked once per process). When it
/// is not: prints `SKIP <test>: ...` with the reason and returns `false`,
/// and the caller returns at once; or, with [`REQUIRE_ALL`] set, panics.
///
/// ```no_run
/// # use qchar_testkit::{require, Prereq};
/// if !require(Prereq::Kvm) {
///     return;
/// }
/// ```
#[track_caller]
pub fn require(p: Prereq) -> bool {
    /// Each prerequisite probed so far, with what the probe found.
    type Probed = Vec<(Prereq, Result<(), String>)>;
    static SEEN: OnceLock<Mutex<Probed>> = OnceLock::new();
    let seen = SEEN.get_or_init(|| Mutex::new(Vec::new()));
    let found = {
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.iter().find(|(q, _)| *q == p) {
            Some((_, r)) => r.clone(),
            None => {
                let r = probe(p);
                seen.push((p, r.clone()));
                r
            }
        }
    };
    verdict(p, &found, require_all())
}

/// `true` when present; else the skip's message, or the failure when
/// `strict`.
#[track_caller]
fn verdict(p: Prereq, found: &Result<(), String>, strict: bool) -> bool {
    let Err(why) = found else {
        return true;
    };
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    if strict {
        panic!("{test} needs {p}, which is missing ({why}), and {REQUIRE_ALL} is set");
    }
    eprintln!(
        "SKIP {test}: needs {p}, which is missing ({why}); set {REQUIRE_ALL}=1 to fail instead"
    );
    false
}

// ----- this process ----------------------------------------------------------

/// Open descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Serialises the tests of one test binary that measure the whole process
/// (descriptors, RSS): hold the guard for the whole test.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A `kB` field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = s
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line.trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{field} {line:?}: {e}"))
}

/// Resident set size now, in bytes.
pub fn rss() -> u64 {
    status_kib("VmRSS:") * 1024
}

/// Resets the kernel's peak-RSS mark (`VmHWM`) to the current RSS.
pub fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
}

/// The peak RSS since the last [`reset_peak_rss`], in bytes.
pub fn peak_rss() -> u64 {
    status_kib("VmHWM:") * 1024
}

/// Runs `f` and returns how far the peak RSS rose above the RSS before.
pub fn peak_growth(f: impl FnOnce()) -> u64 {
    reset_peak_rss();
    let before = rss();
    f();
    peak_rss().saturating_sub(before)
}

// ----- peers -------------------------------------------------------------------

/// Connects to a unix socket, retrying while its server is not there yet.
pub fn connect_unix(path: &Path) -> UnixStream {
    wait_for(&format!("a listener at {}", path.display()), || {
        UnixStream::connect(path).ok()
    })
}

/// A new pty: its master and the path of its slave.
pub fn openpty() -> (OwnedFd, String) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let m = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .expect("posix_openpt");
    grantpt(&m).expect("grantpt");
    unlockpt(&m).expect("unlockpt");
    let name = ptsname(&m, Vec::new()).expect("ptsname");
    (m, name.to_string_lossy().into_owned())
}

/// A loopback TCP listener whose accept queue is full (`listen(1)`, two
/// clients connected and never accepted): a connect to it is neither
/// accepted nor refused, its SYNs are dropped, until the kernel gives up
/// (minutes) or the listener closes (then the next retry, about a second
/// after the connect began, is refused). Returns the listener, the clients
/// filling it, and its port.
pub fn full_tcp_listener() -> (OwnedFd, Vec<std::net::TcpStream>, u16) {
    use rustix::net::{bind, listen, socket, AddressFamily, SocketType};
    let l = socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    let any = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0);
    bind(&l, &any).expect("bind 127.0.0.1:0");
    listen(&l, 1).expect("listen");
    let bound = rustix::net::getsockname(&l).expect("getsockname");
    let port = std::net::SocketAddrV4::try_from(bound)
        .expect("an IPv4 address")
        .port();
    // With a backlog of 1 the queue takes two connections.
    let clients = (0..2)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("fill the queue"))
        .collect();
    (l, clients, port)
}

/// Whether stream socket `fd` has bytes to read right now (peeked, nothing
/// consumed, no waiting).
pub fn readable_now(fd: BorrowedFd<'_>) -> bool {
    use rustix::net::{recv, RecvFlags};
    let mut b = [0u8; 1];
    matches!(
        recv(fd, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT),
        Ok((n, _)) if n > 0
    )
}

/// Sends `data` with `fds` attached (SCM_RIGHTS) in one `sendmsg`; all of
/// `data` must go in that call.
pub fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space =
        vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(
            cmsg.push(SendAncillaryMessage::ScmRights(fds)),
            "cmsg space"
        );
    }
    let n = sendmsg(
        sock,
        &[std::io::IoSlice::new(data)],
        &mut cmsg,
        SendFlags::empty(),
    )
    .expect("sendmsg");
    assert_eq!(n, data.len(), "sendmsg took part of the message");
}

/// The process `pid`'s open descriptors: number and link target.
pub fn proc_fds(pid: u32) -> Vec<(i32, String)> {
    let dir = format!("/proc/{pid}/fd");
    let mut v: Vec<(i32, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| {
            let e = e.ok()?;
            let n = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((n, target.to_string_lossy().into_owned()))
        })
        .collect();
    v.sort();
    v
}

/// What descriptor `fd` of this process is (its `/proc/self/fd` link),
/// to find the same open file in another process's [`proc_fds`].
pub fn fd_target(fd: BorrowedFd<'_>) -> String {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .expect("/proc/self/fd link")
        .to_string_lossy()
        .into_owned()
}

/// Makes a FIFO at `path` (mode 0600).
pub fn mkfifo(path: &Path) {
    use rustix::fs::{mkfifoat, Mode, CWD};
    mkfifoat(CWD, path, Mode::from_raw_mode(0o600))
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

#[cfg(feature = "tls")]
pub mod pki;
#[cfg(feature = "tls")]
pub mod tlspeer;

// ----- the library's log ---------------------------------------------------------

/// Counts log records whose message contains a given text: a test's view of
/// something the library reports only in its log (a failed reconnect).
/// Installs this crate's logger (debug level) on first use; a test binary
/// that installs its own logger cannot use it.
pub struct LogWatch {
    index: usize,
}

struct Watcher {
    logs: Mutex<Vec<(String, usize, String)>>,
}

impl log::Log for Watcher {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let mut w = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        if w.is_empty() {
            return;
        }
        let msg = record.args().to_string();
        for (text, n, last) in w.iter_mut() {
            if msg.contains(text.as_str()) {
                *n += 1;
                last.clone_from(&msg);
            }
        }
    }
    fn flush(&self) {}
}

fn watcher() -> &'static Watcher {
    static W: OnceLock<&'static Watcher> = OnceLock::new();
    W.get_or_init(|| {
        let w: &'static Watcher = Box::leak(Box::new(Watcher {
            logs: Mutex::new(Vec::new()),
        }));
        log::set_logger(w).expect("another logger is installed in this test binary");
        log::set_max_level(log::LevelFilter::Debug);
        w
    })
}

impl LogWatch {
    /// Starts counting records that contain `text`.
    pub fn new(text: &str) -> LogWatch {
        let mut w = watcher().logs.lock().unwrap_or_else(|e| e.into_inner());
        w.push((text.to_string(), 0, String::new()));
        LogWatch { index: w.len() - 1 }
    }

    /// Records seen so far.
    pub fn count(&self) -> usize {
        watcher().logs.lock().unwrap_or_else(|e| e.into_inner())[self.index].1
    }

    /// The whole message of the last record seen (empty before the first).
    pub fn last(&self) -> String {
        watcher().logs.lock().unwrap_or_else(|e| e.into_inner())[self.index]
            .2
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_for_returns_the_value_once_it_comes() {
        let mut n = 0;
        let v = wait_for("the third poll", || {
            n += 1;
            (n == 3).then_some(n * 10)
        });
        assert_eq!(v, 30);
    }

    #[test]
    #[should_panic(expected = "timed out after 20ms waiting for a condition that never holds")]
    fn wait_until_names_the_condition_at_the_deadline() {
        wait_until_within(
            "a condition that never holds",
            Duration::from_millis(20),
            || false,
        );
    }

    #[test]
    fn a_missing_program_is_reported_with_its_name() {
        let e = runs("qchar-no-such-program", &[]).unwrap_err();
        assert!(e.starts_with("cannot run qchar-no-such-program: "), "{e}");
        let e = runs("sh", &["-c", "echo nope >&2; exit 3"]).unwrap_err();
        assert_eq!(
            e,
            "`sh -c echo nope >&2; exit 3` failed (exit status: 3): nope"
        );
    }

    #[test]
    fn a_missing_prerequisite_skips_or_fails() {
        assert!(verdict(Prereq::Socat, &Ok(()), true));
        assert!(!verdict(Prereq::Socat, &Err("not here".into()), false));
        let strict = std::panic::catch_unwind(|| {
            verdict(Prereq::Socat, &Err("not here".into()), true);
        });
        let msg = *strict.unwrap_err().downcast::<String>().unwrap();
        assert!(
            msg.ends_with(
                "needs socat, which is missing (not here), and QCHAR_TEST_REQUIRE_ALL is set"
            ),
            "{msg}"
        );
    }

    #[test]
    fn a_log_watch_counts_matching_records() {
        let w = LogWatch::new("qchar-testkit watch test");
        log::debug!("unrelated");
        log::debug!("a qchar-testkit watch test record");
        log::error!("another qchar-testkit watch test record");
        assert_eq!(w.count(), 2);
    }

    #[test]
    fn mkfifo_makes_a_fifo() {
        use std::os::unix::fs::FileTypeExt;
        let dir = std::env::temp_dir().join(format!("qchar-testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        mkfifo(&p);
        assert!(std::fs::metadata(&p).unwrap().file_type().is_fifo());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn openpty_gives_a_slave_path() {
        let (_m, path) = openpty();
        assert!(path.starts_with("/dev/pts/"), "{path}");
        assert!(Path::new(&path).exists());
    }
}

/// How far a writer thread may go: it waits while the number of what it
/// would write next is not below the budget, which the test raises as its
/// readers catch up (for writers no backend paces).
#[derive(Clone)]
pub struct Budget(std::sync::Arc<(Mutex<u64>, std::sync::Condvar)>);

impl Budget {
    /// A budget of `n`.
    pub fn new(n: u64) -> Budget {
        Budget(std::sync::Arc::new((
            Mutex::new(n),
            std::sync::Condvar::new(),
        )))
    }

    /// Sets the budget and wakes the writer.
    pub fn set(&self, n: u64) {
        *self.0 .0.lock().unwrap() = n;
        self.0 .1.notify_all();
    }

    /// Waits until `n` is below the budget, or `give_up` says so (checked
    /// when woken); returns whether `n` is below it.
    pub fn wait_below(&self, n: u64, give_up: impl Fn() -> bool) -> bool {
        let b = self.0 .0.lock().unwrap();
        let b = self.0 .1.wait_while(b, |b| n >= *b && !give_up()).unwrap();
        n < *b
    }
}
