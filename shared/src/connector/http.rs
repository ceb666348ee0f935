//! The HTTP core shared by the ATS clients: authorisation, pacing, retries and the
//! deadline, so that every endpoint gets the same behaviour.
//!
//! One `get` sends a request and handles everything that is not about the payload:
//! - `Authorization` from the [`AccessTokens`] port; a 401 is answered by one refresh and
//!   one retry (a second 401 is an error, never a loop);
//! - pacing through the shared [`RateLimiter`] before every send; a 429 blocks every
//!   sharer for `Retry-After`;
//! - 5xx, timeouts and connection errors retried a bounded number of times with
//!   jittered exponential backoff;
//! - no wait ever passes the caller's deadline: the call returns `Deadline` instead and
//!   the caller checkpoints; a rate-limit wait that would pass it returns `RateLimited`
//!   with the time the ATS may be asked again;
//! - a response body is read as a stream up to `RetryPolicy::max_body_bytes` (error
//!   bodies up to [`MAX_ERROR_BODY_BYTES`]), never more, and within the per-request
//!   timeout, which covers the body: a trickling ATS is cut, not waited for;
//! - with [`ApiHostRules`] (every tenant connection), the client connects only to
//!   public addresses: the DNS answer is checked before connecting.
//!
//! Nothing here logs or returns a header value, a token or a response body beyond the
//! ATS's short error message.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use url::Url;

use super::ratelimit::{RateLimiter, retry_after};
use super::{ConnectorError, Presence, PresencePage, Probe, RequestStats};
use crate::attachments::guard::ApiHostRules;
use crate::auth::AccessTokens;

/// Default limit of one API response body. A Greenhouse page is at most 500 records,
/// so 8 MiB leaves room for records of 16 kB each while one page and its parsed form
/// stay a fraction of a 256 MB function (about 35 MB peak RSS for a page of 1 kB rows
/// just under the limit: `shared/examples/hostile_page_rss.rs`).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;

/// Error bodies are read up to this and the rest dropped: only the ATS's short message
/// is used.
pub const MAX_ERROR_BODY_BYTES: u64 = 64 * 1024;

/// Retry and timeout policy of one client.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after a 5xx, a timeout or a connection error (so `max_retries + 1`
    /// attempts in all).
    pub max_retries: u32,
    /// First backoff; doubled per retry, capped at `max_backoff`, jittered into
    /// `[d/2, d]`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// 429 answers accepted for one request before giving up as transient (each one is
    /// waited out, so this only bounds a limit that never recovers).
    pub max_rate_limited: u32,
    /// Wait after a 429 without a usable `Retry-After`.
    pub default_retry_after: Duration,
    /// Per-request timeout, body included (also capped by the caller's deadline).
    pub request_timeout: Duration,
    /// Largest response body accepted (`BodyTooLarge` beyond it).
    pub max_body_bytes: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_rate_limited: 20,
            default_retry_after: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// Whether a request follows a cursor (a 422 then means the cursor expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Initial,
    Cursor,
}

pub(crate) struct Response {
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub(crate) struct ApiClient {
    http: reqwest::Client,
    base: Url,
    tokens: Arc<dyn AccessTokens>,
    limiter: Arc<RateLimiter>,
    policy: RetryPolicy,
    totals: Mutex<RequestStats>,
}

/// `GET /v3/candidates`: how errors name an endpoint (no query: it may carry a cursor,
/// and the path is what an operator needs).
pub(crate) fn endpoint_of(url: &Url) -> String {
    format!("GET {}", url.path())
}

fn short_error_detail(body: &[u8]) -> String {
    // Greenhouse errors are `{"message": "...", "errors": [...]}`; keep only those
    // strings, shortened, so that an unexpected body cannot flood logs.
    let mut out = String::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
            out.push_str(m);
        }
        if let Some(errs) = v.get("errors").and_then(|e| e.as_array()) {
            for e in errs.iter().filter_map(|e| e.as_str()) {
                out.push_str("; ");
                out.push_str(e);
            }
        }
    }
    if out.is_empty() {
        out.push_str("(no error message)");
    }
    out.chars().take(300).collect()
}

impl ApiClient {
    /// `host_rules`: the bar of a tenant's configured URL (checked here, and every DNS
    /// answer before connecting); `None` only for clients of a URL eds itself chose
    /// (tests against the local simulator).
    pub fn new(
        base: Url,
        tokens: Arc<dyn AccessTokens>,
        limiter: Arc<RateLimiter>,
        policy: RetryPolicy,
        host_rules: Option<ApiHostRules>,
    ) -> Result<Self, ConnectorError> {
        if !matches!(base.scheme(), "https" | "http") || base.host_str().is_none() {
            return Err(ConnectorError::Config(format!(
                "base URL must be http(s) with a host, got scheme {:?}",
                base.scheme()
            )));
        }
        let mut builder = reqwest::Client::builder()
            // A redirect is not part of the API; following it could carry the
            // credential elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("eds/", env!("CARGO_PKG_VERSION")));
        if let Some(rules) = host_rules {
            rules
                .check_url(&base)
                .map_err(|why| ConnectorError::Config(format!("API base URL {why}")))?;
            builder = builder.dns_resolver(crate::attachments::guard::checked_resolver(rules));
        }
        let http = builder
            .build()
            .map_err(|e| ConnectorError::Config(format!("HTTP client: {e}")))?;
        let mut base = base;
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        Ok(Self {
            http,
            base,
            tokens,
            limiter,
            policy,
            totals: Mutex::new(RequestStats::default()),
        })
    }

    /// A URL under the base: `path` is relative (`v3/candidates`).
    pub fn url(&self, path: &str) -> Result<Url, ConnectorError> {
        self.base
            .join(path)
            .map_err(|e| ConnectorError::Config(format!("cannot build URL for {path}: {e}")))
    }

    /// The reconciliation's by-id reads: `url_of` gives each probe's URL (`None`: the
    /// ATS cannot read it, reported as not visible). Only a 404 is `Gone`; a 403 is
    /// `NotVisible` (never a deletion). At the deadline the probes checked so far are
    /// returned (the caller probes the rest later), unless there are none.
    pub async fn probe_each(
        &self,
        probes: &[Probe],
        deadline: Instant,
        url_of: impl Fn(&Probe) -> Result<Option<Url>, ConnectorError>,
    ) -> Result<PresencePage, ConnectorError> {
        let mut out = PresencePage::default();
        for p in probes {
            let Some(url) = url_of(p)? else {
                out.checked.push((p.id.clone(), Presence::NotVisible));
                continue;
            };
            let presence = match self
                .get(url, RequestKind::Initial, deadline, &mut out.stats)
                .await
            {
                Ok(_) => Presence::Present,
                Err(ConnectorError::BadRequest { status: 404, .. }) => Presence::Gone,
                Err(ConnectorError::Forbidden { .. }) => Presence::NotVisible,
                Err(ConnectorError::Deadline { .. }) if !out.checked.is_empty() => break,
                Err(e) => return Err(e),
            };
            out.checked.push((p.id.clone(), presence));
        }
        Ok(out)
    }

    /// A link or stored cursor must stay on the configured origin and on the expected
    /// resource path.
    pub fn check_link(&self, link: &Url, expected_path: &str) -> Result<(), ConnectorError> {
        let same_origin = link.scheme() == self.base.scheme()
            && link.host_str() == self.base.host_str()
            && link.port_or_known_default() == self.base.port_or_known_default();
        if !same_origin {
            return Err(ConnectorError::UntrustedLink(format!(
                "link points to {}://{} instead of the configured API origin",
                link.scheme(),
                link.host_str().unwrap_or("?")
            )));
        }
        if link.path() != expected_path {
            return Err(ConnectorError::UntrustedLink(format!(
                "link is for {} but this listing is {expected_path}",
                link.path()
            )));
        }
        if !link.username().is_empty() || link.password().is_some() {
            return Err(ConnectorError::UntrustedLink(
                "link carries user info".to_string(),
            ));
        }
        Ok(())
    }

    pub fn totals(&self) -> RequestStats {
        match self.totals.lock() {
            Ok(t) => *t,
            Err(p) => *p.into_inner(),
        }
    }

    fn add_totals(&self, s: RequestStats) {
        match self.totals.lock() {
            Ok(mut t) => *t += s,
            Err(p) => *p.into_inner() += s,
        }
    }

    /// GET `url`, adding what it cost to `stats` (also on error).
    pub async fn get(
        &self,
        url: Url,
        kind: RequestKind,
        deadline: Instant,
        stats: &mut RequestStats,
    ) -> Result<Response, ConnectorError> {
        let mut local = RequestStats::default();
        let r = self.get_inner(url, kind, deadline, &mut local).await;
        *stats += local;
        self.add_totals(local);
        r
    }

    async fn get_inner(
        &self,
        url: Url,
        kind: RequestKind,
        deadline: Instant,
        stats: &mut RequestStats,
    ) -> Result<Response, ConnectorError> {
        let endpoint = endpoint_of(&url);
        let mut auth = self
            .tokens
            .authorization()
            .await
            .map_err(|e| ConnectorError::from_auth(e, &endpoint))?;
        let mut refreshed = false;
        let mut failures: u32 = 0;
        let mut rate_limited: u32 = 0;
        loop {
            // Pacing: wait while the shared budget is used up.
            while let Some(wait) = self.limiter.acquire() {
                if Instant::now() + wait > deadline {
                    // Coming back before the wait is over would only be refused again:
                    // the caller keeps the time and does not send before it.
                    return Err(ConnectorError::RateLimited {
                        endpoint,
                        retry_at: retry_at(wait),
                    });
                }
                tokio::time::sleep(wait).await;
                stats.rate_limit_wait += wait;
            }
            // Counts this send as in flight until its answer is in (also if the future
            // is dropped mid-request).
            let in_flight = InFlight(&self.limiter);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConnectorError::Deadline {
                    what: "request",
                    needed: Duration::ZERO,
                });
            }
            let timeout = left.min(self.policy.request_timeout);
            let cut_by_deadline = timeout < self.policy.request_timeout;
            stats.requests += 1;
            let started = std::time::Instant::now();
            let result = self.send(&url, &auth, timeout, stats).await;
            if let Ok((_, headers, _)) = &result {
                self.limiter.observe_headers(headers);
            }
            drop(in_flight);
            let transient_detail = match result {
                Err(SendError::TooLarge) => {
                    return Err(ConnectorError::BodyTooLarge {
                        endpoint,
                        limit: self.policy.max_body_bytes,
                    });
                }
                Err(SendError::Http { error, in_body }) => {
                    let timed_out = error.is_timeout();
                    if timed_out && cut_by_deadline {
                        return Err(ConnectorError::Deadline {
                            what: if in_body {
                                "slow response: the body was not complete before the deadline"
                            } else {
                                "slow response: no answer before the deadline"
                            },
                            needed: self.policy.request_timeout,
                        });
                    }
                    tracing::debug!(%endpoint, error = %error.without_url(), in_body, "request failed");
                    let secs = self.policy.request_timeout.as_secs_f64();
                    match (timed_out, in_body) {
                        (true, true) => {
                            format!("slow response: the body was not complete within {secs}s")
                        }
                        (true, false) => format!("timeout: no answer within {secs}s"),
                        (false, true) => "connection lost while reading the body".to_string(),
                        (false, false) => "connection error".to_string(),
                    }
                }
                Ok((status, headers, body)) => {
                    tracing::debug!(
                        %endpoint,
                        status = status.as_u16(),
                        bytes = body.len(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "ATS response"
                    );
                    if status.is_success() {
                        return Ok(Response { headers, body });
                    }
                    match status {
                        StatusCode::UNAUTHORIZED if !refreshed => {
                            refreshed = true;
                            stats.retries += 1;
                            auth = self
                                .tokens
                                .refresh_after_unauthorized(&auth)
                                .await
                                .map_err(|e| ConnectorError::from_auth(e, &endpoint))?;
                            continue;
                        }
                        StatusCode::UNAUTHORIZED => {
                            return Err(ConnectorError::Unauthorized { endpoint });
                        }
                        StatusCode::FORBIDDEN => {
                            return Err(ConnectorError::Forbidden { endpoint });
                        }
                        StatusCode::UNPROCESSABLE_ENTITY if kind == RequestKind::Cursor => {
                            return Err(ConnectorError::CursorExpired { endpoint });
                        }
                        StatusCode::TOO_MANY_REQUESTS => {
                            stats.rate_limited_429 += 1;
                            rate_limited += 1;
                            if rate_limited > self.policy.max_rate_limited {
                                return Err(ConnectorError::Transient {
                                    endpoint,
                                    attempts: failures + rate_limited,
                                    detail: "rate limited (429) too many times".to_string(),
                                });
                            }
                            let wait = retry_after(
                                &headers,
                                std::time::SystemTime::now(),
                                self.policy.default_retry_after,
                            );
                            tracing::info!(%endpoint, wait_ms = wait.as_millis() as u64, "429: waiting Retry-After");
                            // Every sharer of the credential waits; the pacing loop
                            // above sleeps it out (and checks the deadline).
                            self.limiter.block_for(wait);
                            if Instant::now() + wait > deadline {
                                return Err(ConnectorError::RateLimited {
                                    endpoint,
                                    retry_at: retry_at(wait),
                                });
                            }
                            stats.retries += 1;
                            continue;
                        }
                        s if s.is_server_error() => format!("HTTP {}", s.as_u16()),
                        s => {
                            return Err(ConnectorError::BadRequest {
                                endpoint,
                                status: s.as_u16(),
                                detail: short_error_detail(&body),
                            });
                        }
                    }
                }
            };
            failures += 1;
            if failures > self.policy.max_retries {
                return Err(ConnectorError::Transient {
                    endpoint,
                    attempts: failures,
                    detail: transient_detail,
                });
            }
            let wait = self.backoff(failures);
            sleep_within(wait, deadline, "retry backoff").await?;
            stats.backoff_wait += wait;
            stats.retries += 1;
        }
    }

    /// One request. The body is read chunk by chunk and refused as soon as it passes
    /// the limit (at once when `Content-Length` announces more); an error body is cut at
    /// [`MAX_ERROR_BODY_BYTES`]. `timeout` covers the whole exchange, body included.
    async fn send(
        &self,
        url: &Url,
        auth: &SecretString,
        timeout: Duration,
        stats: &mut RequestStats,
    ) -> Result<(StatusCode, HeaderMap, Bytes), SendError> {
        let mut req = self.http.get(url.clone()).timeout(timeout);
        match HeaderValue::from_str(auth.expose_secret()) {
            Ok(mut v) => {
                v.set_sensitive(true);
                req = req.header(AUTHORIZATION, v);
            }
            Err(_) => {
                // An unusable header value is sent without authorisation: the ATS
                // answers 401 and the refresh path takes over. The value is never shown.
                tracing::warn!("authorization value is not a valid header value");
            }
        }
        let mut resp = req.send().await.map_err(|error| SendError::Http {
            error,
            in_body: false,
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let success = status.is_success();
        let limit = if success {
            self.policy.max_body_bytes
        } else {
            MAX_ERROR_BODY_BYTES
        };
        if success && resp.content_length().is_some_and(|n| n > limit) {
            return Err(SendError::TooLarge);
        }
        let cap = usize::try_from(limit.min(resp.content_length().unwrap_or(0))).unwrap_or(0);
        let mut body = bytes::BytesMut::with_capacity(cap);
        loop {
            let chunk = resp.chunk().await.map_err(|error| SendError::Http {
                error,
                in_body: true,
            })?;
            let Some(chunk) = chunk else { break };
            stats.bytes += chunk.len() as u64;
            let room = usize::try_from(limit).unwrap_or(usize::MAX) - body.len();
            if chunk.len() > room {
                if success {
                    return Err(SendError::TooLarge);
                }
                // An error body is only read for its short message: keep the head.
                body.extend_from_slice(&chunk[..room]);
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body.freeze()))
    }

    fn backoff(&self, failures: u32) -> Duration {
        let exp = self
            .policy
            .base_backoff
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(self.policy.max_backoff);
        let ms = exp.as_millis() as u64;
        if ms < 2 {
            return exp;
        }
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
    }
}

enum SendError {
    /// No answer, or the body broke off; `in_body`: the status and headers had arrived.
    Http {
        error: reqwest::Error,
        in_body: bool,
    },
    /// A success body larger than `RetryPolicy::max_body_bytes`.
    TooLarge,
}

/// The wall-clock time `wait` from now.
fn retry_at(wait: Duration) -> chrono::DateTime<chrono::Utc> {
    let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
    chrono::Utc::now()
        .checked_add_signed(wait)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

struct InFlight<'a>(&'a RateLimiter);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

async fn sleep_within(
    wait: Duration,
    deadline: Instant,
    what: &'static str,
) -> Result<(), ConnectorError> {
    if Instant::now() + wait > deadline {
        return Err(ConnectorError::Deadline { what, needed: wait });
    }
    tokio::time::sleep(wait).await;
    Ok(())
}

/// The `rel="next"` target of a `Link` header, if any. Tolerates several `Link`
/// headers, several links per header, any order of parameters, quoted or unquoted
/// `rel`, several relation types in one `rel`, and commas inside `<...>`.
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all("link") {
        let Ok(s) = value.to_str() else { continue };
        if let Some(u) = next_in_link_value(s) {
            return Some(u);
        }
    }
    None
}

fn next_in_link_value(s: &str) -> Option<String> {
    let mut rest = s;
    loop {
        let open = rest.find('<')?;
        let close = open + rest[open..].find('>')?;
        let target = rest[open + 1..close].trim();
        let after = &rest[close + 1..];
        // Parameters run to the next link, which starts with `<` after a comma.
        let params_end = after.find('<').unwrap_or(after.len());
        let params = &after[..params_end];
        for p in params.split(';') {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            if !k.trim().eq_ignore_ascii_case("rel") {
                continue;
            }
            let v = v.trim().trim_end_matches(',').trim().trim_matches('"');
            if v.split_ascii_whitespace()
                .any(|r| r.eq_ignore_ascii_case("next"))
            {
                return Some(target.to_string());
            }
        }
        rest = &after[params_end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderName;

    fn link(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                HeaderName::from_static("link"),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn next_link_is_found_among_other_relations() {
        let h = link(&[
            r#"<https://h.io/v1/candidates?page=1>; rel="prev", <https://h.io/v1/candidates?page=3&per_page=500>; rel="next", <https://h.io/v1/candidates?page=9>; rel="last""#,
        ]);
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://h.io/v1/candidates?page=3&per_page=500")
        );
    }

    #[test]
    fn next_link_tolerates_unquoted_rel_spacing_case_and_multiple_headers() {
        let h = link(&[
            "<https://h.io/a?x=1>;rel=prev",
            "<https://h.io/v3/jobs?cursor=abc%2C%3D>  ;  REL=Next ",
        ]);
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://h.io/v3/jobs?cursor=abc%2C%3D")
        );
    }

    #[test]
    fn next_link_handles_commas_in_urls_and_multi_valued_rel() {
        let h = link(&[r#"<https://h.io/v3/x?ids=1,2,3>; title="a, b"; rel="prefetch next""#]);
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://h.io/v3/x?ids=1,2,3")
        );
    }

    #[test]
    fn no_next_relation_means_last_page() {
        assert_eq!(next_link(&HeaderMap::new()), None);
        assert_eq!(
            next_link(&link(&[r#"<https://h.io/v1/c?page=1>; rel="prev""#])),
            None
        );
        assert_eq!(next_link(&link(&["garbage without brackets"])), None);
        assert_eq!(next_link(&link(&["<unterminated; rel=next"])), None);
    }

    #[test]
    fn error_detail_keeps_only_the_ats_message() {
        let d = short_error_detail(
            br#"{"message":"Unprocessable Content","errors":["When passing a cursor, do not include other query params."],"x":"y"}"#,
        );
        assert_eq!(
            d,
            "Unprocessable Content; When passing a cursor, do not include other query params."
        );
        assert_eq!(short_error_detail(b"<html>"), "(no error message)");
    }
}
