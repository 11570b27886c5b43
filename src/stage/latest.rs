//! The `latest` pointer per dataset: the newest ready version, written by data-arrival and read
//! by launch-training when a code change retrains a model on "the latest data".
//!
//! One small object per dataset (`<state>data-arrival/latest/<dataset>.json`) holding the
//! version's `DatasetReady` and when its source object arrived. Arrivals race (two files dropped
//! a second apart are processed by two invocations in any order), so the pointer only moves
//! forward: a writer reads it, keeps it when it is as new or newer, and otherwise overwrites it
//! with `If-Match` on the ETag it read (`If-None-Match: *` when there is none), retrying on a lost
//! race. An older version can never replace a newer one, whatever the order of the writes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::event::DatasetReady;
use crate::port::{ObjectStore, Precondition, Written};

/// Lost races retried before giving up (the message is then retried by the queue).
const ATTEMPTS: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latest {
    /// When the source object arrived (the S3 event's time): what "newer" means.
    pub arrived_at: DateTime<Utc>,
    pub ready: DatasetReady,
}

impl Latest {
    /// Arrival time first; the key and version break ties so every writer agrees on the order.
    fn order(&self) -> (DateTime<Utc>, &str, &str) {
        (
            self.arrived_at,
            self.ready.source.key.as_str(),
            self.ready.version.as_str(),
        )
    }
}

pub fn key(state_prefix: &str, dataset: &str) -> String {
    format!("{state_prefix}data-arrival/latest/{dataset}.json")
}

#[derive(Debug, thiserror::Error)]
pub enum LatestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{key} is not a latest pointer")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{key}: lost {ATTEMPTS} write races in a row")]
    Contended { key: String },
}

impl crate::error::Classify for LatestError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            LatestError::Store(e) => e.class(),
            _ => crate::error::ErrorClass::Transient,
        }
    }
}

/// The dataset's latest pointer, if any version is ready.
pub async fn read<S: ObjectStore>(
    store: &S,
    bucket: &str,
    state_prefix: &str,
    dataset: &str,
) -> Result<Option<Latest>, LatestError> {
    let key = key(state_prefix, dataset);
    match store.get(bucket, &key).await? {
        None => Ok(None),
        Some(f) => serde_json::from_slice(&f.body)
            .map(Some)
            .map_err(|source| LatestError::Corrupt { key, source }),
    }
}

/// Moves the pointer to `candidate` unless it already names a version as new or newer.
/// Returns whether it moved.
pub async fn advance<S: ObjectStore>(
    store: &S,
    bucket: &str,
    state_prefix: &str,
    candidate: &Latest,
) -> Result<bool, LatestError> {
    let key = key(state_prefix, &candidate.ready.dataset);
    let body = serde_json::to_vec_pretty(candidate).map_err(|source| LatestError::Corrupt {
        key: key.clone(),
        source,
    })?;
    for _ in 0..ATTEMPTS {
        let precondition = match store.get(bucket, &key).await? {
            None => Precondition::Absent,
            Some(f) => {
                // A pointer we cannot read is replaced: it would block every later version.
                let newer = serde_json::from_slice::<Latest>(&f.body)
                    .is_ok_and(|cur| cur.order() >= candidate.order());
                if newer {
                    return Ok(false);
                }
                Precondition::Matches(f.etag)
            }
        };
        match store.put(bucket, &key, body.clone(), precondition).await? {
            Written::Ok { .. } => return Ok(true),
            Written::PreconditionFailed => continue,
        }
    }
    Err(LatestError::Contended { key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::memory::MemoryStore;
    use crate::event::{Counts, SourceObject};

    fn latest(version: &str, secs: i64) -> Latest {
        Latest {
            arrived_at: DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("time"),
            ready: DatasetReady {
                schema_version: "1".into(),
                run_id: format!("run-{version}"),
                dataset: "transactions".into(),
                version: version.into(),
                format: "csv".into(),
                train_uri: format!("s3://a/{version}/train.csv"),
                test_uri: format!("s3://a/{version}/test.csv"),
                manifest_uri: format!("s3://a/{version}/manifest.json"),
                counts: Counts::default(),
                source: SourceObject {
                    bucket: "data".into(),
                    key: format!("incoming/transactions/{secs}.csv"),
                    etag: None,
                    version_id: None,
                    size: None,
                },
                model: Some("fraud-detection".into()),
            },
        }
    }

    #[tokio::test]
    async fn an_older_version_never_replaces_a_newer_one() {
        let store = MemoryStore::default();
        assert!(
            advance(&store, "b", "state/", &latest("v2", 20))
                .await
                .expect("write")
        );
        assert!(
            !advance(&store, "b", "state/", &latest("v1", 10))
                .await
                .expect("write")
        );
        // The same version again is a no-op.
        assert!(
            !advance(&store, "b", "state/", &latest("v2", 20))
                .await
                .expect("write")
        );
        assert!(
            advance(&store, "b", "state/", &latest("v3", 30))
                .await
                .expect("write")
        );
        let got = read(&store, "b", "state/", "transactions")
            .await
            .expect("read");
        assert_eq!(got.map(|l| l.ready.version), Some("v3".into()));
    }

    /// Many arrivals written concurrently, in a shuffled order: the newest always wins.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_arrivals_leave_the_newest() {
        for seed in 1..=20u64 {
            let store = std::sync::Arc::new(MemoryStore::default());
            let mut order: Vec<i64> = (0..24).collect();
            // Fisher–Yates with a xorshift generator: a different interleaving per seed.
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for i in (1..order.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let tasks: Vec<_> = order
                .iter()
                .map(|&i| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        advance(&*store, "b", "state/", &latest(&format!("v{i:02}"), i)).await
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("task").expect("advance");
            }
            let got = read(&*store, "b", "state/", "transactions")
                .await
                .expect("read")
                .expect("pointer");
            assert_eq!(got.ready.version, "v23", "seed {seed}");
        }
    }

    #[tokio::test]
    async fn a_damaged_pointer_is_replaced_and_reading_one_names_it() {
        let store = MemoryStore::default();
        let k = key("state/", "transactions");
        store
            .put("b", &k, b"{not json".to_vec(), Precondition::None)
            .await
            .expect("put");
        let err = read(&store, "b", "state/", "transactions")
            .await
            .expect_err("corrupt");
        assert!(err.to_string().contains(&k), "{err}");
        assert!(
            advance(&store, "b", "state/", &latest("v1", 1))
                .await
                .expect("write")
        );
    }
}
