//! A frontend that registers its handlers while a peer is connecting sees
//! OPENED exactly once (a QMP monitor would otherwise send its greeting
//! twice). Regression test for the race between the I/O thread delivering a
//! new peer's OPENED and another thread registering handlers.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qchar_chardev::spec::{ChardevBackend, ChardevSocket, SocketAddressLegacy};
use qchar_chardev::{ChardevEvent, FrontendHandlers, Registry, RegistryEvent};
use qchar_testkit::wait_until;

/// Counts OPENED events and input bytes.
struct Count {
    opened: Arc<AtomicUsize>,
    input: Arc<AtomicUsize>,
}

impl FrontendHandlers for Count {
    fn can_read(&mut self) -> usize {
        4096
    }
    fn read(&mut self, data: &[u8]) {
        self.input.fetch_add(data.len(), Ordering::SeqCst);
    }
    fn event(&mut self, ev: ChardevEvent) {
        if ev == ChardevEvent::Opened {
            self.opened.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn handlers_registered_while_a_peer_connects_see_one_opened() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    // Widens the window: observers of a new peer run on the I/O thread
    // after the backend counts as open and before the frontends hear of it.
    // The stall is part of the race under test; nothing waits on it.
    reg.subscribe(|ev| {
        if let RegistryEvent::Opened(_) = ev {
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    for i in 0..20 {
        let id = format!("s{i}");
        let path = dir.path().join(format!("{i}.sock"));
        let spec = ChardevBackend::Socket(ChardevSocket::new(
            SocketAddressLegacy::unix(path.to_str().unwrap()),
            true,
        ));
        reg.add(&id, spec).unwrap();
        let fe = reg.attach(&id).unwrap();
        let mut peer = UnixStream::connect(&path).unwrap();
        // Register the handlers the moment the backend has its peer, while
        // the I/O thread is about to announce it (a spin: a sleep here
        // would let the window pass).
        let start = Instant::now();
        while !fe.is_open() {
            assert!(start.elapsed() < Duration::from_secs(30), "no peer");
            std::hint::spin_loop();
        }
        let opened = Arc::new(AtomicUsize::new(0));
        let input = Arc::new(AtomicUsize::new(0));
        fe.set_handlers(Box::new(Count {
            opened: opened.clone(),
            input: input.clone(),
        }));
        wait_until("OPENED", || opened.load(Ordering::SeqCst) > 0);
        // A byte from the peer, sent now, reaches the handlers in a later
        // turn of the I/O task than the announcement, and each turn first
        // settles what registrations are owed: once it is read, any second
        // OPENED would have come before it.
        peer.write_all(b"x").unwrap();
        wait_until("the peer's byte", || input.load(Ordering::SeqCst) == 1);
        assert_eq!(opened.load(Ordering::SeqCst), 1, "round {i}");
        fe.clear_handlers();
        fe.detach();
        reg.remove(&id).unwrap();
    }
    reg.shutdown();
}
