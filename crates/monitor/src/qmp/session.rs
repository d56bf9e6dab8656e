//! One QMP session (one client connection): the JSON stream, capabilities
//! negotiation and request dispatch, producing reply lines byte-identical to
//! QEMU 7.2's.
//!
//! The sequence for every message follows QEMU: a JSON error is replied to
//! as is; a non-object is refused; the object's members are checked in the
//! order QEMU iterates them (`execute`/`exec-oob` must be strings and not
//! both, `arguments` an object, `id` anything, nothing else); the command is
//! looked up in the table of the session's phase (before negotiation only
//! `qmp_capabilities` exists, and a `CommandNotFound` is reworded to ask for
//! it); `exec-oob` needs the `oob` capability and an OOB-capable command;
//! then the command visits its arguments and runs. `id` is copied into the
//! reply, whatever JSON value it is.

use crate::json::{Dict, JsonError, JsonLimits, JsonStreamer, Value};

use super::cmd::{self, Caps, Ctx, QmpEnv};
use super::error::QmpError;
use super::visitor::ObjVisitor;

/// A QMP session.
pub struct QmpSession {
    parser: JsonStreamer,
    caps: Caps,
    /// Replies in QEMU's pretty style (`pretty=on`).
    pretty: bool,
}

impl QmpSession {
    /// A fresh session; `oob_offered` decides the greeting's capabilities.
    pub fn new(oob_offered: bool) -> QmpSession {
        QmpSession::with_limits(oob_offered, JsonLimits::default())
    }

    /// A fresh session with non-default JSON limits.
    pub fn with_limits(oob_offered: bool, limits: JsonLimits) -> QmpSession {
        QmpSession {
            parser: JsonStreamer::new(limits),
            caps: Caps {
                oob_offered,
                ..Caps::default()
            },
            pretty: false,
        }
    }

    /// Back to the state of a new connection: partial input dropped,
    /// capabilities to be negotiated again.
    pub fn reset(&mut self) {
        self.parser.reset();
        self.caps = Caps {
            oob_offered: self.caps.oob_offered,
            ..Caps::default()
        };
    }

    /// Whether `qmp_capabilities` has succeeded (events are sent only then).
    pub fn negotiated(&self) -> bool {
        self.caps.negotiated
    }

    /// Whether the client enabled out-of-band execution.
    pub fn oob_enabled(&self) -> bool {
        self.caps.oob_enabled
    }

    /// Prints replies and the greeting in QEMU's pretty style (`-mon
    /// ...,pretty=on`, `-qmp-pretty`) or, by default, compact.
    pub fn set_pretty(&mut self, pretty: bool) {
        self.pretty = pretty;
    }

    /// The greeting line, `\r\n` included.
    pub fn greeting(&self, env: &QmpEnv) -> Vec<u8> {
        let caps: Vec<Value> = if self.caps.oob_offered {
            vec![Value::str("oob")]
        } else {
            Vec::new()
        };
        let qmp = crate::dict! { "version" => env.version.to_value(), "capabilities" => Value::List(caps) };
        line(&Value::Dict(crate::dict! { "QMP" => qmp }), self.pretty)
    }

    /// Feeds client bytes; `reply` gets each reply line as soon as it
    /// exists (so events emitted by a later command in the same chunk come
    /// after it).
    pub fn feed(&mut self, env: &QmpEnv, data: &[u8], reply: &mut dyn FnMut(&Self, Vec<u8>)) {
        let mut msgs = Vec::new();
        self.parser.feed_with(data, |m| msgs.push(m));
        for m in msgs {
            if self.caps.quitting {
                return;
            }
            let r = self.handle(env, m);
            reply(self, r);
        }
    }

    /// Handles one parsed message, returning the reply line.
    pub fn handle(&mut self, env: &QmpEnv, msg: Result<Value, JsonError>) -> Vec<u8> {
        let req = match msg {
            Ok(v) => v,
            Err(e) => return error_line(&QmpError::Json(e), None, self.pretty),
        };
        let Value::Dict(req) = req else {
            return error_line(
                &QmpError::generic("QMP input must be a JSON object"),
                None,
                self.pretty,
            );
        };
        let id = req.get("id");
        match self.dispatch(env, &req) {
            Ok(ret) => {
                let mut rsp = Dict::new();
                rsp.insert("return", ret);
                if let Some(id) = id {
                    rsp.insert("id", id.clone());
                }
                line(&Value::Dict(rsp), self.pretty)
            }
            Err(e) => error_line(&e, id, self.pretty),
        }
    }

    fn dispatch(&mut self, env: &QmpEnv, req: &Dict) -> Result<Value, QmpError> {
        let allow_oob = self.caps.oob_enabled;
        let mut exec_key: Option<&str> = None;
        for (k, v) in req.iter_qemu_order() {
            let key = match k {
                b"execute" => Some("execute"),
                b"exec-oob" if allow_oob => Some("exec-oob"),
                _ => None,
            };
            if let Some(key) = key {
                if !matches!(v, Value::Str(_)) {
                    return Err(QmpError::generic(format!(
                        "QMP input member '{key}' must be a string"
                    )));
                }
                if let Some(prev) = exec_key {
                    return Err(QmpError::generic(format!(
                        "QMP input member '{key}' clashes with '{prev}'"
                    )));
                }
                exec_key = Some(key);
            } else if k == b"arguments" {
                if !matches!(v, Value::Dict(_)) {
                    return Err(QmpError::generic(
                        "QMP input member 'arguments' must be an object",
                    ));
                }
            } else if k != b"id" {
                let name = crate::json::utf8::to_string_lossy(k);
                return Err(QmpError::generic(format!(
                    "QMP input member '{name}' is unexpected"
                )));
            }
        }
        let Some(exec_key) = exec_key else {
            return Err(QmpError::generic("QMP input lacks member 'execute'"));
        };
        let oob = exec_key == "exec-oob";
        let name = req
            .get(exec_key)
            .and_then(Value::as_bytes)
            .unwrap_or_default();
        let found =
            cmd::find(name).filter(|c| self.caps.negotiated || c.name == "qmp_capabilities");
        let Some(cmd) = found else {
            let name = crate::json::utf8::to_string_lossy(name);
            return Err(if self.caps.negotiated {
                QmpError::CommandNotFound(format!("The command {name} has not been found"))
            } else {
                QmpError::CommandNotFound(
                    "Expecting capabilities negotiation with 'qmp_capabilities'".into(),
                )
            });
        };
        if oob && !cmd.allow_oob {
            return Err(QmpError::generic(format!(
                "The command {} does not support OOB",
                cmd.name
            )));
        }
        let empty = Dict::new();
        let args = req
            .get("arguments")
            .and_then(Value::as_dict)
            .unwrap_or(&empty);
        let mut ctx = Ctx {
            env,
            caps: &mut self.caps,
        };
        (cmd.run)(&mut ctx, ObjVisitor::new(args))
    }
}

/// A value as a reply line, compact or pretty.
pub(crate) fn line(v: &Value, pretty: bool) -> Vec<u8> {
    let mut out = if pretty {
        v.to_json_pretty()
    } else {
        v.to_json()
    };
    out.extend_from_slice(b"\r\n");
    out
}

/// An error reply line.
pub fn error_line(e: &QmpError, id: Option<&Value>, pretty: bool) -> Vec<u8> {
    let mut rsp = Dict::new();
    rsp.insert("error", e.to_value());
    if let Some(id) = id {
        rsp.insert("id", id.clone());
    }
    line(&Value::Dict(rsp), pretty)
}
