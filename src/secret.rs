//! Holders of key material: zeroized on drop, never shown by `Debug`.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// A plaintext data key as a KMS returns it (1 to 1024 bytes).
///
/// The bytes are wiped when the value is dropped, and `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey(Zeroizing<Vec<u8>>);

impl DataKey {
    /// Takes ownership of `bytes`; they are wiped when the key is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copies `bytes` into a new key; the caller wipes its own copy.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }

    /// Fills a new key of `len` bytes from the operating system's random source.
    pub fn random(len: usize) -> Self {
        let mut bytes = vec![0u8; len];
        fill_random(&mut bytes);
        Self::new(bytes)
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key has no bytes (never true for a key a KMS returned).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey([redacted; {} bytes])", self.0.len())
    }
}

/// A fixed-size secret (derived key, master key material), wiped on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, zeroize::ZeroizeOnDrop)]
pub struct SecretBytes<const N: usize>([u8; N]);

impl<const N: usize> SecretBytes<N> {
    /// Wraps `bytes`; the caller wipes any copy it kept.
    pub fn new(bytes: [u8; N]) -> Self {
        Self(bytes)
    }

    /// Fresh random bytes from the operating system.
    pub fn random() -> Self {
        let mut bytes = Self([0u8; N]);
        fill_random(&mut bytes.0);
        bytes
    }

    /// Copies a slice of exactly `N` bytes, or returns `None`.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut out = Self([0u8; N]);
        if bytes.len() != N {
            return None;
        }
        out.0.copy_from_slice(bytes);
        Some(out)
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8; N] {
        &self.0
    }

    /// Mutable access, for filling the secret in place.
    pub fn as_mut_bytes(&mut self) -> &mut [u8; N] {
        &mut self.0
    }
}

impl<const N: usize> fmt::Debug for SecretBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {N} bytes])")
    }
}

/// Fills `buf` from the operating system's random source.
///
/// A machine whose random source fails cannot encrypt safely, so this panics rather than
/// carrying on with predictable bytes.
pub fn fill_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random source failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_key_bytes() {
        let key = DataKey::new(vec![0xAB; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.to_lowercase().contains("ab, "), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
        assert!(shown.contains("32 bytes"));

        let secret = SecretBytes::new([0x5Au8; 32]);
        let shown = format!("{secret:?}");
        assert!(!shown.contains("90"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn random_keys_differ() {
        assert_ne!(DataKey::random(32), DataKey::random(32));
        assert_ne!(SecretBytes::<32>::random(), SecretBytes::<32>::random());
    }

    #[test]
    fn from_slice_checks_length() {
        assert!(SecretBytes::<16>::from_slice(&[0; 15]).is_none());
        assert!(SecretBytes::<16>::from_slice(&[1; 16]).is_some());
    }
}
