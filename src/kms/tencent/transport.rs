//! Signed HTTP calls to the KMS with timeouts, bounded retries, jittered backoff and a deadline.
//!
//! Retried: network failures, timeouts, HTTP 5xx or 429 without a readable API error, and API
//! errors of the throttling and server classes. Never retried: auth, parameter and key-state
//! errors, whatever the HTTP status, and answers that are unreadable with status 200.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ureq::http::Response;
use ureq::{Agent, Body};
use zeroize::Zeroizing;

use super::api::{self, Answer, AnswerError, Output, Params};
use super::credentials::Credentials;
use super::options::{ApiVersion, Endpoint, TencentOptions, TransportOptions};
use super::sign::{self, LegacySignatureMethod, Tc3Request};
use crate::kms::{KmsError, KmsErrorKind};

/// The API version sent in `X-TC-Version`.
pub const API3_VERSION: &str = "2019-01-18";

/// The error code of a request that did not get an HTTP answer.
pub const CODE_NETWORK: &str = "ClientNetworkError";

/// The error code of an answer with a bad HTTP status and no readable API error.
pub const CODE_BAD_STATUS: &str = "ServerNetworkError";

/// The error code of an answer that could not be read or lacks what the action returns.
pub const CODE_BAD_ANSWER: &str = "ClientParseError";

/// The largest answer body read, in bytes.
const MAX_ANSWER_LEN: u64 = 1 << 20;

/// How much of an unreadable answer an error message shows, in characters.
const EXCERPT_LEN: usize = 200;

/// The headers covered by a TC3 signature.
const SIGNED_HEADERS: [&str; 2] = ["content-type", "host"];

/// The content type of API 3.0 request bodies.
const JSON_CONTENT_TYPE: &str = "application/json";

/// What a clock-skew error adds to its message.
const CLOCK_HINT: &str = "the request time was refused: check that this machine's clock is \
                          right (within 5 minutes of the real time)";

/// A failed attempt, and whether the policy allows trying again.
struct Failure {
    error: KmsError,
    retryable: bool,
}

impl Failure {
    fn retryable(error: KmsError) -> Self {
        Self {
            error,
            retryable: true,
        }
    }

    fn fatal(error: KmsError) -> Self {
        Self {
            error,
            retryable: false,
        }
    }
}

/// A client-side error with an explicit class (its code is not an API code).
fn client_error(kind: KmsErrorKind, code: &str, message: String) -> KmsError {
    KmsError {
        kind,
        code: code.to_owned(),
        message,
        request_id: String::new(),
    }
}

/// Signs and sends actions to one endpoint.
pub(crate) struct Transport {
    agent: Agent,
    endpoint: Endpoint,
    region: String,
    api: ApiVersion,
    policy: TransportOptions,
    credentials: Credentials,
}

impl Transport {
    /// A transport for `endpoint`; loopback endpoints never go through a proxy.
    pub fn new(options: &TencentOptions, endpoint: Endpoint, credentials: Credentials) -> Self {
        let mut config = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(options.transport.connect_timeout));
        if endpoint.is_loopback {
            config = config.proxy(None);
        }
        Self {
            agent: config.build().into(),
            endpoint,
            region: options.region.clone(),
            api: options.api,
            policy: options.transport.clone(),
            credentials,
        }
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Calls `action`, retrying as the policy allows until the deadline.
    pub fn call(&self, action: &str, params: &Params<'_>) -> Result<Output, KmsError> {
        let started = Instant::now();
        let deadline = started + self.policy.deadline;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let budget = deadline.saturating_duration_since(Instant::now());
            let failure = match self.attempt(action, params, budget) {
                Ok(output) => return Ok(output),
                Err(failure) => failure,
            };
            if !failure.retryable {
                return Err(failure.error);
            }
            if attempts > self.policy.max_retries {
                return Err(gave_up(failure.error, attempts, "no retries left"));
            }

            // Sleep only if the next attempt can still start before the deadline.
            let delay = backoff_delay(&self.policy, attempts);
            if Instant::now() + delay >= deadline {
                let why = format!("the {:?} deadline was reached", self.policy.deadline);
                return Err(gave_up(failure.error, attempts, &why));
            }
            log::debug!(
                "tencent kms: {action} attempt {attempts} failed ({}); retrying in {delay:?}",
                failure.error.code
            );
            std::thread::sleep(delay);
        }
    }

    /// One signed request and its answer, within `budget`.
    fn attempt(
        &self,
        action: &str,
        params: &Params<'_>,
        budget: Duration,
    ) -> Result<Output, Failure> {
        let timeout = self.policy.timeout.min(budget);
        if timeout.is_zero() {
            let message = format!("{action}: the deadline passed before the request was sent");
            return Err(Failure::fatal(client_error(
                KmsErrorKind::Transport,
                CODE_NETWORK,
                message,
            )));
        }
        let sent = match self.api {
            ApiVersion::V3 => self.send_api3(action, params, timeout),
            ApiVersion::Legacy => self.send_legacy(action, params, timeout),
        };
        let response = sent.map_err(|err| network_failure(action, &self.endpoint, timeout, err))?;
        self.read_answer(action, response)
    }

    fn request(&self, timeout: Duration) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let connect = self.policy.connect_timeout.min(timeout);
        self.agent
            .post(&self.endpoint.url)
            .config()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(connect))
            .build()
    }

    /// POSTs the parameters as JSON with a TC3 signature.
    fn send_api3(
        &self,
        action: &str,
        params: &Params<'_>,
        timeout: Duration,
    ) -> Result<Response<Body>, ureq::Error> {
        let body = Zeroizing::new(serde_json::to_vec(params).expect("parameters always serialize"));
        let timestamp = unix_now();
        let headers = [
            ("content-type", JSON_CONTENT_TYPE),
            ("host", self.endpoint.host.as_str()),
        ];
        let tc3 = Tc3Request {
            method: "POST",
            path: &self.endpoint.path,
            query: "",
            headers: &headers,
            signed_headers: &SIGNED_HEADERS,
            body: &body,
            timestamp,
        };
        let authorization = sign::sign_tc3(
            &self.credentials.secret_id,
            self.credentials.secret_key.expose(),
            &tc3,
        )
        .map_err(|err| ureq::Error::Other(Box::new(err)))?;

        let mut request = self
            .request(timeout)
            .header("Host", &self.endpoint.host)
            .header("Content-Type", JSON_CONTENT_TYPE)
            .header("X-TC-Action", action)
            .header("X-TC-Version", API3_VERSION)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Region", &self.region)
            .header("Authorization", authorization.to_string());
        if let Some(token) = &self.credentials.session_token {
            request = request.header("X-TC-Token", token.expose());
        }
        request.send(&body[..])
    }

    /// POSTs the parameters as a legacy form with an HmacSHA256 signature.
    fn send_legacy(
        &self,
        action: &str,
        params: &Params<'_>,
        timeout: Duration,
    ) -> Result<Response<Body>, ureq::Error> {
        let method = LegacySignatureMethod::HmacSha256;
        let timestamp = unix_now().to_string();
        let nonce = random_nonce().to_string();
        let mut pairs = params.legacy_pairs();
        let mut common = vec![
            ("Action", action),
            ("Region", self.region.as_str()),
            ("Timestamp", timestamp.as_str()),
            ("Nonce", nonce.as_str()),
            ("SecretId", self.credentials.secret_id.as_str()),
            ("SignatureMethod", method.as_str()),
        ];
        if let Some(token) = &self.credentials.session_token {
            common.push(("Token", token.expose()));
        }
        pairs.extend(common.into_iter().map(|(k, v)| (k.to_owned(), v.into())));

        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), &**v)).collect();
        let to_sign = sign::legacy_string_to_sign(
            "POST",
            &self.endpoint.host,
            &self.endpoint.path,
            &borrowed,
        );
        let signature =
            sign::legacy_signature(method, self.credentials.secret_key.expose(), &to_sign);
        pairs.push((sign::LEGACY_SIGNATURE_PARAM.to_owned(), signature.into()));
        self.request(timeout)
            .header("Host", &self.endpoint.host)
            .send_form(pairs.iter().map(|(k, v)| (k.as_str(), &**v)))
    }

    /// Reads the answer: the action's output, an API error, or an unreadable answer.
    fn read_answer(&self, action: &str, mut response: Response<Body>) -> Result<Output, Failure> {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        log::debug!("tencent kms: {action} answered HTTP {status}");
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_LEN)
            .read_to_vec()
            .map(Zeroizing::new)
            .map_err(|err| network_failure(action, &self.endpoint, self.policy.timeout, err))?;

        let parsed = match self.api {
            ApiVersion::V3 => api::parse_api3(&body),
            ApiVersion::Legacy => api::parse_legacy(&body),
        };
        match parsed {
            Ok(Answer::Failure(error)) => Err(api_failure(action, status, error)),
            Ok(Answer::Success(output)) if status == 200 => Ok(output),
            Ok(Answer::Success(_)) => Err(unreadable(action, status, &content_type, &body, None)),
            Err(why) => Err(unreadable(action, status, &content_type, &body, Some(why))),
        }
    }
}

/// An API error: retried only for the throttling and server classes.
fn api_failure(action: &str, status: u16, mut error: KmsError) -> Failure {
    error.message = format!("{action}: {} (HTTP {status})", error.message);
    if api::is_clock_error(&error.code) {
        error.message = format!("{}; {CLOCK_HINT}", error.message);
    }
    let retryable = matches!(error.kind, KmsErrorKind::Throttled | KmsErrorKind::Server);
    Failure { error, retryable }
}

/// An answer without a readable API error: retried for HTTP 5xx and 429 only.
fn unreadable(
    action: &str,
    status: u16,
    content_type: &str,
    body: &[u8],
    why: Option<AnswerError>,
) -> Failure {
    let why = why.map_or_else(
        || "unexpected HTTP status".to_owned(),
        |why| why.to_string(),
    );
    let mut message = format!("{action}: unreadable answer (HTTP {status}, {content_type}): {why}");
    let is_json = content_type.starts_with(JSON_CONTENT_TYPE);
    let excerpt = (status != 200 || !is_json).then(|| excerpt(body)).flatten();
    if let Some(excerpt) = excerpt {
        message = format!("{message}: {excerpt:?}");
    }
    let code = if status == 200 {
        CODE_BAD_ANSWER
    } else {
        CODE_BAD_STATUS
    };
    let error = client_error(KmsErrorKind::Transport, code, message);
    if status >= 500 || status == 429 {
        Failure::retryable(error)
    } else {
        Failure::fatal(error)
    }
}

/// The first characters of a body for an error message, or `None` if it may hold a key.
fn excerpt(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    if text.to_ascii_lowercase().contains("plaintext") {
        return None;
    }
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(EXCERPT_LEN)
        .collect();
    Some(cleaned.trim().to_owned())
}

/// A failure before an HTTP answer arrived (or while reading it).
fn network_failure(
    action: &str,
    endpoint: &Endpoint,
    timeout: Duration,
    err: ureq::Error,
) -> Failure {
    let retryable = matches!(
        err,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled
    );
    let what = match err {
        ureq::Error::Timeout(_) => format!("no complete answer within {timeout:?}"),
        other => other.to_string(),
    };
    let message = format!("{action}: request to {} failed: {what}", endpoint.url);
    let error = client_error(KmsErrorKind::Transport, CODE_NETWORK, message);
    Failure { error, retryable }
}

/// Says in the message why retrying stopped.
fn gave_up(mut error: KmsError, attempts: u32, why: &str) -> KmsError {
    error.message = format!(
        "{} (gave up after {attempts} attempts: {why})",
        error.message
    );
    error
}

/// The delay before retry number `retry` (1-based): `base * 2^(retry-1)`, capped, then a random
/// point in its upper half so that clients do not retry in step.
pub(crate) fn backoff_delay(policy: &TransportOptions, retry: u32) -> Duration {
    let doubling = 2u32.saturating_pow(retry.saturating_sub(1));
    let full = policy
        .backoff_base
        .saturating_mul(doubling)
        .min(policy.backoff_cap);
    let half = full / 2;
    let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let jitter = if jitter_nanos == 0 {
        0
    } else {
        random_u64() % (jitter_nanos + 1)
    };
    half + Duration::from_nanos(jitter)
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    crate::secret::fill_random(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// A random positive Nonce for a legacy request.
fn random_nonce() -> u32 {
    (random_u64() % u64::from(u32::MAX - 1)) as u32 + 1
}

/// Seconds since the Unix epoch, from the system clock (UTC by definition).
fn unix_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_the_cap_with_jitter() {
        let policy = TransportOptions {
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_millis(350),
            ..TransportOptions::default()
        };
        for _ in 0..50 {
            let first = backoff_delay(&policy, 1);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
            let second = backoff_delay(&policy, 2);
            assert!((Duration::from_millis(100)..=Duration::from_millis(200)).contains(&second));
            let capped = backoff_delay(&policy, 30);
            assert!((Duration::from_millis(175)..=Duration::from_millis(350)).contains(&capped));
        }
    }

    #[test]
    fn excerpts_skip_bodies_that_may_hold_keys() {
        assert_eq!(
            excerpt(b"<html>\n<b>oops</b></html>").unwrap(),
            "<html> <b>oops</b></html>"
        );
        assert_eq!(excerpt(br#"{"Plaintext":"AAAA"}"#), None);
        assert_eq!(excerpt(&[b'x'; 500]).unwrap().len(), EXCERPT_LEN);
    }

    #[test]
    fn nonces_are_positive() {
        for _ in 0..100 {
            assert!(random_nonce() >= 1);
        }
    }
}
