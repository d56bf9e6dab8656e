//! Serialization in QEMU's compact style: `{"a": 1, "b": [1, 2]}`, object
//! members in QDict order, non-ASCII and control characters as uppercase
//! `\uXXXX` escapes (surrogate pairs beyond the BMP), invalid sequences as
//! U+FFFD, floats as C's `%.17g`.

use super::utf8;
use super::value::Value;

/// Appends `v` to `out`.
pub(crate) fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::UInt(u) => out.extend_from_slice(u.to_string().as_bytes()),
        Value::Float(f) => out.extend_from_slice(format_g17(*f).as_bytes()),
        Value::Str(s) => write_str(s, out),
        Value::List(l) => {
            out.push(b'[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_value(e, out);
            }
            out.push(b']');
        }
        Value::Dict(d) => {
            out.push(b'{');
            for (i, (k, e)) in d.iter_qemu_order().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_str(k, out);
                out.extend_from_slice(b": ");
                write_value(e, out);
            }
            out.push(b'}');
        }
    }
}

/// Appends `v` in QEMU's pretty style (`-mon ...,pretty=on`): every member
/// and element on a line of its own, indented four spaces a level, the
/// closing bracket on a line at its opener's level (so an empty object is
/// `{` and `}` on two lines), lines ending `\r\n` as the monitor sends them.
pub(crate) fn write_value_pretty(v: &Value, level: usize, out: &mut Vec<u8>) {
    let newline = |level: usize, out: &mut Vec<u8>| {
        out.extend_from_slice(b"\r\n");
        out.resize(out.len() + 4 * level, b' ');
    };
    match v {
        Value::List(l) => {
            out.push(b'[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(level + 1, out);
                write_value_pretty(e, level + 1, out);
            }
            newline(level, out);
            out.push(b']');
        }
        Value::Dict(d) => {
            out.push(b'{');
            for (i, (k, e)) in d.iter_qemu_order().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(level + 1, out);
                write_str(k, out);
                out.extend_from_slice(b": ");
                write_value_pretty(e, level + 1, out);
            }
            newline(level, out);
            out.push(b'}');
        }
        scalar => write_value(scalar, out),
    }
}

/// Appends `s` as a quoted JSON string. Like a C string, it ends at the
/// first NUL byte.
pub(crate) fn write_str(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let esc = |cp: u32, out: &mut Vec<u8>| {
        out.extend_from_slice(b"\\u");
        for shift in [12, 8, 4, 0] {
            out.push(HEX[((cp >> shift) & 0xF) as usize]);
        }
    };
    out.push(b'"');
    let mut i = 0;
    while i < s.len() && s[i] != 0 {
        let b = s[i];
        if (0x20..0x7F).contains(&b) && b != b'"' && b != b'\\' {
            // Fast path: a run of plain printable ASCII.
            let start = i;
            while i < s.len() && (0x20..0x7F).contains(&s[i]) && s[i] != b'"' && s[i] != b'\\' {
                i += 1;
            }
            out.extend_from_slice(&s[start..i]);
            continue;
        }
        let (cp, n) = utf8::decode(&s[i..]);
        i += n.max(1);
        match cp {
            Some(0x22) => out.extend_from_slice(b"\\\""),
            Some(0x5C) => out.extend_from_slice(b"\\\\"),
            Some(0x08) => out.extend_from_slice(b"\\b"),
            Some(0x0C) => out.extend_from_slice(b"\\f"),
            Some(0x0A) => out.extend_from_slice(b"\\n"),
            Some(0x0D) => out.extend_from_slice(b"\\r"),
            Some(0x09) => out.extend_from_slice(b"\\t"),
            _ => {
                let cp = cp.unwrap_or(0xFFFD);
                if cp > 0xFFFF {
                    esc(0xD800 + ((cp - 0x1_0000) >> 10), out);
                    esc(0xDC00 + ((cp - 0x1_0000) & 0x3FF), out);
                } else if !(0x20..0x7F).contains(&cp) {
                    esc(cp, out);
                } else {
                    out.push(cp as u8);
                }
            }
        }
    }
    out.push(b'"');
}

/// C's `printf("%.17g", v)`.
pub(crate) fn format_g17(v: f64) -> String {
    const P: i32 = 17;
    if v.is_nan() {
        return if v.is_sign_negative() {
            "-nan".into()
        } else {
            "nan".into()
        };
    }
    if v.is_infinite() {
        return if v < 0.0 { "-inf".into() } else { "inf".into() };
    }
    // Round to P significant digits first; the exponent after rounding
    // decides between fixed and exponential notation.
    let e_form = format!("{:.*e}", (P - 1) as usize, v);
    let (mantissa, exp) = e_form.split_once('e').unwrap_or((&e_form, "0"));
    let x: i32 = exp.parse().unwrap_or(0);
    if (-4..P).contains(&x) {
        let fixed = format!("{:.*}", (P - 1 - x) as usize, v);
        strip_zeros(&fixed).to_string()
    } else {
        let m = strip_zeros(mantissa);
        let sign = if x < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", x.abs())
    }
}

/// Drops trailing fraction zeros and a dangling decimal point (`%g` without `#`).
fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_matches_qemu() {
        // Recorded from QEMU 7.2 with `-mon chardev=m,mode=control,pretty=on`:
        // the reply to `{"execute": "query-status", "id": [1, {"a": []}, "x"]}`
        // and to `qmp_capabilities`.
        // Built in the order QEMU's QAPI visitor inserts the members; the
        // output order is QDict's hash order, as in compact form.
        let status = crate::dict! {
            "running" => false,
            "singlestep" => false,
            "status" => "prelaunch",
        };
        let id = Value::List(vec![
            Value::Int(1),
            Value::Dict(crate::dict! { "a" => Value::List(vec![]) }),
            Value::str("x"),
        ]);
        let reply = Value::Dict(crate::dict! { "return" => Value::Dict(status), "id" => id });
        let want = "{\r\n    \"return\": {\r\n        \"status\": \"prelaunch\",\r\n        \
                    \"singlestep\": false,\r\n        \"running\": false\r\n    },\r\n    \
                    \"id\": [\r\n        1,\r\n        {\r\n            \"a\": [\r\n            \
                    ]\r\n        },\r\n        \"x\"\r\n    ]\r\n}";
        assert_eq!(String::from_utf8(reply.to_json_pretty()).unwrap(), want);
        let empty = Value::Dict(crate::dict! { "return" => Value::Dict(Default::default()) });
        assert_eq!(
            empty.to_json_pretty(),
            b"{\r\n    \"return\": {\r\n    }\r\n}"
        );
        assert_eq!(Value::Int(7).to_json_pretty(), b"7");
    }

    #[test]
    fn g17_matches_glibc() {
        // Texts printed by QEMU 7.2 echoing these numbers as `id`.
        assert_eq!(format_g17(1.5), "1.5");
        assert_eq!(format_g17(0.1), "0.10000000000000001");
        assert_eq!(format_g17(100.0), "100");
        assert_eq!(format_g17(-0.0), "-0");
        assert_eq!(format_g17(1.2345678901234568e20), "1.2345678901234568e+20");
        assert_eq!(
            format_g17(-9_223_372_036_854_775_808.0),
            "-9.2233720368547758e+18"
        );
        assert_eq!(format_g17(1e23), "9.9999999999999992e+22");
        assert_eq!(format_g17(1e-300), "1e-300");
        assert_eq!(format_g17(5e-324), "4.9406564584124654e-324");
        assert_eq!(format_g17(f64::INFINITY), "inf");
        assert_eq!(format_g17(0.0001), "0.0001");
        assert_eq!(format_g17(0.00001), "1.0000000000000001e-05");
        assert_eq!(format_g17(1e16), "10000000000000000");
        assert_eq!(format_g17(1e17), "1e+17");
    }

    #[test]
    fn strings_escape_like_qemu() {
        let mut out = Vec::new();
        write_str("é/\u{8}\u{c}\t\u{7f}\u{1F600}\"\\".as_bytes(), &mut out);
        assert_eq!(out, br#""\u00E9/\b\f\t\u007F\uD83D\uDE00\"\\""#);
        out.clear();
        write_str(&[0xC0, 0x80, 0xFF, b'a', 0xC3, 0x28, 0, b'z'], &mut out);
        assert_eq!(out, br#""\u0000\uFFFDa\uFFFD(""#);
    }
}
