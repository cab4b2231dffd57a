//! The per-file keys derived from the data key: payload key, key commitment and header MAC
//! ("Key derivation" in `docs/FORMAT.md`).

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{Core, Header, SALT_LEN, TAG32_LEN};
use crate::cipher::{ChunkCipher, Cipher};
use crate::secret::{DataKey, SecretBytes};

/// HKDF info label for the chunk cipher key.
const PAYLOAD_KEY_LABEL: &[u8] = b"datakey v1 payload key";

/// HKDF info label for the key commitment.
const COMMITMENT_LABEL: &[u8] = b"datakey v1 key commitment";

/// HKDF info label for the header MAC key.
const HEADER_MAC_LABEL: &[u8] = b"datakey v1 header mac";

/// Why the data key does not fit this header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyCheckError {
    /// The data key has the wrong length for the cipher.
    WrongLength,
    /// The key commitment or the header MAC did not verify.
    Mismatch,
}

/// Everything derived from one data key and one file's salt.
pub struct FileKeys {
    /// The keyed chunk cipher.
    pub payload: ChunkCipher,
    commitment: [u8; TAG32_LEN],
    mac_key: SecretBytes<32>,
}

impl std::fmt::Debug for FileKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKeys([redacted])")
    }
}

impl FileKeys {
    /// Derives the file keys; the data key must be `cipher.key_len()` bytes.
    pub fn derive(
        data_key: &DataKey,
        cipher: Cipher,
        salt: &[u8; SALT_LEN],
    ) -> Result<Self, KeyCheckError> {
        if data_key.len() != cipher.key_len() {
            return Err(KeyCheckError::WrongLength);
        }
        let hkdf = Hkdf::<Sha256>::new(Some(salt), data_key.as_bytes());
        let suite = [cipher_id(cipher)];

        let mut payload = Zeroizing::new(vec![0u8; cipher.key_len()]);
        expand(&hkdf, PAYLOAD_KEY_LABEL, &suite, &mut payload);
        let mut commitment = [0u8; TAG32_LEN];
        expand(&hkdf, COMMITMENT_LABEL, &suite, &mut commitment);
        let mut mac_key = SecretBytes::new([0u8; 32]);
        expand(&hkdf, HEADER_MAC_LABEL, &suite, mac_key.as_mut_bytes());

        let payload =
            ChunkCipher::new(cipher, &payload).expect("derived key has the cipher's length");
        Ok(Self {
            payload,
            commitment,
            mac_key,
        })
    }

    /// The key commitment to store in a new header.
    pub fn commitment(&self) -> [u8; TAG32_LEN] {
        self.commitment
    }

    /// The header MAC over the prefix, the core and the commitment.
    pub fn header_mac(&self, core_bytes: &[u8], commitment: &[u8; TAG32_LEN]) -> [u8; TAG32_LEN] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.mac_key.as_bytes())
            .expect("HMAC takes any key length");
        mac.update(core_bytes);
        mac.update(commitment);
        mac.finalize().into_bytes().into()
    }

    /// Checks a read header: the commitment first (right data key?), then the MAC (unaltered
    /// core?). Both compare in constant time.
    pub fn verify(&self, header: &Header) -> Result<(), KeyCheckError> {
        let commitment_ok = self.commitment.ct_eq(&header.commitment);
        let mac = self.header_mac(&header.core_bytes, &header.commitment);
        let mac_ok = mac.ct_eq(&header.mac);
        if bool::from(commitment_ok & mac_ok) {
            Ok(())
        } else {
            Err(KeyCheckError::Mismatch)
        }
    }
}

/// The digest of the prefix and core that every chunk authenticates ("Chunks").
pub fn header_digest(core_bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(core_bytes).into()
}

/// The byte that stands for `cipher` in the HKDF info.
fn cipher_id(cipher: Cipher) -> u8 {
    let core = Core::new(cipher, 0, [0; SALT_LEN], &Default::default());
    postcard::to_stdvec(&core.cipher).expect("an enum serializes")[0]
}

fn expand(hkdf: &Hkdf<Sha256>, label: &[u8], suite: &[u8], out: &mut [u8]) {
    hkdf.expand_multi_info(&[label, suite], out)
        .expect("output lengths are far below the limit");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_salts_give_different_keys() {
        let key = DataKey::new(vec![3; 32]);
        let a = FileKeys::derive(&key, Cipher::Aes256Gcm, &[1; SALT_LEN]).unwrap();
        let b = FileKeys::derive(&key, Cipher::Aes256Gcm, &[2; SALT_LEN]).unwrap();
        assert_ne!(a.commitment(), b.commitment());
        let c = FileKeys::derive(&key, Cipher::ChaCha20Poly1305, &[1; SALT_LEN]).unwrap();
        assert_ne!(a.commitment(), c.commitment());
    }

    #[test]
    fn wrong_length_is_refused() {
        let key = DataKey::new(vec![3; 16]);
        let err = FileKeys::derive(&key, Cipher::Aes256Gcm, &[1; SALT_LEN]).unwrap_err();
        assert_eq!(err, KeyCheckError::WrongLength);
        assert!(FileKeys::derive(&key, Cipher::Aes128Gcm, &[1; SALT_LEN]).is_ok());
    }

    #[test]
    fn cipher_ids_are_distinct() {
        assert_eq!(
            Cipher::ALL.map(cipher_id),
            [0, 1, 2],
            "FORMAT.md documents these values"
        );
    }
}
