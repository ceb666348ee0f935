//! Attachment files: download a signed ATS URL during the job that listed it, and keep
//! the file in S3, content-addressed per tenant.
//!
//! The download is streamed to a temporary file while its SHA-256 is computed, so a
//! large résumé never sits in Lambda memory, and it stops as soon as the size cap is
//! passed. The object key is `tenants/{tenant}/attachments/sha256/{hex}`: the same file
//! listed twice (or by two applications) is stored once (`HeadObject` first).
//!
//! Every hop (the URL and each redirect target) passes the SSRF guard (`guard`), and the
//! connection goes to exactly the addresses the guard checked. Signed URLs are
//! capabilities: errors show scheme, host and path only, never the query string.

pub mod blob;
pub mod guard;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use url::{Host, Url};

pub use blob::S3BlobStore;
pub use eds_core::attachments::*;
pub use guard::{HostPolicy, forbidden_reason};

use crate::auth::AccessTokens;
use crate::connector::ratelimit::{RateLimiter, retry_after};
use crate::connector::{AttachmentRef, FileAccess};
use crate::domain::ids::TenantId;
use secrecy::{ExposeSecret, SecretString};

/// Limits and policy of attachment downloads.
#[derive(Debug, Clone)]
pub struct DownloadConfig {
    pub policy: HostPolicy,
    pub max_bytes: u64,
    pub max_redirects: u8,
    pub timeout: Duration,
    /// Where temporary files go (default `std::env::temp_dir()`).
    pub temp_dir: PathBuf,
}

impl DownloadConfig {
    pub fn new(policy: HostPolicy) -> Self {
        Self {
            policy,
            max_bytes: DEFAULT_MAX_BYTES,
            max_redirects: 3,
            timeout: Duration::from_secs(60),
            temp_dir: std::env::temp_dir(),
        }
    }
}

/// What files fetched by an API call ([`FileAccess::ApiCall`]) need: the API's origin
/// (the only one the credential is sent to), the tenant's credential, and the pacing
/// every request to that API shares.
#[derive(Clone)]
pub struct ApiDownloads {
    pub origin: Url,
    pub tokens: Arc<dyn AccessTokens>,
    pub limiter: Arc<RateLimiter>,
}

/// Longest pacing wait a download takes before giving up for this run (the file is
/// quarantined and read again by a later run).
const MAX_DOWNLOAD_PACING_WAIT: Duration = Duration::from_secs(30);

/// Attempts of one API download answered 429 or 5xx.
const API_DOWNLOAD_ATTEMPTS: u32 = 3;

/// Downloads attachments and stores them in the blob store.
#[derive(Clone)]
pub struct AttachmentFetcher {
    config: DownloadConfig,
    blobs: Arc<dyn BlobStore>,
    api: Option<ApiDownloads>,
}

impl std::fmt::Debug for AttachmentFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentFetcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// `scheme://host[:port]/path`: what may be shown of a signed URL.
pub fn redacted(url: &Url) -> String {
    let mut s = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(p) = url.port() {
        s.push_str(&format!(":{p}"));
    }
    s.push_str(url.path());
    s
}

/// The object key of a file of `tenant` with this content hash.
pub fn object_key(tenant: &TenantId, sha256_hex: &str) -> String {
    format!("tenants/{tenant}/attachments/sha256/{sha256_hex}")
}

/// Removes the temporary file however the download ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl AttachmentFetcher {
    pub fn new(config: DownloadConfig, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            config,
            blobs,
            api: None,
        }
    }

    /// Lets the fetcher make API downloads with the tenant's credential.
    pub fn with_api_downloads(mut self, api: ApiDownloads) -> Self {
        self.api = Some(api);
        self
    }

    /// Download the signed link `url` and store it for `tenant`.
    pub async fn fetch_and_store(
        &self,
        tenant: &TenantId,
        url: &str,
    ) -> Result<StoredFile, AttachmentError> {
        let start = Url::parse(url).map_err(|_| AttachmentError::BadUrl)?;
        let response = self.get_following_redirects(start, None).await?;
        self.store_response(tenant, response).await
    }

    /// Download `url` by an API call (the tenant's credential on the API's origin only,
    /// paced with the API's requests) and store it for `tenant`. A 401 is answered by
    /// one refresh; a 429 or 5xx is retried a bounded number of times.
    pub async fn fetch_and_store_api(
        &self,
        tenant: &TenantId,
        url: &str,
    ) -> Result<StoredFile, AttachmentError> {
        let start = Url::parse(url).map_err(|_| AttachmentError::BadUrl)?;
        let shown = redacted(&start);
        let Some(api) = &self.api else {
            return Err(AttachmentError::NotApiOrigin { url: shown });
        };
        let same_origin = start.scheme() == api.origin.scheme()
            && start.host_str() == api.origin.host_str()
            && start.port_or_known_default() == api.origin.port_or_known_default()
            && start.username().is_empty()
            && start.password().is_none();
        if !same_origin {
            return Err(AttachmentError::NotApiOrigin { url: shown });
        }
        let auth_error = |e: crate::auth::AuthError| AttachmentError::Network {
            url: shown.clone(),
            detail: format!("credentials: {e}"),
        };
        let mut auth = api.tokens.authorization().await.map_err(auth_error)?;
        let mut refreshed = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut waited = Duration::ZERO;
            while let Some(wait) = api.limiter.acquire() {
                waited += wait;
                if waited > MAX_DOWNLOAD_PACING_WAIT {
                    return Err(AttachmentError::Status {
                        url: shown,
                        status: 429,
                    });
                }
                tokio::time::sleep(wait).await;
            }
            let sent = self
                .get_following_redirects(start.clone(), Some(&auth))
                .await;
            api.limiter.release();
            match sent {
                Ok(response) => return self.store_response(tenant, response).await,
                Err(AttachmentError::LinkExpired { status: 401, .. }) if !refreshed => {
                    refreshed = true;
                    auth = api
                        .tokens
                        .refresh_after_unauthorized(&auth)
                        .await
                        .map_err(auth_error)?;
                }
                Err(AttachmentError::LinkExpired { status: 401, .. }) => {
                    return Err(AttachmentError::Unauthorized { url: shown });
                }
                // Not an expired link: the API refused this file (403, 410).
                Err(AttachmentError::LinkExpired { status, .. }) => {
                    return Err(AttachmentError::Status { url: shown, status });
                }
                Err(AttachmentError::RetryLater { wait, status, .. }) => {
                    if attempt >= API_DOWNLOAD_ATTEMPTS {
                        return Err(AttachmentError::Status { url: shown, status });
                    }
                    // Every sharer of the credential waits, like after an API 429.
                    api.limiter.block_for(wait * attempt);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn store_response(
        &self,
        tenant: &TenantId,
        response: reqwest::Response,
    ) -> Result<StoredFile, AttachmentError> {
        let shown = redacted(response.url());
        if let Some(len) = response.content_length()
            && len > self.config.max_bytes
        {
            return Err(AttachmentError::TooLarge {
                url: shown,
                max: self.config.max_bytes,
            });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);

        let temp = TempFile(
            self.config
                .temp_dir
                .join(format!("eds-attachment-{}", uuid::Uuid::new_v4())),
        );
        let (sha256, size) = stream_to_file(
            response.bytes_stream(),
            &temp.0,
            self.config.max_bytes,
            &shown,
        )
        .await?;
        let key = object_key(tenant, &sha256);
        let already_stored = self.blobs.exists(&key).await?;
        if !already_stored {
            self.blobs
                .put_file(&key, &temp.0, content_type.as_deref(), &sha256)
                .await?;
            crate::crash::point("attachments.after_s3_put");
        }
        tracing::debug!(%tenant, size, already_stored, "attachment stored");
        Ok(StoredFile {
            key,
            sha256,
            size,
            content_type,
            already_stored,
        })
    }

    /// GET `url`, following redirects by hand. `auth` goes with the first request only
    /// (a redirect never carries the credential on).
    async fn get_following_redirects(
        &self,
        mut url: Url,
        mut auth: Option<&SecretString>,
    ) -> Result<reqwest::Response, AttachmentError> {
        let mut redirects = 0u8;
        loop {
            let addrs = self.config.policy.resolve_checked(&url).await?;
            let resp = self.get_once(&url, &addrs, auth.take()).await?;
            let status = resp.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                if redirects >= self.config.max_redirects {
                    return Err(AttachmentError::TooManyRedirects {
                        url: redacted(&url),
                        max: self.config.max_redirects,
                    });
                }
                redirects += 1;
                let next = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|loc| url.join(loc).ok())
                    .ok_or_else(|| AttachmentError::BadRedirect {
                        url: redacted(&url),
                    })?;
                url = next;
                continue;
            }
            let shown = redacted(&url);
            return match status {
                s if s.is_success() => Ok(resp),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::GONE => {
                    Err(AttachmentError::LinkExpired {
                        url: shown,
                        status: status.as_u16(),
                    })
                }
                StatusCode::NOT_FOUND => Err(AttachmentError::NotFound { url: shown }),
                s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                    Err(AttachmentError::RetryLater {
                        wait: retry_after(
                            resp.headers(),
                            std::time::SystemTime::now(),
                            Duration::from_secs(1),
                        ),
                        url: shown,
                        status: s.as_u16(),
                    })
                }
                s => Err(AttachmentError::Status {
                    url: shown,
                    status: s.as_u16(),
                }),
            };
        }
    }

    async fn get_once(
        &self,
        url: &Url,
        addrs: &[SocketAddr],
        auth: Option<&SecretString>,
    ) -> Result<reqwest::Response, AttachmentError> {
        let mut builder = reqwest::Client::builder()
            // Redirects are followed by hand so that each hop passes the guard.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would do its own DNS lookup and defeat the pinned addresses.
            .no_proxy()
            .timeout(self.config.timeout)
            .connect_timeout(Duration::from_secs(10));
        if let Some(Host::Domain(d)) = url.host() {
            builder = builder.resolve_to_addrs(d, addrs);
        }
        let client = builder.build().map_err(|e| AttachmentError::Network {
            url: redacted(url),
            detail: format!("HTTP client: {e}"),
        })?;
        let mut request = client.get(url.clone());
        if let Some(auth) = auth {
            let mut value =
                reqwest::header::HeaderValue::from_str(auth.expose_secret()).map_err(|_| {
                    AttachmentError::Network {
                        url: redacted(url),
                        detail: "the credential is not a valid header value".into(),
                    }
                })?;
            value.set_sensitive(true);
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        request.send().await.map_err(|e| AttachmentError::Network {
            url: redacted(url),
            detail: e.without_url().to_string(),
        })
    }
}

/// Write `chunks` to `path`, hashing as they pass; stop once `max` bytes are exceeded.
/// Returns (hex SHA-256, size).
pub(crate) async fn stream_to_file<S, E>(
    chunks: S,
    path: &Path,
    max: u64,
    shown: &str,
) -> Result<(String, u64), AttachmentError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| AttachmentError::TempFile(e.to_string()))?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut chunks = std::pin::pin!(chunks);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| AttachmentError::Network {
            url: shown.to_string(),
            detail: e.to_string(),
        })?;
        size += chunk.len() as u64;
        if size > max {
            return Err(AttachmentError::TooLarge {
                url: shown.to_string(),
                max,
            });
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| AttachmentError::TempFile(e.to_string()))?;
    }
    file.flush()
        .await
        .map_err(|e| AttachmentError::TempFile(e.to_string()))?;
    Ok((hex::encode(hasher.finalize()), size))
}

#[async_trait::async_trait]
impl AttachmentSource for AttachmentFetcher {
    async fn fetch_and_store_ref(
        &self,
        tenant: &TenantId,
        file: &AttachmentRef,
    ) -> Result<StoredFile, AttachmentError> {
        let url = file.url.expose_secret();
        match file.access {
            FileAccess::SignedLink => self.fetch_and_store(tenant, url).await,
            FileAccess::ApiCall => self.fetch_and_store_api(tenant, url).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn streamed_file_is_hashed_and_written_whole() {
        let path = std::env::temp_dir().join(format!("eds-test-{}", uuid::Uuid::new_v4()));
        let _t = TempFile(path.clone());
        let (sha, size) = stream_to_file(chunks(&[b"hello ", b"world"]), &path, 100, "u")
            .await
            .unwrap();
        assert_eq!(size, 11);
        assert_eq!(
            sha,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
    }

    #[tokio::test]
    async fn download_stops_at_the_size_cap() {
        let path = std::env::temp_dir().join(format!("eds-test-{}", uuid::Uuid::new_v4()));
        let _t = TempFile(path.clone());
        let err = stream_to_file(chunks(&[b"12345", b"67890", b"x"]), &path, 10, "u")
            .await
            .unwrap_err();
        assert!(
            matches!(err, AttachmentError::TooLarge { max: 10, .. }),
            "{err}"
        );
        // Exactly at the cap is fine.
        stream_to_file(chunks(&[b"12345", b"67890"]), &path, 10, "u")
            .await
            .unwrap();
    }

    #[test]
    fn temp_file_is_removed_when_dropped() {
        let path = std::env::temp_dir().join(format!("eds-test-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, b"x").unwrap();
        drop(TempFile(path.clone()));
        assert!(!path.exists());
    }

    #[test]
    fn shown_url_drops_query_and_credentials() {
        let u =
            Url::parse("https://user:pw@s.example.com:8443/a/b.pdf?X-Sig=SECRETSIG&e=1").unwrap();
        assert_eq!(redacted(&u), "https://s.example.com:8443/a/b.pdf");
    }

    #[test]
    fn key_is_content_addressed_under_the_tenant() {
        let t = TenantId::parse("acme").unwrap();
        assert_eq!(
            object_key(&t, "ab12"),
            "tenants/acme/attachments/sha256/ab12"
        );
    }

    #[test]
    fn errors_never_show_signed_query_strings() {
        let u = Url::parse("https://s.example.com/f.pdf?sig=SECRETSIG").unwrap();
        let shown = redacted(&u);
        let errs = [
            AttachmentError::LinkExpired {
                url: shown.clone(),
                status: 403,
            },
            AttachmentError::NotFound { url: shown.clone() },
            AttachmentError::TooLarge {
                url: shown.clone(),
                max: 1,
            },
            AttachmentError::BadUrl,
        ];
        for e in errs {
            let t = format!("{e} {e:?}");
            assert!(!t.contains("SECRETSIG"), "{t}");
        }
    }
}
