//! The grammar: turns one balanced token sequence into a [`Value`], with
//! QEMU's error texts. The first error found wins, as in QEMU's
//! recursive-descent parser; this one keeps an explicit stack so deep
//! nesting cannot exhaust the thread's stack.

use std::collections::HashSet;

use super::utf8;
use super::value::{Dict, Value};

/// Token kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokKind {
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Colon,
    Comma,
    Integer,
    Float,
    Keyword,
    String,
}

/// A token: its kind and where its text lies in the message's text buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tok {
    pub kind: TokKind,
    pub start: usize,
    pub end: usize,
}

/// QEMU formats parse errors into a 1024-byte buffer.
const MSG_MAX: usize = 1023;

fn msg(s: &[u8]) -> Vec<u8> {
    s[..s.len().min(MSG_MAX)].to_vec()
}

enum Frame {
    Obj {
        dict: Dict,
        key: Option<Vec<u8>>,
        seen: Option<HashSet<Vec<u8>>>,
    },
    Arr(Vec<Value>),
}

/// Parses one message. `Err` holds the text after `JSON parse error, `.
pub(crate) fn parse_tokens(toks: &[Tok], text: &[u8]) -> Result<Value, Vec<u8>> {
    let mut pos = 0;
    let mut stack: Vec<Frame> = Vec::new();
    let premature = || msg(b"premature EOI");
    'value: loop {
        // Parse a value starting at `pos`.
        let tok = toks.get(pos).ok_or_else(premature)?;
        let mut v = match tok.kind {
            TokKind::LCurly | TokKind::LSquare => {
                pos += 1;
                let peek = toks.get(pos).ok_or_else(premature)?;
                let close = if tok.kind == TokKind::LCurly {
                    TokKind::RCurly
                } else {
                    TokKind::RSquare
                };
                if peek.kind == close {
                    pos += 1;
                    if tok.kind == TokKind::LCurly {
                        Value::Dict(Dict::new())
                    } else {
                        Value::List(Vec::new())
                    }
                } else {
                    stack.push(if tok.kind == TokKind::LCurly {
                        Frame::Obj {
                            dict: Dict::new(),
                            key: None,
                            seen: None,
                        }
                    } else {
                        Frame::Arr(Vec::new())
                    });
                    continue 'value;
                }
            }
            TokKind::Integer | TokKind::Float => {
                pos += 1;
                number(tok.kind, &text[tok.start..tok.end])
            }
            TokKind::String => {
                pos += 1;
                Value::Str(string(&text[tok.start..tok.end])?)
            }
            TokKind::Keyword => {
                pos += 1;
                match &text[tok.start..tok.end] {
                    b"true" => Value::Bool(true),
                    b"false" => Value::Bool(false),
                    b"null" => Value::Null,
                    kw => {
                        let mut m = b"invalid keyword '".to_vec();
                        m.extend_from_slice(kw);
                        m.push(b'\'');
                        return Err(msg(&m));
                    }
                }
            }
            _ => return Err(msg(b"expecting value")),
        };
        // Hand the finished value to the enclosing container(s).
        loop {
            let Some(frame) = stack.last_mut() else {
                return Ok(v);
            };
            match frame {
                Frame::Obj { dict, key, seen } => match key.take() {
                    None => {
                        let Value::Str(k) = v else {
                            return Err(msg(b"key is not a string in object"));
                        };
                        let t = toks.get(pos).ok_or_else(premature)?;
                        pos += 1;
                        if t.kind != TokKind::Colon {
                            return Err(msg(b"missing : in object pair"));
                        }
                        *key = Some(k);
                        continue 'value;
                    }
                    Some(k) => {
                        let dup = match seen {
                            Some(set) => !set.insert(k.clone()),
                            None => {
                                let dup = dict.get_bytes(&k).is_some();
                                if dict.len() >= 16 {
                                    // Big object: index its keys.
                                    *seen = Some(
                                        dict.iter()
                                            .map(|(k, _)| k.to_vec())
                                            .chain([k.clone()])
                                            .collect(),
                                    );
                                }
                                dup
                            }
                        };
                        if dup {
                            return Err(msg(b"duplicate key"));
                        }
                        dict.push_unique(k, v);
                        let t = toks.get(pos).ok_or_else(premature)?;
                        pos += 1;
                        match t.kind {
                            TokKind::Comma => continue 'value,
                            TokKind::RCurly => {
                                let Some(Frame::Obj { dict, .. }) = stack.pop() else {
                                    unreachable!()
                                };
                                v = Value::Dict(dict);
                            }
                            _ => return Err(msg(b"expected separator in dict")),
                        }
                    }
                },
                Frame::Arr(list) => {
                    list.push(v);
                    let t = toks.get(pos).ok_or_else(premature)?;
                    pos += 1;
                    match t.kind {
                        TokKind::Comma => continue 'value,
                        TokKind::RSquare => {
                            let Some(Frame::Arr(list)) = stack.pop() else {
                                unreachable!()
                            };
                            v = Value::List(list);
                        }
                        _ => return Err(msg(b"expected separator in list")),
                    }
                }
            }
        }
    }
}

/// An integer token becomes `Int` when it fits `i64`, else `UInt` when it
/// is non-negative and fits `u64`, else `Float`, as in QEMU.
fn number(kind: TokKind, s: &[u8]) -> Value {
    let s = std::str::from_utf8(s).unwrap_or("0");
    if kind == TokKind::Integer {
        if let Ok(i) = s.parse::<i64>() {
            return Value::Int(i);
        }
        if !s.starts_with('-') {
            if let Ok(u) = s.parse::<u64>() {
                return Value::UInt(u);
            }
        }
    }
    Value::Float(s.parse::<f64>().unwrap_or(0.0))
}

/// Value of a 4-hex-digit escape, or `None` (stops at the token's end).
fn hex4(s: &[u8]) -> Option<u32> {
    let mut cp = 0;
    for i in 0..4 {
        let d = (*s.get(i)? as char).to_digit(16)?;
        cp = cp << 4 | d;
    }
    Some(cp)
}

/// Decodes a string token (quotes included) into modified UTF-8.
fn string(tok: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
    let quote = tok[0];
    let mut out = Vec::with_capacity(tok.len());
    let mut p = 1;
    while p < tok.len() && tok[p] != quote {
        let c = tok[p];
        if c == b'\\' {
            let beg = p;
            p += 1;
            let e = tok.get(p).copied().unwrap_or(0);
            p += 1;
            match e {
                b'"' | b'\'' | b'\\' | b'/' => out.push(e),
                b'b' => out.push(0x08),
                b'f' => out.push(0x0C),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'u' => {
                    let mut cp = hex4(&tok[p.min(tok.len())..]);
                    p += 4;
                    if let Some(lead @ 0xD800..=0xDBFF) = cp {
                        if tok.get(p) == Some(&b'\\') && tok.get(p + 1) == Some(&b'u') {
                            cp = match hex4(&tok[(p + 2).min(tok.len())..]) {
                                Some(trail @ 0xDC00..=0xDFFF) => {
                                    p += 6;
                                    Some((0x1_0000 + ((lead & 0x3FF) << 10)) | (trail & 0x3FF))
                                }
                                _ => None,
                            };
                        }
                    }
                    if !cp.is_some_and(|cp| utf8::encode(cp, &mut out)) {
                        let mut m = tok[beg..p.min(tok.len())].to_vec();
                        m.extend_from_slice(b" is not a valid Unicode character");
                        return Err(msg(&m));
                    }
                }
                _ => return Err(msg(b"invalid escape sequence in string")),
            }
        } else if c < 0x80 {
            out.push(c);
            p += 1;
        } else {
            let (cp, n) = utf8::decode(&tok[p..]);
            match cp {
                Some(cp) => {
                    utf8::encode(cp, &mut out);
                    p += n;
                }
                None => return Err(msg(b"invalid UTF-8 sequence in string")),
            }
        }
    }
    Ok(out)
}
