//! `training-watch` (every minute): the one watcher of every workload the pipeline launches.
//! It finds them by label and emits exactly one terminal event per workload: for training
//! workloads (`launch-training`) `TrainingJobSucceeded` or `TrainingJobFailed`, and one
//! `TrainingJobStalled` when its pods stay Pending too long (no GPU capacity); for image builds
//! (`build-image`, label `mlops.dev/purpose=image-build`) `ImageBuilt` or `ImageBuildFailed`.
//!
//! Exactly once across repeated ticks and concurrent invocations: a workload is first claimed by
//! an annotation written with its `resourceVersion` (a concurrent claimer gets 409 Conflict), the
//! event is put, then the annotation is set to the event's type. A claim left by a crashed
//! invocation expires after a lease and is taken over.
//!
//! On success the watcher makes sure MLflow has a model version for the run: it finds the MLflow
//! run by its `mlops.run_id` tag and, if the trainer registered nothing, registers the run's model.

use std::time::Duration;

use chrono::Utc;
use tracing::{info, warn};

use super::{ANN_REPORTED, ANN_STALLED, placements};
use crate::config::{PipelineConfig, TrainingSettings, WorkloadKind};
use crate::error::BusError;
use crate::event::{
    BusEvent, ConditionSummary, ImageBuildFailed, ImageBuilt, SCHEMA_VERSION, TrainingJobFailed,
    TrainingJobStalled, TrainingJobSucceeded, WorkloadRef,
};
use crate::port::workload::{
    ANN_DATASET_VERSION, ANN_GIT_COMMIT, ANN_IMAGE, ANN_MODEL, ANN_RUN_ID, LABEL_DATASET_VERSION,
    LABEL_MODEL, LABEL_RUN_ID, Purpose,
};
use crate::port::{Cluster, ClusterError, EventBus, Registry, RegistryError, WorkloadState};
use crate::stage::{lease_expired, now_rfc3339};

const CLAIM_PREFIX: &str = "claimed@";
const RELEASED: &str = "claimed@1970-01-01T00:00:00Z";

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("encoding the event")]
    Encode(#[source] serde_json::Error),
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TickReport {
    pub workloads: usize,
    pub emitted: Vec<BusEvent>,
    /// Workloads that failed transiently this tick (retried on the next one).
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Terminal {
    Succeeded,
    Failed,
}

pub struct TrainingWatch<'a, C, R, B> {
    pub pipeline: &'a PipelineConfig,
    pub settings: &'a TrainingSettings,
    pub cluster: &'a C,
    pub registry: &'a R,
    pub bus: &'a B,
    /// How long a claim protects a workload from a concurrent watcher.
    pub claim_lease: Duration,
}

impl<C: Cluster, R: Registry, B: EventBus> TrainingWatch<'_, C, R, B> {
    pub async fn tick(&self) -> Result<TickReport, WatchError> {
        let mut report = TickReport::default();
        // Training workloads of every kind, and image builds (Jobs), each (cluster, namespace,
        // kind) listed once even when builds and training share a namespace.
        let mut lists = std::collections::BTreeSet::new();
        for (cluster, namespace) in placements(self.pipeline, self.settings) {
            for kind in WorkloadKind::ALL {
                lists.insert((cluster.clone(), namespace.clone(), kind.kind()));
            }
        }
        for (cluster, namespace) in
            crate::stage::build::placements(self.pipeline, &self.settings.builds())
        {
            lists.insert((cluster, namespace, WorkloadKind::Job.kind()));
        }
        for (cluster, namespace, kind) in lists {
            let kind = WorkloadKind::from_kind(kind).unwrap_or_default();
            {
                for w in self.cluster.list(kind, &cluster, &namespace).await? {
                    report.workloads += 1;
                    match self.check(&w).await {
                        Ok(Some(e)) => report.emitted.push(e),
                        Ok(None) => {}
                        Err(e) => {
                            warn!(workload = %w.name, error = %e, "will retry on the next tick");
                            report
                                .errors
                                .push(format!("{}/{}: {e}", w.namespace, w.name));
                        }
                    }
                }
            }
        }
        Ok(report)
    }

    async fn check(&self, w: &WorkloadState) -> Result<Option<BusEvent>, WatchError> {
        if Purpose::of(&w.labels) == Purpose::ImageBuild {
            return self.check_build(w).await;
        }
        if let Some(t) = terminal(w) {
            if !self.claim(w, ANN_REPORTED).await? {
                return Ok(None);
            }
            let result = async {
                let event = match t {
                    Terminal::Succeeded => self.succeeded(w).await?,
                    Terminal::Failed => self.failed(w, condition(w, "Failed"))?,
                };
                self.bus.put(std::slice::from_ref(&event)).await?;
                Ok::<_, WatchError>(event)
            }
            .await;
            return self.settle(w, ANN_REPORTED, result).await;
        }
        if w.annotations.contains_key(ANN_STALLED) && !is_claim(&w.annotations[ANN_STALLED]) {
            return Ok(None);
        }
        let pending = self.cluster.pending_pods(w).await?;
        let now = Utc::now();
        let limit = self.stall_after(w);
        let Some(oldest) = pending.iter().min_by_key(|p| p.since) else {
            return Ok(None);
        };
        let waited = (now - oldest.since).to_std().unwrap_or_default();
        if waited < limit || !self.claim(w, ANN_STALLED).await? {
            return Ok(None);
        }
        let stalled = TrainingJobStalled {
            schema_version: SCHEMA_VERSION.into(),
            run_id: run_id(w),
            model: model(w),
            dataset_version: dataset_version(w),
            workload: reference(w),
            condition: ConditionSummary {
                type_: "PodScheduled".into(),
                reason: oldest.reason.clone().or(Some("Pending".into())),
                message: oldest.message.clone(),
            },
            pending_seconds: waited.as_secs(),
        };
        let result = async {
            let event = BusEvent::new(&stalled).map_err(WatchError::Encode)?;
            self.bus.put(std::slice::from_ref(&event)).await?;
            Ok::<_, WatchError>(event)
        }
        .await;
        self.settle(w, ANN_STALLED, result).await
    }

    /// An image build: `ImageBuilt` with the digest BuildKit wrote to the termination message,
    /// or `ImageBuildFailed` with the message and the end of the log. Exactly once, as for
    /// training workloads.
    async fn check_build(&self, w: &WorkloadState) -> Result<Option<BusEvent>, WatchError> {
        let Some(t) = terminal(w) else {
            return Ok(None);
        };
        if !self.claim(w, ANN_REPORTED).await? {
            return Ok(None);
        }
        let result = async {
            let report = self.cluster.pod_report(w).await?.unwrap_or_default();
            let digest = report
                .termination_message
                .as_deref()
                .and_then(crate::stage::build::job::digest_from_metadata);
            let ann = |k: &str| w.annotations.get(k).cloned().unwrap_or_default();
            let event = match (t, digest) {
                (Terminal::Succeeded, Some(digest)) => BusEvent::new(&ImageBuilt {
                    schema_version: SCHEMA_VERSION.into(),
                    run_id: run_id(w),
                    model: model(w),
                    commit: ann(ANN_GIT_COMMIT),
                    image: ann(ANN_IMAGE),
                    digest,
                    workload: Some(reference(w)),
                }),
                (t, _) => {
                    let mut c = condition(w, "Failed");
                    if t == Terminal::Succeeded {
                        c = ConditionSummary {
                            type_: "Failed".into(),
                            reason: Some("NoDigest".into()),
                            message: Some(
                                "the build completed but its termination message holds no containerimage.digest (BuildKit's --metadata-file)".into(),
                            ),
                        };
                    }
                    BusEvent::new(&ImageBuildFailed {
                        schema_version: SCHEMA_VERSION.into(),
                        run_id: run_id(w),
                        model: model(w),
                        commit: ann(ANN_GIT_COMMIT),
                        image: ann(ANN_IMAGE),
                        workload: reference(w),
                        condition: c,
                        termination_message: report.termination_message.clone(),
                        log_tail: report.log_tail.clone(),
                    })
                }
            }
            .map_err(WatchError::Encode)?;
            self.bus.put(std::slice::from_ref(&event)).await?;
            Ok::<_, WatchError>(event)
        }
        .await;
        self.settle(w, ANN_REPORTED, result).await
    }

    /// Claims the workload for reporting under `key`; false when it is reported or claimed.
    async fn claim(&self, w: &WorkloadState, key: &str) -> Result<bool, WatchError> {
        if let Some(v) = w.annotations.get(key) {
            let live = v
                .strip_prefix(CLAIM_PREFIX)
                .is_some_and(|t| !lease_expired(t, self.claim_lease));
            if !is_claim(v) || live {
                return Ok(false);
            }
        }
        let value = format!("{CLAIM_PREFIX}{}", now_rfc3339());
        Ok(self.cluster.annotate(w, key, &value).await?)
    }

    /// Records the outcome: the event's type once it is out, or a released claim on failure.
    async fn settle(
        &self,
        w: &WorkloadState,
        key: &str,
        result: Result<BusEvent, WatchError>,
    ) -> Result<Option<BusEvent>, WatchError> {
        let unconditional = WorkloadState {
            resource_version: String::new(),
            ..w.clone()
        };
        match result {
            Ok(event) => {
                if let Err(e) = self
                    .cluster
                    .annotate(&unconditional, key, &event.detail_type)
                    .await
                {
                    // The event is out; the claim's lease keeps others away until it expires.
                    warn!(workload = %w.name, error = %e, "event put but the workload could not be marked");
                }
                info!(workload = %w.name, detail_type = %event.detail_type, "reported");
                Ok(Some(event))
            }
            Err(e) => {
                let _ = self.cluster.annotate(&unconditional, key, RELEASED).await;
                Err(e)
            }
        }
    }

    async fn succeeded(&self, w: &WorkloadState) -> Result<BusEvent, WatchError> {
        let run = run_id(w);
        let model = model(w);
        let Some(tracked) = self.registry.find_run(&model, &run).await? else {
            let c = ConditionSummary {
                type_: "Failed".into(),
                reason: Some("NoMlflowRun".into()),
                message: Some(format!(
                    "the workload completed but no MLflow run is tagged mlops.run_id={run}; the trainer must log to MLFLOW_TRACKING_URI with that tag"
                )),
            };
            return self.failed(w, c);
        };
        let mut versions = self
            .registry
            .versions_of_run(&model, &tracked.run_id)
            .await?;
        versions.sort_by_key(|v| v.parse::<u64>().unwrap_or(0));
        let version = match versions.pop() {
            Some(v) => v,
            None => {
                info!(%run, mlflow_run = %tracked.run_id, "trainer registered nothing; registering the run's model");
                self.registry.register(&model, &tracked, &run).await?
            }
        };
        let ok = TrainingJobSucceeded {
            schema_version: SCHEMA_VERSION.into(),
            run_id: run,
            model,
            dataset_version: dataset_version(w),
            workload: reference(w),
            condition: condition(w, success_type(w.kind)),
            duration_seconds: duration(w),
            mlflow_run_id: Some(tracked.run_id),
            model_version: Some(version),
        };
        BusEvent::new(&ok).map_err(WatchError::Encode)
    }

    fn failed(&self, w: &WorkloadState, c: ConditionSummary) -> Result<BusEvent, WatchError> {
        let f = TrainingJobFailed {
            schema_version: SCHEMA_VERSION.into(),
            run_id: run_id(w),
            model: model(w),
            dataset_version: dataset_version(w),
            workload: reference(w),
            condition: c,
            duration_seconds: duration(w),
        };
        BusEvent::new(&f).map_err(WatchError::Encode)
    }

    fn stall_after(&self, w: &WorkloadState) -> Duration {
        self.pipeline
            .models
            .get(&model(w))
            .and_then(|m| m.training.as_ref())
            .and_then(|t| t.stall_after)
            .map(Duration::from_secs)
            .unwrap_or(self.settings.stall_after)
    }
}

fn success_type(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::PyTorchJob => "Succeeded",
        _ => "Complete",
    }
}

/// Only the terminal conditions count (`Complete`/`Failed` for Jobs, not the earlier
/// `SuccessCriteriaMet`/`FailureTarget`; `Succeeded`/`Failed` for PyTorchJobs).
fn terminal(w: &WorkloadState) -> Option<Terminal> {
    let is = |t: &str| {
        w.conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if is(success_type(w.kind)) {
        Some(Terminal::Succeeded)
    } else if is("Failed") {
        Some(Terminal::Failed)
    } else {
        None
    }
}

fn condition(w: &WorkloadState, type_: &str) -> ConditionSummary {
    let c = w
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True");
    ConditionSummary {
        type_: type_.into(),
        reason: c.and_then(|c| c.reason.clone()),
        message: c.and_then(|c| c.message.clone()),
    }
}

fn is_claim(v: &str) -> bool {
    v.starts_with(CLAIM_PREFIX)
}

fn meta(w: &WorkloadState, ann: &str, label: &str) -> String {
    w.annotations
        .get(ann)
        .or_else(|| w.labels.get(label))
        .cloned()
        .unwrap_or_default()
}
fn run_id(w: &WorkloadState) -> String {
    meta(w, ANN_RUN_ID, LABEL_RUN_ID)
}
fn model(w: &WorkloadState) -> String {
    meta(w, ANN_MODEL, LABEL_MODEL)
}
fn dataset_version(w: &WorkloadState) -> String {
    meta(w, ANN_DATASET_VERSION, LABEL_DATASET_VERSION)
}

fn reference(w: &WorkloadState) -> WorkloadRef {
    WorkloadRef {
        kind: w.kind.kind().into(),
        api_version: w.kind.api_version().into(),
        cluster: w.cluster.clone(),
        namespace: w.namespace.clone(),
        name: w.name.clone(),
    }
}

fn duration(w: &WorkloadState) -> Option<u64> {
    let (start, end) = (w.created?, w.finished?);
    (end - start).to_std().ok().map(|d| d.as_secs())
}
