//! The image-build stage: the rendered BuildKit Job through kubernetes-validate (1.30, 1.37) and
//! the rootless contract of moby/buildkit's `examples/kubernetes/job.rootless.yaml` (CONTRACTS
//! §14.1–14.4); `build-image` and the watcher against a scripted apiserver that answers as the
//! Kubernetes API does (CONTRACTS §4: server-side apply, merge patches at a resourceVersion,
//! `Status` bodies on refusals).

use std::process::Command;
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use http::{Request, Response};
use kube::client::Body;
use mlops::adapter::kubernetes::KubeCluster;
use mlops::adapter::memory::{MemoryBus, MemoryImageRegistry, MemoryRegistry};
use mlops::config::PipelineConfig;
use mlops::stage::build::job::{BuildTarget, build_name, render};
use mlops::stage::build::{BuildImage, BuildSettings, Built};
use serde_json::{Value, json};

use crate::apiserver::{Call, call, crds_absent, job_list, list, serve, status, watch_exactly};
use crate::harness::{root, venv_python};

const COMMIT: &str = "4f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39";
const RUN: &str = "run-20261204T041500Z-7c2d9e10";
const TOKEN: &str = "ghp_secret-token-value-never-in-a-manifest";
const BUILDS: &str = "/apis/batch/v1/namespaces/builds/jobs";
const SECRETS: &str = "/api/v1/namespaces/builds/secrets";
const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/fraud-trainer";

fn pipeline() -> PipelineConfig {
    crate::apiserver::pipeline()
}

fn source() -> mlops::config::SourceConfig {
    pipeline().models["fraud-detection"]
        .source
        .clone()
        .expect("the sample has a source block")
}

fn name() -> String {
    build_name("fraud-detection", COMMIT)
}

fn rendered() -> Value {
    render(
        &source(),
        &BuildTarget {
            model: "fraud-detection",
            run_id: RUN,
            commit: COMMIT,
            cluster: "ml-prod".into(),
            namespace: "builds".into(),
        },
    )
    .expect("render")
    .object
}

#[test]
fn the_build_job_validates_and_carries_the_rootless_contract() {
    let job = rendered();
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("build.json");
    std::fs::write(&f, serde_json::to_vec_pretty(&job).expect("json")).expect("write");
    let out = Command::new(venv_python())
        .arg(root().join("tests/k8s_validate.py"))
        .args(["--k8s", "1.30.0", "--k8s", "1.37.0"])
        .arg(&f)
        .output()
        .expect("k8s_validate runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().filter(|l| l.starts_with("OK")).count(), 2);

    let spec = &job["spec"];
    let pod = &spec["template"]["spec"];
    let c = &pod["containers"][0];
    // job.rootless.yaml: the securityContext, the flag, the state volume.
    assert_eq!(c["securityContext"]["seccompProfile"]["type"], "Unconfined");
    assert_eq!(
        c["securityContext"]["appArmorProfile"]["type"],
        "Unconfined"
    );
    assert_eq!(c["securityContext"]["runAsUser"], 1000);
    assert_eq!(c["securityContext"]["runAsGroup"], 1000);
    assert_eq!(c["command"], json!(["buildctl-daemonless.sh"]));
    let env: Vec<&Value> = c["env"].as_array().expect("env").iter().collect();
    assert!(
        env.iter()
            .any(|e| e["name"] == "BUILDKITD_FLAGS"
                && e["value"] == "--oci-worker-no-process-sandbox")
    );
    assert!(
        c["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["mountPath"] == "/home/user/.local/share/buildkit")
    );
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert!(pod.get("tolerations").is_none(), "never on a GPU node");
    // The deadline, no retries of a deterministic failure, a spot reclaim ignored.
    assert_eq!(spec["activeDeadlineSeconds"], 3600);
    assert_eq!(spec["backoffLimit"], 0);
    assert_eq!(
        spec["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["type"],
        "DisruptionTarget"
    );
    // The Git context at the exact commit, the push, the ECR cache (CONTRACTS §14.2, §14.4).
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let after = |flag: &str| -> Vec<&str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1])
            .collect()
    };
    assert_eq!(
        after("--opt"),
        [
            format!("context=https://github.com/example/fraud-trainer.git#{COMMIT}").as_str(),
            "filename=Dockerfile"
        ]
    );
    assert_eq!(
        after("--output"),
        [format!("type=image,name={IMAGE}:{COMMIT},push=true").as_str()]
    );
    assert_eq!(
        after("--export-cache"),
        [format!(
            "type=registry,ref={IMAGE}:buildcache,mode=max,image-manifest=true,oci-mediatypes=true"
        )
        .as_str()]
    );
    assert_eq!(
        after("--import-cache"),
        [format!("type=registry,ref={IMAGE}:buildcache").as_str()]
    );
    assert_eq!(after("--secret"), ["id=GIT_AUTH_TOKEN,env=GIT_AUTH_TOKEN"]);
    assert!(!args.contains(&"--local"), "a git context, not a local one");
    assert_eq!(after("--metadata-file"), ["/dev/termination-log"]);
    assert_eq!(c["terminationMessagePolicy"], "FallbackToLogsOnError");
    // Credentials by reference only.
    let token = env
        .iter()
        .find(|e| e["name"] == "GIT_AUTH_TOKEN")
        .expect("token env");
    assert!(token.get("value").is_none());
    assert_eq!(token["valueFrom"]["secretKeyRef"]["name"], "mlops-git-auth");
    assert_eq!(
        pod["volumes"][1]["secret"]["secretName"],
        "mlops-registry-auth"
    );
    // The labels the watcher finds it by and the exact values in annotations.
    let labels = &job["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "mlops");
    assert_eq!(labels["mlops.dev/purpose"], "image-build");
    assert_eq!(labels["mlops.dev/run-id"], RUN);
    assert_eq!(labels["mlops.dev/model"], "fraud-detection");
    assert_eq!(labels["mlops.dev/git-commit"], COMMIT);
    assert_eq!(
        pod.pointer("/containers/0/image").and_then(Value::as_str),
        Some(mlops::config::DEFAULT_BUILDER_IMAGE)
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["mlops.dev/workload"],
        name()
    );

    // The validator can fail: a build without its container's image is refused.
    let mut broken = job.clone();
    broken["spec"]["template"]["spec"]["containers"][0]["name"] = json!(42);
    let g = dir.path().join("broken.json");
    std::fs::write(&g, serde_json::to_vec(&broken).expect("json")).expect("write");
    let out = Command::new(venv_python())
        .arg(root().join("tests/k8s_validate.py"))
        .args(["--k8s", "1.30.0"])
        .arg(&g)
        .output()
        .expect("k8s_validate runs");
    assert!(!out.status.success(), "a broken Job must fail validation");
}

#[test]
fn no_secret_value_and_no_partial_commit_ever_reach_a_manifest() {
    let text = rendered().to_string();
    assert!(!text.contains(TOKEN));
    assert!(!text.contains("auths"));
    for bad in ["4f2a9c1", "", "not-a-commit", &"g".repeat(40)] {
        let err = render(
            &source(),
            &BuildTarget {
                model: "fraud-detection",
                run_id: RUN,
                commit: bad,
                cluster: "ml-prod".into(),
                namespace: "builds".into(),
            },
        )
        .expect_err("refused");
        assert!(err.contains("full commit id"), "{err}");
    }
}

fn pushed() -> EventBridgeEvent<Value> {
    let mut e: EventBridgeEvent<Value> = serde_json::from_str(
        &std::fs::read_to_string(root().join("events/samples/mlops/ModelCodePushed.json"))
            .expect("sample"),
    )
    .expect("event");
    e.detail["commit"] = json!(COMMIT);
    e.detail["run_id"] = json!(RUN);
    e
}

/// Runs build-image against the script; returns its outcome and the events put.
async fn build(
    script: Vec<Call>,
    registry: &MemoryImageRegistry,
) -> (Result<Built, String>, Vec<(String, String)>) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(serve(handle, script));
    let bus = MemoryBus::default();
    let out = {
        let cluster = KubeCluster::new(kube::Client::new(svc, "default"), "ml-prod");
        let p = pipeline();
        let s = BuildSettings {
            cluster_name: "ml-prod".into(),
            build_namespace: "builds".into(),
        };
        let token = secrecy::SecretString::from(TOKEN.to_owned());
        let stage = BuildImage {
            pipeline: &p,
            settings: &s,
            cluster: &cluster,
            registry: Some(registry),
            git_token: &token,
            bus: &bus,
        };
        stage
            .handle(&pushed())
            .await
            .map_err(|e| mlops::lambda::sqs::error_chain(&e))
    };
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server finished")
        .expect("script held");
    (
        out,
        bus.events()
            .into_iter()
            .map(|e| (e.detail_type, e.source))
            .collect(),
    )
}

fn build_job(annotations: Value, conditions: Value, rv: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name(), "namespace": "builds", "resourceVersion": rv, "uid": "9d2e",
            "creationTimestamp": "2026-12-04T04:15:02Z",
            "labels": {"app.kubernetes.io/managed-by": "mlops", "mlops.dev/run-id": RUN,
                "mlops.dev/model": "fraud-detection", "mlops.dev/purpose": "image-build",
                "mlops.dev/git-commit": COMMIT, "mlops.dev/workload": name()},
            "annotations": annotations},
        "spec": {"template": {"spec": {"containers": [{"name": "buildkit", "image": "b"}], "restartPolicy": "Never"}}},
        "status": {"conditions": conditions}
    })
}

fn get_build(code: u16, reply: Value) -> Call {
    call("GET", format!("{BUILDS}/{}", name()), code, reply)
}

fn not_found() -> Value {
    status(404, "NotFound", "jobs.batch not found")
}

fn apply_secret(name: &'static str, check: impl Fn(&Value) + Send + 'static) -> Call {
    call(
        "PATCH",
        format!("{SECRETS}/{name}"),
        200,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "builds"}}),
    )
    .query(&[("fieldManager", "mlops"), ("force", "true")])
    .content_type("application/apply-patch+yaml")
    .body(check)
}

fn secrets() -> Vec<Call> {
    vec![
        apply_secret("mlops-git-auth", |b| {
            assert_eq!(b["type"], "Opaque");
            assert_eq!(b["stringData"]["token"], TOKEN);
        }),
        apply_secret("mlops-registry-auth", |b| {
            assert_eq!(b["type"], "kubernetes.io/dockerconfigjson");
            let cfg: Value = serde_json::from_str(
                b["stringData"][".dockerconfigjson"]
                    .as_str()
                    .expect("config.json"),
            )
            .expect("json");
            assert_eq!(
                cfg["auths"]["123456789012.dkr.ecr.us-east-1.amazonaws.com"]["auth"],
                "QVdTOnNlY3JldA=="
            );
        }),
    ]
}

fn apply_build(code: u16, reply: Value) -> Call {
    call("PATCH", format!("{BUILDS}/{}", name()), code, reply)
        .query(&[("fieldManager", "mlops")])
        .content_type("application/apply-patch+yaml")
        .body(|b| {
            assert_eq!(b["metadata"]["labels"]["mlops.dev/purpose"], "image-build");
            assert!(!b.to_string().contains(TOKEN), "no secret in the Job");
        })
}

fn mark_submitted() -> Call {
    call(
        "PATCH",
        format!("{BUILDS}/{}", name()),
        200,
        build_job(json!({"mlops.dev/submitted": RUN}), json!([]), "3"),
    )
    .content_type("application/merge-patch+json")
    .body(|b| {
        assert_eq!(
            b,
            &json!({"metadata": {"annotations": {"mlops.dev/submitted": RUN}}})
        );
    })
}

fn registry() -> MemoryImageRegistry {
    let r = MemoryImageRegistry::default();
    *r.auth.lock().expect("lock") = "QVdTOnNlY3JldA==".into();
    r
}

#[tokio::test]
async fn submit_writes_both_secrets_then_the_job_then_marks_it() {
    let mut script = vec![get_build(404, not_found())];
    script.extend(secrets());
    script.push(apply_build(201, build_job(json!({}), json!([]), "1")));
    script.push(mark_submitted());
    let r = registry();
    let (out, events) = build(script, &r).await;
    let Ok(Built::Submitted(s)) = out else {
        panic!("{out:?}")
    };
    assert_eq!(s.image, format!("{IMAGE}:{COMMIT}"));
    assert_eq!(
        events,
        [(
            "ImageBuildSubmitted".to_owned(),
            "mlops.build-image".to_owned()
        )]
    );
    // The registry was asked about exactly this commit's tag.
    assert_eq!(
        r.asked.lock().expect("lock").as_slice(),
        [(IMAGE.to_owned(), COMMIT.to_owned())]
    );
}

#[tokio::test]
async fn a_redelivered_push_builds_nothing_twice() {
    let reported = build_job(json!({"mlops.dev/submitted": RUN}), json!([]), "7");
    let (out, events) = build(vec![get_build(200, reported)], &registry()).await;
    assert!(matches!(out, Ok(Built::Duplicate { .. })), "{out:?}");
    assert!(events.is_empty());
    // After a crash between apply and the event: reported, not re-applied.
    let (out, events) = build(
        vec![
            get_build(200, build_job(json!({}), json!([]), "7")),
            mark_submitted(),
        ],
        &registry(),
    )
    .await;
    assert!(matches!(out, Ok(Built::Submitted(_))), "{out:?}");
    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn an_image_already_in_the_registry_is_not_built() {
    let r = registry();
    let digest = format!("sha256:{}", "ab".repeat(32));
    r.images
        .lock()
        .expect("lock")
        .insert((IMAGE.to_owned(), COMMIT.to_owned()), digest.clone());
    let (out, events) = build(vec![get_build(404, not_found())], &r).await;
    let Ok(Built::Exists(b)) = out else {
        panic!("{out:?}")
    };
    assert_eq!(b.digest, digest);
    assert!(b.workload.is_none());
    assert_eq!(
        events,
        [("ImageBuilt".to_owned(), "mlops.build-image".to_owned())]
    );
}

#[tokio::test]
async fn forbidden_is_image_build_failed_and_quota_exceeded_is_retried() {
    let forbidden = status(
        403,
        "Forbidden",
        "jobs.batch is forbidden: User \"mlops-build\" cannot patch resource \"jobs\" in API group \"batch\" in the namespace \"builds\"",
    );
    let mut script = vec![get_build(404, not_found())];
    script.extend(secrets());
    script.push(apply_build(403, forbidden));
    let (out, events) = build(script, &registry()).await;
    let Ok(Built::Failed(f)) = out else {
        panic!("{out:?}")
    };
    assert_eq!(f.condition.reason.as_deref(), Some("SubmitRejected"));
    assert!(
        f.condition
            .message
            .as_deref()
            .unwrap_or("")
            .contains("cannot patch resource"),
        "{:?}",
        f.condition
    );
    assert_eq!(
        events,
        [(
            "ImageBuildFailed".to_owned(),
            "mlops.build-image".to_owned()
        )]
    );

    // The apiserver's ResourceQuota admission answers 403 "exceeded quota": not permanent.
    let quota = status(
        403,
        "Forbidden",
        "jobs.batch \"b\" is forbidden: exceeded quota: builds, requested: count/jobs.batch=1, used: count/jobs.batch=10, limited: count/jobs.batch=10",
    );
    let mut script = vec![get_build(404, not_found())];
    script.extend(secrets());
    script.push(apply_build(403, quota));
    let (out, events) = build(script, &registry()).await;
    let err = out.expect_err("retried");
    assert!(err.contains("exceeded quota"), "{err}");
    assert!(events.is_empty(), "nothing emitted: the queue retries it");

    // A refused registry call is permanent too (no repository, no rights).
    let r = registry();
    *r.refuse.lock().expect("lock") = Some("repository fraud-trainer does not exist".into());
    let (out, events) = build(vec![get_build(404, not_found())], &r).await;
    let Ok(Built::Failed(f)) = out else {
        panic!("{out:?}")
    };
    assert_eq!(f.condition.reason.as_deref(), Some("RegistryRefused"));
    assert_eq!(events.len(), 1);
}

fn pod(terminated: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{}-x7k2p", name()), "namespace": "builds",
            "creationTimestamp": "2026-12-04T04:15:03Z"},
        "status": {"phase": "Failed", "containerStatuses": [{"name": "buildkit", "image": "b",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": terminated}}]}})
}

/// One watch tick over a finished build: list, claim at its resourceVersion, the pod and its
/// log tail, the event, the mark; then the training namespace as before.
fn watch_script(job: Value, pod: Value, log: &str, marked: &'static str) -> Vec<Call> {
    let path = format!("{BUILDS}/{}", name());
    let mut script = vec![
        list(BUILDS, 200, job_list(vec![job.clone()])),
        call("PATCH", path.clone(), 200, job.clone())
            .content_type("application/merge-patch+json")
            .body(|b| {
                assert_eq!(b["metadata"]["resourceVersion"], "5");
                assert!(
                    b["metadata"]["annotations"]["mlops.dev/reported"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("claimed@")
                );
            }),
        call(
            "GET",
            "/api/v1/namespaces/builds/pods",
            200,
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [pod]}),
        )
        .query(&[("labelSelector", &format!("mlops.dev/workload={}", name()))]),
        call(
            "GET",
            format!("/api/v1/namespaces/builds/pods/{}-x7k2p/log", name()),
            200,
            json!(null),
        )
        .text(log)
        .query(&[("tailLines", "40")]),
        call("PATCH", path, 200, job)
            .content_type("application/merge-patch+json")
            .body(move |b| {
                assert_eq!(
                    b,
                    &json!({"metadata": {"annotations": {"mlops.dev/reported": marked}}})
                );
            }),
        list(
            "/apis/batch/v1/namespaces/training/jobs",
            200,
            job_list(vec![]),
        ),
    ];
    script.extend(crds_absent());
    script
}

fn annotated(conditions: Value) -> Value {
    build_job(
        json!({"mlops.dev/run-id": RUN, "mlops.dev/model": "fraud-detection",
            "mlops.dev/git-commit": COMMIT, "mlops.dev/image": format!("{IMAGE}:{COMMIT}"),
            "mlops.dev/submitted": RUN}),
        conditions,
        "5",
    )
}

#[tokio::test]
async fn the_watcher_reports_a_finished_build_with_its_digest() {
    let digest = format!("sha256:{}", "3b8e".repeat(16));
    // BuildKit's --metadata-file, as the termination message.
    let metadata = json!({"containerimage.digest": digest, "image.name": format!("{IMAGE}:{COMMIT}"),
        "containerimage.descriptor": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 1590}});
    let job =
        annotated(json!([{"type": "Complete", "status": "True", "reason": "CompletionsReached"}]));
    let p = pod(json!({"exitCode": 0, "reason": "Completed", "message": metadata.to_string()}));
    let events = watch_exactly(
        watch_script(
            job,
            p,
            "#12 exporting to image\n#12 DONE 4.1s\n",
            "ImageBuilt",
        ),
        MemoryRegistry::default(),
    )
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    let (t, d) = &events[0];
    assert_eq!(t, "ImageBuilt");
    assert_eq!(d["digest"], digest.as_str());
    assert_eq!(d["commit"], COMMIT);
    assert_eq!(d["image"], format!("{IMAGE}:{COMMIT}"));
    assert_eq!(d["run_id"], RUN);
    assert_eq!(d["workload"]["name"], name());
}

#[tokio::test]
async fn the_watcher_reports_a_failed_build_with_its_message_and_log() {
    let failed_log = "#8 [3/4] RUN pip install -r requirements.txt\n#8 ERROR: exit code: 1\nerror: failed to solve: process \"/bin/sh -c pip install -r requirements.txt\" did not complete successfully: exit code: 1\n";
    let job = annotated(
        json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]),
    );
    // FallbackToLogsOnError: the message is the end of the log.
    let p = pod(
        json!({"exitCode": 1, "reason": "Error", "message": "error: failed to solve: exit code: 1"}),
    );
    let events = watch_exactly(
        watch_script(job, p, failed_log, "ImageBuildFailed"),
        MemoryRegistry::default(),
    )
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    let (t, d) = &events[0];
    assert_eq!(t, "ImageBuildFailed");
    assert_eq!(d["condition"]["reason"], "BackoffLimitExceeded");
    assert_eq!(
        d["termination_message"],
        "error: failed to solve: exit code: 1"
    );
    let tail: Vec<&str> = d["log_tail"]
        .as_array()
        .expect("log tail")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(tail.len(), 3);
    assert!(tail[2].starts_with("error: failed to solve"));

    // Complete but no digest in the message: not an image anyone can pull by digest.
    let job = annotated(json!([{"type": "Complete", "status": "True"}]));
    let p = pod(json!({"exitCode": 0, "reason": "Completed", "message": "{}"}));
    let events = watch_exactly(
        watch_script(job, p, "done\n", "ImageBuildFailed"),
        MemoryRegistry::default(),
    )
    .await;
    assert_eq!(events[0].0, "ImageBuildFailed");
    assert_eq!(events[0].1["condition"]["reason"], "NoDigest");
}

#[test]
fn the_committed_sample_job_is_what_build_image_renders() {
    let text = std::fs::read_to_string(root().join("samples/buildkit/build-job.yaml"))
        .expect("samples/buildkit/build-job.yaml");
    let committed: Value = serde_saphyr::from_str(&text).expect("YAML");
    assert_eq!(
        committed,
        rendered(),
        "stale: regenerate with the command in the file's header"
    );
    assert_eq!(committed["metadata"]["name"], name());
}
