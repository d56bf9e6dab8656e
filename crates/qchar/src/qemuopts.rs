//! QEMU's `key=value,key=value` option syntax for the options qchar parses
//! itself (`-mon`, `-device`, `-drive`, `-m`, `-name`, `-machine`, `-accel`,
//! `-display`), QEMU's size and integer spellings, and identifiers. No I/O.
//!
//! `-chardev` and the `-serial` shorthands are parsed by
//! `qchar_chardev::opts`, which has its own copy of these rules.

/// One `key=value` element. A short-form boolean (`pretty`, `noX`) comes out
/// as `key=on`/`key=off` with `short_form` set, so the caller can warn as
/// QEMU 7.2 does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The key (the implied key for a leading bare value).
    pub key: String,
    /// The value, `,,` unescaped.
    pub value: String,
    /// Written without `=`: a deprecated short-form boolean.
    pub short_form: bool,
}

/// Reads a value up to the next lone `,` (`,,` is a literal comma).
/// Returns the value and the index just past the terminating comma (or the
/// end of the string).
fn read_value(s: &str, mut i: usize) -> (String, usize) {
    let b = s.as_bytes();
    let mut out = Vec::new();
    while i < b.len() {
        if b[i] == b',' {
            if b.get(i + 1) == Some(&b',') {
                out.push(b',');
                i += 2;
                continue;
            }
            return (String::from_utf8_lossy(&out).into_owned(), i + 1);
        }
        out.push(b[i]);
        i += 1;
    }
    (String::from_utf8_lossy(&out).into_owned(), i)
}

/// Splits an option string into elements, QEMU's way: keys end at `=` or
/// `,`; values run to the next lone `,`; a first element without `=` is the
/// value of `implied` when there is one; any other element without `=` is a
/// short-form boolean (`key` is `key=on`, `nokey` is `key=off`), except the
/// words `help` and `?`, which come out as key `help`. (A leading `help` is
/// the implied key's value: callers check for it.)
pub fn split(s: &str, implied: Option<&str>) -> Vec<Pair> {
    let b = s.as_bytes();
    let mut pairs = Vec::new();
    let mut i = 0;
    let mut first = true;
    while i < b.len() {
        // The key: up to '=' or ','.
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let name = &s[start..i];
        if i < b.len() && b[i] == b'=' {
            let (value, next) = read_value(s, i + 1);
            pairs.push(Pair {
                key: name.to_string(),
                value,
                short_form: false,
            });
            i = next;
        } else if first && implied.is_some() {
            let (value, next) = read_value(s, start);
            pairs.push(Pair {
                key: implied.unwrap_or_default().to_string(),
                value,
                short_form: false,
            });
            i = next;
        } else {
            if i < b.len() {
                i += 1; // the ','
            }
            if name == "help" || name == "?" {
                pairs.push(Pair {
                    key: "help".into(),
                    value: name.into(),
                    short_form: false,
                });
            } else if !name.is_empty() {
                let (key, value) = match name.strip_prefix("no") {
                    Some(rest) => (rest, "off"),
                    None => (name, "on"),
                };
                pairs.push(Pair {
                    key: key.to_string(),
                    value: value.to_string(),
                    short_form: true,
                });
            }
        }
        first = false;
    }
    pairs
}

/// The deprecation warning QEMU 7.2 prints for a short-form boolean (the
/// text after `warning: `; the second line is printed without prefix).
pub fn short_form_warning(p: &Pair) -> String {
    format!(
        "short-form boolean option '{}' deprecated\nPlease use {}={} instead",
        if p.value == "off" {
            format!("no{}", p.key)
        } else {
            p.key.clone()
        },
        p.key,
        p.value
    )
}

/// QEMU's boolean spellings.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "on" | "yes" | "true" | "y" => Some(true),
        "off" | "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

/// QEMU's identifier rule: letters, digits, `-`, `.`, `_`, starting with a
/// letter.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// The hint QEMU prints under an invalid identifier.
pub const IDENTIFIER_HINT: &str =
    "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.";

/// The hint QEMU prints under an invalid size.
pub const SIZE_HINT: &str = "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.";

/// An unsigned integer as C's `strtoull(s, &end, 0)` reads it (decimal,
/// `0x` hex or leading-`0` octal), the whole string, no sign. `None` when it
/// is not a number or does not fit.
pub fn parse_c_u64(s: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Why a size was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeError {
    /// Not a size at all.
    Invalid,
    /// Above 2^64 - 1.
    TooLarge,
}

/// A size as QEMU's `qemu_strtosz` reads it: a decimal number (a fraction
/// allowed) or a `0x` hex integer, then an optional suffix `B`, `K`/`k`,
/// `M`, `G`, `T`, `P`, `E` (powers of 1024, case-insensitive). Without a
/// suffix the number counts in units of `default_suffix`. Returns the size
/// and, for a hex number with a suffix, the deprecation warning QEMU prints.
pub fn parse_size(s: &str, default_suffix: char) -> Result<(u64, Option<String>), SizeError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == 0 {
        return Err(SizeError::Invalid);
    }
    let mut hex = false;
    let mut frac = false;
    if &s[..i] == "0" && matches!(b.get(i), Some(b'x') | Some(b'X')) {
        let start = i + 1;
        let mut j = start;
        while j < b.len() && b[j].is_ascii_hexdigit() {
            j += 1;
        }
        if j == start {
            return Err(SizeError::Invalid);
        }
        i = j;
        hex = true;
    } else if b.get(i) == Some(&b'.') {
        let mut j = i + 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        i = j;
        frac = true;
    }
    let number = &s[..i];
    let rest = &s[i..];
    let (mul_char, explicit) = match rest.chars().next() {
        None => (default_suffix, false),
        Some(c) if rest.len() == 1 => (c, true),
        Some(_) => return Err(SizeError::Invalid),
    };
    let shift = match mul_char.to_ascii_uppercase() {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        'P' => 50,
        'E' => 60,
        _ => return Err(SizeError::Invalid),
    };
    let warning = (hex && explicit)
        .then(|| format!("Using a multiplier suffix on hex numbers is deprecated: {s}"));
    if frac {
        let v: f64 = number.parse().map_err(|_| SizeError::Invalid)?;
        let bytes = v * (1u128 << shift) as f64;
        // 2^64 itself does not fit.
        if bytes >= 18_446_744_073_709_551_616.0 {
            return Err(SizeError::TooLarge);
        }
        return Ok((bytes as u64, warning));
    }
    let v = if hex {
        u64::from_str_radix(&number[2..], 16).map_err(|_| SizeError::TooLarge)?
    } else {
        number.parse::<u64>().map_err(|_| SizeError::TooLarge)?
    };
    let bytes = (v as u128) << shift;
    u64::try_from(bytes)
        .map(|b| (b, warning))
        .map_err(|_| SizeError::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(s: &str, implied: Option<&str>) -> Vec<(String, String, bool)> {
        split(s, implied)
            .into_iter()
            .map(|p| (p.key, p.value, p.short_form))
            .collect()
    }

    #[test]
    fn split_rules() {
        assert_eq!(
            kv("c,mode=control,pretty", Some("chardev")),
            vec![
                ("chardev".into(), "c".into(), false),
                ("mode".into(), "control".into(), false),
                ("pretty".into(), "on".into(), true),
            ]
        );
        assert_eq!(
            kv("file=a,,b,if=floppy", None),
            vec![
                ("file".into(), "a,b".into(), false),
                ("if".into(), "floppy".into(), false)
            ]
        );
        assert_eq!(
            kv("x,nowait", None),
            vec![
                ("x".into(), "on".into(), true),
                ("wait".into(), "off".into(), true)
            ]
        );
        assert_eq!(
            kv("isa-serial,help", Some("driver")),
            vec![
                ("driver".into(), "isa-serial".into(), false),
                ("help".into(), "help".into(), false)
            ]
        );
        assert_eq!(
            kv("help", Some("type"))[0],
            ("type".into(), "help".into(), false)
        );
        assert_eq!(kv("", Some("type")), vec![]);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64", 'M'), Ok((64 << 20, None)));
        assert_eq!(parse_size("64M", 'B'), Ok((64 << 20, None)));
        assert_eq!(parse_size("64k", 'B'), Ok((64 << 10, None)));
        assert_eq!(parse_size("1.5G", 'B'), Ok((3 << 29, None)));
        assert_eq!(
            parse_size("0x10M", 'B'),
            Ok((
                16 << 20,
                Some("Using a multiplier suffix on hex numbers is deprecated: 0x10M".into())
            ))
        );
        assert_eq!(parse_size("0x10", 'B'), Ok((16, None)));
        assert_eq!(parse_size("foo", 'M'), Err(SizeError::Invalid));
        assert_eq!(parse_size("64Q", 'M'), Err(SizeError::Invalid));
        assert_eq!(parse_size("-1", 'M'), Err(SizeError::Invalid));
        assert_eq!(parse_size("16E", 'M'), Err(SizeError::TooLarge));
        assert_eq!(
            parse_size("18446744073709551616", 'B'),
            Err(SizeError::TooLarge)
        );
    }

    #[test]
    fn integers_and_ids() {
        assert_eq!(parse_c_u64("0x2f8"), Some(0x2f8));
        assert_eq!(parse_c_u64("760"), Some(760));
        assert_eq!(parse_c_u64("010"), Some(8));
        assert_eq!(parse_c_u64("0"), Some(0));
        assert_eq!(parse_c_u64("zz"), None);
        assert_eq!(parse_c_u64("-1"), None);
        assert!(is_identifier("serial0"));
        assert!(is_identifier("a-b.c_d"));
        assert!(!is_identifier("0x"));
        assert!(!is_identifier("bad!"));
        assert!(!is_identifier(""));
        assert_eq!(parse_bool("on"), Some(true));
        assert_eq!(parse_bool("n"), Some(false));
        assert_eq!(parse_bool("bogus"), None);
    }
}
