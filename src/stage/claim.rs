//! A claim marker in the object store that makes a stage's work happen once per key under
//! redelivery and concurrent delivery: created with `If-None-Match: *`, finished or released
//! with `If-Match`, taken over when its lease has expired (a crashed invocation).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::error::StoreError;
use crate::port::{ObjectStore, Precondition, Written};
use crate::stage::{lease_expired, now_rfc3339 as now};

/// `claimed_at` of a released claim: expired for every lease.
const RELEASED: &str = "1970-01-01T00:00:00Z";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Marker {
    Claimed {
        run_id: String,
        claimed_at: String,
    },
    Done {
        run_id: String,
        // data-arrival's markers before it moved onto this module named it `detail_type`.
        #[serde(alias = "detail_type")]
        outcome: String,
        done_at: String,
    },
}

/// The state of a key after [`Claims::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This invocation owns the work; `etag` finishes or releases it.
    Owned { etag: String, run_id: String },
    /// The work was done; `outcome` is what the owner recorded.
    Done { run_id: String, outcome: String },
    /// Another invocation holds a live claim.
    Busy { run_id: String, claimed_at: String },
}

pub struct Claims<'a, S> {
    pub store: &'a S,
    pub bucket: &'a str,
    pub lease: Duration,
}

impl<S: ObjectStore> Claims<'_, S> {
    /// Claims `key` for `run_id` (kept from an expired claim when one is taken over).
    pub async fn claim(&self, key: &str, run_id: &str) -> Result<Claim, StoreError> {
        // Three rounds cover the only race: the marker changing between our read and write.
        for _ in 0..3 {
            let (pre, run_id) = match self.store.get(self.bucket, key).await? {
                None => (Precondition::Absent, run_id.to_owned()),
                Some(f) => match serde_json::from_slice::<Marker>(&f.body) {
                    Ok(Marker::Done {
                        run_id, outcome, ..
                    }) => return Ok(Claim::Done { run_id, outcome }),
                    Ok(Marker::Claimed { run_id, claimed_at }) => {
                        if !lease_expired(&claimed_at, self.lease) {
                            return Ok(Claim::Busy { run_id, claimed_at });
                        }
                        if claimed_at != RELEASED {
                            warn!(%key, %run_id, %claimed_at, "taking over an expired claim");
                        }
                        (Precondition::Matches(f.etag), run_id)
                    }
                    Err(e) => {
                        warn!(%key, error = %e, "replacing an unreadable claim marker");
                        (Precondition::Matches(f.etag), run_id.to_owned())
                    }
                },
            };
            let m = Marker::Claimed {
                run_id: run_id.clone(),
                claimed_at: now(),
            };
            if let Written::Ok { etag } = self.put(key, &m, pre).await? {
                return Ok(Claim::Owned { etag, run_id });
            }
        }
        Ok(Claim::Busy {
            run_id: run_id.to_owned(),
            claimed_at: "contended".into(),
        })
    }

    /// Records the work as done. A lost race (the lease expired and another invocation took
    /// over) is logged: the other one finishes the same work.
    pub async fn finish(
        &self,
        key: &str,
        etag: &str,
        run_id: &str,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let m = Marker::Done {
            run_id: run_id.to_owned(),
            outcome: outcome.to_owned(),
            done_at: now(),
        };
        if self
            .put(key, &m, Precondition::Matches(etag.to_owned()))
            .await?
            == Written::PreconditionFailed
        {
            warn!(%key, "the claim was taken over before it finished");
        }
        Ok(())
    }

    /// Gives the claim up so the next delivery takes it at once.
    pub async fn release(&self, key: &str, etag: &str, run_id: &str) -> Result<(), StoreError> {
        let m = Marker::Claimed {
            run_id: run_id.to_owned(),
            claimed_at: RELEASED.into(),
        };
        self.put(key, &m, Precondition::Matches(etag.to_owned()))
            .await
            .map(drop)
    }

    async fn put(&self, key: &str, m: &Marker, pre: Precondition) -> Result<Written, StoreError> {
        let body =
            serde_json::to_vec(m).map_err(|e| StoreError::io("encode", self.bucket, key, e))?;
        self.store.put(self.bucket, key, body, pre).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::memory::MemoryStore;

    fn claims(store: &MemoryStore) -> Claims<'_, MemoryStore> {
        Claims {
            store,
            bucket: "b",
            lease: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn claim_finish_release_and_takeover() {
        let store = MemoryStore::default();
        let c = claims(&store);
        let Claim::Owned { etag, run_id } = c.claim("k", "run-1").await.expect("claim") else {
            panic!("not owned")
        };
        assert_eq!(run_id, "run-1");
        // A live claim is busy for everyone else, whatever run id they bring.
        assert!(matches!(
            c.claim("k", "run-2").await.expect("claim"),
            Claim::Busy { run_id, .. } if run_id == "run-1"
        ));
        // Released: the next delivery takes it at once, under the first run id.
        c.release("k", &etag, "run-1").await.expect("release");
        let Claim::Owned { etag, run_id } = c.claim("k", "run-2").await.expect("claim") else {
            panic!("not owned after release")
        };
        assert_eq!(run_id, "run-1");
        c.finish("k", &etag, &run_id, "DatasetReady")
            .await
            .expect("finish");
        assert_eq!(
            c.claim("k", "run-3").await.expect("claim"),
            Claim::Done {
                run_id: "run-1".into(),
                outcome: "DatasetReady".into()
            }
        );
    }

    #[tokio::test]
    async fn markers_written_by_data_arrival_before_this_module_still_read_as_done() {
        let store = MemoryStore::default();
        let old = br#"{"status":"done","run_id":"run-old","detail_type":"DatasetReady","done_at":"2026-11-30T00:00:00Z"}"#;
        store
            .put("b", "k", old.to_vec(), Precondition::Absent)
            .await
            .expect("seed");
        assert_eq!(
            claims(&store).claim("k", "run-new").await.expect("claim"),
            Claim::Done {
                run_id: "run-old".into(),
                outcome: "DatasetReady".into()
            }
        );
    }
}
