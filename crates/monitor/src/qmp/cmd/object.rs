//! `object-add`, `object-del`, and the part of `qom-list`/`qom-get` that
//! reaches the `/objects` container (QEMU 7.2 has no `query-objects`):
//! the TLS credentials and authorization objects chardevs use, and qchar's
//! `x-bridge` (added and deleted through `bridge.rs`; not listed under
//! `/objects`).
//!
//! Paths: `/objects` and `/objects/ID`, or QEMU's partial paths `objects`
//! and `ID`. Anything else is `Device 'PATH' not found`, as in QEMU for a
//! path that does not exist (qchar has no other QOM tree). `/objects` is
//! listed in creation order (QEMU: its hash table's order).

use std::sync::Arc;

use qchar_chardev::bridge::BRIDGE_TYPE;
use qchar_chardev::tls::object::Object;
use qchar_chardev::tls::{ObjectError, ObjectOptions, ObjectStore, PropValue};

use super::{CommandDef, Ctx};
use crate::json::{utf8, Dict, Value};
use crate::qmp::error::{QmpError, QmpResult};
use crate::qmp::visitor::ObjVisitor;

pub(super) const ADD: CommandDef = CommandDef {
    name: "object-add",
    allow_oob: false,
    run: add,
};

pub(super) const DEL: CommandDef = CommandDef {
    name: "object-del",
    allow_oob: false,
    run: del,
};

pub(super) const QOM_LIST: CommandDef = CommandDef {
    name: "qom-list",
    allow_oob: false,
    run: qom_list,
};

pub(super) const QOM_GET: CommandDef = CommandDef {
    name: "qom-get",
    allow_oob: false,
    run: qom_get,
};

/// The store, or an error naming why there is none.
pub(crate) fn objects_or_error(ctx_objects: Option<ObjectStore>) -> QmpResult<ObjectStore> {
    ctx_objects.ok_or_else(|| QmpError::generic("this monitor has no objects to manage"))
}

fn obj_err(e: ObjectError) -> QmpError {
    QmpError::generic(e.to_string())
}

/// A JSON value as an object property value.
fn prop(v: &Value) -> PropValue {
    match v {
        Value::Null => PropValue::Null,
        Value::Bool(b) => PropValue::Bool(*b),
        Value::Int(i) => PropValue::Int(*i),
        Value::UInt(u) => PropValue::Float(*u as f64),
        Value::Float(f) => PropValue::Float(*f),
        Value::Str(s) => PropValue::Str(utf8::to_string_lossy(s)),
        Value::List(l) => PropValue::List(l.iter().map(prop).collect()),
        Value::Dict(d) => PropValue::Dict(members(d)),
    }
}

fn members(d: &Dict) -> Vec<(String, PropValue)> {
    d.iter()
        .map(|(k, v)| (utf8::to_string_lossy(k), prop(v)))
        .collect()
}

/// An object property value as JSON.
fn value(p: &PropValue) -> Value {
    match p {
        PropValue::Null => Value::Null,
        PropValue::Bool(b) => Value::Bool(*b),
        PropValue::Int(i) => Value::Int(*i),
        PropValue::Float(f) => Value::Float(*f),
        PropValue::Str(s) => Value::str(s),
        PropValue::List(l) => Value::List(l.iter().map(value).collect()),
        PropValue::Dict(m) => {
            let mut d = Dict::new();
            for (k, v) in m {
                d.insert(k.as_str(), value(v));
            }
            Value::Dict(d)
        }
    }
}

fn add(ctx: &mut Ctx<'_>, args: ObjVisitor<'_>) -> QmpResult<Value> {
    let bridge = args
        .dict()
        .get("qom-type")
        .is_some_and(|t| *t == Value::str(BRIDGE_TYPE));
    if bridge {
        return super::bridge::add(ctx, args);
    }
    let store = objects_or_error(ctx.env.chardevs.objects())?;
    let o = ObjectOptions::from_json(&members(args.into_dict())).map_err(obj_err)?;
    store.add(&o).map_err(obj_err)?;
    Ok(Value::Dict(Dict::new()))
}

fn del(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let id = args.req_str("id")?;
    args.finish()?;
    match ctx.env.chardevs.objects() {
        Some(store) if store.lookup(&id).is_some() => store.del(&id).map_err(obj_err)?,
        // Not a TLS object: an `x-bridge`, or `object 'ID' not found`.
        _ => ctx
            .env
            .chardevs
            .remove_bridge(&id)
            .map_err(|e| QmpError::generic(e.to_string()))?,
    }
    Ok(Value::Dict(Dict::new()))
}

/// HMP `object_add`: QEMU's keyval form (`TYPE,id=ID,key=value`), or JSON.
pub(crate) fn add_from_str(store: &ObjectStore, s: &str) -> Result<(), String> {
    let o = if s.starts_with('{') {
        let v = crate::json::parse_one(s).map_err(|e| e.to_string())?;
        from_json_value(&v)
    } else {
        ObjectOptions::from_keyval(s)
    }
    .map_err(|e| e.to_string())?;
    store.add(&o).map_err(|e| e.to_string())
}

/// Reads a parsed JSON `-object`/`object_add` text.
pub fn from_json_value(v: &Value) -> Result<ObjectOptions, ObjectError> {
    match v {
        Value::Dict(d) => ObjectOptions::from_json(&members(d)),
        _ => Err(ObjectError::Type {
            name: "<anonymous>".into(),
            expected: "object",
        }),
    }
}

/// What a QOM path names here.
enum Target {
    Container,
    Object(Arc<Object>),
}

fn resolve(store: &ObjectStore, path: &str) -> QmpResult<Target> {
    let not_found = || QmpError::DeviceNotFound(format!("Device '{path}' not found"));
    if !store.has_root() {
        return Err(not_found());
    }
    let id = match path {
        "/objects" | "objects" => return Ok(Target::Container),
        p => p.strip_prefix("/objects/").unwrap_or(p),
    };
    if id.is_empty() || id.contains('/') || path.starts_with('/') && !path.starts_with("/objects/")
    {
        return Err(not_found());
    }
    store.get(id).map(Target::Object).ok_or_else(not_found)
}

fn qom_list(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let path = args.req_str("path")?;
    args.finish()?;
    // The empty partial path matches every object of QEMU's tree, so its
    // qom-list (unlike qom-get, which does not ask) calls it ambiguous.
    if path.is_empty() {
        return Err(QmpError::Generic("Path '' is ambiguous".into()));
    }
    let store = objects_or_error(ctx.env.chardevs.objects())?;
    let entry = |name: &str, ty: &str| Value::Dict(crate::dict! { "name" => name, "type" => ty });
    Ok(Value::List(match resolve(&store, &path)? {
        Target::Container => std::iter::once(entry("type", "string"))
            .chain(
                store
                    .list()
                    .iter()
                    .map(|(id, ty)| entry(id, &format!("child<{ty}>"))),
            )
            .collect(),
        Target::Object(o) => o
            .property_types()
            .iter()
            .map(|(n, t)| entry(n, t))
            .collect(),
    }))
}

fn qom_get(ctx: &mut Ctx<'_>, mut args: ObjVisitor<'_>) -> QmpResult<Value> {
    let path = args.req_str("path")?;
    let property = args.req_str("property")?;
    args.finish()?;
    let store = objects_or_error(ctx.env.chardevs.objects())?;
    match resolve(&store, &path)? {
        Target::Container if property == "type" => Ok(Value::str("container")),
        Target::Container => Err(QmpError::generic(format!(
            "Property 'container.{property}' not found"
        ))),
        Target::Object(o) => o.property(&property).map(|p| value(&p)).map_err(obj_err),
    }
}
