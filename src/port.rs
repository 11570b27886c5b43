//! The narrow traits stages depend on. Each stage takes only the ports it uses, so its signature
//! states its least privilege, like its IAM policy. Real adapters and in-memory fakes live in
//! [`crate::adapter`].

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;

use crate::error::{BusError, GitError, StoreError};
use crate::event::BusEvent;

pub mod workload;

/// Identifies one version of an object, as an S3 event names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
}

/// A small object read whole, with the ETag needed for a conditional overwrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub body: Vec<u8>,
    pub etag: String,
}

/// The precondition of a write; S3 conditional writes make markers and ledgers race-free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// Create only: `If-None-Match: *`.
    Absent,
    /// Overwrite only the version we read: `If-Match: <etag>`.
    Matches(String),
}

/// Outcome of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Ok { etag: String },
    PreconditionFailed,
}

pub trait ObjectStore: Send + Sync {
    /// Streams one exact object version to a local file, failing with `TooLarge` past `max_bytes`
    /// and with `NotFound`/`Changed` when that version is gone. Memory stays flat.
    fn download(
        &self,
        object: &ObjectVersion,
        dest: &Path,
        max_bytes: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Uploads a local file (streamed from disk).
    fn upload_file(
        &self,
        bucket: &str,
        key: &str,
        src: &Path,
        content_type: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads a small object whole; `None` when it does not exist.
    fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Fetched>, StoreError>> + Send;

    /// Writes a small object under a precondition.
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        precondition: Precondition,
    ) -> impl Future<Output = Result<Written, StoreError>> + Send;

    /// Keys under a prefix, in lexicographic order, at most `limit`.
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

pub trait EventBus: Send + Sync {
    /// Puts events on the bus; succeeds only when every entry was accepted.
    fn put(&self, events: &[BusEvent]) -> impl Future<Output = Result<(), BusError>> + Send;
}

/// A Kubernetes condition as read from a workload's status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Condition {
    pub type_: String,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// What the watcher needs to know about one workload.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkloadState {
    pub kind: crate::config::WorkloadKind,
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    /// For optimistic concurrency on the marker annotations.
    pub resource_version: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub conditions: Vec<Condition>,
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    pub finished: Option<chrono::DateTime<chrono::Utc>>,
}

/// A pod of a workload that is not scheduled yet.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingPod {
    pub name: String,
    pub since: chrono::DateTime<chrono::Utc>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// Kubernetes API failures: permanent ones carry the apiserver's message.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{status} {reason}: {message}")]
    Rejected {
        status: u16,
        reason: String,
        message: String,
    },
    #[error("{status} {reason}: {message}")]
    Unavailable {
        status: u16,
        reason: String,
        message: String,
    },
    #[error("cannot reach cluster {cluster}")]
    Connect {
        cluster: String,
        #[source]
        source: crate::error::BoxError,
    },
}

impl crate::error::Classify for ClusterError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            ClusterError::Rejected { .. } => crate::error::ErrorClass::Permanent,
            _ => crate::error::ErrorClass::Transient,
        }
    }
}

/// How a workload's pod ended: what the watcher reports for an image build.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodReport {
    pub pod: String,
    /// The container's termination message (`/dev/termination-log`, or with
    /// `FallbackToLogsOnError` the end of its log when it failed without writing one).
    pub termination_message: Option<String>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    /// The last lines of the container's log.
    pub log_tail: Vec<String>,
}

/// A Secret's value: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(pub String);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// A Kubernetes Secret the pipeline keeps for its workloads (credentials a pod reads).
#[derive(Debug, Clone, PartialEq)]
pub struct SecretSpec {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    /// `kubernetes.io/dockerconfigjson` or `Opaque`.
    pub type_: String,
    pub labels: BTreeMap<String, String>,
    pub data: BTreeMap<String, SecretValue>,
}

/// Workloads on a cluster (EKS through kube, or the local executor): training workloads and
/// image builds.
pub trait Cluster: Send + Sync {
    /// Server-side applies the workload (field manager `mlops`).
    fn apply(
        &self,
        w: &workload::Workload,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;

    fn get(
        &self,
        kind: crate::config::WorkloadKind,
        cluster: &str,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<WorkloadState>, ClusterError>> + Send;

    /// Workloads of one kind labelled `app.kubernetes.io/managed-by=mlops`; a kind whose CRD is
    /// not installed yields none.
    fn list(
        &self,
        kind: crate::config::WorkloadKind,
        cluster: &str,
        namespace: &str,
    ) -> impl Future<Output = Result<Vec<WorkloadState>, ClusterError>> + Send;

    /// Sets an annotation if the object is still at `resource_version`; `false` when another
    /// writer got there first (409 Conflict).
    fn annotate(
        &self,
        w: &WorkloadState,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<bool, ClusterError>> + Send;

    /// The workload's pods that are Pending.
    fn pending_pods(
        &self,
        w: &WorkloadState,
    ) -> impl Future<Output = Result<Vec<PendingPod>, ClusterError>> + Send;

    /// Server-side applies a Secret (field manager `mlops`).
    fn apply_secret(&self, s: &SecretSpec)
    -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// How the workload's last pod ended (`None` while none has terminated).
    fn pod_report(
        &self,
        w: &WorkloadState,
    ) -> impl Future<Output = Result<Option<PodReport>, ClusterError>> + Send;
}

/// An MLflow run found by its `mlops.run_id` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedRun {
    pub run_id: String,
    pub experiment_id: String,
    /// MLflow 3 logged model of the run (`m-…`), where its model artifacts live.
    pub model_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("MLflow {op} answered {status}: {message}")]
    Api {
        op: &'static str,
        status: u16,
        message: String,
    },
    #[error("MLflow {op} failed")]
    Http {
        op: &'static str,
        #[source]
        source: crate::error::BoxError,
    },
}

impl crate::error::Classify for RegistryError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Transient
    }
}

/// The MLflow tracking server and model registry.
pub trait Registry: Send + Sync {
    fn find_run(
        &self,
        experiment: &str,
        mlops_run_id: &str,
    ) -> impl Future<Output = Result<Option<TrackedRun>, RegistryError>> + Send;
    /// Versions of `model` created from an MLflow run.
    fn versions_of_run(
        &self,
        model: &str,
        run_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, RegistryError>> + Send;
    /// Registers the run's logged model (`runs:/<id>/model`) as a new version; returns it.
    fn register(
        &self,
        model: &str,
        run: &TrackedRun,
        mlops_run_id: &str,
    ) -> impl Future<Output = Result<String, RegistryError>> + Send;
}

/// Functions of the dev stack share one local cluster.
impl<T: Cluster> Cluster for std::sync::Arc<T> {
    fn apply(
        &self,
        w: &workload::Workload,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send {
        (**self).apply(w)
    }
    fn get(
        &self,
        kind: crate::config::WorkloadKind,
        cluster: &str,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<WorkloadState>, ClusterError>> + Send {
        (**self).get(kind, cluster, namespace, name)
    }
    fn list(
        &self,
        kind: crate::config::WorkloadKind,
        cluster: &str,
        namespace: &str,
    ) -> impl Future<Output = Result<Vec<WorkloadState>, ClusterError>> + Send {
        (**self).list(kind, cluster, namespace)
    }
    fn annotate(
        &self,
        w: &WorkloadState,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<bool, ClusterError>> + Send {
        (**self).annotate(w, key, value)
    }
    fn pending_pods(
        &self,
        w: &WorkloadState,
    ) -> impl Future<Output = Result<Vec<PendingPod>, ClusterError>> + Send {
        (**self).pending_pods(w)
    }
    fn apply_secret(
        &self,
        s: &SecretSpec,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send {
        (**self).apply_secret(s)
    }
    fn pod_report(
        &self,
        w: &WorkloadState,
    ) -> impl Future<Output = Result<Option<PodReport>, ClusterError>> + Send {
        (**self).pod_report(w)
    }
}

/// Registration status of a model version (`ModelVersionStatus` in MLflow's protos).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionStatus {
    Ready,
    Pending,
    Failed(String),
}

/// A model version as the registry describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersion {
    pub model: String,
    pub version: String,
    pub status: VersionStatus,
    pub source: String,
    /// The MLflow run it was registered from, if any.
    pub mlflow_run_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub aliases: Vec<String>,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
}

/// What an MLflow run recorded: the latest value of each metric, params and tags. A metric
/// logged as NaN or ±inf keeps that value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRecord {
    pub metrics: BTreeMap<String, f64>,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

/// The model registry as the validation gate uses it: read versions, runs and aliases; write a
/// version's tags and move an alias.
pub trait ModelRegistry: Send + Sync {
    fn version(
        &self,
        model: &str,
        version: &str,
    ) -> impl Future<Output = Result<Option<ModelVersion>, RegistryError>> + Send;
    fn run(
        &self,
        mlflow_run_id: &str,
    ) -> impl Future<Output = Result<Option<RunRecord>, RegistryError>> + Send;
    /// Versions of `model` created at or after `since_ms` (Unix milliseconds), oldest first.
    fn versions_since(
        &self,
        model: &str,
        since_ms: i64,
    ) -> impl Future<Output = Result<Vec<ModelVersion>, RegistryError>> + Send;
    /// The version behind `alias`, if the alias exists.
    fn alias(
        &self,
        model: &str,
        alias: &str,
    ) -> impl Future<Output = Result<Option<String>, RegistryError>> + Send;
    fn set_version_tag(
        &self,
        model: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;
    fn set_alias(
        &self,
        model: &str,
        alias: &str,
        version: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;
}

/// Who a commit is by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitAuthor {
    pub name: String,
    pub email: String,
}

/// A file's new content in a commit; `None` removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: String,
    pub content: Option<Vec<u8>>,
    /// Compare-and-swap: apply only while the file still holds this (`Some(None)`: is absent),
    /// also on the tip a lost push race re-applies to; otherwise the commit fails with
    /// [`GitError::Stale`] and nothing is pushed. `None` applies unconditionally.
    pub expected: Option<Option<Vec<u8>>>,
}

/// One commit on a branch: the changes are re-applied on the latest tip when a push races.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSpec {
    pub branch: String,
    pub message: String,
    pub author: GitAuthor,
    pub changes: Vec<FileChange>,
}

/// What a commit or revert did on the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// `commit` is on the branch, on top of `parent`, after `attempts` pushes.
    Committed {
        commit: String,
        parent: String,
        attempts: u32,
    },
    /// The branch already had the change; nothing was pushed.
    Unchanged { head: String },
}

/// A Git repository reached over the network (the GitOps manifests repo).
pub trait GitRemote: Send + Sync {
    /// A file of the branch's tip, `None` when it does not exist.
    fn read_file(
        &self,
        branch: &str,
        path: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, GitError>> + Send;
    /// Commits the changes on the branch and pushes without force.
    fn commit(&self, spec: &CommitSpec) -> impl Future<Output = Result<Pushed, GitError>> + Send;
    /// Commits the inverse of `commit` (which must be on the branch) and pushes.
    fn revert(
        &self,
        branch: &str,
        commit: &str,
        message: &str,
        author: &GitAuthor,
    ) -> impl Future<Output = Result<Pushed, GitError>> + Send;
}

/// The parts of an Argo CD `v1alpha1Application` (argo-cd `assets/swagger.json`) the deployment
/// stage reads; everything else is ignored.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgoApplication {
    #[serde(default)]
    pub spec: ArgoSpec,
    /// A requested operation not yet picked up by the controller.
    #[serde(default)]
    pub operation: Option<serde_json::Value>,
    #[serde(default)]
    pub status: ArgoStatus,
}

impl ArgoApplication {
    /// `spec.syncPolicy.automated` is set: Argo CD syncs by itself (a manual sync during its
    /// own operation is refused), so a refresh is what to ask for.
    pub fn auto_synced(&self) -> bool {
        self.spec
            .sync_policy
            .as_ref()
            .is_some_and(|p| p.automated.as_ref().is_some_and(|a| !a.is_null()))
    }
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgoSpec {
    #[serde(default)]
    pub sync_policy: Option<ArgoSyncPolicy>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct ArgoSyncPolicy {
    #[serde(default)]
    pub automated: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgoStatus {
    #[serde(default)]
    pub sync: ArgoSync,
    #[serde(default)]
    pub health: ArgoHealth,
    #[serde(default)]
    pub operation_state: Option<ArgoOperationState>,
    #[serde(default)]
    pub reconciled_at: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct ArgoSync {
    /// `Synced` | `OutOfSync` | `Unknown`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub revision: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct ArgoHealth {
    /// `Healthy` | `Progressing` | `Degraded` | `Suspended` | `Missing` | `Unknown`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgoOperationState {
    /// `Running` | `Terminating` | `Failed` | `Error` | `Succeeded`.
    #[serde(default)]
    pub phase: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub sync_result: Option<ArgoSyncResult>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct ArgoSyncResult {
    #[serde(default)]
    pub revision: String,
}

/// Argo CD API failures (errors come back as `runtimeError {code, error, message}` through
/// grpc-gateway, CONTRACTS §7).
#[derive(Debug, thiserror::Error)]
pub enum ArgoError {
    /// 401/403: a missing, expired or under-privileged token, or an application the account
    /// cannot see (Argo CD answers "permission denied" for unknown apps too).
    #[error("Argo CD refused {op} of {app}: {status} {message}")]
    Refused {
        op: &'static str,
        app: String,
        status: u16,
        message: String,
    },
    /// `FailedPrecondition "another operation is already in progress"`: try again later.
    #[error("Argo CD: another operation on {app} is already in progress")]
    Busy { app: String },
    /// Another 4xx: the request itself is wrong for this application.
    #[error("Argo CD rejected {op} of {app}: {status} {message}")]
    Rejected {
        op: &'static str,
        app: String,
        status: u16,
        message: String,
    },
    /// 5xx, a timeout, an unreadable answer: transient.
    #[error("Argo CD {op} of {app} failed: {message}")]
    Unavailable {
        op: &'static str,
        app: String,
        message: String,
    },
}

impl crate::error::Classify for ArgoError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            ArgoError::Refused { .. } | ArgoError::Rejected { .. } => {
                crate::error::ErrorClass::Permanent
            }
            _ => crate::error::ErrorClass::Transient,
        }
    }
}

/// The Argo CD API as deploy-sync uses it (the account needs `applications, get` and `sync`).
pub trait ArgoCd: Send + Sync {
    /// `GET /api/v1/applications/{name}`, with `refresh=normal` when `refresh`.
    fn application(
        &self,
        app: &str,
        refresh: bool,
    ) -> impl Future<Output = Result<ArgoApplication, ArgoError>> + Send;
    /// `POST /api/v1/applications/{name}/sync` to `revision` (asynchronous: it sets
    /// `.operation`).
    fn sync(&self, app: &str, revision: &str)
    -> impl Future<Output = Result<(), ArgoError>> + Send;
}

/// A queue a function sends itself messages through, delivered after a delay (SQS
/// `DelaySeconds`): how a Lambda waits minutes without sleeping.
pub trait DelayQueue: Send + Sync {
    fn send(
        &self,
        body: String,
        delay: std::time::Duration,
    ) -> impl Future<Output = Result<(), BusError>> + Send;
}

/// Annotations a release puts on the serving Deployment and its pods (the deployment stage
/// writes them, the serving stage reads them).
pub const MODEL_ANNOTATION: &str = "mlops.io/model";
pub const VERSION_ANNOTATION: &str = "mlops.io/model-version";
pub const RUN_ANNOTATION: &str = "mlops.io/run-id";

/// A serving Deployment as the scaler reads it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServingDeployment {
    pub namespace: String,
    pub name: String,
    /// `spec.replicas` (1 when unset).
    pub replicas: u32,
    /// `spec.selector.matchLabels` as a label selector (`k=v,k2=v2`).
    pub selector: String,
    /// The scale patch applies only to this version (409 otherwise).
    pub resource_version: String,
    pub annotations: BTreeMap<String, String>,
}

/// One pod of a serving Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingPod {
    pub name: String,
    /// The Ready condition is True and the pod is not being deleted.
    pub ready: bool,
}

/// Another controller that owns a Deployment's replica count: the scaler then moves its
/// bounds instead of the count, so two controllers never fight (CONTRACTS §10, §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Autoscaler {
    /// `autoscaling/v2` HorizontalPodAutoscaler.
    Hpa { name: String, min: u32, max: u32 },
    /// `keda.sh/v1alpha1` ScaledObject.
    ScaledObject { name: String, min: u32, max: u32 },
}

impl Autoscaler {
    pub fn describe(&self) -> String {
        match self {
            Autoscaler::Hpa { name, .. } => format!("HorizontalPodAutoscaler/{name}"),
            Autoscaler::ScaledObject { name, .. } => format!("ScaledObject/{name}"),
        }
    }

    pub fn bounds(&self) -> (u32, u32) {
        match self {
            Autoscaler::Hpa { min, max, .. } | Autoscaler::ScaledObject { min, max, .. } => {
                (*min, *max)
            }
        }
    }
}

/// The serving side of a cluster, as the vllm-scaler needs it (RBAC: get deployments, list
/// pods, get pods/proxy, patch deployments/scale, list and patch HPAs and ScaledObjects, in the
/// serving namespace only).
pub trait ServingCluster: Send + Sync {
    fn deployment(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<ServingDeployment>, ClusterError>> + Send;

    /// The pods matching a label selector (terminating ones excluded).
    fn pods(
        &self,
        namespace: &str,
        selector: &str,
    ) -> impl Future<Output = Result<Vec<ServingPod>, ClusterError>> + Send;

    /// `GET` on a pod's port through the apiserver's pod proxy; the body as text.
    fn scrape(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
        path: &str,
    ) -> impl Future<Output = Result<String, ClusterError>> + Send;

    /// The HPA or ScaledObject whose target is this Deployment, if any.
    fn autoscaler(
        &self,
        namespace: &str,
        deployment: &str,
    ) -> impl Future<Output = Result<Option<Autoscaler>, ClusterError>> + Send;

    /// Patches the Deployment's `scale` subresource at `d.resource_version`; `false` when the
    /// Deployment changed since it was read (409 Conflict).
    fn scale(
        &self,
        d: &ServingDeployment,
        replicas: u32,
    ) -> impl Future<Output = Result<bool, ClusterError>> + Send;

    /// Sets an autoscaler's min/max replicas.
    fn bound(
        &self,
        namespace: &str,
        autoscaler: &Autoscaler,
        min: u32,
        max: u32,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
}

/// What one vLLM pod reports (summed over its engines), from `/metrics` or Prometheus.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VllmMetrics {
    /// `vllm:num_requests_running`.
    pub running: f64,
    /// `vllm:num_requests_waiting`.
    pub waiting: f64,
    /// `vllm:kv_cache_usage_perc`, or the older `vllm:gpu_cache_usage_perc` (0..1).
    pub kv_usage: Option<f64>,
    /// `vllm:prompt_tokens_total`.
    pub prompt_tokens_total: Option<f64>,
    /// `vllm:generation_tokens_total`.
    pub generation_tokens_total: Option<f64>,
    /// `vllm:time_to_first_token_seconds`: cumulative (upper bound, count) buckets, and count.
    pub ttft_buckets: Vec<(f64, f64)>,
    pub ttft_count: Option<f64>,
}

/// One pod's vLLM metrics, read by whichever source is configured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodReading {
    pub metrics: VllmMetrics,
    /// Token rates (prompt, generated) per second when the source computes them (Prometheus'
    /// `rate()`); otherwise the scaler derives them from the counters between evaluations.
    pub rates: Option<(f64, f64)>,
}

/// Where the scaler reads vLLM's metrics: the pods themselves (through the apiserver's pod
/// proxy) or a Prometheus query API.
pub trait ServingMetrics: Send + Sync {
    /// Per pod: its reading, or why there is none (the policy treats that pod as blind).
    fn read(
        &self,
        namespace: &str,
        pods: &[String],
        model_name: Option<&str>,
        port: u16,
    ) -> impl Future<Output = BTreeMap<String, Result<PodReading, String>>> + Send;
}

/// Short-lived credentials that let a build pod push to a registry.
#[derive(Debug, Clone, PartialEq)]
pub struct PushCredentials {
    /// `<account>.dkr.ecr.<region>.amazonaws.com`, as `config.json` keys it.
    pub registry: String,
    /// base64 of `user:password`, as `config.json`'s `auth` holds it.
    pub auth: SecretValue,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageRegistryError {
    /// The request cannot succeed as is (no such repository, access denied).
    #[error("{op}: {message}")]
    Refused { op: &'static str, message: String },
    #[error("{op} failed")]
    Unavailable {
        op: &'static str,
        #[source]
        source: crate::error::BoxError,
    },
}

impl crate::error::Classify for ImageRegistryError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            ImageRegistryError::Refused { .. } => crate::error::ErrorClass::Permanent,
            ImageRegistryError::Unavailable { .. } => crate::error::ErrorClass::Transient,
        }
    }
}

/// The container registry trainer images are pushed to (Amazon ECR).
pub trait ImageRegistry: Send + Sync {
    /// The digest of `<repository>:<tag>` when that tag exists.
    fn image_digest(
        &self,
        repository: &str,
        tag: &str,
    ) -> impl Future<Output = Result<Option<String>, ImageRegistryError>> + Send;
    /// Credentials for the registry that holds `repository`.
    fn push_credentials(
        &self,
        repository: &str,
    ) -> impl Future<Output = Result<PushCredentials, ImageRegistryError>> + Send;
}
