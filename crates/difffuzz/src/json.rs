//! JSON as the fuzzer writes it: its own small tree, because the inputs
//! need what a JSON library will not print (number literals such as `-0`,
//! `1e999` or 2^64, duplicate keys, lone surrogates, raw control bytes),
//! and mutations of that tree.

use fastrand::Rng;

/// A JSON value as text will be produced from it.
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, written as this literal.
    Num(String),
    /// A string: the bytes between the quotes, already escaped as wanted.
    Str(Vec<u8>),
    /// An array.
    Arr(Vec<J>),
    /// An object, members in order (keys may repeat).
    Obj(Vec<(String, J)>),
}

impl J {
    /// A string with the usual escapes.
    pub fn s(text: &str) -> J {
        J::Str(escape(text.as_bytes()))
    }

    /// An integer.
    pub fn n(v: i64) -> J {
        J::Num(v.to_string())
    }

    /// An object from pairs.
    pub fn obj(members: Vec<(&str, J)>) -> J {
        J::Obj(
            members
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// Appends the text of `self`.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            J::Null => out.extend_from_slice(b"null"),
            J::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            J::Num(n) => out.extend_from_slice(n.as_bytes()),
            J::Str(s) => {
                out.push(b'"');
                out.extend_from_slice(s);
                out.push(b'"');
            }
            J::Arr(a) => {
                out.push(b'[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    v.write(out);
                }
                out.push(b']');
            }
            J::Obj(m) => {
                out.push(b'{');
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    out.push(b'"');
                    out.extend_from_slice(&escape(k.as_bytes()));
                    out.extend_from_slice(b"\": ");
                    v.write(out);
                }
                out.push(b'}');
            }
        }
    }

    /// The text.
    pub fn text(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write(&mut v);
        v
    }

    /// Member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Number of nodes (for picking one at random).
    pub fn count(&self) -> usize {
        1 + match self {
            J::Arr(a) => a.iter().map(J::count).sum(),
            J::Obj(m) => m.iter().map(|(_, v)| v.count()).sum(),
            _ => 0,
        }
    }

    /// The `n`th node in pre-order.
    pub fn nth_mut(&mut self, n: usize) -> Option<&mut J> {
        fn go<'a>(j: &'a mut J, n: &mut usize) -> Option<&'a mut J> {
            if *n == 0 {
                return Some(j);
            }
            *n -= 1;
            match j {
                J::Arr(a) => {
                    for v in a {
                        if let Some(r) = go(v, n) {
                            return Some(r);
                        }
                    }
                    None
                }
                J::Obj(m) => {
                    for (_, v) in m {
                        if let Some(r) = go(v, n) {
                            return Some(r);
                        }
                    }
                    None
                }
                _ => None,
            }
        }
        let mut n = n;
        go(self, &mut n)
    }
}

/// JSON escapes for a string's bytes (quotes, backslash, controls);
/// other bytes are kept as they are.
pub fn escape(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    for &b in s {
        match b {
            b'"' => o.extend_from_slice(b"\\\""),
            b'\\' => o.extend_from_slice(b"\\\\"),
            b'\n' => o.extend_from_slice(b"\\n"),
            b'\r' => o.extend_from_slice(b"\\r"),
            b'\t' => o.extend_from_slice(b"\\t"),
            0..=0x1f => o.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => o.push(b),
        }
    }
    o
}

/// Numbers at and around the limits QEMU's parser and visitors have.
pub const ODD_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "0.0",
    "-0.0",
    "1.5",
    "0.1",
    "1e3",
    "1E+2",
    "1e-7",
    "1e999",
    "-1e999",
    "2",
    "3",
    "16",
    "64",
    "65",
    "1024",
    "65535",
    "65536",
    "70000",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "123456789012345678901234567890",
    "1.7976931348623157e308",
    "5e-324",
];

/// Strings that stress escaping and validation (as JSON string bodies).
pub const ODD_STRING_BODIES: &[&str] = &[
    "",
    " ",
    "\\u0000",
    "a\\u0000b",
    "\\u0001\\u001f\\u007f",
    "\\ud800",
    "\\udc00",
    "\\ud83d\\ude00",
    "\\ud83d",
    "\u{e9}\u{20ac}\u{1f600}",
    "\\u00e9",
    "\\/\\b\\f\\n\\r\\t",
    "\\\"",
    "\\\\",
    "%s%d%n",
    "a,b",
    "a,,b",
    "a=b",
    "-",
    "0",
    "on",
    "true",
    "null",
    "x\\ny",
    "id with space",
    "\\uFFFF\\uFFFE",
    "\\uDBFF\\uDFFF",
];

/// Raw (invalid) string bodies: control bytes, invalid UTF-8.
pub const RAW_STRING_BODIES: &[&[u8]] = &[
    b"\x01",
    b"a\x00b",
    b"\x7f",
    b"\xc3\x28",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xff",
    b"\xfe",
    b"\x1b[2J",
    b"\\x41",
    b"\\u12",
    b"\\u12G4",
    b"\\q",
];

/// A random odd string body.
pub fn odd_string(rng: &mut Rng) -> Vec<u8> {
    match rng.u8(0..10) {
        0..=6 => ODD_STRING_BODIES[rng.usize(..ODD_STRING_BODIES.len())]
            .as_bytes()
            .to_vec(),
        7 => RAW_STRING_BODIES[rng.usize(..RAW_STRING_BODIES.len())].to_vec(),
        8 => {
            let len = [127, 128, 255, 256, 1024, 4097][rng.usize(..6)];
            vec![b'a' + rng.u8(0..26); len]
        }
        _ => {
            let len = rng.usize(1..12);
            (0..len)
                .map(|_| rng.u8(0x20..0x7f))
                .filter(|&b| b != b'"' && b != b'\\')
                .collect()
        }
    }
}

/// A random value of any type (for wrong-type mutations).
pub fn any_value(rng: &mut Rng, depth: u32) -> J {
    match rng.u8(0..if depth > 2 { 5 } else { 8 }) {
        0 => J::Null,
        1 => J::Bool(rng.bool()),
        2 | 3 => J::Num(ODD_NUMBERS[rng.usize(..ODD_NUMBERS.len())].to_string()),
        4 => J::Str(odd_string(rng)),
        5 => J::Arr(
            (0..rng.usize(0..3))
                .map(|_| any_value(rng, depth + 1))
                .collect(),
        ),
        6 => J::Obj(vec![]),
        _ => J::Obj(
            (0..rng.usize(1..3))
                .map(|_| (odd_key(rng), any_value(rng, depth + 1)))
                .collect(),
        ),
    }
}

/// A key name that a schema might or might not have.
pub fn odd_key(rng: &mut Rng) -> String {
    const KEYS: &[&str] = &[
        "x",
        "id",
        "type",
        "data",
        "backend",
        "arguments",
        "execute",
        "size",
        "format",
        "path",
        "device",
        "server",
        "wait",
        "addr",
        "",
        "ID",
        "Type",
        "x-backlog",
        "backlog",
        "mux",
        "chardev",
        "logfile",
        "logappend",
        "command-line",
        "cpu-index",
        "enable",
        "instances",
        "oob",
        "control",
        "exec-oob",
    ];
    KEYS[rng.usize(..KEYS.len())].to_string()
}

/// One random mutation of a value tree: a node's type changed, a member
/// dropped, added, duplicated or renamed, a string or number made odd.
pub fn mutate(j: &mut J, rng: &mut Rng) {
    let n = j.count();
    let Some(node) = j.nth_mut(rng.usize(..n)) else {
        return;
    };
    match rng.u8(0..10) {
        0 | 1 => *node = any_value(rng, 1),
        2 => match node {
            J::Obj(m) if !m.is_empty() => {
                let i = rng.usize(..m.len());
                m.remove(i);
            }
            J::Arr(a) if !a.is_empty() => {
                let i = rng.usize(..a.len());
                a.remove(i);
            }
            _ => *node = any_value(rng, 1),
        },
        3 => match node {
            J::Obj(m) => {
                let i = rng.usize(..=m.len());
                m.insert(i, (odd_key(rng), any_value(rng, 1)));
            }
            J::Arr(a) => a.push(any_value(rng, 1)),
            _ => *node = any_value(rng, 1),
        },
        4 => match node {
            J::Obj(m) if !m.is_empty() => {
                let i = rng.usize(..m.len());
                let dup = m[i].clone();
                m.push(dup);
            }
            _ => *node = J::Str(odd_string(rng)),
        },
        5 => match node {
            J::Obj(m) if !m.is_empty() => {
                let i = rng.usize(..m.len());
                m[i].0 = odd_key(rng);
            }
            _ => *node = J::Str(odd_string(rng)),
        },
        6 | 7 => *node = J::Str(odd_string(rng)),
        8 => *node = J::Num(ODD_NUMBERS[rng.usize(..ODD_NUMBERS.len())].to_string()),
        _ => match node {
            J::Str(s) => s.extend_from_slice(&odd_string(rng)),
            _ => *node = J::Null,
        },
    }
}

/// Byte-level mutations of a message's text: what a broken client or a
/// noisy line sends.
pub fn mutate_bytes(text: &mut Vec<u8>, rng: &mut Rng) {
    const INSERTS: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"\\",
        b"\x00",
        b"\xff",
        b"\xfe",
        b"\x01",
        b"\n",
        b"\r\n",
        b" ",
        b"'",
        b"\xc3",
        b"\xe2\x82",
        b"\\u",
        b"1e",
        b"-",
        b"tru",
        b"nul",
        b"{\"execute\":",
        b"}}",
        b"]]",
        b"\x1b",
    ];
    if text.is_empty() {
        text.extend_from_slice(INSERTS[rng.usize(..INSERTS.len())]);
        return;
    }
    let at = rng.usize(..=text.len());
    match rng.u8(0..8) {
        0 | 1 => {
            let ins = INSERTS[rng.usize(..INSERTS.len())];
            text.splice(at..at, ins.iter().copied());
        }
        2 => {
            let end = (at + rng.usize(1..8)).min(text.len());
            text.drain(at.min(end)..end);
        }
        3 => text.truncate(at),
        4 => {
            if at < text.len() {
                text[at] = rng.u8(..);
            }
        }
        5 => {
            let end = (at + rng.usize(1..16)).min(text.len());
            let piece: Vec<u8> = text[at.min(end)..end].to_vec();
            let to = rng.usize(..=text.len());
            text.splice(to..to, piece);
        }
        6 => {
            if at < text.len() {
                text[at] ^= 1 << rng.u8(0..8);
            }
        }
        _ => {
            let deep = rng.usize(1..40);
            let open = if rng.bool() { b'[' } else { b'{' };
            text.splice(at..at, std::iter::repeat_n(open, deep));
        }
    }
}
