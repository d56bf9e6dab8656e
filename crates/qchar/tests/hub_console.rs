//! qchar's own guest with its console on a `hub` whose members are changed
//! under it while it prints, and the hub itself changed into another hub:
//! every member gets every line it should once, in order (a member's
//! files joined in change order), over QMP against a KVM guest.

mod common;

use std::path::Path;

use common::*;
use qchar_testkit::{require, wait_until, Prereq};
use serde_json::{json, Value};

fn file(path: &Path) -> Value {
    json!({"type": "file", "data": {"out": path.to_str().unwrap()}})
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

#[test]
fn a_guest_console_on_a_hub_whose_members_change_under_it() {
    if !require(Prereq::Kvm) {
        return;
    }
    const CHANGES: usize = 200;
    let (dir, mut proc, mut q) = qchar_and_qmp(
        "-nodefaults -display none -S -qmp unix:$D/a,server=on,wait=off \
         -chardev file,id=m0,path=$D/m0.0 -chardev file,id=m1,path=$D/m1 \
         -chardev file,id=m2,path=$D/m2 \
         -chardev hub,id=con,chardevs.0=m0,chardevs.1=m1 \
         -serial chardev:con -fda builtin:demo",
    );
    let d = dir.path();
    let m0 = |i: usize| p(d, &format!("m0.{i}"));
    let filename = |q: &mut Qmp, id: &str| -> String {
        q.cmd("query-chardev", Value::Null)
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["label"] == id)
            .map(|c| c["filename"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(filename(&mut q, "con"), "hub", "QEMU 10's filename");
    q.cmd("cont", Value::Null);
    for i in 1..=CHANGES {
        // Let some lines into each of m0's files first.
        wait_until("the guest printing", || read(&m0(i - 1)).len() > 100);
        q.cmd(
            "chardev-change",
            json!({"id": "m0", "backend": file(&m0(i))}),
        );
        if i == CHANGES / 2 {
            // The hub itself: m1 leaves, m2 joins; m0 goes on without a gap.
            q.cmd(
                "chardev-change",
                json!({"id": "con", "backend": {"type": "hub",
                       "data": {"chardevs": ["m0", "m2"]}}}),
            );
        }
    }
    let before = read(&p(d, "m2")).len();
    wait_until("the guest printing", || read(&p(d, "m2")).len() > before);
    q.cmd("stop", Value::Null);
    let drained = |q: &mut Qmp| {
        q.cmd("x-query-chardev-stats", Value::Null)
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["queued"] == 0)
    };
    wait_until("output drained", || drained(&mut q));
    let joined: Vec<u8> = (0..=CHANGES).flat_map(|i| read(&m0(i))).collect();
    let lines = check_demo_stream(&joined).0;
    assert!(lines > CHANGES as u64, "m0: {lines} lines");
    // m1 got the start up to the hub change, m2 the rest from there: each
    // a run of the same lines (the guest's stream is m0's).
    let (m1, m2) = (read(&p(d, "m1")), read(&p(d, "m2")));
    assert!(
        joined.starts_with(&m1) && !m1.is_empty(),
        "m1: from the start"
    );
    let from = joined
        .windows(m2.len().min(64))
        .position(|w| w == &m2[..m2.len().min(64)])
        .expect("m2's start in m0's stream");
    assert!(joined[from..] == m2[..], "m2: from the change to the end");
    assert!(
        from <= m1.len() && from + 4096 * 2 >= m1.len(),
        "m2 took over where m1 left"
    );
    assert_eq!(
        q.cmd("x-query-chardev-stats", Value::Null)
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["label"] == "m0")
            .unwrap()["changes"],
        CHANGES
    );
    // m1 is free again: a new chardev-remove works.
    q.cmd("chardev-remove", json!({"id": "m1"}));
    q.cmd("quit", Value::Null);
    assert!(proc.wait().success(), "{}", proc.stderr());
}
