//! A chardev's log file (`logfile=`): a copy of every byte that leaves its
//! output queue, with qchar's rotation (`x-logsize`, `x-logkeep`) and line
//! timestamps (`x-logtimestamp`).
//!
//! The I/O thread never writes a log itself. It copies the bytes into the
//! log's bounded buffer ([`LOG_BUFFER`]) and goes on; the registry's log
//! writer thread (`qchar-log`, started with the first log) writes them
//! out, renames and reopens files when they rotate, and waits for a slow
//! reader of a FIFO without holding anything else up. So a slow disk, a
//! rotation, or a FIFO nobody reads costs the I/O thread a memory copy and
//! never stalls a guest or another chardev.
//!
//! When the log cannot keep up (its buffer is full) bytes are dropped,
//! counted (`log-dropped` in `x-query-chardev-stats`) and announced in the
//! log by a marker line `[qchar: N bytes not logged]` once a quarter of the
//! buffer is free again. The console itself loses nothing: the log never
//! holds the backend back.
//!
//! Rotation: before a write would make `PATH` larger than `x-logsize`,
//! `PATH.N-1` becomes `PATH.N` and so on, `PATH` becomes `PATH.1` and a new
//! `PATH` is opened; `tail -F PATH` follows. A cut falls after the last
//! complete line that fits, so a line is split only when it alone is longer
//! than `x-logsize`. `logappend=on` continues an existing `PATH` (its size
//! counts). A log file that is open already (this chardev's before a
//! change, or another chardev's) is continued where it is, never truncated
//! under its writer.

// Hand-written: rotation that keeps `tail -F` working, fed through a
// bounded buffer from the I/O thread; the logging crates write on the
// caller's thread and know neither FIFOs nor QEMU's `logappend`.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::sync::{oneshot, Notify};

use crate::error::{ChardevError, Result};
use crate::fdset::{DupLease, FdSets, FDSET_PREFIX};
use crate::spec::ChardevCommon;

/// Bytes a log may hold that its writer has not written yet.
pub const LOG_BUFFER: usize = 1 << 20;
/// Most rotated files a log keeps (`x-logkeep`).
pub const MAX_LOGKEEP: u64 = 1000;
/// How much the writer takes from a buffer at a time.
const CHUNK: usize = 64 * 1024;
/// How long the registry's shutdown waits for logs to be written out.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a log rotates: before it would exceed `size` bytes (none: never),
/// keeping `keep` old files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rotate {
    size: Option<u64>,
    keep: u32,
}

/// A chardev's `logfile=` and qchar's options for it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogSpec {
    path: String,
    append: bool,
    rotate: Rotate,
    timestamp: bool,
}

impl LogSpec {
    /// The log a backend's common options ask for, `None` without
    /// `logfile`. Refuses qchar's log options where they make no sense, so
    /// that a change that cannot succeed leaves no trace.
    pub(crate) fn from_common(c: &ChardevCommon) -> Result<Option<LogSpec>> {
        let invalid = |s: &str| Err(ChardevError::Invalid(s.to_string()));
        let Some(path) = &c.logfile else {
            if c.logsize.is_some() {
                return invalid("x-logsize needs logfile");
            }
            if c.logkeep.is_some() {
                return invalid("x-logkeep needs logfile");
            }
            if c.logtimestamp == Some(true) {
                return invalid("x-logtimestamp needs logfile");
            }
            return Ok(None);
        };
        if c.logkeep.is_some() && c.logsize.is_none() {
            return invalid("x-logkeep needs x-logsize");
        }
        if c.logsize == Some(0) {
            return invalid("x-logsize must be at least 1");
        }
        let keep = c.logkeep.unwrap_or(1);
        if keep > MAX_LOGKEEP {
            return Err(ChardevError::Invalid(format!(
                "x-logkeep must be at most {MAX_LOGKEEP}"
            )));
        }
        Ok(Some(LogSpec {
            path: path.clone(),
            append: c.logappend.unwrap_or(false),
            rotate: Rotate {
                size: c.logsize,
                keep: keep as u32,
            },
            timestamp: c.logtimestamp.unwrap_or(false),
        }))
    }
}

/// What the buffer of one log file holds, under its lock.
struct LogState {
    buf: VecDeque<u8>,
    /// [`LogSink`]s writing into it; the file closes once none is left and
    /// the buffer is written.
    handles: usize,
    /// Bytes dropped since the buffer filled, not yet announced.
    skipped: u64,
    /// The last byte appended ended a line (or nothing was appended yet).
    line_start: bool,
    /// The rotation of the sink that appended last.
    rotate: Rotate,
}

/// One open log file: its buffer and its writer's wake-up.
struct LogFile {
    key: PathBuf,
    st: Mutex<LogState>,
    wake: Notify,
}

impl LogFile {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        lock(&self.st)
    }
}

/// A backend's handle on its log file: see the module documentation.
/// Dropping it (the backend retires) lets the writer finish the buffer and
/// close the file, unless another sink continues it.
pub(crate) struct LogSink {
    file: Arc<LogFile>,
    rotate: Rotate,
    timestamp: bool,
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSink")
            .field("file", &self.file.key)
            .finish()
    }
}

impl LogSink {
    /// Copies `data` into the log's buffer, without waiting. Returns how
    /// many bytes were not logged because the buffer is full.
    pub(crate) fn append(&self, data: &[u8]) -> u64 {
        if data.is_empty() {
            return 0;
        }
        let mut st = self.file.lock();
        st.rotate = self.rotate;
        let stamped;
        let bytes: &[u8] = if self.timestamp {
            stamped = stamp(data, &mut st.line_start);
            &stamped
        } else {
            st.line_start = data.last() == Some(&b'\n');
            data
        };
        if st.skipped > 0 {
            if LOG_BUFFER - st.buf.len().min(LOG_BUFFER) < LOG_BUFFER / 4 {
                st.skipped += bytes.len() as u64;
                return bytes.len() as u64;
            }
            let marker = format!("\r\n[qchar: {} bytes not logged]\r\n", st.skipped);
            st.buf.extend(marker.as_bytes());
            st.skipped = 0;
        }
        let free = LOG_BUFFER.saturating_sub(st.buf.len());
        let n = free.min(bytes.len());
        st.buf.extend(&bytes[..n]);
        let lost = (bytes.len() - n) as u64;
        st.skipped += lost;
        drop(st);
        if n > 0 {
            self.file.wake.notify_one();
        }
        lost
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        let last = {
            let mut st = self.file.lock();
            st.handles -= 1;
            st.handles == 0
        };
        if last {
            self.file.wake.notify_one();
        }
    }
}

/// Copies `data` with a timestamp (RFC 3339, UTC, milliseconds) in front
/// of each line; `line_start` carries the state from one call to the next.
fn stamp(data: &[u8], line_start: &mut bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    let mut prefix: Option<String> = None;
    for &b in data {
        if *line_start {
            let p = prefix.get_or_insert_with(now_rfc3339);
            out.extend_from_slice(p.as_bytes());
            *line_start = false;
        }
        out.push(b);
        if b == b'\n' {
            *line_start = true;
        }
    }
    out
}

/// `2025-06-01T12:34:56.789Z ` for now.
fn now_rfc3339() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z ",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The writer thread of a registry's logs, started with the first log.
struct WriterThread {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    join: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct LoggerInner {
    /// Open log files by absolute path.
    files: Mutex<HashMap<PathBuf, Arc<LogFile>>>,
    /// Signalled when a log file closes.
    closed: Condvar,
    /// `None` until the first log; `Err(())` after shutdown.
    thread: Mutex<Option<std::result::Result<WriterThread, ()>>>,
}

/// The log files of one registry and their writer thread.
#[derive(Default, Clone)]
pub(crate) struct Logger {
    inner: Arc<LoggerInner>,
}

impl Logger {
    /// Opens (or continues) the log `spec` names, on the caller's thread so
    /// that errors come back at once, in QEMU's words for an open failure.
    /// A FIFO is opened without waiting for its reader: with none there,
    /// this fails (`No such device or address`) where QEMU would hang.
    /// `/dev/fdset/N` duplicates a member of set N of `fdsets`, as QEMU.
    pub(crate) fn open(&self, spec: &LogSpec, fdsets: &FdSets) -> Result<LogSink> {
        let key = std::path::absolute(&spec.path).unwrap_or_else(|_| PathBuf::from(&spec.path));
        let mut files = lock(&self.inner.files);
        if let Some(file) = files.get(&key) {
            file.lock().handles += 1;
            return Ok(LogSink {
                file: file.clone(),
                rotate: spec.rotate,
                timestamp: spec.timestamp,
            });
        }
        // The file first: a log that cannot open starts no thread.
        let target = open_target(spec, fdsets)?;
        let handle = self.writer_thread()?;
        let file = Arc::new(LogFile {
            key: key.clone(),
            st: Mutex::new(LogState {
                buf: VecDeque::new(),
                handles: 1,
                skipped: 0,
                line_start: true,
                rotate: spec.rotate,
            }),
            wake: Notify::new(),
        });
        files.insert(key, file.clone());
        handle.spawn(write_out(self.inner.clone(), file.clone(), target));
        Ok(LogSink {
            file,
            rotate: spec.rotate,
            timestamp: spec.timestamp,
        })
    }

    /// The writer thread's runtime, started if need be.
    fn writer_thread(&self) -> Result<tokio::runtime::Handle> {
        let mut t = lock(&self.inner.thread);
        match &*t {
            Some(Ok(w)) => return Ok(w.handle.clone()),
            Some(Err(())) => return Err(ChardevError::Shutdown),
            None => {}
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ChardevError::io("cannot start the log writer", e))?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let join = std::thread::Builder::new()
            .name("qchar-log".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| ChardevError::io("cannot start the log writer", e))?;
        *t = Some(Ok(WriterThread {
            handle: handle.clone(),
            stop: Some(stop),
            join: Some(join),
        }));
        Ok(handle)
    }

    /// Waits (at most [`SHUTDOWN_WAIT`]) until every log whose sinks are
    /// gone is written out, then stops the writer thread; later opens fail.
    /// A log still open, or one whose FIFO nobody reads, is cut short.
    pub(crate) fn shutdown(&self) {
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        let mut files = lock(&self.inner.files);
        loop {
            let writing = files.values().any(|f| f.lock().handles == 0);
            let now = Instant::now();
            if !writing || now >= deadline {
                break;
            }
            files = self
                .inner
                .closed
                .wait_timeout(files, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if !files.is_empty() {
            log::warn!(
                "{} log file(s) not written out at shutdown: {:?}",
                files.len(),
                files.keys().collect::<Vec<_>>()
            );
        }
        files.clear();
        drop(files);
        let w = lock(&self.inner.thread).replace(Err(()));
        if let Some(Ok(mut w)) = w {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
            }
            if let Some(j) = w.join.take() {
                if j.thread().id() != std::thread::current().id() {
                    let _ = j.join();
                }
            }
        }
    }
}

/// An opened log: a regular file (written with blocking writes on the
/// writer thread, rotated) or anything else (a FIFO, a terminal: written
/// when it is ready, never rotated).
struct Target {
    file: File,
    /// Counts a duplicate out of a descriptor set open while the writer
    /// has it.
    lease: Option<DupLease>,
    regular: bool,
    size: u64,
    path: String,
}

fn open_target(spec: &LogSpec, fdsets: &FdSets) -> Result<Target> {
    let path = &spec.path;
    if path.starts_with(FDSET_PREFIX) {
        return open_fdset_target(spec, fdsets);
    }
    let mut o = OpenOptions::new();
    o.write(true).create(true).custom_flags(libc::O_NONBLOCK);
    if spec.append {
        o.append(true);
    } else {
        o.truncate(true);
    }
    // QEMU creates the log file: its message says so.
    let open_err = |e| ChardevError::io(format!("Could not create '{path}'"), e);
    let file = o.open(path).map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    let regular = meta.is_file();
    if !regular && spec.rotate.size.is_some() {
        return Err(ChardevError::Invalid(format!(
            "x-logsize needs a regular file, and '{path}' is not one"
        )));
    }
    Ok(Target {
        file,
        lease: None,
        regular,
        size: if regular { meta.len() } else { 0 },
        path: path.clone(),
    })
}

/// `/dev/fdset/N`: a duplicate of a write-only member of set N, with QEMU's
/// flags and its wording (the flags in hex). Such a log cannot rotate (it
/// has no path to rename).
fn open_fdset_target(spec: &LogSpec, fdsets: &FdSets) -> Result<Target> {
    let path = &spec.path;
    if crate::fdset::parse_fd(&path[FDSET_PREFIX.len()..]).is_none() {
        return Err(ChardevError::Invalid(format!(
            "Could not parse fdset {path}"
        )));
    }
    if spec.rotate.size.is_some() {
        return Err(ChardevError::Invalid(format!(
            "x-logsize needs a path it can rename, and '{path}' is a descriptor set"
        )));
    }
    let flags = crate::backend::file::out_flags(spec.append);
    let dup = fdsets.open(path, flags).map_err(|e| {
        ChardevError::io(
            format!("Could not dup FD for {path} flags {:x}", flags.bits()),
            e,
        )
    })?;
    let file = File::from(dup.fd);
    let meta = file
        .metadata()
        .map_err(|e| ChardevError::io(format!("Could not dup FD for {path}"), e))?;
    let regular = meta.is_file();
    if !regular {
        // Written when it is ready (see `Out::Stream`), never waited on.
        let fl = rustix::fs::fcntl_getfl(&file)
            .map_err(|e| ChardevError::io(format!("Could not dup FD for {path}"), e.into()))?;
        rustix::fs::fcntl_setfl(&file, fl | rustix::fs::OFlags::NONBLOCK)
            .map_err(|e| ChardevError::io(format!("Could not dup FD for {path}"), e.into()))?;
    }
    Ok(Target {
        file,
        lease: Some(dup.lease),
        regular,
        size: if regular { meta.len() } else { 0 },
        path: path.clone(),
    })
}

/// The writer of one log file, on the writer thread: takes what the
/// buffer holds and writes it out until the sinks are gone and the buffer
/// is empty.
async fn write_out(logger: Arc<LoggerInner>, file: Arc<LogFile>, mut target: Target) {
    // Given back when the writer is done, just before the file closes, so
    // that once the duplicate is seen closed its set has been told.
    let lease = target.lease.take();
    let mut out = match Out::new(target) {
        Ok(o) => o,
        Err((path, e)) => {
            log::error!("log file '{path}' cannot be written: {e}");
            Out::Broken
        }
    };
    let mut chunk = Vec::with_capacity(CHUNK);
    loop {
        let rotate = {
            let mut st = file.lock();
            chunk.clear();
            let n = st.buf.len().min(CHUNK);
            chunk.extend(st.buf.drain(..n));
            if st.buf.is_empty() && st.buf.capacity() > 4 * CHUNK {
                // A burst is written: give its memory back.
                st.buf.shrink_to(CHUNK);
            }
            st.rotate
        };
        if chunk.is_empty() {
            if closes(&logger, &file) {
                break;
            }
            file.wake.notified().await;
            continue;
        }
        out.write(&chunk, rotate).await;
    }
    drop(lease);
    drop(out);
}

/// Whether the writer of `file` is done: no sink left and nothing to
/// write. Then the file leaves the registry's table, under the table's
/// lock, so that an `open` of the same path either continues this file
/// (before) or opens it anew (after).
fn closes(logger: &LoggerInner, file: &Arc<LogFile>) -> bool {
    let mut files = lock(&logger.files);
    {
        let st = file.lock();
        if st.handles > 0 || !st.buf.is_empty() {
            return false;
        }
    }
    if files.get(&file.key).is_some_and(|f| Arc::ptr_eq(f, file)) {
        files.remove(&file.key);
    }
    logger.closed.notify_all();
    true
}

/// Where the writer writes.
enum Out {
    File {
        file: File,
        path: String,
        size: u64,
        /// Rotation failed once (logged): the file grows on.
        no_rotate: bool,
        error_logged: bool,
    },
    Stream {
        fd: AsyncFd<File>,
        path: String,
        error_logged: bool,
    },
    /// Could not be set up (logged): bytes are dropped.
    Broken,
}

impl Out {
    fn new(t: Target) -> std::result::Result<Out, (String, io::Error)> {
        if t.regular {
            return Ok(Out::File {
                file: t.file,
                path: t.path,
                size: t.size,
                no_rotate: false,
                error_logged: false,
            });
        }
        let path = t.path;
        // SAFETY: the AsyncFd owns the File, so the descriptor stays open
        // and keeps its number for as long as the registration lives.
        match unsafe { AsyncFd::register(t.file) }.map_err(|e| e.into_parts()) {
            Ok(fd) => Ok(Out::Stream {
                fd,
                path,
                error_logged: false,
            }),
            // epoll refuses what is always ready (`/dev/null`, other
            // character devices without poll): plain writes, never
            // rotated (a size limit needs a regular file).
            Err((file, e)) if e.kind() == io::ErrorKind::PermissionDenied => Ok(Out::File {
                file,
                path,
                size: 0,
                no_rotate: true,
                error_logged: false,
            }),
            Err((_, e)) => Err((path, e)),
        }
    }

    async fn write(&mut self, data: &[u8], rotate: Rotate) {
        match self {
            Out::File { .. } => self.write_file(data, rotate),
            Out::Stream {
                fd,
                path,
                error_logged,
            } => {
                let mut rest = data;
                while !rest.is_empty() {
                    let Ok(mut guard) = fd.writable().await else {
                        return;
                    };
                    match guard.try_io(|f| {
                        let mut w = f.get_ref();
                        w.write(rest)
                    }) {
                        Ok(Ok(n)) => rest = &rest[n..],
                        Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                        Ok(Err(e)) => {
                            if !std::mem::replace(error_logged, true) {
                                log::error!("log file '{path}': write failed, log lost: {e}");
                            }
                            return;
                        }
                        Err(_would_block) => {}
                    }
                }
            }
            Out::Broken => {}
        }
    }

    /// Writes `data` to a regular file, rotating as `rotate` says.
    fn write_file(&mut self, mut data: &[u8], rotate: Rotate) {
        let Out::File {
            file,
            path,
            size,
            no_rotate,
            error_logged,
        } = self
        else {
            return;
        };
        while !data.is_empty() {
            let n = match rotate.size {
                Some(max) if !*no_rotate && *size + data.len() as u64 > max => {
                    let room = max.saturating_sub(*size) as usize;
                    match data[..room.min(data.len())]
                        .iter()
                        .rposition(|&b| b == b'\n')
                    {
                        Some(i) => i + 1,
                        None if *size > 0 => {
                            match rotate_file(path, rotate.keep) {
                                Ok(f) => {
                                    *file = f;
                                    *size = 0;
                                }
                                Err(e) => {
                                    log::error!(
                                        "log file '{path}': cannot rotate ({e}); it grows on"
                                    );
                                    *no_rotate = true;
                                }
                            }
                            continue;
                        }
                        // One line longer than the limit: cut it.
                        None => room.max(1),
                    }
                }
                _ => data.len(),
            };
            if let Err(e) = file.write_all(&data[..n]) {
                if !std::mem::replace(error_logged, true) {
                    log::error!("log file '{path}': write failed, log lost: {e}");
                }
            }
            *size += n as u64;
            data = &data[n..];
        }
    }
}

/// Shifts `PATH.1..` up by one (dropping the oldest past `keep`), renames
/// `PATH` to `PATH.1` and opens a new, empty `PATH`. With `keep` 0 the old
/// file is removed instead.
fn rotate_file(path: &str, keep: u32) -> io::Result<File> {
    let numbered = |i: u32| format!("{path}.{i}");
    let ignore_missing = |r: io::Result<()>| match r {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    if keep == 0 {
        ignore_missing(std::fs::remove_file(path))?;
    } else {
        for i in (1..keep).rev() {
            ignore_missing(std::fs::rename(numbered(i), numbered(i + 1)))?;
        }
        ignore_missing(std::fs::rename(path, numbered(1)))?;
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(Path::new(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(log: &str) -> ChardevCommon {
        ChardevCommon {
            logfile: Some(log.into()),
            ..Default::default()
        }
    }

    #[test]
    fn options_are_checked() {
        let e = |c: ChardevCommon| LogSpec::from_common(&c).unwrap_err().to_string();
        let none = ChardevCommon::default;
        assert_eq!(
            e(ChardevCommon {
                logsize: Some(1),
                ..none()
            }),
            "x-logsize needs logfile"
        );
        assert_eq!(
            e(ChardevCommon {
                logkeep: Some(1),
                ..none()
            }),
            "x-logkeep needs logfile"
        );
        assert_eq!(
            e(ChardevCommon {
                logtimestamp: Some(true),
                ..none()
            }),
            "x-logtimestamp needs logfile"
        );
        assert_eq!(
            e(ChardevCommon {
                logkeep: Some(2),
                ..common("/l")
            }),
            "x-logkeep needs x-logsize"
        );
        assert_eq!(
            e(ChardevCommon {
                logsize: Some(0),
                ..common("/l")
            }),
            "x-logsize must be at least 1"
        );
        assert_eq!(
            e(ChardevCommon {
                logsize: Some(10),
                logkeep: Some(MAX_LOGKEEP + 1),
                ..common("/l")
            }),
            "x-logkeep must be at most 1000"
        );
        let s = LogSpec::from_common(&ChardevCommon {
            logsize: Some(10),
            ..common("/l")
        })
        .unwrap()
        .unwrap();
        assert_eq!(s.rotate.keep, 1, "one old file by default");
        assert!(LogSpec::from_common(&none()).unwrap().is_none());
    }

    #[test]
    fn timestamps_start_each_line() {
        let mut at_start = true;
        let out = stamp(b"ab\ncd", &mut at_start);
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.split('\n').collect();
        assert_eq!(lines.len(), 2);
        for (line, text) in lines.iter().zip(["ab", "cd"]) {
            let (ts, rest) = line.split_once(' ').unwrap();
            assert_eq!(rest, text);
            assert_eq!(ts.len(), "2025-06-01T12:34:56.789Z".len(), "{ts}");
            assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        }
        assert!(!at_start, "a line is open");
        let more = stamp(b"e\n", &mut at_start);
        assert_eq!(more, b"e\n", "no stamp in the middle of a line");
        assert!(at_start);
    }

    #[test]
    fn rotation_cuts_after_whole_lines_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let p = path.to_str().unwrap().to_string();
        let spec = LogSpec {
            path: p.clone(),
            append: false,
            rotate: Rotate {
                size: Some(10),
                keep: 2,
            },
            timestamp: false,
        };
        let mut out = Out::new(open_target(&spec, &FdSets::new()).unwrap()).unwrap();
        out.write_file(b"123\n456\n789\nabcdefghijklmnop\nq", spec.rotate);
        let read = |s: &str| std::fs::read_to_string(s).unwrap_or_default();
        // 123 456 | 789 | abcdefghij | klmnop q: the oldest went.
        assert_eq!(read(&p), "klmnop\nq");
        assert_eq!(read(&format!("{p}.1")), "abcdefghij");
        assert_eq!(read(&format!("{p}.2")), "789\n");
        assert!(!Path::new(&format!("{p}.3")).exists());
    }
}
