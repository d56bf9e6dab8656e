//! A frontend that registers its handlers while a peer is connecting sees
//! OPENED exactly once (a QMP monitor would otherwise send its greeting
//! twice). Regression test for the race between the I/O thread delivering a
//! new peer's OPENED and another thread registering handlers.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qchar_chardev::spec::{ChardevBackend, ChardevSocket, SocketAddressLegacy};
use qchar_chardev::{ChardevEvent, FrontendHandlers, Registry, RegistryEvent};

struct Count(Arc<AtomicUsize>);

impl FrontendHandlers for Count {
    fn can_read(&mut self) -> usize {
        4096
    }
    fn read(&mut self, _data: &[u8]) {}
    fn event(&mut self, ev: ChardevEvent) {
        if ev == ChardevEvent::Opened {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn handlers_registered_while_a_peer_connects_see_one_opened() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new().unwrap();
    // Widens the window: observers of a new peer run on the I/O thread
    // after the backend counts as open and before the frontends hear of it.
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
        let _peer = UnixStream::connect(&path).unwrap();
        // Register the handlers the moment the backend has its peer, while
        // the I/O thread is about to announce it.
        let start = Instant::now();
        while !fe.is_open() {
            assert!(start.elapsed() < Duration::from_secs(30), "no peer");
            std::hint::spin_loop();
        }
        let opened = Arc::new(AtomicUsize::new(0));
        fe.set_handlers(Box::new(Count(opened.clone())));
        while opened.load(Ordering::SeqCst) == 0 {
            assert!(start.elapsed() < Duration::from_secs(30), "no OPENED");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Past the announcement and whatever the registration was owed.
        std::thread::sleep(Duration::from_millis(40));
        reg.sync().unwrap();
        assert_eq!(opened.load(Ordering::SeqCst), 1, "round {i}");
        fe.clear_handlers();
        fe.detach();
        reg.remove(&id).unwrap();
    }
    reg.shutdown();
}
