//! Modified UTF-8, as QEMU's QObject strings use it: plain UTF-8 except that
//! U+0000 is spelled `C0 80`. Decoding is strict (no surrogates, no
//! noncharacters, no overlong forms other than `C0 80`), because QEMU's
//! parser rejects exactly those and its writer replaces them.

/// Decodes the sequence at the start of `s`.
///
/// Returns the code point (or `None` when the sequence is invalid) and the
/// number of bytes it spans. Bytes past the end of `s` read as 0, as past a
/// C string's terminator.
pub(crate) fn decode(s: &[u8]) -> (Option<u32>, usize) {
    let byte = |i: usize| s.get(i).copied().unwrap_or(0);
    let first = byte(0);
    if s.is_empty() || first == 0 {
        return (None, 0);
    }
    if first < 0x80 {
        return (Some(first as u32), 1);
    }
    if first >= 0xFE || first & 0x40 == 0 {
        // Impossible byte, or a continuation byte with no lead.
        return (None, 1);
    }
    let len = first.leading_ones() as usize; // 2..=6
    let mut cp = (first as u32) & (0x7F >> len);
    for i in 1..len {
        let b = byte(i);
        if b & 0xC0 != 0x80 {
            return (None, i);
        }
        cp = (cp << 6) | (b & 0x3F) as u32;
    }
    const MIN: [u32; 5] = [0x80, 0x800, 0x1_0000, 0x20_0000, 0x400_0000];
    let valid = is_valid(cp) && (cp >= MIN[len - 2] || (cp == 0 && len == 2));
    (valid.then_some(cp), len)
}

/// Whether `cp` is a Unicode scalar value that is not a noncharacter.
pub(crate) fn is_valid(cp: u32) -> bool {
    cp <= 0x10_FFFF
        && !(0xFDD0..=0xFDEF).contains(&cp)
        && cp & 0xFFFE != 0xFFFE
        && !(0xD800..=0xDFFF).contains(&cp)
}

/// Appends `cp` in modified UTF-8; `false` (nothing appended) for a code
/// point [`is_valid`] rejects.
pub(crate) fn encode(cp: u32, out: &mut Vec<u8>) -> bool {
    if !is_valid(cp) {
        return false;
    }
    match cp {
        0 => out.extend_from_slice(&[0xC0, 0x80]),
        1..=0x7F => out.push(cp as u8),
        0x80..=0x7FF => out.extend_from_slice(&[0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8]),
        0x800..=0xFFFF => out.extend_from_slice(&[
            0xE0 | (cp >> 12) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]),
        _ => out.extend_from_slice(&[
            0xF0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3F) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]),
    }
    true
}

/// Converts a modified-UTF-8 byte string to a Rust string: `C0 80` becomes
/// U+0000 and anything invalid becomes U+FFFD.
pub fn to_string_lossy(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == 0 {
            out.push('\0');
            i += 1;
            continue;
        }
        let (cp, n) = decode(&s[i..]);
        out.push(cp.and_then(char::from_u32).unwrap_or('\u{FFFD}'));
        i += n.max(1);
    }
    out
}

/// Converts a Rust string to modified UTF-8 (U+0000 becomes `C0 80`).
pub fn from_str(s: &str) -> Vec<u8> {
    if !s.as_bytes().contains(&0) {
        return s.as_bytes().to_vec();
    }
    let mut out = Vec::with_capacity(s.len() + 1);
    for &b in s.as_bytes() {
        if b == 0 {
            out.extend_from_slice(&[0xC0, 0x80]);
        } else {
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_qemu() {
        assert_eq!(decode(b"a"), (Some(0x61), 1));
        assert_eq!(decode(&[0xC3, 0xA9]), (Some(0xE9), 2));
        assert_eq!(decode(&[0xC0, 0x80]), (Some(0), 2));
        assert_eq!(decode(&[0xC1, 0x81]), (None, 2)); // overlong
        assert_eq!(decode(&[0xED, 0xA0, 0x80]), (None, 3)); // surrogate
        assert_eq!(decode(&[0xEF, 0xBF, 0xBE]), (None, 3)); // noncharacter
        assert_eq!(decode(&[0xF4, 0x90, 0x80, 0x80]), (None, 4)); // > U+10FFFF
        assert_eq!(decode(&[0xC3, 0x28]), (None, 1)); // missing continuation
        assert_eq!(decode(&[0xFF]), (None, 1));
        assert_eq!(decode(&[0x80]), (None, 1));
        assert_eq!(decode(&[0xF0, 0x9F, 0x98, 0x80]), (Some(0x1F600), 4));
    }

    #[test]
    fn encodes_nul_as_c0_80() {
        let mut v = Vec::new();
        assert!(encode(0, &mut v));
        assert!(encode(0xE9, &mut v));
        assert!(!encode(0xD800, &mut v));
        assert_eq!(v, [0xC0, 0x80, 0xC3, 0xA9]);
        assert_eq!(to_string_lossy(&v), "\0é");
        assert_eq!(from_str("\0é"), v);
    }
}
