//! Wiring of the `vllm-scaler` function. Two triggers: the EventBridge Scheduler every minute
//! (each served model evaluated about every 15 s inside the invocation), and `DeploymentHealthy`
//! through its SQS queue (that model evaluated once at once: a new release may need its replicas
//! back), with partial batch failures like every queue-fed function.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::Utc;

use super::sqs::EventHandler;
use crate::adapter::eks::EksClusters;
use crate::adapter::kube_serving::PodProxyMetrics;
use crate::adapter::kubernetes::KubeCluster;
use crate::adapter::prometheus::PrometheusMetrics;
use crate::adapter::{aws, eventbridge::EventBridgeBus, s3::S3Store};
use crate::config::{PipelineConfig, ScalerSettings};
use crate::error::{BoxError, Classify, ErrorClass};
use crate::port::ClusterError;
use crate::stage::serving::scaler::{Outcome, ScalerError, ServedModel, VllmScaler, served_models};

pub struct VllmScalerFn<B, S> {
    pub settings: ScalerSettings,
    pub models: Vec<ServedModel>,
    /// One client per configured Prometheus URL, built at cold start.
    pub prometheus: BTreeMap<String, PrometheusMetrics>,
    pub clusters: EksClusters,
    pub bus: B,
    pub store: S,
}

/// What one scheduled invocation did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub evaluations: u32,
    pub changes: Vec<String>,
    pub errors: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScalerFnError {
    #[error("cluster {cluster}: {source}")]
    Cluster {
        cluster: String,
        #[source]
        source: ClusterError,
    },
    #[error(transparent)]
    Scaler(#[from] ScalerError),
}

impl Classify for ScalerFnError {
    fn class(&self) -> ErrorClass {
        match self {
            ScalerFnError::Cluster { source, .. } => source.class(),
            ScalerFnError::Scaler(e) => e.class(),
        }
    }
}

impl VllmScalerFn<EventBridgeBus, S3Store> {
    pub async fn from_env() -> Result<Self, BoxError> {
        let settings = ScalerSettings::from_env(|k| std::env::var(k).ok())?;
        let pipeline = PipelineConfig::load(&settings.pipeline_config)?;
        let models = served_models(&pipeline)?;
        let mut prometheus = BTreeMap::new();
        for url in models.iter().filter_map(|m| m.prometheus.as_deref()) {
            if !prometheus.contains_key(url) {
                prometheus.insert(url.to_owned(), PrometheusMetrics::new(url)?);
            }
        }
        let sdk = aws::load().await;
        Ok(VllmScalerFn {
            models,
            prometheus,
            clusters: EksClusters::new(&sdk),
            bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &settings.event_bus),
            store: S3Store::new(aws::s3_client(&sdk)),
            settings,
        })
    }

    async fn cluster(&self) -> Result<KubeCluster, ScalerFnError> {
        self.clusters
            .cluster(&self.settings.cluster_name)
            .await
            .map_err(|source| ScalerFnError::Cluster {
                cluster: self.settings.cluster_name.clone(),
                source,
            })
    }

    /// The schedule: every model, `settings.evaluations` times `settings.evaluate_every` apart,
    /// stopping early enough to finish before `deadline` (the invocation's).
    pub async fn run(&self, deadline: std::time::Instant) -> Report {
        let mut report = Report::default();
        for round in 0..self.settings.evaluations {
            let started = std::time::Instant::now();
            match self.cluster().await {
                Ok(cluster) => {
                    for m in &self.models {
                        match self.evaluate(&cluster, m).await {
                            Ok(Some(change)) => report.changes.push(change),
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(model = %m.model, error = %e, "evaluation failed");
                                report.errors.push(e.to_string());
                            }
                        }
                    }
                }
                Err(e) => report.errors.push(e.to_string()),
            }
            report.evaluations += 1;
            let next = started + self.settings.evaluate_every;
            // Leave room for one more evaluation (a few seconds) before the function's timeout.
            if round + 1 == self.settings.evaluations || next + Duration::from_secs(10) > deadline {
                break;
            }
            tokio::time::sleep_until(next.into()).await;
        }
        report
    }

    /// One evaluation of one model; the change it made, in words.
    async fn evaluate(
        &self,
        cluster: &KubeCluster,
        m: &ServedModel,
    ) -> Result<Option<String>, ScalerFnError> {
        let prometheus = m
            .prometheus
            .as_deref()
            .and_then(|url| self.prometheus.get(url));
        let outcome = match prometheus {
            Some(metrics) => self.stage(cluster, metrics).evaluate(m, Utc::now()).await?,
            None => {
                let metrics = PodProxyMetrics { cluster };
                self.stage(cluster, &metrics)
                    .evaluate(m, Utc::now())
                    .await?
            }
        };
        Ok(match outcome {
            Outcome::Scaled { from, to, reason } => {
                tracing::info!(model = %m.model, from, to, %reason, "scaled");
                Some(format!("{}: {from} -> {to}", m.model))
            }
            Outcome::Bounded {
                autoscaler,
                min,
                max,
            } => {
                tracing::info!(model = %m.model, %autoscaler, min, max, "autoscaler bounds set");
                Some(format!("{}: {autoscaler} {min}..{max}", m.model))
            }
            other => {
                tracing::debug!(model = %m.model, outcome = ?other, "evaluated");
                None
            }
        })
    }

    fn stage<'a, M: crate::port::ServingMetrics>(
        &'a self,
        cluster: &'a KubeCluster,
        metrics: &'a M,
    ) -> VllmScaler<'a, KubeCluster, M, S3Store, EventBridgeBus> {
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

/// The models a `DeploymentHealthy` concerns: the one it names (a release by a person names
/// none: every model).
pub fn healthy_targets<'a>(
    models: &'a [ServedModel],
    event: &EventBridgeEvent<serde_json::Value>,
) -> Vec<&'a ServedModel> {
    if event.detail_type != "DeploymentHealthy" {
        return Vec::new();
    }
    let named = event.detail.get("model").and_then(|m| m.as_str());
    models
        .iter()
        .filter(|m| named.is_none_or(|name| m.model == name))
        .collect()
}

impl EventHandler for VllmScalerFn<EventBridgeBus, S3Store> {
    type Error = ScalerFnError;
    const NAME: &'static str = "vllm-scaler";

    async fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
    ) -> Result<String, Self::Error> {
        let targets = healthy_targets(&self.models, event);
        if targets.is_empty() {
            return Ok(format!(
                "{}: no served model to evaluate",
                event.detail_type
            ));
        }
        let cluster = self.cluster().await?;
        let mut changes = Vec::new();
        for m in targets {
            changes.extend(self.evaluate(&cluster, m).await?);
        }
        Ok(if changes.is_empty() {
            "evaluated, unchanged".into()
        } else {
            changes.join("; ")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(model: &str) -> ServedModel {
        let scaling: crate::config::ScalingConfig = serde_saphyr::from_str(
            "namespace: serving\nprofile: mistral-7b-a10g\nmax_replicas: 4\n",
        )
        .expect("scaling block");
        ServedModel {
            model: model.into(),
            namespace: "serving".into(),
            deployment: format!("vllm-{model}"),
            served_model_name: None,
            port: 8000,
            prometheus: None,
            policy: scaling.policy().expect("policy"),
        }
    }

    fn event(detail_type: &str, detail: serde_json::Value) -> EventBridgeEvent<serde_json::Value> {
        serde_json::from_value(serde_json::json!({
            "version": "0", "id": "e-1", "detail-type": detail_type, "source": "mlops.deploy-sync",
            "account": "123456789012", "time": "2026-12-04T02:00:00Z", "region": "us-east-1",
            "resources": [], "detail": detail
        }))
        .expect("event")
    }

    #[test]
    fn a_healthy_release_concerns_its_model_and_a_persons_release_every_model() {
        let models = [served("mistral-7b-support"), served("llama-3-70b-instruct")];
        let names = |e| {
            healthy_targets(&models, &e)
                .iter()
                .map(|m| m.model.clone())
                .collect::<Vec<_>>()
        };
        let ours = event(
            "DeploymentHealthy",
            serde_json::json!({"model": "llama-3-70b-instruct", "version": "3"}),
        );
        assert_eq!(names(ours), ["llama-3-70b-instruct"]);
        let by_a_person = event("DeploymentHealthy", serde_json::json!({"application": "x"}));
        assert_eq!(names(by_a_person).len(), 2);
        let unserved = event("DeploymentHealthy", serde_json::json!({"model": "fraud"}));
        assert!(names(unserved).is_empty());
        let other = event("DeploymentRolledBack", serde_json::json!({}));
        assert!(names(other).is_empty());
    }
}
