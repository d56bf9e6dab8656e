//! Dropping the last handle of a registry, without `shutdown`, stops its I/O
//! thread and closes every descriptor its backends held. One test in this
//! binary: it counts the process's threads and descriptors.

#[path = "support/net.rs"]
mod net;
mod support;

use qchar_chardev::spec::{ChardevBackend, ChardevCommon};
use qchar_chardev::{ChardevEvent, Registry};
use qchar_testkit::{connect_unix, fd_count, wait_until};
use support::{file_spec, Recorder};

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// Regression test: the registry's handle went, but the I/O thread (whose
/// chardev tasks hold the chardevs, which hold the thread) ran on, with the
/// backends' descriptors open, until the process ended.
#[test]
fn dropping_the_last_registry_handle_stops_its_thread_and_closes_its_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let (threads_before, fds_before) = (thread_count(), fd_count());
    let sock = dir.path().join("s.sock");
    let reg = Registry::new().unwrap();
    reg.add("f", file_spec(&dir.path().join("f.out"))).unwrap();
    reg.add("s", net::unix_server(&sock)).unwrap();
    reg.add("p", ChardevBackend::Pty(ChardevCommon::default()))
        .unwrap();
    reg.add("r", support::ringbuf_spec(4096)).unwrap();
    // A frontend with handlers and a connected peer, with output owed.
    let fe = reg.attach("s").unwrap();
    let (rec, seen) = Recorder::new(true);
    fe.set_handlers(Box::new(rec));
    let client = connect_unix(&sock);
    wait_until("the client is connected", || {
        seen.lock().unwrap().events.contains(&ChardevEvent::Opened)
    });
    fe.write_all(b"hello").unwrap();
    assert!(thread_count() > threads_before, "the I/O thread runs");
    assert!(fd_count() > fds_before, "the backends hold descriptors");

    drop(reg);

    // The frontend handle outlives the registry: valid, inert.
    assert_eq!(
        fe.write(b"late"),
        0,
        "a frontend of a closed registry takes nothing"
    );
    drop(fe);
    drop(client);
    assert_eq!(thread_count(), threads_before, "the I/O thread is gone");
    assert_eq!(fd_count(), fds_before, "every descriptor is closed");
}
