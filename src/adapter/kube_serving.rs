//! [`ServingCluster`] over the Kubernetes API with kube-rs (CONTRACTS §4, §9, §10): the
//! Deployment and its pods, `/metrics` through the apiserver's pod proxy
//! (`/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy/metrics`), the `scale` subresource patched
//! at the read `resourceVersion`, and the HPA (`autoscaling/v2`) or KEDA `ScaledObject`
//! (`keda.sh/v1alpha1`) that may own the replica count.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};

use super::kubernetes::{KubeCluster, classify};
use crate::port::{
    Autoscaler, ClusterError, PodReading, ServingCluster, ServingDeployment, ServingMetrics,
    ServingPod,
};
use crate::stage::serving::metrics;

/// `/metrics` answers above this are not a vLLM server's (a few hundred KiB with histograms).
const MAX_METRICS_BYTES: usize = 8 << 20;

fn scaled_objects() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
        "scaledobjects",
    )
}

fn count(v: Option<&serde_json::Value>, default: u32) -> u32 {
    v.and_then(serde_json::Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(default)
}

impl ServingCluster for KubeCluster {
    async fn deployment(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ServingDeployment>, ClusterError> {
        let api: Api<Deployment> = Api::namespaced(self.client(), namespace);
        let Some(d) = api
            .get_opt(name)
            .await
            .map_err(|e| classify(self.name(), e))?
        else {
            return Ok(None);
        };
        let spec = d.spec;
        let selector = spec
            .selector
            .match_labels
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        if selector.is_empty() {
            return Err(ClusterError::Rejected {
                status: 422,
                reason: "Unsupported".into(),
                message: format!(
                    "Deployment {namespace}/{name} selects its pods without matchLabels"
                ),
            });
        }
        Ok(Some(ServingDeployment {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            replicas: spec
                .replicas
                .and_then(|r| u32::try_from(r).ok())
                .unwrap_or(1),
            selector,
            resource_version: d.metadata.resource_version.unwrap_or_default(),
            annotations: d.metadata.annotations.unwrap_or_default(),
        }))
    }

    async fn pods(&self, namespace: &str, selector: &str) -> Result<Vec<ServingPod>, ClusterError> {
        let api: Api<Pod> = Api::namespaced(self.client(), namespace);
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| classify(self.name(), e))?;
        Ok(list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| {
                let ready = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                ServingPod {
                    name: p.metadata.name.unwrap_or_default(),
                    ready,
                }
            })
            .collect())
    }

    async fn scrape(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
        path: &str,
    ) -> Result<String, ClusterError> {
        let uri = format!(
            "/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/{}",
            path.trim_start_matches('/')
        );
        let req = http::Request::get(uri)
            .body(Vec::new())
            .map_err(|e| ClusterError::Connect {
                cluster: self.name().to_owned(),
                source: Box::new(e),
            })?;
        let text = self
            .client()
            .request_text(req)
            .await
            .map_err(|e| classify(self.name(), e))?;
        if text.len() > MAX_METRICS_BYTES {
            return Err(ClusterError::Rejected {
                status: 413,
                reason: "TooLarge".into(),
                message: format!("{pod}'s /{path} answered {} bytes", text.len()),
            });
        }
        Ok(text)
    }

    async fn autoscaler(
        &self,
        namespace: &str,
        deployment: &str,
    ) -> Result<Option<Autoscaler>, ClusterError> {
        // A ScaledObject first: KEDA owns the HPA it creates, and would undo a change to it.
        let so: Api<DynamicObject> =
            Api::namespaced_with(self.client(), namespace, &scaled_objects());
        match so.list(&ListParams::default()).await {
            Ok(list) => {
                if let Some(o) = list.items.into_iter().find(|o| {
                    let target = &o.data["spec"]["scaleTargetRef"];
                    target["name"] == deployment
                        && target["kind"].as_str().unwrap_or("Deployment") == "Deployment"
                }) {
                    let spec = &o.data["spec"];
                    return Ok(Some(Autoscaler::ScaledObject {
                        name: o.metadata.name.unwrap_or_default(),
                        min: count(spec.get("minReplicaCount"), 0),
                        max: count(spec.get("maxReplicaCount"), 100),
                    }));
                }
            }
            // KEDA is not installed.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(classify(self.name(), e)),
        }
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(self.client(), namespace);
        let list = hpas
            .list(&ListParams::default())
            .await
            .map_err(|e| classify(self.name(), e))?;
        Ok(list.items.into_iter().find_map(|h| {
            let spec = h.spec;
            (spec.scale_target_ref.kind == "Deployment" && spec.scale_target_ref.name == deployment)
                .then(|| Autoscaler::Hpa {
                    name: h.metadata.name.unwrap_or_default(),
                    min: spec
                        .min_replicas
                        .and_then(|m| u32::try_from(m).ok())
                        .unwrap_or(1),
                    max: u32::try_from(spec.max_replicas).unwrap_or(0),
                })
        }))
    }

    async fn scale(&self, d: &ServingDeployment, replicas: u32) -> Result<bool, ClusterError> {
        let api: Api<Deployment> = Api::namespaced(self.client(), &d.namespace);
        let mut patch = serde_json::json!({"spec": {"replicas": replicas}});
        if !d.resource_version.is_empty() {
            // The scale subresource honours it as a precondition (409 when it moved on).
            patch["metadata"] = serde_json::json!({"resourceVersion": d.resource_version});
        }
        match api
            .patch_scale(&d.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(classify(self.name(), e)),
        }
    }

    async fn bound(
        &self,
        namespace: &str,
        autoscaler: &Autoscaler,
        min: u32,
        max: u32,
    ) -> Result<(), ClusterError> {
        let pp = PatchParams::default();
        let result = match autoscaler {
            Autoscaler::Hpa { name, .. } => {
                let api: Api<HorizontalPodAutoscaler> = Api::namespaced(self.client(), namespace);
                let patch = serde_json::json!({"spec": {"minReplicas": min, "maxReplicas": max}});
                api.patch(name, &pp, &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            Autoscaler::ScaledObject { name, .. } => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.client(), namespace, &scaled_objects());
                let patch = serde_json::json!(
                    {"spec": {"minReplicaCount": min, "maxReplicaCount": max}}
                );
                api.patch(name, &pp, &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
        };
        result.map_err(|e| classify(self.name(), e))
    }
}

/// Metrics read from the pods themselves, through the apiserver's pod proxy.
pub struct PodProxyMetrics<'a, C> {
    pub cluster: &'a C,
}

impl<C: ServingCluster> ServingMetrics for PodProxyMetrics<'_, C> {
    async fn read(
        &self,
        namespace: &str,
        pods: &[String],
        model_name: Option<&str>,
        port: u16,
    ) -> BTreeMap<String, Result<PodReading, String>> {
        let reads = pods.iter().map(|pod| async move {
            let reading = match self.cluster.scrape(namespace, pod, port, "metrics").await {
                Ok(text) => metrics::parse(&text)
                    .and_then(|s| metrics::vllm(&s, model_name))
                    .map(|metrics| PodReading {
                        metrics,
                        rates: None,
                    }),
                Err(e) => Err(e.to_string()),
            };
            (pod.clone(), reading)
        });
        futures::future::join_all(reads).await.into_iter().collect()
    }
}
