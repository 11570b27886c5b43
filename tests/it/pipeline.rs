//! data-arrival and ledger against moto: a real PutObject → moto's S3-to-EventBridge notification
//! → the rule from routes.json → SQS → the handler → DatasetReady on the custom bus (captured by
//! a test rule into a queue) and the outputs in S3.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use mlops::adapter::{aws, eventbridge::EventBridgeBus, s3::S3Store};
use mlops::cli::dev::local::DevFunctions;
use mlops::cli::dev::stack::Stack;
use mlops::cli::dev::worker::poll_once;
use mlops::config::PipelineConfig;
use mlops::lambda::sqs::{Message, process_batch};
use mlops::stage::ledger::Ledger;

use crate::harness::{drain, events_of, root, sdk, stack};

const KEY: &str = "incoming/transactions/2026-11-29/transactions.csv";

fn pipeline() -> PipelineConfig {
    PipelineConfig::load(&root().join("samples/pipeline.yaml")).expect("pipeline config")
}

async fn upload(sdk: &aws_config::SdkConfig, stack: &Stack, key: &str, body: Vec<u8>) {
    aws::s3_client(sdk)
        .put_object()
        .bucket(&stack.data_bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .expect("put");
}

/// Waits for moto's notification to reach the function's queue and returns its messages
/// (left on the queue, invisible for the visibility timeout).
async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    n: usize,
) -> Vec<aws_sdk_sqs::types::Message> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        let r = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        out.extend(r.messages().to_vec());
    }
    out
}

fn as_messages(msgs: &[aws_sdk_sqs::types::Message]) -> Vec<Message> {
    msgs.iter()
        .map(|m| Message {
            id: m.message_id().unwrap_or_default().into(),
            body: m.body().map(str::to_owned),
        })
        .collect()
}

#[tokio::test]
async fn put_object_flows_to_dataset_ready_and_the_ledger() {
    let sdk = sdk().await;
    let (stack, capture) = stack(&sdk, "flow", 3, 30).await;
    let work = tempfile::tempdir().expect("tmp");
    let f = DevFunctions::new(&sdk, &stack, pipeline(), work.path());
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let body = std::fs::read(root().join("samples/data/transactions.csv")).expect("sample");
    upload(&sdk, &stack, KEY, body).await;
    upload(&sdk, &stack, "unrelated/readme.txt", b"hello".to_vec()).await;

    // Both notifications arrive (the S3 rule only filters by bucket and detail-type); the
    // unrelated key is acknowledged and ignored.
    let msgs = receive(&sqs, &stack.queue("data-arrival").expect("q").url, 2).await;
    assert_eq!(msgs.len(), 2, "moto's S3 → EventBridge → SQS delivery");
    let bodies: Vec<serde_json::Value> = msgs
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap_or_default()).expect("json"))
        .collect();
    assert!(
        bodies
            .iter()
            .all(|b| b["source"] == "aws.s3" && b["detail-type"] == "Object Created")
    );
    let failed = process_batch(&f.data_arrival, as_messages(&msgs)).await;
    assert!(failed.is_empty(), "{failed:?}");

    let captured = events_of(&drain(&sqs, &capture, 1, Duration::from_secs(10)).await);
    assert_eq!(captured.len(), 1, "{captured:?}");
    let (dt, ready) = &captured[0];
    assert_eq!(dt, "DatasetReady");
    assert_eq!(ready["source"]["key"], KEY);
    assert_eq!(ready["counts"]["input"], 3000);
    let kept = ready["counts"]["train"].as_u64().unwrap_or(0)
        + ready["counts"]["test"].as_u64().unwrap_or(0);
    assert_eq!(kept, 2943, "pandas keeps 2943 of the sample's 3000 rows");

    let s3 = aws::s3_client(&sdk);
    for uri in ["train_uri", "test_uri", "manifest_uri"] {
        let key = ready[uri]
            .as_str()
            .expect("uri")
            .trim_start_matches(&format!("s3://{}/", stack.artifact_bucket))
            .to_owned();
        let obj = s3
            .get_object()
            .bucket(&stack.artifact_bucket)
            .key(&key)
            .send()
            .await
            .expect(uri);
        let bytes = obj.body.collect().await.expect("body").into_bytes();
        if uri == "train_uri" {
            let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
            assert!(
                lines > ready["counts"]["train"].as_u64().unwrap_or(0),
                "train.csv holds the header and every train row"
            );
        }
    }

    // The ledger function files the event under its run; the timeline shows it.
    let run_id = ready["run_id"].as_str().expect("run id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let store = S3Store::new(aws::s3_client(&sdk));
    let ledger = Ledger {
        store: &store,
        bucket: &stack.artifact_bucket,
        prefix: "ledger/",
    };
    loop {
        poll_once(&sqs, &stack.queue("ledger").expect("q").url, &f.ledger, 1)
            .await
            .expect("ledger poll");
        let t = ledger.timeline(&run_id).await.expect("timeline");
        if !t.is_empty() {
            assert_eq!(t.len(), 1);
            assert_eq!(t[0].detail_type, "DatasetReady");
            break;
        }
        assert!(Instant::now() < deadline, "ledger never filed the event");
    }
    let recent = ledger.recent(5).await.expect("recent");
    assert_eq!(
        recent.first().map(|r| r.run_id.as_str()),
        Some(run_id.as_str())
    );
}

#[tokio::test]
async fn duplicate_and_concurrent_deliveries_emit_one_event() {
    let sdk = sdk().await;
    let (stack, capture) = stack(&sdk, "dups", 3, 30).await;
    let work = tempfile::tempdir().expect("tmp");
    let f = DevFunctions::new(&sdk, &stack, pipeline(), work.path());
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    upload(
        &sdk,
        &stack,
        KEY,
        std::fs::read(root().join("samples/data/transactions.csv")).expect("sample"),
    )
    .await;
    let msgs = as_messages(&receive(&sqs, &stack.queue("data-arrival").expect("q").url, 1).await);
    assert_eq!(msgs.len(), 1);

    // Concurrent duplicate delivery: the same message handled twice at once.
    let (a, b) = tokio::join!(
        process_batch(&f.data_arrival, msgs.clone()),
        process_batch(&f.data_arrival, msgs.clone())
    );
    assert!(
        a.len() + b.len() <= 1,
        "at most the loser is retried: {a:?} {b:?}"
    );
    // Redelivery (and the loser's retry): acknowledged, nothing new.
    assert!(
        process_batch(&f.data_arrival, msgs.clone())
            .await
            .is_empty()
    );
    assert!(process_batch(&f.data_arrival, msgs).await.is_empty());

    let captured = events_of(&drain(&sqs, &capture, 1, Duration::from_secs(5)).await);
    assert_eq!(
        captured.iter().filter(|(t, _)| t == "DatasetReady").count(),
        1,
        "{captured:?}"
    );
    assert_eq!(captured.len(), 1);
    let listed = aws::s3_client(&sdk)
        .list_objects_v2()
        .bucket(&stack.artifact_bucket)
        .prefix("processed/")
        .send()
        .await
        .expect("list");
    assert_eq!(
        listed.contents().len(),
        3,
        "one dataset version: train, test, manifest"
    );
}

#[tokio::test]
async fn a_malformed_body_fails_only_itself() {
    let sdk = sdk().await;
    let (stack, capture) = stack(&sdk, "batch", 3, 30).await;
    let work = tempfile::tempdir().expect("tmp");
    let f = DevFunctions::new(&sdk, &stack, pipeline(), work.path());
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    upload(
        &sdk,
        &stack,
        "incoming/transactions/a.csv",
        std::fs::read(root().join("samples/data/transactions.csv")).expect("sample"),
    )
    .await;
    upload(
        &sdk,
        &stack,
        "incoming/transactions/b.csv",
        b"transaction_id,amount\ntx,1\n".to_vec(),
    )
    .await;
    let mut msgs =
        as_messages(&receive(&sqs, &stack.queue("data-arrival").expect("q").url, 2).await);
    assert_eq!(msgs.len(), 2);
    msgs.insert(
        1,
        Message {
            id: "malformed-1".into(),
            body: Some("{not json".into()),
        },
    );
    msgs.push(Message { id: "not-s3-2".into(), body: Some(r#"{"version":"0","id":"x","detail-type":"Object Created","source":"aws.s3","detail":{"nope":1}}"#.into()) });
    let failed = process_batch(&f.data_arrival, msgs).await;
    assert_eq!(
        failed,
        vec!["malformed-1".to_owned(), "not-s3-2".to_owned()]
    );
    let captured = events_of(&drain(&sqs, &capture, 2, Duration::from_secs(5)).await);
    let mut types: Vec<&str> = captured.iter().map(|(t, _)| t.as_str()).collect();
    types.sort();
    assert_eq!(types, ["DatasetReady", "DatasetRejected"]);
    let rejected = &captured
        .iter()
        .find(|(t, _)| t == "DatasetRejected")
        .expect("rejected")
        .1;
    assert_eq!(rejected["reasons"][0]["code"], "missing_column");
}

#[tokio::test]
async fn a_message_that_keeps_failing_ends_in_the_dlq() {
    let sdk = sdk().await;
    // maxReceiveCount 2, visibility 1 s: two failed receives, then moto moves it to the DLQ.
    let (stack, _capture) = stack(&sdk, "dlq", 2, 1).await;
    let work = tempfile::tempdir().expect("tmp");
    let mut f = DevFunctions::new(&sdk, &stack, pipeline(), work.path());
    // A transient fault for every attempt: the artifact bucket does not exist.
    f.data_arrival.settings.artifact_bucket = format!("{}missing", stack.artifact_bucket);
    f.data_arrival.bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &stack.bus);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    upload(&sdk, &stack, KEY, b"transaction_id,amount\ntx,1\n".to_vec()).await;
    let q = stack.queue("data-arrival").expect("q").clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut failures = 0;
    loop {
        let (_, failed) = poll_once(&sqs, &q.url, &f.data_arrival, 1)
            .await
            .expect("poll");
        failures += failed;
        let dlq = sqs
            .receive_message()
            .queue_url(&q.dlq_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("dlq");
        if let Some(m) = dlq.messages().first() {
            let body: serde_json::Value =
                serde_json::from_str(m.body().unwrap_or_default()).expect("json");
            assert_eq!(
                body["detail"]["object"]["key"], KEY,
                "the original event is kept"
            );
            assert_eq!(failures, 2, "retried exactly maxReceiveCount times");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "message never reached the DLQ ({failures} failures)"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[test]
fn the_demo_runs_two_drops_and_a_code_push_through_training_to_the_gate_against_a_champion() {
    // The README's main command: moto, MLflow with the webhook registered on it, the functions,
    // the local executor, the poller and validate-model. The first version is judged on
    // thresholds alone, the second against the first as champion.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mlops"))
        .args(["dev", "demo"])
        .current_dir(root())
        .output()
        .expect("mlops dev demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gates: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("validation gate of fraud-detection"))
        .collect();
    assert_eq!(gates.len(), 3, "{stdout}");
    assert!(gates[0].contains("v1 (no champion"), "{stdout}");
    // The code run's version passes against the champion; the second drop's does not.
    assert!(
        gates[1].contains("v2 (against champion v1")
            && gates[1].ends_with("passed, alias `challenger` set"),
        "{stdout}"
    );
    assert!(
        gates[2].contains("v3 (against champion v1") && gates[2].ends_with("rejected"),
        "{stdout}"
    );
    // The code run: push → build → training with the built image → version, in one run, as
    // `mlops status` prints it.
    let code_run = stdout
        .lines()
        .find_map(|l| {
            l.split_once("as `mlops status ")
                .and_then(|(_, r)| r.split_once('`'))
                .map(|(id, _)| id.to_owned())
        })
        .expect("the code run's status line");
    let lines: Vec<&str> = stdout.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == format!("run {code_run}"))
        .expect("the code run's timeline");
    let block: Vec<&str> = lines[start + 1..]
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .copied()
        .collect();
    let at = |source: &str, t: &str| {
        block
            .iter()
            .position(|l| l.contains(source) && l.contains(&format!(" {t} ")))
            .unwrap_or_else(|| panic!("no {t} from {source} in run {code_run}: {block:#?}"))
    };
    let order: Vec<usize> = [
        ("mlops.git-webhook", "ModelCodePushed"),
        ("mlops.build-image", "ImageBuildSubmitted"),
        ("mlops.training-watch", "ImageBuilt"),
        ("mlops.launch-training", "TrainingJobSubmitted"),
        // The trainer registers the version while its Job still runs, so the registry's report
        // and the watcher's `TrainingJobSucceeded` come in either order; both follow the
        // submission.
        ("mlops.", "ModelVersionCreated"),
        ("mlops.validate-model", "ModelValidated"),
        ("mlops.promote-model", "ModelPromoted"),
    ]
    .iter()
    .map(|(source, t)| at(source, t))
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "in pipeline order: {block:#?}"
    );
    assert!(
        at("mlops.training-watch", "TrainingJobSucceeded")
            > at("mlops.launch-training", "TrainingJobSubmitted"),
        "training reported after its submission: {block:#?}"
    );
    assert!(
        block
            .iter()
            .any(|l| l.contains("TrainingJobSubmitted") && l.contains("@sha256:")),
        "trained by digest: {block:#?}"
    );
    assert!(
        stdout.contains("Mlops-Git-Commit: "),
        "the release names the code commit: {stdout}"
    );
    assert!(stdout.contains("roc_auc vs champion"), "{stdout}");
    // MLflow itself delivered signed webhooks: created, the verdict's tags, the alias.
    for t in [
        "ModelVersionCreated",
        "ModelVersionTagSet",
        "ModelVersionAliasChanged",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains("mlops.mlflow-webhook") && l.contains(t)),
            "no {t} from the webhook: {stdout}"
        );
    }
    // The validated v1 and v2 are promoted: a release commit each, with their trailers, in the
    // local manifests repo; the rejected v3 is not.
    let promoted: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("mlops.promote-model") && l.contains("ModelPromoted"))
        .collect();
    assert_eq!(promoted.len(), 2, "{stdout}");
    assert!(promoted[0].contains("version=1"), "{stdout}");
    assert!(promoted[1].contains("version=2"), "{stdout}");
    assert!(stdout.contains("Mlops-Model-Version: 1"), "{stdout}");
    assert!(
        stdout.contains("deployments/mlflow/fraud-detection/release.yaml | 4 ++--"),
        "{stdout}"
    );
    // The release push reached git-webhook through the repo's post-receive hook, signed like
    // GitHub, and continued the same run.
    assert!(
        stdout.lines().any(|l| l.contains("mlops.git-webhook")
            && l.contains("GitPushed")
            && l.contains("applications=fraud-detection")),
        "{stdout}"
    );
    // deploy-sync reports the push skipped, and why: no Argo CD runs here.
    assert!(
        stdout.lines().any(|l| l.contains("mlops.deploy-sync")
            && l.contains("DeploymentSkipped")
            && l.contains("application=fraud-detection")
            && l.contains("version=1")
            && l.contains(": no Argo CD configured")),
        "{stdout}"
    );
    assert!(stdout.contains("deployment skipped:"), "{stdout}");
    // No cluster and no vLLM here: the scaler is reported skipped, and its policy replayed
    // offline beside the seed's HPA and the oracle.
    assert!(stdout.contains("serving skipped: vllm-scaler"), "{stdout}");
    for row in ["mlops ", "hpa-seed ", "oracle ", "mlops vs hpa-seed:"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(row)),
            "{row}: {stdout}"
        );
    }
    // Webhook and poller both report each version; the gate judges it once.
    let verdicts = stdout
        .lines()
        .filter(|l| l.contains("mlops.validate-model") && l.contains("version=3"))
        .count();
    assert_eq!(verdicts, 1, "{stdout}");
}

#[test]
fn dev_up_prints_usable_endpoints_streams_events_and_stops_on_sigint() {
    use std::io::BufRead;
    // Killed if the test fails half-way, so no stack outlives it.
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut guard = Guard(
        std::process::Command::new(env!("CARGO_BIN_EXE_mlops"))
            .args(["dev", "up"])
            .current_dir(root())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mlops dev up starts"),
    );
    let child = &mut guard.0;
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let mut wait_for = |pred: &dyn Fn(&str) -> bool, what: &str, secs: u64| -> String {
        // A line already printed counts (events of one run may arrive in any order).
        if let Some(l) = seen.iter().find(|l| pred(l.as_str())) {
            return l.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no {what} within {secs} s; output so far:\n{}",
                    seen.join("\n")
                ),
            }
        }
    };
    let mlflow = wait_for(
        &|l| l.trim_start().starts_with("MLflow UI"),
        "MLflow UI line",
        120,
    );
    let mlflow = mlflow
        .split_whitespace()
        .nth(2)
        .expect("MLflow URL")
        .to_owned();
    let webhook = wait_for(
        &|l| l.trim_start().starts_with("webhook"),
        "webhook line",
        5,
    );
    assert!(webhook.contains("http://127.0.0.1:"), "{webhook}");
    // The printed `aws s3 cp` line, taken apart and replayed with the SDK (no aws CLI here).
    let cp = wait_for(&|l| l.contains("aws s3 cp"), "aws s3 cp line", 5);
    let words: Vec<&str> = cp.split_whitespace().collect();
    let dest = words
        .iter()
        .find_map(|w| w.strip_prefix("s3://"))
        .expect("destination");
    let (bucket, key) = dest.split_once('/').expect("bucket/key");
    let endpoint = words
        .iter()
        .position(|w| *w == "--endpoint-url")
        .and_then(|i| words.get(i + 1))
        .expect("endpoint");
    assert_eq!(
        words[words.iter().position(|w| *w == "cp").expect("cp") + 1],
        "samples/data/transactions.csv"
    );
    wait_for(
        &|l| l.contains("Events as they happen"),
        "the events header",
        5,
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let sdk = aws::local(endpoint).await;
        aws::s3_client(&sdk)
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(
                std::fs::read(root().join("samples/data/transactions.csv")).expect("sample"),
            ))
            .send()
            .await
            .expect("the printed destination accepts the upload");
    });
    wait_for(&|l| l.contains("DatasetReady"), "DatasetReady", 60);
    wait_for(
        &|l| l.contains("TrainingJobSubmitted"),
        "TrainingJobSubmitted",
        60,
    );
    let verdict = wait_for(
        &|l| l.contains("ModelValidated") || l.contains("ModelRejected"),
        "a verdict",
        180,
    );
    assert!(
        verdict.contains("model=fraud-detection version=1"),
        "{verdict}"
    );
    // MLflow's delivery may reach the ledger after the poller's report: wait for it too.
    let from_webhook =
        |l: &str| l.contains("mlops.mlflow-webhook") && l.contains("ModelVersionCreated");
    wait_for(&from_webhook, "MLflow's webhook delivery", 30);
    // The MLflow UI the stack printed answers.
    rt.block_on(async {
        let r = reqwest::get(format!("{mlflow}/health"))
            .await
            .expect("mlflow");
        assert!(r.status().is_success());
    });
    let pid = child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = child.wait().expect("dev up exits");
    assert!(status.success(), "exit {status}");
    let rest: Vec<String> = rx.iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("stopping the local stack")),
        "{}",
        rest.join("\n")
    );
    // The services went with it.
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(15);
        while reqwest::get(format!("{mlflow}/health")).await.is_ok() {
            assert!(Instant::now() < deadline, "MLflow outlived dev up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}
