//! The bus contract: every detail-type of the pipeline (ARCHITECTURE §1–2).
//!
//! These Rust types are the source of truth. JSON Schemas are generated from them into
//! `events/schemas/` (`mlops schemas --write`), a test fails when the committed copies are stale,
//! and every type has a sample in `events/samples/` that a test validates against its schema.
//! Every detail carries `schema_version` and the pipeline run's `run_id`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Version of the detail schemas; bumped on a breaking change.
pub const SCHEMA_VERSION: &str = "1";

/// A detail type: its wire name and the function that emits it (`source = mlops.<function>`).
pub trait Detail: Serialize + DeserializeOwned + JsonSchema {
    const DETAIL_TYPE: &'static str;
    const FUNCTION: &'static str;
    fn run_id(&self) -> &str;
}

/// An event ready for PutEvents.
#[derive(Debug, Clone, PartialEq)]
pub struct BusEvent {
    pub source: String,
    pub detail_type: String,
    pub detail: serde_json::Value,
}

impl BusEvent {
    pub fn new<D: Detail>(detail: &D) -> Result<BusEvent, serde_json::Error> {
        Ok(BusEvent {
            source: format!("mlops.{}", D::FUNCTION),
            detail_type: D::DETAIL_TYPE.to_owned(),
            detail: serde_json::to_value(detail)?,
        })
    }

    pub fn run_id(&self) -> Option<&str> {
        self.detail.get("run_id").and_then(|v| v.as_str())
    }
}

/// Mints a pipeline run id: sortable by time, unique, and valid as a Kubernetes label value.
pub fn new_run_id() -> String {
    let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let rand = uuid::Uuid::new_v4().simple().to_string();
    format!("run-{now}-{}", &rand[..8])
}

macro_rules! details {
    ($($ty:ident => $func:literal),* $(,)?) => {
        $(impl Detail for $ty {
            const DETAIL_TYPE: &'static str = stringify!($ty);
            const FUNCTION: &'static str = $func;
            fn run_id(&self) -> &str { &self.run_id }
        })*

        /// Every detail type: (detail-type, emitting function, JSON Schema).
        pub fn all_schemas() -> Vec<(&'static str, &'static str, schemars::Schema)> {
            vec![$((stringify!($ty), $func, schemars::schema_for!($ty))),*]
        }

        /// Parses a detail of the named type and serializes it back (round-trip check).
        pub fn roundtrip_detail(detail_type: &str, detail: &serde_json::Value) -> Result<serde_json::Value, String> {
            match detail_type {
                $(stringify!($ty) => {
                    let typed: $ty = serde_json::from_value(detail.clone()).map_err(|e| e.to_string())?;
                    serde_json::to_value(&typed).map_err(|e| e.to_string())
                })*
                other => Err(format!("unknown detail-type {other}")),
            }
        }
    };
}

details! {
    ModelCodePushed => "git-webhook",
    ImageBuildSubmitted => "build-image",
    ImageBuilt => "training-watch",
    ImageBuildFailed => "training-watch",
    DatasetReady => "data-arrival",
    DatasetRejected => "data-arrival",
    TrainingJobSubmitted => "launch-training",
    TrainingJobSucceeded => "training-watch",
    TrainingJobFailed => "training-watch",
    TrainingJobStalled => "training-watch",
    ModelVersionCreated => "mlflow-webhook",
    ModelVersionAliasChanged => "mlflow-webhook",
    ModelVersionTagSet => "mlflow-webhook",
    ModelValidated => "validate-model",
    ModelRejected => "validate-model",
    ModelPromoted => "promote-model",
    PromotionFailed => "promote-model",
    GitPushed => "git-webhook",
    DeploymentHealthy => "deploy-sync",
    DeploymentRolledBack => "deploy-sync",
    DeploymentSkipped => "deploy-sync",
    DeploymentFailed => "deploy-sync",
    ServingScaled => "vllm-scaler",
}

/// Where a detail type sits in a pipeline run; orders a run's events that share a timestamp
/// (EventBridge times have one-second resolution).
pub fn pipeline_order(detail_type: &str) -> usize {
    const ORDER: &[&str] = &[
        "ModelCodePushed",
        "ImageBuildSubmitted",
        "ImageBuilt",
        "ImageBuildFailed",
        "DatasetReady",
        "DatasetRejected",
        "TrainingJobSubmitted",
        "TrainingJobStalled",
        "TrainingJobSucceeded",
        "TrainingJobFailed",
        "ModelVersionCreated",
        "ModelVersionTagSet",
        "ModelValidated",
        "ModelRejected",
        "ModelPromoted",
        "PromotionFailed",
        "GitPushed",
        "DeploymentSkipped",
        "DeploymentHealthy",
        "DeploymentRolledBack",
        "DeploymentFailed",
        "ModelVersionAliasChanged",
        "ServingScaled",
    ];
    ORDER
        .iter()
        .position(|t| *t == detail_type)
        .unwrap_or(ORDER.len())
}

/// The S3 object an event concerns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SourceObject {
    pub bucket: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// Row counts of one preparation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Counts {
    /// Data rows read (header excluded).
    pub input: u64,
    /// Rows dropped for a null in any column.
    pub dropped_nulls: u64,
    /// Rows dropped as exact duplicates of an earlier row (compared on parsed values).
    pub dropped_duplicates: u64,
    pub train: u64,
    pub test: u64,
}

/// A clean, split dataset version exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatasetReady {
    pub schema_version: String,
    pub run_id: String,
    pub dataset: String,
    /// Content hash of the source object and preparation settings: the dataset version.
    pub version: String,
    pub format: String,
    pub train_uri: String,
    pub test_uri: String,
    pub manifest_uri: String,
    pub counts: Counts,
    pub source: SourceObject,
    /// The model to train from this dataset, when the pipeline config names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Why an object cannot become a dataset; `column` and `line` point at the problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reason {
    /// Machine-readable code, e.g. `missing_column`, `wrong_type`, `empty_file`, `unreadable`,
    /// `object_deleted`, `object_changed`, `too_large`, `no_rows_left`.
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

/// The object cannot become a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatasetRejected {
    pub schema_version: String,
    pub run_id: String,
    pub dataset: String,
    pub source: SourceObject,
    pub reasons: Vec<Reason>,
}

/// A Kubernetes training workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkloadRef {
    /// `Job`, `PyTorchJob` or `TrainJob`.
    pub kind: String,
    pub api_version: String,
    pub cluster: String,
    pub namespace: String,
    pub name: String,
}

/// A training workload was applied to the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrainingJobSubmitted {
    pub schema_version: String,
    pub run_id: String,
    pub model: String,
    pub dataset: String,
    pub dataset_version: String,
    pub workload: WorkloadRef,
    /// The image it trains with, when a code push built it (`<repository>@<digest>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The trainer's source commit, when a code push started the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
}

/// A push changed a model's trainer code (its source repository, under the build context).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelCodePushed {
    pub schema_version: String,
    pub run_id: String,
    pub model: String,
    pub repo: String,
    #[serde(rename = "ref")]
    pub ref_: String,
    /// The pushed tip: what is built.
    pub commit: String,
    /// Paths of the push under the build context (empty when the forge left them out).
    pub changed: Vec<String>,
    pub delivery_id: String,
}

/// An image build was submitted for a commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageBuildSubmitted {
    pub schema_version: String,
    pub run_id: String,
    pub model: String,
    pub commit: String,
    /// What the build pushes: `<repository>:<commit>`.
    pub image: String,
    pub workload: WorkloadRef,
}

/// The trainer image of a commit exists: built now, or found in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageBuilt {
    pub schema_version: String,
    pub run_id: String,
    pub model: String,
    pub commit: String,
    /// `<repository>:<commit>`.
    pub image: String,
    /// `sha256:…`: training pulls `<repository>@<digest>`.
    pub digest: String,
    /// The build workload; absent when the registry already had the tag and nothing was built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
}

/// An image build failed or could not be submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageBuildFailed {
    pub schema_version: String,
    pub run_id: String,
    pub model: String,
    pub commit: String,
    pub image: String,
    pub workload: WorkloadRef,
    pub condition: ConditionSummary,
    /// The build container's termination message (with `FallbackToLogsOnError`, the end of its
    /// log when it wrote none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_message: Option<String>,
    /// The last lines of the build's log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

/// A Kubernetes condition as reported by the workload's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConditionSummary {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The workload finished successfully.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrainingJobSucceeded {
    pub schema_version: String,
    pub run_id: String,
    pub model: String,
    pub dataset_version: String,
    pub workload: WorkloadRef,
    pub condition: ConditionSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u64>,
    /// The MLflow run the trainer logged to, found by its `mlops.run_id` tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow_run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
}

/// The workload failed, or could not be submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrainingJobFailed {
    pub schema_version: String,
    pub run_id: String,
    pub model: String,
    pub dataset_version: String,
    pub workload: WorkloadRef,
    pub condition: ConditionSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u64>,
}

/// The workload's pods stayed Pending past the configured time (e.g. no GPU capacity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrainingJobStalled {
    pub schema_version: String,
    pub run_id: String,
    pub model: String,
    pub dataset_version: String,
    pub workload: WorkloadRef,
    pub condition: ConditionSummary,
    pub pending_seconds: u64,
}

/// A version appeared in the MLflow model registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelVersionCreated {
    pub schema_version: String,
    pub run_id: String,
    pub model: String,
    pub version: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow_run_id: Option<String>,
    pub delivery_id: String,
}

/// An alias was set (`version` present) or deleted (`version` absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelVersionAliasChanged {
    pub schema_version: String,
    pub run_id: String,
    pub model: String,
    pub alias: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub delivery_id: String,
}

/// A tag was set on a model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelVersionTagSet {
    pub schema_version: String,
    pub run_id: String,
    pub model: String,
    pub version: String,
    pub key: String,
    pub value: String,
    pub delivery_id: String,
}

/// One gate check: a metric against its bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Check {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The bound, e.g. `>= 0.90` or `<= champion - 0.01`.
    pub bound: String,
    /// `pass`, `fail`, `missing` (a failure: the metric or manifest is absent) or `skipped`
    /// (does not apply, e.g. the champion lacks the metric).
    pub verdict: String,
}

/// The gate passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelValidated {
    pub schema_version: String,
    pub run_id: String,
    pub model: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion_version: Option<String>,
    pub checks: Vec<Check>,
}

/// The gate failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelRejected {
    pub schema_version: String,
    pub run_id: String,
    pub model: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion_version: Option<String>,
    pub checks: Vec<Check>,
    pub reason: String,
}

/// The release file was committed to the manifests repo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelPromoted {
    pub schema_version: String,
    pub run_id: String,
    pub model: String,
    pub version: String,
    pub repo: String,
    pub path: String,
    pub commit: String,
}

/// A validated version could not be promoted, for a reason retrying cannot fix (the token is
/// refused, the version has no S3 URI for its weights, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PromotionFailed {
    pub schema_version: String,
    pub run_id: String,
    pub model: String,
    pub version: String,
    pub reason: String,
}

/// The manifests repo moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GitPushed {
    pub schema_version: String,
    pub run_id: String,
    pub repo: String,
    #[serde(rename = "ref")]
    pub ref_: String,
    pub revision: String,
    /// Argo CD applications whose paths the push touched.
    pub applications: Vec<String>,
    pub delivery_id: String,
    /// The promotion commit this push reverts (the pipeline's own rollback, from its
    /// `Mlops-Rollback-Of:` trailer): synced and watched, never rolled back again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
    /// The pipeline's model releases in the push (from the commits' `Mlops-Model:` /
    /// `Mlops-Model-Version:` trailers), the newest per model; empty for a push by a person.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<ReleaseRef>,
}

/// A promotion commit in a push: what deploy-sync marks healthy or reverts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReleaseRef {
    /// The Argo CD application that deploys the model.
    pub application: String,
    pub model: String,
    pub version: String,
    /// The promotion commit.
    pub commit: String,
}

/// The application synced to the revision and is Healthy. `model`/`version` name the release
/// it serves (its `champion` alias moved there); absent for a push by a person and for the
/// pipeline's own revert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentHealthy {
    pub schema_version: String,
    pub run_id: String,
    pub application: String,
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The pipeline's revert this revision is (its `Mlops-Rollback-Of:` commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
    pub message: String,
}

/// The sync failed or the application degraded; the release commit was reverted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentRolledBack {
    pub schema_version: String,
    pub run_id: String,
    pub application: String,
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_revision: Option<String>,
    pub model: String,
    pub version: String,
    pub reason: String,
}

/// The application did not become healthy and nothing was reverted: a push by a person, the
/// pipeline's own revert (never rolled back again), a revert that conflicts with later commits,
/// or Argo CD refused the request (401/403, unknown application).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentFailed {
    pub schema_version: String,
    pub run_id: String,
    pub application: String,
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub reason: String,
}

/// Nothing was synced, and why (e.g. no Argo CD in the dev stack).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentSkipped {
    pub schema_version: String,
    pub run_id: String,
    pub application: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub reason: String,
}

/// The serving deployment's replicas changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServingScaled {
    pub schema_version: String,
    /// The run whose release the Deployment serves (its `mlops.io/run-id` annotation).
    pub run_id: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub deployment: String,
    pub from: u32,
    pub to: u32,
    pub reason: String,
    /// Set when an HPA or KEDA ScaledObject owns the replica count: `to` became its floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// The metric values the decision used, e.g. `vllm:num_requests_waiting`.
    pub metrics: BTreeMap<String, f64>,
}

/// The `detail` of an `aws.s3` "Object Created" event delivered through EventBridge
/// (CONTRACTS §1.1). Tolerates moto's variant (`eTag`, `reason: "ObjectCreated"`, §11) and
/// unknown fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct S3ObjectDetail {
    #[serde(default)]
    pub version: Option<String>,
    pub bucket: S3Bucket,
    pub object: S3Object,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct S3Bucket {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct S3Object {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, alias = "eTag", skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
}

/// Writes every detail type's JSON Schema to `dir/<DetailType>.json`; with `check`, writes
/// nothing and returns the names whose committed copy differs.
pub fn write_schemas(dir: &std::path::Path, check: bool) -> std::io::Result<Vec<String>> {
    let mut stale = Vec::new();
    for (name, text) in schema_files() {
        let path = dir.join(&name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != text {
            stale.push(name);
            if !check {
                std::fs::create_dir_all(dir)?;
                std::fs::write(&path, text)?;
            }
        }
    }
    Ok(stale)
}

/// Each schema as (file name, pretty JSON text).
pub fn schema_files() -> Vec<(String, String)> {
    all_schemas()
        .into_iter()
        .map(|(name, function, schema)| {
            let mut v = schema.to_value();
            if let Some(o) = v.as_object_mut() {
                o.insert("$id".into(), format!("mlops/{name}").into());
                o.entry("description")
                    .or_insert_with(|| format!("detail of {name} events").into());
                o.insert("x-source".into(), format!("mlops.{function}").into());
            }
            let text = serde_json::to_string_pretty(&v).unwrap_or_default();
            (format!("{name}.json"), format!("{text}\n"))
        })
        .collect()
}
