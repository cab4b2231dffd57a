//! `datakey kms serve`: an HTTP server over the local keyring that speaks the Tencent Cloud KMS
//! protocol (API 3.0 with TC3 or v1 signatures, and the legacy 2.0), for development, tests and
//! sites without a cloud account. It is not an HSM: the master keys sit in the keyring file.
//!
//! hyper parses HTTP/1.1 on a small tokio runtime, with a deadline for each request's headers and
//! body and a cap on open connections; the keyring work of each request runs on a bounded pool of
//! blocking threads. Keyring changes go through
//! [`Keyring::update`](crate::kms::keyring::Keyring::update), so several servers and the CLI may
//! share a keyring.

pub mod actions;
pub mod auth;
pub mod credentials;
pub mod params;
pub mod reply;
mod route;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

pub use credentials::{Credentials, CredentialsError};

use crate::kms::keyring::KeyringError;
use crate::kms::local::LocalKms;

/// The address `kms serve` listens on when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8300";

/// The number of requests whose keyring work runs at once; more wait their turn.
pub const DEFAULT_WORKERS: usize = 8;

/// How long a client gets to send one request, headers and body, once it has started it.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The most connections open at once; further clients wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 256;

/// The most bytes of request line and headers buffered for one request: room for a GET that
/// carries its parameters in the query (the service allows 32 KB there).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// How often the server looks at the stop flag.
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long requests in progress get to finish once the server is asked to stop. A client that
/// stalls its request would otherwise hold the stop for as long as it likes.
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
    /// The number of requests whose keyring work may run at once (at least 1).
    pub workers: usize,
    /// How long a client gets to send a request's headers, then its body, and how long an
    /// answer may wait on a client that does not read it.
    pub read_timeout: Duration,
}

impl ServeConfig {
    /// A configuration with the default address, worker count and read timeout.
    pub fn new(keyring: impl Into<PathBuf>, credentials: Credentials) -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            keyring: keyring.into(),
            credentials,
            workers: DEFAULT_WORKERS,
            read_timeout: DEFAULT_READ_TIMEOUT,
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
    /// The threads that answer requests could not be started.
    Runtime(std::io::Error),
    /// The signal handlers could not be installed.
    Signal(std::io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bind { address, reason } => write!(f, "cannot listen on {address}: {reason}"),
            Self::NoCredentials => CredentialsError::Missing.fmt(f),
            Self::Keyring(err) => err.fmt(f),
            Self::Runtime(err) => write!(f, "cannot start the server's threads: {err}"),
            Self::Signal(err) => write!(f, "cannot install signal handlers: {err}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// What every request shares: the keyring, the credentials and the read timeout.
struct State {
    kms: LocalKms,
    credentials: Credentials,
    read_timeout: Duration,
}

/// A bound server, not yet answering.
pub struct KmsServer {
    runtime: tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    state: Arc<State>,
    address: SocketAddr,
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

        let bind_err = |err: std::io::Error| ServeError::Bind {
            address: config.listen.clone(),
            reason: err.to_string(),
        };
        let listener = std::net::TcpListener::bind(config.listen.as_str()).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let address = listener.local_addr().map_err(bind_err)?;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(config.workers.max(1))
            .thread_name("datakey-serve")
            .enable_io()
            .enable_time()
            .build()
            .map_err(ServeError::Runtime)?;
        Ok(Self {
            runtime,
            listener,
            state: Arc::new(State {
                kms,
                credentials: config.credentials,
                read_timeout: config.read_timeout,
            }),
            address,
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
    /// progress to finish. Returns whether every connection finished in time; one that did
    /// not is dropped (a keyring change is atomic, so nothing is left half written).
    pub fn run(self) -> bool {
        let Self {
            runtime,
            listener,
            state,
            address,
            stop,
        } = self;
        let finished = runtime.block_on(serve(listener, state, &stop));
        runtime.shutdown_timeout(STOP_POLL_INTERVAL);
        log::debug!("server on {address} stopped");
        finished
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

/// Accepts connections until `stop` is set, then gives those open [`SHUTDOWN_GRACE`] to end.
async fn serve(listener: std::net::TcpListener, state: Arc<State>, stop: &AtomicBool) -> bool {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            log::warn!("cannot watch the listening socket: {err}");
            return false;
        }
    };
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut poll = tokio::time::interval(STOP_POLL_INTERVAL);

    while !stop.load(Ordering::SeqCst) {
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            poll.tick().await;
            continue;
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => connect(stream, Arc::clone(&state), &graceful, permit),
                Err(err) => {
                    log::debug!("accepting a connection failed: {err}");
                    tokio::time::sleep(STOP_POLL_INTERVAL).await;
                }
            },
            _ = poll.tick() => {}
        }
    }

    drop(listener);
    finish(graceful).await
}

/// Serves one connection on its own task; it holds `permit` until it closes.
fn connect(
    stream: TcpStream,
    state: Arc<State>,
    graceful: &GracefulShutdown,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let read_timeout = state.read_timeout;
    let service = service_fn(move |request| route::answer(Arc::clone(&state), request));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(
            TokioIo::new(TimedWrites::new(stream, read_timeout)),
            service,
        );
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            log::debug!("connection ended: {err}");
        }
        drop(permit);
    });
}

/// A connection whose writes fail once one has waited `timeout` on a client that does not read
/// its answers; hyper's own timers only guard reading.
struct TimedWrites {
    stream: TcpStream,
    timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TimedWrites {
    fn new(stream: TcpStream, timeout: Duration) -> Self {
        Self {
            stream,
            timeout,
            stalled: None,
        }
    }

    /// Passes a finished write through; on a pending one, starts or checks the deadline.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading its answers",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for TimedWrites {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TimedWrites {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Waits up to [`SHUTDOWN_GRACE`] for open connections to answer and close.
async fn finish(graceful: GracefulShutdown) -> bool {
    match tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await {
        Ok(()) => true,
        Err(_) => {
            log::warn!(
                "stopping with requests still unanswered after {}s",
                SHUTDOWN_GRACE.as_secs()
            );
            false
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
