//! KMS profiles in the config file, and how flags, a profile and a file header combine.
//!
//! The file is TOML at `$DATAKEY_CONFIG`, else `$XDG_CONFIG_HOME/datakey/config.toml`, else
//! `~/.config/datakey/config.toml`, with one `[profile.NAME]` table per profile:
//!
//! ```toml
//! [profile.prod]
//! kms = "tencent"
//! region = "ap-guangzhou"
//! endpoint = "https://kms.ap-guangzhou.tencentcloudapi.com"
//! api = "v3"
//! key_id = "11111111-2222-3333-4444-555555555555"
//! connect_timeout = 5
//! timeout = 30
//! deadline = 60
//! retries = 3
//! credentials_profile = "default"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::options::{
    ApiVersion, Endpoint, TencentOptions, TencentSetupError, is_short_region, names_legacy_path,
    validate_region,
};
use crate::kms::KeyLocation;

/// The variable that names the config file.
pub const ENV_CONFIG: &str = "DATAKEY_CONFIG";

/// The profile used, below the file header, when none is named.
pub const DEFAULT_PROFILE: &str = "default";

/// The back-end names.
pub const BACKEND_LOCAL: &str = "local";

/// A number of seconds in the config file, whole or fractional.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
enum Seconds {
    Whole(u64),
    Fraction(f64),
}

impl Seconds {
    fn to_duration(self, field: &str) -> Result<Duration, TencentSetupError> {
        let duration = match self {
            Self::Whole(secs) => Some(Duration::from_secs(secs)),
            Self::Fraction(secs) => Duration::try_from_secs_f64(secs).ok(),
        };
        duration.filter(|d| !d.is_zero()).ok_or_else(|| {
            TencentSetupError::Config(format!("{field} must be a positive number of seconds"))
        })
    }
}

/// One `[profile.NAME]` table; every field is optional.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// `local` or `tencent`.
    pub kms: Option<String>,
    /// The region.
    pub region: Option<String>,
    /// An endpoint URL override.
    pub endpoint: Option<String>,
    /// `v3` or `legacy`.
    pub api: Option<String>,
    /// The master key used by `encrypt`.
    pub key_id: Option<String>,
    /// The connect timeout, seconds.
    connect_timeout: Option<Seconds>,
    /// The per-attempt timeout, seconds.
    timeout: Option<Seconds>,
    /// The overall deadline of one call, seconds.
    deadline: Option<Seconds>,
    /// The number of retries.
    pub retries: Option<u32>,
    /// The profile of the credentials file.
    pub credentials_profile: Option<String>,
}

/// The parsed config file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The profiles by name.
    #[serde(default)]
    pub profile: BTreeMap<String, Profile>,
}

impl ConfigFile {
    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, TencentSetupError> {
        toml::from_str(text).map_err(|err| {
            let why = err.message().to_owned();
            TencentSetupError::Config(format!("{origin}: {why}"))
        })
    }

    /// Reads the file at `path`.
    pub fn load(path: &Path) -> Result<Self, TencentSetupError> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| TencentSetupError::Config(format!("{}: {err}", path.display())))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Reads the default file; a missing file is an empty config, unless `DATAKEY_CONFIG`
    /// names it.
    pub fn load_default() -> Result<Self, TencentSetupError> {
        if let Some(path) = std::env::var_os(ENV_CONFIG) {
            return Self::load(Path::new(&path));
        }
        match default_path() {
            Some(path) if path.exists() => Self::load(&path),
            _ => Ok(Self::default()),
        }
    }
}

/// `$XDG_CONFIG_HOME/datakey/config.toml`, else `~/.config/datakey/config.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|home| home.join(".config")))?;
    Some(base.join("datakey").join("config.toml"))
}

/// What the command line says about the KMS; `None` leaves the choice to the lower layers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KmsFlags {
    /// `--kms local|tencent`.
    pub kms: Option<String>,
    /// `--profile NAME`.
    pub profile: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `--endpoint URL`.
    pub endpoint: Option<String>,
    /// `--api v3|legacy`.
    pub api: Option<String>,
    /// `--connect-timeout`.
    pub connect_timeout: Option<Duration>,
    /// `--timeout`.
    pub timeout: Option<Duration>,
}

/// The back-end chosen, with what it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// The local keyring.
    Local,
    /// Tencent Cloud KMS (or a server speaking its protocol).
    Tencent {
        /// The client options.
        options: TencentOptions,
        /// The profile of the credentials file to read if the environment has none.
        credentials_profile: Option<String>,
    },
}

/// The result of combining flags, profiles and a file header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The back-end.
    pub backend: BackendChoice,
    /// The master key from the profile, if any (for `encrypt`).
    pub key_id: Option<String>,
}

/// One source of settings, in the order they are consulted.
struct Layer {
    /// Whether this layer is a file header's, whose endpoint is only used if trusted.
    from_header: bool,
    kms: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    api: Option<String>,
    profile: Profile,
}

impl Layer {
    fn from_profile(profile: &Profile) -> Self {
        Self {
            from_header: false,
            kms: profile.kms.clone(),
            region: profile.region.clone(),
            endpoint: profile.endpoint.clone(),
            api: profile.api.clone(),
            profile: profile.clone(),
        }
    }

    fn from_location(location: &KeyLocation) -> Self {
        Self {
            from_header: true,
            kms: Some(location.backend.clone()).filter(|b| !b.is_empty()),
            region: location.region.clone(),
            endpoint: location.endpoint.clone(),
            api: None,
            profile: Profile::default(),
        }
    }
}

/// Picks the back-end and its options (region and endpoint checked): flags, then the profile
/// named by `--profile`, then the file header's `location` (on decrypt), then
/// `[profile.default]`, then built-in defaults.
///
/// Where the key lives (region, endpoint, API) is never pieced together from two sources that
/// name a back-end: the first profile or header naming the chosen back-end ends the search, and
/// sources naming another back-end are skipped. Flags always apply; timeouts and the key id fall
/// through layer by layer.
pub fn resolve(
    flags: &KmsFlags,
    file: &ConfigFile,
    location: Option<&KeyLocation>,
) -> Result<Resolved, TencentSetupError> {
    let mut layers = layers(flags, file, location)?;
    let kms = layers
        .iter()
        .find_map(|l| l.kms.clone())
        .unwrap_or_else(|| BACKEND_LOCAL.to_owned());
    let key_id = layers.iter().find_map(|l| l.profile.key_id.clone());
    match kms.as_str() {
        BACKEND_LOCAL => {
            return Ok(Resolved {
                backend: BackendChoice::Local,
                key_id,
            });
        }
        super::BACKEND_NAME => {}
        other => return Err(TencentSetupError::UnknownBackend(other.to_owned())),
    }

    keep_one_location(&mut layers, &kms);
    let first = |get: &dyn Fn(&Layer) -> Option<String>| layers.iter().find_map(get);
    let region_layer = layers.iter().find(|l| l.region.is_some());
    let region = region_layer
        .and_then(|l| l.region.clone())
        .ok_or(TencentSetupError::NoRegion)?;
    // Only the legacy API takes a short region, so one recorded in a file header says which
    // API wrote it; given by a flag or a profile, a short region needs the API named too.
    let region_from_header = region_layer.is_some_and(|l| l.from_header);
    let endpoint = first(&|l| l.endpoint.clone());
    let api = match first(&|l| l.api.clone()) {
        Some(name) => ApiVersion::parse(&name)?,
        None if region_from_header && is_short_region(&region) => ApiVersion::Legacy,
        None if endpoint.as_deref().is_some_and(names_legacy_path) => ApiVersion::Legacy,
        None => ApiVersion::V3,
    };
    let mut options = TencentOptions::new(region);
    options.api = api;
    options.endpoint = endpoint;
    validate_region(&options.region, options.api)?;
    let resolved = Endpoint::resolve(&options)?;
    if layers
        .iter()
        .find(|l| l.endpoint.is_some())
        .is_some_and(|l| l.from_header)
    {
        check_header_endpoint(&resolved, file, api)?;
    }
    apply_timeouts(&mut options, flags, &layers)?;
    let credentials_profile = first(&|l| l.profile.credentials_profile.clone());
    Ok(Resolved {
        backend: BackendChoice::Tencent {
            options,
            credentials_profile,
        },
        key_id,
    })
}

/// Refuses an endpoint that only a file header names, unless it is a Tencent Cloud host, on
/// loopback, or the endpoint of a profile: anyone who can edit a file could otherwise send the
/// signed Decrypt request (credentials id, a signature replayable for five minutes) anywhere.
fn check_header_endpoint(
    endpoint: &Endpoint,
    file: &ConfigFile,
    api: ApiVersion,
) -> Result<(), TencentSetupError> {
    let in_profile = file.profile.values().any(|profile| {
        profile
            .endpoint
            .as_deref()
            .and_then(|url| Endpoint::parse(url, api).ok())
            .is_some_and(|known| known.url == endpoint.url)
    });
    if endpoint.is_tencent_cloud() || endpoint.is_loopback || in_profile {
        Ok(())
    } else {
        Err(TencentSetupError::UntrustedEndpoint(endpoint.url.clone()))
    }
}

/// [`resolve`] with the default config file ([`ConfigFile::load_default`]).
pub fn resolve_with_default_file(
    flags: &KmsFlags,
    location: Option<&KeyLocation>,
) -> Result<Resolved, TencentSetupError> {
    resolve(flags, &ConfigFile::load_default()?, location)
}

/// Reads a positive number of seconds such as `5` or `0.5` (for `--timeout` and the like).
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?} is not a positive number of seconds"))
}

fn layers(
    flags: &KmsFlags,
    file: &ConfigFile,
    location: Option<&KeyLocation>,
) -> Result<Vec<Layer>, TencentSetupError> {
    let mut layers = vec![Layer {
        from_header: false,
        kms: flags.kms.clone(),
        region: flags.region.clone(),
        endpoint: flags.endpoint.clone(),
        api: flags.api.clone(),
        profile: Profile::default(),
    }];
    if let Some(name) = &flags.profile {
        let profile = file
            .profile
            .get(name)
            .ok_or_else(|| TencentSetupError::NoSuchProfile(name.clone()))?;
        layers.push(Layer::from_profile(profile));
    }
    if let Some(location) = location {
        layers.push(Layer::from_location(location));
    }
    if let (None, Some(profile)) = (&flags.profile, file.profile.get(DEFAULT_PROFILE)) {
        layers.push(Layer::from_profile(profile));
    }
    Ok(layers)
}

/// Clears region, endpoint and API in the layers below the first one (flags aside) that names
/// `kms`, and in every layer naming another back-end.
fn keep_one_location(layers: &mut [Layer], kms: &str) {
    let mut found = false;
    for layer in layers.iter_mut().skip(1) {
        let names_other = layer.kms.as_deref().is_some_and(|name| name != kms);
        if found || names_other {
            layer.region = None;
            layer.endpoint = None;
            layer.api = None;
        }
        found |= layer.kms.as_deref() == Some(kms);
    }
}

fn apply_timeouts(
    options: &mut TencentOptions,
    flags: &KmsFlags,
    layers: &[Layer],
) -> Result<(), TencentSetupError> {
    let profiles = || layers.iter().map(|l| &l.profile);
    let transport = &mut options.transport;
    if let Some(secs) = profiles().find_map(|p| p.connect_timeout) {
        transport.connect_timeout = secs.to_duration("connect_timeout")?;
    }
    if let Some(secs) = profiles().find_map(|p| p.timeout) {
        transport.timeout = secs.to_duration("timeout")?;
    }
    if let Some(secs) = profiles().find_map(|p| p.deadline) {
        transport.deadline = secs.to_duration("deadline")?;
    }
    if let Some(retries) = profiles().find_map(|p| p.retries) {
        transport.max_retries = retries;
    }
    transport.connect_timeout = flags.connect_timeout.unwrap_or(transport.connect_timeout);
    transport.timeout = flags.timeout.unwrap_or(transport.timeout);
    // The deadline is kept even when it is shorter than one attempt's timeout: the transport
    // cuts the attempt short instead, as the user asked for a bound on the whole call.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[profile.default]
kms = "tencent"
region = "ap-shanghai"
endpoint = "http://127.0.0.1:5"
timeout = 12

[profile.lab]
kms = "tencent"
region = "gz"
api = "legacy"
endpoint = "http://127.0.0.1:9000"
key_id = "lab-key"
connect_timeout = 0.5
retries = 1

[profile.offline]
kms = "local"
"#;

    fn config() -> ConfigFile {
        ConfigFile::parse(FILE, "test").unwrap()
    }

    fn tencent(resolved: &Resolved) -> &TencentOptions {
        match &resolved.backend {
            BackendChoice::Tencent { options, .. } => options,
            BackendChoice::Local => panic!("expected tencent"),
        }
    }

    #[test]
    fn a_named_profile_fills_what_flags_leave_open() {
        let flags = KmsFlags {
            profile: Some("lab".into()),
            timeout: Some(Duration::from_secs(3)),
            ..KmsFlags::default()
        };
        let resolved = resolve(&flags, &config(), None).unwrap();
        let options = tencent(&resolved);
        assert_eq!(options.region, "gz");
        assert_eq!(
            options.api,
            ApiVersion::Legacy,
            "the profile names the legacy API"
        );
        assert_eq!(options.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            options.transport.connect_timeout,
            Duration::from_millis(500)
        );
        assert_eq!(options.transport.timeout, Duration::from_secs(3));
        assert_eq!(options.transport.max_retries, 1);
        assert_eq!(resolved.key_id.as_deref(), Some("lab-key"));
    }

    #[test]
    fn flags_override_the_profile() {
        let flags = KmsFlags {
            profile: Some("lab".into()),
            region: Some("ap-guangzhou".into()),
            api: Some("v3".into()),
            endpoint: Some("http://127.0.0.1:1".into()),
            ..KmsFlags::default()
        };
        let resolved = resolve(&flags, &config(), None).unwrap();
        let options = tencent(&resolved);
        assert_eq!(options.region, "ap-guangzhou");
        assert_eq!(options.api, ApiVersion::V3);
        assert_eq!(options.endpoint.as_deref(), Some("http://127.0.0.1:1"));
    }

    #[test]
    fn the_header_wins_over_the_default_profile() {
        let location = KeyLocation {
            backend: "tencent".into(),
            region: Some("ap-beijing".into()),
            endpoint: Some("http://127.0.0.1:7".into()),
        };
        let resolved = resolve(&KmsFlags::default(), &config(), Some(&location)).unwrap();
        let options = tencent(&resolved);
        assert_eq!(options.region, "ap-beijing");
        assert_eq!(options.endpoint.as_deref(), Some("http://127.0.0.1:7"));
        assert_eq!(options.transport.timeout, Duration::from_secs(12));

        let local = KeyLocation {
            backend: "local".into(),
            ..KeyLocation::default()
        };
        let resolved = resolve(&KmsFlags::default(), &config(), Some(&local)).unwrap();
        assert_eq!(resolved.backend, BackendChoice::Local);
    }

    #[test]
    fn a_header_endpoint_is_used_only_when_trusted() {
        let header = |endpoint: &str| KeyLocation {
            backend: "tencent".into(),
            region: Some("ap-beijing".into()),
            endpoint: Some(endpoint.into()),
        };
        let lab = ConfigFile::parse(
            "[profile.team]\nkms = \"tencent\"\nregion = \"ap-beijing\"\n\
             endpoint = \"http://kms.team.example:8300\"\n",
            "test",
        )
        .unwrap();
        for trusted in [
            "https://kms.ap-beijing.tencentcloudapi.com/",
            "https://kms-bj.api.qcloud.com/v2/index.php",
            "http://[::1]:8300/",
            "http://localhost:8300/",
            "http://kms.team.example:8300/",
        ] {
            let resolved = resolve(&KmsFlags::default(), &lab, Some(&header(trusted)));
            assert!(resolved.is_ok(), "{trusted}: {resolved:?}");
        }
        for untrusted in [
            "http://kms.ap-beijing.tencentcloudapi.com/",
            "https://tencentcloudapi.com.evil.example/",
            "http://192.0.2.2:8300/",
            "http://kms.team.example:8301/",
        ] {
            assert_eq!(
                resolve(&KmsFlags::default(), &lab, Some(&header(untrusted))).unwrap_err(),
                TencentSetupError::UntrustedEndpoint(untrusted.into()),
            );
        }

        // The same endpoint given as a flag is the user's word for it.
        let flags = KmsFlags {
            endpoint: Some("http://192.0.2.2:8300".into()),
            ..KmsFlags::default()
        };
        let location = header("http://192.0.2.2:8300/");
        assert!(resolve(&flags, &lab, Some(&location)).is_ok());
    }

    #[test]
    fn a_short_deadline_is_kept_below_a_longer_timeout() {
        let flags = KmsFlags {
            kms: Some("tencent".into()),
            region: Some("ap-guangzhou".into()),
            timeout: Some(Duration::from_secs(120)),
            ..KmsFlags::default()
        };
        let file = ConfigFile::parse("[profile.default]\ndeadline = 5\n", "test").unwrap();
        let resolved = resolve(&flags, &file, None).unwrap();
        let transport = &tencent(&resolved).transport;
        assert_eq!(transport.timeout, Duration::from_secs(120));
        assert_eq!(transport.deadline, Duration::from_secs(5));
    }

    #[test]
    fn a_legacy_path_in_the_header_selects_the_legacy_api() {
        let location = KeyLocation {
            backend: "tencent".into(),
            region: Some("ap-guangzhou".into()),
            endpoint: Some("http://127.0.0.1:7/v2/index.php".into()),
        };
        let resolved = resolve(&KmsFlags::default(), &config(), Some(&location)).unwrap();
        assert_eq!(tencent(&resolved).api, ApiVersion::Legacy);

        let flags = KmsFlags {
            api: Some("v3".into()),
            ..KmsFlags::default()
        };
        let resolved = resolve(&flags, &config(), Some(&location)).unwrap();
        assert_eq!(tencent(&resolved).api, ApiVersion::V3, "a flag still wins");
    }

    #[test]
    fn a_kms_flag_keeps_the_header_region() {
        let flags = KmsFlags {
            kms: Some("tencent".into()),
            ..KmsFlags::default()
        };
        let location = KeyLocation {
            backend: "tencent".into(),
            region: Some("ap-beijing".into()),
            endpoint: None,
        };
        let resolved = resolve(&flags, &config(), Some(&location)).unwrap();
        let options = tencent(&resolved);
        assert_eq!(options.region, "ap-beijing");
        assert_eq!(
            options.endpoint, None,
            "no endpoint from the default profile"
        );
    }

    #[test]
    fn a_short_region_needs_the_legacy_api_named_unless_a_header_recorded_it() {
        let mut flags = KmsFlags {
            kms: Some("tencent".into()),
            region: Some("gz".into()),
            ..KmsFlags::default()
        };
        assert_eq!(
            resolve(&flags, &ConfigFile::default(), None).unwrap_err(),
            TencentSetupError::ShortRegionNeedsLegacy("gz".into())
        );
        flags.api = Some("legacy".into());
        let resolved = resolve(&flags, &ConfigFile::default(), None).unwrap();
        assert_eq!(tencent(&resolved).api, ApiVersion::Legacy);

        // Only the legacy API writes a short region into a header.
        let location = KeyLocation {
            backend: "tencent".into(),
            region: Some("gz".into()),
            endpoint: None,
        };
        let resolved = resolve(
            &KmsFlags::default(),
            &ConfigFile::default(),
            Some(&location),
        );
        assert_eq!(tencent(&resolved.unwrap()).api, ApiVersion::Legacy);
    }

    #[test]
    fn the_header_does_not_mix_with_a_named_profile() {
        let flags = KmsFlags {
            profile: Some("offline".into()),
            ..KmsFlags::default()
        };
        let location = KeyLocation {
            backend: "tencent".into(),
            region: Some("ap-beijing".into()),
            endpoint: None,
        };
        let resolved = resolve(&flags, &config(), Some(&location)).unwrap();
        assert_eq!(resolved.backend, BackendChoice::Local);
    }

    #[test]
    fn defaults_and_errors() {
        let empty = ConfigFile::default();
        let resolved = resolve(&KmsFlags::default(), &empty, None).unwrap();
        assert_eq!(resolved.backend, BackendChoice::Local);

        let flags = KmsFlags {
            kms: Some("tencent".into()),
            ..KmsFlags::default()
        };
        assert_eq!(
            resolve(&flags, &empty, None).unwrap_err(),
            TencentSetupError::NoRegion
        );
        let flags = KmsFlags {
            kms: Some("aws".into()),
            ..KmsFlags::default()
        };
        assert!(matches!(
            resolve(&flags, &empty, None).unwrap_err(),
            TencentSetupError::UnknownBackend(_)
        ));
        let damaged = KeyLocation {
            backend: "tencent".into(),
            region: Some("ap-guang zhou".into()),
            endpoint: None,
        };
        assert!(matches!(
            resolve(&KmsFlags::default(), &empty, Some(&damaged)).unwrap_err(),
            TencentSetupError::InvalidRegion(_)
        ));
        let flags = KmsFlags {
            profile: Some("nope".into()),
            ..KmsFlags::default()
        };
        assert!(matches!(
            resolve(&flags, &empty, None).unwrap_err(),
            TencentSetupError::NoSuchProfile(_)
        ));
    }

    #[test]
    fn seconds_parse() {
        assert_eq!(parse_seconds("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["0", "-1", "x", "", "inf", "NaN"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_files_are_refused() {
        for bad in [
            "[profile.x]\nregion = 1\n",
            "[profile.x]\nunknown = \"y\"\n",
            "[other]\n",
            "not toml",
        ] {
            assert!(ConfigFile::parse(bad, "t").is_err(), "{bad}");
        }
        let file = ConfigFile::parse(
            "[profile.x]\nkms = \"tencent\"\nregion = \"ap-a\"\ntimeout = 0\n",
            "t",
        )
        .unwrap();
        let flags = KmsFlags {
            profile: Some("x".into()),
            ..KmsFlags::default()
        };
        assert!(matches!(
            resolve(&flags, &file, None).unwrap_err(),
            TencentSetupError::Config(_)
        ));
    }
}
