//! A scripted HTTP server on 127.0.0.1 for the Tencent KMS client tests (test scaffolding).
//!
//! Each connection gets one answer, chosen by a script from the request's index and contents;
//! every request is kept so that tests can count attempts and check what was sent.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How long a hanging connection is held open at most.
const HANG_LIMIT: Duration = Duration::from_secs(10);

/// What the server does with one request.
#[derive(Clone)]
pub enum Reply {
    /// Answers with this status, content type and body.
    Raw(u16, &'static str, String),
    /// Answers after a delay.
    Slow(Duration, Box<Reply>),
    /// Reads the request and never answers (holds the connection open).
    Hang,
    /// Reads the request and closes the connection.
    Close,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted server; requests are counted and kept.
pub struct Server {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// The script: from the request's index (0 for the first) and contents to the reply.
type Script = dyn Fn(usize, &Seen) -> Reply + Send + Sync;

impl Server {
    /// A server whose replies depend on the request index only.
    pub fn start<F>(script: F) -> Self
    where
        F: Fn(usize) -> Reply + Send + Sync + 'static,
    {
        Self::start_with(move |index, _| script(index))
    }

    /// A server whose replies may depend on the request too.
    pub fn start_with<F>(script: F) -> Self
    where
        F: Fn(usize, &Seen) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let seen_by_server = Arc::clone(&seen);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (seen, count, script) = (
                    Arc::clone(&seen_by_server),
                    Arc::clone(&count),
                    Arc::clone(&script),
                );
                thread::spawn(move || serve(stream, &seen, &count, &*script));
            }
        });
        Self { addr, seen }
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests arrived.
    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The requests that arrived, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<Seen>>, count: &AtomicUsize, script: &Script) {
    stream.set_read_timeout(Some(HANG_LIMIT)).unwrap();
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    seen.lock().unwrap().push(request.clone());
    let index = count.fetch_add(1, Ordering::SeqCst);
    let mut stream = reader.into_inner();
    answer(&mut stream, script(index, &request));
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Seen> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    if line.is_empty() {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Seen { headers, body })
}

fn answer(stream: &mut TcpStream, reply: Reply) {
    match reply {
        Reply::Raw(status, content_type, body) => {
            let head = format!(
                "HTTP/1.1 {status} Scripted\r\nContent-Type: {content_type}\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
        Reply::Slow(delay, reply) => {
            thread::sleep(delay);
            answer(stream, *reply);
        }
        Reply::Hang => {
            // Hold the connection until the client gives up (a read returns) or the limit.
            let mut buf = [0u8; 64];
            let _ = stream.read(&mut buf);
        }
        Reply::Close => {}
    }
}
