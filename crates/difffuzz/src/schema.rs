//! Arguments drawn from QEMU's own QAPI schema, as `query-qmp-schema`
//! returns it live: objects with their members (optional ones sometimes
//! left out), flat unions by their tag, enums by their values, arrays,
//! alternates, builtins. Leaves are given values that make sense for the
//! member's name (a chardev id, a path in the side's directory, a port),
//! so most commands do something and the rest fail in interesting ways.

use std::collections::HashMap;

use fastrand::Rng;
use serde_json::Value;

use crate::json::{odd_string, J, ODD_NUMBERS};

/// The schema, by type name.
pub struct Schema {
    types: HashMap<String, Value>,
}

/// Chardev ids an input refers to: the baseline's, new ones, and now and
/// then a monitor's own.
pub const IDS: &[&str] = &[
    "r0", "n0", "a", "b", "c", "a", "b", "m", "x1", "r0", "n0", "a",
];

/// Monitor chardevs of the long-lived processes (picked rarely).
pub const MONITOR_IDS: &[&str] = &["qin", "qobs", "hmp"];

impl Schema {
    /// From the `return` of `query-qmp-schema`.
    pub fn from_value(v: &Value) -> Schema {
        let mut types = HashMap::new();
        if let Some(a) = v.as_array() {
            for e in a {
                if let Some(n) = e.get("name").and_then(Value::as_str) {
                    types.insert(n.to_string(), e.clone());
                }
            }
        }
        Schema { types }
    }

    /// The argument type of command `name`.
    pub fn arg_type(&self, name: &str) -> Option<&str> {
        self.types
            .get(name)
            .filter(|e| e["meta-type"] == "command")
            .and_then(|e| e["arg-type"].as_str())
    }

    /// Whether `name` is a command in the schema.
    pub fn has_command(&self, name: &str) -> bool {
        self.arg_type(name).is_some()
    }

    /// Values of enum type `name`.
    fn enum_values(&self, name: &str) -> Vec<String> {
        self.types
            .get(name)
            .and_then(|e| e["values"].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A value of type `ty` for a member called `member`.
    pub fn gen(&self, ty: &str, member: &str, rng: &mut Rng, depth: u32) -> J {
        if let Some(j) = leaf_for_member(member, ty, rng) {
            return j;
        }
        let Some(e) = self.types.get(ty) else {
            return J::Null;
        };
        match e["meta-type"].as_str().unwrap_or("") {
            "builtin" => builtin(e["json-type"].as_str().unwrap_or(""), rng),
            "enum" => {
                let vals = self.enum_values(ty);
                if vals.is_empty() || rng.u8(0..20) == 0 {
                    J::s("bogus")
                } else {
                    J::s(&vals[rng.usize(..vals.len())])
                }
            }
            "array" => {
                let el = e["element-type"].as_str().unwrap_or("");
                if depth > 4 {
                    return J::Arr(vec![]);
                }
                J::Arr(
                    (0..rng.usize(0..3))
                        .map(|_| self.gen(el, member, rng, depth + 1))
                        .collect(),
                )
            }
            "alternate" => {
                let m = e["members"].as_array().cloned().unwrap_or_default();
                if m.is_empty() {
                    return J::Null;
                }
                let t = m[rng.usize(..m.len())]["type"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                self.gen(&t, member, rng, depth + 1)
            }
            "object" => self.gen_object(e, rng, depth),
            _ => J::Null,
        }
    }

    fn gen_object(&self, e: &Value, rng: &mut Rng, depth: u32) -> J {
        if depth > 6 {
            return J::Obj(vec![]);
        }
        let mut out: Vec<(String, J)> = Vec::new();
        let members = e["members"].as_array().cloned().unwrap_or_default();
        let tag = e["tag"].as_str();
        let mut tag_value = None;
        for m in &members {
            let name = m["name"].as_str().unwrap_or("");
            let ty = m["type"].as_str().unwrap_or("");
            let optional = m.get("default").is_some();
            if optional && rng.u8(0..3) != 0 {
                continue;
            }
            let v = if Some(name) == tag {
                let vals = self.enum_values(ty);
                let v = pick_tag(&vals, rng);
                tag_value = Some(v.clone());
                J::s(&v)
            } else {
                self.gen(ty, name, rng, depth + 1)
            };
            out.push((name.to_string(), v));
        }
        if let (Some(tv), Some(vars)) = (tag_value, e["variants"].as_array()) {
            if let Some(var) = vars.iter().find(|v| v["case"] == tv.as_str()) {
                let vt = var["type"].as_str().unwrap_or("");
                if let Some(J::Obj(m)) = self
                    .types
                    .get(vt)
                    .map(|v| self.gen_object(v, rng, depth + 1))
                {
                    out.extend(m);
                }
            }
        }
        J::Obj(out)
    }
}

/// A union tag: mostly the backends and address kinds both programs have.
fn pick_tag(vals: &[String], rng: &mut Rng) -> String {
    const COMMON: &[&str] = &[
        "file", "socket", "udp", "pty", "null", "ringbuf", "memory", "mux", "pipe", "serial",
        "stdio", "inet", "unix", "unix", "inet", "chardev",
    ];
    let common: Vec<&String> = vals
        .iter()
        .filter(|v| COMMON.contains(&v.as_str()))
        .collect();
    if !common.is_empty() && rng.u8(0..10) != 0 {
        return common[rng.usize(..common.len())].clone();
    }
    if vals.is_empty() {
        return "bogus".into();
    }
    vals[rng.usize(..vals.len())].clone()
}

fn builtin(json_type: &str, rng: &mut Rng) -> J {
    match json_type {
        "string" => J::s(["x", "", "abc"][rng.usize(..3)]),
        "int" => J::Num(if rng.bool() {
            rng.i64(-2..100).to_string()
        } else {
            ODD_NUMBERS[rng.usize(..ODD_NUMBERS.len())].to_string()
        }),
        "number" => J::Num(ODD_NUMBERS[rng.usize(..ODD_NUMBERS.len())].to_string()),
        "boolean" => J::Bool(rng.bool()),
        "null" => J::Null,
        _ => J::Obj(vec![]),
    }
}

/// A chardev id: the usual pool, sometimes a monitor's or an odd string.
pub fn chardev_id(rng: &mut Rng) -> J {
    match rng.u8(0..40) {
        0 => J::s(MONITOR_IDS[rng.usize(..MONITOR_IDS.len())]),
        1..=3 => J::Str(odd_string(rng)),
        4 => J::s("serial0"),
        _ => J::s(IDS[rng.usize(..IDS.len())]),
    }
}

/// A path: in the side's directory (`$D`), relative (the side's directory
/// is its working directory), or one that cannot be opened.
pub fn path(rng: &mut Rng) -> J {
    const PATHS: &[&str] = &[
        "$D/f1",
        "$D/f2",
        "$D/s1",
        "$D/s2",
        "$D/p1",
        "f1",
        "rel/x",
        "$D/null",
        "/nonexistent-dir/x",
        "$D",
        "",
        "$D/f1",
        "$D/s1",
        "$D/s1",
    ];
    J::s(PATHS[rng.usize(..PATHS.len())])
}

fn leaf_for_member(member: &str, ty: &str, rng: &mut Rng) -> Option<J> {
    if ty != "str" || rng.u8(0..12) == 0 {
        return match (member, ty) {
            ("size", "int") if rng.u8(0..3) != 0 => Some(J::n(
                [1, 2, 16, 64, 1024, 4096, 3, 0, -1, 65536][rng.usize(..10)],
            )),
            _ => None,
        };
    }
    Some(match member {
        "id" | "device" | "chardev" if member != "device" || rng.bool() => chardev_id(rng),
        "device" => J::s(["$D/null", "$D/tty", "/nonexistent-dir/tty", ""][rng.usize(..4)]),
        "out" | "in" | "logfile" | "path" => path(rng),
        "host" => J::s(
            [
                "127.0.0.1",
                "localhost",
                "::1",
                "",
                "0.0.0.0",
                "256.0.0.1",
                "no.such.host.invalid",
            ][rng.usize(..7)],
        ),
        "port" => J::s(["$PORT0", "$PORT1", "0", "$PORT0", "", "65536", "x", "-1"][rng.usize(..8)]),
        "str" => J::s(["myfd", "", "999"][rng.usize(..3)]),
        "cid" => J::s(["2", "x"][rng.usize(..2)]),
        "data" => J::Str(match rng.u8(0..4) {
            0 => odd_string(rng),
            1 => b"aGVsbG8=".to_vec(),
            _ => b"hello".to_vec(),
        }),
        "command-line" => J::s("info status"),
        "node-name" => J::s("n"),
        "tls-creds" | "tls-authz" => J::s(["", "tls0"][rng.usize(..2)]),
        "fqdn" | "name" | "type" => J::s("x"),
        _ => return None,
    })
}
