//! `x-query-chardev-stats` and HMP `info x-chardev-stats` of a running
//! guest: the serial console's chardev counters, and its UART's under it.

mod common;

use common::{p, qchar_and_qmp};
use qchar_testkit::{require, wait_until, Prereq};
use serde_json::{json, Value};

fn chardev(stats: &Value, label: &str) -> Value {
    stats
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["label"] == label)
        .unwrap_or_else(|| panic!("no {label} in {stats}"))
        .clone()
}

#[test]
fn uart_counters_come_under_the_chardev_their_uart_uses() {
    if !require(Prereq::Kvm) {
        return;
    }
    let (dir, mut proc, mut q) = qchar_and_qmp(
        "-nodefaults -display none -chardev file,id=con,path=$D/console.log \
         -serial chardev:con -qmp unix:$D/a,server=on,wait=off -fda builtin:demo",
    );
    let log = p(dir.path(), "console.log");
    wait_until("the guest printing", || {
        std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) > 1000
    });
    q.cmd("stop", Value::Null);
    // Once the guest is stopped and the chardev has handed everything to
    // its file, the UART's, the chardev's and the file's counts agree.
    let mut con = Value::Null;
    wait_until("the console drained", || {
        con = chardev(&q.cmd("x-query-chardev-stats", Value::Null), "con");
        con["queued"] == 0 && con["frontends"][0]["tx-bytes"] == con["bytes-out"]
    });
    let out = con["bytes-out"].as_u64().unwrap();
    assert_eq!(out, std::fs::metadata(&log).unwrap().len(), "{con}");
    let uart = &con["frontends"][0];
    assert_eq!(uart["type"], "uart", "{con}");
    assert_eq!(con["frontends"].as_array().unwrap().len(), 1, "{con}");
    // The demo guest waits for THRE before each byte: nothing dropped, no
    // clears, no input.
    for (k, v) in [
        ("tx-dropped", 0),
        ("rx-bytes", 0),
        ("rx-overruns", 0),
        ("bad-accesses", 0),
    ] {
        assert_eq!(uart[k], json!(v), "{k} in {con}");
    }
    assert_eq!(con["bytes-lost"], 0);
    // HMP prints the same numbers.
    let text = q.cmd(
        "human-monitor-command",
        json!({"command-line": "info x-chardev-stats"}),
    );
    let text = text.as_str().unwrap();
    assert!(
        text.contains(&format!("con: bytes-in=0 bytes-out={out} bytes-lost=0 changes=0 queued=0 log-dropped=0\r\n  uart: tx-bytes={out} ")),
        "{text}"
    );
    q.cmd("quit", Value::Null);
    assert!(proc.wait().success(), "{}", proc.stderr());
}
