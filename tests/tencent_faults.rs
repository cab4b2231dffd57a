//! Fault tests of the Tencent KMS client against a scripted HTTP server on 127.0.0.1.
//!
//! Each test scripts what the server answers to each attempt, counts the requests it receives,
//! and checks that the client ends with a clear error (or success) within its deadline, after
//! exactly the attempts the retry policy allows.

mod tencent_support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use datakey::context::EncryptionContext;
use datakey::kms::tencent::credentials::SecretString;
use datakey::kms::tencent::sign::{self, Tc3Request};
use datakey::kms::tencent::{
    ApiVersion, CODE_BAD_ANSWER, CODE_BAD_STATUS, CODE_NETWORK, Credentials, TencentKms,
    TencentOptions, TransportOptions,
};
use tencent_support::{Reply, Seen, Server};

use datakey::kms::{DecryptRequest, GenerateDataKeyRequest, KeySpec, Kms, KmsError, KmsErrorKind};

const SECRET_ID: &str = "AKIDfaulttest0001";
const SECRET_KEY: &str = "fault-test-secret-key";

/// Retries allowed in these tests, so at most `RETRIES + 1` attempts.
const RETRIES: u32 = 2;

/// The per-attempt timeout of these tests.
const TIMEOUT: Duration = Duration::from_millis(400);

/// The overall deadline of these tests.
const DEADLINE: Duration = Duration::from_secs(4);

/// Slack allowed past the deadline for scheduling on a loaded machine.
const SLACK: Duration = Duration::from_secs(2);

fn json(body: impl Into<String>) -> Reply {
    Reply::Raw(200, "application/json", body.into())
}

fn api_error(code: &str) -> Reply {
    let message = format!("scripted {code}");
    let body = serde_json::json!({"Response": {"Error": {"Code": code, "Message": message},
        "RequestId": format!("req-{code}")}});
    json(body.to_string())
}

fn key_b64(len: usize) -> String {
    BASE64.encode(vec![7u8; len])
}

fn gdk_ok(len: usize) -> Reply {
    let body = serde_json::json!({"Response": {"KeyId": "kid", "Plaintext": key_b64(len),
        "CiphertextBlob": "blob-1", "RequestId": "req-ok"}});
    json(body.to_string())
}

fn policy() -> TransportOptions {
    TransportOptions {
        connect_timeout: TIMEOUT,
        timeout: TIMEOUT,
        deadline: DEADLINE,
        max_retries: RETRIES,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(40),
    }
}

fn client_with(server: &Server, api: ApiVersion, transport: TransportOptions) -> TencentKms {
    let region = match api {
        ApiVersion::V3 => "ap-guangzhou",
        ApiVersion::Legacy => "gz",
    };
    let mut options = TencentOptions::new(region);
    options.api = api;
    options.endpoint = Some(server.url());
    options.transport = transport;
    TencentKms::new(options, Credentials::new(SECRET_ID, SECRET_KEY)).unwrap()
}

fn client(server: &Server) -> TencentKms {
    client_with(server, ApiVersion::V3, policy())
}

fn gdk_request(spec: KeySpec) -> GenerateDataKeyRequest {
    let context = EncryptionContext::from_assignments(&["team=ops", "file=a b"]).unwrap();
    GenerateDataKeyRequest::new("kid", spec, context)
}

/// Runs GenerateDataKey and returns the error, checking that it came within the deadline.
fn gdk_error(kms: &TencentKms) -> KmsError {
    let started = Instant::now();
    let err = kms
        .generate_data_key(&gdk_request(KeySpec::Aes256))
        .unwrap_err();
    assert!(
        started.elapsed() < DEADLINE + SLACK,
        "took {:?}",
        started.elapsed()
    );
    err
}

const MAX_ATTEMPTS: usize = RETRIES as usize + 1;

#[test]
fn html_500_is_retried_then_reported_with_an_excerpt() {
    let server = Server::start(|_| {
        Reply::Raw(
            500,
            "text/html",
            "<html><h1>Internal oops</h1></html>".into(),
        )
    });
    let err = gdk_error(&client(&server));
    assert_eq!(server.hits(), MAX_ATTEMPTS);
    assert_eq!(err.code, CODE_BAD_STATUS);
    assert_eq!(err.kind, KmsErrorKind::Transport);
    let text = err.to_string();
    for part in [
        "GenerateDataKey",
        "HTTP 500",
        "text/html",
        "Internal oops",
        "after 3 attempts",
    ] {
        assert!(text.contains(part), "{part:?} missing from {text}");
    }
}

#[test]
fn malformed_json_is_not_retried_and_not_excerpted() {
    let server = Server::start(|_| json(r#"{"Response": {"Plaintext": "c2VjcmV0c2VjcmV0", oops}"#));
    let err = gdk_error(&client(&server));
    assert_eq!(server.hits(), 1);
    assert_eq!(err.code, CODE_BAD_ANSWER);
    let text = err.to_string();
    assert!(text.contains("malformed JSON"), "{text}");
    assert!(text.contains("application/json"), "{text}");
    assert!(!text.contains("c2Vj"), "the body must not be shown: {text}");
}

#[test]
fn truncated_json_is_reported() {
    let body = format!(
        r#"{{"Response":{{"KeyId":"kid","Plaintext":"{}"#,
        key_b64(32)
    );
    let server = Server::start(move |_| json(body.clone()));
    let err = gdk_error(&client(&server));
    assert_eq!(server.hits(), 1);
    let text = err.to_string();
    assert!(text.contains("truncated"), "{text}");
    assert!(!text.contains(&key_b64(32)[..8]), "{text}");
}

#[test]
fn missing_fields_are_named() {
    let cases = [
        (r#"{"RequestId":"r"}"#, "no KeyId"),
        (
            r#"{"KeyId":"k","CiphertextBlob":"b","RequestId":"r"}"#,
            "no Plaintext",
        ),
        (
            r#"{"KeyId":"k","Plaintext":"AAAAAAAAAAAAAAAAAAAAAA==","RequestId":"r"}"#,
            "no CiphertextBlob",
        ),
    ];
    for (inner, expected) in cases {
        let body = format!(r#"{{"Response":{inner}}}"#);
        let server = Server::start(move |_| json(body.clone()));
        let kms = client(&server);
        let err = kms
            .generate_data_key(&gdk_request(KeySpec::Aes128))
            .unwrap_err();
        assert_eq!(server.hits(), 1);
        assert_eq!(err.code, CODE_BAD_ANSWER);
        assert!(err.to_string().contains(expected), "{expected}: {err}");
        assert_eq!(err.request_id, "r", "{expected}");
    }
    let server = Server::start(|_| json(r#"{"Nothing":{}}"#));
    let err = gdk_error(&client(&server));
    assert!(err.to_string().contains("no Response object"), "{err}");
}

#[test]
fn bad_base64_plaintext_is_refused() {
    let server = Server::start(|_| {
        let body = serde_json::json!({"Response": {"KeyId": "kid", "Plaintext": "!!not*base64!!",
            "CiphertextBlob": "b", "RequestId": "req-b64"}});
        json(body.to_string())
    });
    let err = gdk_error(&client(&server));
    assert_eq!(server.hits(), 1);
    assert!(err.to_string().contains("not valid base64"), "{err}");
    assert_eq!(err.request_id, "req-b64");
    assert!(!err.to_string().contains("!!not"), "{err}");
}

#[test]
fn a_data_key_of_the_wrong_length_is_refused() {
    let server = Server::start(|_| gdk_ok(16));
    let err = gdk_error(&client(&server));
    assert_eq!(server.hits(), 1);
    assert!(
        err.to_string().contains("16 bytes, 32 were asked for"),
        "{err}"
    );
}

#[test]
fn throttling_is_retried_until_success() {
    let server = Server::start(|n| {
        if n < 2 {
            api_error("RequestLimitExceeded")
        } else {
            gdk_ok(32)
        }
    });
    let key = client(&server)
        .generate_data_key(&gdk_request(KeySpec::Aes256))
        .unwrap();
    assert_eq!(server.hits(), 3);
    assert_eq!(key.plaintext.as_bytes(), &[7u8; 32]);
    assert_eq!(key.ciphertext_blob, "blob-1");
    assert_eq!(key.request_id, "req-ok");
}

#[test]
fn constant_throttling_stops_at_the_retry_cap() {
    let server = Server::start(|_| api_error("RequestLimitExceeded.UinLimitExceeded"));
    let err = gdk_error(&client(&server));
    assert_eq!(server.hits(), MAX_ATTEMPTS);
    assert_eq!(err.kind, KmsErrorKind::Throttled);
    assert_eq!(err.request_id, "req-RequestLimitExceeded.UinLimitExceeded");
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
}

#[test]
fn server_errors_are_retried() {
    for code in [
        "InternalError",
        "UnsupportedOperation.ServiceTemporaryUnavailable",
    ] {
        let server = Server::start(move |_| api_error(code));
        let err = gdk_error(&client(&server));
        assert_eq!(server.hits(), MAX_ATTEMPTS, "{code}");
        assert_eq!(err.code, code);
    }
}

#[test]
fn auth_parameter_and_key_errors_are_never_retried() {
    let codes = [
        "AuthFailure.SignatureFailure",
        "AuthFailure.SecretIdNotFound",
        "UnauthorizedOperation",
        "InvalidParameter",
        "InvalidParameterValue.InvalidCiphertext",
        "MissingParameter",
        "LimitExceeded.DataKeyLimitExceeded",
        "ResourceUnavailable.CmkDisabled",
        "ResourceUnavailable.CmkNotFound",
    ];
    for code in codes {
        for status in [200u16, 400, 500, 503] {
            let server = Server::start(move |_| match api_error(code) {
                Reply::Raw(_, ct, body) => Reply::Raw(status, ct, body),
                other => other,
            });
            let err = gdk_error(&client(&server));
            assert_eq!(server.hits(), 1, "{code} with HTTP {status}");
            assert_eq!(err.code, code);
            let text = err.to_string();
            assert!(text.contains(&format!("HTTP {status}")), "{text}");
            assert!(text.contains(&format!("req-{code}")), "{text}");
            assert!(text.contains("GenerateDataKey"), "{text}");
        }
    }
}

#[test]
fn an_expired_signature_hints_at_the_clock() {
    let server = Server::start(|_| api_error("AuthFailure.SignatureExpire"));
    let err = gdk_error(&client(&server));
    assert_eq!(server.hits(), 1);
    assert_eq!(err.kind, KmsErrorKind::Auth);
    assert!(err.to_string().contains("clock"), "{err}");
}

#[test]
fn a_slow_answer_times_out_on_each_attempt() {
    let server = Server::start(|_| Reply::Slow(TIMEOUT * 4, Box::new(gdk_ok(32))));
    let err = gdk_error(&client(&server));
    assert_eq!(server.hits(), MAX_ATTEMPTS);
    assert_eq!(err.code, CODE_NETWORK);
    assert!(
        err.to_string().contains("no complete answer within"),
        "{err}"
    );
}

#[test]
fn no_answer_times_out_on_each_attempt() {
    let server = Server::start(|_| Reply::Hang);
    let err = gdk_error(&client(&server));
    assert_eq!(server.hits(), MAX_ATTEMPTS);
    assert_eq!(err.code, CODE_NETWORK);
}

#[test]
fn a_closed_connection_is_retried() {
    let server = Server::start(|n| if n == 0 { Reply::Close } else { gdk_ok(32) });
    client(&server)
        .generate_data_key(&gdk_request(KeySpec::Aes256))
        .unwrap();
    assert_eq!(server.hits(), 2);

    let server = Server::start(|_| Reply::Close);
    let err = gdk_error(&client(&server));
    assert_eq!(server.hits(), MAX_ATTEMPTS);
    assert_eq!(err.kind, KmsErrorKind::Transport);
}

#[test]
fn the_deadline_cuts_retries_short() {
    let server = Server::start(|_| Reply::Hang);
    let transport = TransportOptions {
        timeout: Duration::from_millis(300),
        deadline: Duration::from_millis(700),
        max_retries: 20,
        ..policy()
    };
    let kms = client_with(&server, ApiVersion::V3, transport);
    let started = Instant::now();
    let err = kms
        .generate_data_key(&gdk_request(KeySpec::Aes256))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(700) + SLACK);
    assert!(
        (2..=3).contains(&server.hits()),
        "{} attempts",
        server.hits()
    );
    assert!(err.to_string().contains("deadline"), "{err}");
}

#[test]
fn a_refused_connection_is_a_network_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut options = TencentOptions::new("ap-guangzhou");
    options.endpoint = Some(format!("http://127.0.0.1:{port}"));
    options.transport = policy();
    let kms = TencentKms::new(options, Credentials::new(SECRET_ID, SECRET_KEY)).unwrap();
    let err = gdk_error(&kms);
    assert_eq!(err.code, CODE_NETWORK);
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
}

/// Checks the TC3 signature of a request the server received, as a real server would.
fn assert_tc3_signed(seen: &Seen) {
    let auth = sign::parse_authorization(seen.header("authorization").unwrap()).unwrap();
    assert_eq!(auth.secret_id, SECRET_ID);
    let timestamp: i64 = seen.header("x-tc-timestamp").unwrap().parse().unwrap();
    let headers: Vec<(&str, &str)> = seen
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let signed: Vec<&str> = auth.signed_headers.iter().map(String::as_str).collect();
    let canonical = sign::canonical_request(&Tc3Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        signed_headers: &signed,
        body: &seen.body,
        timestamp,
    })
    .unwrap();
    let to_sign = sign::string_to_sign(timestamp, &canonical).unwrap();
    let expected = sign::tc3_signature(SECRET_KEY, &sign::tc3_date(timestamp).unwrap(), &to_sign);
    assert_eq!(auth.signature, expected);
    assert_eq!(auth.date, sign::tc3_date(timestamp).unwrap());
}

#[test]
fn api3_requests_are_signed_and_well_formed() {
    let server = Server::start(|n| {
        if n == 0 {
            gdk_ok(32)
        } else {
            json(format!(
                r#"{{"Response":{{"KeyId":"kid","Plaintext":"{}","RequestId":"req-d"}}}}"#,
                key_b64(32)
            ))
        }
    });
    let mut options = TencentOptions::new("ap-guangzhou");
    options.endpoint = Some(server.url());
    options.transport = policy();
    let mut credentials = Credentials::new(SECRET_ID, SECRET_KEY);
    credentials.session_token = Some(SecretString::new("session-token-1".into()));
    let kms = TencentKms::new(options, credentials).unwrap();

    let request = gdk_request(KeySpec::Aes256);
    let key = kms.generate_data_key(&request).unwrap();
    let decrypted = kms
        .decrypt(&DecryptRequest {
            ciphertext_blob: key.ciphertext_blob.clone(),
            context: request.context.clone(),
        })
        .unwrap();
    assert_eq!(decrypted.plaintext, key.plaintext);

    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    for (request_seen, action) in seen.iter().zip(["GenerateDataKey", "Decrypt"]) {
        assert_tc3_signed(request_seen);
        assert_eq!(request_seen.header("x-tc-action"), Some(action));
        assert_eq!(request_seen.header("x-tc-version"), Some("2019-01-18"));
        assert_eq!(request_seen.header("x-tc-region"), Some("ap-guangzhou"));
        assert_eq!(request_seen.header("x-tc-token"), Some("session-token-1"));
        assert_eq!(
            request_seen.header("host"),
            Some(server.addr.to_string().as_str())
        );
    }
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body["KeyId"], "kid");
    assert_eq!(body["KeySpec"], "AES_256");
    assert_eq!(body["EncryptionContext"], r#"{"file":"a b","team":"ops"}"#);
    let body: serde_json::Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(body["CiphertextBlob"], "blob-1");
}

#[test]
fn encrypt_and_re_encrypt_send_their_parameters() {
    let server = Server::start(|n| {
        if n == 0 {
            json(r#"{"Response":{"KeyId":"kid","CiphertextBlob":"enc-1","RequestId":"r1"}}"#)
        } else {
            let body = serde_json::json!({"Response": {"KeyId": "k2", "SourceKeyId": "kid",
                "CiphertextBlob": "enc-2", "ReEncrypted": true, "RequestId": "r2"}});
            json(body.to_string())
        }
    });
    let kms = client(&server);
    let none = EncryptionContext::new();
    let blob = kms.encrypt("kid", b"hello", &none).unwrap();
    assert_eq!(blob.ciphertext_blob, "enc-1");
    let moved = kms.re_encrypt("enc-1", &none, "k2", &none).unwrap();
    assert_eq!(
        (moved.key_id.as_str(), moved.source_key_id.as_deref()),
        ("k2", Some("kid"))
    );

    let seen = server.requests();
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body["Plaintext"], BASE64.encode(b"hello"));
    assert!(
        body.get("EncryptionContext").is_none(),
        "an empty context is omitted"
    );
    let body: serde_json::Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(body["DestinationKeyId"], "k2");
    assert_eq!(seen[1].header("x-tc-action"), Some("ReEncrypt"));

    let err = kms.encrypt("kid", &[0; 5000], &none).unwrap_err();
    assert_eq!(err.kind, KmsErrorKind::InvalidParameter);
    assert_eq!(
        server.hits(),
        2,
        "an oversized plaintext is refused before sending"
    );
}

/// Decodes an `application/x-www-form-urlencoded` body (test scaffolding only).
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    std::str::from_utf8(body)
        .unwrap()
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (decode(k), decode(v))
        })
        .collect()
}

#[test]
fn legacy_requests_are_signed_and_answers_read() {
    let body = serde_json::json!({"code": 0, "message": "", "codeDesc": "Success",
        "requestId": "lr", "keyId": "kid", "plaintext": key_b64(16), "ciphertextBlob": "lblob"})
    .to_string();
    let server = Server::start(move |_| json(body.clone()));
    let kms = client_with(&server, ApiVersion::Legacy, policy());
    let key = kms
        .generate_data_key(&gdk_request(KeySpec::Aes128))
        .unwrap();
    assert_eq!(key.ciphertext_blob, "lblob");
    assert_eq!(key.plaintext.len(), 16);

    let seen = &server.requests()[0];
    let pairs = form_pairs(&seen.body);
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("Action"), Some("GenerateDataKey"));
    assert_eq!(get("Region"), Some("gz"));
    assert_eq!(get("keyId"), Some("kid"));
    assert_eq!(get("keySpec"), Some("AES_128"));
    assert_eq!(
        get("encryptionContext"),
        Some(r#"{"file":"a b","team":"ops"}"#)
    );
    assert_eq!(get("SignatureMethod"), Some("HmacSHA256"));
    assert!(get("Nonce").unwrap().parse::<u32>().unwrap() > 0);

    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let to_sign =
        sign::legacy_string_to_sign("POST", &server.addr.to_string(), "/v2/index.php", &borrowed);
    let expected = sign::legacy_signature(
        sign::LegacySignatureMethod::HmacSha256,
        SECRET_KEY,
        &to_sign,
    );
    assert_eq!(get("Signature"), Some(expected.as_str()));
}

#[test]
fn legacy_errors_follow_the_same_policy() {
    let server =
        Server::start(|_| json(r#"{"code":4100,"message":"signature mismatch","requestId":"l1"}"#));
    let err = gdk_error(&client_with(&server, ApiVersion::Legacy, policy()));
    assert_eq!(server.hits(), 1);
    assert_eq!((err.kind, err.code.as_str()), (KmsErrorKind::Auth, "4100"));
    assert!(err.to_string().contains("signature mismatch"), "{err}");

    let server = Server::start(|_| json(r#"{"code":4400,"message":"slow down","requestId":"l2"}"#));
    let err = gdk_error(&client_with(&server, ApiVersion::Legacy, policy()));
    assert_eq!(server.hits(), MAX_ATTEMPTS);
    assert_eq!(err.kind, KmsErrorKind::Throttled);

    let server = Server::start(|_| {
        json(r#"{"code":5000,"codeDesc":"ResourceUnavailable.CmkNotFound","message":"gone"}"#)
    });
    let err = gdk_error(&client_with(&server, ApiVersion::Legacy, policy()));
    assert_eq!(server.hits(), 1);
    assert_eq!(err.kind, KmsErrorKind::KeyNotFound);

    let server = Server::start(|_| Reply::Raw(502, "text/html", "<p>bad gateway</p>".into()));
    let err = gdk_error(&client_with(&server, ApiVersion::Legacy, policy()));
    assert_eq!(server.hits(), MAX_ATTEMPTS);
    assert!(err.to_string().contains("bad gateway"), "{err}");
}

#[test]
fn bad_regions_fail_before_any_request() {
    let server = Server::start(|_| gdk_ok(32));
    for (region, api) in [
        ("gz", ApiVersion::V3),
        ("Guangzhou", ApiVersion::Legacy),
        ("", ApiVersion::V3),
    ] {
        let mut options = TencentOptions::new(region);
        options.api = api;
        options.endpoint = Some(server.url());
        assert!(TencentKms::new(options, Credentials::new(SECRET_ID, SECRET_KEY)).is_err());
    }
    assert_eq!(server.hits(), 0);
}
