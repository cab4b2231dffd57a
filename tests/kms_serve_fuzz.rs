//! Arbitrary input to the server's request handling: errors, never panics.

use datakey::kms::local::LocalKms;
use datakey::server::actions::{ACTIONS, dispatch};
use datakey::server::auth::{FormTarget, verify_form, verify_tc3};
use datakey::server::credentials::Credentials;
use datakey::server::params::Params;
use proptest::prelude::*;

const SECRET_ID: &str = "AKIDfuzz";
const NOW: i64 = 1_800_000_000;

fn credentials() -> Credentials {
    let mut credentials = Credentials::new();
    credentials.insert(SECRET_ID, "fuzz-key").unwrap();
    credentials
}

/// Text that looks a little like the real thing, so the checks get past the first step.
fn authorization() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,80}",
        "TC3-HMAC-SHA256 Credential=AKIDfuzz/[0-9-]{0,12}/[a-z]{0,4}/tc3_request, \
         SignedHeaders=[a-z;-]{0,30}, Signature=[0-9a-f]{0,64}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tc3_checks_never_panic(
        auth in authorization(),
        timestamp in prop_oneof![".{0,12}", "1800000[0-9]{3}"],
        content_type in ".{0,30}",
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let headers = [
            ("Authorization", auth.as_str()),
            ("X-TC-Timestamp", timestamp.as_str()),
            ("Content-Type", content_type.as_str()),
            ("Host", "127.0.0.1:1"),
        ];
        prop_assert!(verify_tc3(&credentials(), &headers, &body, NOW).is_err());
    }

    #[test]
    fn form_checks_never_panic(query in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(fields) = Params::form_fields(&query) {
            let target = FormTarget { method: "POST", host: "h:1", path: "/" };
            prop_assert!(verify_form(&credentials(), target, &fields, NOW).is_err());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn actions_never_panic(
        action in proptest::sample::select(ACTIONS.to_vec()),
        key in "[A-Za-z]{0,8}",
        value in prop_oneof![
            Just(serde_json::json!(null)),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,40}".prop_map(serde_json::Value::from),
            Just(serde_json::json!({"a": [1, "b"]})),
        ],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (kms, _) = LocalKms::open_or_create_default(dir.path().join("k.json")).unwrap();
        let body = serde_json::json!({
            "KeyId": "alias/default",
            "KeySpec": "AES_128",
            key: value,
        });
        let params = Params::json(body.to_string().as_bytes()).unwrap();
        let _ = dispatch(&kms, action, &params);
    }
}
