//! The local back-end: master keys from the keyring file on this machine.
//!
//! A CiphertextBlob is `base64(version || key id (16 bytes) || nonce (12) || AEAD output)`,
//! sealed with AES-256-GCM under the master key, with the key id and the canonical context as
//! authenticated data (`docs/FORMAT.md`, "Local ciphertext blob").

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroizing;

use super::keyring::{KeyState, Keyring, KeyringError, MasterKey};
use super::{
    DecryptRequest, DecryptedDataKey, GenerateDataKeyRequest, GeneratedDataKey, KeyLocation, Kms,
    KmsError, new_request_id,
};
use crate::cipher::{ChunkCipher, Cipher, NONCE_LEN, TAG_LEN};
use crate::context::EncryptionContext;
use crate::secret::{DataKey, fill_random};

/// The back-end name recorded in file headers.
pub const LOCAL_BACKEND: &str = "local";

/// The version byte that opens every local blob.
const BLOB_VERSION: u8 = 1;

/// The label that opens the authenticated data of a local blob.
const BLOB_AAD_LABEL: &[u8] = b"datakey local blob v1\0";

/// The most plaintext that Encrypt accepts, as the service documents (4 KiB).
pub const MAX_ENCRYPT_PLAINTEXT: usize = 4096;

/// The longest blob text accepted before decoding.
const MAX_BLOB_TEXT_LEN: usize = 8192;

/// Public facts about a master key (no material).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key id.
    pub key_id: String,
    /// The alias without `alias/`.
    pub alias: Option<String>,
    /// Free text.
    pub description: String,
    /// Unix seconds.
    pub create_time: i64,
    /// Enabled or disabled.
    pub state: KeyState,
}

impl From<&MasterKey> for KeyInfo {
    fn from(key: &MasterKey) -> Self {
        Self {
            key_id: key.key_id.clone(),
            alias: key.alias.clone(),
            description: key.description.clone(),
            create_time: key.create_time,
            state: key.key_state,
        }
    }
}

/// The local KMS over a keyring file. It rereads the file when it changes on disk, so a key
/// disabled by another process is refused at once.
#[derive(Debug)]
pub struct LocalKms {
    path: PathBuf,
    cached: Mutex<Snapshot>,
}

#[derive(Debug)]
struct Snapshot {
    stamp: Option<(SystemTime, u64, u64)>,
    ring: Keyring,
}

impl LocalKms {
    /// Opens the keyring at `path`, which must exist.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, KeyringError> {
        let path = path.into();
        let stamp = file_stamp(&path);
        let ring = Keyring::load(&path)?;
        Ok(Self {
            path,
            cached: Mutex::new(Snapshot { stamp, ring }),
        })
    }

    /// Opens the keyring at `path`, first creating it with one key `alias/default` when it
    /// does not exist. Returns whether it was created.
    pub fn open_or_create_default(path: impl Into<PathBuf>) -> Result<(Self, bool), KeyringError> {
        let path = path.into();
        match Self::open(&path) {
            Err(KeyringError::Missing(_)) => {}
            other => return other.map(|kms| (kms, false)),
        }

        // Another process may create it between the check above and the lock: decide again
        // under the lock, and never rewrite a keyring that appeared meanwhile.
        let created = Keyring::create_if_missing(&path, |ring| {
            ring.create_key(Some("default"), "created by datakey on first use")
                .map(|_| ())
        })?;
        Ok((Self::open(path)?, created))
    }

    /// The keyring file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds a new master key to the keyring file.
    pub fn create_key(&self, alias: Option<&str>, description: &str) -> Result<KeyInfo, KmsError> {
        self.change(|ring| ring.create_key(alias, description).map(KeyInfo::from))
    }

    /// Enables or disables a master key, named by id or `alias/NAME`.
    pub fn set_state(&self, name: &str, state: KeyState) -> Result<KeyInfo, KmsError> {
        self.change(|ring| ring.set_state(name, state).map(KeyInfo::from))
    }

    /// Facts about every key, oldest first.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KmsError> {
        Ok(self
            .current()?
            .ring
            .keys
            .iter()
            .map(KeyInfo::from)
            .collect())
    }

    /// Facts about one key.
    pub fn describe(&self, name: &str) -> Result<KeyInfo, KmsError> {
        let snapshot = self.current()?;
        snapshot
            .ring
            .find(name)
            .map(KeyInfo::from)
            .ok_or_else(|| KmsError::key_not_found(name))
    }

    /// Wraps `plaintext` (at most 4 KiB) under a master key: the Encrypt API.
    pub fn encrypt(
        &self,
        key_name: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<(String, String), KmsError> {
        if plaintext.is_empty() || plaintext.len() > MAX_ENCRYPT_PLAINTEXT {
            return Err(KmsError::invalid_parameter_value(format!(
                "Plaintext must be 1 to {MAX_ENCRYPT_PLAINTEXT} bytes"
            )));
        }
        let snapshot = self.current()?;
        let key = usable_key(&snapshot.ring, key_name)?;
        Ok((key.key_id.clone(), seal_blob(key, plaintext, context)))
    }

    /// Unwraps a blob made by [`LocalKms::encrypt`] or GenerateDataKey.
    pub fn unwrap(
        &self,
        blob: &str,
        context: &EncryptionContext,
    ) -> Result<(String, DataKey), KmsError> {
        let parsed = ParsedBlob::parse(blob)?;
        let snapshot = self.current()?;
        let key = usable_key(&snapshot.ring, &parsed.key_id)?;
        let plaintext = parsed.open(key, context)?;
        Ok((key.key_id.clone(), plaintext))
    }

    fn change<T>(
        &self,
        change: impl FnOnce(&mut Keyring) -> Result<T, KeyringError>,
    ) -> Result<T, KmsError> {
        let mut snapshot = self.lock();
        let (ring, out) = Keyring::update(&self.path, change).map_err(keyring_to_kms)?;
        snapshot.ring = ring;
        snapshot.stamp = file_stamp(&self.path);
        Ok(out)
    }

    fn current(&self) -> Result<MutexGuard<'_, Snapshot>, KmsError> {
        let mut snapshot = self.lock();
        let stamp = file_stamp(&self.path);
        if stamp != snapshot.stamp {
            snapshot.ring = Keyring::load(&self.path).map_err(keyring_to_kms)?;
            snapshot.stamp = stamp;
        }
        Ok(snapshot)
    }

    fn lock(&self) -> MutexGuard<'_, Snapshot> {
        self.cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Kms for LocalKms {
    fn location(&self) -> KeyLocation {
        KeyLocation {
            backend: LOCAL_BACKEND.to_owned(),
            region: None,
            endpoint: None,
        }
    }

    fn generate_data_key(
        &self,
        request: &GenerateDataKeyRequest,
    ) -> Result<GeneratedDataKey, KmsError> {
        let request_id = new_request_id();
        let len = request
            .validate()
            .map_err(|e| e.with_request_id(&request_id))?;
        let snapshot = self.current().map_err(|e| e.with_request_id(&request_id))?;
        let key = usable_key(&snapshot.ring, &request.key_id)
            .map_err(|e| e.with_request_id(&request_id))?;

        let plaintext = DataKey::random(len);
        let ciphertext_blob = seal_blob(key, plaintext.as_bytes(), &request.context);
        Ok(GeneratedDataKey {
            key_id: key.key_id.clone(),
            plaintext,
            ciphertext_blob,
            request_id,
        })
    }

    fn decrypt(&self, request: &DecryptRequest) -> Result<DecryptedDataKey, KmsError> {
        let request_id = new_request_id();
        let (key_id, plaintext) = self
            .unwrap(&request.ciphertext_blob, &request.context)
            .map_err(|e| e.with_request_id(&request_id))?;
        Ok(DecryptedDataKey {
            key_id,
            plaintext,
            request_id,
        })
    }
}

/// Maps a keyring failure to the KMS error a caller sees.
pub fn keyring_to_kms(err: KeyringError) -> KmsError {
    match err {
        KeyringError::NotFound(name) => KmsError::key_not_found(&name),
        KeyringError::AliasTaken(_) => {
            KmsError::new("InvalidParameterValue.AliasAlreadyExists", err.to_string())
        }
        KeyringError::InvalidName(_) => KmsError::invalid_parameter_value(err.to_string()),
        KeyringError::Missing(_) => {
            KmsError::new("ResourceUnavailable.CmkNotFound", err.to_string())
        }
        other => KmsError::internal(other.to_string()),
    }
}

fn usable_key<'a>(ring: &'a Keyring, name: &str) -> Result<&'a MasterKey, KmsError> {
    let key = ring
        .find(name)
        .ok_or_else(|| KmsError::key_not_found(name))?;
    if key.key_state != KeyState::Enabled {
        return Err(KmsError::key_disabled(name));
    }
    Ok(key)
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.ino(), meta.len()))
}

fn blob_aad(key_id: &[u8; 16], context: &EncryptionContext) -> Vec<u8> {
    let mut aad = BLOB_AAD_LABEL.to_vec();
    aad.extend_from_slice(key_id);
    aad.extend_from_slice(context.to_canonical_json().as_bytes());
    aad
}

fn seal_blob(key: &MasterKey, plaintext: &[u8], context: &EncryptionContext) -> String {
    let id = uuid::Uuid::parse_str(&key.key_id)
        .expect("keyring ids are UUIDs")
        .into_bytes();
    let keyed = ChunkCipher::new(Cipher::Aes256Gcm, key.material.as_bytes())
        .expect("master keys are 32 bytes");
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);

    let mut raw = Vec::with_capacity(1 + 16 + NONCE_LEN + plaintext.len() + TAG_LEN);
    raw.push(BLOB_VERSION);
    raw.extend_from_slice(&id);
    raw.extend_from_slice(&nonce);
    let start = raw.len();
    raw.extend_from_slice(plaintext);
    let tag = keyed.seal(&nonce, &blob_aad(&id, context), &mut raw[start..]);
    raw.extend_from_slice(&tag);
    BASE64.encode(raw)
}

/// A decoded local blob.
struct ParsedBlob {
    key_id: String,
    id: [u8; 16],
    nonce: [u8; NONCE_LEN],
    sealed: Zeroizing<Vec<u8>>,
    tag: [u8; TAG_LEN],
}

impl ParsedBlob {
    fn parse(blob: &str) -> Result<Self, KmsError> {
        let invalid = || KmsError::invalid_ciphertext("CiphertextBlob is not a datakey local blob");
        if blob.len() > MAX_BLOB_TEXT_LEN {
            return Err(invalid());
        }
        let raw = BASE64.decode(blob.trim()).map_err(|_| invalid())?;
        let min = 1 + 16 + NONCE_LEN + TAG_LEN;
        if raw.len() <= min || raw[0] != BLOB_VERSION {
            return Err(invalid());
        }

        let id: [u8; 16] = raw[1..17].try_into().expect("16 bytes");
        let nonce = raw[17..17 + NONCE_LEN].try_into().expect("12 bytes");
        let body = &raw[17 + NONCE_LEN..];
        let (sealed, tag) = body.split_at(body.len() - TAG_LEN);
        Ok(Self {
            key_id: uuid::Uuid::from_bytes(id).to_string(),
            id,
            nonce,
            sealed: Zeroizing::new(sealed.to_vec()),
            tag: tag.try_into().expect("16 bytes"),
        })
    }

    fn open(mut self, key: &MasterKey, context: &EncryptionContext) -> Result<DataKey, KmsError> {
        let keyed = ChunkCipher::new(Cipher::Aes256Gcm, key.material.as_bytes())
            .expect("master keys are 32 bytes");
        let aad = blob_aad(&self.id, context);
        keyed.open(&self.nonce, &aad, &mut self.sealed, &self.tag).map_err(|_| {
            KmsError::invalid_ciphertext(
                "CiphertextBlob does not open: it was altered or the encryption context differs",
            )
        })?;
        Ok(DataKey::from_slice(&self.sealed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::{KeySpec, KmsErrorKind};

    fn kms() -> (tempfile::TempDir, LocalKms) {
        let dir = tempfile::tempdir().unwrap();
        let (kms, created) = LocalKms::open_or_create_default(dir.path().join("k.json")).unwrap();
        assert!(created);
        (dir, kms)
    }

    fn ctx(pairs: &[&str]) -> EncryptionContext {
        EncryptionContext::from_assignments(pairs).unwrap()
    }

    #[test]
    fn generate_then_decrypt() {
        let (_dir, kms) = kms();
        let request = GenerateDataKeyRequest::new("alias/default", KeySpec::Aes256, ctx(&["a=b"]));
        let made = kms.generate_data_key(&request).unwrap();
        assert_eq!(made.plaintext.len(), 32);
        assert!(!made.key_id.starts_with("alias/"));

        let back = kms
            .decrypt(&DecryptRequest {
                ciphertext_blob: made.ciphertext_blob.clone(),
                context: ctx(&["a=b"]),
            })
            .unwrap();
        assert_eq!(back.plaintext, made.plaintext);
        assert_eq!(back.key_id, made.key_id);

        let wrong = DecryptRequest {
            ciphertext_blob: made.ciphertext_blob,
            context: ctx(&["a=c"]),
        };
        assert_eq!(
            kms.decrypt(&wrong).unwrap_err().kind,
            KmsErrorKind::InvalidCiphertext
        );
    }

    #[test]
    fn disabled_and_unknown_keys_fail() {
        let (_dir, kms) = kms();
        let request = GenerateDataKeyRequest::new("alias/default", KeySpec::Aes128, ctx(&[]));
        let made = kms.generate_data_key(&request).unwrap();
        kms.set_state("alias/default", KeyState::Disabled).unwrap();
        assert_eq!(
            kms.generate_data_key(&request).unwrap_err().kind,
            KmsErrorKind::KeyDisabled
        );
        let unwrap = DecryptRequest {
            ciphertext_blob: made.ciphertext_blob,
            context: ctx(&[]),
        };
        assert_eq!(
            kms.decrypt(&unwrap).unwrap_err().kind,
            KmsErrorKind::KeyDisabled
        );

        let request = GenerateDataKeyRequest::new("alias/nope", KeySpec::Aes128, ctx(&[]));
        assert_eq!(
            kms.generate_data_key(&request).unwrap_err().kind,
            KmsErrorKind::KeyNotFound
        );
    }

    #[test]
    fn blob_from_another_keyring_is_not_found() {
        let (_a, first) = kms();
        let (_b, second) = kms();
        let request = GenerateDataKeyRequest::new("alias/default", KeySpec::Aes256, ctx(&[]));
        let made = first.generate_data_key(&request).unwrap();
        let unwrap = DecryptRequest {
            ciphertext_blob: made.ciphertext_blob,
            context: ctx(&[]),
        };
        assert_eq!(
            second.decrypt(&unwrap).unwrap_err().kind,
            KmsErrorKind::KeyNotFound
        );
    }

    #[test]
    fn garbage_blobs_are_invalid_ciphertext() {
        let (_dir, kms) = kms();
        for blob in ["", "!!!", "AAAA", &"A".repeat(20_000)] {
            let unwrap = DecryptRequest {
                ciphertext_blob: blob.into(),
                context: ctx(&[]),
            };
            assert_eq!(
                kms.decrypt(&unwrap).unwrap_err().kind,
                KmsErrorKind::InvalidCiphertext
            );
        }
    }

    #[test]
    fn opening_an_existing_keyring_never_rewrites_it() {
        let (_dir, kms) = kms();
        let before = fs::read(kms.path()).unwrap();
        let inode = file_stamp(kms.path()).unwrap().1;
        let (again, created) = LocalKms::open_or_create_default(kms.path()).unwrap();
        assert!(!created);
        assert_eq!(fs::read(again.path()).unwrap(), before);
        assert_eq!(
            file_stamp(again.path()).unwrap().1,
            inode,
            "not replaced by a rename"
        );
    }

    #[test]
    fn sees_changes_made_by_another_process() {
        let (_dir, kms) = kms();
        let other = LocalKms::open(kms.path()).unwrap();
        other
            .set_state("alias/default", KeyState::Disabled)
            .unwrap();
        let request = GenerateDataKeyRequest::new("alias/default", KeySpec::Aes256, ctx(&[]));
        assert_eq!(
            kms.generate_data_key(&request).unwrap_err().kind,
            KmsErrorKind::KeyDisabled
        );
    }
}
