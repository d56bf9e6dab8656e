//! QEMU's other option grammar, *keyval* (`util/keyval.c`), which QEMU 7.2
//! uses for `-machine` and `-display`: keys must be (dotted) QAPI names and
//! always take `=`, a bare `help`/`?` asks for help, and the implied first
//! value ends at the first comma.
// Hand-written: QEMU's keyval grammar has no crate either.

use super::QemuOptsError;

/// One element of a keyval string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyvalItem {
    /// `key=value` (or the implied key's value), `,,` unescaped.
    Pair {
        /// The key, dotted fragments and all.
        key: String,
        /// The value.
        value: String,
    },
    /// A bare `help` or `?`.
    Help,
}

/// Longest key fragment QEMU takes (its buffer holds 127 bytes).
const MAX_FRAGMENT: usize = 127;

/// Splits `s` as QEMU's `keyval_parse` does; `implied` names the key of a
/// first element without `=` (its value runs to the first `,` or `=`, with
/// no escapes). A help request is returned in place, for the caller to
/// honour or refuse, since QEMU finishes the parse first.
///
/// Errors, in QEMU's words: a key that is not a QAPI name (an ASCII letter
/// then letters, digits, `-`, `_`; later fragments may be all digits) is an
/// [`QemuOptsError::InvalidParameter`], a key without `=` an
/// [`QemuOptsError::ExpectedEquals`], a fragment over 127 bytes a
/// [`QemuOptsError::KeyTooLong`].
pub fn keyval(s: &str, mut implied: Option<&str>) -> Result<Vec<KeyvalItem>, QemuOptsError> {
    let b = s.as_bytes();
    let mut items = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let len = b[pos..]
            .iter()
            .position(|&c| c == b'=' || c == b',')
            .unwrap_or(b.len() - pos);
        let word = &s[pos..pos + len];
        let after = pos + len;
        let implied_key = implied.take();
        if len > 0 && b.get(after) != Some(&b'=') {
            if word == "help" || word == "?" {
                items.push(KeyvalItem::Help);
                pos = skip_comma(b, after);
                continue;
            }
            if let Some(key) = implied_key {
                items.push(KeyvalItem::Pair {
                    key: key.to_string(),
                    value: word.to_string(),
                });
                pos = skip_comma(b, after);
                continue;
            }
        }
        check_key(word)?;
        if b.get(after) != Some(&b'=') {
            return Err(QemuOptsError::ExpectedEquals(word.to_string()));
        }
        let (value, next) = read_value(s, after + 1);
        items.push(KeyvalItem::Pair {
            key: word.to_string(),
            value,
        });
        pos = next;
    }
    Ok(items)
}

fn skip_comma(b: &[u8], pos: usize) -> usize {
    if b.get(pos) == Some(&b',') {
        pos + 1
    } else {
        pos
    }
}

/// A value up to the next single `,` (`,,` is a comma); returns it and the
/// index after the ending comma.
fn read_value(s: &str, mut pos: usize) -> (String, usize) {
    let b = s.as_bytes();
    let mut out = String::new();
    loop {
        let seg_end = b[pos..]
            .iter()
            .position(|&c| c == b',')
            .map_or(b.len(), |i| pos + i);
        out.push_str(&s[pos..seg_end]);
        if b.get(seg_end + 1) == Some(&b',') {
            out.push(',');
            pos = seg_end + 2;
        } else {
            return (out, (seg_end + 1).min(b.len()));
        }
    }
}

/// Checks each dot-separated fragment of `key`.
fn check_key(key: &str) -> Result<(), QemuOptsError> {
    let dotted = key.contains('.');
    for (i, fragment) in key.split('.').enumerate() {
        let name = qapi_name_len(fragment);
        let index = i > 0 && !fragment.is_empty() && fragment.bytes().all(|c| c.is_ascii_digit());
        if !index && (name == 0 || name != fragment.len()) {
            return Err(QemuOptsError::InvalidParameter(key.to_string()));
        }
        if fragment.len() > MAX_FRAGMENT {
            return Err(QemuOptsError::KeyTooLong {
                key: fragment.to_string(),
                fragment: dotted,
            });
        }
    }
    Ok(())
}

/// Length of the QAPI name at the start of `s` (an ASCII letter, then
/// letters, digits, `-`, `_`), 0 if there is none.
fn qapi_name_len(s: &str) -> usize {
    let b = s.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_alphabetic) {
        return 0;
    }
    1 + b[1..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(key: &str, value: &str) -> KeyvalItem {
        KeyvalItem::Pair {
            key: key.into(),
            value: value.into(),
        }
    }

    fn err(s: &str, implied: Option<&str>) -> String {
        match keyval(s, implied) {
            Ok(items) => panic!("{s:?} accepted: {items:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn accepted() {
        let k = |s: &str| keyval(s, Some("type")).unwrap();
        assert_eq!(k("pc"), [pair("type", "pc")]);
        assert_eq!(
            k("pc,accel=kvm"),
            [pair("type", "pc"), pair("accel", "kvm")]
        );
        assert_eq!(k("type=pc,,x"), [pair("type", "pc,x")]);
        assert_eq!(k("pc,a=b,,"), [pair("type", "pc"), pair("a", "b,")]);
        assert_eq!(k("pc,"), [pair("type", "pc")]);
        assert_eq!(k(""), []);
        assert_eq!(k("pc=x"), [pair("pc", "x")]);
        assert_eq!(
            k("a.b=1,a.0=2,A-b_c=3"),
            [pair("a.b", "1"), pair("a.0", "2"), pair("A-b_c", "3")]
        );
        assert_eq!(k("help"), [KeyvalItem::Help]);
        assert_eq!(k("pc,?"), [pair("type", "pc"), KeyvalItem::Help]);
        assert_eq!(keyval("x=1", None).unwrap(), [pair("x", "1")]);
    }

    /// Texts QEMU 7.2 prints for `-machine S` and `-display S`.
    #[test]
    fn refused_with_qemu_texts() {
        let table: &[(&str, &str)] = &[
            ("pc,accel", "Expected '=' after parameter 'accel'"),
            ("pc,nohelp", "Expected '=' after parameter 'nohelp'"),
            ("help,x", "Expected '=' after parameter 'x'"),
            ("pc,,x", "Invalid parameter ''"),
            ("pc,,", "Invalid parameter ''"),
            (",type=pc", "Invalid parameter ''"),
            ("=pc", "Invalid parameter ''"),
            ("pc,=x", "Invalid parameter ''"),
            ("pc,1=x", "Invalid parameter '1'"),
            ("pc,_a=1", "Invalid parameter '_a'"),
            ("pc,a..b=1", "Invalid parameter 'a..b'"),
            ("pc,a.=1", "Invalid parameter 'a.'"),
            ("pc,.a=1", "Invalid parameter '.a'"),
            ("pc,a.1b=1", "Invalid parameter 'a.1b'"),
            ("pc,a.-b=1", "Invalid parameter 'a.-b'"),
            ("pc,é=1", "Invalid parameter 'é'"),
            ("pc,help,1=x", "Invalid parameter '1'"),
        ];
        for (s, want) in table {
            assert_eq!(err(s, Some("type")), *want, "{s:?}");
        }
        let a127 = "a".repeat(127);
        assert!(keyval(&format!("{a127}=1"), None).is_ok());
        let a128 = "a".repeat(128);
        assert_eq!(
            err(&format!("none,{a128}=1"), Some("type")),
            format!("Parameter '{a128}' is too long")
        );
        let a130 = "a".repeat(130);
        assert_eq!(
            err(&format!("none,{a130}.b=1"), Some("type")),
            format!("Parameter fragment '{a130}' is too long")
        );
    }
}
