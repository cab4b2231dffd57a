//! A bounded, zeroizing cache of data keys, so that a batch of files costs one GenerateDataKey.
//!
//! Reusing a data key across files is safe in this format: each file derives its own keys from
//! the data key and a fresh random salt (`docs/FORMAT.md`, "Key derivation"). The cache bounds how
//! long and how often one data key is used, and wipes every key it drops.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{
    DecryptRequest, DecryptedDataKey, GenerateDataKeyRequest, GeneratedDataKey, KeyLocation, Kms,
    KmsError,
};
use crate::secret::DataKey;

/// How far a cached data key may be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// The most files one data key may encrypt.
    pub max_uses: u64,
    /// How long a data key stays usable after the KMS made it.
    pub max_age: Duration,
    /// The most distinct data keys held at once (one per key id, size and context).
    pub capacity: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_uses: 10_000,
            max_age: Duration::from_secs(300),
            capacity: 16,
        }
    }
}

/// One cached GenerateDataKey answer.
struct Entry {
    request: (String, usize, String),
    key_id: String,
    plaintext: DataKey,
    ciphertext_blob: String,
    request_id: String,
    made: Instant,
    uses: u64,
}

/// A KMS wrapper that answers repeated GenerateDataKey requests (same key, size and context) from
/// a cache within [`CacheLimits`]. Decrypt passes through.
pub struct CachingKms<K> {
    inner: K,
    limits: CacheLimits,
    entries: Mutex<Vec<Entry>>,
    /// Held while asking the KMS after a miss, so that files started together wait for one
    /// GenerateDataKey instead of each making their own.
    filling: Mutex<()>,
}

impl<K> std::fmt::Debug for CachingKms<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingKms")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<K: Kms> CachingKms<K> {
    /// Wraps `inner` with a cache bounded by `limits`.
    pub fn new(inner: K, limits: CacheLimits) -> Self {
        Self {
            inner,
            limits,
            entries: Mutex::new(Vec::new()),
            filling: Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands out a cached answer for `request`, counting the use, if one is still within limits.
    fn reuse(&self, request: &(String, usize, String)) -> Option<GeneratedDataKey> {
        let mut entries = self.lock();
        let now = Instant::now();
        entries.retain(|e| e.uses < self.limits.max_uses && now - e.made < self.limits.max_age);
        let entry = entries.iter_mut().find(|e| &e.request == request)?;
        entry.uses += 1;
        Some(GeneratedDataKey {
            key_id: entry.key_id.clone(),
            plaintext: entry.plaintext.clone(),
            ciphertext_blob: entry.ciphertext_blob.clone(),
            request_id: entry.request_id.clone(),
        })
    }

    fn store(&self, request: (String, usize, String), generated: &GeneratedDataKey) {
        let mut entries = self.lock();
        if entries.len() >= self.limits.capacity {
            entries.remove(0);
        }
        entries.push(Entry {
            request,
            key_id: generated.key_id.clone(),
            plaintext: generated.plaintext.clone(),
            ciphertext_blob: generated.ciphertext_blob.clone(),
            request_id: generated.request_id.clone(),
            made: Instant::now(),
            uses: 1,
        });
    }
}

impl<K: Kms> Kms for CachingKms<K> {
    fn location(&self) -> KeyLocation {
        self.inner.location()
    }

    fn generate_data_key(
        &self,
        request: &GenerateDataKeyRequest,
    ) -> Result<GeneratedDataKey, KmsError> {
        let len = request.validate()?;
        let cache_key = (
            request.key_id.clone(),
            len,
            request.context.to_canonical_json(),
        );
        if self.limits.capacity == 0 || self.limits.max_uses == 0 {
            return self.inner.generate_data_key(request);
        }
        if let Some(hit) = self.reuse(&cache_key) {
            log::debug!("data key for {} reused from the cache", request.key_id);
            return Ok(hit);
        }

        // Another thread may have filled the entry while this one waited for the lock.
        let _filling = self
            .filling
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(hit) = self.reuse(&cache_key) {
            return Ok(hit);
        }
        let generated = self.inner.generate_data_key(request)?;
        self.store(cache_key, &generated);
        Ok(generated)
    }

    fn decrypt(&self, request: &DecryptRequest) -> Result<DecryptedDataKey, KmsError> {
        self.inner.decrypt(request)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::context::EncryptionContext;
    use crate::kms::KeySpec;
    use crate::kms::local::LocalKms;

    /// Counts the GenerateDataKey calls that reach the real local KMS.
    struct Counting(LocalKms, AtomicUsize);

    impl Kms for Counting {
        fn location(&self) -> KeyLocation {
            self.0.location()
        }

        fn generate_data_key(
            &self,
            request: &GenerateDataKeyRequest,
        ) -> Result<GeneratedDataKey, KmsError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            // As slow as a KMS on the network, so that concurrent misses overlap.
            std::thread::sleep(Duration::from_millis(20));
            self.0.generate_data_key(request)
        }

        fn decrypt(&self, request: &DecryptRequest) -> Result<DecryptedDataKey, KmsError> {
            self.0.decrypt(request)
        }
    }

    fn cached(limits: CacheLimits) -> (tempfile::TempDir, CachingKms<Counting>) {
        let dir = tempfile::tempdir().unwrap();
        let (local, _) = LocalKms::open_or_create_default(dir.path().join("k.json")).unwrap();
        (
            dir,
            CachingKms::new(Counting(local, AtomicUsize::new(0)), limits),
        )
    }

    fn request(context: &[&str], spec: KeySpec) -> GenerateDataKeyRequest {
        let context = EncryptionContext::from_assignments(context).unwrap();
        GenerateDataKeyRequest::new("alias/default", spec, context)
    }

    fn calls(kms: &CachingKms<Counting>) -> usize {
        kms.inner.1.load(Ordering::SeqCst)
    }

    #[test]
    fn one_call_for_many_uses_within_the_limit() {
        let limits = CacheLimits {
            max_uses: 3,
            ..CacheLimits::default()
        };
        let (_dir, kms) = cached(limits);
        let first = kms
            .generate_data_key(&request(&["a=b"], KeySpec::Aes256))
            .unwrap();
        for _ in 0..2 {
            let again = kms
                .generate_data_key(&request(&["a=b"], KeySpec::Aes256))
                .unwrap();
            assert_eq!(again.plaintext, first.plaintext);
            assert_eq!(again.ciphertext_blob, first.ciphertext_blob);
        }
        assert_eq!(calls(&kms), 1);

        let fourth = kms
            .generate_data_key(&request(&["a=b"], KeySpec::Aes256))
            .unwrap();
        assert_ne!(
            fourth.plaintext, first.plaintext,
            "max_uses reached: a fresh key"
        );
        assert_eq!(calls(&kms), 2);
    }

    #[test]
    fn files_started_together_share_one_call() {
        let (_dir, kms) = cached(CacheLimits::default());
        let start = std::sync::Barrier::new(8);
        let blobs: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        kms.generate_data_key(&request(&[], KeySpec::Aes256))
                            .unwrap()
                            .ciphertext_blob
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(calls(&kms), 1);
        assert!(blobs.iter().all(|b| b == &blobs[0]));
    }

    #[test]
    fn different_context_or_size_is_a_different_key() {
        let (_dir, kms) = cached(CacheLimits::default());
        let a = kms
            .generate_data_key(&request(&["a=b"], KeySpec::Aes256))
            .unwrap();
        let b = kms
            .generate_data_key(&request(&["a=c"], KeySpec::Aes256))
            .unwrap();
        let c = kms
            .generate_data_key(&request(&["a=b"], KeySpec::Aes128))
            .unwrap();
        assert_ne!(a.plaintext, b.plaintext);
        assert_eq!(c.plaintext.len(), 16);
        assert_eq!(calls(&kms), 3);
    }

    #[test]
    fn expired_keys_are_not_reused() {
        let limits = CacheLimits {
            max_age: Duration::ZERO,
            ..CacheLimits::default()
        };
        let (_dir, kms) = cached(limits);
        kms.generate_data_key(&request(&[], KeySpec::Aes256))
            .unwrap();
        kms.generate_data_key(&request(&[], KeySpec::Aes256))
            .unwrap();
        assert_eq!(calls(&kms), 2);
    }

    #[test]
    fn errors_are_not_cached_and_debug_hides_keys() {
        let (_dir, kms) = cached(CacheLimits::default());
        let mut bad = request(&[], KeySpec::Aes256);
        bad.key_id = "alias/none".into();
        assert!(kms.generate_data_key(&bad).is_err());
        assert!(kms.generate_data_key(&bad).is_err());
        let made = kms
            .generate_data_key(&request(&[], KeySpec::Aes256))
            .unwrap();
        let shown = format!("{kms:?}");
        assert!(
            !shown.contains(&format!("{:?}", made.plaintext.as_bytes())),
            "{shown}"
        );
    }
}
