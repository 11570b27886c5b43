//! Stage 1: an object landed in S3 → a clean, split dataset version → `DatasetReady`
//! (or `DatasetRejected` when the object cannot become a dataset).
//!
//! Idempotency: the key is the object version (bucket, key, version id or ETag). A claim marker,
//! created with `If-None-Match: *`, lets exactly one invocation process a version; it carries the
//! run id, so a takeover after a crash re-emits under the same run. A redelivery after the event
//! was put finds the marker `done` and emits nothing. A concurrent duplicate finds a live claim
//! and asks to be retried later, by which time the marker is done.
//!
//! Each ready version also moves the dataset's `latest` pointer ([`crate::stage::latest`]) if it
//! is newer than the one there (by the source object's arrival time).

use std::path::PathBuf;
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use tracing::{Instrument, info, warn};

mod claim;

use super::claim::{Claim, Claims};

use super::latest;
use super::prepare::{self, Manifest, PrepareError, Prepared};
use crate::config::{DatasetConfig, PipelineConfig};
use crate::error::{BusError, Classify, ErrorClass, StoreError};
use crate::event::{
    BusEvent, DatasetReady, DatasetRejected, Reason, S3ObjectDetail, SCHEMA_VERSION, SourceObject,
};
use crate::port::{EventBus, ObjectStore, ObjectVersion, Precondition};

/// Where the stage writes and how it coordinates.
#[derive(Debug, Clone)]
pub struct Settings {
    pub artifact_bucket: String,
    pub processed_prefix: String,
    pub state_prefix: String,
    pub work_dir: PathBuf,
    pub claim_lease: Duration,
    pub limits: prepare::Limits,
}

impl From<&crate::config::DataArrivalSettings> for Settings {
    fn from(s: &crate::config::DataArrivalSettings) -> Self {
        Settings {
            artifact_bucket: s.artifact_bucket.clone(),
            processed_prefix: s.processed_prefix.clone(),
            state_prefix: s.state_prefix.clone(),
            work_dir: s.work_dir.clone(),
            claim_lease: s.claim_lease,
            limits: prepare::Limits {
                max_table_bytes: s.table_memory,
                ..Default::default()
            },
        }
    }
}

/// What handling one event came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Not ours: another detail-type, or a key under no configured prefix.
    Ignored(String),
    /// This object version was already handled; nothing was emitted again.
    Duplicate {
        run_id: String,
    },
    Ready(DatasetReady),
    Rejected(DatasetRejected),
}

#[derive(Debug, thiserror::Error)]
pub enum DataArrivalError {
    #[error("event is not an S3 object event: {0}")]
    BadEvent(#[source] serde_json::Error),
    #[error(
        "s3://{bucket}/{key} is being processed by another invocation (run {run_id}, claimed at {claimed_at})"
    )]
    InProgress {
        bucket: String,
        key: String,
        run_id: String,
        claimed_at: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("preparing s3://{bucket}/{key}")]
    Local {
        bucket: String,
        key: String,
        #[source]
        source: Box<PrepareError>,
    },
    #[error("preparation task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Latest(crate::stage::latest::LatestError),
    #[error("claim marker {key} is unreadable")]
    Marker {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Classify for DataArrivalError {
    fn class(&self) -> ErrorClass {
        match self {
            // A body that is not an S3 event cannot become a DatasetRejected (there is no
            // dataset); it is retried and lands in the DLQ, so nothing is lost.
            DataArrivalError::BadEvent(_) => ErrorClass::Transient,
            DataArrivalError::Store(e) => e.class(),
            DataArrivalError::Bus(e) => e.class(),
            DataArrivalError::Latest(e) => e.class(),
            _ => ErrorClass::Transient,
        }
    }
}

pub struct DataArrival<'a, S, B> {
    pub pipeline: &'a PipelineConfig,
    pub settings: &'a Settings,
    pub store: &'a S,
    pub bus: &'a B,
}

impl<S: ObjectStore, B: EventBus> DataArrival<'_, S, B> {
    /// Handles one EventBridge event (as delivered in an SQS body).
    pub async fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
    ) -> Result<Outcome, DataArrivalError> {
        if event.source != "aws.s3" || event.detail_type != "Object Created" {
            return Ok(Outcome::Ignored(format!(
                "{} {} is not an object creation",
                event.source, event.detail_type
            )));
        }
        let detail: S3ObjectDetail =
            serde_json::from_value(event.detail.clone()).map_err(DataArrivalError::BadEvent)?;
        let Some((dataset, cfg)) = self.pipeline.dataset_for_key(&detail.object.key) else {
            info!(bucket = %detail.bucket.name, key = %detail.object.key, "object under no configured prefix; ignored");
            return Ok(Outcome::Ignored(format!(
                "{} is under no configured dataset prefix",
                detail.object.key
            )));
        };
        let source = SourceObject {
            bucket: detail.bucket.name.clone(),
            key: detail.object.key.clone(),
            etag: detail.object.etag.clone(),
            version_id: detail.object.version_id.clone(),
            size: detail.object.size,
        };
        let marker_key = self.marker_key(&source);
        let claims = self.claims();
        let (run_id, claim_etag) = match claims
            .claim(&marker_key, &crate::event::new_run_id())
            .await?
        {
            Claim::Owned { etag, run_id } => (run_id, etag),
            Claim::Done { run_id, .. } => {
                info!(%run_id, key = %source.key, "object version already handled; duplicate delivery");
                return Ok(Outcome::Duplicate { run_id });
            }
            Claim::Busy { run_id, claimed_at } => {
                return Err(DataArrivalError::InProgress {
                    bucket: source.bucket,
                    key: source.key,
                    run_id,
                    claimed_at,
                });
            }
        };
        let span = tracing::info_span!("dataset", %run_id, %dataset, key = %source.key);
        let arrived_at = event.time.unwrap_or_else(chrono::Utc::now);
        match self
            .finish(
                &run_id,
                dataset,
                cfg,
                &source,
                (&marker_key, &claim_etag),
                arrived_at,
            )
            .instrument(span)
            .await
        {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                // Release the claim (keeping the run id) so the retry need not wait out the lease.
                if let Err(r) = claims.release(&marker_key, &claim_etag, &run_id).await {
                    warn!(%run_id, error = %r, "could not release the claim; the retry waits for the lease");
                }
                Err(e)
            }
        }
    }

    fn claims(&self) -> Claims<'_, S> {
        Claims {
            store: self.store,
            bucket: &self.settings.artifact_bucket,
            lease: self.settings.claim_lease,
        }
    }

    async fn finish(
        &self,
        run_id: &str,
        dataset: &str,
        cfg: &DatasetConfig,
        source: &SourceObject,
        (marker_key, claim_etag): (&str, &str),
        arrived_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Outcome, DataArrivalError> {
        let (event, outcome) = match self.process(run_id, dataset, cfg, source).await? {
            Decision::Ready(r) => {
                // Before the event: a code push right after it retrains on this version.
                let candidate = latest::Latest {
                    arrived_at,
                    ready: r.clone(),
                };
                let moved = latest::advance(
                    self.store,
                    &self.settings.artifact_bucket,
                    &self.settings.state_prefix,
                    &candidate,
                )
                .await
                .map_err(DataArrivalError::Latest)?;
                info!(version = %r.version, moved, "latest pointer");
                (BusEvent::new(&r), Outcome::Ready(r))
            }
            Decision::Rejected(r) => (BusEvent::new(&r), Outcome::Rejected(r)),
        };
        let event = event.map_err(|source| DataArrivalError::Marker {
            key: marker_key.to_owned(),
            source,
        })?;
        self.bus.put(std::slice::from_ref(&event)).await?;
        // The event is out; a failure here must not fail the message (that would emit twice).
        if let Err(e) = self
            .claims()
            .finish(marker_key, claim_etag, run_id, &event.detail_type)
            .await
        {
            warn!(%run_id, error = %e, "event emitted but the claim could not be marked done");
        }
        Ok(outcome)
    }

    async fn process(
        &self,
        run_id: &str,
        dataset: &str,
        cfg: &DatasetConfig,
        source: &SourceObject,
    ) -> Result<Decision, DataArrivalError> {
        let reject = |reason: Reason| {
            warn!(code = %reason.code, message = %reason.message, "dataset rejected");
            Ok(Decision::Rejected(DatasetRejected {
                schema_version: SCHEMA_VERSION.into(),
                run_id: run_id.to_owned(),
                dataset: dataset.to_owned(),
                source: source.clone(),
                reasons: vec![reason],
            }))
        };
        if let Some(size) = source.size.filter(|s| *s > cfg.max_bytes) {
            return reject(too_large(size, cfg.max_bytes));
        }
        let work = tempfile::Builder::new()
            .prefix("mlops-")
            .tempdir_in(&self.settings.work_dir)
            .map_err(|e| {
                self.local(
                    source,
                    PrepareError::Io {
                        path: self.settings.work_dir.clone(),
                        source: e,
                    },
                )
            })?;
        let input = work.path().join("input");
        let object = ObjectVersion {
            bucket: source.bucket.clone(),
            key: source.key.clone(),
            version_id: source.version_id.clone(),
            etag: source.etag.clone(),
        };
        match self.store.download(&object, &input, cfg.max_bytes).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                return reject(reason(
                    "object_deleted",
                    format!(
                        "s3://{}/{} was deleted before it could be processed",
                        source.bucket, source.key
                    ),
                ));
            }
            Err(StoreError::Changed { .. }) => {
                return reject(reason(
                    "object_changed",
                    format!(
                        "s3://{}/{} was replaced before it could be processed; the new version has its own event",
                        source.bucket, source.key
                    ),
                ));
            }
            Err(StoreError::TooLarge { limit, .. }) => {
                return reject(too_large(source.size.unwrap_or(limit + 1), limit));
            }
            Err(e) => return Err(e.into()),
        }
        let out_dir = work.path().join("out");
        let cfg_owned = cfg.clone();
        let limits = self.settings.limits.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            prepare::prepare_file(&cfg_owned, &input, &out_dir, &limits)
        })
        .await
        .map_err(DataArrivalError::Task)?;
        let prepared = match prepared {
            Ok(p) => p,
            Err(PrepareError::Rejected(r)) => return reject(r),
            Err(e) => return Err(self.local(source, e)),
        };
        let ready = self
            .publish(run_id, dataset, cfg, source, &prepared)
            .await?;
        info!(version = %ready.version, train = ready.counts.train, test = ready.counts.test, "dataset ready");
        Ok(Decision::Ready(ready))
    }

    /// Uploads train/test and then the manifest; the manifest is written last and only once, so
    /// its presence means the version is complete and a second upload is skipped.
    async fn publish(
        &self,
        run_id: &str,
        dataset: &str,
        cfg: &DatasetConfig,
        source: &SourceObject,
        p: &Prepared,
    ) -> Result<DatasetReady, DataArrivalError> {
        let bucket = &self.settings.artifact_bucket;
        let base = format!(
            "{}{}/{}/",
            self.settings.processed_prefix, dataset, p.version
        );
        let (train_name, test_name) = prepare::output_names(p.format);
        let uri = |name: &str| format!("s3://{bucket}/{base}{name}");
        let manifest_key = format!("{base}manifest.json");
        if self.store.get(bucket, &manifest_key).await?.is_none() {
            let ctype = match p.format {
                crate::config::Format::Csv => "text/csv",
                crate::config::Format::Parquet => "application/vnd.apache.parquet",
            };
            self.store
                .upload_file(bucket, &format!("{base}{train_name}"), &p.train, ctype)
                .await?;
            self.store
                .upload_file(bucket, &format!("{base}{test_name}"), &p.test, ctype)
                .await?;
            let mut manifest = Manifest::new(dataset, cfg, p, uri(&train_name), uri(&test_name));
            manifest.source = Some(source.clone());
            manifest.run_id = Some(run_id.to_owned());
            let body = serde_json::to_vec_pretty(&manifest).map_err(|source| {
                DataArrivalError::Marker {
                    key: manifest_key.clone(),
                    source,
                }
            })?;
            // Lost race: another object with identical content wrote the same version first.
            let _ = self
                .store
                .put(bucket, &manifest_key, body, Precondition::Absent)
                .await?;
        }
        Ok(DatasetReady {
            schema_version: SCHEMA_VERSION.into(),
            run_id: run_id.to_owned(),
            dataset: dataset.to_owned(),
            version: p.version.clone(),
            format: p.format.extension().to_owned(),
            train_uri: uri(&train_name),
            test_uri: uri(&test_name),
            manifest_uri: uri("manifest.json"),
            counts: p.counts,
            source: source.clone(),
            model: cfg.model.clone(),
        })
    }

    fn local(&self, s: &SourceObject, source: PrepareError) -> DataArrivalError {
        DataArrivalError::Local {
            bucket: s.bucket.clone(),
            key: s.key.clone(),
            source: Box::new(source),
        }
    }
}

/// What processing decided; each becomes exactly one event.
enum Decision {
    Ready(DatasetReady),
    Rejected(DatasetRejected),
}

fn reason(code: &str, message: String) -> Reason {
    Reason {
        code: code.into(),
        message,
        column: None,
        line: None,
    }
}

fn too_large(size: u64, limit: u64) -> Reason {
    reason(
        "too_large",
        format!("the object is {size} bytes, over the dataset's max_bytes of {limit}"),
    )
}

#[cfg(test)]
mod tests;
