//! Stage tests of data-arrival against the in-memory fakes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;

use super::*;
use crate::adapter::memory::{MemoryBus, MemoryStore};
use crate::error::{Classify, ErrorClass};

const DATA: &str = "data";
const ART: &str = "artifacts";
const KEY: &str = "incoming/transactions/2026/t.csv";
const CSV: &str = "transaction_id,amount,merchant_category,hour,customer_age,distance_from_home,is_fraud\n\
    tx-1,10.5,food,3,40,1.5,0\ntx-2,99.0,travel,23,31,80.2,1\ntx-1,10.5,food,3,40,1.5,0\ntx-3,NA,food,1,22,0.4,0\n";

struct Fixture {
    pipeline: PipelineConfig,
    settings: Settings,
    store: MemoryStore,
    bus: MemoryBus,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        Fixture {
            pipeline: PipelineConfig::from_yaml(
                include_str!("../../../samples/pipeline.yaml"),
                "sample",
            )
            .expect("config"),
            settings: Settings {
                artifact_bucket: ART.into(),
                processed_prefix: "processed/".into(),
                state_prefix: "state/".into(),
                work_dir: dir.path().to_owned(),
                claim_lease: Duration::from_secs(60),
                limits: Default::default(),
            },
            store: MemoryStore::default(),
            bus: MemoryBus::default(),
            _dir: dir,
        }
    }
    fn stage(&self) -> DataArrival<'_, MemoryStore, MemoryBus> {
        DataArrival {
            pipeline: &self.pipeline,
            settings: &self.settings,
            store: &self.store,
            bus: &self.bus,
        }
    }
    fn upload(&self, key: &str, body: &str) -> EventBridgeEvent<serde_json::Value> {
        let etag = self.store.insert(DATA, key, body.as_bytes().to_vec());
        event(key, &etag, body.len() as u64)
    }
}

fn event(key: &str, etag: &str, size: u64) -> EventBridgeEvent<serde_json::Value> {
    serde_json::from_value(serde_json::json!({
        "version": "0", "id": "e1", "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2026-11-29T04:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"version": "0", "bucket": {"name": DATA}, "object": {"key": key, "size": size, "etag": etag}, "reason": "PutObject"}
    }))
    .expect("event")
}

fn rejected_code(o: Outcome) -> String {
    match o {
        Outcome::Rejected(r) => r.reasons[0].code.clone(),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn ready_writes_outputs_and_emits_once() {
    let f = Fixture::new();
    let ev = f.upload(KEY, CSV);
    let Outcome::Ready(r) = f.stage().handle(&ev).await.expect("handled") else {
        panic!("not ready")
    };
    assert_eq!(
        (
            r.counts.input,
            r.counts.dropped_nulls,
            r.counts.dropped_duplicates
        ),
        (4, 1, 1)
    );
    assert_eq!(r.counts.train + r.counts.test, 2);
    assert_eq!(r.model.as_deref(), Some("fraud-detection"));
    let base = format!("processed/transactions/{}/", r.version);
    let keys = f.store.keys(ART);
    for name in ["train.csv", "test.csv", "manifest.json"] {
        assert!(
            keys.contains(&format!("{base}{name}")),
            "{name} missing from {keys:?}"
        );
    }
    let manifest: serde_json::Value = serde_json::from_slice(
        &f.store
            .body(ART, &format!("{base}manifest.json"))
            .expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["counts"]["dropped_duplicates"], 1);
    assert_eq!(manifest["source"]["key"], KEY);
    assert_eq!(manifest["run_id"], r.run_id.as_str());
    let events = f.bus.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].source.as_str(), events[0].detail_type.as_str()),
        ("mlops.data-arrival", "DatasetReady")
    );
    assert_eq!(events[0].run_id(), Some(r.run_id.as_str()));

    // Redelivery: nothing new.
    let again = f.stage().handle(&ev).await.expect("handled");
    assert_eq!(
        again,
        Outcome::Duplicate {
            run_id: r.run_id.clone()
        }
    );
    assert_eq!(f.bus.events().len(), 1);
}

#[tokio::test]
async fn concurrent_duplicates_emit_one_event() {
    let f = Fixture::new();
    let ev = f.upload(KEY, CSV);
    let (s1, s2) = (f.stage(), f.stage());
    let (a, b) = tokio::join!(s1.handle(&ev), s2.handle(&ev));
    let ok = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Ok(Outcome::Ready(_))))
        .count();
    assert_eq!(ok, 1, "exactly one invocation processes: {a:?} / {b:?}");
    for r in [&a, &b] {
        if let Err(e) = r {
            assert!(matches!(e, DataArrivalError::InProgress { .. }), "{e}");
            assert_eq!(e.class(), ErrorClass::Transient, "the loser is retried");
        }
    }
    // The loser's redelivery now sees the version done.
    assert!(matches!(
        f.stage().handle(&ev).await,
        Ok(Outcome::Duplicate { .. })
    ));
    assert_eq!(f.bus.events().len(), 1);
}

#[tokio::test]
async fn transient_failures_release_the_claim_and_keep_the_run() {
    let f = Fixture::new();
    let ev = f.upload(KEY, CSV);
    f.bus.fail.store(true, Ordering::SeqCst);
    let err = f.stage().handle(&ev).await.expect_err("bus down");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(f.bus.events().is_empty());
    f.bus.fail.store(false, Ordering::SeqCst);
    let Outcome::Ready(first) = f.stage().handle(&ev).await.expect("retried") else {
        panic!("not ready")
    };
    assert_eq!(f.bus.events().len(), 1);
    // The run id minted by the failed attempt is kept.
    let marker_keys: Vec<String> = f
        .store
        .keys(ART)
        .into_iter()
        .filter(|k| k.starts_with("state/") && !k.starts_with("state/data-arrival/latest/"))
        .collect();
    assert_eq!(marker_keys.len(), 1);
    // The dataset's latest pointer names the version once, after the retry.
    let latest: serde_json::Value = serde_json::from_slice(
        &f.store
            .body(ART, "state/data-arrival/latest/transactions.json")
            .expect("latest pointer"),
    )
    .expect("json");
    assert_eq!(latest["ready"]["version"], first.version.as_str());
    let marker: serde_json::Value =
        serde_json::from_slice(&f.store.body(ART, &marker_keys[0]).expect("marker")).expect("json");
    assert_eq!(marker["status"], "done");
    assert_eq!(marker["run_id"], first.run_id.as_str());

    f.store.fail.store(true, Ordering::SeqCst);
    let ev2 = event("incoming/transactions/other.csv", "etag-x", 10);
    assert_eq!(
        f.stage().handle(&ev2).await.expect_err("s3 down").class(),
        ErrorClass::Transient
    );
}

#[tokio::test]
async fn expired_claim_is_taken_over_under_the_same_run() {
    let f = Fixture::new();
    let ev = f.upload(KEY, CSV);
    let stage = f.stage();
    let detail: S3ObjectDetail = serde_json::from_value(ev.detail.clone()).expect("detail");
    let src = SourceObject {
        bucket: DATA.into(),
        key: KEY.into(),
        etag: detail.object.etag,
        version_id: None,
        size: None,
    };
    // A marker as a crashed invocation leaves it (the shape of `stage::claim`'s markers).
    let stale =
        br#"{"status":"claimed","run_id":"run-crashed","claimed_at":"2026-01-01T00:00:00Z"}"#;
    f.store
        .put(
            ART,
            &stage.marker_key(&src),
            stale.to_vec(),
            Precondition::Absent,
        )
        .await
        .expect("seed marker");
    let Outcome::Ready(r) = stage.handle(&ev).await.expect("handled") else {
        panic!("not ready")
    };
    assert_eq!(r.run_id, "run-crashed");
}

#[tokio::test]
async fn ignores_what_is_not_a_dataset() {
    let f = Fixture::new();
    let ev = f.upload("elsewhere/x.csv", CSV);
    assert!(matches!(
        f.stage().handle(&ev).await,
        Ok(Outcome::Ignored(_))
    ));
    let mut tags = f.upload(KEY, CSV);
    tags.detail_type = "Object Tags Added".into();
    assert!(matches!(
        f.stage().handle(&tags).await,
        Ok(Outcome::Ignored(_))
    ));
    assert!(f.bus.events().is_empty());
}

#[tokio::test]
async fn each_rejection_is_an_event_and_leaves_the_source_alone() {
    let f = Fixture::new();
    let cases = [
        (
            "incoming/transactions/a.csv",
            "transaction_id,amount\ntx-1,1\n",
            "missing_column",
        ),
        (
            "incoming/transactions/b.csv",
            &CSV.replace("10.5,food,3", "ten,food,3"),
            "wrong_type",
        ),
        ("incoming/transactions/c.csv", "", "empty_file"),
        (
            "incoming/transactions-parquet/d.parquet",
            "PAR1 but not really",
            "unreadable",
        ),
    ];
    for (key, body, code) in cases {
        let ev = f.upload(key, body);
        assert_eq!(
            rejected_code(f.stage().handle(&ev).await.expect("handled")),
            code,
            "{key}"
        );
        assert_eq!(
            f.store.body(DATA, key),
            Some(body.as_bytes().to_vec()),
            "source untouched"
        );
    }
    // Deleted before processing.
    let ev = f.upload("incoming/transactions/gone.csv", CSV);
    f.store.remove(DATA, "incoming/transactions/gone.csv");
    assert_eq!(
        rejected_code(f.stage().handle(&ev).await.expect("handled")),
        "object_deleted"
    );
    // Replaced before processing: the event's ETag no longer matches.
    let ev = f.upload("incoming/transactions/swap.csv", CSV);
    f.store
        .insert(DATA, "incoming/transactions/swap.csv", b"other".to_vec());
    assert_eq!(
        rejected_code(f.stage().handle(&ev).await.expect("handled")),
        "object_changed"
    );
    // Over the size limit: rejected from the event, before any download.
    let ev = event("incoming/transactions/huge.csv", "e", 11 << 30);
    assert_eq!(
        rejected_code(f.stage().handle(&ev).await.expect("handled")),
        "too_large"
    );

    let events = f.bus.events();
    assert_eq!(events.len(), 7);
    assert!(events.iter().all(|e| e.detail_type == "DatasetRejected"));
    let wrong_type = &events[1].detail["reasons"][0];
    assert_eq!(
        (wrong_type["column"].as_str(), wrong_type["line"].as_u64()),
        (Some("amount"), Some(2))
    );
    // A rejection is final: redelivery emits nothing.
    let ev = f.upload("incoming/transactions/c2.csv", "");
    f.stage().handle(&ev).await.expect("first");
    assert!(matches!(
        f.stage().handle(&ev).await,
        Ok(Outcome::Duplicate { .. })
    ));
    assert_eq!(f.bus.events().len(), 8);
}

#[tokio::test]
async fn an_overwrite_with_new_content_is_a_new_run() {
    // Unversioned buckets send version id "null" for every write; the ETag tells them apart.
    let f = Fixture::new();
    let mut first = f.upload(KEY, CSV);
    first.detail["object"]["version-id"] = "null".into();
    let mut second = f.upload(KEY, &CSV.replace("tx-2,99.0", "tx-9,19.0"));
    second.detail["object"]["version-id"] = "null".into();
    // The first event's object was replaced before it was read: rejected as changed.
    assert_eq!(
        rejected_code(f.stage().handle(&first).await.expect("first")),
        "object_changed"
    );
    let Outcome::Ready(r) = f.stage().handle(&second).await.expect("second") else {
        panic!("not ready")
    };
    assert_eq!(r.counts.input, 4);
    assert_eq!(f.bus.events().len(), 2);
}
