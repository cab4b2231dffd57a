//! One suite of KMS behaviours, written once against `&dyn Kms` and run against every back-end:
//! the local keyring directly, and the Tencent client talking to `kms serve` on loopback with
//! API 3.0 and with the legacy 2.0.

mod support;

use datakey::context::EncryptionContext;
use datakey::kms::local::LocalKms;
use datakey::kms::tencent::{ApiVersion, Credentials, TencentKms, TencentOptions};
use datakey::kms::{DecryptRequest, GenerateDataKeyRequest, KeySpec, Kms, KmsErrorKind};

/// The master key every case uses unless it makes its own.
const KEY: &str = "alias/default";

/// A back-end under test, with a handle on its keyring to enable and disable keys.
struct Backend<'a> {
    name: &'a str,
    kms: &'a dyn Kms,
    admin: &'a LocalKms,
}

type Case = fn(&Backend<'_>);

const CASES: [(&str, Case); 9] = [
    ("generates each key spec", generates_each_key_spec),
    ("generates each size", generates_each_size),
    ("number of bytes wins over key spec", number_of_bytes_wins),
    ("decrypts what it generated", decrypt_round_trip),
    ("wrong context fails", wrong_context_fails),
    ("disabled key fails", disabled_key_fails),
    ("unknown key fails", unknown_key_fails),
    ("invalid parameters fail", invalid_parameters_fail),
    ("altered blob fails", altered_blob_fails),
];

fn run_suite(backend: &Backend<'_>) {
    for (name, case) in CASES {
        eprintln!("{}: {name}", backend.name);
        case(backend);
    }
}

fn context(pairs: &[&str]) -> EncryptionContext {
    EncryptionContext::from_assignments(pairs).unwrap()
}

fn request(spec: Option<KeySpec>, bytes: Option<u32>) -> GenerateDataKeyRequest {
    GenerateDataKeyRequest {
        key_id: KEY.into(),
        key_spec: spec,
        number_of_bytes: bytes,
        context: context(&["suite=conformance"]),
    }
}

fn generated_len(backend: &Backend<'_>, request: &GenerateDataKeyRequest) -> usize {
    let made = backend
        .kms
        .generate_data_key(request)
        .unwrap_or_else(|err| panic!("{}: {err}", backend.name));
    assert!(!made.key_id.is_empty() && !made.key_id.starts_with("alias/"));
    assert!(!made.ciphertext_blob.is_empty());
    made.plaintext.len()
}

fn generates_each_key_spec(backend: &Backend<'_>) {
    assert_eq!(
        generated_len(backend, &request(Some(KeySpec::Aes128), None)),
        16
    );
    assert_eq!(
        generated_len(backend, &request(Some(KeySpec::Aes256), None)),
        32
    );
}

fn generates_each_size(backend: &Backend<'_>) {
    for size in [1, 1024] {
        assert_eq!(
            generated_len(backend, &request(None, Some(size))),
            size as usize
        );
    }
}

fn number_of_bytes_wins(backend: &Backend<'_>) {
    let both = request(Some(KeySpec::Aes128), Some(40));
    assert_eq!(generated_len(backend, &both), 40);
}

fn decrypt_round_trip(backend: &Backend<'_>) {
    let mut made_request = request(Some(KeySpec::Aes256), None);
    made_request.context = context(&["file=a.txt", "team=x"]);
    let made = backend.kms.generate_data_key(&made_request).unwrap();
    let opened = backend
        .kms
        .decrypt(&DecryptRequest {
            ciphertext_blob: made.ciphertext_blob.clone(),
            context: context(&["team=x", "file=a.txt"]),
        })
        .unwrap();
    assert_eq!(opened.plaintext, made.plaintext);
    assert_eq!(opened.key_id, made.key_id);
    assert!(!opened.request_id.is_empty());
}

fn expect_kind<T: std::fmt::Debug>(
    backend: &Backend<'_>,
    result: Result<T, datakey::kms::KmsError>,
    kind: KmsErrorKind,
) {
    let err = result.expect_err("the call should fail");
    assert_eq!(err.kind, kind, "{}: {err}", backend.name);
}

fn wrong_context_fails(backend: &Backend<'_>) {
    let made = backend
        .kms
        .generate_data_key(&request(Some(KeySpec::Aes256), None))
        .unwrap();
    for wrong in [context(&["suite=other"]), context(&[])] {
        let decrypt = DecryptRequest {
            ciphertext_blob: made.ciphertext_blob.clone(),
            context: wrong,
        };
        expect_kind(
            backend,
            backend.kms.decrypt(&decrypt),
            KmsErrorKind::InvalidCiphertext,
        );
    }
}

fn disabled_key_fails(backend: &Backend<'_>) {
    let key = backend.admin.create_key(None, "conformance").unwrap();
    let mut generate = request(Some(KeySpec::Aes256), None);
    generate.key_id = key.key_id.clone();
    let made = backend.kms.generate_data_key(&generate).unwrap();

    backend
        .admin
        .set_state(&key.key_id, datakey::kms::keyring::KeyState::Disabled)
        .unwrap();
    let generated = backend.kms.generate_data_key(&generate);
    expect_kind(backend, generated, KmsErrorKind::KeyDisabled);
    let decrypt = DecryptRequest {
        ciphertext_blob: made.ciphertext_blob,
        context: generate.context.clone(),
    };
    expect_kind(
        backend,
        backend.kms.decrypt(&decrypt),
        KmsErrorKind::KeyDisabled,
    );

    backend
        .admin
        .set_state(&key.key_id, datakey::kms::keyring::KeyState::Enabled)
        .unwrap();
    assert_eq!(backend.kms.decrypt(&decrypt).unwrap().key_id, key.key_id);
}

fn unknown_key_fails(backend: &Backend<'_>) {
    for key in ["alias/nobody", "00000000-0000-4000-8000-000000000000"] {
        let mut generate = request(Some(KeySpec::Aes256), None);
        generate.key_id = key.into();
        let generated = backend.kms.generate_data_key(&generate);
        expect_kind(backend, generated, KmsErrorKind::KeyNotFound);
    }
}

fn invalid_parameters_fail(backend: &Backend<'_>) {
    let invalid = [
        request(None, None),
        request(Some(KeySpec::Aes256), Some(0)),
        request(None, Some(1025)),
    ];
    for generate in invalid {
        let generated = backend.kms.generate_data_key(&generate);
        expect_kind(backend, generated, KmsErrorKind::InvalidParameter);
    }
    let unknown_spec = KeySpec::parse("AES_512");
    expect_kind(backend, unknown_spec, KmsErrorKind::InvalidParameter);
}

fn altered_blob_fails(backend: &Backend<'_>) {
    let made = backend
        .kms
        .generate_data_key(&request(Some(KeySpec::Aes256), None))
        .unwrap();
    let mut blob = made.ciphertext_blob.into_bytes();
    let middle = blob.len() / 2;
    blob[middle] = if blob[middle] == b'A' { b'B' } else { b'A' };
    let decrypt = DecryptRequest {
        ciphertext_blob: String::from_utf8(blob).unwrap(),
        context: context(&["suite=conformance"]),
    };
    expect_kind(
        backend,
        backend.kms.decrypt(&decrypt),
        KmsErrorKind::InvalidCiphertext,
    );
}

#[test]
fn local_keyring() {
    let dir = tempfile::tempdir().unwrap();
    let (kms, _) = LocalKms::open_or_create_default(dir.path().join("keyring.json")).unwrap();
    run_suite(&Backend {
        name: "local",
        kms: &kms,
        admin: &kms,
    });
}

/// The Tencent client speaking `api` to a `kms serve` on loopback.
fn run_remote(api: ApiVersion, name: &str) {
    let server = support::TestServer::start();
    let admin = LocalKms::open(&server.keyring).unwrap();
    let mut options = TencentOptions::new(support::REGION);
    options.endpoint = Some(server.server.url());
    options.api = api;
    let credentials = Credentials::new(support::SECRET_ID, support::SECRET_KEY);
    let kms = TencentKms::new(options, credentials).unwrap();
    run_suite(&Backend {
        name,
        kms: &kms,
        admin: &admin,
    });
}

#[test]
fn tencent_client_api_v3_to_kms_serve() {
    run_remote(ApiVersion::V3, "tencent v3 -> kms serve");
}

#[test]
fn tencent_client_legacy_api_to_kms_serve() {
    run_remote(ApiVersion::Legacy, "tencent legacy -> kms serve");
}
