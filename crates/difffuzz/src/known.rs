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

/// Whether any step of the input so far names `s`.
fn input_has(d: &Diff<'_>, s: &str) -> bool {
    d.steps.iter().any(|st| has(st, s))
}

/// The rules, checked in order.
pub const RULES: &[Rule] = &[
    Rule {
        id: "query-commands-subset",
        what: "query-commands lists the commands qchar has, a subset of QEMU's",
        matches: |d| has(d.step, "query-commands") && has(d.qemu, "\"return\": [{\"name\""),
    },
    Rule {
        id: "backends-qchar-lacks",
        what: "backends QEMU has and qchar lacks (vc, msmouse, wctablet, testdev, parallel, qemu-vdagent, braille, spice, dbus)",
        matches: |d| {
            (has(d.qchar, "is not a valid char driver")
                || has(d.qchar, "not supported by qchar")
                || has(d.qchar, "qchar does not support"))
                && ["vc", "msmouse", "wctablet", "testdev", "parallel", "parport", "qemu-vdagent", "braille", "spice", "dbus", "console"]
                    .iter()
                    .any(|b| input_has(d, b))
        },
    },
    Rule {
        id: "query-chardev-backends-subset",
        what: "query-chardev-backends lists qchar's backends, a subset of QEMU's",
        matches: |d| has(d.step, "query-chardev-backends"),
    },
];

/// The rule `d` falls under, if any.
pub fn explain(d: &Diff<'_>) -> Option<&'static Rule> {
    RULES.iter().find(|r| (r.matches)(d))
}
