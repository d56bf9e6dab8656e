//! A monitor's output side: whole lines queued for the chardev, written
//! without ever blocking the chardev I/O thread, with a cap on what a client
//! that stops reading can make us hold.
//!
//! Lines go to [`CharFrontend::write`], which takes what fits in the
//! chardev's own bounded queue; the rest waits here and is retried on
//! `write_ready`. If what waits here would pass the cap (1 MiB by default),
//! everything not yet started is dropped and the monitor is marked
//! *overflowed*: it then resets its session, so the client, if it ever reads
//! again, finds a stream of whole lines and a session that wants
//! `qmp_capabilities` again. (The chardev API offers no way to drop the
//! connection itself.)

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use qchar_chardev::CharFrontend;

use crate::event::EventSink;
use crate::json::Value;

/// Default cap on output held for one client.
pub const DEFAULT_OUTPUT_CAP: usize = 1 << 20;

/// Above this much held output, the monitor stops reading input.
pub const INPUT_PAUSE_THRESHOLD: usize = 64 << 10;

pub(crate) struct Output {
    fe: Option<CharFrontend>,
    queue: VecDeque<Vec<u8>>,
    /// Bytes of `queue[0]` already written.
    front_off: usize,
    held: usize,
    cap: usize,
    /// Events are sent only to a session that negotiated capabilities.
    pub(crate) events_wanted: bool,
    /// Output was dropped: the session must be reset.
    pub(crate) overflowed: bool,
    /// `can_read` said 0 because of held output.
    pub(crate) input_paused: bool,
    /// Events are printed in QEMU's pretty style (`pretty=on`).
    pub(crate) pretty: bool,
    /// Counts client connections: an answer that comes later is dropped
    /// if its client has gone meanwhile.
    pub(crate) epoch: u64,
    /// The answer a command owed came (see [`Shared::answer`]).
    pub(crate) answered: bool,
}

impl Output {
    pub(crate) fn new(cap: usize) -> Output {
        Output {
            fe: None,
            queue: VecDeque::new(),
            front_off: 0,
            held: 0,
            cap,
            events_wanted: false,
            overflowed: false,
            input_paused: false,
            pretty: false,
            epoch: 0,
            answered: false,
        }
    }

    pub(crate) fn set_frontend(&mut self, fe: CharFrontend) {
        self.fe = Some(fe);
    }

    /// Bytes waiting here.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// A monitor's `can_read`: 0 while more than [`INPUT_PAUSE_THRESHOLD`]
    /// bytes wait for a client that does not read (remembered, so that
    /// [`Shared::output_ready`] resumes input), else `room`.
    pub(crate) fn input_room(&mut self, room: usize) -> usize {
        if self.held > INPUT_PAUSE_THRESHOLD {
            self.input_paused = true;
            0
        } else {
            room
        }
    }

    /// Queues a line and writes what the chardev takes.
    pub(crate) fn push(&mut self, line: Vec<u8>) {
        if line.is_empty() {
            return;
        }
        if self.queue.is_empty() {
            // Common case: straight through.
            let n = self.fe.as_ref().map_or(0, |fe| fe.write(&line));
            if n == line.len() {
                return;
            }
            self.front_off = n;
            self.held = line.len() - n;
            self.queue.push_back(line);
            return;
        }
        if self.held + line.len() > self.cap {
            self.overflow();
            return;
        }
        self.held += line.len();
        self.queue.push_back(line);
        self.flush();
    }

    /// Drops everything not yet started.
    fn overflow(&mut self) {
        let started = self.front_off > 0;
        let front = if started {
            self.queue.pop_front()
        } else {
            None
        };
        self.queue.clear();
        self.held = 0;
        if let Some(f) = front {
            self.held = f.len() - self.front_off;
            self.queue.push_back(f);
        } else {
            self.front_off = 0;
        }
        self.overflowed = true;
        self.events_wanted = false;
    }

    /// Writes as much as the chardev takes now.
    pub(crate) fn flush(&mut self) {
        let Some(fe) = self.fe.as_ref() else { return };
        while let Some(front) = self.queue.front() {
            let rest = &front[self.front_off..];
            let n = fe.write(rest);
            self.held -= n;
            if n < rest.len() {
                self.front_off += n;
                return;
            }
            self.queue.pop_front();
            self.front_off = 0;
        }
    }

    /// Forgets held output (the peer went away).
    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.front_off = 0;
        self.held = 0;
    }
}

/// The part of a monitor other threads reach (events).
pub(crate) struct Shared {
    out: Mutex<Output>,
}

impl Shared {
    pub(crate) fn new(cap: usize) -> Arc<Shared> {
        Arc::new(Shared {
            out: Mutex::new(Output::new(cap)),
        })
    }

    pub(crate) fn out(&self) -> MutexGuard<'_, Output> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A monitor's `write_ready`: writes what is held, and resumes input
    /// paused by [`Output::input_room`] once little is left.
    pub(crate) fn output_ready(&self) {
        let mut out = self.out();
        out.flush();
        if out.input_paused && out.held() <= INPUT_PAUSE_THRESHOLD {
            out.input_paused = false;
            let fe = out.fe.clone();
            drop(out);
            if let Some(fe) = fe {
                fe.accept_input();
            }
        }
    }
}

impl Shared {
    /// A command's answer that came later: queued (if the client of
    /// `epoch` is still there), noted for the monitor, whose input is
    /// resumed. Called on the I/O thread, outside the monitor's handlers.
    pub(crate) fn answer(&self, epoch: u64, text: Vec<u8>) {
        let mut out = self.out();
        if out.epoch != epoch {
            return;
        }
        out.push(text);
        out.answered = true;
        let fe = out.fe.clone();
        drop(out);
        if let Some(fe) = fe {
            fe.accept_input();
        }
    }
}

impl EventSink for Shared {
    fn send_event(&self, line: &[u8], event: &Value) {
        let mut out = self.out();
        if out.events_wanted {
            let line = if out.pretty {
                crate::qmp::session::line(event, true)
            } else {
                line.to_vec()
            };
            out.push(line);
        }
    }
}
