//! Stage 2: a clean dataset → a training workload on EKS (`launch-training`), and the watcher
//! that turns finished workloads into `TrainingJobSucceeded`/`Failed`/`Stalled` and makes sure
//! MLflow has a model version for the run (`training-watch`).

pub mod launch;
pub mod watch;
pub mod workload;

pub use workload::{InvalidSpec, Target, build};

use crate::config::{PipelineConfig, TrainingConfig, TrainingSettings};

/// Annotation set after `TrainingJobSubmitted` was put (launch) and after the terminal event
/// was put (watch); its presence means "reported, do nothing".
pub const ANN_SUBMITTED: &str = "mlops.dev/submitted";
pub const ANN_REPORTED: &str = "mlops.dev/reported";
pub const ANN_STALLED: &str = "mlops.dev/stalled";

/// The cluster and namespace a model trains in.
pub fn placement(cfg: &TrainingConfig, s: &TrainingSettings) -> (String, String) {
    (
        cfg.cluster
            .clone()
            .unwrap_or_else(|| s.cluster_name.clone()),
        cfg.namespace
            .clone()
            .unwrap_or_else(|| s.training_namespace.clone()),
    )
}

/// Every (cluster, namespace) any model trains in.
pub fn placements(p: &PipelineConfig, s: &TrainingSettings) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = p
        .models
        .values()
        .filter_map(|m| m.training.as_ref())
        .map(|t| placement(t, s))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests;
