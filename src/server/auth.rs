//! Signature checks on incoming requests: TC3-HMAC-SHA256 (API 3.0) and the v1 / 2.0 HMAC over
//! form parameters, using the same signing code as the client (`kms::tencent::sign`).

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::credentials::Credentials;
use crate::kms::KmsError;
use crate::kms::tencent::sign::{self, LegacySignatureMethod, Tc3Request};

/// The most a request's timestamp may differ from the server's clock, in seconds.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Headers that every TC3 signature must cover.
const REQUIRED_SIGNED_HEADERS: [&str; 2] = ["content-type", "host"];

/// The TC3 timestamp header.
pub const TIMESTAMP_HEADER: &str = "X-TC-Timestamp";

/// Checks the TC3 `Authorization` of a POST to `/` against the raw `body` bytes.
///
/// `headers` are the request headers as received; `now` is the server's clock, Unix seconds.
pub fn verify_tc3(
    credentials: &Credentials,
    headers: &[(&str, &str)],
    body: &[u8],
    now: i64,
) -> Result<(), KmsError> {
    verify_tc3_request(credentials, ("POST", ""), headers, body, now)
}

/// Checks the TC3 `Authorization` of a GET to `/` whose parameters are the `query` string, as
/// received (it is the canonical query string); the body hashed is empty.
pub fn verify_tc3_get(
    credentials: &Credentials,
    headers: &[(&str, &str)],
    query: &str,
    now: i64,
) -> Result<(), KmsError> {
    verify_tc3_request(credentials, ("GET", query), headers, b"", now)
}

fn verify_tc3_request(
    credentials: &Credentials,
    (method, query): (&str, &str),
    headers: &[(&str, &str)],
    body: &[u8],
    now: i64,
) -> Result<(), KmsError> {
    let authorization = find_header(headers, "Authorization")
        .ok_or_else(|| invalid_authorization("the Authorization header is missing"))?;
    let parsed = sign::parse_authorization(authorization)
        .map_err(|err| invalid_authorization(err.to_string()))?;
    let timestamp = timestamp(
        find_header(headers, TIMESTAMP_HEADER),
        TIMESTAMP_HEADER,
        now,
    )?;

    let date = check_scope(&parsed, timestamp)?;
    let signed: Vec<&str> = parsed.signed_headers.iter().map(String::as_str).collect();
    check_signed_headers(&signed)?;

    // Rebuild the canonical request from what was received and compare signatures.
    let secret_key = secret_key(credentials, &parsed.secret_id)?;
    let request = Tc3Request {
        method,
        path: "/",
        query,
        headers,
        signed_headers: &signed,
        body,
        timestamp,
    };
    let canonical =
        sign::canonical_request(&request).map_err(|err| invalid_authorization(err.to_string()))?;
    let to_sign = sign::string_to_sign(timestamp, &canonical)
        .map_err(|err| invalid_parameter(err.to_string()))?;
    let expected = sign::tc3_signature(secret_key, &date, &to_sign);
    if !sign::signatures_match(&expected, &parsed.signature) {
        return Err(signature_failure("the signature does not match"));
    }
    Ok(())
}

/// Checks that the credential scope names this service and the timestamp's UTC date, which it
/// returns.
fn check_scope(parsed: &sign::Authorization, timestamp: i64) -> Result<String, KmsError> {
    if parsed.service != sign::KMS_SERVICE {
        return Err(invalid_authorization(format!(
            "credential scope service {:?} is not {}",
            parsed.service,
            sign::KMS_SERVICE
        )));
    }
    let date = sign::tc3_date(timestamp).map_err(|err| invalid_parameter(err.to_string()))?;
    if parsed.date != date {
        return Err(signature_failure(format!(
            "credential scope date {:?} is not the date of the timestamp, {date}",
            parsed.date
        )));
    }
    Ok(date)
}

/// Checks that the signature covers at least the headers TC3 requires.
fn check_signed_headers(signed: &[&str]) -> Result<(), KmsError> {
    for required in REQUIRED_SIGNED_HEADERS {
        if !signed
            .iter()
            .any(|name| name.eq_ignore_ascii_case(required))
        {
            return Err(invalid_authorization(format!(
                "SignedHeaders must include {required}"
            )));
        }
    }
    Ok(())
}

/// What a v1 / 2.0 signature covers besides the parameters.
#[derive(Clone, Copy, Debug)]
pub struct FormTarget<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The Host header as received.
    pub host: &'a str,
    /// The request path, `/` or `/v2/index.php`.
    pub path: &'a str,
}

/// Checks the `Signature` parameter of a form (or query string) request.
pub fn verify_form(
    credentials: &Credentials,
    target: FormTarget<'_>,
    fields: &BTreeMap<String, Zeroizing<String>>,
    now: i64,
) -> Result<(), KmsError> {
    let field = |name: &str| fields.get(name).map(|value| value.as_str());
    let received = field(sign::LEGACY_SIGNATURE_PARAM)
        .filter(|value| !value.is_empty())
        .ok_or_else(|| KmsError::missing_parameter("the parameter Signature is required"))?;
    let secret_id = field("SecretId")
        .filter(|value| !value.is_empty())
        .ok_or_else(|| KmsError::missing_parameter("the parameter SecretId is required"))?;
    timestamp(field("Timestamp"), "Timestamp", now)?;
    check_nonce(field("Nonce"))?;
    let method = LegacySignatureMethod::parse(field("SignatureMethod"))
        .map_err(|err| KmsError::invalid_parameter_value(err.to_string()))?;
    let secret_key = secret_key(credentials, secret_id)?;

    // Clients differ on whether the signed host keeps the port, so accept either form.
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let bare_host = target.host.rsplit_once(':').map(|(host, _)| host);
    let matched = [Some(target.host), bare_host]
        .into_iter()
        .flatten()
        .any(|host| {
            let to_sign = sign::legacy_string_to_sign(target.method, host, target.path, &pairs);
            let expected = sign::legacy_signature(method, secret_key, &to_sign);
            sign::signatures_match(&expected, received)
        });
    if !matched {
        return Err(signature_failure("the signature does not match"));
    }
    Ok(())
}

/// The value of the header `name`, trimmed, matched without regard to case.
pub fn find_header<'a>(headers: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(have, _)| have.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
}

/// Parses a timestamp and rejects one more than [`MAX_CLOCK_SKEW_SECS`] off `now`.
fn timestamp(value: Option<&str>, name: &str, now: i64) -> Result<i64, KmsError> {
    let value = value
        .filter(|value| !value.is_empty())
        .ok_or_else(|| KmsError::missing_parameter(format!("{name} is required")))?;
    let timestamp: i64 = value
        .parse()
        .map_err(|_| invalid_parameter(format!("{name} {value:?} is not Unix seconds")))?;
    if timestamp.abs_diff(now) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
        return Err(KmsError::new(
            "AuthFailure.SignatureExpire",
            format!(
                "{name} {timestamp} is more than {MAX_CLOCK_SKEW_SECS} s from the server's \
                 clock ({now}); check the client's clock"
            ),
        ));
    }
    Ok(timestamp)
}

fn check_nonce(value: Option<&str>) -> Result<(), KmsError> {
    let value = value
        .filter(|value| !value.is_empty())
        .ok_or_else(|| KmsError::missing_parameter("the parameter Nonce is required"))?;
    match value.parse::<u64>() {
        Ok(nonce) if nonce > 0 => Ok(()),
        _ => Err(KmsError::invalid_parameter_value(format!(
            "Nonce {value:?} is not a positive integer"
        ))),
    }
}

fn secret_key<'a>(credentials: &'a Credentials, secret_id: &str) -> Result<&'a str, KmsError> {
    credentials.secret_key(secret_id).ok_or_else(|| {
        KmsError::new(
            "AuthFailure.SecretIdNotFound",
            format!("SecretId {secret_id:?} is not known to this server"),
        )
    })
}

fn invalid_authorization(message: impl Into<String>) -> KmsError {
    KmsError::new("AuthFailure.InvalidAuthorization", message)
}

fn signature_failure(message: impl Into<String>) -> KmsError {
    KmsError::new("AuthFailure.SignatureFailure", message)
}

fn invalid_parameter(message: impl Into<String>) -> KmsError {
    KmsError::invalid_parameter(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vectors of `tencent-kms-protocol.md`, section 5.
    const SECRET_ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";
    const SECRET_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";
    const TIMESTAMP: i64 = 1551113065;
    const BODY: &str = r#"{"KeyId": "23e80852-1e38-11e9-b129-5cb9019b4b01", "KeySpec": "AES_256"}"#;
    const LOOPBACK_SIGNATURE: &str =
        "e88aacc3c7a62b2896d1d4e098abc5977255855ea9ef19ca47d73721a54b93a9";

    fn credentials() -> Credentials {
        let mut creds = Credentials::new();
        creds.insert(SECRET_ID, SECRET_KEY).unwrap();
        creds
    }

    fn authorization(signature: &str, id: &str, date: &str) -> String {
        format!(
            "TC3-HMAC-SHA256 Credential={id}/{date}/kms/tc3_request, \
             SignedHeaders=content-type;host, Signature={signature}"
        )
    }

    fn check(authorization: &str, timestamp: &str, body: &str, now: i64) -> Result<(), KmsError> {
        let headers = [
            ("Host", "127.0.0.1:8080"),
            ("Content-Type", "application/json"),
            ("Authorization", authorization),
            ("X-TC-Timestamp", timestamp),
        ];
        verify_tc3(&credentials(), &headers, body.as_bytes(), now)
    }

    fn code(result: Result<(), KmsError>) -> String {
        result.unwrap_err().code
    }

    #[test]
    fn accepts_the_loopback_vector() {
        let auth = authorization(LOOPBACK_SIGNATURE, SECRET_ID, "2019-02-25");
        check(&auth, "1551113065", BODY, TIMESTAMP + 299).unwrap();
    }

    #[test]
    fn rejects_each_kind_of_bad_request() {
        let good = authorization(LOOPBACK_SIGNATURE, SECRET_ID, "2019-02-25");
        let ts = "1551113065";
        let failure = "AuthFailure.SignatureFailure";
        assert_eq!(code(check(&good, ts, " ", TIMESTAMP)), failure);
        let other = BODY.replace("AES_256", "AES_128");
        assert_eq!(code(check(&good, ts, &other, TIMESTAMP)), failure);
        let flipped = LOOPBACK_SIGNATURE.replace("e88a", "e88b");
        let bad = authorization(&flipped, SECRET_ID, "2019-02-25");
        assert_eq!(code(check(&bad, ts, BODY, TIMESTAMP)), failure);
        let wrong_date = authorization(LOOPBACK_SIGNATURE, SECRET_ID, "2019-02-26");
        assert_eq!(code(check(&wrong_date, ts, BODY, TIMESTAMP)), failure);

        let expired = "AuthFailure.SignatureExpire";
        assert_eq!(code(check(&good, ts, BODY, TIMESTAMP + 301)), expired);
        assert_eq!(code(check(&good, ts, BODY, TIMESTAMP - 301)), expired);
        let unknown = authorization(LOOPBACK_SIGNATURE, "AKIDother", "2019-02-25");
        assert_eq!(
            code(check(&unknown, ts, BODY, TIMESTAMP)),
            "AuthFailure.SecretIdNotFound"
        );
        for garbled in ["", "Basic abc", "TC3-HMAC-SHA256 Credential=x"] {
            assert_eq!(
                code(check(garbled, ts, BODY, TIMESTAMP)),
                "AuthFailure.InvalidAuthorization"
            );
        }
        assert_eq!(
            code(check(&good, "soon", BODY, TIMESTAMP)),
            "InvalidParameter"
        );
    }

    #[test]
    fn rejects_signatures_that_skip_host() {
        let auth = "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/\
                    kms/tc3_request, SignedHeaders=content-type, Signature=00";
        assert_eq!(
            code(check(auth, "1551113065", BODY, TIMESTAMP)),
            "AuthFailure.InvalidAuthorization"
        );
    }

    fn legacy_fields(method: &str, signature: &str) -> BTreeMap<String, Zeroizing<String>> {
        let pairs = [
            ("Action", "GenerateDataKey"),
            ("Nonce", "11886"),
            ("Region", "gz"),
            ("SecretId", SECRET_ID),
            ("SignatureMethod", method),
            ("Timestamp", "1551113065"),
            ("keyId", "23e80852-1e38-11e9-b129-5cb9019b4b01"),
            ("keySpec", "AES_256"),
            ("Signature", signature),
        ];
        pairs
            .into_iter()
            .map(|(name, value)| (name.to_owned(), Zeroizing::new(value.to_owned())))
            .collect()
    }

    #[test]
    fn accepts_the_legacy_vectors_and_rejects_tampering() {
        let target = FormTarget {
            method: "GET",
            host: "kms-gz.api.qcloud.com",
            path: "/v2/index.php",
        };
        let sha1 = legacy_fields("HmacSHA1", "lngvFTn9LyQgO2rnudXH9tcL3as=");
        verify_form(&credentials(), target, &sha1, TIMESTAMP).unwrap();
        let sha256 = legacy_fields("HmacSHA256", "TOqjNDk9u9brQ/BvAo89FXhoZSNG2HalHkfnHEMbEUw=");
        verify_form(&credentials(), target, &sha256, TIMESTAMP).unwrap();

        let post = FormTarget {
            method: "POST",
            ..target
        };
        assert_eq!(
            code(verify_form(&credentials(), post, &sha1, TIMESTAMP)),
            "AuthFailure.SignatureFailure"
        );
        assert_eq!(
            code(verify_form(&credentials(), target, &sha1, TIMESTAMP + 400)),
            "AuthFailure.SignatureExpire"
        );
        let mut tampered = sha1.clone();
        tampered.insert("keySpec".into(), Zeroizing::new("AES_128".into()));
        assert_eq!(
            code(verify_form(&credentials(), target, &tampered, TIMESTAMP)),
            "AuthFailure.SignatureFailure"
        );
    }
}
