//! `validate-model`: a `ModelVersionCreated` for a model with a `validation` block is judged by
//! the gate against the `champion`, the verdict is written on the version (tags
//! `mlops.validation.status` and `mlops.validation.report`), a pass moves the `challenger`
//! alias, and `ModelValidated` / `ModelRejected` is emitted.
//!
//! Once per (model, version), whatever delivered it (webhook, poller, both, redelivery): a claim
//! marker serialises concurrent deliveries, and the status tag, written last, tells a later
//! delivery the verdict is recorded.

use sha2::{Digest, Sha256};

use super::gate::{self, Evidence};
use crate::config::{PipelineConfig, ValidateSettings};
use crate::error::{BusError, Classify, ErrorClass, StoreError};
use crate::event::{BusEvent, ModelRejected, ModelValidated, ModelVersionCreated, SCHEMA_VERSION};
use crate::port::{EventBus, ModelRegistry, ObjectStore, RegistryError, VersionStatus};
use crate::stage::claim::{Claim, Claims};

pub const STATUS_TAG: &str = "mlops.validation.status";
pub const REPORT_TAG: &str = "mlops.validation.report";
pub const DATASET_VERSION_TAG: &str = "mlops.dataset_version";
pub const CHAMPION: &str = "champion";
pub const CHALLENGER: &str = "challenger";

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("{model} version {version} is still registering (PENDING_REGISTRATION)")]
    Pending { model: String, version: String },
    #[error(
        "{model} version {version} is being validated by another invocation (claimed {claimed_at}, run {run_id})"
    )]
    InProgress {
        model: String,
        version: String,
        run_id: String,
        claimed_at: String,
    },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("encoding the event: {0}")]
    Encode(#[from] serde_json::Error),
}

impl Classify for ValidateError {
    fn class(&self) -> ErrorClass {
        match self {
            ValidateError::Encode(_) => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        }
    }
}

/// What handling one event did.
#[derive(Debug, Clone, PartialEq)]
pub enum Validated {
    Passed(ModelValidated),
    Rejected(ModelRejected),
    /// The verdict was recorded before (by an earlier delivery): nothing new is emitted.
    AlreadyDone(String),
    /// The model has no `validation` block.
    NoGate,
}

pub struct ValidateModel<'a, R, B, S> {
    pub pipeline: &'a PipelineConfig,
    pub settings: &'a ValidateSettings,
    pub registry: &'a R,
    pub bus: &'a B,
    pub store: &'a S,
}

impl<R: ModelRegistry, B: EventBus, S: ObjectStore> ValidateModel<'_, R, B, S> {
    fn gate(&self, model: &str) -> Option<&crate::config::ValidationConfig> {
        self.pipeline
            .models
            .get(model)
            .and_then(|m| m.validation.as_ref())
    }

    pub async fn handle(&self, e: &ModelVersionCreated) -> Result<Validated, ValidateError> {
        let Some(cfg) = self.gate(&e.model) else {
            return Ok(Validated::NoGate);
        };
        let (model, version) = (e.model.as_str(), e.version.as_str());
        let Some(v) = self.registry.version(model, version).await? else {
            return self.emit(missing_version(e)).await;
        };
        if let Some(status) = v.tags.get(STATUS_TAG) {
            return Ok(Validated::AlreadyDone(status.clone()));
        }
        let claims = Claims {
            store: self.store,
            bucket: &self.settings.artifact_bucket,
            lease: self.settings.claim_lease,
        };
        let key = self.claim_key(model, version);
        let etag = match claims.claim(&key, &e.run_id).await? {
            Claim::Done { outcome, .. } => return Ok(Validated::AlreadyDone(outcome)),
            Claim::Busy { run_id, claimed_at } => {
                return Err(ValidateError::InProgress {
                    model: model.into(),
                    version: version.into(),
                    run_id,
                    claimed_at,
                });
            }
            Claim::Owned { etag, .. } => etag,
        };
        match self.judge(e, cfg, &v).await {
            Ok(out) => {
                let outcome = match &out {
                    Validated::Passed(_) => "passed",
                    _ => "failed",
                };
                claims.finish(&key, &etag, &e.run_id, outcome).await?;
                Ok(out)
            }
            Err(err) => {
                // Let the next delivery start again at once; the error is what matters.
                if let Err(re) = claims.release(&key, &etag, &e.run_id).await {
                    tracing::warn!(error = %re, "releasing the claim failed; it expires with its lease");
                }
                Err(err)
            }
        }
    }

    fn claim_key(&self, model: &str, version: &str) -> String {
        let mut h = Sha256::new();
        h.update(model.as_bytes());
        h.update([0]);
        h.update(version.as_bytes());
        format!(
            "{}validate-model/{}.json",
            self.settings.state_prefix,
            hex::encode(h.finalize())
        )
    }

    async fn judge(
        &self,
        e: &ModelVersionCreated,
        cfg: &crate::config::ValidationConfig,
        v: &crate::port::ModelVersion,
    ) -> Result<Validated, ValidateError> {
        let out = self.verdict(e, cfg, v).await?;
        self.record(e, out).await
    }

    /// The verdict on a version without writing anything (what `mlops validate` prints):
    /// `NoGate` for a model without a `validation` block, a rejection for a version that does
    /// not exist.
    pub async fn evaluate(&self, e: &ModelVersionCreated) -> Result<Validated, ValidateError> {
        let Some(cfg) = self.gate(&e.model) else {
            return Ok(Validated::NoGate);
        };
        match self.registry.version(&e.model, &e.version).await? {
            Some(v) => self.verdict(e, cfg, &v).await,
            None => Ok(missing_version(e)),
        }
    }

    /// Writes a verdict from [`Self::evaluate`] on the version (report and status tags, the
    /// `challenger` alias on a pass) without emitting an event.
    pub async fn record_only(
        &self,
        e: &ModelVersionCreated,
        out: &Validated,
    ) -> Result<(), ValidateError> {
        let (status, checks, reason) = match out {
            Validated::Passed(p) => ("passed", &p.checks, None),
            Validated::Rejected(r) => ("failed", &r.checks, Some(&r.reason)),
            _ => return Ok(()),
        };
        self.write_report(e, status, checks, reason).await?;
        self.registry
            .set_version_tag(&e.model, &e.version, STATUS_TAG, status)
            .await?;
        Ok(())
    }

    async fn verdict(
        &self,
        e: &ModelVersionCreated,
        cfg: &crate::config::ValidationConfig,
        v: &crate::port::ModelVersion,
    ) -> Result<Validated, ValidateError> {
        let (model, version) = (e.model.as_str(), e.version.as_str());
        match &v.status {
            VersionStatus::Pending => {
                return Err(ValidateError::Pending {
                    model: model.into(),
                    version: version.into(),
                });
            }
            VersionStatus::Failed(msg) => {
                return Ok(rejected(
                    e,
                    None,
                    vec![],
                    format!("registration failed: {msg}"),
                ));
            }
            VersionStatus::Ready => {}
        }
        let run = match &v.mlflow_run_id {
            Some(id) => self.registry.run(id).await?.unwrap_or_default(),
            None => Default::default(),
        };
        let champion = match self.registry.alias(model, CHAMPION).await? {
            Some(c) if c != version => match self.registry.version(model, &c).await? {
                Some(cv) => {
                    let metrics = match &cv.mlflow_run_id {
                        Some(id) => self.registry.run(id).await?.unwrap_or_default().metrics,
                        None => Default::default(),
                    };
                    Some((c, metrics))
                }
                None => None,
            },
            _ => None,
        };
        let dataset_rows = match &cfg.dataset {
            Some(_) => {
                let dv = run
                    .tags
                    .get(DATASET_VERSION_TAG)
                    .or_else(|| v.tags.get(DATASET_VERSION_TAG))
                    .or_else(|| run.params.get("dataset_version"));
                match dv {
                    Some(dv) => self.dataset_rows(model, dv).await?,
                    None => None,
                }
            }
            None => None,
        };
        let verdict = gate::evaluate(
            cfg,
            &Evidence {
                metrics: &run.metrics,
                champion: champion.as_ref().map(|(c, m)| (c.as_str(), m)),
                dataset_rows,
            },
        );
        let champion_version = champion.map(|(c, _)| c);
        Ok(if verdict.passed {
            Validated::Passed(ModelValidated {
                schema_version: SCHEMA_VERSION.into(),
                run_id: e.run_id.clone(),
                model: model.into(),
                version: version.into(),
                champion_version,
                checks: verdict.checks,
            })
        } else {
            let reason = verdict.reason();
            rejected(e, champion_version, verdict.checks, reason)
        })
    }

    /// Writes the report, moves `challenger` on a pass, emits, then writes the status tag: the
    /// status is the record that the verdict is complete.
    async fn record(
        &self,
        e: &ModelVersionCreated,
        out: Validated,
    ) -> Result<Validated, ValidateError> {
        let (model, version) = (e.model.as_str(), e.version.as_str());
        let (status, checks, reason) = match &out {
            Validated::Passed(p) => ("passed", &p.checks, None),
            Validated::Rejected(r) => ("failed", &r.checks, Some(&r.reason)),
            _ => return Ok(out),
        };
        self.write_report(e, status, checks, reason).await?;
        let out = self.emit(out).await?;
        self.registry
            .set_version_tag(model, version, STATUS_TAG, status)
            .await?;
        Ok(out)
    }

    /// The report tag, and `challenger` on a pass.
    async fn write_report(
        &self,
        e: &ModelVersionCreated,
        status: &str,
        checks: &[crate::event::Check],
        reason: Option<&String>,
    ) -> Result<(), ValidateError> {
        let mut report = serde_json::json!({ "status": status, "checks": checks });
        if let Some(r) = reason {
            report["reason"] = r.clone().into();
        }
        self.registry
            .set_version_tag(&e.model, &e.version, REPORT_TAG, &report.to_string())
            .await?;
        if status == "passed" {
            self.registry
                .set_alias(&e.model, CHALLENGER, &e.version)
                .await?;
        }
        Ok(())
    }

    async fn emit(&self, out: Validated) -> Result<Validated, ValidateError> {
        let event = match &out {
            Validated::Passed(p) => BusEvent::new(p)?,
            Validated::Rejected(r) => BusEvent::new(r)?,
            _ => return Ok(out),
        };
        self.bus.put(std::slice::from_ref(&event)).await?;
        Ok(out)
    }

    /// Train and test rows of the dataset version the run trained on, from its manifest under
    /// the model's dataset; `None` when no manifest is found.
    async fn dataset_rows(
        &self,
        model: &str,
        dataset_version: &str,
    ) -> Result<Option<(u64, u64)>, ValidateError> {
        for (name, d) in &self.pipeline.datasets {
            if d.model.as_deref() != Some(model) {
                continue;
            }
            let key = format!(
                "{}{name}/{dataset_version}/manifest.json",
                self.settings.processed_prefix
            );
            if let Some(f) = self.store.get(&self.settings.artifact_bucket, &key).await? {
                let m: serde_json::Value = serde_json::from_slice(&f.body).unwrap_or_default();
                let n = |k: &str| m["counts"][k].as_u64();
                if let (Some(train), Some(test)) = (n("train"), n("test")) {
                    return Ok(Some((train, test)));
                }
            }
        }
        Ok(None)
    }
}

fn missing_version(e: &ModelVersionCreated) -> Validated {
    let reason = "the version does not exist in the registry (deleted?)";
    rejected(e, None, vec![], reason.into())
}

fn rejected(
    e: &ModelVersionCreated,
    champion_version: Option<String>,
    checks: Vec<crate::event::Check>,
    reason: String,
) -> Validated {
    Validated::Rejected(ModelRejected {
        schema_version: SCHEMA_VERSION.into(),
        run_id: e.run_id.clone(),
        model: e.model.clone(),
        version: e.version.clone(),
        champion_version,
        checks,
        reason,
    })
}
