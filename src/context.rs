//! The encryption context: string pairs bound to a data key, in one canonical form.
//!
//! The canonical form (keys sorted by their UTF-8 bytes, compact JSON) is used identically for the
//! KMS call, the file header and the authenticated data. See `docs/FORMAT.md`, "Encryption
//! context".

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};

/// The longest canonical context accepted, in bytes of JSON text (the KMS documents 1024).
pub const MAX_CONTEXT_JSON_LEN: usize = 1024;

/// Key/value pairs bound to a data key. Empty and absent are the same thing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<String, String>);

/// Why a context could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextError {
    /// The text is not a JSON object whose values are all strings.
    NotAnObjectOfStrings(String),
    /// The same key appears twice.
    DuplicateKey(String),
    /// A key is the empty string.
    EmptyKey,
    /// A `-c` argument without `=`.
    MissingEquals(String),
    /// The canonical JSON would exceed [`MAX_CONTEXT_JSON_LEN`].
    TooLong(usize),
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnObjectOfStrings(why) => {
                write!(
                    f,
                    "encryption context must be a JSON object of strings: {why}"
                )
            }
            Self::DuplicateKey(key) => write!(f, "encryption context repeats the key {key:?}"),
            Self::EmptyKey => write!(f, "encryption context has an empty key"),
            Self::MissingEquals(arg) => {
                write!(
                    f,
                    "encryption context pair {arg:?} is not of the form KEY=VALUE"
                )
            }
            Self::TooLong(len) => write!(
                f,
                "encryption context is {len} bytes as JSON, more than {MAX_CONTEXT_JSON_LEN}"
            ),
        }
    }
}

impl std::error::Error for ContextError {}

impl EncryptionContext {
    /// The empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a context from pairs, rejecting empty and repeated keys and an oversized result.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, ContextError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut map = BTreeMap::new();
        for (key, value) in pairs {
            let key = key.into();
            if key.is_empty() {
                return Err(ContextError::EmptyKey);
            }
            if map.insert(key.clone(), value.into()).is_some() {
                return Err(ContextError::DuplicateKey(key));
            }
        }
        let context = Self(map);
        context.check_len()?;
        Ok(context)
    }

    /// Parses `KEY=VALUE` arguments (the value may itself contain `=`).
    pub fn from_assignments<S: AsRef<str>>(args: &[S]) -> Result<Self, ContextError> {
        let mut pairs = Vec::with_capacity(args.len());
        for arg in args {
            let arg = arg.as_ref();
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| ContextError::MissingEquals(arg.to_owned()))?;
            pairs.push((key.to_owned(), value.to_owned()));
        }
        Self::from_pairs(pairs)
    }

    /// Parses JSON text that must be an object of string values; an empty text is the empty
    /// context.
    pub fn from_json(text: &str) -> Result<Self, ContextError> {
        if text.trim().is_empty() {
            return Ok(Self::new());
        }
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let pairs = deserializer
            .deserialize_map(PairsVisitor)
            .and_then(|pairs| deserializer.end().map(|()| pairs))
            .map_err(|err| ContextError::NotAnObjectOfStrings(err.to_string()))?;
        Self::from_pairs(pairs)
    }

    /// The canonical JSON text: compact, keys in byte order; empty for the empty context.
    pub fn to_canonical_json(&self) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        serde_json::to_string(&self.0).expect("a map of strings always serializes")
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The pairs in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The first key of `required` whose value here differs or is missing.
    pub fn first_mismatch<'a>(&self, required: &'a EncryptionContext) -> Option<&'a str> {
        required
            .iter()
            .find(|(key, value)| self.get(key) != Some(value))
            .map(|(key, _)| key)
    }

    fn check_len(&self) -> Result<(), ContextError> {
        let len = self.to_canonical_json().len();
        if len > MAX_CONTEXT_JSON_LEN {
            return Err(ContextError::TooLong(len));
        }
        Ok(())
    }
}

/// Reads a JSON object as ordered pairs so that repeated keys can be detected.
struct PairsVisitor;

impl<'de> Visitor<'de> for PairsVisitor {
    type Value = Vec<(String, String)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object whose values are strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, String>()? {
            if pairs.len() >= MAX_CONTEXT_JSON_LEN {
                return Err(de::Error::custom("too many pairs"));
            }
            pairs.push((key, value));
        }
        Ok(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_by_bytes() {
        let ctx = EncryptionContext::from_json(r#"{"b":"2","B":"1","a":"é"}"#).unwrap();
        assert_eq!(ctx.to_canonical_json(), r#"{"B":"1","a":"é","b":"2"}"#);
    }

    #[test]
    fn empty_and_absent_are_the_same() {
        assert_eq!(
            EncryptionContext::from_json("").unwrap(),
            EncryptionContext::new()
        );
        assert_eq!(
            EncryptionContext::from_json("{}").unwrap(),
            EncryptionContext::new()
        );
        assert_eq!(EncryptionContext::new().to_canonical_json(), "");
    }

    #[test]
    fn rejects_non_string_values_and_non_objects() {
        for bad in [
            r#"{"a":1}"#,
            r#"["a"]"#,
            r#""a""#,
            r#"{"a":null}"#,
            "{",
            r#"{"a":"b"} x"#,
        ] {
            let err = EncryptionContext::from_json(bad).unwrap_err();
            assert!(
                matches!(err, ContextError::NotAnObjectOfStrings(_)),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn rejects_duplicate_and_empty_keys() {
        let err = EncryptionContext::from_json(r#"{"a":"1","a":"2"}"#).unwrap_err();
        assert_eq!(err, ContextError::DuplicateKey("a".into()));
        let err = EncryptionContext::from_assignments(&["=x"]).unwrap_err();
        assert_eq!(err, ContextError::EmptyKey);
    }

    #[test]
    fn assignments_split_at_first_equals() {
        let ctx = EncryptionContext::from_assignments(&["k=v=w", "z="]).unwrap();
        assert_eq!(ctx.get("k"), Some("v=w"));
        assert_eq!(ctx.get("z"), Some(""));
        let err = EncryptionContext::from_assignments(&["novalue"]).unwrap_err();
        assert!(matches!(err, ContextError::MissingEquals(_)));
    }

    #[test]
    fn rejects_oversized_context() {
        let long = "x".repeat(MAX_CONTEXT_JSON_LEN);
        let err = EncryptionContext::from_pairs([("k", long)]).unwrap_err();
        assert!(matches!(err, ContextError::TooLong(_)));
    }

    #[test]
    fn first_mismatch_names_the_key() {
        let have = EncryptionContext::from_assignments(&["a=1", "b=2"]).unwrap();
        let want = EncryptionContext::from_assignments(&["a=1", "b=3"]).unwrap();
        assert_eq!(have.first_mismatch(&want), Some("b"));
        let want = EncryptionContext::from_assignments(&["c=1"]).unwrap();
        assert_eq!(have.first_mismatch(&want), Some("c"));
        assert_eq!(have.first_mismatch(&EncryptionContext::new()), None);
    }
}
