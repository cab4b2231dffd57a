//! Shared by the integration tests: a `kms serve` on a loopback port and signed raw calls to it.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use datakey::kms::tencent::sign::{self, LegacySignatureMethod, Tc3Request};
use datakey::server::{Credentials, KmsServer, RunningServer, ServeConfig};
use serde_json::Value;

/// The credentials every test server accepts (made up, not real).
pub const SECRET_ID: &str = "AKIDdatakeyservetest000000000001";
pub const SECRET_KEY: &str = "datakeyServeTestSecretKey0000001";

/// A second accepted pair, to show that a credentials set may hold several.
pub const OTHER_SECRET_ID: &str = "AKIDdatakeyservetest000000000002";
pub const OTHER_SECRET_KEY: &str = "datakeyServeTestSecretKey0000002";

/// The region test clients name.
pub const REGION: &str = "ap-guangzhou";

/// How long any one test call may take before it fails (never hangs CI).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A server on 127.0.0.1 port 0 over a fresh keyring in a temporary directory.
pub struct TestServer {
    pub server: RunningServer,
    pub keyring: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// A server whose configuration `adjust` changes first (a shorter read timeout, say).
    pub fn start_with(adjust: impl FnOnce(&mut ServeConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keyring = dir.path().join("keyring.json");
        let mut credentials = Credentials::new();
        credentials.insert(SECRET_ID, SECRET_KEY).unwrap();
        credentials
            .insert(OTHER_SECRET_ID, OTHER_SECRET_KEY)
            .unwrap();
        let mut config = ServeConfig::new(&keyring, credentials);
        config.listen = "127.0.0.1:0".into();
        adjust(&mut config);
        let server = KmsServer::bind(config).unwrap().spawn();
        Self {
            server,
            keyring,
            _dir: dir,
        }
    }

    pub fn host(&self) -> String {
        self.server.local_addr().to_string()
    }
}

/// A client with no proxy, a timeout, and HTTP errors returned as responses.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(CALL_TIMEOUT))
        .build()
        .new_agent()
}

/// The server's clock, as a client with a correct clock sees it.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// What a raw call got back: the Content-Type header and the JSON body.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl Answer {
    /// The 3.0 error code, if the answer is an error.
    pub fn error_code(&self) -> Option<&str> {
        self.body["Response"]["Error"]["Code"].as_str()
    }
}

/// The knobs of a TC3 call that tests turn.
pub struct Tc3Call<'a> {
    pub action: &'a str,
    pub body: &'a [u8],
    pub secret_id: &'a str,
    pub secret_key: &'a str,
    pub timestamp: i64,
}

impl<'a> Tc3Call<'a> {
    pub fn new(action: &'a str, body: &'a [u8]) -> Self {
        Self {
            action,
            body,
            secret_id: SECRET_ID,
            secret_key: SECRET_KEY,
            timestamp: now(),
        }
    }

    /// Signs and sends the call to `host` (`127.0.0.1:PORT`).
    pub fn send(&self, host: &str) -> Answer {
        let timestamp = self.timestamp.to_string();
        let headers = [
            ("Content-Type", "application/json"),
            ("Host", host),
            ("X-TC-Action", self.action),
        ];
        let request = Tc3Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            signed_headers: &["content-type", "host"],
            body: self.body,
            timestamp: self.timestamp,
        };
        let authorization = sign::sign_tc3(self.secret_id, self.secret_key, &request).unwrap();
        let response = agent()
            .post(format!("http://{host}/"))
            .header("Content-Type", "application/json")
            .header("X-TC-Action", self.action)
            .header("X-TC-Version", "2019-01-18")
            .header("X-TC-Timestamp", &timestamp)
            .header("X-TC-Region", REGION)
            .header("Authorization", authorization.to_string())
            .send(self.body)
            .unwrap();
        read_answer(response)
    }
}

/// A signed TC3 call with the default credentials and the current time.
pub fn tc3(host: &str, action: &str, body: &Value) -> Answer {
    Tc3Call::new(action, body.to_string().as_bytes()).send(host)
}

/// A signed call to `path` with form parameters (v1 at `/`, 2.0 at `/v2/index.php`), sent as a
/// GET query or a POST body.
pub fn form(host: &str, method: &str, path: &str, params: &[(&str, &str)]) -> Answer {
    let timestamp = now().to_string();
    let mut all: Vec<(&str, &str)> = params.to_vec();
    all.extend([
        ("Nonce", "4711"),
        ("SecretId", SECRET_ID),
        (
            "SignatureMethod",
            LegacySignatureMethod::HmacSha256.as_str(),
        ),
        ("Timestamp", timestamp.as_str()),
    ]);
    let to_sign = sign::legacy_string_to_sign(method, host, path, &all);
    let signature = sign::legacy_signature(LegacySignatureMethod::HmacSha256, SECRET_KEY, &to_sign);
    all.push(("Signature", &signature));
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(all)
        .finish();

    let url = format!("http://{host}{path}");
    let response = match method {
        "GET" => agent().get(format!("{url}?{encoded}")).call(),
        _ => agent()
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(encoded.as_bytes()),
    };
    read_answer(response.unwrap())
}

pub fn read_answer(mut response: ureq::http::Response<ureq::Body>) -> Answer {
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    Answer {
        status,
        content_type,
        body: serde_json::from_str(&text).unwrap(),
    }
}
