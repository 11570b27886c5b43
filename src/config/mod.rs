//! Pipeline configuration (`samples/pipeline.yaml` shows the format) and per-function settings
//! read from the environment once, at cold start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

mod model;
pub use model::{
    Bound, DEFAULT_BUILDER_IMAGE, DatasetChecks, Engine, LocalRun, MAX_BUILD_DEADLINE, ModelConfig,
    ModelRef, Resources, ScalingConfig, ServingConfig, SourceConfig, Toleration, TrainingConfig,
    ValidationConfig, WorkloadKind, ecr_repository, parse_duration,
};

/// The null markers pandas' `read_csv` recognises by default (`pandas._libs.parsers.STR_NA_VALUES`).
pub const PANDAS_NA_VALUES: &[&str] = &[
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read pipeline config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pipeline config {path} is not valid: {message}")]
    Invalid { path: String, message: String },
    #[error("missing environment variables: {}", .0.join(", "))]
    MissingEnv(Vec<String>),
    #[error("environment variable {name}={value:?} is not valid: {message}")]
    BadEnv {
        name: String,
        value: String,
        message: String,
    },
}

/// The whole pipeline: datasets now; models and the manifests repo join in later stages.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct PipelineConfig {
    pub datasets: BTreeMap<String, DatasetConfig>,
    /// Model settings, read by the training and later stages.
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    #[serde(default)]
    pub git: Option<GitConfig>,
    /// The Argo CD that deploys the manifests repo; without it deploy-sync reports every push
    /// as skipped.
    #[serde(default)]
    pub argocd: Option<ArgoCdConfig>,
}

/// `argocd`: where deploy-sync asks for syncs, and how long it watches one.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArgoCdConfig {
    /// `https://argocd.example.com` (the API token comes from Secrets Manager).
    pub server: String,
    /// The applications' namespace when Argo CD manages apps outside its own (`appNamespace`).
    #[serde(default)]
    pub app_namespace: Option<String>,
    /// Delay between two health checks (an SQS message delay, at most 15 minutes).
    #[serde(default = "default_check_every", deserialize_with = "de_check_every")]
    pub check_every: u64,
    /// A sync not Healthy this long after the push is rolled back. Size it for the slowest
    /// model load (vLLM: node + image + weights + engine start, SERVING.md §3).
    #[serde(
        default = "default_health_deadline",
        deserialize_with = "de_health_deadline"
    )]
    pub deadline: u64,
}

fn default_check_every() -> u64 {
    30
}
fn default_health_deadline() -> u64 {
    30 * 60
}

fn de_argocd_secs<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(n),
        Raw::S(s) => {
            parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("argocd.{field}: {e}")))
        }
    }
}

fn de_check_every<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    de_argocd_secs(d, "check_every")
}

fn de_health_deadline<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    de_argocd_secs(d, "deadline")
}

/// `git`: the GitOps manifests repository the deployment stage commits releases to.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GitConfig {
    /// `https://…` (the token comes from Secrets Manager, never from this file).
    pub manifests_repo: String,
    #[serde(default = "default_branch")]
    pub branch: String,
}

fn default_branch() -> String {
    "main".into()
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Parquet,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

/// The type a required column must have.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Int,
    Float,
    Bool,
    String,
}

/// `pandas` (its `read_csv` defaults) or an explicit list of strings that mean "no value".
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub enum NullMarkers {
    #[default]
    Pandas,
    List(Vec<String>),
}

impl NullMarkers {
    pub fn markers(&self) -> Vec<String> {
        match self {
            NullMarkers::Pandas => PANDAS_NA_VALUES.iter().map(|s| s.to_string()).collect(),
            NullMarkers::List(l) => l.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for NullMarkers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            List(Vec<String>),
        }
        match Raw::deserialize(d)? {
            Raw::Name(n) if n == "pandas" => Ok(NullMarkers::Pandas),
            Raw::Name(n) => Err(serde::de::Error::custom(format!(
                "null_markers must be \"pandas\" or a list of strings, not {n:?}"
            ))),
            Raw::List(l) => Ok(NullMarkers::List(l)),
        }
    }
}

/// One dataset: where its objects land and how they become a clean, split version.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// S3 keys under this prefix belong to the dataset.
    pub prefix: String,
    pub format: Format,
    /// The label column; it is always required.
    #[serde(default)]
    pub label: Option<String>,
    /// Required columns and their types; other columns are kept as they are.
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnType>,
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    #[serde(default)]
    pub null_markers: NullMarkers,
    /// Objects larger than this are rejected before they are read.
    #[serde(default = "default_max_bytes", deserialize_with = "de_bytes")]
    pub max_bytes: u64,
    /// CSV field delimiter (one ASCII character).
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// The model trained from this dataset (used by the training stage).
    #[serde(default)]
    pub model: Option<String>,
}

fn default_test_fraction() -> f64 {
    0.2
}
fn default_max_bytes() -> u64 {
    10 << 30
}
fn default_delimiter() -> char {
    ','
}

fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(n),
        Raw::S(s) => parse_bytes(&s).map_err(serde::de::Error::custom),
    }
}

/// Parses sizes such as `10GiB`, `512MB`, `1024` (bytes).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("size {s:?} does not start with a number"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        u => {
            return Err(format!(
                "size {s:?} has an unknown unit {u:?} (use B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    Ok((n * mult as f64) as u64)
}

impl PipelineConfig {
    pub fn from_yaml(text: &str, origin: &str) -> Result<PipelineConfig, ConfigError> {
        let cfg: PipelineConfig =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Invalid {
                path: origin.to_owned(),
                message: e.to_string(),
            })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: origin.to_owned(),
            message,
        })?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<PipelineConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    fn validate(&self) -> Result<(), String> {
        for (name, d) in &self.datasets {
            if let Some(m) = d.model.as_ref().filter(|m| !self.models.contains_key(*m)) {
                return Err(format!(
                    "dataset {name} names model {m:?}, which is not under models"
                ));
            }
            if d.prefix.is_empty() {
                return Err(format!("dataset {name}: prefix must not be empty"));
            }
            if !(d.test_fraction > 0.0 && d.test_fraction < 1.0) {
                return Err(format!(
                    "dataset {name}: test_fraction must be between 0 and 1 (exclusive), got {}",
                    d.test_fraction
                ));
            }
            if !d.delimiter.is_ascii() || (d.delimiter.is_ascii_control() && d.delimiter != '\t') {
                return Err(format!(
                    "dataset {name}: delimiter must be one printable ASCII character or a tab, got {:?}",
                    d.delimiter
                ));
            }
            if d.delimiter == '"' {
                return Err(format!(
                    "dataset {name}: the delimiter cannot be the quote character '\"'"
                ));
            }
            if let Some(other) = self
                .datasets
                .iter()
                .find(|(n, o)| *n != name && o.prefix == d.prefix)
            {
                return Err(format!(
                    "datasets {name} and {} share the prefix {:?}",
                    other.0, d.prefix
                ));
            }
        }
        for (name, m) in &self.models {
            if let Some(t) = &m.training {
                t.validate().map_err(|e| format!("model {name}: {e}"))?;
            }
            if let Some(v) = &m.validation {
                v.validate().map_err(|e| format!("model {name}: {e}"))?;
            }
            if let Some(src) = &m.source {
                src.validate().map_err(|e| format!("model {name}: {e}"))?;
                if m.training.is_none() {
                    return Err(format!(
                        "model {name} has a source block but no training block: nothing would train the image"
                    ));
                }
                if let Some(d) = &src.dataset
                    && !self.datasets.contains_key(d)
                {
                    return Err(format!(
                        "model {name}: source.dataset {d:?} is not under datasets"
                    ));
                }
                if let Some(g) = &self.git
                    && crate::stage::deploy::push::normalize_repo_url(&g.manifests_repo)
                        == crate::stage::deploy::push::normalize_repo_url(&src.repo)
                {
                    return Err(format!(
                        "model {name}: source.repo is the manifests repo; a push is either a release or a code change, never both"
                    ));
                }
            }
            if let Some(s) = &m.serving {
                s.validate().map_err(|e| format!("model {name}: {e}"))?;
                if self.git.is_none() {
                    return Err(format!(
                        "model {name} has a serving block but there is no git.manifests_repo"
                    ));
                }
            }
        }
        if let Some(a) = &self.argocd {
            if !(a.server.starts_with("https://") || a.server.starts_with("http://")) {
                return Err(format!(
                    "argocd.server must be an https:// URL, got {:?}",
                    a.server
                ));
            }
            if !(1..=900).contains(&a.check_every) {
                return Err(format!(
                    "argocd.check_every must be between 1 second and 15 minutes (an SQS delay), got {} seconds",
                    a.check_every
                ));
            }
            if a.deadline < a.check_every || i64::try_from(a.deadline).is_err() {
                return Err(format!(
                    "argocd.deadline must be at least check_every ({} s), got {} seconds",
                    a.check_every, a.deadline
                ));
            }
        }
        if let Some(g) = &self.git
            && !(g.manifests_repo.starts_with("https://")
                || g.manifests_repo.starts_with("http://"))
        {
            return Err(format!(
                "git.manifests_repo must be an https:// URL, got {:?}",
                g.manifests_repo
            ));
        }
        Ok(())
    }

    /// The dataset an object key belongs to: the longest configured prefix that matches.
    pub fn dataset_for_key(&self, key: &str) -> Option<(&str, &DatasetConfig)> {
        self.datasets
            .iter()
            .filter(|(_, d)| key.starts_with(&d.prefix))
            .max_by_key(|(_, d)| d.prefix.len())
            .map(|(n, d)| (n.as_str(), d))
    }
}

impl DatasetConfig {
    /// Every column the dataset requires: the declared ones plus the label.
    pub fn required_columns(&self) -> Vec<&str> {
        let mut cols: Vec<&str> = self.columns.keys().map(String::as_str).collect();
        if let Some(l) = self
            .label
            .as_ref()
            .filter(|l| !self.columns.contains_key(*l))
        {
            cols.push(l);
        }
        cols
    }
}

/// Reads environment variables, collecting every missing one so they are reported together.
pub struct Env<F: Fn(&str) -> Option<String>> {
    lookup: F,
    missing: Vec<String>,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn new(lookup: F) -> Self {
        Env {
            lookup,
            missing: Vec::new(),
        }
    }

    pub fn required(&mut self, name: &str) -> String {
        match (self.lookup)(name).filter(|v| !v.is_empty()) {
            Some(v) => v,
            None => {
                self.missing.push(name.to_owned());
                String::new()
            }
        }
    }

    /// A variable that may be unset (`None` when unset or empty).
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.is_empty())
    }

    pub fn optional(&self, name: &str, default: &str) -> String {
        (self.lookup)(name)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())
    }

    pub fn seconds(&self, name: &str, default: u64) -> Result<Duration, ConfigError> {
        let raw = self.optional(name, &default.to_string());
        raw.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| ConfigError::BadEnv {
                name: name.to_owned(),
                value: raw,
                message: "expected a whole number of seconds".into(),
            })
    }

    /// An optional size in MiB, returned in bytes.
    pub fn mebibytes(&self, name: &str) -> Result<Option<usize>, ConfigError> {
        let Some(raw) = (self.lookup)(name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        raw.trim()
            .parse::<usize>()
            .ok()
            .and_then(|m| m.checked_mul(1 << 20))
            .map(Some)
            .ok_or(ConfigError::BadEnv {
                name: name.to_owned(),
                value: raw,
                message: "expected a whole number of MiB".into(),
            })
    }

    pub fn finish(self) -> Result<(), ConfigError> {
        if self.missing.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::MissingEnv(self.missing))
        }
    }
}

/// Settings of the `data-arrival` function.
#[derive(Debug, Clone)]
pub struct DataArrivalSettings {
    pub pipeline_config: PathBuf,
    pub artifact_bucket: String,
    pub event_bus: String,
    pub processed_prefix: String,
    pub state_prefix: String,
    pub work_dir: PathBuf,
    /// How long a claim on an object protects it from a concurrent duplicate; longer than the
    /// function timeout, so a live invocation is never overtaken.
    pub claim_lease: Duration,
    /// Memory the duplicate table may use: half the function's memory
    /// (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, set by Lambda), the rest being the runtime, the
    /// record buffers and the SDK. Unbounded outside Lambda.
    pub table_memory: Option<usize>,
}

impl DataArrivalSettings {
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(lookup);
        let artifact_bucket = env.required("ARTIFACT_BUCKET");
        let event_bus = env.required("EVENT_BUS_NAME");
        let s = DataArrivalSettings {
            pipeline_config: env.optional("PIPELINE_CONFIG", "pipeline.yaml").into(),
            artifact_bucket,
            event_bus,
            processed_prefix: env.optional("PROCESSED_PREFIX", "processed/"),
            state_prefix: env.optional("STATE_PREFIX", "state/"),
            work_dir: env.optional("WORK_DIR", "/tmp").into(),
            claim_lease: env.seconds("CLAIM_LEASE_SECONDS", 960)?,
            table_memory: env
                .mebibytes("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")?
                .map(|m| m / 2),
        };
        env.finish()?;
        Ok(s)
    }
}

/// Settings shared by the training functions (`launch-training`, `training-watch`).
#[derive(Debug, Clone)]
pub struct TrainingSettings {
    pub pipeline_config: PathBuf,
    pub event_bus: String,
    pub mlflow_tracking_uri: String,
    /// Cluster of models whose training config names none.
    pub cluster_name: String,
    /// Namespace of models whose training config names none.
    pub training_namespace: String,
    /// Default for a model's `stall_after`.
    pub stall_after: Duration,
    /// Namespace of image builds whose `source` names none (`BUILD_NAMESPACE`).
    pub build_namespace: String,
    /// Where data-arrival's `latest` pointers are (launch-training retrains on them).
    pub artifact_bucket: Option<String>,
    pub state_prefix: String,
}

impl TrainingSettings {
    pub fn builds(&self) -> crate::stage::build::BuildSettings {
        crate::stage::build::BuildSettings {
            cluster_name: self.cluster_name.clone(),
            build_namespace: self.build_namespace.clone(),
        }
    }
}

impl TrainingSettings {
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(lookup);
        let event_bus = env.required("EVENT_BUS_NAME");
        let mlflow_tracking_uri = env.required("MLFLOW_TRACKING_URI");
        let cluster_name = env.required("CLUSTER_NAME");
        let s = TrainingSettings {
            pipeline_config: env.optional("PIPELINE_CONFIG", "pipeline.yaml").into(),
            event_bus,
            mlflow_tracking_uri,
            cluster_name,
            training_namespace: env.optional("TRAINING_NAMESPACE", "training"),
            stall_after: env.seconds("STALL_AFTER_SECONDS", 1800)?,
            build_namespace: env.optional("BUILD_NAMESPACE", "builds"),
            artifact_bucket: env.get("ARTIFACT_BUCKET"),
            state_prefix: env.optional("STATE_PREFIX", "state/"),
        };
        env.finish()?;
        Ok(s)
    }
}

/// Settings of the `build-image` function.
#[derive(Debug, Clone)]
pub struct BuildFnSettings {
    pub pipeline_config: PathBuf,
    pub event_bus: String,
    pub cluster_name: String,
    pub build_namespace: String,
    /// The Git token the build clones with (written into the build namespace's Secret).
    pub git_token_secret: String,
}

impl BuildFnSettings {
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(lookup);
        let s = BuildFnSettings {
            pipeline_config: env.optional("PIPELINE_CONFIG", "pipeline.yaml").into(),
            event_bus: env.required("EVENT_BUS_NAME"),
            cluster_name: env.required("CLUSTER_NAME"),
            build_namespace: env.optional("BUILD_NAMESPACE", "builds"),
            git_token_secret: env.required("GIT_TOKEN_SECRET_ARN"),
        };
        env.finish()?;
        Ok(s)
    }
}

/// Settings of the `validate-model` function (and `mlops validate`).
#[derive(Debug, Clone)]
pub struct ValidateSettings {
    pub pipeline_config: PathBuf,
    pub event_bus: String,
    pub mlflow_tracking_uri: String,
    /// Where dataset manifests live (`<processed prefix><dataset>/<version>/manifest.json`) and
    /// the claim markers.
    pub artifact_bucket: String,
    pub processed_prefix: String,
    pub state_prefix: String,
    /// How long a claim on a version holds before another invocation may take it over.
    pub claim_lease: Duration,
}

impl ValidateSettings {
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(lookup);
        let event_bus = env.required("EVENT_BUS_NAME");
        let mlflow_tracking_uri = env.required("MLFLOW_TRACKING_URI");
        let artifact_bucket = env.required("ARTIFACT_BUCKET");
        let s = ValidateSettings {
            pipeline_config: env.optional("PIPELINE_CONFIG", "pipeline.yaml").into(),
            event_bus,
            mlflow_tracking_uri,
            artifact_bucket,
            processed_prefix: env.optional("PROCESSED_PREFIX", "processed/"),
            state_prefix: env.optional("STATE_PREFIX", "state/"),
            claim_lease: env.seconds("CLAIM_LEASE_SECONDS", 300)?,
        };
        env.finish()?;
        Ok(s)
    }
}

/// Settings of the `registry-poller` function.
#[derive(Debug, Clone)]
pub struct PollSettings {
    pub pipeline_config: PathBuf,
    pub event_bus: String,
    pub mlflow_tracking_uri: String,
    /// Watermarks and per-version markers live here.
    pub artifact_bucket: String,
    pub state_prefix: String,
    /// On the first tick (no watermark yet), how far back to look.
    pub lookback: Duration,
    pub claim_lease: Duration,
}

impl PollSettings {
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(lookup);
        let event_bus = env.required("EVENT_BUS_NAME");
        let mlflow_tracking_uri = env.required("MLFLOW_TRACKING_URI");
        let artifact_bucket = env.required("ARTIFACT_BUCKET");
        let s = PollSettings {
            pipeline_config: env.optional("PIPELINE_CONFIG", "pipeline.yaml").into(),
            event_bus,
            mlflow_tracking_uri,
            artifact_bucket,
            state_prefix: env.optional("STATE_PREFIX", "state/"),
            lookback: env.seconds("POLL_LOOKBACK_SECONDS", 3600)?,
            claim_lease: env.seconds("CLAIM_LEASE_SECONDS", 300)?,
        };
        env.finish()?;
        Ok(s)
    }
}

/// Settings of the `mlflow-webhook` function.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub pipeline_config: PathBuf,
    pub event_bus: String,
    pub mlflow_tracking_uri: String,
    /// Secrets Manager ARN (or name) of the signing secret.
    pub secret_id: String,
    /// Delivery-id markers live here.
    pub artifact_bucket: String,
    pub state_prefix: String,
    /// Largest distance between a delivery's timestamp and now.
    pub max_skew: Duration,
}

impl WebhookSettings {
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(lookup);
        let event_bus = env.required("EVENT_BUS_NAME");
        let mlflow_tracking_uri = env.required("MLFLOW_TRACKING_URI");
        let secret_id = env.required("MLFLOW_WEBHOOK_SECRET_ARN");
        let artifact_bucket = env.required("ARTIFACT_BUCKET");
        let s = WebhookSettings {
            pipeline_config: env.optional("PIPELINE_CONFIG", "pipeline.yaml").into(),
            event_bus,
            mlflow_tracking_uri,
            secret_id,
            artifact_bucket,
            state_prefix: env.optional("STATE_PREFIX", "state/"),
            max_skew: env.seconds("WEBHOOK_MAX_SKEW_SECONDS", 300)?,
        };
        env.finish()?;
        Ok(s)
    }
}

/// Settings of the `vllm-scaler` function.
#[derive(Debug, Clone)]
pub struct ScalerSettings {
    pub pipeline_config: PathBuf,
    pub event_bus: String,
    /// The EKS cluster the serving Deployments run on.
    pub cluster_name: String,
    /// The policy's state per model lives in this bucket under `<state_prefix>vllm-scaler/`.
    pub state_bucket: String,
    pub state_prefix: String,
    /// Seconds between evaluations inside one scheduled invocation.
    pub evaluate_every: Duration,
    /// Evaluations per scheduled invocation (the schedule fires every minute).
    pub evaluations: u32,
}

impl ScalerSettings {
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(lookup);
        let event_bus = env.required("EVENT_BUS_NAME");
        let cluster_name = env.required("CLUSTER_NAME");
        let state_bucket = env.required("ARTIFACT_BUCKET");
        let s = ScalerSettings {
            pipeline_config: env.optional("PIPELINE_CONFIG", "pipeline.yaml").into(),
            event_bus,
            cluster_name,
            state_bucket,
            state_prefix: env.optional("STATE_PREFIX", "state/"),
            evaluate_every: env.seconds("EVALUATE_EVERY_SECONDS", 15)?,
            evaluations: u32::try_from(env.seconds("EVALUATIONS", 4)?.as_secs())
                .unwrap_or(4)
                .clamp(1, 8),
        };
        env.finish()?;
        Ok(s)
    }
}

/// Settings of the `promote-model` function.
#[derive(Debug, Clone)]
pub struct PromoteFnSettings {
    pub pipeline_config: PathBuf,
    pub event_bus: String,
    pub mlflow_tracking_uri: String,
    /// Secrets Manager ARN (or name) of the token that may push to the manifests repo.
    pub git_token_secret: String,
    /// The user name that goes with the token (GitHub `x-access-token`, GitLab `oauth2`).
    pub git_username: String,
    pub git_author_name: String,
    pub git_author_email: String,
    /// The bare clone of the manifests repo lives here (reused while the container lives).
    pub work_dir: PathBuf,
    pub artifact_bucket: String,
    pub state_prefix: String,
    pub claim_lease: Duration,
}

impl PromoteFnSettings {
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(lookup);
        let event_bus = env.required("EVENT_BUS_NAME");
        let mlflow_tracking_uri = env.required("MLFLOW_TRACKING_URI");
        let git_token_secret = env.required("GIT_TOKEN_SECRET_ARN");
        let artifact_bucket = env.required("ARTIFACT_BUCKET");
        let s = PromoteFnSettings {
            pipeline_config: env.optional("PIPELINE_CONFIG", "pipeline.yaml").into(),
            event_bus,
            mlflow_tracking_uri,
            git_token_secret,
            git_username: env.optional("GIT_USERNAME", "x-access-token"),
            git_author_name: env.optional("GIT_AUTHOR_NAME", "mlops pipeline"),
            git_author_email: env.optional(
                "GIT_AUTHOR_EMAIL",
                "mlops-pipeline@users.noreply.github.com",
            ),
            work_dir: env.optional("WORK_DIR", "/tmp").into(),
            artifact_bucket,
            state_prefix: env.optional("STATE_PREFIX", "state/"),
            claim_lease: env.seconds("CLAIM_LEASE_SECONDS", 300)?,
        };
        env.finish()?;
        Ok(s)
    }
}

/// Settings of the `deploy-sync` function: promote-model's Git settings (it pushes reverts), the
/// Argo CD token and its own queue for delayed re-checks.
#[derive(Debug, Clone)]
pub struct DeploySyncFnSettings {
    pub git: PromoteFnSettings,
    /// Secrets Manager ARN (or name) of the Argo CD API token; required when the pipeline
    /// config has an `argocd` block.
    pub argocd_token_secret: Option<String>,
    /// deploy-sync's own queue: re-checks are sent to it with a delay.
    pub check_queue_url: String,
}

impl DeploySyncFnSettings {
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(&lookup);
        let check_queue_url = env.required("CHECK_QUEUE_URL");
        let argocd_token_secret =
            Some(env.optional("ARGOCD_TOKEN_SECRET_ARN", "")).filter(|s| !s.is_empty());
        let git = PromoteFnSettings::from_env(&lookup);
        let missing = match (env.finish(), git) {
            (Ok(()), Ok(git)) => {
                return Ok(DeploySyncFnSettings {
                    git,
                    argocd_token_secret,
                    check_queue_url,
                });
            }
            (Err(ConfigError::MissingEnv(mut a)), Err(ConfigError::MissingEnv(b))) => {
                a.extend(b);
                a
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        Err(ConfigError::MissingEnv(missing))
    }
}

/// Settings of the `git-webhook` function.
#[derive(Debug, Clone)]
pub struct GitWebhookSettings {
    pub pipeline_config: PathBuf,
    pub event_bus: String,
    /// Secrets Manager ARN (or name) of the signing secret (GitHub) or token (GitLab).
    pub secret_id: String,
    /// Delivery-id markers live here.
    pub artifact_bucket: String,
    pub state_prefix: String,
}

impl GitWebhookSettings {
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(lookup);
        let event_bus = env.required("EVENT_BUS_NAME");
        let secret_id = env.required("GIT_WEBHOOK_SECRET_ARN");
        let artifact_bucket = env.required("ARTIFACT_BUCKET");
        let s = GitWebhookSettings {
            pipeline_config: env.optional("PIPELINE_CONFIG", "pipeline.yaml").into(),
            event_bus,
            secret_id,
            artifact_bucket,
            state_prefix: env.optional("STATE_PREFIX", "state/"),
        };
        env.finish()?;
        Ok(s)
    }
}

/// Settings of the `ledger` function.
#[derive(Debug, Clone)]
pub struct LedgerSettings {
    pub artifact_bucket: String,
    pub ledger_prefix: String,
}

impl LedgerSettings {
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(lookup);
        let artifact_bucket = env.required("ARTIFACT_BUCKET");
        let s = LedgerSettings {
            artifact_bucket,
            ledger_prefix: env.optional("LEDGER_PREFIX", "ledger/"),
        };
        env.finish()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_blocks_are_validated_with_the_field_named() {
        let config = |over: &[(&str, &str)], training: bool| {
            let mut fields = vec![
                ("repo", "\"https://github.com/o/t.git\""),
                (
                    "image",
                    "\"123456789012.dkr.ecr.us-east-1.amazonaws.com/t\"",
                ),
            ];
            for (k, v) in over {
                fields.retain(|(f, _)| f != k);
                fields.push((k, v));
            }
            let source: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!(
                "datasets:\n  d: {{prefix: p/, format: csv, columns: {{a: int}}, model: m}}\nmodels:\n  m:\n{}    source: {{{}}}\n",
                if training {
                    "    training: {image: x}\n"
                } else {
                    ""
                },
                source.join(", ")
            )
        };
        let ok = PipelineConfig::from_yaml(&config(&[], true), "t").expect("valid");
        let src = ok.models["m"].source.clone().expect("source");
        assert_eq!(
            (
                src.branch.as_str(),
                src.context.as_str(),
                src.dockerfile.as_str(),
                src.deadline
            ),
            ("main", ".", "Dockerfile", 3600)
        );
        for (over, needle) in [
            (
                (
                    "image",
                    "\"123456789012.dkr.ecr.us-east-1.amazonaws.com/t:1.0\"",
                ),
                "source.image",
            ),
            (("image", "\"docker.io/library/python\""), "source.image"),
            (("context", "\"../elsewhere\""), "source.context"),
            (("dockerfile", "\"/abs/Dockerfile\""), "source.dockerfile"),
            (("deadline", "12h"), "source.deadline"),
            (("resources", "{gpu: 1}"), "no GPU"),
            (("repo", "\"git@github.com:o/t.git\""), "source.repo"),
            (("dataset", "nope"), "source.dataset"),
        ] {
            let err = match PipelineConfig::from_yaml(&config(&[over], true), "t") {
                Err(e) => e.to_string(),
                Ok(_) => panic!("accepted: {over:?}"),
            };
            assert!(err.contains(needle), "{over:?}: {err}");
        }
        let err = PipelineConfig::from_yaml(&config(&[], false), "t").expect_err("refused");
        assert!(err.to_string().contains("no training block"), "{err}");
        // Which paths are a code change.
        let mut s = src;
        assert!(s.concerns("train.py") && s.concerns("a/b/c"));
        s.context = "trainer".into();
        s.dockerfile = "docker/Dockerfile".into();
        assert!(s.concerns("trainer/train.py") && s.concerns("trainer/docker/Dockerfile"));
        assert!(!s.concerns("trainer-old/x") && !s.concerns("README.md") && !s.concerns("trainer"));
    }

    #[test]
    fn sample_config_parses() {
        let text = include_str!("../../samples/pipeline.yaml");
        let cfg = PipelineConfig::from_yaml(text, "samples/pipeline.yaml").expect("sample parses");
        let (name, d) = cfg
            .dataset_for_key("incoming/transactions/2026/11/a.csv")
            .expect("matches");
        assert_eq!(name, "transactions");
        assert_eq!(d.max_bytes, 10 << 30);
        assert_eq!(d.null_markers, NullMarkers::Pandas);
        assert!(cfg.dataset_for_key("elsewhere/a.csv").is_none());
        let (name, _) = cfg
            .dataset_for_key("incoming/transactions-parquet/x.parquet")
            .expect("matches");
        assert_eq!(name, "transactions-parquet", "longest prefix wins");
    }

    #[test]
    fn bad_config_names_the_problem() {
        let err = PipelineConfig::from_yaml(
            "datasets:\n  a:\n    prefix: x/\n    format: csv\n    test_fraction: 1.5\n",
            "t.yaml",
        )
        .expect_err("rejected");
        assert!(err.to_string().contains("test_fraction"), "{err}");
        let err = PipelineConfig::from_yaml(
            "datasets:\n  a:\n    prefix: x/\n    format: xml\n",
            "t.yaml",
        )
        .expect_err("rejected");
        assert!(err.to_string().contains("t.yaml"), "{err}");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("10GiB"), Ok(10 << 30));
        assert_eq!(parse_bytes("512MB"), Ok(512_000_000));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }

    #[test]
    fn env_reports_every_missing_variable() {
        let err = DataArrivalSettings::from_env(|_| None).expect_err("missing");
        let msg = err.to_string();
        assert!(
            msg.contains("ARTIFACT_BUCKET") && msg.contains("EVENT_BUS_NAME"),
            "{msg}"
        );
    }

    #[test]
    fn the_argocd_block_parses_durations_and_names_bad_values() {
        let base = "datasets: {}\nargocd:\n  server: https://argocd.example.com\n";
        let cfg = PipelineConfig::from_yaml(base, "t.yaml").expect("defaults");
        let a = cfg.argocd.expect("argocd");
        assert_eq!((a.check_every, a.deadline), (30, 1800));
        let cfg = PipelineConfig::from_yaml(
            &format!("{base}  check_every: 1m\n  deadline: 2h\n"),
            "t.yaml",
        )
        .expect("durations");
        let a = cfg.argocd.expect("argocd");
        assert_eq!((a.check_every, a.deadline), (60, 7200));
        for (extra, names) in [
            ("  check_every: 16m\n", "check_every"),
            ("  check_every: 0\n", "check_every"),
            ("  check_every: 5m\n  deadline: 1m\n", "deadline"),
            ("  deadline: soon\n", "argocd.deadline"),
            ("  token: abc\n", "token"),
        ] {
            let err =
                PipelineConfig::from_yaml(&format!("{base}{extra}"), "t.yaml").expect_err(extra);
            assert!(err.to_string().contains(names), "{extra}: {err}");
        }
        let err = PipelineConfig::from_yaml("datasets: {}\nargocd: {server: argocd:443}\n", "t")
            .expect_err("not a URL");
        assert!(err.to_string().contains("argocd.server"), "{err}");
    }

    #[test]
    fn a_scaling_block_takes_its_defaults_from_the_profile_and_names_bad_values() {
        let base = "datasets: {}\ngit: {manifests_repo: \"https://git.example/m.git\", branch: main}\n\
                    models:\n  mistral:\n    serving:\n      engine: vllm\n      \
                    manifests_path: deployments/vllm/mistral\n      argocd_app: vllm-mistral\n      \
                    scaling:\n        namespace: serving\n        max_replicas: 8\n";
        let with = |extra: &str| PipelineConfig::from_yaml(&format!("{base}{extra}"), "t.yaml");
        let cfg = with("        profile: mistral-7b-a10g\n").expect("profile");
        let scaling = cfg.models["mistral"]
            .serving
            .as_ref()
            .and_then(|s| s.scaling.as_ref())
            .expect("scaling");
        let p = scaling.policy().expect("policy");
        // The profile's start-up delay (300 s) is under the ten-minute floor of the window.
        assert_eq!((p.min_replicas, p.max_replicas), (1, 8));
        assert_eq!(p.scale_down_window_s, 600.0);
        assert_eq!(p.cost.kv_cache_tokens, 45_000);
        assert_eq!(p.headroom, crate::stage::serving::policy::DEFAULT_HEADROOM);
        let cfg = with(
            "        profile: mistral-7b-a10g\n        start_up: 15m\n        headroom: 0.5\n",
        )
        .expect("overrides");
        let p = cfg.models["mistral"]
            .serving
            .as_ref()
            .and_then(|s| s.scaling.as_ref());
        let p = p.expect("scaling").policy().expect("policy");
        assert_eq!((p.scale_down_window_s, p.headroom), (900.0, 0.5));
        for (extra, names) in [
            ("", "needs a profile"),
            ("        profile: h200-dreams\n", "h200-dreams"),
            (
                "        profile: mistral-7b-a10g\n        headroom: -1\n",
                "headroom",
            ),
            (
                "        profile: mistral-7b-a10g\n        max_utilization: 1.5\n",
                "max_utilization",
            ),
            (
                "        profile: mistral-7b-a10g\n        min_replicas: 9\n",
                "min_replicas",
            ),
            (
                "        profile: mistral-7b-a10g\n        idle_to_zero: 10m\n",
                "idle_to_zero",
            ),
            (
                "        profile: mistral-7b-a10g\n        start_up: soon\n",
                "start_up",
            ),
            (
                "        profile: mistral-7b-a10g\n        prometheus: prom:9090\n",
                "prometheus",
            ),
            (
                "        profile: mistral-7b-a10g\n        target: 3\n",
                "target",
            ),
        ] {
            let err = with(extra).expect_err(extra);
            assert!(err.to_string().contains(names), "{extra}: {err}");
        }
        let mlflow = base.replace("engine: vllm", "engine: mlflow");
        let err =
            PipelineConfig::from_yaml(&format!("{mlflow}        profile: mistral-7b-a10g\n"), "t")
                .expect_err("mlflow engine");
        assert!(err.to_string().contains("engine vllm"), "{err}");
    }

    #[test]
    fn deploy_sync_settings_report_every_missing_variable() {
        let err = DeploySyncFnSettings::from_env(|_| None).expect_err("missing");
        let msg = err.to_string();
        for v in ["CHECK_QUEUE_URL", "GIT_TOKEN_SECRET_ARN", "EVENT_BUS_NAME"] {
            assert!(msg.contains(v), "{msg}");
        }
        let env = |k: &str| {
            [
                ("CHECK_QUEUE_URL", "https://sqs/q"),
                ("EVENT_BUS_NAME", "mlops"),
                ("MLFLOW_TRACKING_URI", "http://mlflow"),
                ("GIT_TOKEN_SECRET_ARN", "git"),
                ("ARTIFACT_BUCKET", "a"),
            ]
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
        };
        let s = DeploySyncFnSettings::from_env(env).expect("complete");
        assert_eq!(s.argocd_token_secret, None);
        assert_eq!(s.check_queue_url, "https://sqs/q");
    }
}
