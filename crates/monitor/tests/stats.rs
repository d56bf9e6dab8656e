//! `x-query-chardev-stats` and HMP `info x-chardev-stats` over a real QMP
//! socket: a chardev's own counters, and those its frontend reports.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{Client, Harness};
use qchar_chardev::spec::{ChardevBackend, ChardevRingbuf};
use qchar_chardev::{FrontendHandlers, FrontendStats};
use qchar_testkit::wait_until;

/// A device that counts what it reads and reports it as its stats.
struct Counting(Arc<AtomicU64>);

impl FrontendHandlers for Counting {
    fn can_read(&mut self) -> usize {
        4096
    }
    fn read(&mut self, data: &[u8]) {
        self.0.fetch_add(data.len() as u64, Ordering::Relaxed);
    }
}

#[test]
fn chardev_and_frontend_counters_over_qmp_and_hmp() {
    let mut h = Harness::new();
    let path = h.qmp_socket("mon0");
    h.reg
        .add(
            "log",
            ChardevBackend::Ringbuf(ChardevRingbuf {
                size: Some(4096),
                ..Default::default()
            }),
        )
        .unwrap();
    let fe = h.reg.attach("log").unwrap();
    let read = Arc::new(AtomicU64::new(0));
    fe.set_handlers(Box::new(Counting(read.clone())));
    let r = read.clone();
    fe.set_stats_hook(move || {
        Some(FrontendStats {
            kind: "counter".into(),
            counters: vec![("read-bytes".into(), r.load(Ordering::Relaxed))],
        })
    });
    fe.write_all(b"hello").unwrap();
    wait_until("the ringbuf took the output", || {
        h.reg.stats("log").unwrap().bytes_out == 5
    });

    let mut c = Client::connect(&path);
    c.handshake();
    let cmds = c.cmd("{\"execute\":\"query-commands\"}");
    assert!(
        cmds.contains("{\"name\": \"x-query-chardev-stats\"}"),
        "{cmds}"
    );
    let reply = c.cmd("{\"execute\":\"x-query-chardev-stats\"}");
    // Members come in QEMU's dict order, as in every reply. mon0's own
    // counters move with this conversation: only its presence is checked.
    assert!(reply.starts_with("{\"return\": [{"), "{reply}");
    assert!(reply.contains("\"label\": \"mon0\""), "{reply}");
    assert!(
        reply.ends_with(
            "{\"changes\": 0, \"queued\": 0, \"bytes-in\": 0, \"log-dropped\": 0, \
             \"label\": \"log\", \"bytes-lost\": 0, \"bytes-out\": 5, \"frontends\": [{\"read-bytes\": 0, \
             \"type\": \"counter\"}]}]}\r\n"
        ),
        "{reply}"
    );
    assert_eq!(
        c.cmd("{\"execute\":\"x-query-chardev-stats\",\"arguments\":{\"x\":1}}"),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'x' is unexpected\"}}\r\n"
    );
    let hmp = c.cmd(
        "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info x-chardev-stats\"}}",
    );
    assert!(
        hmp.ends_with(
            "log: bytes-in=0 bytes-out=5 bytes-lost=0 changes=0 queued=0 log-dropped=0\\r\\n  \
             counter: read-bytes=0\\r\\n\"}\r\n"
        ),
        "{hmp}"
    );
    // QEMU's own `info chardev` is untouched.
    let info = c.cmd(
        "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info chardev\"}}",
    );
    assert!(info.contains("log: filename=ringbuf\\r\\n"), "{info}");
    assert!(!info.contains("bytes"), "{info}");
    fe.detach();
}
