//! Wiring of the `data-arrival` function: config and clients built once per container.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;

use super::sqs::EventHandler;
use crate::adapter::{aws, eventbridge::EventBridgeBus, s3::S3Store};
use crate::config::{DataArrivalSettings, PipelineConfig};
use crate::error::BoxError;
use crate::port::{EventBus, ObjectStore};
use crate::stage::data_arrival::{DataArrival, DataArrivalError, Outcome, Settings};

pub struct DataArrivalFn<S, B> {
    pub pipeline: PipelineConfig,
    pub settings: Settings,
    pub store: S,
    pub bus: B,
}

impl DataArrivalFn<S3Store, EventBridgeBus> {
    /// Reads the environment and the bundled pipeline config, and builds the AWS clients.
    pub async fn from_env() -> Result<Self, BoxError> {
        let env = DataArrivalSettings::from_env(|k| std::env::var(k).ok())?;
        let pipeline = PipelineConfig::load(&env.pipeline_config)?;
        let sdk = aws::load().await;
        Ok(DataArrivalFn {
            pipeline,
            settings: Settings::from(&env),
            store: S3Store::new(aws::s3_client(&sdk)),
            bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), env.event_bus),
        })
    }
}

impl<S: ObjectStore, B: EventBus> EventHandler for DataArrivalFn<S, B> {
    type Error = DataArrivalError;
    const NAME: &'static str = "data-arrival";

    async fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
    ) -> Result<String, DataArrivalError> {
        let stage = DataArrival {
            pipeline: &self.pipeline,
            settings: &self.settings,
            store: &self.store,
            bus: &self.bus,
        };
        Ok(match stage.handle(event).await? {
            Outcome::Ignored(why) => format!("ignored: {why}"),
            Outcome::Duplicate { run_id } => format!("duplicate of run {run_id}"),
            Outcome::Ready(r) => format!(
                "DatasetReady {} {} (run {})",
                r.dataset, r.version, r.run_id
            ),
            Outcome::Rejected(r) => format!("DatasetRejected {} (run {})", r.dataset, r.run_id),
        })
    }
}
