//! `promote-model`: a `ModelValidated` for a model with a `serving` block becomes a commit to
//! the GitOps manifests repo: the model's `release.yaml` pins the version (MLflow model server:
//! `models:/<name>/<version>` or the version's artifact URI; vLLM: the S3 URI of its weights),
//! committed with `Mlops-Run-Id:` / `Mlops-Model:` / `Mlops-Model-Version:` trailers and pushed
//! without force, then `ModelPromoted` names the commit.
//!
//! Once per (model, version): a claim marker serialises redeliveries and concurrent deliveries,
//! the Git adapter makes no commit when the file already pins that version, and a version older
//! than the one released is never written over it.

use sha2::{Digest, Sha256};

use super::release::{self, Release};
use crate::config::{GitConfig, ModelRef, PipelineConfig, ServingConfig};
use crate::error::{BusError, Classify, ErrorClass, GitError, StoreError};
use crate::event::{BusEvent, ModelPromoted, ModelValidated, PromotionFailed, SCHEMA_VERSION};
use crate::port::{
    CommitSpec, EventBus, FileChange, GitAuthor, GitRemote, ModelRegistry, ObjectStore, Pushed,
    RegistryError,
};
use crate::stage::claim::{Claim, Claims};

/// Overrides the reference of a version's weights (any URI the engine loads).
pub const MODEL_URI_TAG: &str = "mlops.model_uri";

/// The MLflow tag a trainer sets (on its run and version) to the source commit it was built from.
pub const GIT_COMMIT_TAG: &str = "mlops.git_commit";

#[derive(Debug, Clone)]
pub struct PromoteSettings {
    pub artifact_bucket: String,
    pub state_prefix: String,
    pub claim_lease: std::time::Duration,
    pub author: GitAuthor,
}

#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("{model} version {version} is being promoted by another invocation (run {run_id})")]
    InProgress {
        model: String,
        version: String,
        run_id: String,
    },
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("encoding the event: {0}")]
    Encode(#[from] serde_json::Error),
}

impl Classify for PromoteError {
    fn class(&self) -> ErrorClass {
        match self {
            PromoteError::Git(e) => e.class(),
            PromoteError::Encode(_) => ErrorClass::Permanent,
            PromoteError::Bus(e) => e.class(),
            PromoteError::Store(e) => e.class(),
            _ => ErrorClass::Transient,
        }
    }
}

/// What handling one event did.
#[derive(Debug, Clone, PartialEq)]
pub enum Promoted {
    Promoted(ModelPromoted),
    Failed(PromotionFailed),
    /// Not for this stage, or already done; the reason is for the log.
    Ignored(String),
}

pub struct PromoteModel<'a, R, G, B, S> {
    pub pipeline: &'a PipelineConfig,
    pub settings: &'a PromoteSettings,
    pub registry: &'a R,
    pub git: &'a G,
    pub bus: &'a B,
    pub store: &'a S,
}

/// A permanent reason not to promote, turned into `PromotionFailed`.
struct Refusal(String);

impl<R: ModelRegistry, G: GitRemote, B: EventBus, S: ObjectStore> PromoteModel<'_, R, G, B, S> {
    pub async fn handle(&self, v: &ModelValidated) -> Result<Promoted, PromoteError> {
        let Some(serving) = self
            .pipeline
            .models
            .get(&v.model)
            .and_then(|m| m.serving.as_ref())
        else {
            return Ok(Promoted::Ignored(format!(
                "model {:?} has no serving block",
                v.model
            )));
        };
        let Some(git) = self.pipeline.git.as_ref() else {
            return Ok(Promoted::Ignored("no git.manifests_repo configured".into()));
        };
        let claims = Claims {
            store: self.store,
            bucket: &self.settings.artifact_bucket,
            lease: self.settings.claim_lease,
        };
        let mut h = Sha256::new();
        h.update(v.model.as_bytes());
        h.update([0]);
        h.update(v.version.as_bytes());
        let key = format!(
            "{}promote-model/versions/{}.json",
            self.settings.state_prefix,
            hex::encode(h.finalize())
        );
        let etag = match claims.claim(&key, &v.run_id).await? {
            Claim::Owned { etag, .. } => etag,
            Claim::Done { outcome, .. } => {
                return Ok(Promoted::Ignored(format!(
                    "{} v{} was handled already ({outcome})",
                    v.model, v.version
                )));
            }
            Claim::Busy { run_id, .. } => {
                return Err(PromoteError::InProgress {
                    model: v.model.clone(),
                    version: v.version.clone(),
                    run_id,
                });
            }
        };
        let result = self.promote(v, serving, git).await;
        let (event, outcome) = match result {
            Ok(Ok(Some(p))) => (BusEvent::new(&p)?, Promoted::Promoted(p)),
            Ok(Ok(None)) => {
                let why = format!(
                    "{} v{} is older than the released version; left alone",
                    v.model, v.version
                );
                claims.finish(&key, &etag, &v.run_id, "superseded").await?;
                return Ok(Promoted::Ignored(why));
            }
            Ok(Err(Refusal(reason))) => {
                let f = self.failed(v, reason);
                (BusEvent::new(&f)?, Promoted::Failed(f))
            }
            Err(e) if e.class() == ErrorClass::Permanent => {
                let f = self.failed(v, e.to_string());
                (BusEvent::new(&f)?, Promoted::Failed(f))
            }
            Err(e) => {
                if let Err(r) = claims.release(&key, &etag, &v.run_id).await {
                    tracing::warn!(error = %r, "releasing the promotion claim failed");
                }
                return Err(e);
            }
        };
        if let Err(e) = self.bus.put(std::slice::from_ref(&event)).await {
            if let Err(r) = claims.release(&key, &etag, &v.run_id).await {
                tracing::warn!(error = %r, "releasing the promotion claim failed");
            }
            return Err(e.into());
        }
        if let Err(e) = claims
            .finish(&key, &etag, &v.run_id, &event.detail_type)
            .await
        {
            // The event is out; a redelivery finds the release already pinned (no commit).
            tracing::warn!(error = %e, "recording the promotion failed");
        }
        Ok(outcome)
    }

    fn failed(&self, v: &ModelValidated, reason: String) -> PromotionFailed {
        tracing::warn!(model = %v.model, version = %v.version, %reason, "promotion failed");
        PromotionFailed {
            schema_version: SCHEMA_VERSION.into(),
            run_id: v.run_id.clone(),
            model: v.model.clone(),
            version: v.version.clone(),
            reason,
        }
    }

    /// `Ok(Ok(None))`: a newer version is released already.
    async fn promote(
        &self,
        v: &ModelValidated,
        serving: &ServingConfig,
        git: &GitConfig,
    ) -> Result<Result<Option<ModelPromoted>, Refusal>, PromoteError> {
        let uri = match self.model_uri(v, serving).await? {
            Ok(u) => u,
            Err(r) => return Ok(Err(r)),
        };
        let path = serving.release_path();
        let current = self.git.read_file(&git.branch, &path).await?;
        if let Some(pinned) = current.as_deref().and_then(release::pinned_version)
            && release::is_older(&v.version, &pinned)
        {
            return Ok(Ok(None));
        }
        let content = release::render(
            serving,
            &Release {
                model: v.model.clone(),
                version: v.version.clone(),
                run_id: v.run_id.clone(),
                model_uri: uri.clone(),
            },
        );
        // A version trained by a code push names its source commit (the trainer's
        // `mlops.git_commit` tag on the version).
        let code = self
            .registry
            .version(&v.model, &v.version)
            .await?
            .and_then(|m| m.tags.get(GIT_COMMIT_TAG).cloned())
            .filter(|c| !c.trim().is_empty());
        let (code_line, code_trailer) = match &code {
            Some(c) => (
                format!(" Trained from source commit {c}."),
                format!("Mlops-Git-Commit: {c}\n"),
            ),
            None => (String::new(), String::new()),
        };
        let message = format!(
            "Promote {model} v{version} ({engine}, {app})\n\n\
             Validated in pipeline run {run}; serves {uri}.{code_line}\n\n\
             Mlops-Run-Id: {run}\nMlops-Model: {model}\nMlops-Model-Version: {version}\n{code_trailer}",
            model = v.model,
            version = v.version,
            engine = serving.engine.name(),
            app = serving.argocd_app,
            run = v.run_id,
        );
        let pushed = self
            .git
            .commit(&CommitSpec {
                branch: git.branch.clone(),
                message,
                author: self.settings.author.clone(),
                changes: vec![FileChange {
                    path: path.clone(),
                    content: Some(content.into_bytes()),
                    // Decided on what was read: if another release lands first, the commit
                    // fails as stale and the redelivery decides again (never older over newer).
                    expected: Some(current),
                }],
            })
            .await?;
        let commit = match pushed {
            Pushed::Committed {
                commit, attempts, ..
            } => {
                tracing::info!(%commit, attempts, "release committed");
                commit
            }
            Pushed::Unchanged { head } => {
                tracing::info!(%head, "the release already pins this version; no commit");
                head
            }
        };
        Ok(Ok(Some(ModelPromoted {
            schema_version: SCHEMA_VERSION.into(),
            run_id: v.run_id.clone(),
            model: v.model.clone(),
            version: v.version.clone(),
            repo: git.manifests_repo.clone(),
            path,
            commit,
        })))
    }

    async fn model_uri(
        &self,
        v: &ModelValidated,
        serving: &ServingConfig,
    ) -> Result<Result<String, Refusal>, PromoteError> {
        if serving.model_ref() == ModelRef::Registry {
            return Ok(Ok(format!("models:/{}/{}", v.model, v.version)));
        }
        let Some(version) = self.registry.version(&v.model, &v.version).await? else {
            return Ok(Err(Refusal(format!(
                "{} version {} is not in the registry",
                v.model, v.version
            ))));
        };
        if let Some(uri) = version.tags.get(MODEL_URI_TAG).filter(|u| !u.is_empty()) {
            return Ok(Ok(uri.clone()));
        }
        if version.source.starts_with("s3://") {
            return Ok(Ok(version.source));
        }
        Ok(Err(Refusal(format!(
            "{} version {} has no S3 URI for its weights (source {:?}): set the version tag \
             {MODEL_URI_TAG}, or register it from s3://",
            v.model, v.version, version.source
        ))))
    }
}
