//! End-to-end tests of the `datakey` command on real files with the embedded local keyring.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{Sandbox, pattern};
use predicates::prelude::*;

const CIPHERS: [&str; 3] = ["aes-256-gcm", "aes-128-gcm", "chacha20-poly1305"];

/// Encrypts `data` in a fresh sandbox with `args`, returning the sandbox and the .dk bytes.
fn encrypted(data: &[u8], args: &[&str]) -> (Sandbox, Vec<u8>) {
    let sb = Sandbox::new();
    sb.file("plain", data);
    sb.cmd()
        .arg("encrypt")
        .args(args)
        .arg("plain")
        .assert()
        .success();
    let sealed = fs::read(sb.path("plain.dk")).unwrap();
    (sb, sealed)
}

#[test]
fn round_trips_every_cipher_at_chunk_boundaries() {
    let sb = Sandbox::new();
    let chunk = 4096;
    for cipher in CIPHERS {
        for len in [0, 1, chunk - 1, chunk, chunk + 1, 10 * chunk + 3] {
            let data = pattern(len, len as u64);
            let name = format!("{cipher}-{len}");
            sb.file(&name, &data);
            sb.cmd()
                .args([
                    "encrypt",
                    "--cipher",
                    cipher,
                    "--chunk-size",
                    "4K",
                    "-c",
                    "k=v",
                    &name,
                ])
                .assert()
                .success();
            let out = format!("{name}.out");
            sb.cmd()
                .args(["decrypt", "-o", &out, &format!("{name}.dk")])
                .assert()
                .success();
            assert_eq!(fs::read(sb.path(&out)).unwrap(), data, "{name}");
        }
    }
}

#[test]
fn round_trips_tens_of_mib_mapped_and_piped() {
    let data = pattern(24 * 1024 * 1024 + 17, 7);
    for cipher in CIPHERS {
        let (sb, _) = encrypted(&data, &["--cipher", cipher]);
        sb.cmd()
            .args(["decrypt", "-o", "back", "plain.dk"])
            .assert()
            .success();
        assert!(
            fs::read(sb.path("back")).unwrap() == data,
            "{cipher} mapped"
        );
    }

    let sb = Sandbox::new();
    let sealed = sb
        .cmd()
        .args(["encrypt", "-"])
        .write_stdin(data.clone())
        .assert()
        .success();
    let sealed = sealed.get_output().stdout.clone();
    let back = sb
        .cmd()
        .args(["decrypt", "-"])
        .write_stdin(sealed)
        .assert()
        .success();
    assert!(back.get_output().stdout == data, "piped");
}

#[test]
fn decrypt_defaults_to_the_name_without_dk() {
    let (sb, _) = encrypted(b"hello", &[]);
    fs::remove_file(sb.path("plain")).unwrap();
    sb.cmd().args(["decrypt", "plain.dk"]).assert().success();
    assert_eq!(fs::read(sb.path("plain")).unwrap(), b"hello");

    sb.file("noext", b"x");
    sb.cmd()
        .args(["decrypt", "noext"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(".dk"));
}

#[test]
fn first_encrypt_creates_the_keyring_and_says_where() {
    let sb = Sandbox::new();
    sb.file("plain", b"data");
    sb.cmd()
        .args(["encrypt", "plain"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            sb.keyring().to_string_lossy().as_ref(),
        ))
        .stderr(predicate::str::contains("loses every file"));
    let mode = fs::metadata(sb.keyring()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The second run uses the same keyring silently.
    sb.file("second", b"data");
    sb.cmd()
        .args(["encrypt", "second"])
        .assert()
        .success()
        .stderr("");
}

#[test]
fn wrong_context_fails_and_names_the_key() {
    let (sb, _) = encrypted(b"secret", &["-c", "app=backup", "-c", "host=a"]);
    sb.cmd()
        .args(["decrypt", "-c", "host=b", "-o", "out", "plain.dk"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("\"host\""));
    sb.cmd()
        .args(["decrypt", "-c", "missing=x", "-o", "out", "plain.dk"])
        .assert()
        .code(1);
    assert!(!sb.path("out").exists());

    sb.cmd()
        .args(["decrypt", "-c", "app=backup", "-o", "out", "plain.dk"])
        .assert()
        .success();
    assert_eq!(fs::read(sb.path("out")).unwrap(), b"secret");
}

#[test]
fn wrong_keyring_is_a_kms_error() {
    let (sb, _) = encrypted(b"secret", &[]);
    let other = Sandbox::new();
    other
        .cmd()
        .args(["keys", "create", "--alias", "default"])
        .assert()
        .success();
    sb.cmd()
        .env("DATAKEY_KEYRING", other.keyring())
        .args(["decrypt", "-o", "out", "plain.dk"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("CmkNotFound"));
    assert!(!sb.path("out").exists());
}

#[test]
fn disabled_key_refuses_until_enabled() {
    let (sb, _) = encrypted(b"secret", &[]);
    sb.cmd()
        .args(["keys", "disable", "alias/default"])
        .assert()
        .success();
    sb.cmd()
        .args(["decrypt", "-o", "out", "plain.dk"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("disabled"));
    sb.file("more", b"x");
    sb.cmd().args(["encrypt", "more"]).assert().code(3);
    assert_eq!(sb.listing(), ["more", "plain", "plain.dk"]);

    sb.cmd()
        .args(["keys", "enable", "alias/default"])
        .assert()
        .success();
    sb.cmd()
        .args(["decrypt", "-o", "out", "plain.dk"])
        .assert()
        .success();
}

/// One damaged file per defect, each with the exit status it must get.
#[test]
fn damaged_files_fail_with_the_right_status_and_leave_nothing() {
    let data = pattern(3 * 4096 + 100, 3);
    let (sb, sealed) = encrypted(&data, &["--chunk-size", "4K", "-c", "a=b"]);
    let header_len = sealed.len() - data.len() - 4 * 16;
    let sealed_chunk = 4096 + 16;

    let flip = |pos: usize| {
        let mut bad = sealed.clone();
        bad[pos] ^= 0x01;
        bad
    };
    let cases: Vec<(&str, Vec<u8>, i32)> = vec![
        ("flipped magic", flip(0), 2),
        ("flipped version", flip(7), 2),
        ("flipped salt", flip(20), 1),
        ("flipped commitment", flip(header_len - 40), 1),
        ("flipped mac", flip(header_len - 1), 1),
        ("flipped first chunk", flip(header_len + 5), 1),
        ("flipped last tag", flip(sealed.len() - 1), 1),
        (
            "truncated at chunk boundary",
            sealed[..header_len + 2 * sealed_chunk].to_vec(),
            1,
        ),
        (
            "truncated inside a chunk",
            sealed[..sealed.len() - 30].to_vec(),
            1,
        ),
        (
            "truncated inside the header",
            sealed[..header_len - 10].to_vec(),
            1,
        ),
        ("body removed", sealed[..header_len].to_vec(), 1),
        ("trailing byte", [sealed.clone(), vec![0]].concat(), 1),
        (
            "chunks swapped",
            [
                &sealed[..header_len],
                &sealed[header_len + sealed_chunk..header_len + 2 * sealed_chunk],
                &sealed[header_len..header_len + sealed_chunk],
                &sealed[header_len + 2 * sealed_chunk..],
            ]
            .concat(),
            1,
        ),
        (
            "chunk duplicated",
            [&sealed[..header_len + sealed_chunk], &sealed[header_len..]].concat(),
            1,
        ),
    ];
    for (name, bytes, code) in cases {
        sb.file("bad.dk", &bytes);
        sb.cmd()
            .args(["decrypt", "-o", "out", "bad.dk"])
            .assert()
            .code(code)
            .stderr(predicate::str::contains("datakey:"));
        assert!(!sb.path("out").exists(), "{name} left output");
        assert_eq!(
            fs::read(sb.path("bad.dk")).unwrap(),
            bytes,
            "{name} changed its input"
        );
    }
}

#[test]
fn every_header_byte_is_protected() {
    let (sb, sealed) = encrypted(b"short plaintext", &["-c", "a=b"]);
    let header_len = sealed.len() - 15 - 16;
    for pos in 0..header_len {
        let mut bad = sealed.clone();
        bad[pos] ^= 0x04;
        sb.file("bad.dk", &bad);
        let out = sb
            .cmd()
            .args(["decrypt", "-o", "out", "bad.dk"])
            .output()
            .unwrap();
        let code = out.status.code().unwrap();
        // Magic and version say "not a datakey file" (2); a refused unwrap of a corrupted blob
        // may name a key that is not in the keyring (3); everything else is an integrity
        // failure (1).
        assert!([1, 2, 3].contains(&code), "byte {pos}: exit {code}");
        assert!(code != 2 || pos < 8, "byte {pos}: exit 2 past the prefix");
        assert!(!sb.path("out").exists(), "byte {pos} left output");
    }
}

#[test]
fn never_replaces_without_force_and_never_writes_over_its_input() {
    let (sb, sealed) = encrypted(b"one", &[]);
    sb.file("plain", b"two");
    sb.cmd()
        .args(["encrypt", "plain"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--force"));
    assert_eq!(fs::read(sb.path("plain.dk")).unwrap(), sealed);

    sb.cmd()
        .args(["encrypt", "--force", "plain"])
        .assert()
        .success();
    assert_ne!(fs::read(sb.path("plain.dk")).unwrap(), sealed);

    sb.cmd()
        .args(["encrypt", "--force", "-o", "plain", "plain"])
        .assert()
        .code(2);
    std::os::unix::fs::symlink(sb.path("plain"), sb.path("alias")).unwrap();
    sb.cmd()
        .args(["encrypt", "--force", "-o", "alias", "plain"])
        .assert()
        .code(2);
    fs::hard_link(sb.path("plain.dk"), sb.path("hard.dk")).unwrap();
    sb.cmd()
        .args(["decrypt", "--force", "-o", "hard.dk", "plain.dk"])
        .assert()
        .code(2);

    // Standard input redirected from the output file is the same file too.
    for (command, file) in [("encrypt", "plain"), ("decrypt", "plain.dk")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_datakey"))
            .current_dir(sb.path("."))
            .env("DATAKEY_KEYRING", sb.keyring())
            .args([command, "--force", "-o", file, "-"])
            .stdin(fs::File::open(sb.path(file)).unwrap())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains("is the input file"), "{stderr}");
    }
    assert_eq!(fs::read(sb.path("plain")).unwrap(), b"two");
    assert_eq!(
        fs::read(sb.path("hard.dk")).unwrap(),
        fs::read(sb.path("plain.dk")).unwrap()
    );
}

/// Runs `datakey ARGS` in the sandbox with standard output appended to the file `stdout`.
fn with_stdout_appending_to(sb: &Sandbox, args: &[&str], stdout: &str) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_datakey"))
        .current_dir(sb.path("."))
        .env("DATAKEY_KEYRING", sb.keyring())
        .args(args)
        .stdout(
            fs::File::options()
                .append(true)
                .open(sb.path(stdout))
                .unwrap(),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn standard_output_appending_to_the_input_is_refused() {
    let (sb, sealed) = encrypted(&pattern(3 << 20, 5), &[]);
    sb.file("plain", &pattern(3 << 20, 6));
    let cases = [
        (["encrypt", "-o", "-", "plain"], "plain"),
        (["decrypt", "-o", "-", "plain.dk"], "plain.dk"),
    ];
    for (args, file) in cases {
        let (code, stderr) = with_stdout_appending_to(&sb, &args, file);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("is the input file"), "{stderr}");
    }
    assert_eq!(fs::read(sb.path("plain")).unwrap(), pattern(3 << 20, 6));
    assert_eq!(fs::read(sb.path("plain.dk")).unwrap(), sealed);
}

#[test]
fn the_keyring_is_never_an_output() {
    let (sb, _) = encrypted(b"data", &[]);
    let keyring = fs::read(sb.keyring()).unwrap();
    let keyring_name = sb.keyring().display().to_string();
    for args in [
        ["encrypt", "--force", "-o", &keyring_name, "plain"],
        ["decrypt", "--force", "-o", &keyring_name, "plain.dk"],
    ] {
        sb.cmd()
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("is the keyring"));
    }
    let (code, stderr) =
        with_stdout_appending_to(&sb, &["encrypt", "-o", "-", "plain"], "keyring.json");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is the keyring"), "{stderr}");
    assert_eq!(fs::read(sb.keyring()).unwrap(), keyring);
    sb.cmd().args(["keys", "list"]).assert().success();
}

#[test]
fn a_fifo_at_the_default_output_name_counts_as_existing() {
    let sb = Sandbox::new();
    sb.file("secret", b"not for the pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(sb.path("secret.dk"))
        .status()
        .unwrap();
    assert!(status.success());
    sb.cmd()
        .args(["encrypt", "secret"])
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
}

#[test]
fn inspect_escapes_control_characters_of_the_header() {
    let (sb, sealed) = encrypted(b"payload", &[]);
    let mut reader = &sealed[..];
    let mut header = datakey::format::Header::read_from(&mut reader).unwrap();
    header.wrapped_keys[0].key_id = "k\u{1b}[31mRED\nfake: line".into();
    let mut forged = Vec::new();
    header.write_to(&mut forged).unwrap();
    forged.extend_from_slice(reader);
    fs::write(sb.path("forged.dk"), forged).unwrap();

    let out = sb.cmd().args(["inspect", "forged.dk"]).assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(!text.contains("\nfake: line"), "{text}");
    assert!(text.contains(r#""k\u{1b}[31mRED\nfake: line""#), "{text}");
}

#[test]
fn inspect_needs_no_kms() {
    let (sb, _) = encrypted(
        &pattern(10_000, 1),
        &["--cipher", "chacha20-poly1305", "-c", "x=y"],
    );
    fs::remove_file(sb.keyring()).unwrap();
    sb.cmd()
        .args(["inspect", "plain.dk"])
        .assert()
        .success()
        .stdout(predicate::str::contains("chacha20-poly1305"))
        .stdout(predicate::str::contains(r#"{"x":"y"}"#))
        .stdout(predicate::str::contains("plaintext:     10000"));
    let out = sb
        .cmd()
        .args(["inspect", "--json", "plain.dk"])
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["chunks"], 1);
    assert_eq!(json["plaintext_len"], 10_000);
    assert_eq!(json["wrapped_keys"][0]["backend"], "local");
    assert_eq!(json["encryption_context"]["x"], "y");

    sb.file("junk", b"not a datakey file at all");
    sb.cmd().args(["inspect", "junk"]).assert().code(2);
}

#[test]
fn inspect_flags_a_body_that_ends_inside_a_tag() {
    let (sb, sealed) = encrypted(&pattern(100_000, 3), &["--chunk-size", "4K"]);
    let inspect = |name: &str| -> serde_json::Value {
        let out = sb
            .cmd()
            .args(["inspect", "--json", name])
            .assert()
            .success();
        serde_json::from_slice(&out.get_output().stdout).unwrap()
    };
    let whole = inspect("plain.dk");
    assert_eq!(whole["truncated"], false);
    let header_len = whole["header_len"].as_u64().unwrap() as usize;

    let sealed_chunk = 4096 + 16;
    for (cut, truncated) in [
        (header_len, true),
        (header_len + 5, true),
        (header_len + sealed_chunk + 15, true),
        (header_len + sealed_chunk, false),
        (header_len + sealed_chunk + 16, false),
    ] {
        sb.file("cut.dk", &sealed[..cut]);
        assert_eq!(inspect("cut.dk")["truncated"], truncated, "cut at {cut}");
    }
    sb.file("cut.dk", &sealed[..header_len + 5]);
    sb.cmd()
        .args(["inspect", "cut.dk"])
        .assert()
        .success()
        .stdout(predicate::str::contains("truncated"));
}

#[test]
fn generate_data_key_prints_the_api_response() {
    let sb = Sandbox::new();
    sb.cmd()
        .args(["keys", "create", "--alias", "main"])
        .assert()
        .success();
    let out = sb
        .cmd()
        .args([
            "generate-data-key",
            "--key-id",
            "alias/main",
            "--key-spec",
            "AES_128",
        ])
        .args([
            "--number-of-bytes",
            "48",
            "--encryption-context",
            r#"{"a":"b"}"#,
        ])
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["code"], 0);
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(json["Plaintext"].as_str().unwrap())
        .unwrap();
    assert_eq!(key.len(), 48, "NumberOfBytes wins over KeySpec");
    assert!(json["CiphertextBlob"].as_str().unwrap().len() > 40);
    assert!(!json["requestId"].as_str().unwrap().is_empty());
    assert!(!json["KeyId"].as_str().unwrap().starts_with("alias/"));
}

#[test]
fn generate_data_key_errors_are_distinct() {
    let sb = Sandbox::new();
    sb.cmd()
        .args(["keys", "create", "--alias", "main"])
        .assert()
        .success();
    sb.cmd()
        .args(["keys", "create", "--alias", "off"])
        .assert()
        .success();
    sb.cmd()
        .args(["keys", "disable", "alias/off"])
        .assert()
        .success();

    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["--key-id", "alias/main"],
            2,
            "one of KeySpec and NumberOfBytes",
        ),
        (
            &["--key-id", "alias/main", "--number-of-bytes", "0"],
            2,
            "NumberOfBytes 0",
        ),
        (
            &["--key-id", "alias/main", "--number-of-bytes", "1025"],
            2,
            "NumberOfBytes 1025",
        ),
        (
            &["--key-id", "alias/main", "--number-of-bytes", "-1"],
            2,
            "NumberOfBytes -1",
        ),
        (
            &["--key-id", "alias/main", "--key-spec", "AES_512"],
            2,
            "AES_512",
        ),
        (
            &[
                "--key-id",
                "alias/main",
                "--key-spec",
                "AES_256",
                "--encryption-context",
                "[1]",
            ],
            2,
            "JSON object of strings",
        ),
        (
            &[
                "--key-id",
                "alias/main",
                "--key-spec",
                "AES_256",
                "--encryption-context",
                "{\"a\":1}",
            ],
            2,
            "JSON object of strings",
        ),
        (
            &["--key-id", "alias/none", "--key-spec", "AES_256"],
            3,
            "not found",
        ),
        (
            &["--key-id", "alias/off", "--key-spec", "AES_256"],
            3,
            "disabled",
        ),
    ];
    let mut messages = Vec::new();
    for (args, code, needle) in cases {
        let out = sb
            .cmd()
            .arg("generate-data-key")
            .args(*args)
            .assert()
            .code(*code);
        let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        assert_ne!(json["code"], 0, "{args:?}");
        assert!(!json["requestId"].as_str().unwrap().is_empty());
        let message = json["message"].as_str().unwrap().to_owned();
        assert!(message.contains(needle), "{args:?}: {message}");
        messages.push(message);
    }
    messages.sort();
    messages.dedup();
    assert!(
        messages.len() >= cases.len() - 2,
        "messages should differ: {messages:?}"
    );
}

#[test]
fn keys_commands_manage_the_keyring() {
    let sb = Sandbox::new();
    let mut create = sb.cmd();
    create.args([
        "keys",
        "create",
        "--alias",
        "team",
        "--description",
        "for backups",
    ]);
    let id = String::from_utf8(create.assert().success().get_output().stdout.clone()).unwrap();
    let id = id.trim();
    assert_eq!(id.len(), 36);

    sb.cmd()
        .args(["keys", "create", "--alias", "team"])
        .assert()
        .code(2);
    sb.cmd()
        .args(["keys", "create", "--alias", "bad/alias"])
        .assert()
        .code(2);

    sb.cmd()
        .args(["keys", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains(id))
        .stdout(predicate::str::contains("alias/team"))
        .stdout(predicate::str::contains("for backups"));
    sb.cmd()
        .args(["keys", "disable", id])
        .assert()
        .success()
        .stdout(predicate::str::contains("Disabled"));
    let out = sb.cmd().args(["keys", "list", "--json"]).assert().success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json[0]["KeyState"], "Disabled");
    sb.cmd()
        .args(["keys", "enable", "alias/team"])
        .assert()
        .success();
    sb.cmd()
        .args(["keys", "enable", "alias/nope"])
        .assert()
        .code(3);

    // The key is usable by id and by alias, and the keyring holds no plaintext of data keys.
    sb.file("plain", b"x");
    sb.cmd()
        .args(["encrypt", "--key-id", id, "plain"])
        .assert()
        .success();
    sb.cmd()
        .args(["encrypt", "--key-id", "alias/team", "-o", "two.dk", "plain"])
        .assert()
        .success();
}

#[test]
fn keys_list_escapes_control_characters_of_descriptions() {
    let sb = Sandbox::new();
    sb.cmd()
        .args(["keys", "create", "--description", "x\u{1b}[31m\nfake-row"])
        .assert()
        .success();
    let out = sb.cmd().args(["keys", "list"]).assert().success();
    let listed = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(!listed.contains('\u{1b}'), "{listed:?}");
    assert_eq!(
        listed.lines().count(),
        2,
        "a header and one key: {listed:?}"
    );
    assert!(listed.contains(r"\n"), "{listed:?}");
}

#[test]
fn an_unsafe_keyring_gets_no_hint_to_create_a_key() {
    let (sb, _) = encrypted(b"x", &[]);
    fs::set_permissions(sb.keyring(), fs::Permissions::from_mode(0o644)).unwrap();
    sb.cmd()
        .args(["keys", "list"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("keys create").not());
}

#[test]
fn refuses_a_keyring_open_to_others() {
    let (sb, _) = encrypted(b"x", &[]);
    fs::set_permissions(sb.keyring(), fs::Permissions::from_mode(0o644)).unwrap();
    sb.cmd()
        .args(["decrypt", "-o", "out", "plain.dk"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("chmod 600"));
    sb.cmd().args(["keys", "list"]).assert().code(2);
    assert!(!sb.path("out").exists());

    // generate-data-key still answers in JSON, and exits as a usage error like the others.
    let out = sb
        .cmd()
        .args(["generate-data-key", "--key-id", "alias/default"])
        .args(["--key-spec", "AES_256"])
        .assert()
        .code(2);
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_ne!(json["code"], 0);
    assert!(
        json["message"].as_str().unwrap().contains("chmod 600"),
        "{json}"
    );
}

#[test]
fn encrypt_with_unknown_key_or_missing_keyring_is_a_kms_error() {
    let sb = Sandbox::new();
    sb.file("plain", b"x");
    sb.cmd()
        .args(["encrypt", "--key-id", "alias/x", "plain"])
        .assert()
        .code(3);
    assert!(
        !sb.keyring().exists(),
        "an explicit key id never creates a keyring"
    );
    sb.cmd().args(["keys", "create"]).assert().success();
    sb.cmd()
        .args(["encrypt", "--key-id", "alias/x", "plain"])
        .assert()
        .code(3);
    assert_eq!(sb.listing(), ["plain"]);
}

#[test]
fn usage_errors_exit_2() {
    let sb = Sandbox::new();
    sb.file("plain", b"x");
    sb.cmd()
        .args(["encrypt", "--chunk-size", "1K", "plain"])
        .assert()
        .code(2);
    sb.cmd()
        .args(["encrypt", "--cipher", "des", "plain"])
        .assert()
        .code(2);
    sb.cmd()
        .args(["encrypt", "-c", "novalue", "plain"])
        .assert()
        .code(2);
    sb.cmd().args(["encrypt", "missing-file"]).assert().code(2);
    sb.cmd()
        .args(["decrypt", "-o", "x", "missing.dk"])
        .assert()
        .code(2);
    sb.cmd().args(["frobnicate"]).assert().code(2);
    assert_eq!(sb.listing(), ["plain"]);
}

#[test]
fn reads_a_fifo_as_a_stream() {
    let (sb, _) = encrypted(&pattern(100_000, 2), &[]);
    let fifo = sb.path("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let sealed = fs::read(sb.path("plain.dk")).unwrap();
    let writer = std::thread::spawn(move || fs::write(fifo, sealed).unwrap());
    sb.cmd()
        .args(["decrypt", "-o", "out", "fifo"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .success();
    writer.join().unwrap();
    assert_eq!(fs::read(sb.path("out")).unwrap(), pattern(100_000, 2));
}

#[test]
fn encrypts_zero_size_proc_files_as_streams() {
    let sb = Sandbox::new();
    let expected = fs::read("/proc/version").unwrap();
    assert_eq!(
        fs::metadata("/proc/version").unwrap().len(),
        0,
        "a zero-size special file"
    );
    sb.cmd()
        .args(["encrypt", "-o", "version.dk", "/proc/version"])
        .assert()
        .success();
    sb.cmd()
        .args(["decrypt", "-o", "version", "version.dk"])
        .assert()
        .success();
    assert_eq!(fs::read(sb.path("version")).unwrap(), expected);
}

#[test]
fn short_non_datakey_inputs_are_usage_errors() {
    let sb = Sandbox::new();
    for (name, bytes) in [
        ("empty.dk", &b""[..]),
        ("tiny.dk", b"DAT"),
        ("text.dk", b"hello world"),
    ] {
        sb.file(name, bytes);
        sb.cmd()
            .args(["decrypt", "-o", "out", name])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("not a datakey file"));
    }
    assert!(!sb.path("out").exists());
}

/// Runs `datakey ARGS REDIRECTION` through sh; returns the exit status and stderr.
fn with_redirect(sb: &Sandbox, args: &str, redirect: &str) -> (i32, String) {
    let bin = assert_cmd::cargo::cargo_bin("datakey");
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("{} {args} {redirect}", bin.display())])
        .current_dir(sb.dir.path())
        .env("DATAKEY_KEYRING", sb.keyring())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn failed_writes_to_stdout_are_errors_not_panics() {
    let (sb, _) = encrypted(b"x", &[]);
    for args in ["inspect plain.dk", "keys list", "keys list --json"] {
        let (code, stderr) = with_redirect(&sb, args, "> /dev/full");
        assert_eq!(code, 2, "{args}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args}: {stderr}");
    }
    let (code, stderr) = with_redirect(&sb, "keys create", "> /dev/full");
    assert_eq!(code, 2);
    assert!(stderr.contains("created key"), "{stderr}");
}

#[test]
fn non_utf8_names_keep_their_bytes() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let sb = Sandbox::new();
    let name = OsStr::from_bytes(b"n\xff");
    fs::write(sb.dir.path().join(name), b"bytes").unwrap();
    sb.cmd().arg("encrypt").arg(name).assert().success();
    fs::remove_file(sb.dir.path().join(name)).unwrap();
    sb.cmd()
        .arg("decrypt")
        .arg(OsStr::from_bytes(b"n\xff.dk"))
        .assert()
        .success();
    assert_eq!(fs::read(sb.dir.path().join(name)).unwrap(), b"bytes");
}

#[test]
fn an_empty_keyring_variable_means_the_default_location() {
    let sb = Sandbox::new();
    sb.cmd()
        .env("DATAKEY_KEYRING", "")
        .env("XDG_DATA_HOME", sb.path("data"))
        .args(["keys", "create", "--alias", "x"])
        .assert()
        .success();
    assert!(sb.path("data/datakey/keyring.json").exists());
}

/// The wrapped data key and salt of a .dk file, read through `inspect --json` and the header.
fn blob_and_salt(path: &std::path::Path) -> (String, Vec<u8>) {
    let bytes = fs::read(path).unwrap();
    let header = datakey::format::Header::read_from(&mut bytes.as_slice()).unwrap();
    (
        header.wrapped_keys[0].blob.clone(),
        header.core.salt.to_vec(),
    )
}

#[test]
fn batch_encrypts_many_files_with_one_data_key_when_asked() {
    let sb = Sandbox::new();
    let names: Vec<String> = (0..5).map(|i| format!("f{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        sb.file(name, &pattern(5000 + i, i as u64));
    }
    sb.cmd()
        .args(["encrypt", "--reuse-data-key", "3"])
        .args(&names)
        .assert()
        .success();

    // Files are encrypted several at a time, so which files share a key depends on timing; how
    // many share each key does not.
    let sealed: Vec<_> = names
        .iter()
        .map(|n| blob_and_salt(&sb.path(&format!("{n}.dk"))))
        .collect();
    let mut uses: Vec<usize> = sealed
        .iter()
        .map(|(blob, _)| sealed.iter().filter(|(b, _)| b == blob).count())
        .collect();
    uses.sort_unstable();
    assert_eq!(
        uses,
        [2, 2, 3, 3, 3],
        "one key for three files, a fresh one for the rest"
    );
    let mut salts: Vec<_> = sealed.iter().map(|(_, salt)| salt.clone()).collect();
    salts.sort();
    salts.dedup();
    assert_eq!(salts.len(), names.len(), "every file has its own salt");

    for (i, name) in names.iter().enumerate() {
        let out = format!("{name}.out");
        sb.cmd()
            .args(["decrypt", "-o", &out, &format!("{name}.dk")])
            .assert()
            .success();
        assert_eq!(
            fs::read(sb.path(&out)).unwrap(),
            pattern(5000 + i, i as u64)
        );
    }

    // Without the option every file gets its own data key.
    sb.cmd()
        .args(["encrypt", "--force"])
        .args(&names[..2])
        .assert()
        .success();
    let a = blob_and_salt(&sb.path("f0.dk"));
    let b = blob_and_salt(&sb.path("f1.dk"));
    assert_ne!(a.0, b.0);
}

#[test]
fn batch_reports_the_first_failure_and_names_the_file() {
    let sb = Sandbox::new();
    sb.file("a", b"a");
    sb.file("c", b"c");
    sb.cmd()
        .args(["encrypt", "a", "missing", "c"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing:"));
    // Files are encrypted several at a time: "c" may have been started before the failure, but
    // every output present is whole and no temporary file is left.
    let listing = sb.listing();
    assert!(listing.starts_with(&["a".to_owned(), "a.dk".to_owned(), "c".to_owned()]));
    assert!(listing.len() == 3 || listing[3] == "c.dk", "{listing:?}");
    if listing.len() == 4 {
        sb.cmd()
            .args(["decrypt", "-o", "c.out", "c.dk"])
            .assert()
            .success();
    }
    sb.cmd()
        .args(["encrypt", "-o", "x.dk", "a", "c"])
        .assert()
        .code(2);
    sb.cmd()
        .args(["encrypt", "--force", "a", "-"])
        .assert()
        .code(2);
}
