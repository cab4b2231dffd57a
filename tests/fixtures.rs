//! Files written by format v1 must keep decrypting: the format may never drift silently.

mod common;

use std::fs;
use std::path::Path;

use common::Sandbox;
use sha2::{Digest, Sha256};

fn fixtures() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let sums = fs::read_to_string(dir.join("PLAINTEXT-SHA256SUMS")).unwrap();
    let list: Vec<_> = sums
        .lines()
        .map(|line| {
            let (digest, name) = line.split_once("  ").unwrap();
            (name.to_owned(), digest.to_owned())
        })
        .collect();
    assert_eq!(list.len(), 4, "one fixture per cipher and an empty file");
    list
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn frozen_fixtures_still_decrypt() {
    let sb = Sandbox::new();
    sb.use_fixture_keyring();
    for (name, digest) in fixtures() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(&name);
        let out = format!("{name}.out");
        sb.cmd()
            .args(["decrypt", "-o", &out])
            .arg(&src)
            .assert()
            .success();
        let plain = fs::read(sb.path(&out)).unwrap();
        assert_eq!(hex(&Sha256::digest(&plain)), digest, "{name}");
    }
}

#[test]
fn frozen_fixtures_carry_their_cipher_and_context() {
    let sb = Sandbox::new();
    for (name, _) in fixtures() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(&name);
        let out = sb
            .cmd()
            .args(["inspect", "--json"])
            .arg(&src)
            .assert()
            .success();
        let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        let Some(cipher) = name.strip_prefix("v1-").and_then(|n| n.strip_suffix(".dk")) else {
            panic!("unexpected fixture name {name}");
        };
        if cipher == "empty" {
            assert_eq!(json["plaintext_len"], 0);
            assert_eq!(json["chunks"], 1);
        } else {
            assert_eq!(json["cipher"], cipher);
            assert_eq!(json["encryption_context"]["cipher"], cipher);
            assert_eq!(json["plaintext_len"], 100_000);
            assert_eq!(json["chunk_size"], 4096);
        }
    }
}

#[test]
fn frozen_fixture_with_a_wrong_required_context_fails() {
    let sb = Sandbox::new();
    sb.use_fixture_keyring();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1-chacha20-poly1305.dk");
    sb.cmd()
        .args(["decrypt", "-c", "cipher=aes-256-gcm", "-o", "out"])
        .arg(&src)
        .assert()
        .code(1);
    sb.cmd()
        .args(["decrypt", "-c", "purpose=fixture", "-o", "out"])
        .arg(&src)
        .assert()
        .success();
}
