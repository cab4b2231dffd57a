//! The `datakey kms serve` binary: port 0 discovery, refusal without credentials, and a clean
//! stop on SIGTERM and SIGINT with the keyring intact.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use datakey::kms::local::LocalKms;
use serde_json::json;
use support::{SECRET_ID, SECRET_KEY, tc3};

/// How long the binary gets to start or to stop.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(20);

const LISTEN_PREFIX: &str = "datakey kms serve: listening on http://";

fn serve(keyring: &std::path::Path) -> (Child, String) {
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
    (child, host)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_with_timeout(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > PROCESS_TIMEOUT {
            let _ = child.kill();
            panic!("the server did not stop within {PROCESS_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serves_on_a_free_port_and_stops_cleanly_on_signals() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring.json");
    for name in ["-TERM", "-INT"] {
        let (mut child, host) = serve(&keyring);
        let alias = format!("via{}", &name[1..]);
        let created = tc3(&host, "CreateKey", &json!({ "Alias": alias }));
        assert!(created.error_code().is_none(), "{}", created.body);

        signal(&child, name);
        let status = wait_with_timeout(&mut child);
        assert!(status.success(), "{name}: {status:?}");
    }

    // Both servers' keys are in the keyring, which still loads.
    let kms = LocalKms::open(&keyring).unwrap();
    assert!(kms.describe("alias/viaTERM").is_ok());
    assert!(kms.describe("alias/viaINT").is_ok());
    assert!(kms.describe("alias/default").is_ok());
}

#[test]
fn refuses_to_start_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_datakey"))
        .args(["kms", "serve", "--listen", "127.0.0.1:0", "--keyring"])
        .arg(dir.path().join("keyring.json"))
        .env_remove("TENCENTCLOUD_SECRET_ID")
        .env_remove("TENCENTCLOUD_SECRET_KEY")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TENCENTCLOUD_SECRET_ID"), "{stderr}");
    assert!(stderr.contains("--credentials"), "{stderr}");
}

#[test]
fn serves_while_the_cli_changes_the_keyring() {
    const ROUNDS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring.json");
    let (mut child, host) = serve(&keyring);

    std::thread::scope(|scope| {
        scope.spawn(|| {
            for round in 0..ROUNDS {
                let alias = format!("served{round}");
                let answer = tc3(&host, "CreateKey", &json!({ "Alias": alias }));
                assert!(answer.error_code().is_none(), "{}", answer.body);
            }
        });
        scope.spawn(|| {
            for round in 0..ROUNDS {
                let status = Command::new(env!("CARGO_BIN_EXE_datakey"))
                    .args([
                        "keys",
                        "create",
                        "--alias",
                        &format!("cli{round}"),
                        "--keyring",
                    ])
                    .arg(&keyring)
                    .stdout(Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success());
            }
        });
    });

    // The server sees the CLI's keys, and the file holds every key from both.
    let described = tc3(&host, "DescribeKey", &json!({"KeyId": "alias/cli3"}));
    assert!(described.error_code().is_none(), "{}", described.body);
    signal(&child, "-TERM");
    assert!(wait_with_timeout(&mut child).success());
    assert_eq!(
        LocalKms::open(&keyring).unwrap().list().unwrap().len(),
        2 * ROUNDS + 1
    );
}

// Encrypting and decrypting through the server with both APIs is tests/tencent_e2e.rs.

#[test]
fn credentials_file_gives_several_pairs() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    let text = format!(
        "# test pairs\n{SECRET_ID} {SECRET_KEY}\n{} {}\n",
        support::OTHER_SECRET_ID,
        support::OTHER_SECRET_KEY
    );
    std::fs::write(&file, text).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_datakey"))
        .args(["kms", "serve", "--listen", "127.0.0.1:0", "--credentials"])
        .arg(&file)
        .arg("--keyring")
        .arg(dir.path().join("keyring.json"))
        .env_remove("TENCENTCLOUD_SECRET_ID")
        .env_remove("TENCENTCLOUD_SECRET_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let host = line.trim().strip_prefix(LISTEN_PREFIX).unwrap().to_owned();

    let body = br#"{"Limit": 5}"#;
    for (id, key) in [
        (SECRET_ID, SECRET_KEY),
        (support::OTHER_SECRET_ID, support::OTHER_SECRET_KEY),
    ] {
        let mut call = support::Tc3Call::new("ListKeys", body);
        call.secret_id = id;
        call.secret_key = key;
        let answer = call.send(&host);
        assert!(answer.error_code().is_none(), "{id}: {}", answer.body);
    }
    let mut stranger = support::Tc3Call::new("ListKeys", body);
    stranger.secret_id = "AKIDnotinthefile";
    assert_eq!(
        stranger.send(&host).error_code(),
        Some("AuthFailure.SecretIdNotFound")
    );

    signal(&child, "-TERM");
    assert!(wait_with_timeout(&mut child).success());
}

#[test]
fn an_unwritable_stdout_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_datakey"))
        .args(["kms", "serve", "--listen", "127.0.0.1:0", "--keyring"])
        .arg(dir.path().join("keyring.json"))
        .env("TENCENTCLOUD_SECRET_ID", SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
        .stdout(full)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_with_timeout(&mut child);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("writing standard output"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_stalled_request_does_not_hold_the_stop() {
    use std::io::Write;

    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring.json");
    let (mut child, host) = serve(&keyring);

    // Headers promising a body, one byte of it, then nothing: a worker waits on this client.
    let mut stalled = std::net::TcpStream::connect(&host).unwrap();
    stalled
        .write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 5000\r\n\r\n{",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let asked = Instant::now();
    signal(&child, "-TERM");
    let status = wait_with_timeout(&mut child);
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < datakey::server::SHUTDOWN_GRACE + Duration::from_secs(5),
        "the stop took {took:?}"
    );
    assert!(
        LocalKms::open(&keyring)
            .unwrap()
            .describe("alias/default")
            .is_ok()
    );
    drop(stalled);
}
