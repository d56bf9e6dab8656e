// Hand-written part: fork, _exit, ignored signals and sigwaitinfo (for the sender's pid), which neither rustix nor vmm-sys-util wraps.
//! Process-level duties, as QEMU does them: `-daemonize` (detach once set
//! up, the parent exiting 0 only when the daemon is ready), `-pidfile`
//! (locked while the process lives, removed at exit), and the signals that
//! end the process (SIGINT, SIGTERM, SIGHUP).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use qchar_chardev::error::os_message;

use crate::vmctl::{Cause, ExitSignal};

/// The signals that end the process.
const TERM_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The daemon side of `-daemonize`: tells the waiting parent that set-up
/// went well.
pub struct Daemon {
    ready: File,
}

/// Detaches from the terminal as QEMU's `-daemonize` does: the calling
/// process waits until the daemon reports it is ready, then exits 0 (or 1
/// if the daemon failed first). Returns in the daemon, a grandchild in a
/// new session. Must be called while the process has a single thread.
pub fn daemonize() -> io::Result<Daemon> {
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let (rd, wr) = (File::from(rd), File::from(wr));
    // SAFETY: the process is single-threaded here (documented contract), so
    // the child may go on running Rust code after fork.
    match unsafe { libc::fork() } {
        -1 => return Err(io::Error::last_os_error()),
        0 => {}
        _ => {
            drop(wr);
            let mut rd = rd;
            let mut status = [1u8];
            let ok = matches!(rd.read(&mut status), Ok(1)) && status[0] == 0;
            // SAFETY: _exit ends the process without running Rust code that
            // could touch state shared with the child.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
    }
    drop(rd);
    rustix::process::setsid()?;
    // A second fork so the daemon is not a session leader and never gets a
    // controlling terminal back.
    // SAFETY: still single-threaded.
    match unsafe { libc::fork() } {
        -1 => return Err(io::Error::last_os_error()),
        0 => {}
        // SAFETY: as above; the grandchild holds the pipe.
        _ => unsafe { libc::_exit(0) },
    }
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o027));
    // SAFETY: SIG_IGN installs no handler, so no code of ours runs in
    // signal context.
    unsafe {
        libc::signal(libc::SIGTSTP, libc::SIG_IGN);
        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        libc::signal(libc::SIGTTIN, libc::SIG_IGN);
    }
    Ok(Daemon { ready: wr })
}

impl Daemon {
    /// Set-up is complete: moves to `/`, points stdin, stdout and stderr
    /// at `/dev/null`, and lets the parent exit 0.
    pub fn ready(mut self) -> io::Result<()> {
        std::env::set_current_dir("/")?;
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        rustix::stdio::dup2_stdin(&null)?;
        rustix::stdio::dup2_stdout(&null)?;
        rustix::stdio::dup2_stderr(&null)?;
        self.ready.write_all(&[0])
    }
}

/// A `-pidfile`, locked and kept open while the process lives.
pub struct PidFile {
    /// Absolute path, to remove it after a `chdir`.
    path: PathBuf,
    _file: File,
}

/// Holds the pid file until exit.
static PIDFILE: Mutex<Option<PidFile>> = Mutex::new(None);

/// Writes the pid file as QEMU does: created 0600, locked (a second
/// instance fails), truncated, `PID\n`. `Err` is QEMU's text after
/// `cannot create PID file: `.
pub fn write_pidfile(path: &str) -> Result<(), String> {
    loop {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| format!("Could not create '{path}': {}", os_message(&e)))?;
        let ino = file
            .metadata()
            .map_err(|e| format!("Cannot stat file: {}", os_message(&e)))?;
        // The whole file, failing at once if another process holds it (as
        // lockf's F_TLOCK from offset 0).
        let lock =
            rustix::fs::fcntl_lock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        if let Err(e) = lock {
            return Err(format!("Cannot lock pid file: {}", os_message(&e.into())));
        }
        // The file may have been replaced between open and lock by another
        // instance cleaning up: lock the one on disk.
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(m) if m.ino() == ino.ino() && m.dev() == ino.dev() => {}
            _ => continue,
        }
        file.set_len(0)
            .map_err(|e| format!("Failed to truncate pid file: {}", os_message(&e)))?;
        (&file)
            .write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(|e| format!("Failed to write pid file: {}", os_message(&e)))?;
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
        *PIDFILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(PidFile { path, _file: file });
        return Ok(());
    }
}

/// Removes the pid file (at exit).
pub fn remove_pidfile() {
    if let Some(p) = PIDFILE.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = std::fs::remove_file(&p.path);
    }
}

fn term_sigset() -> libc::sigset_t {
    vmm_sys_util::signal::create_sigset(&TERM_SIGNALS)
        .expect("SIGINT, SIGTERM and SIGHUP are valid signal numbers")
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and every
/// thread it creates later): call before any thread exists. The vCPU kick
/// signal is left alone.
pub fn block_term_signals() {
    for s in TERM_SIGNALS {
        // Fails only for a signal already blocked, which is as good.
        let _ = vmm_sys_util::signal::block_signal(s);
    }
}

/// Starts the thread that turns a terminating signal into [`Cause::Signal`].
pub fn watch_signals(exit: Arc<ExitSignal>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("qchar-signals".into())
        .spawn(move || {
            let set = term_sigset();
            loop {
                // SAFETY: a zeroed siginfo_t is a valid output buffer.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                // SAFETY: `set` and `info` are valid for the call.
                let signo = unsafe { libc::sigwaitinfo(&set, &mut info) };
                if signo < 0 {
                    continue;
                }
                // SAFETY: for signals sent by kill(2) and the terminal the
                // kernel fills the sender fields (0 for the kernel).
                let pid = unsafe { info.si_pid() };
                if !SETUP_DONE.load(Ordering::SeqCst) {
                    crate::report::error(&signal_message(signo, pid));
                    remove_pidfile();
                    std::process::exit(0);
                }
                exit.post(Cause::Signal { signo, pid });
            }
        })
        .map(|_| ())
}

/// QEMU's message for a terminating signal (after `PROG: `).
pub fn signal_message(signo: i32, pid: i32) -> String {
    if pid <= 0 {
        return format!("terminating on signal {signo}");
    }
    let name = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|b| {
            let first = b.split(|&c| c == 0).next()?.to_vec();
            (!first.is_empty()).then(|| String::from_utf8_lossy(&first).into_owned())
        })
        .unwrap_or_else(|| "<unknown process>".into());
    format!("terminating on signal {signo} from pid {pid} ({name})")
}

/// Sets the process name (`-name ...,process=NAME`), as `ps -o comm`
/// shows it.
pub fn set_process_name(name: &str) {
    if let Ok(c) = CString::new(name) {
        // PR_SET_NAME names the calling (main) thread, which `ps -o comm`
        // shows; the kernel keeps the first 15 bytes.
        let _ = rustix::thread::set_name(&c);
    }
}

/// Set-up has finished: from now on a terminating signal is handled by
/// `main` (before, the signal thread ends the process itself, so that Ctrl-C
/// works while a server socket waits for its first client).
pub fn setup_done() {
    SETUP_DONE.store(true, Ordering::SeqCst);
}

static SETUP_DONE: AtomicBool = AtomicBool::new(false);
