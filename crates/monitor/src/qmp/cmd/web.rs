//! qchar's web console (an extension): `x-web-start` (arguments `port`,
//! optional `host`, `token`, `tls-creds` and `tls-authz`) answers where it listens,
//! `{"host": "127.0.0.1", "port": 8080, "token": "...", "url": "http://..."}`;
//! `x-web-stop` stops it; `x-query-web` answers `{"running": false}` or
//! `running: true` with the same members as `x-web-start`.

use super::{CommandDef, Ctx};
use crate::json::{Dict, Value};
use crate::qmp::error::{QmpError, QmpResult};
use crate::qmp::visitor::ObjVisitor;
use crate::web::{WebControl, WebStatus};

pub(super) const START: CommandDef = CommandDef {
    name: "x-web-start",
    allow_oob: false,
    run: start,
};
pub(super) const STOP: CommandDef = CommandDef {
    name: "x-web-stop",
    allow_oob: false,
    run: stop,
};
pub(super) const QUERY: CommandDef = CommandDef {
    name: "x-query-web",
    allow_oob: false,
    run: query,
};

fn control<'a>(ctx: &'a Ctx<'_>) -> QmpResult<&'a dyn WebControl> {
    ctx.env
        .web
        .as_deref()
        .ok_or_else(|| QmpError::generic("This qchar has no web console"))
}

fn status_dict(s: &WebStatus, d: &mut Dict) {
    d.insert("host", Value::str(&s.host));
    d.insert("port", Value::UInt(u64::from(s.port)));
    d.insert("token", Value::str(&s.token));
    d.insert("url", Value::str(&s.url));
}

fn start(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let host = args.opt_str("host")?;
    let port = args
        .opt_u16("port")?
        .ok_or_else(|| QmpError::generic("Parameter 'port' is missing"))?;
    let token = args.opt_str("token")?;
    let tls_creds = args.opt_str("tls-creds")?;
    let tls_authz = args.opt_str("tls-authz")?;
    args.finish()?;
    let s = control(ctx)?
        .start(host, port, token, tls_creds, tls_authz)
        .map_err(QmpError::Generic)?;
    let mut d = Dict::new();
    status_dict(&s, &mut d);
    Ok(Value::Dict(d))
}

fn stop(ctx: &mut Ctx<'_>, args: ObjVisitor<'_>) -> QmpResult<Value> {
    args.finish()?;
    control(ctx)?.stop().map_err(QmpError::Generic)?;
    Ok(Value::Dict(Dict::new()))
}

fn query(ctx: &mut Ctx<'_>, args: ObjVisitor<'_>) -> QmpResult<Value> {
    args.finish()?;
    let mut d = Dict::new();
    match control(ctx)?.status() {
        Some(s) => {
            d.insert("running", Value::Bool(true));
            status_dict(&s, &mut d);
        }
        None => {
            d.insert("running", Value::Bool(false));
        }
    }
    Ok(Value::Dict(d))
}
