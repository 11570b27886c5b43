//! vllm-scaler against the real kube client over the apiserver double of `apiserver.rs`
//! (every call's method, path, query, content type and body checked; CONTRACTS §4 for the
//! Kubernetes API conventions, §9 for vLLM's metric names, §10 for HPA ownership). The pods'
//! `/metrics` here are written in vLLM's exposition format with the CONTRACTS §9 names (the
//! parser's test on vLLM's own text lives in `stage::serving::metrics`).

use http::{Request, Response};
use kube::client::Body;
use mlops::adapter::kube_serving::PodProxyMetrics;
use mlops::adapter::kubernetes::KubeCluster;
use mlops::adapter::memory::{MemoryBus, MemoryStore};
use mlops::config::ScalingConfig;
use mlops::port::ObjectStore;
use mlops::stage::serving::scaler::{Outcome, ScalerError, ScalerState, ServedModel, VllmScaler};
use serde_json::{Value, json};

use crate::apiserver::{Call, call, serve, status};

const NS: &str = "serving";
const DEP: &str = "vllm-llama-3-70b-instruct";
const RUN: &str = "run-20261129T040000Z-3f9a2c1d";
const BUCKET: &str = "state";

fn model() -> ServedModel {
    let scaling: ScalingConfig = serde_saphyr::from_str(
        "namespace: serving\nprofile: llama-3-70b-tp4-h100\nmax_replicas: 8\nmax_surge: 2\n",
    )
    .expect("scaling block");
    ServedModel {
        model: "llama-3-70b-instruct".into(),
        namespace: NS.into(),
        deployment: DEP.into(),
        served_model_name: Some("llama-3-70b-instruct".into()),
        port: 8000,
        prometheus: None,
        policy: scaling.policy().expect("policy"),
    }
}

fn deployment(replicas: u32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": DEP, "namespace": NS, "resourceVersion": "41",
            "annotations": {"mlops.io/run-id": RUN, "mlops.io/model-version": "3"}},
        "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": DEP}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": DEP}},
                "spec": {"containers": [{"name": "server", "image": "vllm/vllm-openai:v0.11.0"}]}}},
        "status": {"replicas": replicas}
    })
}

fn pod(name: &str, ready: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app.kubernetes.io/name": DEP}},
        "spec": {"containers": [{"name": "server", "image": "i"}]},
        "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

/// One engine's gauges and counters, as vLLM exposes them.
fn metrics(
    running: u32,
    waiting: u32,
    kv: f64,
    prompt: u64,
    generated: u64,
    kv_name: &str,
) -> String {
    let l = "engine=\"0\",model_name=\"llama-3-70b-instruct\"";
    format!(
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
         # TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{{{l}}} {running}.0\n\
         # HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n\
         # TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{{{l}}} {waiting}.0\n\
         # TYPE {kv_name} gauge\n{kv_name}{{{l}}} {kv}\n\
         # TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{{{l}}} {prompt}.0\n\
         # TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total{{{l}}} {generated}.0\n"
    )
}

fn get_deployment(replicas: u32) -> Call {
    call(
        "GET",
        format!("/apis/apps/v1/namespaces/{NS}/deployments/{DEP}"),
        200,
        deployment(replicas),
    )
}

fn list_pods(pods: Vec<Value>) -> Call {
    call(
        "GET",
        format!("/api/v1/namespaces/{NS}/pods"),
        200,
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": pods}),
    )
    .query(&[("labelSelector", "app.kubernetes.io/name=vllm-llama-3-70b-instruct")])
}

fn scrape(pod: &str, text: &str) -> Call {
    call(
        "GET",
        format!("/api/v1/namespaces/{NS}/pods/{pod}:8000/proxy/metrics"),
        200,
        Value::Null,
    )
    .text(text)
}

fn no_keda() -> Call {
    call(
        "GET",
        format!("/apis/keda.sh/v1alpha1/namespaces/{NS}/scaledobjects"),
        404,
        status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
    )
}

fn hpas(items: Vec<Value>) -> Call {
    call(
        "GET",
        format!("/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers"),
        200,
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscalerList", "metadata": {}, "items": items}),
    )
}

fn patch_scale(replicas: u32, code: u16) -> Call {
    let reply = if code == 200 {
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": DEP, "namespace": NS, "resourceVersion": "42"},
            "spec": {"replicas": replicas}, "status": {"replicas": replicas - 1}})
    } else {
        status(
            code,
            "Conflict",
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    };
    call(
        "PATCH",
        format!("/apis/apps/v1/namespaces/{NS}/deployments/{DEP}/scale"),
        code,
        reply,
    )
    .content_type("application/merge-patch+json")
    .body(move |b| {
        assert_eq!(
            b,
            &json!({"metadata": {"resourceVersion": "41"}, "spec": {"replicas": replicas}}),
            "the scale patch carries the read resourceVersion"
        );
    })
}

/// Two ready pods whose previous counters (15 s earlier) are in the state: their token rates
/// price to `utilization` over both.
async fn seeded_store(now: chrono::DateTime<chrono::Utc>) -> MemoryStore {
    let store = MemoryStore::default();
    let t = now.timestamp_millis() as f64 / 1000.0 - 15.0;
    let state = ScalerState {
        counters: [
            ("vllm-a".to_owned(), (t, 1_000_000.0, 200_000.0)),
            ("vllm-b".to_owned(), (t, 1_000_000.0, 200_000.0)),
        ]
        .into(),
        ..Default::default()
    };
    store
        .put(
            BUCKET,
            &format!("state/vllm-scaler/{NS}/{DEP}.json"),
            serde_json::to_vec(&state).expect("json"),
            mlops::port::Precondition::None,
        )
        .await
        .expect("seed");
    store
}

async fn evaluate(
    script: Vec<Call>,
    store: &MemoryStore,
    now: chrono::DateTime<chrono::Utc>,
) -> (Outcome, Vec<Value>) {
    let bus = MemoryBus::default();
    let out = evaluate_on(script, store, &bus, now)
        .await
        .expect("evaluation");
    (out, bus.events().into_iter().map(|e| e.detail).collect())
}

async fn evaluate_on(
    script: Vec<Call>,
    store: &MemoryStore,
    bus: &MemoryBus,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Outcome, ScalerError> {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(serve(handle, script));
    let out = {
        let cluster = KubeCluster::new(kube::Client::new(svc, "default"), "ml-prod");
        let metrics = PodProxyMetrics { cluster: &cluster };
        VllmScaler {
            cluster: &cluster,
            metrics: &metrics,
            store,
            bus,
            state_bucket: BUCKET,
            state_prefix: "state/",
        }
        .evaluate(&model(), now)
        .await
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("server finished")
        .expect("script held");
    out
}

async fn saved_state(store: &MemoryStore) -> ScalerState {
    let saved = store
        .get(BUCKET, &format!("state/vllm-scaler/{NS}/{DEP}.json"))
        .await
        .expect("get")
        .expect("state");
    serde_json::from_slice(&saved.body).expect("state json")
}

// Per pod over 15 s: 66,000 prompt tokens (4,400/s × 0.09 ms = 396 ms per second) and 6,750
// generated (450/s × (0.25 + 0.04 × 1.76k context) ≈ 145 ms): about 0.54 of a replica each, 1.08
// over two. At the profile's default 0.6 that needs 2; requests waiting past the tolerance
// (6 per replica > 4) make it one more than ready.
fn busy(kv_name: &str) -> String {
    metrics(120, 6, 0.45, 1_066_000, 206_750, kv_name)
}

#[tokio::test]
async fn token_rates_from_the_pod_proxy_scale_the_deployment_through_its_scale_subresource() {
    let now = chrono::Utc::now();
    let store = seeded_store(now).await;
    // vllm-b runs an older vLLM: its KV gauge still has the old name.
    let (out, events) = evaluate(
        vec![
            get_deployment(2),
            list_pods(vec![
                pod("vllm-a", true),
                pod("vllm-b", true),
                pod("vllm-c", false),
            ]),
            scrape("vllm-a", &busy("vllm:kv_cache_usage_perc")),
            scrape("vllm-b", &busy("vllm:gpu_cache_usage_perc")),
            no_keda(),
            hpas(vec![]),
            patch_scale(3, 200),
        ],
        &store,
        now,
    )
    .await;
    let Outcome::Scaled { from, to, reason } = out else {
        panic!("{out:?}")
    };
    assert_eq!((from, to), (2, 3), "{reason}");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["run_id"], RUN, "the serving release's run");
    assert_eq!((e["from"].as_u64(), e["to"].as_u64()), (Some(2), Some(3)));
    assert_eq!(e["metrics"]["vllm:num_requests_waiting"], 12.0);
    assert_eq!(
        e["metrics"]["vllm:kv_cache_usage_perc"], 0.45,
        "both names read"
    );
    assert_eq!(e["metrics"]["pending_replicas"], 0.0);
    let u = e["metrics"]["utilization"].as_f64().expect("utilization");
    assert!((u - 1.08).abs() < 0.02, "{e}");
    assert!(e.get("controller").is_none());
    // The counters of this read are the next evaluation's baseline.
    let saved = store
        .get(BUCKET, &format!("state/vllm-scaler/{NS}/{DEP}.json"))
        .await
        .expect("get")
        .expect("state");
    let state: ScalerState = serde_json::from_slice(&saved.body).expect("state json");
    assert_eq!(state.counters.len(), 2);
    assert_eq!(state.counters["vllm-a"].1, 1_066_000.0);
}

#[tokio::test]
async fn a_change_the_bus_refused_to_hear_of_is_announced_by_the_next_evaluation() {
    let now = chrono::Utc::now();
    let store = seeded_store(now).await;
    let bus = MemoryBus::default();
    bus.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let pods = || {
        list_pods(vec![
            pod("vllm-a", true),
            pod("vllm-b", true),
            pod("vllm-c", false),
        ])
    };
    let scrapes = || {
        [
            scrape("vllm-a", &busy("vllm:kv_cache_usage_perc")),
            scrape("vllm-b", &busy("vllm:kv_cache_usage_perc")),
        ]
    };
    // The Deployment is scaled 2 → 3, then PutEvents fails: the evaluation fails (the invocation
    // is retried) and the event waits in the state.
    let mut script = vec![get_deployment(2), pods()];
    script.extend(scrapes());
    script.extend([no_keda(), hpas(vec![]), patch_scale(3, 200)]);
    let err = evaluate_on(script, &store, &bus, now)
        .await
        .expect_err("the bus failed");
    assert!(matches!(err, ScalerError::Bus { .. }), "{err}");
    assert!(bus.events().is_empty());
    let parked = saved_state(&store).await.unsent;
    assert_eq!(parked.len(), 1);
    assert_eq!((parked[0].from, parked[0].to), (2, 3));

    // While the bus still fails, the next evaluation parks it again and changes nothing.
    let mut script = vec![get_deployment(3), pods()];
    script.extend(scrapes());
    let later = now + chrono::Duration::seconds(15);
    evaluate_on(script, &store, &bus, later)
        .await
        .expect_err("the bus still fails");
    assert_eq!(saved_state(&store).await.unsent, parked);

    // The bus is back: the next evaluation (nothing to change: 3 asked for, one starting)
    // announces the earlier change once and clears it.
    bus.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut script = vec![get_deployment(3), pods()];
    script.extend(scrapes());
    let out = evaluate_on(script, &store, &bus, later + chrono::Duration::seconds(15))
        .await
        .expect("evaluation");
    assert!(
        matches!(out, Outcome::Unchanged { replicas: 3, .. }),
        "{out:?}"
    );
    let events = bus.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].detail_type, "ServingScaled");
    assert_eq!(
        (
            events[0].detail["from"].as_u64(),
            events[0].detail["to"].as_u64()
        ),
        (Some(2), Some(3))
    );
    assert_eq!(events[0].detail["run_id"], RUN);
    assert!(saved_state(&store).await.unsent.is_empty());
}

#[tokio::test]
async fn an_hpa_owned_deployment_gets_a_new_floor_not_a_new_count() {
    let now = chrono::Utc::now();
    let store = seeded_store(now).await;
    let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "vllm-llama", "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": DEP},
            "minReplicas": 2, "maxReplicas": 8,
            "metrics": [{"type": "Pods", "pods": {"metric": {"name": "vllm_requests_running"},
                "target": {"type": "AverageValue", "averageValue": "10"}}}]}});
    let other = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "other", "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mlflow"},
            "maxReplicas": 3}});
    let (out, events) = evaluate(
        vec![
            get_deployment(2),
            list_pods(vec![pod("vllm-a", true), pod("vllm-b", true)]),
            scrape("vllm-a", &busy("vllm:kv_cache_usage_perc")),
            scrape("vllm-b", &busy("vllm:kv_cache_usage_perc")),
            no_keda(),
            hpas(vec![other, hpa.clone()]),
            call(
                "PATCH",
                format!("/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/vllm-llama"),
                200,
                hpa,
            )
            .content_type("application/merge-patch+json")
            .body(|b| assert_eq!(b, &json!({"spec": {"minReplicas": 3, "maxReplicas": 8}}))),
        ],
        &store,
        now,
    )
    .await;
    assert_eq!(
        out,
        Outcome::Bounded {
            autoscaler: "HorizontalPodAutoscaler/vllm-llama".into(),
            min: 3,
            max: 8
        }
    );
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["controller"],
        "HorizontalPodAutoscaler/vllm-llama"
    );
}

#[tokio::test]
async fn a_deployment_changed_since_it_was_read_is_left_alone() {
    let now = chrono::Utc::now();
    let store = seeded_store(now).await;
    let (out, events) = evaluate(
        vec![
            get_deployment(2),
            list_pods(vec![pod("vllm-a", true), pod("vllm-b", true)]),
            scrape("vllm-a", &busy("vllm:kv_cache_usage_perc")),
            scrape("vllm-b", &busy("vllm:kv_cache_usage_perc")),
            no_keda(),
            hpas(vec![]),
            patch_scale(3, 409),
        ],
        &store,
        now,
    )
    .await;
    assert_eq!(out, Outcome::Raced);
    assert!(events.is_empty(), "{events:?}");
}

#[tokio::test]
async fn an_idle_model_with_an_unreadable_pod_is_not_scaled_down() {
    let now = chrono::Utc::now();
    let store = seeded_store(now).await;
    let idle = metrics(0, 0, 0.0, 1_000_000, 200_000, "vllm:kv_cache_usage_perc");
    let mut script = vec![];
    // Twenty minutes of evaluations, one pod's proxy answering 503 every time.
    for _ in 0..80 {
        script.extend([
            get_deployment(2),
            list_pods(vec![pod("vllm-a", true), pod("vllm-b", true)]),
            scrape("vllm-a", &idle),
            call(
                "GET",
                format!("/api/v1/namespaces/{NS}/pods/vllm-b:8000/proxy/metrics"),
                503,
                status(503, "ServiceUnavailable", "error trying to reach service: dial tcp 10.0.3.7:8000: connect: connection refused"),
            ),
        ]);
    }
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(serve(handle, script));
    let bus = MemoryBus::default();
    {
        let cluster = KubeCluster::new(kube::Client::new(svc, "default"), "ml-prod");
        let metrics = PodProxyMetrics { cluster: &cluster };
        let scaler = VllmScaler {
            cluster: &cluster,
            metrics: &metrics,
            store: &store,
            bus: &bus,
            state_bucket: BUCKET,
            state_prefix: "state/",
        };
        for i in 0..80 {
            let at = now + chrono::Duration::seconds(15 * i);
            let out = scaler.evaluate(&model(), at).await.expect("evaluation");
            assert!(
                matches!(out, Outcome::Unchanged { replicas: 2, .. }),
                "{out:?}"
            );
        }
    }
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("server finished")
        .expect("script held");
    assert!(bus.events().is_empty());
}

#[tokio::test]
async fn no_deployment_yet_means_nothing_to_scale() {
    let store = MemoryStore::default();
    let (out, events) = evaluate(
        vec![call(
            "GET",
            format!("/apis/apps/v1/namespaces/{NS}/deployments/{DEP}"),
            404,
            status(
                404,
                "NotFound",
                &format!("deployments.apps \"{DEP}\" not found"),
            ),
        )],
        &store,
        chrono::Utc::now(),
    )
    .await;
    assert_eq!(out, Outcome::NoDeployment);
    assert!(events.is_empty());
}
