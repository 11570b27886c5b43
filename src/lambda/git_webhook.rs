//! Wiring of the `git-webhook` function (a Lambda Function URL, auth NONE: the GitHub signature
//! or GitLab token is checked in code).

use std::time::Duration;

use crate::adapter::secrets::SecretsManagerSecret;
use crate::adapter::{aws, eventbridge::EventBridgeBus, s3::S3Store};
use crate::config::{GitWebhookSettings, PipelineConfig};
use crate::error::BoxError;
use crate::stage::deploy::receive::{PushReceiver, PushReceiverSettings};

pub type GitWebhookFn = PushReceiver<SecretsManagerSecret, EventBridgeBus, S3Store>;

/// Builds the receiver and reads the secret (cold start).
pub async fn from_env() -> Result<GitWebhookFn, BoxError> {
    let settings = GitWebhookSettings::from_env(|k| std::env::var(k).ok())?;
    let pipeline = PipelineConfig::load(&settings.pipeline_config)?;
    let sdk = aws::load().await;
    let receiver = PushReceiver::new(
        pipeline,
        PushReceiverSettings {
            artifact_bucket: settings.artifact_bucket.clone(),
            state_prefix: settings.state_prefix.clone(),
            // Function URLs take request bodies up to 6 MB.
            max_body: 6 << 20,
            secret_refresh: Duration::from_secs(60),
            claim_lease: Duration::from_secs(60),
        },
        SecretsManagerSecret::new(
            aws_sdk_secretsmanager::Client::new(&sdk),
            &settings.secret_id,
        ),
        EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &settings.event_bus),
        S3Store::new(aws::s3_client(&sdk)),
    );
    receiver.load_secret().await?;
    Ok(receiver)
}
