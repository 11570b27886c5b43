//! `registry-poller`: for registries without webhooks (MLflow before 3.3, managed registries),
//! lists the versions of every configured model created since a watermark and emits
//! `ModelVersionCreated` for each exactly once. Runs beside the webhook safely: the gate's
//! idempotency key is (model, version), not the delivery.
//!
//! Exactly once: each version is claimed with a marker (a second poller, or the next tick, finds
//! it claimed or done); the watermark only moves after every version up to it was emitted, and
//! re-reads a few minutes before it, so a version committed late is not skipped.

use sha2::{Digest, Sha256};

use crate::config::PipelineConfig;
pub use crate::config::PollSettings;
use crate::error::{BusError, Classify, ErrorClass, StoreError};
use crate::event::{BusEvent, ModelVersionCreated, SCHEMA_VERSION, new_run_id};
use crate::port::{EventBus, ModelRegistry, ObjectStore, Precondition, RegistryError};
use crate::stage::claim::{Claim, Claims};

/// The tag the pipeline's versions carry (set by the trainer or training-watch).
pub const RUN_ID_TAG: &str = "mlops.run_id";
/// How far before the watermark each tick looks again (versions are committed with the
/// registry's clock, which a tick may see late).
const OVERLAP_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

impl Classify for PollError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Transient
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct PollReport {
    /// (model, version, run id) of each event emitted by this tick.
    pub emitted: Vec<(String, String, String)>,
    /// Versions looked at (including ones already emitted).
    pub seen: usize,
}

pub struct RegistryPoller<'a, R, B, S> {
    pub pipeline: &'a PipelineConfig,
    pub settings: &'a PollSettings,
    pub registry: &'a R,
    pub bus: &'a B,
    pub store: &'a S,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Watermark {
    model: String,
    since_ms: i64,
}

/// The pipeline run a version belongs to: its `mlops.run_id` tag, else that of its MLflow run,
/// else a fresh run (a version registered by hand starts a run of its own).
pub async fn run_id_of<R: ModelRegistry>(
    registry: &R,
    version_tags: &std::collections::BTreeMap<String, String>,
    mlflow_run_id: Option<&str>,
) -> Result<String, RegistryError> {
    if let Some(r) = version_tags.get(RUN_ID_TAG) {
        return Ok(r.clone());
    }
    Ok(match mlflow_run_id {
        Some(id) => registry
            .run(id)
            .await?
            .and_then(|r| r.tags.get(RUN_ID_TAG).cloned())
            .unwrap_or_else(new_run_id),
        None => new_run_id(),
    })
}

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

impl<R: ModelRegistry, B: EventBus, S: ObjectStore> RegistryPoller<'_, R, B, S> {
    pub async fn tick(&self) -> Result<PollReport, PollError> {
        let mut report = PollReport::default();
        for model in self.pipeline.models.keys() {
            self.poll_model(model, &mut report).await?;
        }
        Ok(report)
    }

    async fn poll_model(&self, model: &str, report: &mut PollReport) -> Result<(), PollError> {
        let bucket = &self.settings.artifact_bucket;
        let wm_key = format!(
            "{}registry-poller/watermarks/{}.json",
            self.settings.state_prefix,
            digest(&[model])
        );
        let current = self.store.get(bucket, &wm_key).await?;
        let since = current
            .as_ref()
            .and_then(|f| serde_json::from_slice::<Watermark>(&f.body).ok())
            .map(|w| w.since_ms)
            .unwrap_or_else(|| {
                chrono::Utc::now().timestamp_millis()
                    - i64::try_from(self.settings.lookback.as_millis()).unwrap_or(i64::MAX)
            });
        let versions = self
            .registry
            .versions_since(model, since.saturating_sub(OVERLAP_MS))
            .await?;
        let claims = Claims {
            store: self.store,
            bucket,
            lease: self.settings.claim_lease,
        };
        let mut newest = since;
        // A version another poller holds keeps the watermark before it, so it is looked at
        // again if that poller dies before emitting.
        let mut held = false;
        for v in &versions {
            report.seen += 1;
            let key = format!(
                "{}registry-poller/versions/{}.json",
                self.settings.state_prefix,
                digest(&[model, &v.version])
            );
            let run_id = run_id_of(self.registry, &v.tags, v.mlflow_run_id.as_deref()).await?;
            match claims.claim(&key, &run_id).await? {
                Claim::Done { .. } => {}
                Claim::Busy { .. } => held = true,
                Claim::Owned { etag, run_id } => {
                    let detail = ModelVersionCreated {
                        schema_version: SCHEMA_VERSION.into(),
                        run_id: run_id.clone(),
                        model: model.to_owned(),
                        version: v.version.clone(),
                        source: v.source.clone(),
                        mlflow_run_id: v.mlflow_run_id.clone(),
                        delivery_id: format!("poll:{model}:{}", v.version),
                    };
                    let event = BusEvent {
                        source: "mlops.registry-poller".into(),
                        ..BusEvent::new(&detail)?
                    };
                    if let Err(e) = self.bus.put(std::slice::from_ref(&event)).await {
                        if let Err(re) = claims.release(&key, &etag, &run_id).await {
                            tracing::warn!(error = %re, "releasing the claim failed");
                        }
                        return Err(e.into());
                    }
                    claims.finish(&key, &etag, &run_id, "emitted").await?;
                    report
                        .emitted
                        .push((model.to_owned(), v.version.clone(), run_id));
                }
            }
            if !held {
                newest = newest.max(v.created_ms);
            }
        }
        if newest > since {
            let body = serde_json::to_vec(&Watermark {
                model: model.to_owned(),
                since_ms: newest,
            })?;
            let pre = match current {
                Some(f) => Precondition::Matches(f.etag),
                None => Precondition::Absent,
            };
            // A lost race means another poller moved it: either value is safe (markers dedupe).
            self.store.put(bucket, &wm_key, body, pre).await?;
        }
        Ok(())
    }
}
