//! Object storage: the S3 adapter of the `BlobStore` port (`eds_core::attachments`,
//! re-exported here).

use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};

pub use eds_core::attachments::{BlobError, BlobStore, DELETE_BLOBS_MAX};

/// S3 adapter.
#[derive(Clone, Debug)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
}

impl S3BlobStore {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// Build from the shared SDK config. With a custom endpoint (`AWS_ENDPOINT_URL`, the
    /// local emulator) path-style addressing is used: the emulator cannot serve
    /// `bucket.host` virtual-host names.
    pub fn from_conf(conf: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        let mut b = aws_sdk_s3::config::Builder::from(conf);
        if conf.endpoint_url().is_some() {
            b = b.force_path_style(true);
        }
        Self::new(Client::from_conf(b.build()), bucket)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

/// The error of `op` on `key`, with the SDK's whole error chain as its detail.
fn failed<E: std::error::Error + 'static>(
    op: &'static str,
    key: &str,
) -> impl FnOnce(E) -> BlobError {
    move |e| BlobError {
        op,
        key: key.into(),
        detail: detail(&e),
    }
}

fn detail<E: std::error::Error + 'static>(e: &E) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            // HEAD responses have no body, so some 404s arrive as unmodelled errors.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
            Err(e) => Err(failed("HeadObject", key)(e)),
        }
    }

    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        content_type: Option<&str>,
        sha256_hex: &str,
    ) -> Result<(), BlobError> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(failed("read temp file", key))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body)
            .set_content_type(content_type.map(str::to_owned))
            .metadata("sha256", sha256_hex)
            .send()
            .await
            .map_err(failed("PutObject", key))?;
        Ok(())
    }

    async fn write_blob(&self, key: &str, body: Vec<u8>) -> Result<(), BlobError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .map_err(failed("PutObject", key))?;
        Ok(())
    }

    async fn read_blob(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) => {
                return Err(failed("GetObject", key)(e));
            }
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(failed("GetObject body", key))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn delete_blob(&self, key: &str) -> Result<(), BlobError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(failed("DeleteObject", key))?;
        Ok(())
    }

    async fn list_blobs(&self, prefix: &str, max: usize) -> Result<Vec<String>, BlobError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .max_keys(i32::try_from(max).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(failed("ListObjectsV2", prefix))?;
        Ok(out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect())
    }

    async fn delete_blobs(&self, keys: &[String]) -> Result<(), BlobError> {
        let err = |detail: String| BlobError {
            op: "DeleteObjects",
            key: keys.first().cloned().unwrap_or_default(),
            detail,
        };
        if keys.is_empty() {
            return Ok(());
        }
        if keys.len() > DELETE_BLOBS_MAX {
            return Err(err(format!(
                "{} keys, at most {DELETE_BLOBS_MAX}",
                keys.len()
            )));
        }
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(e.to_string()))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| err(e.to_string()))?;
        let out = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| err(detail(&e)))?;
        if let Some(first) = out.errors().first() {
            return Err(err(format!(
                "{} of {} objects not deleted: {}",
                out.errors().len(),
                keys.len(),
                first.code().unwrap_or("unknown error")
            )));
        }
        Ok(())
    }
}
