//! Wiring of the `promote-model` function (queue-fed with `ModelValidated`).

use aws_lambda_events::event::eventbridge::EventBridgeEvent;

use super::sqs::EventHandler;
use crate::adapter::git::Git2Remote;
use crate::adapter::secrets::SecretsManagerSecret;
use crate::adapter::{aws, eventbridge::EventBridgeBus, mlflow::MlflowRegistry, s3::S3Store};
use crate::config::{PipelineConfig, PromoteFnSettings};
use crate::error::{BoxError, Classify, ErrorClass};
use crate::event::ModelValidated;
use crate::port::{EventBus, GitAuthor, GitRemote, ModelRegistry, ObjectStore};
use crate::stage::deploy::promote::{PromoteError, PromoteModel, PromoteSettings, Promoted};

pub struct PromoteModelFn<R, G, B, S> {
    pub pipeline: PipelineConfig,
    pub settings: PromoteSettings,
    pub registry: R,
    pub git: G,
    pub bus: B,
    pub store: S,
}

impl PromoteModelFn<MlflowRegistry, Git2Remote, EventBridgeBus, S3Store> {
    /// Reads the Git token at cold start; without a `git` block nothing is promoted.
    pub async fn from_env() -> Result<Self, BoxError> {
        let settings = PromoteFnSettings::from_env(|k| std::env::var(k).ok())?;
        let pipeline = PipelineConfig::load(&settings.pipeline_config)?;
        let sdk = aws::load().await;
        let git = manifests_remote(&sdk, &settings, &pipeline).await?;
        Ok(PromoteModelFn {
            pipeline,
            registry: MlflowRegistry::new(&settings.mlflow_tracking_uri, |k| {
                std::env::var(k).ok()
            })?,
            git,
            bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &settings.event_bus),
            store: S3Store::new(aws::s3_client(&sdk)),
            settings: PromoteSettings {
                artifact_bucket: settings.artifact_bucket,
                state_prefix: settings.state_prefix,
                claim_lease: settings.claim_lease,
                author: GitAuthor {
                    name: settings.git_author_name,
                    email: settings.git_author_email,
                },
            },
        })
    }
}

/// The manifests repo with the Git token from Secrets Manager (read at cold start), as
/// promote-model and deploy-sync (reverts) push to it.
pub async fn manifests_remote(
    sdk: &aws_config::SdkConfig,
    settings: &PromoteFnSettings,
    pipeline: &PipelineConfig,
) -> Result<Git2Remote, BoxError> {
    let token = SecretsManagerSecret::new(
        aws_sdk_secretsmanager::Client::new(sdk),
        &settings.git_token_secret,
    )
    .token()
    .await?;
    let repo = pipeline
        .git
        .as_ref()
        .map(|g| g.manifests_repo.clone())
        .ok_or("the pipeline config has no git.manifests_repo")?;
    Ok(Git2Remote::new(
        &repo,
        &settings.git_username,
        Some(token),
        &settings.work_dir,
    )?)
}

#[derive(Debug, thiserror::Error)]
pub enum PromoteFnError {
    /// The event body is not a `ModelValidated`: nothing to retry.
    #[error("not a ModelValidated detail: {0}")]
    BadDetail(serde_json::Error),
    #[error(transparent)]
    Stage(#[from] PromoteError),
}

impl Classify for PromoteFnError {
    fn class(&self) -> ErrorClass {
        match self {
            PromoteFnError::BadDetail(_) => ErrorClass::Permanent,
            PromoteFnError::Stage(e) => e.class(),
        }
    }
}

impl<R: ModelRegistry, G: GitRemote, B: EventBus, S: ObjectStore> EventHandler
    for PromoteModelFn<R, G, B, S>
{
    type Error = PromoteFnError;
    const NAME: &'static str = "promote-model";

    async fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
    ) -> Result<String, PromoteFnError> {
        let v: ModelValidated =
            serde_json::from_value(event.detail.clone()).map_err(PromoteFnError::BadDetail)?;
        let stage = PromoteModel {
            pipeline: &self.pipeline,
            settings: &self.settings,
            registry: &self.registry,
            git: &self.git,
            bus: &self.bus,
            store: &self.store,
        };
        Ok(match stage.handle(&v).await? {
            Promoted::Promoted(p) => {
                format!("ModelPromoted {} v{} at {}", p.model, p.version, p.commit)
            }
            Promoted::Failed(f) => {
                format!("PromotionFailed {} v{}: {}", f.model, f.version, f.reason)
            }
            Promoted::Ignored(why) => why,
        })
    }
}
