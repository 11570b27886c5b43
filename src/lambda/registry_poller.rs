//! Wiring of the `registry-poller` function (EventBridge Scheduler, every minute).

use crate::adapter::{aws, eventbridge::EventBridgeBus, mlflow::MlflowRegistry, s3::S3Store};
use crate::config::{PipelineConfig, PollSettings};
use crate::error::BoxError;
use crate::port::{EventBus, ModelRegistry, ObjectStore};
use crate::stage::registry::poll::{PollError, PollReport, RegistryPoller};

pub struct RegistryPollerFn<R, B, S> {
    pub pipeline: PipelineConfig,
    pub settings: PollSettings,
    pub registry: R,
    pub bus: B,
    pub store: S,
}

impl RegistryPollerFn<MlflowRegistry, EventBridgeBus, S3Store> {
    pub async fn from_env() -> Result<Self, BoxError> {
        let settings = PollSettings::from_env(|k| std::env::var(k).ok())?;
        let pipeline = PipelineConfig::load(&settings.pipeline_config)?;
        let sdk = aws::load().await;
        Ok(RegistryPollerFn {
            pipeline,
            registry: MlflowRegistry::new(&settings.mlflow_tracking_uri, |k| {
                std::env::var(k).ok()
            })?,
            bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &settings.event_bus),
            store: S3Store::new(aws::s3_client(&sdk)),
            settings,
        })
    }
}

impl<R: ModelRegistry, B: EventBus, S: ObjectStore> RegistryPollerFn<R, B, S> {
    /// One tick; a failure leaves the watermark where it was, so the next tick retries.
    pub async fn tick(&self) -> Result<PollReport, PollError> {
        let report = RegistryPoller {
            pipeline: &self.pipeline,
            settings: &self.settings,
            registry: &self.registry,
            bus: &self.bus,
            store: &self.store,
        }
        .tick()
        .await?;
        tracing::info!(
            seen = report.seen,
            emitted = report.emitted.len(),
            "tick done"
        );
        Ok(report)
    }
}
