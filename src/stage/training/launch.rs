//! `launch-training`: on `DatasetReady` (new data) or `ImageBuilt` (new code: the model's
//! latest ready dataset version with the new image, by digest), applies the model's training
//! workload and emits `TrainingJobSubmitted`.
//!
//! Idempotency: the workload's name comes from the model and dataset version, so a redelivered
//! event finds the workload it created; the `mlops.dev/submitted` annotation, set after the event
//! was put, tells whether the event still has to be emitted.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use tracing::info;

use super::{ANN_SUBMITTED, placement, workload};
use crate::config::{PipelineConfig, TrainingSettings};
use crate::error::{BusError, Classify, ErrorClass};
use crate::event::{
    BusEvent, ConditionSummary, DatasetReady, ImageBuilt, SCHEMA_VERSION, TrainingJobFailed,
    TrainingJobSubmitted, WorkloadRef,
};
use crate::port::{Cluster, ClusterError, EventBus, ObjectStore, WorkloadState};
use crate::stage::latest;

#[derive(Debug, Clone, PartialEq)]
pub enum Launched {
    Ignored(String),
    Submitted(TrainingJobSubmitted),
    /// The workload exists and its event was already emitted.
    Duplicate {
        name: String,
    },
    Failed(TrainingJobFailed),
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("DatasetReady detail is malformed")]
    BadEvent(#[source] serde_json::Error),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("encoding the event")]
    Encode(#[source] serde_json::Error),
    #[error(transparent)]
    Latest(latest::LatestError),
}

impl Classify for LaunchError {
    fn class(&self) -> ErrorClass {
        match self {
            LaunchError::Cluster(e) => e.class(),
            LaunchError::Bus(e) => e.class(),
            LaunchError::Latest(e) => e.class(),
            _ => ErrorClass::Transient,
        }
    }
}

pub struct LaunchTraining<'a, C, B, S> {
    pub pipeline: &'a PipelineConfig,
    pub settings: &'a TrainingSettings,
    pub cluster: &'a C,
    pub bus: &'a B,
    /// Where data-arrival's `latest` pointers are (read on `ImageBuilt`).
    pub store: &'a S,
}

impl<C: Cluster, B: EventBus, S: ObjectStore> LaunchTraining<'_, C, B, S> {
    pub async fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
    ) -> Result<Launched, LaunchError> {
        match event.detail_type.as_str() {
            "DatasetReady" => {
                let ready: DatasetReady =
                    serde_json::from_value(event.detail.clone()).map_err(LaunchError::BadEvent)?;
                self.launch(&ready, None).await
            }
            "ImageBuilt" => {
                let built: ImageBuilt =
                    serde_json::from_value(event.detail.clone()).map_err(LaunchError::BadEvent)?;
                self.retrain(&built).await
            }
            other => Ok(Launched::Ignored(format!(
                "{other} is neither DatasetReady nor ImageBuilt"
            ))),
        }
    }

    /// A code change: the model's latest ready dataset version, trained with the new image.
    async fn retrain(&self, built: &ImageBuilt) -> Result<Launched, LaunchError> {
        let Some(model_cfg) = self.pipeline.models.get(&built.model) else {
            return Ok(Launched::Ignored(format!(
                "model {} is not in the pipeline config",
                built.model
            )));
        };
        let datasets: Vec<&str> = match model_cfg.source.as_ref().and_then(|s| s.dataset.as_deref())
        {
            Some(d) => vec![d],
            None => self
                .pipeline
                .datasets
                .iter()
                .filter(|(_, d)| d.model.as_deref() == Some(built.model.as_str()))
                .map(|(n, _)| n.as_str())
                .collect(),
        };
        let mut newest: Option<latest::Latest> = None;
        if let Some(bucket) = &self.settings.artifact_bucket {
            for d in &datasets {
                let l = latest::read(self.store, bucket, &self.settings.state_prefix, d)
                    .await
                    .map_err(LaunchError::Latest)?;
                if let Some(l) = l
                    && newest.as_ref().is_none_or(|n| l.arrived_at > n.arrived_at)
                {
                    newest = Some(l);
                }
            }
        }
        let Some(newest) = newest else {
            let message = if self.settings.artifact_bucket.is_none() {
                "launch-training has no ARTIFACT_BUCKET: it cannot read the latest dataset versions"
                    .to_owned()
            } else {
                format!(
                    "no ready version of {} yet: a code change retrains on the latest ready data, so drop data first",
                    if datasets.is_empty() {
                        "any dataset naming this model".to_owned()
                    } else {
                        datasets.join(", ")
                    }
                )
            };
            let (cluster, namespace) = model_cfg
                .training
                .as_ref()
                .map(|t| placement(t, self.settings))
                .unwrap_or_else(|| {
                    (
                        self.settings.cluster_name.clone(),
                        self.settings.training_namespace.clone(),
                    )
                });
            let failed = TrainingJobFailed {
                schema_version: SCHEMA_VERSION.into(),
                run_id: built.run_id.clone(),
                model: built.model.clone(),
                dataset_version: String::new(),
                workload: WorkloadRef {
                    kind: "Job".into(),
                    api_version: "batch/v1".into(),
                    cluster,
                    namespace,
                    name: String::new(),
                },
                condition: ConditionSummary {
                    type_: "Failed".into(),
                    reason: Some("NoDataset".into()),
                    message: Some(message),
                },
                duration_seconds: None,
            };
            return self.emit(Launched::Failed(failed)).await;
        };
        let mut ready = newest.ready;
        ready.run_id = built.run_id.clone();
        ready.model = Some(built.model.clone());
        let repository = built
            .image
            .rsplit_once(':')
            .filter(|(r, _)| !r.ends_with('/') && !r.is_empty())
            .map_or(built.image.as_str(), |(r, _)| r);
        let image = workload::TrainImage {
            reference: format!("{repository}@{}", built.digest),
            commit: built.commit.clone(),
        };
        self.launch(&ready, Some(&image)).await
    }

    async fn launch(
        &self,
        ready: &DatasetReady,
        image: Option<&workload::TrainImage>,
    ) -> Result<Launched, LaunchError> {
        let fail = |model: &str, workload: WorkloadRef, reason: &str, message: String| {
            Launched::Failed(TrainingJobFailed {
                schema_version: SCHEMA_VERSION.into(),
                run_id: ready.run_id.clone(),
                model: model.to_owned(),
                dataset_version: ready.version.clone(),
                workload,
                condition: ConditionSummary {
                    type_: "Failed".into(),
                    reason: Some(reason.into()),
                    message: Some(message),
                },
                duration_seconds: None,
            })
        };
        let (model, _cfg, w) = match plan(self.pipeline, self.settings, ready, image) {
            Ok(p) => p,
            Err(PlanError::NoModel(why)) => return Ok(Launched::Ignored(why)),
            Err(PlanError::UnknownModel { model, reference }) => {
                let message =
                    format!("model {model} has no training config in the pipeline config");
                return self
                    .emit(fail(&model, *reference, "UnknownModel", message))
                    .await;
            }
            Err(PlanError::Invalid {
                model,
                reference,
                error,
            }) => {
                return self
                    .emit(fail(&model, *reference, "InvalidSpec", error.to_string()))
                    .await;
            }
        };
        let reference = w.reference();
        // The apiserver refusing the request (403, a missing namespace, an invalid spec) is
        // permanent: a TrainingJobFailed with its message. Throttling, conflicts and 5xx retry.
        match self.submit(&w).await {
            Ok(Some(state)) if state.annotations.contains_key(ANN_SUBMITTED) => {
                info!(workload = %w.name, "workload exists and was reported; duplicate delivery");
                return Ok(Launched::Duplicate { name: w.name });
            }
            Ok(_) => {}
            Err(e) if e.class() == ErrorClass::Permanent => {
                return self
                    .emit(fail(&model, reference, "SubmitRejected", e.to_string()))
                    .await;
            }
            Err(e) => return Err(e.into()),
        }
        let submitted = TrainingJobSubmitted {
            schema_version: SCHEMA_VERSION.into(),
            run_id: ready.run_id.clone(),
            model: model.clone(),
            dataset: ready.dataset.clone(),
            dataset_version: ready.version.clone(),
            workload: reference,
            image: image.map(|i| i.reference.clone()),
            git_commit: image.map(|i| i.commit.clone()),
        };
        let out = self.emit(Launched::Submitted(submitted)).await?;
        // Mark it reported, unconditionally (the controller may have updated it since); losing
        // this write only means a redelivery emits the event again.
        let target = WorkloadState {
            kind: w.kind,
            cluster: w.cluster.clone(),
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            ..Default::default()
        };
        self.cluster
            .annotate(&target, ANN_SUBMITTED, &ready.run_id)
            .await?;
        Ok(out)
    }

    /// The workload as it was before this call (`None` when this call created it).
    async fn submit(
        &self,
        w: &crate::port::workload::Workload,
    ) -> Result<Option<WorkloadState>, ClusterError> {
        match self
            .cluster
            .get(w.kind, &w.cluster, &w.namespace, &w.name)
            .await?
        {
            Some(state) => Ok(Some(state)),
            None => self.cluster.apply(w).await.map(|()| None),
        }
    }

    async fn emit(&self, out: Launched) -> Result<Launched, LaunchError> {
        let event = match &out {
            Launched::Submitted(s) => BusEvent::new(s),
            Launched::Failed(f) => BusEvent::new(f),
            _ => return Ok(out),
        }
        .map_err(LaunchError::Encode)?;
        self.bus.put(std::slice::from_ref(&event)).await?;
        Ok(out)
    }
}

#[derive(Debug)]
pub enum PlanError {
    /// The dataset trains nothing.
    NoModel(String),
    UnknownModel {
        model: String,
        reference: Box<WorkloadRef>,
    },
    Invalid {
        model: String,
        reference: Box<WorkloadRef>,
        error: workload::InvalidSpec,
    },
}

/// The model, its training config and the workload a `DatasetReady` leads to (shared by the
/// function and `mlops render training`).
pub fn plan<'p>(
    pipeline: &'p PipelineConfig,
    settings: &TrainingSettings,
    ready: &DatasetReady,
    image: Option<&workload::TrainImage>,
) -> Result<
    (
        String,
        &'p crate::config::TrainingConfig,
        crate::port::workload::Workload,
    ),
    PlanError,
> {
    let dataset_cfg = pipeline.datasets.get(&ready.dataset);
    let Some(model) = ready
        .model
        .clone()
        .or_else(|| dataset_cfg.and_then(|d| d.model.clone()))
    else {
        return Err(PlanError::NoModel(format!(
            "dataset {} names no model to train",
            ready.dataset
        )));
    };
    let Some(cfg) = pipeline
        .models
        .get(&model)
        .and_then(|m| m.training.as_ref())
    else {
        let reference = WorkloadRef {
            kind: "Job".into(),
            api_version: "batch/v1".into(),
            cluster: settings.cluster_name.clone(),
            namespace: settings.training_namespace.clone(),
            name: String::new(),
        };
        return Err(PlanError::UnknownModel {
            model,
            reference: Box::new(reference),
        });
    };
    let (cluster, namespace) = placement(cfg, settings);
    let reference = WorkloadRef {
        kind: cfg.kind.kind().into(),
        api_version: cfg.kind.api_version().into(),
        cluster: cluster.clone(),
        namespace: namespace.clone(),
        name: workload::training_name(&model, &ready.version, image),
    };
    let target = workload::Target {
        model: &model,
        ready,
        label_column: dataset_cfg.and_then(|d| d.label.as_deref()),
        mlflow_tracking_uri: &settings.mlflow_tracking_uri,
        cluster,
        namespace,
        image,
    };
    match workload::build(cfg, &target) {
        Ok(w) => Ok((model, cfg, w)),
        Err(error) => Err(PlanError::Invalid {
            model,
            reference: Box::new(reference),
            error,
        }),
    }
}
