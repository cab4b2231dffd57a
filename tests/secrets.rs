//! Key material never shows in `Debug` output, errors or files other than the keyring.

mod common;

use std::fs;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use datakey::cipher::Cipher;
use datakey::context::EncryptionContext;
use datakey::format::keys::FileKeys;
use datakey::kms::keyring::Keyring;
use datakey::kms::local::LocalKms;
use datakey::kms::{DecryptRequest, GenerateDataKeyRequest, KeySpec, Kms};

/// The ways a key's bytes could be printed.
fn renderings(bytes: &[u8]) -> Vec<String> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let list = format!("{:?}", bytes);
    let inner = list
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    vec![BASE64.encode(bytes), hex, inner]
}

fn assert_hidden(shown: &str, secret: &[u8], what: &str) {
    for form in renderings(secret) {
        assert!(!shown.contains(&form), "{what} shows key bytes: {shown}");
    }
}

#[test]
fn debug_of_key_holders_shows_no_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (kms, _) = LocalKms::open_or_create_default(dir.path().join("k.json")).unwrap();
    let context = EncryptionContext::from_assignments(&["a=b"]).unwrap();
    let request = GenerateDataKeyRequest::new("alias/default", KeySpec::Aes256, context.clone());
    let generated = kms.generate_data_key(&request).unwrap();
    let secret = generated.plaintext.as_bytes().to_vec();

    assert_hidden(&format!("{generated:?}"), &secret, "GeneratedDataKey");
    assert_hidden(&format!("{:?}", generated.plaintext), &secret, "DataKey");

    let unwrapped = kms
        .decrypt(&DecryptRequest {
            ciphertext_blob: generated.ciphertext_blob.clone(),
            context,
        })
        .unwrap();
    assert_hidden(&format!("{unwrapped:?}"), &secret, "DecryptedDataKey");

    let keys = FileKeys::derive(&generated.plaintext, Cipher::Aes256Gcm, &[0; 32]).unwrap();
    assert_hidden(&format!("{keys:?}"), &secret, "FileKeys");
    assert_hidden(&format!("{kms:?}"), &secret, "LocalKms");

    let ring = Keyring::load(kms.path()).unwrap();
    let material = ring.keys[0].material.as_bytes().to_vec();
    assert_hidden(&format!("{ring:?}"), &material, "Keyring");
    assert_hidden(&format!("{kms:?}"), &material, "LocalKms");
}

#[test]
fn cli_never_prints_or_logs_the_data_key() {
    let sb = common::Sandbox::new();
    sb.file("plain", b"some plaintext that must not leak");
    let out = sb
        .cmd()
        .args(["-vv", "encrypt", "plain"])
        .assert()
        .success();
    let log = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(log.contains("back-end"), "-vv logs decisions: {log}");

    // Unwrap the file's data key through the library and look for it everywhere the CLI wrote.
    let sealed = fs::read(sb.path("plain.dk")).unwrap();
    let header = datakey::format::Header::read_from(&mut sealed.as_slice()).unwrap();
    let kms = LocalKms::open(sb.keyring()).unwrap();
    let context = header.core.encryption_context().unwrap();
    let blob = header.wrapped_keys[0].blob.clone();
    let key = kms
        .decrypt(&DecryptRequest {
            ciphertext_blob: blob,
            context,
        })
        .unwrap();

    let out = sb
        .cmd()
        .args(["-vv", "decrypt", "-o", "back", "plain.dk"])
        .assert()
        .success();
    let log2 = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    for shown in [&log, &log2, &String::from_utf8_lossy(&sealed).into_owned()] {
        assert_hidden(shown, key.plaintext.as_bytes(), "CLI output or file");
    }
    assert!(!log.contains("some plaintext") && !log2.contains("some plaintext"));
}
