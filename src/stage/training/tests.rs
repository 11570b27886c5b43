//! Stage tests of launch-training and training-watch against the in-memory fakes.

use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::Utc;

use super::launch::{LaunchTraining, Launched};
use super::watch::TrainingWatch;
use super::{ANN_REPORTED, ANN_SUBMITTED};
use crate::adapter::memory::{MemoryBus, MemoryCluster, MemoryRegistry, MemoryStore};
use crate::config::{PipelineConfig, TrainingSettings, WorkloadKind};
use crate::port::{Condition, PendingPod, WorkloadState};

fn pipeline(kind: &str) -> PipelineConfig {
    let text = include_str!("../../../samples/pipeline.yaml")
        .replace("kind: job ", &format!("kind: {kind} "));
    PipelineConfig::from_yaml(&text, "sample").expect("config")
}

fn settings() -> TrainingSettings {
    TrainingSettings {
        pipeline_config: "pipeline.yaml".into(),
        event_bus: "mlops".into(),
        mlflow_tracking_uri: "http://mlflow:5000".into(),
        cluster_name: "ml-prod".into(),
        training_namespace: "training".into(),
        stall_after: Duration::from_secs(1800),
        build_namespace: "builds".into(),
        artifact_bucket: None,
        state_prefix: "state/".into(),
    }
}

fn ready_event() -> EventBridgeEvent<serde_json::Value> {
    serde_json::from_str(include_str!(
        "../../../events/samples/mlops/DatasetReady.json"
    ))
    .expect("sample")
}

const NAME: &str = "fraud-detection-9c1e4b7a2d3f5e60";
const RUN: &str = "run-20261129T040000Z-3f9a2c1d";

#[tokio::test]
async fn launch_applies_once_and_emits_once() {
    let (p, s, cluster, bus) = (
        pipeline("job"),
        settings(),
        MemoryCluster::default(),
        MemoryBus::default(),
    );
    let stage = LaunchTraining {
        pipeline: &p,
        settings: &s,
        cluster: &cluster,
        bus: &bus,
        store: &MemoryStore::default(),
    };
    let Launched::Submitted(sub) = stage.handle(&ready_event()).await.expect("handled") else {
        panic!("not submitted")
    };
    assert_eq!(
        (sub.workload.kind.as_str(), sub.workload.name.as_str()),
        ("Job", NAME)
    );
    assert_eq!(
        (
            sub.workload.cluster.as_str(),
            sub.workload.namespace.as_str()
        ),
        ("ml-prod", "training")
    );
    let w = cluster
        .state(WorkloadKind::Job, "training", NAME)
        .expect("applied");
    assert_eq!(
        w.annotations.get(ANN_SUBMITTED).map(String::as_str),
        Some(RUN)
    );
    // Redelivery: nothing applied or emitted again.
    assert_eq!(
        stage.handle(&ready_event()).await.expect("again"),
        Launched::Duplicate { name: NAME.into() }
    );
    assert_eq!(cluster.applied.lock().expect("lock").len(), 1);
    let events = bus.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].detail_type, "TrainingJobSubmitted");
}

#[tokio::test]
async fn launch_failures_are_events() {
    let s = settings();
    let (cluster, bus) = (MemoryCluster::default(), MemoryBus::default());
    // A model without a training config.
    let p = PipelineConfig::from_yaml(
        "datasets:\n  transactions:\n    prefix: x/\n    format: csv\n    model: m\nmodels:\n  m: {}\n",
        "t",
    )
    .expect("config");
    let stage = LaunchTraining {
        pipeline: &p,
        settings: &s,
        cluster: &cluster,
        bus: &bus,
        store: &MemoryStore::default(),
    };
    let mut ev = ready_event();
    ev.detail["model"] = "m".into();
    let Launched::Failed(f) = stage.handle(&ev).await.expect("handled") else {
        panic!("not failed")
    };
    assert_eq!(f.condition.reason.as_deref(), Some("UnknownModel"));
    // An invalid spec (empty image).
    let p = pipeline("job");
    let mut p2 = p.clone();
    if let Some(t) = p2
        .models
        .get_mut("fraud-detection")
        .and_then(|m| m.training.as_mut())
    {
        t.image = " ".into();
    }
    let stage = LaunchTraining {
        pipeline: &p2,
        settings: &s,
        cluster: &cluster,
        bus: &bus,
        store: &MemoryStore::default(),
    };
    let Launched::Failed(f) = stage.handle(&ready_event()).await.expect("handled") else {
        panic!("not failed")
    };
    assert_eq!(f.condition.reason.as_deref(), Some("InvalidSpec"));
    assert!(cluster.applied.lock().expect("lock").is_empty());
    assert_eq!(
        bus.events()
            .iter()
            .filter(|e| e.detail_type == "TrainingJobFailed")
            .count(),
        2
    );
}

fn finished(kind: WorkloadKind, conditions: &[(&str, &str)]) -> WorkloadState {
    WorkloadState {
        kind,
        cluster: "ml-prod".into(),
        namespace: "training".into(),
        name: NAME.into(),
        labels: [
            ("app.kubernetes.io/managed-by", "mlops"),
            ("mlops.dev/run-id", RUN),
            ("mlops.dev/model", "fraud-detection"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        annotations: [
            ("mlops.dev/run-id", RUN),
            ("mlops.dev/model", "fraud-detection"),
            ("mlops.dev/dataset-version", "9c1e4b7a2d3f5e60"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        conditions: conditions
            .iter()
            .map(|(t, s)| Condition {
                type_: t.to_string(),
                status: s.to_string(),
                reason: Some(format!("{t}Reason")),
                message: Some(format!("{t} happened")),
            })
            .collect(),
        created: Some(Utc::now() - chrono::Duration::seconds(600)),
        finished: Some(Utc::now()),
        ..Default::default()
    }
}

struct Watch {
    p: PipelineConfig,
    s: TrainingSettings,
    cluster: MemoryCluster,
    registry: MemoryRegistry,
    bus: MemoryBus,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            p: pipeline("job"),
            s: settings(),
            cluster: MemoryCluster::default(),
            registry: MemoryRegistry::default(),
            bus: MemoryBus::default(),
        }
    }
    fn stage(&self) -> TrainingWatch<'_, MemoryCluster, MemoryRegistry, MemoryBus> {
        TrainingWatch {
            pipeline: &self.p,
            settings: &self.s,
            cluster: &self.cluster,
            registry: &self.registry,
            bus: &self.bus,
            claim_lease: Duration::from_secs(300),
        }
    }
    fn types(&self) -> Vec<String> {
        self.bus
            .events()
            .into_iter()
            .map(|e| e.detail_type)
            .collect()
    }
}

#[tokio::test]
async fn terminal_conditions_per_kind() {
    type Case<'a> = (WorkloadKind, &'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: &[Case] = &[
        (WorkloadKind::Job, &[("SuccessCriteriaMet", "True")], None),
        (WorkloadKind::Job, &[("FailureTarget", "True")], None),
        (
            WorkloadKind::Job,
            &[("SuccessCriteriaMet", "True"), ("Complete", "True")],
            Some("TrainingJobSucceeded"),
        ),
        (
            WorkloadKind::Job,
            &[("FailureTarget", "True"), ("Failed", "True")],
            Some("TrainingJobFailed"),
        ),
        (WorkloadKind::Job, &[("Complete", "False")], None),
        (WorkloadKind::PyTorchJob, &[("Running", "True")], None),
        (WorkloadKind::PyTorchJob, &[("Complete", "True")], None),
        (
            WorkloadKind::PyTorchJob,
            &[("Succeeded", "True")],
            Some("TrainingJobSucceeded"),
        ),
        (
            WorkloadKind::PyTorchJob,
            &[("Failed", "True")],
            Some("TrainingJobFailed"),
        ),
        (
            WorkloadKind::TrainJob,
            &[("Complete", "True")],
            Some("TrainingJobSucceeded"),
        ),
        (
            WorkloadKind::TrainJob,
            &[("Failed", "True")],
            Some("TrainingJobFailed"),
        ),
        (WorkloadKind::TrainJob, &[("Suspended", "True")], None),
    ];
    for (kind, conds, want) in cases {
        let w = Watch::new();
        w.registry
            .runs
            .lock()
            .expect("lock")
            .insert(RUN.into(), "mlflow-run-1".into());
        w.cluster.put(finished(*kind, conds));
        let report = w.stage().tick().await.expect("tick");
        assert_eq!(report.workloads, 1);
        let got = w.types();
        assert_eq!(got.first().map(String::as_str), *want, "{kind:?} {conds:?}");
        assert!(got.len() <= 1);
        if let Some(t) = want {
            let state = w.cluster.state(*kind, "training", NAME).expect("state");
            assert_eq!(
                state.annotations.get(ANN_REPORTED).map(String::as_str),
                Some(*t),
                "marked after the event"
            );
        }
    }
}

#[tokio::test]
async fn success_registers_a_version_only_when_the_trainer_did_not() {
    let w = Watch::new();
    w.registry
        .runs
        .lock()
        .expect("lock")
        .insert(RUN.into(), "mlflow-run-1".into());
    w.cluster
        .put(finished(WorkloadKind::Job, &[("Complete", "True")]));
    w.stage().tick().await.expect("tick");
    let e = &w.bus.events()[0];
    assert_eq!(e.detail["model_version"], "1");
    assert_eq!(e.detail["mlflow_run_id"], "mlflow-run-1");
    assert_eq!(e.detail["duration_seconds"], 600);
    assert_eq!(
        w.registry
            .registered
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    let w = Watch::new();
    w.registry
        .runs
        .lock()
        .expect("lock")
        .insert(RUN.into(), "mlflow-run-2".into());
    w.registry.versions.lock().expect("lock").insert(
        ("fraud-detection".into(), "mlflow-run-2".into()),
        vec!["4".into()],
    );
    w.cluster
        .put(finished(WorkloadKind::Job, &[("Complete", "True")]));
    w.stage().tick().await.expect("tick");
    assert_eq!(w.bus.events()[0].detail["model_version"], "4");
    assert_eq!(
        w.registry
            .registered
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the trainer's version is used"
    );

    // No MLflow run at all: the pipeline cannot go on; that is a failure with the reason.
    let w = Watch::new();
    w.cluster
        .put(finished(WorkloadKind::Job, &[("Complete", "True")]));
    w.stage().tick().await.expect("tick");
    let e = &w.bus.events()[0];
    assert_eq!(
        (
            e.detail_type.as_str(),
            e.detail["condition"]["reason"].as_str()
        ),
        ("TrainingJobFailed", Some("NoMlflowRun"))
    );
}

#[tokio::test]
async fn exactly_one_event_across_ticks_and_concurrent_watchers() {
    let w = Watch::new();
    w.registry
        .runs
        .lock()
        .expect("lock")
        .insert(RUN.into(), "r".into());
    w.cluster
        .put(finished(WorkloadKind::Job, &[("Complete", "True")]));
    let (a, b) = (w.stage(), w.stage());
    let (ra, rb) = tokio::join!(a.tick(), b.tick());
    assert_eq!(
        ra.expect("a").emitted.len() + rb.expect("b").emitted.len(),
        1
    );
    for _ in 0..3 {
        assert!(w.stage().tick().await.expect("tick").emitted.is_empty());
    }
    assert_eq!(w.types(), ["TrainingJobSucceeded"]);
}

#[tokio::test]
async fn a_failed_put_releases_the_claim_for_the_next_tick() {
    let w = Watch::new();
    w.registry
        .runs
        .lock()
        .expect("lock")
        .insert(RUN.into(), "r".into());
    w.cluster
        .put(finished(WorkloadKind::Job, &[("Failed", "True")]));
    w.bus.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let report = w.stage().tick().await.expect("tick");
    assert_eq!(report.errors.len(), 1);
    w.bus.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(w.stage().tick().await.expect("tick").emitted.len(), 1);
    assert_eq!(w.types(), ["TrainingJobFailed"]);
}

#[tokio::test]
async fn pending_pods_past_the_limit_stall_once() {
    let w = Watch::new();
    w.cluster.put(finished(WorkloadKind::Job, &[]));
    let pod = |age: i64| PendingPod {
        name: format!("{NAME}-abcde"),
        since: Utc::now() - chrono::Duration::seconds(age),
        reason: Some("Unschedulable".into()),
        message: Some("0/3 nodes are available: 3 Insufficient nvidia.com/gpu.".into()),
    };
    w.cluster.set_pending(NAME, vec![pod(60)]);
    assert!(
        w.stage().tick().await.expect("tick").emitted.is_empty(),
        "under the 30m stall_after"
    );
    w.cluster.set_pending(NAME, vec![pod(3600)]);
    w.stage().tick().await.expect("tick");
    w.stage().tick().await.expect("tick");
    assert_eq!(w.types(), ["TrainingJobStalled"]);
    let e = &w.bus.events()[0];
    assert_eq!(e.detail["condition"]["reason"], "Unschedulable");
    assert!(e.detail["pending_seconds"].as_u64().unwrap_or(0) >= 3600);
    // It can still finish later, and that is reported too.
    w.registry
        .runs
        .lock()
        .expect("lock")
        .insert(RUN.into(), "r".into());
    let mut done = w
        .cluster
        .state(WorkloadKind::Job, "training", NAME)
        .expect("state");
    done.conditions.push(Condition {
        type_: "Complete".into(),
        status: "True".into(),
        reason: None,
        message: None,
    });
    w.cluster.put(done);
    w.stage().tick().await.expect("tick");
    assert_eq!(w.types(), ["TrainingJobStalled", "TrainingJobSucceeded"]);
}

/// Issue 7, defect 11: names are DNS-1035 labels of at most 63 characters for any (model,
/// version), and distinct pairs never share a name.
#[test]
fn workload_names_are_valid_and_injective() {
    use crate::port::workload::{is_dns_label, workload_name};
    // The readable form, kept for what data-arrival produces.
    assert_eq!(
        workload_name("fraud-detector", "9c1e4b7a2d3f5e60"),
        "fraud-detector-9c1e4b7a2d3f5e60"
    );
    let long_model = "Fraud_Detection.With A Very Long Model Name That Goes On And On";
    let cases: Vec<(String, String)> = vec![
        ("fraud".into(), "v".repeat(61)),
        ("fraud".into(), "v".repeat(62)),
        ("fraud".into(), "v".repeat(80)),
        ("fraud".into(), "1".repeat(62)),
        ("fraud".into(), "---".into()),
        ("fraud".into(), "+++".into()),
        ("fraud".into(), "".into()),
        ("fraud".into(), "V1".into()),
        ("fraud".into(), "v1".into()),
        ("fraud-v1".into(), "".into()),
        ("fraud".into(), "v1-".into()),
        ("7up".into(), "v1".into()),
        ("".into(), "".into()),
        ("---".into(), "9c1e4b7a2d3f5e60".into()),
        (long_model.into(), "9c1e4b7a2d3f5e60".into()),
        (long_model.to_lowercase(), "9c1e4b7a2d3f5e61".into()),
        ("a".repeat(46), "9c1e4b7a2d3f5e60".into()),
        ("a".repeat(47), "9c1e4b7a2d3f5e60".into()),
        ("ünïcödé".into(), "9c1e4b7a2d3f5e60".into()),
        ("fraud".into(), "9C1E4B7A2D3F5E60".into()),
    ];
    let mut seen = std::collections::HashMap::new();
    for (model, version) in &cases {
        let name = workload_name(model, version);
        assert!(is_dns_label(&name), "{model:?}/{version:?} → {name:?}");
        assert_eq!(name, workload_name(model, version), "stable");
        if let Some(other) = seen.insert(name.clone(), (model, version)) {
            panic!("{other:?} and {:?} both named {name}", (model, version));
        }
    }
    // The model stays recognisable when the version is long (61 characters used to cut it to
    // one letter).
    assert!(workload_name("fraud", &"v".repeat(61)).starts_with("fraud-"));
    assert!(workload_name(long_model, "9c1e4b7a2d3f5e60").starts_with("fraud-detection-with"));
    // A pseudo-random sweep: 20k pairs built from a small alphabet that provokes collisions in
    // any cleaning-only scheme.
    let alphabet = ['a', 'A', '-', '_', '.', '1', ' '];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut names = std::collections::HashMap::new();
    for _ in 0..20_000 {
        let mut word = |max: u64| -> String {
            let n = next() % max;
            (0..n)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect()
        };
        let (model, version) = (word(8), word(8));
        let name = workload_name(&model, &version);
        assert!(is_dns_label(&name), "{model:?}/{version:?} → {name:?}");
        if let Some(other) = names.insert(name.clone(), (model.clone(), version.clone())) {
            assert_eq!(other, (model, version), "collision on {name}");
        }
    }
}

fn image_built() -> EventBridgeEvent<serde_json::Value> {
    serde_json::from_str(include_str!(
        "../../../events/samples/mlops/ImageBuilt.json"
    ))
    .expect("sample")
}

/// `ImageBuilt` → the latest ready version of the model's dataset, trained with the new image
/// by digest, under a name of its own; once.
#[tokio::test]
async fn a_built_image_retrains_the_latest_dataset_version_by_digest_once() {
    use crate::stage::latest::{self, Latest};
    let (p, cluster, bus, store) = (
        pipeline("job"),
        MemoryCluster::default(),
        MemoryBus::default(),
        MemoryStore::default(),
    );
    let s = TrainingSettings {
        artifact_bucket: Some("artifacts".into()),
        ..settings()
    };
    let stage = LaunchTraining {
        pipeline: &p,
        settings: &s,
        cluster: &cluster,
        bus: &bus,
        store: &store,
    };
    // No ready version yet: a permanent, named failure.
    let Launched::Failed(f) = stage.handle(&image_built()).await.expect("handled") else {
        panic!("not failed")
    };
    assert_eq!(f.condition.reason.as_deref(), Some("NoDataset"));
    assert!(
        f.condition
            .message
            .as_deref()
            .unwrap_or("")
            .contains("transactions"),
        "{:?}",
        f.condition
    );
    // Two versions arrive; the newer one is trained.
    let mut ready: crate::event::DatasetReady =
        serde_json::from_value(ready_event().detail).expect("detail");
    for (version, at) in [("1111111111111111", 100), ("9c1e4b7a2d3f5e60", 200)] {
        ready.version = version.into();
        ready.source.key = format!("incoming/transactions/{at}.csv");
        latest::advance(
            &store,
            "artifacts",
            "state/",
            &Latest {
                arrived_at: chrono::DateTime::from_timestamp(1_700_000_000 + at, 0).expect("t"),
                ready: ready.clone(),
            },
        )
        .await
        .expect("pointer");
    }
    let Launched::Submitted(sub) = stage.handle(&image_built()).await.expect("handled") else {
        panic!("not submitted")
    };
    let built = image_built().detail;
    let digest = built["digest"].as_str().expect("digest");
    let commit = built["commit"].as_str().expect("commit");
    assert_eq!(sub.dataset_version, "9c1e4b7a2d3f5e60");
    assert_eq!(sub.run_id, built["run_id"].as_str().expect("run"));
    assert_eq!(sub.git_commit.as_deref(), Some(commit));
    let image = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/fraud-trainer@{digest}");
    assert_eq!(sub.image.as_deref(), Some(image.as_str()));
    // Not the data run's name: both may exist side by side.
    assert_ne!(sub.workload.name, NAME);
    let applied = cluster.applied.lock().expect("lock").clone();
    assert_eq!(applied.len(), 1);
    let c = &applied[0].object["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], image.as_str());
    let env: Vec<(String, String)> = applied[0].env.clone();
    assert!(env.contains(&("MLOPS_GIT_COMMIT".into(), commit.into())));
    assert_eq!(
        applied[0].object["metadata"]["labels"]["mlops.dev/git-commit"],
        commit
    );
    // The same image again (a redelivery): nothing new.
    assert!(matches!(
        stage.handle(&image_built()).await.expect("handled"),
        Launched::Duplicate { .. }
    ));
    assert_eq!(cluster.applied.lock().expect("lock").len(), 1);
    // The data run of the same version still gets its own workload.
    let Launched::Submitted(data) = stage.handle(&ready_event()).await.expect("handled") else {
        panic!("not submitted")
    };
    assert_eq!(data.workload.name, NAME);
    assert!(data.image.is_none());
}
