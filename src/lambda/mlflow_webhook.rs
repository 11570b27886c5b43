//! Wiring of the `mlflow-webhook` function (a Lambda Function URL, auth NONE: the signature is
//! checked in code).

use std::time::Duration;

use crate::adapter::secrets::SecretsManagerSecret;
use crate::adapter::{aws, eventbridge::EventBridgeBus, mlflow::MlflowRegistry, s3::S3Store};
use crate::config::{PipelineConfig, WebhookSettings};
use crate::error::BoxError;
use crate::stage::registry::receive::{ReceiverSettings, WebhookReceiver};
use crate::stage::registry::webhook::Limits;

pub type MlflowWebhookFn =
    WebhookReceiver<SecretsManagerSecret, MlflowRegistry, EventBridgeBus, S3Store>;

/// Builds the receiver and reads the secret (cold start).
pub async fn from_env() -> Result<MlflowWebhookFn, BoxError> {
    let settings = WebhookSettings::from_env(|k| std::env::var(k).ok())?;
    let pipeline = PipelineConfig::load(&settings.pipeline_config)?;
    let sdk = aws::load().await;
    let receiver = WebhookReceiver::new(
        pipeline,
        ReceiverSettings {
            artifact_bucket: settings.artifact_bucket.clone(),
            state_prefix: settings.state_prefix.clone(),
            limits: Limits {
                max_skew: settings.max_skew,
                ..Limits::default()
            },
            secret_refresh: Duration::from_secs(60),
            // Longer than the function's timeout, so a live invocation is never overtaken.
            claim_lease: Duration::from_secs(60),
        },
        SecretsManagerSecret::new(
            aws_sdk_secretsmanager::Client::new(&sdk),
            &settings.secret_id,
        ),
        MlflowRegistry::new(&settings.mlflow_tracking_uri, |k| std::env::var(k).ok())?,
        EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &settings.event_bus),
        S3Store::new(aws::s3_client(&sdk)),
    );
    receiver.load_secret().await?;
    Ok(receiver)
}
