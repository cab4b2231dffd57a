//! Answers in the two shapes: `{"Response": {...}}` (API 3.0) and the flat 2.0 object.
//!
//! Bodies are written into zeroizing buffers, since some carry a plaintext data key.

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::params::lower_camel_name;
use crate::kms::KmsError;

/// Room reserved up front so that the buffer holding a plaintext key is not reallocated (which
/// would leave an unwiped copy behind) for ordinary answers.
const BODY_CAPACITY: usize = 4096;

/// The 2.0 `code` for an expired timestamp.
const LEGACY_EXPIRED_CODE: i64 = 4200;

/// Which API shape to answer in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// API 3.0: `{"Response": {...,"RequestId"}}`.
    V3,
    /// API 2.0: `{"code":0,"message":"","codeDesc":"Success",...,"requestId"}`.
    Legacy,
}

/// One field value of a successful answer.
pub enum Field {
    /// Text.
    Text(String),
    /// Text that is secret (base64 of a plaintext key), wiped after use.
    Secret(Zeroizing<String>),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A nested value (objects and arrays), with 3.0 names.
    Json(Value),
}

/// The fields of a successful answer, in order, with their 3.0 names.
#[derive(Default)]
pub struct Reply {
    fields: Vec<(&'static str, Field)>,
}

impl Reply {
    /// An answer with no fields besides the request id.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a field.
    pub fn with(mut self, name: &'static str, value: Field) -> Self {
        self.fields.push((name, value));
        self
    }

    /// Adds a text field.
    pub fn text(self, name: &'static str, value: impl Into<String>) -> Self {
        self.with(name, Field::Text(value.into()))
    }

    /// Renders the answer in `style`.
    pub fn render(&self, style: Style, request_id: &str) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(BODY_CAPACITY));
        match style {
            Style::V3 => {
                out.extend_from_slice(b"{\"Response\":{");
                for (name, value) in &self.fields {
                    write_field(&mut out, name, value, false);
                    out.push(b',');
                }
                write_field(
                    &mut out,
                    "RequestId",
                    &Field::Text(request_id.into()),
                    false,
                );
                out.extend_from_slice(b"}}");
            }
            Style::Legacy => {
                out.extend_from_slice(b"{\"code\":0,\"message\":\"\",\"codeDesc\":\"Success\",");
                for (name, value) in &self.fields {
                    write_field(&mut out, name, value, true);
                    out.push(b',');
                }
                write_field(&mut out, "RequestId", &Field::Text(request_id.into()), true);
                out.push(b'}');
            }
        }
        out
    }
}

/// Renders an error in `style`.
pub fn render_error(style: Style, err: &KmsError, request_id: &str) -> Zeroizing<Vec<u8>> {
    let value = match style {
        Style::V3 => serde_json::json!({
            "Response": {
                "Error": { "Code": err.code, "Message": err.message },
                "RequestId": request_id,
            }
        }),
        Style::Legacy => serde_json::json!({
            "code": legacy_code(err),
            "message": err.message,
            "codeDesc": err.code,
            "requestId": request_id,
        }),
    };
    Zeroizing::new(serde_json::to_vec(&value).expect("a JSON value always serializes"))
}

/// The numeric 2.0 code of an error.
pub fn legacy_code(err: &KmsError) -> i64 {
    if err.code == "AuthFailure.SignatureExpire" {
        return LEGACY_EXPIRED_CODE;
    }
    err.kind.legacy_code()
}

fn write_field(out: &mut Vec<u8>, name: &str, value: &Field, lower_camel: bool) {
    let name = if lower_camel {
        lower_camel_name(name)
    } else {
        name.to_owned()
    };
    write_json(out, &name);
    out.push(b':');
    match value {
        Field::Text(text) => write_json(out, text),
        Field::Secret(text) => write_json(out, text.as_str()),
        Field::Int(number) => write_json(out, number),
        Field::Bool(flag) => write_json(out, flag),
        Field::Json(nested) if lower_camel => write_json(out, &lower_camel_keys(nested)),
        Field::Json(nested) => write_json(out, nested),
    }
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("writing JSON into memory cannot fail");
}

fn lower_camel_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(name, inner)| (lower_camel_name(name), lower_camel_keys(inner)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(lower_camel_keys).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &[u8]) -> Value {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn v3_wraps_fields_in_response() {
        let reply = Reply::new()
            .text("KeyId", "k")
            .with("Plaintext", Field::Secret(Zeroizing::new("cA==".into())))
            .with("Keys", Field::Json(serde_json::json!([{"KeyId": "k"}])));
        let body = parse(&reply.render(Style::V3, "r1"));
        assert_eq!(body["Response"]["KeyId"], "k");
        assert_eq!(body["Response"]["Plaintext"], "cA==");
        assert_eq!(body["Response"]["Keys"][0]["KeyId"], "k");
        assert_eq!(body["Response"]["RequestId"], "r1");
    }

    #[test]
    fn legacy_is_flat_and_lower_camel() {
        let reply = Reply::new()
            .text("CiphertextBlob", "b")
            .with("TotalCount", Field::Int(2))
            .with(
                "KeyMetadata",
                Field::Json(serde_json::json!({"KeyState": "Enabled"})),
            );
        let body = parse(&reply.render(Style::Legacy, "r2"));
        assert_eq!(body["code"], 0);
        assert_eq!(body["codeDesc"], "Success");
        assert_eq!(body["ciphertextBlob"], "b");
        assert_eq!(body["totalCount"], 2);
        assert_eq!(body["keyMetadata"]["keyState"], "Enabled");
        assert_eq!(body["requestId"], "r2");
    }

    #[test]
    fn errors_in_both_shapes() {
        let err = KmsError::key_not_found("k");
        let body = parse(&render_error(Style::V3, &err, "r3"));
        assert_eq!(
            body["Response"]["Error"]["Code"],
            "ResourceUnavailable.CmkNotFound"
        );
        assert_eq!(body["Response"]["RequestId"], "r3");

        let body = parse(&render_error(Style::Legacy, &err, "r4"));
        assert_eq!(body["code"], 5000);
        assert_eq!(body["codeDesc"], "ResourceUnavailable.CmkNotFound");
        let expired = KmsError::new("AuthFailure.SignatureExpire", "old");
        assert_eq!(legacy_code(&expired), 4200);
    }
}
