//! Wiring of the `vllm-scaler` function: EventBridge Scheduler every minute (evaluating each
//! served model about every 15 s inside the invocation) and the `DeploymentHealthy` rule (one
//! evaluation of that model at once: a new release may need its replicas back).

use std::time::Duration;

use chrono::Utc;

use crate::adapter::eks::EksClusters;
use crate::adapter::kube_serving::PodProxyMetrics;
use crate::adapter::prometheus::PrometheusMetrics;
use crate::adapter::{aws, eventbridge::EventBridgeBus, s3::S3Store};
use crate::config::{PipelineConfig, ScalerSettings};
use crate::error::BoxError;
use crate::port::ServingCluster;
use crate::stage::serving::scaler::{Outcome, ServedModel, VllmScaler, served_models};

pub struct VllmScalerFn<B, S> {
    pub settings: ScalerSettings,
    pub models: Vec<ServedModel>,
    pub clusters: EksClusters,
    pub bus: B,
    pub store: S,
}

/// What one invocation did, per model and evaluation.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub evaluations: u32,
    pub changes: Vec<String>,
    pub errors: Vec<String>,
}

impl VllmScalerFn<EventBridgeBus, S3Store> {
    pub async fn from_env() -> Result<Self, BoxError> {
        let settings = ScalerSettings::from_env(|k| std::env::var(k).ok())?;
        let pipeline = PipelineConfig::load(&settings.pipeline_config)?;
        let models = served_models(&pipeline)?;
        let sdk = aws::load().await;
        Ok(VllmScalerFn {
            models,
            clusters: EksClusters::new(&sdk),
            bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &settings.event_bus),
            store: S3Store::new(aws::s3_client(&sdk)),
            settings,
        })
    }

    /// The models one event asks for: a `DeploymentHealthy` names its model (a release by a
    /// person names none: every model); the schedule means every model.
    pub fn targets(&self, event: &serde_json::Value) -> (Vec<&ServedModel>, bool) {
        if event["detail-type"] == "DeploymentHealthy" {
            let model = event["detail"]["model"].as_str();
            let picked = self
                .models
                .iter()
                .filter(|m| model.is_none_or(|name| m.model == name))
                .collect();
            return (picked, false);
        }
        (self.models.iter().collect(), true)
    }

    /// Evaluates `models` (repeatedly when `repeat`, until `deadline`).
    pub async fn run(
        &self,
        models: &[&ServedModel],
        repeat: bool,
        deadline: std::time::Instant,
    ) -> Report {
        let mut report = Report::default();
        let rounds = if repeat { self.settings.evaluations } else { 1 };
        for round in 0..rounds {
            let started = std::time::Instant::now();
            match self.clusters.cluster(&self.settings.cluster_name).await {
                Ok(cluster) => {
                    for m in models {
                        self.evaluate(&cluster, m, &mut report).await;
                    }
                }
                Err(e) => report.errors.push(format!("cluster: {e}")),
            }
            report.evaluations += 1;
            let next = started + self.settings.evaluate_every;
            // Leave room for one more evaluation (a few seconds) before the function's timeout.
            if round + 1 == rounds || next + Duration::from_secs(10) > deadline {
                break;
            }
            tokio::time::sleep_until(next.into()).await;
        }
        report
    }

    async fn evaluate<C: ServingCluster>(&self, cluster: &C, m: &ServedModel, report: &mut Report) {
        let prometheus = m.prometheus.as_deref().map(PrometheusMetrics::new);
        let outcome = match prometheus {
            Some(Ok(metrics)) => self.stage(cluster, &metrics).evaluate(m, Utc::now()).await,
            Some(Err(e)) => {
                report
                    .errors
                    .push(format!("model {}: Prometheus client: {e}", m.model));
                return;
            }
            None => {
                let metrics = PodProxyMetrics { cluster };
                self.stage(cluster, &metrics).evaluate(m, Utc::now()).await
            }
        };
        match outcome {
            Ok(Outcome::Scaled { from, to, reason }) => {
                tracing::info!(model = %m.model, from, to, %reason, "scaled");
                report.changes.push(format!("{}: {from} -> {to}", m.model));
            }
            Ok(Outcome::Bounded {
                autoscaler,
                min,
                max,
            }) => {
                tracing::info!(model = %m.model, %autoscaler, min, max, "autoscaler bounds set");
                report
                    .changes
                    .push(format!("{}: {autoscaler} {min}..{max}", m.model));
            }
            Ok(other) => tracing::debug!(model = %m.model, outcome = ?other, "evaluated"),
            Err(e) => {
                tracing::warn!(model = %m.model, error = %e, "evaluation failed");
                report.errors.push(e.to_string());
            }
        }
    }

    fn stage<'a, C: ServingCluster, M: crate::port::ServingMetrics>(
        &'a self,
        cluster: &'a C,
        metrics: &'a M,
    ) -> VllmScaler<'a, C, M, S3Store, EventBridgeBus> {
        VllmScaler {
            cluster,
            metrics,
            store: &self.store,
            bus: &self.bus,
            state_bucket: &self.settings.state_bucket,
            state_prefix: &self.settings.state_prefix,
        }
    }
}
