//! `x-query-chardev-clients` (a qchar extension): the clients of every
//! multi-client socket server (`x-clients`), in `query-chardev` order. HMP
//! `info x-chardev-clients` prints the same.
//!
//! `{"label": "con", "max-clients": 4, "max-writers": 1, "refused": 0,
//! "clients": [{"client": 1, "peer": "127.0.0.1:50000", "writer": true,
//! "handshake": false, "sent": 812, "skipped": 0, "dropped-input": 0,
//! "behind": 0}]}`

use qchar_chardev::{ChardevClientsInfo, ClientInfo};

use super::{CommandDef, Ctx};
use crate::json::{Dict, Value};
use crate::qmp::error::QmpResult;
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "x-query-chardev-clients",
    allow_oob: false,
    run,
};

fn client(c: &ClientInfo) -> Value {
    let mut d = Dict::new();
    d.insert("client", Value::UInt(c.client));
    d.insert("peer", Value::str(&c.peer));
    d.insert("writer", Value::from(c.writer));
    d.insert("handshake", Value::from(c.handshake));
    d.insert("sent", Value::UInt(c.sent));
    d.insert("skipped", Value::UInt(c.skipped));
    d.insert("dropped-input", Value::UInt(c.dropped_input));
    d.insert("behind", Value::UInt(c.behind));
    Value::Dict(d)
}

fn run(ctx: &mut Ctx<'_>, args: ObjVisitor<'_>) -> QmpResult<Value> {
    args.finish()?;
    Ok(Value::List(
        ctx.env
            .chardevs
            .clients()
            .iter()
            .map(|c| {
                let mut d = Dict::new();
                d.insert("label", Value::str(&c.label));
                d.insert("max-clients", Value::UInt(c.info.max_clients));
                d.insert("max-writers", Value::UInt(c.info.max_writers));
                d.insert("refused", Value::UInt(c.info.refused));
                d.insert(
                    "clients",
                    Value::List(c.info.clients.iter().map(client).collect()),
                );
                Value::Dict(d)
            })
            .collect(),
    ))
}

/// HMP `info x-chardev-clients`: a line per server, an indented line per
/// client.
pub(crate) fn hmp_text(all: &[ChardevClientsInfo]) -> String {
    let mut out = String::new();
    for c in all {
        let i = &c.info;
        out.push_str(&format!(
            "{}: clients={}/{} writers={} refused={}\n",
            c.label,
            i.clients.len(),
            i.max_clients,
            i.max_writers,
            i.refused
        ));
        for k in &i.clients {
            out.push_str(&format!(
                "  #{} {} {}{} sent={} skipped={} dropped-input={} behind={}\n",
                k.client,
                k.peer,
                if k.writer { "writer" } else { "viewer" },
                if k.handshake { " (handshake)" } else { "" },
                k.sent,
                k.skipped,
                k.dropped_input,
                k.behind
            ));
        }
    }
    out
}
