//! Session tests against the real chardev registry (no sockets): the same
//! bytes QEMU 7.2 was sent must produce the same reply bytes.

use std::sync::{Arc, Mutex};

use qchar_chardev::registry::Registry;

use super::*;
use crate::event::{EventBus, EventSink};
use crate::json::Value;
use crate::vm::NoGuest;

mod qemu72 {
    include!("../../tests/data/qemu72.rs");
}

/// Replaces the digits after `"seconds": ` and `"microseconds": ` with S/U.
pub(crate) fn mask_timestamps(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let mut hit = false;
        for (key, rep) in [
            (&b"\"seconds\": "[..], b'S'),
            (&b"\"microseconds\": "[..], b'U'),
        ] {
            if b[i..].starts_with(key) {
                out.extend_from_slice(key);
                i += key.len();
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                out.push(rep);
                hit = true;
                break;
            }
        }
        if !hit {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

pub(crate) struct Capture(pub(crate) Mutex<Vec<u8>>);

impl EventSink for Capture {
    fn send_event(&self, line: &[u8], _event: &Value) {
        self.0.lock().unwrap().extend_from_slice(line);
    }
}

pub(crate) fn qemu_like_env(reg: &Registry) -> (QmpEnv, Arc<Capture>) {
    let events = EventBus::new();
    let cap = Arc::new(Capture(Mutex::new(Vec::new())));
    let sink: Arc<dyn EventSink> = cap.clone();
    events.register(Arc::downgrade(&sink));
    std::mem::forget(sink);
    let env = QmpEnv {
        chardevs: Arc::new(reg.clone()),
        vm: Arc::new(NoGuest::new(events.clone(), true, || {})),
        version: VersionInfo {
            major: 7,
            minor: 2,
            micro: 22,
            package: "Debian 1:7.2+dfsg-7+deb12u18+b3".into(),
        },
        events,
        web: None,
    };
    (env, cap)
}

#[test]
fn conversation_matches_qemu_7_2_byte_for_byte() {
    let reg = Registry::new().unwrap();
    let (env, events) = qemu_like_env(&reg);
    let mut s = QmpSession::new(true);
    assert_eq!(
        String::from_utf8_lossy(&s.greeting(&env)),
        String::from_utf8_lossy(qemu72::GREETING)
    );
    let mut failures = Vec::new();
    for (input, want) in qemu72::CONVERSATION {
        let mut got = Vec::new();
        s.feed(&env, input, &mut |_, line| {
            // Events emitted by the command come first, as in QEMU.
            got.append(&mut events.0.lock().unwrap());
            got.extend_from_slice(&line);
        });
        got.append(&mut events.0.lock().unwrap());
        let got = mask_timestamps(&got);
        if got != *want {
            failures.push(format!(
                "input {:?}\n  qemu:  {:?}\n  qchar: {:?}",
                String::from_utf8_lossy(input),
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&got)
            ));
        }
    }
    reg.shutdown();
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
