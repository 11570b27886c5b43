//! `deploy-sync`: a `GitPushed` becomes an Argo CD sync per application, watched through
//! delayed re-checks on the function's own queue (no sleeping Lambda) until the completion
//! condition of CONTRACTS §7 holds ([`super::health::judge`]), the app fails, or the deadline
//! from config passes.
//!
//! - Healthy: the release's version becomes the `champion` (unless a newer version already is)
//!   and is tagged `mlops.deployment.status=healthy`; `DeploymentHealthy`.
//! - Degraded, a failed operation or the deadline: the promotion commit is reverted in Git (Git
//!   stays the source of truth; Argo CD's rollback API refuses auto-synced apps), the version
//!   tagged `rolled_back` with Argo CD's message; `DeploymentRolledBack`. A push by a person and
//!   the pipeline's own revert are never reverted: `DeploymentFailed`.
//! - "Another operation is already in progress": the sync is asked for again on a later check.
//! - No Argo CD configured: `DeploymentSkipped`, never a fake success.
//!
//! Redelivery and concurrent delivery: the sync is requested once per (application, revision),
//! each re-check runs once per attempt (so duplicated messages cannot multiply the chain), the
//! verdict is written once (create-only) and every copy acts on that one, and acting on it
//! emits once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::health::{SyncVerdict, judge};
use super::receive::ROLLBACK_TRAILER;
use super::release;
use crate::config::{ArgoCdConfig, PipelineConfig};
use crate::error::{BusError, Classify, ErrorClass, GitError, StoreError};
use crate::event::{
    BusEvent, DeploymentFailed, DeploymentHealthy, DeploymentRolledBack, DeploymentSkipped,
    GitPushed, ReleaseRef, SCHEMA_VERSION,
};
use crate::port::{
    ArgoCd, ArgoError, DelayQueue, EventBus, GitAuthor, GitRemote, ModelRegistry, ObjectStore,
    Precondition, Pushed, RegistryError, Written,
};
use crate::stage::claim::{Claim, Claims};
use crate::stage::registry::validate::CHAMPION;

pub const DEPLOYMENT_STATUS_TAG: &str = "mlops.deployment.status";
pub const DEPLOYMENT_MESSAGE_TAG: &str = "mlops.deployment.message";
/// The detail-type of deploy-sync's re-check messages (on its own queue, never on the bus).
pub const CHECK: &str = "DeploymentCheck";
pub const NO_ARGOCD: &str = "no Argo CD configured";
/// MLflow caps tag values; Argo CD's messages can be long.
const MAX_TAG_MESSAGE: usize = 1000;

/// One re-check of one application at one revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentCheck {
    pub run_id: String,
    pub application: String,
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
    /// RFC 3339: not done by then, the deployment failed.
    pub deadline: String,
    /// Argo CD was busy with another operation: the sync is still to be asked for.
    #[serde(default)]
    pub sync_pending: bool,
    pub attempt: u32,
}

#[derive(Debug, Clone)]
pub struct DeploySettings {
    pub artifact_bucket: String,
    pub state_prefix: String,
    pub claim_lease: Duration,
    /// The author of revert commits.
    pub author: GitAuthor,
}

/// What was decided about a deployment, written once before acting on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Decision {
    Healthy {
        message: String,
    },
    /// Roll back a release (a person's push or our revert: report only).
    Unhealthy {
        reason: String,
    },
    /// Nothing can be judged (Argo CD refused us); never rolled back.
    Failed {
        reason: String,
    },
    Skipped {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{what} is being handled by another invocation")]
    InProgress { what: String },
    #[error(transparent)]
    Argo(#[from] ArgoError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

impl Classify for DeployError {
    fn class(&self) -> ErrorClass {
        match self {
            DeployError::Argo(e) => e.class(),
            DeployError::Git(e) => e.class(),
            DeployError::Store(e) => e.class(),
            DeployError::Bus(e) => e.class(),
            DeployError::Encode(_) => ErrorClass::Permanent,
            DeployError::Registry(_) | DeployError::InProgress { .. } => ErrorClass::Transient,
        }
    }
}

/// What handling one message did, per application.
#[derive(Debug, Clone, PartialEq)]
pub enum Deployed {
    Healthy(DeploymentHealthy),
    RolledBack(DeploymentRolledBack),
    Failed(DeploymentFailed),
    Skipped(DeploymentSkipped),
    /// Not done yet: checked again after `check_every`.
    Checking {
        application: String,
        why: String,
    },
    /// A duplicate, or already done; why, for the log.
    Ignored(String),
}

impl std::fmt::Display for Deployed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Deployed::Healthy(h) => {
                write!(f, "DeploymentHealthy {} at {}", h.application, h.revision)
            }
            Deployed::RolledBack(r) => {
                write!(f, "DeploymentRolledBack {}: {}", r.application, r.reason)
            }
            Deployed::Failed(x) => write!(f, "DeploymentFailed {}: {}", x.application, x.reason),
            Deployed::Skipped(s) => write!(f, "DeploymentSkipped {}: {}", s.application, s.reason),
            Deployed::Checking { application, why } => {
                write!(f, "{application}: {why}; checking again")
            }
            Deployed::Ignored(why) => f.write_str(why),
        }
    }
}

/// The latest push seen per application: a check of an older revision stands down.
#[derive(Debug, Serialize, Deserialize)]
struct Latest {
    revision: String,
}

pub struct DeploySync<'a, A, G, R, B, S, Q> {
    pub pipeline: &'a PipelineConfig,
    pub settings: &'a DeploySettings,
    /// `None` with no `argocd` block: every push is skipped.
    pub argocd: Option<&'a A>,
    pub git: &'a G,
    pub registry: &'a R,
    pub bus: &'a B,
    pub store: &'a S,
    pub queue: &'a Q,
}

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl<A, G, R, B, S, Q> DeploySync<'_, A, G, R, B, S, Q>
where
    A: ArgoCd,
    G: GitRemote,
    R: ModelRegistry,
    B: EventBus,
    S: ObjectStore,
    Q: DelayQueue,
{
    fn claims(&self) -> Claims<'_, S> {
        Claims {
            store: self.store,
            bucket: &self.settings.artifact_bucket,
            lease: self.settings.claim_lease,
        }
    }

    fn key(&self, kind: &str, app: &str, revision: &str) -> String {
        format!(
            "{}deploy-sync/{kind}/{}.json",
            self.settings.state_prefix,
            hash(&[app, revision])
        )
    }

    /// Runs `work` once per `key`: a finished key is skipped, a live claim is retried later,
    /// and a transient failure releases the claim for the redelivery.
    async fn once<F>(
        &self,
        key: &str,
        run_id: &str,
        what: &str,
        work: F,
    ) -> Result<Deployed, DeployError>
    where
        F: Future<Output = Result<Deployed, DeployError>>,
    {
        let claims = self.claims();
        let etag = match claims.claim(key, run_id).await? {
            Claim::Owned { etag, .. } => etag,
            Claim::Done { outcome, .. } => {
                return Ok(Deployed::Ignored(format!(
                    "{what} was handled already ({outcome})"
                )));
            }
            Claim::Busy { .. } => return Err(DeployError::InProgress { what: what.into() }),
        };
        match work.await {
            Ok(d) => {
                let outcome = match &d {
                    Deployed::Checking { .. } => "checking".to_owned(),
                    Deployed::Ignored(_) => "ignored".to_owned(),
                    other => other.to_string().split(' ').next().unwrap_or("").to_owned(),
                };
                if let Err(e) = claims.finish(key, &etag, run_id, &outcome).await {
                    tracing::warn!(error = %e, %key, "recording the outcome failed");
                }
                Ok(d)
            }
            Err(e) => {
                if let Err(r) = claims.release(key, &etag, run_id).await {
                    tracing::warn!(error = %r, %key, "releasing the claim failed");
                }
                Err(e)
            }
        }
    }

    /// A push: one sync per application it concerns.
    pub async fn handle_push(&self, p: &GitPushed) -> Result<Vec<Deployed>, DeployError> {
        let mut out = Vec::with_capacity(p.applications.len());
        for app in &p.applications {
            let check = DeploymentCheck {
                run_id: p.run_id.clone(),
                application: app.clone(),
                revision: p.revision.clone(),
                release: p.releases.iter().find(|r| r.application == *app).cloned(),
                rollback_of: p.rollback_of.clone(),
                deadline: String::new(),
                sync_pending: true,
                attempt: 0,
            };
            let key = self.key("syncs", app, &p.revision);
            let what = format!("the sync of {app} to {}", p.revision);
            out.push(self.once(&key, &p.run_id, &what, self.start(check)).await?);
        }
        Ok(out)
    }

    async fn start(&self, mut c: DeploymentCheck) -> Result<Deployed, DeployError> {
        let (Some(argocd), Some(cfg)) = (self.argocd, self.pipeline.argocd.as_ref()) else {
            return self
                .conclude(
                    &c,
                    Decision::Skipped {
                        reason: NO_ARGOCD.into(),
                    },
                )
                .await;
        };
        let latest = serde_json::to_vec(&Latest {
            revision: c.revision.clone(),
        })?;
        let key = self.key("latest", &c.application, "");
        self.store
            .put(
                &self.settings.artifact_bucket,
                &key,
                latest,
                Precondition::None,
            )
            .await?;
        let within = i64::try_from(cfg.deadline)
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .and_then(|d| Utc::now().checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        c.deadline = within.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        if let Some(failed) = self.request(argocd, &mut c).await? {
            return Ok(failed);
        }
        self.schedule(&c, cfg).await?;
        Ok(Deployed::Checking {
            application: c.application.clone(),
            why: if c.sync_pending {
                "another operation is in progress; the sync will be asked for again".into()
            } else {
                format!("sync to {} requested", c.revision)
            },
        })
    }

    /// Asks for the sync (a refresh for an auto-synced app); a refusal concludes the
    /// deployment as failed.
    async fn request(
        &self,
        argocd: &A,
        c: &mut DeploymentCheck,
    ) -> Result<Option<Deployed>, DeployError> {
        let result = async {
            let app = argocd.application(&c.application, true).await?;
            if !app.auto_synced() {
                argocd.sync(&c.application, &c.revision).await?;
            }
            Ok::<(), ArgoError>(())
        }
        .await;
        match result {
            Ok(()) => {
                c.sync_pending = false;
                Ok(None)
            }
            Err(ArgoError::Busy { .. }) => {
                c.sync_pending = true;
                Ok(None)
            }
            Err(e) if e.class() == ErrorClass::Permanent => {
                let reason = e.to_string();
                Ok(Some(self.decide(c, Decision::Failed { reason }).await?))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn schedule(&self, c: &DeploymentCheck, cfg: &ArgoCdConfig) -> Result<(), DeployError> {
        let next = DeploymentCheck {
            attempt: c.attempt + 1,
            ..c.clone()
        };
        let mut envelope =
            aws_lambda_events::event::eventbridge::EventBridgeEvent::<serde_json::Value>::default();
        envelope.version = Some("0".into());
        envelope.id = Some(uuid::Uuid::new_v4().to_string());
        envelope.detail_type = CHECK.into();
        envelope.source = "mlops.deploy-sync".into();
        envelope.time = Some(Utc::now());
        envelope.detail = serde_json::to_value(&next)?;
        self.queue
            .send(
                serde_json::to_string(&envelope)?,
                Duration::from_secs(cfg.check_every),
            )
            .await?;
        Ok(())
    }

    /// A re-check, once per attempt.
    pub async fn handle_check(&self, c: &DeploymentCheck) -> Result<Deployed, DeployError> {
        let key = self.key(
            &format!("checks/{}", c.attempt),
            &c.application,
            &c.revision,
        );
        let what = format!("check {} of {} at {}", c.attempt, c.application, c.revision);
        self.once(&key, &c.run_id, &what, self.check(c.clone()))
            .await
    }

    async fn check(&self, mut c: DeploymentCheck) -> Result<Deployed, DeployError> {
        if let Some(d) = self.decision(&c).await? {
            return self.conclude(&c, d).await;
        }
        let (Some(argocd), Some(cfg)) = (self.argocd, self.pipeline.argocd.as_ref()) else {
            return self
                .decide(
                    &c,
                    Decision::Skipped {
                        reason: NO_ARGOCD.into(),
                    },
                )
                .await;
        };
        let past_deadline = parse_time(&c.deadline).is_none_or(|d| Utc::now() > d);
        if c.sync_pending {
            if let Some(failed) = self.request(argocd, &mut c).await? {
                return Ok(failed);
            }
            if c.sync_pending {
                if past_deadline {
                    let reason = format!(
                        "another Argo CD operation was still in progress at the deadline ({}); the sync to {} never started",
                        c.deadline, c.revision
                    );
                    return self.decide(&c, Decision::Unhealthy { reason }).await;
                }
                self.schedule(&c, cfg).await?;
                return Ok(Deployed::Checking {
                    application: c.application.clone(),
                    why: "another operation is still in progress".into(),
                });
            }
        }
        let app = match argocd.application(&c.application, false).await {
            Ok(a) => a,
            Err(e) if e.class() == ErrorClass::Permanent => {
                let reason = e.to_string();
                return self.decide(&c, Decision::Failed { reason }).await;
            }
            Err(e) => return Err(e.into()),
        };
        let verdict = judge(&app, &c.revision);
        let superseded = match verdict {
            SyncVerdict::Healthy => None,
            _ => self.superseded(&c).await?,
        };
        match (verdict, superseded) {
            (SyncVerdict::Healthy, _) => {
                let message = format!(
                    "synced to {} and Healthy{}",
                    c.revision,
                    app.status
                        .health
                        .message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                );
                self.decide(&c, Decision::Healthy { message }).await
            }
            (_, Some(later)) => {
                let reason =
                    format!("superseded by a later push ({later}) before it became healthy");
                self.decide(&c, Decision::Skipped { reason }).await
            }
            (SyncVerdict::Failed(reason), None) => {
                self.decide(&c, Decision::Unhealthy { reason }).await
            }
            (SyncVerdict::Wait(why), None) if past_deadline => {
                let reason = format!("not healthy by the deadline ({}): {why}", c.deadline);
                self.decide(&c, Decision::Unhealthy { reason }).await
            }
            (SyncVerdict::Wait(why), None) => {
                self.schedule(&c, cfg).await?;
                Ok(Deployed::Checking {
                    application: c.application.clone(),
                    why,
                })
            }
        }
    }

    async fn superseded(&self, c: &DeploymentCheck) -> Result<Option<String>, DeployError> {
        let key = self.key("latest", &c.application, "");
        let Some(f) = self.store.get(&self.settings.artifact_bucket, &key).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice::<Latest>(&f.body)
            .ok()
            .map(|l| l.revision)
            .filter(|r| *r != c.revision))
    }

    async fn decision(&self, c: &DeploymentCheck) -> Result<Option<Decision>, DeployError> {
        let key = self.key("decisions", &c.application, &c.revision);
        let Some(f) = self.store.get(&self.settings.artifact_bucket, &key).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&f.body).ok())
    }

    /// Records the verdict (the first one written wins) and acts on it.
    async fn decide(&self, c: &DeploymentCheck, d: Decision) -> Result<Deployed, DeployError> {
        let key = self.key("decisions", &c.application, &c.revision);
        let body = serde_json::to_vec(&d)?;
        let d = match self
            .store
            .put(
                &self.settings.artifact_bucket,
                &key,
                body,
                Precondition::Absent,
            )
            .await?
        {
            Written::Ok { .. } => d,
            Written::PreconditionFailed => self.decision(c).await?.unwrap_or(d),
        };
        self.conclude(c, d).await
    }

    /// Acts on a decision and emits its event, once.
    async fn conclude(&self, c: &DeploymentCheck, d: Decision) -> Result<Deployed, DeployError> {
        let key = self.key("outcomes", &c.application, &c.revision);
        let what = format!("the outcome of {} at {}", c.application, c.revision);
        self.once(&key, &c.run_id, &what, self.act(c, d)).await
    }

    async fn act(&self, c: &DeploymentCheck, d: Decision) -> Result<Deployed, DeployError> {
        let release = c.release.as_ref().filter(|_| c.rollback_of.is_none());
        let deployed = match d {
            Decision::Skipped { reason } => Deployed::Skipped(DeploymentSkipped {
                schema_version: SCHEMA_VERSION.into(),
                run_id: c.run_id.clone(),
                application: c.application.clone(),
                revision: Some(c.revision.clone()),
                model: c.release.as_ref().map(|r| r.model.clone()),
                version: c.release.as_ref().map(|r| r.version.clone()),
                reason,
            }),
            Decision::Healthy { mut message } => {
                if let Some(r) = release {
                    message.push_str(&self.crown(r).await?);
                }
                Deployed::Healthy(DeploymentHealthy {
                    schema_version: SCHEMA_VERSION.into(),
                    run_id: c.run_id.clone(),
                    application: c.application.clone(),
                    revision: c.revision.clone(),
                    model: release.map(|r| r.model.clone()),
                    version: release.map(|r| r.version.clone()),
                    rollback_of: c.rollback_of.clone(),
                    message,
                })
            }
            Decision::Unhealthy { reason } => match release {
                Some(r) => self.roll_back(c, r, reason).await?,
                None => {
                    let who = if c.rollback_of.is_some() {
                        "the pipeline's own revert is never rolled back"
                    } else {
                        "a push by a person is not rolled back"
                    };
                    self.failed(c, format!("{reason}; {who}"))
                }
            },
            Decision::Failed { reason } => self.failed(c, reason),
        };
        let event = match &deployed {
            Deployed::Healthy(e) => BusEvent::new(e)?,
            Deployed::RolledBack(e) => BusEvent::new(e)?,
            Deployed::Failed(e) => BusEvent::new(e)?,
            Deployed::Skipped(e) => BusEvent::new(e)?,
            Deployed::Checking { .. } | Deployed::Ignored(_) => return Ok(deployed),
        };
        self.bus.put(std::slice::from_ref(&event)).await?;
        Ok(deployed)
    }

    fn failed(&self, c: &DeploymentCheck, reason: String) -> Deployed {
        tracing::warn!(application = %c.application, revision = %c.revision, %reason, "deployment failed");
        Deployed::Failed(DeploymentFailed {
            schema_version: SCHEMA_VERSION.into(),
            run_id: c.run_id.clone(),
            application: c.application.clone(),
            revision: c.revision.clone(),
            model: c.release.as_ref().map(|r| r.model.clone()),
            version: c.release.as_ref().map(|r| r.version.clone()),
            reason,
        })
    }

    /// Moves `champion` to the healthy version unless a newer one holds it; tags the version.
    async fn crown(&self, r: &ReleaseRef) -> Result<String, DeployError> {
        let current = self.registry.alias(&r.model, CHAMPION).await?;
        let note = match current {
            Some(cur) if cur == r.version => format!("; {CHAMPION} already v{cur}"),
            Some(cur) if release::is_older(&r.version, &cur) => {
                format!("; {CHAMPION} stays on the newer v{cur}")
            }
            _ => {
                self.registry
                    .set_alias(&r.model, CHAMPION, &r.version)
                    .await?;
                format!("; {CHAMPION} → v{}", r.version)
            }
        };
        self.registry
            .set_version_tag(&r.model, &r.version, DEPLOYMENT_STATUS_TAG, "healthy")
            .await?;
        Ok(note)
    }

    /// Reverts the promotion commit (tags first: a retry after the revert landed finds the
    /// revert already there and pushes nothing).
    async fn roll_back(
        &self,
        c: &DeploymentCheck,
        r: &ReleaseRef,
        reason: String,
    ) -> Result<Deployed, DeployError> {
        let Some(git) = self.pipeline.git.as_ref() else {
            return Ok(self.failed(c, format!("{reason}; no git block to revert in")));
        };
        let message: String = reason.chars().take(MAX_TAG_MESSAGE).collect();
        self.registry
            .set_version_tag(&r.model, &r.version, DEPLOYMENT_STATUS_TAG, "rolled_back")
            .await?;
        self.registry
            .set_version_tag(&r.model, &r.version, DEPLOYMENT_MESSAGE_TAG, &message)
            .await?;
        let commit_message = format!(
            "Roll back {model} v{version} ({app})\n\n\
             Argo CD did not report {app} healthy at {revision}: {reason}\n\n\
             Mlops-Run-Id: {run}\n{ROLLBACK_TRAILER}: {commit}\n",
            model = r.model,
            version = r.version,
            app = c.application,
            revision = c.revision,
            run = c.run_id,
            commit = r.commit,
        );
        let revert = match self
            .git
            .revert(
                &git.branch,
                &r.commit,
                &commit_message,
                &self.settings.author,
            )
            .await
        {
            Ok(Pushed::Committed { commit, .. }) => Some(commit),
            Ok(Pushed::Unchanged { head }) => {
                tracing::info!(%head, "the promotion is already reverted");
                None
            }
            Err(e) if e.class() == ErrorClass::Permanent => {
                self.registry
                    .set_version_tag(
                        &r.model,
                        &r.version,
                        DEPLOYMENT_STATUS_TAG,
                        "rollback_failed",
                    )
                    .await?;
                return Ok(self.failed(c, format!("{reason}; the rollback failed: {e}")));
            }
            Err(e) => return Err(e.into()),
        };
        tracing::warn!(application = %c.application, model = %r.model, version = %r.version, %reason, "rolled back");
        Ok(Deployed::RolledBack(DeploymentRolledBack {
            schema_version: SCHEMA_VERSION.into(),
            run_id: c.run_id.clone(),
            application: c.application.clone(),
            revision: c.revision.clone(),
            revert_revision: revert,
            model: r.model.clone(),
            version: r.version.clone(),
            reason,
        }))
    }
}
