//! Greenhouse Harvest v3 (OAuth). Harvest v1/v2 (API key) was removed by Greenhouse on
//! 2026-08-31 and by eds with it (docs/decisions.md D28).
//!
//! The client uses the HTTP core (auth, pacing, retries, deadline) and the pure
//! normalisation in [`normalize`]. Pages are followed by the `Link: rel="next"` URL
//! verbatim, after checking that it stays on the configured origin and resource.

pub mod normalize;
pub mod provider;
pub mod streams;
pub mod v3;

use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::http::{ApiClient, RequestKind, next_link};
use super::{ConnectorError, Cursor, RequestStats};
use crate::attachments::guard::ApiHostRules;

pub use super::http::RetryPolicy;
pub use v3::GreenhouseV3;

/// The hosts Greenhouse serves attachment files from (signed links on its S3 storage,
/// e.g. `prod-heroku.s3.amazonaws.com`): every tenant may download from these; a tenant's
/// `attachment_hosts` adds to them.
pub const ATTACHMENT_HOSTS: &[&str] = &["s3.amazonaws.com"];

/// Greenhouse's maximum page size.
pub const MAX_PER_PAGE: u32 = 500;

/// Configuration of one Greenhouse client.
#[derive(Debug, Clone)]
pub struct GreenhouseConfig {
    /// `https://harvest.greenhouse.io` in production; the simulator's base in tests.
    pub base_url: Url,
    /// 1..=500.
    pub per_page: u32,
    pub retry: RetryPolicy,
    /// The bar a tenant's base URL must meet, also after DNS resolution; `None` only
    /// for a URL eds chose itself (tests against the local simulator).
    pub host_rules: Option<ApiHostRules>,
}

impl GreenhouseConfig {
    /// A client of a URL eds chose itself; a tenant's URL goes through
    /// [`GreenhouseConfig::for_tenant`].
    pub fn new(base_url: Url) -> Self {
        Self {
            base_url,
            per_page: MAX_PER_PAGE,
            retry: RetryPolicy::default(),
            host_rules: None,
        }
    }

    /// A client of a tenant's configured base URL: https on a public host only (plain
    /// http and loopback too when `local_testing`, i.e. `EDS_LOCAL_TESTING`), checked
    /// now and on every DNS answer.
    pub fn for_tenant(base_url: Url, local_testing: bool) -> Self {
        Self {
            host_rules: Some(ApiHostRules::new(local_testing)),
            ..Self::new(base_url)
        }
    }

    /// Fast retries for tests against a local simulator.
    pub fn with_fast_retries(mut self) -> Self {
        self.retry.base_backoff = Duration::from_millis(5);
        self.retry.max_backoff = Duration::from_millis(50);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConnectorError> {
        if !(1..=MAX_PER_PAGE).contains(&self.per_page) {
            return Err(ConnectorError::Config(format!(
                "per_page must be 1..={MAX_PER_PAGE}, got {}",
                self.per_page
            )));
        }
        Ok(())
    }
}

/// One fetched list page: its rows and the validated next cursor.
pub(crate) struct RawPage {
    pub rows: Vec<Value>,
    pub next: Option<Cursor>,
    pub stats: RequestStats,
}

/// Fetches one list page from `first` (or from `cursor`, which must be a link on the
/// same resource) and checks that its body is a JSON array.
pub(crate) async fn fetch_rows(
    api: &ApiClient,
    resource_path: &str,
    first: impl FnOnce() -> Result<Url, ConnectorError>,
    cursor: Option<&Cursor>,
    deadline: tokio::time::Instant,
) -> Result<RawPage, ConnectorError> {
    let expected_path = api.url(resource_path)?.path().to_string();
    let (url, kind) = match cursor {
        Some(c) => {
            let u = Url::parse(c.as_str()).map_err(|_| {
                ConnectorError::UntrustedLink("stored cursor is not a URL".to_string())
            })?;
            api.check_link(&u, &expected_path)?;
            (u, RequestKind::Cursor)
        }
        None => (first()?, RequestKind::Initial),
    };
    let endpoint = super::http::endpoint_of(&url);
    let mut stats = RequestStats::default();
    let resp = api.get(url.clone(), kind, deadline, &mut stats).await?;
    let parsed = serde_json::from_slice::<Value>(&resp.body);
    // The raw body (up to the body limit) is not kept beside its parsed form.
    let headers = resp.headers;
    drop(resp.body);
    let rows = match parsed {
        Ok(Value::Array(rows)) => rows,
        Ok(other) => {
            return Err(ConnectorError::Malformed {
                endpoint,
                detail: format!(
                    "expected a JSON array, got {}",
                    match other {
                        Value::Object(_) => "an object",
                        Value::Null => "null",
                        _ => "a scalar",
                    }
                ),
            });
        }
        Err(e) => {
            return Err(ConnectorError::Malformed {
                endpoint,
                detail: format!(
                    "not JSON ({} at line {} column {})",
                    e.classify_name(),
                    e.line(),
                    e.column()
                ),
            });
        }
    };
    let next = match next_link(&headers) {
        None => None,
        Some(target) => {
            // Relative links are resolved against the request; absolute ones are used
            // verbatim (after the origin check).
            let u = url.join(&target).map_err(|_| {
                ConnectorError::UntrustedLink("Link rel=next is not a URL".to_string())
            })?;
            api.check_link(&u, &expected_path)?;
            Some(Cursor::new(u.to_string()))
        }
    };
    Ok(RawPage { rows, next, stats })
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "data error",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}
