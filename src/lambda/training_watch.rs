//! Wiring of the `training-watch` function (invoked by EventBridge Scheduler every minute).

use std::time::Duration;

use crate::adapter::{aws, eks::EksClusters, eventbridge::EventBridgeBus, mlflow::MlflowRegistry};
use crate::config::{PipelineConfig, TrainingSettings};
use crate::error::BoxError;
use crate::port::{Cluster, EventBus, Registry};
use crate::stage::training::watch::{TickReport, TrainingWatch, WatchError};

/// A claim outlives the function's timeout (120 s), so a live invocation is never overtaken.
pub const CLAIM_LEASE: Duration = Duration::from_secs(300);

pub struct TrainingWatchFn<C, R, B> {
    pub pipeline: PipelineConfig,
    pub settings: TrainingSettings,
    pub cluster: C,
    pub registry: R,
    pub bus: B,
}

impl TrainingWatchFn<EksClusters, MlflowRegistry, EventBridgeBus> {
    pub async fn from_env() -> Result<Self, BoxError> {
        let settings = TrainingSettings::from_env(|k| std::env::var(k).ok())?;
        let pipeline = PipelineConfig::load(&settings.pipeline_config)?;
        let sdk = aws::load().await;
        Ok(TrainingWatchFn {
            pipeline,
            cluster: EksClusters::new(&sdk),
            registry: MlflowRegistry::new(&settings.mlflow_tracking_uri, |k| {
                std::env::var(k).ok()
            })?,
            bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &settings.event_bus),
            settings,
        })
    }
}

impl<C: Cluster, R: Registry, B: EventBus> TrainingWatchFn<C, R, B> {
    /// One tick; workloads that failed transiently are retried on the next tick.
    pub async fn tick(&self) -> Result<TickReport, WatchError> {
        let stage = TrainingWatch {
            pipeline: &self.pipeline,
            settings: &self.settings,
            cluster: &self.cluster,
            registry: &self.registry,
            bus: &self.bus,
            claim_lease: CLAIM_LEASE,
        };
        let report = stage.tick().await?;
        tracing::info!(
            workloads = report.workloads,
            emitted = report.emitted.len(),
            errors = report.errors.len(),
            "tick done"
        );
        Ok(report)
    }
}
