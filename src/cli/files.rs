//! `encrypt` and `decrypt`: choosing the KMS, the output, and reporting failures.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use datakey::context::EncryptionContext;
use datakey::envelope::{self, DecryptOptions, EXIT_KMS, EXIT_USAGE, EncryptOptions};
use datakey::format::{DEFAULT_CHUNK_SIZE, WrappedKey};
use datakey::io::{FileId, OutputTarget, STDIO};
use datakey::kms::cache::{CacheLimits, CachingKms};
use datakey::kms::tencent::TencentSetupError;
use datakey::kms::tencent::config::{self as kms_config, BackendChoice};
use datakey::kms::{KeyLocation, Kms, KmsError, KmsErrorKind};

use super::args::{DecryptArgs, EncryptArgs, OutputArgs};
use super::{Failure, keyring_path, open_backend, printable, setup_failure};

pub(crate) fn encrypt(keyring: Option<PathBuf>, args: EncryptArgs) -> Result<(), Failure> {
    let context = EncryptionContext::from_assignments(&args.context)
        .map_err(|e| Failure::new(EXIT_USAGE, e))?;
    let resolved =
        kms_config::resolve_with_default_file(&args.kms.flags(), None).map_err(setup_failure)?;
    let key_id = args.key_id.clone().or(resolved.key_id);
    let is_local = resolved.backend == BackendChoice::Local;
    if key_id.is_none() && !is_local {
        return Err(
            Failure::new(EXIT_USAGE, "the tencent back-end needs a master key")
                .with_hint("give --key-id ID, or key_id in the --profile"),
        );
    }
    let keyring_id = keyring_id(keyring.clone());
    let kms = open_backend(keyring, resolved.backend, key_id.is_none())?;
    let kms: Box<dyn Kms> = match args.reuse_data_key {
        0 => kms,
        uses => {
            let limits = CacheLimits {
                max_uses: uses,
                ..CacheLimits::default()
            };
            Box::new(CachingKms::new(kms, limits))
        }
    };
    if args.inputs.len() > 1 && args.output.output.is_some() {
        return Err(Failure::new(
            EXIT_USAGE,
            "-o names one output, but several inputs were given",
        )
        .with_hint("drop -o: each FILE is written to FILE.dk"));
    }

    let mut options = EncryptOptions::new(key_id.unwrap_or_else(|| "alias/default".into()));
    options.cipher = args.cipher;
    options.chunk_size = args.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE);
    options.context = context;
    options.threads = args.output.threads.map(usize::from);
    log::info!(
        "back-end {}, key {}, cipher {}",
        kms.location().backend,
        options.key_id,
        options.cipher
    );

    let outputs = Outputs {
        args: &args.output,
        keyring: keyring_id,
    };
    encrypt_batch(kms.as_ref(), &options, &outputs, &args.inputs)
}

/// Where outputs go, and the keyring they must never replace.
struct Outputs<'a> {
    args: &'a OutputArgs,
    keyring: Option<FileId>,
}

/// The identity of the local keyring file, if there is one.
fn keyring_id(flag: Option<PathBuf>) -> Option<FileId> {
    FileId::of_path(&keyring_path(flag).ok()?)
}

/// Refuses an output that is the local keyring, with or without `--force`: replacing it would
/// lose every master key, and with them every file they wrapped.
fn refuse_keyring(target: &OutputTarget, keyring: Option<FileId>) -> Result<(), Failure> {
    let (output, name) = match target {
        OutputTarget::Stdout => (FileId::of_stdout(), "standard output".to_owned()),
        OutputTarget::File { path, .. } => (FileId::of_path(path), path.display().to_string()),
    };
    if keyring.is_none() || output != keyring {
        return Ok(());
    }
    Err(Failure::new(
        EXIT_USAGE,
        format!("output {name} is the keyring: replacing it would lose every master key"),
    ))
}

/// How many files of a batch are encrypted at once: enough that one file's sync does not wait
/// for the previous one's.
const BATCH_JOBS: usize = 8;

/// Encrypts each input to its own output, several at a time. After a failure no new file is
/// started; files already started finish (each output is complete or absent), and the first
/// failure in input order is reported, naming its file.
fn encrypt_batch(
    kms: &dyn Kms,
    options: &EncryptOptions,
    output: &Outputs<'_>,
    inputs: &[PathBuf],
) -> Result<(), Failure> {
    if let [input] = inputs {
        return encrypt_one(kms, options, output, input);
    }
    if inputs.iter().any(|input| input.as_os_str() == STDIO) {
        return Err(Failure::new(
            EXIT_USAGE,
            "stdin (-) cannot be one of several inputs",
        ));
    }

    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..BATCH_JOBS.min(inputs.len()) {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(input) = inputs.get(index) else {
                        break;
                    };
                    if let Err(failure) = encrypt_one(kms, options, output, input) {
                        stop.store(true, Ordering::Relaxed);
                        let message = format!("{}: {}", input.display(), failure.message);
                        let failure = Failure { message, ..failure };
                        failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((index, failure));
                    }
                }
            });
        }
    });

    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    match failures.into_iter().min_by_key(|(index, _)| *index) {
        Some((_, failure)) => Err(failure),
        None => Ok(()),
    }
}

fn encrypt_one(
    kms: &dyn Kms,
    options: &EncryptOptions,
    output: &Outputs<'_>,
    input: &Path,
) -> Result<(), Failure> {
    let args = output.args;
    let target = output_target(input, args.output.as_deref(), args.force, ".dk")?;
    refuse_keyring(&target, output.keyring)?;
    if writes_to_terminal(&target) {
        return Err(
            Failure::new(EXIT_USAGE, "refusing to write encrypted data to a terminal")
                .with_hint("redirect stdout or give -o FILE"),
        );
    }
    let report = envelope::encrypt_file(kms, options, input, &target)
        .map_err(|e| Failure::new(e.exit_code(), e))?;
    log::info!(
        "encrypted {} bytes in {} chunks under key {}",
        report.body.plaintext_len,
        report.body.chunks,
        report.key_id
    );
    Ok(())
}

pub(crate) fn decrypt(keyring: Option<PathBuf>, args: DecryptArgs) -> Result<(), Failure> {
    let required = EncryptionContext::from_assignments(&args.context)
        .map_err(|e| Failure::new(EXIT_USAGE, e))?;
    let target = output_target(
        &args.input,
        args.output.output.as_deref(),
        args.output.force,
        "",
    )?;
    refuse_keyring(&target, keyring_id(keyring.clone()))?;
    let options = DecryptOptions {
        required_context: required,
        threads: args.output.threads.map(usize::from),
    };

    // The header's entry picks the back-end unless flags say otherwise. A set-up failure (no
    // credentials, a bad config file) is kept aside so that it exits as a usage error.
    let flags = args.kms.flags();
    let setup_error = RefCell::new(None);
    let resolve = |entry: &WrappedKey| -> Result<Box<dyn Kms>, KmsError> {
        log::info!(
            "wrapped key: back-end {}, key {}",
            printable(&entry.backend),
            printable(&entry.key_id)
        );
        let location = KeyLocation {
            backend: entry.backend.clone(),
            region: entry.region.clone(),
            endpoint: entry.endpoint.clone(),
        };
        let stash = |failure: Failure| {
            let err = KmsError::internal(failure.message.clone());
            setup_error.replace(Some(failure));
            err
        };
        let resolved = match kms_config::resolve_with_default_file(&flags, Some(&location)) {
            Ok(resolved) => resolved,
            Err(err @ (TencentSetupError::Config(_) | TencentSetupError::NoSuchProfile(_))) => {
                return Err(stash(setup_failure(err)));
            }
            Err(err @ TencentSetupError::UntrustedEndpoint(_)) => {
                return Err(stash(Failure::new(EXIT_KMS, err)));
            }
            // What the header names (back-end, region, endpoint) cannot be used: the header may
            // be damaged, so this is a KMS failure, not a usage error.
            Err(err) => return Err(KmsError::new("UnsupportedOperation", err.to_string())),
        };
        open_backend(keyring.clone(), resolved.backend, false).map_err(stash)
    };
    let report = envelope::decrypt_file(&resolve, &options, &args.input, &target)
        .map_err(|e| setup_error.take().unwrap_or_else(|| decrypt_failure(&e)))?;
    log::info!(
        "decrypted {} bytes with key {}",
        report.body.plaintext_len,
        report.key_id
    );
    Ok(())
}

pub(crate) fn decrypt_failure(err: &envelope::DecryptError) -> Failure {
    let failure = Failure::new(err.exit_code(), err);
    match err {
        envelope::DecryptError::Kms(e) if e.kind == KmsErrorKind::KeyNotFound => {
            failure.with_hint("is this the keyring the file was encrypted with? see --keyring")
        }
        _ => failure,
    }
}

/// The output for `input`: `-o` if given, else stdout for stdin, else the input name with
/// `suffix` added (encrypt) or `.dk` removed (decrypt, `suffix` empty).
pub(crate) fn output_target(
    input: &Path,
    output: Option<&Path>,
    force: bool,
    suffix: &str,
) -> Result<OutputTarget, Failure> {
    if let Some(path) = output {
        return Ok(OutputTarget::from_arg(path, force));
    }
    if input.as_os_str() == STDIO {
        return Ok(OutputTarget::Stdout);
    }
    let name = input.as_os_str().as_bytes();
    let path = if suffix.is_empty() {
        match name.strip_suffix(b".dk") {
            Some(stem) if !stem.is_empty() && !stem.ends_with(b"/") => {
                PathBuf::from(OsStr::from_bytes(stem))
            }
            _ => {
                return Err(Failure::new(
                    EXIT_USAGE,
                    format!("{} does not end in .dk", input.display()),
                )
                .with_hint("name the output with -o OUT"));
            }
        }
    } else {
        let mut path = input.as_os_str().to_owned();
        path.push(suffix);
        PathBuf::from(path)
    };
    Ok(OutputTarget::derived(path, force))
}

/// Whether encrypted output would land on a terminal: stdout, or a path such as /dev/tty.
pub(crate) fn writes_to_terminal(target: &OutputTarget) -> bool {
    match target {
        OutputTarget::Stdout => std::io::stdout().is_terminal(),
        OutputTarget::File { path, .. } => {
            let is_device = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device());
            is_device
                && std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .is_ok_and(|f| f.is_terminal())
        }
    }
}
