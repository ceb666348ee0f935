//! Where downloaded attachment files go: the `BlobStore` port and its S3 adapter.

use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

#[derive(Debug, thiserror::Error)]
#[error("blob store {op} of {key} failed: {detail}")]
pub struct BlobError {
    pub op: &'static str,
    pub key: String,
    pub detail: String,
}

/// Content-addressed file storage.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Whether an object exists under `key`.
    async fn exists(&self, key: &str) -> Result<bool, BlobError>;

    /// Upload the file at `path` (streamed from disk) under `key`.
    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        content_type: Option<&str>,
        sha256_hex: &str,
    ) -> Result<(), BlobError>;
}

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
            Err(e) => Err(BlobError {
                op: "HeadObject",
                key: key.into(),
                detail: detail(&e),
            }),
        }
    }

    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        content_type: Option<&str>,
        sha256_hex: &str,
    ) -> Result<(), BlobError> {
        let body = ByteStream::from_path(path).await.map_err(|e| BlobError {
            op: "read temp file",
            key: key.into(),
            detail: detail(&e),
        })?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body)
            .set_content_type(content_type.map(str::to_owned))
            .metadata("sha256", sha256_hex)
            .send()
            .await
            .map_err(|e| BlobError {
                op: "PutObject",
                key: key.into(),
                detail: detail(&e),
            })?;
        Ok(())
    }
}
