//! Wiring of the `build-image` function.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;

use super::sqs::EventHandler;
use crate::adapter::secrets::SecretsManagerSecret;
use crate::adapter::{aws, ecr::EcrRegistry, eks::EksClusters, eventbridge::EventBridgeBus};
use crate::config::{BuildFnSettings, PipelineConfig};
use crate::error::BoxError;
use crate::port::{Cluster, EventBus, ImageRegistry};
use crate::stage::build::{BuildError, BuildImage, BuildSettings, Built};

pub struct BuildImageFn<C, R, B> {
    pub pipeline: PipelineConfig,
    pub settings: BuildSettings,
    pub cluster: C,
    /// `None` in the dev stack (no registry: a build is a checkout).
    pub registry: Option<R>,
    pub git_token: secrecy::SecretString,
    pub bus: B,
}

impl BuildImageFn<EksClusters, EcrRegistry, EventBridgeBus> {
    pub async fn from_env() -> Result<Self, BoxError> {
        let s = BuildFnSettings::from_env(|k| std::env::var(k).ok())?;
        let pipeline = PipelineConfig::load(&s.pipeline_config)?;
        let sdk = aws::load().await;
        // Read at cold start: every build of this instance gets the same token Secret.
        let git_token = SecretsManagerSecret::new(
            aws_sdk_secretsmanager::Client::new(&sdk),
            &s.git_token_secret,
        )
        .token()
        .await?;
        Ok(BuildImageFn {
            pipeline,
            settings: BuildSettings {
                cluster_name: s.cluster_name,
                build_namespace: s.build_namespace,
            },
            cluster: EksClusters::new(&sdk),
            registry: Some(EcrRegistry::new(aws_sdk_ecr::Client::new(&sdk))),
            git_token,
            bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &s.event_bus),
        })
    }
}

impl<C: Cluster, R: ImageRegistry, B: EventBus> EventHandler for BuildImageFn<C, R, B> {
    type Error = BuildError;
    const NAME: &'static str = "build-image";

    async fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
    ) -> Result<String, BuildError> {
        let stage = BuildImage {
            pipeline: &self.pipeline,
            settings: &self.settings,
            cluster: &self.cluster,
            registry: self.registry.as_ref(),
            git_token: &self.git_token,
            bus: &self.bus,
        };
        Ok(match stage.handle(event).await? {
            Built::Ignored(why) => format!("ignored: {why}"),
            Built::Duplicate { name } => format!("duplicate: build {name} already submitted"),
            Built::Submitted(s) => format!(
                "ImageBuildSubmitted {}/{} for {} (run {})",
                s.workload.namespace, s.workload.name, s.image, s.run_id
            ),
            Built::Exists(b) => format!(
                "ImageBuilt {}@{}: already in the registry, nothing built (run {})",
                b.image, b.digest, b.run_id
            ),
            Built::Failed(f) => format!(
                "ImageBuildFailed {} (run {}): {:?}",
                f.image, f.run_id, f.condition.message
            ),
        })
    }
}
