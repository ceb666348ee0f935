//! The ATS connector port: what the pull pipeline asks of any ATS client, independent
//! of Greenhouse.
//!
//! The pipeline pulls one page per call so that it can commit the page and checkpoint
//! the returned [`Cursor`] before asking for the next one; a run cut short by its
//! deadline resumes from that cursor. Every call reports what it cost
//! ([`RequestStats`]) so that rate-limit waits and retries are visible per run instead
//! of disappearing inside the client. Greenhouse (Harvest v3) lives in [`greenhouse`].

pub mod window;

use std::fmt;
use std::ops::AddAssign;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::auth::AuthError;
use crate::domain::ids::AtsId;
use crate::domain::model::Observation;

pub use window::{Window, WindowPolicy};

/// The streams are core types of their own (tenant state and jobs name them).
pub use crate::stream::Stream;

/// What a pull of one ATS visits: the provider registry's static half (the adapters'
/// `connector::catalog::plan`), given to the scheduler, which plans runs from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPlan {
    /// A full pull's streams, in the connector's order (its `AtsConnector::streams`).
    pub streams: &'static [Stream],
    /// The streams a reconciliation lists in full.
    pub reconciled: &'static [Stream],
    /// The streams whose `updated_at` misses changes (Lever: opportunities whose
    /// `updatedAt` is null, resumes and files that never bump it): when a reconciliation
    /// is due they are re-read in full (a window from the epoch, no filter) instead of
    /// from their watermark.
    pub swept: &'static [Stream],
}

/// The registry's lookup of each ATS's plan.
pub type Catalog = fn(crate::tenants::AtsKind) -> StreamPlan;

/// Where to continue a listing: opaque to the caller, which only stores it in its
/// checkpoint and hands it back. For Greenhouse it is the `Link: rel="next"` URL (it
/// carries no credential); the connector re-validates it on use because a checkpoint is
/// data read back from storage.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(String);

impl Cursor {
    /// A connector's own continuation (for Greenhouse, the validated next-page link).
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// Wraps a value previously obtained from [`Cursor::as_str`] (e.g. from a checkpoint).
    pub fn from_checkpoint(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Cursors can be long; the tail is what distinguishes them.
        let tail: String = {
            let chars: Vec<char> = self.0.chars().collect();
            let start = chars.len().saturating_sub(48);
            chars[start..].iter().collect()
        };
        write!(f, "Cursor(…{tail})")
    }
}

/// What one page or one call cost. Added up by the caller for run metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStats {
    /// HTTP requests sent to the ATS API (token requests are counted by the
    /// `AccessTokens` source, not here).
    pub requests: u64,
    /// Requests repeated after a 5xx, a timeout, a connection error, a 429 or a 401.
    pub retries: u64,
    /// 429 answers received.
    pub rate_limited_429: u64,
    /// Time spent waiting for the rate limit: `Retry-After` after a 429 plus pacing
    /// waits until `X-RateLimit-Reset`.
    pub rate_limit_wait: Duration,
    /// Time spent in backoff between retries of failed requests.
    pub backoff_wait: Duration,
    /// Response body bytes received.
    pub bytes: u64,
}

impl RequestStats {
    /// What was spent since `before` (an earlier reading of the same totals): counts the
    /// requests of a call that failed too, which a failed call cannot report itself.
    pub fn since(&self, before: &RequestStats) -> RequestStats {
        RequestStats {
            requests: self.requests.saturating_sub(before.requests),
            retries: self.retries.saturating_sub(before.retries),
            rate_limited_429: self
                .rate_limited_429
                .saturating_sub(before.rate_limited_429),
            rate_limit_wait: self.rate_limit_wait.saturating_sub(before.rate_limit_wait),
            backoff_wait: self.backoff_wait.saturating_sub(before.backoff_wait),
            bytes: self.bytes.saturating_sub(before.bytes),
        }
    }
}

impl AddAssign for RequestStats {
    fn add_assign(&mut self, o: Self) {
        self.requests += o.requests;
        self.retries += o.retries;
        self.rate_limited_429 += o.rate_limited_429;
        self.rate_limit_wait += o.rate_limit_wait;
        self.backoff_wait += o.backoff_wait;
        self.bytes += o.bytes;
    }
}

/// A record (or list row) that could not be normalised. The rest of its page proceeds;
/// the caller records it so that nobody has to guess why a record is missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// The record's id when it could be read.
    pub ats_id: Option<String>,
    pub stream: Stream,
    pub error: String,
}

/// A file the caller must download during this job (signed links expire). The URL is
/// held as a secret: a signed link grants access to the file by itself, so it never
/// enters canonical fields, logs or `Debug` output.
#[derive(Debug, Clone)]
pub struct AttachmentRef {
    pub candidate_id: AtsId,
    pub attachment_id: AtsId,
    pub url: SecretString,
    pub filename: Option<String>,
    pub access: FileAccess,
}

/// How a file's URL is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAccess {
    /// A signed link (Greenhouse): the URL is the capability; no credential is sent.
    SignedLink,
    /// An API call (Lever's `/resumes/{id}/download`): sent with the tenant's
    /// `Authorization` and paced like every API request, and only to the API's own origin.
    ApiCall,
}

/// A record to confirm by id ([`AtsConnector::confirm_presence`]), with its parent when
/// the ATS reads it under one (a Lever application lives under its opportunity): the
/// stored record's [`EntityKind::parent_field`](crate::domain::ids::EntityKind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub id: AtsId,
    pub parent: Option<AtsId>,
}

/// One page of changed records.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Candidates, applications and jobs as whole-record observations; attachments as
    /// `attachments` element observations on their candidate.
    pub observations: Vec<Observation>,
    /// Signed download links of the attachments observed on this page.
    pub attachment_downloads: Vec<AttachmentRef>,
    pub quarantined: Vec<Quarantined>,
    /// `None`: the window is exhausted for this stream.
    pub next: Option<Cursor>,
    pub stats: RequestStats,
}

/// One page of a full id listing (for reconciliation: ids the ATS no longer lists were
/// deleted or merged).
#[derive(Debug, Clone, Default)]
pub struct IdPage {
    pub ids: Vec<AtsId>,
    pub quarantined: Vec<Quarantined>,
    pub next: Option<Cursor>,
    pub stats: RequestStats,
}

/// What a by-id read says about a record that a listing did not contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// The ATS says the record does not exist (404): deleted or merged.
    Gone,
    /// The ATS returned the record: it exists although the listing did not show it.
    Present,
    /// The ATS refused to say (403, or the connector cannot read single records): the
    /// credential may not see it. Never proof of deletion.
    NotVisible,
}

/// The answers of one [`AtsConnector::confirm_presence`] call, in the order asked (a call
/// cut short by its deadline answers a prefix).
#[derive(Debug, Clone, Default)]
pub struct PresencePage {
    pub checked: Vec<(AtsId, Presence)>,
    pub stats: RequestStats,
}

/// Why a call failed. Nothing in here ever contains a credential or a signed URL.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The stored grant is no longer valid: the tenant must re-authorise
    /// (`needs_reauth`). Never retried.
    #[error("the ATS refused the stored grant: the tenant must re-authorise")]
    NeedsReauth,
    /// Client id/secret or API key refused, or the stored secret is unusable.
    #[error("tenant credentials are unusable: {0}")]
    Credentials(String),
    /// 401 again after one refresh.
    #[error("{endpoint}: unauthorized even with a freshly obtained token")]
    Unauthorized { endpoint: String },
    /// 403: missing scope or insufficient permissions. A configuration problem: the
    /// stream is never silently skipped.
    #[error(
        "{endpoint}: forbidden (403): the credential lacks the scope or permission for this endpoint"
    )]
    Forbidden { endpoint: String },
    /// 422 on a cursor: the cursor expired. Restart the window from its start.
    #[error("{endpoint}: the pagination cursor was refused (422): restart the window")]
    CursorExpired { endpoint: String },
    /// Continuing would pass the caller's deadline (a wait or the request itself).
    /// Nothing was lost: checkpoint and resume from the last committed cursor.
    #[error("stopping before the deadline ({what}, {needed:?} more needed)")]
    Deadline {
        what: &'static str,
        needed: Duration,
    },
    /// The ATS asked for a wait (a 429's `Retry-After`, or a block the shared limiter
    /// already holds) that passes the caller's deadline. Nothing was lost; the caller
    /// persists `retry_at` and sends nothing to this ATS before it.
    #[error(
        "{endpoint}: rate limited by the ATS until {}: that is past this invocation's deadline",
        canonical_timestamp(retry_at)
    )]
    RateLimited {
        endpoint: String,
        retry_at: DateTime<Utc>,
    },
    /// A response body larger than the per-response limit (announced by
    /// `Content-Length` or counted while reading): refused before it can exhaust
    /// memory. Retrying gets the same answer.
    #[error("{endpoint}: response body larger than the limit of {limit} bytes: refused")]
    BodyTooLarge { endpoint: String, limit: u64 },
    /// 5xx, timeouts and connection errors that outlasted the bounded retries, or a
    /// transient failure of the credentials source.
    #[error("{endpoint}: transient failure after {attempts} attempt(s): {detail}")]
    Transient {
        endpoint: String,
        attempts: u32,
        detail: String,
    },
    /// The page body is not a JSON array: the whole page fails.
    #[error("{endpoint}: malformed page: {detail}")]
    Malformed { endpoint: String, detail: String },
    /// Any other 4xx.
    #[error("{endpoint}: request refused ({status}): {detail}")]
    BadRequest {
        endpoint: String,
        status: u16,
        detail: String,
    },
    /// A `Link: next` URL or a stored cursor that points elsewhere than the configured
    /// API origin and resource: refused so that a credential is never sent to another
    /// host.
    #[error("refusing cursor/link: {0}")]
    UntrustedLink(String),
    /// The connector's configuration is invalid (base URL, page size).
    #[error("connector configuration: {0}")]
    Config(String),
}

impl ConnectorError {
    /// Whether the same call may succeed later without anyone changing configuration.
    /// `CursorExpired` is retryable by restarting the window; `Deadline` by resuming in
    /// the next invocation; `RateLimited` by resuming at its `retry_at`.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ConnectorError::Transient { .. }
                | ConnectorError::Deadline { .. }
                | ConnectorError::RateLimited { .. }
                | ConnectorError::CursorExpired { .. }
        )
    }

    /// How a connector reports a credentials failure met while calling `endpoint`.
    pub fn from_auth(e: AuthError, endpoint: &str) -> Self {
        match e {
            AuthError::InvalidGrant => ConnectorError::NeedsReauth,
            AuthError::InvalidClient(m) => ConnectorError::Credentials(m),
            AuthError::BadSecret(m) => ConnectorError::Credentials(m),
            AuthError::Transient(m) => ConnectorError::Transient {
                endpoint: endpoint.to_string(),
                attempts: 1,
                detail: format!("credentials: {m}"),
            },
        }
    }
}

/// A client of one tenant's ATS.
#[async_trait]
pub trait AtsConnector: Send + Sync {
    /// The streams this connector lists separately, in the order a full pull should
    /// visit them.
    fn streams(&self) -> &'static [Stream];

    /// One page of the records of `stream` changed within `window`. Pass `cursor:
    /// None` for the first page and then the previous page's `next` until it is `None`.
    /// Never waits past `deadline`: returns [`ConnectorError::Deadline`] instead.
    async fn list_changed(
        &self,
        stream: Stream,
        window: &Window,
        cursor: Option<&Cursor>,
        deadline: tokio::time::Instant,
    ) -> Result<Page, ConnectorError>;

    /// One page of the ids of every record the ATS currently lists for `stream`.
    async fn list_ids(
        &self,
        stream: Stream,
        cursor: Option<&Cursor>,
        deadline: tokio::time::Instant,
    ) -> Result<IdPage, ConnectorError>;

    /// Reads `probes` of `stream` one by one to learn whether records absent from a
    /// listing are really gone: absence alone is no proof when the credential cannot see
    /// everything. Answers a prefix of `probes` when the deadline comes first (at least
    /// one answer, or [`ConnectorError::Deadline`]). The default cannot read single
    /// records and answers [`Presence::NotVisible`] for each, so nothing is tombstoned
    /// on it.
    async fn confirm_presence(
        &self,
        stream: Stream,
        probes: &[Probe],
        deadline: tokio::time::Instant,
    ) -> Result<PresencePage, ConnectorError> {
        let _ = (stream, deadline);
        Ok(PresencePage {
            checked: probes
                .iter()
                .map(|p| (p.id.clone(), Presence::NotVisible))
                .collect(),
            stats: RequestStats::default(),
        })
    }

    /// Totals of every call made through this connector so far.
    fn metrics(&self) -> RequestStats;
}

/// Canonical timestamp format: RFC 3339, UTC, milliseconds, `Z`.
pub fn canonical_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_deadline_and_cursor_errors_are_retryable() {
        assert!(
            ConnectorError::Transient {
                endpoint: "e".into(),
                attempts: 5,
                detail: "503".into()
            }
            .is_retryable()
        );
        assert!(
            ConnectorError::CursorExpired {
                endpoint: "e".into()
            }
            .is_retryable()
        );
        assert!(
            ConnectorError::Deadline {
                what: "429",
                needed: Duration::from_secs(1)
            }
            .is_retryable()
        );
        let limited = ConnectorError::RateLimited {
            endpoint: "GET /v3/jobs".into(),
            retry_at: DateTime::parse_from_rfc3339("2026-03-01T11:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        };
        assert!(limited.is_retryable());
        assert_eq!(
            limited.to_string(),
            "GET /v3/jobs: rate limited by the ATS until 2026-03-01T11:00:00.000Z: that is past this invocation's deadline"
        );
        let big = ConnectorError::BodyTooLarge {
            endpoint: "GET /v3/jobs".into(),
            limit: 8 << 20,
        };
        assert!(!big.is_retryable());
        assert!(big.to_string().contains("8388608 bytes"), "{big}");
        assert!(!ConnectorError::NeedsReauth.is_retryable());
        assert!(
            !ConnectorError::Forbidden {
                endpoint: "e".into()
            }
            .is_retryable()
        );
        assert!(
            !ConnectorError::Malformed {
                endpoint: "e".into(),
                detail: "x".into()
            }
            .is_retryable()
        );
    }

    #[test]
    fn invalid_grant_becomes_needs_reauth() {
        assert!(matches!(
            ConnectorError::from_auth(AuthError::InvalidGrant, "GET /v3/jobs"),
            ConnectorError::NeedsReauth
        ));
        assert!(
            ConnectorError::from_auth(AuthError::Transient("x".into()), "GET /v3/jobs")
                .is_retryable()
        );
    }

    #[test]
    fn attachment_ref_debug_does_not_print_the_signed_url() {
        let r = AttachmentRef {
            candidate_id: AtsId::from_u64(1),
            attachment_id: AtsId::from_u64(2),
            url: SecretString::from("https://files.example/x?sig=SECRETSIG"),
            filename: Some("cv.pdf".into()),
            access: FileAccess::SignedLink,
        };
        assert!(!format!("{r:?}").contains("SECRETSIG"));
    }

    #[test]
    fn canonical_timestamps_have_milliseconds_and_z() {
        let t = DateTime::parse_from_rfc3339("2026-03-01T11:15:30+01:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(canonical_timestamp(&t), "2026-03-01T10:15:30.000Z");
    }
}
