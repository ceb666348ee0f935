//! Files: the blob store port, where the attachment files (and the puller's
//! reconciliation state, and a deletion's sweep) go, and the port a pull gets a
//! record's files through. The adapters (S3, the SSRF-guarded HTTP fetcher) are in
//! `eds_shared::attachments`.

use std::net::IpAddr;
use std::path::Path;

use async_trait::async_trait;

use crate::domain::ids::TenantId;

/// Default size cap of one attachment.
pub const DEFAULT_MAX_BYTES: u64 = 25 * 1024 * 1024;

/// A file kept in the blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// `tenants/{tenant}/attachments/sha256/{hex}`.
    pub key: String,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    pub size: u64,
    pub content_type: Option<String>,
    /// The object was already there (same content stored before); nothing uploaded.
    pub already_stored: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    #[error("attachment URL is not a valid absolute URL")]
    BadUrl,
    #[error(transparent)]
    Refused(#[from] GuardError),
    #[error(
        "attachment link {url} was refused with HTTP {status}: signed links expire (7 days); \
         list the attachment again for a fresh link"
    )]
    LinkExpired { url: String, status: u16 },
    #[error(
        "attachment {url} is an API download but is not on the tenant's API origin: refused \
         (the tenant's credential goes to that origin only)"
    )]
    NotApiOrigin { url: String },
    #[error("attachment {url}: the ATS refused the tenant's credential for the download")]
    Unauthorized { url: String },
    /// 429 or 5xx: worth asking again after `wait`.
    #[error("attachment {url} answered HTTP {status}: retry later")]
    RetryLater {
        url: String,
        status: u16,
        wait: std::time::Duration,
    },
    #[error("attachment {url} no longer exists (HTTP 404)")]
    NotFound { url: String },
    #[error("attachment {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("attachment {url} redirected more than {max} times")]
    TooManyRedirects { url: String, max: u8 },
    #[error("attachment {url} redirected without a usable Location header")]
    BadRedirect { url: String },
    #[error("attachment {url} is larger than the {max} byte cap")]
    TooLarge { url: String, max: u64 },
    #[error("attachment {url} download failed: {detail}")]
    Network { url: String, detail: String },
    #[error("attachment temporary file: {0}")]
    TempFile(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl AttachmentError {
    /// Worth retrying in a later attempt of the same job.
    pub fn is_retryable(&self) -> bool {
        match self {
            AttachmentError::Network { .. }
            | AttachmentError::Blob(_)
            | AttachmentError::RetryLater { .. } => true,
            AttachmentError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// Where a pull gets a record's files: downloads a (signed, expiring) link and keeps the
/// file in the blob store. The adapter is [`AttachmentFetcher`] (HTTP, SSRF-guarded).
#[async_trait]
pub trait AttachmentSource: Send + Sync {
    /// Download the file `file` names (its URL is a secret: signed links are
    /// credentials; an API call carries the tenant's credential) and store it for
    /// `tenant`, content-addressed.
    async fn fetch_and_store_ref(
        &self,
        tenant: &TenantId,
        file: &crate::connector::AttachmentRef,
    ) -> Result<StoredFile, AttachmentError>;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    #[error("attachment URL scheme {0:?} is not allowed (https only)")]
    Scheme(String),
    #[error("attachment URL has no host")]
    NoHost,
    #[error("attachment URL carries user credentials: refused")]
    UserInfo,
    #[error("attachment host {0} is not in the allowed host list")]
    HostNotAllowed(String),
    #[error("attachment host {host} resolves to {ip}, a {why} address: refused")]
    ForbiddenAddress {
        host: String,
        ip: IpAddr,
        why: &'static str,
    },
    #[error("attachment host {host} could not be resolved: {detail}")]
    Resolve { host: String, detail: String },
}

#[derive(Debug, thiserror::Error)]
#[error("blob store {op} of {key} failed: {detail}")]
pub struct BlobError {
    pub op: &'static str,
    pub key: String,
    pub detail: String,
}

/// Most keys [`BlobStore::delete_blobs`] takes at once (S3's `DeleteObjects` limit).
pub const DELETE_BLOBS_MAX: usize = 1000;

/// Object storage keyed by path-like keys.
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

    /// Store `body` under `key`, replacing what was there.
    async fn write_blob(&self, key: &str, body: Vec<u8>) -> Result<(), BlobError>;

    /// The object under `key`; `None` when there is none.
    async fn read_blob(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError>;

    /// Delete the object under `key` (no error when there is none).
    async fn delete_blob(&self, key: &str) -> Result<(), BlobError>;

    /// Up to `max` keys under `prefix`, in key order from the first.
    async fn list_blobs(&self, prefix: &str, max: usize) -> Result<Vec<String>, BlobError>;

    /// Delete `keys` (at most [`DELETE_BLOBS_MAX`]); an error when any was not deleted.
    async fn delete_blobs(&self, keys: &[String]) -> Result<(), BlobError>;
}
