//! What a Tencent KMS client is configured with: API version, region, endpoint and timeouts.

use std::fmt;
use std::time::Duration;

use ureq::http::Uri;

/// The default connect timeout of one attempt.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default total timeout of one attempt (connect, send, receive).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The default limit on one call, every attempt and backoff delay included.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// The default number of retries after the first attempt.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// The default delay before the first retry; it doubles for each later one.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(200);

/// The default cap on a single backoff delay.
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(5);

/// The API 3.0 host that routes to the nearest region.
pub const API3_HOST: &str = "kms.tencentcloudapi.com";

/// The path of every API 3.0 request.
pub const API3_PATH: &str = "/";

/// The path of every legacy API 2.0 request.
pub const LEGACY_PATH: &str = "/v2/index.php";

/// The longest region name accepted.
const MAX_REGION_LEN: usize = 64;

/// The long region names that have a short legacy code, for the legacy host name.
const LEGACY_REGION_CODES: [(&str, &str); 3] = [
    ("ap-guangzhou", "gz"),
    ("ap-shanghai", "sh"),
    ("ap-beijing", "bj"),
];

/// Which Tencent Cloud API the client speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ApiVersion {
    /// API 3.0: JSON over POST, TC3-HMAC-SHA256 signatures.
    #[default]
    V3,
    /// The legacy API 2.0: form POST to `/v2/index.php`, HmacSHA256 signatures.
    Legacy,
}

impl ApiVersion {
    /// Reads `v3` or `legacy`.
    pub fn parse(text: &str) -> Result<Self, TencentSetupError> {
        match text {
            "v3" | "3" => Ok(Self::V3),
            "legacy" | "v2" => Ok(Self::Legacy),
            _ => Err(TencentSetupError::UnknownApi(text.to_owned())),
        }
    }

    /// The name used in flags and config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V3 => "v3",
            Self::Legacy => "legacy",
        }
    }
}

/// Timeouts, retries and backoff of the HTTP transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportOptions {
    /// The limit on establishing one connection.
    pub connect_timeout: Duration,
    /// The limit on one attempt, from connecting to the last byte of the answer.
    pub timeout: Duration,
    /// The limit on a whole call: no attempt starts and no delay ends past it.
    pub deadline: Duration,
    /// How many times a failed attempt may be retried (so at most this plus one attempts).
    pub max_retries: u32,
    /// The delay before the first retry, doubled for each later one.
    pub backoff_base: Duration,
    /// The cap on one delay.
    pub backoff_cap: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            deadline: DEFAULT_DEADLINE,
            max_retries: DEFAULT_MAX_RETRIES,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_cap: DEFAULT_BACKOFF_CAP,
        }
    }
}

/// Everything a [`super::TencentKms`] needs besides credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TencentOptions {
    /// The region, such as `ap-guangzhou` (or `gz` with the legacy API).
    pub region: String,
    /// A URL that replaces the default endpoint, such as `http://127.0.0.1:8080`.
    pub endpoint: Option<String>,
    /// The API version.
    pub api: ApiVersion,
    /// Timeouts and retries.
    pub transport: TransportOptions,
}

impl TencentOptions {
    /// Options for `region` with the default API, endpoint and transport.
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            endpoint: None,
            api: ApiVersion::default(),
            transport: TransportOptions::default(),
        }
    }
}

/// Why a Tencent KMS client could not be set up (before any request is made).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TencentSetupError {
    /// The config file could not be read or parsed.
    Config(String),
    /// The credentials file could not be read, or lacks the profile or a field.
    CredentialsFile(String),
    /// The endpoint is not an http(s) URL with a host.
    InvalidEndpoint(String),
    /// The region is not of the accepted form.
    InvalidRegion(String),
    /// No credentials in the environment nor in the credentials file.
    NoCredentials,
    /// The named config profile does not exist.
    NoSuchProfile(String),
    /// No region was given by a flag or the profile.
    NoRegion,
    /// The legacy API has no host that datakey knows for this region.
    NoLegacyHost(String),
    /// A short legacy region code given with API 3.0.
    ShortRegionNeedsLegacy(String),
    /// The API version is neither `v3` nor `legacy`.
    UnknownApi(String),
    /// The back-end named in the profile or flags is unknown.
    UnknownBackend(String),
    /// A file header names an endpoint that is neither a Tencent Cloud host, nor on loopback,
    /// nor in a profile: datakey does not send signed requests there unless told to.
    UntrustedEndpoint(String),
}

impl fmt::Display for TencentSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(why) => write!(f, "config file: {why}"),
            Self::CredentialsFile(why) => write!(f, "credentials file: {why}"),
            Self::InvalidEndpoint(url) => {
                write!(
                    f,
                    "endpoint {url:?} is not an http:// or https:// URL with a host"
                )
            }
            Self::InvalidRegion(region) => write!(
                f,
                "region {region:?} is not of the form ap-guangzhou (lowercase letters, digits, \
                 hyphens)"
            ),
            Self::NoCredentials => write!(
                f,
                "no Tencent Cloud credentials: set TENCENTCLOUD_SECRET_ID and \
                 TENCENTCLOUD_SECRET_KEY, or write ~/.tencentcloud/credentials"
            ),
            Self::NoSuchProfile(name) => write!(f, "config profile {name:?} not found"),
            Self::NoRegion => write!(f, "the tencent back-end needs a region (--region)"),
            Self::NoLegacyHost(region) => write!(
                f,
                "the legacy API listed hosts for gz, sh and bj (ap-guangzhou, ap-shanghai, \
                 ap-beijing) only, not region {region:?}: use API 3.0, or give --endpoint"
            ),
            Self::ShortRegionNeedsLegacy(region) => write!(
                f,
                "region {region:?} is a legacy short code; use the long form such as \
                 ap-guangzhou, or --api legacy"
            ),
            Self::UnknownApi(api) => write!(f, "api {api:?} is not one of v3, legacy"),
            Self::UnknownBackend(name) => write!(f, "kms {name:?} is not one of local, tencent"),
            Self::UntrustedEndpoint(url) => write!(
                f,
                "the file names the KMS endpoint {url}, which is not a Tencent Cloud host, not on \
                 loopback and not in a profile; datakey sends no signed request there unless \
                 told to: give --endpoint {url}, or set it as endpoint in a profile"
            ),
        }
    }
}

impl std::error::Error for TencentSetupError {}

/// Whether `region` is a short legacy code such as `gz`: two to four lowercase letters.
pub fn is_short_region(region: &str) -> bool {
    (2..=4).contains(&region.len()) && region.bytes().all(|b| b.is_ascii_lowercase())
}

/// Whether `region` is a long name such as `ap-guangzhou`: lowercase letters and digits in at
/// least two parts joined by single hyphens.
pub fn is_long_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    region.len() <= MAX_REGION_LEN
        && parts.len() >= 2
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Checks `region` for `api`: a long name always, a short code only with the legacy API.
pub fn validate_region(region: &str, api: ApiVersion) -> Result<(), TencentSetupError> {
    if is_long_region(region) {
        return Ok(());
    }
    match (is_short_region(region), api) {
        (true, ApiVersion::Legacy) => Ok(()),
        (true, ApiVersion::V3) => Err(TencentSetupError::ShortRegionNeedsLegacy(region.to_owned())),
        (false, _) => Err(TencentSetupError::InvalidRegion(region.to_owned())),
    }
}

/// Where requests go: the URL, and the `Host` value that is sent and signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The full URL of the request.
    pub url: String,
    /// The host, with the port when one was given (the value of the `Host` header).
    pub host: String,
    /// The request path, `/` or `/v2/index.php`.
    pub path: String,
    /// Whether the host is a loopback address (no proxy is used then).
    pub is_loopback: bool,
}

impl Endpoint {
    /// The endpoint for `options`: the override if there is one, else the default host of the
    /// API version and region.
    pub fn resolve(options: &TencentOptions) -> Result<Self, TencentSetupError> {
        match &options.endpoint {
            Some(url) => Self::parse(url, options.api),
            None => Self::default_for(&options.region, options.api),
        }
    }

    fn default_for(region: &str, api: ApiVersion) -> Result<Self, TencentSetupError> {
        let (host, path) = match api {
            ApiVersion::V3 => (API3_HOST.to_owned(), API3_PATH),
            ApiVersion::Legacy => {
                let code = legacy_code(region)
                    .ok_or_else(|| TencentSetupError::NoLegacyHost(region.to_owned()))?;
                (format!("kms-{code}.api.qcloud.com"), LEGACY_PATH)
            }
        };
        Ok(Self {
            url: format!("https://{host}{path}"),
            host,
            path: path.to_owned(),
            is_loopback: false,
        })
    }

    /// Reads an override URL; a bare or `/` path becomes the API's own path.
    pub fn parse(url: &str, api: ApiVersion) -> Result<Self, TencentSetupError> {
        let invalid = || TencentSetupError::InvalidEndpoint(url.to_owned());
        let uri: Uri = url.parse().map_err(|_| invalid())?;
        let scheme = uri.scheme_str().ok_or_else(invalid)?;
        let authority = uri.authority().ok_or_else(invalid)?;
        if !matches!(scheme, "http" | "https") || authority.as_str().contains('@') {
            return Err(invalid());
        }
        if authority.host().is_empty() || uri.query().is_some() {
            return Err(invalid());
        }
        let path = match uri.path() {
            "" | "/" => default_path(api),
            other => other,
        };
        let host = authority.as_str().to_owned();
        let bare = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        Ok(Self {
            url: format!("{scheme}://{host}{path}"),
            is_loopback: is_loopback_host(bare),
            host,
            path: path.to_owned(),
        })
    }
}

impl Endpoint {
    /// Whether this is one of Tencent Cloud's own KMS hosts over HTTPS.
    pub fn is_tencent_cloud(&self) -> bool {
        let Ok(uri) = self.url.parse::<Uri>() else {
            return false;
        };
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        uri.scheme_str() == Some("https")
            && TENCENT_CLOUD_DOMAINS
                .iter()
                .any(|domain| host.ends_with(domain))
    }
}

/// Whether `url` asks for the legacy API by its path.
pub fn names_legacy_path(url: &str) -> bool {
    url.parse::<Uri>()
        .is_ok_and(|uri| uri.path() == LEGACY_PATH)
}

/// The domains of Tencent Cloud's KMS hosts (API 3.0 and legacy).
const TENCENT_CLOUD_DOMAINS: [&str; 2] = [".tencentcloudapi.com", ".api.qcloud.com"];

fn default_path(api: ApiVersion) -> &'static str {
    match api {
        ApiVersion::V3 => API3_PATH,
        ApiVersion::Legacy => LEGACY_PATH,
    }
}

/// The short code of a region for the legacy host name, for the regions the legacy API listed.
fn legacy_code(region: &str) -> Option<&'static str> {
    LEGACY_REGION_CODES
        .iter()
        .find(|(long, short)| *long == region || *short == region)
        .map(|(_, short)| *short)
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions() {
        for good in [
            "ap-guangzhou",
            "na-siliconvalley",
            "ap-shanghai-fsi",
            "eu-frankfurt1",
        ] {
            assert_eq!(validate_region(good, ApiVersion::V3), Ok(()), "{good}");
            assert_eq!(validate_region(good, ApiVersion::Legacy), Ok(()), "{good}");
        }
        for short in ["gz", "sh", "bj"] {
            assert_eq!(validate_region(short, ApiVersion::Legacy), Ok(()));
            assert_eq!(
                validate_region(short, ApiVersion::V3),
                Err(TencentSetupError::ShortRegionNeedsLegacy(short.into()))
            );
        }
        let long = format!("ap-{}", "x".repeat(70));
        for bad in [
            "",
            "AP-guangzhou",
            "ap--gz",
            "ap-",
            "-ap",
            "ap_gz",
            "ap gz",
            "guangzhou",
            &long,
        ] {
            assert_eq!(
                validate_region(bad, ApiVersion::Legacy),
                Err(TencentSetupError::InvalidRegion(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn default_endpoints() {
        let mut options = TencentOptions::new("ap-guangzhou");
        let v3 = Endpoint::resolve(&options).unwrap();
        assert_eq!(v3.url, "https://kms.tencentcloudapi.com/");
        assert_eq!(v3.host, "kms.tencentcloudapi.com");

        options.api = ApiVersion::Legacy;
        let legacy = Endpoint::resolve(&options).unwrap();
        assert_eq!(legacy.url, "https://kms-gz.api.qcloud.com/v2/index.php");
        options.region = "sh".into();
        assert_eq!(
            Endpoint::resolve(&options).unwrap().host,
            "kms-sh.api.qcloud.com"
        );

        // The legacy API listed three regions; others need an explicit endpoint.
        for unknown in ["ap-singapore", "xx"] {
            options.region = unknown.into();
            assert_eq!(
                Endpoint::resolve(&options),
                Err(TencentSetupError::NoLegacyHost(unknown.into()))
            );
            options.endpoint = Some("http://127.0.0.1:9".into());
            assert!(Endpoint::resolve(&options).is_ok(), "{unknown}");
            options.endpoint = None;
        }
    }

    #[test]
    fn endpoint_overrides() {
        let e = Endpoint::parse("http://127.0.0.1:8080", ApiVersion::V3).unwrap();
        assert_eq!(e.url, "http://127.0.0.1:8080/");
        assert_eq!(e.host, "127.0.0.1:8080");
        assert!(e.is_loopback);

        let e = Endpoint::parse("http://localhost:9/", ApiVersion::Legacy).unwrap();
        assert_eq!(e.url, "http://localhost:9/v2/index.php");
        assert!(e.is_loopback);

        let e = Endpoint::parse(
            "https://kms.ap-guangzhou.tencentcloudapi.com",
            ApiVersion::V3,
        )
        .unwrap();
        assert_eq!(e.host, "kms.ap-guangzhou.tencentcloudapi.com");
        assert!(!e.is_loopback);

        let e = Endpoint::parse("http://[::1]:8080/custom", ApiVersion::V3).unwrap();
        assert_eq!(e.path, "/custom");
        assert!(e.is_loopback);

        for bad in [
            "127.0.0.1:8080",
            "ftp://h/",
            "http://u:p@h/",
            "http:///x",
            "http://h/?a=b",
            "",
        ] {
            assert!(Endpoint::parse(bad, ApiVersion::V3).is_err(), "{bad}");
        }
    }

    #[test]
    fn api_names() {
        assert_eq!(ApiVersion::parse("v3").unwrap(), ApiVersion::V3);
        assert_eq!(ApiVersion::parse("legacy").unwrap(), ApiVersion::Legacy);
        assert!(ApiVersion::parse("v4").is_err());
    }
}
