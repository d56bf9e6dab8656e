//! What the hostile-input tests of the chardev and monitor crates share:
//! peak-RSS measurement of this process, the lock that runs them one at a
//! time (RSS is per process), and the well-behaved neighbour whose traffic
//! must go on untouched while a flood runs (an echo chardev and its
//! client). The monitor's tests include this file by path.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use qchar_chardev::{CharFrontend, FrontendHandlers};

pub const MIB: u64 = 1 << 20;

static SERIAL: Mutex<()> = Mutex::new(());

/// Held for a whole test: the tests of a file run one at a time.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ----- memory ------------------------------------------------------------

/// A `kB` field of /proc/self/status, in KiB.
pub fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

/// Resident set size now, in bytes.
pub fn rss_now() -> u64 {
    status_kib("VmRSS:") * 1024
}

/// Resets the kernel's peak-RSS mark (`VmHWM`) to the current RSS.
pub fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
}

/// The peak RSS since the last [`reset_peak`], in bytes.
pub fn peak() -> u64 {
    status_kib("VmHWM:") * 1024
}

/// Runs `f` and returns how far the peak RSS rose above the RSS before.
pub fn peak_growth(f: impl FnOnce()) -> u64 {
    reset_peak();
    let before = rss_now();
    f();
    peak().saturating_sub(before)
}

// ----- the neighbour -----------------------------------------------------

/// Writes back what it reads; holds what the output queue did not take and
/// pauses input until `write_ready`.
pub struct Echo {
    pub fe: CharFrontend,
    pub pending: Vec<u8>,
}

impl FrontendHandlers for Echo {
    fn can_read(&mut self) -> usize {
        if self.pending.is_empty() {
            4096
        } else {
            0
        }
    }
    fn read(&mut self, data: &[u8]) {
        let n = self.fe.write(data);
        self.pending.extend_from_slice(&data[n..]);
    }
    fn write_ready(&mut self) {
        let n = self.fe.write(&self.pending);
        self.pending.drain(..n);
        if self.pending.is_empty() {
            self.fe.accept_input();
        }
    }
}

/// A well-behaved client of the echo chardev, running until stopped:
/// sends numbered blocks and checks each comes back exactly.
pub struct EchoTraffic {
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
    join: JoinHandle<()>,
}

impl EchoTraffic {
    /// Starts the traffic over `s`, a connection to the echo chardev.
    pub fn start(mut s: UnixStream) -> EchoTraffic {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let (stop2, bytes2) = (stop.clone(), bytes.clone());
        let join = std::thread::spawn(move || {
            let mut r = s.try_clone().unwrap();
            let mut block = 0u64;
            // At least a few blocks, however fast the flood ends.
            while !stop2.load(Ordering::SeqCst) || block < 4 {
                let sent: Vec<u8> = (0..8192u64)
                    .map(|i| (i.wrapping_mul(31) ^ block.wrapping_mul(7)) as u8)
                    .collect();
                s.write_all(&sent).unwrap();
                let mut got = vec![0u8; sent.len()];
                r.read_exact(&mut got)
                    .expect("echo chardev stopped answering");
                assert_eq!(got, sent, "echo chardev block {block} changed");
                bytes2.fetch_add(sent.len() as u64, Ordering::SeqCst);
                block += 1;
            }
        });
        EchoTraffic { stop, bytes, join }
    }

    /// Stops and returns the bytes that went through, verified.
    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.join.join().expect("echo traffic failed");
        self.bytes.load(Ordering::SeqCst)
    }
}
