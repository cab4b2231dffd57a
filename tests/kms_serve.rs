//! `kms serve` over loopback: signatures, error shapes, limits, concurrency and keyring sharing.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use datakey::kms::local::LocalKms;
use serde_json::json;
use support::{Answer, OTHER_SECRET_ID, OTHER_SECRET_KEY, Tc3Call, TestServer, form, tc3};

fn assert_ok(answer: &Answer) {
    assert_eq!(answer.status, 200);
    assert_eq!(answer.content_type, "application/json");
    assert!(answer.error_code().is_none(), "{}", answer.body);
    assert!(answer.body["Response"]["RequestId"].is_string());
}

fn assert_error(answer: &Answer, code: &str) {
    assert_eq!(answer.status, 200, "API errors still answer 200");
    assert_eq!(answer.content_type, "application/json");
    assert_eq!(answer.error_code(), Some(code), "{}", answer.body);
    assert!(answer.body["Response"]["Error"]["Message"].is_string());
    assert!(answer.body["Response"]["RequestId"].is_string());
}

#[test]
fn tc3_generate_then_decrypt() {
    let server = TestServer::start();
    let host = server.host();
    let context = r#"{"team":"a"}"#;
    let made = tc3(
        &host,
        "GenerateDataKey",
        &json!({"KeyId": "alias/default", "KeySpec": "AES_256", "EncryptionContext": context}),
    );
    assert_ok(&made);
    let made = &made.body["Response"];
    assert_eq!(
        made["Plaintext"].as_str().unwrap().len(),
        44,
        "32 bytes in base64"
    );

    let opened = tc3(
        &host,
        "Decrypt",
        &json!({"CiphertextBlob": made["CiphertextBlob"], "EncryptionContext": context}),
    );
    assert_ok(&opened);
    assert_eq!(opened.body["Response"]["Plaintext"], made["Plaintext"]);
    assert_eq!(opened.body["Response"]["KeyId"], made["KeyId"]);
}

#[test]
fn key_management_actions() {
    let server = TestServer::start();
    let host = server.host();
    let created = tc3(
        &host,
        "CreateKey",
        &json!({"Alias": "ops", "Description": "ops key"}),
    );
    assert_ok(&created);
    let key_id = created.body["Response"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(created.body["Response"]["KeyState"], "Enabled");
    assert_eq!(created.body["Response"]["KeyUsage"], "ENCRYPT_DECRYPT");

    assert_ok(&tc3(&host, "DisableKey", &json!({ "KeyId": key_id })));
    let described = tc3(&host, "DescribeKey", &json!({ "KeyId": key_id }));
    assert_eq!(
        described.body["Response"]["KeyMetadata"]["KeyState"],
        "Disabled"
    );
    assert_eq!(described.body["Response"]["KeyMetadata"]["Alias"], "ops");
    let refused = tc3(
        &host,
        "Encrypt",
        &json!({"KeyId": key_id, "Plaintext": "aGVsbG8="}),
    );
    assert_error(&refused, "ResourceUnavailable.CmkDisabled");

    assert_ok(&tc3(&host, "EnableKey", &json!({ "KeyId": key_id })));
    let sealed = tc3(
        &host,
        "Encrypt",
        &json!({"KeyId": key_id, "Plaintext": "aGVsbG8="}),
    );
    assert_ok(&sealed);

    let listed = tc3(&host, "ListKeys", &json!({}));
    assert_eq!(listed.body["Response"]["TotalCount"], 2);
    let ids: Vec<_> = listed.body["Response"]["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["KeyId"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.contains(&key_id));
}

#[test]
fn bad_signature_is_refused() {
    let server = TestServer::start();
    let body = br#"{"KeyId": "alias/default", "KeySpec": "AES_256"}"#;
    let mut call = Tc3Call::new("GenerateDataKey", body);
    call.secret_key = "not-the-key";
    assert_error(&call.send(&server.host()), "AuthFailure.SignatureFailure");
}

#[test]
fn second_credential_pair_is_accepted() {
    let server = TestServer::start();
    let body = br#"{"KeyId": "alias/default", "NumberOfBytes": 8}"#;
    let mut call = Tc3Call::new("GenerateDataKey", body);
    call.secret_id = OTHER_SECRET_ID;
    call.secret_key = OTHER_SECRET_KEY;
    assert_ok(&call.send(&server.host()));
}

#[test]
fn expired_timestamp_is_refused() {
    let server = TestServer::start();
    let body = br#"{"KeyId": "alias/default", "KeySpec": "AES_256"}"#;
    for skew in [-400, 400] {
        let mut call = Tc3Call::new("GenerateDataKey", body);
        call.timestamp += skew;
        assert_error(&call.send(&server.host()), "AuthFailure.SignatureExpire");
    }
}

#[test]
fn unknown_secret_id_is_refused() {
    let server = TestServer::start();
    let body = br#"{"KeyId": "alias/default", "KeySpec": "AES_256"}"#;
    let mut call = Tc3Call::new("GenerateDataKey", body);
    call.secret_id = "AKIDnobodyknowsthis";
    assert_error(&call.send(&server.host()), "AuthFailure.SecretIdNotFound");
}

#[test]
fn missing_authorization_is_refused() {
    let server = TestServer::start();
    let response = support::agent()
        .post(format!("{}/", server.server.url()))
        .header("Content-Type", "application/json")
        .header("X-TC-Action", "ListKeys")
        .send(&b"{}"[..])
        .unwrap();
    assert_error(
        &support::read_answer(response),
        "AuthFailure.InvalidAuthorization",
    );
}

#[test]
fn unknown_action_and_malformed_bodies() {
    let server = TestServer::start();
    let host = server.host();
    assert_error(&tc3(&host, "CreateSecret", &json!({})), "InvalidAction");
    for body in [&b"{\"KeyId\": "[..], b"[1, 2]", b"\xff\xfe", b""] {
        let answer = Tc3Call::new("GenerateDataKey", body).send(&host);
        assert_error(&answer, "InvalidParameter");
    }
}

#[test]
fn oversized_body_is_refused() {
    let server = TestServer::start();
    let body = format!(r#"{{"KeyId": "{}"}}"#, "x".repeat(1024 * 1024 + 1));
    let answer = Tc3Call::new("DescribeKey", body.as_bytes()).send(&server.host());
    assert_error(&answer, "RequestSizeLimitExceeded");
}

#[test]
fn absurd_content_lengths_are_refused_unread() {
    let server = TestServer::start();
    let lengths = ["99999999999999", "18446744073709551615"];
    for length in lengths
        .iter()
        .cycle()
        .take(2 * datakey::server::DEFAULT_WORKERS + 2)
    {
        let mut stream = TcpStream::connect(server.server.local_addr()).unwrap();
        stream
            .set_read_timeout(Some(support::CALL_TIMEOUT))
            .unwrap();
        let head = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\n\r\n{{"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        // The API error, or hyper's own 4xx for a length it cannot represent.
        let answer = String::from_utf8_lossy(&answer);
        let refused =
            answer.contains("RequestSizeLimitExceeded") || answer.starts_with("HTTP/1.1 4");
        assert!(refused, "{answer}");
    }
    assert_ok(&tc3(&server.host(), "ListKeys", &json!({})));
}

#[test]
fn stalled_clients_are_cut_off_and_never_block_others() {
    let server = TestServer::start_with(|config| config.read_timeout = Duration::from_secs(1));
    let addr = server.server.local_addr();
    let partial: [&[u8]; 2] = [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: appl",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{",
    ];
    let stalled: Vec<TcpStream> = (0..2 * datakey::server::DEFAULT_WORKERS)
        .map(|i| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(partial[i % 2]).unwrap();
            stream
        })
        .collect();
    assert_ok(&tc3(&server.host(), "ListKeys", &json!({})));

    for mut stream in stalled {
        stream
            .set_read_timeout(Some(support::CALL_TIMEOUT))
            .unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a stalled client was kept"
        );
    }
}

#[test]
fn a_client_that_never_reads_its_answers_is_cut_off() {
    let server = TestServer::start_with(|config| config.read_timeout = Duration::from_secs(1));
    let mut stream = TcpStream::connect(server.server.local_addr()).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(15)))
        .unwrap();

    // Pipelined requests whose answers are never read: once the socket buffers fill, the
    // server's writes wait; after the timeout it drops the connection, so ours fail too.
    let request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                    Content-Length: 2\r\n\r\n{}";
    let started = Instant::now();
    let failure = loop {
        if let Err(err) = stream.write_all(request) {
            break err;
        }
        assert!(
            started.elapsed() < support::CALL_TIMEOUT * 3,
            "never cut off"
        );
    };
    assert!(
        matches!(
            failure.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        "the server held the connection: {failure}"
    );
    assert_ok(&tc3(&server.host(), "ListKeys", &json!({})));
}

#[test]
fn a_long_query_string_is_answered_in_json() {
    let server = TestServer::start();
    let mut stream = TcpStream::connect(server.server.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(support::CALL_TIMEOUT))
        .unwrap();
    let query = "a".repeat(32 * 1024);
    let request = format!("GET /?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("application/json"), "{answer}");
}

#[test]
fn garbage_http_never_kills_the_server() {
    let server = TestServer::start();
    let inputs: [&[u8]; 4] = [
        b"NONSENSE\r\n\r\n",
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
          Connection: close\r\n\r\nhi",
        b"POST /v2/index.php HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\
          \r\na=%",
    ];
    for input in inputs {
        let mut stream = TcpStream::connect(server.server.local_addr()).unwrap();
        stream
            .set_read_timeout(Some(support::CALL_TIMEOUT))
            .unwrap();
        stream.write_all(input).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
    }
    assert_ok(&tc3(&server.host(), "ListKeys", &json!({})));
}

#[test]
fn legacy_api_answers_flat_objects() {
    let server = TestServer::start();
    let host = server.host();
    for method in ["GET", "POST"] {
        let made = form(
            &host,
            method,
            "/v2/index.php",
            &[
                ("Action", "GenerateDataKey"),
                ("Region", "gz"),
                ("keyId", "alias/default"),
                ("numberOfBytes", "24"),
                ("encryptionContext", r#"{"a":"b"}"#),
            ],
        );
        assert_eq!(made.content_type, "application/json");
        assert_eq!(made.body["code"], 0, "{}", made.body);
        assert_eq!(made.body["codeDesc"], "Success");
        assert!(made.body["requestId"].is_string());

        let blob = made.body["ciphertextBlob"].as_str().unwrap();
        let opened = form(
            &host,
            method,
            "/v2/index.php",
            &[
                ("Action", "Decrypt"),
                ("Region", "gz"),
                ("ciphertextBlob", blob),
                ("encryptionContext", r#"{"a":"c"}"#),
            ],
        );
        assert_eq!(opened.body["code"], 4000, "{}", opened.body);
        assert_eq!(
            opened.body["codeDesc"],
            "InvalidParameterValue.InvalidCiphertext"
        );
    }
}

#[test]
fn legacy_errors_carry_numeric_codes() {
    let server = TestServer::start();
    let host = server.host();
    let unknown = form(
        &host,
        "POST",
        "/v2/index.php",
        &[
            ("Action", "GenerateDataKey"),
            ("keyId", "nope"),
            ("keySpec", "AES_128"),
        ],
    );
    assert_eq!(unknown.body["code"], 5000, "{}", unknown.body);
    assert_eq!(unknown.body["codeDesc"], "ResourceUnavailable.CmkNotFound");
    assert!(unknown.body["message"].is_string());
}

#[test]
fn v1_form_post_to_root_answers_in_v3_shape() {
    let server = TestServer::start();
    let made = form(
        &server.host(),
        "POST",
        "/",
        &[
            ("Action", "GenerateDataKey"),
            ("Version", "2019-01-18"),
            ("Region", "ap-guangzhou"),
            ("KeyId", "alias/default"),
            ("KeySpec", "AES_128"),
        ],
    );
    assert_ok(&made);
    assert_eq!(
        made.body["Response"]["Plaintext"].as_str().unwrap().len(),
        24
    );
}

#[test]
fn concurrent_clients_are_all_answered() {
    const CLIENTS: usize = 16;
    const CALLS_EACH: usize = 10;
    let server = TestServer::start();
    let host = server.host();
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let host = &host;
            scope.spawn(move || {
                for call in 0..CALLS_EACH {
                    let answer = if call % 3 == 0 {
                        let alias = format!("c{client}-{call}");
                        tc3(host, "CreateKey", &json!({ "Alias": alias }))
                    } else {
                        let body = json!({"KeyId": "alias/default", "NumberOfBytes": 16});
                        tc3(host, "GenerateDataKey", &body)
                    };
                    assert_ok(&answer);
                }
            });
        }
    });
    let listed = tc3(&host, "ListKeys", &json!({"Limit": 200}));
    let created = CLIENTS * CALLS_EACH.div_ceil(3);
    assert_eq!(listed.body["Response"]["TotalCount"], created + 1);
}

#[test]
fn server_and_another_keyring_user_share_the_file() {
    const ROUNDS: usize = 15;
    let server = TestServer::start();
    let host = server.host();
    let other = LocalKms::open(&server.keyring).unwrap();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for round in 0..ROUNDS {
                let alias = format!("served-{round}");
                assert_ok(&tc3(&host, "CreateKey", &json!({ "Alias": alias })));
            }
        });
        scope.spawn(|| {
            for round in 0..ROUNDS {
                other
                    .create_key(Some(&format!("local-{round}")), "")
                    .unwrap();
            }
        });
    });

    // Every key from both writers is in the file, and the server sees the other writer's keys.
    let all = other.list().unwrap();
    assert_eq!(all.len(), 2 * ROUNDS + 1);
    let described = tc3(&host, "DescribeKey", &json!({"KeyId": "alias/local-7"}));
    assert_ok(&described);
}

#[test]
fn generate_parameter_checks_over_the_wire() {
    let server = TestServer::start();
    let host = server.host();
    let cases = [
        (json!({"KeyId": "alias/default"}), "MissingParameter"),
        (json!({"KeySpec": "AES_256"}), "MissingParameter"),
        (
            json!({"KeyId": "alias/default", "KeySpec": "AES_512"}),
            "InvalidParameterValue",
        ),
        (
            json!({"KeyId": "alias/default", "NumberOfBytes": 0}),
            "InvalidParameterValue",
        ),
        (
            json!({"KeyId": "alias/default", "NumberOfBytes": 1025}),
            "InvalidParameterValue",
        ),
        (
            json!({"KeyId": "alias/default", "NumberOfBytes": "16"}),
            "InvalidParameter",
        ),
        (
            json!({"KeyId": 7, "KeySpec": "AES_256"}),
            "InvalidParameter",
        ),
    ];
    for (body, code) in cases {
        assert_error(&tc3(&host, "GenerateDataKey", &body), code);
    }
    let wins = tc3(
        &host,
        "GenerateDataKey",
        &json!({"KeyId": "alias/default", "KeySpec": "AES_128", "NumberOfBytes": 1024}),
    );
    let plaintext = wins.body["Response"]["Plaintext"].as_str().unwrap();
    assert_eq!(plaintext.len(), 1368, "1024 bytes in base64");
}

#[test]
fn stopping_finishes_requests_in_progress() {
    use std::time::Duration;
    // Long enough for a worker to take the request (it is woken as soon as it is queued).
    const PICKUP_WAIT: Duration = Duration::from_millis(500);

    let server = TestServer::start();
    // Over 1 KiB, so the request is queued once its headers are in (smaller bodies are read
    // whole before a worker sees the request).
    let body = format!(
        r#"{{"KeyId": "alias/default", "Pad": "{}"}}"#,
        "x".repeat(4096)
    );
    let (first, rest) = body.as_bytes().split_at(5);
    let mut stream = TcpStream::connect(server.server.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(support::CALL_TIMEOUT))
        .unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-TC-Action: \
         DescribeKey\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(first).unwrap();
    std::thread::sleep(PICKUP_WAIT);

    // Stop while a worker is still reading the body; the stop waits for it.
    let stopping = std::thread::spawn(move || server.server.stop());
    std::thread::sleep(PICKUP_WAIT);
    stream.write_all(rest).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    stopping.join().unwrap();

    let (head, json) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let json: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        json["Response"]["Error"]["Code"],
        "AuthFailure.InvalidAuthorization"
    );
}
