//! Reproducer files: an input and what QEMU 7.2 sent back for it,
//! normalised, one escaped line per step. The campaign writes them; the
//! replay tests (`tests/reproducers.rs`) run the input on qchar and compare
//! with QEMU's recorded bytes, and with QEMU itself where it is installed.
//!
//! ```text
//! class qmp
//! machine none
//! note what differed when it was found
//! step {"execute": "qmp_capabilities"}
//! qemu greeting: {"QMP": ...}\r\n{"return": {}}\r\n...
//! ```

use crate::gen::{Class, Input};
use crate::HarnessError;

/// A reproducer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repro {
    /// The class.
    pub class: Class,
    /// A command-line input ran with `-machine pc` (else `none`).
    pub machine_pc: bool,
    /// What differed when it was found.
    pub note: String,
    /// The input's steps.
    pub steps: Vec<Vec<u8>>,
    /// QEMU's transcript.
    pub qemu: Vec<Vec<u8>>,
    /// qchar's transcript when it was found (informative).
    pub qchar: Option<Vec<Vec<u8>>>,
}

/// Bytes as one line: printable ASCII as is, `\\`, `\n`, `\r`, `\t`,
/// else `\xNN`.
pub fn escape_line(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

/// The inverse of [`escape_line`].
pub fn unescape_line(s: &str) -> Result<Vec<u8>, HarnessError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let c = *b
                .get(i + 1)
                .ok_or_else(|| HarnessError::Repro("trailing backslash".into()))?;
            i += 2;
            match c {
                b'\\' => out.push(b'\\'),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'x' => {
                    let h = s
                        .get(i..i + 2)
                        .ok_or_else(|| HarnessError::Repro("short \\x".into()))?;
                    out.push(
                        u8::from_str_radix(h, 16)
                            .map_err(|_| HarnessError::Repro(format!("bad \\x{h}")))?,
                    );
                    i += 2;
                }
                other => {
                    return Err(HarnessError::Repro(format!(
                        "bad escape \\{}",
                        other as char
                    )))
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

impl Repro {
    /// The input.
    pub fn input(&self) -> Input {
        Input {
            class: self.class,
            steps: self.steps.clone(),
        }
    }

    /// The file text.
    pub fn to_text(&self) -> String {
        let mut s = String::from("# difffuzz reproducer (crates/difffuzz/src/repro.rs)\n");
        s.push_str(&format!("class {}\n", self.class.name()));
        s.push_str(&format!(
            "machine {}\n",
            if self.machine_pc { "pc" } else { "none" }
        ));
        s.push_str(&format!("note {}\n", self.note.replace('\n', " ")));
        for st in &self.steps {
            s.push_str(&format!("step {}\n", escape_line(st)));
        }
        for t in &self.qemu {
            s.push_str(&format!("qemu {}\n", escape_line(t)));
        }
        for t in self.qchar.iter().flatten() {
            s.push_str(&format!("qchar {}\n", escape_line(t)));
        }
        s
    }

    /// Parses a file's text.
    pub fn parse(text: &str) -> Result<Repro, HarnessError> {
        let mut r = Repro {
            class: Class::Qmp,
            machine_pc: false,
            note: String::new(),
            steps: Vec::new(),
            qemu: Vec::new(),
            qchar: None,
        };
        let mut have_class = false;
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "class" => {
                    r.class = Class::from_name(v)
                        .ok_or_else(|| HarnessError::Repro(format!("class {v}")))?;
                    have_class = true;
                }
                "machine" => r.machine_pc = v == "pc",
                "note" => r.note = v.to_string(),
                "step" => r.steps.push(unescape_line(v)?),
                "qemu" => r.qemu.push(unescape_line(v)?),
                "qchar" => r.qchar.get_or_insert_with(Vec::new).push(unescape_line(v)?),
                other => return Err(HarnessError::Repro(format!("unknown line {other}"))),
            }
        }
        if !have_class {
            return Err(HarnessError::Repro("no class line".into()));
        }
        Ok(r)
    }
}

/// Runs a reproducer's input on one side, freshly started: the live
/// processes' command line, or the input's own command line.
pub fn replay(
    progs: &crate::target::Programs,
    side: crate::target::Side,
    r: &Repro,
) -> Result<Vec<Vec<u8>>, HarnessError> {
    let input = r.input();
    if r.class == Class::Cli {
        let machine = if r.machine_pc { "pc" } else { "none" };
        return crate::runner::run_cli_one(progs, side, &input, machine);
    }
    let mut live = crate::runner::Live::start_one(progs, side)?;
    live.run_one(&input, crate::campaign::IDLE_CONFIRM)
}
