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

/// An in-memory cluster: workloads keyed by (kind, namespace, name) with a `resourceVersion`
/// that changes on every write, so annotation claims race as they do on a real apiserver.
#[derive(Default)]
pub struct MemoryCluster {
    objects: Mutex<BTreeMap<(String, String, String), crate::port::WorkloadState>>,
    pending: Mutex<BTreeMap<String, Vec<crate::port::PendingPod>>>,
    version: AtomicU64,
    /// Workloads applied, in order.
    pub applied: Mutex<Vec<crate::port::workload::Workload>>,
    /// Secrets applied, in order.
    pub secrets: Mutex<Vec<crate::port::SecretSpec>>,
    /// Pod reports by workload name.
    pub reports: Mutex<BTreeMap<String, crate::port::PodReport>>,
}

impl MemoryCluster {
    fn key(kind: crate::config::WorkloadKind, ns: &str, name: &str) -> (String, String, String) {
        (kind.kind().to_owned(), ns.to_owned(), name.to_owned())
    }
    /// Inserts or replaces a workload as a controller would leave it.
    pub fn put(&self, mut w: crate::port::WorkloadState) {
        w.resource_version = self.version.fetch_add(1, Ordering::SeqCst).to_string();
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Self::key(w.kind, &w.namespace, &w.name), w);
    }
    pub fn set_pending(&self, name: &str, pods: Vec<crate::port::PendingPod>) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), pods);
    }
    pub fn state(
        &self,
        kind: crate::config::WorkloadKind,
        ns: &str,
        name: &str,
    ) -> Option<crate::port::WorkloadState> {
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&Self::key(kind, ns, name))
            .cloned()
    }
}

impl crate::port::Cluster for MemoryCluster {
    async fn apply(
        &self,
        w: &crate::port::workload::Workload,
    ) -> Result<(), crate::port::ClusterError> {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(w.clone());
        let meta = &w.object["metadata"];
        let map = |v: &serde_json::Value| serde_json::from_value(v.clone()).unwrap_or_default();
        self.put(crate::port::WorkloadState {
            kind: w.kind,
            cluster: w.cluster.clone(),
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            labels: map(&meta["labels"]),
            annotations: map(&meta["annotations"]),
            ..Default::default()
        });
        Ok(())
    }
    async fn apply_secret(
        &self,
        spec: &crate::port::SecretSpec,
    ) -> Result<(), crate::port::ClusterError> {
        self.secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(spec.clone());
        Ok(())
    }
    async fn pod_report(
        &self,
        w: &crate::port::WorkloadState,
    ) -> Result<Option<crate::port::PodReport>, crate::port::ClusterError> {
        Ok(self
            .reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&w.name)
            .cloned())
    }
    async fn get(
        &self,
        kind: crate::config::WorkloadKind,
        _c: &str,
        ns: &str,
        name: &str,
    ) -> Result<Option<crate::port::WorkloadState>, crate::port::ClusterError> {
        Ok(self.state(kind, ns, name))
    }
    async fn list(
        &self,
        kind: crate::config::WorkloadKind,
        _c: &str,
        ns: &str,
    ) -> Result<Vec<crate::port::WorkloadState>, crate::port::ClusterError> {
        // Let concurrent watchers interleave here, as network calls would.
        tokio::task::yield_now().await;
        Ok(self
            .objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|w| w.kind == kind && w.namespace == ns)
            .cloned()
            .collect())
    }
    async fn annotate(
        &self,
        w: &crate::port::WorkloadState,
        key: &str,
        value: &str,
    ) -> Result<bool, crate::port::ClusterError> {
        let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        let Some(cur) = objects.get_mut(&Self::key(w.kind, &w.namespace, &w.name)) else {
            return Err(crate::port::ClusterError::Rejected {
                status: 404,
                reason: "NotFound".into(),
                message: w.name.clone(),
            });
        };
        if !w.resource_version.is_empty() && w.resource_version != cur.resource_version {
            return Ok(false);
        }
        cur.annotations.insert(key.to_owned(), value.to_owned());
        cur.resource_version = self.version.fetch_add(1, Ordering::SeqCst).to_string();
        Ok(true)
    }
    async fn pending_pods(
        &self,
        w: &crate::port::WorkloadState,
    ) -> Result<Vec<crate::port::PendingPod>, crate::port::ClusterError> {
        Ok(self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&w.name)
            .cloned()
            .unwrap_or_default())
    }
}

/// An in-memory MLflow: runs by `mlops.run_id` tag and registered versions.
#[derive(Default)]
pub struct MemoryRegistry {
    /// mlops run id → MLflow run id.
    pub runs: Mutex<BTreeMap<String, String>>,
    /// (model, MLflow run id) → versions.
    pub versions: Mutex<BTreeMap<(String, String), Vec<String>>>,
    pub registered: AtomicU64,
}

impl crate::port::Registry for MemoryRegistry {
    async fn find_run(
        &self,
        _experiment: &str,
        mlops_run_id: &str,
    ) -> Result<Option<crate::port::TrackedRun>, crate::port::RegistryError> {
        Ok(self
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(mlops_run_id)
            .map(|r| crate::port::TrackedRun {
                run_id: r.clone(),
                experiment_id: "1".into(),
                model_id: None,
            }))
    }
    async fn versions_of_run(
        &self,
        model: &str,
        run_id: &str,
    ) -> Result<Vec<String>, crate::port::RegistryError> {
        Ok(self
            .versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(model.to_owned(), run_id.to_owned()))
            .cloned()
            .unwrap_or_default())
    }
    async fn register(
        &self,
        model: &str,
        run: &crate::port::TrackedRun,
        _mlops_run_id: &str,
    ) -> Result<String, crate::port::RegistryError> {
        let n = self.registered.fetch_add(1, Ordering::SeqCst) + 1;
        let v = n.to_string();
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((model.to_owned(), run.run_id.clone()))
            .or_default()
            .push(v.clone());
        Ok(v)
    }
}

/// A [`crate::port::DelayQueue`] that keeps what was sent, with its delay.
#[derive(Default)]
pub struct MemoryQueue {
    sent: Mutex<Vec<(String, std::time::Duration)>>,
}

impl MemoryQueue {
    /// Takes every message sent so far.
    pub fn take(&self) -> Vec<(String, std::time::Duration)> {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl crate::port::DelayQueue for MemoryQueue {
    async fn send(&self, body: String, delay: std::time::Duration) -> Result<(), BusError> {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((body, delay));
        Ok(())
    }
}

/// An in-memory container registry: tags with digests, the lookups asked, a token to hand out,
/// and a refusal to answer every call with (a missing repository, denied access).
#[derive(Default)]
pub struct MemoryImageRegistry {
    /// (repository, tag) → digest.
    pub images: Mutex<BTreeMap<(String, String), String>>,
    /// (repository, tag) looked up, in order.
    pub asked: Mutex<Vec<(String, String)>>,
    /// The `auth` value (base64 of `user:password`) push credentials carry.
    pub auth: Mutex<String>,
    pub refuse: Mutex<Option<String>>,
}

impl crate::port::ImageRegistry for MemoryImageRegistry {
    async fn image_digest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<String>, crate::port::ImageRegistryError> {
        if let Some(message) = self
            .refuse
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(crate::port::ImageRegistryError::Refused {
                op: "ecr:DescribeImages",
                message,
            });
        }
        let key = (repository.to_owned(), tag.to_owned());
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(key.clone());
        Ok(self
            .images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned())
    }

    async fn push_credentials(
        &self,
        repository: &str,
    ) -> Result<crate::port::PushCredentials, crate::port::ImageRegistryError> {
        let registry = repository.split('/').next().unwrap_or_default().to_owned();
        Ok(crate::port::PushCredentials {
            registry,
            auth: crate::port::SecretValue(
                self.auth.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            ),
            expires_at: None,
        })
    }
}
