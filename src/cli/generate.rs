//! `generate-data-key`: the KMS API as a command, answering in the API's JSON.

use std::io::Write;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;
use zeroize::Zeroizing;

use datakey::context::EncryptionContext;
use datakey::envelope::{EXIT_KMS, EXIT_USAGE};
use datakey::kms::local::LocalKms;
use datakey::kms::tencent::config::{self as kms_config, BackendChoice};
use datakey::kms::{GenerateDataKeyRequest, KeySpec, Kms, KmsError, KmsErrorKind};

use super::args::GenerateArgs;
use super::{Failure, emit, keyring_path, keyring_to_kms_or_usage, open_backend, setup_failure};

pub(crate) fn generate_data_key(
    keyring: Option<PathBuf>,
    args: GenerateArgs,
) -> Result<(), Failure> {
    let resolved =
        kms_config::resolve_with_default_file(&args.kms.flags(), None).map_err(setup_failure)?;
    // A keyring that is the user's file to fix (permissions, syntax) exits as a usage error,
    // like every other command; its JSON answer is still printed.
    let mut keyring_unusable = false;
    let result = build_generate_request(&args).and_then(|request| {
        let kms: Box<dyn Kms> = match resolved.backend {
            BackendChoice::Local => Box::new(
                LocalKms::open(keyring_path(keyring).map_err(|f| KmsError::internal(f.message))?)
                    .map_err(|err| {
                    keyring_to_kms_or_usage(err).unwrap_or_else(|failure| {
                        keyring_unusable = true;
                        KmsError::internal(failure.message)
                    })
                })?,
            ),
            tencent => open_backend(keyring, tencent, false)
                .map_err(|f| KmsError::invalid_parameter(f.message))?,
        };
        kms.generate_data_key(&request)
    });
    match result {
        Ok(generated) => print_generated(&generated),
        Err(err) => {
            let request_id = if err.request_id.is_empty() {
                datakey::kms::new_request_id()
            } else {
                err.request_id.clone()
            };
            let body = json!({
                "code": err.kind.legacy_code(),
                "codeDesc": err.code,
                "message": err.message,
                "requestId": request_id,
            });
            // The failure below is what matters; a failed write of its JSON is reported by it.
            let _ = emit(&serde_json::to_string_pretty(&body).expect("json values serialize"));
            let code = if keyring_unusable || err.kind == KmsErrorKind::InvalidParameter {
                EXIT_USAGE
            } else {
                EXIT_KMS
            };
            Err(Failure::new(code, err))
        }
    }
}

/// The GenerateDataKey response, borrowed so that the key exists only in zeroizing buffers.
#[derive(serde::Serialize)]
pub(crate) struct GenerateResponse<'a> {
    pub(crate) code: i64,
    pub(crate) message: &'a str,
    #[serde(rename = "requestId")]
    pub(crate) request_id: &'a str,
    #[serde(rename = "KeyId")]
    pub(crate) key_id: &'a str,
    #[serde(rename = "Plaintext")]
    pub(crate) plaintext: &'a str,
    #[serde(rename = "CiphertextBlob")]
    pub(crate) ciphertext_blob: &'a str,
}

pub(crate) fn print_generated(generated: &datakey::kms::GeneratedDataKey) -> Result<(), Failure> {
    let plaintext = Zeroizing::new(BASE64.encode(generated.plaintext.as_bytes()));
    let response = GenerateResponse {
        code: 0,
        message: "",
        request_id: &generated.request_id,
        key_id: &generated.key_id,
        plaintext: &plaintext,
        ciphertext_blob: &generated.ciphertext_blob,
    };
    let mut body = Zeroizing::new(Vec::with_capacity(1024 + 2 * plaintext.len()));
    serde_json::to_writer_pretty(&mut *body, &response).expect("json values serialize");
    body.push(b'\n');
    std::io::stdout()
        .lock()
        .write_all(&body)
        .map_err(|e| Failure::new(EXIT_USAGE, format!("writing stdout: {e}")))
}

pub(crate) fn build_generate_request(
    args: &GenerateArgs,
) -> Result<GenerateDataKeyRequest, KmsError> {
    let key_spec = args.key_spec.as_deref().map(KeySpec::parse).transpose()?;
    let number_of_bytes = match args.number_of_bytes {
        Some(n) => Some(u32::try_from(n).map_err(|_| {
            KmsError::invalid_parameter_value(format!("NumberOfBytes {n} is outside 1..=1024"))
        })?),
        None => None,
    };
    let context = EncryptionContext::from_json(args.encryption_context.as_deref().unwrap_or(""))
        .map_err(|e| KmsError::invalid_parameter_value(e.to_string()))?;
    let request = GenerateDataKeyRequest {
        key_id: args.key_id.clone(),
        key_spec,
        number_of_bytes,
        context,
    };
    request.validate()?;
    Ok(request)
}
