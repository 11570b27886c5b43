//! [`Cluster`] over the Kubernetes API with kube-rs: server-side apply (field manager `mlops`) of
//! the workloads as dynamic objects (Job, PyTorchJob, TrainJob share one code path), listing by
//! label, optimistic-concurrency annotations, and Pending pods.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};

use crate::config::WorkloadKind;
use crate::port::workload::Workload;
use crate::port::workload::{LABEL_WORKLOAD, MANAGED_BY};
use crate::port::{
    Cluster, ClusterError, Condition, PendingPod, PodReport, SecretSpec, WorkloadState,
};

pub const FIELD_MANAGER: &str = "mlops";
/// Log lines an `ImageBuildFailed` carries.
pub const LOG_TAIL_LINES: i64 = 40;

/// One cluster reached through a kube client.
#[derive(Clone)]
pub struct KubeCluster {
    client: kube::Client,
    name: String,
}

pub fn resource(kind: WorkloadKind) -> ApiResource {
    let (group, version) = kind
        .api_version()
        .rsplit_once('/')
        .unwrap_or(("", kind.api_version()));
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind.kind()),
        kind.plural(),
    )
}

/// Permanent: the request itself is wrong (400, 403, 404, 410, 422). Transient: throttling,
/// conflicts, server errors and anything on the way there.
pub fn classify(cluster: &str, e: kube::Error) -> ClusterError {
    match e {
        kube::Error::Api(s) => {
            let (status, reason, message) = (s.code, s.reason.clone(), s.message.clone());
            match status {
                400 | 401 | 403 | 404 | 405 | 410 | 415 | 422 => ClusterError::Rejected {
                    status,
                    reason,
                    message,
                },
                _ => ClusterError::Unavailable {
                    status,
                    reason,
                    message,
                },
            }
        }
        other => ClusterError::Connect {
            cluster: cluster.to_owned(),
            source: Box::new(other),
        },
    }
}

fn to_chrono(t: &k8s_openapi::jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(
        t.as_second(),
        u32::try_from(t.subsec_nanosecond()).unwrap_or(0),
    )
}

impl KubeCluster {
    pub fn new(client: kube::Client, name: impl Into<String>) -> Self {
        KubeCluster {
            client,
            name: name.into(),
        }
    }

    pub(crate) fn client(&self) -> kube::Client {
        self.client.clone()
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn api(&self, kind: WorkloadKind, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &resource(kind))
    }

    fn state(&self, kind: WorkloadKind, o: DynamicObject) -> WorkloadState {
        let status = o.data.get("status");
        let conditions = status
            .and_then(|s| s.get("conditions"))
            .and_then(|c| c.as_array())
            .map(|a| {
                a.iter()
                    .map(|c| Condition {
                        type_: c["type"].as_str().unwrap_or_default().to_owned(),
                        status: c["status"].as_str().unwrap_or_default().to_owned(),
                        reason: c["reason"].as_str().map(str::to_owned),
                        message: c["message"].as_str().map(str::to_owned),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let time = |v: Option<&serde_json::Value>| {
            v.and_then(|t| t.as_str())
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let finished = time(status.and_then(|s| s.get("completionTime"))).or_else(|| {
            status
                .and_then(|s| s.get("conditions"))
                .and_then(|c| c.as_array())
                .and_then(|a| {
                    a.iter().rev().find(|c| {
                        matches!(
                            c["type"].as_str(),
                            Some("Complete" | "Succeeded" | "Failed")
                        ) && c["status"] == "True"
                    })
                })
                .and_then(|c| time(c.get("lastTransitionTime")))
        });
        WorkloadState {
            kind,
            cluster: self.name.clone(),
            namespace: o.metadata.namespace.clone().unwrap_or_default(),
            name: o.metadata.name.clone().unwrap_or_default(),
            resource_version: o.metadata.resource_version.clone().unwrap_or_default(),
            labels: o.metadata.labels.clone().unwrap_or_default(),
            annotations: o.metadata.annotations.clone().unwrap_or_default(),
            conditions,
            created: o
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| to_chrono(&t.0)),
            finished,
        }
    }
}

impl Cluster for KubeCluster {
    async fn apply(&self, w: &Workload) -> Result<(), ClusterError> {
        self.api(w.kind, &w.namespace)
            .patch(
                &w.name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&w.object),
            )
            .await
            .map(|_| ())
            .map_err(|e| classify(&self.name, e))
    }

    async fn get(
        &self,
        kind: WorkloadKind,
        _cluster: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<WorkloadState>, ClusterError> {
        Ok(self
            .api(kind, namespace)
            .get_opt(name)
            .await
            .map_err(|e| classify(&self.name, e))?
            .map(|o| self.state(kind, o)))
    }

    async fn list(
        &self,
        kind: WorkloadKind,
        _cluster: &str,
        namespace: &str,
    ) -> Result<Vec<WorkloadState>, ClusterError> {
        let lp = ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
        match self.api(kind, namespace).list(&lp).await {
            Ok(list) => Ok(list
                .items
                .into_iter()
                .map(|o| self.state(kind, o))
                .collect()),
            // The kind's CRD is not installed: there is nothing of that kind to watch.
            Err(kube::Error::Api(s)) if s.code == 404 && kind != WorkloadKind::Job => {
                Ok(Vec::new())
            }
            Err(e) => Err(classify(&self.name, e)),
        }
    }

    async fn annotate(
        &self,
        w: &WorkloadState,
        key: &str,
        value: &str,
    ) -> Result<bool, ClusterError> {
        let mut meta = serde_json::json!({"annotations": BTreeMap::from([(key, value)])});
        if !w.resource_version.is_empty() {
            // With a resourceVersion the apiserver applies the patch only to that version.
            meta["resourceVersion"] = w.resource_version.clone().into();
        }
        let patch = serde_json::json!({"metadata": meta});
        match self
            .api(w.kind, &w.namespace)
            .patch(&w.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(classify(&self.name, e)),
        }
    }

    async fn apply_secret(&self, spec: &SecretSpec) -> Result<(), ClusterError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &spec.namespace);
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(spec.name.clone()),
                namespace: Some(spec.namespace.clone()),
                labels: Some(spec.labels.clone()),
                ..Default::default()
            },
            type_: Some(spec.type_.clone()),
            string_data: Some(
                spec.data
                    .iter()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect(),
            ),
            ..Default::default()
        };
        let mut value = serde_json::to_value(&secret).map_err(|e| ClusterError::Connect {
            cluster: self.name.clone(),
            source: Box::new(e),
        })?;
        value["apiVersion"] = "v1".into();
        value["kind"] = "Secret".into();
        secrets
            .patch(
                &spec.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&value),
            )
            .await
            .map(|_| ())
            .map_err(|e| classify(&self.name, e))
    }

    async fn pod_report(&self, w: &WorkloadState) -> Result<Option<PodReport>, ClusterError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &w.namespace);
        let lp = ListParams::default().labels(&format!("{LABEL_WORKLOAD}={}", w.name));
        let list = pods.list(&lp).await.map_err(|e| classify(&self.name, e))?;
        // The newest pod that terminated (a Job may have replaced an evicted one).
        let ended = list
            .items
            .iter()
            .filter_map(|p| {
                let status = p.status.as_ref()?.container_statuses.as_ref()?;
                let t = status
                    .iter()
                    .find_map(|c| c.state.as_ref()?.terminated.clone())?;
                Some((p, t))
            })
            .max_by_key(|(p, _)| {
                p.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second())
            });
        let Some((pod, t)) = ended else {
            return Ok(None);
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let lines = pods
            .logs(
                &name,
                &kube::api::LogParams {
                    tail_lines: Some(LOG_TAIL_LINES),
                    ..Default::default()
                },
            )
            .await;
        // The log is a courtesy: a pod already garbage-collected still has its message.
        let log_tail = match lines {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(e) => {
                tracing::warn!(pod = %name, error = %e, "could not read the log tail");
                Vec::new()
            }
        };
        Ok(Some(PodReport {
            pod: name,
            termination_message: t.message.clone(),
            exit_code: Some(t.exit_code),
            reason: t.reason.clone(),
            log_tail,
        }))
    }

    async fn pending_pods(&self, w: &WorkloadState) -> Result<Vec<PendingPod>, ClusterError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &w.namespace);
        let lp = ListParams::default()
            .labels(&format!("{LABEL_WORKLOAD}={}", w.name))
            .fields("status.phase=Pending");
        let list = pods.list(&lp).await.map_err(|e| classify(&self.name, e))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|p| {
                let since = to_chrono(&p.metadata.creation_timestamp.as_ref()?.0)?;
                let sched = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| {
                        c.iter()
                            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                    });
                Some(PendingPod {
                    name: p.metadata.name.clone().unwrap_or_default(),
                    since,
                    reason: sched.and_then(|c| c.reason.clone()),
                    message: sched.and_then(|c| c.message.clone()),
                })
            })
            .collect())
    }
}
