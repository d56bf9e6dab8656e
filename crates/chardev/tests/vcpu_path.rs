//! The calls a vCPU thread makes (a UART's THR write, its line settings, an
//! MSR read) never wait for the chardev I/O thread, and that thread never
//! waits for a log file (`logfile.rs` writes logs on a thread of its own).
//! One test in this binary: it looks for the registry's I/O thread among
//! the process's threads.

mod support;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use qchar_chardev::spec::{ChardevBackend, ChardevCommon, ChardevHostdev};
use qchar_chardev::{Registry, SerialIoctl, SerialParams};
use qchar_testkit::{mkfifo, openpty, wait_until};
use support::Recorder;

/// Bytes waiting in a pipe.
fn unread(f: &File) -> u64 {
    rustix::io::ioctl_fionread(f).expect("FIONREAD")
}

/// Whether a thread named `qchar-io` sleeps in a pipe write.
fn io_thread_in_pipe_write() -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    tasks.flatten().any(|t| {
        let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
        read("comm").trim() == "qchar-io" && read("wchan").contains("pipe_write")
    })
}

/// Regression test: `CharFrontend::write` checked that the frontend is
/// current under the chardev's state lock, and `ioctl` ran the backend
/// call under it, while the I/O thread held that lock across the backend's
/// write and the log-file write. A log file on a FIFO whose reader stalls
/// held every THR write and MSR read of the guest for as long. Since the
/// log moved off the I/O thread, the stalled log holds nothing at all.
#[test]
fn write_and_ioctl_return_while_a_log_fifo_is_stalled() {
    let dir = tempfile::tempdir().unwrap();
    let (master, slave) = openpty();
    // The pty's far end reads everything: the serial backend never waits.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        rustix::fs::fcntl_setfl(&master, rustix::fs::OFlags::NONBLOCK).unwrap();
        let mut m = File::from(master);
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if !matches!(m.read(&mut buf), Ok(n) if n > 0) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    // The log: a FIFO nobody reads until the end.
    let log = dir.path().join("log.fifo");
    mkfifo(&log);
    let mut log_reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&log)
        .unwrap();
    let reg = Registry::new().unwrap();
    reg.add(
        "s",
        ChardevBackend::Serial(ChardevHostdev {
            common: ChardevCommon {
                logfile: Some(log.to_string_lossy().into_owned()),
                ..Default::default()
            },
            device: slave,
        }),
    )
    .unwrap();
    let fe = reg.attach("s").unwrap();
    let (rec, _seen) = Recorder::new(true);
    fe.set_handlers(Box::new(rec));
    // A guest printing, until the FIFO and the log's buffer are full.
    let printing = Arc::new(AtomicBool::new(true));
    let printer = {
        let (fe, printing) = (fe.clone(), printing.clone());
        std::thread::spawn(move || {
            let chunk = vec![b'x'; 4096];
            while printing.load(Ordering::Relaxed) {
                if fe.write(&chunk) == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    // The log falls behind; the I/O thread never waits for it (it used to
    // sleep in the FIFO's write, holding the state lock).
    wait_until("the log stalled", || {
        unread(&log_reader) > 0 && reg.stats("s").unwrap().log_dropped > 0
    });
    assert!(
        !io_thread_in_pipe_write(),
        "the I/O thread waits for the log"
    );

    let (tx, rx) = mpsc::channel();
    let vcpu = {
        let fe = fe.clone();
        std::thread::spawn(move || {
            let wrote = fe.write(b"!");
            let set = fe.ioctl(SerialIoctl::SetParams(SerialParams::default()));
            let get = fe.ioctl(SerialIoctl::GetModem);
            let _ = (wrote, set, get);
            tx.send(()).unwrap();
        })
    };
    let answered = rx.recv_timeout(Duration::from_secs(10));
    // Unstick the I/O thread whatever happened, then check.
    let mut buf = vec![0u8; 65536];
    wait_until("the vCPU thread's calls returned", || {
        let _ = log_reader.read(&mut buf);
        vcpu.is_finished()
    });
    printing.store(false, Ordering::Relaxed);
    wait_until("the printer stopped", || {
        let _ = log_reader.read(&mut buf);
        printer.is_finished()
    });
    assert!(
        answered.is_ok(),
        "write/ioctl waited for the I/O thread's log write"
    );
    fe.detach();
    stop.store(true, Ordering::Relaxed);
    let drained = Arc::new(AtomicBool::new(false));
    let shut = {
        let drained = drained.clone();
        let reg = reg.clone();
        std::thread::spawn(move || {
            reg.shutdown();
            drained.store(true, Ordering::Relaxed);
        })
    };
    wait_until("shutdown", || {
        let _ = log_reader.read(&mut buf);
        drained.load(Ordering::Relaxed)
    });
    shut.join().unwrap();
    reader.join().unwrap();
}
