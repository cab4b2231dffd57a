//! The Tencent Cloud KMS back-end: request signing, and a client for API 3.0 and the legacy 2.0.

mod api;
pub mod config;
pub mod credentials;
pub mod options;
pub mod sign;
mod transport;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroizing;

pub use credentials::Credentials;
pub use options::{ApiVersion, Endpoint, TencentOptions, TencentSetupError, TransportOptions};
pub use transport::{CODE_BAD_ANSWER, CODE_BAD_STATUS, CODE_NETWORK};

use self::api::{Output, Params};
use self::transport::Transport;
use crate::context::EncryptionContext;
use crate::kms::{
    DecryptRequest, DecryptedDataKey, GenerateDataKeyRequest, GeneratedDataKey, KeyLocation, Kms,
    KmsError, KmsErrorKind, MAX_DATA_KEY_LEN,
};
use crate::secret::DataKey;

/// The back-end name recorded in file headers.
pub const BACKEND_NAME: &str = "tencent";

/// The most plaintext bytes Encrypt accepts.
pub const MAX_ENCRYPT_PLAINTEXT_LEN: usize = 4096;

/// What Encrypt returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedBlob {
    /// The master key that encrypted.
    pub key_id: String,
    /// The ciphertext blob, an opaque string.
    pub ciphertext_blob: String,
    /// The request id of the call.
    pub request_id: String,
}

/// What ReEncrypt returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReEncryptedBlob {
    /// The master key the blob is now under.
    pub key_id: String,
    /// The master key it was under before, when the KMS says.
    pub source_key_id: Option<String>,
    /// The new ciphertext blob.
    pub ciphertext_blob: String,
    /// The request id of the call.
    pub request_id: String,
}

/// A client of Tencent Cloud KMS (or of `datakey kms serve`), over API 3.0 or the legacy 2.0.
pub struct TencentKms {
    options: TencentOptions,
    transport: Transport,
}

impl std::fmt::Debug for TencentKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TencentKms")
            .field("options", &self.options)
            .field("endpoint", &self.transport.endpoint().url)
            .finish_non_exhaustive()
    }
}

impl TencentKms {
    /// A client with the given options and credentials; the region and endpoint are checked
    /// here, before any request.
    pub fn new(
        options: TencentOptions,
        credentials: Credentials,
    ) -> Result<Self, TencentSetupError> {
        options::validate_region(&options.region, options.api)?;
        let endpoint = Endpoint::resolve(&options)?;
        log::debug!(
            "tencent kms: api {}, region {}, endpoint {}",
            options.api.as_str(),
            options.region,
            endpoint.url
        );
        let transport = Transport::new(&options, endpoint, credentials);
        Ok(Self { options, transport })
    }

    /// A client whose credentials come from the environment or the credentials file.
    pub fn from_env(
        options: TencentOptions,
        credentials_profile: Option<&str>,
    ) -> Result<Self, TencentSetupError> {
        options::validate_region(&options.region, options.api)?;
        Self::new(options, Credentials::load(credentials_profile)?)
    }

    /// The options this client was made with.
    pub fn options(&self) -> &TencentOptions {
        &self.options
    }

    /// Encrypts up to 4 KiB under `key_id` (the Encrypt action).
    pub fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<EncryptedBlob, KmsError> {
        if plaintext.is_empty() || plaintext.len() > MAX_ENCRYPT_PLAINTEXT_LEN {
            return Err(KmsError::invalid_parameter_value(format!(
                "Plaintext is {} bytes, not 1 to {MAX_ENCRYPT_PLAINTEXT_LEN}",
                plaintext.len()
            )));
        }
        let encoded = Zeroizing::new(BASE64.encode(plaintext));
        let context = context.to_canonical_json();
        let params = Params::default()
            .text("KeyId", key_id)
            .text("Plaintext", &encoded)
            .non_empty("EncryptionContext", &context);
        let output = self.transport.call("Encrypt", &params)?;
        read_output(output, |output| {
            Ok(EncryptedBlob {
                key_id: required(output.key_id, "Encrypt", "KeyId")?,
                ciphertext_blob: required(output.ciphertext_blob, "Encrypt", "CiphertextBlob")?,
                request_id: output.request_id,
            })
        })
    }

    /// Moves a blob under `destination_key_id` without exposing its plaintext (ReEncrypt).
    pub fn re_encrypt(
        &self,
        ciphertext_blob: &str,
        source_context: &EncryptionContext,
        destination_key_id: &str,
        destination_context: &EncryptionContext,
    ) -> Result<ReEncryptedBlob, KmsError> {
        let source = source_context.to_canonical_json();
        let destination = destination_context.to_canonical_json();
        let params = Params::default()
            .text("CiphertextBlob", ciphertext_blob)
            .text("DestinationKeyId", destination_key_id)
            .non_empty("SourceEncryptionContext", &source)
            .non_empty("DestinationEncryptionContext", &destination);
        let output = self.transport.call("ReEncrypt", &params)?;
        read_output(output, |output| {
            Ok(ReEncryptedBlob {
                key_id: required(output.key_id, "ReEncrypt", "KeyId")?,
                source_key_id: output.source_key_id,
                ciphertext_blob: required(output.ciphertext_blob, "ReEncrypt", "CiphertextBlob")?,
                request_id: output.request_id,
            })
        })
    }
}

impl Kms for TencentKms {
    fn location(&self) -> KeyLocation {
        KeyLocation {
            backend: BACKEND_NAME.to_owned(),
            region: Some(self.options.region.clone()),
            // The resolved URL, whose path (`/` or `/v2/index.php`) tells decrypt the API.
            endpoint: self
                .options
                .endpoint
                .as_ref()
                .map(|_| self.transport.endpoint().url.clone()),
        }
    }

    fn generate_data_key(
        &self,
        request: &GenerateDataKeyRequest,
    ) -> Result<GeneratedDataKey, KmsError> {
        let expected_len = request.validate()?;
        let context = request.context.to_canonical_json();
        let mut params = Params::default().text("KeyId", &request.key_id);
        if let Some(spec) = request.key_spec {
            params = params.text("KeySpec", spec.as_str());
        }
        let params = params
            .number("NumberOfBytes", request.number_of_bytes)
            .non_empty("EncryptionContext", &context);
        let output = self.transport.call("GenerateDataKey", &params)?;
        read_output(output, |output| {
            let (key_id, plaintext) = key_and_plaintext(&output, "GenerateDataKey")?;
            check_key_len(&plaintext, expected_len, "GenerateDataKey")?;
            Ok(GeneratedDataKey {
                key_id,
                plaintext,
                ciphertext_blob: required(
                    output.ciphertext_blob,
                    "GenerateDataKey",
                    "CiphertextBlob",
                )?,
                request_id: output.request_id,
            })
        })
    }

    fn decrypt(&self, request: &DecryptRequest) -> Result<DecryptedDataKey, KmsError> {
        if request.ciphertext_blob.is_empty() {
            return Err(KmsError::missing_parameter("CiphertextBlob is required"));
        }
        let context = request.context.to_canonical_json();
        let params = Params::default()
            .text("CiphertextBlob", &request.ciphertext_blob)
            .non_empty("EncryptionContext", &context);
        let output = self.transport.call("Decrypt", &params)?;
        read_output(output, |output| {
            let (key_id, plaintext) = key_and_plaintext(&output, "Decrypt")?;
            if plaintext.len() > MAX_DATA_KEY_LEN as usize {
                let message = format!(
                    "Decrypt: Plaintext is {} bytes, more than a data key",
                    plaintext.len()
                );
                return Err(bad_answer(message));
            }
            Ok(DecryptedDataKey {
                key_id,
                plaintext,
                request_id: output.request_id,
            })
        })
    }
}

/// An answer that lacks something or holds something wrong (never retried).
fn bad_answer(message: String) -> KmsError {
    KmsError {
        kind: KmsErrorKind::Transport,
        code: CODE_BAD_ANSWER.to_owned(),
        message,
        request_id: String::new(),
    }
}

fn required(value: Option<String>, action: &str, field: &str) -> Result<String, KmsError> {
    value
        .filter(|value| !value.is_empty())
        .ok_or_else(|| bad_answer(format!("{action}: the answer has no {field}")))
}

/// Reads an answer with `read`; an error it finds carries the answer's request id.
fn read_output<T>(
    output: Output,
    read: impl FnOnce(Output) -> Result<T, KmsError>,
) -> Result<T, KmsError> {
    let request_id = output.request_id.clone();
    read(output).map_err(|err| err.with_request_id(request_id))
}

/// The `KeyId` and the decoded `Plaintext` of an answer.
fn key_and_plaintext(output: &Output, action: &str) -> Result<(String, DataKey), KmsError> {
    let key_id = required(output.key_id.clone(), action, "KeyId")?;
    let encoded = output
        .plaintext
        .as_ref()
        .filter(|text| !text.is_empty())
        .ok_or_else(|| bad_answer(format!("{action}: the answer has no Plaintext")))?;
    let plaintext = decode_key(encoded, action)?;
    Ok((key_id, plaintext))
}

/// Decodes base64 straight into a buffer that is wiped on drop.
fn decode_key(encoded: &str, action: &str) -> Result<DataKey, KmsError> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(encoded.len() / 4 * 3 + 3));
    BASE64
        .decode_vec(encoded.trim(), &mut bytes)
        .map_err(|_| bad_answer(format!("{action}: Plaintext is not valid base64")))?;
    Ok(DataKey::from_slice(&bytes))
}

fn check_key_len(key: &DataKey, expected: usize, action: &str) -> Result<(), KmsError> {
    if key.len() == expected {
        return Ok(());
    }
    Err(bad_answer(format!(
        "{action}: the data key is {} bytes, {expected} were asked for",
        key.len()
    )))
}
