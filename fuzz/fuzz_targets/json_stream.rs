//! The QMP JSON stream parser alone (fast, so it gets many more runs than
//! the `qmp` target).
//!
//! Invariants:
//! - no panic, whatever the bytes;
//! - chunked input == whole input: the same messages and errors, in order;
//! - a parsed value printed by the writer parses back, and from then on a
//!   print/parse round loses nothing (the writer normalizes once: invalid
//!   UTF-8 to U+FFFD, `5.0` to `5`...; object members may come out in
//!   another order, as QEMU's hash table prints them, so objects are
//!   compared as sets of members); values holding inf/nan are skipped, as
//!   QEMU prints them as C does (`inf`), which is not JSON;
//! - small limits (chosen by the input's hash) are enforced like the big
//!   ones, so the limit paths run with short inputs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qchar_fuzz::{chunks, Rng};
use qchar_monitor::json::{Dict, JsonLimits, JsonStreamer, Value};

fn has_nonfinite(v: &Value) -> bool {
    match v {
        Value::Float(f) => !f.is_finite(),
        Value::List(l) => l.iter().any(has_nonfinite),
        Value::Dict(d) => d.iter().any(|(_, v)| has_nonfinite(v)),
        _ => false,
    }
}

/// `v` with every object's members sorted by key.
fn canonical(v: &Value) -> Value {
    match v {
        Value::List(l) => Value::List(l.iter().map(canonical).collect()),
        Value::Dict(d) => {
            let mut members: Vec<(&[u8], &Value)> = d.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            let mut out = Dict::new();
            for (k, v) in members {
                out.insert(k.to_vec(), canonical(v));
            }
            Value::Dict(out)
        }
        v => v.clone(),
    }
}

/// Parses one printed value (a newline ends a trailing number or keyword).
fn reparse(printed: &[u8], limits: JsonLimits) -> Value {
    let mut s = JsonStreamer::new(limits);
    let mut input = printed.to_vec();
    input.push(b'\n');
    let mut msgs = s.feed(&input);
    assert_eq!(
        msgs.len(),
        1,
        "printed value {:?} parsed as {} messages",
        String::from_utf8_lossy(printed),
        msgs.len()
    );
    assert!(s.is_idle(), "input left over after a printed value");
    match msgs.pop().unwrap() {
        Ok(v) => v,
        Err(e) => panic!(
            "printed value {:?} does not parse: {e}",
            String::from_utf8_lossy(printed)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut rng = Rng::from_data(data);
    let limits = if rng.next_u64().is_multiple_of(2) {
        JsonLimits::default()
    } else {
        JsonLimits {
            max_size: rng.range(1, 512),
            max_tokens: rng.range(1, 64),
            max_nesting: rng.range(1, 16) as i64,
        }
    };

    let whole = JsonStreamer::new(limits).feed(data);

    let mut s = JsonStreamer::new(limits);
    let mut pieces = Vec::new();
    for c in chunks(data, &mut rng, 64) {
        s.feed_with(c, |m| pieces.push(m));
    }
    assert_eq!(whole, pieces, "chunked input parsed differently");

    // The writer's output parses back (with QEMU's limits: printing may
    // lengthen a value), and printing is stable after one round.
    for v in whole.iter().flatten() {
        if has_nonfinite(v) {
            continue;
        }
        let v1 = reparse(&v.to_json(), JsonLimits::default());
        let v2 = reparse(&v1.to_json(), JsonLimits::default());
        assert_eq!(
            canonical(&v1),
            canonical(&v2),
            "a print/parse round changed a printed value"
        );
    }
});
