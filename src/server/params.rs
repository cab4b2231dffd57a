//! An action's parameters, from a JSON body (API 3.0) or a form / query string (v1 and 2.0).
//!
//! Actions ask for parameters by their API 3.0 name (`KeyId`); the legacy 2.0 API spells the same
//! parameters in lowerCamel case (`keyId`), which [`Params::legacy_form`] translates.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::kms::KmsError;

/// The most parameters a form may carry.
const MAX_FORM_PARAMS: usize = 256;

/// The parameters of one call.
pub enum Params {
    /// A JSON object (API 3.0 with TC3): typed values.
    Json(Map<String, Value>),
    /// Form fields (API 3.0 with a v1 signature, or 2.0): every value is text.
    Form {
        /// The fields, by name as sent.
        fields: BTreeMap<String, Zeroizing<String>>,
        /// Whether names are in lowerCamel case (2.0).
        lower_camel: bool,
    },
}

impl Params {
    /// Parses a JSON body, which must be one object.
    pub fn json(body: &[u8]) -> Result<Self, KmsError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Self::Json(map)),
            Ok(_) => Err(KmsError::invalid_parameter(
                "the request body must be a JSON object",
            )),
            Err(err) => Err(KmsError::invalid_parameter(format!(
                "the request body is not valid JSON: {err}"
            ))),
        }
    }

    /// Parses `application/x-www-form-urlencoded` text (a POST body or a query string).
    pub fn form_fields(text: &[u8]) -> Result<BTreeMap<String, Zeroizing<String>>, KmsError> {
        let mut fields = BTreeMap::new();
        for (name, value) in form_urlencoded::parse(text) {
            if fields.len() >= MAX_FORM_PARAMS {
                return Err(KmsError::invalid_parameter("too many parameters"));
            }
            let value = Zeroizing::new(value.into_owned());
            if fields.insert(name.to_string(), value).is_some() {
                return Err(KmsError::invalid_parameter(format!(
                    "parameter {name:?} is repeated"
                )));
            }
        }
        Ok(fields)
    }

    /// Form parameters with API 3.0 names.
    pub fn form(fields: BTreeMap<String, Zeroizing<String>>) -> Self {
        Self::Form {
            fields,
            lower_camel: false,
        }
    }

    /// Form parameters with 2.0 lowerCamel names.
    pub fn legacy_form(fields: BTreeMap<String, Zeroizing<String>>) -> Self {
        Self::Form {
            fields,
            lower_camel: true,
        }
    }

    /// A text parameter; `None` when absent (a JSON `null` counts as absent).
    pub fn text(&self, name: &str) -> Result<Option<&str>, KmsError> {
        match self {
            Self::Json(map) => match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text)),
                Some(_) => Err(KmsError::invalid_parameter(format!(
                    "{name} must be a string"
                ))),
            },
            Self::Form {
                fields,
                lower_camel,
            } => {
                let found = if *lower_camel {
                    fields.get(&lower_camel_name(name))
                } else {
                    fields.get(name)
                };
                Ok(found.map(|value| value.as_str()))
            }
        }
    }

    /// A text parameter that must be present and not empty.
    pub fn required_text(&self, name: &str) -> Result<&str, KmsError> {
        match self.text(name)? {
            Some(text) if !text.is_empty() => Ok(text),
            _ => Err(KmsError::missing_parameter(format!(
                "the parameter {name} is required"
            ))),
        }
    }

    /// An integer parameter; `None` when absent.
    pub fn integer(&self, name: &str) -> Result<Option<i64>, KmsError> {
        let not_integer = || KmsError::invalid_parameter(format!("{name} must be an integer"));
        match self {
            Self::Json(map) => match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(number)) => number.as_i64().map(Some).ok_or_else(not_integer),
                Some(_) => Err(not_integer()),
            },
            Self::Form { .. } => match self.text(name)? {
                None => Ok(None),
                Some(text) => text.trim().parse().map(Some).map_err(|_| not_integer()),
            },
        }
    }
}

/// `KeyId` becomes `keyId`: the 2.0 spelling of a 3.0 name.
pub fn lower_camel_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_are_typed() {
        let params = Params::json(br#"{"KeyId": "k", "NumberOfBytes": 32, "Bad": 1.5}"#).unwrap();
        assert_eq!(params.text("KeyId").unwrap(), Some("k"));
        assert_eq!(params.integer("NumberOfBytes").unwrap(), Some(32));
        assert_eq!(params.text("Missing").unwrap(), None);
        assert!(params.text("NumberOfBytes").is_err());
        assert!(params.integer("Bad").is_err());
        assert!(params.integer("KeyId").is_err());
    }

    #[test]
    fn json_body_must_be_an_object() {
        for body in [&b"[1]"[..], b"\"x\"", b"{", b"", b"{\"a\":1} junk"] {
            let err = Params::json(body).err().unwrap();
            assert_eq!(err.code, "InvalidParameter");
        }
    }

    #[test]
    fn legacy_names_are_lower_camel() {
        let fields = Params::form_fields(b"keyId=k%2F1&numberOfBytes=16&plus=a+b").unwrap();
        assert_eq!(fields["plus"].as_str(), "a b");
        let params = Params::legacy_form(fields);
        assert_eq!(params.text("KeyId").unwrap(), Some("k/1"));
        assert_eq!(params.integer("NumberOfBytes").unwrap(), Some(16));
        assert_eq!(lower_camel_name("CiphertextBlob"), "ciphertextBlob");
    }

    #[test]
    fn form_rejects_repeats_and_bad_integers() {
        assert!(Params::form_fields(b"a=1&a=2").is_err());
        let params = Params::form(Params::form_fields(b"NumberOfBytes=x").unwrap());
        assert!(params.integer("NumberOfBytes").is_err());
        assert!(params.required_text("KeyId").is_err());
    }
}
