//! Encrypting and decrypting whole files: the KMS call, the header, the body, the output.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::cipher::Cipher;
use crate::context::EncryptionContext;
use crate::format::keys::{FileKeys, KeyCheckError, header_digest};
use crate::format::{
    Core, DEFAULT_CHUNK_SIZE, Header, HeaderError, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, SALT_LEN,
    WrappedKey,
};
use crate::io::{FileId, Input, Output, OutputError, OutputTarget, open_input};
use crate::kms::{DecryptRequest, GenerateDataKeyRequest, KeySpec, Kms, KmsError, KmsErrorKind};
use crate::secret::fill_random;
use crate::stream::{BodyStats, OpenError, Stream};

/// Exit status: success.
pub const EXIT_OK: i32 = 0;
/// Exit status: integrity failure (authentication, truncation, context mismatch).
pub const EXIT_INTEGRITY: i32 = 1;
/// Exit status: usage, input or output error.
pub const EXIT_USAGE: i32 = 2;
/// Exit status: KMS error (unknown or disabled key, unwrap refused, unreachable).
pub const EXIT_KMS: i32 = 3;

/// How to encrypt.
#[derive(Clone, Debug)]
pub struct EncryptOptions {
    /// The master key, by id or `alias/NAME`.
    pub key_id: String,
    /// The chunk cipher; it decides the data-key size asked of the KMS.
    pub cipher: Cipher,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// The context bound to the data key and the file.
    pub context: EncryptionContext,
    /// Worker threads; `None` uses every core.
    pub threads: Option<usize>,
}

impl EncryptOptions {
    /// Options with the defaults: AES-256-GCM, 64 KiB chunks, no context, every core.
    pub fn new(key_id: impl Into<String>) -> Self {
        Self {
            key_id: key_id.into(),
            cipher: Cipher::default(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            context: EncryptionContext::new(),
            threads: None,
        }
    }
}

/// What an encryption did.
#[derive(Clone, Debug)]
pub struct EncryptReport {
    /// The master key id the KMS reported.
    pub key_id: String,
    /// The KMS request id of GenerateDataKey.
    pub request_id: String,
    /// Header length in bytes.
    pub header_len: usize,
    /// Chunk and plaintext totals.
    pub body: BodyStats,
}

/// What a decryption did.
#[derive(Clone, Debug)]
pub struct DecryptReport {
    /// The master key that unwrapped the data key.
    pub key_id: String,
    /// The context stored in the header.
    pub context: EncryptionContext,
    /// Chunk and plaintext totals.
    pub body: BodyStats,
}

/// Why an encryption failed.
#[derive(Debug)]
pub enum EncryptError {
    /// The input could not be opened or read.
    Input(PathBuf, io::Error),
    /// An option is out of range.
    InvalidOption(String),
    /// The KMS refused or failed.
    Kms(KmsError),
    /// The output could not be prepared.
    Output(OutputError),
    /// Writing the output failed.
    Write(io::Error),
}

/// Why a decryption failed.
#[derive(Debug)]
pub enum DecryptError {
    /// A chunk, the key commitment or the header MAC failed to verify.
    Authentication,
    /// The header's context lacks or differs in a required key.
    ContextMismatch(String),
    /// The header could not be read.
    Header(HeaderError),
    /// The input could not be opened or read.
    Input(PathBuf, io::Error),
    /// The KMS refused or failed to unwrap the data key.
    Kms(KmsError),
    /// The output could not be prepared.
    Output(OutputError),
    /// Data follows the final chunk.
    TrailingData,
    /// The body ends before its final chunk.
    Truncated,
    /// Writing the output failed.
    Write(io::Error),
}

impl EncryptError {
    /// The exit status this failure maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Kms(_) => EXIT_KMS,
            Self::Input(..) | Self::InvalidOption(_) | Self::Output(_) | Self::Write(_) => {
                EXIT_USAGE
            }
        }
    }
}

impl DecryptError {
    /// The exit status this failure maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Authentication
            | Self::ContextMismatch(_)
            | Self::TrailingData
            | Self::Truncated
            | Self::Header(HeaderError::Truncated | HeaderError::Malformed(_)) => EXIT_INTEGRITY,
            Self::Kms(err) if err.kind == KmsErrorKind::InvalidCiphertext => EXIT_INTEGRITY,
            Self::Kms(_) => EXIT_KMS,
            Self::Header(_) | Self::Input(..) | Self::Output(_) | Self::Write(_) => EXIT_USAGE,
        }
    }
}

impl fmt::Display for EncryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Input(path, err) => write!(f, "cannot read {}: {err}", path.display()),
            Self::InvalidOption(why) => f.write_str(why),
            Self::Kms(err) => write!(f, "KMS GenerateDataKey failed: {err}"),
            Self::Output(err) => write!(f, "{err}"),
            Self::Write(err) => write!(f, "writing the output failed: {err}"),
        }
    }
}

impl fmt::Display for DecryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Authentication => f.write_str("authentication failed: the file was altered"),
            Self::ContextMismatch(key) => write!(
                f,
                "encryption context mismatch: the file's value for {key:?} differs from the one \
                 required"
            ),
            Self::Header(err) => write!(f, "{err}"),
            Self::Input(path, err) => write!(f, "cannot read {}: {err}", path.display()),
            Self::Kms(err) if err.kind == KmsErrorKind::InvalidCiphertext => write!(
                f,
                "the KMS refused the wrapped data key: the header's key or context was altered \
                 ({err})"
            ),
            Self::Kms(err) => write!(f, "KMS Decrypt failed: {err}"),
            Self::Output(err) => write!(f, "{err}"),
            Self::TrailingData => f.write_str("unexpected data after the final chunk"),
            Self::Truncated => f.write_str("the file is truncated: its final chunk is missing"),
            Self::Write(err) => write!(f, "writing the output failed: {err}"),
        }
    }
}

impl std::error::Error for EncryptError {}
impl std::error::Error for DecryptError {}

impl From<OpenError> for DecryptError {
    fn from(err: OpenError) -> Self {
        match err {
            OpenError::Authentication => Self::Authentication,
            OpenError::Truncated => Self::Truncated,
            OpenError::TrailingData => Self::TrailingData,
            OpenError::Io(err) => Self::Write(err),
        }
    }
}

/// Checks a chunk size against the format's bounds.
pub fn check_chunk_size(size: u32) -> Result<(), String> {
    if (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(format!(
            "chunk size {size} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE} bytes"
        ))
    }
}

/// Encrypts the file at `input` (or stdin for `-`) to `target`. On any failure nothing is left
/// at the destination.
pub fn encrypt_file(
    kms: &dyn Kms,
    options: &EncryptOptions,
    input: &Path,
    target: &OutputTarget,
) -> Result<EncryptReport, EncryptError> {
    check_chunk_size(options.chunk_size).map_err(EncryptError::InvalidOption)?;
    let (source, id) = open_input(input).map_err(|e| EncryptError::Input(input.to_owned(), e))?;
    let mut output = Output::create(target, id).map_err(EncryptError::Output)?;
    let report = encrypt_input(kms, options, source, output.writer())?;
    output.commit().map_err(EncryptError::Write)?;
    Ok(report)
}

/// Encrypts an opened input into any writer.
pub fn encrypt_input(
    kms: &dyn Kms,
    options: &EncryptOptions,
    input: Input,
    out: &mut dyn Write,
) -> Result<EncryptReport, EncryptError> {
    check_chunk_size(options.chunk_size).map_err(EncryptError::InvalidOption)?;
    let spec = match options.cipher.key_len() {
        16 => KeySpec::Aes128,
        _ => KeySpec::Aes256,
    };
    let request = GenerateDataKeyRequest::new(&options.key_id, spec, options.context.clone());
    let generated = kms.generate_data_key(&request).map_err(EncryptError::Kms)?;

    let mut salt = [0u8; SALT_LEN];
    fill_random(&mut salt);
    let core = Core::new(options.cipher, options.chunk_size, salt, &options.context);
    let keys = FileKeys::derive(&generated.plaintext, options.cipher, &salt).map_err(|_| {
        EncryptError::Kms(KmsError::internal(
            "the KMS returned a data key of the wrong length",
        ))
    })?;
    drop(generated.plaintext);

    let location = kms.location();
    let wrapped = WrappedKey {
        backend: location.backend,
        key_id: generated.key_id.clone(),
        region: location.region,
        endpoint: location.endpoint,
        blob: generated.ciphertext_blob,
    };
    let core_bytes = core.encode();
    let commitment = keys.commitment();
    let mac = keys.header_mac(&core_bytes, &commitment);
    let header = Header {
        core,
        wrapped_keys: vec![wrapped],
        commitment,
        mac,
        core_bytes,
    };
    header.write_to(out).map_err(EncryptError::Write)?;

    let digest = header_digest(&header.core_bytes);
    let stream = Stream::new(&keys.payload, options.chunk_size, digest, options.threads);
    let body = match input {
        Input::Mapped(map) => {
            let mut releaser = crate::io::Releaser::new(&map);
            stream.seal_slice_releasing(&map, out, &mut |range| releaser.consumed(range))
        }
        Input::Stream(mut reader) => stream.seal_reader(&mut reader, out),
    }
    .map_err(EncryptError::Write)?;
    Ok(EncryptReport {
        key_id: generated.key_id,
        request_id: generated.request_id,
        header_len: header.encoded_len(),
        body,
    })
}

/// Finds the KMS that can unwrap a wrapped-key entry.
pub type KmsResolver<'a> = dyn Fn(&WrappedKey) -> Result<Box<dyn Kms>, KmsError> + 'a;

/// How to decrypt.
#[derive(Clone, Debug, Default)]
pub struct DecryptOptions {
    /// Pairs the header's context must contain with these values.
    pub required_context: EncryptionContext,
    /// Worker threads; `None` uses every core.
    pub threads: Option<usize>,
}

/// Decrypts the file at `input` (or stdin for `-`) to `target`. Output to a file appears only
/// once every chunk has been authenticated.
pub fn decrypt_file(
    resolve: &KmsResolver<'_>,
    options: &DecryptOptions,
    input: &Path,
    target: &OutputTarget,
) -> Result<DecryptReport, DecryptError> {
    let (source, id) = open_input(input).map_err(|e| DecryptError::Input(input.to_owned(), e))?;
    let mut output = Output::create(target, id).map_err(DecryptError::Output)?;
    let report = decrypt_input(resolve, options, source, output.writer())?;
    output.commit().map_err(DecryptError::Write)?;
    Ok(report)
}

/// Decrypts an opened input into any writer. A writer that is not a temporary file receives
/// each batch of plaintext as soon as it is authenticated, before later chunks are checked.
pub fn decrypt_input(
    resolve: &KmsResolver<'_>,
    options: &DecryptOptions,
    input: Input,
    out: &mut dyn Write,
) -> Result<DecryptReport, DecryptError> {
    match input {
        Input::Mapped(map) => {
            let mut reader = &map[..];
            let header = Header::read_from(&mut reader).map_err(DecryptError::Header)?;
            let (key_id, keys, context) = unlock(resolve, options, &header)?;
            let stream = stream_for(&header, &keys, options.threads);
            let start = header.encoded_len();
            let mut releaser = crate::io::Releaser::new(&map);
            let body = stream.open_slice_releasing(&map[start..], out, &mut |range| {
                releaser.consumed(start + range.start..start + range.end)
            })?;
            Ok(DecryptReport {
                key_id,
                context,
                body,
            })
        }
        Input::Stream(mut reader) => {
            let header = Header::read_from(&mut reader).map_err(DecryptError::Header)?;
            let (key_id, keys, context) = unlock(resolve, options, &header)?;
            let stream = stream_for(&header, &keys, options.threads);
            let body = stream.open_reader(&mut reader, out)?;
            Ok(DecryptReport {
                key_id,
                context,
                body,
            })
        }
    }
}

fn stream_for<'a>(header: &Header, keys: &'a FileKeys, threads: Option<usize>) -> Stream<'a> {
    let digest = header_digest(&header.core_bytes);
    Stream::new(&keys.payload, header.core.chunk_size, digest, threads)
}

/// Checks the required context, unwraps the data key through the first entry that works, and
/// verifies the key commitment and the header MAC.
fn unlock(
    resolve: &KmsResolver<'_>,
    options: &DecryptOptions,
    header: &Header,
) -> Result<(String, FileKeys, EncryptionContext), DecryptError> {
    let context = header
        .core
        .encryption_context()
        .map_err(|e| DecryptError::Header(HeaderError::Malformed(e.to_string())))?;
    if let Some(key) = context.first_mismatch(&options.required_context) {
        return Err(DecryptError::ContextMismatch(key.to_owned()));
    }

    let mut first_error = None;
    for entry in &header.wrapped_keys {
        match unlock_entry(resolve, header, entry, &context) {
            Ok((key_id, keys)) => return Ok((key_id, keys, context)),
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    Err(first_error.expect("a header has at least one wrapped key"))
}

fn unlock_entry(
    resolve: &KmsResolver<'_>,
    header: &Header,
    entry: &WrappedKey,
    context: &EncryptionContext,
) -> Result<(String, FileKeys), DecryptError> {
    let kms = resolve(entry).map_err(DecryptError::Kms)?;
    let request = DecryptRequest {
        ciphertext_blob: entry.blob.clone(),
        context: context.clone(),
    };
    let unwrapped = kms.decrypt(&request).map_err(DecryptError::Kms)?;
    if unwrapped.key_id != entry.key_id {
        return Err(DecryptError::Header(HeaderError::Malformed(format!(
            "the wrapped key names master key {:?} but the KMS unwrapped it with {:?}",
            entry.key_id, unwrapped.key_id
        ))));
    }
    check_unwrapped_len(unwrapped.plaintext.len())?;
    let keys = FileKeys::derive(&unwrapped.plaintext, header.core.cipher, &header.core.salt)
        .map_err(|_: KeyCheckError| DecryptError::Authentication)?;
    keys.verify(header)
        .map_err(|_| DecryptError::Authentication)?;
    Ok((unwrapped.key_id, keys))
}

/// Refuses an unwrapped data key whose length no cipher uses: the KMS is at fault, not the
/// file. A length of another cipher is left to the key check, as an edited cipher field in the
/// header gives the same.
fn check_unwrapped_len(len: usize) -> Result<(), DecryptError> {
    if Cipher::ALL.iter().any(|cipher| cipher.key_len() == len) {
        return Ok(());
    }
    Err(DecryptError::Kms(KmsError::internal(format!(
        "the KMS returned a data key of {len} bytes, which no cipher uses"
    ))))
}

/// What `inspect` shows: the header and the sizes, read without any KMS call.
#[derive(Clone, Debug)]
pub struct Inspection {
    /// The parsed header.
    pub header: Header,
    /// The header length in bytes.
    pub header_len: u64,
    /// The whole file length in bytes.
    pub file_len: u64,
    /// The number of chunks the body holds.
    pub chunks: u64,
    /// The plaintext length the body decrypts to (if it is intact).
    pub plaintext_len: u64,
    /// Whether the body's length alone shows it truncated: it ends inside a chunk's tag, so no
    /// final chunk can be whole (docs/FORMAT.md, "Body"). A body that passes may still fail
    /// authentication on decrypt.
    pub truncated: bool,
}

/// Reads a file's header and measures its body, without a KMS.
pub fn inspect(input: &Path) -> Result<Inspection, DecryptError> {
    let (source, _) = open_input(input).map_err(|e| DecryptError::Input(input.to_owned(), e))?;
    let mut reader: Box<dyn Read> = match source {
        Input::Mapped(map) => Box::new(io::Cursor::new(map)),
        Input::Stream(reader) => reader,
    };
    let header = Header::read_from(&mut reader).map_err(DecryptError::Header)?;
    let body_len = io::copy(&mut reader, &mut io::sink())
        .map_err(|e| DecryptError::Input(input.to_owned(), e))?;

    let tag_len = crate::cipher::TAG_LEN as u64;
    let sealed = u64::from(header.core.chunk_size) + tag_len;
    let chunks = body_len.div_ceil(sealed).max(1);
    let tags = chunks * tag_len;
    let tail = body_len % sealed;
    let header_len = header.encoded_len() as u64;
    Ok(Inspection {
        header,
        header_len,
        file_len: header_len + body_len,
        chunks,
        plaintext_len: body_len.saturating_sub(tags),
        truncated: body_len == 0 || (tail != 0 && tail < tag_len),
    })
}

/// The identity of an input, for callers that open inputs themselves.
pub fn input_id(path: &Path) -> Option<FileId> {
    open_input(path).ok().and_then(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::local::LocalKms;
    use crate::kms::{DecryptedDataKey, GeneratedDataKey, KeyLocation};
    use crate::secret::DataKey;

    /// A local KMS whose Decrypt answers a data key of `len` bytes, as a faulty KMS might.
    struct ResizingKms {
        inner: LocalKms,
        len: usize,
    }

    impl Kms for ResizingKms {
        fn location(&self) -> KeyLocation {
            self.inner.location()
        }

        fn generate_data_key(
            &self,
            request: &GenerateDataKeyRequest,
        ) -> Result<GeneratedDataKey, KmsError> {
            self.inner.generate_data_key(request)
        }

        fn decrypt(&self, request: &DecryptRequest) -> Result<DecryptedDataKey, KmsError> {
            let mut answer = self.inner.decrypt(request)?;
            let mut bytes = answer.plaintext.as_bytes().to_vec();
            bytes.resize(self.len, 7);
            answer.plaintext = DataKey::new(bytes);
            Ok(answer)
        }
    }

    fn decrypt_with_key_len(sealed: &[u8], keyring: &Path, len: usize) -> DecryptError {
        let resolve = |_: &WrappedKey| -> Result<Box<dyn Kms>, KmsError> {
            let (inner, _) = LocalKms::open_or_create_default(keyring).unwrap();
            Ok(Box::new(ResizingKms { inner, len }))
        };
        let input = Input::Stream(Box::new(io::Cursor::new(sealed.to_vec())));
        let mut out = Vec::new();
        let err = decrypt_input(&resolve, &DecryptOptions::default(), input, &mut out);
        assert!(out.is_empty(), "nothing is written without the right key");
        err.unwrap_err()
    }

    #[test]
    fn a_data_key_no_cipher_uses_is_a_kms_fault_not_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = dir.path().join("keyring.json");
        let (kms, _) = LocalKms::open_or_create_default(&keyring).unwrap();
        let input = Input::Stream(Box::new(io::Cursor::new(b"some plaintext".to_vec())));
        let mut sealed = Vec::new();
        encrypt_input(
            &kms,
            &EncryptOptions::new("alias/default"),
            input,
            &mut sealed,
        )
        .unwrap();

        for len in [0, 1, 31, 33, 64] {
            let err = decrypt_with_key_len(&sealed, &keyring, len);
            assert_eq!(err.exit_code(), EXIT_KMS, "{len} bytes: {err}");
            assert!(err.to_string().contains(&format!("{len} bytes")), "{err}");
        }

        // Another cipher's length is what an edited cipher field gives: the file fails.
        let err = decrypt_with_key_len(&sealed, &keyring, 16);
        assert_eq!(err.exit_code(), EXIT_INTEGRITY, "{err}");
    }
}
