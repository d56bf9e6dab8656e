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

/// An intended difference.
pub struct Rule {
    /// Stable id, the key of its row in docs/differences.md.
    pub id: &'static str,
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

/// Whether the sides are equal once QEMU's pieces that `extra` accepts
/// and qchar does not have are left out: qchar lists a subset of what
/// QEMU lists, in QEMU's order.
fn subset_of_qemu(d: &Diff<'_>, extra: fn(&[u8]) -> bool) -> bool {
    let q = pieces(d.qemu);
    let c = pieces(d.qchar);
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

/// Whether the step asks for backend `name`.
fn asks_for_backend(step: &[u8], name: &str) -> bool {
    [
        format!("\"type\": \"{name}\""),
        format!("\0{name}"),
        format!("add {name}"),
        format!(" {name},"),
        format!("backend={name}"),
    ]
    .iter()
    .any(|p| has(step, p))
}

/// The rules, checked in order.
pub const RULES: &[Rule] = &[
    Rule {
        id: "help-lists-qchar-commands",
        what: "HMP help, and info without a subcommand, list the commands qchar has (a subset of QEMU's, same lines, same order)",
        matches: |d| subset_of_qemu(d, |p| contains(p, b" -- ")),
    },
    Rule {
        id: "query-commands-lists-qchar-commands",
        what: "query-commands lists the commands qchar has (a subset of QEMU's, same order)",
        matches: |d| has(d.step, "query-commands") && subset_of_qemu(d, |p| contains(p, b"\"name\": \"")),
    },
    Rule {
        id: "backends-qchar-lacks",
        what: "backends QEMU has and qchar refuses as unknown (vc, msmouse, wctablet, testdev, parallel, qemu-vdagent, braille, spice, dbus)",
        matches: |d| {
            (has(d.qchar, "is not a valid char driver") || has(d.qchar, "does not accept value"))
                && LACKING.iter().any(|b| asks_for_backend(d.step, b))
        },
    },
    Rule {
        id: "query-chardev-backends-lists-qchar-backends",
        what: "query-chardev-backends lists the backends qchar has",
        matches: |d| has(d.step, "query-chardev-backends") && subset_of_qemu(d, |p| contains(p, b"\"name\": \"")),
    },
    Rule {
        id: "monitor-follows-change",
        what: "a monitor's chardev can be changed (QEMU: Chardev user does not support chardev hotswap)",
        matches: |d| {
            has(d.qemu, "Chardev user does not support chardev hotswap")
                && !has(d.qchar, "Chardev user does not support chardev hotswap")
                && ["qin", "qobs", "hmp"].iter().any(|m| has(d.step, m))
        },
    },
    Rule {
        id: "backlog",
        what: "backlog=SIZE (x-backlog in QMP) keeps output for the next peer; QEMU does not know the key",
        matches: |d| has(d.step, "backlog") && (has(d.qemu, "backlog") || has(d.qemu, "Invalid parameter")),
    },
];

/// The rule `d` falls under, if any.
pub fn explain(d: &Diff<'_>) -> Option<&'static Rule> {
    RULES.iter().find(|r| (r.matches)(d))
}
