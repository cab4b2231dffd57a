//! The SecretId/SecretKey pairs that `kms serve` accepts signatures from.
//!
//! They come from `TENCENTCLOUD_SECRET_ID` / `TENCENTCLOUD_SECRET_KEY`, or from a file of pairs:
//! one `SECRET_ID SECRET_KEY` pair a line, separated by spaces or tabs; blank lines and lines
//! starting with `#` are skipped. The file must not be readable by group or others.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// The variable holding the one SecretId accepted when no file is given.
pub const SECRET_ID_ENV: &str = "TENCENTCLOUD_SECRET_ID";

/// The variable holding its SecretKey.
pub const SECRET_KEY_ENV: &str = "TENCENTCLOUD_SECRET_KEY";

/// The largest credentials file read.
const MAX_FILE_LEN: u64 = 1024 * 1024;

/// The accepted credentials: SecretKeys by SecretId. `Debug` shows only the ids.
#[derive(Clone, Default)]
pub struct Credentials {
    keys: BTreeMap<String, Zeroizing<String>>,
}

/// Why no credentials could be loaded.
#[derive(Debug)]
pub enum CredentialsError {
    /// A line of the file is not `SECRET_ID SECRET_KEY`.
    BadLine {
        /// The file.
        path: PathBuf,
        /// The 1-based line number (the line itself may hold a secret and is not shown).
        line: usize,
    },
    /// The same SecretId appears twice.
    Duplicate(String),
    /// Neither a file nor both environment variables were given.
    Missing,
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is readable or writable by group or others.
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadLine { path, line } => write!(
                f,
                "credentials file {} line {line} is not \"SECRET_ID SECRET_KEY\"",
                path.display()
            ),
            Self::Duplicate(id) => write!(f, "SecretId {id:?} appears twice"),
            Self::Missing => write!(
                f,
                "no credentials to verify requests with: set {SECRET_ID_ENV} and \
                 {SECRET_KEY_ENV}, or pass --credentials FILE with one \"SECRET_ID SECRET_KEY\" \
                 pair a line"
            ),
            Self::Io { path, source } => {
                write!(f, "credentials file {}: {source}", path.display())
            }
            Self::Permissions { path, mode } => write!(
                f,
                "credentials file {} has mode {mode:04o}, open to group or others; \
                 run chmod 600 on it",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CredentialsError {}

impl Credentials {
    /// No credentials at all (every request is refused).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one pair; a repeated SecretId is an error.
    pub fn insert(&mut self, secret_id: &str, secret_key: &str) -> Result<(), CredentialsError> {
        if self.keys.contains_key(secret_id) {
            return Err(CredentialsError::Duplicate(secret_id.to_owned()));
        }
        let key = Zeroizing::new(secret_key.to_owned());
        self.keys.insert(secret_id.to_owned(), key);
        Ok(())
    }

    /// The pair in `TENCENTCLOUD_SECRET_ID` / `TENCENTCLOUD_SECRET_KEY`, when both are set and
    /// not empty.
    pub fn from_env() -> Result<Self, CredentialsError> {
        let id = std::env::var(SECRET_ID_ENV).unwrap_or_default();
        let key = Zeroizing::new(std::env::var(SECRET_KEY_ENV).unwrap_or_default());
        if id.trim().is_empty() || key.trim().is_empty() {
            return Err(CredentialsError::Missing);
        }
        let mut credentials = Self::new();
        credentials.insert(id.trim(), key.trim())?;
        Ok(credentials)
    }

    /// The pairs in a credentials file (format in the module docs).
    pub fn from_file(path: &Path) -> Result<Self, CredentialsError> {
        let text = read_private_file(path)?;
        let text = std::str::from_utf8(&text).map_err(|_| CredentialsError::BadLine {
            path: path.to_owned(),
            line: 1,
        })?;

        let mut credentials = Self::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [id, key] = fields[..] else {
                return Err(CredentialsError::BadLine {
                    path: path.to_owned(),
                    line: index + 1,
                });
            };
            credentials.insert(id, key)?;
        }
        if credentials.is_empty() {
            return Err(CredentialsError::Missing);
        }
        Ok(credentials)
    }

    /// The file when one is given, else the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, CredentialsError> {
        match file {
            Some(path) => Self::from_file(path),
            None => Self::from_env(),
        }
    }

    /// The SecretKey of `secret_id`.
    pub fn secret_key(&self, secret_id: &str) -> Option<&str> {
        self.keys.get(secret_id).map(|key| key.as_str())
    }

    /// Whether no pair is known.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("secret_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn read_private_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, CredentialsError> {
    let io_err = |source| CredentialsError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mode = file.metadata().map_err(io_err)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CredentialsError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }

    let mut text = Zeroizing::new(Vec::new());
    file.take(MAX_FILE_LEN)
        .read_to_end(&mut text)
        .map_err(io_err)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_private(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_pairs_skipping_comments() {
        let (_dir, path) = write_private("# team\nAKID1 key-one\n\n  AKID2\tkey-two  \n");
        let creds = Credentials::from_file(&path).unwrap();
        assert_eq!(creds.len(), 2);
        assert_eq!(creds.secret_key("AKID1"), Some("key-one"));
        assert_eq!(creds.secret_key("AKID2"), Some("key-two"));
        assert_eq!(creds.secret_key("AKID3"), None);
    }

    #[test]
    fn rejects_bad_lines_duplicates_and_open_files() {
        let (_dir, path) = write_private("AKID1 key one\n");
        let err = Credentials::from_file(&path).unwrap_err();
        assert!(matches!(err, CredentialsError::BadLine { line: 1, .. }));
        assert!(!err.to_string().contains("key one"), "{err}");

        let (_dir, path) = write_private("A k\nA j\n");
        assert!(matches!(
            Credentials::from_file(&path),
            Err(CredentialsError::Duplicate(_))
        ));

        let (_dir, path) = write_private("# nothing\n");
        assert!(matches!(
            Credentials::from_file(&path),
            Err(CredentialsError::Missing)
        ));

        let (_dir, path) = write_private("A k\n");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Credentials::from_file(&path),
            Err(CredentialsError::Permissions { mode: 0o644, .. })
        ));
    }

    #[test]
    fn debug_shows_ids_not_keys() {
        let mut creds = Credentials::new();
        creds.insert("AKIDshown", "hidden-secret").unwrap();
        let shown = format!("{creds:?}");
        assert!(shown.contains("AKIDshown"));
        assert!(!shown.contains("hidden-secret"), "{shown}");
    }

    #[test]
    fn missing_message_says_how_to_set_them() {
        let message = CredentialsError::Missing.to_string();
        assert!(message.contains(SECRET_ID_ENV) && message.contains("--credentials"));
    }
}
