//! The KMS back-end trait, modelled on the GenerateDataKey and Decrypt APIs, and its back-ends.

pub mod cache;
pub mod keyring;
pub mod local;
pub mod tencent;

use std::fmt;

use crate::context::EncryptionContext;
use crate::secret::DataKey;

/// The largest `NumberOfBytes` a GenerateDataKey call accepts.
pub const MAX_DATA_KEY_LEN: u32 = 1024;

/// The data-key size and algorithm the KMS is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySpec {
    /// A 16-byte key.
    Aes128,
    /// A 32-byte key.
    Aes256,
}

impl KeySpec {
    /// The API name, `AES_128` or `AES_256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aes128 => "AES_128",
            Self::Aes256 => "AES_256",
        }
    }

    /// The key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Self::Aes128 => 16,
            Self::Aes256 => 32,
        }
    }

    /// Parses the API name; anything else is an `InvalidParameterValue` error.
    pub fn parse(name: &str) -> Result<Self, KmsError> {
        match name {
            "AES_128" => Ok(Self::Aes128),
            "AES_256" => Ok(Self::Aes256),
            _ => Err(KmsError::invalid_parameter_value(format!(
                "KeySpec {name:?} is not one of AES_128, AES_256"
            ))),
        }
    }
}

/// The arguments of GenerateDataKey.
#[derive(Clone, Debug)]
pub struct GenerateDataKeyRequest {
    /// The master key: an id, or `alias/NAME`.
    pub key_id: String,
    /// The key spec; `number_of_bytes` wins when both are given.
    pub key_spec: Option<KeySpec>,
    /// The data-key length, 1 to 1024.
    pub number_of_bytes: Option<u32>,
    /// The context bound to the data key.
    pub context: EncryptionContext,
}

impl GenerateDataKeyRequest {
    /// A request for a data key of `spec` under `key_id`.
    pub fn new(key_id: impl Into<String>, spec: KeySpec, context: EncryptionContext) -> Self {
        Self {
            key_id: key_id.into(),
            key_spec: Some(spec),
            number_of_bytes: None,
            context,
        }
    }

    /// Checks the parameters as the service does and returns the data-key length in bytes.
    pub fn validate(&self) -> Result<usize, KmsError> {
        if self.key_id.is_empty() {
            return Err(KmsError::missing_parameter("KeyId is required"));
        }
        match (self.number_of_bytes, self.key_spec) {
            (Some(n), _) if (1..=MAX_DATA_KEY_LEN).contains(&n) => Ok(n as usize),
            (Some(n), _) => Err(KmsError::invalid_parameter_value(format!(
                "NumberOfBytes {n} is outside 1..={MAX_DATA_KEY_LEN}"
            ))),
            (None, Some(spec)) => Ok(spec.key_len()),
            (None, None) => Err(KmsError::missing_parameter(
                "one of KeySpec and NumberOfBytes is required",
            )),
        }
    }
}

/// What GenerateDataKey returns.
#[derive(Debug)]
pub struct GeneratedDataKey {
    /// The id of the master key that wrapped the data key (never an alias).
    pub key_id: String,
    /// The data key in plaintext.
    pub plaintext: DataKey,
    /// The data key wrapped under the master key, an opaque string.
    pub ciphertext_blob: String,
    /// The request id the KMS gave this call.
    pub request_id: String,
}

/// The arguments of Decrypt.
#[derive(Clone, Debug)]
pub struct DecryptRequest {
    /// A blob returned by GenerateDataKey (or Encrypt).
    pub ciphertext_blob: String,
    /// The same context given when the blob was made.
    pub context: EncryptionContext,
}

/// What Decrypt returns.
#[derive(Debug)]
pub struct DecryptedDataKey {
    /// The master key that had wrapped the data key.
    pub key_id: String,
    /// The data key in plaintext.
    pub plaintext: DataKey,
    /// The request id the KMS gave this call.
    pub request_id: String,
}

/// Which back-end a wrapped key belongs to, recorded in the file header so that `decrypt` can
/// find it again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyLocation {
    /// The back-end name: `local` or `tencent`.
    pub backend: String,
    /// The region, for a remote KMS.
    pub region: Option<String>,
    /// An endpoint override, for a remote KMS.
    pub endpoint: Option<String>,
}

/// A key-management service that makes and unwraps data keys.
pub trait Kms: Send + Sync {
    /// Where keys from this back-end are found, for the file header.
    fn location(&self) -> KeyLocation;

    /// Makes a fresh data key under a master key.
    fn generate_data_key(
        &self,
        request: &GenerateDataKeyRequest,
    ) -> Result<GeneratedDataKey, KmsError>;

    /// Unwraps a data key; the blob names its master key.
    fn decrypt(&self, request: &DecryptRequest) -> Result<DecryptedDataKey, KmsError>;
}

impl<K: Kms + ?Sized> Kms for Box<K> {
    fn location(&self) -> KeyLocation {
        (**self).location()
    }

    fn generate_data_key(
        &self,
        request: &GenerateDataKeyRequest,
    ) -> Result<GeneratedDataKey, KmsError> {
        (**self).generate_data_key(request)
    }

    fn decrypt(&self, request: &DecryptRequest) -> Result<DecryptedDataKey, KmsError> {
        (**self).decrypt(request)
    }
}

/// The class of a KMS failure, which decides the exit status and whether a retry may help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KmsErrorKind {
    /// The credentials or signature were refused.
    Auth,
    /// The ciphertext blob does not open: altered, or another context.
    InvalidCiphertext,
    /// A parameter is missing or out of range.
    InvalidParameter,
    /// The master key exists but is disabled (or otherwise not usable).
    KeyDisabled,
    /// The master key does not exist.
    KeyNotFound,
    /// The service failed; a retry may help.
    Server,
    /// The service asked the caller to slow down.
    Throttled,
    /// The service could not be reached, or answered with something unreadable.
    Transport,
}

impl KmsErrorKind {
    /// Classifies an API 3.0 error code.
    pub fn from_code(code: &str) -> Self {
        let family = code.split('.').next().unwrap_or(code);
        match code {
            "ResourceUnavailable.CmkNotFound" | "InvalidParameterValue.InvalidKeyId" => {
                return Self::KeyNotFound;
            }
            "InvalidParameterValue.InvalidCiphertext" | "FailedOperation.DecryptError" => {
                return Self::InvalidCiphertext;
            }
            "UnsupportedOperation.ServiceTemporaryUnavailable" => return Self::Server,
            _ => {}
        }
        match family {
            "AuthFailure" | "UnauthorizedOperation" => Self::Auth,
            "ResourceUnavailable" => Self::KeyDisabled,
            "RequestLimitExceeded" => Self::Throttled,
            "InternalError" | "FailedOperation" => Self::Server,
            "ClientNetworkError" | "ServerNetworkError" => Self::Transport,
            _ => Self::InvalidParameter,
        }
    }

    /// The numeric `code` of the legacy 2.0 API for this class (0 is success).
    pub fn legacy_code(self) -> i64 {
        match self {
            Self::InvalidParameter | Self::InvalidCiphertext => 4000,
            Self::Auth => 4100,
            Self::KeyDisabled => 4300,
            Self::Throttled => 4400,
            Self::KeyNotFound => 5000,
            Self::Server | Self::Transport => 5100,
        }
    }
}

/// A failed KMS call: the code, message and request id the API reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsError {
    /// The class of failure.
    pub kind: KmsErrorKind,
    /// The API 3.0 error code, such as `ResourceUnavailable.CmkNotFound`.
    pub code: String,
    /// A human-readable message (never key material).
    pub message: String,
    /// The request id, when the KMS gave one.
    pub request_id: String,
}

impl KmsError {
    /// An error with the given API code; the kind follows from the code.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        let code = code.into();
        Self {
            kind: KmsErrorKind::from_code(&code),
            code,
            message: message.into(),
            request_id: String::new(),
        }
    }

    /// Sets the request id.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = request_id.into();
        self
    }

    /// `MissingParameter`.
    pub fn missing_parameter(message: impl Into<String>) -> Self {
        Self::new("MissingParameter", message)
    }

    /// `InvalidParameterValue`.
    pub fn invalid_parameter_value(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterValue", message)
    }

    /// `InvalidParameter`.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new("InvalidParameter", message)
    }

    /// `ResourceUnavailable.CmkNotFound`.
    pub fn key_not_found(key: &str) -> Self {
        Self::new(
            "ResourceUnavailable.CmkNotFound",
            format!("master key {key:?} not found"),
        )
    }

    /// `ResourceUnavailable.CmkDisabled`.
    pub fn key_disabled(key: &str) -> Self {
        Self::new(
            "ResourceUnavailable.CmkDisabled",
            format!("master key {key:?} is disabled"),
        )
    }

    /// `InvalidParameterValue.InvalidCiphertext`.
    pub fn invalid_ciphertext(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterValue.InvalidCiphertext", message)
    }

    /// `InternalError`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("InternalError", message)
    }
}

impl fmt::Display for KmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if !self.request_id.is_empty() {
            write!(f, " (request id {})", self.request_id)?;
        }
        Ok(())
    }
}

impl std::error::Error for KmsError {}

/// A fresh request id (a UUID), for back-ends that answer locally.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(spec: Option<KeySpec>, bytes: Option<u32>) -> GenerateDataKeyRequest {
        GenerateDataKeyRequest {
            key_id: "k".into(),
            key_spec: spec,
            number_of_bytes: bytes,
            context: EncryptionContext::new(),
        }
    }

    #[test]
    fn number_of_bytes_wins_over_key_spec() {
        assert_eq!(request(Some(KeySpec::Aes128), Some(40)).validate(), Ok(40));
        assert_eq!(request(Some(KeySpec::Aes128), None).validate(), Ok(16));
        assert_eq!(request(None, Some(1024)).validate(), Ok(1024));
    }

    #[test]
    fn rejects_bad_sizes_and_missing_spec() {
        for bytes in [0, 1025] {
            let err = request(Some(KeySpec::Aes256), Some(bytes))
                .validate()
                .unwrap_err();
            assert_eq!(err.code, "InvalidParameterValue");
        }
        let err = request(None, None).validate().unwrap_err();
        assert_eq!(err.code, "MissingParameter");
        assert_eq!(
            KeySpec::parse("AES_512").unwrap_err().kind,
            KmsErrorKind::InvalidParameter
        );
    }

    #[test]
    fn codes_map_to_kinds() {
        let cases = [
            ("ResourceUnavailable.CmkNotFound", KmsErrorKind::KeyNotFound),
            ("ResourceUnavailable.CmkDisabled", KmsErrorKind::KeyDisabled),
            ("AuthFailure.SignatureExpire", KmsErrorKind::Auth),
            (
                "RequestLimitExceeded.UinLimitExceeded",
                KmsErrorKind::Throttled,
            ),
            ("InternalError", KmsErrorKind::Server),
            (
                "InvalidParameterValue.InvalidCiphertext",
                KmsErrorKind::InvalidCiphertext,
            ),
            (
                "LimitExceeded.DataKeyLimitExceeded",
                KmsErrorKind::InvalidParameter,
            ),
        ];
        for (code, kind) in cases {
            assert_eq!(KmsErrorKind::from_code(code), kind, "{code}");
        }
    }
}
