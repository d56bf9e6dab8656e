//! The JSON value model: QEMU's QObject family. Strings are byte strings in
//! modified UTF-8 (what QEMU stores), numbers keep QEMU's three
//! representations, and objects remember insertion order so the writer can
//! reproduce the order in which QEMU's hash table would print them.

/// A JSON value as QEMU's QObject models it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// An integer above `i64::MAX` that fits `u64`.
    UInt(u64),
    /// Any other number.
    Float(f64),
    /// A string, as modified-UTF-8 bytes.
    Str(Vec<u8>),
    /// An array.
    List(Vec<Value>),
    /// An object.
    Dict(Dict),
}

/// A JSON object: entries in insertion order, keys unique.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dict {
    entries: Vec<(Vec<u8>, Value)>,
}

impl Dict {
    /// An empty object.
    pub fn new() -> Dict {
        Dict::default()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The member `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.get_bytes(key.as_bytes())
    }

    /// The member `key` (raw key bytes).
    pub fn get_bytes(&self, key: &[u8]) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Whether member `key` exists.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets member `key`: a new key is added last, an existing one keeps its
    /// place and gets the new value (as `qdict_put_obj` does).
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: Value) {
        let key = key.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Appends a member the caller knows is new (the parser checks).
    pub(crate) fn push_unique(&mut self, key: Vec<u8>, value: Value) {
        self.entries.push((key, value));
    }

    /// Removes member `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.entries.iter().position(|(k, _)| k == key.as_bytes())?;
        Some(self.entries.remove(i).1)
    }

    /// Members in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_slice(), v))
    }

    /// Members in the order QEMU iterates (and prints) a QDict holding the
    /// same keys inserted in the same order: by hash bucket, newest first
    /// within a bucket.
    pub fn iter_qemu_order(&self) -> impl Iterator<Item = (&[u8], &Value)> {
        let mut idx: Vec<(u32, usize)> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (qdict_bucket(k), i))
            .collect();
        idx.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        idx.into_iter().map(move |(_, i)| {
            let (k, v) = &self.entries[i];
            (k.as_slice(), v)
        })
    }
}

/// Number of buckets of QEMU's QDict hash table.
const QDICT_BUCKETS: u32 = 512;

/// The bucket QEMU's QDict puts `key` in. The hash is the classic gdbm/tdb
/// string hash QEMU uses; reproducing it is what makes our output order
/// match QEMU's byte for byte.
pub(crate) fn qdict_bucket(key: &[u8]) -> u32 {
    let mut value = 0x238F_13AFu32.wrapping_mul(key.len() as u32);
    for (i, &c) in key.iter().enumerate() {
        value = value.wrapping_add((c as u32) << ((i as u32 * 5) % 24));
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345) % QDICT_BUCKETS
}

impl Value {
    /// A string value from Rust text.
    pub fn str(s: impl AsRef<str>) -> Value {
        Value::Str(super::utf8::from_str(s.as_ref()))
    }

    /// The object inside, if this is one.
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The string bytes inside, if this is a string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The string inside as Rust text (lossy), if this is a string.
    pub fn as_string(&self) -> Option<String> {
        self.as_bytes().map(super::utf8::to_string_lossy)
    }

    /// Serializes as QEMU does (compact form, `", "` and `": "` separators).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        super::writer::write_value(self, &mut out);
        out
    }

    /// Serializes in QEMU's pretty style (`pretty=on` monitors), with
    /// `\r\n` line ends inside.
    pub fn to_json_pretty(&self) -> Vec<u8> {
        let mut out = Vec::new();
        super::writer::write_value_pretty(self, 0, &mut out);
        out
    }

    /// [`Value::to_json`] as text.
    pub fn to_json_string(&self) -> String {
        String::from_utf8_lossy(&self.to_json()).into_owned()
    }
}

impl From<Dict> for Value {
    fn from(d: Dict) -> Value {
        Value::Dict(d)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::str(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::str(s)
    }
}

/// Builds a [`Dict`] from `(key, value)` pairs, in QEMU's insertion order.
#[macro_export]
macro_rules! dict {
    () => { $crate::json::Dict::new() };
    ($($k:expr => $v:expr),+ $(,)?) => {{
        let mut d = $crate::json::Dict::new();
        $( d.insert($k, $crate::json::Value::from($v)); )+
        d
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_order_matches_qemu_greeting() {
        // QEMU prints {"micro", "minor", "major"} for VersionTriple, whose
        // members are inserted major, minor, micro.
        let d = crate::dict! { "major" => 7i64, "minor" => 2i64, "micro" => 0i64 };
        let keys: Vec<&[u8]> = d.iter_qemu_order().map(|(k, _)| k).collect();
        assert_eq!(keys, [&b"micro"[..], b"minor", b"major"]);
    }

    #[test]
    fn insert_replaces_in_place() {
        let mut d = crate::dict! { "a" => 1i64, "b" => 2i64 };
        d.insert("a", Value::Int(3));
        assert_eq!(
            d.iter().map(|(k, _)| k.to_vec()).collect::<Vec<_>>(),
            [b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(d.get("a"), Some(&Value::Int(3)));
        assert_eq!(d.remove("a"), Some(Value::Int(3)));
        assert_eq!(d.len(), 1);
    }
}
