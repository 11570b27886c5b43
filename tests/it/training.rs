//! The training stage against real tools: every rendered manifest through kubernetes-validate
//! (Kubernetes 1.30 and 1.37) plus the semantic rules a schema cannot express; the EKS token's
//! structure and signature (cross-checked with botocore's SigV4); DescribeCluster against moto;
//! and the local executor training the sample against a real MLflow server.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use mlops::adapter::local_exec::LocalCluster;
use mlops::adapter::memory::MemoryBus;
use mlops::adapter::mlflow::MlflowRegistry;
use mlops::cli::dev::mlflow::{Mlflow, find_mlflow};
use mlops::cli::dev::moto::find_moto;
use mlops::config::{PipelineConfig, TrainingSettings, WorkloadKind};
use mlops::event::DatasetReady;
use mlops::port::{Cluster, Registry};
use mlops::stage::training::launch::plan;
use mlops::stage::training::watch::TrainingWatch;
use serde_json::Value;

use crate::harness::{root, sdk, venv_python};

fn settings(mlflow: &str) -> TrainingSettings {
    TrainingSettings {
        pipeline_config: "pipeline.yaml".into(),
        event_bus: "mlops".into(),
        mlflow_tracking_uri: mlflow.into(),
        cluster_name: "ml-prod".into(),
        training_namespace: "training".into(),
        stall_after: Duration::from_secs(1800),
        build_namespace: "builds".into(),
        artifact_bucket: None,
        state_prefix: "state/".into(),
    }
}

fn sample_ready() -> DatasetReady {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("events/samples/mlops/DatasetReady.json"))
            .expect("sample"),
    )
    .expect("json");
    serde_json::from_value(v["detail"].clone()).expect("detail")
}

/// The sample pipeline with the model's training section varied.
fn variant(kind: &str, gpu: u32, capacity: &str) -> PipelineConfig {
    let mut p = PipelineConfig::load(&root().join("samples/pipeline.yaml")).expect("pipeline");
    let t = p
        .models
        .get_mut("fraud-detection")
        .and_then(|m| m.training.as_mut())
        .expect("training");
    t.kind = match kind {
        "job" => WorkloadKind::Job,
        "pytorchjob" => WorkloadKind::PyTorchJob,
        _ => WorkloadKind::TrainJob,
    };
    t.resources.gpu = gpu;
    t.workers = 2;
    t.node_selector
        .insert("karpenter.sh/capacity-type".into(), capacity.into());
    if gpu == 0 {
        t.node_selector.remove("node.kubernetes.io/instance-type");
    }
    p
}

/// Rules the OpenAPI schema cannot check (kubernetes-validate accepts all of these broken).
fn semantic_checks(kind: &str, gpu: u32, m: &Value) {
    let name = m["metadata"]["name"].as_str().expect("name");
    assert!(name.len() <= 63, "{name}: longer than 63");
    assert!(
        name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.ends_with('-'),
        "{name}: not RFC 1035"
    );
    for (k, v) in m["metadata"]["labels"].as_object().expect("labels") {
        let v = v.as_str().expect("label value");
        assert!(
            v.len() <= 63
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "label {k}={v}"
        );
    }
    let pods: Vec<&Value> = match kind {
        "job" => {
            let spec = &m["spec"];
            assert!(
                spec["activeDeadlineSeconds"]
                    .as_i64()
                    .is_some_and(|d| d > 0),
                "activeDeadlineSeconds always set"
            );
            assert!(spec["backoffLimit"].is_i64() && spec["ttlSecondsAfterFinished"].is_i64());
            assert_eq!(
                spec["podReplacementPolicy"], "Failed",
                "required with podFailurePolicy"
            );
            let rule = &spec["podFailurePolicy"]["rules"][0];
            assert_eq!(
                (
                    rule["action"].as_str(),
                    rule["onPodConditions"][0]["type"].as_str()
                ),
                (Some("Ignore"), Some("DisruptionTarget"))
            );
            assert_eq!(
                rule["onPodConditions"][0]["status"], "True",
                "pod-condition status must be \"True\" (1.29–1.34 require it)"
            );
            assert_eq!(
                spec["template"]["spec"]["restartPolicy"], "Never",
                "podFailurePolicy needs restartPolicy Never"
            );
            vec![&spec["template"]]
        }
        "pytorchjob" => {
            let specs = m["spec"]["pytorchReplicaSpecs"]
                .as_object()
                .expect("replica specs");
            assert!(
                m["spec"]["runPolicy"]["activeDeadlineSeconds"]
                    .as_i64()
                    .is_some_and(|d| d > 0)
            );
            for (role, r) in specs {
                assert!(["Master", "Worker"].contains(&role.as_str()));
                assert!(matches!(
                    r["restartPolicy"].as_str(),
                    Some("OnFailure" | "Never" | "ExitCode" | "Always")
                ));
                assert_eq!(
                    r["template"]["spec"]["containers"][0]["name"], "pytorch",
                    "the operator needs the container named pytorch"
                );
            }
            specs.values().map(|r| &r["template"]).collect()
        }
        _ => {
            assert!(
                m["spec"]["activeDeadlineSeconds"]
                    .as_i64()
                    .is_some_and(|d| d > 0)
            );
            assert!(
                m["spec"]["runtimeRef"]["name"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty())
            );
            let res = &m["spec"]["trainer"]["resourcesPerNode"];
            check_gpu(gpu, res);
            vec![
                &m["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
                    [0]["template"]["spec"]["template"],
            ]
        }
    };
    for pod in pods {
        let spec = &pod["spec"];
        if kind != "trainjob" {
            check_gpu(gpu, &spec["containers"][0]["resources"]);
            let env: Vec<&str> = spec["containers"][0]["env"]
                .as_array()
                .expect("env")
                .iter()
                .filter_map(|e| e["name"].as_str())
                .collect();
            for var in [
                "MLOPS_RUN_ID",
                "MLFLOW_TRACKING_URI",
                "MLFLOW_EXPERIMENT_NAME",
                "MODEL_NAME",
                "TRAIN_URI",
                "TEST_URI",
                "DATASET_VERSION",
            ] {
                assert!(env.contains(&var), "trainer env lacks {var}");
            }
        }
        let tolerates = spec["tolerations"].as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t["key"] == "nvidia.com/gpu" && t["effect"] == "NoSchedule")
        });
        assert_eq!(
            tolerates,
            gpu > 0,
            "GPU toleration exactly when GPUs are requested"
        );
        assert_eq!(
            pod["metadata"]["labels"]["mlops.dev/workload"], name,
            "pods carry the workload label the watcher selects by"
        );
    }
}

fn check_gpu(gpu: u32, resources: &Value) {
    let q = &resources["limits"]["nvidia.com/gpu"];
    if gpu == 0 {
        assert!(q.is_null());
    } else {
        let s = q.as_str().expect("quantity is a string");
        assert_eq!(
            s.parse::<u32>().ok(),
            Some(gpu),
            "GPU quantity must be a whole number: {s}"
        );
        assert!(
            resources["requests"]["nvidia.com/gpu"].is_null()
                || resources["requests"]["nvidia.com/gpu"] == *q
        );
    }
}

fn validate(files: &[std::path::PathBuf]) -> std::process::Output {
    Command::new(venv_python())
        .arg(root().join("tests/k8s_validate.py"))
        .args(["--k8s", "1.30.0", "--k8s", "1.37.0"])
        .args(files)
        .output()
        .expect("k8s_validate runs")
}

#[test]
fn every_rendered_manifest_validates_for_1_30_and_1_37() {
    let dir = tempfile::tempdir().expect("tmp");
    let ready = sample_ready();
    let mut files = Vec::new();
    for kind in ["job", "pytorchjob", "trainjob"] {
        for gpu in [0, 1, 4] {
            for capacity in ["spot", "on-demand"] {
                let p = variant(kind, gpu, capacity);
                let (_, _, w) =
                    plan(&p, &settings("http://mlflow:5000"), &ready, None).expect("plan");
                semantic_checks(kind, gpu, &w.object);
                let f = dir.path().join(format!("{kind}-{gpu}-{capacity}.json"));
                std::fs::write(&f, serde_json::to_vec_pretty(&w.object).expect("json"))
                    .expect("write");
                files.push(f);
            }
        }
    }
    let out = validate(&files);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubernetes-validate failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("OK")).count(),
        files.len() * 2,
        "{stdout}"
    );

    // The validator can fail: a broken Job is refused.
    let mut broken: Value =
        serde_json::from_slice(&std::fs::read(&files[0]).expect("read")).expect("json");
    broken["spec"]["template"]["spec"]["containers"][0]["resourcez"] = serde_json::json!({});
    let bad = dir.path().join("broken.json");
    std::fs::write(&bad, serde_json::to_vec(&broken).expect("json")).expect("write");
    assert!(
        !validate(&[bad]).status.success(),
        "the validator accepted an unknown field"
    );
}

#[test]
fn eks_token_is_a_presigned_get_caller_identity() {
    use aws_credential_types::Credentials;
    use base64::Engine;
    let creds = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("FQoGZXIvYXdzEXAMPLETOKEN".into()),
        None,
        "test",
    );
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_924_800); // 2026-11-29T04:00:00Z
    let token = mlops::adapter::eks::token(&creds, "us-east-1", "ml-prod", at).expect("token");
    assert_eq!(
        token,
        mlops::adapter::eks::token(&creds, "us-east-1", "ml-prod", at).expect("again"),
        "deterministic"
    );
    assert!(token.len() <= 4096);
    let b64 = token.strip_prefix("k8s-aws-v1.").expect("prefix");
    assert!(
        !b64.contains('=') && !b64.contains('+') && !b64.contains('/'),
        "base64url without padding"
    );
    let url = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64)
            .expect("base64url"),
    )
    .expect("utf8");
    let (base, query) = url.split_once('?').expect("query");
    assert_eq!(base, "https://sts.us-east-1.amazonaws.com/");
    let params: std::collections::BTreeMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let allowed = [
        "Action",
        "Version",
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
        "X-Amz-SignedHeaders",
    ];
    for k in params.keys() {
        assert!(
            allowed.contains(k),
            "{k} is not allow-listed by the authenticator"
        );
    }
    assert_eq!(params.len(), allowed.len(), "{params:?}");
    assert_eq!(params["Action"], "GetCallerIdentity");
    assert_eq!(params["X-Amz-SignedHeaders"], "host%3Bx-k8s-aws-id");
    assert_eq!(params["X-Amz-Date"], "20261129T040000Z");
    assert_eq!(params["X-Amz-Expires"], "60");
    assert_eq!(
        params["X-Amz-Credential"],
        "AKIDEXAMPLE%2F20261129%2Fus-east-1%2Fsts%2Faws4_request"
    );
    let sig = params["X-Amz-Signature"];
    assert!(sig.len() == 64 && sig.chars().all(|c| c.is_ascii_hexdigit()));
    let other =
        mlops::adapter::eks::token(&creds, "us-east-1", "other-cluster", at).expect("other");
    assert_ne!(other, token, "the cluster name is signed");

    // An independent SigV4 implementation (botocore, as `aws eks get-token` uses) signs the same
    // request to the same signature.
    let script = r#"
import datetime, sys
from unittest import mock
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
req = AWSRequest(method="GET", url="https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", headers={"x-k8s-aws-id": "ml-prod"})
creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "FQoGZXIvYXdzEXAMPLETOKEN")
fixed = datetime.datetime(2026, 11, 29, 4, 0, 0)
with mock.patch("botocore.auth.get_current_datetime", return_value=fixed, create=True), mock.patch("botocore.auth.datetime") as dt:
    dt.datetime.utcnow.return_value = fixed
    dt.datetime.now.return_value = fixed
    dt.timedelta = datetime.timedelta
    SigV4QueryAuth(creds, "sts", "us-east-1", expires=60).add_auth(req)
from urllib.parse import urlparse, parse_qs
print(parse_qs(urlparse(req.url).query)["X-Amz-Signature"][0])
"#;
    let out = Command::new(venv_python())
        .args(["-c", script])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        sig,
        "botocore disagrees with our signature"
    );
}

#[tokio::test]
async fn describe_cluster_against_moto() {
    let sdk = sdk().await;
    let eks = aws_sdk_eks::Client::new(&sdk);
    let name = crate::harness::prefix("eks")
        .trim_end_matches('-')
        .to_owned();
    eks.create_cluster()
        .name(&name)
        .role_arn("arn:aws:iam::123456789012:role/eks")
        .resources_vpc_config(
            aws_sdk_eks::types::VpcConfigRequest::builder()
                .subnet_ids("subnet-1")
                .build(),
        )
        .send()
        .await
        .expect("create");
    let (endpoint, ca) = mlops::adapter::eks::describe(&eks, &name)
        .await
        .expect("describe");
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    assert!(!ca.is_empty());
    let kc =
        mlops::adapter::eks::kubeconfig(&name, &endpoint, &ca, "k8s-aws-v1.x").expect("kubeconfig");
    assert_eq!(
        kc.clusters[0]
            .cluster
            .as_ref()
            .and_then(|c| c.server.clone()),
        Some(endpoint)
    );
    let missing = mlops::adapter::eks::describe(&eks, "no-such-cluster")
        .await
        .expect_err("missing");
    assert_eq!(
        mlops::error::Classify::class(&missing),
        mlops::error::ErrorClass::Permanent,
        "{missing}"
    );
}

#[tokio::test]
async fn local_executor_trains_the_sample_into_mlflow() {
    let dir = tempfile::tempdir().expect("tmp");
    let mlflow = Mlflow::start(
        &find_mlflow(&find_moto(Some(&root()))),
        &dir.path().join("mlflow"),
    )
    .await
    .expect("mlflow starts");
    // The sample prepared locally, as data-arrival would.
    let p = PipelineConfig::load(&root().join("samples/pipeline.yaml")).expect("pipeline");
    let prepared = mlops::stage::prepare::prepare_file(
        &p.datasets["transactions"],
        &root().join("samples/data/transactions.csv"),
        &dir.path().join("data"),
        &Default::default(),
    )
    .expect("prepare");
    let mut ready = sample_ready();
    ready.run_id = format!("run-local-{}", std::process::id());
    ready.train_uri = prepared.train.display().to_string();
    ready.test_uri = prepared.test.display().to_string();
    ready.version = prepared.version.clone();
    let s = settings(&mlflow.endpoint);
    let (_, _, w) = plan(&p, &s, &ready, None).expect("plan");
    let python = venv_python();
    // The trainer registers nothing here, so the watcher's own registration runs against MLflow.
    let env = vec![
        ("MLFLOW_DISABLE_TELEMETRY".into(), "true".into()),
        ("MLOPS_SKIP_REGISTER".into(), "1".into()),
    ];
    let cluster = LocalCluster::new(&p, root(), python, env, dir.path().join("logs"));
    cluster.apply(&w).await.expect("apply");
    cluster.apply(&w).await.expect("a second apply is a no-op");

    let registry = MlflowRegistry::new(&mlflow.endpoint, |_| None).expect("registry");
    let bus = MemoryBus::default();
    let watch = TrainingWatch {
        pipeline: &p,
        settings: &s,
        cluster: &cluster,
        registry: &registry,
        bus: &bus,
        claim_lease: Duration::from_secs(300),
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    let event = loop {
        let report = watch.tick().await.expect("tick");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        if let Some(e) = report.emitted.first() {
            break e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "training did not finish; log in {}",
            dir.path().join("logs").display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let log = std::fs::read_to_string(dir.path().join("logs").join(format!("{}.log", w.name)))
        .unwrap_or_default();
    assert_eq!(
        event.detail_type, "TrainingJobSucceeded",
        "{}\n{log}",
        event.detail
    );
    let version = event.detail["model_version"]
        .as_str()
        .expect("version")
        .to_owned();
    let mlflow_run = event.detail["mlflow_run_id"]
        .as_str()
        .expect("run")
        .to_owned();
    let versions = registry
        .versions_of_run("fraud-detection", &mlflow_run)
        .await
        .expect("versions");
    assert!(versions.contains(&version), "{versions:?} lacks {version}");
    let tracked = registry
        .find_run("fraud-detection", &ready.run_id)
        .await
        .expect("find")
        .expect("tagged run");
    assert_eq!(tracked.run_id, mlflow_run);
    // Registered from the run's logged model (MLflow 3 keeps it under models:/m-…), and ready.
    let url = format!(
        "{}/api/2.0/mlflow/model-versions/get?name=fraud-detection&version={version}",
        mlflow.endpoint
    );
    let got: Value = reqwest::get(url)
        .await
        .expect("get version")
        .json()
        .await
        .expect("json");
    assert!(
        log.contains("MLOPS_SKIP_REGISTER is set"),
        "the trainer registered itself:\n{log}"
    );
    let mv = &got["model_version"];
    assert_eq!(mv["status"], "READY", "{got}");
    assert_eq!(mv["run_id"], mlflow_run.as_str());
    let model_id = tracked.model_id.expect("the run logged a model");
    assert_eq!(mv["source"], format!("models:/{model_id}"), "{got}");
    let tags = mv["tags"].as_array().cloned().unwrap_or_default();
    assert!(
        tags.iter()
            .any(|t| t["key"] == "mlops.run_id" && t["value"] == ready.run_id.as_str()),
        "{got}"
    );
    // Another tick reports nothing new.
    assert!(watch.tick().await.expect("tick").emitted.is_empty());
    let _ = Path::new(&mlflow.log);
}
