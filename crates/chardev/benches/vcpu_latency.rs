//! What a vCPU thread waits for in the chardev calls a UART makes: the
//! latency of `CharFrontend::write` (a THR write) and of
//! `ioctl(GetModem)` (an MSR read), one call every 10 us as a guest
//! printing fast would make them, while the I/O thread deals with a slow
//! peer. Latency per call, p50 / p99 / max.
//!
//! Cases:
//! - `serial` backend on a pty (a host serial line, its master read at once)
//!   with `logfile=` a FIFO whose reader takes 256 bytes every 10 ms, less
//!   than the guest writes (the log falls behind, off the I/O thread since
//!   `logfile.rs`; it used to block that thread);
//! - a unix socket server whose client reads 256 bytes every 10 ms.
//!
//! A stall is one call, so stalls are rare among calls: besides p50 and
//! p99, the table gives p99.9, the calls that took over 1 ms and the time
//! they took in all, and how often the calling thread went to sleep
//! (voluntary context switches: waiting for a lock, say) as against being
//! descheduled, which on a busy machine makes stalls of its own.
//!
//! `cargo bench -p qchar-chardev --bench vcpu_latency`; `QCHAR_VCPU_CALLS`
//! (default 400000) calls per case.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qchar_chardev::spec::{
    ChardevBackend, ChardevCommon, ChardevHostdev, ChardevSocket, SocketAddressLegacy,
};
use qchar_chardev::{CharFrontend, FrontendHandlers, Registry, SerialIoctl};
use qchar_testkit::{env_num, mkfifo, openpty};

/// Time between two calls of the "vCPU".
const PACE: Duration = Duration::from_micros(10);
/// The slow reader: this many bytes every `SLOW_EVERY` (25.6 KB/s, a
/// quarter of what the "vCPU" writes).
const SLOW_BYTES: usize = 256;
const SLOW_EVERY: Duration = Duration::from_millis(10);

/// A frontend that follows changes and ignores input.
struct Device;
impl FrontendHandlers for Device {
    fn can_read(&mut self) -> usize {
        4096
    }
    fn read(&mut self, _: &[u8]) {}
}

/// Reads `r` slowly (`SLOW_BYTES` every `SLOW_EVERY`) until `fast` is set,
/// then as fast as it can until end of file or `stop`.
fn slow_reader(
    mut r: impl Read + Send + 'static,
    fast: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            let want = if fast.load(Ordering::Relaxed) {
                buf.len()
            } else {
                SLOW_BYTES
            };
            match r.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
            if !fast.load(Ordering::Relaxed) {
                std::thread::sleep(SLOW_EVERY);
            } else {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    })
}

/// Reads `r` at once, all of it, until end of file or `stop`.
fn fast_reader(mut r: File, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(_) => break,
            }
        }
    })
}

/// Nanoseconds per call, sorted.
#[derive(Default)]
struct Samples(Vec<u64>);

/// The calling thread's (voluntary, involuntary) context switches so far.
fn switches() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        field("voluntary_ctxt_switches:"),
        field("nonvoluntary_ctxt_switches:"),
    )
}

impl Samples {
    fn row(&mut self, case: &str, (vol, invol): (u64, u64)) {
        self.0.sort_unstable();
        let n = self.0.len();
        let at = |q: f64| self.0[((n as f64 * q) as usize).min(n - 1)] as f64 / 1e3;
        let max = *self.0.last().unwrap() as f64 / 1e3;
        let stalls: Vec<u64> = self.0.iter().copied().filter(|&v| v > 1_000_000).collect();
        let stalled_ms = stalls.iter().sum::<u64>() as f64 / 1e6;
        println!(
            "{case:<46} {n:>7} {:>8.2} {:>8.2} {:>9.2} {max:>10.1} {:>7} {stalled_ms:>10.1} \
             {vol:>6} {invol:>6}",
            at(0.50),
            at(0.99),
            at(0.999),
            stalls.len(),
        );
        println!(
            "RESULT vcpu_latency case={case:?} p50_us={:.2} p99_us={:.2} p999_us={:.2} \
             max_us={max:.1} stalls_over_1ms={} stalled_ms={stalled_ms:.1} \
             voluntary_switches={vol} involuntary_switches={invol}",
            at(0.50),
            at(0.99),
            at(0.999),
            stalls.len(),
        );
    }
}

/// Makes `calls` paced calls; `modem` also times a GetModem after each
/// write. Returns the samples and the context switches the calling thread
/// made meanwhile.
fn drive(fe: &CharFrontend, calls: usize, modem: bool) -> (Samples, Samples, (u64, u64)) {
    let (mut w, mut m) = (Samples::default(), Samples::default());
    let before = switches();
    let mut next = Instant::now();
    for i in 0..calls {
        let b = [b'a' + (i % 26) as u8];
        let t = Instant::now();
        let _ = fe.write(&b);
        w.0.push(t.elapsed().as_nanos() as u64);
        if modem {
            let t = Instant::now();
            let _ = fe.ioctl(SerialIoctl::GetModem);
            m.0.push(t.elapsed().as_nanos() as u64);
        }
        // The pace, without catching up after a stall.
        next = (next + PACE).max(Instant::now());
        while Instant::now() < next {
            std::hint::spin_loop();
        }
    }
    let after = switches();
    (w, m, (after.0 - before.0, after.1 - before.1))
}

fn main() {
    let calls = env_num("QCHAR_VCPU_CALLS", 400_000);
    let dir = tempfile::tempdir().unwrap();
    println!("vCPU-side call latency, one call every {PACE:?}, {calls} calls per case");
    println!(
        "{:<46} {:>7} {:>8} {:>8} {:>9} {:>10} {:>7} {:>10} {:>6} {:>6}",
        "case",
        "calls",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "max us",
        ">1 ms",
        "stalled ms",
        "vol cs",
        "inv cs"
    );
    println!("(vol cs / inv cs: the calling thread's context switches over the whole case)");

    // 1. serial line on a pty, log file on a slowly read FIFO.
    {
        let reg = Registry::new().unwrap();
        let (master, slave) = openpty();
        let log = dir.path().join("log.fifo");
        mkfifo(&log);
        // A reader first, so that the registry's open for writing does not
        // wait.
        let log_r = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&log)
            .unwrap();
        let (fast, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        rustix::fs::fcntl_setfl(&master, rustix::fs::OFlags::NONBLOCK).unwrap();
        let pty_thread = fast_reader(File::from(master), stop.clone());
        let spec = ChardevBackend::Serial(ChardevHostdev {
            common: ChardevCommon {
                logfile: Some(log.to_string_lossy().into_owned()),
                ..Default::default()
            },
            device: slave,
        });
        reg.add("s", spec).unwrap();
        // Only now: before the registry opened it, a read of the FIFO ends
        // (no writer yet).
        let log_thread = slow_reader(log_r, fast.clone(), stop.clone());
        let fe = reg.attach("s").unwrap();
        fe.set_handlers(Box::new(Device));
        let (mut w, mut m, cs) = drive(&fe, calls, true);
        w.row("serial (pty), slow log FIFO: write", cs);
        m.row("serial (pty), slow log FIFO: ioctl(GetModem)", cs);
        fast.store(true, Ordering::Relaxed);
        fe.detach();
        drop(fe);
        reg.shutdown();
        stop.store(true, Ordering::Relaxed);
        let _ = log_thread.join();
        let _ = pty_thread.join();
    }

    // 2. unix socket server, client reads slowly.
    {
        let reg = Registry::new().unwrap();
        let path = dir.path().join("s.sock");
        reg.add(
            "u",
            ChardevBackend::Socket(ChardevSocket::new(
                SocketAddressLegacy::unix(path.to_string_lossy()),
                true,
            )),
        )
        .unwrap();
        let fe = reg.attach("u").unwrap();
        fe.set_handlers(Box::new(Device));
        let client = UnixStream::connect(&path).unwrap();
        client.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !fe.is_open() {
            assert!(Instant::now() < deadline, "the client never connected");
            std::thread::sleep(Duration::from_millis(1));
        }
        let (fast, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let t = slow_reader(client.try_clone().unwrap(), fast.clone(), stop.clone());
        let (mut w, _, cs) = drive(&fe, calls, false);
        w.row("unix socket, slow client: write", cs);
        fast.store(true, Ordering::Relaxed);
        fe.detach();
        drop(fe);
        reg.shutdown();
        stop.store(true, Ordering::Relaxed);
        drop(client);
        let _ = t.join();
    }
    let _ = std::io::stdout().flush();
}
