//! `x-query-chardev-stats` (a qchar extension): every chardev's counters,
//! in `query-chardev` order, with the counters of its frontends that keep
//! some (a UART's). HMP `info x-chardev-stats` prints the same.
//!
//! `{"label": "serial0", "bytes-in": 0, "bytes-out": 5, "bytes-lost": 0,
//! "changes": 0, "queued": 0, "log-dropped": 0, "frontends": [{"type": "uart",
//! "tx-bytes": 5, ...}]}`

use qchar_chardev::ChardevStatsInfo;

use super::{CommandDef, Ctx};
use crate::json::{Dict, Value};
use crate::qmp::error::QmpResult;
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "x-query-chardev-stats",
    allow_oob: false,
    run,
};

/// The chardev's own counters, in output order.
fn own(i: &ChardevStatsInfo) -> [(&'static str, u64); 6] {
    let s = &i.stats;
    [
        ("bytes-in", s.bytes_in),
        ("bytes-out", s.bytes_out),
        ("bytes-lost", s.bytes_lost),
        ("changes", s.changes),
        ("queued", s.queued),
        ("log-dropped", s.log_dropped),
    ]
}

fn run(ctx: &mut Ctx<'_>, args: ObjVisitor<'_>) -> QmpResult<Value> {
    args.finish()?;
    Ok(Value::List(
        ctx.env
            .chardevs
            .stats()
            .iter()
            .map(|i| {
                let mut d = Dict::new();
                d.insert("label", Value::str(&i.label));
                for (k, v) in own(i) {
                    d.insert(k, Value::UInt(v));
                }
                let fes = i
                    .frontends
                    .iter()
                    .map(|f| {
                        let mut fd = Dict::new();
                        fd.insert("type", Value::str(&f.kind));
                        for (k, v) in &f.counters {
                            fd.insert(k.as_str(), Value::UInt(*v));
                        }
                        Value::Dict(fd)
                    })
                    .collect();
                d.insert("frontends", Value::List(fes));
                Value::Dict(d)
            })
            .collect(),
    ))
}

/// HMP `info x-chardev-stats`: one line per chardev, one indented line per
/// frontend that keeps counters.
pub(crate) fn hmp_text(stats: &[ChardevStatsInfo]) -> String {
    let mut out = String::new();
    for i in stats {
        out.push_str(&i.label);
        out.push(':');
        for (k, v) in own(i) {
            out.push_str(&format!(" {k}={v}"));
        }
        out.push('\n');
        for f in &i.frontends {
            out.push_str(&format!("  {}:", f.kind));
            for (k, v) in &f.counters {
                out.push_str(&format!(" {k}={v}"));
            }
            out.push('\n');
        }
    }
    out
}
