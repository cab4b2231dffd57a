//! Helpers shared by the CLI integration tests: a private keyring and a `datakey` command.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A temporary directory with its own keyring path.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn keyring(&self) -> PathBuf {
        self.path("keyring.json")
    }

    /// `datakey` with this sandbox's keyring and no inherited configuration.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("datakey").unwrap();
        cmd.current_dir(self.dir.path())
            .env("DATAKEY_KEYRING", self.keyring())
            .env("HOME", self.dir.path())
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("DATAKEY_LOG")
            .env_remove("TENCENTCLOUD_SECRET_ID")
            .env_remove("TENCENTCLOUD_SECRET_KEY");
        cmd
    }

    /// Writes `data` to `name` and returns its path.
    pub fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, data).unwrap();
        path
    }

    /// Copies the frozen fixture keyring in, with the mode datakey requires.
    pub fn use_fixture_keyring(&self) {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/keyring.json");
        fs::copy(src, self.keyring()).unwrap();
        fs::set_permissions(self.keyring(), fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// The names in the sandbox directory, sorted, without the keyring files.
    pub fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("keyring.json"))
            .collect();
        names.sort();
        names
    }
}

/// Deterministic, incompressible-looking test data.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}
