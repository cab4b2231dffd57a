//! datakey: envelope encryption of files with data keys from a KMS.
//!
//! A file is encrypted under a fresh data key from [`kms::Kms::generate_data_key`]; the data key
//! is stored wrapped (as the KMS's CiphertextBlob) in the file header, and recovered with
//! [`kms::Kms::decrypt`]. The byte layout is in `docs/FORMAT.md`.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod cipher;
pub mod context;
pub mod envelope;
pub mod format;
pub mod io;
pub mod kms;
pub mod secret;
pub mod server;
pub mod stream;
