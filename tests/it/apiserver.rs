//! Apiserver scenario tests (STYLE: "assert every call to the apiserver"): the real kube client
//! over a tower-test mock. Each request's method, path, query pairs, content type and body are
//! checked and answered as the Kubernetes API would (API conventions: Status objects with
//! code/reason/message; server-side apply is a PATCH with `application/apply-patch+yaml` and
//! `fieldManager`; CONTRACTS §4). A missing or an extra call fails the test.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use http::{Request, Response};
use kube::client::Body;
use mlops::adapter::kubernetes::KubeCluster;
use mlops::adapter::memory::{MemoryBus, MemoryRegistry, MemoryStore};
use mlops::config::{PipelineConfig, TrainingSettings};
use mlops::stage::training::launch::{LaunchTraining, Launched};
use mlops::stage::training::watch::TrainingWatch;
use serde_json::{Value, json};
use tower_test::mock::Handle;

use crate::harness::root;

const NS: &str = "training";
const NAME: &str = "fraud-detection-9c1e4b7a2d3f5e60";
const RUN: &str = "run-20261129T040000Z-3f9a2c1d";
const JOBS: &str = "/apis/batch/v1/namespaces/training/jobs";

/// One expected request and the apiserver's answer.
pub(crate) struct Call {
    method: &'static str,
    path: String,
    query: Vec<(String, String)>,
    content_type: Option<&'static str>,
    check: Box<dyn Fn(&Value) + Send>,
    status: u16,
    reply: Value,
    /// Sent instead of `reply` when set (a pod's `/metrics` through the proxy is text).
    raw: Option<String>,
}

pub(crate) fn call(
    method: &'static str,
    path: impl Into<String>,
    status: u16,
    reply: Value,
) -> Call {
    Call {
        method,
        path: path.into(),
        query: vec![],
        content_type: None,
        check: Box::new(|_| {}),
        status,
        reply,
        raw: None,
    }
}

impl Call {
    pub(crate) fn text(mut self, body: &str) -> Self {
        self.raw = Some(body.to_owned());
        self
    }
    pub(crate) fn query(mut self, q: &[(&str, &str)]) -> Self {
        self.query = q
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self
    }
    pub(crate) fn content_type(mut self, c: &'static str) -> Self {
        self.content_type = Some(c);
        self
    }
    pub(crate) fn body(mut self, f: impl Fn(&Value) + Send + 'static) -> Self {
        self.check = Box::new(f);
        self
    }
}

pub(crate) fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

fn job(annotations: Value, conditions: Value, rv: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": NAME, "namespace": NS, "resourceVersion": rv, "uid": "5c1b",
            "creationTimestamp": "2026-11-29T04:00:00Z",
            "labels": {"app.kubernetes.io/managed-by": "mlops", "mlops.dev/run-id": RUN, "mlops.dev/model": "fraud-detection"},
            "annotations": annotations},
        "spec": {"template": {"spec": {"containers": [{"name": "trainer", "image": "i"}], "restartPolicy": "Never"}}},
        "status": {"conditions": conditions, "startTime": "2026-11-29T04:00:05Z"}
    })
}

/// Serves the script, then fails on any call beyond it.
pub(crate) async fn serve(mut handle: Handle<Request<Body>, Response<Body>>, script: Vec<Call>) {
    for (i, c) in script.into_iter().enumerate() {
        let Ok(Some((req, send))) =
            tokio::time::timeout(Duration::from_secs(2), handle.next_request()).await
        else {
            panic!("missing call #{i}: {} {}", c.method, c.path);
        };
        assert_eq!(
            req.method().as_str(),
            c.method,
            "call #{i} method ({})",
            req.uri()
        );
        assert_eq!(req.uri().path(), c.path, "call #{i} path");
        let got: BTreeSet<(String, String)> = req.uri().query().map(url_pairs).unwrap_or_default();
        let want: BTreeSet<(String, String)> = c.query.iter().cloned().collect();
        assert_eq!(got, want, "call #{i} query pairs of {}", req.uri());
        if let Some(ct) = c.content_type {
            assert_eq!(
                req.headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok()),
                Some(ct),
                "call #{i} content type"
            );
        }
        let bytes = req.into_body().collect_bytes().await.expect("body");
        if !bytes.is_empty() {
            let v: Value = serde_json::from_slice(&bytes).expect("JSON body");
            (c.check)(&v);
        }
        let resp = Response::builder()
            .status(c.status)
            .body(Body::from(match c.raw {
                Some(text) => text.into_bytes(),
                None => serde_json::to_vec(&c.reply).expect("json"),
            }))
            .expect("response");
        send.send_response(resp);
    }
    if let Ok(Some((req, _))) =
        tokio::time::timeout(Duration::from_millis(500), handle.next_request()).await
    {
        panic!("unexpected extra call: {} {}", req.method(), req.uri());
    }
}

fn url_pairs(q: &str) -> BTreeSet<(String, String)> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn pipeline() -> PipelineConfig {
    PipelineConfig::load(&root().join("samples/pipeline.yaml")).expect("pipeline")
}

pub(crate) fn settings() -> TrainingSettings {
    TrainingSettings {
        pipeline_config: "pipeline.yaml".into(),
        event_bus: "mlops".into(),
        mlflow_tracking_uri: "http://mlflow:5000".into(),
        cluster_name: "ml-prod".into(),
        training_namespace: NS.into(),
        stall_after: Duration::from_secs(1800),
        build_namespace: "builds".into(),
        artifact_bucket: None,
        state_prefix: "state/".into(),
    }
}

fn ready() -> EventBridgeEvent<Value> {
    serde_json::from_str(
        &std::fs::read_to_string(root().join("events/samples/mlops/DatasetReady.json"))
            .expect("sample"),
    )
    .expect("event")
}

/// Runs launch-training against the script; returns its outcome and the events put.
async fn launch(script: Vec<Call>) -> (Result<Launched, String>, Vec<String>) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(serve(handle, script));
    let bus = MemoryBus::default();
    let out = {
        let cluster = KubeCluster::new(kube::Client::new(svc, "default"), "ml-prod");
        let (p, s) = (pipeline(), settings());
        let stage = LaunchTraining {
            pipeline: &p,
            settings: &s,
            cluster: &cluster,
            bus: &bus,
            store: &MemoryStore::default(),
        };
        stage
            .handle(&ready())
            .await
            .map_err(|e| mlops::lambda::sqs::error_chain(&e))
    };
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server finished")
        .expect("script held");
    (
        out,
        bus.events().into_iter().map(|e| e.detail_type).collect(),
    )
}

fn get_job(status_code: u16, reply: Value) -> Call {
    call("GET", format!("{JOBS}/{NAME}"), status_code, reply)
}

fn apply(status_code: u16, reply: Value) -> Call {
    call("PATCH", format!("{JOBS}/{NAME}"), status_code, reply)
        .query(&[("fieldManager", "mlops")])
        .content_type("application/apply-patch+yaml")
        .body(|b| {
            assert_eq!(
                (b["apiVersion"].as_str(), b["kind"].as_str()),
                (Some("batch/v1"), Some("Job"))
            );
            assert_eq!(b["metadata"]["name"], NAME);
            assert_eq!(b["spec"]["template"]["spec"]["restartPolicy"], "Never");
            assert_eq!(
                b["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["type"],
                "DisruptionTarget"
            );
            assert!(b.get("status").is_none(), "only owned fields are applied");
        })
}

fn mark_submitted() -> Call {
    call(
        "PATCH",
        format!("{JOBS}/{NAME}"),
        200,
        job(json!({"mlops.dev/submitted": RUN}), json!([]), "3"),
    )
    .content_type("application/merge-patch+json")
    .body(|b| {
        assert_eq!(
            b,
            &json!({"metadata": {"annotations": {"mlops.dev/submitted": RUN}}})
        );
    })
}

#[tokio::test]
async fn launch_creates_with_server_side_apply_then_marks() {
    let not_found = status(404, "NotFound", &format!("jobs.batch \"{NAME}\" not found"));
    let (out, events) = launch(vec![
        get_job(404, not_found),
        apply(201, job(json!({}), json!([]), "1")),
        mark_submitted(),
    ])
    .await;
    assert!(matches!(out, Ok(Launched::Submitted(_))), "{out:?}");
    assert_eq!(events, ["TrainingJobSubmitted"]);
}

#[tokio::test]
async fn launch_redelivery_finds_the_reported_workload() {
    let existing = job(json!({"mlops.dev/submitted": RUN}), json!([]), "7");
    let (out, events) = launch(vec![get_job(200, existing)]).await;
    assert!(matches!(out, Ok(Launched::Duplicate { .. })), "{out:?}");
    assert!(events.is_empty());
}

#[tokio::test]
async fn launch_after_a_crash_reports_without_reapplying() {
    // AlreadyExists from an earlier attempt that died before the event was put.
    let (out, events) = launch(vec![
        get_job(200, job(json!({}), json!([]), "7")),
        mark_submitted(),
    ])
    .await;
    assert!(matches!(out, Ok(Launched::Submitted(_))), "{out:?}");
    assert_eq!(events, ["TrainingJobSubmitted"]);
}

#[tokio::test]
async fn launch_permanent_refusals_become_training_job_failed() {
    let forbidden = status(
        403,
        "Forbidden",
        "jobs.batch is forbidden: User \"mlops-launch\" cannot get resource \"jobs\" in API group \"batch\" in the namespace \"training\"",
    );
    let (out, events) = launch(vec![get_job(403, forbidden)]).await;
    let Ok(Launched::Failed(f)) = out else {
        panic!("{out:?}")
    };
    assert!(
        f.condition
            .message
            .as_deref()
            .unwrap_or("")
            .contains("forbidden"),
        "{:?}",
        f.condition
    );
    assert_eq!(events, ["TrainingJobFailed"]);

    let no_ns = status(404, "NotFound", "namespaces \"training\" not found");
    let not_found = status(404, "NotFound", "jobs.batch not found");
    let (out, events) = launch(vec![get_job(404, not_found.clone()), apply(404, no_ns)]).await;
    let Ok(Launched::Failed(f)) = out else {
        panic!("{out:?}")
    };
    assert!(
        f.condition
            .message
            .as_deref()
            .unwrap_or("")
            .contains("namespaces \"training\" not found")
    );
    assert_eq!(events, ["TrainingJobFailed"]);

    let invalid = status(
        422,
        "Invalid",
        "Job.batch \"x\" is invalid: spec.template.spec.restartPolicy: Required value",
    );
    let (out, _) = launch(vec![get_job(404, not_found), apply(422, invalid)]).await;
    let Ok(Launched::Failed(f)) = out else {
        panic!("{out:?}")
    };
    assert_eq!(f.condition.reason.as_deref(), Some("SubmitRejected"));
    assert!(
        f.condition
            .message
            .as_deref()
            .unwrap_or("")
            .contains("is invalid")
    );
}

#[tokio::test]
async fn launch_transient_answers_are_retried_without_an_event() {
    for (code, reason) in [
        (409, "Conflict"),
        (429, "TooManyRequests"),
        (500, "InternalError"),
        (503, "ServiceUnavailable"),
    ] {
        let not_found = status(404, "NotFound", "jobs.batch not found");
        let (out, events) = launch(vec![
            get_job(404, not_found),
            apply(code, status(code, reason, "try again")),
        ])
        .await;
        assert!(out.is_err(), "{code}: {out:?}");
        assert!(events.is_empty(), "{code}");
    }
}

/// Runs one watch tick against the script, after the (empty) list of the build namespace the
/// sample pipeline's `source` block adds.
async fn watch(script: Vec<Call>, registry: MemoryRegistry) -> Vec<(String, Value)> {
    let mut full = vec![list(
        "/apis/batch/v1/namespaces/builds/jobs",
        200,
        job_list(vec![]),
    )];
    full.extend(script);
    watch_exactly(full, registry).await
}

/// Runs one watch tick against exactly this script.
pub(crate) async fn watch_exactly(
    script: Vec<Call>,
    registry: MemoryRegistry,
) -> Vec<(String, Value)> {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(serve(handle, script));
    let bus = MemoryBus::default();
    {
        let cluster = KubeCluster::new(kube::Client::new(svc, "default"), "ml-prod");
        let (p, s) = (pipeline(), settings());
        let stage = TrainingWatch {
            pipeline: &p,
            settings: &s,
            cluster: &cluster,
            registry: &registry,
            bus: &bus,
            claim_lease: Duration::from_secs(300),
        };
        stage.tick().await.expect("tick");
    }
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server finished")
        .expect("script held");
    bus.events()
        .into_iter()
        .map(|e| (e.detail_type, e.detail))
        .collect()
}

pub(crate) fn list(path: &str, status_code: u16, reply: Value) -> Call {
    call("GET", path, status_code, reply)
        .query(&[("labelSelector", "app.kubernetes.io/managed-by=mlops")])
}

pub(crate) fn crds_absent() -> Vec<Call> {
    vec![
        list(
            "/apis/kubeflow.org/v1/namespaces/training/pytorchjobs",
            404,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ),
        list(
            "/apis/trainer.kubeflow.org/v1alpha1/namespaces/training/trainjobs",
            404,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ),
    ]
}

pub(crate) fn job_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {"resourceVersion": "10"}, "items": items})
}

#[tokio::test]
async fn watch_claims_with_resource_version_then_marks_after_the_event() {
    let complete = job(
        json!({}),
        json!([{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True", "reason": "CompletionsReached", "lastTransitionTime": "2026-11-29T04:20:00Z"}]),
        "5",
    );
    let mut script = vec![
        list(JOBS, 200, job_list(vec![complete.clone()])),
        call("PATCH", format!("{JOBS}/{NAME}"), 200, complete.clone()).content_type("application/merge-patch+json").body(|b| {
            assert_eq!(b["metadata"]["resourceVersion"], "5", "claim only the version read");
            assert!(b["metadata"]["annotations"]["mlops.dev/reported"].as_str().unwrap_or("").starts_with("claimed@"));
        }),
        call("PATCH", format!("{JOBS}/{NAME}"), 200, complete).content_type("application/merge-patch+json").body(|b| {
            assert_eq!(b, &json!({"metadata": {"annotations": {"mlops.dev/reported": "TrainingJobSucceeded"}}}));
        }),
    ];
    script.extend(crds_absent());
    let registry = MemoryRegistry::default();
    registry
        .runs
        .lock()
        .expect("lock")
        .insert(RUN.into(), "mlflow-run".into());
    let events = watch(script, registry).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "TrainingJobSucceeded");
    assert_eq!(events[0].1["condition"]["reason"], "CompletionsReached");
    assert_eq!(events[0].1["duration_seconds"], 1200);
    assert_eq!(events[0].1["model_version"], "1");
}

#[tokio::test]
async fn watch_loses_the_claim_race_quietly() {
    let failed = job(
        json!({}),
        json!([{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]),
        "5",
    );
    let mut script = vec![
        list(JOBS, 200, job_list(vec![failed])),
        call("PATCH", format!("{JOBS}/{NAME}"), 409, status(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again"))
            .content_type("application/merge-patch+json"),
    ];
    script.extend(crds_absent());
    assert!(watch(script, MemoryRegistry::default()).await.is_empty());
}

#[tokio::test]
async fn watch_skips_reported_workloads_and_stalls_pending_ones() {
    let reported = job(
        json!({"mlops.dev/reported": "TrainingJobSucceeded"}),
        json!([{"type": "Complete", "status": "True"}]),
        "9",
    );
    let mut running = job(json!({}), json!([]), "6");
    running["metadata"]["name"] = "fraud-detection-aaaa".into();
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "fraud-detection-aaaa-x1", "namespace": NS, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}
    }]});
    let mut script = vec![
        list(JOBS, 200, job_list(vec![reported, running.clone()])),
        call("GET", "/api/v1/namespaces/training/pods", 200, pods).query(&[
            ("labelSelector", "mlops.dev/workload=fraud-detection-aaaa"),
            ("fieldSelector", "status.phase=Pending"),
        ]),
        call(
            "PATCH",
            format!("{JOBS}/fraud-detection-aaaa"),
            200,
            running.clone(),
        )
        .body(|b| {
            assert_eq!(b["metadata"]["resourceVersion"], "6");
            assert!(
                b["metadata"]["annotations"]["mlops.dev/stalled"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("claimed@")
            );
        }),
        call(
            "PATCH",
            format!("{JOBS}/fraud-detection-aaaa"),
            200,
            running,
        )
        .body(|b| {
            assert_eq!(
                b["metadata"]["annotations"]["mlops.dev/stalled"],
                "TrainingJobStalled"
            );
        }),
    ];
    script.extend(crds_absent());
    let events = watch(script, MemoryRegistry::default()).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "TrainingJobStalled");
    assert!(
        events[0].1["condition"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("Insufficient nvidia.com/gpu")
    );
}
