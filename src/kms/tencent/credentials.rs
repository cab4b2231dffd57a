//! Tencent Cloud credentials, from the environment or the SDK-style credentials file.
//!
//! Credentials never come from a command-line argument and are never logged: the secret key and
//! the session token are wiped on drop and hidden by `Debug`.

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::options::TencentSetupError;

/// The variable holding the SecretId.
pub const ENV_SECRET_ID: &str = "TENCENTCLOUD_SECRET_ID";

/// The variable holding the SecretKey.
pub const ENV_SECRET_KEY: &str = "TENCENTCLOUD_SECRET_KEY";

/// The variable holding a temporary session token.
pub const ENV_SESSION_TOKEN: &str = "TENCENTCLOUD_SESSION_TOKEN";

/// The profile read from the credentials file when none is named.
pub const DEFAULT_CREDENTIALS_PROFILE: &str = "default";

/// The credentials file below the home directory.
const CREDENTIALS_FILE: &str = ".tencentcloud/credentials";

/// A secret string (a SecretKey or session token): wiped on drop, never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Takes ownership of `text`.
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The secret text, for signing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

/// A SecretId, its SecretKey and an optional session token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The SecretId (an identifier, not a secret; it appears in every signed request).
    pub secret_id: String,
    /// The SecretKey.
    pub secret_key: SecretString,
    /// The token of temporary credentials, sent as `X-TC-Token`.
    pub session_token: Option<SecretString>,
}

impl Credentials {
    /// Credentials from their parts.
    pub fn new(secret_id: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self {
            secret_id: secret_id.into(),
            secret_key: SecretString::new(secret_key.into()),
            session_token: None,
        }
    }

    /// The environment's credentials, if both the id and the key are set and non-empty.
    pub fn from_env() -> Option<Self> {
        let id = non_empty_var(ENV_SECRET_ID)?;
        let key = Zeroizing::new(non_empty_var(ENV_SECRET_KEY)?);
        let mut credentials = Self::new(id, key.as_str());
        credentials.session_token = non_empty_var(ENV_SESSION_TOKEN).map(SecretString::new);
        Some(credentials)
    }

    /// The environment's credentials, else those of `profile` in `~/.tencentcloud/credentials`.
    pub fn load(profile: Option<&str>) -> Result<Self, TencentSetupError> {
        if let Some(credentials) = Self::from_env() {
            log::debug!("tencent credentials from the environment");
            return Ok(credentials);
        }
        let Some(path) = default_file() else {
            return Err(TencentSetupError::NoCredentials);
        };
        if !path.exists() {
            return Err(TencentSetupError::NoCredentials);
        }
        log::debug!("tencent credentials from {}", path.display());
        Self::from_file(&path, profile.unwrap_or(DEFAULT_CREDENTIALS_PROFILE))
    }

    /// Reads `profile` from an INI-style credentials file with `secret_id` and `secret_key`.
    pub fn from_file(path: &Path, profile: &str) -> Result<Self, TencentSetupError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|err| {
            TencentSetupError::CredentialsFile(format!("{}: {err}", path.display()))
        })?);
        let missing = |what: &str| {
            TencentSetupError::CredentialsFile(format!(
                "{}: profile [{profile}] has no {what}",
                path.display()
            ))
        };
        let id = ini_value(&text, profile, "secret_id").ok_or_else(|| missing("secret_id"))?;
        let key = ini_value(&text, profile, "secret_key").ok_or_else(|| missing("secret_key"))?;
        let mut credentials = Self::new(id, key);
        credentials.session_token = ini_value(&text, profile, "token").map(SecretString::new);
        Ok(credentials)
    }
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// `~/.tencentcloud/credentials`, if a home directory is known.
pub fn default_file() -> Option<PathBuf> {
    std::env::home_dir().map(|home| home.join(CREDENTIALS_FILE))
}

/// The value of `key` in the `[section]` of INI-like text; `#` and `;` start comment lines.
fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut in_section = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = name.trim() == section;
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if in_section && name.trim() == key && !value.trim().is_empty() {
            return Some(value.trim().to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# comment
[default]
secret_id = AKIDdefault
secret_key = keydefault

[ops]
; another comment
secret_id=AKIDops
secret_key = key=with=equals
token = tok
";

    #[test]
    fn reads_profiles_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, FILE).unwrap();

        let default = Credentials::from_file(&path, "default").unwrap();
        assert_eq!(default.secret_id, "AKIDdefault");
        assert_eq!(default.secret_key.expose(), "keydefault");
        assert!(default.session_token.is_none());

        let ops = Credentials::from_file(&path, "ops").unwrap();
        assert_eq!(ops.secret_id, "AKIDops");
        assert_eq!(ops.secret_key.expose(), "key=with=equals");
        assert_eq!(ops.session_token.unwrap().expose(), "tok");

        let err = Credentials::from_file(&path, "missing").unwrap_err();
        assert!(
            err.to_string().contains("[missing] has no secret_id"),
            "{err}"
        );
        let err = Credentials::from_file(&dir.path().join("none"), "default").unwrap_err();
        assert!(matches!(err, TencentSetupError::CredentialsFile(_)));
    }

    #[test]
    fn debug_hides_the_secret_key() {
        let mut credentials = Credentials::new("AKIDvisible", "very-secret-key");
        credentials.session_token = Some(SecretString::new("very-secret-token".into()));
        let shown = format!("{credentials:?}");
        assert!(shown.contains("AKIDvisible"));
        assert!(!shown.contains("very-secret"), "{shown}");
    }
}
