//! The two wire formats: action parameters out, and answers (or API errors) back in.
//!
//! API 3.0 sends PascalCase JSON and answers `{"Response":{...}}`; the legacy API 2.0 sends a
//! form with lowerCamel names and answers a flat `{"code":0,...}` object.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::ser::{Serialize, SerializeMap, Serializer};
use zeroize::Zeroizing;

use crate::kms::{KmsError, KmsErrorKind};

/// One parameter value.
#[derive(Clone, Copy)]
pub(crate) enum ParamValue<'a> {
    /// A string (may be a base64 plaintext: never logged).
    Text(&'a str),
    /// An integer, such as `NumberOfBytes`.
    Number(u32),
}

/// The parameters of one action, named as API 3.0 names them, in the order given.
#[derive(Default)]
pub(crate) struct Params<'a>(Vec<(&'static str, ParamValue<'a>)>);

impl fmt::Debug for Params<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|(name, _)| *name).collect();
        write!(f, "Params({names:?})")
    }
}

impl<'a> Params<'a> {
    /// Adds a string parameter.
    pub fn text(mut self, name: &'static str, value: &'a str) -> Self {
        self.0.push((name, ParamValue::Text(value)));
        self
    }

    /// Adds a string parameter unless it is empty (an empty encryption context is omitted).
    pub fn non_empty(self, name: &'static str, value: &'a str) -> Self {
        if value.is_empty() {
            self
        } else {
            self.text(name, value)
        }
    }

    /// Adds an integer parameter if there is one.
    pub fn number(mut self, name: &'static str, value: Option<u32>) -> Self {
        if let Some(value) = value {
            self.0.push((name, ParamValue::Number(value)));
        }
        self
    }

    /// The parameters as legacy form pairs: names in lowerCamel case, values as text.
    pub fn legacy_pairs(&self) -> Vec<(String, Cow<'a, str>)> {
        self.0
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    ParamValue::Text(text) => Cow::Borrowed(*text),
                    ParamValue::Number(n) => Cow::Owned(n.to_string()),
                };
                (lower_camel(name), value)
            })
            .collect()
    }
}

impl Serialize for Params<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            match value {
                ParamValue::Text(text) => map.serialize_entry(name, text)?,
                ParamValue::Number(n) => map.serialize_entry(name, n)?,
            }
        }
        map.end()
    }
}

/// `KeyId` becomes `keyId`.
fn lower_camel(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The fields of a successful answer that this client reads; absent ones are `None`.
#[derive(Default)]
pub(crate) struct Output {
    /// `KeyId`.
    pub key_id: Option<String>,
    /// `Plaintext`, base64, wiped on drop.
    pub plaintext: Option<Zeroizing<String>>,
    /// `CiphertextBlob`.
    pub ciphertext_blob: Option<String>,
    /// `SourceKeyId` (ReEncrypt).
    pub source_key_id: Option<String>,
    /// `RequestId`.
    pub request_id: String,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("key_id", &self.key_id)
            .field("plaintext", &self.plaintext.as_ref().map(|_| "[redacted]"))
            .field("ciphertext_blob", &self.ciphertext_blob)
            .field("source_key_id", &self.source_key_id)
            .field("request_id", &self.request_id)
            .finish()
    }
}

/// What an answer body says: success, or an error the API reported.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The action succeeded.
    Success(Output),
    /// The API reported an error.
    Failure(KmsError),
}

/// Why an answer body could not be read.
#[derive(Debug)]
pub(crate) enum AnswerError {
    /// Not JSON, or not of the expected shape. Only the position and class are kept, never the
    /// text, since the body may hold a plaintext key.
    Malformed(String),
    /// JSON of the right shape but without the field that tells success from failure.
    Missing(&'static str),
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "malformed JSON ({why})"),
            Self::Missing(field) => write!(f, "the answer has no {field}"),
        }
    }
}

fn malformed(err: &serde_json::Error) -> AnswerError {
    let class = match err.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected field type",
        serde_json::error::Category::Eof => "truncated",
    };
    AnswerError::Malformed(format!(
        "{class} at line {} column {}",
        err.line(),
        err.column()
    ))
}

#[derive(Deserialize)]
struct Api3Envelope {
    #[serde(rename = "Response")]
    response: Option<Api3Body>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Api3Body {
    error: Option<Api3Error>,
    request_id: Option<String>,
    key_id: Option<String>,
    plaintext: Option<Zeroizing<String>>,
    ciphertext_blob: Option<String>,
    source_key_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Api3Error {
    code: String,
    message: Option<String>,
}

/// Reads an API 3.0 answer body.
pub(crate) fn parse_api3(body: &[u8]) -> Result<Answer, AnswerError> {
    let envelope: Api3Envelope = serde_json::from_slice(body).map_err(|err| malformed(&err))?;
    let body = envelope
        .response
        .ok_or(AnswerError::Missing("Response object"))?;
    let request_id = body.request_id.unwrap_or_default();
    if let Some(error) = body.error {
        let message = error.message.unwrap_or_default();
        return Ok(Answer::Failure(
            KmsError::new(error.code, message).with_request_id(request_id),
        ));
    }
    Ok(Answer::Success(Output {
        key_id: body.key_id,
        plaintext: body.plaintext,
        ciphertext_blob: body.ciphertext_blob,
        source_key_id: body.source_key_id,
        request_id,
    }))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum LegacyCode {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LegacyBody {
    code: Option<LegacyCode>,
    message: Option<String>,
    code_desc: Option<String>,
    request_id: Option<String>,
    key_id: Option<String>,
    plaintext: Option<Zeroizing<String>>,
    ciphertext_blob: Option<String>,
    source_key_id: Option<String>,
}

/// Reads a legacy API 2.0 answer body: `code` 0 is success, anything else an error.
pub(crate) fn parse_legacy(body: &[u8]) -> Result<Answer, AnswerError> {
    let body: LegacyBody = serde_json::from_slice(body).map_err(|err| malformed(&err))?;
    let code = match body.code {
        Some(LegacyCode::Number(n)) => n,
        Some(LegacyCode::Text(text)) => text.trim().parse().map_err(|_| {
            AnswerError::Malformed("code is neither a number nor numeric text".to_owned())
        })?,
        None => return Err(AnswerError::Missing("code")),
    };
    let request_id = body.request_id.unwrap_or_default();
    if code != 0 {
        let message = body.message.unwrap_or_default();
        let error = legacy_error(code, body.code_desc.as_deref(), message);
        return Ok(Answer::Failure(error.with_request_id(request_id)));
    }
    Ok(Answer::Success(Output {
        key_id: body.key_id,
        plaintext: body.plaintext,
        ciphertext_blob: body.ciphertext_blob,
        source_key_id: body.source_key_id,
        request_id,
    }))
}

/// An error from a non-zero legacy code: `codeDesc` is the code when present, else the number.
fn legacy_error(code: i64, code_desc: Option<&str>, message: String) -> KmsError {
    match code_desc.map(str::trim).filter(|desc| !desc.is_empty()) {
        Some(desc) => KmsError::new(desc, message),
        None => KmsError {
            kind: legacy_kind(code),
            code: code.to_string(),
            message,
            request_id: String::new(),
        },
    }
}

/// The class of a numeric legacy code (the inverse of [`KmsErrorKind::legacy_code`], plus the
/// generic 2.0 codes for expiry and replay).
pub(crate) fn legacy_kind(code: i64) -> KmsErrorKind {
    match code {
        4100 | 4200 | 4500 => KmsErrorKind::Auth,
        4300 => KmsErrorKind::KeyDisabled,
        4400 => KmsErrorKind::Throttled,
        5000 => KmsErrorKind::KeyNotFound,
        5001.. => KmsErrorKind::Server,
        _ => KmsErrorKind::InvalidParameter,
    }
}

/// Whether an error code says the request timestamp was refused (a clock-skew symptom).
pub(crate) fn is_clock_error(code: &str) -> bool {
    matches!(code, "AuthFailure.SignatureExpire" | "4200" | "4500")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_serialize_as_json_and_as_legacy_pairs() {
        let params = Params::default()
            .text("KeyId", "k1")
            .number("NumberOfBytes", Some(24))
            .number("Absent", None)
            .non_empty("EncryptionContext", "");
        let json = serde_json::to_string(&params).unwrap();
        assert_eq!(json, r#"{"KeyId":"k1","NumberOfBytes":24}"#);
        let pairs = params.legacy_pairs();
        assert_eq!(pairs[0], ("keyId".to_owned(), Cow::Borrowed("k1")));
        assert_eq!(pairs[1].0, "numberOfBytes");
        assert_eq!(pairs[1].1, "24");
        assert_eq!(pairs.len(), 2);
    }

    #[test]
    fn api3_success_and_error() {
        let ok = br#"{"Response":{"KeyId":"k","Plaintext":"AAAA","CiphertextBlob":"b",
            "RequestId":"r1","Extra":1}}"#;
        let Answer::Success(out) = parse_api3(ok).unwrap() else {
            panic!("expected success")
        };
        assert_eq!(out.key_id.as_deref(), Some("k"));
        assert_eq!(out.plaintext.as_deref().map(String::as_str), Some("AAAA"));
        assert_eq!(out.request_id, "r1");
        assert!(!format!("{out:?}").contains("AAAA"));

        let err = br#"{"Response":{"Error":{"Code":"ResourceUnavailable.CmkNotFound",
            "Message":"no key"},"RequestId":"r2"}}"#;
        let Answer::Failure(err) = parse_api3(err).unwrap() else {
            panic!("expected failure")
        };
        assert_eq!(err.kind, KmsErrorKind::KeyNotFound);
        assert_eq!(err.request_id, "r2");
        assert_eq!(err.message, "no key");
    }

    #[test]
    fn api3_malformed_answers_keep_no_text() {
        let secret = br#"{"Response":{"Plaintext":"c2VjcmV0"#;
        let err = parse_api3(secret).unwrap_err();
        assert!(!err.to_string().contains("c2Vj"), "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");

        let typed = br#"{"Response":{"Plaintext":12345678}}"#;
        let err = parse_api3(typed).unwrap_err();
        assert!(!err.to_string().contains("12345678"), "{err}");

        assert!(matches!(
            parse_api3(br#"{"Other":{}}"#).unwrap_err(),
            AnswerError::Missing(_)
        ));
    }

    #[test]
    fn legacy_success_and_errors() {
        let ok = br#"{"code":0,"message":"","codeDesc":"Success","requestId":"r",
            "keyId":"k","plaintext":"AAAA","ciphertextBlob":"b"}"#;
        let Answer::Success(out) = parse_legacy(ok).unwrap() else {
            panic!("expected success")
        };
        assert_eq!(out.ciphertext_blob.as_deref(), Some("b"));

        let numeric = br#"{"code":4100,"message":"bad signature","requestId":"r"}"#;
        let Answer::Failure(err) = parse_legacy(numeric).unwrap() else {
            panic!("expected failure")
        };
        assert_eq!((err.kind, err.code.as_str()), (KmsErrorKind::Auth, "4100"));

        let described = br#"{"code":"5000","codeDesc":"ResourceUnavailable.CmkDisabled",
            "message":"m"}"#;
        let Answer::Failure(err) = parse_legacy(described).unwrap() else {
            panic!("expected failure")
        };
        assert_eq!(err.code, "ResourceUnavailable.CmkDisabled");
        assert_eq!(err.kind, KmsErrorKind::KeyDisabled);

        assert!(matches!(
            parse_legacy(br#"{"message":"x"}"#).unwrap_err(),
            AnswerError::Missing("code")
        ));
    }

    #[test]
    fn legacy_kinds_invert_the_project_mapping() {
        let kinds = [
            KmsErrorKind::InvalidParameter,
            KmsErrorKind::Auth,
            KmsErrorKind::KeyDisabled,
            KmsErrorKind::Throttled,
            KmsErrorKind::KeyNotFound,
            KmsErrorKind::Server,
        ];
        for kind in kinds {
            assert_eq!(legacy_kind(kind.legacy_code()), kind);
        }
    }
}
