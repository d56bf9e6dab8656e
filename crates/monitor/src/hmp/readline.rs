//! A line editor that echoes exactly what QEMU 7.2's monitor readline
//! echoes, byte for byte: after every input byte, if the line changed, the
//! cursor goes back to the start (`ESC [ D` per column), the whole line is
//! printed and cleared to the end (`ESC [ K`); then the cursor is moved to
//! its place.
//!
//! Keys: printable bytes insert; Backspace (8, 127); Ctrl-A/Ctrl-E (start,
//! end); Ctrl-D (delete); Ctrl-W (delete the word before the cursor); `ESC [ A`/`B` (history;
//! also `F`/`E`, as QEMU reads them), `C`/`D` (right, left),
//! `ESC [ 1~`/`4~` (home, end), `ESC [ 3~` (delete), `ESC O H`/`F` (and the
//! 8-bit CSI, 155, for `ESC [`); Ctrl-L clears the screen; CR or LF ends
//! the line.

/// The monitor's prompt.
pub const PROMPT: &[u8] = b"(qemu) ";

/// Tab completion: given the line up to the cursor, the candidates and the
/// length of the word they complete.
pub type Completer<'a> = &'a dyn Fn(&[u8]) -> (Vec<String>, usize);

/// History entries kept, as in QEMU.
const HISTORY_MAX: usize = 64;
/// Longest line, as in QEMU's buffer.
const LINE_MAX: usize = 4095;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    Norm,
    Start,
    Csi,
    Ss3,
}

/// Line editor state.
#[derive(Debug)]
pub struct Readline {
    buf: Vec<u8>,
    cursor: usize,
    shown: Vec<u8>,
    shown_cursor: usize,
    esc: Esc,
    esc_param: u32,
    history: Vec<Vec<u8>>,
    /// Position while browsing history (`history.len()` = the new line).
    hist_pos: Option<usize>,
}

impl Default for Readline {
    fn default() -> Self {
        Readline::new()
    }
}

impl Readline {
    /// An empty editor.
    pub fn new() -> Readline {
        Readline {
            buf: Vec::new(),
            cursor: 0,
            shown: Vec::new(),
            shown_cursor: 0,
            esc: Esc::Norm,
            esc_param: 0,
            history: Vec::new(),
            hist_pos: None,
        }
    }

    /// A new client: the line is dropped, the history kept (QEMU keeps
    /// one editor per monitor, across connections).
    pub fn restart(&mut self) {
        self.buf.clear();
        self.cursor = 0;
        self.prompt_shown();
    }

    /// A new prompt was printed: nothing of the line is on screen.
    pub fn prompt_shown(&mut self) {
        self.shown.clear();
        self.shown_cursor = 0;
        self.esc = Esc::Norm;
    }

    /// The line being edited and the cursor's position in it.
    pub fn line(&self) -> (&[u8], usize) {
        (&self.buf, self.cursor)
    }

    /// Commands entered so far, oldest first.
    pub fn history(&self) -> &[Vec<u8>] {
        &self.history
    }

    /// Feeds one byte; appends the echo to `echo`; returns a completed line.
    /// Tab completes nothing.
    pub fn feed(&mut self, b: u8, echo: &mut Vec<u8>) -> Option<Vec<u8>> {
        self.feed_completing(b, echo, &|_| (Vec::new(), 0))
    }

    /// [`Readline::feed`] with Tab completion: `complete` gets the line up
    /// to the cursor and returns the candidates and the length of the word
    /// they complete.
    pub fn feed_completing(
        &mut self,
        b: u8,
        echo: &mut Vec<u8>,
        complete: Completer<'_>,
    ) -> Option<Vec<u8>> {
        if self.esc == Esc::Norm && b == b'\t' {
            self.complete(echo, complete);
            self.refresh(echo);
            return None;
        }
        match self.esc {
            Esc::Norm => match b {
                b'\r' | b'\n' => {
                    let line = std::mem::take(&mut self.buf);
                    self.cursor = 0;
                    self.add_history(&line);
                    echo.extend_from_slice(b"\r\n");
                    self.shown.clear();
                    self.shown_cursor = 0;
                    return Some(line);
                }
                1 => self.cursor = 0,
                5 => self.cursor = self.buf.len(),
                4 => self.delete(),
                23 => self.delete_word_before_cursor(),
                8 | 127 if self.cursor > 0 => {
                    self.cursor -= 1;
                    self.delete();
                }
                27 => self.esc = Esc::Start,
                // The 8-bit CSI; as in QEMU the parameter of the last
                // sequence is not reset.
                155 => self.esc = Esc::Csi,
                // Ctrl-L: clear the screen, prompt and line again.
                12 => {
                    echo.extend_from_slice(b"\x1b[2J\x1b[1;1H");
                    echo.extend_from_slice(PROMPT);
                    self.shown.clear();
                    self.shown_cursor = 0;
                }
                0x20..=0x7E | 0x80..=0xFF if self.buf.len() < LINE_MAX => {
                    self.buf.insert(self.cursor, b);
                    self.cursor += 1;
                }
                _ => {}
            },
            Esc::Start => {
                self.esc = match b {
                    b'[' => {
                        self.esc_param = 0;
                        Esc::Csi
                    }
                    b'O' => Esc::Ss3,
                    _ => Esc::Norm,
                }
            }
            Esc::Csi => match b {
                b'0'..=b'9' => {
                    self.esc_param = self
                        .esc_param
                        .saturating_mul(10)
                        .saturating_add((b - b'0') as u32)
                }
                _ => {
                    self.esc = Esc::Norm;
                    match b {
                        b'A' | b'F' => self.history_step(true),
                        b'B' | b'E' => self.history_step(false),
                        b'C' => self.cursor = (self.cursor + 1).min(self.buf.len()),
                        b'D' => self.cursor = self.cursor.saturating_sub(1),
                        b'~' => match self.esc_param {
                            1 => self.cursor = 0,
                            3 => self.delete(),
                            4 => self.cursor = self.buf.len(),
                            _ => {}
                        },
                        _ => {}
                    }
                }
            },
            Esc::Ss3 => {
                self.esc = Esc::Norm;
                match b {
                    b'H' => self.cursor = 0,
                    b'F' => self.cursor = self.buf.len(),
                    _ => {}
                }
            }
        }
        self.refresh(echo);
        None
    }

    /// Tab, as QEMU's readline does it: one candidate is completed (and a
    /// space added), several are completed to their common prefix and
    /// listed in columns under the line, then the prompt and line again.
    fn complete(&mut self, echo: &mut Vec<u8>, complete: Completer<'_>) {
        let (mut cands, index) = complete(&self.buf[..self.cursor]);
        if cands.is_empty() {
            return;
        }
        let insert = |rl: &mut Readline, bytes: &[u8]| {
            for &c in bytes {
                if rl.buf.len() < LINE_MAX {
                    rl.buf.insert(rl.cursor, c);
                    rl.cursor += 1;
                }
            }
        };
        if cands.len() == 1 {
            let c = cands[0].as_bytes();
            insert(self, c.get(index..).unwrap_or(b""));
            if !c.is_empty() && !c.ends_with(b"/") {
                insert(self, b" ");
            }
            return;
        }
        cands.sort();
        echo.extend_from_slice(b"\r\n");
        let first = cands[0].as_bytes();
        let mut prefix = first.len();
        let mut width = 0;
        for c in &cands {
            let c = c.as_bytes();
            prefix = prefix.min(c.len());
            prefix = (0..prefix).find(|&j| c[j] != first[j]).unwrap_or(prefix);
            width = width.max(c.len());
        }
        if prefix > index {
            insert(self, &first[index..prefix]);
        }
        let width = (width + 2).clamp(10, 80);
        let cols = 80 / width;
        for (i, c) in cands.iter().enumerate() {
            echo.extend_from_slice(format!("{c:<width$}").as_bytes());
            if (i + 1) % cols == 0 || i + 1 == cands.len() {
                echo.extend_from_slice(b"\r\n");
            }
        }
        echo.extend_from_slice(PROMPT);
        self.shown.clear();
        self.shown_cursor = 0;
    }

    /// Ctrl-W: deletes back from the cursor over spaces, then over the
    /// word before them, keeping the space before that word. As in QEMU,
    /// the line's first byte is never kept alone: a deletion that would
    /// stop after it takes it too (only printable bytes are in the line,
    /// so a space is the only white space).
    fn delete_word_before_cursor(&mut self) {
        let end = self.cursor;
        let mut start = end;
        while start > 0 && self.buf[start - 1] == b' ' {
            start -= 1;
        }
        while start > 0 && self.buf[start - 1] != b' ' {
            start -= 1;
        }
        if start == 1 {
            start = 0;
        }
        self.buf.drain(start..end);
        self.cursor = start;
    }

    fn delete(&mut self) {
        if self.cursor < self.buf.len() {
            self.buf.remove(self.cursor);
        }
    }

    fn add_history(&mut self, line: &[u8]) {
        // An empty line keeps the place in history, as QEMU's does: the
        // next `ESC [ A` goes on from the entry recalled last.
        if line.is_empty() {
            return;
        }
        self.hist_pos = None;
        // QEMU moves a repeated entry to the end instead of duplicating it.
        if let Some(i) = self.history.iter().position(|h| h == line) {
            let h = self.history.remove(i);
            self.history.push(h);
            return;
        }
        if self.history.len() == HISTORY_MAX {
            self.history.remove(0);
        }
        self.history.push(line.to_vec());
    }

    fn history_step(&mut self, back: bool) {
        let n = self.history.len();
        let pos = self.hist_pos.unwrap_or(n);
        let new = if back {
            if pos == 0 {
                return;
            }
            pos - 1
        } else {
            if pos >= n {
                return;
            }
            pos + 1
        };
        self.hist_pos = (new < n).then_some(new);
        self.buf = if new < n {
            self.history[new].clone()
        } else {
            Vec::new()
        };
        self.cursor = self.buf.len();
    }

    fn refresh(&mut self, echo: &mut Vec<u8>) {
        if self.buf != self.shown {
            for _ in 0..self.shown_cursor {
                echo.extend_from_slice(b"\x1b[D");
            }
            echo.extend_from_slice(&self.buf);
            echo.extend_from_slice(b"\x1b[K");
            self.shown = self.buf.clone();
            self.shown_cursor = self.buf.len();
        }
        if self.cursor != self.shown_cursor {
            let (seq, n) = if self.cursor > self.shown_cursor {
                (b"\x1b[C", self.cursor - self.shown_cursor)
            } else {
                (b"\x1b[D", self.shown_cursor - self.cursor)
            };
            for _ in 0..n {
                echo.extend_from_slice(seq);
            }
            self.shown_cursor = self.cursor;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(rl: &mut Readline, input: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut echo = Vec::new();
        let mut lines = Vec::new();
        for &b in input {
            if let Some(l) = rl.feed(b, &mut echo) {
                lines.push(l);
                rl.prompt_shown();
            }
        }
        (echo, lines)
    }

    #[test]
    fn empty_line_keeps_the_place_in_history() {
        let mut rl = Readline::new();
        typed(&mut rl, b"one\rtwo\r");
        // Recall `two`, erase it, enter the empty line: the next recall is
        // `one`, the entry before the one recalled (QEMU 7.2 does this).
        let (_, lines) = typed(&mut rl, b"\x1b[A\x7f\x7f\x7f\r\x1b[A\r");
        assert_eq!(lines, vec![b"".to_vec(), b"one".to_vec()]);
        // After a line that is not empty, recall starts at the newest.
        let (_, lines) = typed(&mut rl, b"\x1b[A\r");
        assert_eq!(lines, vec![b"one".to_vec()]);
        assert_eq!(rl.history(), &[b"two".to_vec(), b"one".to_vec()]);
    }

    #[test]
    fn echo_matches_qemu() {
        // Recorded from QEMU 7.2's monitor on a socket.
        let mut rl = Readline::new();
        let (echo, lines) = typed(&mut rl, b"stop\r");
        assert_eq!(
            echo,
            b"s\x1b[K\x1b[Dst\x1b[K\x1b[D\x1b[Dsto\x1b[K\x1b[D\x1b[D\x1b[Dstop\x1b[K\r\n"
        );
        assert_eq!(lines, [b"stop".to_vec()]);
        let (echo, lines) = typed(&mut rl, b"abc\x7f\x7fx\r");
        assert_eq!(
            echo,
            b"a\x1b[K\x1b[Dab\x1b[K\x1b[D\x1b[Dabc\x1b[K\x1b[D\x1b[D\x1b[Dab\x1b[K\x1b[D\x1b[Da\x1b[K\x1b[Dax\x1b[K\r\n"
        );
        assert_eq!(lines, [b"ax".to_vec()]);
        let _ = typed(&mut rl, b"info status\r");
        let (echo, lines) = typed(&mut rl, b"info\x1b[A\r");
        assert_eq!(
            echo,
            b"i\x1b[K\x1b[Din\x1b[K\x1b[D\x1b[Dinf\x1b[K\x1b[D\x1b[D\x1b[Dinfo\x1b[K\x1b[D\x1b[D\x1b[D\x1b[Dinfo status\x1b[K\r\n"
        );
        assert_eq!(lines, [b"info status".to_vec()]);
    }

    #[test]
    fn ctrl_w_matches_qemu() {
        // Recorded from QEMU 7.2's monitor on a socket, key by key.
        let mut rl = Readline::new();
        let _ = typed(&mut rl, b"abc def");
        let (echo, _) = typed(&mut rl, b"\x17");
        assert_eq!(
            echo,
            b"\x1b[D\x1b[D\x1b[D\x1b[D\x1b[D\x1b[D\x1b[Dabc \x1b[K"
        );
        let (echo, _) = typed(&mut rl, b"\x17");
        assert_eq!(echo, b"\x1b[D\x1b[D\x1b[D\x1b[D\x1b[K");
        let (echo, _) = typed(&mut rl, b"\x17");
        assert_eq!(echo, b"");
        let _ = typed(&mut rl, b"xy z");
        let (echo, _) = typed(&mut rl, b"\x01\x17");
        assert_eq!(echo, b"\x1b[D\x1b[D\x1b[D\x1b[D");
        let (echo, _) = typed(&mut rl, b"\x05 ab\x1b[D\x17");
        assert!(
            echo.ends_with(b"\x1b[D\x1b[D\x1b[D\x1b[D\x1b[D\x1b[D\x1b[Dxy z b\x1b[K\x1b[D"),
            "{:?}",
            String::from_utf8_lossy(&echo)
        );
        assert_eq!(rl.line(), (&b"xy z b"[..], 5));
        // The first byte does not stay alone.
        let mut rl = Readline::new();
        let _ = typed(&mut rl, b" ab");
        let (echo, _) = typed(&mut rl, b"\x17");
        assert_eq!(echo, b"\x1b[D\x1b[D\x1b[D\x1b[K");
        let _ = typed(&mut rl, b"x  yz  ");
        let (echo, _) = typed(&mut rl, b"\x17");
        assert_eq!(echo, b"\x1b[D\x1b[D\x1b[D\x1b[D\x1b[D\x1b[D\x1b[Dx  \x1b[K");
        let (echo, _) = typed(&mut rl, b"\x17");
        assert_eq!(echo, b"\x1b[D\x1b[D\x1b[D\x1b[K");
        assert_eq!(rl.line(), (&b""[..], 0));
    }

    #[test]
    fn cursor_keys_edit_in_the_middle() {
        let mut rl = Readline::new();
        let (_, lines) = typed(&mut rl, b"ac\x1b[Db\x01X\x05Y\r");
        assert_eq!(lines, [b"XabcY".to_vec()]);
        let (_, lines) = typed(&mut rl, b"\x1b[A\x1b[A\r");
        assert_eq!(lines, [b"XabcY".to_vec()]);
        // Down past the newest entry gives an empty line.
        let (_, lines) = typed(&mut rl, b"\x1b[A\x1b[B\r");
        assert_eq!(lines, [Vec::<u8>::new()]);
    }
}
