//! `vllm-scaler`: per served model, read the Deployment, its ready pods' vLLM metrics (pod
//! proxy or Prometheus), decide with [`super::policy::decide`], and set the replica count — or,
//! when an HPA or KEDA ScaledObject owns the Deployment, that controller's floor — so two
//! controllers never fight. `ServingScaled` on a change only.
//!
//! The policy's state (recommendations, recent load, last changes, each pod's previous counters)
//! lives in one S3 object per model, written with `If-Match`/`If-None-Match`: two evaluations
//! that overlap (the schedule and a `DeploymentHealthy`, a redelivery) cannot both act — the
//! second one's write fails and it stops. The scale patch carries the Deployment's
//! `resourceVersion`, so a Deployment changed meanwhile (a rollout, a person) is not
//! overwritten with a stale count.
//!
//! Nothing is lost between the patch and the bus: a `ServingScaled` whose PutEvents failed
//! after the change was made is parked in the state and sent by the next evaluation (at least
//! once: a put that failed after EventBridge took it is sent twice).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::policy::{Decision, Observation, PolicyState, ReplicaSample, ScalingPolicy, decide};
use crate::config::{PipelineConfig, ScalingConfig};
use crate::error::{Classify, ErrorClass};
use crate::event::{BusEvent, SCHEMA_VERSION, ServingScaled, new_run_id};
use crate::port::{
    Autoscaler, ClusterError, EventBus, ObjectStore, Precondition, RUN_ANNOTATION, ServingCluster,
    ServingMetrics, Written,
};

/// A model the scaler looks after, resolved from the pipeline config.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedModel {
    pub model: String,
    pub namespace: String,
    pub deployment: String,
    pub served_model_name: Option<String>,
    pub port: u16,
    /// Read the metrics from this Prometheus instead of the pods.
    pub prometheus: Option<String>,
    pub policy: ScalingPolicy,
}

/// Every model with a `serving.scaling` block (checked when the config loaded).
pub fn served_models(p: &PipelineConfig) -> Result<Vec<ServedModel>, String> {
    let mut out = Vec::new();
    for (name, m) in &p.models {
        let Some(serving) = &m.serving else { continue };
        let Some(scaling) = &serving.scaling else {
            continue;
        };
        out.push(served(name, &serving.deployment(name), scaling)?);
    }
    Ok(out)
}

fn served(model: &str, deployment: &str, s: &ScalingConfig) -> Result<ServedModel, String> {
    Ok(ServedModel {
        model: model.to_owned(),
        namespace: s.namespace.clone(),
        deployment: deployment.to_owned(),
        served_model_name: s.served_model_name.clone(),
        port: s.port,
        prometheus: s.prometheus.clone(),
        policy: s.policy().map_err(|e| format!("model {model}: {e}"))?,
    })
}

/// What the scaler keeps between evaluations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScalerState {
    pub policy: PolicyState,
    /// Per pod: (unix seconds, prompt tokens, generated tokens) at the last read.
    #[serde(default)]
    pub counters: BTreeMap<String, (f64, f64, f64)>,
    /// Changes made whose `ServingScaled` could not be put on the bus yet, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsent: Vec<ServingScaled>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Not deployed (yet): nothing to scale.
    NoDeployment,
    Unchanged {
        replicas: u32,
        reason: String,
    },
    Scaled {
        from: u32,
        to: u32,
        reason: String,
    },
    /// Another controller owns the count; its floor moved.
    Bounded {
        autoscaler: String,
        min: u32,
        max: u32,
    },
    /// Another evaluation wrote the state or the Deployment first; this one did nothing.
    Raced,
}

#[derive(Debug, thiserror::Error)]
pub enum ScalerError {
    #[error("model {model}: {source}")]
    Cluster {
        model: String,
        #[source]
        source: ClusterError,
    },
    #[error("model {model}: state: {source}")]
    Store {
        model: String,
        #[source]
        source: crate::error::StoreError,
    },
    #[error("model {model}: encoding ServingScaled: {source}")]
    Encode {
        model: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("model {model}: {source}")]
    Bus {
        model: String,
        #[source]
        source: crate::error::BusError,
    },
}

impl Classify for ScalerError {
    fn class(&self) -> ErrorClass {
        match self {
            ScalerError::Cluster { source, .. } => source.class(),
            ScalerError::Store { source, .. } => source.class(),
            ScalerError::Bus { source, .. } => source.class(),
            ScalerError::Encode { .. } => ErrorClass::Permanent,
        }
    }
}

pub struct VllmScaler<'a, C, M, S, B> {
    pub cluster: &'a C,
    pub metrics: &'a M,
    pub store: &'a S,
    pub bus: &'a B,
    pub state_bucket: &'a str,
    pub state_prefix: &'a str,
}

/// Counter rate between two reads; `None` on the first read, a restart (the counter went
/// down) or no time elapsed.
fn rate(prev: Option<(f64, f64)>, now: (f64, f64)) -> Option<f64> {
    let (t0, v0) = prev?;
    let (t1, v1) = now;
    (t1 > t0 && v1 >= v0).then(|| (v1 - v0) / (t1 - t0))
}

impl<C, M, S, B> VllmScaler<'_, C, M, S, B>
where
    C: ServingCluster,
    M: ServingMetrics,
    S: ObjectStore,
    B: EventBus,
{
    fn state_key(&self, m: &ServedModel) -> String {
        format!(
            "{}vllm-scaler/{}/{}.json",
            self.state_prefix, m.namespace, m.deployment
        )
    }

    pub async fn evaluate(
        &self,
        m: &ServedModel,
        now: DateTime<Utc>,
    ) -> Result<Outcome, ScalerError> {
        let cluster_err = |source| ScalerError::Cluster {
            model: m.model.clone(),
            source,
        };
        let store_err = |source| ScalerError::Store {
            model: m.model.clone(),
            source,
        };
        let Some(d) = self
            .cluster
            .deployment(&m.namespace, &m.deployment)
            .await
            .map_err(cluster_err)?
        else {
            tracing::info!(model = %m.model, deployment = %m.deployment, namespace = %m.namespace,
                "no such Deployment: nothing to scale");
            return Ok(Outcome::NoDeployment);
        };
        let key = self.state_key(m);
        let (mut state, precondition) = match self
            .store
            .get(self.state_bucket, &key)
            .await
            .map_err(store_err)?
        {
            Some(f) => (
                serde_json::from_slice::<ScalerState>(&f.body).unwrap_or_else(|e| {
                    tracing::warn!(model = %m.model, error = %e, "unreadable scaler state: starting afresh");
                    ScalerState::default()
                }),
                Precondition::Matches(f.etag),
            ),
            None => (ScalerState::default(), Precondition::Absent),
        };
        let pods = self
            .cluster
            .pods(&m.namespace, &d.selector)
            .await
            .map_err(cluster_err)?;
        let ready: Vec<String> = pods
            .iter()
            .filter(|p| p.ready)
            .map(|p| p.name.clone())
            .collect();
        let readings = self
            .metrics
            .read(&m.namespace, &ready, m.served_model_name.as_deref(), m.port)
            .await;
        let now_s = now.timestamp_millis() as f64 / 1000.0;
        let mut counters = BTreeMap::new();
        let mut samples = Vec::with_capacity(ready.len());
        for pod in &ready {
            match readings.get(pod) {
                Some(Ok(r)) => {
                    let prev = state.counters.get(pod);
                    let mut rates = r.rates;
                    if let (Some(p), Some(g)) = (
                        r.metrics.prompt_tokens_total,
                        r.metrics.generation_tokens_total,
                    ) {
                        counters.insert(pod.clone(), (now_s, p, g));
                        if rates.is_none() {
                            rates = rate(prev.map(|c| (c.0, c.1)), (now_s, p))
                                .zip(rate(prev.map(|c| (c.0, c.2)), (now_s, g)));
                        }
                    }
                    samples.push(Some(ReplicaSample {
                        running: r.metrics.running,
                        waiting: r.metrics.waiting,
                        kv_usage: r.metrics.kv_usage,
                        prompt_tokens_per_s: rates.map(|r| r.0),
                        generation_tokens_per_s: rates.map(|r| r.1),
                        age_s: 0.0,
                    }));
                }
                Some(Err(why)) => {
                    tracing::warn!(model = %m.model, pod = %pod, error = %why, "no metrics from a ready pod");
                    samples.push(None);
                }
                None => samples.push(None),
            }
        }
        state.counters = counters;
        let o = Observation {
            now_s,
            current: d.replicas,
            pending: d.replicas.saturating_sub(ready.len() as u32),
            ready: samples,
            unserved: 0.0,
        };
        let decision = decide(&m.policy, &o, &mut state.policy);
        let parked = std::mem::take(&mut state.unsent);
        let body = serde_json::to_vec(&state).unwrap_or_default();
        let etag = match self
            .store
            .put(self.state_bucket, &key, body, precondition)
            .await
            .map_err(store_err)?
        {
            Written::Ok { etag } => etag,
            Written::PreconditionFailed => {
                tracing::info!(model = %m.model, "another evaluation got there first");
                return Ok(Outcome::Raced);
            }
        };
        // This evaluation holds the state now: what an earlier one changed but could not
        // announce goes first, before anything here can fail. If the bus still refuses, they
        // are parked again and nothing is changed (a change now could only be parked too).
        if !parked.is_empty() {
            tracing::info!(model = %m.model, events = parked.len(), "sending parked ServingScaled");
            self.send(m, &key, &etag, &mut state, parked).await?;
        }
        if decision.desired == d.replicas {
            return Ok(Outcome::Unchanged {
                replicas: d.replicas,
                reason: decision.reason,
            });
        }
        let owner = self
            .cluster
            .autoscaler(&m.namespace, &m.deployment)
            .await
            .map_err(cluster_err)?;
        let outcome = match &owner {
            Some(a) => {
                // The HPA's floor becomes our decision (an HPA's minReplicas is at least 1);
                // its ceiling our max. It scales between them on its own metric.
                let (min, max) = (decision.desired.max(1), m.policy.max_replicas);
                if a.bounds() == (min, max) {
                    return Ok(Outcome::Unchanged {
                        replicas: d.replicas,
                        reason: format!("{} already at {min}..{max}", a.describe()),
                    });
                }
                self.cluster
                    .bound(&m.namespace, a, min, max)
                    .await
                    .map_err(cluster_err)?;
                Outcome::Bounded {
                    autoscaler: a.describe(),
                    min,
                    max,
                }
            }
            None => {
                if !self
                    .cluster
                    .scale(&d, decision.desired)
                    .await
                    .map_err(cluster_err)?
                {
                    tracing::info!(model = %m.model, "the Deployment changed since it was read");
                    return Ok(Outcome::Raced);
                }
                Outcome::Scaled {
                    from: d.replicas,
                    to: decision.desired,
                    reason: decision.reason.clone(),
                }
            }
        };
        let run_id = d
            .annotations
            .get(RUN_ANNOTATION)
            .cloned()
            .unwrap_or_else(new_run_id);
        let event = ServingScaled {
            schema_version: SCHEMA_VERSION.into(),
            run_id,
            model: m.model.clone(),
            namespace: Some(m.namespace.clone()),
            deployment: m.deployment.clone(),
            from: d.replicas,
            to: decision.desired,
            reason: decision.reason.clone(),
            controller: owner.as_ref().map(Autoscaler::describe),
            metrics: metrics_of(&decision, ready.len(), o.pending),
        };
        self.send(m, &key, &etag, &mut state, vec![event]).await?;
        Ok(outcome)
    }

    /// Puts `events` on the bus; when that fails, parks them in the state (at `etag`, the
    /// version this evaluation wrote) for the next evaluation, and fails.
    async fn send(
        &self,
        m: &ServedModel,
        key: &str,
        etag: &str,
        state: &mut ScalerState,
        events: Vec<ServingScaled>,
    ) -> Result<(), ScalerError> {
        let encoded = events
            .iter()
            .map(BusEvent::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| ScalerError::Encode {
                model: m.model.clone(),
                source,
            })?;
        let Err(source) = self.bus.put(&encoded).await else {
            return Ok(());
        };
        state.unsent = events;
        let body = serde_json::to_vec(&state).unwrap_or_default();
        match self
            .store
            .put(
                self.state_bucket,
                key,
                body,
                Precondition::Matches(etag.to_owned()),
            )
            .await
        {
            Ok(Written::Ok { .. }) => {
                tracing::warn!(model = %m.model, error = %source, "ServingScaled not sent: parked for the next evaluation");
            }
            Ok(Written::PreconditionFailed) => {
                tracing::error!(model = %m.model, error = %source, events = ?state.unsent,
                    "ServingScaled not sent and not parked (another evaluation wrote the state since): lost");
            }
            Err(store) => {
                tracing::error!(model = %m.model, error = %source, store_error = %store, events = ?state.unsent,
                    "ServingScaled not sent and not parked (the state is unwritable): lost");
            }
        }
        Err(ScalerError::Bus {
            model: m.model.clone(),
            source,
        })
    }
}

fn metrics_of(d: &Decision, ready: usize, pending: u32) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::from([
        ("in_flight".to_owned(), d.in_flight),
        ("vllm:num_requests_waiting".to_owned(), d.waiting),
        ("ready_replicas".to_owned(), ready as f64),
        ("pending_replicas".to_owned(), f64::from(pending)),
    ]);
    if let Some(u) = d.utilization {
        out.insert("utilization".into(), (u * 1000.0).round() / 1000.0);
    }
    if let Some(k) = d.kv_usage {
        out.insert(
            "vllm:kv_cache_usage_perc".into(),
            (k * 1000.0).round() / 1000.0,
        );
    }
    out
}
