//! Command-line arguments, parsed with clap.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use datakey::cipher::Cipher;
use datakey::envelope;
use datakey::kms::tencent::config::{self as kms_config, KmsFlags};

/// Envelope encryption of files with data keys from a KMS.
#[derive(Parser)]
#[command(name = "datakey", version, about, max_term_width = 100)]
pub(crate) struct Cli {
    /// The local keyring file [default: $DATAKEY_KEYRING, else
    /// $XDG_DATA_HOME/datakey/keyring.json].
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) keyring: Option<PathBuf>,

    /// Log decisions (back-end, key id, chunks) on stderr; twice for more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
pub(crate) struct OutputArgs {
    /// Output path, or - for stdout.
    #[arg(short, long, value_name = "OUT")]
    pub(crate) output: Option<PathBuf>,

    /// Replace an existing output file.
    #[arg(long)]
    pub(crate) force: bool,

    /// Worker threads [default: one per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) threads: Option<u16>,
}

/// Which KMS to use; unset flags fall back to the profile, the file header, then defaults.
#[derive(Args)]
pub(crate) struct KmsArgs {
    /// The KMS back-end: local or tencent [default: local].
    #[arg(long, value_name = "NAME", value_parser = ["local", "tencent"])]
    pub(crate) kms: Option<String>,

    /// A profile of the config file ($XDG_CONFIG_HOME/datakey/config.toml, or DATAKEY_CONFIG).
    #[arg(long, value_name = "NAME")]
    pub(crate) profile: Option<String>,

    /// The Tencent Cloud region, such as ap-guangzhou (a short code like gz with --api legacy).
    #[arg(long, value_name = "REGION")]
    pub(crate) region: Option<String>,

    /// A URL replacing the KMS endpoint, such as http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub(crate) endpoint: Option<String>,

    /// The Tencent Cloud API: v3 or legacy (2.0).
    #[arg(long, value_name = "API", value_parser = ["v3", "legacy"])]
    pub(crate) api: Option<String>,

    /// Seconds to wait for a connection to the KMS [default: 5].
    #[arg(long, value_name = "SECS", value_parser = kms_config::parse_seconds)]
    pub(crate) connect_timeout: Option<Duration>,

    /// Seconds one KMS request may take [default: 30].
    #[arg(long, value_name = "SECS", value_parser = kms_config::parse_seconds)]
    pub(crate) timeout: Option<Duration>,
}

impl KmsArgs {
    pub(crate) fn flags(&self) -> KmsFlags {
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
pub(crate) struct EncryptArgs {
    /// The master key: an id or alias/NAME [default: alias/default].
    #[arg(long, value_name = "ID")]
    pub(crate) key_id: Option<String>,

    /// Encryption context pair, repeatable.
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE")]
    pub(crate) context: Vec<String>,

    /// The chunk cipher.
    #[arg(long, default_value = "aes-256-gcm", value_name = "CIPHER")]
    pub(crate) cipher: Cipher,

    /// Plaintext bytes per chunk: 4K to 16M (suffixes K, M).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) chunk_size: Option<u32>,

    #[command(flatten)]
    pub(crate) output: OutputArgs,

    #[command(flatten)]
    pub(crate) kms: KmsArgs,

    /// Reuse one data key for up to N files of this run (one GenerateDataKey for a batch); each
    /// file still gets its own derived keys. 0 asks the KMS for every file.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) reuse_data_key: u64,

    /// The files to encrypt (each to FILE.dk), or - for stdin.
    #[arg(required = true, num_args = 1..)]
    pub(crate) inputs: Vec<PathBuf>,
}

#[derive(Args)]
pub(crate) struct DecryptArgs {
    /// A context pair the file must carry, repeatable.
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE")]
    pub(crate) context: Vec<String>,

    #[command(flatten)]
    pub(crate) output: OutputArgs,

    #[command(flatten)]
    pub(crate) kms: KmsArgs,

    /// The file to decrypt, or - for stdin.
    pub(crate) input: PathBuf,
}

#[derive(Args)]
pub(crate) struct InspectArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,

    /// The .dk file, or - for stdin.
    pub(crate) input: PathBuf,
}

#[derive(Args)]
pub(crate) struct GenerateArgs {
    /// The master key: an id or alias/NAME.
    #[arg(long, value_name = "ID")]
    pub(crate) key_id: String,

    /// AES_128 or AES_256 (this, --number-of-bytes or both is required).
    #[arg(long, value_name = "SPEC")]
    pub(crate) key_spec: Option<String>,

    /// Data-key length, 1 to 1024; wins over --key-spec.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub(crate) number_of_bytes: Option<i64>,

    /// A JSON object of string keys to string values.
    #[arg(long, value_name = "JSON")]
    pub(crate) encryption_context: Option<String>,

    #[command(flatten)]
    pub(crate) kms: KmsArgs,
}

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
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
pub(crate) enum KmsCommand {
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

/// Parses a size with an optional K or M suffix (powers of 1024).
pub(crate) fn parse_size(text: &str) -> Result<u32, String> {
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
