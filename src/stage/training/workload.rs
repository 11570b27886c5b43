//! Builds the training workload for a dataset version from the model's training config: a
//! `batch/v1` Job (k8s-openapi types), a Kubeflow `PyTorchJob` or a Kubeflow Trainer `TrainJob`
//! (typed structs below). Never text templates.
//!
//! GPU on spot (CONTRACTS §5): `nvidia.com/gpu` limits with the matching toleration; a spot
//! interruption (pod condition `DisruptionTarget`) is ignored by the Job's `podFailurePolicy`, so
//! it does not count toward `backoffLimit` (which needs `restartPolicy: Never` and
//! `podReplacementPolicy: Failed`); `activeDeadlineSeconds` is always set so repeated
//! interruptions cannot retry forever.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PodSpec, PodTemplateSpec, ResourceRequirements, Toleration as K8sToleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::config::{TrainingConfig, WorkloadKind};
use crate::event::DatasetReady;
use crate::port::workload::{
    ANN_DATASET_VERSION, ANN_GIT_COMMIT, ANN_IMAGE, ANN_MODEL, ANN_RUN_ID, LABEL_DATASET,
    LABEL_DATASET_VERSION, LABEL_GIT_COMMIT, LABEL_MODEL, LABEL_PURPOSE, LABEL_RUN_ID,
    LABEL_WORKLOAD, MANAGED_BY, Purpose, Workload, disruptions_ignored, label_value, workload_name,
};

const GPU: &str = "nvidia.com/gpu";

/// Everything the builder needs besides the model's config.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub model: &'a str,
    pub ready: &'a DatasetReady,
    pub label_column: Option<&'a str>,
    pub mlflow_tracking_uri: &'a str,
    pub cluster: String,
    pub namespace: String,
    /// A code run's image (otherwise `training.image`).
    pub image: Option<&'a TrainImage>,
}

/// The image a code change built: the trainer runs it by digest.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainImage {
    /// `<repository>@sha256:…`.
    pub reference: String,
    pub commit: String,
}

/// The workload's name: from (model, dataset version) for a data run, and from (model,
/// dataset version, image) for a code run, so a code change and a data change never collide
/// and the same (version, image) never trains twice.
pub fn training_name(model: &str, version: &str, image: Option<&TrainImage>) -> String {
    match image {
        None => workload_name(model, version),
        Some(i) => workload_name(model, &format!("{version}@{}", i.reference)),
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("model {model}: {message}")]
pub struct InvalidSpec {
    pub model: String,
    pub message: String,
}

pub fn build(cfg: &TrainingConfig, t: &Target<'_>) -> Result<Workload, InvalidSpec> {
    let invalid = |message: String| InvalidSpec {
        model: t.model.to_owned(),
        message,
    };
    if cfg.image.trim().is_empty() {
        return Err(invalid("training.image is empty".into()));
    }
    let name = training_name(t.model, &t.ready.version, t.image);
    let mut labels = BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (LABEL_RUN_ID.to_owned(), label_value(&t.ready.run_id)),
        (LABEL_MODEL.to_owned(), label_value(t.model)),
        (LABEL_DATASET.to_owned(), label_value(&t.ready.dataset)),
        (
            LABEL_DATASET_VERSION.to_owned(),
            label_value(&t.ready.version),
        ),
        (
            LABEL_PURPOSE.to_owned(),
            Purpose::Training.label().to_owned(),
        ),
    ]);
    if let Some(i) = t.image {
        labels.insert(LABEL_GIT_COMMIT.to_owned(), label_value(&i.commit));
    }
    let env = trainer_env(cfg, t);
    let container = container(
        cfg,
        &image_of(cfg, t),
        &env,
        if cfg.kind == WorkloadKind::PyTorchJob {
            "pytorch"
        } else {
            "trainer"
        },
    );
    let mut pod_labels = labels.clone();
    pod_labels.insert(LABEL_WORKLOAD.to_owned(), name.clone());
    let pod = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels.clone()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            service_account_name: cfg.service_account.clone(),
            node_selector: (!cfg.node_selector.is_empty()).then(|| cfg.node_selector.clone()),
            tolerations: tolerations(cfg),
            containers: vec![container.clone()],
            ..Default::default()
        }),
    };
    labels.insert(LABEL_WORKLOAD.to_owned(), name.clone());
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(t.namespace.clone()),
        labels: Some(labels),
        // Exact values (labels may have been shortened or sanitized).
        annotations: Some(
            BTreeMap::from([
                (ANN_RUN_ID.to_owned(), t.ready.run_id.clone()),
                (ANN_MODEL.to_owned(), t.model.to_owned()),
                (ANN_DATASET_VERSION.to_owned(), t.ready.version.clone()),
                ("mlops.dev/train-uri".to_owned(), t.ready.train_uri.clone()),
            ])
            .into_iter()
            .chain(t.image.into_iter().flat_map(|i| {
                [
                    (ANN_GIT_COMMIT.to_owned(), i.commit.clone()),
                    (ANN_IMAGE.to_owned(), i.reference.clone()),
                ]
            }))
            .collect(),
        ),
        ..Default::default()
    };
    let deadline =
        i64::try_from(cfg.deadline).map_err(|_| invalid("deadline is too large".into()))?;
    let ttl = i32::try_from(cfg.ttl_after_finished)
        .map_err(|_| invalid("ttl_after_finished is too large".into()))?;
    if deadline < 1 {
        return Err(invalid("deadline must be at least 1 second".into()));
    }
    let object = match cfg.kind {
        WorkloadKind::Job => to_value(&Job {
            metadata: meta,
            spec: Some(JobSpec {
                backoff_limit: Some(cfg.backoff_limit),
                active_deadline_seconds: Some(deadline),
                ttl_seconds_after_finished: Some(ttl),
                pod_replacement_policy: Some("Failed".into()),
                pod_failure_policy: Some(disruptions_ignored()),
                template: pod,
                ..Default::default()
            }),
            status: None,
        })?,
        WorkloadKind::PyTorchJob => {
            let mut pod = pod;
            if let Some(spec) = pod.spec.as_mut() {
                // The operator owns restarts per replica (`restartPolicy` below).
                spec.restart_policy = None;
            }
            let replica = |replicas: u32| ReplicaSpec {
                replicas: replicas as i32,
                // Exit codes 128–255 (a SIGTERM/SIGKILL from a spot reclaim) are retried,
                // 1–127 (the trainer's own failure) are permanent.
                restart_policy: "ExitCode".into(),
                template: pod.clone(),
            };
            let mut replicas = BTreeMap::from([("Master".to_owned(), replica(1))]);
            if cfg.workers > 0 {
                replicas.insert("Worker".to_owned(), replica(cfg.workers));
            }
            to_value(&PyTorchJob {
                api_version: WorkloadKind::PyTorchJob.api_version().into(),
                kind: "PyTorchJob".into(),
                metadata: meta,
                spec: PyTorchJobSpec {
                    run_policy: RunPolicy {
                        clean_pod_policy: "None".into(),
                        ttl_seconds_after_finished: ttl,
                        active_deadline_seconds: deadline,
                        backoff_limit: cfg.backoff_limit,
                    },
                    pytorch_replica_specs: replicas,
                    nproc_per_node: (cfg.resources.gpu > 0).then(|| "gpu".to_owned()),
                },
            })?
        }
        WorkloadKind::TrainJob => to_value(&TrainJob {
            api_version: WorkloadKind::TrainJob.api_version().into(),
            kind: "TrainJob".into(),
            metadata: meta,
            spec: TrainJobSpec {
                runtime_ref: RuntimeRef {
                    name: cfg.runtime.clone(),
                },
                trainer: Trainer {
                    image: image_of(cfg, t),
                    command: cfg.command.clone(),
                    args: cfg.args.clone(),
                    env: container.env.clone().unwrap_or_default(),
                    num_nodes: cfg.workers.max(1) as i32,
                    resources_per_node: container.resources.clone(),
                },
                active_deadline_seconds: deadline,
                runtime_patches: vec![RuntimePatch::scheduling(
                    "mlops",
                    pod_labels,
                    cfg,
                    tolerations(cfg),
                )],
            },
        })?,
    };
    Ok(Workload {
        purpose: Purpose::Training,
        kind: cfg.kind,
        cluster: t.cluster.clone(),
        namespace: t.namespace.clone(),
        name,
        object,
        env,
    })
}

fn to_value<T: Serialize>(v: &T) -> Result<serde_json::Value, InvalidSpec> {
    let mut value = serde_json::to_value(v).map_err(|e| InvalidSpec {
        model: String::new(),
        message: e.to_string(),
    })?;
    // k8s-openapi's Job serializes without apiVersion/kind; server-side apply needs both.
    if let Some(o) = value.as_object_mut().filter(|o| !o.contains_key("kind")) {
        o.insert("apiVersion".into(), "batch/v1".into());
        o.insert("kind".into(), "Job".into());
    }
    Ok(value)
}

/// The trainer's environment contract (documented in the README and used by samples/trainer).
pub fn trainer_env(cfg: &TrainingConfig, t: &Target<'_>) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = cfg.env.clone();
    let ours = [
        ("MLOPS_RUN_ID", t.ready.run_id.as_str()),
        ("MLFLOW_TRACKING_URI", t.mlflow_tracking_uri),
        ("MLFLOW_EXPERIMENT_NAME", t.model),
        ("MODEL_NAME", t.model),
        ("TRAIN_URI", t.ready.train_uri.as_str()),
        ("TEST_URI", t.ready.test_uri.as_str()),
        ("DATASET_VERSION", t.ready.version.as_str()),
    ];
    for (k, v) in ours {
        env.insert(k.to_owned(), v.to_owned());
    }
    if let Some(label) = t.label_column {
        env.insert("LABEL_COLUMN".into(), label.to_owned());
    }
    if let Some(i) = t.image {
        // The trainer tags its MLflow run `mlops.git_commit` with it.
        env.insert("MLOPS_GIT_COMMIT".into(), i.commit.clone());
    }
    env.into_iter().collect()
}

/// The image the trainer runs: a code run's by digest, else the configured one.
fn image_of(cfg: &TrainingConfig, t: &Target<'_>) -> String {
    t.image
        .map_or_else(|| cfg.image.clone(), |i| i.reference.clone())
}

fn container(cfg: &TrainingConfig, image: &str, env: &[(String, String)], name: &str) -> Container {
    let mut limits = BTreeMap::new();
    let mut requests = BTreeMap::new();
    if cfg.resources.gpu > 0 {
        // Extended resources are not overcommitted: the limit alone is enough.
        limits.insert(GPU.to_owned(), Quantity(cfg.resources.gpu.to_string()));
    }
    for (k, v) in [
        ("cpu", &cfg.resources.cpu),
        ("memory", &cfg.resources.memory),
    ] {
        if let Some(v) = v {
            requests.insert(k.to_owned(), Quantity(v.clone()));
            limits.insert(k.to_owned(), Quantity(v.clone()));
        }
    }
    Container {
        name: name.to_owned(),
        image: Some(image.to_owned()),
        command: (!cfg.command.is_empty()).then(|| cfg.command.clone()),
        args: (!cfg.args.is_empty()).then(|| cfg.args.clone()),
        env: Some(
            env.iter()
                .map(|(k, v)| EnvVar {
                    name: k.clone(),
                    value: Some(v.clone()),
                    ..Default::default()
                })
                .collect(),
        ),
        resources: Some(ResourceRequirements {
            limits: (!limits.is_empty()).then_some(limits),
            requests: (!requests.is_empty()).then_some(requests),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tolerations(cfg: &TrainingConfig) -> Option<Vec<K8sToleration>> {
    let mut out: Vec<K8sToleration> = cfg
        .tolerations
        .iter()
        .map(|t| K8sToleration {
            key: Some(t.key.clone()),
            operator: Some(t.operator.clone()),
            value: t.value.clone(),
            effect: t.effect.clone(),
            ..Default::default()
        })
        .collect();
    if cfg.resources.gpu > 0 && !cfg.tolerations.iter().any(|t| t.key == GPU) {
        out.push(K8sToleration {
            key: Some(GPU.into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        });
    }
    (!out.is_empty()).then_some(out)
}

/// Kubeflow Training Operator `PyTorchJob` (`kubeflow.org/v1`), the fields we set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PyTorchJob {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: PyTorchJobSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PyTorchJobSpec {
    pub run_policy: RunPolicy,
    pub pytorch_replica_specs: BTreeMap<String, ReplicaSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nproc_per_node: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunPolicy {
    pub clean_pod_policy: String,
    pub ttl_seconds_after_finished: i32,
    pub active_deadline_seconds: i64,
    pub backoff_limit: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSpec {
    pub replicas: i32,
    pub restart_policy: String,
    pub template: PodTemplateSpec,
}

/// Kubeflow Trainer `TrainJob` (`trainer.kubeflow.org/v1alpha1`), the fields we set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainJob {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: TrainJobSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainJobSpec {
    pub runtime_ref: RuntimeRef,
    pub trainer: Trainer,
    pub active_deadline_seconds: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runtime_patches: Vec<RuntimePatch>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeRef {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trainer {
    pub image: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    pub num_nodes: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources_per_node: Option<ResourceRequirements>,
}

/// A `runtimePatches` entry: pod labels, node selector and tolerations for the trainer nodes
/// (the `node` replicated job of the torch runtimes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimePatch {
    pub manager: String,
    pub training_runtime_spec: serde_json::Value,
}

impl RuntimePatch {
    fn scheduling(
        manager: &str,
        labels: BTreeMap<String, String>,
        cfg: &TrainingConfig,
        tolerations: Option<Vec<K8sToleration>>,
    ) -> RuntimePatch {
        let mut pod_spec = serde_json::Map::new();
        if !cfg.node_selector.is_empty() {
            pod_spec.insert("nodeSelector".into(), serde_json::json!(cfg.node_selector));
        }
        if let Some(t) = tolerations {
            pod_spec.insert(
                "tolerations".into(),
                serde_json::to_value(t).unwrap_or_default(),
            );
        }
        if let Some(sa) = &cfg.service_account {
            pod_spec.insert("serviceAccountName".into(), sa.clone().into());
        }
        RuntimePatch {
            manager: manager.to_owned(),
            training_runtime_spec: serde_json::json!({
                "template": {"spec": {"replicatedJobs": [{
                    "name": "node",
                    "template": {"spec": {"template": {"metadata": {"labels": labels}, "spec": pod_spec}}}
                }]}}
            }),
        }
    }
}
