//! A QAPI-style input visitor: reads command arguments out of a JSON object
//! member by member, in schema order, and fails with the exact texts of
//! QEMU 7.2's QObject input visitor (`Parameter 'backend.data.out' is
//! missing`, `Invalid parameter type for 'id', expected: string`...).
//!
//! Paths: members of nested objects are named `outer.inner`, list elements
//! `list[0]`. Like QEMU, enum and integer-range errors name the member
//! without its path, and members that were never visited are reported after
//! all expected ones, by [`ObjVisitor::finish`].

use crate::json::{utf8, Dict, Value};

use super::error::{QmpError, QmpResult};

/// Visits the members of one JSON object.
#[derive(Debug)]
pub struct ObjVisitor<'a> {
    dict: &'a Dict,
    prefix: String,
    visited: Vec<&'a [u8]>,
}

/// Every JSON type name QEMU uses in `expected: ...`.
fn type_error(path: &str, expected: &str) -> QmpError {
    QmpError::generic(format!(
        "Invalid parameter type for '{path}', expected: {expected}"
    ))
}

impl<'a> ObjVisitor<'a> {
    /// Visits `dict`, the top-level arguments object.
    pub fn new(dict: &'a Dict) -> ObjVisitor<'a> {
        ObjVisitor {
            dict,
            prefix: String::new(),
            visited: Vec::new(),
        }
    }

    /// The full name of member `name`, as QEMU prints it.
    pub fn path(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    fn take(&mut self, name: &str) -> Option<&'a Value> {
        let dict: &'a Dict = self.dict;
        let (k, v) = dict.iter().find(|(k, _)| *k == name.as_bytes())?;
        self.visited.push(k);
        Some(v)
    }

    fn missing(&self, name: &str) -> QmpError {
        QmpError::generic(format!("Parameter '{}' is missing", self.path(name)))
    }

    /// A mandatory string member (modified UTF-8 bytes, as sent).
    pub fn req_bytes(&mut self, name: &str) -> QmpResult<Vec<u8>> {
        self.opt_bytes(name)?.ok_or_else(|| self.missing(name))
    }

    /// An optional string member (modified UTF-8 bytes, as sent).
    pub fn opt_bytes(&mut self, name: &str) -> QmpResult<Option<Vec<u8>>> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(_) => Err(type_error(&self.path(name), "string")),
        }
    }

    /// A mandatory string member.
    pub fn req_str(&mut self, name: &str) -> QmpResult<String> {
        Ok(utf8::to_string_lossy(&self.req_bytes(name)?))
    }

    /// An optional string member.
    pub fn opt_str(&mut self, name: &str) -> QmpResult<Option<String>> {
        Ok(self.opt_bytes(name)?.map(|b| utf8::to_string_lossy(&b)))
    }

    /// An optional boolean member.
    pub fn opt_bool(&mut self, name: &str) -> QmpResult<Option<bool>> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(type_error(&self.path(name), "boolean")),
        }
    }

    /// A mandatory `int` (int64) member.
    pub fn req_int(&mut self, name: &str) -> QmpResult<i64> {
        self.opt_int(name)?.ok_or_else(|| self.missing(name))
    }

    /// An optional `int` (int64) member. Numbers that are not exactly an
    /// int64 are a type error, as in QEMU.
    pub fn opt_int(&mut self, name: &str) -> QmpResult<Option<i64>> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Int(i)) => Ok(Some(*i)),
            Some(_) => Err(type_error(&self.path(name), "integer")),
        }
    }

    /// An optional `uint64` member. Like QEMU, negative int64 values are
    /// accepted (wrapping) for backward compatibility.
    pub fn opt_u64(&mut self, name: &str) -> QmpResult<Option<u64>> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Int(i)) => Ok(Some(*i as u64)),
            Some(Value::UInt(u)) => Ok(Some(*u)),
            Some(_) => Err(QmpError::generic(format!(
                "Parameter '{}' expects uint64",
                self.path(name)
            ))),
        }
    }

    /// An optional `uint16` member.
    pub fn opt_u16(&mut self, name: &str) -> QmpResult<Option<u16>> {
        match self.opt_u64(name)? {
            None => Ok(None),
            Some(v) => u16::try_from(v)
                .map(Some)
                .map_err(|_| QmpError::generic(format!("Parameter '{name}' expects uint16_t"))),
        }
    }

    /// A mandatory enum member; returns the index of the value in `values`.
    pub fn req_enum(&mut self, name: &str, values: &[&str]) -> QmpResult<usize> {
        self.opt_enum(name, values)?
            .ok_or_else(|| self.missing(name))
    }

    /// An optional enum member.
    pub fn opt_enum(&mut self, name: &str, values: &[&str]) -> QmpResult<Option<usize>> {
        match self.opt_bytes(name)? {
            None => Ok(None),
            Some(s) => enum_index(name, &s, values).map(Some),
        }
    }

    /// An optional list of enum values (`qmp_capabilities`'s `enable`).
    pub fn opt_enum_list(&mut self, name: &str, values: &[&str]) -> QmpResult<Option<Vec<usize>>> {
        let Some(v) = self.take(name) else {
            return Ok(None);
        };
        let Value::List(items) = v else {
            return Err(type_error(&self.path(name), "array"));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Value::Str(s) = item else {
                return Err(type_error(&format!("{}[{i}]", self.path(name)), "string"));
            };
            // QEMU names list elements "null" in this message.
            out.push(enum_index("null", s, values)?);
        }
        Ok(Some(out))
    }

    /// A mandatory list of strings (paths `name[0]`... in errors).
    pub fn req_str_list(&mut self, name: &str) -> QmpResult<Vec<String>> {
        let Some(v) = self.take(name) else {
            return Err(self.missing(name));
        };
        let Value::List(items) = v else {
            return Err(type_error(&self.path(name), "array"));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Str(s) => Ok(utf8::to_string_lossy(s)),
                _ => Err(type_error(&format!("{}[{i}]", self.path(name)), "string")),
            })
            .collect()
    }

    /// A mandatory list of objects, each visited by one of the returned
    /// visitors (paths `name[0].member`...), or the error for an element
    /// that is not an object.
    pub fn req_obj_list(&mut self, name: &str) -> QmpResult<Vec<QmpResult<ObjVisitor<'a>>>> {
        let Some(v) = self.take(name) else {
            return Err(self.missing(name));
        };
        let Value::List(items) = v else {
            return Err(type_error(&self.path(name), "array"));
        };
        // An element that is not an object fails when it is reached, as
        // QEMU's visitor goes through the list in order.
        let prefix = self.path(name);
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let path = format!("{prefix}[{i}]");
                match item {
                    Value::Dict(d) => Ok(ObjVisitor {
                        dict: d,
                        prefix: format!("{path}."),
                        visited: Vec::new(),
                    }),
                    _ => Err(type_error(&path, "object")),
                }
            })
            .collect())
    }

    /// A mandatory object member, visited by the returned visitor.
    pub fn req_obj(&mut self, name: &str) -> QmpResult<ObjVisitor<'a>> {
        match self.take(name) {
            None => Err(self.missing(name)),
            Some(Value::Dict(d)) => Ok(ObjVisitor {
                dict: d,
                prefix: format!("{}.", self.path(name)),
                visited: Vec::new(),
            }),
            Some(_) => Err(type_error(&self.path(name), "object")),
        }
    }

    /// An optional object member.
    pub fn opt_obj(&mut self, name: &str) -> QmpResult<Option<ObjVisitor<'a>>> {
        if self.dict.contains(name) {
            self.req_obj(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The whole object, for a command that reads its members itself
    /// (`object-add`'s open set of properties).
    pub fn into_dict(self) -> &'a Dict {
        self.dict
    }

    /// The object, to look at before visiting (`object-add` chooses its
    /// reader by `qom-type`).
    pub fn dict(&self) -> &'a Dict {
        self.dict
    }

    /// Fails with `Parameter '...' is unexpected` for a member that was
    /// not visited: among several, the one QEMU names, the first of its
    /// GLib hash table of the members not visited yet ([`GHashOrder`]).
    pub fn finish(self) -> QmpResult<()> {
        let keys: Vec<&[u8]> = self.dict.iter_qemu_order().map(|(k, _)| k).collect();
        let mut table = GHashOrder::default();
        for (i, k) in keys.iter().enumerate() {
            table.insert(i, k);
        }
        for v in &self.visited {
            if let Some(i) = keys.iter().position(|k| k == v) {
                table.remove(i, v);
            }
        }
        match table.first() {
            Some(i) => Err(QmpError::generic(format!(
                "Parameter '{}' is unexpected",
                self.path(&utf8::to_string_lossy(keys[i]))
            ))),
            None => Ok(()),
        }
    }
}

/// The slot order of a GLib `GHashTable` keyed by strings (`g_str_hash`),
/// as QEMU's input visitor fills one with an object's member names (in the
/// object's order) and removes each as it is visited: which of the members
/// left it reports comes from here. Hand-written: it models GLib 2.74's
/// open addressing (quadratic probing, tombstones, resizing) exactly.
#[derive(Default)]
struct GHashOrder {
    /// Per slot: 0 unused, 1 tombstone, else the key's hash.
    hashes: Vec<u32>,
    /// Per slot: the key (an index into the caller's keys).
    keys: Vec<usize>,
    nnodes: usize,
    noccupied: usize,
    modulus: u32,
}

const PRIME_MOD: [u32; 32] = [
    1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
    262139, 524287, 1048573, 2097143, 4194301, 8388593, 16777213, 33554393, 67108859, 134217689,
    268435399, 536870909, 1073741789, 2147483647,
];
const MIN_SHIFT: usize = 3;

/// `g_str_hash`: djb2 over the bytes as C's signed chars.
fn g_str_hash(s: &[u8]) -> u32 {
    s.iter().fold(5381u32, |h, &c| {
        h.wrapping_mul(33).wrapping_add(c as i8 as i32 as u32)
    })
}

impl GHashOrder {
    fn set_shift(&mut self, shift: usize) {
        let size = 1usize << shift;
        self.modulus = PRIME_MOD[shift];
        if self.hashes.len() < size {
            self.hashes.resize(size, 0);
            self.keys.resize(size, 0);
        }
        self.hashes.truncate(size.max(self.hashes.len().min(size)));
    }

    fn size(&self) -> usize {
        (self.modulus as usize + 1)
            .next_power_of_two()
            .max(1 << MIN_SHIFT)
    }

    fn index(&self, hash: u32) -> usize {
        (hash.wrapping_mul(11) % self.modulus) as usize
    }

    fn real_hash(key: &[u8]) -> u32 {
        match g_str_hash(key) {
            0 | 1 => 2,
            h => h,
        }
    }

    /// The slot of `key` (or where it would go), as `g_hash_table_lookup_node`.
    fn lookup(&self, key: usize, hash: u32) -> usize {
        let mask = self.size() - 1;
        let mut i = self.index(hash);
        let mut step = 0;
        let mut tombstone = None;
        while self.hashes[i] != 0 {
            if self.hashes[i] == hash && self.keys[i] == key {
                return i;
            }
            if self.hashes[i] == 1 && tombstone.is_none() {
                tombstone = Some(i);
            }
            step += 1;
            i = (i + step) & mask;
        }
        tombstone.unwrap_or(i)
    }

    fn insert(&mut self, key: usize, name: &[u8]) {
        if self.modulus == 0 {
            self.set_shift(MIN_SHIFT);
        }
        let hash = Self::real_hash(name);
        let i = self.lookup(key, hash);
        let old = self.hashes[i];
        if old >= 2 {
            return;
        }
        self.hashes[i] = hash;
        self.keys[i] = key;
        self.nnodes += 1;
        if old == 0 {
            self.noccupied += 1;
            self.maybe_resize();
        }
    }

    fn remove(&mut self, key: usize, name: &[u8]) {
        if self.modulus == 0 {
            return;
        }
        let hash = Self::real_hash(name);
        let i = self.lookup(key, hash);
        if self.hashes[i] < 2 {
            return;
        }
        self.hashes[i] = 1;
        self.nnodes -= 1;
        self.maybe_resize();
    }

    fn maybe_resize(&mut self) {
        let size = self.size();
        if (size > self.nnodes * 4 && size > 1 << MIN_SHIFT)
            || size <= self.noccupied + self.noccupied / 16
        {
            self.resize();
        }
    }

    /// `g_hash_table_resize`: a new size from the live entries, entries
    /// moved in slot order, each evicting what sits in its new slot.
    fn resize(&mut self) {
        let old_size = self.size();
        let want = (self.nnodes as f64 * 1.333) as usize;
        let shift = (usize::BITS - want.leading_zeros()) as usize;
        let shift = shift.max(MIN_SHIFT);
        let new_size = 1usize << shift;
        self.modulus = PRIME_MOD[shift];
        if new_size > self.hashes.len() {
            self.hashes.resize(new_size, 0);
            self.keys.resize(new_size, 0);
        }
        let mask = new_size - 1;
        let mut placed = vec![false; old_size.max(new_size)];
        for i in 0..old_size {
            let h = self.hashes[i];
            if h < 2 {
                self.hashes[i] = 0;
                continue;
            }
            if placed[i] {
                continue;
            }
            self.hashes[i] = 0;
            let (mut hash, mut key) = (h, self.keys[i]);
            loop {
                let mut j = self.index(hash);
                let mut step = 0;
                while placed[j] {
                    step += 1;
                    j = (j + step) & mask;
                }
                placed[j] = true;
                let (rh, rk) = (self.hashes[j], self.keys[j]);
                self.hashes[j] = hash;
                self.keys[j] = key;
                if rh < 2 {
                    break;
                }
                (hash, key) = (rh, rk);
            }
        }
        self.hashes.truncate(new_size);
        self.keys.truncate(new_size);
        self.noccupied = self.nnodes;
    }

    /// The key in the lowest live slot.
    fn first(&self) -> Option<usize> {
        (0..self.hashes.len().min(self.size()))
            .find(|&i| self.hashes[i] >= 2)
            .map(|i| self.keys[i])
    }
}

fn enum_index(name: &str, s: &[u8], values: &[&str]) -> QmpResult<usize> {
    values
        .iter()
        .position(|v| v.as_bytes() == s)
        .ok_or_else(|| {
            QmpError::generic(format!(
                "Parameter '{name}' does not accept value '{}'",
                utf8::to_string_lossy(s)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::JsonStreamer;

    fn dict(s: &str) -> Dict {
        match JsonStreamer::default().feed(s.as_bytes()).pop() {
            Some(Ok(Value::Dict(d))) => d,
            other => panic!("not an object: {other:?}"),
        }
    }

    fn err(r: QmpResult<impl std::fmt::Debug>) -> String {
        r.expect_err("should fail").to_string()
    }

    #[test]
    fn texts_match_qemu() {
        let d = dict(r#"{"id":1,"b":{"n":"x","e":"bogus","u":70000,"f":1.5,"l":[1]}}"#);
        let mut v = ObjVisitor::new(&d);
        assert_eq!(
            err(v.req_str("id")),
            "Invalid parameter type for 'id', expected: string"
        );
        assert_eq!(err(v.req_str("nope")), "Parameter 'nope' is missing");
        let mut b = v.req_obj("b").unwrap();
        assert_eq!(
            err(b.req_int("n")),
            "Invalid parameter type for 'b.n', expected: integer"
        );
        assert_eq!(
            err(b.req_enum("e", &["a"])),
            "Parameter 'e' does not accept value 'bogus'"
        );
        assert_eq!(err(b.opt_u16("u")), "Parameter 'u' expects uint16_t");
        assert_eq!(err(b.opt_u16("f")), "Parameter 'b.f' expects uint64");
        assert_eq!(
            err(b.opt_enum_list("l", &["oob"])),
            "Invalid parameter type for 'b.l[0]', expected: string"
        );
        assert_eq!(
            err(b.req_obj("missing")),
            "Parameter 'b.missing' is missing"
        );
        b.finish().unwrap();
        v.finish().unwrap();
        let d = dict(r#"{"a":"x","extra":true}"#);
        let mut v = ObjVisitor::new(&d);
        v.req_str("a").unwrap();
        assert_eq!(err(v.finish()), "Parameter 'extra' is unexpected");
    }
}
