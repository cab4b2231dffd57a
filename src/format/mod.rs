//! The datakey file header: its fields, their encoding, and the bounds checked on reading.
//!
//! `docs/FORMAT.md` describes every byte; section names quoted below refer to it.

pub mod keys;

use std::fmt;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::cipher::Cipher;
use crate::context::{ContextError, EncryptionContext};

/// The first seven bytes of every datakey file ("Prefix").
pub const MAGIC: &[u8; 7] = b"DATAKEY";

/// The format version this code writes and reads ("Prefix").
pub const VERSION: u8 = 1;

/// The length of the fixed prefix: magic, version, core length.
pub const PREFIX_LEN: usize = MAGIC.len() + 1 + 4;

/// The largest whole header accepted, in bytes ("Bounds").
pub const MAX_HEADER_LEN: usize = 1024 * 1024;

/// The smallest chunk size, in plaintext bytes ("Bounds").
pub const MIN_CHUNK_SIZE: u32 = 4 * 1024;

/// The largest chunk size, in plaintext bytes ("Bounds").
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;

/// The chunk size used unless another is asked for.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;

/// The most wrapped-key entries one file may carry ("Bounds").
pub const MAX_WRAPPED_KEYS: usize = 16;

/// The length of the per-file salt.
pub const SALT_LEN: usize = 32;

/// The length of the key commitment and of the header MAC.
pub const TAG32_LEN: usize = 32;

/// The part of the header covered by the header MAC and bound into every chunk ("Core").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Core {
    /// The chunk cipher.
    pub cipher: Cipher,
    /// Plaintext bytes per chunk (the last chunk may be shorter).
    pub chunk_size: u32,
    /// The random per-file salt for the key derivation.
    pub salt: [u8; SALT_LEN],
    /// The canonical encryption context, as pairs in byte order of their keys.
    pub context: Vec<(String, String)>,
}

/// One wrapped copy of the data key ("Wrapped keys"). Not covered by the header MAC, so that a
/// rewrap can replace it; the key commitment is what rejects a swapped or forged entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The back-end: `local` or `tencent`.
    pub backend: String,
    /// The master key id the KMS reported.
    pub key_id: String,
    /// The region, for a remote KMS.
    pub region: Option<String>,
    /// The endpoint, when it was not the default for the region.
    pub endpoint: Option<String>,
    /// The CiphertextBlob exactly as the KMS returned it.
    pub blob: String,
}

/// A parsed header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The authenticated core.
    pub core: Core,
    /// The wrapped copies of the data key, at least one.
    pub wrapped_keys: Vec<WrappedKey>,
    /// The key commitment.
    pub commitment: [u8; TAG32_LEN],
    /// The header MAC.
    pub mac: [u8; TAG32_LEN],
    /// The prefix and core exactly as read or written: the bytes that are MACed and hashed.
    pub core_bytes: Vec<u8>,
}

/// Why a header could not be read.
#[derive(Debug)]
pub enum HeaderError {
    /// The input ended inside the header.
    Truncated,
    /// The input does not start with the datakey magic.
    NotDatakey,
    /// A version this code does not read.
    UnsupportedVersion(u8),
    /// A field is out of bounds or does not decode.
    Malformed(String),
    /// Reading failed.
    Io(io::Error),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("file ends inside the header"),
            Self::NotDatakey => f.write_str("not a datakey file (bad magic)"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported datakey format version {v}"),
            Self::Malformed(why) => write!(f, "malformed header: {why}"),
            Self::Io(err) => write!(f, "reading the header: {err}"),
        }
    }
}

impl std::error::Error for HeaderError {}

impl Core {
    /// A core for a new file; the context is stored in canonical order.
    pub fn new(
        cipher: Cipher,
        chunk_size: u32,
        salt: [u8; SALT_LEN],
        context: &EncryptionContext,
    ) -> Self {
        let context = context
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Self {
            cipher,
            chunk_size,
            salt,
            context,
        }
    }

    /// The encryption context, validated and in canonical form.
    pub fn encryption_context(&self) -> Result<EncryptionContext, ContextError> {
        EncryptionContext::from_pairs(self.context.iter().cloned())
    }

    /// Encodes the prefix and core ("Prefix", "Core").
    pub fn encode(&self) -> Vec<u8> {
        let core = postcard::to_stdvec(self).expect("a core always serializes");
        let mut out = Vec::with_capacity(PREFIX_LEN + core.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(core.len() as u32).to_le_bytes());
        out.extend_from_slice(&core);
        out
    }

    fn check(&self) -> Result<(), HeaderError> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(HeaderError::Malformed(format!(
                "chunk size {} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}",
                self.chunk_size
            )));
        }
        let context = self
            .encryption_context()
            .map_err(|e| HeaderError::Malformed(e.to_string()))?;
        let canonical: Vec<_> = context
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        if canonical != self.context {
            return Err(HeaderError::Malformed(
                "context is not in canonical order".into(),
            ));
        }
        Ok(())
    }
}

impl Header {
    /// The encoded length of the whole header.
    pub fn encoded_len(&self) -> usize {
        self.core_bytes.len() + 4 + encode_keys(&self.wrapped_keys).len() + 2 * TAG32_LEN
    }

    /// Writes the whole header.
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        let keys = encode_keys(&self.wrapped_keys);
        out.write_all(&self.core_bytes)?;
        out.write_all(&(keys.len() as u32).to_le_bytes())?;
        out.write_all(&keys)?;
        out.write_all(&self.commitment)?;
        out.write_all(&self.mac)
    }

    /// Reads and bounds-checks a header, allocating nothing before its length is checked.
    pub fn read_from(input: &mut dyn Read) -> Result<Self, HeaderError> {
        let mut prefix = [0u8; PREFIX_LEN];
        let got = read_up_to(input, &mut prefix)?;
        if got < MAGIC.len() || &prefix[..MAGIC.len()] != MAGIC {
            return Err(HeaderError::NotDatakey);
        }
        if got < PREFIX_LEN {
            return Err(HeaderError::Truncated);
        }
        if prefix[MAGIC.len()] != VERSION {
            return Err(HeaderError::UnsupportedVersion(prefix[MAGIC.len()]));
        }

        let core_len = u32::from_le_bytes(prefix[8..12].try_into().expect("4 bytes")) as usize;
        check_len(core_len, 0)?;
        let mut core_bytes = Vec::with_capacity(PREFIX_LEN + core_len);
        core_bytes.extend_from_slice(&prefix);
        core_bytes.resize(PREFIX_LEN + core_len, 0);
        read_exact(input, &mut core_bytes[PREFIX_LEN..])?;
        let core: Core = decode_exact(&core_bytes[PREFIX_LEN..], "core")?;
        core.check()?;
        if core.encode() != core_bytes {
            return Err(HeaderError::Malformed(
                "core is not canonically encoded".into(),
            ));
        }

        let mut len = [0u8; 4];
        read_exact(input, &mut len)?;
        let keys_len = u32::from_le_bytes(len) as usize;
        check_len(core_len, keys_len)?;
        let mut keys = vec![0u8; keys_len];
        read_exact(input, &mut keys)?;
        let wrapped_keys: Vec<WrappedKey> = decode_exact(&keys, "wrapped keys")?;
        // One encoding per header: `encoded_len` and the body offset rely on it.
        if encode_keys(&wrapped_keys) != keys {
            return Err(HeaderError::Malformed(
                "wrapped keys are not canonically encoded".into(),
            ));
        }
        if wrapped_keys.is_empty() || wrapped_keys.len() > MAX_WRAPPED_KEYS {
            return Err(HeaderError::Malformed(format!(
                "{} wrapped keys, expected 1 to {MAX_WRAPPED_KEYS}",
                wrapped_keys.len()
            )));
        }

        let mut tags = [0u8; 2 * TAG32_LEN];
        read_exact(input, &mut tags)?;
        let commitment = tags[..TAG32_LEN].try_into().expect("32 bytes");
        let mac = tags[TAG32_LEN..].try_into().expect("32 bytes");
        Ok(Self {
            core,
            wrapped_keys,
            commitment,
            mac,
            core_bytes,
        })
    }
}

fn encode_keys(keys: &[WrappedKey]) -> Vec<u8> {
    postcard::to_stdvec(keys).expect("wrapped keys always serialize")
}

/// Checks the declared lengths against [`MAX_HEADER_LEN`] ("Bounds").
fn check_len(core_len: usize, keys_len: usize) -> Result<(), HeaderError> {
    let total = PREFIX_LEN + core_len + 4 + keys_len + 2 * TAG32_LEN;
    if total > MAX_HEADER_LEN {
        return Err(HeaderError::Malformed(format!(
            "header would be {total} bytes, more than {MAX_HEADER_LEN}"
        )));
    }
    Ok(())
}

fn decode_exact<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, HeaderError> {
    let (value, rest) = postcard::take_from_bytes(bytes)
        .map_err(|err| HeaderError::Malformed(format!("{what}: {err}")))?;
    if !rest.is_empty() {
        return Err(HeaderError::Malformed(format!(
            "{what}: {} unused bytes",
            rest.len()
        )));
    }
    Ok(value)
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_up_to(input: &mut dyn Read, buf: &mut [u8]) -> Result<usize, HeaderError> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(HeaderError::Io(err)),
        }
    }
    Ok(got)
}

fn read_exact(input: &mut dyn Read, buf: &mut [u8]) -> Result<(), HeaderError> {
    input.read_exact(buf).map_err(|err| match err.kind() {
        io::ErrorKind::UnexpectedEof => HeaderError::Truncated,
        _ => HeaderError::Io(err),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        let context = EncryptionContext::from_assignments(&["b=2", "a=1"]).unwrap();
        let core = Core::new(Cipher::ChaCha20Poly1305, 65536, [9; SALT_LEN], &context);
        let wrapped = WrappedKey {
            backend: "local".into(),
            key_id: "id".into(),
            region: None,
            endpoint: Some("http://x".into()),
            blob: "blob".into(),
        };
        Header {
            core_bytes: core.encode(),
            core,
            wrapped_keys: vec![wrapped],
            commitment: [1; 32],
            mac: [2; 32],
        }
    }

    #[test]
    fn header_round_trips() {
        let header = sample();
        let mut bytes = Vec::new();
        header.write_to(&mut bytes).unwrap();
        assert_eq!(bytes.len(), header.encoded_len());
        let back = Header::read_from(&mut bytes.as_slice()).unwrap();
        assert_eq!(back, header);
    }

    #[test]
    fn every_truncation_is_detected() {
        let mut bytes = Vec::new();
        sample().write_to(&mut bytes).unwrap();
        for len in 0..bytes.len() {
            let err = Header::read_from(&mut &bytes[..len]).unwrap_err();
            if len < MAGIC.len() {
                assert!(matches!(err, HeaderError::NotDatakey), "{len}: {err}");
                continue;
            }
            assert!(
                matches!(err, HeaderError::Truncated | HeaderError::Malformed(_)),
                "{len}: {err}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(0u8..=255, 0..600)) {
            let _ = Header::read_from(&mut bytes.as_slice());
        }

        #[test]
        fn mutated_headers_never_panic(pos in 0usize..400, value in 0u8..=255) {
            let mut bytes = Vec::new();
            sample().write_to(&mut bytes).unwrap();
            let pos = pos % bytes.len();
            bytes[pos] = value;
            if let Ok(header) = Header::read_from(&mut bytes.as_slice()) {
                // Whatever parses must re-encode to the same bytes: one encoding per header.
                let mut again = Vec::new();
                header.write_to(&mut again).unwrap();
                proptest::prop_assert_eq!(again, bytes);
            }
        }
    }

    #[test]
    fn huge_lengths_are_refused_before_allocating() {
        let mut bytes = Vec::new();
        sample().write_to(&mut bytes).unwrap();
        bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = Header::read_from(&mut bytes.as_slice()).unwrap_err();
        assert!(matches!(err, HeaderError::Malformed(_)), "{err}");
    }

    #[test]
    fn bad_magic_and_version() {
        let mut bytes = Vec::new();
        sample().write_to(&mut bytes).unwrap();
        let mut other = bytes.clone();
        other[0] = b'X';
        assert!(matches!(
            Header::read_from(&mut other.as_slice()),
            Err(HeaderError::NotDatakey)
        ));
        bytes[7] = 2;
        let err = Header::read_from(&mut bytes.as_slice()).unwrap_err();
        assert!(matches!(err, HeaderError::UnsupportedVersion(2)));
    }

    #[test]
    fn over_long_varints_are_refused() {
        let mut bytes = Vec::new();
        sample().write_to(&mut bytes).unwrap();
        let keys_at = sample().core_bytes.len();
        let keys_len = u32::from_le_bytes(bytes[keys_at..keys_at + 4].try_into().unwrap());
        assert_eq!(bytes[keys_at + 4], 1, "one wrapped key");

        // The entry count 1 written as two bytes, 81 00, decodes to the same value.
        let mut long = bytes[..keys_at].to_vec();
        long.extend_from_slice(&(keys_len + 1).to_le_bytes());
        long.extend_from_slice(&[0x81, 0x00]);
        long.extend_from_slice(&bytes[keys_at + 5..]);
        let err = Header::read_from(&mut long.as_slice()).unwrap_err();
        assert!(err.to_string().contains("canonically"), "{err}");
    }

    #[test]
    fn chunk_size_bounds() {
        let mut header = sample();
        header.core.chunk_size = 1024;
        header.core_bytes = header.core.encode();
        let mut bytes = Vec::new();
        header.write_to(&mut bytes).unwrap();
        assert!(matches!(
            Header::read_from(&mut bytes.as_slice()),
            Err(HeaderError::Malformed(_))
        ));
    }
}
