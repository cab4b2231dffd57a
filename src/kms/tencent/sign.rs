//! Request signatures of Tencent Cloud APIs: TC3-HMAC-SHA256 (API 3.0) and the legacy v1/2.0 HMAC.
//!
//! Everything here is a pure function of its inputs, so that a client can sign and a server can
//! verify with the same code. The steps follow `tencent-kms-protocol.md`, sections 1 and 2.

use std::fmt;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The algorithm name that opens a TC3 string to sign and Authorization header.
pub const TC3_ALGORITHM: &str = "TC3-HMAC-SHA256";

/// The prefix joined to the secret key for the first derivation step.
const TC3_KEY_PREFIX: &str = "TC3";

/// The last component of a TC3 credential scope.
pub const TC3_TERMINATOR: &str = "tc3_request";

/// The service name in the credential scope of every KMS request.
pub const KMS_SERVICE: &str = "kms";

/// The name of the legacy parameter that carries the signature (never signed itself).
pub const LEGACY_SIGNATURE_PARAM: &str = "Signature";

/// Why a signature could not be computed or an Authorization header not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignError {
    /// The Authorization header is not of the TC3 form; the text says which part.
    MalformedAuthorization(String),
    /// A header named in the signed-header list is not among the request headers.
    MissingSignedHeader(String),
    /// The timestamp is outside the range of calendar dates.
    TimestampOutOfRange(i64),
    /// The legacy `SignatureMethod` is neither `HmacSHA1` nor `HmacSHA256`.
    UnknownSignatureMethod(String),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MalformedAuthorization(why) => write!(f, "malformed authorization: {why}"),
            Self::MissingSignedHeader(name) => {
                write!(f, "signed header {name:?} is not in the request")
            }
            Self::TimestampOutOfRange(ts) => write!(f, "timestamp {ts} is out of range"),
            Self::UnknownSignatureMethod(name) => {
                write!(f, "signature method {name:?} is not HmacSHA1 or HmacSHA256")
            }
        }
    }
}

impl std::error::Error for SignError {}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        write!(out, "{byte:02x}").expect("writing to a String cannot fail");
    }
    out
}

/// Lower-case hex of the SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Compares two signatures in constant time (for a server checking what it received).
pub fn signatures_match(expected: &str, received: &str) -> bool {
    expected.as_bytes().ct_eq(received.as_bytes()).into()
}

/// The UTC calendar date (`YYYY-MM-DD`) of a Unix timestamp, as the TC3 scope needs it.
///
/// The local time zone never matters: a signature made near midnight must carry the UTC date.
pub fn tc3_date(timestamp: i64) -> Result<String, SignError> {
    let when = time::OffsetDateTime::from_unix_timestamp(timestamp)
        .map_err(|_| SignError::TimestampOutOfRange(timestamp))?;
    let date = when.date();
    Ok(format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    ))
}

/// The credential scope `DATE/kms/tc3_request`.
pub fn credential_scope(date: &str) -> String {
    format!("{date}/{KMS_SERVICE}/{TC3_TERMINATOR}")
}

/// The signed-header names in canonical form: lower case, sorted, without repeats.
pub fn canonical_signed_headers(signed_headers: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = signed_headers
        .iter()
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The canonical-headers block: `name:value\n` for each signed header, names and values lower
/// case, values trimmed, sorted by name.
///
/// `headers` are the request's headers as (name, value) pairs, matched without regard to case.
pub fn canonical_headers(
    headers: &[(&str, &str)],
    signed_headers: &[&str],
) -> Result<String, SignError> {
    let mut block = String::new();
    for name in canonical_signed_headers(signed_headers) {
        let value = headers
            .iter()
            .find(|(have, _)| have.eq_ignore_ascii_case(&name))
            .map(|(_, value)| value.trim().to_ascii_lowercase())
            .ok_or_else(|| SignError::MissingSignedHeader(name.clone()))?;
        block.push_str(&name);
        block.push(':');
        block.push_str(&value);
        block.push('\n');
    }
    Ok(block)
}

/// The parts of an HTTP request that a TC3 signature covers.
#[derive(Clone, Copy, Debug)]
pub struct Tc3Request<'a> {
    /// `POST` or `GET` (upper-cased when signing).
    pub method: &'a str,
    /// The path, `/` for every API 3.0 call.
    pub path: &'a str,
    /// The canonical query string: empty for POST, the url-encoded query for GET.
    pub query: &'a str,
    /// The request headers as (name, value) pairs.
    pub headers: &'a [(&'a str, &'a str)],
    /// The names of the signed headers, such as `["content-type", "host"]`.
    pub signed_headers: &'a [&'a str],
    /// The raw body bytes, exactly as sent.
    pub body: &'a [u8],
    /// The `X-TC-Timestamp` value, Unix seconds.
    pub timestamp: i64,
}

/// The canonical request: method, path, query, headers block, signed-header list and body hash,
/// joined by newlines.
pub fn canonical_request(request: &Tc3Request<'_>) -> Result<String, SignError> {
    let headers = canonical_headers(request.headers, request.signed_headers)?;
    let signed = canonical_signed_headers(request.signed_headers).join(";");
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method.to_ascii_uppercase(),
        request.path,
        request.query,
        headers,
        signed,
        sha256_hex(request.body)
    ))
}

/// The TC3 string to sign for a canonical request made at `timestamp`.
pub fn string_to_sign(timestamp: i64, canonical_request: &str) -> Result<String, SignError> {
    let scope = credential_scope(&tc3_date(timestamp)?);
    Ok(format!(
        "{TC3_ALGORITHM}\n{timestamp}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    ))
}

/// The TC3 signing key for `date`: HMAC chain over the date, the service and the terminator.
pub fn signing_key(secret_key: &str, date: &str) -> Zeroizing<[u8; 32]> {
    let seed = Zeroizing::new(format!("{TC3_KEY_PREFIX}{secret_key}"));
    let k_date = hmac_sha256(seed.as_bytes(), date.as_bytes());
    let k_service = hmac_sha256(&*k_date, KMS_SERVICE.as_bytes());
    hmac_sha256(&*k_service, TC3_TERMINATOR.as_bytes())
}

/// The TC3 signature (lower-case hex) of `string_to_sign` with the key derived for `date`.
pub fn tc3_signature(secret_key: &str, date: &str, string_to_sign: &str) -> String {
    let key = signing_key(secret_key, date);
    hex(&*hmac_sha256(&*key, string_to_sign.as_bytes()))
}

/// The contents of a TC3 `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    /// The SecretId that signed (public, not a secret).
    pub secret_id: String,
    /// The scope date, `YYYY-MM-DD`.
    pub date: String,
    /// The scope service, `kms` for this crate.
    pub service: String,
    /// The signed-header names as listed, such as `["content-type", "host"]`.
    pub signed_headers: Vec<String>,
    /// The signature, lower-case hex.
    pub signature: String,
}

impl fmt::Display for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TC3_ALGORITHM} Credential={}/{}/{}/{TC3_TERMINATOR}, SignedHeaders={}, Signature={}",
            self.secret_id,
            self.date,
            self.service,
            self.signed_headers.join(";"),
            self.signature
        )
    }
}

/// Signs `request` and returns the Authorization header contents.
pub fn sign_tc3(
    secret_id: &str,
    secret_key: &str,
    request: &Tc3Request<'_>,
) -> Result<Authorization, SignError> {
    let date = tc3_date(request.timestamp)?;
    let canonical = canonical_request(request)?;
    let to_sign = string_to_sign(request.timestamp, &canonical)?;
    Ok(Authorization {
        secret_id: secret_id.to_owned(),
        signature: tc3_signature(secret_key, &date, &to_sign),
        date,
        service: KMS_SERVICE.to_owned(),
        signed_headers: canonical_signed_headers(request.signed_headers),
    })
}

/// Reads a TC3 Authorization header:
/// `TC3-HMAC-SHA256 Credential=ID/DATE/SERVICE/tc3_request, SignedHeaders=a;b, Signature=HEX`.
pub fn parse_authorization(header: &str) -> Result<Authorization, SignError> {
    let malformed = |why: &str| SignError::MalformedAuthorization(why.to_owned());
    let rest = header
        .trim()
        .strip_prefix(TC3_ALGORITHM)
        .ok_or_else(|| malformed("does not start with TC3-HMAC-SHA256"))?;

    // The three fields are separated by commas; spaces around them are optional.
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for field in rest.split(',') {
        let (name, value) = field
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("a field has no '='"))?;
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(malformed("unknown field")),
        };
        if slot.replace(value.trim()).is_some() {
            return Err(malformed("repeated field"));
        }
    }
    let credential = credential.ok_or_else(|| malformed("no Credential"))?;
    let signed = signed.ok_or_else(|| malformed("no SignedHeaders"))?;
    let signature = signature.ok_or_else(|| malformed("no Signature"))?;

    // Credential is ID/DATE/SERVICE/tc3_request; the id itself has no '/'.
    let parts: Vec<&str> = credential.split('/').collect();
    let [secret_id, date, service, terminator] = parts[..] else {
        return Err(malformed("Credential is not ID/DATE/SERVICE/tc3_request"));
    };
    if terminator != TC3_TERMINATOR || secret_id.is_empty() {
        return Err(malformed("Credential is not ID/DATE/SERVICE/tc3_request"));
    }
    if signed.is_empty() || signature.is_empty() {
        return Err(malformed("empty SignedHeaders or Signature"));
    }
    Ok(Authorization {
        secret_id: secret_id.to_owned(),
        date: date.to_owned(),
        service: service.to_owned(),
        signed_headers: signed.split(';').map(str::to_owned).collect(),
        signature: signature.to_owned(),
    })
}

/// The hash of a legacy (v1 / API 2.0) signature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LegacySignatureMethod {
    /// `HmacSHA1`, the default when `SignatureMethod` is absent.
    #[default]
    HmacSha1,
    /// `HmacSHA256`.
    HmacSha256,
}

impl LegacySignatureMethod {
    /// The parameter value, `HmacSHA1` or `HmacSHA256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha1 => "HmacSHA1",
            Self::HmacSha256 => "HmacSHA256",
        }
    }

    /// Reads a `SignatureMethod` value; `None` (absent) means HmacSHA1.
    pub fn parse(value: Option<&str>) -> Result<Self, SignError> {
        match value {
            None | Some("HmacSHA1") => Ok(Self::HmacSha1),
            Some("HmacSHA256") => Ok(Self::HmacSha256),
            Some(other) => Err(SignError::UnknownSignatureMethod(other.to_owned())),
        }
    }
}

/// The legacy string to sign: `METHOD + host + path + "?"` and every parameter but `Signature`,
/// sorted by name as raw bytes, joined as `name=value` with `&`, values not url-encoded.
///
/// `host` is the bare host (with the port if the request's Host header has one).
pub fn legacy_string_to_sign(
    method: &str,
    host: &str,
    path: &str,
    params: &[(&str, &str)],
) -> String {
    let mut sorted: Vec<&(&str, &str)> = params
        .iter()
        .filter(|(name, _)| *name != LEGACY_SIGNATURE_PARAM)
        .collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let query: Vec<String> = sorted
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    format!(
        "{}{host}{path}?{}",
        method.to_ascii_uppercase(),
        query.join("&")
    )
}

/// The legacy signature: standard padded base64 of the HMAC of `string_to_sign`.
pub fn legacy_signature(
    method: LegacySignatureMethod,
    secret_key: &str,
    string_to_sign: &str,
) -> String {
    let key = secret_key.as_bytes();
    let data = string_to_sign.as_bytes();
    match method {
        LegacySignatureMethod::HmacSha1 => BASE64.encode(hmac_sha1(key, data)),
        LegacySignatureMethod::HmacSha256 => BASE64.encode(*hmac_sha256(key, data)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";
    const SECRET_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";
    const TIMESTAMP: i64 = 1551113065;
    const BODY: &str = r#"{"KeyId": "23e80852-1e38-11e9-b129-5cb9019b4b01", "KeySpec": "AES_256"}"#;
    const SIGNED: [&str; 2] = ["content-type", "host"];

    fn request<'a>(headers: &'a [(&'a str, &'a str)]) -> Tc3Request<'a> {
        Tc3Request {
            method: "POST",
            path: "/",
            query: "",
            headers,
            signed_headers: &SIGNED,
            body: BODY.as_bytes(),
            timestamp: TIMESTAMP,
        }
    }

    #[test]
    fn tc3_vector_for_the_public_host() {
        let headers = [
            ("Content-Type", "application/json"),
            ("Host", "kms.tencentcloudapi.com"),
            ("X-TC-Action", "GenerateDataKey"),
        ];
        let req = request(&headers);
        assert_eq!(BODY.len(), 71);
        let body_hash = "956b48169fa12808f33a0fe338c84759d1675b38278fa36d56cc74171c8ce217";
        assert_eq!(sha256_hex(req.body), body_hash);

        let canonical = canonical_request(&req).unwrap();
        let expected = format!(
            "POST\n/\n\ncontent-type:application/json\nhost:kms.tencentcloudapi.com\n\n\
             content-type;host\n{body_hash}"
        );
        assert_eq!(canonical, expected);
        let canonical_hash = "09a8c391b19ce54dc35fb50e1e25292b9357121fa38a4667abdd884a9e5b87bb";
        assert_eq!(sha256_hex(canonical.as_bytes()), canonical_hash);

        let to_sign = string_to_sign(TIMESTAMP, &canonical).unwrap();
        let expected =
            format!("TC3-HMAC-SHA256\n1551113065\n2019-02-25/kms/tc3_request\n{canonical_hash}");
        assert_eq!(to_sign, expected);

        let auth = sign_tc3(SECRET_ID, SECRET_KEY, &req).unwrap();
        assert_eq!(
            auth.to_string(),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/kms/\
             tc3_request, SignedHeaders=content-type;host, \
             Signature=77d5d78be86e1b4acc121ecd5c9b714ba8ddc809feff2a66afcbd863326cec4d"
        );
    }

    #[test]
    fn tc3_derived_keys_match_the_vector() {
        let seed = format!("TC3{SECRET_KEY}");
        let k_date = hmac_sha256(seed.as_bytes(), b"2019-02-25");
        assert_eq!(
            hex(&*k_date),
            "d1308c81fe71cfd4e06437bbc067b2b8a3d2d8c0e375d547f15c41d5214b395a"
        );
        let k_service = hmac_sha256(&*k_date, b"kms");
        assert_eq!(
            hex(&*k_service),
            "ecfd7786fc95ea4e5865eededa9b85f5924712cfe4bb6b9ff863fb7fd8b13fff"
        );
        assert_eq!(
            hex(&*signing_key(SECRET_KEY, "2019-02-25")),
            "743d63975b7dfc758b58647784e2657970c6943a27a557197623ae7d1fadd77a"
        );
    }

    #[test]
    fn tc3_vector_for_a_loopback_host() {
        let headers = [
            ("host", "127.0.0.1:8080"),
            ("content-type", "application/json"),
        ];
        let req = request(&headers);
        let canonical = canonical_request(&req).unwrap();
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "17d4c05d935ac150266e070d6fa3fb8a9842f052ef4709d3f316daad2f31a4b6"
        );
        let to_sign = string_to_sign(TIMESTAMP, &canonical).unwrap();
        assert_eq!(
            tc3_signature(SECRET_KEY, "2019-02-25", &to_sign),
            "e88aacc3c7a62b2896d1d4e098abc5977255855ea9ef19ca47d73721a54b93a9"
        );
    }

    #[test]
    fn signed_header_names_and_values_are_normalised() {
        let headers = [
            ("HOST", "  Example.COM "),
            ("X-TC-Action", "GenerateDataKey"),
        ];
        let block = canonical_headers(&headers, &["x-tc-action", "Host"]).unwrap();
        assert_eq!(block, "host:example.com\nx-tc-action:generatedatakey\n");
        let err = canonical_headers(&headers, &["content-type"]).unwrap_err();
        assert_eq!(err, SignError::MissingSignedHeader("content-type".into()));
    }

    #[test]
    fn authorization_round_trips() {
        let header = "TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2019-02-25/kms/tc3_request, \
                      SignedHeaders=content-type;host, Signature=abc123";
        let auth = parse_authorization(header).unwrap();
        assert_eq!(auth.secret_id, "AKIDEXAMPLE");
        assert_eq!(auth.date, "2019-02-25");
        assert_eq!(auth.service, "kms");
        assert_eq!(auth.signed_headers, ["content-type", "host"]);
        assert_eq!(auth.signature, "abc123");
        assert_eq!(auth.to_string(), header);

        // Separators without spaces are accepted too.
        let compact = header.replace(", ", ",");
        assert_eq!(parse_authorization(&compact).unwrap(), auth);
    }

    #[test]
    fn malformed_authorizations_are_refused() {
        let good_cred = "Credential=ID/2019-02-25/kms/tc3_request";
        let cases = [
            String::new(),
            "HMAC-SHA256 Credential=a".to_owned(),
            format!("TC3-HMAC-SHA256 {good_cred}, SignedHeaders=host"),
            format!("TC3-HMAC-SHA256 {good_cred}, SignedHeaders=host, Signature="),
            format!("TC3-HMAC-SHA256 {good_cred}, SignedHeaders=host, Signature=a, Signature=b"),
            "TC3-HMAC-SHA256 Credential=ID/2019-02-25/kms, SignedHeaders=host, Signature=a"
                .to_owned(),
            "TC3-HMAC-SHA256 Credential=ID/d/kms/other, SignedHeaders=host, Signature=a".to_owned(),
            format!("TC3-HMAC-SHA256 {good_cred}, SignedHeaders=host, Bogus=1, Signature=a"),
            format!("TC3-HMAC-SHA256 {good_cred}, SignedHeaders"),
        ];
        for header in cases {
            let err = parse_authorization(&header).unwrap_err();
            assert!(
                matches!(err, SignError::MalformedAuthorization(_)),
                "{header}"
            );
        }
    }

    #[test]
    fn the_date_is_utc() {
        // 23:59:59 UTC on 2019-02-25, and one second later.
        assert_eq!(tc3_date(1551139199).unwrap(), "2019-02-25");
        assert_eq!(tc3_date(1551139200).unwrap(), "2019-02-26");
        assert_eq!(tc3_date(0).unwrap(), "1970-01-01");
        assert!(tc3_date(i64::MAX).is_err());
    }

    fn legacy_params(method: &'static str) -> Vec<(&'static str, &'static str)> {
        vec![
            ("keySpec", "AES_256"),
            ("Action", "GenerateDataKey"),
            ("Timestamp", "1551113065"),
            ("keyId", "23e80852-1e38-11e9-b129-5cb9019b4b01"),
            ("Nonce", "11886"),
            ("Region", "gz"),
            ("SecretId", SECRET_ID),
            ("SignatureMethod", method),
            ("Signature", "ignored"),
        ]
    }

    #[test]
    fn legacy_vectors() {
        let host = "kms-gz.api.qcloud.com";
        let to_sign =
            legacy_string_to_sign("get", host, "/v2/index.php", &legacy_params("HmacSHA1"));
        assert_eq!(
            to_sign,
            "GETkms-gz.api.qcloud.com/v2/index.php?Action=GenerateDataKey&Nonce=11886&Region=gz\
             &SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&SignatureMethod=HmacSHA1\
             &Timestamp=1551113065&keyId=23e80852-1e38-11e9-b129-5cb9019b4b01&keySpec=AES_256"
        );
        let sha1 = LegacySignatureMethod::parse(Some("HmacSHA1")).unwrap();
        assert_eq!(
            legacy_signature(sha1, SECRET_KEY, &to_sign),
            "lngvFTn9LyQgO2rnudXH9tcL3as="
        );

        let params = legacy_params("HmacSHA256");
        let to_sign = legacy_string_to_sign("GET", host, "/v2/index.php", &params);
        let sha256 = LegacySignatureMethod::parse(Some("HmacSHA256")).unwrap();
        assert_eq!(
            legacy_signature(sha256, SECRET_KEY, &to_sign),
            "TOqjNDk9u9brQ/BvAo89FXhoZSNG2HalHkfnHEMbEUw="
        );
    }

    #[test]
    fn api3_v1_form_vector() {
        let params = [
            ("Action", "GenerateDataKey"),
            ("KeyId", "23e80852-1e38-11e9-b129-5cb9019b4b01"),
            ("KeySpec", "AES_256"),
            ("Language", "zh-CN"),
            ("Nonce", "11886"),
            ("Region", "ap-guangzhou"),
            ("RequestClient", "SDK_PYTHON_3.1.192"),
            ("SecretId", SECRET_ID),
            ("SignatureMethod", "HmacSHA256"),
            ("Timestamp", "1551113065"),
            ("Version", "2019-01-18"),
        ];
        let to_sign = legacy_string_to_sign("POST", "kms.tencentcloudapi.com", "/", &params);
        assert!(to_sign.starts_with("POSTkms.tencentcloudapi.com/?Action=GenerateDataKey&KeyId="));
        assert_eq!(
            legacy_signature(LegacySignatureMethod::HmacSha256, SECRET_KEY, &to_sign),
            "9N64iFU1N1j3d1ojyKis8GlSEaZvaec/wGOoo5M4+2E="
        );
    }

    #[test]
    fn signature_methods_parse() {
        assert_eq!(
            LegacySignatureMethod::parse(None).unwrap(),
            LegacySignatureMethod::HmacSha1
        );
        assert!(LegacySignatureMethod::parse(Some("hmacsha256")).is_err());
        assert_eq!(LegacySignatureMethod::HmacSha256.as_str(), "HmacSHA256");
    }

    #[test]
    fn signature_comparison() {
        assert!(signatures_match("abc", "abc"));
        assert!(!signatures_match("abc", "abd"));
        assert!(!signatures_match("abc", "abcd"));
    }
}
