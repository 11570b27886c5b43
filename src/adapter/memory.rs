//! In-memory fakes of the ports, for stage tests: same semantics as the real adapters
//! (conditional writes, exact-version downloads), plus switches to inject failures.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::{BusError, StoreError};
use crate::event::BusEvent;
use crate::port::{EventBus, Fetched, ObjectStore, ObjectVersion, Precondition, Written};

/// (bucket, key) → (body, etag)
type Objects = BTreeMap<(String, String), (Vec<u8>, String)>;

#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<Objects>,
    counter: AtomicU64,
    /// When set, every call fails as S3 would on a 5xx.
    pub fail: AtomicBool,
}

impl MemoryStore {
    pub fn insert(&self, bucket: &str, key: &str, body: Vec<u8>) -> String {
        let etag = format!("etag-{}", self.counter.fetch_add(1, Ordering::SeqCst));
        self.lock()
            .insert((bucket.into(), key.into()), (body, etag.clone()));
        etag
    }
    pub fn remove(&self, bucket: &str, key: &str) {
        self.lock().remove(&(bucket.into(), key.into()));
    }
    pub fn body(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.lock()
            .get(&(bucket.into(), key.into()))
            .map(|(b, _)| b.clone())
    }
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.lock()
            .keys()
            .filter(|(b, _)| b == bucket)
            .map(|(_, k)| k.clone())
            .collect()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn check(&self, op: &'static str, bucket: &str, key: &str) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::io(
                op,
                bucket,
                key,
                std::io::Error::other("injected failure"),
            ));
        }
        Ok(())
    }
}

impl ObjectStore for MemoryStore {
    async fn download(
        &self,
        o: &ObjectVersion,
        dest: &Path,
        max_bytes: u64,
    ) -> Result<u64, StoreError> {
        self.check("GetObject", &o.bucket, &o.key)?;
        let (body, etag) = self
            .lock()
            .get(&(o.bucket.clone(), o.key.clone()))
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                bucket: o.bucket.clone(),
                key: o.key.clone(),
            })?;
        if o.etag.as_ref().is_some_and(|e| *e != etag) {
            return Err(StoreError::Changed {
                bucket: o.bucket.clone(),
                key: o.key.clone(),
            });
        }
        if body.len() as u64 > max_bytes {
            return Err(StoreError::TooLarge {
                bucket: o.bucket.clone(),
                key: o.key.clone(),
                limit: max_bytes,
            });
        }
        std::fs::write(dest, &body)
            .map_err(|e| StoreError::io("GetObject (write)", &o.bucket, &o.key, e))?;
        Ok(body.len() as u64)
    }

    async fn upload_file(
        &self,
        bucket: &str,
        key: &str,
        src: &Path,
        _ct: &str,
    ) -> Result<(), StoreError> {
        self.check("PutObject", bucket, key)?;
        let body =
            std::fs::read(src).map_err(|e| StoreError::io("PutObject (read)", bucket, key, e))?;
        self.insert(bucket, key, body);
        Ok(())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Fetched>, StoreError> {
        self.check("GetObject", bucket, key)?;
        Ok(self
            .lock()
            .get(&(bucket.into(), key.into()))
            .map(|(b, e)| Fetched {
                body: b.clone(),
                etag: e.clone(),
            }))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        pre: Precondition,
    ) -> Result<Written, StoreError> {
        self.check("PutObject", bucket, key)?;
        let mut map = self.lock();
        let current = map
            .get(&(bucket.into(), key.into()))
            .map(|(_, e)| e.clone());
        let ok = match (&pre, &current) {
            (Precondition::None, _) => true,
            (Precondition::Absent, c) => c.is_none(),
            (Precondition::Matches(want), Some(have)) => want == have,
            (Precondition::Matches(_), None) => false,
        };
        if !ok {
            return Ok(Written::PreconditionFailed);
        }
        let etag = format!("etag-{}", self.counter.fetch_add(1, Ordering::SeqCst));
        map.insert((bucket.into(), key.into()), (body, etag.clone()));
        Ok(Written::Ok { etag })
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.check("ListObjectsV2", bucket, prefix)?;
        Ok(self
            .lock()
            .keys()
            .filter(|(b, k)| b == bucket && k.starts_with(prefix))
            .map(|(_, k)| k.clone())
            .take(limit)
            .collect())
    }
}

#[derive(Default)]
pub struct MemoryBus {
    events: Mutex<Vec<BusEvent>>,
    /// When set, PutEvents fails as on throttling.
    pub fail: AtomicBool,
}

impl MemoryBus {
    pub fn events(&self) -> Vec<BusEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl EventBus for MemoryBus {
    async fn put(&self, events: &[BusEvent]) -> Result<(), BusError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(BusError::Put {
                bus: "memory".into(),
                source: "injected failure".into(),
            });
        }
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(events);
        Ok(())
    }
}
