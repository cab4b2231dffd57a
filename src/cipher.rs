//! The chunk ciphers: AES-256-GCM, AES-128-GCM and ChaCha20-Poly1305 behind one type.

use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use chacha20poly1305::ChaCha20Poly1305;
use serde::{Deserialize, Serialize};

/// The length of every nonce, in bytes.
pub const NONCE_LEN: usize = 12;

/// The length of every authentication tag, in bytes.
pub const TAG_LEN: usize = 16;

/// A cipher suite, as recorded in the file header (`docs/FORMAT.md`, "Cipher suite").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cipher {
    /// AES-256 in GCM mode (the default).
    #[default]
    Aes256Gcm,
    /// AES-128 in GCM mode, for 16-byte data keys.
    Aes128Gcm,
    /// ChaCha20-Poly1305 with a 256-bit key.
    ChaCha20Poly1305,
}

impl Cipher {
    /// Every suite, in header order.
    pub const ALL: [Cipher; 3] = [Self::Aes256Gcm, Self::Aes128Gcm, Self::ChaCha20Poly1305];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes256Gcm => "aes-256-gcm",
            Self::Aes128Gcm => "aes-128-gcm",
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    /// The key length in bytes, which is also the data-key length asked of the KMS.
    pub fn key_len(self) -> usize {
        match self {
            Self::Aes128Gcm => 16,
            Self::Aes256Gcm | Self::ChaCha20Poly1305 => 32,
        }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Cipher {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown cipher {name:?}: use aes-256-gcm, aes-128-gcm or chacha20-poly1305"
                )
            })
    }
}

/// An AEAD failure: the tag did not verify. Deliberately carries no detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenError;

/// A keyed cipher instance. The key schedule is zeroized on drop.
pub enum ChunkCipher {
    /// AES-256-GCM.
    Aes256(Box<Aes256Gcm>),
    /// AES-128-GCM.
    Aes128(Box<Aes128Gcm>),
    /// ChaCha20-Poly1305.
    ChaCha(Box<ChaCha20Poly1305>),
}

impl fmt::Debug for ChunkCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChunkCipher([redacted])")
    }
}

impl ChunkCipher {
    /// Keys `cipher` with `key`, which must be `cipher.key_len()` bytes.
    pub fn new(cipher: Cipher, key: &[u8]) -> Option<Self> {
        let keyed = match cipher {
            Cipher::Aes256Gcm => Self::Aes256(Box::new(Aes256Gcm::new_from_slice(key).ok()?)),
            Cipher::Aes128Gcm => Self::Aes128(Box::new(Aes128Gcm::new_from_slice(key).ok()?)),
            Cipher::ChaCha20Poly1305 => {
                Self::ChaCha(Box::new(ChaCha20Poly1305::new_from_slice(key).ok()?))
            }
        };
        Some(keyed)
    }

    /// Encrypts `buf` in place and returns the tag.
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        self.seal_inout(nonce, aad, buf.into())
    }

    /// Encrypts `plaintext` into `ciphertext` (of the same length) and returns the tag: one
    /// pass over the data, with no copy.
    pub fn seal_to(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
        ciphertext: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let buf = InOutBuf::new(plaintext, ciphertext).expect("buffers of the same length");
        self.seal_inout(nonce, aad, buf)
    }

    fn seal_inout(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: InOutBuf<'_, '_, u8>,
    ) -> [u8; TAG_LEN] {
        let nonce = (*nonce).into();
        let tag = match self {
            Self::Aes256(c) => c.encrypt_inout_detached(&nonce, aad, buf),
            Self::Aes128(c) => c.encrypt_inout_detached(&nonce, aad, buf),
            Self::ChaCha(c) => c.encrypt_inout_detached(&nonce, aad, buf),
        };
        tag.expect("chunk sizes are far below the AEAD length limits")
            .into()
    }

    /// Decrypts `buf` in place if `tag` verifies; on failure `buf` holds no plaintext.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        self.open_inout(nonce, aad, buf.into(), tag)
    }

    /// Decrypts `ciphertext` into `plaintext` (of the same length) if `tag` verifies; on
    /// failure `plaintext` is zeroed.
    pub fn open_to(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        plaintext: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        let buf = InOutBuf::new(ciphertext, plaintext).expect("buffers of the same length");
        let result = self.open_inout(nonce, aad, buf, tag);
        if result.is_err() {
            plaintext.fill(0);
        }
        result
    }

    fn open_inout(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: InOutBuf<'_, '_, u8>,
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        let nonce = (*nonce).into();
        let tag = (*tag).into();
        let result = match self {
            Self::Aes256(c) => c.decrypt_inout_detached(&nonce, aad, buf, &tag),
            Self::Aes128(c) => c.decrypt_inout_detached(&nonce, aad, buf, &tag),
            Self::ChaCha(c) => c.decrypt_inout_detached(&nonce, aad, buf, &tag),
        };
        result.map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_for_every_cipher() {
        for cipher in Cipher::ALL {
            let keyed = ChunkCipher::new(cipher, &vec![7u8; cipher.key_len()]).unwrap();
            let nonce = [1u8; NONCE_LEN];
            let mut buf = b"attack at dawn".to_vec();
            let tag = keyed.seal(&nonce, b"aad", &mut buf);
            assert_ne!(&buf, b"attack at dawn");

            let mut wrong = buf.clone();
            assert_eq!(
                keyed.open(&nonce, b"other", &mut wrong, &tag),
                Err(OpenError)
            );
            keyed.open(&nonce, b"aad", &mut buf, &tag).unwrap();
            assert_eq!(&buf, b"attack at dawn");
        }
    }

    #[test]
    fn copying_and_in_place_forms_agree() {
        for cipher in Cipher::ALL {
            let keyed = ChunkCipher::new(cipher, &vec![3u8; cipher.key_len()]).unwrap();
            let nonce = [2u8; NONCE_LEN];
            let plaintext = b"the same bytes either way".to_vec();
            let mut in_place = plaintext.clone();
            let tag = keyed.seal(&nonce, b"aad", &mut in_place);

            let mut copied = vec![0u8; plaintext.len()];
            assert_eq!(keyed.seal_to(&nonce, b"aad", &plaintext, &mut copied), tag);
            assert_eq!(copied, in_place);

            let mut opened = vec![0u8; plaintext.len()];
            keyed
                .open_to(&nonce, b"aad", &copied, &mut opened, &tag)
                .unwrap();
            assert_eq!(opened, plaintext);
            copied[0] ^= 1;
            assert_eq!(
                keyed.open_to(&nonce, b"aad", &copied, &mut opened, &tag),
                Err(OpenError)
            );
            assert!(opened.iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn names_round_trip() {
        for cipher in Cipher::ALL {
            assert_eq!(cipher.name().parse::<Cipher>(), Ok(cipher));
        }
        assert!("aes-512".parse::<Cipher>().is_err());
    }

    #[test]
    fn key_length_is_checked() {
        assert!(ChunkCipher::new(Cipher::Aes256Gcm, &[0; 16]).is_none());
        assert!(ChunkCipher::new(Cipher::Aes128Gcm, &[0; 16]).is_some());
    }
}
