//! What a TLS console reads from others: a client certificate's subject DN
//! (the peer chooses it) and the `-object`/`object-add` forms of
//! `authz-simple` and `authz-list` (the operator's, and HMP's `object_add`).
//!
//! The input's first byte picks the parser, the rest is its input:
//! - `d`: DER bytes to `tls::dn::subject_dn`;
//! - `k`: a string to `ObjectOptions::from_keyval` (HMP's keyval form);
//! - `j`: JSON to `ObjectOptions::from_json` (QMP's `object-add` form);
//! - anything else: two strings (split at the first NUL) to `glob_match`.
//!
//! Invariants:
//! - no panic, whatever the bytes;
//! - a DN is non-empty and at most 8 times the certificate's size (it is
//!   made of the certificate's own bytes, hex or escaped, and OID names);
//! - every string matches itself as a glob pattern (`*` and `?` match
//!   themselves too), `*` matches every string, and a pattern without `*`
//!   or `?` matches exactly itself;
//! - an authz object that parses is created in an `ObjectStore`: its type
//!   is the one asked, every property `qom-list` shows can be read, a
//!   second object with the same id is refused, and after `object-del` it
//!   is gone; an `authz-simple` lets its own identity in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qchar_chardev::tls::authz::{glob_match, Authz};
use qchar_chardev::tls::dn::subject_dn;
use qchar_chardev::tls::object::Object;
use qchar_chardev::tls::{ObjectOptions, ObjectStore, PropValue};

fn prop(v: &serde_json::Value) -> PropValue {
    use serde_json::Value;
    match v {
        Value::Null => PropValue::Null,
        Value::Bool(b) => PropValue::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map(PropValue::Int)
            .unwrap_or_else(|| PropValue::Float(n.as_f64().unwrap_or_default())),
        Value::String(s) => PropValue::Str(s.clone()),
        Value::Array(a) => PropValue::List(a.iter().map(prop).collect()),
        Value::Object(o) => PropValue::Dict(o.iter().map(|(k, v)| (k.clone(), prop(v))).collect()),
    }
}

fn check_object(o: ObjectOptions) {
    if !o.qom_type.starts_with("authz-") {
        // Credentials read files from their `dir`: not this target's job.
        return;
    }
    let store = ObjectStore::new();
    if store.add(&o).is_err() {
        return;
    }
    let obj = store.get(&o.id).expect("an added object is there");
    assert_eq!(obj.type_name(), o.qom_type);
    for (name, _) in obj.property_types() {
        if let Err(e) = obj.property(name) {
            panic!("{} lists {name} and cannot read it: {e}", o.qom_type);
        }
    }
    if let Object::Authz(a) = &*obj {
        if let Authz::Simple { identity } = &**a {
            assert!(a.is_allowed(identity), "authz-simple refuses its identity");
        }
    }
    assert!(store.add(&o).is_err(), "the same id was added twice");
    store.del(&o.id).expect("an added object can be deleted");
    assert!(store.get(&o.id).is_none(), "deleted, still there");
}

fn check_glob(p: &str, s: &str) {
    assert!(glob_match(p, p), "{p:?} does not match itself");
    assert!(glob_match("*", s));
    if !p.contains(['*', '?']) {
        assert_eq!(glob_match(p, s), p == s, "{p:?} vs {s:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        b'd' => {
            if let Ok(dn) = subject_dn(rest) {
                assert!(!dn.is_empty());
                assert!(
                    dn.len() <= 8 * rest.len(),
                    "{} bytes of DN from {}",
                    dn.len(),
                    rest.len()
                );
                check_glob(&dn, &dn);
            }
        }
        b'k' => {
            if let Ok(o) = ObjectOptions::from_keyval(&String::from_utf8_lossy(rest)) {
                check_object(o);
            }
        }
        b'j' => {
            let Ok(serde_json::Value::Object(m)) = serde_json::from_slice(rest) else {
                return;
            };
            let members: Vec<(String, PropValue)> =
                m.iter().map(|(k, v)| (k.clone(), prop(v))).collect();
            if let Ok(o) = ObjectOptions::from_json(&members) {
                check_object(o);
            }
        }
        _ => {
            let (p, s) = match rest.iter().position(|&b| b == 0) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b""[..]),
            };
            check_glob(&String::from_utf8_lossy(p), &String::from_utf8_lossy(s));
        }
    }
});
