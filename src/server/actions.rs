//! The KMS actions `kms serve` answers, with the service's parameter names and checks, over the
//! local keyring.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;
use zeroize::Zeroizing;

use super::params::Params;
use super::reply::{Field, Reply};
use crate::context::EncryptionContext;
use crate::kms::keyring::KeyState;
use crate::kms::local::{KeyInfo, LocalKms};
use crate::kms::{DecryptRequest, GenerateDataKeyRequest, KeySpec, Kms, KmsError};

/// The only key usage this server offers.
const KEY_USAGE: &str = "ENCRYPT_DECRYPT";

/// `Type` of a key whose material the KMS made (the only type offered).
const KEY_TYPE_DEFAULT: i64 = 1;

/// Where this server's keys come from, as DescribeKey reports it.
const KEY_ORIGIN: &str = "TENCENT_KMS";

/// The prefix the service reserves for its own aliases.
const RESERVED_ALIAS_PREFIX: &str = "KMS-";

/// ListKeys: the default and largest `Limit`.
const LIST_DEFAULT_LIMIT: i64 = 10;
const LIST_MAX_LIMIT: i64 = 200;

/// Every action name answered, for error messages and tests.
pub const ACTIONS: [&str; 9] = [
    "GenerateDataKey",
    "Decrypt",
    "Encrypt",
    "ReEncrypt",
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "EnableKey",
    "DisableKey",
];

/// Runs `action` with `params` against the keyring.
pub fn dispatch(kms: &LocalKms, action: &str, params: &Params) -> Result<Reply, KmsError> {
    match action {
        "GenerateDataKey" => generate_data_key(kms, params),
        "Decrypt" => decrypt(kms, params),
        "Encrypt" => encrypt(kms, params),
        "ReEncrypt" => re_encrypt(kms, params),
        "CreateKey" => create_key(kms, params),
        "DescribeKey" => describe_key(kms, params),
        "ListKeys" => list_keys(kms, params),
        "EnableKey" => set_state(kms, params, KeyState::Enabled),
        "DisableKey" => set_state(kms, params, KeyState::Disabled),
        _ => Err(KmsError::new(
            "InvalidAction",
            format!("action {action:?} is not supported"),
        )),
    }
}

fn generate_data_key(kms: &LocalKms, params: &Params) -> Result<Reply, KmsError> {
    let key_spec = optional_text(params, "KeySpec")?
        .map(KeySpec::parse)
        .transpose()?;
    let number_of_bytes = match params.integer("NumberOfBytes")? {
        Some(n) => Some(u32::try_from(n).map_err(|_| {
            KmsError::invalid_parameter_value(format!("NumberOfBytes {n} is out of range"))
        })?),
        None => None,
    };
    let request = GenerateDataKeyRequest {
        key_id: params.required_text("KeyId")?.to_owned(),
        key_spec,
        number_of_bytes,
        context: context(params, "EncryptionContext")?,
    };

    let made = kms.generate_data_key(&request)?;
    let plaintext = Zeroizing::new(BASE64.encode(made.plaintext.as_bytes()));
    Ok(Reply::new()
        .text("KeyId", made.key_id)
        .with("Plaintext", Field::Secret(plaintext))
        .text("CiphertextBlob", made.ciphertext_blob))
}

fn decrypt(kms: &LocalKms, params: &Params) -> Result<Reply, KmsError> {
    let request = DecryptRequest {
        ciphertext_blob: params.required_text("CiphertextBlob")?.to_owned(),
        context: context(params, "EncryptionContext")?,
    };
    let opened = kms.decrypt(&request)?;
    let plaintext = Zeroizing::new(BASE64.encode(opened.plaintext.as_bytes()));
    Ok(Reply::new()
        .text("KeyId", opened.key_id)
        .with("Plaintext", Field::Secret(plaintext)))
}

fn encrypt(kms: &LocalKms, params: &Params) -> Result<Reply, KmsError> {
    let key_name = params.required_text("KeyId")?;
    let plaintext = Zeroizing::new(
        BASE64
            .decode(params.required_text("Plaintext")?)
            .map_err(|_| KmsError::invalid_parameter_value("Plaintext is not base64"))?,
    );
    let context = context(params, "EncryptionContext")?;

    let (key_id, blob) = kms.encrypt(key_name, &plaintext, &context)?;
    Ok(Reply::new()
        .text("CiphertextBlob", blob)
        .text("KeyId", key_id))
}

fn re_encrypt(kms: &LocalKms, params: &Params) -> Result<Reply, KmsError> {
    let blob = params.required_text("CiphertextBlob")?;
    let source_context = context(params, "SourceEncryptionContext")?;
    let destination_context = context(params, "DestinationEncryptionContext")?;
    let destination = optional_text(params, "DestinationKeyId")?;

    let (source_key_id, plaintext) = kms.unwrap(blob, &source_context)?;
    let destination = destination.unwrap_or(&source_key_id);
    let (key_id, blob) = kms.encrypt(destination, plaintext.as_bytes(), &destination_context)?;
    Ok(Reply::new()
        .text("CiphertextBlob", blob)
        .text("KeyId", key_id)
        .text("SourceKeyId", source_key_id)
        .with("ReEncrypted", Field::Bool(true)))
}

fn create_key(kms: &LocalKms, params: &Params) -> Result<Reply, KmsError> {
    let alias = params.required_text("Alias")?;
    if alias.starts_with(RESERVED_ALIAS_PREFIX) {
        return Err(KmsError::invalid_parameter_value(format!(
            "Alias {alias:?} may not start with {RESERVED_ALIAS_PREFIX}"
        )));
    }
    if let Some(usage) = optional_text(params, "KeyUsage")?
        && usage != KEY_USAGE
    {
        return Err(KmsError::new(
            "UnsupportedOperation",
            format!("KeyUsage {usage:?} is not supported; only {KEY_USAGE}"),
        ));
    }
    if let Some(kind) = params.integer("Type")?
        && kind != KEY_TYPE_DEFAULT
    {
        return Err(KmsError::new(
            "UnsupportedOperation",
            format!("Type {kind} is not supported; only {KEY_TYPE_DEFAULT}"),
        ));
    }

    let description = params.text("Description")?.unwrap_or_default();
    let info = kms.create_key(Some(alias), description)?;
    Ok(Reply::new()
        .text("KeyId", info.key_id)
        .text("Alias", info.alias.unwrap_or_default())
        .with("CreateTime", Field::Int(info.create_time))
        .text("Description", info.description)
        .text("KeyState", info.state.as_str())
        .text("KeyUsage", KEY_USAGE)
        .with("TagCode", Field::Int(0))
        .text("TagMsg", ""))
}

fn describe_key(kms: &LocalKms, params: &Params) -> Result<Reply, KmsError> {
    let info = kms.describe(params.required_text("KeyId")?)?;
    Ok(Reply::new().with("KeyMetadata", Field::Json(key_metadata(&info))))
}

fn list_keys(kms: &LocalKms, params: &Params) -> Result<Reply, KmsError> {
    let offset = params.integer("Offset")?.unwrap_or(0);
    let limit = params.integer("Limit")?.unwrap_or(LIST_DEFAULT_LIMIT);
    if offset < 0 {
        return Err(KmsError::invalid_parameter_value(format!(
            "Offset {offset} is negative"
        )));
    }
    if !(1..=LIST_MAX_LIMIT).contains(&limit) {
        return Err(KmsError::invalid_parameter_value(format!(
            "Limit {limit} is outside 1..={LIST_MAX_LIMIT}"
        )));
    }

    let all = kms.list()?;
    let keys: Vec<_> = all
        .iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(limit as usize)
        .map(|info| json!({ "KeyId": info.key_id }))
        .collect();
    Ok(Reply::new()
        .with("Keys", Field::Json(keys.into()))
        .with("TotalCount", Field::Int(all.len() as i64)))
}

fn set_state(kms: &LocalKms, params: &Params, state: KeyState) -> Result<Reply, KmsError> {
    kms.set_state(params.required_text("KeyId")?, state)?;
    Ok(Reply::new())
}

/// DescribeKey's `KeyMetadata`.
fn key_metadata(info: &KeyInfo) -> serde_json::Value {
    json!({
        "KeyId": info.key_id,
        "Alias": info.alias.clone().unwrap_or_default(),
        "CreateTime": info.create_time,
        "Description": info.description,
        "KeyState": info.state.as_str(),
        "KeyUsage": KEY_USAGE,
        "Type": KEY_TYPE_DEFAULT,
        "CreatorUin": 0,
        "KeyRotationEnabled": false,
        "Owner": "user",
        "NextRotateTime": 0,
        "DeletionDate": 0,
        "Origin": KEY_ORIGIN,
        "ValidTo": 0,
    })
}

/// An optional text parameter; empty counts as absent.
fn optional_text<'a>(params: &'a Params, name: &str) -> Result<Option<&'a str>, KmsError> {
    Ok(params.text(name)?.filter(|text| !text.is_empty()))
}

/// An encryption-context parameter: JSON text of string pairs, absent meaning empty.
fn context(params: &Params, name: &str) -> Result<EncryptionContext, KmsError> {
    let text = params.text(name)?.unwrap_or_default();
    EncryptionContext::from_json(text)
        .map_err(|err| KmsError::invalid_parameter_value(format!("{name}: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kms() -> (tempfile::TempDir, LocalKms) {
        let dir = tempfile::tempdir().unwrap();
        let (kms, _) = LocalKms::open_or_create_default(dir.path().join("k.json")).unwrap();
        (dir, kms)
    }

    fn call(kms: &LocalKms, action: &str, body: serde_json::Value) -> Result<Reply, KmsError> {
        let params = Params::json(body.to_string().as_bytes()).unwrap();
        dispatch(kms, action, &params)
    }

    fn fields(reply: &Reply) -> serde_json::Value {
        let body = reply.render(super::super::reply::Style::V3, "r");
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["Response"].clone()
    }

    #[test]
    fn create_describe_disable_list() {
        let (_dir, kms) = kms();
        let made = fields(
            &call(
                &kms,
                "CreateKey",
                json!({"Alias": "team", "Description": "d"}),
            )
            .unwrap(),
        );
        let id = made["KeyId"].as_str().unwrap().to_owned();
        assert_eq!(made["KeyState"], "Enabled");

        call(&kms, "DisableKey", json!({ "KeyId": id })).unwrap();
        let described =
            fields(&call(&kms, "DescribeKey", json!({ "KeyId": "alias/team" })).unwrap());
        assert_eq!(described["KeyMetadata"]["KeyState"], "Disabled");
        assert_eq!(described["KeyMetadata"]["KeyId"], id.as_str());

        let listed = fields(&call(&kms, "ListKeys", json!({ "Offset": 1, "Limit": 5 })).unwrap());
        assert_eq!(listed["TotalCount"], 2);
        assert_eq!(listed["Keys"][0]["KeyId"], id.as_str());
    }

    #[test]
    fn encrypt_re_encrypt_decrypt() {
        let (_dir, kms) = kms();
        let other = kms.create_key(Some("other"), "").unwrap();
        let sealed = json!({
            "KeyId": "alias/default",
            "Plaintext": "aGk=",
            "EncryptionContext": "{\"a\":\"1\"}",
        });
        let sealed = fields(&call(&kms, "Encrypt", sealed).unwrap());
        let moved = fields(
            &call(
                &kms,
                "ReEncrypt",
                json!({
                    "CiphertextBlob": sealed["CiphertextBlob"],
                    "SourceEncryptionContext": "{\"a\":\"1\"}",
                    "DestinationKeyId": "alias/other",
                }),
            )
            .unwrap(),
        );
        assert_eq!(moved["KeyId"], other.key_id.as_str());
        assert_eq!(moved["SourceKeyId"], sealed["KeyId"]);
        assert_eq!(moved["ReEncrypted"], true);

        let opened = fields(
            &call(
                &kms,
                "Decrypt",
                json!({ "CiphertextBlob": moved["CiphertextBlob"] }),
            )
            .unwrap(),
        );
        assert_eq!(opened["Plaintext"], "aGk=");
    }

    #[test]
    fn parameter_errors_have_service_codes() {
        let (_dir, kms) = kms();
        let cases = [
            (
                "GenerateDataKey",
                json!({"KeySpec": "AES_256"}),
                "MissingParameter",
            ),
            (
                "GenerateDataKey",
                json!({"KeyId": "alias/default", "NumberOfBytes": -1}),
                "InvalidParameterValue",
            ),
            (
                "GenerateDataKey",
                json!({"KeyId": "alias/default", "NumberOfBytes": "8"}),
                "InvalidParameter",
            ),
            (
                "GenerateDataKey",
                json!({"KeyId": "alias/default", "KeySpec": "AES_256", "EncryptionContext": "[1]"}),
                "InvalidParameterValue",
            ),
            (
                "Encrypt",
                json!({"KeyId": "alias/default", "Plaintext": "%%"}),
                "InvalidParameterValue",
            ),
            (
                "CreateKey",
                json!({"Alias": "KMS-x"}),
                "InvalidParameterValue",
            ),
            (
                "CreateKey",
                json!({"Alias": "default"}),
                "InvalidParameterValue.AliasAlreadyExists",
            ),
            (
                "CreateKey",
                json!({"Description": "no alias"}),
                "MissingParameter",
            ),
            ("ListKeys", json!({"Limit": 0}), "InvalidParameterValue"),
            (
                "DescribeKey",
                json!({"KeyId": "nope"}),
                "ResourceUnavailable.CmkNotFound",
            ),
            ("Nope", json!({}), "InvalidAction"),
        ];
        for (action, body, code) in cases {
            let err = call(&kms, action, body.clone()).err().unwrap();
            assert_eq!(err.code, code, "{action} {body}");
        }
    }
}
