//! Wiring of the `launch-training` function.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;

use super::sqs::EventHandler;
use crate::adapter::{aws, eks::EksClusters, eventbridge::EventBridgeBus, s3::S3Store};
use crate::config::{PipelineConfig, TrainingSettings};
use crate::error::BoxError;
use crate::port::{Cluster, EventBus, ObjectStore};
use crate::stage::training::launch::{LaunchError, LaunchTraining, Launched};

pub struct LaunchTrainingFn<C, B, S> {
    pub pipeline: PipelineConfig,
    pub settings: TrainingSettings,
    pub cluster: C,
    pub bus: B,
    /// data-arrival's `latest` pointers (read on `ImageBuilt`).
    pub store: S,
}

impl LaunchTrainingFn<EksClusters, EventBridgeBus, S3Store> {
    pub async fn from_env() -> Result<Self, BoxError> {
        let settings = TrainingSettings::from_env(|k| std::env::var(k).ok())?;
        let pipeline = PipelineConfig::load(&settings.pipeline_config)?;
        let sdk = aws::load().await;
        Ok(LaunchTrainingFn {
            pipeline,
            cluster: EksClusters::new(&sdk),
            bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &settings.event_bus),
            store: S3Store::new(aws::s3_client(&sdk)),
            settings,
        })
    }
}

impl<C: Cluster, B: EventBus, S: ObjectStore> EventHandler for LaunchTrainingFn<C, B, S> {
    type Error = LaunchError;
    const NAME: &'static str = "launch-training";

    async fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
    ) -> Result<String, LaunchError> {
        let stage = LaunchTraining {
            pipeline: &self.pipeline,
            settings: &self.settings,
            cluster: &self.cluster,
            bus: &self.bus,
            store: &self.store,
        };
        Ok(match stage.handle(event).await? {
            Launched::Ignored(why) => format!("ignored: {why}"),
            Launched::Duplicate { name } => format!("duplicate: {name} already submitted"),
            Launched::Submitted(s) => format!(
                "TrainingJobSubmitted {}/{} (run {})",
                s.workload.namespace, s.workload.name, s.run_id
            ),
            Launched::Failed(f) => format!(
                "TrainingJobFailed {} (run {}): {:?}",
                f.model, f.run_id, f.condition.message
            ),
        })
    }
}
