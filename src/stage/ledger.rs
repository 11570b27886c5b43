//! The ledger: every `mlops.*` event is appended to its run's history in S3, one object per event
//! (`<prefix>runs/<run_id>/<time>_<event id>.json`), written with `If-None-Match: *` so a
//! redelivery is a no-op. A time-ordered index (`<prefix>recent/`) lets `mlops runs` list the
//! newest runs without scanning every history.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde::{Deserialize, Serialize};

use crate::error::{Classify, ErrorClass, StoreError};
use crate::port::{ObjectStore, Precondition, Written};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger entry is not valid JSON")]
    Encode(#[source] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for LedgerError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Transient
    }
}

/// How one event was filed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filed {
    New {
        key: String,
    },
    Duplicate {
        key: String,
    },
    /// Not a pipeline event (its source is not `mlops.*`).
    Ignored,
}

/// One line of a run's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub time: String,
    pub source: String,
    pub detail_type: String,
    pub event_id: String,
    pub detail: serde_json::Value,
}

/// A run in the recent-runs index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: String,
    pub time: String,
    pub last_event: String,
}

pub struct Ledger<'a, S> {
    pub store: &'a S,
    pub bucket: &'a str,
    pub prefix: &'a str,
}

/// Events without a run id are filed here, so nothing is lost.
pub const UNFILED_RUN: &str = "unfiled";

impl<S: ObjectStore> Ledger<'_, S> {
    pub async fn append(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
    ) -> Result<Filed, LedgerError> {
        if !event.source.starts_with("mlops.") {
            return Ok(Filed::Ignored);
        }
        let run_id = event
            .detail
            .get("run_id")
            .and_then(|v| v.as_str())
            .filter(|r| valid_run_id(r))
            .unwrap_or(UNFILED_RUN);
        let time = event.time.unwrap_or_else(chrono::Utc::now);
        let event_id = event.id.clone().unwrap_or_else(|| {
            // PutEvents always assigns one; derive a stable id from the content otherwise.
            let h = xxhash_rust::xxh3::xxh3_64(event.detail.to_string().as_bytes());
            format!("content-{h:016x}")
        });
        let entry = Entry {
            time: time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            source: event.source.clone(),
            detail_type: event.detail_type.clone(),
            event_id: event_id.clone(),
            detail: event.detail.clone(),
        };
        let key = format!(
            "{}runs/{}/{}_{}.json",
            self.prefix,
            run_id,
            time.format("%Y%m%dT%H%M%S%.3fZ"),
            sanitize(&event_id)
        );
        let body = serde_json::to_vec(&entry).map_err(LedgerError::Encode)?;
        let written = self
            .store
            .put(self.bucket, &key, body, Precondition::Absent)
            .await?;
        // The index entry is written even for a duplicate: the first attempt may have stopped
        // between the two writes.
        let inverted = 9_999_999_999_999i64 - time.timestamp_millis();
        let index_key = format!(
            "{}recent/{inverted:013}_{run_id}_{}",
            self.prefix,
            sanitize(&event_id)
        );
        let summary = RunSummary {
            run_id: run_id.to_owned(),
            time: entry.time.clone(),
            last_event: entry.detail_type.clone(),
        };
        let body = serde_json::to_vec(&summary).map_err(LedgerError::Encode)?;
        self.store
            .put(self.bucket, &index_key, body, Precondition::Absent)
            .await?;
        Ok(match written {
            Written::Ok { .. } => Filed::New { key },
            Written::PreconditionFailed => Filed::Duplicate { key },
        })
    }

    /// A run's events in time order.
    pub async fn timeline(&self, run_id: &str) -> Result<Vec<Entry>, LedgerError> {
        let prefix = format!("{}runs/{}/", self.prefix, run_id);
        let keys = self.store.list(self.bucket, &prefix, 10_000).await?;
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(f) = self.store.get(self.bucket, &k).await?
                && let Ok(e) = serde_json::from_slice::<Entry>(&f.body)
            {
                out.push(e);
            }
        }
        out.sort_by(|a, b| {
            let rank = |e: &Entry| crate::event::pipeline_order(&e.detail_type);
            a.time
                .cmp(&b.time)
                .then(rank(a).cmp(&rank(b)))
                .then(a.event_id.cmp(&b.event_id))
        });
        Ok(out)
    }

    /// The newest runs first, each with its latest event.
    pub async fn recent(&self, limit: usize) -> Result<Vec<RunSummary>, LedgerError> {
        let prefix = format!("{}recent/", self.prefix);
        let keys = self.store.list(self.bucket, &prefix, 1000).await?;
        let mut out: Vec<RunSummary> = Vec::new();
        for k in keys {
            let rest = &k[prefix.len()..];
            let Some(run) = rest
                .get(14..)
                .and_then(|r| r.rsplit_once('_'))
                .map(|(run, _)| run)
            else {
                continue;
            };
            if out.iter().any(|s| s.run_id == run) {
                continue;
            }
            if let Some(f) = self.store.get(self.bucket, &k).await?
                && let Ok(s) = serde_json::from_slice::<RunSummary>(&f.body)
            {
                out.push(s);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

fn valid_run_id(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 128
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
