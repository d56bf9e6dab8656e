//! `x-chardev-history` and HMP `x-chardev-history` over a real QMP socket:
//! a chardev's newest output, read without consuming it, in
//! `ringbuf-read`'s formats and with its order of checks.

mod common;

use common::{Client, Harness};
use qchar_chardev::spec::{ChardevBackend, ChardevCommon};
use qchar_testkit::wait_until;

fn hmp(c: &mut Client, line: &str) -> String {
    c.cmd(&format!(
        "{{\"execute\":\"human-monitor-command\",\"arguments\":{{\"command-line\":\"{line}\"}}}}"
    ))
}

#[test]
fn history_on_demand_over_qmp_and_hmp() {
    let mut h = Harness::new();
    let path = h.qmp_socket("mon0");
    let null = |backlog| {
        ChardevBackend::Null(ChardevCommon {
            backlog,
            ..Default::default()
        })
    };
    h.reg.add("con", null(Some(4096))).unwrap();
    h.reg.add("plain", null(None)).unwrap();
    let fe = h.reg.attach("con").unwrap();
    fe.write_all(b"boot: ok\nlogin: ").unwrap();
    wait_until("sent out", || h.reg.stats("con").unwrap().queued == 0);

    let mut c = Client::connect(&path);
    c.handshake();
    let cmds = c.cmd("{\"execute\":\"query-commands\"}");
    assert!(cmds.contains("{\"name\": \"x-chardev-history\"}"), "{cmds}");
    let read = |c: &mut Client, args: &str| {
        c.cmd(&format!(
            "{{\"execute\":\"x-chardev-history\",\"arguments\":{args}}}"
        ))
    };
    let all = "{\"return\": \"boot: ok\\nlogin: \"}\r\n";
    assert_eq!(read(&mut c, "{\"device\":\"con\",\"size\":100}"), all);
    // Not consumed: the same again; `size` takes the newest bytes.
    assert_eq!(read(&mut c, "{\"device\":\"con\",\"size\":100}"), all);
    assert_eq!(
        read(&mut c, "{\"device\":\"con\",\"size\":7}"),
        "{\"return\": \"login: \"}\r\n"
    );
    assert_eq!(
        read(
            &mut c,
            "{\"device\":\"con\",\"size\":7,\"format\":\"base64\"}"
        ),
        "{\"return\": \"bG9naW46IA==\"}\r\n"
    );
    let err =
        |d: &str| format!("{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"{d}\"}}}}\r\n");
    assert_eq!(
        read(&mut c, "{\"device\":\"nope\",\"size\":0}"),
        err("Chardev 'nope' not found"),
        "the device is checked before the size, as ringbuf-read does"
    );
    assert_eq!(
        read(&mut c, "{\"device\":\"con\",\"size\":0}"),
        err("size must be greater than zero")
    );
    assert_eq!(
        read(&mut c, "{\"device\":\"plain\",\"size\":10}"),
        err("Chardev 'plain' keeps no history (it needs backlog=SIZE)")
    );
    assert_eq!(
        read(&mut c, "{\"device\":\"con\",\"size\":1,\"format\":\"hex\"}"),
        err("Parameter 'format' does not accept value 'hex'")
    );
    assert_eq!(
        read(&mut c, "{\"device\":\"con\"}"),
        err("Parameter 'size' is missing")
    );

    assert_eq!(
        hmp(&mut c, "x-chardev-history con 100"),
        "{\"return\": \"boot: ok\\r\\nlogin: \\r\\n\"}\r\n"
    );
    assert_eq!(
        hmp(&mut c, "x-chardev-history nope 5"),
        "{\"return\": \"Error: Chardev 'nope' not found\\r\\n\"}\r\n"
    );
    assert_eq!(
        hmp(&mut c, "x-chardev-history con"),
        "{\"return\": \"unexpected end of expression\\r\\nTry \\\"help x-chardev-history\\\" for more information\\r\\n\"}\r\n"
    );
    let help = hmp(&mut c, "help x-chardev-history");
    assert!(help.contains("x-chardev-history device size -- "), "{help}");
    fe.detach();
}
