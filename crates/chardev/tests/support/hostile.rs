//! What the hostile-input tests of the chardev and monitor crates share:
//! the well-behaved neighbour whose traffic must go on untouched while a
//! flood runs (an echo chardev and its client). The monitor's tests include
//! this file by path; peak-RSS measurement and the lock that runs the tests
//! one at a time (RSS is per process) are in `qchar-testkit`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use qchar_chardev::{CharFrontend, FrontendHandlers};

pub const MIB: u64 = 1 << 20;

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
