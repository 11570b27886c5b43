//! The workload description ports and adapters share: what the pipeline applies to a cluster
//! (a training workload or an image build), the labels and annotations every such object
//! carries, and the naming rules that make a redelivered event name the same object.

use crate::config::WorkloadKind;

/// Labels every workload (and its pods) carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "mlops");
pub const LABEL_RUN_ID: &str = "mlops.dev/run-id";
pub const LABEL_MODEL: &str = "mlops.dev/model";
pub const LABEL_DATASET: &str = "mlops.dev/dataset";
pub const LABEL_DATASET_VERSION: &str = "mlops.dev/dataset-version";
pub const LABEL_WORKLOAD: &str = "mlops.dev/workload";
pub const ANN_RUN_ID: &str = "mlops.dev/run-id";
pub const ANN_MODEL: &str = "mlops.dev/model";
pub const ANN_DATASET_VERSION: &str = "mlops.dev/dataset-version";

/// What a workload is for; the watcher reports each kind in its own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Purpose {
    /// A training workload (`TrainingJobSucceeded`/`Failed`/`Stalled`).
    #[default]
    Training,
    /// An image build (`ImageBuilt`/`ImageBuildFailed`).
    ImageBuild,
}

impl Purpose {
    pub fn label(self) -> &'static str {
        match self {
            Purpose::Training => "training",
            Purpose::ImageBuild => "image-build",
        }
    }
    /// From the `mlops.dev/purpose` label; workloads from before the label are training.
    pub fn of(labels: &std::collections::BTreeMap<String, String>) -> Purpose {
        match labels.get(LABEL_PURPOSE).map(String::as_str) {
            Some("image-build") => Purpose::ImageBuild,
            _ => Purpose::Training,
        }
    }
}

pub const LABEL_PURPOSE: &str = "mlops.dev/purpose";
pub const LABEL_GIT_COMMIT: &str = "mlops.dev/git-commit";
pub const ANN_GIT_COMMIT: &str = "mlops.dev/git-commit";
pub const ANN_GIT_REPO: &str = "mlops.dev/git-repo";
/// The image a build pushes (`<repository>:<commit>`), or a training workload runs.
pub const ANN_IMAGE: &str = "mlops.dev/image";

/// A workload ready to be applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub purpose: Purpose,
    pub kind: WorkloadKind,
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    /// The object as applied (apiVersion, kind, metadata, spec).
    pub object: serde_json::Value,
    /// The trainer's environment (also inside `object`); the local executor uses it directly.
    pub env: Vec<(String, String)>,
}

impl Workload {
    pub fn reference(&self) -> crate::event::WorkloadRef {
        crate::event::WorkloadRef {
            kind: self.kind.kind().into(),
            api_version: self.kind.api_version().into(),
            cluster: self.cluster.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// A DNS-1035 label (≤ 63 chars, `[a-z]([-a-z0-9]*[a-z0-9])?`) from the model name and dataset
/// version, so a redelivered `DatasetReady` names the same workload, and distinct (model,
/// version) pairs name distinct workloads.
///
/// The readable `<model>-<version>` is used when it is exact: the model is already a DNS label
/// and the version is a dataset version as data-arrival makes them (16 hex digits), so the
/// split is unambiguous. Anything else (upper case, other characters, long names, versions from
/// elsewhere) becomes a cleaned, shortened prefix and 12 hex digits of a hash of both; its
/// 13th-last character is a `-`, which a readable name never has there, so the two forms cannot
/// collide either.
pub fn workload_name(model: &str, version: &str) -> String {
    const MAX: usize = 63;
    const HASH: usize = 12;
    let readable_version = version.len() == 16
        && version
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if is_dns_label(model) && readable_version && model.len() + 1 + version.len() <= MAX {
        return format!("{model}-{version}");
    }
    let clean = |s: &str| -> String {
        let mut out = String::new();
        for c in s.chars().map(|c| c.to_ascii_lowercase()) {
            let c = if c.is_ascii_alphanumeric() { c } else { '-' };
            if !(c == '-' && out.ends_with('-')) {
                out.push(c);
            }
        }
        out.trim_matches('-').to_owned()
    };
    let mut prefix = clean(&format!("{model}-{version}"));
    if !prefix.starts_with(|c: char| c.is_ascii_lowercase()) {
        prefix.insert_str(0, "m-");
    }
    prefix.truncate(MAX - 1 - HASH);
    let prefix = prefix.trim_end_matches('-');
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(model.as_bytes());
    h.update([0u8]);
    h.update(version.as_bytes());
    let digest = hex::encode(h.finalize());
    format!("{prefix}-{}", &digest[..HASH])
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A label value: ≤ 63 chars of `[A-Za-z0-9._-]`, alphanumeric at both ends.
pub fn label_value(s: &str) -> String {
    let mut v: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    v.truncate(63);
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// A Job's `podFailurePolicy` that does not count a pod evicted for a node's disruption (a spot
/// reclaim, a drain: condition `DisruptionTarget`) toward `backoffLimit`. It needs
/// `restartPolicy: Never` and `podReplacementPolicy: Failed` beside it (CONTRACTS §5).
pub fn disruptions_ignored() -> k8s_openapi::api::batch::v1::PodFailurePolicy {
    use k8s_openapi::api::batch::v1::{
        PodFailurePolicy, PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
    };
    PodFailurePolicy {
        rules: vec![PodFailurePolicyRule {
            action: "Ignore".into(),
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: "DisruptionTarget".into(),
                status: Some("True".into()),
            }]),
            ..Default::default()
        }],
    }
}
