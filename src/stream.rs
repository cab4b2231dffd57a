//! The chunked body: the STREAM construction, sealed and opened in parallel batches.
//!
//! Each chunk is sealed on its own with nonce `counter (11 bytes, big-endian) || last flag`,
//! and the header digest as authenticated data ("Chunks" in `docs/FORMAT.md`). Chunks are
//! independent, so a batch of them is sealed or opened on all worker threads at once, and the
//! batch is written in order.

use std::fmt;
use std::io::{self, Read, Write};
use std::ops::Range;

use rayon::prelude::*;

use crate::cipher::{ChunkCipher, NONCE_LEN, TAG_LEN};

/// Plaintext bytes handled per batch and per worker thread. Small enough that a sealed batch is
/// still in cache when the calling thread writes it: with 4 MiB, the copy into the page cache
/// cost twice the system time on the 2-core machine of `docs/PERFORMANCE.md`.
const BATCH_BYTES_PER_THREAD: usize = 512 * 1024;

/// At most this many plaintext bytes per batch (but always one chunk), whatever the thread
/// count: up to four batch buffers are live at once (two in flight, two read ahead).
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

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
        let batch_chunks = batch_chunks(chunk_size, threads);
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

    /// Runs `work` on the pool while `io` runs on the calling thread, and waits for both: a
    /// batch is sealed or opened while the previous one is written (and the next one read).
    fn overlap<'s>(&self, work: impl FnOnce() + Send + 's, io: impl FnOnce()) {
        let op = |scope: &rayon::Scope<'s>| {
            scope.spawn(|_| work());
            io();
        };
        match &self.pool {
            Some(pool) => pool.in_place_scope(op),
            None => rayon::in_place_scope(op),
        }
    }

    fn sealed_size(&self) -> usize {
        self.chunk_size + TAG_LEN
    }

    /// Seals all of `plaintext` (a mapped file, say) into `out`.
    pub fn seal_slice(&self, plaintext: &[u8], out: &mut dyn Write) -> io::Result<BodyStats> {
        self.seal_slice_releasing(plaintext, out, &mut |_| {})
    }

    /// Seals all of `plaintext` into `out`, calling `consumed` with each range of `plaintext`
    /// once it has been sealed, so that a caller can release mapped pages it will not read again.
    pub fn seal_slice_releasing(
        &self,
        plaintext: &[u8],
        out: &mut dyn Write,
        consumed: &mut dyn FnMut(Range<usize>),
    ) -> io::Result<BodyStats> {
        let mut stats = BodyStats::default();
        let (mut sealing, mut ready) = (Vec::new(), Vec::new());
        for batch in Batches::new(plaintext.len(), self.chunk_size, self.batch_chunks) {
            let input = &plaintext[batch.range.clone()];
            let mut written = Ok(());
            self.overlap(
                || self.seal_batch(batch.first, input, batch.last, &mut sealing),
                || written = out.write_all(&ready),
            );
            written?;
            consumed(batch.range.clone());

            stats.chunks += chunk_count(input.len(), self.chunk_size, batch.last);
            stats.plaintext_len += input.len() as u64;
            std::mem::swap(&mut sealing, &mut ready);
        }
        out.write_all(&ready)?;
        Ok(stats)
    }

    /// Seals everything `input` yields into `out`, a batch at a time: the next batch is read
    /// and the previous one written while the current one is sealed.
    pub fn seal_reader(&self, input: &mut dyn Read, out: &mut dyn Write) -> io::Result<BodyStats> {
        let mut stats = BodyStats::default();
        let mut reader = BatchReader::new(self.batch_chunks * self.chunk_size);
        let (mut current, mut next) = (Vec::new(), Vec::new());
        let (mut sealing, mut ready) = (Vec::new(), Vec::new());
        let mut last = reader.fill(input, &mut current)?;
        loop {
            let mut io_result = Ok(false);
            self.overlap(
                || self.seal_batch(stats.chunks, &current, last, &mut sealing),
                || io_result = write_then_fill(out, &ready, &mut reader, input, &mut next, last),
            );
            let next_last = io_result?;

            stats.chunks += chunk_count(current.len(), self.chunk_size, last);
            stats.plaintext_len += current.len() as u64;
            std::mem::swap(&mut sealing, &mut ready);
            if last {
                out.write_all(&ready)?;
                return Ok(stats);
            }
            std::mem::swap(&mut current, &mut next);
            last = next_last;
        }
    }

    /// Opens all of `body` (a mapped file, say) into `out`. Each batch is written only after
    /// every chunk in it has been authenticated.
    pub fn open_slice(&self, body: &[u8], out: &mut dyn Write) -> Result<BodyStats, OpenError> {
        self.open_slice_releasing(body, out, &mut |_| {})
    }

    /// Opens all of `body` into `out` like [`Stream::open_slice`], calling `consumed` with each
    /// range of `body` once it has been opened.
    pub fn open_slice_releasing(
        &self,
        body: &[u8],
        out: &mut dyn Write,
        consumed: &mut dyn FnMut(Range<usize>),
    ) -> Result<BodyStats, OpenError> {
        let mut stats = BodyStats::default();
        let (mut opening, mut ready) = (Vec::new(), Vec::new());
        for batch in Batches::new(body.len(), self.sealed_size(), self.batch_chunks) {
            let sealed = &body[batch.range.clone()];
            let (mut opened, mut written) = (Ok(()), Ok(()));
            self.overlap(
                || opened = self.open_batch(batch.first, sealed, batch.last, &mut opening),
                || written = out.write_all(&ready),
            );
            written?;
            opened?;
            consumed(batch.range.clone());

            stats.chunks += chunk_count(sealed.len(), self.sealed_size(), batch.last);
            stats.plaintext_len += opening.len() as u64;
            std::mem::swap(&mut opening, &mut ready);
        }
        out.write_all(&ready)?;
        Ok(stats)
    }

    /// Opens everything `input` yields into `out`, a batch at a time, overlapping reading,
    /// opening and writing like [`Stream::seal_reader`].
    pub fn open_reader(
        &self,
        input: &mut dyn Read,
        out: &mut dyn Write,
    ) -> Result<BodyStats, OpenError> {
        let mut stats = BodyStats::default();
        let mut reader = BatchReader::new(self.batch_chunks * self.sealed_size());
        let (mut current, mut next) = (Vec::new(), Vec::new());
        let (mut opening, mut ready) = (Vec::new(), Vec::new());
        let mut last = reader.fill(input, &mut current)?;
        loop {
            let (mut opened, mut io_result) = (Ok(()), Ok(false));
            self.overlap(
                || opened = self.open_batch(stats.chunks, &current, last, &mut opening),
                || io_result = write_then_fill(out, &ready, &mut reader, input, &mut next, last),
            );
            let next_last = io_result?;
            opened?;

            stats.chunks += chunk_count(current.len(), self.sealed_size(), last);
            stats.plaintext_len += opening.len() as u64;
            std::mem::swap(&mut opening, &mut ready);
            if last {
                out.write_all(&ready)?;
                return Ok(stats);
            }
            std::mem::swap(&mut current, &mut next);
            last = next_last;
        }
    }

    /// Seals one batch of whole chunks (the last batch may end in a short or empty chunk).
    fn seal_batch(&self, first: u64, plaintext: &[u8], last: bool, out: &mut Vec<u8>) {
        let chunks = chunk_count(plaintext.len(), self.chunk_size, last) as usize;
        set_len(out, plaintext.len() + chunks * TAG_LEN);
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
                    let nonce = chunk_nonce(first + i as u64, is_last);
                    tag.copy_from_slice(&self.cipher.seal_to(&nonce, &self.aad, chunk, body));
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
        if last && (body.is_empty() || (partial != 0 && partial < TAG_LEN)) {
            out.clear();
            return Err(OpenError::Truncated);
        }
        set_len(out, body.len() - chunks * TAG_LEN);

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
            Err(i) => {
                out.fill(0);
                Err(self.diagnose(first, body, i, last && i + 1 == chunks))
            }
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
        let tag: &[u8; TAG_LEN] = tag.try_into().expect("16 bytes");
        self.cipher
            .open_to(
                &chunk_nonce(counter, last),
                &self.aad,
                ciphertext,
                plain,
                tag,
            )
            .map_err(|_| ())
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

/// Chunks per batch: enough to keep every thread busy, within the memory bound.
fn batch_chunks(chunk_size: usize, threads: usize) -> usize {
    let per_thread = (BATCH_BYTES_PER_THREAD / chunk_size).max(1);
    let most = (MAX_BATCH_BYTES / chunk_size).max(1);
    (per_thread * threads.max(1)).min(most)
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

/// Sets `buf` to `len` bytes, zeroing only bytes it never held: batches after the first reuse
/// their buffers without clearing them, as every byte is overwritten.
fn set_len(buf: &mut Vec<u8>, len: usize) {
    if buf.len() != len {
        buf.resize(len, 0);
    }
}

/// One batch of a body held in memory: its byte range, the counter of its first chunk, and
/// whether it ends the body.
struct Batch {
    range: Range<usize>,
    first: u64,
    last: bool,
}

/// The batches of a `len`-byte body in units (chunks, sealed or not) of `unit` bytes,
/// `per_batch` units at a time. An empty body is one empty final batch.
struct Batches {
    len: usize,
    unit: usize,
    per_batch: usize,
    next: Option<Batch>,
}

impl Batches {
    fn new(len: usize, unit: usize, per_batch: usize) -> Self {
        let first = Batch {
            range: 0..len.min(unit * per_batch),
            first: 0,
            last: len <= unit * per_batch,
        };
        Self {
            len,
            unit,
            per_batch,
            next: Some(first),
        }
    }
}

impl Iterator for Batches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let batch = self.next.take()?;
        if !batch.last {
            let start = batch.range.end;
            let end = (start + self.unit * self.per_batch).min(self.len);
            self.next = Some(Batch {
                range: start..end,
                first: batch.first + self.per_batch as u64,
                last: end == self.len,
            });
        }
        Some(batch)
    }
}

/// Writes `ready` and, unless the batch being processed is the last, reads the next one into
/// `next`; returns whether that next batch is the last.
fn write_then_fill(
    out: &mut dyn Write,
    ready: &[u8],
    reader: &mut BatchReader,
    input: &mut dyn Read,
    next: &mut Vec<u8>,
    last: bool,
) -> io::Result<bool> {
    out.write_all(ready)?;
    if last {
        return Ok(true);
    }
    reader.fill(input, next)
}

/// Reads a stream in batches of `batch_len` bytes, keeping one byte of look-ahead so that the
/// final batch is known when it is read.
struct BatchReader {
    batch_len: usize,
    look_ahead: Option<u8>,
}

impl BatchReader {
    fn new(batch_len: usize) -> Self {
        Self {
            batch_len,
            look_ahead: None,
        }
    }

    /// Reads the next batch into `buf` and returns whether it is the last one.
    fn fill(&mut self, input: &mut dyn Read, buf: &mut Vec<u8>) -> io::Result<bool> {
        set_len(buf, self.batch_len + 1);
        let mut filled = 0;
        if let Some(byte) = self.look_ahead.take() {
            buf[0] = byte;
            filled = 1;
        }

        while filled < buf.len() {
            match input.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        let last = filled <= self.batch_len;
        if !last {
            self.look_ahead = Some(buf[self.batch_len]);
        }
        buf.truncate(filled.min(self.batch_len));
        Ok(last)
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

    /// Hands out at most `step` bytes per read, like a pipe.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Accepts `room` bytes, then fails.
    struct FullDisk {
        room: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 && !buf.is_empty() {
                return Err(io::Error::other("no space left"));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn short_reads_give_the_same_body() {
        let c = CHUNK as usize;
        let data: Vec<u8> = (0..7 * c + 3).map(|i| (i % 253) as u8).collect();
        let body = seal(&data, 2);
        let cipher = cipher();
        let mut stream = Stream::new(&cipher, CHUNK, [1; 32], Some(2));
        stream.batch_chunks = 2;
        for step in [1000, c - 1, c + 1, 3 * c] {
            let mut sealed = Vec::new();
            let mut input = Trickle { data: &data, step };
            stream.seal_reader(&mut input, &mut sealed).unwrap();
            assert_eq!(sealed, body, "step {step}");

            let mut opened = Vec::new();
            let mut input = Trickle { data: &body, step };
            let stats = stream.open_reader(&mut input, &mut opened).unwrap();
            assert_eq!(opened, data, "step {step}");
            assert_eq!(stats.plaintext_len, data.len() as u64);
            assert_eq!(stats.chunks, 8);
        }
    }

    #[test]
    fn reports_every_consumed_range_in_order() {
        let c = CHUNK as usize;
        let data = vec![4u8; 9 * c + 1];
        let cipher = cipher();
        let mut stream = Stream::new(&cipher, CHUNK, [1; 32], Some(2));
        stream.batch_chunks = 4;

        let mut ranges = Vec::new();
        let mut body = Vec::new();
        stream
            .seal_slice_releasing(&data, &mut body, &mut |r| ranges.push(r))
            .unwrap();
        assert_eq!(ranges, [0..4 * c, 4 * c..8 * c, 8 * c..9 * c + 1]);

        let sealed = c + TAG_LEN;
        ranges.clear();
        let mut opened = Vec::new();
        stream
            .open_slice_releasing(&body, &mut opened, &mut |r| ranges.push(r))
            .unwrap();
        assert_eq!(opened, data);
        assert_eq!(
            ranges,
            [
                0..4 * sealed,
                4 * sealed..8 * sealed,
                8 * sealed..body.len()
            ]
        );
    }

    #[test]
    fn write_failures_are_reported() {
        let c = CHUNK as usize;
        let data = vec![6u8; 10 * c];
        let body = seal(&data, 2);
        let cipher = cipher();
        let mut stream = Stream::new(&cipher, CHUNK, [1; 32], Some(2));
        stream.batch_chunks = 2;
        for room in [0, c, 5 * c, data.len() - 1] {
            let mut disk = FullDisk { room };
            assert!(stream.seal_slice(&data, &mut disk).is_err(), "{room}");
            let mut disk = FullDisk { room };
            assert!(stream.seal_reader(&mut &data[..], &mut disk).is_err());
            let mut disk = FullDisk { room };
            assert!(matches!(
                stream.open_slice(&body, &mut disk),
                Err(OpenError::Io(_))
            ));
            let mut disk = FullDisk { room };
            assert!(matches!(
                stream.open_reader(&mut &body[..], &mut disk),
                Err(OpenError::Io(_))
            ));
        }
    }

    #[test]
    fn nothing_after_a_bad_batch_is_written() {
        let c = CHUNK as usize;
        let data = vec![8u8; 6 * c];
        let mut body = seal(&data, 2);
        let whole = c + TAG_LEN;
        body[3 * whole] ^= 1;
        let cipher = cipher();
        let mut stream = Stream::new(&cipher, CHUNK, [1; 32], Some(2));
        stream.batch_chunks = 2;

        let mut opened = Vec::new();
        let err = stream.open_slice(&body, &mut opened).unwrap_err();
        assert!(matches!(err, OpenError::Authentication));
        assert_eq!(opened, &data[..2 * c], "only the batch before the bad one");
        let mut opened = Vec::new();
        assert!(stream.open_reader(&mut &body[..], &mut opened).is_err());
        assert_eq!(opened, &data[..2 * c]);
    }

    #[test]
    fn batches_stay_bounded_whatever_the_thread_count() {
        let mib = 1024 * 1024;
        assert_eq!(batch_chunks(64 * 1024, 2), 16);
        assert_eq!(batch_chunks(64 * 1024, 1024) * 64 * 1024, MAX_BATCH_BYTES);
        assert_eq!(batch_chunks(16 * mib, 1024), 2);
        assert_eq!(batch_chunks(16 * mib, 1), 1);
    }

    #[test]
    fn nonce_layout() {
        let nonce = chunk_nonce(0x0102, true);
        assert_eq!(nonce, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 1]);
    }
}
