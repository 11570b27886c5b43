//! A webhook signing secret as a receiver holds it: read at start, and re-read at most once per
//! `refresh` when a signature does not match, so a rotated secret is picked up without a
//! redeploy while a flood of bad signatures cannot turn into a flood of Secrets Manager calls.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::error::BoxError;

/// Where a webhook secret comes from (Secrets Manager in the Lambda).
pub trait SecretSource: Send + Sync {
    /// The secrets currently valid (the new one first during a rotation).
    fn secrets(&self) -> impl Future<Output = Result<Vec<Vec<u8>>, BoxError>> + Send;
}

struct Cached {
    secrets: Vec<Vec<u8>>,
    read_at: Option<Instant>,
}

pub struct SecretCache<K> {
    pub source: K,
    refresh: Duration,
    cache: Mutex<Cached>,
}

impl<K: SecretSource> SecretCache<K> {
    pub fn new(source: K, refresh: Duration) -> Self {
        SecretCache {
            source,
            refresh,
            cache: Mutex::new(Cached {
                secrets: Vec::new(),
                read_at: None,
            }),
        }
    }

    /// Reads the secret now (at cold start), so the first delivery does not wait for it.
    pub async fn load(&self) -> Result<(), BoxError> {
        let fresh = self.source.secrets().await?;
        let mut c = self.cache.lock().await;
        c.secrets = fresh;
        c.read_at = Some(Instant::now());
        Ok(())
    }

    /// Runs `check` with the cached secrets; when it fails with a mismatched signature
    /// (`mismatch`), re-reads the secrets (rate-limited) and runs it once more.
    pub async fn verify<T, E>(
        &self,
        check: impl Fn(&[&[u8]]) -> Result<T, E>,
        mismatch: impl Fn(&E) -> bool,
    ) -> Result<T, E> {
        let first = {
            let c = self.cache.lock().await;
            let keys: Vec<&[u8]> = c.secrets.iter().map(Vec::as_slice).collect();
            check(&keys)
        };
        match first {
            Err(e) if mismatch(&e) => {}
            other => return other,
        }
        let mut c = self.cache.lock().await;
        if c.read_at.is_some_and(|t| t.elapsed() < self.refresh) {
            let keys: Vec<&[u8]> = c.secrets.iter().map(Vec::as_slice).collect();
            return check(&keys);
        }
        c.read_at = Some(Instant::now());
        match self.source.secrets().await {
            Ok(fresh) => c.secrets = fresh,
            Err(e) => tracing::warn!(error = %e, "re-reading the webhook secret failed"),
        }
        let keys: Vec<&[u8]> = c.secrets.iter().map(Vec::as_slice).collect();
        check(&keys)
    }
}
