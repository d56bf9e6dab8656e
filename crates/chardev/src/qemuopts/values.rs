//! Typed values in option strings: QEMU's booleans, C integers (glibc's
//! `strtoull` behind QEMU's `qemu_strtou64`) and sizes (`qemu_strtosz`),
//! with the exact acceptance and rounding of QEMU 7.2 on x86-64 Linux.
// Hand-written: no crate reproduces C's strtoull/strtod edge cases or
// QEMU's 64.64 fixed-point size arithmetic, which the texts depend on.

/// Why a number or size was refused: QEMU's `-EINVAL` and `-ERANGE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumError {
    /// Not a number at all, or something after it.
    Invalid,
    /// A number that does not fit in 64 bits.
    Range,
}

/// QEMU's boolean spellings (`on`/`yes`/`true`/`y`, `off`/`no`/`false`/`n`;
/// case matters).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "on" | "yes" | "true" | "y" => Some(true),
        "off" | "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

/// C's `strtoull` on `s` in the C locale: leading white space, an optional
/// sign (a minus negates modulo 2^64), then digits of `radix`; radix 0 takes
/// a `0x` prefix for hex and a leading `0` for octal, radix 16 an optional
/// `0x`. Returns the value (or [`NumError::Range`] on overflow) and the
/// index where the digits ended; `None` when no digit was read.
pub fn strtoull(s: &str, radix: u32) -> Option<(Result<u64, NumError>, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let negative = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let has_hex_prefix = b.get(i) == Some(&b'0')
        && matches!(b.get(i + 1), Some(b'x' | b'X'))
        && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
    let radix = match radix {
        0 if has_hex_prefix => 16,
        0 if b.get(i) == Some(&b'0') => 8,
        0 => 10,
        r => r,
    };
    if radix == 16 && has_hex_prefix {
        i += 2;
    }
    let start = i;
    let mut value: u64 = 0;
    let mut overflow = false;
    while let Some(d) = b.get(i).and_then(|&c| (c as char).to_digit(radix)) {
        match value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
        i += 1;
    }
    if i == start {
        return None;
    }
    let result = if overflow {
        Err(NumError::Range)
    } else if negative {
        Ok(value.wrapping_neg())
    } else {
        Ok(value)
    };
    Some((result, i))
}

/// QEMU's `qemu_strtou64(s, NULL, 0, ...)`: the whole string must be one C
/// integer literal (decimal, `0x` hex or `0` octal, white space and a sign
/// in front allowed, `-N` wrapping to 2^64 - N). An overflow followed by
/// other characters is [`NumError::Invalid`].
pub fn strtou64(s: &str) -> Result<u64, NumError> {
    match strtoull(s, 0) {
        Some((_, end)) if end != s.len() => Err(NumError::Invalid),
        Some((result, _)) => result,
        None => Err(NumError::Invalid),
    }
}

/// The multiplier of a size suffix (powers of 1024, either case).
fn suffix_mul(c: u8) -> Option<u64> {
    let shift = match c.to_ascii_uppercase() {
        b'B' => 0,
        b'K' => 10,
        b'M' => 20,
        b'G' => 30,
        b'T' => 40,
        b'P' => 50,
        b'E' => 60,
        _ => return None,
    };
    Some(1 << shift)
}

/// What C's `strtod` makes of a fraction `.DIGITS[EXPONENT]`.
enum Fraction {
    /// No digit after the dot: nothing converted.
    NoConversion,
    /// The value under- or overflowed (`ERANGE`); `usize` bytes were read.
    Range(usize),
    /// An exponent was read.
    Exponent,
    /// The value (below or, rounded, equal to 1) and the bytes read.
    Value(f64, usize),
}

/// `b` starts at a `.`.
fn strtod_fraction(b: &[u8]) -> Fraction {
    let digits = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return Fraction::NoConversion;
    }
    let mantissa_end = 1 + digits;
    let exponent = exponent_len(&b[mantissa_end..]);
    let end = mantissa_end + exponent;
    // Only ASCII digits, '.', 'e', signs: valid UTF-8 and a valid float.
    let text = std::str::from_utf8(&b[..end]).unwrap_or(".0");
    let value: f64 = format!("0{text}").parse().unwrap_or(0.0);
    let nonzero = b[1..mantissa_end].iter().any(|&c| c != b'0');
    // glibc reports ERANGE for an infinite result and for a non-zero one
    // that ends up subnormal or zero (exact subnormals, which need hundreds
    // of digits, are counted as underflow too).
    if value.is_infinite() || (nonzero && value < f64::MIN_POSITIVE) {
        Fraction::Range(end)
    } else if exponent > 0 {
        Fraction::Exponent
    } else {
        Fraction::Value(value, end)
    }
}

/// Length of a C floating-point exponent at the start of `b` (`e`, an
/// optional sign, at least one digit), or 0.
fn exponent_len(b: &[u8]) -> usize {
    if !matches!(b.first(), Some(b'e' | b'E')) {
        return 0;
    }
    let sign = usize::from(matches!(b.get(1), Some(b'+' | b'-')));
    let digits = b[1 + sign..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits == 0 {
        0
    } else {
        1 + sign + digits
    }
}

/// A fraction in [0, 1] as the 64-bit fixed-point number QEMU computes with
/// `(uint64_t)(fraction * 2^64)`. A fraction that rounded to 1.0 (17 or more
/// nines) gives 0, as that out-of-range conversion does on x86-64.
fn fixed_point(fraction: f64) -> u64 {
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    let scaled = fraction * TWO_64;
    if scaled >= TWO_64 {
        0
    } else {
        scaled as u64
    }
}

/// The warning QEMU 7.2 prints for a hex size with a suffix (the text after
/// `warning: `).
pub fn hex_suffix_warning(s: &str) -> String {
    format!("Using a multiplier suffix on hex numbers is deprecated: {s}")
}

/// A size as QEMU 7.2's `qemu_strtosz` reads all of `s`: a decimal integer
/// (white space and `+` in front allowed, no `-` anywhere), optionally a
/// fraction, or a `0x` hex integer; then an optional suffix `B`, `K`, `M`,
/// `G`, `T`, `P` or `E` (powers of 1024, either case). A fraction needs a
/// suffix other than `B` unless it is below 2^-64; the result is rounded
/// half up. A hex number with a suffix pushes QEMU's deprecation warning
/// onto `warnings`, even when the rest of the string is then refused, as
/// QEMU prints it at that point.
///
/// QEMU's quirks are kept, as observed from its binary: a fraction whose
/// `strtod` under- or overflows (`1.5e-400k`) makes QEMU skip one byte after
/// it (here: up to the end of the string) and ignore the fraction; a
/// fraction that rounds to 1.0 counts as 0.
pub fn strtosz(s: &str, warnings: &mut Vec<String>) -> Result<u64, NumError> {
    let b = s.as_bytes();
    let (result, end) = sizes_value(s, warnings);
    // Anything left over makes the whole size invalid, even after an
    // overflow.
    if end != b.len() {
        return Err(NumError::Invalid);
    }
    result
}

/// The value and where parsing stopped, before the whole-string check.
fn sizes_value(s: &str, warnings: &mut Vec<String>) -> (Result<u64, NumError>, usize) {
    let b = s.as_bytes();
    // On the paths where QEMU resets its end pointer to the start, the
    // whole string counts as left over (it is non-empty there).
    let refused = (Err(NumError::Invalid), 0);
    let Some((result, mut end)) = strtoull(s, 10) else {
        return refused;
    };
    let mut value = match result {
        Ok(v) => v,
        Err(e) => return (Err(e), end),
    };
    if b[..end].contains(&b'-') {
        return refused;
    }
    let mut hex = false;
    let mut fraction = 0u64;
    if value == 0 && matches!(b.get(end), Some(b'x' | b'X')) {
        let Some((result, hex_end)) = strtoull(s, 16) else {
            return refused;
        };
        end = hex_end;
        value = match result {
            Ok(v) => v,
            Err(e) => return (Err(e), end),
        };
        if b.get(end) == Some(&b'.') {
            return refused;
        }
        hex = true;
    } else if b.get(end) == Some(&b'.') {
        match strtod_fraction(&b[end..]) {
            // `1.k`: the dot alone is skipped.
            Fraction::NoConversion => end += 1,
            Fraction::Range(len) => end = (end + len + 1).min(b.len()),
            Fraction::Exponent => return refused,
            Fraction::Value(f, len) => {
                fraction = fixed_point(f);
                end += len;
            }
        }
    }
    let mul = match b.get(end).copied().and_then(suffix_mul) {
        Some(mul) => {
            if hex {
                warnings.push(hex_suffix_warning(s));
            }
            end += 1;
            mul
        }
        None => 1,
    };
    if mul == 1 {
        // No fractional bytes.
        if fraction != 0 {
            return refused;
        }
        return (Ok(value), end);
    }
    // value.fraction × mul in 128.64 fixed point, rounded half up.
    let whole = u128::from(value) * u128::from(mul);
    let part = u128::from(fraction) * u128::from(mul);
    let total = whole + (part >> 64) + ((part >> 63) & 1);
    match u64::try_from(total) {
        Ok(v) => (Ok(v), end),
        Err(_) => (Err(NumError::Range), end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(s: &str) -> Result<u64, NumError> {
        strtosz(s, &mut Vec::new())
    }

    #[test]
    fn booleans() {
        for v in ["on", "yes", "true", "y"] {
            assert_eq!(parse_bool(v), Some(true), "{v}");
        }
        for v in ["off", "no", "false", "n"] {
            assert_eq!(parse_bool(v), Some(false), "{v}");
        }
        for v in ["ON", "1", "0", "", "enable", " on"] {
            assert_eq!(parse_bool(v), None, "{v}");
        }
    }

    /// qemu_strtou64 as `-chardev null,id=a,to=V` and
    /// `-device isa-serial,iobase=V` showed it in QEMU 7.2: white space and
    /// a sign in front are accepted, a minus wraps.
    #[test]
    fn c_integers() {
        let table: &[(&str, Result<u64, NumError>)] = &[
            ("760", Ok(760)),
            ("0x2f8", Ok(0x2f8)),
            ("0X1f", Ok(0x1f)),
            ("01370", Ok(0o1370)),
            ("0", Ok(0)),
            (" 0x2f8", Ok(0x2f8)),
            ("\t5", Ok(5)),
            ("+0x2f8", Ok(0x2f8)),
            ("-1", Ok(u64::MAX)),
            ("-0x2f8", Ok(0x2f8u64.wrapping_neg())),
            ("18446744073709551615", Ok(u64::MAX)),
            ("-18446744073709551615", Ok(1)),
            ("18446744073709551616", Err(NumError::Range)),
            ("-18446744073709551616", Err(NumError::Range)),
            ("99999999999999999999x", Err(NumError::Invalid)),
            ("0x2f8 ", Err(NumError::Invalid)),
            ("08", Err(NumError::Invalid)),
            ("0x", Err(NumError::Invalid)),
            ("0b1", Err(NumError::Invalid)),
            ("- 5", Err(NumError::Invalid)),
            ("0x-5", Err(NumError::Invalid)),
            ("+", Err(NumError::Invalid)),
            (" ", Err(NumError::Invalid)),
            ("", Err(NumError::Invalid)),
            ("zz", Err(NumError::Invalid)),
        ];
        for (s, want) in table {
            assert_eq!(strtou64(s), *want, "{s:?}");
        }
    }

    /// Sizes QEMU 7.2 accepts, with the value it computes. Values that a
    /// power-of-two check can tell apart were confirmed through
    /// `-chardev ringbuf,id=r,size=V` (accepted, or "size of ringbuf chardev
    /// must be power of two"); e.g. `1.99951171875k` (2047.5) is accepted,
    /// so QEMU rounds half up, and `3.99999999999999999k` is refused, so the
    /// fraction that rounds to 1.0 counts as 0.
    #[test]
    fn sizes_qemu_accepts() {
        let table: &[(&str, u64)] = &[
            ("16", 16),
            (" 16", 16),
            ("+16", 16),
            ("016", 16),
            ("16b", 16),
            ("0x10", 16),
            ("+0x10", 16),
            (" 0X10", 16),
            ("0x1e", 30),
            ("1k", 1024),
            ("1.5k", 1536),
            ("1.k", 1024),
            ("1.", 1),
            ("1.0", 1),
            ("1.0b", 1),
            ("1.5e", 3 << 59),
            ("1.5E", 3 << 59),
            ("15E", 15 << 60),
            ("0xffffffffffffffff", u64::MAX),
            ("18446744073709551615", u64::MAX),
            ("1.99951171875k", 2048),
            ("0.00048828125k", 1),
            ("0.000244140625k", 0),
            ("1.00000000000000000001", 1),
            ("1.00000000000000000001k", 1024),
            ("0.99999999999999999", 0),
            ("1.99999999999999999k", 1024),
            ("3.99999999999999999k", 3072),
            ("3.9999999999999999k", 4096),
            ("15.99999999999999999E", 15 << 60),
            ("0.0000000000000000001E", 0),
            ("2.5e-400k", 2),
            ("2.5e400kk", 2048),
            ("2.5e400", 2),
            ("16383.99999999999999999999P", 16383 << 50),
        ];
        for (s, want) in table {
            assert_eq!(size(s), Ok(*want), "{s:?}");
        }
        let tiny = format!("2.{}1kk", "0".repeat(330));
        assert_eq!(size(&tiny), Ok(2048), "underflowing fraction");
        let normal = format!("2.{}1k", "0".repeat(305));
        assert_eq!(size(&normal), Ok(2048), "tiny normal fraction");
        assert_eq!(
            size(&format!("2.{}1kk", "0".repeat(305))),
            Err(NumError::Invalid)
        );
    }

    /// Sizes QEMU 7.2 refuses, each checked with `-chardev
    /// ringbuf,id=r,size=V` ("expects a non-negative number below 2^64" for
    /// Invalid, "is out of range" for Range).
    #[test]
    fn sizes_qemu_refuses() {
        let invalid = [
            "",
            "64 ",
            "1 k",
            "1k ",
            "1.5 k",
            "-64",
            "-0",
            " -0",
            "- 1",
            "+ 1",
            "++1",
            "0x-1",
            "0x+1",
            "0x 1",
            "-0x20",
            "00x20",
            "0x",
            "0xk",
            "0x1.",
            "0x.5",
            "0x1.5k",
            "1.0x",
            ".5k",
            "0.5",
            "2047.5",
            "1.5",
            "1.5b",
            "1KB",
            "1.5kb",
            "k",
            "1x",
            "1e3",
            "1.5e+",
            "1.5e3",
            "1.e3",
            "2.e5k",
            "2.e-400k",
            "2.0e-0k",
            "2.5e-300k",
            "2.5e-400kkk",
            "0.9999999999999999",
            "18446744073709551616x",
        ];
        for s in invalid {
            assert_eq!(size(s), Err(NumError::Invalid), "{s:?}");
        }
        for s in [
            "16E",
            "18446744073709551616",
            "0x10000000000000000",
            "0xffffffffffffffffff",
            "-99999999999999999999",
            "16384P",
        ] {
            assert_eq!(size(s), Err(NumError::Range), "{s:?}");
        }
    }

    #[test]
    fn hex_with_suffix_warns_even_when_refused() {
        let mut w = Vec::new();
        assert_eq!(strtosz("0x1k", &mut w), Ok(1024));
        assert_eq!(
            w,
            ["Using a multiplier suffix on hex numbers is deprecated: 0x1k"]
        );
        let mut w = Vec::new();
        assert_eq!(strtosz("0x1kz", &mut w), Err(NumError::Invalid));
        assert_eq!(w.len(), 1);
        let mut w = Vec::new();
        assert_eq!(strtosz("0x10", &mut w), Ok(16));
        assert!(w.is_empty());
    }

    #[test]
    fn long_inputs_stay_cheap() {
        let digits = "9".repeat(100_000);
        assert_eq!(size(&digits), Err(NumError::Range));
        // The fraction rounds to 1.0, which QEMU's conversion turns into 0.
        assert_eq!(size(&format!("1.{digits}")), Ok(1));
        assert_eq!(size(&format!("0.{digits}k")), Ok(0));
        assert_eq!(size(&format!("1.5{digits}")), Err(NumError::Invalid));
        assert_eq!(strtou64(&digits), Err(NumError::Range));
    }
}
