//! The telnet input decoder of the socket backend (`telnet=on`).
//!
//! Invariants:
//! - no panic; every call with input and output room makes progress, and
//!   never reports more than it was given;
//! - chunked input with small output buffers == whole input with a big one
//!   (data bytes and the position of each break);
//! - the result equals an independent model of RFC 854 as QEMU's server
//!   applies it (IAC IAC is a data 0xff, IAC BREAK a break, options and
//!   subnegotiations vanish, any other command is two bytes dropped);
//! - decode(encode(x)) == x.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qchar_chardev::backend::fuzzing::{telnet_encode, TelnetDecoder};
use qchar_fuzz::{chunks, Rng};

const IAC: u8 = 255;
const BREAK: u8 = 243;

/// What a decoder run yields: data bytes, `None` for a break.
type Events = Vec<Option<u8>>;

fn model(input: &[u8]) -> Events {
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        if input[i] != IAC {
            out.push(Some(input[i]));
            i += 1;
            continue;
        }
        // IAC and its command; an unfinished command at the end is pending.
        let Some(&cmd) = input.get(i + 1) else { break };
        match cmd {
            IAC => {
                out.push(Some(IAC));
                i += 2;
            }
            BREAK => {
                out.push(None);
                i += 2;
            }
            251..=254 => i += 3,
            250 => {
                // Skip to IAC SE; an IAC inside takes the next byte with it.
                i += 2;
                loop {
                    match input.get(i) {
                        None => return out,
                        Some(&IAC) => {
                            let next = input.get(i + 1).copied();
                            i += 2;
                            if next == Some(240) {
                                break;
                            }
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            _ => i += 2,
        }
    }
    out
}

fn run(d: &mut TelnetDecoder, input: &[u8], out_len: usize, events: &mut Events) {
    let mut rest = input;
    while !rest.is_empty() {
        let mut out = vec![0u8; out_len];
        let r = d.decode(rest, &mut out);
        assert!(r.consumed <= rest.len() && r.produced <= out_len);
        assert!(
            r.consumed > 0 || r.produced > 0 || r.brk,
            "no progress with {} input bytes and {out_len} of room",
            rest.len()
        );
        events.extend(out[..r.produced].iter().map(|&b| Some(b)));
        if r.brk {
            events.push(None);
        }
        rest = &rest[r.consumed..];
    }
}

fuzz_target!(|data: &[u8]| {
    let mut whole = Events::new();
    run(
        &mut TelnetDecoder::default(),
        data,
        data.len().max(1),
        &mut whole,
    );
    assert_eq!(whole, model(data), "decoder and model disagree");

    let mut rng = Rng::from_data(data);
    let mut d = TelnetDecoder::default();
    let mut pieces = Events::new();
    for c in chunks(data, &mut rng, 64) {
        let room = rng.range(1, 16);
        run(&mut d, c, room, &mut pieces);
    }
    assert_eq!(whole, pieces, "chunked input decoded differently");

    let mut enc = Vec::new();
    telnet_encode(data, &mut enc);
    assert_eq!(
        enc.len(),
        data.len() + data.iter().filter(|&&b| b == IAC).count()
    );
    let mut back = Events::new();
    run(&mut TelnetDecoder::default(), &enc, 7, &mut back);
    let back: Vec<u8> = back
        .into_iter()
        .map(|e| e.expect("a break out of encoded data"))
        .collect();
    assert_eq!(back, data, "decode(encode(x)) != x");
});
