//! Telnet (RFC 854) as a QEMU chardev server speaks it: the options it
//! offers when a client connects, a decoder that strips commands from the
//! input stream, and an encoder that escapes 0xff in the output. Pure code,
//! no I/O.
//!
//! The decoder keeps its state between calls, so a command split across
//! reads at any byte boundary decodes exactly as if it had arrived whole.

/// Interpret As Command.
pub(crate) const IAC: u8 = 255;
const DONT: u8 = 254;
const WILL: u8 = 251;
const SB: u8 = 250;
const BREAK: u8 = 243;
const SE: u8 = 240;

/// What a server sends first: WILL ECHO, WILL SUPPRESS-GO-AHEAD, WILL
/// BINARY, DO BINARY, so that the client sends characters one at a time,
/// unaltered, and does not echo them itself.
pub(crate) const NEGOTIATION: [u8; 12] = [IAC, WILL, 1, IAC, WILL, 3, IAC, WILL, 0, IAC, 253, 0];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Plain data.
    #[default]
    Data,
    /// After IAC.
    Command,
    /// After IAC WILL/WONT/DO/DONT: the option byte follows.
    Option,
    /// Inside IAC SB ... IAC SE: skipped.
    Sub,
    /// IAC inside a subnegotiation.
    SubCommand,
}

/// The input side. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct TelnetDecoder {
    state: State,
}

/// Result of one [`TelnetDecoder::decode`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// Input bytes used.
    pub(crate) consumed: usize,
    /// Data bytes written to the output.
    pub(crate) produced: usize,
    /// An IAC BREAK ended the call; it comes after the produced bytes.
    pub(crate) brk: bool,
}

impl TelnetDecoder {
    /// Decodes `input` into `out` until the input is used up, `out` is
    /// full, or a break was seen (the call stops right after it, so the
    /// caller can deliver the data before the break, then the break).
    pub(crate) fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Decoded {
        let mut i = 0;
        let mut o = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Data => {
                    if b == IAC {
                        self.state = State::Command;
                    } else {
                        if o == out.len() {
                            break;
                        }
                        out[o] = b;
                        o += 1;
                    }
                }
                State::Command => match b {
                    IAC => {
                        if o == out.len() {
                            break;
                        }
                        out[o] = IAC;
                        o += 1;
                        self.state = State::Data;
                    }
                    BREAK => {
                        self.state = State::Data;
                        return Decoded {
                            consumed: i + 1,
                            produced: o,
                            brk: true,
                        };
                    }
                    WILL..=DONT => self.state = State::Option,
                    SB => self.state = State::Sub,
                    // NOP, IP, AYT, GA and the others: two bytes, ignored.
                    _ => self.state = State::Data,
                },
                State::Option => self.state = State::Data,
                State::Sub => {
                    if b == IAC {
                        self.state = State::SubCommand;
                    }
                }
                State::SubCommand => {
                    self.state = if b == SE { State::Data } else { State::Sub };
                }
            }
            i += 1;
        }
        Decoded {
            consumed: i,
            produced: o,
            brk: false,
        }
    }
}

/// Appends `data` to `out` with every 0xff doubled.
pub(crate) fn encode(data: &[u8], out: &mut Vec<u8>) {
    let mut rest = data;
    while let Some(p) = rest.iter().position(|&b| b == IAC) {
        out.extend_from_slice(&rest[..=p]);
        out.push(IAC);
        rest = &rest[p + 1..];
    }
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes all of `input` in pieces cut at `cuts`, collecting data and
    /// marking breaks with the string "<BRK>".
    fn run(input: &[u8], cuts: &[usize], out_room: usize) -> Vec<u8> {
        let mut d = TelnetDecoder::default();
        let mut got = Vec::new();
        let mut start = 0;
        let mut ends: Vec<usize> = cuts.to_vec();
        ends.push(input.len());
        for end in ends {
            let mut piece = &input[start..end];
            while !piece.is_empty() {
                let mut out = vec![0u8; out_room];
                let r = d.decode(piece, &mut out);
                got.extend_from_slice(&out[..r.produced]);
                if r.brk {
                    got.extend_from_slice(b"<BRK>");
                }
                assert!(r.consumed > 0 || r.produced > 0, "no progress");
                piece = &piece[r.consumed..];
            }
            start = end;
        }
        got
    }

    const SAMPLE: &[u8] = &[
        b'a', IAC, IAC, b'b', IAC, BREAK, b'c', IAC, WILL, 1, b'd', IAC, 253, 3, IAC, 241, b'e',
        IAC, SB, 31, 0, 80, IAC, IAC, 0, 24, IAC, SE, b'f', 0xfe, IAC, 254, 0, b'g',
    ];

    #[test]
    fn decodes_commands_escapes_and_breaks() {
        assert_eq!(run(SAMPLE, &[], 64), b"a\xffb<BRK>cdef\xfeg".to_vec());
    }

    #[test]
    fn split_at_every_boundary_decodes_the_same() {
        let whole = run(SAMPLE, &[], 64);
        for cut in 0..=SAMPLE.len() {
            assert_eq!(run(SAMPLE, &[cut], 64), whole, "cut at {cut}");
        }
        for a in 0..=SAMPLE.len() {
            for b in a..=SAMPLE.len() {
                assert_eq!(run(SAMPLE, &[a, b], 64), whole, "cuts at {a},{b}");
            }
        }
        let every: Vec<usize> = (1..SAMPLE.len()).collect();
        assert_eq!(run(SAMPLE, &every, 64), whole);
    }

    #[test]
    fn tiny_output_buffers_lose_nothing() {
        let whole = run(SAMPLE, &[], 64);
        assert_eq!(run(SAMPLE, &[], 1), whole);
        assert_eq!(run(SAMPLE, &[5, 9], 2), whole);
    }

    #[test]
    fn encoder_doubles_iac_only() {
        let mut v = Vec::new();
        encode(&[1, IAC, 2, IAC, IAC], &mut v);
        assert_eq!(v, [1, IAC, IAC, 2, IAC, IAC, IAC, IAC]);
        let mut d = TelnetDecoder::default();
        let mut out = [0u8; 16];
        let r = d.decode(&v, &mut out);
        assert_eq!(&out[..r.produced], &[1, IAC, 2, IAC, IAC]);
    }

    #[test]
    fn negotiation_is_what_qemu_sends() {
        assert_eq!(
            NEGOTIATION,
            [0xff, 0xfb, 0x01, 0xff, 0xfb, 0x03, 0xff, 0xfb, 0x00, 0xff, 0xfd, 0x00]
        );
    }
}
