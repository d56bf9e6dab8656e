//! The streaming side of the parser: a lexer fed bytes in bulk and a
//! "streamer" that collects tokens until brackets balance, then hands the
//! message to the parser.
//!
//! Behaviour follows QEMU 7.2's JSON front end as observed on the wire:
//! - a byte the lexer cannot use produces one `stray` error, then the lexer
//!   skips input until a structural character, an ASCII control character
//!   other than TAB, or the impossible bytes `0xFE`/`0xFF`; control
//!   characters and `0xFE`/`0xFF` are then lexed again from the start
//!   state, so they yield a second error (clients send `0xFF` on purpose to
//!   force the parser back into a known state);
//! - a message is complete when the `{}` and `[]` counts both return to zero,
//!   or as soon as one goes negative;
//! - a message is abandoned with an error when it exceeds 64 MiB of token
//!   text, 2 Mi tokens or a nesting depth of 1024; what follows is lexed
//!   afresh (so the rest of an over-deep message yields further errors, as
//!   with QEMU).

use super::parser::{parse_tokens, Tok, TokKind};
use super::value::Value;
use thiserror::Error;

/// Limits on one JSON message, QEMU's values by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// Total bytes of token text in one message (and in one token).
    pub max_size: usize,
    /// Tokens in one message.
    pub max_tokens: usize,
    /// Open `{` plus `[` at any point.
    pub max_nesting: i64,
}

impl Default for JsonLimits {
    fn default() -> Self {
        JsonLimits {
            max_size: 64 << 20,
            max_tokens: 2 << 20,
            max_nesting: 1 << 10,
        }
    }
}

/// Why a message was rejected. `Display` is QEMU's error text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JsonError {
    /// A byte the lexer cannot use; carries the token so far including it.
    #[error("JSON parse error, stray '{}'", String::from_utf8_lossy(.0))]
    Stray(Vec<u8>),
    /// The message's token text exceeds the size limit.
    #[error("JSON token size limit exceeded")]
    TokenSize,
    /// The message has too many tokens.
    #[error("JSON token count limit exceeded")]
    TokenCount,
    /// The message nests too deeply.
    #[error("JSON nesting depth limit exceeded")]
    Nesting,
    /// A grammar error; the text is what follows `JSON parse error, `.
    #[error("JSON parse error, {}", String::from_utf8_lossy(.0))]
    Parse(Vec<u8>),
}

impl JsonError {
    /// The error text as QEMU builds it, as bytes: a stray token is quoted
    /// raw (up to any NUL, as C's `%s` would), so invalid UTF-8 reaches the
    /// JSON writer, which turns it into U+FFFD as QEMU's does.
    pub fn message_bytes(&self) -> Vec<u8> {
        match self {
            JsonError::Stray(tok) => {
                let end = tok.iter().position(|&b| b == 0).unwrap_or(tok.len());
                let mut m = b"JSON parse error, stray '".to_vec();
                m.extend_from_slice(&tok[..end]);
                m.push(b'\'');
                m
            }
            JsonError::Parse(msg) => {
                let mut m = b"JSON parse error, ".to_vec();
                m.extend_from_slice(msg);
                m
            }
            other => other.to_string().into_bytes(),
        }
    }
}

/// Lexer states. `Recovery` skips input after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Start,
    Recovery,
    Str { quote: u8 },
    StrEsc { quote: u8 },
    Zero,
    Sign,
    Digits,
    Mantissa,
    MantissaDigits,
    ExpE,
    ExpSign,
    ExpDigits,
    Keyword,
}

/// What the lexer hands the streamer.
enum Lexed {
    Token(TokKind),
    Error,
    /// A single token outgrew the size limit.
    Oversize,
}

/// Incremental JSON message parser: feed bytes, get whole messages.
#[derive(Debug)]
pub struct JsonStreamer {
    limits: JsonLimits,
    state: St,
    /// Text of the token being lexed.
    cur: Vec<u8>,
    /// Text of the message's tokens, back to back.
    text: Vec<u8>,
    toks: Vec<Tok>,
    brace: i64,
    bracket: i64,
}

impl Default for JsonStreamer {
    fn default() -> Self {
        JsonStreamer::new(JsonLimits::default())
    }
}

impl JsonStreamer {
    /// A parser with the given limits.
    pub fn new(limits: JsonLimits) -> JsonStreamer {
        JsonStreamer {
            limits,
            state: St::Start,
            cur: Vec::new(),
            text: Vec::new(),
            toks: Vec::new(),
            brace: 0,
            bracket: 0,
        }
    }

    /// Forgets any partial input (a new connection).
    pub fn reset(&mut self) {
        *self = JsonStreamer::new(self.limits);
    }

    /// Whether a message is partly received.
    pub fn is_idle(&self) -> bool {
        self.state == St::Start && self.cur.is_empty() && self.toks.is_empty()
    }

    /// Feeds bytes; returns every message completed by them, in order.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Result<Value, JsonError>> {
        let mut out = Vec::new();
        self.feed_with(data, |m| out.push(m));
        out
    }

    /// Feeds bytes, calling `emit` for every message completed by them.
    pub fn feed_with(&mut self, data: &[u8], mut emit: impl FnMut(Result<Value, JsonError>)) {
        let mut i = 0;
        while i < data.len() {
            // Fast path through the body of a string.
            if let St::Str { quote } = self.state {
                let room = self.limits.max_size + 1 - self.cur.len().min(self.limits.max_size);
                let run = data[i..]
                    .iter()
                    .take(room)
                    .position(|&b| !(0x20..=0xFD).contains(&b) || b == quote || b == b'\\')
                    .unwrap_or_else(|| (data.len() - i).min(room));
                if run > 0 {
                    self.cur.extend_from_slice(&data[i..i + run]);
                    i += run;
                    self.check_oversize(&mut emit);
                    continue;
                }
            }
            self.lex_byte(data[i], &mut emit);
            i += 1;
        }
    }

    fn check_oversize(&mut self, emit: &mut impl FnMut(Result<Value, JsonError>)) {
        if self.cur.len() > self.limits.max_size {
            self.token(Lexed::Oversize, emit);
            self.state = St::Start;
        }
    }

    fn lex_byte(&mut self, c: u8, emit: &mut impl FnMut(Result<Value, JsonError>)) {
        loop {
            // `Some(next)`: consume `c` into the token and go to `next`.
            // `None` after emitting: `c` was lookahead, lex it again.
            let next = match self.state {
                St::Start => match c {
                    b'"' | b'\'' => Some(St::Str { quote: c }),
                    b'0' => Some(St::Zero),
                    b'1'..=b'9' => Some(St::Digits),
                    b'-' => Some(St::Sign),
                    b'a'..=b'z' => Some(St::Keyword),
                    b'{' | b'}' | b'[' | b']' | b',' | b':' => {
                        let kind = match c {
                            b'{' => TokKind::LCurly,
                            b'}' => TokKind::RCurly,
                            b'[' => TokKind::LSquare,
                            b']' => TokKind::RSquare,
                            b',' => TokKind::Comma,
                            _ => TokKind::Colon,
                        };
                        self.cur.push(c);
                        self.token(Lexed::Token(kind), emit);
                        return;
                    }
                    b' ' | b'\t' | b'\r' | b'\n' => return,
                    _ => return self.error(c, emit),
                },
                St::Recovery => match c {
                    b'\t' => return,
                    0..=0x1F | 0xFE | 0xFF | b'[' | b']' | b'{' | b'}' | b':' | b',' => {
                        self.state = St::Start;
                        continue;
                    }
                    _ => return,
                },
                St::Str { quote } => match c {
                    b'\\' => Some(St::StrEsc { quote }),
                    _ if c == quote => {
                        self.cur.push(c);
                        self.token(Lexed::Token(TokKind::String), emit);
                        return;
                    }
                    0x20..=0xFD => Some(St::Str { quote }),
                    _ => return self.error(c, emit),
                },
                St::StrEsc { quote } => match c {
                    0x20..=0xFD => Some(St::Str { quote }),
                    _ => return self.error(c, emit),
                },
                St::Zero => match c {
                    b'0'..=b'9' => return self.error(c, emit),
                    b'.' => Some(St::Mantissa),
                    _ => None,
                },
                St::Sign => match c {
                    b'0' => Some(St::Zero),
                    b'1'..=b'9' => Some(St::Digits),
                    _ => return self.error(c, emit),
                },
                St::Digits => match c {
                    b'0'..=b'9' => Some(St::Digits),
                    b'e' | b'E' => Some(St::ExpE),
                    b'.' => Some(St::Mantissa),
                    _ => None,
                },
                St::Mantissa => match c {
                    b'0'..=b'9' => Some(St::MantissaDigits),
                    _ => return self.error(c, emit),
                },
                St::MantissaDigits => match c {
                    b'0'..=b'9' => Some(St::MantissaDigits),
                    b'e' | b'E' => Some(St::ExpE),
                    _ => None,
                },
                St::ExpE => match c {
                    b'-' | b'+' => Some(St::ExpSign),
                    b'0'..=b'9' => Some(St::ExpDigits),
                    _ => return self.error(c, emit),
                },
                St::ExpSign => match c {
                    b'0'..=b'9' => Some(St::ExpDigits),
                    _ => return self.error(c, emit),
                },
                St::ExpDigits => match c {
                    b'0'..=b'9' => Some(St::ExpDigits),
                    _ => None,
                },
                St::Keyword => match c {
                    b'a'..=b'z' => Some(St::Keyword),
                    _ => None,
                },
            };
            match next {
                Some(st) => {
                    self.cur.push(c);
                    self.state = st;
                    self.check_oversize(emit);
                    return;
                }
                None => {
                    // A number or keyword ended just before `c`.
                    let kind = match self.state {
                        St::Zero | St::Digits => TokKind::Integer,
                        St::MantissaDigits | St::ExpDigits => TokKind::Float,
                        _ => TokKind::Keyword,
                    };
                    self.token(Lexed::Token(kind), emit);
                    self.state = St::Start;
                }
            }
        }
    }

    fn error(&mut self, c: u8, emit: &mut impl FnMut(Result<Value, JsonError>)) {
        self.cur.push(c);
        self.token(Lexed::Error, emit);
        self.state = St::Recovery;
    }

    /// The streamer: takes the token in `self.cur`.
    fn token(&mut self, lexed: Lexed, emit: &mut impl FnMut(Result<Value, JsonError>)) {
        self.state = St::Start;
        let kind = match lexed {
            Lexed::Error => {
                let tok = std::mem::take(&mut self.cur);
                self.abandon();
                return emit(Err(JsonError::Stray(tok)));
            }
            Lexed::Oversize => None,
            Lexed::Token(k) => Some(k),
        };
        match kind {
            Some(TokKind::LCurly) => self.brace += 1,
            Some(TokKind::RCurly) => self.brace -= 1,
            Some(TokKind::LSquare) => self.bracket += 1,
            Some(TokKind::RSquare) => self.bracket -= 1,
            _ => {}
        }
        let limit_error = if self.text.len() + self.cur.len() + 1 > self.limits.max_size {
            Some(JsonError::TokenSize)
        } else if self.toks.len() + 1 > self.limits.max_tokens {
            Some(JsonError::TokenCount)
        } else if self.brace + self.bracket > self.limits.max_nesting {
            Some(JsonError::Nesting)
        } else {
            None
        };
        if let Some(e) = limit_error {
            self.cur.clear();
            self.abandon();
            return emit(Err(e));
        }
        let kind = kind.unwrap_or(TokKind::Keyword); // unreachable: oversize always trips the limit
        let start = self.text.len();
        self.text.extend_from_slice(&self.cur);
        self.toks.push(Tok {
            kind,
            start,
            end: self.text.len(),
        });
        self.cur.clear();
        if (self.brace > 0 || self.bracket > 0) && self.brace >= 0 && self.bracket >= 0 {
            return;
        }
        let res = parse_tokens(&self.toks, &self.text).map_err(JsonError::Parse);
        self.abandon();
        emit(res);
    }

    /// Drops the message being collected.
    fn abandon(&mut self) {
        self.brace = 0;
        self.bracket = 0;
        self.toks.clear();
        self.text.clear();
        // Give memory back after a big message.
        if self.text.capacity() > 1 << 20 {
            self.text = Vec::new();
        }
        if self.toks.capacity() > 1 << 16 {
            self.toks = Vec::new();
        }
        if self.cur.capacity() > 1 << 20 {
            self.cur = Vec::new();
        }
    }
}
