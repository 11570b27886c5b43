//! The code-push path end to end on the dev stack: moto, a real MLflow server, the trainer's
//! source repository served by `git http-backend` with token auth, and every function in-process.
//! A push to the trainer repo → `ModelCodePushed` → the local build (a checkout of that commit)
//! → training from that checkout on the latest ready dataset → a registered version whose MLflow
//! run carries `mlops.git_commit`; redeliveries of the push start nothing.

use std::time::{Duration, Instant};

use mlops::adapter::aws;
use mlops::adapter::s3::S3Store;
use mlops::cli::dev::demo;
use mlops::cli::dev::git_http::github_push_payload;
use mlops::cli::dev::local::LocalStack;
use mlops::port::ModelRegistry;
use mlops::stage::deploy::push::PushHeaders;
use mlops::stage::ledger::{Entry, Ledger};

async fn all_entries(local: &LocalStack) -> Vec<Entry> {
    let store = S3Store::new(aws::s3_client(&local.sdk));
    let ledger = Ledger {
        store: &store,
        bucket: &local.stack.artifact_bucket,
        prefix: "ledger/",
    };
    let mut out = Vec::new();
    for run in ledger.recent(50).await.expect("runs") {
        out.extend(ledger.timeline(&run.run_id).await.expect("timeline"));
    }
    out
}

fn count(entries: &[Entry], detail_type: &str) -> usize {
    entries
        .iter()
        .filter(|e| e.detail_type == detail_type)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_push_builds_its_commit_and_trains_it_exactly_once() {
    let local = LocalStack::start("code-").await.expect("stack");
    // A ready dataset version first: a code change retrains on the latest one.
    let data = demo::follow(
        &local,
        "incoming/transactions/2026-12-04/transactions.csv",
        demo::SAMPLE_DATA.to_vec(),
    )
    .await
    .expect("data run");
    let dataset_version = data
        .entries
        .iter()
        .find(|e| e.detail_type == "DatasetReady")
        .and_then(|e| e.detail["version"].as_str().map(str::to_owned))
        .expect("dataset version");

    let code = demo::code_run(&local).await.expect("code run");
    let detail = |t: &str| {
        code.entries
            .iter()
            .find(|e| e.detail_type == t)
            .map(|e| e.detail.clone())
            .unwrap_or_else(|| panic!("no {t} in the code run: {:?}", code.entries))
    };
    let pushed = detail("ModelCodePushed");
    let commit = pushed["commit"].as_str().expect("commit").to_owned();
    assert_eq!(pushed["changed"], serde_json::json!(["train.py"]));
    let built = detail("ImageBuilt");
    assert_eq!(built["commit"], commit.as_str());
    let digest = built["digest"].as_str().expect("digest").to_owned();
    // Trained on the latest ready version, with the built "image" by digest.
    let submitted = detail("TrainingJobSubmitted");
    assert_eq!(submitted["dataset_version"], dataset_version.as_str());
    assert_eq!(submitted["git_commit"], commit.as_str());
    assert!(
        submitted["image"]
            .as_str()
            .is_some_and(|i| i.ends_with(&format!("@{digest}"))),
        "{submitted}"
    );
    // The code that trained is the pushed commit: the checkout's HEAD, with the change in it.
    let checkout = local
        .training
        .cluster
        .checkout_of(&digest)
        .expect("the local build's checkout");
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&checkout)
        .output()
        .expect("git");
    assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), commit);
    let train = std::fs::read_to_string(checkout.join("train.py")).expect("train.py");
    assert!(train.contains("REGULARIZATION_C = 0.5"));
    // MLflow: the run carries the commit, and a new version was registered from it.
    let succeeded = detail("TrainingJobSucceeded");
    let mlflow_run = succeeded["mlflow_run_id"].as_str().expect("mlflow run");
    let registry = &local.registry.validate.registry;
    let run = registry
        .run(mlflow_run)
        .await
        .expect("MLflow")
        .expect("the run");
    assert_eq!(
        run.tags.get("mlops.git_commit").map(String::as_str),
        Some(commit.as_str())
    );
    assert_eq!(
        run.params.get("model.C").map(String::as_str),
        Some("0.5"),
        "the pushed hyperparameter trained"
    );
    let version = succeeded["model_version"].as_str().expect("version");
    assert_ne!(
        Some(version),
        data.verdict.detail["version"].as_str(),
        "a new version"
    );
    let v = registry
        .version("fraud-detection", version)
        .await
        .expect("MLflow")
        .expect("the version");
    assert_eq!(
        v.tags.get("mlops.git_commit").map(String::as_str),
        Some(commit.as_str())
    );

    // Redeliveries: the forge's own (same delivery id) is answered 200 with nothing emitted;
    // a second delivery of the same push (another id) reaches build-image, which finds the
    // build of (model, commit) and builds and trains nothing again.
    let before = all_entries(&local).await;
    let repo = local.trainer_repos.first().expect("trainer repo");
    let parent = std::process::Command::new("git")
        .args(["rev-parse", &format!("{commit}^")])
        .current_dir(&repo.bare)
        .output()
        .expect("git");
    let parent = String::from_utf8_lossy(&parent.stdout).trim().to_owned();
    let body = github_push_payload(
        &repo.bare,
        &parent,
        &commit,
        &format!("refs/heads/{}", repo.branch),
        &repo.url,
    )
    .expect("payload");
    let sig = local.sign_push(&body).expect("sign");
    let delivery = pushed["delivery_id"].as_str().expect("delivery id");
    for (id, want) in [(delivery, 200), ("another-delivery-of-the-same-push", 202)] {
        let reply = local
            .push_receiver
            .receive(
                &PushHeaders {
                    content_type: Some("application/json"),
                    github_event: Some("push"),
                    github_delivery: Some(id),
                    hub_signature_256: Some(&sig),
                    ..Default::default()
                },
                &body,
            )
            .await;
        assert_eq!(reply.status, want, "{id}: {}", reply.message);
    }
    let settle = Instant::now() + Duration::from_secs(8);
    while Instant::now() < settle {
        if local.pump().await.expect("pump") == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let after = all_entries(&local).await;
    assert_eq!(
        count(&after, "ModelCodePushed"),
        count(&before, "ModelCodePushed") + 1
    );
    for t in [
        "ImageBuildSubmitted",
        "ImageBuilt",
        "TrainingJobSubmitted",
        "ModelVersionCreated",
    ] {
        assert_eq!(
            count(&after, t),
            count(&before, t),
            "{t} again after a redelivery"
        );
    }
}

/// data-arrival's `latest` pointer on real S3 conditional writes (moto: `If-Match` /
/// `If-None-Match: *`): arrivals written concurrently in every order leave the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_latest_pointer_never_moves_back_under_concurrent_arrivals() {
    use mlops::event::{Counts, DatasetReady, SourceObject};
    use mlops::stage::latest::{self, Latest};
    let sdk = crate::harness::sdk().await;
    let bucket = format!("{}latest", crate::harness::prefix("lp")).to_ascii_lowercase();
    aws::s3_client(&sdk)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    let store = std::sync::Arc::new(S3Store::new(aws::s3_client(&sdk)));
    let arrival = |i: i64| Latest {
        arrived_at: chrono::DateTime::from_timestamp(1_700_000_000 + i, 0).expect("time"),
        ready: DatasetReady {
            schema_version: "1".into(),
            run_id: format!("run-{i}"),
            dataset: "transactions".into(),
            version: format!("{i:016x}"),
            format: "csv".into(),
            train_uri: String::new(),
            test_uri: String::new(),
            manifest_uri: String::new(),
            counts: Counts::default(),
            source: SourceObject {
                bucket: "data".into(),
                key: format!("incoming/transactions/{i}.csv"),
                etag: None,
                version_id: None,
                size: None,
            },
            model: None,
        },
    };
    // Newest first, oldest first, interleaved: each round on a fresh pointer.
    let orders: [Vec<i64>; 3] = [
        (0..10).rev().collect(),
        (0..10).collect(),
        vec![5, 9, 0, 3, 8, 1, 7, 2, 6, 4],
    ];
    for (round, order) in orders.iter().enumerate() {
        let prefix = format!("state/round-{round}/");
        let tasks: Vec<_> = order
            .iter()
            .map(|&i| {
                let (store, bucket, prefix) = (store.clone(), bucket.clone(), prefix.clone());
                let l = arrival(i);
                tokio::spawn(async move { latest::advance(&*store, &bucket, &prefix, &l).await })
            })
            .collect();
        for t in tasks {
            t.await.expect("task").expect("advance");
        }
        let got = latest::read(&*store, &bucket, &prefix, "transactions")
            .await
            .expect("read")
            .expect("a pointer");
        assert_eq!(got.ready.version, format!("{:016x}", 9), "round {round}");
        // An older arrival processed late does not move it back.
        assert!(
            !latest::advance(&*store, &bucket, &prefix, &arrival(3))
                .await
                .expect("advance")
        );
    }
}
