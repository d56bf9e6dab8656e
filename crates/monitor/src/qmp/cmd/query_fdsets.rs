//! `query-fdsets`: the descriptor sets, by descending id, members oldest
//! first, `opaque` only where one was given.

use super::{CommandDef, Ctx};
use crate::json::{Dict, Value};
use crate::qmp::error::QmpResult;
use crate::qmp::visitor::ObjVisitor;

pub(super) const DEF: CommandDef = CommandDef {
    name: "query-fdsets",
    allow_oob: false,
    run,
};

fn run(ctx: &mut Ctx<'_>, args: ObjVisitor<'_>) -> QmpResult<Value> {
    args.finish()?;
    let sets = ctx.env.chardevs.fdsets().query();
    Ok(Value::List(
        sets.into_iter()
            .map(|set| {
                let fds = set
                    .fds
                    .into_iter()
                    .map(|m| {
                        let mut d = Dict::new();
                        d.insert("fd", Value::Int(i64::from(m.fd)));
                        if let Some(o) = m.opaque {
                            d.insert("opaque", Value::str(o));
                        }
                        Value::Dict(d)
                    })
                    .collect();
                Value::Dict(crate::dict! {
                    "fdset-id" => set.fdset_id,
                    "fds" => Value::List(fds),
                })
            })
            .collect(),
    ))
}
