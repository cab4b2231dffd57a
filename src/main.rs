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
