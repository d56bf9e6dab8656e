//! Embedding qchar-chardev in a VMM: a console device on its own thread,
//! a management thread that moves the console to another backend while the
//! device prints, and a clean shutdown.
//!
//! `cargo run -p qchar-chardev --example embed` prints where the bytes went;
//! `cargo test` runs the same code as a test and checks that every byte
//! the device wrote arrived exactly once, in order, across the change.
//!
//! The wiring, in short:
//! - one [`Registry`] per VM owns the chardevs and their I/O thread;
//! - a device [`attach`](Registry::attach)es to its chardev and registers
//!   [`FrontendHandlers`], which the I/O thread calls;
//! - the device writes from its own thread with [`CharFrontend::write`],
//!   which never blocks: it takes what fits in the chardev's bounded queue,
//!   and `write_ready` says when there is room again (backpressure, as a
//!   UART holds its guest on a full transmitter);
//! - any other thread may call [`Registry::change`]; the device carries on,
//!   and hears of it through `backend_changed` only if it wants to re-apply
//!   line settings.

use std::path::Path;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

use qchar_chardev::spec::{ChardevBackend, ChardevFile};
use qchar_chardev::{CharFrontend, FrontendHandlers, Registry};

/// Lines the device prints before the management thread moves the console,
/// and again once the move has returned.
const HALF: usize = 1000;
/// Lines the device hands to the chardev at once: a block larger than the
/// chardev's queue, so that every block meets backpressure.
const BLOCK: usize = 64;
/// The chardev's output queue, small on purpose (the default is 64 KiB).
const QUEUE: usize = 256;

/// The device's side of the chardev: the callbacks of the I/O thread. This
/// device only prints, so it takes no input.
struct ConsoleHandlers {
    /// Wakes the device thread when the queue has room again.
    room: Sender<()>,
}

impl FrontendHandlers for ConsoleHandlers {
    fn can_read(&mut self) -> usize {
        0
    }

    fn read(&mut self, _data: &[u8]) {}

    /// Without this, `Registry::change` refuses to swap the backend under
    /// the device (QEMU's rule for frontends that cannot follow a change).
    fn supports_hotswap(&self) -> bool {
        true
    }

    fn write_ready(&mut self) {
        // At shutdown the device thread may be gone: nobody to wake then.
        let _ = self.room.send(());
    }
}

/// The device thread, a guest printing on its console until the VMM stops
/// it: numbered lines, `BLOCK` at a time, waiting for `write_ready` when
/// the chardev takes only part of a block. Says so on `halfway` once `HALF`
/// lines are queued; `n` received on `stop` means `n` more lines, then
/// stop. Returns the lines printed and how many writes came back short.
fn device(
    fe: CharFrontend,
    room: Receiver<()>,
    halfway: Sender<()>,
    stop: Receiver<usize>,
) -> (usize, usize) {
    let (mut next, mut end, mut short) = (0, usize::MAX, 0);
    while next < end {
        let upto = (next + BLOCK).min(end);
        let block: String = (next..upto).map(line).collect();
        let mut rest = block.as_bytes();
        while !rest.is_empty() {
            let n = fe.write(rest);
            rest = &rest[n..];
            if !rest.is_empty() {
                short += 1;
                // A write_ready left over from an earlier short write costs
                // one more try; none is missed, as the channel keeps it.
                room.recv_timeout(Duration::from_secs(30))
                    .expect("write_ready after a short write");
            }
        }
        if next < HALF && upto >= HALF {
            halfway.send(()).expect("the management thread");
        }
        next = upto;
        if end == usize::MAX {
            if let Ok(more) = stop.try_recv() {
                end = next + more;
            }
        }
    }
    (next, short)
}

fn line(i: usize) -> String {
    format!("console line {i:06}\n")
}

fn file(path: &Path) -> ChardevBackend {
    ChardevBackend::File(ChardevFile {
        out: path.to_string_lossy().into_owned(),
        ..Default::default()
    })
}

/// What a run left behind.
struct Outcome {
    /// The old backend's file and the new one's.
    before: Vec<u8>,
    after: Vec<u8>,
    /// Lines the device printed.
    lines: usize,
    /// Writes the chardev took only part of.
    short_writes: usize,
}

/// Runs a VM's console in `dir`: the chardev starts on `before.log` and is
/// moved to `after.log` while the device prints.
fn run(dir: &Path) -> Outcome {
    let (before, after) = (dir.join("before.log"), dir.join("after.log"));

    // Set-up, as a VMM does it from its command line.
    let reg = Registry::with_out_capacity(QUEUE).expect("the chardev I/O thread");
    reg.add("console", file(&before)).expect("add the console");
    let fe = reg.attach("console").expect("attach the device");
    let (room_tx, room) = channel();
    fe.set_handlers(Box::new(ConsoleHandlers { room: room_tx }));

    // The device runs on its own thread (a vCPU thread, in a VMM).
    let (halfway_tx, halfway) = channel();
    let (stop, stop_rx) = channel();
    let dev = {
        let fe = fe.clone();
        std::thread::spawn(move || device(fe, room, halfway_tx, stop_rx))
    };

    // The management thread (a QMP monitor, in a VMM) moves the console
    // while the device prints, then lets it print as much again and stop.
    let mgmt = {
        let reg = reg.clone();
        std::thread::spawn(move || {
            halfway.recv().expect("the device got halfway");
            reg.change("console", file(&after))
                .expect("chardev-change to after.log");
            stop.send(HALF).expect("the device");
        })
    };
    mgmt.join().expect("the management thread");
    let (lines, short_writes) = dev.join().expect("the device thread");

    // Clean shutdown: let the queue drain into the backend, then detach the
    // device, remove its chardev and stop the I/O thread.
    let deadline = Instant::now() + Duration::from_secs(30);
    while reg.stats("console").expect("the console").queued > 0 {
        assert!(Instant::now() < deadline, "the console never drained");
        std::thread::sleep(Duration::from_millis(1));
    }
    fe.detach();
    reg.remove("console").expect("remove the console");
    reg.shutdown();

    Outcome {
        before: std::fs::read(&before).expect("before.log"),
        after: std::fs::read(dir.join("after.log")).expect("after.log"),
        lines,
        short_writes,
    }
}

/// Every line once, in order, split by the change between the two files;
/// the device met backpressure.
fn check(o: &Outcome) {
    assert!(o.lines >= 2 * HALF, "{} lines", o.lines);
    let want: String = (0..o.lines).map(line).collect();
    let mut got = o.before.clone();
    got.extend_from_slice(&o.after);
    assert!(
        got == want.as_bytes(),
        "bytes lost, repeated or reordered across the change"
    );
    // The first half was queued before the change began (at most a
    // queue's worth of it was left to the new backend); at least the
    // second half was written after it returned.
    assert!(o.before.len() >= HALF * line(0).len() - QUEUE);
    assert!(o.after.len() >= HALF * line(0).len());
    assert!(o.short_writes > 0, "the device met backpressure");
}

fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let o = run(dir.path());
    check(&o);
    println!(
        "{} lines: {} bytes through the old backend, {} through the new one; \
         {} short writes; every line once, in order",
        o.lines,
        o.before.len(),
        o.after.len(),
        o.short_writes
    );
}

#[test]
fn every_byte_arrives_once_in_order_across_the_change() {
    let dir = tempfile::tempdir().unwrap();
    check(&run(dir.path()));
}
