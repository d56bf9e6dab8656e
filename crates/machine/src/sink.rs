//! [`CaptureSink`]: a [`SerialSink`] that keeps what the UART sends in
//! memory, with an adjustable amount of room to exercise backpressure. Used
//! by the unit and integration tests, and by anyone who needs a serial port
//! without a chardev.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::uart::{ControlReply, SerialControl, SerialSink, UartError};

/// Called when a [`CaptureSink`] has room again after a short write (the
/// chardev's `write_ready`).
pub type ReadyCallback = Box<dyn Fn() + Send + Sync>;

struct State {
    output: Vec<u8>,
    /// Bytes `write` still accepts (`usize::MAX`: unbounded).
    room: usize,
    /// A write returned short since the last grant.
    starved: bool,
    controls: Vec<SerialControl>,
    modem_status: Option<u32>,
    accept_input_calls: usize,
}

/// An in-memory serial sink.
pub struct CaptureSink {
    state: Mutex<State>,
    changed: Condvar,
    on_ready: Mutex<Option<ReadyCallback>>,
}

impl std::fmt::Debug for CaptureSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureSink").finish_non_exhaustive()
    }
}

impl Default for CaptureSink {
    fn default() -> Self {
        CaptureSink::new()
    }
}

impl CaptureSink {
    /// A sink that takes everything.
    pub fn new() -> CaptureSink {
        CaptureSink::with_capacity(usize::MAX)
    }

    /// A sink that takes `room` bytes, then reports full until given more
    /// with [`CaptureSink::grant`] or [`CaptureSink::set_capacity`].
    pub fn with_capacity(room: usize) -> CaptureSink {
        CaptureSink {
            state: Mutex::new(State {
                output: Vec::new(),
                room,
                starved: false,
                controls: Vec::new(),
                modem_status: None,
                accept_input_calls: 0,
            }),
            changed: Condvar::new(),
            on_ready: Mutex::new(None),
        }
    }

    /// A new sink in an `Arc`, the form a UART takes.
    pub fn shared() -> Arc<CaptureSink> {
        Arc::new(CaptureSink::new())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets what to call when room appears after a short write; wire it to
    /// the UART's `output_ready`.
    pub fn set_ready_callback(&self, callback: ReadyCallback) {
        *self.on_ready.lock().unwrap_or_else(|e| e.into_inner()) = Some(callback);
    }

    /// Sets the room left to `room` bytes (`usize::MAX`: unbounded), and calls
    /// the ready callback if a writer was turned away before.
    pub fn set_capacity(&self, room: usize) {
        let notify = {
            let mut s = self.lock();
            s.room = room;
            room > 0 && std::mem::take(&mut s.starved)
        };
        if notify {
            self.notify_ready();
        }
    }

    /// Adds `bytes` of room, like a consumer draining a buffer.
    pub fn grant(&self, bytes: usize) {
        let notify = {
            let mut s = self.lock();
            s.room = s.room.saturating_add(bytes);
            bytes > 0 && std::mem::take(&mut s.starved)
        };
        if notify {
            self.notify_ready();
        }
    }

    fn notify_ready(&self) {
        if let Some(cb) = self
            .on_ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            cb();
        }
    }

    /// Removes and returns everything written so far.
    pub fn take_output(&self) -> Vec<u8> {
        std::mem::take(&mut self.lock().output)
    }

    /// A copy of everything written so far.
    pub fn output(&self) -> Vec<u8> {
        self.lock().output.clone()
    }

    /// Removes and returns the control requests received so far.
    pub fn take_controls(&self) -> Vec<SerialControl> {
        std::mem::take(&mut self.lock().controls)
    }

    /// What `GetModem` answers (`None`: unsupported, as a non-tty backend).
    pub fn set_modem_status(&self, bits: Option<u32>) {
        self.lock().modem_status = bits;
    }

    /// How often `accept_input` was called.
    pub fn accept_input_calls(&self) -> usize {
        self.lock().accept_input_calls
    }

    /// Waits until `pred` holds for the output collected so far, or
    /// `timeout` passes. Returns whether it held.
    pub fn wait_output(&self, timeout: Duration, mut pred: impl FnMut(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if pred(&s.output) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl SerialSink for CaptureSink {
    fn write(&self, data: &[u8]) -> usize {
        let mut s = self.lock();
        let n = data.len().min(s.room);
        s.output.extend_from_slice(&data[..n]);
        if s.room != usize::MAX {
            s.room -= n;
        }
        if n < data.len() {
            s.starved = true;
        }
        drop(s);
        if n > 0 {
            self.changed.notify_all();
        }
        n
    }

    fn control(&self, request: SerialControl) -> Result<ControlReply, UartError> {
        let mut s = self.lock();
        if request == SerialControl::GetModem {
            return Ok(match s.modem_status {
                Some(bits) => ControlReply::Modem(bits),
                None => ControlReply::Unsupported,
            });
        }
        s.controls.push(request);
        drop(s);
        self.changed.notify_all();
        Ok(ControlReply::Done)
    }

    fn accept_input(&self) {
        self.lock().accept_input_calls += 1;
        self.changed.notify_all();
    }
}
