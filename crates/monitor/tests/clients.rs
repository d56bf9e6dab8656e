//! A multi-client socket chardev seen through QMP: `X_QCHAR_CLIENT_*`
//! events as clients come and go, `x-query-chardev-clients` and HMP
//! `info x-chardev-clients`.

mod common;

use std::io::Read;

use common::{mask_timestamps, Client, Harness};
use qchar_chardev::spec::{ChardevBackend, ChardevSocket, SocketAddressLegacy};
use qchar_testkit::{connect_unix, wait_until};

/// A device that takes input.
struct Device;

impl qchar_chardev::FrontendHandlers for Device {
    fn can_read(&mut self) -> usize {
        64
    }
    fn read(&mut self, _data: &[u8]) {}
}

/// Reads lines until one holds `what`; returns it with timestamps masked.
fn event(c: &mut Client, what: &str) -> String {
    loop {
        let l = String::from_utf8(mask_timestamps(&c.line())).unwrap();
        if l.contains(what) {
            return l;
        }
    }
}

#[test]
fn client_events_and_the_clients_query() {
    let mut h = Harness::new();
    let path = h.qmp_socket("mon0");
    let con = h.path("con.sock");
    let mut spec = ChardevSocket::new(SocketAddressLegacy::unix(con.to_string_lossy()), true);
    spec.clients = Some(3);
    spec.writers = Some(1);
    h.reg.add("con", ChardevBackend::Socket(spec)).unwrap();
    let fe = h.reg.attach("con").unwrap();
    fe.set_handlers(Box::new(Device));
    fe.write_all(b"hello").unwrap();

    let mut c = Client::connect(&path);
    c.handshake();
    assert_eq!(
        c.cmd("{\"execute\":\"x-query-chardev-clients\"}"),
        "{\"return\": [{\"max-clients\": 3, \"clients\": [], \"max-writers\": 1, \"refused\": 0, \"label\": \"con\"}]}\r\n"
    );
    let mut a = connect_unix(&con);
    let mut got = [0u8; 5];
    a.read_exact(&mut got).unwrap();
    assert_eq!(
        event(&mut c, "X_QCHAR_CLIENT_CONNECTED"),
        "{\"timestamp\": {\"seconds\": S, \"microseconds\": U}, \"event\": \"X_QCHAR_CLIENT_CONNECTED\", \
         \"data\": {\"clients\": 1, \"peer\": \"unix\", \"writer\": true, \"id\": \"con\", \"client\": 1}}\r\n"
    );
    let _b = connect_unix(&con);
    assert!(event(&mut c, "X_QCHAR_CLIENT_CONNECTED").contains("\"writer\": false"));
    wait_until("both caught up", || {
        h.reg.clients()[0].info.clients.iter().all(|c| c.sent == 5)
    });
    let q = c.cmd("{\"execute\":\"x-query-chardev-clients\"}");
    assert!(
        q.contains("{\"handshake\": false, \"peer\": \"unix\", \"behind\": 0, \"dropped-input\": 0, \"writer\": true, \"sent\": 5, \"skipped\": 0, \"client\": 1}"),
        "{q}"
    );
    let hmp = c.cmd(
        "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info x-chardev-clients\"}}",
    );
    assert_eq!(
        hmp,
        "{\"return\": \"con: clients=2/3 writers=1 refused=0\\r\\n  \
         #1 unix writer sent=5 skipped=0 dropped-input=0 behind=0\\r\\n  \
         #2 unix viewer sent=5 skipped=0 dropped-input=0 behind=0\\r\\n\"}\r\n"
    );
    // QEMU's own query: the oldest client's connection, as QEMU names one.
    let q = c.cmd("{\"execute\":\"query-chardev\"}");
    assert!(
        q.contains(&format!(
            "\"filename\": \"unix:{},server=on\"",
            con.display()
        )),
        "{q}"
    );
    drop(a);
    assert_eq!(
        event(&mut c, "X_QCHAR_CLIENT_DISCONNECTED"),
        "{\"timestamp\": {\"seconds\": S, \"microseconds\": U}, \"event\": \"X_QCHAR_CLIENT_DISCONNECTED\", \
         \"data\": {\"clients\": 1, \"peer\": \"unix\", \"reason\": \"closed\", \"id\": \"con\", \"client\": 1}}\r\n"
    );
    fe.detach();
}
