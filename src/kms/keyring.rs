//! The local keyring file: master keys (CMKs) kept as JSON, mode 0600, written atomically.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::secret::SecretBytes;

/// The environment variable naming the keyring file.
pub const KEYRING_ENV: &str = "DATAKEY_KEYRING";

/// The keyring format version this code reads and writes.
pub const KEYRING_VERSION: u32 = 1;

/// The largest keyring file read, so a wrong path cannot make us load a huge file.
const MAX_KEYRING_LEN: u64 = 64 * 1024 * 1024;

/// The longest alias name accepted.
const MAX_ALIAS_LEN: usize = 60;

/// The longest description accepted.
const MAX_DESCRIPTION_LEN: usize = 1024;

/// 256-bit master-key material.
pub type KeyMaterial = SecretBytes<32>;

/// Whether a master key may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    /// Usable for every operation.
    Enabled,
    /// Refused for every operation until enabled again.
    Disabled,
}

impl KeyState {
    /// The API name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "Enabled",
            Self::Disabled => "Disabled",
        }
    }
}

/// One master key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MasterKey {
    /// The key id, a UUID.
    pub key_id: String,
    /// The alias without the `alias/` prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Creation time, Unix seconds.
    pub create_time: i64,
    /// Enabled or disabled.
    pub key_state: KeyState,
    /// The key bytes, base64 in the file.
    #[serde(
        serialize_with = "material_to_base64",
        deserialize_with = "material_from_base64"
    )]
    pub material: KeyMaterial,
}

impl MasterKey {
    /// Whether `name` (an id or `alias/NAME`) names this key.
    pub fn is_named(&self, name: &str) -> bool {
        match name.strip_prefix("alias/") {
            Some(alias) => self.alias.as_deref() == Some(alias),
            None => self.key_id == name,
        }
    }
}

/// The keyring file's content.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Keyring {
    /// The format version, [`KEYRING_VERSION`].
    pub version: u32,
    /// The master keys, oldest first.
    pub keys: Vec<MasterKey>,
}

/// Why the keyring could not be read or changed.
#[derive(Debug)]
pub enum KeyringError {
    /// An alias already names another key.
    AliasTaken(String),
    /// An alias or description does not meet the rules.
    InvalidName(String),
    /// Reading, writing or locking the file failed.
    Io {
        /// The keyring file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The keyring file does not exist.
    Missing(PathBuf),
    /// No key has this id or alias.
    NotFound(String),
    /// The file is not a keyring this version understands.
    Parse {
        /// The keyring file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is readable or writable by group or others.
    Permissions {
        /// The keyring file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AliasTaken(alias) => write!(f, "alias {alias:?} already names a key"),
            Self::InvalidName(why) => f.write_str(why),
            Self::Io { path, source } => write!(f, "keyring {}: {source}", path.display()),
            Self::Missing(path) => write!(f, "no keyring at {}", path.display()),
            Self::NotFound(name) => write!(f, "no master key {name:?} in the keyring"),
            Self::Parse { path, reason } => {
                write!(f, "keyring {} is not valid: {reason}", path.display())
            }
            Self::Permissions { path, mode } => write!(
                f,
                "keyring {} has mode {mode:04o}, open to group or others; run chmod 600 on it",
                path.display()
            ),
        }
    }
}

impl std::error::Error for KeyringError {}

impl Keyring {
    /// Reads the keyring at `path`, refusing a file open to group or others.
    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        let io_err = |source| KeyringError::Io {
            path: path.to_owned(),
            source,
        };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(KeyringError::Missing(path.to_owned()));
            }
            Err(err) => return Err(io_err(err)),
        };

        let meta = file.metadata().map_err(io_err)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyringError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        if meta.len() > MAX_KEYRING_LEN {
            let reason = format!("larger than {MAX_KEYRING_LEN} bytes");
            return Err(KeyringError::Parse {
                path: path.to_owned(),
                reason,
            });
        }

        let mut text = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
        file.take(MAX_KEYRING_LEN)
            .read_to_end(&mut text)
            .map_err(io_err)?;
        Self::parse(&text).map_err(|reason| KeyringError::Parse {
            path: path.to_owned(),
            reason,
        })
    }

    /// A keyring with no keys.
    pub fn empty() -> Self {
        Self {
            version: KEYRING_VERSION,
            keys: Vec::new(),
        }
    }

    fn parse(text: &[u8]) -> Result<Self, String> {
        let ring: Self = serde_json::from_slice(text).map_err(|err| describe_json_error(&err))?;
        if ring.version != KEYRING_VERSION {
            return Err(format!("version {} is not {KEYRING_VERSION}", ring.version));
        }
        for (i, key) in ring.keys.iter().enumerate() {
            if !is_canonical_uuid(&key.key_id) {
                // The value is not shown: a damaged file may hold anything there, key bytes too.
                return Err(format!(
                    "the key id of key {} is not a lower-case hyphenated UUID",
                    i + 1
                ));
            }
            let later = &ring.keys[i + 1..];
            if later.iter().any(|other| other.key_id == key.key_id) {
                return Err(format!("key id {} appears twice", key.key_id));
            }
            if key.alias.is_some() && later.iter().any(|other| other.alias == key.alias) {
                return Err(format!("alias {:?} appears twice", key.alias));
            }
        }
        Ok(ring)
    }

    /// Finds a key by id or `alias/NAME`.
    pub fn find(&self, name: &str) -> Option<&MasterKey> {
        self.keys.iter().find(|key| key.is_named(name))
    }

    fn find_mut(&mut self, name: &str) -> Result<&mut MasterKey, KeyringError> {
        self.keys
            .iter_mut()
            .find(|key| key.is_named(name))
            .ok_or_else(|| KeyringError::NotFound(name.to_owned()))
    }

    /// Adds a new enabled key with fresh material and returns it.
    pub fn create_key(
        &mut self,
        alias: Option<&str>,
        description: &str,
    ) -> Result<&MasterKey, KeyringError> {
        if let Some(alias) = alias {
            check_alias(alias)?;
            if self
                .keys
                .iter()
                .any(|key| key.alias.as_deref() == Some(alias))
            {
                return Err(KeyringError::AliasTaken(alias.to_owned()));
            }
        }
        if description.len() > MAX_DESCRIPTION_LEN {
            let why = format!("description is longer than {MAX_DESCRIPTION_LEN} bytes");
            return Err(KeyringError::InvalidName(why));
        }

        self.keys.push(MasterKey {
            key_id: uuid::Uuid::new_v4().to_string(),
            alias: alias.map(str::to_owned),
            description: description.to_owned(),
            create_time: time::OffsetDateTime::now_utc().unix_timestamp(),
            key_state: KeyState::Enabled,
            material: KeyMaterial::random(),
        });
        Ok(self.keys.last().expect("a key was just pushed"))
    }

    /// Enables or disables a key.
    pub fn set_state(&mut self, name: &str, state: KeyState) -> Result<&MasterKey, KeyringError> {
        let key = self.find_mut(name)?;
        key.key_state = state;
        Ok(key)
    }

    /// Writes the keyring to `path` atomically: a mode-0600 temporary file in the same
    /// directory, synced, then renamed over the old file.
    pub fn save(&self, path: &Path) -> Result<(), KeyringError> {
        let io_err = |source| KeyringError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = parent_dir(path);
        create_private_dir(dir).map_err(io_err)?;

        let mut text = Zeroizing::new(Vec::with_capacity(256 + 512 * self.keys.len()));
        serde_json::to_writer_pretty(&mut *text, self).expect("a keyring always serializes");
        text.push(b'\n');

        let mut tmp = tempfile::Builder::new()
            .prefix(".keyring-")
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(io_err)?;
        tmp.write_all(&text).map_err(io_err)?;
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(path).map_err(|err| io_err(err.error))?;
        sync_dir(dir);
        Ok(())
    }

    /// Runs `change` on the current keyring under an exclusive lock and saves the result, so
    /// that two processes changing one keyring never lose each other's change.
    pub fn update<T>(
        path: &Path,
        change: impl FnOnce(&mut Keyring) -> Result<T, KeyringError>,
    ) -> Result<(Keyring, T), KeyringError> {
        Self::locked(path, |ring, _| change(ring).map(|out| (true, out)))
    }

    /// Creates the keyring at `path` with `init` unless it already exists, deciding under the
    /// lock. Returns whether it was created.
    pub fn create_if_missing(
        path: &Path,
        init: impl FnOnce(&mut Keyring) -> Result<(), KeyringError>,
    ) -> Result<bool, KeyringError> {
        let (_, created) = Self::locked(path, |ring, exists| {
            if exists {
                return Ok((false, false));
            }
            init(ring).map(|()| (true, true))
        })?;
        Ok(created)
    }

    /// Runs `change` under the lock with the current keyring and whether its file exists; saves
    /// it when `change` returns `true` with its result.
    fn locked<T>(
        path: &Path,
        change: impl FnOnce(&mut Keyring, bool) -> Result<(bool, T), KeyringError>,
    ) -> Result<(Keyring, T), KeyringError> {
        let path = &resolve_keyring_path(path)?;
        let _lock = KeyringLock::acquire(path)?;
        let (mut ring, exists) = match Self::load(path) {
            Ok(ring) => (ring, true),
            Err(KeyringError::Missing(_)) => (Self::empty(), false),
            Err(err) => return Err(err),
        };
        let (save, out) = change(&mut ring, exists)?;
        if save {
            ring.save(path)?;
        }
        Ok((ring, out))
    }
}

/// The file a keyring change must write: a symlink's target (so the change reaches the real
/// keyring instead of replacing the link), and never anything but a regular file.
fn resolve_keyring_path(path: &Path) -> Result<PathBuf, KeyringError> {
    let io_err = |source| KeyringError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(path.to_owned()),
        Err(err) => return Err(io_err(err)),
    };
    let real = if meta.file_type().is_symlink() {
        fs::canonicalize(path).map_err(io_err)?
    } else {
        path.to_owned()
    };
    if !fs::metadata(&real).map_err(io_err)?.is_file() {
        let reason = "not a regular file".to_owned();
        return Err(KeyringError::Parse {
            path: path.to_owned(),
            reason,
        });
    }
    Ok(real)
}

/// A JSON error without the offending text, which could be key material in the wrong field.
fn describe_json_error(err: &serde_json::Error) -> String {
    let what = match err.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "a missing or invalid field",
        serde_json::error::Category::Eof => "cut short",
    };
    format!("{what} at line {} column {}", err.line(), err.column())
}

fn is_canonical_uuid(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|uuid| uuid.to_string() == id)
}

/// An exclusive advisory lock on `<keyring>.lock`, released on drop.
struct KeyringLock(File);

impl KeyringLock {
    fn acquire(path: &Path) -> Result<Self, KeyringError> {
        let io_err = |source| KeyringError::Io {
            path: path.to_owned(),
            source,
        };
        create_private_dir(parent_dir(path)).map_err(io_err)?;

        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err)?;
        file.lock().map_err(io_err)?;
        Ok(Self(file))
    }
}

impl Drop for KeyringLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// The default keyring path: `$DATAKEY_KEYRING`, else `$XDG_DATA_HOME/datakey/keyring.json`,
/// else `~/.local/share/datakey/keyring.json`.
pub fn default_keyring_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(KEYRING_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/share")))?;
    Some(data_home.join("datakey").join("keyring.json"))
}

fn check_alias(alias: &str) -> Result<(), KeyringError> {
    let valid_chars = alias
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if alias.is_empty() || alias.len() > MAX_ALIAS_LEN || !valid_chars {
        return Err(KeyringError::InvalidName(format!(
            "alias {alias:?} must be 1 to {MAX_ALIAS_LEN} letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn sync_dir(dir: &Path) {
    // A failed directory sync only weakens durability after a crash; the rename has happened.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

fn material_to_base64<S: Serializer>(key: &KeyMaterial, s: S) -> Result<S::Ok, S::Error> {
    let text = Zeroizing::new(BASE64.encode(key.as_bytes()));
    s.serialize_str(&text)
}

fn material_from_base64<'de, D: Deserializer<'de>>(d: D) -> Result<KeyMaterial, D::Error> {
    struct MaterialVisitor;

    impl serde::de::Visitor<'_> for MaterialVisitor {
        type Value = KeyMaterial;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("32 bytes of key material in base64")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<KeyMaterial, E> {
            let bytes = Zeroizing::new(
                BASE64
                    .decode(text)
                    .map_err(|_| E::custom("key material is not base64"))?,
            );
            KeyMaterial::from_slice(&bytes).ok_or_else(|| E::custom("key material is not 32 bytes"))
        }
    }

    d.deserialize_str(MaterialVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/keyring.json");
        let mut ring = Keyring::empty();
        let id = ring
            .create_key(Some("default"), "first")
            .unwrap()
            .key_id
            .clone();
        ring.save(&path).unwrap();

        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = Keyring::load(&path).unwrap();
        let key = loaded.find("alias/default").unwrap();
        assert_eq!(key.key_id, id);
        assert_eq!(key.material, ring.keys[0].material);
        assert!(loaded.find(&id).is_some());
        assert!(loaded.find("alias/other").is_none());
    }

    #[test]
    fn refuses_keyring_open_to_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        Keyring::empty().save(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Keyring::load(&path).unwrap_err();
        assert!(
            matches!(err, KeyringError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
    }

    #[test]
    fn rejects_bad_aliases_and_duplicates() {
        let mut ring = Keyring::empty();
        ring.create_key(Some("a"), "").unwrap();
        assert!(matches!(
            ring.create_key(Some("a"), ""),
            Err(KeyringError::AliasTaken(_))
        ));
        assert!(matches!(
            ring.create_key(Some("a/b"), ""),
            Err(KeyringError::InvalidName(_))
        ));
        assert!(matches!(
            ring.create_key(Some(""), ""),
            Err(KeyringError::InvalidName(_))
        ));
    }

    #[test]
    fn update_keeps_concurrent_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..5 {
                        Keyring::update(&path, |ring| ring.create_key(None, "").map(|_| ()))
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(Keyring::load(&path).unwrap().keys.len(), 20);
    }

    #[test]
    fn debug_hides_material() {
        let mut ring = Keyring::empty();
        ring.create_key(None, "").unwrap();
        let material = BASE64.encode(ring.keys[0].material.as_bytes());
        assert!(!format!("{ring:?}").contains(&material));
    }

    #[test]
    fn changes_through_a_symlink_reach_the_real_keyring() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("link.json");
        Keyring::update(&real, |ring| ring.create_key(None, "").map(|_| ())).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();

        Keyring::update(&link, |ring| ring.create_key(None, "").map(|_| ())).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(Keyring::load(&real).unwrap().keys.len(), 2);
    }

    #[test]
    fn refuses_a_keyring_that_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Keyring::update(dir.path(), |_| Ok(())).unwrap_err();
        assert!(matches!(err, KeyringError::Parse { .. }), "{err}");
    }

    #[test]
    fn rejects_non_canonical_key_ids_and_hides_field_values() {
        let mut ring = Keyring::empty();
        ring.create_key(None, "").unwrap();
        let material = BASE64.encode(ring.keys[0].material.as_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");

        let upper = ring.keys[0].key_id.to_uppercase();
        let mut bad = ring.clone();
        bad.keys[0].key_id = upper;
        bad.save(&path).unwrap();
        assert!(matches!(
            Keyring::load(&path),
            Err(KeyringError::Parse { .. })
        ));

        // Whatever sits where the id belongs (here the key's own bytes) is not repeated.
        let mut swapped = ring.clone();
        swapped.keys[0].key_id = material.clone();
        swapped.save(&path).unwrap();
        let err = Keyring::load(&path).unwrap_err().to_string();
        assert!(err.contains("key id of key 1"), "{err}");
        assert!(!err.contains(&material), "{err}");

        let text = fs::read_to_string({
            ring.save(&path).unwrap();
            &path
        })
        .unwrap();
        fs::write(&path, text.replace("\"Enabled\"", &format!("{material:?}"))).unwrap();
        let err = Keyring::load(&path).unwrap_err().to_string();
        assert!(err.contains("invalid field"), "{err}");
        assert!(!err.contains(&material), "{err}");
    }

    #[test]
    fn rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        fs::write(&path, b"{\"version\":1,\"keys\":[{}]}").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            Keyring::load(&path),
            Err(KeyringError::Parse { .. })
        ));
    }
}
