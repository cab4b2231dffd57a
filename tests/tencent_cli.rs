//! The CLI with `--kms tencent` against a scripted KMS on 127.0.0.1: flags, profiles, the file
//! header choosing the back-end on decrypt, and failures that leave no output file.

mod tencent_support;

use std::path::Path;

use assert_cmd::Command;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tempfile::TempDir;

use datakey::kms::tencent::sign::{self, Tc3Request};
use tencent_support::{Reply, Seen, Server};

const SECRET_ID: &str = "AKIDclitest0001";
const SECRET_KEY: &str = "cli-test-secret-key";
const DATA_KEY: [u8; 32] = [0x42; 32];
const PLAINTEXT: &[u8] = b"remote envelope round trip\n";

fn json(body: String) -> Reply {
    Reply::Raw(200, "application/json", body)
}

fn error(code: &str) -> Reply {
    json(format!(
        r#"{{"Response":{{"Error":{{"Code":"{code}","Message":"scripted"}},"RequestId":"e1"}}}}"#
    ))
}

/// Whether the request carries a valid TC3 signature by the test credentials.
fn signed_correctly(seen: &Seen) -> bool {
    let Some(auth) = seen
        .header("authorization")
        .and_then(|h| sign::parse_authorization(h).ok())
    else {
        return false;
    };
    let Some(timestamp) = seen.header("x-tc-timestamp").and_then(|t| t.parse().ok()) else {
        return false;
    };
    let headers: Vec<(&str, &str)> = seen
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let signed: Vec<&str> = auth.signed_headers.iter().map(String::as_str).collect();
    let request = Tc3Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        signed_headers: &signed,
        body: &seen.body,
        timestamp,
    };
    let Ok(canonical) = sign::canonical_request(&request) else {
        return false;
    };
    let to_sign = sign::string_to_sign(timestamp, &canonical).unwrap();
    let date = sign::tc3_date(timestamp).unwrap();
    auth.secret_id == SECRET_ID
        && sign::signatures_match(
            &sign::tc3_signature(SECRET_KEY, &date, &to_sign),
            &auth.signature,
        )
}

/// A toy KMS: the blob is `blob:` and the base64 of the context, which Decrypt checks.
fn toy_kms(_: usize, seen: &Seen) -> Reply {
    if !signed_correctly(seen) {
        return error("AuthFailure.SignatureFailure");
    }
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    let context = body["EncryptionContext"].as_str().unwrap_or("");
    let key = BASE64.encode(DATA_KEY);
    let blob = format!("blob:{}", BASE64.encode(context));
    match seen.header("x-tc-action") {
        Some("GenerateDataKey") => json(
            serde_json::json!({"Response": {"KeyId": "kid", "Plaintext": key,
                "CiphertextBlob": blob, "RequestId": "g1"}})
            .to_string(),
        ),
        Some("Decrypt") if body["CiphertextBlob"] == blob.as_str() => json(format!(
            r#"{{"Response":{{"KeyId":"kid","Plaintext":"{key}","RequestId":"d1"}}}}"#
        )),
        Some("Decrypt") => error("InvalidParameterValue.InvalidCiphertext"),
        _ => error("InvalidAction"),
    }
}

/// A `datakey` command isolated from the user's home, keyring, config and credentials.
fn datakey(home: &Path) -> Command {
    let mut cmd = Command::cargo_bin("datakey").unwrap();
    cmd.env_clear()
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("DATAKEY_KEYRING", home.join("keyring.json"))
        .env("TENCENTCLOUD_SECRET_ID", SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", SECRET_KEY);
    cmd
}

fn setup() -> (TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("notes.txt");
    std::fs::write(&input, PLAINTEXT).unwrap();
    (dir, input)
}

#[test]
fn encrypt_then_decrypt_finds_the_backend_from_the_header() {
    let server = Server::start_with(toy_kms);
    let (dir, input) = setup();
    datakey(dir.path())
        .args(["encrypt", "--kms", "tencent", "--region", "ap-guangzhou"])
        .args([
            "--endpoint",
            &server.url(),
            "--key-id",
            "kid",
            "-c",
            "team=ops",
        ])
        .arg(&input)
        .assert()
        .success();

    let sealed = dir.path().join("notes.txt.dk");
    let shown = datakey(dir.path())
        .args(["inspect", "--json"])
        .arg(&sealed)
        .output()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let entry = &shown["wrapped_keys"][0];
    assert_eq!(entry["backend"], "tencent");
    assert_eq!(entry["region"], "ap-guangzhou");
    assert_eq!(entry["endpoint"], format!("{}/", server.url()));

    std::fs::remove_file(&input).unwrap();
    datakey(dir.path())
        .args(["decrypt", "-c", "team=ops"])
        .arg(&sealed)
        .assert()
        .success();
    assert_eq!(std::fs::read(&input).unwrap(), PLAINTEXT);

    let actions: Vec<String> = server
        .requests()
        .iter()
        .map(|s| s.header("x-tc-action").unwrap_or("").to_owned())
        .collect();
    assert_eq!(actions, ["GenerateDataKey", "Decrypt"]);
}

#[test]
fn flags_override_the_header_on_decrypt() {
    let first = Server::start_with(toy_kms);
    let (dir, input) = setup();
    datakey(dir.path())
        .args(["encrypt", "--kms", "tencent", "--region", "ap-guangzhou"])
        .args(["--endpoint", &first.url(), "--key-id", "kid"])
        .arg(&input)
        .assert()
        .success();

    let second = Server::start_with(toy_kms);
    let out = dir.path().join("out.txt");
    datakey(dir.path())
        .args(["decrypt", "--endpoint", &second.url(), "-o"])
        .arg(&out)
        .arg(dir.path().join("notes.txt.dk"))
        .assert()
        .success();
    assert_eq!(std::fs::read(&out).unwrap(), PLAINTEXT);
    assert_eq!((first.hits(), second.hits()), (1, 1));
}

#[test]
fn a_profile_supplies_region_endpoint_and_key() {
    let server = Server::start_with(toy_kms);
    let (dir, input) = setup();
    let config = dir.path().join("config").join("datakey");
    std::fs::create_dir_all(&config).unwrap();
    let profile = format!(
        "[profile.lab]\nkms = \"tencent\"\nregion = \"ap-shanghai\"\nendpoint = \"{}\"\n\
         key_id = \"kid\"\ntimeout = 2\n",
        server.url()
    );
    std::fs::write(config.join("config.toml"), profile).unwrap();

    datakey(dir.path())
        .args(["encrypt", "--profile", "lab"])
        .arg(&input)
        .assert()
        .success();
    assert_eq!(server.hits(), 1);
    assert_eq!(
        server.requests()[0].header("x-tc-region"),
        Some("ap-shanghai")
    );
}

#[test]
fn missing_credentials_are_a_usage_error_before_any_request() {
    let server = Server::start_with(toy_kms);
    let (dir, input) = setup();
    datakey(dir.path())
        .env_remove("TENCENTCLOUD_SECRET_ID")
        .env_remove("TENCENTCLOUD_SECRET_KEY")
        .args(["encrypt", "--kms", "tencent", "--region", "ap-guangzhou"])
        .args(["--endpoint", &server.url(), "--key-id", "kid"])
        .arg(&input)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("TENCENTCLOUD_SECRET_ID"));
    assert_eq!(server.hits(), 0);
    assert!(!dir.path().join("notes.txt.dk").exists());
}

#[test]
fn a_short_region_needs_the_legacy_api() {
    let (dir, input) = setup();
    for api in [&["--api", "v3"][..], &[]] {
        datakey(dir.path())
            .args(["encrypt", "--kms", "tencent", "--region", "gz"])
            .args(api)
            .args(["--endpoint", "http://127.0.0.1:9", "--key-id", "kid"])
            .arg(&input)
            .assert()
            .code(2)
            .stderr(predicates::str::contains("legacy short code"));
    }
}

#[test]
fn the_legacy_api_knows_hosts_for_three_regions_only() {
    let (dir, input) = setup();
    datakey(dir.path())
        .args(["encrypt", "--kms", "tencent", "--api", "legacy"])
        .args(["--region", "ap-singapore", "--key-id", "kid"])
        .arg(&input)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("give --endpoint"));
}

#[test]
fn a_kms_failure_exits_3_and_leaves_no_output() {
    let server = Server::start(|_| error("ResourceUnavailable.CmkDisabled"));
    let (dir, input) = setup();
    datakey(dir.path())
        .args(["encrypt", "--kms", "tencent", "--region", "ap-guangzhou"])
        .args(["--endpoint", &server.url(), "--key-id", "kid"])
        .arg(&input)
        .assert()
        .code(3)
        .stderr(predicates::str::contains("ResourceUnavailable.CmkDisabled"));
    assert_eq!(server.hits(), 1);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["notes.txt"], "nothing but the input is left");
}

#[test]
fn an_unreachable_kms_fails_within_the_timeouts() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (dir, input) = setup();
    datakey(dir.path())
        .args(["encrypt", "--kms", "tencent", "--region", "ap-guangzhou"])
        .args([
            "--endpoint",
            &format!("http://127.0.0.1:{port}"),
            "--key-id",
            "kid",
        ])
        .args(["--connect-timeout", "0.5", "--timeout", "1"])
        .arg(&input)
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .code(3)
        .stderr(predicates::str::contains("ClientNetworkError"));
    assert!(!dir.path().join("notes.txt.dk").exists());
}

#[test]
fn credentials_come_from_the_sdk_file_when_the_environment_has_none() {
    let server = Server::start_with(toy_kms);
    let (dir, input) = setup();
    let sdk_dir = dir.path().join(".tencentcloud");
    std::fs::create_dir_all(&sdk_dir).unwrap();
    let file = format!(
        "[default]\nsecret_id = wrong\nsecret_key = wrong\n\n\
         [ops]\nsecret_id = {SECRET_ID}\nsecret_key = {SECRET_KEY}\n"
    );
    std::fs::write(sdk_dir.join("credentials"), file).unwrap();
    let config = dir.path().join("config").join("datakey");
    std::fs::create_dir_all(&config).unwrap();
    let profile = format!(
        "[profile.ops]\nkms = \"tencent\"\nregion = \"ap-guangzhou\"\nendpoint = \"{}\"\n\
         key_id = \"kid\"\ncredentials_profile = \"ops\"\n",
        server.url()
    );
    std::fs::write(config.join("config.toml"), profile).unwrap();

    datakey(dir.path())
        .env_remove("TENCENTCLOUD_SECRET_ID")
        .env_remove("TENCENTCLOUD_SECRET_KEY")
        .args(["encrypt", "--profile", "ops"])
        .arg(&input)
        .assert()
        .success();
    assert_eq!(server.hits(), 1);

    // The default profile of the file holds other credentials, which the toy KMS refuses.
    datakey(dir.path())
        .env_remove("TENCENTCLOUD_SECRET_ID")
        .env_remove("TENCENTCLOUD_SECRET_KEY")
        .args([
            "encrypt",
            "--force",
            "--kms",
            "tencent",
            "--region",
            "ap-guangzhou",
        ])
        .args(["--endpoint", &server.url(), "--key-id", "kid"])
        .arg(&input)
        .assert()
        .code(3)
        .stderr(predicates::str::contains("AuthFailure.SignatureFailure"));
}

#[test]
fn logs_show_no_signature_token_or_data_key_even_at_trace() {
    // The last two name the HTTP client's modules directly, which a per-crate cap would miss.
    for filter in [
        "trace",
        "ureq_proto::util=trace",
        "ureq::unversioned=trace,rustls=trace",
    ] {
        let server = Server::start_with(toy_kms);
        let (dir, input) = setup();
        let out = datakey(dir.path())
            .env("TENCENTCLOUD_SESSION_TOKEN", "session-token-never-logged")
            .env("DATAKEY_LOG", filter)
            .args([
                "-vv",
                "encrypt",
                "--kms",
                "tencent",
                "--region",
                "ap-guangzhou",
            ])
            .args(["--endpoint", &server.url(), "--key-id", "kid"])
            .arg(&input)
            .output()
            .unwrap();
        assert!(out.status.success(), "{filter}");
        let logs = String::from_utf8_lossy(&out.stderr);
        if filter == "trace" {
            assert!(logs.contains("GenerateDataKey answered HTTP 200"), "{logs}");
        }

        let seen = &server.requests()[0];
        let signature = sign::parse_authorization(seen.header("authorization").unwrap())
            .unwrap()
            .signature;
        let data_key = BASE64.encode(DATA_KEY);
        for secret in [
            SECRET_KEY,
            "session-token-never-logged",
            &signature[..16],
            &data_key[..16],
        ] {
            assert!(
                !logs.contains(secret),
                "{secret:?} in the logs with {filter}"
            );
        }
        // The client's trace is a hex dump of every byte sent and received, split in rows that
        // no search for a whole secret would find: none of it may appear.
        for dump in ["TRACE ureq", "TRACE rustls"] {
            assert!(
                !logs.contains(dump),
                "{dump} lines in the logs with {filter}"
            );
        }
    }
}
