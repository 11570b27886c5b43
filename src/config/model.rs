//! Per-model settings: how a model is trained (workload kind, image, resources, scheduling) and
//! the validation gate a new version must pass, and where its release is written for serving.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// One model of the pipeline.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ModelConfig {
    #[serde(default)]
    pub training: Option<TrainingConfig>,
    #[serde(default)]
    pub validation: Option<ValidationConfig>,
    #[serde(default)]
    pub serving: Option<ServingConfig>,
    /// Where the trainer's code lives: a push that changes it builds the image and retrains.
    #[serde(default)]
    pub source: Option<SourceConfig>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    /// `batch/v1` Job.
    #[default]
    Job,
    /// Kubeflow Training Operator `kubeflow.org/v1` PyTorchJob.
    PyTorchJob,
    /// Kubeflow Trainer `trainer.kubeflow.org/v1alpha1` TrainJob.
    TrainJob,
}

impl WorkloadKind {
    pub fn kind(self) -> &'static str {
        match self {
            WorkloadKind::Job => "Job",
            WorkloadKind::PyTorchJob => "PyTorchJob",
            WorkloadKind::TrainJob => "TrainJob",
        }
    }
    pub fn api_version(self) -> &'static str {
        match self {
            WorkloadKind::Job => "batch/v1",
            WorkloadKind::PyTorchJob => "kubeflow.org/v1",
            WorkloadKind::TrainJob => "trainer.kubeflow.org/v1alpha1",
        }
    }
    pub fn plural(self) -> &'static str {
        match self {
            WorkloadKind::Job => "jobs",
            WorkloadKind::PyTorchJob => "pytorchjobs",
            WorkloadKind::TrainJob => "trainjobs",
        }
    }
    pub fn from_kind(kind: &str) -> Option<WorkloadKind> {
        [
            WorkloadKind::Job,
            WorkloadKind::PyTorchJob,
            WorkloadKind::TrainJob,
        ]
        .into_iter()
        .find(|k| k.kind() == kind)
    }
    pub const ALL: [WorkloadKind; 3] = [
        WorkloadKind::Job,
        WorkloadKind::PyTorchJob,
        WorkloadKind::TrainJob,
    ];
}

/// Container resources. `gpu` is a whole number of `nvidia.com/gpu`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default)]
    pub gpu: u32,
    #[serde(default)]
    pub cpu: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Toleration {
    pub key: String,
    #[serde(default = "default_operator")]
    pub operator: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub effect: Option<String>,
}

fn default_operator() -> String {
    "Exists".into()
}

/// How the local dev stack runs the trainer instead of the container.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalRun {
    /// Command run from the repository root; `python` means the project's virtualenv Python.
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    #[serde(default)]
    pub kind: WorkloadKind,
    /// EKS cluster name; defaults to the function's `CLUSTER_NAME`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Namespace; defaults to the function's `TRAINING_NAMESPACE`.
    #[serde(default)]
    pub namespace: Option<String>,
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment for the trainer (the pipeline's own variables always win).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Extra tolerations; `nvidia.com/gpu: Exists NoSchedule` is added when GPUs are requested.
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// Hard limit on the workload's run time (`activeDeadlineSeconds`), e.g. `6h`.
    #[serde(default = "default_deadline", deserialize_with = "de_deadline")]
    pub deadline: u64,
    #[serde(default = "default_backoff")]
    pub backoff_limit: i32,
    /// How long a finished workload is kept (`ttlSecondsAfterFinished`).
    #[serde(default = "default_ttl", deserialize_with = "de_ttl")]
    pub ttl_after_finished: u64,
    #[serde(default)]
    pub service_account: Option<String>,
    /// PyTorchJob workers besides the master / TrainJob nodes.
    #[serde(default)]
    pub workers: u32,
    /// TrainJob runtime (`runtimeRef.name`).
    #[serde(default = "default_runtime")]
    pub runtime: String,
    /// Pods Pending longer than this make the workload `TrainingJobStalled`.
    #[serde(default, deserialize_with = "de_stall_after")]
    pub stall_after: Option<u64>,
    #[serde(default)]
    pub local: Option<LocalRun>,
}

fn default_deadline() -> u64 {
    6 * 3600
}
fn default_backoff() -> i32 {
    3
}
fn default_ttl() -> u64 {
    24 * 3600
}
fn default_runtime() -> String {
    "torch-distributed".into()
}

/// Parses `90`, `90s`, `30m`, `6h`, `1d` into seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1),
        Some((i, 'm')) => (&t[..i], 60),
        Some((i, 'h')) => (&t[..i], 3600),
        Some((i, 'd')) => (&t[..i], 86_400),
        _ => (t, 1),
    };
    let n = num.trim().parse::<u64>().map_err(|_| {
        format!("duration {s:?} is not a whole number with an optional unit (s, m, h, d)")
    })?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("duration {s:?} is too large"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    N(u64),
    S(String),
}

/// A duration field; errors name the field, since the YAML error's position alone is easy to miss.
fn de_secs<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<u64, D::Error> {
    match RawDuration::deserialize(d)? {
        RawDuration::N(n) => Ok(n),
        RawDuration::S(s) => parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("training.{field}: {e}"))),
    }
}

fn de_deadline<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    de_secs(d, "deadline")
}

fn de_ttl<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    de_secs(d, "ttl_after_finished")
}

fn de_stall_after<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_secs(d, "stall_after").map(Some)
}

impl TrainingConfig {
    /// Ranges the Kubernetes fields these settings become can hold.
    pub fn validate(&self) -> Result<(), String> {
        if self.deadline == 0 || i64::try_from(self.deadline).is_err() {
            return Err(format!(
                "training.deadline must be between 1 second and {} seconds, got {}",
                i64::MAX,
                self.deadline
            ));
        }
        if i32::try_from(self.ttl_after_finished).is_err() {
            return Err(format!(
                "training.ttl_after_finished must be at most {} seconds (about 68 years), got {}",
                i32::MAX,
                self.ttl_after_finished
            ));
        }
        if let Some(s) = self.stall_after
            && i64::try_from(s).is_err()
        {
            return Err(format!(
                "training.stall_after must be at most {} seconds, got {s}",
                i64::MAX
            ));
        }
        Ok(())
    }
}

/// `models.<name>.source`: the trainer's source repository and the image built from it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `https://…` (cloned by the build with the `mlops/git-token` secret).
    pub repo: String,
    #[serde(default = "default_source_branch")]
    pub branch: String,
    /// The build context: a directory of the repository (`.` for its root).
    #[serde(default = "default_context")]
    pub context: String,
    /// The Dockerfile, relative to the context.
    #[serde(default = "default_dockerfile")]
    pub dockerfile: String,
    /// The ECR repository that receives the image (`<account>.dkr.ecr.<region>.amazonaws.com/<name>`,
    /// no tag): a build pushes `<image>:<commit>`.
    pub image: String,
    /// The dataset to retrain on (default: the dataset naming this model; with several, the one
    /// with the newest ready version).
    #[serde(default)]
    pub dataset: Option<String>,
    /// Build namespace; defaults to the function's `BUILD_NAMESPACE`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// EKS cluster of the build; defaults to the function's `CLUSTER_NAME`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// The BuildKit rootless image the build runs (pin a release `-rootless` tag).
    #[serde(default = "default_builder_image")]
    pub builder_image: String,
    #[serde(default = "default_build_resources")]
    pub resources: Resources,
    /// CPU nodes: GPU nodes carry the `nvidia.com/gpu` taint, which the build does not tolerate.
    #[serde(default = "default_build_nodes")]
    pub node_selector: BTreeMap<String, String>,
    /// `activeDeadlineSeconds` of the build; under the ECR token's 12 hours.
    #[serde(
        default = "default_build_deadline",
        deserialize_with = "de_build_deadline"
    )]
    pub deadline: u64,
    #[serde(default)]
    pub service_account: Option<String>,
}

fn default_source_branch() -> String {
    "main".into()
}
fn default_context() -> String {
    ".".into()
}
fn default_dockerfile() -> String {
    "Dockerfile".into()
}
/// BuildKit's rootless image (moby/buildkit `examples/kubernetes/job.rootless.yaml` uses
/// `master-rootless`; a release tag is pinned here).
pub const DEFAULT_BUILDER_IMAGE: &str = "moby/buildkit:v0.23.2-rootless";
fn default_builder_image() -> String {
    DEFAULT_BUILDER_IMAGE.into()
}
fn default_build_resources() -> Resources {
    Resources {
        gpu: 0,
        cpu: Some("2".into()),
        memory: Some("4Gi".into()),
    }
}
fn default_build_nodes() -> BTreeMap<String, String> {
    BTreeMap::from([("kubernetes.io/os".to_owned(), "linux".to_owned())])
}
fn default_build_deadline() -> u64 {
    3600
}
fn de_build_deadline<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match RawDuration::deserialize(d)? {
        RawDuration::N(n) => Ok(n),
        RawDuration::S(s) => parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("source.deadline: {e}"))),
    }
}

/// The most a build may run: the ECR token it pushes with lasts 12 hours.
pub const MAX_BUILD_DEADLINE: u64 = 11 * 3600;

/// `(registry host, repository name)` of an ECR repository URI without tag or digest.
pub fn ecr_repository(image: &str) -> Option<(&str, &str)> {
    let (host, name) = image.split_once('/')?;
    let labels: Vec<&str> = host.split('.').collect();
    let ecr = labels.len() == 6
        && labels[0].len() == 12
        && labels[0].bytes().all(|b| b.is_ascii_digit())
        && labels[1] == "dkr"
        && labels[2] == "ecr"
        && !labels[3].is_empty()
        && labels[4] == "amazonaws"
        && labels[5] == "com";
    // Repository names: lower case, digits, `._-/` separators (ECR's pattern), no tag/digest.
    let name_ok = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    (ecr && name_ok).then_some((host, name))
}

impl SourceConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.repo.starts_with("https://") || self.repo.starts_with("http://")) {
            return Err(format!(
                "source.repo must be an https:// URL, got {:?}",
                self.repo
            ));
        }
        if self.branch.trim().is_empty() {
            return Err("source.branch is empty".into());
        }
        if ecr_repository(&self.image).is_none() {
            return Err(format!(
                "source.image must be an ECR repository URI without a tag \
                 (<account>.dkr.ecr.<region>.amazonaws.com/<name>), got {:?}",
                self.image
            ));
        }
        for (field, path) in [("context", &self.context), ("dockerfile", &self.dockerfile)] {
            if path.is_empty()
                || path.starts_with('/')
                || path.split('/').any(|p| p == "..")
                || path.contains(['#', ':', '\\'])
            {
                return Err(format!(
                    "source.{field} must be a relative path inside the repository, got {path:?}"
                ));
            }
        }
        if self.resources.gpu > 0 {
            return Err("source.resources: an image build needs no GPU".into());
        }
        if self.deadline == 0 || self.deadline > MAX_BUILD_DEADLINE {
            return Err(format!(
                "source.deadline must be between 1 second and {MAX_BUILD_DEADLINE} seconds (the ECR token it pushes with lasts 12 hours), got {}",
                self.deadline
            ));
        }
        Ok(())
    }

    /// The repository paths a push must touch to be a code change: the context, or the
    /// Dockerfile (which may sit outside it only as `context/../`, refused above).
    pub fn concerns(&self, path: &str) -> bool {
        let context = self.context.trim_end_matches('/');
        let dockerfile = if context == "." {
            self.dockerfile.clone()
        } else {
            format!("{context}/{}", self.dockerfile)
        };
        path == dockerfile
            || context == "."
            || path
                .strip_prefix(context)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("6h"), Ok(21_600));
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("1d"), Ok(86_400));
        assert!(parse_duration("soon").is_err());
        // 300000000000000 days overflows u64 seconds: an error, not a panic or a wrap.
        assert_eq!(
            parse_duration("300000000000000d"),
            Err("duration \"300000000000000d\" is too large".into())
        );
    }
}

/// The gate a new model version must pass to become the `challenger`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    /// Per-metric bounds: `{roc_auc: {min: 0.8}, latency_ms: {max: 50}}`. A thresholded metric
    /// must be present and finite.
    #[serde(default)]
    pub thresholds: BTreeMap<String, Bound>,
    /// Metrics that must be present and finite, with no bound.
    #[serde(default)]
    pub required: Vec<String>,
    /// Largest allowed regression against the `champion` version, in the metric's units:
    /// `{roc_auc: 0.01}`. Higher is better unless the metric is listed in `lower_is_better`
    /// (or its threshold has only a `max`). Skipped when there is no champion.
    #[serde(default)]
    pub max_regression: BTreeMap<String, f64>,
    /// Metrics where a smaller value is better (losses, error rates, latency).
    #[serde(default)]
    pub lower_is_better: Vec<String>,
    /// Checks on the dataset manifest the version's run names (`DATASET_VERSION`).
    #[serde(default)]
    pub dataset: Option<DatasetChecks>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DatasetChecks {
    #[serde(default)]
    pub min_train_rows: Option<u64>,
    #[serde(default)]
    pub min_test_rows: Option<u64>,
}

impl ValidationConfig {
    /// Whether a smaller value of `metric` is better.
    pub fn lower_is_better(&self, metric: &str) -> bool {
        self.lower_is_better.iter().any(|m| m == metric)
            || self
                .thresholds
                .get(metric)
                .is_some_and(|b| b.max.is_some() && b.min.is_none())
    }

    pub fn validate(&self) -> Result<(), String> {
        for (metric, b) in &self.thresholds {
            let at = format!("validation.thresholds.{metric}");
            if b.min.is_none() && b.max.is_none() {
                return Err(format!("{at}: give min, max or both"));
            }
            for v in [b.min, b.max].into_iter().flatten() {
                if !v.is_finite() {
                    return Err(format!("{at}: bounds must be finite numbers, got {v}"));
                }
            }
            if let (Some(lo), Some(hi)) = (b.min, b.max)
                && lo > hi
            {
                return Err(format!("{at}: min {lo} is above max {hi}"));
            }
        }
        for (metric, r) in &self.max_regression {
            if !r.is_finite() || *r < 0.0 {
                return Err(format!(
                    "validation.max_regression.{metric}: must be a finite number >= 0, got {r}"
                ));
            }
        }
        for (list, name) in [
            (&self.required, "required"),
            (&self.lower_is_better, "lower_is_better"),
        ] {
            if let Some(m) = list.iter().find(|m| m.is_empty()) {
                return Err(format!("validation.{name}: an empty metric name {m:?}"));
            }
        }
        Ok(())
    }
}

/// Which server serves a model.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// MLflow's model server (`mlflow models serve`), for classic models.
    Mlflow,
    /// vLLM's OpenAI-compatible server, for LLMs.
    Vllm,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Mlflow => "mlflow",
            Engine::Vllm => "vllm",
        }
    }
}

/// How the release names the model for the engine.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModelRef {
    /// `models:/<name>/<version>`, resolved by the MLflow model server (MLflow only).
    Registry,
    /// The version's storage: its `mlops.model_uri` tag, else its `source` when that is an
    /// `s3://` URI (vLLM loads S3 with `--load-format runai_streamer`).
    Artifact,
}

/// `models.<name>.serving`: where the pipeline writes the model's release and which Argo CD
/// application deploys it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServingConfig {
    pub engine: Engine,
    /// The model's directory in the manifests repo; the pipeline writes `release.yaml` there.
    pub manifests_path: String,
    pub argocd_app: String,
    /// Default: `registry` for MLflow, `artifact` for vLLM.
    #[serde(default)]
    pub model_ref: Option<ModelRef>,
    /// The Deployment the release patches. Default: the model name (MLflow), `vllm-<model>`.
    #[serde(default)]
    pub deployment: Option<String>,
    /// The serving container. Default `server`.
    #[serde(default)]
    pub container: Option<String>,
    /// Autoscaling by the vllm-scaler function (engine vllm).
    #[serde(default)]
    pub scaling: Option<ScalingConfig>,
}

/// `models.<name>.serving.scaling`: the vllm-scaler's policy for this model's Deployment
/// (`crate::stage::serving::policy`). Load is priced with a capacity profile's step costs: a
/// bundled one by name (`samples/serving/profiles.yaml`) or `cost` inline.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScalingConfig {
    /// The namespace the Deployment runs in (the Argo CD application's destination).
    pub namespace: String,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub cost: Option<crate::stage::serving::policy::StepCost>,
    /// vLLM's `--served-model-name` (the `model_name` label); default: every series of the pod.
    #[serde(default)]
    pub served_model_name: Option<String>,
    /// The server's port (the pod proxy reads `/metrics` there).
    #[serde(default = "default_vllm_port")]
    pub port: u16,
    /// A Prometheus query API (`https://prometheus.example/`) to read the metrics from instead
    /// of the pods.
    #[serde(default)]
    pub prometheus: Option<String>,
    #[serde(default = "default_min_replicas")]
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// β of square-root staffing (`load + β·√load` replicas); default 1.2.
    #[serde(default)]
    pub headroom: Option<f64>,
    /// The busiest a replica is planned to be; default 0.8.
    #[serde(default)]
    pub max_utilization: Option<f64>,
    #[serde(default)]
    pub max_waiting_per_replica: Option<f64>,
    #[serde(default)]
    pub kv_high: Option<f64>,
    #[serde(default)]
    pub max_surge: Option<u32>,
    /// From asking for a replica to its readiness; default: the profile's start-up delay.
    #[serde(default, deserialize_with = "de_scaling_start_up")]
    pub start_up: Option<u64>,
    /// Default: `start_up`, at least 10 minutes.
    #[serde(default, deserialize_with = "de_scaling_window")]
    pub scale_down_window: Option<u64>,
    /// With `min_replicas: 0`: idle this long, scale to zero.
    #[serde(default, deserialize_with = "de_scaling_idle")]
    pub idle_to_zero: Option<u64>,
}

fn default_vllm_port() -> u16 {
    8000
}
fn default_min_replicas() -> u32 {
    1
}

fn de_scaling_secs<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Option<u64>, D::Error> {
    match RawDuration::deserialize(d)? {
        RawDuration::N(n) => Ok(Some(n)),
        RawDuration::S(s) => parse_duration(&s)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("serving.scaling.{field}: {e}"))),
    }
}

fn de_scaling_start_up<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_scaling_secs(d, "start_up")
}

fn de_scaling_window<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_scaling_secs(d, "scale_down_window")
}

fn de_scaling_idle<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_scaling_secs(d, "idle_to_zero")
}

impl ScalingConfig {
    /// The policy this block describes, with its defaults filled in and checked.
    pub fn policy(&self) -> Result<crate::stage::serving::policy::ScalingPolicy, String> {
        use crate::stage::serving::policy::ScalingPolicy;
        use crate::stage::serving::profile;
        let bundled = match &self.profile {
            Some(name) => {
                let all = profile::parse(profile::PROFILES_YAML)?;
                Some(all.get(name).cloned().ok_or_else(|| {
                    format!(
                        "serving.scaling.profile {name:?} is not a bundled profile (known: {})",
                        all.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                })?)
            }
            None => None,
        };
        let cost = match (&self.cost, &bundled) {
            (Some(c), _) => *c,
            (None, Some(p)) => p.step_cost(),
            (None, None) => {
                return Err(
                    "serving.scaling needs a profile (bundled name) or a cost block".into(),
                );
            }
        };
        let start_up = self
            .start_up
            .map(|s| s as f64)
            .or(bundled.as_ref().map(|p| p.start_delay_s))
            .unwrap_or(600.0);
        let d = ScalingPolicy::new(self.min_replicas, self.max_replicas, cost, start_up);
        let p = ScalingPolicy {
            headroom: self.headroom.unwrap_or(d.headroom),
            max_utilization: self.max_utilization.unwrap_or(d.max_utilization),
            max_waiting_per_replica: self
                .max_waiting_per_replica
                .unwrap_or(d.max_waiting_per_replica),
            kv_high: self.kv_high.unwrap_or(d.kv_high),
            max_surge: self.max_surge.unwrap_or(d.max_surge),
            scale_down_window_s: self
                .scale_down_window
                .map_or(d.scale_down_window_s, |s| s as f64),
            idle_to_zero_s: self.idle_to_zero.map(|s| s as f64),
            ..d
        };
        p.validate()?;
        if self.namespace.is_empty() {
            return Err("serving.scaling.namespace must name the Deployment's namespace".into());
        }
        if let Some(url) = &self.prometheus
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(format!(
                "serving.scaling.prometheus must be an http(s) URL, got {url:?}"
            ));
        }
        Ok(p)
    }
}

impl ServingConfig {
    pub fn model_ref(&self) -> ModelRef {
        self.model_ref.unwrap_or(match self.engine {
            Engine::Mlflow => ModelRef::Registry,
            Engine::Vllm => ModelRef::Artifact,
        })
    }

    pub fn deployment(&self, model: &str) -> String {
        self.deployment
            .clone()
            .unwrap_or_else(|| match self.engine {
                Engine::Mlflow => model.to_owned(),
                Engine::Vllm => format!("vllm-{model}"),
            })
    }

    pub fn container(&self) -> &str {
        self.container.as_deref().unwrap_or("server")
    }

    /// The release file the pipeline owns.
    pub fn release_path(&self) -> String {
        format!("{}/release.yaml", self.manifests_path.trim_end_matches('/'))
    }

    pub fn validate(&self) -> Result<(), String> {
        let p = &self.manifests_path;
        let clean = !p.is_empty()
            && !p.starts_with('/')
            && p.trim_end_matches('/')
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && c != ".git");
        if !clean {
            return Err(format!(
                "serving.manifests_path must be a relative path inside the repo, got {p:?}"
            ));
        }
        if self.engine == Engine::Vllm && self.model_ref == Some(ModelRef::Registry) {
            return Err(
                "serving.model_ref: registry needs engine mlflow (vLLM loads weights, \
                        not MLflow models)"
                    .into(),
            );
        }
        let dns = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !s.starts_with('-')
                && !s.ends_with('-')
        };
        if let Some(scaling) = &self.scaling {
            if self.engine != Engine::Vllm {
                return Err("serving.scaling needs engine vllm (it reads vLLM's metrics)".into());
            }
            scaling.policy()?;
        }
        if !dns(&self.argocd_app) {
            return Err(format!(
                "serving.argocd_app must be a DNS label (Argo CD application name), got {:?}",
                self.argocd_app
            ));
        }
        Ok(())
    }
}
