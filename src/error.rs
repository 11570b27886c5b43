//! The two kinds of failure every stage distinguishes (ARCHITECTURE §3, rule 2).
//!
//! *Permanent* problems are the input's fault: the stage turns them into a `…Rejected`/`…Failed`
//! event and acks the message. *Transient* ones (throttling, 5xx, timeouts, a competing invocation)
//! are reported as a batch item failure so SQS redelivers the message, ending in the DLQ after a
//! bounded number of receives.

use std::error::Error as StdError;

/// Boxed cause of an I/O failure, kept whole (never flattened into a string).
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Whether retrying the same message can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Permanent,
    Transient,
}

/// Implemented by every error that can end a message's processing.
pub trait Classify {
    fn class(&self) -> ErrorClass;
}

/// Object store failures, with the object they concern.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("s3://{bucket}/{key} does not exist")]
    NotFound { bucket: String, key: String },
    #[error("s3://{bucket}/{key} changed since the event (version or ETag no longer matches)")]
    Changed { bucket: String, key: String },
    #[error("s3://{bucket}/{key} is larger than the limit of {limit} bytes")]
    TooLarge {
        bucket: String,
        key: String,
        limit: u64,
    },
    #[error("{op} s3://{bucket}/{key} failed")]
    Io {
        op: &'static str,
        bucket: String,
        key: String,
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    pub fn io(
        op: &'static str,
        bucket: &str,
        key: &str,
        source: impl Into<BoxError>,
    ) -> StoreError {
        StoreError::Io {
            op,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            source: source.into(),
        }
    }
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::NotFound { .. }
            | StoreError::Changed { .. }
            | StoreError::TooLarge { .. } => ErrorClass::Permanent,
            StoreError::Io { .. } => ErrorClass::Transient,
        }
    }
}

/// Event bus failures. Every one of them is transient for the message being handled: the
/// message was fine, the bus (or its configuration) was not.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("PutEvents to bus {bus} failed")]
    Put {
        bus: String,
        #[source]
        source: BoxError,
    },
    #[error(
        "PutEvents to bus {bus}: {failed} entries still failing after retries (first: {first})"
    )]
    EntriesFailed {
        bus: String,
        failed: usize,
        first: String,
    },
    #[error("event {detail_type} is {size} bytes, over EventBridge's 256 KB entry limit")]
    TooLarge { detail_type: String, size: usize },
}

impl Classify for BusError {
    fn class(&self) -> ErrorClass {
        match self {
            BusError::TooLarge { .. } => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        }
    }
}

/// A Git remote operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{url} is not a usable Git remote: {reason}")]
    BadRemote { url: String, reason: String },
    /// The server refused the credentials (HTTP 401/403): retrying cannot help.
    #[error("{remote}: {message}")]
    Refused { remote: String, message: String },
    #[error("{remote}: branch {branch} does not exist")]
    NoBranch { remote: String, branch: String },
    #[error("{remote}: commit {commit} is not on the branch")]
    UnknownCommit { remote: String, commit: String },
    #[error("{remote}: reverting {commit} conflicts with later changes; revert it by hand")]
    Conflict { remote: String, commit: String },
    /// A compare-and-swap change found the file changed since the caller read it.
    #[error("{remote}: {path} changed since it was read; decide again on the new content")]
    Stale { remote: String, path: String },
    #[error("{path:?} is not a valid path inside the repository")]
    BadPath { path: String },
    #[error("{remote}: the push lost the race to other commits {attempts} times in a row")]
    Contended {
        remote: String,
        branch: String,
        attempts: u32,
    },
    #[error("{remote}: {op}: {message}")]
    Git {
        remote: String,
        op: &'static str,
        message: String,
    },
    #[error("the Git task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl Classify for GitError {
    fn class(&self) -> ErrorClass {
        match self {
            GitError::Contended { .. }
            | GitError::Stale { .. }
            | GitError::Git { .. }
            | GitError::Task(_) => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }
}
