//! The claim marker that makes data-arrival idempotent: one object per object version under
//! `<state prefix>data-arrival/objects/`, created with `If-None-Match: *` and moved through its
//! states with `If-Match`, so concurrent invocations agree on who processes the version.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::warn;

use super::{DataArrival, DataArrivalError};
use crate::event::SourceObject;
use crate::port::{EventBus, ObjectStore, Precondition, Written};
use crate::stage::{lease_expired, now_rfc3339 as now};

/// `claimed_at` of a released claim: expired for every lease.
pub(super) const RELEASED: &str = "1970-01-01T00:00:00Z";

/// The claim marker's states.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(super) enum Marker {
    Claimed {
        run_id: String,
        claimed_at: String,
    },
    Done {
        run_id: String,
        detail_type: String,
        done_at: String,
    },
}

impl<S: ObjectStore, B: EventBus> DataArrival<'_, S, B> {
    pub(super) fn marker_key(&self, s: &SourceObject) -> String {
        // Version id and ETag together: unversioned buckets report version id "null" for every
        // write, so only the ETag tells an overwrite with new content apart.
        let mut h = Sha256::new();
        let parts = [
            s.bucket.as_str(),
            s.key.as_str(),
            s.version_id.as_deref().unwrap_or(""),
            s.etag.as_deref().unwrap_or(""),
        ];
        for part in parts {
            h.update(part.as_bytes());
            h.update([0]);
        }
        format!(
            "{}data-arrival/objects/{}.json",
            self.settings.state_prefix,
            hex::encode(h.finalize())
        )
    }

    /// Claims the object version: `Some((run_id, marker etag))` when this invocation owns it,
    /// `None` when it was already handled.
    pub(super) async fn claim(
        &self,
        key: &str,
        source: &SourceObject,
    ) -> Result<Option<(String, String)>, DataArrivalError> {
        let bucket = &self.settings.artifact_bucket;
        // Two rounds cover the only race: the marker changing between our read and our write.
        for _ in 0..3 {
            match self.store.get(bucket, key).await? {
                None => {
                    let run_id = crate::event::new_run_id();
                    let m = Marker::Claimed {
                        run_id: run_id.clone(),
                        claimed_at: now(),
                    };
                    if let Written::Ok { etag } =
                        self.put_marker(key, &m, Precondition::Absent).await?
                    {
                        return Ok(Some((run_id, etag)));
                    }
                }
                Some(f) => match parse_marker(key, &f.body)? {
                    Marker::Done { .. } => return Ok(None),
                    Marker::Claimed { run_id, claimed_at } => {
                        if !lease_expired(&claimed_at, self.settings.claim_lease) {
                            return Err(DataArrivalError::InProgress {
                                bucket: source.bucket.clone(),
                                key: source.key.clone(),
                                run_id,
                                claimed_at,
                            });
                        }
                        warn!(%run_id, %claimed_at, "taking over an expired claim");
                        let m = Marker::Claimed {
                            run_id: run_id.clone(),
                            claimed_at: now(),
                        };
                        if let Written::Ok { etag } = self
                            .put_marker(key, &m, Precondition::Matches(f.etag))
                            .await?
                        {
                            return Ok(Some((run_id, etag)));
                        }
                    }
                },
            }
        }
        Err(DataArrivalError::InProgress {
            bucket: source.bucket.clone(),
            key: source.key.clone(),
            run_id: "unknown".into(),
            claimed_at: "contended".into(),
        })
    }

    pub(super) async fn marker_run_id(&self, key: &str) -> Result<String, DataArrivalError> {
        Ok(
            match self.store.get(&self.settings.artifact_bucket, key).await? {
                Some(f) => match parse_marker(key, &f.body)? {
                    Marker::Done { run_id, .. } | Marker::Claimed { run_id, .. } => run_id,
                },
                None => String::new(),
            },
        )
    }

    pub(super) async fn put_marker(
        &self,
        key: &str,
        m: &Marker,
        pre: Precondition,
    ) -> Result<Written, DataArrivalError> {
        let body = serde_json::to_vec(m).map_err(|source| DataArrivalError::Marker {
            key: key.to_owned(),
            source,
        })?;
        Ok(self
            .store
            .put(&self.settings.artifact_bucket, key, body, pre)
            .await?)
    }
}

fn parse_marker(key: &str, body: &[u8]) -> Result<Marker, DataArrivalError> {
    serde_json::from_slice(body).map_err(|source| DataArrivalError::Marker {
        key: key.to_owned(),
        source,
    })
}
