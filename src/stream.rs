//! The chunked body: the STREAM construction, sealed and opened in parallel batches.
//!
//! Each chunk is sealed on its own with nonce `counter (11 bytes, big-endian) || last flag`,
//! and the header digest as authenticated data ("Chunks" in `docs/FORMAT.md`). Chunks are
//! independent, so a batch of them is sealed or opened on all worker threads at once, and the
//! batch is written in order.

use std::fmt;
use std::io::{self, Read, Write};

use rayon::prelude::*;

use crate::cipher::{ChunkCipher, NONCE_LEN, TAG_LEN};

/// Plaintext bytes handled per batch and per worker thread, which bounds memory use.
const BATCH_BYTES_PER_THREAD: usize = 4 * 1024 * 1024;

/// Why a body could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// A chunk failed authentication (altered, reordered, or under another key).
    Authentication,
    /// The body ends before its final chunk.
    Truncated,
    /// Data follows the final chunk.
    TrailingData,
    /// Reading or writing failed.
    Io(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Authentication => f.write_str("authentication failed: the file was altered"),
            Self::Truncated => f.write_str("the file is truncated: its final chunk is missing"),
            Self::TrailingData => f.write_str("unexpected data after the final chunk"),
            Self::Io(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<io::Error> for OpenError {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

/// The nonce of chunk `counter`, with the last-chunk flag.
pub fn chunk_nonce(counter: u64, last: bool) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[3..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

/// Totals of one sealed or opened body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BodyStats {
    /// Chunks processed.
    pub chunks: u64,
    /// Plaintext bytes.
    pub plaintext_len: u64,
}

/// A keyed stream: the chunk cipher, the chunk size and the header digest.
pub struct Stream<'a> {
    cipher: &'a ChunkCipher,
    chunk_size: usize,
    aad: [u8; 32],
    batch_chunks: usize,
    pool: Option<rayon::ThreadPool>,
}

impl<'a> Stream<'a> {
    /// A stream over `cipher` with `chunk_size` plaintext bytes per chunk, working on
    /// `threads` threads (`None`: the global pool, one thread per core).
    pub fn new(
        cipher: &'a ChunkCipher,
        chunk_size: u32,
        header_digest: [u8; 32],
        threads: Option<usize>,
    ) -> Self {
        let pool =
            threads.and_then(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build().ok());
        let threads = pool
            .as_ref()
            .map_or_else(rayon::current_num_threads, |p| p.current_num_threads());
        let chunk_size = chunk_size as usize;
        let per_thread = (BATCH_BYTES_PER_THREAD / chunk_size).max(1);
        let batch_chunks = per_thread * threads.max(1);
        Self {
            cipher,
            chunk_size,
            aad: header_digest,
            batch_chunks,
            pool,
        }
    }

    /// Runs parallel work on this stream's pool.
    fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        match &self.pool {
            Some(pool) => pool.install(work),
            None => work(),
        }
    }

    fn sealed_size(&self) -> usize {
        self.chunk_size + TAG_LEN
    }

    /// Seals all of `plaintext` (a mapped file, say) into `out`.
    pub fn seal_slice(&self, plaintext: &[u8], out: &mut dyn Write) -> io::Result<BodyStats> {
        let mut stats = BodyStats::default();
        let mut sealed = Vec::new();
        let batch_len = self.batch_chunks * self.chunk_size;
        let mut start = 0;
        loop {
            let end = (start + batch_len).min(plaintext.len());
            let last = end == plaintext.len();
            self.seal_batch(stats.chunks, &plaintext[start..end], last, &mut sealed);
            out.write_all(&sealed)?;
            stats.chunks += chunk_count(end - start, self.chunk_size, last);
            start = end;
            if last {
                stats.plaintext_len = plaintext.len() as u64;
                return Ok(stats);
            }
        }
    }

    /// Seals everything `input` yields into `out`, a batch at a time.
    pub fn seal_reader(&self, input: &mut dyn Read, out: &mut dyn Write) -> io::Result<BodyStats> {
        let mut stats = BodyStats::default();
        let mut batch = BatchReader::new(self.batch_chunks * self.chunk_size);
        let mut sealed = Vec::new();
        loop {
            let last = batch.fill(input)?;
            let plaintext = batch.current();
            self.seal_batch(stats.chunks, plaintext, last, &mut sealed);
            out.write_all(&sealed)?;
            stats.chunks += chunk_count(plaintext.len(), self.chunk_size, last);
            stats.plaintext_len += plaintext.len() as u64;
            if last {
                return Ok(stats);
            }
        }
    }

    /// Opens all of `body` (a mapped file, say) into `out`. Each batch is written only after
    /// every chunk in it has been authenticated.
    pub fn open_slice(&self, body: &[u8], out: &mut dyn Write) -> Result<BodyStats, OpenError> {
        let mut stats = BodyStats::default();
        let mut opened = Vec::new();
        let batch_len = self.batch_chunks * self.sealed_size();
        let mut start = 0;
        loop {
            let end = (start + batch_len).min(body.len());
            let last = end == body.len();
            self.open_batch(stats.chunks, &body[start..end], last, &mut opened)?;
            out.write_all(&opened)?;
            stats.chunks += chunk_count(end - start, self.sealed_size(), last);
            stats.plaintext_len += opened.len() as u64;
            start = end;
            if last {
                return Ok(stats);
            }
        }
    }

    /// Opens everything `input` yields into `out`, a batch at a time.
    pub fn open_reader(
        &self,
        input: &mut dyn Read,
        out: &mut dyn Write,
    ) -> Result<BodyStats, OpenError> {
        let mut stats = BodyStats::default();
        let mut batch = BatchReader::new(self.batch_chunks * self.sealed_size());
        let mut opened = Vec::new();
        loop {
            let last = batch.fill(input)?;
            let body = batch.current();
            self.open_batch(stats.chunks, body, last, &mut opened)?;
            out.write_all(&opened)?;
            stats.chunks += chunk_count(body.len(), self.sealed_size(), last);
            stats.plaintext_len += opened.len() as u64;
            if last {
                return Ok(stats);
            }
        }
    }

    /// Seals one batch of whole chunks (the last batch may end in a short or empty chunk).
    fn seal_batch(&self, first: u64, plaintext: &[u8], last: bool, out: &mut Vec<u8>) {
        let chunks = chunk_count(plaintext.len(), self.chunk_size, last) as usize;
        out.clear();
        out.resize(plaintext.len() + chunks * TAG_LEN, 0);
        if plaintext.is_empty() {
            let tag = self
                .cipher
                .seal(&chunk_nonce(first, last), &self.aad, &mut []);
            out.copy_from_slice(&tag);
            return;
        }

        let sealed_size = self.sealed_size();
        self.run(|| {
            out.par_chunks_mut(sealed_size)
                .zip(plaintext.par_chunks(self.chunk_size))
                .enumerate()
                .for_each(|(i, (sealed, chunk))| {
                    let is_last = last && i + 1 == chunks;
                    let (body, tag) = sealed.split_at_mut(chunk.len());
                    body.copy_from_slice(chunk);
                    let nonce = chunk_nonce(first + i as u64, is_last);
                    tag.copy_from_slice(&self.cipher.seal(&nonce, &self.aad, body));
                })
        });
    }

    /// Opens one batch; on failure says why, trying the other flag to tell truncation and
    /// trailing data from tampering.
    fn open_batch(
        &self,
        first: u64,
        body: &[u8],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), OpenError> {
        let chunks = chunk_count(body.len(), self.sealed_size(), last) as usize;
        let partial = body.len() % self.sealed_size();
        out.clear();
        if last && (body.is_empty() || (partial != 0 && partial < TAG_LEN)) {
            return Err(OpenError::Truncated);
        }
        out.resize(body.len() - chunks * TAG_LEN, 0);

        let failed = if out.is_empty() {
            // A lone empty chunk: the body of an empty file.
            self.open_chunk(first, last, body, out).map_err(|()| 0)
        } else {
            let sealed_size = self.sealed_size();
            self.run(|| {
                out.par_chunks_mut(self.chunk_size)
                    .zip(body.par_chunks(sealed_size))
                    .enumerate()
                    .try_for_each(|(i, (plain, sealed))| {
                        let is_last = last && i + 1 == chunks;
                        self.open_chunk(first + i as u64, is_last, sealed, plain)
                            .map_err(|()| i)
                    })
            })
            .and_then(|()| self.open_empty_tail(first, body, chunks, last))
        };
        match failed {
            Ok(()) => Ok(()),
            Err(i) => Err(self.diagnose(first, body, i, last && i + 1 == chunks)),
        }
    }

    /// Opens an empty final chunk that follows full chunks, which the parallel pass above does
    /// not reach. datakey never writes one, but it is well-formed.
    fn open_empty_tail(
        &self,
        first: u64,
        body: &[u8],
        chunks: usize,
        last: bool,
    ) -> Result<(), usize> {
        if body.len() % self.sealed_size() != TAG_LEN || chunks < 2 {
            return Ok(());
        }
        let i = chunks - 1;
        let tail = &body[body.len() - TAG_LEN..];
        self.open_chunk(first + i as u64, last, tail, &mut [])
            .map_err(|()| i)
    }

    fn open_chunk(
        &self,
        counter: u64,
        last: bool,
        sealed: &[u8],
        plain: &mut [u8],
    ) -> Result<(), ()> {
        let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        plain.copy_from_slice(ciphertext);
        let tag: &[u8; TAG_LEN] = tag.try_into().expect("16 bytes");
        let result = self
            .cipher
            .open(&chunk_nonce(counter, last), &self.aad, plain, tag);
        if result.is_err() {
            plain.fill(0);
        }
        result.map_err(|_| ())
    }

    /// Reopens failed chunk `i` with the other last-chunk flag: a final chunk where more data
    /// follows means trailing data; a non-final chunk at the end means truncation.
    fn diagnose(&self, first: u64, body: &[u8], i: usize, was_last: bool) -> OpenError {
        let start = i * self.sealed_size();
        let sealed = &body[start..(start + self.sealed_size()).min(body.len())];
        let mut scratch = vec![0u8; sealed.len() - TAG_LEN];
        match self.open_chunk(first + i as u64, !was_last, sealed, &mut scratch) {
            Ok(()) if was_last => OpenError::Truncated,
            Ok(()) => OpenError::TrailingData,
            Err(()) => OpenError::Authentication,
        }
    }
}

/// The number of chunks in `len` bytes of a batch: a final batch always has at least one.
fn chunk_count(len: usize, size: usize, last: bool) -> u64 {
    let whole = len.div_ceil(size);
    if last {
        whole.max(1) as u64
    } else {
        whole as u64
    }
}

/// Reads a stream in batches of `batch_len` bytes, keeping one byte of look-ahead so that the
/// final batch is known when it is read.
struct BatchReader {
    buf: Vec<u8>,
    batch_len: usize,
    filled: usize,
    ready: usize,
}

impl BatchReader {
    fn new(batch_len: usize) -> Self {
        Self {
            buf: vec![0u8; batch_len + 1],
            batch_len,
            filled: 0,
            ready: 0,
        }
    }

    /// Reads the next batch and returns whether it is the last one.
    fn fill(&mut self, input: &mut dyn Read) -> io::Result<bool> {
        // Move the look-ahead byte of the previous batch to the front.
        if self.ready < self.filled {
            self.buf.copy_within(self.ready..self.filled, 0);
        }
        self.filled -= self.ready;

        while self.filled < self.buf.len() {
            match input.read(&mut self.buf[self.filled..]) {
                Ok(0) => break,
                Ok(n) => self.filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        let last = self.filled <= self.batch_len;
        self.ready = self.filled.min(self.batch_len);
        Ok(last)
    }

    fn current(&self) -> &[u8] {
        &self.buf[..self.ready]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cipher::Cipher;

    const CHUNK: u32 = 4096;

    fn cipher() -> ChunkCipher {
        ChunkCipher::new(Cipher::Aes256Gcm, &[7; 32]).unwrap()
    }

    fn seal(data: &[u8], batch_chunks: usize) -> Vec<u8> {
        let cipher = cipher();
        let mut stream = Stream::new(&cipher, CHUNK, [1; 32], Some(2));
        stream.batch_chunks = batch_chunks;
        let mut out = Vec::new();
        stream.seal_slice(data, &mut out).unwrap();
        let mut streamed = Vec::new();
        stream.seal_reader(&mut &data[..], &mut streamed).unwrap();
        assert_eq!(out, streamed, "mapped and streamed sealing agree");
        out
    }

    fn open(body: &[u8], batch_chunks: usize) -> Result<Vec<u8>, OpenError> {
        let cipher = cipher();
        let mut stream = Stream::new(&cipher, CHUNK, [1; 32], Some(2));
        stream.batch_chunks = batch_chunks;
        let mut out = Vec::new();
        let mapped = stream.open_slice(body, &mut out).map(|_| out);
        let mut streamed = Vec::new();
        let read = stream
            .open_reader(&mut &body[..], &mut streamed)
            .map(|_| streamed);
        match (&mapped, &read) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            _ => panic!("mapped {mapped:?} and streamed {read:?} disagree"),
        }
        mapped
    }

    #[test]
    fn round_trips_at_chunk_boundaries() {
        let c = CHUNK as usize;
        for len in [0, 1, c - 1, c, c + 1, 3 * c, 5 * c + 7] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for batch in [1, 2, 3, 64] {
                let body = seal(&data, batch);
                assert_eq!(
                    body.len(),
                    len + chunk_count(len, c, true) as usize * TAG_LEN
                );
                assert_eq!(open(&body, batch).unwrap(), data, "len {len} batch {batch}");
            }
        }
    }

    #[test]
    fn detects_truncation_and_trailing_data() {
        let c = CHUNK as usize;
        let data = vec![5u8; 3 * c + 10];
        let body = seal(&data, 2);
        let whole = c + TAG_LEN;

        assert!(matches!(
            open(&body[..2 * whole], 2),
            Err(OpenError::Truncated)
        ));
        assert!(matches!(open(&[], 2), Err(OpenError::Truncated)));
        assert!(matches!(
            open(&body[..body.len() - 1], 2),
            Err(OpenError::Authentication)
        ));

        let exact = seal(&vec![5u8; 2 * c], 2);
        let mut extended = exact.clone();
        extended.extend_from_slice(&exact[..whole]);
        assert!(matches!(open(&extended, 2), Err(OpenError::TrailingData)));
    }

    #[test]
    fn detects_flips_and_reordering() {
        let c = CHUNK as usize;
        let body = seal(&vec![9u8; 3 * c], 4);
        for pos in [0, c, c + TAG_LEN + 3, body.len() - 1] {
            let mut bad = body.clone();
            bad[pos] ^= 1;
            assert!(
                matches!(open(&bad, 4), Err(OpenError::Authentication)),
                "{pos}"
            );
        }
        let whole = c + TAG_LEN;
        let mut swapped = body.clone();
        swapped[..whole].copy_from_slice(&body[whole..2 * whole]);
        swapped[whole..2 * whole].copy_from_slice(&body[..whole]);
        assert!(matches!(open(&swapped, 4), Err(OpenError::Authentication)));
    }

    #[test]
    fn nonce_layout() {
        let nonce = chunk_nonce(0x0102, true);
        assert_eq!(nonce, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 1]);
    }
}
