//! The narrow traits stages depend on. Each stage takes only the ports it uses, so its signature
//! states its least privilege, like its IAM policy. Real adapters and in-memory fakes live in
//! [`crate::adapter`].

use std::future::Future;
use std::path::Path;

use crate::error::{BusError, StoreError};
use crate::event::BusEvent;

/// Identifies one version of an object, as an S3 event names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
}

/// A small object read whole, with the ETag needed for a conditional overwrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub body: Vec<u8>,
    pub etag: String,
}

/// The precondition of a write; S3 conditional writes make markers and ledgers race-free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// Create only: `If-None-Match: *`.
    Absent,
    /// Overwrite only the version we read: `If-Match: <etag>`.
    Matches(String),
}

/// Outcome of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Ok { etag: String },
    PreconditionFailed,
}

pub trait ObjectStore: Send + Sync {
    /// Streams one exact object version to a local file, failing with `TooLarge` past `max_bytes`
    /// and with `NotFound`/`Changed` when that version is gone. Memory stays flat.
    fn download(
        &self,
        object: &ObjectVersion,
        dest: &Path,
        max_bytes: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Uploads a local file (streamed from disk).
    fn upload_file(
        &self,
        bucket: &str,
        key: &str,
        src: &Path,
        content_type: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads a small object whole; `None` when it does not exist.
    fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Fetched>, StoreError>> + Send;

    /// Writes a small object under a precondition.
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        precondition: Precondition,
    ) -> impl Future<Output = Result<Written, StoreError>> + Send;

    /// Keys under a prefix, in lexicographic order, at most `limit`.
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

pub trait EventBus: Send + Sync {
    /// Puts events on the bus; succeeds only when every entry was accepted.
    fn put(&self, events: &[BusEvent]) -> impl Future<Output = Result<(), BusError>> + Send;
}
