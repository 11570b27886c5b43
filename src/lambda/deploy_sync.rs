//! Wiring of the `deploy-sync` function: fed by its queue with `GitPushed` (from the bus) and
//! its own delayed `DeploymentCheck` messages.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;

use super::promote_model::manifests_remote;
use super::sqs::EventHandler;
use crate::adapter::argocd::ArgoCdClient;
use crate::adapter::git::Git2Remote;
use crate::adapter::secrets::SecretsManagerSecret;
use crate::adapter::sqs::SqsDelayQueue;
use crate::adapter::{aws, eventbridge::EventBridgeBus, mlflow::MlflowRegistry, s3::S3Store};
use crate::config::{DeploySyncFnSettings, PipelineConfig};
use crate::error::{BoxError, Classify, ErrorClass};
use crate::event::GitPushed;
use crate::port::{ArgoCd, DelayQueue, EventBus, GitAuthor, GitRemote, ModelRegistry, ObjectStore};
use crate::stage::deploy::sync::{
    CHECK, DeployError, DeploySettings, DeploySync, Deployed, DeploymentCheck,
};

pub struct DeploySyncFn<A, G, R, B, S, Q> {
    pub pipeline: PipelineConfig,
    pub settings: DeploySettings,
    /// `None` without an `argocd` block: every push is reported skipped.
    pub argocd: Option<A>,
    pub git: G,
    pub registry: R,
    pub bus: B,
    pub store: S,
    pub queue: Q,
}

pub type LambdaDeploySync =
    DeploySyncFn<ArgoCdClient, Git2Remote, MlflowRegistry, EventBridgeBus, S3Store, SqsDelayQueue>;

impl LambdaDeploySync {
    /// Reads the Git and Argo CD tokens at cold start.
    pub async fn from_env() -> Result<Self, BoxError> {
        let s = DeploySyncFnSettings::from_env(|k| std::env::var(k).ok())?;
        let pipeline = PipelineConfig::load(&s.git.pipeline_config)?;
        let sdk = aws::load().await;
        let argocd = match (&pipeline.argocd, &s.argocd_token_secret) {
            (None, _) => None,
            (Some(_), None) => {
                return Err("the pipeline config has an argocd block but ARGOCD_TOKEN_SECRET_ARN is not set".into());
            }
            (Some(cfg), Some(secret)) => {
                let token =
                    SecretsManagerSecret::new(aws_sdk_secretsmanager::Client::new(&sdk), secret)
                        .token()
                        .await?;
                Some(ArgoCdClient::new(
                    &cfg.server,
                    token,
                    cfg.app_namespace.clone(),
                )?)
            }
        };
        let git = manifests_remote(&sdk, &s.git, &pipeline).await?;
        Ok(DeploySyncFn {
            argocd,
            git,
            registry: MlflowRegistry::new(&s.git.mlflow_tracking_uri, |k| std::env::var(k).ok())?,
            bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &s.git.event_bus),
            store: S3Store::new(aws::s3_client(&sdk)),
            queue: SqsDelayQueue::new(aws_sdk_sqs::Client::new(&sdk), &s.check_queue_url),
            settings: DeploySettings {
                artifact_bucket: s.git.artifact_bucket,
                state_prefix: s.git.state_prefix,
                claim_lease: s.git.claim_lease,
                author: GitAuthor {
                    name: s.git.git_author_name,
                    email: s.git.git_author_email,
                },
            },
            pipeline,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeploySyncFnError {
    /// Neither a `GitPushed` nor a `DeploymentCheck`: nothing to retry.
    #[error("not a {0} detail: {1}")]
    BadDetail(&'static str, serde_json::Error),
    #[error("unexpected detail-type {0:?}")]
    UnknownType(String),
    #[error(transparent)]
    Stage(#[from] DeployError),
}

impl Classify for DeploySyncFnError {
    fn class(&self) -> ErrorClass {
        match self {
            DeploySyncFnError::Stage(e) => e.class(),
            _ => ErrorClass::Permanent,
        }
    }
}

impl<A: ArgoCd, G: GitRemote, R: ModelRegistry, B: EventBus, S: ObjectStore, Q: DelayQueue>
    EventHandler for DeploySyncFn<A, G, R, B, S, Q>
{
    type Error = DeploySyncFnError;
    const NAME: &'static str = "deploy-sync";

    async fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
    ) -> Result<String, DeploySyncFnError> {
        let stage = DeploySync {
            pipeline: &self.pipeline,
            settings: &self.settings,
            argocd: self.argocd.as_ref(),
            git: &self.git,
            registry: &self.registry,
            bus: &self.bus,
            store: &self.store,
            queue: &self.queue,
        };
        let done: Vec<Deployed> = match event.detail_type.as_str() {
            "GitPushed" => {
                let p: GitPushed = serde_json::from_value(event.detail.clone())
                    .map_err(|e| DeploySyncFnError::BadDetail("GitPushed", e))?;
                stage.handle_push(&p).await?
            }
            CHECK => {
                let c: DeploymentCheck = serde_json::from_value(event.detail.clone())
                    .map_err(|e| DeploySyncFnError::BadDetail(CHECK, e))?;
                vec![stage.handle_check(&c).await?]
            }
            other => return Err(DeploySyncFnError::UnknownType(other.to_owned())),
        };
        Ok(done
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "))
    }
}
