//! Regression tests for what the fuzz targets (`fuzz/`, see
//! docs/fuzzing.md) found in this crate. Each test names the target and
//! replays the finding through the public API.

#[path = "support/net.rs"]
mod net;
mod support;

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

use qchar_chardev::spec::ChardevBackend;
use qchar_chardev::{FrontendHandlers, Registry};
use qchar_testkit::wait_until;

struct Sink;

impl FrontendHandlers for Sink {
    fn can_read(&mut self) -> usize {
        4096
    }
    fn read(&mut self, _data: &[u8]) {}
}

/// Target `qmp` (timeout): `chardev-add` of a socket server without `wait`
/// blocked in `accept` until a client came; on a monitor that stalls the
/// chardev I/O thread, so every chardev. QEMU's QMP default is `wait`
/// false (only `-chardev` defaults it to true, which the option parser
/// spells out).
#[test]
fn qmp_socket_server_without_wait_does_not_block() {
    let json = r#"{"type":"socket","data":{"addr":{"type":"inet","data":{"host":"127.0.0.1","port":"0"}}}}"#;
    let spec: ChardevBackend = serde_json::from_str(json).unwrap();
    let reg = Registry::new().unwrap();
    let (tx, rx) = mpsc::channel();
    let reg2 = reg.clone();
    std::thread::spawn(move || {
        let _ = tx.send(reg2.add("s", spec).map(|_| ()));
    });
    // A bound on a wait, not a timing claim: the fixed code returns at
    // once, the broken one never does.
    let added = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("chardev-add blocked waiting for a client");
    added.unwrap();
    let name = net::filename(&reg, "s");
    assert!(
        name.starts_with("disconnected:tcp:127.0.0.1:") && name.ends_with(",server=on"),
        "{name}"
    );
    let port: u16 = name
        .trim_start_matches("disconnected:tcp:127.0.0.1:")
        .trim_end_matches(",server=on")
        .parse()
        .unwrap();

    // Still a working server: a client that comes later connects.
    let fe = reg.attach("s").unwrap();
    fe.set_handlers(Box::new(Sink));
    assert!(!fe.is_open());
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"x").unwrap();
    wait_until("client connected", || fe.is_open());
    reg.shutdown();
}

/// The `-chardev` form keeps QEMU's command-line default: a server waits.
#[test]
fn command_line_socket_server_still_waits_by_default() {
    let o =
        qchar_chardev::opts::parse_chardev("socket,id=s,host=127.0.0.1,port=0,server=on").unwrap();
    let ChardevBackend::Socket(s) = o.backend else {
        panic!("not a socket: {:?}", o.backend);
    };
    assert_eq!(s.wait, Some(true));
}
