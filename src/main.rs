//! The `datakey` command: parses arguments, calls the library, prints.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use zeroize::Zeroizing;

use datakey::cipher::Cipher;
use datakey::context::EncryptionContext;
use datakey::envelope::{self, DecryptOptions, EXIT_KMS, EXIT_USAGE, EncryptOptions, Inspection};
use datakey::format::{DEFAULT_CHUNK_SIZE, WrappedKey};
use datakey::io::{OutputTarget, STDIO};
use datakey::kms::keyring::{KeyState, default_keyring_path};
use datakey::kms::local::{KeyInfo, LocalKms, keyring_to_kms};
use datakey::kms::tencent::config::{self as kms_config, BackendChoice, KmsFlags};
use datakey::kms::tencent::{TencentKms, TencentSetupError};
use datakey::kms::{GenerateDataKeyRequest, KeyLocation, KeySpec, Kms, KmsError, KmsErrorKind};
use datakey::server::{Credentials, KmsServer, ServeConfig};

/// Envelope encryption of files with data keys from a KMS.
#[derive(Parser)]
#[command(name = "datakey", version, about, max_term_width = 100)]
struct Cli {
    /// The local keyring file [default: $DATAKEY_KEYRING, else
    /// $XDG_DATA_HOME/datakey/keyring.json].
    #[arg(long, global = true, value_name = "PATH")]
    keyring: Option<PathBuf>,

    /// Log decisions (back-end, key id, chunks) on stderr; twice for more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encrypt a file under a fresh data key (writes INPUT.dk).
    Encrypt(EncryptArgs),
    /// Decrypt a .dk file (writes the name without .dk).
    Decrypt(DecryptArgs),
    /// Show a .dk file's header without calling any KMS.
    Inspect(InspectArgs),
    /// Call GenerateDataKey and print the response as JSON.
    GenerateDataKey(GenerateArgs),
    /// Manage master keys in the local keyring.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// KMS tools: serve the local keyring with the Tencent Cloud KMS protocol.
    #[command(subcommand)]
    Kms(KmsCommand),
}

#[derive(Args)]
struct OutputArgs {
    /// Output path, or - for stdout.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,

    /// Replace an existing output file.
    #[arg(long)]
    force: bool,

    /// Worker threads [default: one per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
}

/// Which KMS to use; unset flags fall back to the profile, the file header, then defaults.
#[derive(Args)]
struct KmsArgs {
    /// The KMS back-end: local or tencent [default: local].
    #[arg(long, value_name = "NAME", value_parser = ["local", "tencent"])]
    kms: Option<String>,

    /// A profile of the config file ($XDG_CONFIG_HOME/datakey/config.toml, or DATAKEY_CONFIG).
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,

    /// The Tencent Cloud region, such as ap-guangzhou (a short code like gz with --api legacy).
    #[arg(long, value_name = "REGION")]
    region: Option<String>,

    /// A URL replacing the KMS endpoint, such as http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,

    /// The Tencent Cloud API: v3 or legacy (2.0).
    #[arg(long, value_name = "API", value_parser = ["v3", "legacy"])]
    api: Option<String>,

    /// Seconds to wait for a connection to the KMS [default: 5].
    #[arg(long, value_name = "SECS", value_parser = kms_config::parse_seconds)]
    connect_timeout: Option<Duration>,

    /// Seconds one KMS request may take [default: 30].
    #[arg(long, value_name = "SECS", value_parser = kms_config::parse_seconds)]
    timeout: Option<Duration>,
}

impl KmsArgs {
    fn flags(&self) -> KmsFlags {
        KmsFlags {
            kms: self.kms.clone(),
            profile: self.profile.clone(),
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            api: self.api.clone(),
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
        }
    }
}

#[derive(Args)]
struct EncryptArgs {
    /// The master key: an id or alias/NAME [default: alias/default].
    #[arg(long, value_name = "ID")]
    key_id: Option<String>,

    /// Encryption context pair, repeatable.
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE")]
    context: Vec<String>,

    /// The chunk cipher.
    #[arg(long, default_value = "aes-256-gcm", value_name = "CIPHER")]
    cipher: Cipher,

    /// Plaintext bytes per chunk: 4K to 16M (suffixes K, M).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    chunk_size: Option<u32>,

    #[command(flatten)]
    output: OutputArgs,

    #[command(flatten)]
    kms: KmsArgs,

    /// The file to encrypt, or - for stdin.
    input: PathBuf,
}

#[derive(Args)]
struct DecryptArgs {
    /// A context pair the file must carry, repeatable.
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE")]
    context: Vec<String>,

    #[command(flatten)]
    output: OutputArgs,

    #[command(flatten)]
    kms: KmsArgs,

    /// The file to decrypt, or - for stdin.
    input: PathBuf,
}

#[derive(Args)]
struct InspectArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,

    /// The .dk file, or - for stdin.
    input: PathBuf,
}

#[derive(Args)]
struct GenerateArgs {
    /// The master key: an id or alias/NAME.
    #[arg(long, value_name = "ID")]
    key_id: String,

    /// AES_128 or AES_256.
    #[arg(long, value_name = "SPEC")]
    key_spec: Option<String>,

    /// Data-key length, 1 to 1024; wins over --key-spec.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    number_of_bytes: Option<i64>,

    /// A JSON object of string keys to string values.
    #[arg(long, value_name = "JSON")]
    encryption_context: Option<String>,

    #[command(flatten)]
    kms: KmsArgs,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a master key (and the keyring, if needed).
    Create {
        /// A name to use as alias/NAME.
        #[arg(long)]
        alias: Option<String>,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the master keys.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Enable a master key.
    Enable {
        /// An id or alias/NAME.
        id: String,
    },
    /// Disable a master key: files under it cannot be decrypted until it is enabled.
    Disable {
        /// An id or alias/NAME.
        id: String,
    },
}

#[derive(Subcommand)]
enum KmsCommand {
    /// Answer Tencent Cloud KMS API 3.0 and 2.0 calls over HTTP from the local keyring (for
    /// development, tests and air-gapped sites; not an HSM). Stops on SIGINT or SIGTERM.
    Serve {
        /// The address to listen on; port 0 picks a free port (printed on stdout).
        #[arg(long, value_name = "ADDR", default_value = datakey::server::DEFAULT_LISTEN)]
        listen: String,
        /// A file of `SECRET_ID SECRET_KEY` lines whose signatures are accepted
        /// [default: TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY].
        #[arg(long, value_name = "FILE")]
        credentials: Option<PathBuf>,
    },
}

/// A failure with the exit status it maps to; the message is printed once, by `main`.
struct Failure {
    code: i32,
    message: String,
    hint: Option<String>,
}

impl Failure {
    fn new(code: i32, message: impl ToString) -> Self {
        Self {
            code,
            message: message.to_string(),
            hint: None,
        }
    }

    fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("datakey: {}", failure.message);
            if let Some(hint) = failure.hint {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(failure.code as u8)
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    // The HTTP client's trace level dumps raw requests and answers (signatures, tokens, data
    // keys), so it is capped at debug whatever DATAKEY_LOG asks.
    env_logger::Builder::new()
        .filter_level(level)
        .parse_env("DATAKEY_LOG")
        .filter_module("ureq", level.min(log::LevelFilter::Debug))
        .filter_module("ureq_proto", level.min(log::LevelFilter::Debug))
        .format_timestamp(None)
        .init();
}

/// On SIGINT, SIGTERM or SIGHUP, removes the temporary output being written and exits with
/// 128 + the signal number, so an interrupted run leaves nothing beside its destination.
fn remove_outputs_on_signal() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        log::warn!("cannot watch for signals: an interrupted run may leave a temporary file");
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            datakey::io::remove_pending_outputs();
            std::process::exit(128 + signal);
        }
    });
}

fn run(cli: Cli) -> Result<(), Failure> {
    let keyring = cli.keyring;
    match cli.command {
        Command::Encrypt(args) => {
            remove_outputs_on_signal();
            encrypt(keyring, args)
        }
        Command::Decrypt(args) => {
            remove_outputs_on_signal();
            decrypt(keyring, args)
        }
        Command::Inspect(args) => inspect(args),
        Command::GenerateDataKey(args) => generate_data_key(keyring, args),
        Command::Keys(command) => keys(keyring, command),
        Command::Kms(KmsCommand::Serve {
            listen,
            credentials,
        }) => kms_serve(keyring, listen, credentials),
    }
}

fn kms_serve(
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
    println!(
        "datakey kms serve: listening on http://{}",
        server.local_addr()
    );
    server.run_until_signal().map_err(|e| usage(&e))
}

fn keyring_path(flag: Option<PathBuf>) -> Result<PathBuf, Failure> {
    flag.or_else(default_keyring_path).ok_or_else(|| {
        Failure::new(EXIT_USAGE, "cannot find a place for the keyring")
            .with_hint("set --keyring PATH, DATAKEY_KEYRING or HOME")
    })
}

fn open_local(keyring: Option<PathBuf>) -> Result<LocalKms, Failure> {
    let path = keyring_path(keyring)?;
    LocalKms::open(&path).map_err(|err| {
        let failure = kms_failure(keyring_to_kms_or_usage(err));
        failure.with_hint("create a key with `datakey keys create`, or point --keyring at yours")
    })
}

/// Keyring problems that are the user's file (permissions, syntax) are usage errors; a missing
/// keyring or key is a KMS error.
fn keyring_to_kms_or_usage(err: datakey::kms::keyring::KeyringError) -> Result<KmsError, Failure> {
    use datakey::kms::keyring::KeyringError as E;
    match err {
        E::Missing(_) | E::NotFound(_) => Ok(keyring_to_kms(err)),
        other => Err(Failure::new(EXIT_USAGE, other)),
    }
}

fn kms_failure(err: Result<KmsError, Failure>) -> Failure {
    match err {
        Ok(err) => Failure::new(EXIT_KMS, err),
        Err(failure) => failure,
    }
}

/// Opens the chosen back-end; the local one with its default key created if `create_default`.
fn open_backend(
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

fn setup_failure(err: TencentSetupError) -> Failure {
    Failure::new(EXIT_USAGE, err)
}

fn encrypt(keyring: Option<PathBuf>, args: EncryptArgs) -> Result<(), Failure> {
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
    let kms = open_backend(keyring, resolved.backend, key_id.is_none())?;
    let target = output_target(
        &args.input,
        args.output.output.as_deref(),
        args.output.force,
        ".dk",
    )?;
    if writes_to_terminal(&target) {
        return Err(
            Failure::new(EXIT_USAGE, "refusing to write encrypted data to a terminal")
                .with_hint("redirect stdout or give -o FILE"),
        );
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
    let report = envelope::encrypt_file(kms.as_ref(), &options, &args.input, &target)
        .map_err(|e| Failure::new(e.exit_code(), e))?;
    log::info!(
        "encrypted {} bytes in {} chunks under key {}",
        report.body.plaintext_len,
        report.body.chunks,
        report.key_id
    );
    Ok(())
}

fn open_or_create_default(keyring: Option<PathBuf>) -> Result<LocalKms, Failure> {
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

fn decrypt(keyring: Option<PathBuf>, args: DecryptArgs) -> Result<(), Failure> {
    let required = EncryptionContext::from_assignments(&args.context)
        .map_err(|e| Failure::new(EXIT_USAGE, e))?;
    let target = output_target(
        &args.input,
        args.output.output.as_deref(),
        args.output.force,
        "",
    )?;
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
            entry.backend,
            entry.key_id
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

fn decrypt_failure(err: &envelope::DecryptError) -> Failure {
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
fn output_target(
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
    Ok(OutputTarget::File { path, force })
}

/// Whether encrypted output would land on a terminal: stdout, or a path such as /dev/tty.
fn writes_to_terminal(target: &OutputTarget) -> bool {
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

/// Prints `text` and a newline on stdout, reporting a failed write instead of panicking.
fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| Failure::new(EXIT_USAGE, format!("writing standard output: {e}")))
}

fn inspect(args: InspectArgs) -> Result<(), Failure> {
    let found = envelope::inspect(&args.input).map_err(|e| Failure::new(e.exit_code(), e))?;
    let text = if args.json {
        inspection_json(&found)
    } else {
        inspection_text(&found)
    };
    emit(&text)
}

fn inspection_json(found: &Inspection) -> String {
    let core = &found.header.core;
    let keys: Vec<_> = found
        .header
        .wrapped_keys
        .iter()
        .map(|k| {
            json!({"backend": k.backend, "key_id": k.key_id, "region": k.region,
                   "endpoint": k.endpoint, "ciphertext_blob_len": k.blob.len()})
        })
        .collect();
    let context: serde_json::Map<_, _> = core
        .context
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let value = json!({
        "version": datakey::format::VERSION,
        "cipher": core.cipher.name(),
        "chunk_size": core.chunk_size,
        "wrapped_keys": keys,
        "encryption_context": context,
        "chunks": found.chunks,
        "header_len": found.header_len,
        "file_len": found.file_len,
        "plaintext_len": found.plaintext_len,
    });
    serde_json::to_string_pretty(&value).expect("json values serialize")
}

fn inspection_text(found: &Inspection) -> String {
    let core = &found.header.core;
    let mut out = format!(
        "format:        datakey v{}\ncipher:        {}\nchunk size:    {}\n",
        datakey::format::VERSION,
        core.cipher,
        core.chunk_size
    );
    for key in &found.header.wrapped_keys {
        out += &format!("wrapped key:   {} {}", key.backend, key.key_id);
        if let Some(region) = &key.region {
            out += &format!(" region {region}");
        }
        if let Some(endpoint) = &key.endpoint {
            out += &format!(" endpoint {endpoint}");
        }
        out.push('\n');
    }
    let context = EncryptionContext::from_pairs(core.context.iter().cloned())
        .map(|c| c.to_canonical_json())
        .unwrap_or_default();
    let context = if context.is_empty() {
        "(none)".to_owned()
    } else {
        context
    };
    out += &format!(
        "context:       {context}\nchunks:        {}\nheader size:   {}\nfile size:     {}\n\
         plaintext:     {}",
        found.chunks, found.header_len, found.file_len, found.plaintext_len
    );
    out
}

fn generate_data_key(keyring: Option<PathBuf>, args: GenerateArgs) -> Result<(), Failure> {
    let resolved =
        kms_config::resolve_with_default_file(&args.kms.flags(), None).map_err(setup_failure)?;
    let result = build_generate_request(&args).and_then(|request| {
        let kms: Box<dyn Kms> = match resolved.backend {
            BackendChoice::Local => Box::new(
                LocalKms::open(keyring_path(keyring).map_err(|f| KmsError::internal(f.message))?)
                    .map_err(keyring_to_kms)?,
            ),
            tencent => open_backend(keyring, tencent, false)
                .map_err(|f| KmsError::invalid_parameter(f.message))?,
        };
        kms.generate_data_key(&request)
    });
    match result {
        Ok(generated) => print_generated(&generated),
        Err(err) => {
            let request_id = if err.request_id.is_empty() {
                datakey::kms::new_request_id()
            } else {
                err.request_id.clone()
            };
            let body = json!({
                "code": err.kind.legacy_code(),
                "codeDesc": err.code,
                "message": err.message,
                "requestId": request_id,
            });
            // The failure below is what matters; a failed write of its JSON is reported by it.
            let _ = emit(&serde_json::to_string_pretty(&body).expect("json values serialize"));
            let code = if err.kind == KmsErrorKind::InvalidParameter {
                EXIT_USAGE
            } else {
                EXIT_KMS
            };
            Err(Failure::new(code, err))
        }
    }
}

/// The GenerateDataKey response, borrowed so that the key exists only in zeroizing buffers.
#[derive(serde::Serialize)]
struct GenerateResponse<'a> {
    code: i64,
    message: &'a str,
    #[serde(rename = "requestId")]
    request_id: &'a str,
    #[serde(rename = "KeyId")]
    key_id: &'a str,
    #[serde(rename = "Plaintext")]
    plaintext: &'a str,
    #[serde(rename = "CiphertextBlob")]
    ciphertext_blob: &'a str,
}

fn print_generated(generated: &datakey::kms::GeneratedDataKey) -> Result<(), Failure> {
    let plaintext = Zeroizing::new(BASE64.encode(generated.plaintext.as_bytes()));
    let response = GenerateResponse {
        code: 0,
        message: "",
        request_id: &generated.request_id,
        key_id: &generated.key_id,
        plaintext: &plaintext,
        ciphertext_blob: &generated.ciphertext_blob,
    };
    let mut body = Zeroizing::new(Vec::with_capacity(1024 + 2 * plaintext.len()));
    serde_json::to_writer_pretty(&mut *body, &response).expect("json values serialize");
    body.push(b'\n');
    std::io::stdout()
        .lock()
        .write_all(&body)
        .map_err(|e| Failure::new(EXIT_USAGE, format!("writing stdout: {e}")))
}

fn build_generate_request(args: &GenerateArgs) -> Result<GenerateDataKeyRequest, KmsError> {
    let key_spec = args.key_spec.as_deref().map(KeySpec::parse).transpose()?;
    let number_of_bytes = match args.number_of_bytes {
        Some(n) => Some(u32::try_from(n).map_err(|_| {
            KmsError::invalid_parameter_value(format!("NumberOfBytes {n} is outside 1..=1024"))
        })?),
        None => None,
    };
    let context = EncryptionContext::from_json(args.encryption_context.as_deref().unwrap_or(""))
        .map_err(|e| KmsError::invalid_parameter_value(e.to_string()))?;
    let request = GenerateDataKeyRequest {
        key_id: args.key_id.clone(),
        key_spec,
        number_of_bytes,
        context,
    };
    request.validate()?;
    Ok(request)
}

fn keys(keyring: Option<PathBuf>, command: KeysCommand) -> Result<(), Failure> {
    if let KeysCommand::Create { alias, description } = &command {
        let path = keyring_path(keyring)?;
        let (ring, id) = datakey::kms::keyring::Keyring::update(&path, |ring| {
            ring.create_key(alias.as_deref(), description)
                .map(|key| key.key_id.clone())
        })
        .map_err(|e| Failure::new(EXIT_USAGE, e))?;
        drop(ring);
        return emit(&id).map_err(|f| {
            let message = format!("created key {id}, but {}", f.message);
            Failure::new(f.code, message)
        });
    }

    let kms = open_local(keyring)?;
    let changed = match command {
        KeysCommand::List { json } => return list_keys(&kms, json),
        KeysCommand::Enable { id } => kms.set_state(&id, KeyState::Enabled),
        KeysCommand::Disable { id } => kms.set_state(&id, KeyState::Disabled),
        KeysCommand::Create { .. } => unreachable!("handled above"),
    };
    let key = changed.map_err(|e| Failure::new(EXIT_KMS, e))?;
    emit(&format!("{} {}", key.key_id, key.state.as_str()))
}

fn list_keys(kms: &LocalKms, json: bool) -> Result<(), Failure> {
    let keys = kms.list().map_err(|e| Failure::new(EXIT_KMS, e))?;
    if json {
        let rows: Vec<_> = keys.iter().map(key_json).collect();
        return emit(&serde_json::to_string_pretty(&rows).expect("json values serialize"));
    }
    let mut table = format!(
        "{:<36}  {:<20}  {:<8}  {:<20}  DESCRIPTION",
        "KEY ID", "ALIAS", "STATE", "CREATED"
    );
    for key in &keys {
        let alias = key
            .alias
            .as_deref()
            .map(|a| format!("alias/{a}"))
            .unwrap_or_default();
        table += &format!(
            "\n{:<36}  {:<20}  {:<8}  {:<20}  {}",
            key.key_id,
            alias,
            key.state.as_str(),
            format_time(key.create_time),
            key.description
        );
    }
    emit(&table)
}

fn key_json(key: &KeyInfo) -> serde_json::Value {
    json!({
        "KeyId": key.key_id,
        "Alias": key.alias,
        "Description": key.description,
        "CreateTime": key.create_time,
        "KeyState": key.state.as_str(),
    })
}

fn format_time(unix: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// Parses a size with an optional K or M suffix (powers of 1024).
fn parse_size(text: &str) -> Result<u32, String> {
    let upper = text.trim().to_ascii_uppercase();
    let upper = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (digits, scale) = match upper.strip_suffix('K') {
        Some(d) => (d, 1024u64),
        None => match upper.strip_suffix('M') {
            Some(d) => (d, 1024 * 1024),
            None => (upper, 1),
        },
    };
    let value = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("{text:?} is not a size such as 65536, 64K or 1M"))?;
    envelope::check_chunk_size(value)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert!(parse_size("1K").is_err());
        assert!(parse_size("17M").is_err());
        assert!(parse_size("x").is_err());
    }
}
