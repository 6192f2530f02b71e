//! The JSON of one resource, as a tree that borrows its text from the line it was read
//! from.
//!
//! A view reads a few values of each resource. Parsed into `serde_json::Value` (whose
//! objects keep their keys' order in a hashed map, for the JSON the engine writes), every
//! key and string was copied and hashed, and every value a path stepped into was cloned:
//! at a million resources that was most of the FHIR source's time (examples/benchmark/
//! PROFILE.md, nineteenth round). Here an object is its pairs in order (a resource's
//! objects have a handful of keys, found faster by a scan than by a hash), a string
//! without escapes is a slice of the input, and the FHIRPath evaluator hands references to
//! the tree around instead of copies.
//!
//! Parsing is serde_json's (the same grammar, the same numbers and the same errors as
//! before); its 128-level recursion bound and the parser's own depth check still apply.
//! A key given twice is kept once, in its first place with its last value, as
//! `serde_json::Value` (an order-keeping map) kept it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Number, Value};

use crate::prune::Keys;

/// A JSON value whose strings may borrow from the text it was parsed from.
#[derive(Debug, Clone)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Key–value pairs in the order written.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses one JSON text, borrowing its strings where they have no escapes.
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Parses one resource keeping only the top-level keys `keys` keeps (see
    /// [`crate::prune`]): the others' values are read as strictly, not built. Text that is
    /// not an object is parsed whole.
    pub fn parse_keeping(text: &'a str, keys: &Keys) -> Result<Self, serde_json::Error> {
        if !text.trim_start().starts_with('{') {
            return Self::parse(text);
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let value = de.deserialize_map(Kept(keys))?;
        de.end()?;
        Ok(value)
    }

    /// The value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// Whether this is a whole number (as JSON wrote it: `2`, not `2.0`).
    pub fn is_integer(&self) -> bool {
        matches!(self, Json::Number(n) if n.is_i64() || n.is_u64())
    }

    /// The same value owning all its text, free of the input it was read from.
    pub fn into_static(self) -> Json<'static> {
        match self {
            Json::Null => Json::Null,
            Json::Bool(b) => Json::Bool(b),
            Json::Number(n) => Json::Number(n),
            Json::String(s) => Json::String(Cow::Owned(s.into_owned())),
            Json::Array(a) => Json::Array(a.into_iter().map(Json::into_static).collect()),
            Json::Object(o) => Json::Object(
                o.into_iter()
                    .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_static()))
                    .collect(),
            ),
        }
    }

    /// The value as a `serde_json::Value` (for the view's tests and constants).
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.to_string()),
            Json::Array(a) => Value::Array(a.iter().map(Json::to_value).collect()),
            Json::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// A `serde_json::Value` as a tree of this kind (a view's literals and constants).
    pub fn from_value(v: &Value) -> Json<'static> {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.clone()),
            Value::String(s) => Json::String(Cow::Owned(s.clone())),
            Value::Array(a) => Json::Array(a.iter().map(Json::from_value).collect()),
            Value::Object(o) => Json::Object(
                o.iter()
                    .map(|(k, v)| (Cow::Owned(k.clone()), Json::from_value(v)))
                    .collect(),
            ),
        }
    }
}

/// A value of the resource, borrowed, or one computed from it, owned (a `Cow` would do,
/// but a `Cow` of a type with a lifetime cannot give up that lifetime for a shorter one).
/// The owned one is boxed: every step of a path moves its values and most are borrowed;
/// with the value inline each was 40 bytes, two and a half times the boxed one's 16.
#[derive(Debug, Clone)]
pub enum Held<'a> {
    Borrowed(&'a Json<'a>),
    Owned(Box<Json<'a>>),
}

impl<'a> Held<'a> {
    /// The value itself, copied if it was borrowed.
    pub fn into_owned(self) -> Json<'a> {
        match self {
            Held::Borrowed(j) => j.clone(),
            Held::Owned(j) => *j,
        }
    }
}

impl<'a> std::ops::Deref for Held<'a> {
    type Target = Json<'a>;
    fn deref(&self) -> &Json<'a> {
        match self {
            Held::Borrowed(j) => j,
            Held::Owned(j) => j,
        }
    }
}

impl PartialEq for Held<'_> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Serialize for Held<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

/// Equality as JSON means it: numbers by value, objects whatever their keys' order.
impl PartialEq for Json<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Json::Null, Json::Null) => true,
            (Json::Bool(a), Json::Bool(b)) => a == b,
            (Json::Number(a), Json::Number(b)) => a == b,
            (Json::String(a), Json::String(b)) => a == b,
            (Json::Array(a), Json::Array(b)) => a == b,
            (Json::Object(a), Json::Object(b)) if a.len() != b.len() => false,
            (Json::Object(a), Json::Object(b)) if a.len() > SCANNED_KEYS => {
                let index: std::collections::HashMap<&str, &Json> =
                    b.iter().map(|(k, v)| (k.as_ref(), v)).collect();
                a.iter().all(|(k, v)| index.get(k.as_ref()) == Some(&v))
            }
            (Json::Object(a), Json::Object(_)) => a.iter().all(|(k, v)| other.get(k) == Some(v)),
            _ => false,
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Json::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Json<'de>, E> {
        Ok(Number::from_f64(n).map_or(Json::Null, Json::Number))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut pairs = Pairs::default();
        while let Some(Key(k)) = map.next_key()? {
            pairs.insert(k, map.next_value()?);
        }
        Ok(Json::Object(pairs.list))
    }
}

/// A resource's object, keeping the keys a view reads ([`Json::parse_keeping`]).
struct Kept<'k>(&'k Keys);

impl<'de> Visitor<'de> for Kept<'_> {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut pairs = Pairs::default();
        while let Some(Key(k)) = map.next_key()? {
            if self.0.keeps(&k) {
                pairs.insert(k, map.next_value()?);
            } else {
                map.next_value::<Skipped>()?;
            }
        }
        Ok(Json::Object(pairs.list))
    }
}

/// A value read and dropped: through the same grammar and checks as a kept one (escapes,
/// surrogates, numbers within a double's range), so that skipping a key never lets through
/// a line that reading it whole would reject; nothing is built (`serde`'s `IgnoredAny`
/// checks less: a lone surrogate escape or `1e400` passed).
struct Skipped;

impl<'de> Deserialize<'de> for Skipped {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SkippedVisitor)
    }
}

struct SkippedVisitor;

impl<'de> Visitor<'de> for SkippedVisitor {
    type Value = Skipped;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_str<E>(self, _: &str) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skipped, A::Error> {
        while seq.next_element::<Skipped>()?.is_some() {}
        Ok(Skipped)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skipped, A::Error> {
        while map.next_entry::<Skipped, Skipped>()?.is_some() {}
        Ok(Skipped)
    }
}

/// An object's pairs as they are read: a key given again replaces its value in its first
/// place (as `serde_json`'s order-keeping map does), found by a scan while the object is
/// small and through an index beyond that, so that a hostile object of many keys costs
/// time in proportion to its size.
#[derive(Default)]
struct Pairs<'a> {
    list: Vec<(Cow<'a, str>, Json<'a>)>,
    index: Option<std::collections::HashMap<Cow<'a, str>, usize>>,
    /// A bit for each key's length and first byte ([`Pairs::mark`]): a key whose bit is
    /// unset is new without a scan, as almost every key is.
    marks: u64,
}

/// Keys an object may have before its pairs are found through an index.
const SCANNED_KEYS: usize = 16;

impl<'a> Pairs<'a> {
    /// The bit of a key among 64: equal keys have the same.
    fn mark(key: &str) -> u64 {
        let first = key.as_bytes().first().copied().unwrap_or(0) as usize;
        1 << ((key.len() * 7 + first) % 64)
    }

    fn insert(&mut self, key: Cow<'a, str>, value: Json<'a>) {
        let mark = Self::mark(&key);
        let at = match &self.index {
            Some(index) => index.get(&key).copied(),
            None if self.marks & mark == 0 => None,
            None => self.list.iter().position(|(k, _)| *k == key),
        };
        self.marks |= mark;
        if let Some(i) = at {
            self.list[i].1 = value;
            return;
        }
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), self.list.len());
        } else if self.list.len() == SCANNED_KEYS {
            let mut index: std::collections::HashMap<_, _> = (self.list.iter().enumerate())
                .map(|(i, (k, _))| (k.clone(), i))
                .collect();
            index.insert(key.clone(), self.list.len());
            self.index = Some(index);
        }
        self.list.push((key, value));
    }
}

/// An object's key, borrowed from the input where it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(s)))
    }
}

/// Written as JSON text in the order read (a column whose path gives an object or a list).
impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(t) => s.serialize_str(t),
            Json::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Json::Object(o) => {
                let mut map = s.serialize_map(Some(o.len()))?;
                for (k, v) in o {
                    map.serialize_entry(k.as_ref(), v)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_plain_strings_and_reads_as_serde_json_does() {
        let text =
            r#"{"a": "plain", "b": "esc\"aped", "n": [1, -2, 2.5], "o": {"x": null, "x": true}}"#;
        let j = Json::parse(text).unwrap();
        assert!(matches!(
            j.get("a"),
            Some(Json::String(Cow::Borrowed("plain")))
        ));
        assert!(matches!(j.get("b"), Some(Json::String(Cow::Owned(s))) if s == "esc\"aped"));
        // The last of a key given twice, in its first place, as serde_json::Value keeps it.
        assert_eq!(j.get("o").and_then(|o| o.get("x")), Some(&Json::Bool(true)));
        let twice = r#"{"a": 1, "b": 2, "a": 3}"#;
        let v: Value = serde_json::from_str(twice).unwrap();
        assert_eq!(Json::parse(twice).unwrap().to_value(), v);
        assert_eq!(
            serde_json::to_string(&Json::parse(twice).unwrap()).unwrap(),
            r#"{"a":3,"b":2}"#
        );
        // Many keys, and one given again beyond the scanned ones.
        let many: String = (0..40).map(|i| format!("\"k{i}\": {i}, ")).collect();
        let many = format!("{{{many}\"k30\": -1}}");
        let v: Value = serde_json::from_str(&many).unwrap();
        let j = Json::parse(&many).unwrap();
        assert_eq!(j.to_value(), v);
        assert_eq!(j, Json::parse(&many).unwrap());
        let text_ok = r#"{"a": "plain", "n": [1, -2, 2.5], "o": {"y": {"z": [true]}}}"#;
        let v: Value = serde_json::from_str(text_ok).unwrap();
        assert_eq!(Json::parse(text_ok).unwrap().to_value(), v);
        assert_eq!(
            serde_json::to_string(&Json::parse(text_ok).unwrap()).unwrap(),
            serde_json::to_string(&v).unwrap()
        );
        assert!(
            Json::parse("{\"a\": 1e400}").is_err()
                == serde_json::from_str::<Value>("{\"a\": 1e400}").is_err()
        );
        assert!(Json::parse("{broken").is_err());
    }

    #[test]
    fn objects_are_equal_whatever_their_order() {
        let a = Json::parse(r#"{"x": 1, "y": [2]}"#).unwrap();
        let b = Json::parse(r#"{"y": [2], "x": 1}"#).unwrap();
        let c = Json::parse(r#"{"y": [2], "x": 2}"#).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
