//! The commands of the `datakey` binary, and the failure type they share.

pub(crate) mod args;
pub(crate) mod files;
pub(crate) mod generate;
pub(crate) mod show;

use std::io::Write;
use std::path::PathBuf;

use datakey::envelope::{EXIT_KMS, EXIT_USAGE};
use datakey::kms::keyring::default_keyring_path;
use datakey::kms::local::{LocalKms, keyring_to_kms};
use datakey::kms::tencent::config::BackendChoice;
use datakey::kms::tencent::{TencentKms, TencentSetupError};
use datakey::kms::{Kms, KmsError};
use datakey::server::{Credentials, KmsServer, ServeConfig};

/// A failure with the exit status it maps to; the message is printed once, by `main`.
pub(crate) struct Failure {
    pub(crate) code: i32,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl Failure {
    pub(crate) fn new(code: i32, message: impl ToString) -> Self {
        Self {
            code,
            message: message.to_string(),
            hint: None,
        }
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// `text` as it is, or quoted with escapes when it holds control characters: header fields are
/// not authenticated, and printed raw they could move the cursor or fake a line of output.
pub(crate) fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        format!("{text:?}").into()
    } else {
        text.into()
    }
}

/// Prints `text` and a newline on stdout, reporting a failed write instead of panicking.
pub(crate) fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| Failure::new(EXIT_USAGE, format!("writing standard output: {e}")))
}

pub(crate) fn kms_serve(
    keyring: Option<PathBuf>,
    listen: String,
    credentials: Option<PathBuf>,
) -> Result<(), Failure> {
    let usage = |err: &dyn std::fmt::Display| Failure::new(EXIT_USAGE, err);
    let credentials = Credentials::load(credentials.as_deref()).map_err(|e| usage(&e))?;
    let mut config = ServeConfig::new(keyring_path(keyring)?, credentials);
    config.listen = listen;
    let server = KmsServer::bind(config).map_err(|e| usage(&e))?;

    // Scripts read this line to find the port when they asked for port 0.
    emit(&format!(
        "datakey kms serve: listening on http://{}",
        server.local_addr()
    ))?;
    server.run_until_signal().map_err(|e| usage(&e))
}

pub(crate) fn keyring_path(flag: Option<PathBuf>) -> Result<PathBuf, Failure> {
    flag.or_else(default_keyring_path).ok_or_else(|| {
        Failure::new(EXIT_USAGE, "cannot find a place for the keyring")
            .with_hint("set --keyring PATH, DATAKEY_KEYRING or HOME")
    })
}

pub(crate) fn open_local(keyring: Option<PathBuf>) -> Result<LocalKms, Failure> {
    let path = keyring_path(keyring)?;
    LocalKms::open(&path).map_err(|err| {
        let failure = kms_failure(keyring_to_kms_or_usage(err));
        // A keyring that is there but unusable needs mending, not a new key.
        if failure.code != EXIT_KMS {
            return failure;
        }
        failure.with_hint("create a key with `datakey keys create`, or point --keyring at yours")
    })
}

/// Keyring problems that are the user's file (permissions, syntax) are usage errors; a missing
/// keyring or key is a KMS error.
pub(crate) fn keyring_to_kms_or_usage(
    err: datakey::kms::keyring::KeyringError,
) -> Result<KmsError, Failure> {
    use datakey::kms::keyring::KeyringError as E;
    match err {
        E::Missing(_) | E::NotFound(_) => Ok(keyring_to_kms(err)),
        other => Err(Failure::new(EXIT_USAGE, other)),
    }
}

pub(crate) fn kms_failure(err: Result<KmsError, Failure>) -> Failure {
    match err {
        Ok(err) => Failure::new(EXIT_KMS, err),
        Err(failure) => failure,
    }
}

/// Opens the chosen back-end; the local one with its default key created if `create_default`.
pub(crate) fn open_backend(
    keyring: Option<PathBuf>,
    backend: BackendChoice,
    create_default: bool,
) -> Result<Box<dyn Kms>, Failure> {
    Ok(match backend {
        BackendChoice::Local if create_default => Box::new(open_or_create_default(keyring)?),
        BackendChoice::Local => Box::new(open_local(keyring)?),
        BackendChoice::Tencent {
            options,
            credentials_profile,
        } => Box::new(
            TencentKms::from_env(options, credentials_profile.as_deref()).map_err(setup_failure)?,
        ),
    })
}

pub(crate) fn setup_failure(err: TencentSetupError) -> Failure {
    Failure::new(EXIT_USAGE, err)
}

pub(crate) fn open_or_create_default(keyring: Option<PathBuf>) -> Result<LocalKms, Failure> {
    let path = keyring_path(keyring)?;
    let (kms, created) = LocalKms::open_or_create_default(&path)
        .map_err(|e| kms_failure(keyring_to_kms_or_usage(e)))?;
    if created {
        eprintln!(
            "datakey: created keyring {} with a new master key, alias/default.\n\
             datakey: keep it safe and back it up: losing it loses every file encrypted with it.",
            path.display()
        );
    }
    Ok(kms)
}
