//! The registry stage against a real MLflow 3.17 server (CONTRACTS §6.3, §11): MLflow itself
//! signs and delivers the webhooks (tests/mlflow_webhooks.py drives the registry and records
//! what arrives); the Rust verification accepts every real delivery and refuses each tampered
//! copy.

use std::process::Command;

use mlops::stage::registry::webhook::{Headers, Limits, Payload, Refusal, parse, verify};

use crate::harness::{root, venv_python};

#[test]
fn real_mlflow_deliveries_verify_and_tampered_copies_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = format!("s-{}", uuid::Uuid::new_v4());
    let out = Command::new(venv_python())
        .arg(root().join("tests/mlflow_webhooks.py"))
        .arg("--out")
        .arg(dir.path())
        .args(["--secret", &secret])
        .output()
        .expect("mlflow_webhooks.py runs");
    assert!(
        out.status.success(),
        "mlflow_webhooks.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut kinds = Vec::new();
    for n in 1..=4 {
        let path = dir.path().join(format!("{n}.json"));
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("delivery")).expect("json");
        let header = |h: &str| v["headers"][h].as_str().map(str::to_owned);
        let (id, ts, sig) = (
            header("X-MLflow-Delivery-Id"),
            header("X-MLflow-Timestamp"),
            header("X-MLflow-Signature"),
        );
        let body = v["body"].as_str().expect("body").as_bytes().to_vec();
        let h = Headers {
            delivery_id: id.as_deref(),
            timestamp: ts.as_deref(),
            signature: sig.as_deref(),
        };
        let now = chrono::Utc::now().timestamp();
        let limits = Limits::default();
        assert_eq!(
            verify(&[secret.as_bytes()], &h, &body, now, &limits),
            Ok(id.as_deref().unwrap_or_default()),
            "delivery {n}"
        );
        assert_eq!(
            verify(&[b"wrong-secret"], &h, &body, now, &limits),
            Err(Refusal::BadSignature)
        );
        let mut tampered = body.clone();
        let i = tampered.len() / 2;
        tampered[i] ^= 0x20;
        assert_eq!(
            verify(&[secret.as_bytes()], &h, &tampered, now, &limits),
            Err(Refusal::BadSignature)
        );
        assert!(matches!(
            verify(&[secret.as_bytes()], &h, &body, now + 301, &limits),
            Err(Refusal::Stale { .. })
        ));
        kinds.push(match parse(&body).expect("parse") {
            Payload::VersionCreated { .. } => "created",
            Payload::TagSet { .. } => "tag",
            Payload::AliasChanged {
                version: Some(_), ..
            } => "alias set",
            Payload::AliasChanged { version: None, .. } => "alias deleted",
            Payload::Other(o) => panic!("unexpected {o}"),
        });
    }
    assert_eq!(kinds, ["created", "tag", "alias set", "alias deleted"]);
}

mod gate {
    //! validate-model against a real MLflow server (versions, runs, aliases, tags read back)
    //! and moto S3 (claims, dataset manifests).

    use std::time::Duration;

    use mlops::adapter::memory::MemoryBus;
    use mlops::adapter::mlflow::MlflowRegistry;
    use mlops::adapter::s3::S3Store;
    use mlops::cli::dev::mlflow::{Mlflow, find_mlflow};
    use mlops::cli::dev::moto::find_moto;
    use mlops::config::{PipelineConfig, ValidateSettings};
    use mlops::event::{ModelVersionCreated, SCHEMA_VERSION, new_run_id};
    use mlops::port::{ModelRegistry, ObjectStore, Precondition};
    use mlops::stage::registry::poll::{PollSettings, RegistryPoller};
    use mlops::stage::registry::validate::{
        CHALLENGER, REPORT_TAG, STATUS_TAG, ValidateError, ValidateModel, Validated,
    };
    use serde_json::{Value, json};

    use crate::harness::{prefix, root, sdk};

    const CONFIG: &str = r#"
datasets:
  tx:
    prefix: raw/tx/
    format: csv
    model: fraud
models:
  fraud:
    validation:
      thresholds: {roc_auc: {min: 0.80}, f1: {min: 0.15}}
      max_regression: {roc_auc: 0.01}
      dataset: {min_train_rows: 100}
  plain: {}
"#;

    struct Registry {
        http: reqwest::Client,
        base: String,
        experiment: String,
    }

    impl Registry {
        async fn call(&self, path: &str, body: String) -> Value {
            let r = self
                .http
                .post(format!("{}/api/2.0/mlflow/{path}", self.base))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .expect("mlflow");
            let status = r.status();
            let v: Value = r.json().await.unwrap_or_default();
            assert!(status.is_success(), "{path}: {status} {v}");
            v
        }

        /// A run with these metrics (written as JSON text, so NaN can be sent as MLflow's
        /// Python client sends it) registered as a new version of `model`.
        async fn version(&self, model: &str, metrics: &[(&str, &str)], dataset: &str) -> String {
            let run = self
                .call(
                    "runs/create",
                    json!({"experiment_id": self.experiment}).to_string(),
                )
                .await["run"]["info"]["run_id"]
                .as_str()
                .expect("run id")
                .to_owned();
            for (k, v) in metrics {
                self.call(
                    "runs/log-metric",
                    format!(
                        r#"{{"run_id":"{run}","key":"{k}","value":{v},"timestamp":1,"step":0}}"#
                    ),
                )
                .await;
            }
            self.call(
                "runs/set-tag",
                json!({"run_id": run, "key": "mlops.dataset_version", "value": dataset})
                    .to_string(),
            )
            .await;
            let _ = self
                .http
                .post(format!(
                    "{}/api/2.0/mlflow/registered-models/create",
                    self.base
                ))
                .json(&json!({"name": model}))
                .send()
                .await;
            self.call(
                "model-versions/create",
                json!({"name": model, "source": format!("runs:/{run}/model"), "run_id": run})
                    .to_string(),
            )
            .await["model_version"]["version"]
                .as_str()
                .expect("version")
                .to_owned()
        }
    }

    fn created(model: &str, version: &str) -> ModelVersionCreated {
        ModelVersionCreated {
            schema_version: SCHEMA_VERSION.into(),
            run_id: new_run_id(),
            model: model.into(),
            version: version.into(),
            source: String::new(),
            mlflow_run_id: None,
            delivery_id: "test".into(),
        }
    }

    fn verdicts(v: &Validated) -> Vec<(String, String)> {
        let checks = match v {
            Validated::Passed(p) => &p.checks,
            Validated::Rejected(r) => &r.checks,
            other => panic!("no checks in {other:?}"),
        };
        checks
            .iter()
            .map(|c| (c.name.clone(), c.verdict.clone()))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_gate_against_a_real_registry() {
        let dir = tempfile::tempdir().expect("tmp");
        let mlflow = Mlflow::start(
            &find_mlflow(&find_moto(Some(&root()))),
            &dir.path().join("mlflow"),
        )
        .await
        .expect("mlflow starts");
        let http = reqwest::Client::new();
        let reg = Registry {
            experiment: http
                .post(format!(
                    "{}/api/2.0/mlflow/experiments/create",
                    mlflow.endpoint
                ))
                .json(&json!({"name": "fraud"}))
                .send()
                .await
                .expect("experiment")
                .json::<Value>()
                .await
                .expect("json")["experiment_id"]
                .as_str()
                .expect("id")
                .to_owned(),
            http,
            base: mlflow.endpoint.clone(),
        };
        let sdk = sdk().await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        let bucket = format!("{}art", prefix("gate")).to_lowercase();
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("bucket");
        let store = S3Store::new(s3);
        // The manifest of the dataset version the good runs trained on.
        store
            .put(
                &bucket,
                "processed/tx/d1/manifest.json",
                br#"{"counts": {"train": 800, "test": 200}}"#.to_vec(),
                Precondition::None,
            )
            .await
            .expect("manifest");
        let pipeline = PipelineConfig::from_yaml(CONFIG, "test").expect("config");
        let settings = ValidateSettings {
            pipeline_config: "unused".into(),
            event_bus: "unused".into(),
            mlflow_tracking_uri: mlflow.endpoint.clone(),
            artifact_bucket: bucket.clone(),
            processed_prefix: "processed/".into(),
            state_prefix: "state/".into(),
            claim_lease: Duration::from_secs(300),
        };
        let registry = MlflowRegistry::new(&mlflow.endpoint, |_| None).expect("registry");
        let bus = MemoryBus::default();
        let stage = ValidateModel {
            pipeline: &pipeline,
            settings: &settings,
            registry: &registry,
            bus: &bus,
            store: &store,
        };

        // 1. The first version: no champion, thresholds alone. Passes, moves `challenger`.
        let v1 = reg
            .version("fraud", &[("roc_auc", "0.90"), ("f1", "0.4")], "d1")
            .await;
        let out = stage
            .handle(&created("fraud", &v1))
            .await
            .expect("validate");
        assert!(matches!(out, Validated::Passed(_)), "{out:?}");
        assert!(!verdicts(&out).iter().any(|(n, _)| n.contains("champion")));
        let mv = registry
            .version("fraud", &v1)
            .await
            .expect("get")
            .expect("v1");
        assert_eq!(mv.tags.get(STATUS_TAG).map(String::as_str), Some("passed"));
        let report: Value =
            serde_json::from_str(mv.tags.get(REPORT_TAG).expect("report")).expect("json");
        assert_eq!(report["checks"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            registry.alias("fraud", CHALLENGER).await.expect("alias"),
            Some(v1.clone())
        );
        // A redelivery finds the verdict and emits nothing.
        assert_eq!(
            stage.handle(&created("fraud", &v1)).await.expect("again"),
            Validated::AlreadyDone("passed".into())
        );
        assert_eq!(bus.events().len(), 1);

        // 2. v1 becomes champion; v2 regresses beyond 0.01 while above the threshold.
        registry
            .set_alias("fraud", "champion", &v1)
            .await
            .expect("champion");
        let v2 = reg
            .version("fraud", &[("roc_auc", "0.885"), ("f1", "0.4")], "d1")
            .await;
        let out = stage
            .handle(&created("fraud", &v2))
            .await
            .expect("validate");
        match &out {
            Validated::Rejected(r) => {
                assert_eq!(r.champion_version.as_deref(), Some(v1.as_str()));
                assert!(r.reason.contains("roc_auc vs champion"), "{}", r.reason);
            }
            other => panic!("{other:?}"),
        }
        assert!(verdicts(&out).contains(&("roc_auc".into(), "pass".into())));
        let mv = registry
            .version("fraud", &v2)
            .await
            .expect("get")
            .expect("v2");
        assert_eq!(mv.tags.get(STATUS_TAG).map(String::as_str), Some("failed"));
        assert_eq!(
            registry.alias("fraud", CHALLENGER).await.expect("alias"),
            Some(v1.clone()),
            "a rejected version does not move the challenger"
        );

        // 3. NaN, +inf (MLflow stores it as f64::MAX) and missing metrics fail.
        for (metrics, failing) in [
            (vec![("roc_auc", "0.95"), ("f1", "NaN")], ("f1", "fail")),
            (
                vec![("roc_auc", "Infinity"), ("f1", "0.4")],
                ("roc_auc", "fail"),
            ),
            (vec![("roc_auc", "0.95")], ("f1", "missing")),
        ] {
            let v = reg.version("fraud", &metrics, "d1").await;
            let out = stage.handle(&created("fraud", &v)).await.expect("validate");
            assert!(
                matches!(out, Validated::Rejected(_)),
                "{metrics:?}: {out:?}"
            );
            assert!(
                verdicts(&out).contains(&(failing.0.into(), failing.1.into())),
                "{metrics:?}: {:?}",
                verdicts(&out)
            );
        }

        // 4. The dataset check needs the run's manifest.
        let v = reg
            .version(
                "fraud",
                &[("roc_auc", "0.95"), ("f1", "0.4")],
                "no-such-version",
            )
            .await;
        let out = stage.handle(&created("fraud", &v)).await.expect("validate");
        assert!(verdicts(&out).contains(&("dataset.train_rows".into(), "missing".into())));

        // 5. Concurrent deliveries of one version: one verdict, one event, one alias move.
        let v5 = reg
            .version("fraud", &[("roc_auc", "0.93"), ("f1", "0.5")], "d1")
            .await;
        let before = bus.events().len();
        let (e1, e2, e3) = (
            created("fraud", &v5),
            created("fraud", &v5),
            created("fraud", &v5),
        );
        let (a, b, c) = tokio::join!(stage.handle(&e1), stage.handle(&e2), stage.handle(&e3));
        let passed = [&a, &b, &c]
            .iter()
            .filter(|r| matches!(r, Ok(Validated::Passed(_))))
            .count();
        assert_eq!(passed, 1, "{a:?} {b:?} {c:?}");
        for r in [&a, &b, &c] {
            assert!(
                matches!(
                    r,
                    Ok(Validated::Passed(_) | Validated::AlreadyDone(_))
                        | Err(ValidateError::InProgress { .. })
                ),
                "{r:?}"
            );
        }
        assert_eq!(bus.events().len(), before + 1);
        assert_eq!(
            stage.handle(&created("fraud", &v5)).await.expect("later"),
            Validated::AlreadyDone("passed".into())
        );
        assert_eq!(
            registry.alias("fraud", CHALLENGER).await.expect("alias"),
            Some(v5.clone())
        );

        // 6. A model without a gate, and a version that does not exist.
        assert_eq!(
            stage.handle(&created("plain", "1")).await.expect("no gate"),
            Validated::NoGate
        );
        match stage
            .handle(&created("fraud", "999"))
            .await
            .expect("missing")
        {
            Validated::Rejected(r) => assert!(r.reason.contains("does not exist"), "{}", r.reason),
            other => panic!("{other:?}"),
        }

        // 7. The poller: every version once, across ticks and racing pollers.
        let poll_settings = PollSettings {
            pipeline_config: "unused".into(),
            event_bus: "unused".into(),
            mlflow_tracking_uri: mlflow.endpoint.clone(),
            artifact_bucket: bucket.clone(),
            state_prefix: "state/".into(),
            lookback: Duration::from_secs(3600),
            claim_lease: Duration::from_secs(300),
        };
        let poll_bus = MemoryBus::default();
        let poller = RegistryPoller {
            pipeline: &pipeline,
            settings: &poll_settings,
            registry: &registry,
            bus: &poll_bus,
            store: &store,
        };
        // MLflow unreachable: a transient error, nothing emitted, nothing marked.
        let down = MlflowRegistry::new("http://127.0.0.1:9", |_| None).expect("registry");
        let broken = RegistryPoller {
            pipeline: &pipeline,
            settings: &poll_settings,
            registry: &down,
            bus: &poll_bus,
            store: &store,
        };
        assert!(broken.tick().await.is_err());
        assert!(poll_bus.events().is_empty());
        let first = poller.tick().await.expect("tick");
        let fraud_versions = first.emitted.iter().filter(|e| e.0 == "fraud").count();
        assert_eq!(fraud_versions, 7, "{first:?}");
        assert_eq!(poll_bus.events().len(), first.emitted.len());
        assert!(poll_bus.events().iter().all(|e| {
            e.source == "mlops.registry-poller" && e.detail_type == "ModelVersionCreated"
        }));
        let again = poller.tick().await.expect("tick");
        assert!(again.emitted.is_empty(), "{again:?}");
        // A version created between ticks, seen by two pollers at once: one event.
        let v9 = reg
            .version("fraud", &[("roc_auc", "0.93"), ("f1", "0.5")], "d1")
            .await;
        let (a, b) = tokio::join!(poller.tick(), poller.tick());
        let emitted: Vec<_> = a
            .expect("a")
            .emitted
            .into_iter()
            .chain(b.expect("b").emitted)
            .collect();
        assert_eq!(emitted.len(), 1, "{emitted:?}");
        assert_eq!(emitted[0].1, v9);
        assert_eq!(poll_bus.events().len(), first.emitted.len() + 1);

        // 8. `mlops validate`: the same gate from the command line, read-only unless --record.
        let config = dir.path().join("pipeline.yaml");
        std::fs::write(&config, CONFIG).expect("config");
        let validate = |version: &str, record: bool| {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_mlops"));
            c.args(["validate", "--model", "fraud", "--version", version])
                .arg("--config")
                .arg(&config)
                .args(["--tracking-uri", &mlflow.endpoint])
                .env_remove("MLOPS_ARTIFACT_BUCKET");
            if record {
                c.arg("--record");
            }
            let out = c.output().expect("mlops validate");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (code, table, err) = validate(&v2, false);
        assert_eq!(code, Some(1), "{table}{err}");
        assert!(
            table.contains("roc_auc vs champion") && table.contains("fail"),
            "{table}"
        );
        assert!(err.contains("did not pass"), "{err}");
        // Without --bucket the dataset check reports the manifest missing.
        let (code, table, _) = validate(&v9, false);
        assert_eq!(code, Some(1), "{table}");
        assert!(table.contains("dataset.train_rows"), "{table}");
        let untouched = registry
            .version("fraud", &v9)
            .await
            .expect("get")
            .expect("v9");
        assert!(
            !untouched.tags.contains_key(STATUS_TAG),
            "read-only without --record"
        );
        let (code, _, _) = validate(&v9, true);
        assert_eq!(code, Some(1));
        let recorded = registry
            .version("fraud", &v9)
            .await
            .expect("get")
            .expect("v9");
        assert_eq!(
            recorded.tags.get(STATUS_TAG).map(String::as_str),
            Some("failed")
        );
        // Without dataset checks in the gate, v5 passes against champion v1: exit 0.
        std::fs::write(
            &config,
            CONFIG.replace("      dataset: {min_train_rows: 100}\n", ""),
        )
        .expect("config");
        let (code, table, err) = validate(&v5, false);
        assert_eq!(code, Some(0), "{table}{err}");
        assert!(table.contains(&format!("champion v{v1}")), "{table}");
        let (code, _, err) = {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_mlops"))
                .args(["validate", "--model", "plain", "--version", "1"])
                .arg("--config")
                .arg(&config)
                .args(["--tracking-uri", &mlflow.endpoint])
                .output()
                .expect("mlops validate");
            (
                out.status.code(),
                (),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        assert_eq!(code, Some(1));
        assert!(
            err.contains("no validation block") && err.contains("fraud"),
            "{err}"
        );
    }
}

mod receiver {
    //! mlflow-webhook end to end: MLflow itself delivers signed webhooks to the handler served
    //! on loopback; the event feeds validate-model; hostile requests get their status codes and
    //! emit nothing.

    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use mlops::adapter::memory::{MemoryBus, MemoryStore};
    use mlops::adapter::mlflow::MlflowRegistry;
    use mlops::cli::dev::mlflow::{Mlflow, find_mlflow};
    use mlops::cli::dev::moto::find_moto;
    use mlops::cli::dev::webhook::{StaticSecret, serve};
    use mlops::config::{PipelineConfig, ValidateSettings};
    use mlops::error::BoxError;
    use mlops::event::ModelVersionCreated;
    use mlops::port::ModelRegistry;
    use mlops::stage::registry::receive::{ReceiverSettings, SecretSource, WebhookReceiver};
    use mlops::stage::registry::validate::{STATUS_TAG, ValidateModel, Validated};
    use mlops::stage::registry::webhook::{Headers, Limits, sign};
    use serde_json::{Value, json};

    use crate::harness::root;

    const CONFIG: &str = r#"
datasets:
  tx: {prefix: raw/tx/, format: csv, model: fraud}
models:
  fraud:
    validation:
      thresholds: {roc_auc: {min: 0.80}}
"#;

    fn settings(refresh: Duration) -> ReceiverSettings {
        ReceiverSettings {
            artifact_bucket: "artifacts".into(),
            state_prefix: "state/".into(),
            limits: Limits::default(),
            secret_refresh: refresh,
            claim_lease: Duration::from_secs(60),
        }
    }

    async fn post(url: &str, body: &[u8], headers: &[(&str, String)]) -> (u16, String) {
        let mut req = reqwest::Client::new()
            .post(url)
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let r = req.send().await.expect("post");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    fn signed(secret: &[u8], id: &str, ts: i64, body: &[u8]) -> Vec<(&'static str, String)> {
        vec![
            ("X-MLflow-Delivery-Id", id.to_owned()),
            ("X-MLflow-Timestamp", ts.to_string()),
            (
                "X-MLflow-Signature",
                sign(secret, id, &ts.to_string(), body),
            ),
        ]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn mlflow_delivers_to_the_handler_and_hostile_requests_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let mlflow = Mlflow::start(
            &find_mlflow(&find_moto(Some(&root()))),
            &dir.path().join("mlflow"),
        )
        .await
        .expect("mlflow starts");
        let secret = format!("whsec-{}", uuid::Uuid::new_v4());
        let pipeline = PipelineConfig::from_yaml(CONFIG, "test").expect("config");
        let receiver = Arc::new(WebhookReceiver::new(
            pipeline.clone(),
            settings(Duration::from_secs(60)),
            StaticSecret(secret.clone().into_bytes()),
            MlflowRegistry::new(&mlflow.endpoint, |_| None).expect("registry"),
            MemoryBus::default(),
            MemoryStore::default(),
        ));
        let bus = &receiver.bus;
        receiver.load_secret().await.expect("secret");
        let (addr, server) = serve(receiver.clone()).await.expect("serve");
        let url = format!("http://{addr}/webhook");
        let api = |p: &str| format!("{}/api/2.0/mlflow/{p}", mlflow.endpoint);
        let http = reqwest::Client::new();
        let call = |path: &'static str, body: Value| {
            let http = http.clone();
            let url = api(path);
            async move {
                let r = http.post(url).json(&body).send().await.expect("mlflow");
                assert!(r.status().is_success(), "{path}: {}", r.status());
                r.json::<Value>().await.unwrap_or_default()
            }
        };
        call(
            "webhooks",
            json!({
                "name": "mlops",
                "url": url,
                "events": [
                    {"entity": "MODEL_VERSION", "action": "CREATED"},
                    {"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"},
                ],
                "secret": secret,
            }),
        )
        .await;
        let exp = call("experiments/create", json!({"name": "fraud"})).await["experiment_id"]
            .as_str()
            .expect("id")
            .to_owned();
        let run = call("runs/create", json!({"experiment_id": exp})).await["run"]["info"]["run_id"]
            .as_str()
            .expect("run")
            .to_owned();
        call(
            "runs/log-metric",
            json!({"run_id": run, "key": "roc_auc", "value": 0.9, "timestamp": 1, "step": 0}),
        )
        .await;
        call(
            "runs/set-tag",
            json!({"run_id": run, "key": "mlops.run_id", "value": "run-e2e-1"}),
        )
        .await;
        call("registered-models/create", json!({"name": "fraud"})).await;
        call(
            "model-versions/create",
            json!({"name": "fraud", "source": format!("runs:/{run}/model"), "run_id": run}),
        )
        .await;
        // MLflow delivers asynchronously.
        let deadline = Instant::now() + Duration::from_secs(30);
        let created = loop {
            if let Some(e) = bus
                .events()
                .into_iter()
                .find(|e| e.detail_type == "ModelVersionCreated")
            {
                break e;
            }
            assert!(
                Instant::now() < deadline,
                "no delivery arrived; see {}",
                mlflow.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(created.source, "mlops.mlflow-webhook");
        let detail: ModelVersionCreated =
            serde_json::from_value(created.detail.clone()).expect("detail");
        assert_eq!(
            (detail.model.as_str(), detail.version.as_str()),
            ("fraud", "1")
        );
        assert_eq!(
            detail.run_id, "run-e2e-1",
            "run id from the MLflow run's tag"
        );

        // The event carries the pipeline on: validate-model judges the version.
        let vsettings = ValidateSettings {
            pipeline_config: "unused".into(),
            event_bus: "unused".into(),
            mlflow_tracking_uri: mlflow.endpoint.clone(),
            artifact_bucket: "artifacts".into(),
            processed_prefix: "processed/".into(),
            state_prefix: "state/".into(),
            claim_lease: Duration::from_secs(60),
        };
        let registry = MlflowRegistry::new(&mlflow.endpoint, |_| None).expect("registry");
        let vbus = MemoryBus::default();
        let store = MemoryStore::default();
        let out = ValidateModel {
            pipeline: &pipeline,
            settings: &vsettings,
            registry: &registry,
            bus: &vbus,
            store: &store,
        }
        .handle(&detail)
        .await
        .expect("validate");
        assert!(matches!(out, Validated::Passed(_)), "{out:?}");
        let v = registry
            .version("fraud", "1")
            .await
            .expect("get")
            .expect("v1");
        assert_eq!(v.tags.get(STATUS_TAG).map(String::as_str), Some("passed"));
        // Setting challenger is itself delivered (MODEL_VERSION_ALIAS CREATED).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !bus
            .events()
            .iter()
            .any(|e| e.detail_type == "ModelVersionAliasChanged")
        {
            assert!(Instant::now() < deadline, "no alias delivery");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Hostile requests: each refused with its status, nothing emitted.
        let before = bus.events().len();
        let now = chrono::Utc::now().timestamp();
        let body = br#"{"entity":"model_version","action":"created","timestamp":"x","data":{"name":"fraud","version":"7","source":"s3://b/m","run_id":"","tags":{}}}"#;
        let key = secret.as_bytes();
        type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, String)>, u16);
        let cases: Vec<Case> = vec![
            ("unsigned", body.to_vec(), vec![], 401),
            (
                "wrong secret",
                body.to_vec(),
                signed(b"not-the-secret", "d-1", now, body),
                401,
            ),
            (
                "stale",
                body.to_vec(),
                signed(key, "d-2", now - 3600, body),
                401,
            ),
            (
                "future",
                body.to_vec(),
                signed(key, "d-3", now + 3600, body),
                401,
            ),
            (
                "tampered",
                body.iter()
                    .map(|b| if *b == b'7' { b'8' } else { *b })
                    .collect(),
                signed(key, "d-4", now, body),
                401,
            ),
            (
                "not JSON",
                b"not json".to_vec(),
                signed(key, "d-5", now, b"not json"),
                400,
            ),
            (
                "oversized",
                vec![b' '; Limits::default().max_body + 1],
                vec![],
                413,
            ),
        ];
        for (name, b, h, want) in cases {
            let (status, text) = post(&url, &b, &h).await;
            assert_eq!(status, want, "{name}: {text}");
        }
        let unknown_model = String::from_utf8_lossy(body).replace("\"fraud\"", "\"other\"");
        let (status, _) = post(
            &url,
            unknown_model.as_bytes(),
            &signed(key, "d-6", now, unknown_model.as_bytes()),
        )
        .await;
        assert_eq!(status, 202, "a model the pipeline does not have");
        assert_eq!(
            bus.events().len(),
            before,
            "nothing emitted for any of them"
        );

        // A replayed delivery (same id) is processed once.
        let h = signed(key, "d-7", now, body);
        assert_eq!(post(&url, body, &h).await.0, 202);
        assert_eq!(post(&url, body, &h).await.0, 200);
        assert_eq!(bus.events().len(), before + 1);
        server.abort();
    }

    /// A secret source that can be rotated and counts its reads.
    struct Rotating(Mutex<(Vec<u8>, u32)>);

    impl SecretSource for Rotating {
        async fn secrets(&self) -> Result<Vec<Vec<u8>>, BoxError> {
            let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
            g.1 += 1;
            Ok(vec![g.0.clone()])
        }
    }

    #[tokio::test]
    async fn a_rotated_secret_is_picked_up_at_most_once_a_minute() {
        let pipeline = PipelineConfig::from_yaml(CONFIG, "test").expect("config");
        let body = br#"{"entity":"registered_model","action":"created","data":{"name":"fraud"}}"#;
        let now = chrono::Utc::now().timestamp();
        let delivery = |secret: &[u8], id: &str| {
            let ts = now.to_string();
            (id.to_owned(), ts.clone(), sign(secret, id, &ts, body))
        };
        for (refresh, picked_up) in [(Duration::ZERO, true), (Duration::from_secs(60), false)] {
            let r = WebhookReceiver::new(
                pipeline.clone(),
                settings(refresh),
                Rotating(Mutex::new((b"old".to_vec(), 0))),
                MlflowRegistry::new("http://127.0.0.1:9", |_| None).expect("registry"),
                MemoryBus::default(),
                MemoryStore::default(),
            );
            r.load_secret().await.expect("load");
            let (id, ts, sig) = delivery(b"old", "a");
            let h = Headers {
                delivery_id: Some(&id),
                timestamp: Some(&ts),
                signature: Some(&sig),
            };
            assert_eq!(r.receive(&h, body, now).await.status, 202);
            r.secrets.source.0.lock().expect("lock").0 = b"new".to_vec();
            let (id, ts, sig) = delivery(b"new", "b");
            let h = Headers {
                delivery_id: Some(&id),
                timestamp: Some(&ts),
                signature: Some(&sig),
            };
            let status = r.receive(&h, body, now).await.status;
            assert_eq!(status == 202, picked_up, "refresh {refresh:?}: {status}");
            // Bad signatures never re-read faster than the refresh interval.
            let reads = r.secrets.source.0.lock().expect("lock").1;
            assert_eq!(reads, if picked_up { 2 } else { 1 }, "refresh {refresh:?}");
        }
    }
}

mod secret {
    //! The webhook secret from Secrets Manager (moto): the current value, and the previous one
    //! after a rotation, so deliveries signed with either verify during the switch.

    use mlops::adapter::secrets::SecretsManagerSecret;
    use mlops::stage::registry::receive::SecretSource;

    use crate::harness::{prefix, sdk};

    #[tokio::test]
    async fn current_and_previous_values() {
        let sdk = sdk().await;
        let sm = aws_sdk_secretsmanager::Client::new(&sdk);
        let name = format!("{}mlflow-webhook-secret", prefix("secret"));
        let arn = sm
            .create_secret()
            .name(&name)
            .secret_string("first")
            .send()
            .await
            .expect("create")
            .arn()
            .expect("arn")
            .to_owned();
        let source = SecretsManagerSecret::new(sm.clone(), &arn);
        assert_eq!(
            source.secrets().await.expect("read"),
            vec![b"first".to_vec()]
        );
        sm.put_secret_value()
            .secret_id(&arn)
            .secret_string("second")
            .send()
            .await
            .expect("rotate");
        assert_eq!(
            source.secrets().await.expect("read"),
            vec![b"second".to_vec(), b"first".to_vec()]
        );
        let missing = SecretsManagerSecret::new(sm, &format!("{name}-missing"));
        let e = missing.secrets().await.expect_err("no such secret");
        assert!(e.to_string().contains("AWSCURRENT"), "{e}");
    }
}
