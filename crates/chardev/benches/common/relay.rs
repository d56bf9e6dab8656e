//! A relay between two chardevs through their frontends, with backpressure:
//! what chardev `from` reads goes into chardev `to`; when `to` has no room,
//! input on `from` pauses until `to`'s `write_ready`. Shared by the relay
//! and fan-out benches.

use std::sync::{Arc, Mutex};

use qchar_chardev::{CharFrontend, FrontendHandlers, Registry};

/// Most bytes taken from `from` at once.
const CHUNK: usize = 64 * 1024;

/// Bytes read from `from` that `to`'s queue had no room for yet.
#[derive(Default)]
struct Pending(Mutex<Vec<u8>>);

/// The frontend of `from`: what it reads goes to `to`.
struct RelayIn {
    out: CharFrontend,
    pending: Arc<Pending>,
}

impl FrontendHandlers for RelayIn {
    fn can_read(&mut self) -> usize {
        if self.pending.0.lock().unwrap().is_empty() {
            // The core caps one delivery at its read chunk.
            CHUNK
        } else {
            0
        }
    }

    fn read(&mut self, data: &[u8]) {
        let n = self.out.write(data);
        if n < data.len() {
            // A short write: `to` calls write_ready once it has room.
            self.pending.0.lock().unwrap().extend_from_slice(&data[n..]);
        }
    }
}

/// The frontend of `to`: when room is back, pushes what waits and resumes
/// input on `from`.
struct RelayOut {
    input: CharFrontend,
    out: CharFrontend,
    pending: Arc<Pending>,
}

impl FrontendHandlers for RelayOut {
    fn can_read(&mut self) -> usize {
        0
    }

    fn read(&mut self, _: &[u8]) {}

    fn write_ready(&mut self) {
        let mut p = self.pending.0.lock().unwrap();
        if p.is_empty() {
            return;
        }
        let n = self.out.write(&p);
        p.drain(..n);
        if p.is_empty() {
            drop(p);
            self.input.accept_input();
        }
    }
}

/// Relays chardev `from` into chardev `to`; returns both frontends (detach
/// them before the registry shuts down).
pub fn relay(reg: &Registry, from: &str, to: &str) -> (CharFrontend, CharFrontend) {
    let fa = reg.attach(from).unwrap();
    let fb = reg.attach(to).unwrap();
    let pending = Arc::new(Pending::default());
    fb.set_handlers(Box::new(RelayOut {
        input: fa.clone(),
        out: fb.clone(),
        pending: pending.clone(),
    }));
    fa.set_handlers(Box::new(RelayIn {
        out: fb.clone(),
        pending,
    }));
    (fa, fb)
}
