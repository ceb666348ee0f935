//! The records API (Lambda Function URL, IAM auth): what downstream features and
//! operators read. Routes, responses and errors: docs/records-api.md.
//!
//! * `GET /tenants/{tenant}/records/{entity}/{id}[?as_of=RFC3339]`: the view with
//!   per-field provenance, both layers, version and cause.
//! * `GET /tenants/{tenant}/records/{entity}/{id}/history`: every version with its cause
//!   and validity interval.
//! * `GET /tenants/{tenant}/status`: state, streams, last runs with their counts.
//! * `GET /tenants/{tenant}/changes?since=RFC3339[&limit=N][&cursor=C]`: records changed
//!   since a time, paged over the tenant's 16 index shards with an opaque cursor.
//!
//! Isolation: every identifier in the path is parsed by its newtype (no `#`, `/`, `..`,
//! no percent escapes), and every key is built from the tenant in the path, so a
//! request can only ever address that tenant's items. An unknown tenant, a tenant being
//! deleted, an invalid id or a record that does not exist all answer the same bare 404,
//! so the API never reveals whether something exists elsewhere.
//!
//! Disabled tenants: pulled data is excluded from every view. The disable function
//! rewrites each record push-only, but until it has reached a record (or if a record
//! was missed) the API renders the view from the push layer itself and omits the pull
//! layer, so a response never shows a pulled value while the pull is disabled.

use std::sync::Arc;

use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use aws_lambda_events::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use eds_core::domain::ids::{AtsId, EntityKind, RecordKey, TenantId};
use eds_core::domain::merge::{View, ViewMode};
use eds_core::domain::model::Layer;
use eds_core::domain::version::{Cause, Version};
use eds_core::invocation::Invocation;
use eds_core::store::{RecordRead, RecordSweep, SHARDS, StoreError, gsi1sk, parse_gsi1sk};
use eds_core::tenants::{
    QuarantineEntry, Registry, RegistryError, StreamState, SyncRun, TenantState,
};

/// Default and maximum page size of `/changes`.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// Index queries one `/changes` request may make; the listing continues through the
/// cursor, so a request stays fast even when few records changed.
pub const MAX_QUERIES_PER_PAGE: usize = 32;
/// Runs shown by `/status`.
pub const STATUS_RUNS: usize = 20;

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Record {
        key: RecordKey,
        as_of: Option<DateTime<Utc>>,
    },
    History {
        key: RecordKey,
    },
    Status {
        tenant: TenantId,
    },
    Changes {
        tenant: TenantId,
        since: DateTime<Utc>,
        limit: usize,
        cursor: Option<Cursor>,
    },
}

impl Route {
    pub fn tenant(&self) -> &TenantId {
        match self {
            Route::Record { key, .. } | Route::History { key } => &key.tenant,
            Route::Status { tenant } | Route::Changes { tenant, .. } => tenant,
        }
    }
}

/// Errors answered to the caller. `NotFound` never says what was not found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("temporarily unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::NotFound => 404,
            ApiError::MethodNotAllowed => 405,
            ApiError::BadRequest(_) => 400,
            ApiError::Unavailable => 503,
            ApiError::Internal => 500,
        }
    }

    fn body(&self) -> Value {
        match self {
            ApiError::BadRequest(detail) => json!({"error": "bad request", "detail": detail}),
            other => json!({"error": other.to_string()}),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "records store");
        if e.is_retryable() {
            ApiError::Unavailable
        } else {
            ApiError::Internal
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        tracing::error!(error = %e, "tenant registry");
        if e.is_retryable() {
            ApiError::Unavailable
        } else {
            ApiError::Internal
        }
    }
}

/// Where a `/changes` listing resumes: the shard and the last key returned in it, bound
/// to the `since` it was issued for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "s")]
    pub shard: u8,
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(rename = "t")]
    pub since: DateTime<Utc>,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()?;
        let c: Cursor = serde_json::from_slice(&bytes).ok()?;
        if c.shard >= SHARDS
            || c.after
                .as_deref()
                .is_some_and(|k| parse_gsi1sk(k).is_none())
        {
            return None;
        }
        Some(c)
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Query parameters: each at most once, only the names a route knows.
fn query(raw: &str, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter {:?}",
                k.chars().take(32).collect::<String>()
            )));
        }
        if out.iter().any(|(n, _)| *n == k) {
            return Err(ApiError::BadRequest(format!(
                "query parameter {k:?} given more than once"
            )));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Parses method, path and query into a route. Path segments are used as they are
/// (never percent-decoded), so an id can only be what its newtype accepts.
pub fn route(method: &str, path: &str, raw_query: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or("").split('/').collect();
    // Path first: an unknown path is 404 whatever the method.
    let shape = match segments.as_slice() {
        ["tenants", t, "records", e, id] => (t, Some((*e, *id)), "record"),
        ["tenants", t, "records", e, id, "history"] => (t, Some((*e, *id)), "history"),
        ["tenants", t, "status"] => (t, None, "status"),
        ["tenants", t, "changes"] => (t, None, "changes"),
        _ => return Err(ApiError::NotFound),
    };
    let tenant = TenantId::parse(*shape.0).map_err(|_| ApiError::NotFound)?;
    let key = match shape.1 {
        Some((e, id)) => Some(RecordKey::new(
            tenant.clone(),
            EntityKind::parse(e).map_err(|_| ApiError::NotFound)?,
            AtsId::parse(id).map_err(|_| ApiError::NotFound)?,
        )),
        None => None,
    };
    if method != "GET" {
        return Err(ApiError::MethodNotAllowed);
    }
    match (shape.2, key) {
        ("record", Some(key)) => {
            let q = query(raw_query, &["as_of"])?;
            let as_of = match param(&q, "as_of") {
                None => None,
                Some(s) => Some(parse_time(s).ok_or_else(|| {
                    ApiError::BadRequest("as_of must be an RFC 3339 timestamp".into())
                })?),
            };
            Ok(Route::Record { key, as_of })
        }
        ("history", Some(key)) => {
            query(raw_query, &[])?;
            Ok(Route::History { key })
        }
        ("status", None) => {
            query(raw_query, &[])?;
            Ok(Route::Status { tenant })
        }
        ("changes", None) => {
            let q = query(raw_query, &["since", "limit", "cursor"])?;
            let since = param(&q, "since")
                .ok_or_else(|| ApiError::BadRequest("since is required".into()))
                .and_then(|s| {
                    parse_time(s).ok_or_else(|| {
                        ApiError::BadRequest("since must be an RFC 3339 timestamp".into())
                    })
                })?;
            let limit = match param(&q, "limit") {
                None => DEFAULT_LIMIT,
                Some(s) => s
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!("limit must be an integer in 1..={MAX_LIMIT}"))
                    })?,
            };
            let cursor = match param(&q, "cursor") {
                None => None,
                Some(s) => {
                    let c = Cursor::decode(s)
                        .ok_or_else(|| ApiError::BadRequest("cursor is not valid".into()))?;
                    if c.since != since {
                        return Err(ApiError::BadRequest(
                            "cursor belongs to a listing with another since".into(),
                        ));
                    }
                    Some(c)
                }
            };
            Ok(Route::Changes {
                tenant,
                since,
                limit,
                cursor,
            })
        }
        _ => Err(ApiError::NotFound),
    }
}

/// Layers as shown: the pull layer only while pulled data may be shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayersOut {
    pub push: Option<Layer>,
    pub pull: Option<Layer>,
}

/// One version as shown to the caller.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionOut {
    pub version: u64,
    pub cause: Cause,
    pub valid_from: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<DateTime<Utc>>,
    pub mode: ViewMode,
    pub view: View,
    pub layers: LayersOut,
}

/// Renders a version for a tenant in `state`: while the pull is not visible, the view
/// is recomputed push-only and the pull layer withheld.
pub fn render_version(
    entity: EntityKind,
    v: &Version,
    valid_to: Option<DateTime<Utc>>,
    state: TenantState,
) -> VersionOut {
    let (view, mode, pull) = if state.pull_visible() {
        (v.view.clone(), v.state.mode, v.state.pull.clone())
    } else if v.state.mode == ViewMode::PushOnly {
        (v.view.clone(), ViewMode::PushOnly, None)
    } else {
        let mut s = v.state.clone();
        s.mode = ViewMode::PushOnly;
        (s.render(entity).0, ViewMode::PushOnly, None)
    };
    VersionOut {
        version: v.version,
        cause: v.cause,
        valid_from: v.valid_from,
        valid_to,
        mode,
        view,
        layers: LayersOut {
            push: v.state.push.clone(),
            pull,
        },
    }
}

/// The records API handler.
pub struct RecordsApi {
    registry: Arc<dyn Registry>,
    read: Arc<dyn RecordRead>,
    sweep: Arc<dyn RecordSweep>,
}

impl RecordsApi {
    pub fn new(
        registry: Arc<dyn Registry>,
        read: Arc<dyn RecordRead>,
        sweep: Arc<dyn RecordSweep>,
    ) -> Self {
        Self {
            registry,
            read,
            sweep,
        }
    }

    /// Handles one Function URL request.
    pub async fn handle(
        &self,
        req: LambdaFunctionUrlRequest,
        _invocation: Invocation,
    ) -> LambdaFunctionUrlResponse {
        let req = &req;
        let method = req.request_context.http.method.as_deref().unwrap_or("");
        let path = req.raw_path.as_deref().unwrap_or("");
        let raw_query = req.raw_query_string.as_deref().unwrap_or("");
        let result = match route(method, path, raw_query) {
            Ok(r) => self.serve(&r).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(body) => respond(200, &body),
            Err(e) => {
                tracing::info!(status = e.status(), method, "records api error");
                respond(e.status(), &e.body())
            }
        }
    }

    /// Serves a parsed route, returning the JSON body.
    pub async fn serve(&self, route: &Route) -> Result<Value, ApiError> {
        let rec = self
            .registry
            .get(route.tenant())
            .await?
            .ok_or(ApiError::NotFound)?;
        let state = rec.config.state;
        let readable = !matches!(state, TenantState::Deleting | TenantState::Deleted);
        match route {
            Route::Record { key, as_of } => {
                if !readable {
                    return Err(ApiError::NotFound);
                }
                let v = match as_of {
                    None => self.read.get(key).await?,
                    Some(t) => self.read.as_of(key, *t).await?,
                };
                let v = v.ok_or(ApiError::NotFound)?;
                let mut out = to_value(&render_version(key.entity, &v, None, state))?;
                if let Value::Object(m) = &mut out {
                    m.insert("tenant".into(), json!(key.tenant));
                    m.insert("entity".into(), json!(key.entity));
                    m.insert("id".into(), json!(key.ats_id));
                    m.insert("pull_visible".into(), json!(state.pull_visible()));
                    if let Some(t) = as_of {
                        m.insert("as_of".into(), json!(t));
                    }
                }
                Ok(out)
            }
            Route::History { key } => {
                if !readable {
                    return Err(ApiError::NotFound);
                }
                let history = self.read.history(key).await?;
                if history.is_empty() {
                    return Err(ApiError::NotFound);
                }
                let versions: Vec<VersionOut> = history
                    .iter()
                    .map(|h| render_version(key.entity, &h.version, h.valid_to, state))
                    .collect();
                Ok(json!({
                    "tenant": key.tenant, "entity": key.entity, "id": key.ats_id,
                    "pull_visible": state.pull_visible(),
                    "versions": versions,
                }))
            }
            Route::Status { tenant } => {
                let streams: Vec<StreamState> = self.registry.streams(tenant).await?;
                let runs: Vec<SyncRun> = self.registry.runs(tenant, STATUS_RUNS).await?;
                let quarantine: Vec<QuarantineEntry> = self.registry.quarantine(tenant).await?;
                let c = &rec.config;
                let mut status = json!({
                    "tenant": tenant,
                    "state": c.state,
                    "state_reason": c.state_reason,
                    "interval_secs": c.interval_secs,
                    "next_run_at": rec.next_run_at,
                    "remerge_pending": c.remerge_pending,
                    "running": rec.active_run.as_ref().map(|r| json!({
                        "run_id": r.run_id, "started_at": r.started_at, "pending": r.pending,
                    })),
                    "streams": streams,
                    "last_runs": runs,
                    "quarantined": quarantine.len(),
                });
                // `ats_kind` and that ATS's own settings, flat as they are stored.
                if let (Some(out), Ok(Value::Object(ats))) =
                    (status.as_object_mut(), serde_json::to_value(&c.ats))
                {
                    out.extend(ats);
                }
                Ok(status)
            }
            Route::Changes {
                tenant,
                since,
                limit,
                cursor,
            } => {
                if !readable {
                    return Err(ApiError::NotFound);
                }
                self.changes(tenant, *since, *limit, cursor.clone()).await
            }
        }
    }

    async fn changes(
        &self,
        tenant: &TenantId,
        since: DateTime<Utc>,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<Value, ApiError> {
        let mut shard = cursor.as_ref().map_or(0, |c| c.shard);
        let mut after = cursor.and_then(|c| c.after);
        let mut found = Vec::new();
        let mut next: Option<Cursor> = None;
        let mut queries = 0;
        'shards: while shard < SHARDS {
            if queries == MAX_QUERIES_PER_PAGE {
                next = Some(Cursor {
                    shard,
                    after: after.clone(),
                    since,
                });
                break;
            }
            queries += 1;
            let page = self
                .sweep
                .list_keys(tenant, shard, after.as_deref(), 500)
                .await?;
            for k in &page.keys {
                if k.changed_at >= since {
                    found.push(json!({
                        "entity": k.entity, "id": k.ats_id, "version": k.version,
                        "changed_at": k.changed_at, "tombstone": k.tombstone,
                    }));
                    if found.len() == limit {
                        let last = gsi1sk(k.entity, &k.ats_id);
                        // Resume after this key: the rest of its page is read again.
                        next = Some(Cursor {
                            shard,
                            after: Some(last),
                            since,
                        });
                        break 'shards;
                    }
                }
            }
            match page.next {
                Some(n) => after = Some(n),
                None => {
                    shard += 1;
                    after = None;
                }
            }
        }
        // A page that ended exactly at the end of the last shard has nothing after it.
        if let Some(c) = &next
            && c.shard >= SHARDS
        {
            next = None;
        }
        Ok(json!({
            "tenant": tenant,
            "since": since,
            "changes": found,
            "next_cursor": next.map(|c| c.encode()),
        }))
    }
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| {
        tracing::error!(error = %e, "serializing a response");
        ApiError::Internal
    })
}

fn respond(status: u16, body: &Value) -> LambdaFunctionUrlResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == 405 {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
    }
    let mut r = LambdaFunctionUrlResponse::default();
    r.status_code = i64::from(status);
    r.headers = headers;
    r.body = Some(body.to_string());
    r.is_base64_encoded = false;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_ids_through_their_newtypes() {
        let r = route("GET", "/tenants/acme/records/candidate/42", "").unwrap();
        assert!(matches!(r, Route::Record { as_of: None, .. }));
        assert!(matches!(
            route("GET", "/tenants/acme/records/job/7/history", "").unwrap(),
            Route::History { .. }
        ));
        assert!(matches!(
            route("GET", "/tenants/acme/status", "").unwrap(),
            Route::Status { .. }
        ));
        let r = route(
            "GET",
            "/tenants/acme/records/candidate/42",
            "as_of=2026-03-01T00:00:00Z",
        )
        .unwrap();
        assert!(matches!(r, Route::Record { as_of: Some(_), .. }));
    }

    #[test]
    fn traversal_and_key_characters_are_not_found_without_detail() {
        for path in [
            "/tenants/acme/records/candidate/..",
            "/tenants/acme/records/candidate/1%23x",
            "/tenants/acme/records/candidate/a#b",
            "/tenants/acme/records/candidate/../../other/records/candidate/1",
            "/tenants/ACME/records/candidate/1",
            "/tenants/acme/records/widget/1",
            "/tenants/acme/records/candidate/1/",
            "/tenants/acme",
            "/",
            "",
        ] {
            assert_eq!(route("GET", path, ""), Err(ApiError::NotFound), "{path}");
        }
        assert_eq!(ApiError::NotFound.body(), json!({"error": "not found"}));
    }

    #[test]
    fn malformed_queries_are_bad_requests() {
        let p = "/tenants/acme/changes";
        for q in [
            "",
            "since=yesterday",
            "since=2026-03-01T00:00:00Z&limit=0",
            "since=2026-03-01T00:00:00Z&limit=abc",
            "since=2026-03-01T00:00:00Z&limit=1001",
            "since=2026-03-01T00:00:00Z&since=2026-03-01T00:00:00Z",
            "since=2026-03-01T00:00:00Z&cursor=%%%",
            "since=2026-03-01T00:00:00Z&order=asc",
        ] {
            assert!(
                matches!(route("GET", p, q), Err(ApiError::BadRequest(_))),
                "{q}"
            );
        }
        assert!(matches!(
            route("GET", "/tenants/acme/records/job/1", "as_of=soon"),
            Err(ApiError::BadRequest(_))
        ));
        assert_eq!(
            route("POST", "/tenants/acme/status", ""),
            Err(ApiError::MethodNotAllowed)
        );
    }

    #[test]
    fn cursors_round_trip_and_are_bound_to_since() {
        let since: DateTime<Utc> = "2026-03-01T00:00:00Z".parse().unwrap();
        let c = Cursor {
            shard: 3,
            after: Some("candidate#42".into()),
            since,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c.clone()));
        let q = format!("since=2026-03-02T00:00:00Z&cursor={}", c.encode());
        assert!(matches!(
            route("GET", "/tenants/acme/changes", &q),
            Err(ApiError::BadRequest(_))
        ));
        let bad_shard = Cursor {
            shard: 16,
            ..c.clone()
        };
        assert_eq!(Cursor::decode(&bad_shard.encode()), None);
        let bad_key = Cursor {
            after: Some("other#x#y".into()),
            ..c
        };
        assert_eq!(Cursor::decode(&bad_key.encode()), None);
    }
}
