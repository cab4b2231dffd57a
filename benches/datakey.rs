//! Criterion benchmarks: body throughput per cipher, size and chunk size; KMS calls on the local
//! keyring and on `kms serve` over loopback; encrypting many small files through
//! `envelope::encrypt_file`.
//!
//! `cargo bench` runs them all in a few minutes on two cores; `cargo bench -- seal` picks one
//! group. Sample counts are kept at Criterion's minimum so the sweep stays short: compare runs
//! made on the same machine, not single figures.

use std::hint::black_box;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, measurement::WallTime};

use datakey::cipher::{ChunkCipher, Cipher};
use datakey::context::EncryptionContext;
use datakey::envelope::{self, EncryptOptions};
use datakey::io::OutputTarget;
use datakey::kms::cache::{CacheLimits, CachingKms};
use datakey::kms::local::LocalKms;
use datakey::kms::tencent::{ApiVersion, Credentials, TencentKms, TencentOptions};
use datakey::kms::{DecryptRequest, GenerateDataKeyRequest, KeySpec, Kms};
use datakey::server::{KmsServer, ServeConfig};
use datakey::stream::Stream;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Input sizes for the per-cipher sweep, at the default chunk size.
const SIZES: [usize; 5] = [KIB, 64 * KIB, MIB, 16 * MIB, 64 * MIB];

/// The default chunk size (`docs/FORMAT.md`).
const DEFAULT_CHUNK: usize = 64 * KIB;

/// Chunk sizes for the chunk-size sweep, on one input size.
const CHUNK_SIZES: [usize; 4] = [16 * KIB, 64 * KIB, 256 * KIB, MIB];

/// The input size of the chunk-size sweep.
const CHUNK_SWEEP_SIZE: usize = 16 * MIB;

/// Small files per iteration of the many-files benchmark, and the size of each.
const SMALL_FILES: usize = 1000;
const SMALL_FILE_SIZE: usize = 4 * KIB;

/// The header digest the benches bind chunks to; any value does.
const DIGEST: [u8; 32] = [9; 32];

fn keyed(cipher: Cipher) -> ChunkCipher {
    ChunkCipher::new(cipher, &vec![7u8; cipher.key_len()]).expect("key of the cipher's length")
}

fn input(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn short_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group
}

/// How one seal/open pair is set up.
struct Case {
    cipher: Cipher,
    chunk: usize,
    len: usize,
}

/// Seals `case.len` bytes and opens the result, into a sink, one benchmark each.
fn seal_and_open(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, case: Case) {
    let keyed = keyed(case.cipher);
    let stream = Stream::new(&keyed, case.chunk as u32, DIGEST, None);
    let len = case.len;
    let data = input(len);
    let mut body = Vec::new();
    stream
        .seal_slice(&data, &mut body)
        .expect("sealing into memory");

    group.throughput(Throughput::Bytes(len as u64));
    group.bench_function(BenchmarkId::new("seal", id), |b| {
        b.iter(|| stream.seal_slice(black_box(&data), &mut io::sink()))
    });
    group.bench_function(BenchmarkId::new("open", id), |b| {
        b.iter(|| stream.open_slice(black_box(&body), &mut io::sink()))
    });
}

fn bench_ciphers(c: &mut Criterion) {
    let mut group = short_group(c, "cipher");
    for cipher in Cipher::ALL {
        for len in SIZES {
            let id = format!("{}/{len}", cipher.name());
            let chunk = DEFAULT_CHUNK;
            seal_and_open(&mut group, &id, Case { cipher, chunk, len });
        }
    }
    group.finish();
}

fn bench_chunk_sizes(c: &mut Criterion) {
    let mut group = short_group(c, "chunk_size");
    for chunk in CHUNK_SIZES {
        let id = format!(
            "{}-chunk{}k/{CHUNK_SWEEP_SIZE}",
            Cipher::Aes256Gcm,
            chunk / KIB
        );
        let (cipher, len) = (Cipher::Aes256Gcm, CHUNK_SWEEP_SIZE);
        seal_and_open(&mut group, &id, Case { cipher, chunk, len });
    }
    group.finish();
}

/// A throwaway keyring with one master key, alias/bench.
fn local_kms(dir: &tempfile::TempDir) -> LocalKms {
    let (kms, _) =
        LocalKms::open_or_create_default(dir.path().join("keyring.json")).expect("new keyring");
    kms.create_key(Some("bench"), "benchmarks")
        .expect("new master key");
    kms
}

fn bench_local_kms(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let kms = local_kms(&dir);
    let context =
        EncryptionContext::from_assignments(&["purpose=bench".to_owned()]).expect("valid context");
    let request = GenerateDataKeyRequest::new("alias/bench", KeySpec::Aes256, context.clone());

    let mut group = short_group(c, "kms_local");
    group.throughput(Throughput::Elements(1));
    group.bench_function("generate_data_key", |b| {
        b.iter(|| {
            kms.generate_data_key(black_box(&request))
                .expect("data key")
        })
    });
    let generated = kms.generate_data_key(&request).expect("data key");
    let unwrap = DecryptRequest {
        ciphertext_blob: generated.ciphertext_blob,
        context,
    };
    group.bench_function("decrypt", |b| {
        b.iter(|| kms.decrypt(black_box(&unwrap)).expect("unwrapped key"))
    });
    group.finish();
}

/// Made-up credentials for the loopback server.
const SECRET_ID: &str = "AKIDdatakeybench00000000000000001";
const SECRET_KEY: &str = "datakeyBenchSecretKey000000000001";

/// GenerateDataKey and Decrypt through the Tencent client (API v3, signed) against
/// `kms serve` on 127.0.0.1: HTTP, signing and the server's keyring, per call.
fn bench_kms_serve(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut accepted = datakey::server::Credentials::new();
    accepted
        .insert(SECRET_ID, SECRET_KEY)
        .expect("valid credentials");
    let mut config = ServeConfig::new(dir.path().join("keyring.json"), accepted);
    config.listen = "127.0.0.1:0".into();
    let server = KmsServer::bind(config).expect("loopback port").spawn();

    let mut options = TencentOptions::new("ap-guangzhou");
    options.endpoint = Some(server.url());
    options.api = ApiVersion::V3;
    let kms =
        TencentKms::new(options, Credentials::new(SECRET_ID, SECRET_KEY)).expect("client options");
    let request = GenerateDataKeyRequest::new("alias/default", KeySpec::Aes256, Default::default());

    let mut group = short_group(c, "kms_serve");
    group.throughput(Throughput::Elements(1));
    group.bench_function("generate_data_key", |b| {
        b.iter(|| {
            kms.generate_data_key(black_box(&request))
                .expect("data key")
        })
    });
    let generated = kms.generate_data_key(&request).expect("data key");
    let unwrap = DecryptRequest {
        ciphertext_blob: generated.ciphertext_blob,
        context: EncryptionContext::new(),
    };
    group.bench_function("decrypt", |b| {
        b.iter(|| kms.decrypt(black_box(&unwrap)).expect("unwrapped key"))
    });
    group.finish();
}

/// Encrypts `SMALL_FILES` files of `SMALL_FILE_SIZE` bytes per iteration, one
/// `encrypt_file` call (and so one GenerateDataKey) each, replacing the previous outputs.
fn bench_small_files(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let kms = local_kms(&dir);
    let cache_dir = tempfile::tempdir().expect("temporary directory");
    let cached = CachingKms::new(local_kms(&cache_dir), CacheLimits::default());
    let options = EncryptOptions::new("alias/bench");
    let data = input(SMALL_FILE_SIZE);
    let files: Vec<(PathBuf, OutputTarget)> = (0..SMALL_FILES)
        .map(|i| {
            let path = dir.path().join(format!("f{i}"));
            std::fs::write(&path, &data).expect("writing an input file");
            let target = OutputTarget::derived(dir.path().join(format!("f{i}.dk")), true);
            (path, target)
        })
        .collect();

    let mut group = c.benchmark_group("small_files");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(SMALL_FILES as u64));
    group.bench_function(
        format!("encrypt_file/{SMALL_FILES}x{SMALL_FILE_SIZE}"),
        |b| {
            b.iter(|| {
                for (path, target) in &files {
                    envelope::encrypt_file(&kms, &options, path, target).expect("encrypting");
                }
            })
        },
    );
    group.bench_function(
        format!("encrypt_file_cached_key/{SMALL_FILES}x{SMALL_FILE_SIZE}"),
        |b| {
            b.iter(|| {
                for (path, target) in &files {
                    envelope::encrypt_file(&cached, &options, path, target).expect("encrypting");
                }
            })
        },
    );
    group.finish();
}

criterion::criterion_group!(
    benches,
    bench_ciphers,
    bench_chunk_sizes,
    bench_local_kms,
    bench_kms_serve,
    bench_small_files
);
criterion::criterion_main!(benches);
