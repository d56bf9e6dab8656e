//! User-creatable objects (`-object`, QMP `object-add`/`object-del`,
//! `qom-list`/`qom-get` under `/objects`) of the types TLS consoles need:
//! `tls-creds-x509`, `tls-creds-psk`, `authz-simple`, `authz-list`.
//!
//! As in QEMU 7.2, reading an object's options and creating it are two
//! steps: [`ObjectOptions`] comes from `-object`'s QemuOpts form
//! ([`ObjectOptions::from_opts`], `type,id=...,key=value`) or from a JSON
//! object (`-object {...}` and `object-add`, [`ObjectOptions::from_json`]),
//! each with the error texts of QEMU's visitor for that form; then
//! [`ObjectStore::add`] checks the id, the type and the read-only
//! properties, and loads the object (certificates are read and checked
//! here). Other types of QEMU's `ObjectType` enum are read leniently and
//! refused at creation with QEMU's `invalid object type: TYPE`.
//!
//! `object-del` never refuses an object a chardev uses (QEMU does not
//! either): a TLS chardev looks its credentials and authorization up by id
//! for each new connection, so deleting and re-adding an object with new
//! certificates applies to the next connection without a restart, and a
//! chardev whose credentials were deleted keeps using the last ones it
//! used (see the socket backend). QEMU instead keeps the original
//! credentials for the chardev's life.
// Hand-written: QEMU's object model and its visitors' texts are the
// specification; no crate has them.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::qemuopts::{self, is_identifier, OptsList, QemuOpts};

use super::authz::{Authz, Format, Policy, Rule};
use super::psk::{PskCreds, PskError, PskProps};
use super::x509::{CredsError, Endpoint, X509Creds, X509Props};

/// The option list of `-object` (QEMU's `object` QemuOpts: any key, the
/// first element is `qom-type`).
pub static OBJECT_OPTS: OptsList = OptsList {
    name: "object",
    implied: Some("qom-type"),
    merge_lists: false,
    desc: None,
};

/// The object types qchar implements.
pub const IMPLEMENTED_TYPES: &[&str] = &[
    "authz-list",
    "authz-simple",
    "tls-creds-psk",
    "tls-creds-x509",
];

/// QEMU 7.2's `ObjectType` enum (the types `-object` and `object-add`
/// parse; qchar creates only [`IMPLEMENTED_TYPES`]).
pub const QEMU_OBJECT_TYPES: &[&str] = &[
    "authz-list",
    "authz-listfile",
    "authz-pam",
    "authz-simple",
    "can-bus",
    "can-host-socketcan",
    "colo-compare",
    "cryptodev-backend",
    "cryptodev-backend-builtin",
    "cryptodev-backend-lkcf",
    "cryptodev-vhost-user",
    "dbus-vmstate",
    "filter-buffer",
    "filter-dump",
    "filter-mirror",
    "filter-redirector",
    "filter-replay",
    "filter-rewriter",
    "input-barrier",
    "input-linux",
    "iothread",
    "main-loop",
    "memory-backend-epc",
    "memory-backend-file",
    "memory-backend-memfd",
    "memory-backend-ram",
    "pef-guest",
    "pr-manager-helper",
    "qtest",
    "rng-builtin",
    "rng-egd",
    "rng-random",
    "secret",
    "secret_keyring",
    "sev-guest",
    "thread-context",
    "s390-pv-guest",
    "throttle-group",
    "tls-creds-anon",
    "tls-creds-psk",
    "tls-creds-x509",
    "tls-cipher-suites",
    "x-remote-object",
    "x-vfio-user-server",
];

/// A property value in QEMU's JSON form (what `object-add` receives and
/// `qom-get` returns).
#[derive(Debug, Clone, PartialEq)]
pub enum PropValue {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A string.
    Str(String),
    /// An array.
    List(Vec<PropValue>),
    /// An object, members in order.
    Dict(Vec<(String, PropValue)>),
}

/// What `-object`, `object-add`, `object-del`, `qom-get` refuse. `Display`
/// is QEMU 7.2's text.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// A mandatory member is absent.
    #[error("Parameter '{0}' is missing")]
    Missing(String),
    /// QemuOpts form: a boolean that is not one.
    #[error("Parameter '{0}' expects 'on' or 'off'")]
    ExpectsBool(String),
    /// A value outside an enum (named without its path, as QEMU does).
    #[error("Parameter '{name}' does not accept value '{value}'")]
    BadEnum {
        /// The member.
        name: String,
        /// The value given.
        value: String,
    },
    /// QemuOpts form: a key the type does not have.
    #[error("Invalid parameter '{0}'")]
    InvalidParameter(String),
    /// JSON form: a member the type does not have.
    #[error("Parameter '{0}' is unexpected")]
    Unexpected(String),
    /// JSON form: a member of the wrong JSON type.
    #[error("Invalid parameter type for '{name}', expected: {expected}")]
    Type {
        /// The member's path.
        name: String,
        /// `string`, `boolean`, `array`, `object`.
        expected: &'static str,
    },
    /// `id` is not an identifier; QEMU prints [`qemuopts::IDENTIFIER_HINT`]
    /// under it on the command line.
    #[error("Parameter 'id' expects an identifier")]
    BadId,
    /// A type of QEMU's enum that qchar does not implement.
    #[error("invalid object type: {0}")]
    InvalidType(String),
    /// The id is taken.
    #[error("attempt to add duplicate property '{0}' to object (type 'container')")]
    Duplicate(String),
    /// `object-del` of an unknown id.
    #[error("object '{0}' not found")]
    NotFound(String),
    /// A read-only property was given.
    #[error("Property '{ty}.{prop}' is not writable")]
    NotWritable {
        /// The type.
        ty: String,
        /// The property.
        prop: &'static str,
    },
    /// `qom-get` of a property the object does not have.
    #[error("Property '{ty}.{prop}' not found")]
    NoProperty {
        /// The type.
        ty: &'static str,
        /// The property.
        prop: String,
    },
    /// `authz-list` rules in the QemuOpts form, which cannot express them.
    #[error("authz-list 'rules' need the JSON form: -object '{{\"qom-type\":\"authz-list\",\"id\":...,\"rules\":[...]}}'")]
    RulesNeedJson,
    /// A keyval string that does not parse.
    #[error(transparent)]
    Syntax(qemuopts::QemuOptsError),
    /// X.509 credentials failed to load.
    #[error(transparent)]
    X509(#[from] CredsError),
    /// PSK credentials failed to load.
    #[error(transparent)]
    Psk(#[from] PskError),
}

impl ObjectError {
    /// The line QEMU prints under the error on the command line, if any.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ObjectError::BadId => Some(qemuopts::IDENTIFIER_HINT),
            _ => None,
        }
    }
}

type Result<T, E = ObjectError> = std::result::Result<T, E>;

/// What a type's properties were read into.
#[derive(Debug, Clone, PartialEq)]
enum Props {
    X509 {
        props: X509Props,
        loaded: bool,
    },
    Psk {
        props: PskProps,
        loaded: bool,
    },
    AuthzSimple {
        identity: String,
    },
    AuthzList {
        policy: Policy,
        rules: Vec<Rule>,
    },
    /// A QEMU type qchar lacks: refused at creation.
    Other,
}

/// One `-object` / `object-add`, read but not created yet.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectOptions {
    /// `qom-type`.
    pub qom_type: String,
    /// `id`.
    pub id: String,
    props: Props,
}

/// The source a visit reads: QemuOpts strings or typed JSON.
enum Src<'a> {
    Opts(&'a QemuOpts),
    Json(&'a [(String, PropValue)]),
}

/// Reads an object's members in QAPI schema order with the texts of QEMU's
/// opts visitor (QemuOpts form) or QObject input visitor (JSON form).
struct Visit<'a> {
    src: Src<'a>,
    prefix: String,
    visited: Vec<String>,
    /// JSON built from a keyval string: scalars are strings, booleans are
    /// read from them.
    keyval: bool,
}

impl<'a> Visit<'a> {
    fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn take_str(&mut self, name: &str) -> Option<String> {
        match &self.src {
            Src::Opts(o) => {
                let v = o.get(name).map(str::to_string);
                if v.is_some() {
                    self.visited.push(name.to_string());
                }
                v
            }
            Src::Json(_) => None,
        }
    }

    fn take_json(&mut self, name: &str) -> Option<&'a PropValue> {
        let Src::Json(members) = self.src else {
            return None;
        };
        let v = members.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        if v.is_some() {
            self.visited.push(name.to_string());
        }
        v
    }

    fn opt_str(&mut self, name: &str) -> Result<Option<String>> {
        if matches!(self.src, Src::Opts(_)) {
            return Ok(self.take_str(name));
        }
        match self.take_json(name) {
            None => Ok(None),
            Some(PropValue::Str(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ObjectError::Type {
                name: self.path(name),
                expected: "string",
            }),
        }
    }

    fn req_str(&mut self, name: &str) -> Result<String> {
        self.opt_str(name)?
            .ok_or_else(|| ObjectError::Missing(self.path(name)))
    }

    fn opt_bool(&mut self, name: &str) -> Result<Option<bool>> {
        if matches!(self.src, Src::Opts(_)) {
            return match self.take_str(name) {
                None => Ok(None),
                Some(s) => qemuopts::parse_bool(&s)
                    .map(Some)
                    .ok_or_else(|| ObjectError::ExpectsBool(name.to_string())),
            };
        }
        match self.take_json(name) {
            None => Ok(None),
            Some(PropValue::Bool(b)) => Ok(Some(*b)),
            Some(PropValue::Str(s)) if self.keyval => qemuopts::parse_bool(s)
                .map(Some)
                .ok_or_else(|| ObjectError::ExpectsBool(self.path(name))),
            Some(_) => Err(ObjectError::Type {
                name: self.path(name),
                expected: "boolean",
            }),
        }
    }

    fn opt_enum(&mut self, name: &str, values: &[&str]) -> Result<Option<usize>> {
        match self.opt_str(name)? {
            None => Ok(None),
            Some(v) => values
                .iter()
                .position(|x| *x == v)
                .map(Some)
                .ok_or(ObjectError::BadEnum {
                    name: name.to_string(),
                    value: v,
                }),
        }
    }

    fn req_enum(&mut self, name: &str, values: &[&str]) -> Result<usize> {
        self.opt_enum(name, values)?
            .ok_or_else(|| ObjectError::Missing(self.path(name)))
    }

    /// Marks every member visited (a type read leniently).
    fn skip_rest(&mut self) {
        match &self.src {
            Src::Opts(o) => {
                let names: Vec<String> = o.iter().map(|opt| opt.name.clone()).collect();
                self.visited.extend(names);
            }
            Src::Json(m) => self.visited.extend(m.iter().map(|(k, _)| k.clone())),
        }
    }

    fn finish(self) -> Result<()> {
        match &self.src {
            Src::Opts(o) => {
                if let Some(opt) = o.iter().find(|opt| !self.visited.contains(&opt.name)) {
                    return Err(ObjectError::InvalidParameter(opt.name.clone()));
                }
            }
            Src::Json(m) => {
                if let Some((k, _)) = m.iter().find(|(k, _)| !self.visited.contains(k)) {
                    return Err(ObjectError::Unexpected(self.path(k)));
                }
            }
        }
        Ok(())
    }
}

impl ObjectOptions {
    /// Reads `-object TYPE,id=ID,...` already split by
    /// [`qemuopts::parse`] with [`OBJECT_OPTS`] (which checks the id's form
    /// and, with [`qemuopts::parse_unique`], its uniqueness).
    pub fn from_opts(opts: &QemuOpts) -> Result<ObjectOptions> {
        let Some(ty) = opts.get("qom-type") else {
            return Err(ObjectError::Missing("qom-type".into()));
        };
        let mut v = Visit {
            src: Src::Opts(opts),
            prefix: String::new(),
            visited: vec!["qom-type".into()],
            keyval: false,
        };
        let qom_type = check_type(ty)?;
        let id = opts
            .id()
            .map(str::to_string)
            .ok_or_else(|| ObjectError::Missing("id".into()))?;
        let props = visit_props(&mut v, &qom_type)?;
        v.finish()?;
        Ok(ObjectOptions {
            qom_type,
            id,
            props,
        })
    }

    /// Reads the JSON form (`-object '{"qom-type":...}'`, or `object-add`'s
    /// arguments): members of the wrong type and unknown members are
    /// errors, in QEMU's order.
    pub fn from_json(members: &[(String, PropValue)]) -> Result<ObjectOptions> {
        Self::from_members(members, false)
    }

    /// Reads QEMU's keyval form (HMP's `object_add`): `TYPE,id=ID,...`
    /// with dotted keys for nested members (`rules.0.match=...`).
    pub fn from_keyval(s: &str) -> Result<ObjectOptions> {
        let items = qemuopts::keyval(s, Some("qom-type")).map_err(ObjectError::Syntax)?;
        let mut members: Vec<(String, PropValue)> = Vec::new();
        for item in items {
            if let qemuopts::KeyvalItem::Pair { key, value } = item {
                crumple(&mut members, &key, value)?;
            }
        }
        let members: Vec<(String, PropValue)> = members
            .into_iter()
            .map(|(k, v)| (k, lists_from_indexes(v)))
            .collect();
        Self::from_members(&members, true)
    }

    fn from_members(members: &[(String, PropValue)], keyval: bool) -> Result<ObjectOptions> {
        let mut v = Visit {
            src: Src::Json(members),
            prefix: String::new(),
            visited: Vec::new(),
            keyval,
        };
        let ty = v.req_str("qom-type")?;
        let qom_type = check_type(&ty)?;
        let id = v.req_str("id")?;
        let props = visit_props(&mut v, &qom_type)?;
        v.finish()?;
        Ok(ObjectOptions {
            qom_type,
            id,
            props,
        })
    }
}

/// Puts `key=value` into `members`, a dotted key as nested objects.
fn crumple(members: &mut Vec<(String, PropValue)>, key: &str, value: String) -> Result<()> {
    let (head, rest) = match key.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (key, None),
    };
    let slot = members.iter().position(|(k, _)| k == head);
    match (rest, slot) {
        (None, None) => members.push((head.to_string(), PropValue::Str(value))),
        // A later value for the same key wins, as in QEMU's keyval.
        (None, Some(i)) if matches!(members[i].1, PropValue::Str(_)) => {
            members[i].1 = PropValue::Str(value)
        }
        (Some(rest), None) => {
            let mut inner = Vec::new();
            crumple(&mut inner, rest, value)?;
            members.push((head.to_string(), PropValue::Dict(inner)));
        }
        (Some(rest), Some(i)) if matches!(members[i].1, PropValue::Dict(_)) => {
            let PropValue::Dict(inner) = &mut members[i].1 else {
                unreachable!()
            };
            crumple(inner, rest, value)?;
        }
        _ => return Err(ObjectError::InvalidParameter(key.to_string())),
    }
    Ok(())
}

/// An object whose keys are exactly `0..n` becomes a list (keyval's
/// `rules.0.match`), recursively.
fn lists_from_indexes(v: PropValue) -> PropValue {
    match v {
        PropValue::Dict(m) => {
            let m: Vec<(String, PropValue)> = m
                .into_iter()
                .map(|(k, v)| (k, lists_from_indexes(v)))
                .collect();
            let is_list =
                !m.is_empty() && (0..m.len()).all(|i| m.iter().any(|(k, _)| *k == i.to_string()));
            if is_list {
                let mut m = m;
                m.sort_by_key(|(k, _)| k.parse::<usize>().unwrap_or(usize::MAX));
                PropValue::List(m.into_iter().map(|(_, v)| v).collect())
            } else {
                PropValue::Dict(m)
            }
        }
        v => v,
    }
}

fn check_type(ty: &str) -> Result<String> {
    if QEMU_OBJECT_TYPES.contains(&ty) {
        Ok(ty.to_string())
    } else {
        Err(ObjectError::BadEnum {
            name: "qom-type".into(),
            value: ty.to_string(),
        })
    }
}

/// The members of `qom_type`, in schema order.
fn visit_props(v: &mut Visit<'_>, qom_type: &str) -> Result<Props> {
    match qom_type {
        "tls-creds-x509" | "tls-creds-psk" => {
            // TlsCredsProperties, then the subtype's members.
            let verify_peer = v.opt_bool("verify-peer")?;
            let dir = v.opt_str("dir")?;
            let endpoint = v
                .opt_enum("endpoint", Endpoint::NAMES)?
                .map(|i| [Endpoint::Client, Endpoint::Server][i])
                .unwrap_or_default();
            let priority = v.opt_str("priority")?;
            let loaded = v.opt_bool("loaded")?.is_some();
            if qom_type == "tls-creds-x509" {
                let sanity_check = v.opt_bool("sanity-check")?;
                let passwordid = v.opt_str("passwordid")?;
                Ok(Props::X509 {
                    props: X509Props {
                        dir,
                        endpoint,
                        verify_peer: verify_peer.unwrap_or(true),
                        priority,
                        sanity_check: sanity_check.unwrap_or(true),
                        passwordid,
                    },
                    loaded,
                })
            } else {
                let username = v.opt_str("username")?;
                Ok(Props::Psk {
                    props: PskProps {
                        dir,
                        endpoint,
                        verify_peer: verify_peer.unwrap_or(true),
                        priority,
                        username,
                    },
                    loaded,
                })
            }
        }
        "authz-simple" => Ok(Props::AuthzSimple {
            identity: v.req_str("identity")?,
        }),
        "authz-list" => {
            let policy = v
                .opt_enum("policy", Policy::NAMES)?
                .map_or(Policy::Deny, policy_at);
            let rules = visit_rules(v)?;
            Ok(Props::AuthzList { policy, rules })
        }
        _ => {
            v.skip_rest();
            Ok(Props::Other)
        }
    }
}

fn policy_at(i: usize) -> Policy {
    [Policy::Deny, Policy::Allow][i]
}

/// `rules`: a list of `{match, policy, format?}`; JSON form only.
fn visit_rules(v: &mut Visit<'_>) -> Result<Vec<Rule>> {
    if let Src::Opts(_) = v.src {
        // QEMU's opts visitor reads a bare `rules=X` as a rule whose every
        // member is X, so the policy check fails first; qchar says what to
        // write instead when X would pass it.
        return match v.take_str("rules") {
            None => Ok(Vec::new()),
            Some(x) if !Policy::NAMES.contains(&x.as_str()) => Err(ObjectError::BadEnum {
                name: "policy".into(),
                value: x,
            }),
            Some(_) => Err(ObjectError::RulesNeedJson),
        };
    }
    let path = v.path("rules");
    let Some(list) = v.take_json("rules") else {
        return Ok(Vec::new());
    };
    let PropValue::List(items) = list else {
        return Err(ObjectError::Type {
            name: path,
            expected: "array",
        });
    };
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        // Keyval names list elements `rules.0`, JSON `rules[0]`.
        let elem = if v.keyval {
            format!("{path}.{i}")
        } else {
            format!("{path}[{i}]")
        };
        let PropValue::Dict(members) = item else {
            return Err(ObjectError::Type {
                name: elem,
                expected: "object",
            });
        };
        let mut r = Visit {
            src: Src::Json(members),
            prefix: format!("{elem}."),
            visited: Vec::new(),
            keyval: v.keyval,
        };
        let pattern = r.req_str("match")?;
        let policy = policy_at(r.req_enum("policy", Policy::NAMES)?);
        let format = r
            .opt_enum("format", Format::NAMES)?
            .map(|i| [Format::Exact, Format::Glob][i]);
        r.finish()?;
        rules.push(Rule {
            pattern,
            policy,
            format,
        });
    }
    Ok(rules)
}

/// A created object.
#[derive(Debug)]
pub enum Object {
    /// `tls-creds-x509`.
    X509(Arc<X509Creds>),
    /// `tls-creds-psk`.
    Psk(Arc<PskCreds>),
    /// `authz-simple` or `authz-list`.
    Authz(Arc<Authz>),
}

impl Object {
    /// The QOM type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Object::X509(_) => "tls-creds-x509",
            Object::Psk(_) => "tls-creds-psk",
            Object::Authz(a) => match **a {
                Authz::Simple { .. } => "authz-simple",
                Authz::List { .. } => "authz-list",
            },
        }
    }

    /// The properties `qom-list` shows, in QEMU's order, with their QOM
    /// types.
    pub fn property_types(&self) -> &'static [(&'static str, &'static str)] {
        const CREDS: &str = "QCryptoTLSCredsEndpoint";
        match self {
            Object::X509(_) => &[
                ("type", "string"),
                ("endpoint", CREDS),
                ("dir", "string"),
                ("verify-peer", "bool"),
                ("priority", "string"),
                ("sanity-check", "bool"),
                ("passwordid", "string"),
                ("loaded", "bool"),
            ],
            Object::Psk(_) => &[
                ("type", "string"),
                ("endpoint", CREDS),
                ("dir", "string"),
                ("verify-peer", "bool"),
                ("priority", "string"),
                ("username", "string"),
                ("loaded", "bool"),
            ],
            Object::Authz(a) => match **a {
                Authz::Simple { .. } => &[("type", "string"), ("identity", "string")],
                Authz::List { .. } => &[
                    ("type", "string"),
                    ("policy", "QAuthZListPolicy"),
                    ("rules", "QAuthZListRule"),
                ],
            },
        }
    }

    /// `qom-get`: a property's value (an unset string reads as `""`).
    pub fn property(&self, name: &str) -> Result<PropValue> {
        let s = |o: &Option<String>| PropValue::Str(o.clone().unwrap_or_default());
        let v = match (self, name) {
            (_, "type") => PropValue::Str(self.type_name().into()),
            (Object::X509(c), p) => {
                let x = c.props();
                match p {
                    "endpoint" => PropValue::Str(x.endpoint.name().into()),
                    "dir" => s(&x.dir),
                    "verify-peer" => PropValue::Bool(x.verify_peer),
                    "priority" => s(&x.priority),
                    "sanity-check" => PropValue::Bool(x.sanity_check),
                    "passwordid" => s(&x.passwordid),
                    "loaded" => PropValue::Bool(true),
                    _ => return Err(self.no_property(name)),
                }
            }
            (Object::Psk(c), p) => {
                let x = c.props();
                match p {
                    "endpoint" => PropValue::Str(x.endpoint.name().into()),
                    "dir" => s(&x.dir),
                    "verify-peer" => PropValue::Bool(x.verify_peer),
                    "priority" => s(&x.priority),
                    "username" => s(&x.username),
                    "loaded" => PropValue::Bool(true),
                    _ => return Err(self.no_property(name)),
                }
            }
            (Object::Authz(a), p) => match (&**a, p) {
                (Authz::Simple { identity }, "identity") => PropValue::Str(identity.clone()),
                (Authz::List { policy, .. }, "policy") => PropValue::Str(policy.name().into()),
                (Authz::List { rules, .. }, "rules") => PropValue::List(
                    rules
                        .iter()
                        .map(|r| {
                            let mut m = vec![
                                ("match".to_string(), PropValue::Str(r.pattern.clone())),
                                ("policy".to_string(), PropValue::Str(r.policy.name().into())),
                            ];
                            if let Some(f) = r.format {
                                m.push(("format".to_string(), PropValue::Str(f.name().into())));
                            }
                            PropValue::Dict(m)
                        })
                        .collect(),
                ),
                _ => return Err(self.no_property(name)),
            },
        };
        Ok(v)
    }

    fn no_property(&self, name: &str) -> ObjectError {
        ObjectError::NoProperty {
            ty: self.type_name(),
            prop: name.to_string(),
        }
    }
}

/// The objects of one registry (QEMU's `/objects` container), by id, in
/// creation order. Cheap to clone; all clones share the objects.
#[derive(Clone, Default)]
pub struct ObjectStore {
    inner: Arc<Mutex<Objects>>,
}

/// Objects by id, in creation order, and whether QEMU would have made
/// its `/objects` container by now.
#[derive(Default)]
struct Objects {
    list: Vec<(String, Arc<Object>)>,
    /// QEMU makes the container the first time something looks into it
    /// (`object-del`, a chardev's `tls-creds`, an object whose properties
    /// were set) and keeps it, empty or not, from then on.
    root: bool,
}

impl std::fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list().iter().map(|(id, ty)| format!("{id}: {ty}")))
            .finish()
    }
}

impl ObjectStore {
    /// An empty store.
    pub fn new() -> ObjectStore {
        ObjectStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Objects> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates an object, in QEMU's order of checks: the id's form, the
    /// type, read-only properties, the id's uniqueness, then the load.
    /// Credentials are read from disk here, without the store's lock held.
    pub fn add(&self, o: &ObjectOptions) -> Result<()> {
        if !is_identifier(&o.id) {
            return Err(ObjectError::BadId);
        }
        if !IMPLEMENTED_TYPES.contains(&o.qom_type.as_str()) {
            return Err(ObjectError::InvalidType(o.qom_type.clone()));
        }
        if let Props::X509 { loaded: true, .. } | Props::Psk { loaded: true, .. } = o.props {
            return Err(ObjectError::NotWritable {
                ty: o.qom_type.clone(),
                prop: "loaded",
            });
        }
        // The properties are set: QEMU now adds the object to its
        // container, which it makes if need be (even if what follows fails).
        self.lock().root = true;
        if self.get(&o.id).is_some() {
            return Err(ObjectError::Duplicate(o.id.clone()));
        }
        let obj = match &o.props {
            Props::X509 { props, .. } => Object::X509(Arc::new(X509Creds::load(props.clone())?)),
            Props::Psk { props, .. } => Object::Psk(Arc::new(PskCreds::load(props.clone())?)),
            Props::AuthzSimple { identity } => Object::Authz(Arc::new(Authz::Simple {
                identity: identity.clone(),
            })),
            Props::AuthzList { policy, rules } => Object::Authz(Arc::new(Authz::List {
                policy: *policy,
                rules: rules.clone(),
            })),
            Props::Other => unreachable!("refused above"),
        };
        let mut map = self.lock();
        // Checked again: another thread may have added the id meanwhile.
        if map.list.iter().any(|(id, _)| *id == o.id) {
            return Err(ObjectError::Duplicate(o.id.clone()));
        }
        map.list.push((o.id.clone(), Arc::new(obj)));
        Ok(())
    }

    /// `object-del`. Chardevs that use the object keep what they have.
    pub fn del(&self, id: &str) -> Result<()> {
        let mut map = self.lock();
        map.root = true;
        let i = map
            .list
            .iter()
            .position(|(k, _)| k == id)
            .ok_or_else(|| ObjectError::NotFound(id.to_string()))?;
        map.list.remove(i);
        Ok(())
    }

    /// The object with this id now (a look at the objects from outside,
    /// as `qom-list` and `qom-get` take).
    pub fn get(&self, id: &str) -> Option<Arc<Object>> {
        self.lock()
            .list
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, o)| o.clone())
    }

    /// The object with this id, looked up as a user of objects does
    /// (`object-del`, a chardev's `tls-creds` or `tls-authz`): in QEMU
    /// that makes the `/objects` container if there is none yet.
    pub fn lookup(&self, id: &str) -> Option<Arc<Object>> {
        let mut map = self.lock();
        map.root = true;
        map.list
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, o)| o.clone())
    }

    /// Ids and type names, in creation order (QEMU lists `/objects` in
    /// its hash table's order).
    pub fn list(&self) -> Vec<(String, &'static str)> {
        self.lock()
            .list
            .iter()
            .map(|(id, o)| (id.clone(), o.type_name()))
            .collect()
    }

    /// Whether no object exists.
    pub fn is_empty(&self) -> bool {
        self.lock().list.is_empty()
    }

    /// Whether QEMU would have its `/objects` container by now (else
    /// `qom-list /objects` is `Device '/objects' not found`).
    pub fn has_root(&self) -> bool {
        self.lock().root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &str) -> Result<ObjectOptions> {
        let mut w = Vec::new();
        let o = qemuopts::parse(&OBJECT_OPTS, s, &mut w).map_err(|e| match e {
            qemuopts::QemuOptsError::InvalidId(_) => ObjectError::BadId,
            e => panic!("{s}: {e}"),
        })?;
        ObjectOptions::from_opts(&o)
    }

    fn err(r: Result<impl std::fmt::Debug>) -> String {
        r.expect_err("should fail").to_string()
    }

    fn json(s: &[(&str, PropValue)]) -> Vec<(String, PropValue)> {
        s.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn st(s: &str) -> PropValue {
        PropValue::Str(s.into())
    }

    /// Texts of QEMU 7.2 for `-object` in the QemuOpts form.
    #[test]
    fn opts_form_texts() {
        let table = [
            (
                "tls-creds-x509,id=t,verify-peer=maybe,endpoint=bogus",
                "Parameter 'verify-peer' expects 'on' or 'off'",
            ),
            (
                "tls-creds-x509,id=t,endpoint=bogus",
                "Parameter 'endpoint' does not accept value 'bogus'",
            ),
            ("tls-creds-x509,id=t,foo=1", "Invalid parameter 'foo'"),
            ("tls-creds-x509,dir=/x", "Parameter 'id' is missing"),
            ("id=x", "Parameter 'qom-type' is missing"),
            (
                "bogus,id=x",
                "Parameter 'qom-type' does not accept value 'bogus'",
            ),
            ("authz-simple,id=a", "Parameter 'identity' is missing"),
            (
                "authz-list,id=l,policy=maybe",
                "Parameter 'policy' does not accept value 'maybe'",
            ),
            (
                "authz-list,id=l0,rules=x",
                "Parameter 'policy' does not accept value 'x'",
            ),
        ];
        for (s, want) in table {
            assert_eq!(err(opts(s)), want, "{s}");
        }
        let o = opts("authz-simple,id=a,identity=C=GB,,O=x,,CN=y").unwrap();
        assert_eq!(
            o.props,
            Props::AuthzSimple {
                identity: "C=GB,O=x,CN=y".into()
            }
        );
        let o = opts("tls-creds-x509,id=t,dir=/d,endpoint=server,verify-peer=no").unwrap();
        let Props::X509 { props, .. } = o.props else {
            panic!()
        };
        assert_eq!(props.endpoint, Endpoint::Server);
        assert!(!props.verify_peer);
        assert!(props.sanity_check);
        // A type qchar lacks is read leniently and refused at creation.
        let o = opts("secret,id=s,data=x").unwrap();
        assert_eq!(
            err(ObjectStore::new().add(&o)),
            "invalid object type: secret"
        );
    }

    /// Texts of QEMU 7.2 for the JSON form (`-object {...}`, `object-add`).
    #[test]
    fn json_form_texts() {
        let table: Vec<(Vec<(String, PropValue)>, &str)> = vec![
            (
                json(&[("qom-type", st("authz-simple")), ("id", st("a"))]),
                "Parameter 'identity' is missing",
            ),
            (
                json(&[
                    ("qom-type", st("authz-simple")),
                    ("id", st("a")),
                    ("identity", PropValue::Int(1)),
                ]),
                "Invalid parameter type for 'identity', expected: string",
            ),
            (
                json(&[
                    ("qom-type", st("authz-list")),
                    ("id", st("a")),
                    (
                        "rules",
                        PropValue::List(vec![PropValue::Dict(vec![("match".into(), st("x"))])]),
                    ),
                ]),
                "Parameter 'rules[0].policy' is missing",
            ),
            (
                json(&[
                    ("qom-type", st("authz-list")),
                    ("id", st("a")),
                    ("rules", PropValue::Dict(vec![])),
                ]),
                "Invalid parameter type for 'rules', expected: array",
            ),
            (
                json(&[
                    ("qom-type", st("authz-list")),
                    ("id", st("a")),
                    ("rules", PropValue::List(vec![PropValue::Int(1)])),
                ]),
                "Invalid parameter type for 'rules[0]', expected: object",
            ),
            (
                json(&[
                    ("qom-type", st("authz-list")),
                    ("id", st("a")),
                    (
                        "rules",
                        PropValue::List(vec![PropValue::Dict(vec![
                            ("match".into(), st("x")),
                            ("policy".into(), st("allow")),
                            ("format".into(), st("regex")),
                        ])]),
                    ),
                ]),
                "Parameter 'format' does not accept value 'regex'",
            ),
            (
                json(&[
                    ("qom-type", st("authz-simple")),
                    ("id", st("a")),
                    ("identity", st("x")),
                    ("foo", PropValue::Int(1)),
                ]),
                "Parameter 'foo' is unexpected",
            ),
            (
                json(&[("qom-type", st("authz-simple")), ("identity", st("x"))]),
                "Parameter 'id' is missing",
            ),
            (json(&[("id", st("a"))]), "Parameter 'qom-type' is missing"),
            (
                json(&[("qom-type", st("tls-creds")), ("id", st("a"))]),
                "Parameter 'qom-type' does not accept value 'tls-creds'",
            ),
            (
                json(&[
                    ("qom-type", st("tls-creds-x509")),
                    ("id", st("a")),
                    ("verify-peer", st("on")),
                ]),
                "Invalid parameter type for 'verify-peer', expected: boolean",
            ),
        ];
        for (j, want) in table {
            assert_eq!(err(ObjectOptions::from_json(&j)), want, "{j:?}");
        }
    }

    /// Checks at creation, in QEMU's order, and `object-del`.
    #[test]
    fn creation_and_deletion() {
        let store = ObjectStore::new();
        let add = |j: Vec<(String, PropValue)>| store.add(&ObjectOptions::from_json(&j).unwrap());
        let simple = |id: &str| {
            json(&[
                ("qom-type", st("authz-simple")),
                ("id", st(id)),
                ("identity", st("x")),
            ])
        };
        assert_eq!(
            err(add(simple("1q"))),
            "Parameter 'id' expects an identifier"
        );
        assert_eq!(
            err(add(json(&[
                ("qom-type", st("authz-pam")),
                ("id", st("p")),
                ("service", st("x")),
            ]))),
            "invalid object type: authz-pam"
        );
        assert_eq!(
            err(add(json(&[
                ("qom-type", st("tls-creds-x509")),
                ("id", st("t")),
                ("loaded", PropValue::Bool(true)),
            ]))),
            "Property 'tls-creds-x509.loaded' is not writable"
        );
        assert_eq!(
            err(add(json(&[
                ("qom-type", st("tls-creds-x509")),
                ("id", st("t"))
            ]))),
            "Missing 'dir' property value"
        );
        add(simple("a0")).unwrap();
        assert_eq!(
            err(add(simple("a0"))),
            "attempt to add duplicate property 'a0' to object (type 'container')"
        );
        add(json(&[
            ("qom-type", st("authz-list")),
            ("id", st("l0")),
            (
                "rules",
                PropValue::List(vec![PropValue::Dict(vec![
                    ("match".into(), st("*CN=x")),
                    ("policy".into(), st("allow")),
                    ("format".into(), st("glob")),
                ])]),
            ),
        ]))
        .unwrap();
        assert_eq!(
            store.list(),
            [
                ("a0".to_string(), "authz-simple"),
                ("l0".to_string(), "authz-list")
            ]
        );
        let l0 = store.get("l0").unwrap();
        assert_eq!(l0.property("policy").unwrap(), st("deny"));
        assert_eq!(
            err(l0.property("nope")),
            "Property 'authz-list.nope' not found"
        );
        let Object::Authz(a) = &*l0 else { panic!() };
        assert!(a.is_allowed("O=y,CN=x"));
        assert!(!a.is_allowed("CN=y"));
        assert_eq!(err(store.del("zz")), "object 'zz' not found");
        store.del("a0").unwrap();
        assert!(store.get("a0").is_none());
        add(simple("a0")).unwrap();
    }
}
