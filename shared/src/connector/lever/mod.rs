//! Lever v1 (OAuth authorization code or API key). `docs/ats/lever.md` has the facts,
//! the mapping and the limits.
//!
//! - Lists answer `{"data": [...], "hasNext", "next"}`; `next` goes back as `offset`
//!   together with the same filters (Lever re-reads the filters on every page).
//! - `confidentiality=all` on every list: Lever's default silently leaves confidential
//!   candidacies and postings out.
//! - Windows are epoch milliseconds, inclusive, both ends. A window from the epoch (a
//!   backfill, a sweep) is sent without an `updated_at` filter: a filtered list never
//!   returns an opportunity whose `updatedAt` is null.
//! - No rate-limit headers: sends are paced client-side ([`PACE`]) below Lever's 10/s
//!   bucket per credential; a 429 backs off like any other.

pub mod client;
pub mod normalize;
pub mod provider;
pub mod streams;

use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::http::{ApiClient, RequestKind, endpoint_of};
use super::ratelimit::Pace;
use super::{ConnectorError, RequestStats};
use crate::attachments::guard::ApiHostRules;

pub use super::http::RetryPolicy;
pub use client::LeverClient;

/// Lever's production API base.
pub const DEFAULT_API_BASE: &str = "https://api.lever.co/v1";

/// Lever's token endpoint (a tenant's `auth_url` overrides it).
pub const DEFAULT_TOKEN_URL: &str = "https://auth.lever.co/oauth/token";

/// The `audience` Lever's token endpoint takes.
pub const AUDIENCE: &str = "https://api.lever.co/v1/";

/// Lever's largest page.
pub const MAX_LIMIT: u32 = 100;

/// Client-side pacing per credential: Lever allows 10 requests/s with bursts to 20;
/// eds stays below both (8/s, bursts of 10) so that clock differences and the odd
/// request of another tool on the same key do not reach the limit.
pub const PACE: Pace = Pace {
    per_second: 8.0,
    burst: 10.0,
};

/// Longest deleted-list window asked for at once (some sources give Lever a 30-day
/// maximum); deletions older than that are found by the reconciliation's by-id reads.
pub const MAX_DELETED_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// Child requests of one opportunity page sent at a time (resumes, files).
pub const CHILD_CONCURRENCY: usize = 4;

/// Longest offset token accepted (from Lever or from a checkpoint).
const MAX_OFFSET_LEN: usize = 2048;

/// Configuration of one Lever client.
#[derive(Debug, Clone)]
pub struct LeverConfig {
    /// `https://api.lever.co/v1` in production; the simulator's base in tests.
    pub base_url: Url,
    /// 1..=100.
    pub limit: u32,
    pub retry: RetryPolicy,
    pub host_rules: Option<ApiHostRules>,
}

impl LeverConfig {
    pub fn new(base_url: Url) -> Self {
        Self {
            base_url,
            limit: MAX_LIMIT,
            retry: RetryPolicy {
                // No Retry-After from Lever: back off from a second, exponentially.
                default_retry_after: Duration::from_secs(1),
                ..RetryPolicy::default()
            },
            host_rules: None,
        }
    }

    /// A tenant's configured base URL, checked as in `GreenhouseConfig::for_tenant`.
    pub fn for_tenant(base_url: Url, local_testing: bool) -> Self {
        Self {
            host_rules: Some(ApiHostRules::new(local_testing)),
            ..Self::new(base_url)
        }
    }

    pub fn with_fast_retries(mut self) -> Self {
        self.retry.base_backoff = Duration::from_millis(5);
        self.retry.max_backoff = Duration::from_millis(50);
        self.retry.default_retry_after = Duration::from_millis(100);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConnectorError> {
        if !(1..=MAX_LIMIT).contains(&self.limit) {
            return Err(ConnectorError::Config(format!(
                "limit must be 1..={MAX_LIMIT}, got {}",
                self.limit
            )));
        }
        Ok(())
    }
}

/// An offset token is opaque, but it goes into a query string: bounded and printable.
pub(crate) fn check_offset(token: &str) -> Result<(), ConnectorError> {
    if token.is_empty()
        || token.len() > MAX_OFFSET_LEN
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ConnectorError::UntrustedLink(
            "the offset token is empty, too long or not printable".into(),
        ));
    }
    Ok(())
}

/// One list page: its rows and the next offset.
pub(crate) struct ListPage {
    pub rows: Vec<Value>,
    pub next: Option<String>,
}

/// GETs one list page at `url` (its query built by the caller, `offset` included) and
/// checks the envelope. A refused offset (400 on a page after the first) means the
/// token is no longer good: the caller restarts the window.
pub(crate) async fn fetch_list(
    api: &ApiClient,
    url: Url,
    offset: Option<&str>,
    deadline: tokio::time::Instant,
    stats: &mut RequestStats,
) -> Result<ListPage, ConnectorError> {
    let endpoint = endpoint_of(&url);
    let follows_offset = offset.is_some();
    let kind = if follows_offset {
        RequestKind::Cursor
    } else {
        RequestKind::Initial
    };
    let resp = match api.get(url, kind, deadline, stats).await {
        Err(ConnectorError::BadRequest {
            status: 400,
            endpoint,
            ..
        }) if follows_offset => {
            return Err(ConnectorError::CursorExpired { endpoint });
        }
        other => other?,
    };
    let malformed = |detail: &str| ConnectorError::Malformed {
        endpoint: endpoint.clone(),
        detail: detail.to_string(),
    };
    let body: Value =
        serde_json::from_slice(&resp.body).map_err(|_| malformed("the body is not JSON"))?;
    drop(resp);
    let Value::Object(mut body) = body else {
        return Err(malformed("expected an object with `data`"));
    };
    let rows = match body.remove("data") {
        Some(Value::Array(rows)) => rows,
        _ => return Err(malformed("`data` is missing or not a list")),
    };
    let has_next = match body.get("hasNext") {
        Some(Value::Bool(b)) => *b,
        None | Some(Value::Null) => false,
        Some(_) => return Err(malformed("`hasNext` is not a boolean")),
    };
    let next = if has_next {
        match body.get("next") {
            Some(Value::String(t)) => {
                check_offset(t)?;
                Some(t.clone())
            }
            _ => return Err(malformed("`hasNext` without a string `next`")),
        }
    } else {
        None
    };
    if next.is_some() && next.as_deref() == offset {
        // The same position again would loop for ever.
        return Err(malformed("`next` repeats the offset of the request"));
    }
    Ok(ListPage { rows, next })
}
