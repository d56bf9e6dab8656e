//! The `-chardev` option parser and the `-serial` shorthand parser.
//!
//! The input is split at its first NUL: `-chardev` string before it, and, if
//! there is a NUL, the shorthand string after it (with a valid label). Both
//! strings go to both parsers so every byte is used either way.
//!
//! Invariants:
//! - no panic, whatever the string;
//! - a successful parse serializes to JSON (the QMP `ChardevBackend` form)
//!   and deserializes back to the same spec;
//! - parsing is deterministic (a second parse gives the same result);
//! - warnings come only with a successful parse (the API's contract), and
//!   `parse_chardev` agrees with `parse_chardev_with_warnings`;
//! - the parsed id is a valid identifier, as the parser promises.
//!
//! Each string also goes to the keyval parser (`-machine`/`-display`):
//! no panic, and every key it accepts is non-empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qchar_chardev::opts::{
    parse_chardev, parse_chardev_with_warnings, parse_serial_shorthand, ChardevOptions,
    SerialTarget,
};
use qchar_chardev::qemuopts::{keyval, KeyvalItem};
use qchar_chardev::spec::ChardevBackend;

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

fn roundtrip(b: &ChardevBackend) {
    let json = serde_json::to_string(b).expect("a parsed spec serializes");
    let back: ChardevBackend =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json} does not deserialize: {e}"));
    assert_eq!(&back, b, "JSON round trip changed the spec: {json}");
}

fn check_options(o: &ChardevOptions) {
    roundtrip(&o.backend);
    assert!(valid_id(&o.id), "parsed id {:?} is not an identifier", o.id);
}

fn chardev(s: &str) {
    let r = parse_chardev_with_warnings(s);
    assert_eq!(
        r,
        parse_chardev_with_warnings(s),
        "parse is not deterministic"
    );
    assert_eq!(r.clone().map(|(o, _)| o), parse_chardev(s));
    if let Ok((o, warnings)) = &r {
        check_options(o);
        assert!(warnings.iter().all(|w| !w.is_empty()));
    }
    if let Err(e) = &r {
        // Display and hint never panic and say something.
        assert!(!e.to_string().is_empty());
        let _ = e.hint();
    }
}

fn keyval_string(s: &str) {
    if let Ok(items) = keyval(s, Some("type")) {
        for item in items {
            if let KeyvalItem::Pair { key, .. } = item {
                assert!(!key.is_empty(), "empty key accepted in {s:?}");
            }
        }
    }
}

fn shorthand(s: &str) {
    let r = parse_serial_shorthand(s, "serial0");
    assert_eq!(r, parse_serial_shorthand(s, "serial0"));
    match &r {
        Ok(SerialTarget::New { options, monitor }) => {
            assert_eq!(options.id, "serial0");
            assert_eq!(*monitor, options.mux);
            check_options(options);
        }
        Ok(SerialTarget::Existing(_)) => assert!(s.starts_with("chardev:")),
        Ok(SerialTarget::None) => assert_eq!(s, "none"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = match text.split_once('\0') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    chardev(a);
    shorthand(a);
    keyval_string(a);
    if let Some(b) = b {
        chardev(b);
        shorthand(b);
        keyval_string(b);
    }
});
