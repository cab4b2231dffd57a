//! `datakey kms serve`: an HTTP server over the local keyring that speaks the Tencent Cloud KMS
//! protocol (API 3.0 with TC3 or v1 signatures, and the legacy 2.0), for development, tests and
//! sites without a cloud account. It is not an HSM: the master keys sit in the keyring file.
//!
//! A fixed pool of worker threads takes requests from one listener; keyring changes go through
//! [`Keyring::update`](crate::kms::keyring::Keyring::update), so several servers and the CLI may
//! share a keyring.

pub mod actions;
pub mod auth;
pub mod credentials;
pub mod params;
pub mod reply;
mod route;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use credentials::{Credentials, CredentialsError};

use crate::kms::keyring::KeyringError;
use crate::kms::local::LocalKms;

/// The address `kms serve` listens on when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8300";

/// The number of worker threads answering requests.
pub const DEFAULT_WORKERS: usize = 8;

/// How often an idle worker looks at the stop flag.
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long requests in progress get to finish once the server is asked to stop. A client that
/// stalls its request body would otherwise hold the stop for as long as it likes.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What to serve and where.
#[derive(Debug)]
pub struct ServeConfig {
    /// The address to listen on, such as `127.0.0.1:8300`; port 0 picks a free port.
    pub listen: String,
    /// The keyring file; created with one key `alias/default` when it does not exist.
    pub keyring: PathBuf,
    /// The SecretId/SecretKey pairs whose signatures are accepted.
    pub credentials: Credentials,
    /// The number of worker threads (at least 1).
    pub workers: usize,
}

impl ServeConfig {
    /// A configuration with the default address and worker count.
    pub fn new(keyring: impl Into<PathBuf>, credentials: Credentials) -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            keyring: keyring.into(),
            credentials,
            workers: DEFAULT_WORKERS,
        }
    }
}

/// Why the server could not start or run.
#[derive(Debug)]
pub enum ServeError {
    /// The listen address could not be bound.
    Bind {
        /// The address asked for.
        address: String,
        /// What the operating system said.
        reason: String,
    },
    /// No credentials were given, so no request could ever be verified.
    NoCredentials,
    /// The keyring could not be opened or created.
    Keyring(KeyringError),
    /// The signal handlers could not be installed.
    Signal(std::io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bind { address, reason } => write!(f, "cannot listen on {address}: {reason}"),
            Self::NoCredentials => CredentialsError::Missing.fmt(f),
            Self::Keyring(err) => err.fmt(f),
            Self::Signal(err) => write!(f, "cannot install signal handlers: {err}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// What every worker shares: the keyring and the credentials.
struct State {
    kms: LocalKms,
    credentials: Credentials,
}

/// A bound server, not yet answering.
pub struct KmsServer {
    http: Arc<tiny_http::Server>,
    state: Arc<State>,
    address: SocketAddr,
    workers: usize,
    stop: Arc<AtomicBool>,
}

impl KmsServer {
    /// Opens (or creates) the keyring and binds the listen address.
    pub fn bind(config: ServeConfig) -> Result<Self, ServeError> {
        if config.credentials.is_empty() {
            return Err(ServeError::NoCredentials);
        }
        let (kms, created) =
            LocalKms::open_or_create_default(&config.keyring).map_err(ServeError::Keyring)?;
        if created {
            log::debug!("created keyring {}", config.keyring.display());
        }

        let bind_err = |reason: String| ServeError::Bind {
            address: config.listen.clone(),
            reason,
        };
        let http = tiny_http::Server::http(config.listen.as_str())
            .map_err(|err| bind_err(err.to_string()))?;
        let address = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| bind_err("not an IP address".into()))?;
        Ok(Self {
            http: Arc::new(http),
            state: Arc::new(State {
                kms,
                credentials: config.credentials,
            }),
            address,
            workers: config.workers.max(1),
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The address actually bound (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// A handle that stops the server from any thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::clone(&self.stop))
    }

    /// Answers requests until stopped, then waits up to [`SHUTDOWN_GRACE`] for requests in
    /// progress to finish. Returns whether every worker finished; one that did not is left
    /// waiting on its client (a keyring change is atomic, so nothing is left half written).
    pub fn run(self) -> bool {
        let (done, finished) = mpsc::channel();
        for _ in 0..self.workers {
            let http = Arc::clone(&self.http);
            let state = Arc::clone(&self.state);
            let stop = Arc::clone(&self.stop);
            let done = Done(done.clone());
            std::thread::spawn(move || {
                let _done = done;
                work(&http, &state, &stop);
            });
        }
        drop(done);

        let all_finished = self.wait_for_workers(&finished);
        log::debug!("server on {} stopped", self.address);
        all_finished
    }

    /// Counts workers out until all are done, or [`SHUTDOWN_GRACE`] after the stop flag is set.
    fn wait_for_workers(&self, finished: &mpsc::Receiver<()>) -> bool {
        let mut running = self.workers;
        let mut deadline = None;
        while running > 0 {
            match finished.recv_timeout(STOP_POLL_INTERVAL) {
                Ok(()) => running -= 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return true,
            }
            if self.stop.load(Ordering::SeqCst) {
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + SHUTDOWN_GRACE);
                if running > 0 && Instant::now() >= deadline {
                    log::warn!(
                        "stopping with {running} request(s) still unanswered after {}s",
                        SHUTDOWN_GRACE.as_secs()
                    );
                    return false;
                }
            }
        }
        true
    }

    /// Answers requests until SIGINT or SIGTERM, then finishes the requests in progress. A
    /// second signal while stopping exits at once.
    pub fn run_until_signal(self) -> Result<(), ServeError> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;

        for signal in [SIGINT, SIGTERM] {
            flag::register_conditional_shutdown(signal, 1, Arc::clone(&self.stop))
                .map_err(ServeError::Signal)?;
            flag::register(signal, Arc::clone(&self.stop)).map_err(ServeError::Signal)?;
        }
        self.run();
        Ok(())
    }

    /// Runs the server on a background thread, for tests and embedding.
    pub fn spawn(self) -> RunningServer {
        let address = self.address;
        let stopper = self.stopper();
        let thread = std::thread::spawn(move || {
            self.run();
        });
        RunningServer {
            address,
            stopper,
            thread: Some(thread),
        }
    }
}

/// Stops a server: it takes no new requests and returns once those in progress are answered.
#[derive(Clone, Debug)]
pub struct Stopper(Arc<AtomicBool>);

impl Stopper {
    /// Asks the server to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A server running on a background thread; dropping it stops it and waits.
#[derive(Debug)]
pub struct RunningServer {
    address: SocketAddr,
    stopper: Stopper,
    thread: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// `http://ADDRESS`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.stopper.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Tells the server a worker has ended, even by a panic.
struct Done(mpsc::Sender<()>);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

fn work(http: &tiny_http::Server, state: &State, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match http.recv_timeout(STOP_POLL_INTERVAL) {
            Ok(Some(request)) => route::answer(state, request),
            Ok(None) => {}
            Err(err) => {
                log::debug!("receiving a request failed: {err}");
                std::thread::sleep(STOP_POLL_INTERVAL);
            }
        }
    }
}
