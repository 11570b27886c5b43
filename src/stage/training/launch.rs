//! `launch-training`: on `DatasetReady`, applies the model's training workload and emits
//! `TrainingJobSubmitted`.
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
    BusEvent, ConditionSummary, DatasetReady, SCHEMA_VERSION, TrainingJobFailed,
    TrainingJobSubmitted, WorkloadRef,
};
use crate::port::{Cluster, ClusterError, EventBus, WorkloadState};

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
}

impl Classify for LaunchError {
    fn class(&self) -> ErrorClass {
        match self {
            LaunchError::Cluster(e) => e.class(),
            LaunchError::Bus(e) => e.class(),
            _ => ErrorClass::Transient,
        }
    }
}

pub struct LaunchTraining<'a, C, B> {
    pub pipeline: &'a PipelineConfig,
    pub settings: &'a TrainingSettings,
    pub cluster: &'a C,
    pub bus: &'a B,
}

impl<C: Cluster, B: EventBus> LaunchTraining<'_, C, B> {
    pub async fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
    ) -> Result<Launched, LaunchError> {
        if event.detail_type != "DatasetReady" {
            return Ok(Launched::Ignored(format!(
                "{} is not DatasetReady",
                event.detail_type
            )));
        }
        let ready: DatasetReady =
            serde_json::from_value(event.detail.clone()).map_err(LaunchError::BadEvent)?;
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
        let (model, _cfg, w) = match plan(self.pipeline, self.settings, &ready) {
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
    async fn submit(&self, w: &workload::Workload) -> Result<Option<WorkloadState>, ClusterError> {
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
) -> Result<
    (
        String,
        &'p crate::config::TrainingConfig,
        workload::Workload,
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
        name: workload::workload_name(&model, &ready.version),
    };
    let target = workload::Target {
        model: &model,
        ready,
        label_column: dataset_cfg.and_then(|d| d.label.as_deref()),
        mlflow_tracking_uri: &settings.mlflow_tracking_uri,
        cluster,
        namespace,
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
