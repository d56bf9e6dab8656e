//! The intended differences: places where qchar answers otherwise than
//! QEMU 7.2 on purpose. Each has an id, and docs/differences.md has one
//! row per id saying why (a test checks that the two lists agree). A rule
//! looks at the first step where the sides differ and says whether that
//! difference is its own; the rest of such an input is not compared (the
//! states may have parted).

use crate::gen::Class;
use crate::norm::contains;

/// The first differing step of an input.
pub struct Diff<'a> {
    /// The input's class.
    pub class: Class,
    /// The step's input bytes (for a command line: every option).
    pub step: &'a [u8],
    /// All the input's steps.
    pub steps: &'a [Vec<u8>],
    /// What QEMU sent back for the step (normalised).
    pub qemu: &'a [u8],
    /// What qchar sent back.
    pub qchar: &'a [u8],
}

/// Why a difference is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// qchar differs on purpose.
    Intended,
    /// A known difference not fixed yet (docs/differences.md says why);
    /// counted apart in the report.
    Open,
}

/// An intended (or known open) difference.
pub struct Rule {
    /// Stable id, the key of its row in docs/differences.md.
    pub id: &'static str,
    /// Intended or open.
    pub status: Status,
    /// One line: what differs.
    pub what: &'static str,
    /// Whether `d` is this difference.
    pub matches: fn(&Diff<'_>) -> bool,
}

fn has(b: &[u8], s: &str) -> bool {
    contains(b, s.as_bytes())
}

/// Splits a transcript into pieces: lines (sent, or `\r\n` inside a JSON
/// string) and the entries of a JSON list of objects.
fn pieces(t: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![t.to_vec()];
    for sep in [
        &b"\r\n"[..],
        b"\\r\\n",
        b"}, {",
        b"\n",
        b"{\"return\": \"",
        b"[{",
        b"}]",
    ] {
        out = out
            .into_iter()
            .flat_map(|p| {
                let mut v = Vec::new();
                let mut rest = &p[..];
                while let Some(i) = rest.windows(sep.len()).position(|w| w == sep) {
                    v.push(rest[..i].to_vec());
                    rest = &rest[i + sep.len()..];
                }
                v.push(rest.to_vec());
                v
            })
            .collect();
    }
    out
}

/// qchar's own commands, which QEMU 7.2 lacks (row `qchar-commands`):
/// QMP's and HMP's (`info`) names.
const QCHAR_COMMANDS: &[&str] = &[
    "x-query-chardev-stats",
    "x-chardev-stats",
    "x-query-chardev-clients",
    "x-chardev-clients",
    "x-chardev-history",
    "x-web-start",
    "x-web-stop",
    "x-query-web",
];

/// qchar's own backends, which QEMU 7.2 lacks (row
/// `query-chardev-backends-lists-qchar-backends`).
const QCHAR_BACKENDS: &[&str] = &["hub"];

/// Whether a piece of a list names one of qchar's own commands or
/// backends.
fn qchar_own(p: &[u8]) -> bool {
    QCHAR_COMMANDS.iter().chain(QCHAR_BACKENDS).any(|c| {
        has(p, &format!("\"name\": \"{c}\""))
            || has(p, &format!("info {c} "))
            || p.starts_with(format!("{c} ").as_bytes())
    }) || QCHAR_BACKENDS
        .iter()
        .any(|b| p == format!("\"name\": \"{b}\"").as_bytes() || p == format!("  {b}").as_bytes())
}

/// Whether a piece is a backend QEMU lists: an entry of
/// `query-chardev-backends` or a line of the backend help.
fn backend_entry(p: &[u8]) -> bool {
    contains(p, b"\"name\": \"")
        || p.strip_prefix(b"  ").is_some_and(|n| {
            !n.is_empty() && n.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// Whether the sides are equal once QEMU's pieces that `extra` accepts
/// and qchar does not have, and qchar's own commands, are left out: qchar
/// lists a subset of what QEMU lists, in QEMU's order.
fn subset_of_qemu(d: &Diff<'_>, extra: fn(&[u8]) -> bool) -> bool {
    let q = pieces(d.qemu);
    let c: Vec<Vec<u8>> = pieces(d.qchar)
        .into_iter()
        .filter(|p| !qchar_own(p))
        .collect();
    let kept: Vec<&Vec<u8>> = q.iter().filter(|p| !extra(p) || c.contains(p)).collect();
    kept.len() == c.len() && kept.iter().zip(c.iter()).all(|(a, b)| *a == b)
}

/// Backends QEMU 7.2 has and qchar does not.
const LACKING: &[&str] = &[
    "vc",
    "msmouse",
    "wctablet",
    "testdev",
    "parallel",
    "parport",
    "qemu-vdagent",
    "braille",
    "spicevmc",
    "spiceport",
    "dbus",
    "console",
];

/// Whether the step names backend `name` as a word of its own (JSON
/// escapes of blanks read as blanks).
fn asks_for_backend(step: &[u8], name: &str) -> bool {
    let step = crate::norm::replace(&crate::norm::replace(step, b"\\t", b" "), b"\\n", b" ");
    step.split(|c| !(c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_'))
        .any(|w| w == name.as_bytes())
}

/// The object types qchar can create (row `object-types-qchar-lacks`).
const QCHAR_OBJECT_TYPES: &[&str] = &[
    "authz-list",
    "authz-simple",
    "tls-creds-psk",
    "tls-creds-x509",
    "x-bridge",
];

/// The text after `key` up to the next quote, comma or blank, if any.
fn word_after(t: &[u8], key: &str) -> Option<String> {
    let i = if key.is_empty() {
        0
    } else {
        t.windows(key.len()).position(|w| w == key.as_bytes())?
    };
    let rest = &t[i + key.len()..];
    let end = rest
        .iter()
        .position(|c| matches!(c, b'"' | b'\\' | b',' | b' ' | b'\r' | b'\n'))
        .unwrap_or(rest.len());
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// The object type an `object-add` (QMP) or `object_add` (HMP) step
/// asks for.
fn object_type_asked(step: &[u8]) -> Option<String> {
    if has(step, "\"object-add\"") {
        return word_after(step, "\"qom-type\": \"");
    }
    let i = step.windows(11).position(|w| w == b"object_add ")?;
    let arg = &step[i + 11..];
    let arg = arg.strip_prefix(b"qom-type=").unwrap_or(arg);
    word_after(arg, "")
}

/// The path of a `qom-list`/`qom-get` step that qchar said it did not
/// find and QEMU did not: one outside `/objects`.
fn qom_path_outside_objects(d: &Diff<'_>) -> bool {
    if !(has(d.step, "qom-list") || has(d.step, "qom-get")) {
        return false;
    }
    let s = String::from_utf8_lossy(d.qchar);
    let Some(p) = s
        .split_once("Device '")
        .and_then(|(_, r)| r.rsplit_once("' not found"))
        .map(|(p, _)| p)
    else {
        return false;
    };
    let msg = format!("Device '{p}' not found");
    has(d.qchar, &msg)
        && !has(d.qemu, &msg)
        && p != "objects"
        && p != "/objects"
        && !p.starts_with("/objects/")
}

/// `t` with the text QEMU appends to `Failed to create a socket` (`: `
/// and an error text, up to the end of the message) left out. Public for
/// the reproducer tests: the errno QEMU appends differs between machines.
pub fn without_stale_errno(t: &[u8]) -> Vec<u8> {
    let key = b"Failed to create a socket: ";
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(i) = rest.windows(key.len()).position(|w| w == key) {
        out.extend_from_slice(&rest[..i + key.len() - 2]);
        let tail = &rest[i + key.len()..];
        let end = tail
            .iter()
            .position(|&c| matches!(c, b'"' | b'\\' | b'\r' | b'\n'))
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.extend_from_slice(rest);
    out
}

/// The names in `'NAME' is not a valid char driver` texts.
fn refused_drivers(t: &[u8]) -> Vec<String> {
    let s = String::from_utf8_lossy(t);
    s.match_indices("' is not a valid char driver")
        .filter_map(|(i, _)| s[..i].rfind('\'').map(|j| s[j + 1..i].to_string()))
        .collect()
}

/// The `unknown command: '...'` texts of a transcript.
fn unknown_commands(t: &[u8]) -> Vec<Vec<u8>> {
    let key = b"unknown command: '";
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(i) = rest.windows(key.len()).position(|w| w == key) {
        rest = &rest[i + key.len()..];
        let end = rest.iter().position(|&c| c == b'\'').unwrap_or(rest.len());
        out.push(rest[..end].to_vec());
        rest = &rest[end..];
    }
    out
}

/// QEMU's `Failed to add chardev 'ID': REASON` as the reason alone.
fn failed_add_reason(qemu: &[u8]) -> Option<Vec<u8>> {
    let key = b"Failed to add chardev '";
    let i = qemu.windows(key.len()).position(|w| w == key)?;
    let rest = &qemu[i + key.len()..];
    let j = rest.windows(3).position(|w| w == b"': ")?;
    let reason = &rest[j + 3..];
    let end = reason
        .iter()
        .position(|&c| matches!(c, b'"' | b'\\' | b'\r' | b'\n'))
        .unwrap_or(reason.len());
    Some(reason[..end].to_vec()).filter(|r| !r.is_empty())
}

/// Differences masked before the comparison (crates/difffuzz/src/norm.rs),
/// each a row of docs/differences.md: `(id, what)`.
pub const MASKS: &[(&str, &str)] = &[
    ("version", "query-version, the greeting, info version and the HMP banner: qchar says 7.2.0 and its own package string"),
    ("qchar-events", "qchar's own X_QCHAR_* events"),
    ("list-order", "query-chardev, info chardev, query-chardev-backends: QEMU lists in its hash tables' order"),
];

/// Intended differences the harness does not look at (not on the wire it
/// compares, or not in its inputs), each a row of docs/differences.md.
pub const UNSEEN: &[(&str, &str)] = &[
    ("write-chunks", "queued output leaves in chunks of up to 64 KiB instead of one write per guest byte"),
    ("stdio-return", "a console can go back to stdio after leaving it"),
    ("drain-on-leave", "a pty or socket left by a change or remove stays open (at most 5 s) until its peer has what it was sent"),
    ("monitor-socket-mode", "a monitor's unix socket file is owner-only (0600)"),
    ("slow-open", "an open that waits for a peer (a connect, wait=on, a FIFO, a name lookup) runs off the I/O thread: only the asking monitor waits"),
    ("swap-keeps-output", "a change keeps the old ring's unread output and what is written before the new backend's first peer"),
    ("fdset-logfile-counted", "a log file on /dev/fdset/N counts as a user of its set until it closes"),
    ("scm-extra-fds-closed", "of several descriptors sent in one message, the unused ones are closed on arrival"),
    ("tls-behaviour", "TLS chardevs: unix sockets too, a handshake deadline, telnet inside TLS, refusals logged, replaced credentials used by new connections, tls-creds-psk refused on a chardev"),
];

/// The rules, checked in order.
pub const RULES: &[Rule] = &[
    Rule {
        status: Status::Intended,
        id: "help-lists-qchar-commands",
        what: "HMP help, and info without a subcommand, list the commands qchar has (a subset of QEMU's, same lines, same order)",
        // qchar's lines are QEMU's, in order, less the entries (and their
        // continuation lines) of commands qchar lacks.
        matches: |d| has(d.qchar, " -- ") && subset_of_qemu(d, |_| true),
    },
    Rule {
        status: Status::Intended,
        id: "query-commands-lists-qchar-commands",
        what: "query-commands lists the commands qchar has (a subset of QEMU's, same order)",
        matches: |d| has(d.step, "query-commands") && subset_of_qemu(d, |p| contains(p, b"\"name\": \"")),
    },
    Rule {
        status: Status::Intended,
        id: "qchar-commands",
        what: "qchar's own commands (x-query-chardev-stats, info x-chardev-stats): QEMU 7.2 does not know them",
        matches: |d| QCHAR_COMMANDS.iter().any(|c| has(d.step, c)),
    },
    Rule {
        status: Status::Intended,
        id: "backends-qchar-lacks",
        what: "backends QEMU has and qchar refuses as unknown (vc, msmouse, wctablet, testdev, parallel, qemu-vdagent, braille, spice, dbus)",
        matches: |d| {
            // The name qchar refuses is one of QEMU's (a shorthand may
            // carry more, `vc:80Cx24C`, `vci`).
            refused_drivers(d.qchar).iter().any(|n| LACKING.contains(&n.as_str()))
                || (has(d.qchar, "does not accept value") && LACKING.iter().any(|b| asks_for_backend(d.step, b)))
        },
    },
    Rule {
        status: Status::Intended,
        id: "query-chardev-backends-lists-qchar-backends",
        what: "query-chardev-backends and the backend help (chardev-add help) list the backends qchar has",
        matches: |d| {
            (has(d.step, "query-chardev-backends")
                || (has(d.qemu, "Available chardev backend types: ")
                    && has(d.qchar, "Available chardev backend types: ")))
                && subset_of_qemu(d, backend_entry)
        },
    },
    Rule {
        status: Status::Intended,
        id: "change-to-mux-in-use",
        what: "chardev-change of a chardev in use to a mux is refused (Mux device hotswap not supported yet); QEMU turns it into a mux under a frontend that follows changes (a monitor's: Chardev user does not support chardev hotswap)",
        matches: |d| {
            has(d.step, "chardev-change")
                && has(d.step, "mux")
                && has(d.qchar, "Mux device hotswap not supported yet")
                && !has(d.qemu, "Mux device hotswap not supported yet")
        },
    },
    Rule {
        status: Status::Intended,
        id: "monitor-follows-change",
        what: "a monitor's chardev can be changed (QEMU: Chardev user does not support chardev hotswap)",
        matches: |d| {
            has(d.qemu, "Chardev user does not support chardev hotswap")
                && !has(d.qchar, "Chardev user does not support chardev hotswap")
                && ["qin", "qobs", "hmp"].iter().any(|m| has(d.step, m))
        },
    },
    Rule {
        status: Status::Intended,
        id: "hmp-change-to-pty",
        what: "HMP chardev-change ID pty: QEMU 7.2 prints nothing and keeps the old backend; qchar changes it",
        matches: |d| {
            has(d.step, "chardev-change")
                && (has(d.step, " pty") || has(d.step, "backend=pty") || has(d.step, " \\\"pty"))
                && has(d.qchar, "pty:/dev/pts/N")
                && !has(d.qemu, "Error:")
        },
    },
    Rule {
        status: Status::Intended,
        id: "mux-hotswap",
        what: "a mux chardev can be changed (QEMU: Mux device hotswap not supported yet)",
        matches: |d| {
            has(d.qemu, "Mux device hotswap not supported yet")
                && !has(d.qchar, "Mux device hotswap not supported yet")
        },
    },
    Rule {
        status: Status::Intended,
        id: "failed-change-keeps-chardev",
        what: "a failed chardev-change of a chardev without frontend keeps it; QEMU has deleted it and says Failed to add chardev 'ID': REASON",
        matches: |d| {
            has(d.step, "chardev-change")
                && failed_add_reason(d.qemu).is_some_and(|r| contains(d.qchar, &r))
        },
    },
    Rule {
        status: Status::Intended,
        id: "hmp-commands-qchar-lacks",
        what: "HMP commands QEMU has and qchar does not (x, change, device_add...): qchar says unknown command",
        matches: |d| {
            let q = unknown_commands(d.qemu);
            matches!(d.class, Class::Hmp | Class::Readline | Class::Qmp | Class::QmpBytes)
                && unknown_commands(d.qchar).iter().any(|c| !q.contains(c))
        },
    },
    Rule {
        status: Status::Intended,
        id: "completion-lists-qchar-commands",
        what: "Tab completes and lists qchar's commands; QEMU lists its own (column width from its longest name) and completes arguments too",
        matches: |d| d.class == Class::Readline && d.step.contains(&b'\t'),
    },
    Rule {
        status: Status::Intended,
        id: "option-extensions",
        what: "-chardev keys qchar adds (input-path, reconnect-ms, numeric, keep-alive): QEMU 7.2 says Invalid parameter",
        matches: |d| {
            // Read from QEMU's answer: a readline step may spell the key
            // with editing keys in between.
            ["input-path", "reconnect-ms", "numeric", "keep-alive"].iter().any(|k| {
                let m = format!("Invalid parameter '{k}'");
                has(d.qemu, &m) && !has(d.qchar, &m)
            })
        },
    },
    Rule {
        status: Status::Intended,
        id: "monitor-tcp-loopback",
        what: "a monitor's TCP server given no host listens on loopback only; QEMU listens on every address",
        matches: |d| {
            (has(d.step, "-qmp") || has(d.step, "-monitor") || has(d.step, "mon:"))
                && (has(d.qemu, "0.0.0.0") || has(d.qemu, "tcp::"))
                && has(d.qchar, "127.0.0.1")
        },
    },
    Rule {
        status: Status::Intended,
        id: "no-mptcp-tn3270",
        what: "socket chardevs with MPTCP or tn3270: qchar has neither and refuses them",
        matches: |d| {
            has(d.qchar, "MPTCP is not supported by qchar")
                || has(d.qchar, "tn3270 is not supported by qchar")
        },
    },
    Rule {
        status: Status::Intended,
        id: "no-vsock-sockets",
        what: "socket chardevs on a vsock address: qchar has none and refuses them",
        matches: |d| has(d.qchar, "vsock sockets are not supported by qchar"),
    },
    Rule {
        status: Status::Intended,
        id: "fd-numbers-inherited-only",
        what: "socket fd=N on the command line takes only a descriptor the parent passed; QEMU takes any number, its own descriptors included",
        matches: |d| {
            has(d.step, "fd=") && has(d.qchar, "is not a socket") && !has(d.qemu, "is not a socket")
        },
    },
    Rule {
        status: Status::Intended,
        id: "numbers-not-truncated",
        what: "a number too wide for its field (a ringbuf size of 2^63) is refused; QEMU truncates it silently",
        matches: |d| has(d.qchar, "is out of range for parameter") && !has(d.qemu, "is out of range for parameter"),
    },
    Rule {
        status: Status::Intended,
        id: "ringbuf-size-cap",
        what: "ringbufs above 1 GiB are refused (with QEMU's power-of-two text); QEMU allocates them",
        matches: |d| {
            let m = "size of ringbuf chardev must be power of two";
            has(d.qchar, m) && !has(d.qemu, m)
        },
    },
    Rule {
        status: Status::Intended,
        id: "udp-local-not-inet",
        what: "a udp chardev whose local address is not inet is refused; QEMU reads it as an inet address (the path, or a vsock cid, as host)",
        matches: |d| {
            has(d.qchar, "socket type unsupported for datagram")
                && (has(d.qemu, "address resolution failed for")
                    || has(d.qemu, "Failed to bind socket"))
        },
    },
    Rule {
        status: Status::Intended,
        id: "qemu-crashes",
        what: "inputs that make QEMU 7.2 end (a udp chardev with a unix local address with tight or abstract set crashes it; -qmp mon:null fails an assertion); qchar answers",
        matches: |d| {
            let live = has(d.qemu, "state: <process ended>")
                && !has(d.qchar, "state: <process ended>")
                && !d.steps.iter().any(|s| has(s, "quit"));
            // On the command line: killed by a signal (an assertion).
            let cli = d.class == Class::Cli && has(d.qemu, "exit None") && !has(d.qchar, "exit None");
            live || cli
        },
    },
    Rule {
        status: Status::Intended,
        id: "qemu-waits-for-nothing",
        what: "a socket server with no address (a descriptor with an empty name) and wait on: QEMU 7.2 waits for a client on no socket and answers nothing again; qchar answers (its server listens on nothing)",
        matches: |d| {
            has(d.qemu, "<no reply>")
                && !has(d.qchar, "<no reply>")
                && has(d.qchar, "disconnected:fd:,server=on")
        },
    },
    Rule {
        status: Status::Intended,
        id: "open-waits-alone",
        what: "chardev-add/chardev-change whose open waits for a peer (a wait=on server, a connect): QEMU 7.2's whole main loop waits, its other monitors too; in qchar only the asking monitor waits for its answer",
        matches: |d| {
            (has(d.step, "chardev-add") || has(d.step, "chardev-change"))
                && has(d.qemu, "<no reply>")
                && has(d.qemu, "state: <observer lost>")
                && has(d.qchar, "<no reply>")
                && !has(d.qchar, "<observer lost>")
        },
    },
    Rule {
        status: Status::Intended,
        id: "nul-in-paths",
        what: "a path with a NUL (\\u0000) is refused; QEMU opens the name with the NUL as C0 80",
        matches: |d| {
            (has(d.step, "\\u0000") || d.step.contains(&0))
                && (has(d.qchar, "file name contained an unexpected NUL byte")
                    || has(d.qchar, "contains a NUL byte"))
                && !has(d.qemu, "NUL byte")
        },
    },
    Rule {
        status: Status::Intended,
        id: "object-types-qchar-lacks",
        what: "object types QEMU has and qchar does not (iothread, memory backends, secrets, filters...): qchar says invalid object type, or refuses the object with another error than QEMU's (it does not read their members)",
        matches: |d| {
            let Some(t) = object_type_asked(d.step) else {
                return false;
            };
            let invalid = format!("invalid object type: {t}");
            !QCHAR_OBJECT_TYPES.contains(&t.as_str())
                && !has(d.qemu, &invalid)
                && !has(d.qemu, "Parameter 'qom-type' does not accept value")
                && (has(d.qchar, &invalid) || (has(d.qchar, "rror") && has(d.qemu, "rror")))
        },
    },
    Rule {
        status: Status::Intended,
        id: "qom-tree-objects-only",
        what: "qom-list and qom-get reach /objects only; QEMU's other paths (the machine, /chardevs, partial paths) are Device 'PATH' not found",
        matches: qom_path_outside_objects,
    },
    Rule {
        status: Status::Intended,
        id: "stale-errno",
        what: "Failed to create a socket (a listening port range with to below port): QEMU appends whatever errno its thread had last; qchar appends nothing",
        matches: |d| {
            has(d.qchar, "Failed to create a socket")
                && !has(d.qchar, "Failed to create a socket: ")
                && without_stale_errno(d.qemu) == d.qchar
        },
    },
    Rule {
        status: Status::Intended,
        id: "checks-before-log",
        what: "a chardev whose options fail qchar's checks (a socket's tls-creds, its address kind) is refused before its log file is opened; QEMU creates the log first and reports its failure (Could not create) instead",
        matches: |d| {
            let failed = |t: &[u8]| has(t, "rror") || has(t, "Failed to add chardev") || has(t, "exit Some(1)");
            has(d.step, "logfile")
                && has(d.qemu, "Could not create '")
                && !has(d.qchar, "Could not create '")
                && failed(d.qemu)
                && failed(d.qchar)
        },
    },
    Rule {
        status: Status::Intended,
        id: "backlog",
        what: "backlog=SIZE (x-backlog in QMP) keeps output for the next peer; QEMU does not know the key",
        matches: |d| {
            let q = has(d.qemu, "Invalid parameter 'backlog'") || has(d.qemu, "x-backlog' is unexpected");
            let c = has(d.qchar, "Invalid parameter 'backlog'") || has(d.qchar, "x-backlog' is unexpected");
            q && !c
        },
    },
];

/// The rule `d` falls under, if any.
pub fn explain(d: &Diff<'_>) -> Option<&'static Rule> {
    RULES.iter().find(|r| (r.matches)(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(class: Class, step: &[u8], qemu: &[u8], qchar: &[u8]) -> Option<&'static str> {
        explain(&Diff {
            class,
            step,
            steps: &[step.to_vec()],
            qemu,
            qchar,
        })
        .map(|r| r.id)
    }

    #[test]
    fn help_must_be_a_subset_in_order() {
        let step = b"help";
        let qemu = b"{\"return\": \"a x -- one\\r\\nb  -- two\\r\\n\\t\\tmore of b\\r\\nc  -- three\\r\\n\"}\r\n";
        let qchar = b"{\"return\": \"a x -- one\\r\\nc  -- three\\r\\n\"}\r\n";
        assert_eq!(
            verdict(Class::Hmp, step, qemu, qchar),
            Some("help-lists-qchar-commands")
        );
        // A line QEMU does not have, or another order, is not explained.
        let extra = b"{\"return\": \"a x -- one\\r\\nz  -- mine\\r\\n\"}\r\n";
        assert_eq!(verdict(Class::Hmp, step, qemu, extra), None);
        let swapped = b"{\"return\": \"c  -- three\\r\\na x -- one\\r\\n\"}\r\n";
        assert_eq!(verdict(Class::Hmp, step, qemu, swapped), None);
    }

    #[test]
    fn qchar_commands_are_left_out_of_the_lists() {
        let step = b"{\"execute\": \"query-commands\"}";
        let qemu = b"{\"return\": [{\"name\": \"a\"}, {\"name\": \"b\"}, {\"name\": \"c\"}]}\r\n";
        let qchar = b"{\"return\": [{\"name\": \"a\"}, {\"name\": \"c\"}, {\"name\": \"x-query-chardev-stats\"}]}\r\n";
        assert_eq!(
            verdict(Class::Qmp, step, qemu, qchar),
            Some("query-commands-lists-qchar-commands")
        );
        // Any other name QEMU lacks is not explained.
        let other = b"{\"return\": [{\"name\": \"a\"}, {\"name\": \"x-mine\"}]}\r\n";
        assert_eq!(verdict(Class::Qmp, step, qemu, other), None);
        let step = b"info";
        let qemu = b"{\"return\": \"info chardev  -- one\\r\\ninfo status  -- two\\r\\n\"}\r\n";
        let qchar =
            b"{\"return\": \"info chardev  -- one\\r\\ninfo x-chardev-stats  -- mine\\r\\n\"}\r\n";
        assert_eq!(
            verdict(Class::Hmp, step, qemu, qchar),
            Some("help-lists-qchar-commands")
        );
        assert_eq!(
            verdict(
                Class::Qmp,
                b"{\"execute\": \"x-query-chardev-stats\"}",
                b"",
                b"x"
            ),
            Some("qchar-commands")
        );
    }

    #[test]
    fn qchar_backends_are_left_out_of_the_backend_list() {
        let step = b"{\"execute\": \"query-chardev-backends\"}";
        let qemu = b"{\"return\": [{\"name\": \"file\"}, {\"name\": \"msmouse\"}, {\"name\": \"null\"}]}\r\n";
        let qchar =
            b"{\"return\": [{\"name\": \"file\"}, {\"name\": \"hub\"}, {\"name\": \"null\"}]}\r\n";
        assert_eq!(
            verdict(Class::Qmp, step, qemu, qchar),
            Some("query-chardev-backends-lists-qchar-backends")
        );
        // Another name QEMU lacks, or one QEMU lists missing from the
        // middle of a name, is not explained.
        let other =
            b"{\"return\": [{\"name\": \"file\"}, {\"name\": \"hubx\"}, {\"name\": \"null\"}]}\r\n";
        assert_eq!(verdict(Class::Qmp, step, qemu, other), None);
        let mine = b"{\"return\": [{\"name\": \"file\"}, {\"name\": \"mine\"}]}\r\n";
        assert_eq!(verdict(Class::Qmp, step, qemu, mine), None);
        // The help's lines: QEMU's order, hub added; not as an error.
        let step = b"chardev-add help";
        let qemu = b"{\"return\": \"Available chardev backend types: \\r\\n  stdio\\r\\n  vc\\r\\n  null\\r\\n\"}\r\n";
        let qchar = b"{\"return\": \"Available chardev backend types: \\r\\n  stdio\\r\\n  null\\r\\n  hub\\r\\n\"}\r\n";
        assert_eq!(
            verdict(Class::Hmp, step, qemu, qchar),
            Some("query-chardev-backends-lists-qchar-backends")
        );
        let error = b"{\"return\": \"Error: Available chardev backend types: \\r\\n  stdio\\r\\n  null\\r\\n\"}\r\n";
        assert_eq!(verdict(Class::Hmp, step, qemu, error), None);
        let swapped = b"{\"return\": \"Available chardev backend types: \\r\\n  null\\r\\n  stdio\\r\\n\"}\r\n";
        assert_eq!(verdict(Class::Hmp, step, qemu, swapped), None);
    }

    #[test]
    fn objects_and_paths_qchar_lacks() {
        let step = b"{\"execute\": \"object-add\", \"arguments\": {\"qom-type\": \"iothread\", \"id\": \"x\"}}";
        let invalid = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"invalid object type: iothread\"}}\r\n";
        assert_eq!(
            verdict(Class::Qmp, step, b"{\"return\": {}}\r\n", invalid),
            Some("object-types-qchar-lacks")
        );
        // Both refuse, each for its reason.
        let bad_id = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'id' expects an identifier\"}}\r\n";
        let member = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'poll-max-ns' expects uint\"}}\r\n";
        assert_eq!(
            verdict(Class::Qmp, step, member, bad_id),
            Some("object-types-qchar-lacks")
        );
        // Not for a type qchar has, nor when qchar accepts what QEMU
        // refuses, nor for a type QEMU does not know either.
        let x509 = b"{\"execute\": \"object-add\", \"arguments\": {\"qom-type\": \"tls-creds-x509\", \"id\": \"x\"}}";
        assert_eq!(verdict(Class::Qmp, x509, member, bad_id), None);
        assert_eq!(
            verdict(Class::Qmp, step, member, b"{\"return\": {}}\r\n"),
            None
        );
        let enum_err = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'qom-type' does not accept value 'iothread'\"}}\r\n";
        assert_eq!(verdict(Class::Qmp, step, enum_err, invalid), None);
        // HMP's object_add.
        let hmp = b"{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\": \"object_add iothread,id=x\"}}";
        assert_eq!(
            verdict(
                Class::Hmp,
                hmp,
                b"{\"return\": \"\"}\r\n",
                b"{\"return\": \"Error: invalid object type: iothread\\r\\n\"}\r\n"
            ),
            Some("object-types-qchar-lacks")
        );

        let step = b"{\"execute\": \"qom-list\", \"arguments\": {\"path\": \"/machine\"}}";
        let nf = b"{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device '/machine' not found\"}}\r\n";
        assert_eq!(
            verdict(Class::Qmp, step, b"{\"return\": []}\r\n", nf),
            Some("qom-tree-objects-only")
        );
        // /objects itself must answer as QEMU does.
        let step = b"{\"execute\": \"qom-list\", \"arguments\": {\"path\": \"/objects\"}}";
        let nf = b"{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device '/objects' not found\"}}\r\n";
        assert_eq!(verdict(Class::Qmp, step, b"{\"return\": []}\r\n", nf), None);
    }

    #[test]
    fn only_the_stale_errno_may_differ() {
        let step = b"-chardev socket,id=s,host=127.0.0.1,port=5000,to=38,server=on,wait=off";
        let qemu = b"exit Some(1)\nstderr:\nqemu-system-x86_64: -chardev socket,id=s: Failed to create a socket: No such file or directory\n";
        let qchar = b"exit Some(1)\nstderr:\nqemu-system-x86_64: -chardev socket,id=s: Failed to create a socket\n";
        assert_eq!(verdict(Class::Cli, step, qemu, qchar), Some("stale-errno"));
        let qmp = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Failed to add chardev 's': Failed to create a socket: Argument list too long\"}}\r\n";
        let mine = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Failed to add chardev 's': Failed to create a socket\"}}\r\n";
        assert_eq!(verdict(Class::Qmp, step, qmp, mine), Some("stale-errno"));
        // Anything else differing is not this.
        let other = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Failed to add chardev 't': Failed to create a socket\"}}\r\n";
        assert_eq!(verdict(Class::Qmp, step, qmp, other), None);
    }

    #[test]
    fn checks_come_before_the_log() {
        let step = b"{\"execute\": \"chardev-add\", \"arguments\": {\"id\": \"c\", \"backend\": {\"type\": \"socket\", \"data\": {\"logfile\": \"$D\", \"tls-creds\": \"t\"}}}}";
        let qemu = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Failed to add chardev 'c': Could not create '$D': Is a directory\"}}\r\n";
        let qchar = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Failed to add chardev 'c': No TLS credentials with id 't'\"}}\r\n";
        assert_eq!(
            verdict(Class::Qmp, step, qemu, qchar),
            Some("checks-before-log")
        );
        // qchar must refuse the chardev too.
        assert_eq!(
            verdict(Class::Qmp, step, qemu, b"{\"return\": {}}\r\n"),
            None
        );
    }

    #[test]
    fn change_to_a_mux_in_use_and_nul_in_paths() {
        let step = b"{\"execute\": \"chardev-change\", \"arguments\": {\"id\": \"hmp\", \"backend\": {\"type\": \"mux\"}}}";
        let refused = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Mux device hotswap not supported yet\"}}\r\n";
        let monitor = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Chardev user does not support chardev hotswap\"}}\r\n";
        assert_eq!(
            verdict(Class::Qmp, step, monitor, refused),
            Some("change-to-mux-in-use")
        );
        // Not for a change to another backend.
        let to_null = b"{\"execute\": \"chardev-change\", \"arguments\": {\"id\": \"r0\", \"backend\": {\"type\": \"null\"}}}";
        assert_eq!(verdict(Class::Qmp, to_null, b"{}", refused), None);
        let step = b"{\"execute\": \"chardev-add\", \"arguments\": {\"id\": \"f\", \"backend\": {\"type\": \"file\", \"data\": {\"out\": \"a\\u0000b\"}}}}";
        let nul = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Could not open 'a\\u0000b': file name contained an unexpected NUL byte\"}}\r\n";
        assert_eq!(verdict(Class::Qmp, step, b"{}", nul), Some("nul-in-paths"));
        // A step without a NUL is not this difference.
        assert_eq!(verdict(Class::Qmp, to_null, b"{}", nul), None);
    }

    #[test]
    fn failed_change_must_keep_the_reason() {
        let step = b"{\"execute\": \"chardev-change\"}";
        let qemu = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Failed to add chardev 'n0': Could not open 'x': No such file or directory\"}}\r\n";
        let same = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Could not open 'x': No such file or directory\"}}\r\n";
        let other = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Could not open 'y': No such file or directory\"}}\r\n";
        assert_eq!(
            verdict(Class::Qmp, step, qemu, same),
            Some("failed-change-keeps-chardev")
        );
        assert_eq!(verdict(Class::Qmp, step, qemu, other), None);
    }

    #[test]
    fn an_unknown_command_must_be_one_qemu_knows() {
        let step = b"x 1";
        assert_eq!(
            verdict(
                Class::Readline,
                step,
                b"Try \"help x\"",
                b"unknown command: 'x'"
            ),
            Some("hmp-commands-qchar-lacks")
        );
        assert_eq!(
            verdict(
                Class::Readline,
                step,
                b"unknown command: 'x'",
                b"unknown command: 'y'"
            ),
            Some("hmp-commands-qchar-lacks")
        );
        assert_eq!(
            verdict(
                Class::Readline,
                step,
                b"unknown command: 'x' a",
                b"unknown command: 'x' b"
            ),
            None
        );
    }
}
