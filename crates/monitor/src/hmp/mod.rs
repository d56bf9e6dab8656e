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

use crate::json::utf8;
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
        names: "cont|c",
        params: "",
        help: "resume emulation",
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
}

/// Runs one HMP command line; returns its output with `\r\n` line ends.
pub fn execute(env: &QmpEnv, line: &str) -> String {
    crlf(&run(env, line).text)
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
    /// Name used in `Try "help ..."`.
    help: String,
}

enum ArgError {
    /// `NAME: MESSAGE` then the help hint.
    Named(String),
    /// `MESSAGE` then the help hint.
    Plain(String),
}

impl<'a> Args<'a> {
    fn string(&mut self) -> Result<String, ArgError> {
        let s = self.rest.trim_start();
        if s.is_empty() {
            return Err(ArgError::Named("string expected".into()));
        }
        if let Some(body) = s.strip_prefix('"') {
            let mut out = String::new();
            let mut it = body.char_indices();
            while let Some((i, c)) = it.next() {
                match c {
                    '"' => {
                        self.rest = &body[i + 1..];
                        return Ok(out);
                    }
                    '\\' => match it.next() {
                        Some((_, 'n')) => out.push('\n'),
                        Some((_, 'r')) => out.push('\r'),
                        Some((_, c @ ('\\' | '\'' | '"'))) => out.push(c),
                        Some((_, c)) => {
                            return Err(ArgError::Plain(format!(
                                "unsupported escape code: '\\{c}'"
                            )))
                        }
                        None => break,
                    },
                    c => out.push(c),
                }
            }
            return Err(ArgError::Plain("unterminated string".into()));
        }
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        self.rest = &s[end..];
        Ok(s[..end].to_string())
    }

    fn int(&mut self) -> Result<i64, ArgError> {
        let s = self.rest.trim_start();
        if s.is_empty() {
            return Err(ArgError::Plain("unexpected end of expression".into()));
        }
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        let tok = &s[..end];
        self.rest = &s[end..];
        if let Some(c) = tok.chars().find(|c| !c.is_ascii_digit()) {
            return Err(ArgError::Plain(format!("invalid char '{c}' in expression")));
        }
        tok.parse::<i64>()
            .map_err(|_| ArgError::Plain("number too large".into()))
    }

    fn end(&self) -> Result<(), ArgError> {
        if self.rest.trim().is_empty() {
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

fn run(env: &QmpEnv, line: &str) -> Outcome {
    let text = |t: String| Outcome {
        text: t,
        quit: false,
    };
    let line = line.trim_start();
    if line.is_empty() {
        return text(String::new());
    }
    let end = line.find(char::is_whitespace).unwrap_or(line.len());
    let (name, rest) = (&line[..end], &line[end..]);
    let Some(cmd) = find(COMMANDS, name) else {
        return text(format!("unknown command: '{name}'\n"));
    };
    let primary = cmd.names.split('|').next().unwrap_or(name);
    let mut args = Args {
        rest,
        name: cmd.names,
        help: primary.to_string(),
    };
    let r: Result<Outcome, ArgError> = (|| {
        let ok = |t: String| {
            Ok(Outcome {
                text: t,
                quit: false,
            })
        };
        let err = |e: String| ok(format!("Error: {e}\n"));
        match primary {
            "help" => {
                let topic = args.rest.trim();
                if topic.is_empty() {
                    return ok(COMMANDS.iter().map(|c| help_line("", c)).collect());
                }
                let mut words = topic.split_whitespace();
                let first = words.next().unwrap_or("");
                if first == "info" {
                    return ok(match words.next() {
                        None => INFO.iter().map(|c| help_line("info ", c)).collect(),
                        Some(sub) => match find(INFO, sub) {
                            Some(c) => help_line("info ", c),
                            None => format!("unknown command: 'info {sub}'\n"),
                        },
                    });
                }
                ok(match find(COMMANDS, first) {
                    Some(c) => help_line("", c),
                    None => format!("unknown command: '{first}'\n"),
                })
            }
            "info" => {
                let sub_line = args.rest.trim_start();
                if sub_line.is_empty() {
                    return ok(INFO.iter().map(|c| help_line("info ", c)).collect());
                }
                let e = sub_line.find(char::is_whitespace).unwrap_or(sub_line.len());
                let sub = &sub_line[..e];
                let Some(c) = find(INFO, sub) else {
                    return ok(format!("unknown command: 'info {sub}'\n"));
                };
                let a = Args {
                    rest: &sub_line[e..],
                    name: c.names,
                    help: format!("info {}", c.names),
                };
                if let Err(e) = a.end() {
                    return ok(a.fail(e));
                }
                ok(match sub {
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
                match env.chardevs.add_opts(&opts) {
                    Ok(_) => ok(String::new()),
                    Err(e) => err(e),
                }
            }
            "chardev-change" => {
                let id = args.string()?;
                let opts = args.string()?;
                args.end()?;
                let backend = match env.chardevs.parse_backend(&id, &opts) {
                    Ok(b) => b,
                    Err(e) => return err(e),
                };
                match env.chardevs.change(&id, backend) {
                    Ok(_) => ok(String::new()),
                    Err(e) => err(e.to_string()),
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
                match env.chardevs.ringbuf_write(&dev, &utf8::from_str(&data)) {
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
                })
            }
        }
    })();
    match r {
        Ok(o) => o,
        Err(e) => text(args.fail(e)),
    }
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
    let mut s = utf8::to_string_lossy(&out);
    s.push('\n');
    s
}

/// `run` for the frontend.
pub(crate) fn run_line(env: &QmpEnv, line: &str) -> Outcome {
    run(env, line)
}

#[cfg(test)]
mod tests;
