//! The `datakey` command: parses arguments, calls the library, prints.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::args::{Cli, Command, KmsCommand};
use cli::files::{decrypt, encrypt};
use cli::generate::generate_data_key;
use cli::show::{inspect, keys};
use cli::{Failure, kms_serve};

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
    let inner = env_logger::Builder::new()
        .filter_level(level)
        .parse_env("DATAKEY_LOG")
        .format_timestamp(None)
        .build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(CappedLogger { inner })).is_ok() {
        log::set_max_level(max);
    }
}

/// Crates whose trace level dumps raw HTTP requests and answers (signatures, tokens, data keys).
const CAPPED_TARGETS: [&str; 3] = ["ureq", "ureq_proto", "rustls"];

/// A logger that never passes a trace record of [`CAPPED_TARGETS`] or their modules, whatever
/// `DATAKEY_LOG` asks (`ureq_proto::util=trace`, say).
struct CappedLogger {
    inner: env_logger::Logger,
}

impl CappedLogger {
    fn allows(metadata: &log::Metadata<'_>) -> bool {
        metadata.level() < log::Level::Trace || !is_capped(metadata.target())
    }
}

fn is_capped(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    CAPPED_TARGETS.contains(&krate)
}

impl log::Log for CappedLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        Self::allows(metadata) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if Self::allows(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
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
