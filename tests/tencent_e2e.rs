//! End to end: `datakey encrypt --kms tencent` against `datakey kms serve` on loopback, then
//! `decrypt` with the back-end taken from the header, byte for byte, with both API versions.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use assert_cmd::Command as CliCommand;
use predicates::str::contains;

const SECRET_ID: &str = "AKIDendtoend0001";
const SECRET_KEY: &str = "end-to-end-secret-key";
const LISTEN_PREFIX: &str = "datakey kms serve: listening on http://";

/// A running `datakey kms serve`, stopped when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(keyring: &Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_datakey"))
        .args(["kms", "serve", "--listen", "127.0.0.1:0", "--keyring"])
        .arg(keyring)
        .env("TENCENTCLOUD_SECRET_ID", SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let host = line
        .trim()
        .strip_prefix(LISTEN_PREFIX)
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Served {
        child,
        url: format!("http://{host}"),
    }
}

/// A `datakey` command isolated from the user's files, with the server's credentials.
fn datakey(home: &Path) -> CliCommand {
    let mut cmd = CliCommand::cargo_bin("datakey").unwrap();
    cmd.env_clear()
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("DATAKEY_KEYRING", home.join("client-keyring.json"))
        .env("TENCENTCLOUD_SECRET_ID", SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
        .timeout(std::time::Duration::from_secs(60));
    cmd
}

/// A sandbox with a server over its own keyring and a file of mixed content.
fn setup() -> (tempfile::TempDir, Served, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("server-keyring.json"));
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let input = dir.path().join("data.bin");
    std::fs::write(&input, &data).unwrap();
    (dir, served, input, data)
}

#[test]
fn round_trip_through_kms_serve_with_both_apis() {
    let (dir, served, input, data) = setup();
    // The legacy API with a long region name: only the endpoint's path tells decrypt the API.
    let cases = [
        ("v3", "ap-guangzhou"),
        ("legacy", "gz"),
        ("legacy", "ap-guangzhou"),
    ];
    for (api, region) in cases {
        let sealed = dir.path().join(format!("data.{api}.{region}.dk"));
        datakey(dir.path())
            .args([
                "encrypt", "--kms", "tencent", "--api", api, "--region", region,
            ])
            .args(["--endpoint", &served.url, "--key-id", "alias/default"])
            .args(["-c", "project=e2e", "-o"])
            .arg(&sealed)
            .arg(&input)
            .assert()
            .success();

        // No KMS flags: the header names the back-end, region and endpoint.
        let out = dir.path().join(format!("data.{api}.{region}.out"));
        datakey(dir.path())
            .args(["decrypt", "-c", "project=e2e", "-o"])
            .arg(&out)
            .arg(&sealed)
            .assert()
            .success();
        assert_eq!(std::fs::read(&out).unwrap(), data, "{api}");

        datakey(dir.path())
            .args(["decrypt", "-c", "project=other", "-o", "-"])
            .arg(&sealed)
            .assert()
            .code(1);
    }
    assert!(
        !dir.path().join("client-keyring.json").exists(),
        "the local keyring is never touched"
    );
}

#[test]
fn wrong_credentials_and_a_disabled_key_fail_with_exit_3() {
    let (dir, served, input, _) = setup();
    let sealed = dir.path().join("data.bin.dk");
    datakey(dir.path())
        .env("TENCENTCLOUD_SECRET_KEY", "not-the-key")
        .args(["encrypt", "--kms", "tencent", "--region", "ap-guangzhou"])
        .args(["--endpoint", &served.url, "--key-id", "alias/default"])
        .arg(&input)
        .assert()
        .code(3)
        .stderr(contains("AuthFailure.SignatureFailure"));
    assert!(!sealed.exists());

    datakey(dir.path())
        .args(["encrypt", "--kms", "tencent", "--region", "ap-guangzhou"])
        .args(["--endpoint", &served.url, "--key-id", "alias/default"])
        .arg(&input)
        .assert()
        .success();
    datakey(dir.path())
        .env("DATAKEY_KEYRING", dir.path().join("server-keyring.json"))
        .args(["keys", "disable", "alias/default"])
        .assert()
        .success();
    let out = dir.path().join("out.bin");
    datakey(dir.path())
        .args(["decrypt", "-o"])
        .arg(&out)
        .arg(&sealed)
        .assert()
        .code(3)
        .stderr(contains("ResourceUnavailable.CmkDisabled"));
    assert!(!out.exists());
}
