//! The HMP monitor's line editor (`qchar_monitor::hmp::readline`), fed a
//! client's keystrokes one byte at a time, as the monitor feeds it.
//!
//! Invariants:
//! - no panic;
//! - a terminal that applies the echo (printable bytes, `ESC [ C`/`D`,
//!   `ESC [ K`, `\r\n`) shows, after every byte, exactly the line being
//!   edited with its cursor in place, and is never moved left of the line's
//!   start nor written past its end;
//! - the echo of one byte is bounded (a few times the longest line);
//! - a completed line holds only printable bytes, at most 4095 of them;
//! - the history has at most 64 entries, none empty, none twice, and the
//!   last non-empty line entered is its newest;
//! - input without control bytes comes back as its lines, split at CR/LF
//!   and cut to 4095 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qchar_monitor::hmp::readline::Readline;

const LINE_MAX: usize = 4095;
const HISTORY_MAX: usize = 64;

/// A one-line terminal starting at the line's first column (the prompt
/// before it is not modelled).
#[derive(Default)]
struct Terminal {
    screen: Vec<u8>,
    col: usize,
    esc: Vec<u8>,
    lines_ended: usize,
    /// Bytes of the prompt still to come after a clear (Ctrl-L), which
    /// prints it again at the top of the screen.
    prompt_left: usize,
}

/// HMP's prompt, printed again after Ctrl-L clears the screen.
const PROMPT: &[u8] = b"(qemu) ";

impl Terminal {
    fn apply(&mut self, echo: &[u8]) {
        for &b in echo {
            if self.prompt_left > 0 {
                assert_eq!(b, PROMPT[PROMPT.len() - self.prompt_left], "the prompt");
                self.prompt_left -= 1;
                continue;
            }
            if !self.esc.is_empty() {
                self.esc.push(b);
                match self.esc.as_slice() {
                    [0x1b, b'['] => continue,
                    [0x1b, b'[', p @ ..] if p.iter().all(|c| c.is_ascii_digit() || *c == b';') => {
                        continue
                    }
                    // Ctrl-L: the screen cleared, the cursor home, then the
                    // prompt and the line again.
                    [0x1b, b'[', b'2', b'J'] => {
                        self.screen.clear();
                        self.col = 0;
                    }
                    [0x1b, b'[', b'1', b';', b'1', b'H'] => {
                        assert!(self.screen.is_empty(), "home without a clear");
                        self.prompt_left = PROMPT.len();
                    }
                    [0x1b, b'[', b'D'] => {
                        assert!(self.col > 0, "cursor moved left of the line");
                        self.col -= 1;
                    }
                    [0x1b, b'[', b'C'] => {
                        self.col += 1;
                        assert!(self.col <= self.screen.len(), "cursor past the line");
                    }
                    [0x1b, b'[', b'K'] => self.screen.truncate(self.col),
                    other => panic!("unexpected escape sequence {other:?}"),
                }
                self.esc.clear();
                continue;
            }
            match b {
                0x1b => self.esc.push(b),
                b'\r' => {}
                b'\n' => {
                    self.screen.clear();
                    self.col = 0;
                    self.lines_ended += 1;
                }
                0x20..=0x7e | 0x80..=0xff => {
                    assert!(self.col <= self.screen.len());
                    if self.col == self.screen.len() {
                        self.screen.push(b);
                    } else {
                        self.screen[self.col] = b;
                    }
                    self.col += 1;
                }
                _ => panic!("control byte {b:#04x} in the echo"),
            }
        }
    }
}

fn printable(b: u8) -> bool {
    matches!(b, 0x20..=0x7e | 0x80..=0xff)
}

fuzz_target!(|data: &[u8]| {
    let mut rl = Readline::new();
    let mut term = Terminal::default();
    let mut lines = Vec::new();
    let mut last_entered: Option<Vec<u8>> = None;
    let mut echo = Vec::new();
    for &b in data {
        echo.clear();
        let done = rl.feed(b, &mut echo);
        assert!(
            echo.len() <= 7 * LINE_MAX + 8,
            "{} bytes of echo for one key",
            echo.len()
        );
        term.apply(&echo);
        match done {
            Some(line) => {
                assert!(line.len() <= LINE_MAX);
                assert!(line.iter().all(|&c| printable(c)), "{line:?}");
                assert!(term.screen.is_empty() && term.esc.is_empty());
                if !line.is_empty() {
                    last_entered = Some(line.clone());
                }
                lines.push(line);
                rl.prompt_shown();
            }
            None => {
                let (buf, cursor) = rl.line();
                assert_eq!(term.screen, buf, "the screen shows the line");
                assert_eq!(term.col, cursor, "the cursor is where the editor says");
            }
        }
        let h = rl.history();
        assert!(h.len() <= HISTORY_MAX);
        assert!(h.iter().all(|e| !e.is_empty()));
        for (i, e) in h.iter().enumerate() {
            assert!(!h[i + 1..].contains(e), "{e:?} twice in the history");
        }
        assert_eq!(h.last(), last_entered.as_ref());
    }
    assert_eq!(term.lines_ended, lines.len());

    // 0x9b is the 8-bit CSI (an escape, as in QEMU), not text.
    if data
        .iter()
        .all(|&b| (printable(b) && b != 0x9b) || b == b'\r' || b == b'\n')
    {
        let want: Vec<Vec<u8>> = data
            .split(|&b| b == b'\r' || b == b'\n')
            .map(|l| l[..l.len().min(LINE_MAX)].to_vec())
            .collect();
        // The text after the last CR/LF is still being edited.
        assert_eq!(lines, want[..want.len() - 1]);
        assert_eq!(rl.line().0, &want[want.len() - 1][..]);
    }
});
