//! A writer whose `write` came back short hears `write_ready` once there is
//! room, also when the room was made outside the chardev's own output pump:
//! by `ringbuf-read` (which first moves queued output into the ring) or by
//! a change (which first offers queued output to the old backend).
//!
//! Regression test: both took bytes out of a full queue without telling
//! the writer, so a UART holding THRE for `write_ready` waited for good and
//! the guest's console stalled (found while writing the console soak,
//! `crates/qchar/tests/console_hotswap.rs`).
//!
//! To make the order certain, the queue is filled and emptied from a
//! handler of another chardev, on the I/O thread: the full chardev's own
//! task cannot run in between.

mod support;

use std::sync::{Arc, Mutex};

use qchar_chardev::{CharFrontend, FrontendHandlers, Registry};
use qchar_testkit::wait_until;
use support::{file_in_spec, ringbuf_spec, Recorder, Seen};

/// What the trigger's handler does with the full queue.
#[derive(Clone, Copy)]
enum Empty {
    RingbufRead,
    Change,
}

/// Input on the trigger chardev fills `full` until a write comes back
/// short, then empties its queue the way `how` says.
struct Filler {
    reg: Registry,
    full: CharFrontend,
    how: Empty,
    done: bool,
}

impl FrontendHandlers for Filler {
    fn can_read(&mut self) -> usize {
        4096
    }
    fn read(&mut self, _input: &[u8]) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let chunk = [b'x'; 4096];
        let mut queued = 0;
        loop {
            let n = self.full.write(&chunk);
            queued += n;
            if n < chunk.len() {
                break;
            }
        }
        assert!(queued > 0);
        match self.how {
            Empty::RingbufRead => {
                let got = self.reg.ringbuf_read("full", 1 << 20).unwrap();
                assert_eq!(got.len(), queued, "the ring got the whole queue");
            }
            Empty::Change => {
                // Applied when this handler returns; the old ring takes the
                // whole queue first.
                self.reg.change("full", ringbuf_spec(1 << 20)).unwrap();
            }
        }
    }
}

fn writer_hears_of_room(how: Empty) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::write(&input, b"go").unwrap();
    let reg = Registry::new().unwrap();
    reg.add("full", ringbuf_spec(1 << 20)).unwrap();
    let full = reg.attach("full").unwrap();
    let (rec, seen): (Recorder, Arc<Mutex<Seen>>) = Recorder::new(true);
    full.set_handlers(Box::new(rec));

    reg.add("trigger", file_in_spec(&dir.path().join("out"), &input))
        .unwrap();
    let trigger = reg.attach("trigger").unwrap();
    trigger.set_handlers(Box::new(Filler {
        reg: reg.clone(),
        full: full.clone(),
        how,
        done: false,
    }));
    wait_until("write_ready after the queue was emptied", || {
        seen.lock().unwrap().write_ready > 0
    });
    trigger.detach();
    reg.shutdown();
}

#[test]
fn ringbuf_read_of_a_full_queue_tells_the_writer() {
    writer_hears_of_room(Empty::RingbufRead);
}

#[test]
fn change_that_empties_a_full_queue_tells_the_writer() {
    writer_hears_of_room(Empty::Change);
}
