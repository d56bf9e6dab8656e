//! The one I/O thread that drives every backend of a registry, and the way
//! other threads get work done on it.
//!
//! Work from another thread is sent as a closure and the caller waits for
//! its result (as rust-vmm's event-manager `call_blocking` does). On the I/O
//! thread itself the closure runs inline: waiting there would deadlock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::{JoinHandle, ThreadId};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::error::{ChardevError, Result};

/// A running I/O thread with a single-threaded tokio runtime.
pub(crate) struct IoThread {
    handle: Handle,
    thread: ThreadId,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    join: Mutex<Option<JoinHandle<()>>>,
    /// Holds on input (`Registry::hold_input`): backends are read while 0.
    input_holds: AtomicUsize,
}

impl IoThread {
    /// Starts the thread and its runtime.
    pub(crate) fn start() -> Result<IoThread> {
        // A chardev with endless work (a client flooding a monitor) yields
        // after a bounded turn; checking the other descriptors every few
        // turns, not tokio's default 61, keeps the rest of the chardevs
        // responsive meanwhile.
        let rt = tokio::runtime::Builder::new_current_thread()
            .event_interval(4)
            .enable_all()
            .build()
            .map_err(|e| ChardevError::io("cannot start the chardev I/O runtime", e))?;
        let handle = rt.handle().clone();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let join = std::thread::Builder::new()
            .name("qchar-io".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
                // Dropping the runtime drops every chardev task and with it
                // the backends' descriptors.
                drop(rt);
            })
            .map_err(|e| ChardevError::io("cannot start the chardev I/O thread", e))?;
        let thread = join.thread().id();
        Ok(IoThread {
            handle,
            thread,
            stop: Mutex::new(Some(stop_tx)),
            join: Mutex::new(Some(join)),
            input_holds: AtomicUsize::new(0),
        })
    }

    /// The runtime handle, to spawn tasks and to enter when opening backends.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Whether the caller is the I/O thread.
    pub(crate) fn on_io_thread(&self) -> bool {
        std::thread::current().id() == self.thread
    }

    /// Runs `f` on the I/O thread and returns its result.
    pub(crate) fn run<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        if self.on_io_thread() {
            return Ok(f());
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(f());
        });
        rx.recv().map_err(|_| ChardevError::Shutdown)
    }

    /// One more hold on input: no chardev task reads its backend until
    /// every hold is released.
    pub(crate) fn hold_input(&self) {
        self.input_holds.fetch_add(1, Ordering::SeqCst);
    }

    /// Ends one hold; true if it was the last (the tasks must be woken).
    pub(crate) fn release_input(&self) -> bool {
        self.input_holds.fetch_sub(1, Ordering::SeqCst) == 1
    }

    /// Whether input is held. A task that finds it held has stored its
    /// waker first, so the wake-up after the last release reaches it.
    pub(crate) fn input_held(&self) -> bool {
        self.input_holds.load(Ordering::SeqCst) > 0
    }

    /// Stops the runtime and joins the thread (not from the I/O thread).
    pub(crate) fn shutdown(&self) {
        if let Some(tx) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(());
        }
        if self.on_io_thread() {
            return;
        }
        if let Some(j) = self.join.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = j.join();
        }
    }
}
