//! The image build as a Kubernetes Job: BuildKit rootless (moby/buildkit
//! `examples/kubernetes/job.rootless.yaml`, CONTRACTS §14.1) building the model's Git context at
//! the exact commit (§14.2), pushing `<image>:<commit>` to ECR with the ECR registry cache
//! (§14.4). k8s-openapi types, never text templates.
//!
//! - **Credentials** never appear in the manifest: the Git token reaches BuildKit as the build
//!   secret `GIT_AUTH_TOKEN` from a Secret (`secretKeyRef`), and the registry's `config.json` is
//!   a mounted `kubernetes.io/dockerconfigjson` Secret (a 12-hour ECR token minted by
//!   `build-image`; builds are capped at 11 hours).
//! - **Result**: `--metadata-file /dev/termination-log` leaves BuildKit's metadata (with
//!   `containerimage.digest`) as the container's termination message; on a failure
//!   `FallbackToLogsOnError` makes the end of the log the message instead.
//! - **Rootless** needs `seccompProfile` and `appArmorProfile` `Unconfined`, UID/GID 1000 and
//!   `--oci-worker-no-process-sandbox` (the example's settings). Clusters that forbid that use
//!   CodeBuild instead (README).
//! - A spot reclaim (`DisruptionTarget`) is ignored by `podFailurePolicy`; a failed build is not
//!   retried (`backoffLimit: 0`): it would fail the same way.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    AppArmorProfile, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, KeyToPath, PodSpec,
    PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::config::{SourceConfig, WorkloadKind};
use crate::port::workload::{
    ANN_GIT_COMMIT, ANN_GIT_REPO, ANN_IMAGE, ANN_MODEL, ANN_RUN_ID, LABEL_GIT_COMMIT, LABEL_MODEL,
    LABEL_PURPOSE, LABEL_RUN_ID, LABEL_WORKLOAD, MANAGED_BY, Purpose, Workload,
    disruptions_ignored, label_value, workload_name,
};

/// The Secret holding the Git token (key [`GIT_TOKEN_KEY`]), one per build namespace.
pub const GIT_SECRET: &str = "mlops-git-auth";
pub const GIT_TOKEN_KEY: &str = "token";
/// The `kubernetes.io/dockerconfigjson` Secret with the registry token, one per build namespace.
pub const REGISTRY_SECRET: &str = "mlops-registry-auth";
/// The tag the layer cache is exported to, in the model's own repository.
pub const CACHE_TAG: &str = "buildcache";
/// Where the rootless image's user keeps `config.json` (`$DOCKER_CONFIG`).
const DOCKER_CONFIG_DIR: &str = "/home/user/.docker";
const BUILDKIT_STATE: &str = "/home/user/.local/share/buildkit";
/// Finished builds are kept a day for their logs.
const TTL_AFTER_FINISHED: i32 = 86_400;

#[derive(Debug, Clone)]
pub struct BuildTarget<'a> {
    pub model: &'a str,
    pub run_id: &'a str,
    /// 40 (SHA-1) or 64 (SHA-256) hex digits.
    pub commit: &'a str,
    pub cluster: String,
    pub namespace: String,
}

/// A full commit id: BuildKit fetches exactly that commit, and the tag names it.
pub fn is_commit(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The build's name: stable per (model, commit), so a redelivered push finds the build it
/// started; distinct from every training workload's name.
pub fn build_name(model: &str, commit: &str) -> String {
    workload_name(model, &format!("build@{}", commit.to_ascii_lowercase()))
}

/// `<image>:<commit>`, what the build pushes.
pub fn image_tag(src: &SourceConfig, commit: &str) -> String {
    format!("{}:{}", src.image, commit.to_ascii_lowercase())
}

/// BuildKit's Git context (`frontend/dockerfile/dfgitutil`: `<url>#<ref>[:<subdir>]`).
pub fn git_context(src: &SourceConfig, commit: &str) -> String {
    let context = src.context.trim_end_matches('/');
    if context == "." || context.is_empty() {
        format!("{}#{commit}", src.repo)
    } else {
        format!("{}#{commit}:{context}", src.repo)
    }
}

pub fn buildctl_args(src: &SourceConfig, commit: &str) -> Vec<String> {
    let cache = format!("type=registry,ref={}:{CACHE_TAG}", src.image);
    [
        "build".to_owned(),
        "--frontend".into(),
        "dockerfile.v0".into(),
        "--opt".into(),
        format!("context={}", git_context(src, commit)),
        "--opt".into(),
        format!("filename={}", src.dockerfile),
        "--secret".into(),
        "id=GIT_AUTH_TOKEN,env=GIT_AUTH_TOKEN".into(),
        "--output".into(),
        format!("type=image,name={},push=true", image_tag(src, commit)),
        "--export-cache".into(),
        format!("{cache},mode=max,image-manifest=true,oci-mediatypes=true"),
        "--import-cache".into(),
        cache,
        "--metadata-file".into(),
        "/dev/termination-log".into(),
    ]
    .into()
}

pub fn render(src: &SourceConfig, t: &BuildTarget<'_>) -> Result<Workload, String> {
    if !is_commit(t.commit) {
        return Err(format!(
            "commit {:?} is not a full commit id (40 or 64 hex digits)",
            t.commit
        ));
    }
    let commit = t.commit.to_ascii_lowercase();
    let name = build_name(t.model, &commit);
    let image = image_tag(src, &commit);
    let labels = BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (LABEL_RUN_ID.to_owned(), label_value(t.run_id)),
        (LABEL_MODEL.to_owned(), label_value(t.model)),
        (
            LABEL_PURPOSE.to_owned(),
            Purpose::ImageBuild.label().to_owned(),
        ),
        (LABEL_GIT_COMMIT.to_owned(), label_value(&commit)),
        (LABEL_WORKLOAD.to_owned(), name.clone()),
    ]);
    let annotations = BTreeMap::from([
        (ANN_RUN_ID.to_owned(), t.run_id.to_owned()),
        (ANN_MODEL.to_owned(), t.model.to_owned()),
        (ANN_GIT_COMMIT.to_owned(), commit.clone()),
        (ANN_GIT_REPO.to_owned(), src.repo.clone()),
        (ANN_IMAGE.to_owned(), image.clone()),
    ]);
    let mut resources = BTreeMap::new();
    for (k, v) in [
        ("cpu", &src.resources.cpu),
        ("memory", &src.resources.memory),
    ] {
        if let Some(v) = v {
            resources.insert(k.to_owned(), Quantity(v.clone()));
        }
    }
    let env = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    let container = Container {
        name: "buildkit".into(),
        image: Some(src.builder_image.clone()),
        command: Some(vec!["buildctl-daemonless.sh".into()]),
        args: Some(buildctl_args(src, &commit)),
        env: Some(vec![
            env("BUILDKITD_FLAGS", "--oci-worker-no-process-sandbox"),
            env("DOCKER_CONFIG", DOCKER_CONFIG_DIR),
            EnvVar {
                name: "GIT_AUTH_TOKEN".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: GIT_SECRET.into(),
                        key: GIT_TOKEN_KEY.into(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]),
        resources: Some(ResourceRequirements {
            limits: (!resources.is_empty()).then(|| resources.clone()),
            requests: (!resources.is_empty()).then_some(resources),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "Unconfined".into(),
                ..Default::default()
            }),
            app_armor_profile: Some(AppArmorProfile {
                type_: "Unconfined".into(),
                ..Default::default()
            }),
            run_as_user: Some(1000),
            run_as_group: Some(1000),
            ..Default::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "buildkitd".into(),
                mount_path: BUILDKIT_STATE.into(),
                ..Default::default()
            },
            VolumeMount {
                name: "docker-config".into(),
                mount_path: DOCKER_CONFIG_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    let pod = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels.clone()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            service_account_name: src.service_account.clone(),
            // The build talks to Git and the registry, never to the Kubernetes API.
            automount_service_account_token: Some(false),
            node_selector: (!src.node_selector.is_empty()).then(|| src.node_selector.clone()),
            containers: vec![container],
            volumes: Some(vec![
                Volume {
                    name: "buildkitd".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                },
                Volume {
                    name: "docker-config".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(REGISTRY_SECRET.into()),
                        items: Some(vec![KeyToPath {
                            key: ".dockerconfigjson".into(),
                            path: "config.json".into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
    };
    let deadline = i64::try_from(src.deadline).map_err(|_| "deadline is too large".to_owned())?;
    let job = Job {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(t.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(deadline),
            ttl_seconds_after_finished: Some(TTL_AFTER_FINISHED),
            pod_replacement_policy: Some("Failed".into()),
            pod_failure_policy: Some(disruptions_ignored()),
            template: pod,
            ..Default::default()
        }),
        status: None,
    };
    let mut object = serde_json::to_value(&job).map_err(|e| e.to_string())?;
    if let Some(o) = object.as_object_mut() {
        o.insert("apiVersion".into(), "batch/v1".into());
        o.insert("kind".into(), "Job".into());
    }
    Ok(Workload {
        purpose: Purpose::ImageBuild,
        kind: WorkloadKind::Job,
        cluster: t.cluster.clone(),
        namespace: t.namespace.clone(),
        name,
        object,
        env: Vec::new(),
    })
}

/// The `containerimage.digest` of BuildKit's metadata file (the termination message).
pub fn digest_from_metadata(message: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(message.trim()).ok()?;
    let d = v.get("containerimage.digest")?.as_str()?;
    let hex = d.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| d.to_owned())
}

/// `config.json` for the registry Secret.
pub fn docker_config(registry: &str, auth: &str) -> String {
    serde_json::json!({"auths": {registry: {"auth": auth}}}).to_string()
}
