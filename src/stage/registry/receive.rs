//! `mlflow-webhook`: a signed MLflow delivery in, a pipeline event out, an HTTP status back.
//!
//! 401 for a missing, wrong or stale signature, 413 over the body limit, 400 for a malformed
//! body (nothing emitted for any of them); 202 for event types or models the pipeline does not
//! handle; 202 once the event is on the bus; 200 for a delivery already processed (MLflow
//! retries with the same delivery id); 503 (MLflow retries it) when the bus, the store or the
//! registry fails or the same delivery is in flight. The work itself happens behind the bus.
//!
//! The secret is read at start and re-read at most once a minute when a signature does not
//! match, so a rotated secret is picked up without a redeploy.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::poll::run_id_of;
use super::webhook::{Headers, Limits, Payload, Refusal, parse, verify};
use crate::config::PipelineConfig;
use crate::error::BoxError;
use crate::event::{
    BusEvent, ModelVersionAliasChanged, ModelVersionCreated, ModelVersionTagSet, SCHEMA_VERSION,
    new_run_id,
};
use crate::port::{EventBus, ModelRegistry, ObjectStore};
use crate::stage::claim::{Claim, Claims};

use crate::stage::secret::SecretCache;
pub use crate::stage::secret::SecretSource;

/// The answer to a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub message: String,
}

impl Reply {
    fn new(status: u16, message: impl Into<String>) -> Reply {
        Reply {
            status,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReceiverSettings {
    pub artifact_bucket: String,
    pub state_prefix: String,
    pub limits: Limits,
    /// Least time between two reads of the secret caused by a failed signature.
    pub secret_refresh: Duration,
    pub claim_lease: Duration,
}

pub struct WebhookReceiver<K, R, B, S> {
    pub pipeline: PipelineConfig,
    pub settings: ReceiverSettings,
    pub secrets: SecretCache<K>,
    pub registry: R,
    pub bus: B,
    pub store: S,
}

impl<K: SecretSource, R: ModelRegistry, B: EventBus, S: ObjectStore> WebhookReceiver<K, R, B, S> {
    pub fn new(
        pipeline: PipelineConfig,
        settings: ReceiverSettings,
        secrets: K,
        registry: R,
        bus: B,
        store: S,
    ) -> Self {
        WebhookReceiver {
            secrets: SecretCache::new(secrets, settings.secret_refresh),
            pipeline,
            settings,
            registry,
            bus,
            store,
        }
    }

    /// Reads the secret now (at cold start), so the first delivery does not wait for it.
    pub async fn load_secret(&self) -> Result<(), BoxError> {
        self.secrets.load().await
    }

    /// Verifies against the cached secret, re-read (rate-limited) on a mismatch.
    async fn verified(&self, h: &Headers<'_>, body: &[u8], now: i64) -> Result<String, Refusal> {
        let limits = &self.settings.limits;
        self.secrets
            .verify(
                |keys| verify(keys, h, body, now, limits).map(str::to_owned),
                |e| *e == Refusal::BadSignature,
            )
            .await
    }

    pub async fn receive(&self, h: &Headers<'_>, body: &[u8], now: i64) -> Reply {
        let delivery = match self.verified(h, body, now).await {
            Ok(id) => id,
            Err(r) => {
                tracing::warn!(refusal = %r, "delivery refused");
                return Reply::new(r.status(), r.to_string());
            }
        };
        let payload = match parse(body) {
            Ok(p) => p,
            Err(r) => return Reply::new(r.status(), r.to_string()),
        };
        let Some(model) = payload.model() else {
            return Reply::new(202, "event type not handled");
        };
        if !self.pipeline.models.contains_key(model) {
            return Reply::new(
                202,
                format!("model {model:?} is not in the pipeline config"),
            );
        }
        let claims = Claims {
            store: &self.store,
            bucket: &self.settings.artifact_bucket,
            lease: self.settings.claim_lease,
        };
        let mut h = Sha256::new();
        h.update(delivery.as_bytes());
        let key = format!(
            "{}mlflow-webhook/deliveries/{}.json",
            self.settings.state_prefix,
            hex::encode(h.finalize())
        );
        let run_id = match self.run_id(&payload).await {
            Ok(r) => r,
            Err(e) => return Reply::new(503, format!("looking up the run id: {e}")),
        };
        let etag = match claims.claim(&key, &run_id).await {
            Ok(Claim::Owned { etag, .. }) => etag,
            Ok(Claim::Done { .. }) => return Reply::new(200, "delivery already processed"),
            Ok(Claim::Busy { .. }) => return Reply::new(503, "the same delivery is in flight"),
            Err(e) => return Reply::new(503, format!("claiming the delivery: {e}")),
        };
        let event = match self.event(&payload, &run_id, &delivery) {
            Ok(e) => e,
            Err(e) => return Reply::new(500, format!("encoding the event: {e}")),
        };
        if let Err(e) = self.bus.put(std::slice::from_ref(&event)).await {
            if let Err(re) = claims.release(&key, &etag, &run_id).await {
                tracing::warn!(error = %re, "releasing the delivery claim failed");
            }
            return Reply::new(503, format!("putting the event: {e}"));
        }
        if let Err(e) = claims
            .finish(&key, &etag, &run_id, &event.detail_type)
            .await
        {
            // The event is out; a redelivery after the lease would emit it again, which the
            // consumers tolerate (validate-model is idempotent per model and version).
            tracing::warn!(error = %e, "recording the delivery failed");
        }
        Reply::new(202, format!("{} emitted", event.detail_type))
    }

    /// The pipeline run: the version's `mlops.run_id` tag (in the delivery, on the version, or
    /// on its MLflow run); a fresh one for a version registered by hand.
    async fn run_id(&self, p: &Payload) -> Result<String, BoxError> {
        Ok(match p {
            Payload::VersionCreated {
                tags,
                mlflow_run_id,
                ..
            } => {
                let tags = tags.iter().cloned().collect();
                run_id_of(&self.registry, &tags, mlflow_run_id.as_deref()).await?
            }
            Payload::TagSet { model, version, .. }
            | Payload::AliasChanged {
                model,
                version: Some(version),
                ..
            } => match self.registry.version(model, version).await? {
                Some(v) => run_id_of(&self.registry, &v.tags, v.mlflow_run_id.as_deref()).await?,
                None => new_run_id(),
            },
            _ => new_run_id(),
        })
    }

    fn event(&self, p: &Payload, run_id: &str, delivery: &str) -> serde_json::Result<BusEvent> {
        let run_id = run_id.to_owned();
        let delivery_id = delivery.to_owned();
        match p.clone() {
            Payload::VersionCreated {
                model,
                version,
                source,
                mlflow_run_id,
                ..
            } => BusEvent::new(&ModelVersionCreated {
                schema_version: SCHEMA_VERSION.into(),
                run_id,
                model,
                version,
                source,
                mlflow_run_id,
                delivery_id,
            }),
            Payload::TagSet {
                model,
                version,
                key,
                value,
            } => BusEvent::new(&ModelVersionTagSet {
                schema_version: SCHEMA_VERSION.into(),
                run_id,
                model,
                version,
                key,
                value,
                delivery_id,
            }),
            Payload::AliasChanged {
                model,
                alias,
                version,
            } => BusEvent::new(&ModelVersionAliasChanged {
                schema_version: SCHEMA_VERSION.into(),
                run_id,
                model,
                alias,
                version,
                delivery_id,
            }),
            Payload::Other(kind) => Err(serde::ser::Error::custom(format!(
                "{kind} has no pipeline event"
            ))),
        }
    }
}
