//! `mux`: several frontends sharing one base chardev, with QEMU's Ctrl-a
//! escapes on the input (c: next frontend, b: break, h or ?: help, x: quit,
//! t: timestamps on output, Ctrl-a Ctrl-a: one Ctrl-a).
//!
//! The mux backend is itself a frontend of the base chardev, one that
//! follows backend changes: `chardev-change` of a mux chardev changes its
//! base (the registry redirects it), and every mux frontend keeps its place,
//! the focus and its line settings (re-applied to the new base backend
//! here). QEMU refuses such a change ("Mux device hotswap not supported
//! yet").
//!
//! Both chardevs are driven by the same I/O thread; the base's handlers only
//! fill a bounded input buffer and wake the mux's task. Output goes into the
//! base's output queue; when that is full `poll_write` is pending until the
//! base reports room (`write_ready`).

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use super::{Backend, BackendEvent, IoctlReply, SerialIoctl};
use crate::error::Result;
use crate::frontend::{CharFrontend, ChardevEvent, FrontendHandlers};

/// The escape character, Ctrl-a.
pub const ESCAPE: u8 = 0x01;
/// Input bytes buffered between the base and the mux.
const INPUT_CAP: usize = 4096;
/// Connection events buffered between the base and the mux.
const EVENTS_CAP: usize = 64;
/// What Ctrl-a x writes before the process quits (QEMU's words).
pub const TERMINATED: &[u8] = b"QEMU: Terminated\n\r";

/// The keys Ctrl-a h lists, in QEMU's order and wording (minus `s`, saving
/// disks, which qchar has no use for).
const HELP: &[(&str, &str)] = &[
    ("h", "print this help"),
    ("x", "exit emulator"),
    ("t", "toggle console timestamps"),
    ("b", "send break (magic sysrq)"),
    ("c", "switch between console and monitor"),
    ("C-a", "sends C-a"),
];

/// The help text Ctrl-a h writes.
pub fn help_text() -> String {
    let mut s = String::from("\n\r");
    for (key, what) in HELP {
        s.push_str(&format!("C-a {key:<4} {what}\n\r"));
    }
    s
}

/// State shared by the mux backend and its handlers on the base.
#[derive(Default)]
struct Shared {
    input: VecDeque<u8>,
    events: VecDeque<ChardevEvent>,
    /// The mux's I/O task, waiting for input or events.
    reader: Option<Waker>,
    /// The mux's I/O task, waiting for room in the base's output queue.
    writer: Option<Waker>,
    /// Line settings the frontends set, re-applied after a base change.
    params: Option<SerialIoctl>,
    modem: Option<SerialIoctl>,
}

fn lock(s: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

/// The mux's handlers on its base chardev.
struct MuxHandlers {
    shared: Arc<Mutex<Shared>>,
}

impl FrontendHandlers for MuxHandlers {
    fn can_read(&mut self) -> usize {
        INPUT_CAP - lock(&self.shared).input.len()
    }

    fn read(&mut self, data: &[u8]) {
        let mut s = lock(&self.shared);
        let n = data.len().min(INPUT_CAP - s.input.len());
        s.input.extend(&data[..n]);
        let w = s.reader.take();
        drop(s);
        wake(w);
    }

    fn event(&mut self, event: ChardevEvent) {
        if !matches!(
            event,
            ChardevEvent::Opened | ChardevEvent::Closed | ChardevEvent::Break
        ) {
            return;
        }
        let mut s = lock(&self.shared);
        if s.events.len() < EVENTS_CAP {
            s.events.push_back(event);
        }
        let w = s.reader.take();
        drop(s);
        wake(w);
    }

    fn supports_hotswap(&self) -> bool {
        true
    }

    fn backend_changed(&mut self, fe: &CharFrontend) -> std::result::Result<(), String> {
        let (params, modem) = {
            let s = lock(&self.shared);
            (s.params, s.modem)
        };
        for req in [params, modem].into_iter().flatten() {
            let _ = fe.ioctl(req);
        }
        Ok(())
    }

    fn write_ready(&mut self) {
        let w = lock(&self.shared).writer.take();
        wake(w);
    }

    fn announces(&self) -> bool {
        false
    }
}

/// The `mux` backend. See the module documentation.
pub(crate) struct MuxBackend {
    base: CharFrontend,
    shared: Arc<Mutex<Shared>>,
    open: bool,
    /// The base was open when we attached: its first `Opened` is not news.
    swallow_open: bool,
    got_escape: bool,
    /// Events from escapes, reported after the bytes before them.
    owed: VecDeque<BackendEvent>,
    timestamps: bool,
    ts_start: Option<Instant>,
    line_start: bool,
    /// Stamped output the base had no room for yet.
    pending: Vec<u8>,
}

impl MuxBackend {
    /// Becomes the (only) frontend of the base chardev `base`. As in QEMU,
    /// the base's frontend side counts as open (`frontend-open`) only once
    /// a frontend has set its handlers on the mux.
    pub(crate) fn new(base: CharFrontend) -> MuxBackend {
        let shared = Arc::new(Mutex::new(Shared::default()));
        base.set_handlers(Box::new(MuxHandlers {
            shared: shared.clone(),
        }));
        base.set_open(false);
        let open = base.is_open();
        MuxBackend {
            base,
            shared,
            open,
            swallow_open: open,
            got_escape: false,
            owed: VecDeque::new(),
            timestamps: false,
            ts_start: None,
            line_start: false,
            pending: Vec::new(),
        }
    }

    /// Output written by the mux itself (help, quit notice).
    fn say(&mut self, text: &[u8]) {
        let mut out = Vec::new();
        self.stamp(text, &mut out);
        let n = self.base.write(&out);
        if n < out.len() {
            log::debug!(
                "mux: {} bytes of notice dropped, base is full",
                out.len() - n
            );
        }
    }

    /// Copies `data` to `out`, with a time stamp at each line start while
    /// timestamps are on.
    fn stamp(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if !self.timestamps {
            out.extend_from_slice(data);
            return;
        }
        for &b in data {
            if self.line_start {
                let now = Instant::now();
                let start = *self.ts_start.get_or_insert(now);
                let ms = now.duration_since(start).as_millis() as u64;
                let secs = ms / 1000;
                out.extend_from_slice(
                    format!(
                        "[{:02}:{:02}:{:02}.{:03}] ",
                        secs / 3600,
                        (secs / 60) % 60,
                        secs % 60,
                        ms % 1000
                    )
                    .as_bytes(),
                );
                self.line_start = false;
            }
            out.push(b);
            if b == b'\n' {
                self.line_start = true;
            }
        }
    }

    /// One input byte through the escape state machine: Some(byte) to pass
    /// on, or None (an escape, maybe with an event owed).
    fn escape(&mut self, b: u8) -> Option<u8> {
        if !self.got_escape {
            if b == ESCAPE {
                self.got_escape = true;
                return None;
            }
            return Some(b);
        }
        self.got_escape = false;
        match b {
            ESCAPE => return Some(ESCAPE),
            b'h' | b'?' => self.say(help_text().as_bytes()),
            b'x' => {
                self.say(TERMINATED);
                self.owed.push_back(BackendEvent::QuitRequested);
            }
            b'b' => self.owed.push_back(BackendEvent::Break),
            b'c' => self.owed.push_back(BackendEvent::MuxFocusNext),
            b't' => {
                self.timestamps = !self.timestamps;
                self.ts_start = None;
                self.line_start = false;
            }
            // Unknown escapes are swallowed, as QEMU.
            _ => {}
        }
        None
    }

    /// Writes what the base takes of `pending`; Ready when all went out.
    fn flush_pending(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while !self.pending.is_empty() {
            let n = self.base.write(&self.pending);
            if n > 0 {
                self.pending.drain(..n);
                continue;
            }
            self.park_writer(cx);
            let n = self.base.write(&self.pending);
            if n == 0 {
                return Poll::Pending;
            }
            self.pending.drain(..n);
        }
        Poll::Ready(())
    }

    fn park_writer(&self, cx: &mut Context<'_>) {
        lock(&self.shared).writer = Some(cx.waker().clone());
    }
}

impl Drop for MuxBackend {
    fn drop(&mut self) {
        self.base.clear_handlers();
        self.base.detach();
    }
}

impl Backend for MuxBackend {
    /// What came with the base's input (a monitor on `mon:unix:...`).
    fn take_msgfd(&mut self) -> Option<std::os::fd::OwnedFd> {
        self.base.take_msgfd()
    }

    fn poll_event(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<BackendEvent> {
        let _ = self.flush_pending(cx);
        if let Some(ev) = self.owed.pop_front() {
            return Poll::Ready(ev);
        }
        let mut s = lock(&self.shared);
        match &s.reader {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.reader = Some(cx.waker().clone()),
        }
        while let Some(ev) = s.events.pop_front() {
            match ev {
                ChardevEvent::Opened => {
                    if std::mem::replace(&mut self.swallow_open, false) {
                        continue;
                    }
                    self.open = true;
                    return Poll::Ready(BackendEvent::Opened);
                }
                ChardevEvent::Closed => {
                    self.swallow_open = false;
                    if std::mem::replace(&mut self.open, false) {
                        return Poll::Ready(BackendEvent::Closed);
                    }
                }
                _ => return Poll::Ready(BackendEvent::Break),
            }
        }
        if buf.is_empty() || s.input.is_empty() {
            return Poll::Pending;
        }
        let was_full = s.input.len() >= INPUT_CAP;
        let mut input: Vec<u8> = Vec::with_capacity(buf.len());
        // Take bytes until the output is full or an escape owes an event.
        let mut o = 0;
        let mut taken = 0;
        drop(s);
        {
            let s = lock(&self.shared);
            input.extend(s.input.iter().take(buf.len() * 2 + 2));
        }
        for &b in &input {
            if o == buf.len() || !self.owed.is_empty() {
                break;
            }
            taken += 1;
            if let Some(v) = self.escape(b) {
                buf[o] = v;
                o += 1;
            }
        }
        lock(&self.shared).input.drain(..taken);
        if was_full {
            self.base.accept_input();
        }
        if o > 0 {
            return Poll::Ready(BackendEvent::Input(o));
        }
        if let Some(ev) = self.owed.pop_front() {
            return Poll::Ready(ev);
        }
        // Only escapes: look again (more input may be there).
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if self.flush_pending(cx).is_pending() {
            return Poll::Pending;
        }
        if !self.timestamps {
            let n = self.base.write(data);
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            self.park_writer(cx);
            let n = self.base.write(data);
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            return Poll::Pending;
        }
        // At least one byte, so that a full base records the short write
        // and reports room later.
        let take = data.len().min(self.base.free_space()).max(1);
        let mut out = Vec::with_capacity(take + 64);
        self.stamp(&data[..take], &mut out);
        let n = self.base.write(&out);
        self.pending.extend_from_slice(&out[n..]);
        if !self.pending.is_empty() {
            self.park_writer(cx);
        }
        Poll::Ready(Ok(take))
    }

    fn is_open(&self) -> bool {
        self.open
    }

    fn handlers_set(&mut self) {
        self.base.set_open(true);
        // A mux under this one (`mux=on` over a mux) opens its base now.
        self.base.announce_handlers();
    }

    fn filename(&self) -> String {
        "mux".into()
    }

    /// The base decides; the settings are also kept for the next base.
    fn has_serial_line(&self) -> bool {
        true
    }

    fn ioctl(&mut self, req: SerialIoctl) -> Result<IoctlReply> {
        {
            let mut s = lock(&self.shared);
            match req {
                SerialIoctl::SetParams(_) => s.params = Some(req),
                SerialIoctl::SetModem(_) => s.modem = Some(req),
                _ => {}
            }
        }
        self.base.ioctl(req)
    }
}
