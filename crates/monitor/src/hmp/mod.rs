//! HMP, the human monitor: QEMU 7.2's command syntax, output and error
//! texts for the chardev and run-state commands, a readline-style line
//! editor with QEMU's exact echo, and the chardev frontend.
//!
//! - [`execute`]: runs one command line (also behind QMP's
//!   `human-monitor-command`);
//! - [`readline`]: line editing and history;
//! - [`monitor`]: `-mon chardev=ID,mode=readline` as a chardev frontend.

pub mod monitor;
pub mod readline;

use std::sync::Arc;

use crate::fds::MonitorFds;
use crate::later::Later;
use crate::qmp::cmd::QmpEnv;

pub use monitor::HmpMonitor;

/// One command: name (with `|` aliases), argument synopsis, help text.
struct Cmd {
    names: &'static str,
    params: &'static str,
    help: &'static str,
}

/// The commands, in `help` order (QEMU sorts alphabetically).
const COMMANDS: &[Cmd] = &[
    Cmd {
        names: "chardev-add",
        params: "args",
        help: "add chardev",
    },
    Cmd {
        names: "chardev-change",
        params: "id args",
        help: "change chardev",
    },
    Cmd {
        names: "chardev-remove",
        params: "id",
        help: "remove chardev",
    },
    Cmd {
        names: "chardev-send-break",
        params: "id",
        help: "send a break on chardev",
    },
    Cmd {
        names: "closefd",
        params: "closefd name",
        help: "close a file descriptor previously passed via SCM rights",
    },
    Cmd {
        names: "cont|c",
        params: "",
        help: "resume emulation",
    },
    Cmd {
        names: "getfd",
        params: "getfd name",
        help: "receive a file descriptor via SCM rights and assign it a name",
    },
    Cmd {
        names: "help|?",
        params: "[cmd]",
        help: "show the help",
    },
    Cmd {
        names: "info",
        params: "[subcommand]",
        help: "show various information about the system state",
    },
    Cmd {
        names: "object_add",
        params: "[qom-type=]type,id=str[,prop=value][,...]",
        help: "create QOM object",
    },
    Cmd {
        names: "object_del",
        params: "id",
        help: "destroy QOM object",
    },
    Cmd {
        names: "quit|q",
        params: "",
        help: "quit the emulator",
    },
    Cmd {
        names: "ringbuf_read",
        params: "device size",
        help: "Read from a ring buffer character device",
    },
    Cmd {
        names: "ringbuf_write",
        params: "device data",
        help: "Write to a ring buffer character device",
    },
    Cmd {
        names: "x-chardev-history",
        params: "device size",
        help: "Read the newest bytes a character device sent out (qchar extension)",
    },
    Cmd {
        names: "stop|s",
        params: "",
        help: "stop emulation",
    },
];

const INFO: &[Cmd] = &[
    Cmd {
        names: "chardev",
        params: "",
        help: "show the character devices",
    },
    Cmd {
        names: "status",
        params: "",
        help: "show the current VM status (running|paused)",
    },
    Cmd {
        names: "version",
        params: "",
        help: "show the version of QEMU",
    },
    Cmd {
        names: "x-chardev-clients",
        params: "",
        help: "show the clients of multi-client socket chardevs (qchar extension)",
    },
    Cmd {
        names: "x-chardev-stats",
        params: "",
        help: "show the character devices' counters (qchar extension)",
    },
];

fn find<'a>(table: &'a [Cmd], name: &str) -> Option<&'a Cmd> {
    table.iter().find(|c| c.names.split('|').any(|n| n == name))
}

fn help_line(prefix: &str, c: &Cmd) -> String {
    format!("{prefix}{} {} -- {}\n", c.names, c.params, c.help)
}

/// What a command produced; `quit` also stops the prompt.
pub struct Outcome {
    /// Output text with `\n` line ends (the monitor sends `\r\n`).
    pub text: String,
    /// The command was `quit`.
    pub quit: bool,
    /// The output comes later (a `chardev-add` waiting for its connect);
    /// `text` is then empty.
    pub later: Option<Later<String>>,
}

impl Outcome {
    /// Output that is there now.
    fn now(text: String) -> Outcome {
        Outcome {
            text,
            quit: false,
            later: None,
        }
    }

    /// Output that `ask` gives, now or later (a registry call whose open
    /// may wait for a peer).
    fn of(ask: impl FnOnce(Later<String>)) -> Outcome {
        let later = Later::new();
        ask(later.clone());
        match later.take_ready() {
            Some(text) => Outcome::now(text),
            None => Outcome {
                text: String::new(),
                quit: false,
                later: Some(later),
            },
        }
    }
}

/// Runs one HMP command line on a temporary monitor (no descriptors
/// received, no names: `human-monitor-command`); returns its output with
/// `\r\n` line ends, now or later (see [`Outcome::later`]).
pub fn execute(env: &QmpEnv, line: &str) -> Later<String> {
    let o = run_line(env, &MonitorFds::new(), line);
    let out = Later::new();
    match o.later {
        None => out.finish(crlf(&o.text)),
        Some(l) => {
            let out = out.clone();
            l.then(move |text| out.finish(crlf(&text)));
        }
    }
    out
}

/// [`execute`], the output as bytes (those that are not UTF-8 as they
/// are, a NUL as `C0 80`).
pub fn execute_bytes(env: &QmpEnv, line: &str) -> Later<Vec<u8>> {
    let out = Later::new();
    let o = out.clone();
    execute(env, line).then(move |text| o.finish(bytes_of(&text)));
    out
}

/// Bytes that are not UTF-8 (typed on a readline monitor, read from a
/// ringbuf) go through the HMP layer's strings as the characters
/// `U+10FF00 + byte` (private use) and come out as those bytes again, as
/// QEMU, working on C strings, prints them.
const RAW_BASE: u32 = 0x10_FF00;

/// Bytes as an HMP string (see [`RAW_BASE`]); `C0 80` is a NUL.
pub(crate) fn str_of(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        out.push_str(chunk.valid());
        for &x in chunk.invalid() {
            out.push(char::from_u32(RAW_BASE + u32::from(x)).unwrap_or('\u{FFFD}'));
        }
    }
    out.replace("\u{10FFC0}\u{10FF80}", "\0")
}

/// An HMP string as bytes (see [`RAW_BASE`]); a NUL as `C0 80`, as QEMU
/// keeps a `\u0000` it was sent.
pub(crate) fn bytes_of(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        match u32::from(c) {
            0 => out.extend_from_slice(&[0xC0, 0x80]),
            n if (RAW_BASE..RAW_BASE + 0x100).contains(&n) => out.push((n - RAW_BASE) as u8),
            _ => {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out
}

/// Where in `s` its first `n` bytes as HMP bytes ([`bytes_of`]) end.
fn str_index(s: &str, n: usize) -> usize {
    let mut raw = 0;
    for (i, c) in s.char_indices() {
        if raw >= n {
            return i;
        }
        raw += bytes_of(c.encode_utf8(&mut [0; 4])).len();
    }
    s.len()
}

/// `\n` to `\r\n`, as QEMU's monitor output does.
pub(crate) fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

/// A cursor over a command line's arguments, with QEMU's parsing errors.
struct Args<'a> {
    rest: &'a str,
    /// Name used in errors (`ringbuf_write`, `stop|s`, `chardev` for info).
    name: &'a str,
    /// Name used in `Try "help ..."`: the line as typed up to the
    /// command's name (leading blanks and an alias included), as QEMU
    /// quotes it.
    help: String,
}

enum ArgError {
    /// `NAME: MESSAGE` then the help hint.
    Named(String),
    /// `MESSAGE` then the help hint.
    Plain(String),
}

/// QEMU's HMP argument buffer: longer strings are cut to 1023 bytes.
const ARG_MAX: usize = 1023;

/// Whether `c` is a blank as C's `isspace` sees it.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

impl<'a> Args<'a> {
    /// QEMU's `S` argument: the rest of the line, spaces and all.
    fn rest_of_line(&mut self) -> Result<String, ArgError> {
        let s = self.rest.trim();
        if s.is_empty() {
            return Err(ArgError::Named("string expected".into()));
        }
        self.rest = "";
        Ok(s.to_string())
    }

    /// A string argument (QEMU's `get_str`): a word, or a double-quoted
    /// string with `\n`, `\r`, `\\`, `\'` and `\"`. Any failure (nothing
    /// there, an unknown escape, no closing quote) is `NAME: string
    /// expected`; QEMU prints the detail on its own stdout, not to the
    /// monitor.
    fn string(&mut self) -> Result<String, ArgError> {
        let s = self.rest.trim_start_matches(is_space);
        let fail = || ArgError::Named("string expected".into());
        if s.is_empty() {
            return Err(fail());
        }
        let mut out = String::new();
        let push = |out: &mut String, c: char| {
            if out.len() + c.len_utf8() <= ARG_MAX {
                out.push(c);
            }
        };
        if let Some(body) = s.strip_prefix('"') {
            let mut it = body.char_indices();
            while let Some((i, c)) = it.next() {
                match c {
                    '"' => {
                        self.rest = &body[i + 1..];
                        return Ok(out);
                    }
                    '\\' => match it.next() {
                        Some((_, 'n')) => push(&mut out, '\n'),
                        Some((_, 'r')) => push(&mut out, '\r'),
                        Some((_, c @ ('\\' | '\'' | '"'))) => push(&mut out, c),
                        _ => return Err(fail()),
                    },
                    c => push(&mut out, c),
                }
            }
            return Err(fail());
        }
        let end = s.find(is_space).unwrap_or(s.len());
        for c in s[..end].chars() {
            push(&mut out, c);
        }
        self.rest = &s[end..];
        Ok(out)
    }

    /// A 32-bit integer argument (QEMU's `i`): an expression as its HMP
    /// evaluates it (`+ - * / % & | ^ ~`, parentheses, C number literals,
    /// character constants; registers need a CPU and are unknown here).
    fn int(&mut self) -> Result<i64, ArgError> {
        let s = self.rest.trim_start_matches(is_space);
        // QEMU reads the line's bytes: a byte that is not UTF-8 is one
        // byte here too, not the four of its stand-in character.
        let raw = bytes_of(s);
        let mut e = Expr { b: &raw, i: 0 };
        let v = e.sum().map_err(ArgError::Plain)?;
        self.rest = &s[str_index(s, e.i)..];
        if (v >> 32) & 0xffff_ffff != 0 {
            return Err(ArgError::Plain(format!(
                "'{}' has failed: integer is for 32-bit values",
                self.name
            )));
        }
        Ok(v)
    }

    fn end(&self) -> Result<(), ArgError> {
        if self.rest.trim_matches(is_space).is_empty() {
            Ok(())
        } else {
            Err(ArgError::Named(
                "extraneous characters at the end of line".into(),
            ))
        }
    }

    fn fail(&self, e: ArgError) -> String {
        let msg = match e {
            ArgError::Named(m) => format!("{}: {m}", self.name),
            ArgError::Plain(m) => m,
        };
        format!("{msg}\nTry \"help {}\" for more information\n", self.help)
    }
}

/// QEMU's HMP expression evaluator over a byte string (64-bit, wrapping).
struct Expr<'a> {
    b: &'a [u8],
    i: usize,
}

impl Expr<'_> {
    fn peek(&self) -> u8 {
        self.b.get(self.i).copied().unwrap_or(0)
    }

    /// Past the current byte and the blanks after it.
    fn next(&mut self) {
        if self.peek() != 0 {
            self.i += 1;
            self.skip_blanks();
        }
    }

    fn skip_blanks(&mut self) {
        while is_space(self.peek() as char) && self.peek() != 0 {
            self.i += 1;
        }
    }

    fn sum(&mut self) -> Result<i64, String> {
        let mut v = self.logic()?;
        loop {
            let op = self.peek();
            if op != b'+' && op != b'-' {
                return Ok(v);
            }
            self.next();
            let w = self.logic()?;
            v = if op == b'+' {
                v.wrapping_add(w)
            } else {
                v.wrapping_sub(w)
            };
        }
    }

    fn logic(&mut self) -> Result<i64, String> {
        let mut v = self.prod()?;
        loop {
            let op = self.peek();
            if !matches!(op, b'&' | b'|' | b'^') {
                return Ok(v);
            }
            self.next();
            let w = self.prod()?;
            v = match op {
                b'&' => v & w,
                b'|' => v | w,
                _ => v ^ w,
            };
        }
    }

    fn prod(&mut self) -> Result<i64, String> {
        let mut v = self.unary()?;
        loop {
            let op = self.peek();
            if !matches!(op, b'*' | b'/' | b'%') {
                return Ok(v);
            }
            self.next();
            let w = self.unary()?;
            v = match op {
                b'*' => v.wrapping_mul(w),
                _ if w == 0 => return Err("division by zero".into()),
                b'/' => v.wrapping_div(w),
                _ => v.wrapping_rem(w),
            };
        }
    }

    fn unary(&mut self) -> Result<i64, String> {
        match self.peek() {
            b'+' => {
                self.next();
                self.unary()
            }
            b'-' => {
                self.next();
                Ok(self.unary()?.wrapping_neg())
            }
            b'~' => {
                self.next();
                Ok(!self.unary()?)
            }
            b'(' => {
                self.next();
                let v = self.sum()?;
                if self.peek() != b')' {
                    return Err("')' expected".into());
                }
                self.next();
                Ok(v)
            }
            b'\'' => {
                self.i += 1;
                let c = self.peek();
                if c == 0 {
                    return Err("character constant expected".into());
                }
                self.i += 1;
                if self.peek() != b'\'' {
                    return Err("missing terminating ' character".into());
                }
                self.next();
                // C's `char` is signed on x86.
                Ok(i64::from(c as i8))
            }
            b'$' => Err("unknown register".into()),
            0 => Err("unexpected end of expression".into()),
            _ => {
                let (v, n) =
                    strtoull(&self.b[self.i..]).ok_or_else(|| "number too large".to_string())?;
                if n == 0 {
                    let c = self.b[self.i];
                    // The byte itself, as QEMU prints it (see `RAW_BASE`).
                    let shown = if c.is_ascii() {
                        c as char
                    } else {
                        char::from_u32(RAW_BASE + u32::from(c)).unwrap_or('\u{FFFD}')
                    };
                    return Err(format!("invalid char '{shown}' in expression"));
                }
                self.i += n;
                self.skip_blanks();
                Ok(v as i64)
            }
        }
    }
}

/// C's `strtoull(s, &end, 0)` on a string that starts with no blank or
/// sign: the value and the bytes used (0: no number); `None` on overflow.
fn strtoull(s: &[u8]) -> Option<(u64, usize)> {
    let (base, mut i) =
        if s.len() > 2 && s[0] == b'0' && (s[1] | 0x20) == b'x' && s[2].is_ascii_hexdigit() {
            (16, 2)
        } else if s.first() == Some(&b'0') {
            (8, 0)
        } else {
            (10, 0)
        };
    let start = i;
    let mut v: u64 = 0;
    let mut overflow = false;
    while let Some(d) = s.get(i).and_then(|&c| (c as char).to_digit(base)) {
        match v
            .checked_mul(u64::from(base))
            .and_then(|x| x.checked_add(u64::from(d)))
        {
            Some(x) => v = x,
            None => overflow = true,
        }
        i += 1;
    }
    if overflow {
        return None;
    }
    Some((v, if i == start { 0 } else { i }))
}

/// The name at the start of `s` (after blanks) as QEMU cuts it (at a
/// blank or `/`), and the offset just past it.
fn command_name(s: &str) -> Option<(&str, usize)> {
    let lead = s.len() - s.trim_start_matches(is_space).len();
    let rest = &s[lead..];
    if rest.is_empty() {
        return None;
    }
    let len = rest
        .find(|c: char| is_space(c) || c == '/')
        .unwrap_or(rest.len());
    Some((&rest[..len], lead + len))
}

/// Offset past the blanks at `at`.
fn skip_blanks_at(s: &str, at: usize) -> usize {
    at + (s[at..].len() - s[at..].trim_start_matches(is_space).len())
}

/// Tab completion candidates for the line up to the cursor, as QEMU
/// finds them for command names: the first word among the commands and
/// their aliases, the word after `info` among its subcommands, the words
/// after `help` as a command line of their own. Arguments are not
/// completed. Returns the candidates and the length of the word.
pub(crate) fn completions(line: &[u8]) -> (Vec<String>, usize) {
    let text = str_of(line);
    let mut words: Vec<String> = Vec::new();
    let mut a = Args {
        rest: &text,
        name: "",
        help: String::new(),
    };
    while !a.rest.trim_start_matches(is_space).is_empty() {
        match a.string() {
            Ok(w) if words.len() < 16 => words.push(w),
            _ => return (Vec::new(), 0),
        }
    }
    if text.ends_with(is_space) {
        words.push(String::new());
    }
    complete_in(COMMANDS, &words)
}

fn complete_in(table: &[Cmd], words: &[String]) -> (Vec<String>, usize) {
    if words.len() <= 1 {
        let w = words.first().map(String::as_str).unwrap_or("");
        let cands = table
            .iter()
            .flat_map(|c| c.names.split('|'))
            .filter(|n| n.starts_with(w))
            .map(String::from)
            .collect();
        return (cands, w.len());
    }
    match find(table, &words[0]) {
        Some(c) if c.names == "info" && std::ptr::eq(table, COMMANDS) => {
            complete_in(INFO, &words[1..])
        }
        Some(c) if c.names == "help|?" => complete_in(table, &words[1..]),
        _ => (Vec::new(), 0),
    }
}

/// QEMU's `help` over the commands (and `info` subcommands): the words
/// given select one entry (printed with the words that led to it) or, when
/// there are none, every entry of the table reached.
fn help_text(topic: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut a = Args {
        rest: topic,
        name: "",
        help: String::new(),
    };
    while !a.rest.trim_start_matches(is_space).is_empty() {
        match a.string() {
            // QEMU prints the reason on its stdout; the monitor shows nothing.
            Err(_) => return String::new(),
            Ok(w) => words.push(w),
        }
        if words.len() > 16 {
            return String::new();
        }
    }
    let mut table = COMMANDS;
    let mut i = 0;
    loop {
        if i >= words.len() {
            let prefix: String = words[..i].iter().map(|w| format!("{w} ")).collect();
            return table.iter().map(|c| help_line(&prefix, c)).collect();
        }
        match find(table, &words[i]) {
            Some(c) if c.names == "info" && std::ptr::eq(table, COMMANDS) => {
                table = INFO;
                i += 1;
            }
            Some(c) => {
                let prefix: String = words[..i].iter().map(|w| format!("{w} ")).collect();
                return help_line(&prefix, c);
            }
            None => return format!("unknown command: '{}'\n", words[..=i].join(" ")),
        }
    }
}

fn run(env: &QmpEnv, fds: &MonitorFds, line: &str) -> Outcome {
    let text = Outcome::now;
    let Some((name, name_end)) = command_name(line) else {
        return text(String::new());
    };
    let Some(cmd) = find(COMMANDS, name) else {
        return text(format!("unknown command: '{}'\n", &line[..name_end]));
    };
    let primary = cmd.names.split('|').next().unwrap_or(name);
    let mut args_at = skip_blanks_at(line, name_end);
    // `info` with a subcommand: its name is looked up in the info table.
    let mut info_cmd = None;
    if primary == "info" && args_at < line.len() {
        let Some((sub, sub_end)) = command_name(&line[args_at..]) else {
            return text(String::new());
        };
        let Some(c) = find(INFO, sub) else {
            return text(format!(
                "unknown command: '{}'\n",
                &line[..args_at + sub_end]
            ));
        };
        info_cmd = Some(c);
        args_at = skip_blanks_at(line, args_at + sub_end);
    }
    let mut args = Args {
        rest: &line[args_at..],
        name: info_cmd.map_or(cmd.names, |c| c.names),
        help: line[..args_at].trim_end_matches(is_space).to_string(),
    };
    let r: Result<Outcome, ArgError> = (|| {
        let ok = |t: String| Ok(Outcome::now(t));
        let err = |e: String| ok(format!("Error: {e}\n"));
        match primary {
            "help" => ok(help_text(args.rest)),
            "info" => {
                let Some(c) = info_cmd else {
                    return ok(INFO.iter().map(|c| help_line("info ", c)).collect());
                };
                args.end()?;
                ok(match c.names {
                    "chardev" => env
                        .chardevs
                        .query()
                        .iter()
                        .map(|i| format!("{}: filename={}\n", i.label, i.filename))
                        .collect(),
                    "x-chardev-stats" => crate::qmp::cmd::chardev_stats_text(&env.chardevs.stats()),
                    "x-chardev-clients" => {
                        crate::qmp::cmd::chardev_clients_text(&env.chardevs.clients())
                    }
                    "status" => {
                        let st = env.vm.status();
                        let mut s = format!(
                            "VM status: {}",
                            if st.is_running() { "running" } else { "paused" }
                        );
                        if !st.is_running() && st != crate::vm::RunState::Paused {
                            s.push_str(&format!(" ({})", st.as_str()));
                        }
                        s + "\n"
                    }
                    _ => {
                        let v = &env.version;
                        format!("{}.{}.{}{}\n", v.major, v.minor, v.micro, v.package)
                    }
                })
            }
            "chardev-add" => {
                let opts = args.string()?;
                args.end()?;
                let (mut out, parsed) = parse_opts(env, &opts, false);
                let Some(Built::Options(o)) = parsed else {
                    return ok(out);
                };
                let label = if o.mux {
                    format!("{}-base", o.id)
                } else {
                    o.id.clone()
                };
                // The open may wait for a peer: the output then comes later.
                Ok(Outcome::of(|later| {
                    env.chardevs.add_parsed_then(
                        &opts,
                        &o,
                        Box::new(move |r| {
                            match r {
                                Ok(ret) => {
                                    if let Some(pty) = ret.pty {
                                        out.push_str(&redirected(&pty, &label));
                                    }
                                }
                                Err(e) => {
                                    // QEMU opened the pty before it found
                                    // the id taken.
                                    if let qchar_chardev::ChardevError::DuplicateProperty {
                                        pty: Some(pty),
                                        ..
                                    } = &e
                                    {
                                        out.push_str(&redirected(pty, &label));
                                    }
                                    out.push_str(&format!("Error: {e}\n"));
                                }
                            }
                            later.finish(out);
                        }),
                    )
                }))
            }
            "chardev-change" => {
                let id = args.string()?;
                let opts = args.string()?;
                args.end()?;
                let (mut out, parsed) = parse_opts(env, &opts, true);
                let Some(Built::Backend(backend)) = parsed else {
                    return ok(out);
                };
                // Options name the backend's kind after its parser: a
                // `memory` comes out as a ringbuf (QEMU lists it so).
                let backend = match backend {
                    qchar_chardev::spec::ChardevBackend::Memory(r) => {
                        qchar_chardev::spec::ChardevBackend::Ringbuf(r)
                    }
                    b => b,
                };
                // A new pty says nothing here (QEMU prints its line only
                // when a chardev is added). The open may wait for a peer.
                Ok(Outcome::of(|later| {
                    env.chardevs.change_then(
                        &id,
                        backend,
                        Box::new(move |r| {
                            if let Err(e) = r {
                                out.push_str(&format!("Error: {e}\n"));
                            }
                            later.finish(out);
                        }),
                    )
                }))
            }
            "getfd" | "closefd" => {
                let name = args.string()?;
                args.end()?;
                let r = if primary == "getfd" {
                    fds.getfd(&name)
                } else {
                    fds.closefd(&name)
                };
                match r {
                    Ok(()) => ok(String::new()),
                    Err(e) => err(e),
                }
            }
            "chardev-remove" | "chardev-send-break" => {
                let id = args.string()?;
                args.end()?;
                let r = if primary == "chardev-remove" {
                    env.chardevs.remove(&id)
                } else {
                    env.chardevs.send_break(&id)
                };
                match r {
                    Ok(()) => ok(String::new()),
                    Err(e) => err(e.to_string()),
                }
            }
            "ringbuf_write" => {
                let dev = args.string()?;
                let data = args.string()?;
                args.end()?;
                match env.chardevs.ringbuf_write(&dev, &bytes_of(&data)) {
                    Ok(()) => ok(String::new()),
                    Err(e) => err(crate::qmp::cmd::ringbuf_error(&dev, e).to_string()),
                }
            }
            "ringbuf_read" => {
                let dev = args.string()?;
                let size = args.int()?;
                args.end()?;
                match crate::qmp::cmd::ringbuf_read_bytes(env.chardevs.as_ref(), &dev, size) {
                    Ok(data) => ok(ringbuf_text(&data)),
                    Err(e) => err(e.to_string()),
                }
            }
            "x-chardev-history" => {
                let dev = args.string()?;
                let size = args.int()?;
                args.end()?;
                match crate::qmp::cmd::history_read_bytes(env.chardevs.as_ref(), &dev, size) {
                    Ok(data) => ok(ringbuf_text(&data)),
                    Err(e) => err(e.to_string()),
                }
            }
            "object_add" | "object_del" => {
                let arg = if primary == "object_add" {
                    args.rest_of_line()?
                } else {
                    args.string()?
                };
                args.end()?;
                let store = match crate::qmp::cmd::objects_or_error(env.chardevs.objects()) {
                    Ok(s) => s,
                    Err(e) => return err(e.to_string()),
                };
                let r = if primary == "object_add" {
                    crate::qmp::cmd::object_add_from_str(&store, &arg)
                } else {
                    store.del(&arg).map_err(|e| e.to_string())
                };
                match r {
                    Ok(()) => ok(String::new()),
                    Err(e) => err(e),
                }
            }
            "stop" => {
                args.end()?;
                env.vm.stop();
                ok(String::new())
            }
            "cont" => {
                args.end()?;
                match env.vm.cont() {
                    Ok(()) => ok(String::new()),
                    Err(e) => err(e),
                }
            }
            _ => {
                args.end()?;
                env.vm.quit();
                Ok(Outcome {
                    text: String::new(),
                    quit: true,
                    later: None,
                })
            }
        }
    })();
    match r {
        Ok(o) => o,
        Err(e) => text(args.fail(e)),
    }
}

/// The line QEMU's pty backend prints where it is opened from (here, an
/// HMP command).
fn redirected(pty: &str, label: &str) -> String {
    format!("char device redirected to {pty} (label {label})\n")
}

/// HMP's reading of a chardev option string, as QEMU's `chardev-add` and
/// `chardev-change` do it: the option parser first (the id, keys and typed
/// values; its error is printed and followed by `Parsing chardev args
/// failed`), for a change an `id` is refused, then the chardev (or, for a
/// change, the backend alone) is built. Returns what to print so far and
/// what was built if all went well.
fn parse_opts(env: &QmpEnv, text: &str, change: bool) -> (String, Option<Built>) {
    use qchar_chardev::opts;
    use qchar_chardev::qemuopts::{self, QemuOptsError};
    let parse_failed = |mut out: String, e: Option<&QemuOptsError>| {
        // A help request prints the keys on QEMU's standard output, not
        // in the monitor: only the failure shows here.
        if let Some(e) = e.filter(|e| !matches!(e, QemuOptsError::Help(_))) {
            out.push_str(&format!("{e}\n"));
            if let Some(h) = e.hint() {
                out.push_str(&format!("{h}\n"));
            }
        }
        out.push_str("Error: Parsing chardev args failed\n");
        (out, None)
    };
    // The command line's `-chardev` options stay in QEMU's option list.
    let mut ids = env.chardevs.option_ids().into_iter().collect();
    let mut parse_warnings = Vec::new();
    let parsed = qemuopts::parse_unique(&opts::CHARDEV_OPTS, text, &mut ids, &mut parse_warnings);
    let warn = |w: &[String]| -> String { w.iter().map(|w| format!("warning: {w}\n")).collect() };
    let out = warn(&parse_warnings);
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => return parse_failed(out, Some(&e)),
    };
    if change && parsed.id().is_some() {
        return (out + "Error: Unexpected 'id' parameter\n", None);
    }
    let mut create_warnings = Vec::new();
    let built = if change {
        opts::backend_from_opts(&parsed, &mut create_warnings).map(Built::Backend)
    } else {
        opts::chardev_from_opts(&parsed, &mut create_warnings).map(Built::Options)
    };
    // Creation warnings come out once per process, when creation starts.
    let out = out
        + &create_warnings
            .iter()
            .filter(|w| opts::warn_once(w))
            .map(|w| format!("warning: {w}\n"))
            .collect::<String>();
    match built {
        // A help request is not a failure: QEMU prints the list in the
        // monitor and nothing else.
        Err(e @ opts::OptsError::BackendHelp) => (out + &format!("{e}\n"), None),
        Err(e) => (out + &format!("Error: {e}\n"), None),
        Ok(b) => (out, Some(b)),
    }
}

/// What [`parse_opts`] built: a chardev to add, or a backend to change to.
enum Built {
    Options(qchar_chardev::opts::ChardevOptions),
    Backend(qchar_chardev::spec::ChardevBackend),
}

/// `ringbuf_read`'s rendering: up to the first NUL, backslash doubled,
/// control characters (but newline and tab) and DEL as `\uXXXX`.
fn ringbuf_text(data: &[u8]) -> String {
    let mut out = Vec::new();
    for &b in data.iter().take_while(|&&b| b != 0) {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' | b'\t' => out.push(b),
            0..=0x1F | 0x7F => out.extend_from_slice(format!("\\u{b:04X}").as_bytes()),
            _ => out.push(b),
        }
    }
    let mut s = str_of(&out);
    s.push('\n');
    s
}

/// Runs one command line of the monitor whose descriptors are `fds` (its
/// names are what socket `fd` strings name meanwhile).
pub(crate) fn run_line(env: &QmpEnv, fds: &Arc<MonitorFds>, line: &str) -> Outcome {
    let names: Arc<dyn qchar_chardev::fdpass::NamedFds> = fds.clone();
    qchar_chardev::fdpass::with_monitor(names, || run(env, fds, line))
}

#[cfg(test)]
mod tests;
