//! [`ObjectStore`] over Amazon S3 (and moto): streaming downloads of one exact object version,
//! multipart uploads from disk, and conditional writes for markers and the ledger.

use std::path::Path;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::io::AsyncWriteExt;

use crate::error::StoreError;
use crate::port::{Fetched, ObjectStore, ObjectVersion, Precondition, Written};

/// Files above this size are uploaded in parts (a single PUT stops at 5 GiB).
const MULTIPART_ABOVE: u64 = 64 << 20;
const PART_SIZE: u64 = 64 << 20;

#[derive(Clone)]
pub struct S3Store {
    client: Client,
}

impl S3Store {
    pub fn new(client: Client) -> Self {
        S3Store { client }
    }
}

fn quoted(etag: &str) -> String {
    if etag.starts_with('"') {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

fn unquoted(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_owned()
}

impl ObjectStore for S3Store {
    async fn download(
        &self,
        o: &ObjectVersion,
        dest: &Path,
        max_bytes: u64,
    ) -> Result<u64, StoreError> {
        // Read the current object, pinned to the event's ETag: a delete shows as 404 and a
        // replacement as 412, so neither is mistaken for the data the event announced.
        let mut req = self.client.get_object().bucket(&o.bucket).key(&o.key);
        if let Some(etag) = &o.etag {
            req = req.if_match(quoted(etag));
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let code = e.code().map(str::to_owned);
                let st = e.raw_response().map(|r| r.status().as_u16());
                return Err(match (st, code.as_deref()) {
                    (Some(404), _) | (_, Some("NoSuchKey")) => StoreError::NotFound {
                        bucket: o.bucket.clone(),
                        key: o.key.clone(),
                    },
                    (Some(412), _) | (_, Some("PreconditionFailed")) => StoreError::Changed {
                        bucket: o.bucket.clone(),
                        key: o.key.clone(),
                    },
                    _ => StoreError::io("GetObject", &o.bucket, &o.key, e),
                });
            }
        };
        if let (Some(want), Some(got)) = (&o.version_id, resp.version_id())
            && want != got
        {
            return Err(StoreError::Changed {
                bucket: o.bucket.clone(),
                key: o.key.clone(),
            });
        }
        if resp.content_length().is_some_and(|n| n as u64 > max_bytes) {
            return Err(StoreError::TooLarge {
                bucket: o.bucket.clone(),
                key: o.key.clone(),
                limit: max_bytes,
            });
        }
        let io =
            |e: std::io::Error| StoreError::io("GetObject (write to disk)", &o.bucket, &o.key, e);
        let mut file = tokio::io::BufWriter::with_capacity(
            1 << 20,
            tokio::fs::File::create(dest).await.map_err(io)?,
        );
        let mut body = resp.body;
        let mut total = 0u64;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| StoreError::io("GetObject (stream)", &o.bucket, &o.key, e))?
        {
            total += chunk.len() as u64;
            if total > max_bytes {
                return Err(StoreError::TooLarge {
                    bucket: o.bucket.clone(),
                    key: o.key.clone(),
                    limit: max_bytes,
                });
            }
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        Ok(total)
    }

    async fn upload_file(
        &self,
        bucket: &str,
        key: &str,
        src: &Path,
        content_type: &str,
    ) -> Result<(), StoreError> {
        let io = |e: std::io::Error| StoreError::io("PutObject (read file)", bucket, key, e);
        let size = tokio::fs::metadata(src).await.map_err(io)?.len();
        if size <= MULTIPART_ABOVE {
            let body = ByteStream::from_path(src)
                .await
                .map_err(|e| StoreError::io("PutObject", bucket, key, e))?;
            self.client
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type(content_type)
                .body(body)
                .send()
                .await
                .map_err(|e| StoreError::io("PutObject", bucket, key, e))?;
            return Ok(());
        }
        let up = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| StoreError::io("CreateMultipartUpload", bucket, key, e))?;
        let upload_id = up.upload_id().unwrap_or_default().to_owned();
        let result = self.upload_parts(bucket, key, src, size, &upload_id).await;
        if result.is_err() {
            // Don't leave billable parts behind; the retry starts a new upload.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Fetched>, StoreError> {
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(resp) => {
                let etag = unquoted(resp.e_tag());
                let body = resp
                    .body
                    .collect()
                    .await
                    .map_err(|e| StoreError::io("GetObject (read)", bucket, key, e))?
                    .into_bytes()
                    .to_vec();
                Ok(Some(Fetched { body, etag }))
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(StoreError::io("GetObject", bucket, key, e)),
        }
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        pre: Precondition,
    ) -> Result<Written, StoreError> {
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        req = match pre {
            Precondition::None => req,
            Precondition::Absent => req.if_none_match("*"),
            Precondition::Matches(etag) => req.if_match(quoted(&etag)),
        };
        match req.send().await {
            Ok(r) => Ok(Written::Ok {
                etag: unquoted(r.e_tag()),
            }),
            // 409 ConditionalRequestConflict: a concurrent conditional write won.
            Err(e)
                if e.raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 412 | 409)) =>
            {
                Ok(Written::PreconditionFailed)
            }
            Err(e) => Err(StoreError::io("PutObject", bucket, key, e)),
        }
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let resp = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| StoreError::io("ListObjectsV2", bucket, prefix, e))?;
            out.extend(
                resp.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            if out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            match resp.next_continuation_token() {
                Some(t) if resp.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }
}

impl S3Store {
    async fn upload_parts(
        &self,
        bucket: &str,
        key: &str,
        src: &Path,
        size: u64,
        upload_id: &str,
    ) -> Result<(), StoreError> {
        let mut parts = Vec::new();
        let mut offset = 0u64;
        let mut number = 1i32;
        while offset < size {
            let len = PART_SIZE.min(size - offset);
            let body = ByteStream::read_from()
                .path(src)
                .offset(offset)
                .length(Length::Exact(len))
                .build()
                .await
                .map_err(|e| StoreError::io("UploadPart (read file)", bucket, key, e))?;
            let part = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(body)
                .send()
                .await
                .map_err(|e| StoreError::io("UploadPart", bucket, key, e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag().map(str::to_owned))
                    .build(),
            );
            offset += len;
            number += 1;
        }
        self.client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| StoreError::io("CompleteMultipartUpload", bucket, key, e))?;
        Ok(())
    }
}
