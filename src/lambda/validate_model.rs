//! Wiring of the `validate-model` function (queue-fed with `ModelVersionCreated`).

use aws_lambda_events::event::eventbridge::EventBridgeEvent;

use super::sqs::EventHandler;
use crate::adapter::{aws, eventbridge::EventBridgeBus, mlflow::MlflowRegistry, s3::S3Store};
use crate::config::{PipelineConfig, ValidateSettings};
use crate::error::{BoxError, Classify, ErrorClass};
use crate::event::ModelVersionCreated;
use crate::port::{EventBus, ModelRegistry, ObjectStore};
use crate::stage::registry::validate::{ValidateError, ValidateModel, Validated};

pub struct ValidateModelFn<R, B, S> {
    pub pipeline: PipelineConfig,
    pub settings: ValidateSettings,
    pub registry: R,
    pub bus: B,
    pub store: S,
}

impl ValidateModelFn<MlflowRegistry, EventBridgeBus, S3Store> {
    pub async fn from_env() -> Result<Self, BoxError> {
        let settings = ValidateSettings::from_env(|k| std::env::var(k).ok())?;
        let pipeline = PipelineConfig::load(&settings.pipeline_config)?;
        let sdk = aws::load().await;
        Ok(ValidateModelFn {
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

/// The event body is not a `ModelVersionCreated`: nothing to retry.
#[derive(Debug, thiserror::Error)]
pub enum ValidateFnError {
    #[error("not a ModelVersionCreated detail: {0}")]
    BadDetail(serde_json::Error),
    #[error(transparent)]
    Stage(#[from] ValidateError),
}

impl Classify for ValidateFnError {
    fn class(&self) -> ErrorClass {
        match self {
            ValidateFnError::BadDetail(_) => ErrorClass::Permanent,
            ValidateFnError::Stage(e) => e.class(),
        }
    }
}

impl<R: ModelRegistry, B: EventBus, S: ObjectStore> EventHandler for ValidateModelFn<R, B, S> {
    type Error = ValidateFnError;
    const NAME: &'static str = "validate-model";

    async fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
    ) -> Result<String, ValidateFnError> {
        let created: ModelVersionCreated =
            serde_json::from_value(event.detail.clone()).map_err(ValidateFnError::BadDetail)?;
        let stage = ValidateModel {
            pipeline: &self.pipeline,
            settings: &self.settings,
            registry: &self.registry,
            bus: &self.bus,
            store: &self.store,
        };
        Ok(match stage.handle(&created).await? {
            Validated::Passed(p) => format!("ModelValidated {} v{}", p.model, p.version),
            Validated::Rejected(r) => {
                format!("ModelRejected {} v{}: {}", r.model, r.version, r.reason)
            }
            Validated::AlreadyDone(s) => format!(
                "{} v{} already validated: {s}",
                created.model, created.version
            ),
            Validated::NoGate => format!("{} has no validation block", created.model),
        })
    }
}
