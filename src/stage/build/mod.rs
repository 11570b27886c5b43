//! Stage 0 of a code run: `ModelCodePushed` → the trainer image of that commit
//! (`build-image`). `training-watch` reports the build's end (`ImageBuilt`/`ImageBuildFailed`),
//! and `launch-training` retrains on `ImageBuilt`.
//!
//! Idempotent per (model, commit): the build's name comes from both, so a redelivered push finds
//! the Job it created, and the `mlops.dev/submitted` annotation (set once the event is out)
//! tells whether `ImageBuildSubmitted` still has to be emitted. A commit whose image is already
//! in the registry is not built again: `ImageBuilt` is emitted at once with the registry's
//! digest.
//!
//! Credentials: the Git token (Secrets Manager, read at cold start) and a fresh 12-hour ECR
//! token are written to two Secrets of the build namespace before each build, by server-side
//! apply; the Job references them by name and holds no secret value.

pub mod job;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use secrecy::ExposeSecret;
use tracing::info;

use crate::config::{PipelineConfig, SourceConfig, WorkloadKind};
use crate::error::{BusError, Classify, ErrorClass};
use crate::event::{
    BusEvent, ConditionSummary, ImageBuildFailed, ImageBuildSubmitted, ImageBuilt, ModelCodePushed,
    SCHEMA_VERSION, WorkloadRef,
};
use crate::port::workload::{MANAGED_BY, Workload};
use crate::port::{
    Cluster, ClusterError, EventBus, ImageRegistry, ImageRegistryError, SecretSpec, SecretValue,
    WorkloadState,
};
use crate::stage::training::ANN_SUBMITTED;

/// Where builds run when a model's `source` names no cluster or namespace.
#[derive(Debug, Clone)]
pub struct BuildSettings {
    pub cluster_name: String,
    pub build_namespace: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Built {
    Ignored(String),
    Submitted(ImageBuildSubmitted),
    /// The registry already had `<image>:<commit>`: nothing was built.
    Exists(ImageBuilt),
    /// The build exists and its event was already emitted.
    Duplicate {
        name: String,
    },
    Failed(ImageBuildFailed),
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("ModelCodePushed detail is malformed")]
    BadEvent(#[source] serde_json::Error),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Registry(#[from] ImageRegistryError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("encoding the event")]
    Encode(#[source] serde_json::Error),
}

impl Classify for BuildError {
    fn class(&self) -> ErrorClass {
        match self {
            BuildError::Cluster(e) => e.class(),
            BuildError::Registry(e) => e.class(),
            BuildError::Bus(e) => e.class(),
            _ => ErrorClass::Transient,
        }
    }
}

/// A refusal that clears by itself: a ResourceQuota full of other builds answers 403
/// "exceeded quota", and the next try, after some of them finish, succeeds.
fn quota_exceeded(e: &ClusterError) -> bool {
    matches!(e, ClusterError::Rejected { status: 403, message, .. } if message.contains("exceeded quota"))
}

pub struct BuildImage<'a, C, R, B> {
    pub pipeline: &'a PipelineConfig,
    pub settings: &'a BuildSettings,
    pub cluster: &'a C,
    /// ECR; `None` in the dev stack, which builds a checkout instead of an image.
    pub registry: Option<&'a R>,
    pub git_token: &'a secrecy::SecretString,
    pub bus: &'a B,
}

impl<C: Cluster, R: ImageRegistry, B: EventBus> BuildImage<'_, C, R, B> {
    pub async fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
    ) -> Result<Built, BuildError> {
        if event.detail_type != "ModelCodePushed" {
            return Ok(Built::Ignored(format!(
                "{} is not ModelCodePushed",
                event.detail_type
            )));
        }
        let pushed: ModelCodePushed =
            serde_json::from_value(event.detail.clone()).map_err(BuildError::BadEvent)?;
        let Some(src) = self
            .pipeline
            .models
            .get(&pushed.model)
            .and_then(|m| m.source.as_ref())
        else {
            return Ok(Built::Ignored(format!(
                "model {} has no source block in the pipeline config (any more)",
                pushed.model
            )));
        };
        let (cluster, namespace) = placement(src, self.settings);
        let target = job::BuildTarget {
            model: &pushed.model,
            run_id: &pushed.run_id,
            commit: &pushed.commit,
            cluster: cluster.clone(),
            namespace: namespace.clone(),
        };
        let image = job::image_tag(src, &pushed.commit);
        let reference = WorkloadRef {
            kind: "Job".into(),
            api_version: "batch/v1".into(),
            cluster,
            namespace,
            name: job::build_name(&pushed.model, &pushed.commit),
        };
        let fail = |reason: &str, message: String| {
            Built::Failed(ImageBuildFailed {
                schema_version: SCHEMA_VERSION.into(),
                run_id: pushed.run_id.clone(),
                model: pushed.model.clone(),
                commit: pushed.commit.clone(),
                image: image.clone(),
                workload: reference.clone(),
                condition: ConditionSummary {
                    type_: "Failed".into(),
                    reason: Some(reason.into()),
                    message: Some(message),
                },
                termination_message: None,
                log_tail: Vec::new(),
            })
        };
        let w = match job::render(src, &target) {
            Ok(w) => w,
            Err(message) => return self.emit(fail("InvalidSpec", message)).await,
        };
        let existing = self
            .cluster
            .get(WorkloadKind::Job, &w.cluster, &w.namespace, &w.name)
            .await?;
        if existing
            .as_ref()
            .is_some_and(|s| s.annotations.contains_key(ANN_SUBMITTED))
        {
            info!(build = %w.name, "build exists and was reported; duplicate delivery");
            return Ok(Built::Duplicate { name: w.name });
        }
        if existing.is_none() {
            if let Some(registry) = self.registry {
                match registry.image_digest(&src.image, &pushed.commit).await {
                    Ok(Some(digest)) => {
                        info!(%image, %digest, "the registry has this commit's image; not building");
                        let built = ImageBuilt {
                            schema_version: SCHEMA_VERSION.into(),
                            run_id: pushed.run_id.clone(),
                            model: pushed.model.clone(),
                            commit: pushed.commit.to_ascii_lowercase(),
                            image: image.clone(),
                            digest,
                            workload: None,
                        };
                        return self.emit(Built::Exists(built)).await;
                    }
                    Ok(None) => {}
                    Err(e) if e.class() == ErrorClass::Permanent => {
                        return self.emit(fail("RegistryRefused", e.to_string())).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            match self.submit(src, &w).await {
                Ok(()) => {}
                Err(BuildError::Cluster(e)) if quota_exceeded(&e) => {
                    return Err(BuildError::Cluster(ClusterError::Unavailable {
                        status: 403,
                        reason: "Forbidden".into(),
                        message: format!("{e} (retried: quota frees up as other builds end)"),
                    }));
                }
                Err(e) if e.class() == ErrorClass::Permanent => {
                    return self.emit(fail("SubmitRejected", e.to_string())).await;
                }
                Err(e) => return Err(e),
            }
        }
        let submitted = ImageBuildSubmitted {
            schema_version: SCHEMA_VERSION.into(),
            run_id: pushed.run_id.clone(),
            model: pushed.model.clone(),
            commit: pushed.commit.to_ascii_lowercase(),
            image,
            workload: reference,
        };
        let out = self.emit(Built::Submitted(submitted)).await?;
        let marked = WorkloadState {
            kind: w.kind,
            cluster: w.cluster.clone(),
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            ..Default::default()
        };
        // Losing this write only means a redelivery emits the event again.
        self.cluster
            .annotate(&marked, ANN_SUBMITTED, &pushed.run_id)
            .await?;
        Ok(out)
    }

    /// Refreshes the two credential Secrets, then applies the Job.
    async fn submit(&self, src: &SourceConfig, w: &Workload) -> Result<(), BuildError> {
        let labels =
            std::collections::BTreeMap::from([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())]);
        let secret = |name: &str, type_: &str, key: &str, value: String| SecretSpec {
            cluster: w.cluster.clone(),
            namespace: w.namespace.clone(),
            name: name.into(),
            type_: type_.into(),
            labels: labels.clone(),
            data: [(key.to_owned(), SecretValue(value))].into(),
        };
        self.cluster
            .apply_secret(&secret(
                job::GIT_SECRET,
                "Opaque",
                job::GIT_TOKEN_KEY,
                self.git_token.expose_secret().to_owned(),
            ))
            .await?;
        if let Some(registry) = self.registry {
            let creds = registry.push_credentials(&src.image).await?;
            self.cluster
                .apply_secret(&secret(
                    job::REGISTRY_SECRET,
                    "kubernetes.io/dockerconfigjson",
                    ".dockerconfigjson",
                    job::docker_config(&creds.registry, &creds.auth.0),
                ))
                .await?;
        }
        self.cluster.apply(w).await?;
        Ok(())
    }

    async fn emit(&self, out: Built) -> Result<Built, BuildError> {
        let event = match &out {
            Built::Submitted(s) => BusEvent::new(s),
            Built::Failed(f) => BusEvent::new(f),
            Built::Exists(b) => BusEvent::new(b),
            _ => return Ok(out),
        };
        let mut event = event.map_err(BuildError::Encode)?;
        // build-image emits these itself (the watcher emits them for the builds it watches).
        event.source = "mlops.build-image".into();
        self.bus.put(std::slice::from_ref(&event)).await?;
        Ok(out)
    }
}

/// The cluster and namespace a model's builds run in.
pub fn placement(src: &SourceConfig, s: &BuildSettings) -> (String, String) {
    (
        src.cluster
            .clone()
            .unwrap_or_else(|| s.cluster_name.clone()),
        src.namespace
            .clone()
            .unwrap_or_else(|| s.build_namespace.clone()),
    )
}

/// Every (cluster, namespace) any model builds in.
pub fn placements(p: &PipelineConfig, s: &BuildSettings) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = p
        .models
        .values()
        .filter_map(|m| m.source.as_ref())
        .map(|src| placement(src, s))
        .collect();
    v.sort();
    v.dedup();
    v
}
