//! The HTTP simulator: one listener for the API (v3; `/v1` answers 404, as Greenhouse has
//! since 2026-08-31) and the token endpoint, a second one for the attachment storage
//! host. Every API response goes through the same pipeline: authenticate, rate-limit,
//! check scope, inject faults, serve, count.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::{AuthState, Principal, TokenError};
use crate::clock::SimClock;
use crate::config::{ExpiryStyle, Faults, Hostile, RateClock, SimConfig};
use crate::files::{attachment_bytes, attachment_sha256, sign};
use crate::model::{AtsData, Entity, millis, parse_ts, ts};
use crate::store::{Bounds, Filters, Row, Store, StoreError};

/// What `X-RateLimit-Limit` says when limits are off: a large but plausible number, so
/// a client pacing itself from the header does not divide by zero.
const UNLIMITED: u32 = 1_000_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

/// Per-request statistics, readable by tests and benchmarks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// `"GET /v3/candidates"` -> status -> count. Paths use `{id}` for single reads.
    pub requests: BTreeMap<String, BTreeMap<u16, u64>>,
    pub total_requests: u64,
    /// 429 answers (real limit and injected bursts, API and token endpoint).
    pub rate_limited: u64,
    pub token_requests: u64,
    /// Response body bytes sent by the API listener.
    pub bytes_sent: u64,
    /// Records in 200 list/read bodies.
    pub records_served: u64,
    pub storage_requests: u64,
    pub storage_bytes: u64,
}

impl Stats {
    pub fn count(&self, endpoint: &str, status: u16) -> u64 {
        self.requests
            .get(endpoint)
            .and_then(|m| m.get(&status))
            .copied()
            .unwrap_or(0)
    }
    pub fn endpoint_total(&self, endpoint: &str) -> u64 {
        self.requests
            .get(endpoint)
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }
    pub fn status_total(&self, status: u16) -> u64 {
        self.requests.values().filter_map(|m| m.get(&status)).sum()
    }
}

struct Rate {
    limit: u32,
    remaining: u32,
    reset: i64,
    retry_after: Option<u64>,
}

struct Out {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    link: Option<String>,
    records: u64,
    extra: Vec<(HeaderName, String)>,
}

impl Out {
    fn json(status: u16, v: Value) -> Out {
        Out {
            status,
            body: v.to_string().into_bytes(),
            content_type: "application/json; charset=utf-8",
            link: None,
            records: 0,
            extra: vec![],
        }
    }
    fn message(status: u16, message: &str, errors: &[&str]) -> Out {
        Out::json(status, json!({"message": message, "errors": errors}))
    }
    fn unprocessable(msg: &str) -> Out {
        Out::message(422, "Unprocessable Content", &[msg])
    }
    fn not_found() -> Out {
        Out::message(404, "Resource not found", &[])
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    e: Entity,
    /// The last id served: the next page starts strictly below it.
    after: u64,
    pp: u32,
    f: Filters,
    /// Issue time, simulated epoch ms.
    iat: i64,
    /// Cursor epoch: bumping it expires every outstanding cursor.
    ep: u64,
}

struct FaultState {
    rng: ChaCha8Rng,
    burst_left: u32,
}

enum Fault {
    None,
    Burst(u64),
    Error(u16),
    Malformed,
}

pub(crate) struct Shared {
    cfg: RwLock<SimConfig>,
    clock: SimClock,
    store: RwLock<Store>,
    auth: Mutex<AuthState>,
    windows: Mutex<HashMap<String, (i64, u32)>>,
    stats: Mutex<Stats>,
    faults: Mutex<FaultState>,
    cursor_epoch: AtomicU64,
    secret: Vec<u8>,
    file_seed: u64,
    api_base: String,
    storage_base: String,
}

fn parse_pipe(v: &str) -> Result<Bounds, String> {
    let parts: Vec<&str> = v.split('|').collect();
    if parts.len() < 2 || !parts.len().is_multiple_of(2) {
        return Err(format!("Invalid date filter '{v}': use op|timestamp pairs"));
    }
    let mut b = Bounds::default();
    for pair in parts.chunks(2) {
        // A `+` in an offset arrives as a space after form decoding.
        let t = parse_ts(pair[1])
            .or_else(|| parse_ts(&pair[1].replace(' ', "+")))
            .map(millis)
            .ok_or_else(|| format!("Invalid timestamp '{}'", pair[1]))?;
        match pair[0] {
            "gt" => b.gt = Some(t),
            "gte" => b.gte = Some(t),
            "lt" => b.lt = Some(t),
            "lte" => b.lte = Some(t),
            op => return Err(format!("Invalid operator '{op}'")),
        }
    }
    Ok(b)
}

fn parse_ids(v: &str, name: &str) -> Result<Vec<u64>, String> {
    let mut ids = v
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| format!("Invalid {name}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.len() > 50 {
        return Err(format!("{name} accepts at most 50 values"));
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

fn parse_per_page(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if (1..=500).contains(&n) => Ok(n),
        _ => Err("per_page must be an integer between 1 and 500".into()),
    }
}

fn parse_v3_query(e: Entity, pairs: &[(String, String)]) -> Result<(Filters, u32), String> {
    let mut f = Filters::default();
    let mut pp = 100;
    for (k, v) in pairs {
        match k.as_str() {
            "per_page" => pp = parse_per_page(v)?,
            "updated_at" => f.updated = Some(parse_pipe(v)?),
            "created_at" => f.created = Some(parse_pipe(v)?),
            "last_activity_at" => f.activity = Some(parse_pipe(v)?),
            "ids" => f.ids = Some(parse_ids(v, "ids")?),
            "candidate_ids" if matches!(e, Entity::Application | Entity::Attachment) => {
                f.candidate_ids = Some(parse_ids(v, "candidate_ids")?)
            }
            _ => {}
        }
    }
    if f.updated.is_some() && f.created.is_some() {
        return Err("Do not combine created_at and updated_at filters.".into());
    }
    Ok((f, pp))
}

fn parse_basic(headers: &HeaderMap) -> Option<(String, String)> {
    let h = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = STANDARD.decode(rest.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':').unwrap_or((s.as_str(), ""));
    Some((u.to_string(), p.to_string()))
}

impl Shared {
    fn rate_now_ms(&self) -> i64 {
        match read(&self.cfg).rate_clock {
            RateClock::Real => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            RateClock::Simulated => millis(self.clock.now()),
        }
    }

    /// Fixed window aligned on multiples of the window length.
    fn hit(&self, key: &str, limit: u32, window: Duration, count: bool) -> Rate {
        let now = self.rate_now_ms();
        let w = (window.as_millis() as i64).max(1);
        let start = now - now.rem_euclid(w);
        let reset_ms = start + w;
        let reset = (reset_ms + 999) / 1000;
        if limit == 0 {
            return Rate {
                limit: UNLIMITED,
                remaining: UNLIMITED,
                reset,
                retry_after: None,
            };
        }
        let mut g = lock(&self.windows);
        let e = g.entry(key.to_string()).or_insert((start, 0));
        if e.0 != start {
            *e = (start, 0);
        }
        if !count {
            return Rate {
                limit,
                remaining: limit.saturating_sub(e.1),
                reset,
                retry_after: None,
            };
        }
        if e.1 >= limit {
            let retry = ((reset_ms - now + 999) / 1000).max(1) as u64;
            Rate {
                limit,
                remaining: 0,
                reset,
                retry_after: Some(retry),
            }
        } else {
            e.1 += 1;
            Rate {
                limit,
                remaining: limit - e.1,
                reset,
                retry_after: None,
            }
        }
    }

    fn roll(&self, p: f64) -> bool {
        p > 0.0 && lock(&self.faults).rng.random::<f64>() < p
    }

    fn finish(&self, endpoint: &str, rate: Option<&Rate>, out: Out) -> Response {
        {
            let mut st = lock(&self.stats);
            *st.requests
                .entry(endpoint.to_string())
                .or_default()
                .entry(out.status)
                .or_default() += 1;
            st.total_requests += 1;
            st.bytes_sent += out.body.len() as u64;
            if out.status == 429 {
                st.rate_limited += 1;
            }
            if out.status == 200 {
                st.records_served += out.records;
            }
        }
        let mut resp = Response::new(Body::from(out.body));
        *resp.status_mut() =
            StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(out.content_type),
        );
        if let Some(r) = rate {
            h.insert("x-ratelimit-limit", HeaderValue::from(r.limit));
            h.insert("x-ratelimit-remaining", HeaderValue::from(r.remaining));
            h.insert("x-ratelimit-reset", HeaderValue::from(r.reset));
            if let Some(ra) = r.retry_after {
                h.insert(header::RETRY_AFTER, HeaderValue::from(ra));
            }
        }
        if let Some(l) = out.link.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert(header::LINK, l);
        }
        for (k, v) in out.extra {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
        resp
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Out> {
        let unauthorized = |why: &str| Out::message(401, "Unauthorized", &[why]);
        let h = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Some(token) = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
        else {
            return Err(unauthorized("Missing bearer token"));
        };
        match lock(&self.auth).bearer(token.trim(), millis(self.clock.now())) {
            Ok(p) => Ok(p),
            Err(TokenError::Expired) => Err(unauthorized("Token expired")),
            Err(TokenError::Unknown) => Err(unauthorized("Token could not be decoded")),
        }
    }

    async fn api(
        &self,
        e: Entity,
        endpoint: &str,
        headers: &HeaderMap,
        f: impl FnOnce(&Shared) -> Out,
    ) -> Response {
        let (limit, window, faults, hostile) = {
            let c = read(&self.cfg);
            let h = c.hostile.clone();
            (c.rate_limit_v3, c.rate_window_v3, c.faults.clone(), h)
        };
        let tag = "v3";
        let principal = match self.authenticate(headers) {
            Ok(p) => p,
            Err(out) => {
                let rate = self.hit(&format!("{tag}|anonymous"), limit, window, false);
                return self.finish(endpoint, Some(&rate), out);
            }
        };
        let rate = self.hit(
            &format!("{tag}|{}", principal.credential),
            limit,
            window,
            true,
        );
        if rate.retry_after.is_some() {
            return self.finish(
                endpoint,
                Some(&rate),
                Out::message(429, "Rate limit exceeded", &[]),
            );
        }
        let scope = e.list_scope();
        if !principal.scopes.iter().any(|s| s == scope) {
            let msg = format!("Missing required scope {scope}");
            return self.finish(
                endpoint,
                Some(&rate),
                Out::message(403, "Forbidden", &[&msg]),
            );
        }
        if principal
            .sub
            .is_some_and(|u| lock(&self.auth).non_admins.contains(&u))
        {
            return self.finish(
                endpoint,
                Some(&rate),
                Out::message(403, "Forbidden", &["The acting user is not a Site Admin"]),
            );
        }
        if let Some(ra) = &hostile.retry_after {
            let mut out = Out::message(429, "Rate limit exceeded", &[]);
            out.extra.push((header::RETRY_AFTER, ra.clone()));
            return self.finish(endpoint, Some(&rate), out);
        }
        if let Some(rows) = hostile.page_rows {
            return self.hostile_page(endpoint, &rate, rows, &hostile);
        }
        let (fault, delay) = self.draw_fault(&faults);
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        match fault {
            Fault::Burst(retry) => {
                let r = Rate {
                    limit: rate.limit,
                    remaining: 0,
                    reset: rate.reset,
                    retry_after: Some(retry),
                };
                return self.finish(
                    endpoint,
                    Some(&r),
                    Out::message(429, "Rate limit exceeded", &[]),
                );
            }
            Fault::Error(code) => {
                return self.finish(
                    endpoint,
                    Some(&rate),
                    Out::message(code, "Internal Server Error", &["Simulated failure"]),
                );
            }
            _ => {}
        }
        let mut out = f(self);
        if matches!(fault, Fault::Malformed) && out.status == 200 {
            out.body.truncate(out.body.len() / 2);
        }
        match hostile.drip_bytes_per_sec {
            Some(rate_bps) => {
                let body = std::mem::take(&mut out.body);
                let mut resp = self.finish(endpoint, Some(&rate), out);
                *resp.body_mut() = drip(body, rate_bps);
                resp
            }
            None => self.finish(endpoint, Some(&rate), out),
        }
    }

    /// A 200 whose body is a JSON array of `rows` synthetic rows of about
    /// `hostile.row_bytes` each, generated chunk by chunk while it is sent (not dripped).
    fn hostile_page(&self, endpoint: &str, rate: &Rate, rows: u64, hostile: &Hostile) -> Response {
        let row_bytes = if hostile.row_bytes == 0 {
            1000
        } else {
            hostile.row_bytes as usize
        };
        let out = Out::json(200, json!([]));
        let mut resp = self.finish(endpoint, Some(rate), out);
        const ROWS_PER_CHUNK: u64 = 64;
        let chunks = futures::stream::unfold(0u64, move |next| async move {
            if next > rows {
                return None;
            }
            let mut chunk = Vec::with_capacity((ROWS_PER_CHUNK as usize) * (row_bytes + 2));
            if next == 0 {
                chunk.push(b'[');
            }
            let end = (next + ROWS_PER_CHUNK).min(rows);
            for id in next..end {
                if id > 0 {
                    chunk.push(b',');
                }
                let head = format!(
                    r#"{{"id":{},"first_name":"Hostile","last_name":"Row {id}","updated_at":"2026-01-01T00:00:00.000Z","padding":""#,
                    id + 1
                );
                chunk.extend_from_slice(head.as_bytes());
                let pad = row_bytes.saturating_sub(head.len() + 2);
                chunk.resize(chunk.len() + pad, b'x');
                chunk.extend_from_slice(b"\"}");
            }
            if end == rows {
                chunk.push(b']');
                return Some((Ok::<_, std::io::Error>(chunk), rows + 1));
            }
            Some((Ok(chunk), end))
        });
        *resp.body_mut() = Body::from_stream(chunks);
        resp
    }

    fn draw_fault(&self, f: &Faults) -> (Fault, Option<Duration>) {
        let mut st = lock(&self.faults);
        let delay = f.latency.map(|(lo, hi)| {
            if hi <= lo {
                lo
            } else {
                lo + Duration::from_micros(st.rng.random_range(0..(hi - lo).as_micros() as u64 + 1))
            }
        });
        if st.burst_left > 0 {
            st.burst_left -= 1;
            return (
                Fault::Burst(f.burst_429.map(|b| b.retry_after_secs).unwrap_or(1)),
                delay,
            );
        }
        if let Some(b) = f.burst_429
            && b.length > 0
            && st.rng.random::<f64>() < b.probability
        {
            st.burst_left = b.length - 1;
            return (Fault::Burst(b.retry_after_secs), delay);
        }
        if f.error_5xx_rate > 0.0 && st.rng.random::<f64>() < f.error_5xx_rate {
            return (
                Fault::Error([500, 502, 503][st.rng.random_range(0..3)]),
                delay,
            );
        }
        if f.malformed_body_rate > 0.0 && st.rng.random::<f64>() < f.malformed_body_rate {
            return (Fault::Malformed, delay);
        }
        (Fault::None, delay)
    }

    fn encode_cursor(&self, c: &Cursor) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).unwrap_or_default());
        let sig = sign(&self.secret, &body, 0);
        format!("{body}.{}", &sig[..16])
    }

    fn decode_cursor(&self, tok: &str) -> Option<Cursor> {
        let (body, sig) = tok.split_once('.')?;
        if sign(&self.secret, body, 0).get(..16) != Some(sig) {
            return None;
        }
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()
    }

    fn signed_url(&self, id: u64, now: DateTime<Utc>) -> String {
        let ttl = read(&self.cfg).attachment_url_ttl;
        let exp = now.timestamp() + ttl.as_secs() as i64;
        let path = format!("/files/{id}");
        let sig = sign(&self.secret, &path, exp);
        format!("{}{path}?expires={exp}&sig={sig}", self.storage_base)
    }

    /// Appends a row's JSON; attachment rows get their signed `url` spliced in.
    fn write_row(&self, e: Entity, id: u64, row: &Row, now: DateTime<Utc>, out: &mut Vec<u8>) {
        if e == Entity::Attachment && row.json.len() > 2 {
            out.extend_from_slice(&row.json[..row.json.len() - 1]);
            out.extend_from_slice(b",\"url\":");
            out.extend_from_slice(
                Value::String(self.signed_url(id, now))
                    .to_string()
                    .as_bytes(),
            );
            out.push(b'}');
        } else {
            out.extend_from_slice(&row.json);
        }
    }

    fn v3_list(&self, e: Entity, q: Option<&str>) -> Out {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        let now = self.clock.now();
        let (filters, before, pp) =
            if let Some((_, tok)) = pairs.iter().find(|(k, _)| k == "cursor") {
                if pairs.len() != 1 {
                    return Out::unprocessable(
                        "When passing a cursor, do not include other query params.",
                    );
                }
                let Some(c) = self.decode_cursor(tok).filter(|c| c.e == e) else {
                    return Out::unprocessable("Invalid cursor");
                };
                let ttl = read(&self.cfg).cursor_ttl;
                let expired = ttl.is_some_and(|t| millis(now) - c.iat > t.as_millis() as i64)
                    || c.ep != self.cursor_epoch.load(Ordering::Relaxed)
                    || self.roll(read(&self.cfg).faults.cursor_expiry_rate);
                if expired {
                    return Out::unprocessable("Cursor expired");
                }
                (c.f, c.after, c.pp)
            } else {
                match parse_v3_query(e, &pairs) {
                    Ok((f, pp)) => (f, u64::MAX, pp),
                    Err(m) => return Out::unprocessable(&m),
                }
            };
        let store = read(&self.store);
        let (rows, more) = store.page_desc(e, &filters, before, pp as usize);
        let cap: usize = rows.iter().map(|r| r.1.json.len() + 1).sum::<usize>()
            + 2
            + if e == Entity::Attachment {
                rows.len() * 160
            } else {
                0
            };
        let mut body = Vec::with_capacity(cap);
        body.push(b'[');
        for (i, (id, row)) in rows.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            self.write_row(e, *id, row, now, &mut body);
        }
        body.push(b']');
        let n = rows.len() as u64;
        let link = match rows.last() {
            Some((last, _)) if more => {
                let c = Cursor {
                    e,
                    after: *last,
                    pp,
                    f: filters,
                    iat: millis(now),
                    ep: self.cursor_epoch.load(Ordering::Relaxed),
                };
                Some(format!(
                    "<{}/v3/{}?cursor={}>; rel=\"next\"",
                    self.api_base,
                    e.path(),
                    self.encode_cursor(&c)
                ))
            }
            _ => None,
        };
        drop(store);
        Out {
            link,
            records: n,
            ..Out::json(200, Value::Null)
        }
        .with_body(body)
    }

    fn v3_get(&self, e: Entity, id: &str) -> Out {
        let Ok(id) = id.parse::<u64>() else {
            return Out::not_found();
        };
        let store = read(&self.store);
        if store.hidden.contains(&(e, id)) {
            return Out::json(
                403,
                json!({"message": "Forbidden", "errors": ["You do not have access to this record."]}),
            );
        }
        let Some(row) = store.table(e).get(&id) else {
            return Out::not_found();
        };
        let mut body = Vec::with_capacity(row.json.len() + 200);
        self.write_row(e, id, row, self.clock.now(), &mut body);
        Out {
            records: 1,
            ..Out::json(200, Value::Null)
        }
        .with_body(body)
    }

    fn token(&self, headers: &HeaderMap, body: &str) -> Response {
        let endpoint = "POST /token";
        lock(&self.stats).token_requests += 1;
        let (limit, window, style, access_ttl, refresh_ttl) = {
            let c = read(&self.cfg);
            (
                c.token_rate_limit,
                c.token_rate_window,
                c.token_expiry_style,
                c.access_token_ttl,
                c.refresh_token_idle_ttl,
            )
        };
        let Some((client_id, secret)) = parse_basic(headers) else {
            let rate = self.hit("token|anonymous", limit, window, false);
            return self.finish(
                endpoint,
                Some(&rate),
                Out::json(401, json!({"error": "invalid_client"})),
            );
        };
        let rate = self.hit(&format!("token|{client_id}"), limit, window, true);
        if rate.retry_after.is_some() {
            return self.finish(
                endpoint,
                Some(&rate),
                Out::message(429, "Rate limit exceeded", &[]),
            );
        }
        let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let now = self.clock.now();
        let result = {
            let mut auth = lock(&self.auth);
            auth.check_client(&client_id, &secret).and_then(|_| {
                auth.grant(
                    &client_id,
                    &form,
                    millis(now),
                    access_ttl.as_millis() as i64,
                    refresh_ttl.as_millis() as i64,
                )
            })
        };
        let out = match result {
            Err(err) => {
                let mut o = Out::json(err.status(), json!({"error": err.code()}));
                if err.status() == 401 {
                    o.extra.push((
                        header::WWW_AUTHENTICATE,
                        "Basic realm=\"greenhouse\"".into(),
                    ));
                }
                o
            }
            Ok(iss) => {
                let mut m = Map::new();
                m.insert("access_token".into(), json!(iss.access_token));
                m.insert("token_type".into(), json!("Bearer"));
                match style {
                    ExpiryStyle::ExpiresAt => m.insert(
                        "expires_at".into(),
                        json!(ts(crate::model::from_millis(iss.expires))),
                    ),
                    ExpiryStyle::ExpiresIn => m.insert(
                        "expires_in".into(),
                        json!((iss.expires - millis(now)) / 1000),
                    ),
                };
                if let Some(r) = iss.refresh_token {
                    m.insert("refresh_token".into(), json!(r));
                }
                m.insert("scope".into(), json!(iss.scope));
                let mut o = Out::json(200, Value::Object(m));
                o.extra.push((header::CACHE_CONTROL, "no-store".into()));
                o
            }
        };
        self.finish(endpoint, Some(&rate), out)
    }

    fn file(&self, id: &str, q: Option<&str>) -> Response {
        let deny = |why: &str| {
            Out {
            content_type: "application/xml",
            ..Out::json(403, Value::Null)
        }
        .with_body(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>{why}</Message></Error>").into_bytes())
        };
        let out = (|| {
            let Ok(id) = id.parse::<u64>() else {
                return Out::not_found();
            };
            let pairs: HashMap<String, String> =
                url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
                    .into_owned()
                    .collect();
            let (Some(exp), Some(sig)) = (
                pairs.get("expires").and_then(|e| e.parse::<i64>().ok()),
                pairs.get("sig"),
            ) else {
                return deny("Query-string authentication requires the expires and sig parameters");
            };
            if sign(&self.secret, &format!("/files/{id}"), exp) != *sig {
                return deny(
                    "The request signature we calculated does not match the signature you provided",
                );
            }
            if exp <= self.clock.now().timestamp() {
                return deny("Request has expired");
            }
            if !read(&self.store)
                .table(Entity::Attachment)
                .contains_key(&id)
            {
                return Out::message(404, "NoSuchKey", &[]);
            }
            let bytes = attachment_bytes(self.file_seed, id);
            Out {
                content_type: "application/pdf",
                records: 1,
                ..Out::json(200, Value::Null)
            }
            .with_body(bytes)
        })();
        {
            let mut st = lock(&self.stats);
            st.storage_requests += 1;
            if out.status == 200 {
                st.storage_bytes += out.body.len() as u64;
            }
            *st.requests
                .entry("GET /files/{id}".into())
                .or_default()
                .entry(out.status)
                .or_default() += 1;
        }
        let mut resp = Response::new(Body::from(out.body));
        *resp.status_mut() =
            StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(out.content_type),
        );
        resp
    }
}

/// `body` sent `bytes_per_sec` bytes at a time, one piece per second (the first at once).
fn drip(body: Vec<u8>, bytes_per_sec: u64) -> Body {
    let step = usize::try_from(bytes_per_sec.max(1)).unwrap_or(usize::MAX);
    let pieces = futures::stream::unfold((body, 0usize), move |(body, at)| async move {
        if at >= body.len() {
            return None;
        }
        if at > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let end = at.saturating_add(step).min(body.len());
        let piece = body[at..end].to_vec();
        Some((Ok::<_, std::io::Error>(piece), (body, end)))
    });
    Body::from_stream(pieces)
}

impl Out {
    fn with_body(mut self, body: Vec<u8>) -> Out {
        self.body = body;
        self
    }
}

type S = State<Arc<Shared>>;

async fn h_v3_list(
    State(s): S,
    Path(res): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let Some(e) = Entity::from_path(&res) else {
        return s.finish("GET /v3/?", None, Out::not_found());
    };
    let ep = format!("GET /v3/{}", e.path());
    s.api(e, &ep, &headers, |s| s.v3_list(e, q.as_deref()))
        .await
}

async fn h_v3_get(
    State(s): S,
    Path((res, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(e) = Entity::from_path(&res) else {
        return s.finish("GET /v3/?", None, Out::not_found());
    };
    let ep = format!("GET /v3/{}/{{id}}", e.path());
    s.api(e, &ep, &headers, |s| s.v3_get(e, &id)).await
}

async fn h_token(State(s): S, headers: HeaderMap, body: String) -> Response {
    s.token(&headers, &body)
}

async fn h_file(State(s): S, Path(id): Path<String>, RawQuery(q): RawQuery) -> Response {
    s.file(&id, q.as_deref())
}

async fn h_not_found(State(s): S) -> Response {
    s.finish("other", None, Out::not_found())
}

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Binds the API listener and the storage listener on `cfg.bind_host` (127.0.0.1
    /// by default; ports from the config, 0 = any) and serves `data` until the handle is
    /// shut down or dropped.
    pub async fn start(cfg: SimConfig, data: AtsData) -> anyhow::Result<SimHandle> {
        let api = tokio::net::TcpListener::bind((cfg.bind_host, cfg.api_port)).await?;
        let storage = tokio::net::TcpListener::bind((cfg.bind_host, cfg.storage_port)).await?;
        let (api_addr, storage_addr) = (api.local_addr()?, storage.local_addr()?);
        let secret: [u8; 32] = rand::random();
        let store = Store::from_data(&data)?;
        let fault_seed = cfg.faults.seed;
        let shared = Arc::new(Shared {
            cfg: RwLock::new(cfg),
            clock: SimClock::new(data.now),
            store: RwLock::new(store),
            auth: Mutex::new(AuthState::new(secret.to_vec())),
            windows: Mutex::new(HashMap::new()),
            stats: Mutex::new(Stats::default()),
            faults: Mutex::new(FaultState {
                rng: ChaCha8Rng::seed_from_u64(fault_seed),
                burst_left: 0,
            }),
            cursor_epoch: AtomicU64::new(0),
            secret: secret.to_vec(),
            file_seed: data.file_seed,
            api_base: format!("http://{api_addr}"),
            storage_base: format!("http://{storage_addr}"),
        });
        drop(data);
        let api_app = Router::new()
            .route("/token", post(h_token))
            .route("/v3/{res}", get(h_v3_list))
            .route("/v3/{res}/{id}", get(h_v3_get))
            .fallback(h_not_found)
            .with_state(shared.clone());
        let storage_app = Router::new()
            .route("/files/{id}", get(h_file))
            .fallback(h_not_found)
            .with_state(shared.clone());
        let mut stops = vec![];
        let mut tasks = vec![];
        for (listener, app) in [(api, api_app), (storage, storage_app)] {
            let (tx, rx) = oneshot::channel::<()>();
            stops.push(tx);
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            }));
        }
        Ok(SimHandle {
            shared,
            api_addr,
            storage_addr,
            stops,
            tasks,
        })
    }
}

/// A running simulator. Dropping it stops the listeners (the tasks end with the runtime).
pub struct SimHandle {
    shared: Arc<Shared>,
    api_addr: SocketAddr,
    storage_addr: SocketAddr,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`; v3 under `{api_base}/v3/...`.
    pub fn api_base(&self) -> String {
        self.shared.api_base.clone()
    }
    /// The OAuth token endpoint (same listener as the API).
    pub fn token_url(&self) -> String {
        format!("{}/token", self.shared.api_base)
    }
    /// The attachment storage host, `http://127.0.0.1:PORT2`.
    pub fn storage_base(&self) -> String {
        self.shared.storage_base.clone()
    }
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }
    pub fn storage_addr(&self) -> SocketAddr {
        self.storage_addr
    }

    pub fn add_oauth_client(&self, client_id: &str, client_secret: &str, scopes: &[&str]) {
        lock(&self.shared.auth).add_client(client_id, client_secret, scopes);
    }
    /// An authorization code for `client_id` acting as `user_id`, valid for the
    /// configured code lifetime (1 minute) of simulated time, single use.
    pub fn issue_authorization_code(&self, client_id: &str, user_id: u64) -> String {
        let ttl = read(&self.shared.cfg).auth_code_ttl.as_millis() as i64;
        lock(&self.shared.auth).issue_code(client_id, user_id, millis(self.shared.clock.now()), ttl)
    }
    /// Revokes every refresh token of the client (a customer disconnecting the app).
    pub fn revoke_refresh_tokens(&self, client_id: &str) {
        lock(&self.shared.auth).revoke_refresh(client_id);
    }
    /// Makes every issued access token expired (calls get 401 until a new token).
    pub fn expire_access_tokens(&self) {
        lock(&self.shared.auth).expire_access();
    }
    /// Marks a Greenhouse user as (not) a Site Admin; tokens acting as a non-admin get 403.
    pub fn set_site_admin(&self, user_id: u64, is_admin: bool) {
        let mut a = lock(&self.shared.auth);
        if is_admin {
            a.non_admins.remove(&user_id);
        } else {
            a.non_admins.insert(user_id);
        }
    }

    pub fn clock(&self) -> SimClock {
        self.shared.clock.clone()
    }
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }
    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }
    /// Changes records in the ATS (update, delete, merge, anonymise, add attachment).
    pub fn mutate(&self) -> Mutator {
        Mutator {
            shared: self.shared.clone(),
        }
    }
    /// The current ATS state (for computing expected views after mutations).
    pub fn snapshot(&self) -> AtsData {
        read(&self.shared.store).snapshot(self.shared.clock.now(), self.shared.file_seed)
    }

    pub fn config(&self) -> SimConfig {
        read(&self.shared.cfg).clone()
    }
    pub fn set_config(&self, cfg: SimConfig) {
        let seed = cfg.faults.seed;
        *write(&self.shared.cfg) = cfg;
        *lock(&self.shared.faults) = FaultState {
            rng: ChaCha8Rng::seed_from_u64(seed),
            burst_left: 0,
        };
    }
    pub fn set_faults(&self, f: Faults) {
        *lock(&self.shared.faults) = FaultState {
            rng: ChaCha8Rng::seed_from_u64(f.seed),
            burst_left: 0,
        };
        write(&self.shared.cfg).faults = f;
    }
    pub fn set_rate_limit_v3(&self, n: u32) {
        write(&self.shared.cfg).rate_limit_v3 = n;
    }
    pub fn set_token_rate_limit(&self, n: u32) {
        write(&self.shared.cfg).token_rate_limit = n;
    }
    pub fn set_cursor_ttl(&self, ttl: Option<Duration>) {
        write(&self.shared.cfg).cursor_ttl = ttl;
    }
    /// Every cursor issued so far becomes expired (422 on use).
    pub fn expire_cursors(&self) {
        self.shared.cursor_epoch.fetch_add(1, Ordering::Relaxed);
    }
    /// Seed of attachment contents: `files::attachment_bytes(handle.file_seed(), id)`.
    pub fn file_seed(&self) -> u64 {
        self.shared.file_seed
    }
    /// Hex sha256 of the bytes the storage host serves for attachment `id`.
    pub fn attachment_sha256(&self, id: u64) -> String {
        attachment_sha256(self.shared.file_seed, id)
    }

    /// Stops both listeners and waits for them.
    pub async fn shutdown(mut self) {
        for tx in self.stops.drain(..) {
            let _ = tx.send(());
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        for tx in self.stops.drain(..) {
            let _ = tx.send(());
        }
    }
}

/// Changes to the ATS while the simulator runs. Every change moves `updated_at` to the
/// simulated clock's now, as Greenhouse does.
pub struct Mutator {
    shared: Arc<Shared>,
}

impl Mutator {
    fn now_ts(&self) -> Value {
        Value::String(ts(self.shared.clock.now()))
    }

    pub fn get(&self, e: Entity, id: u64) -> Option<Value> {
        read(&self.shared.store).get_value(e, id).ok()
    }

    pub fn ids(&self, e: Entity) -> Vec<u64> {
        read(&self.shared.store).table(e).keys().copied().collect()
    }

    /// Sets v3 fields of a record and moves its `updated_at`.
    pub fn update_fields(
        &self,
        e: Entity,
        id: u64,
        fields: Map<String, Value>,
    ) -> Result<(), StoreError> {
        let mut store = write(&self.shared.store);
        let mut v = store.get_value(e, id)?;
        if let Value::Object(o) = &mut v {
            for (k, val) in fields {
                if k == "id" {
                    return Err(StoreError::Invalid("the id cannot change".into()));
                }
                o.insert(k, val);
            }
            o.insert("updated_at".into(), self.now_ts());
        }
        store.put_value(e, &v)?;
        Ok(())
    }

    pub fn update(&self, e: Entity, id: u64, field: &str, value: Value) -> Result<(), StoreError> {
        let mut m = Map::new();
        m.insert(field.to_string(), value);
        self.update_fields(e, id, m)
    }

    /// Moves `updated_at` without changing content.
    pub fn touch(&self, e: Entity, id: u64) -> Result<(), StoreError> {
        self.update_fields(e, id, Map::new())
    }

    /// Deletes a record. A deleted candidate takes its applications and attachments
    /// with it; a deleted application takes its attachments.
    pub fn delete(&self, e: Entity, id: u64) -> Result<(), StoreError> {
        let mut store = write(&self.shared.store);
        store
            .table_mut(e)
            .remove(&id)
            .ok_or(StoreError::NotFound(e.as_str(), id))?;
        match e {
            Entity::Candidate => {
                store
                    .table_mut(Entity::Application)
                    .retain(|_, r| r.candidate_id != Some(id));
                store
                    .table_mut(Entity::Attachment)
                    .retain(|_, r| r.candidate_id != Some(id));
            }
            Entity::Application => {
                let gone: Vec<u64> = store
                    .table(Entity::Attachment)
                    .iter()
                    .filter(|(_, r)| {
                        r.value().ok().and_then(|v| v["application_id"].as_u64()) == Some(id)
                    })
                    .map(|(k, _)| *k)
                    .collect();
                for k in gone {
                    store.table_mut(Entity::Attachment).remove(&k);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Merges `loser` into `winner`: the loser disappears (404, absent from lists), its
    /// applications and attachments move to the winner, contact lists are united, and
    /// every changed record gets a new `updated_at`.
    pub fn merge_candidates(&self, winner: u64, loser: u64) -> Result<(), StoreError> {
        if winner == loser {
            return Err(StoreError::Invalid(
                "a candidate cannot merge into itself".into(),
            ));
        }
        let now = self.now_ts();
        let mut store = write(&self.shared.store);
        let mut w = store.get_value(Entity::Candidate, winner)?;
        let l = store.get_value(Entity::Candidate, loser)?;
        for list in [
            "email_addresses",
            "phone_numbers",
            "addresses",
            "website_addresses",
            "social_media_addresses",
        ] {
            let mut merged = w[list].as_array().cloned().unwrap_or_default();
            for x in l[list].as_array().into_iter().flatten() {
                if !merged.iter().any(|m| m["value"] == x["value"]) {
                    merged.push(x.clone());
                }
            }
            if let Value::Object(o) = &mut w {
                o.insert(list.into(), Value::Array(merged));
            }
        }
        if let Value::Object(o) = &mut w {
            o.insert("updated_at".into(), now.clone());
        }
        store.put_value(Entity::Candidate, &w)?;
        store.table_mut(Entity::Candidate).remove(&loser);
        for e in [Entity::Application, Entity::Attachment] {
            let moved: Vec<u64> = store
                .table(e)
                .iter()
                .filter(|(_, r)| r.candidate_id == Some(loser))
                .map(|(k, _)| *k)
                .collect();
            for id in moved {
                let mut v = store.get_value(e, id)?;
                if let Value::Object(o) = &mut v {
                    o.insert("candidate_id".into(), json!(winner));
                    o.insert("updated_at".into(), now.clone());
                }
                store.put_value(e, &v)?;
            }
        }
        Ok(())
    }

    /// GDPR anonymisation: personal fields replaced in place, `updated_at` moves.
    pub fn anonymise(&self, candidate: u64) -> Result<(), StoreError> {
        let mut m = Map::new();
        m.insert("first_name".into(), json!("Anonymized"));
        m.insert("last_name".into(), json!("Candidate"));
        m.insert("preferred_name".into(), Value::Null);
        for list in [
            "email_addresses",
            "phone_numbers",
            "addresses",
            "website_addresses",
            "social_media_addresses",
        ] {
            m.insert(list.into(), json!([]));
        }
        self.update_fields(Entity::Candidate, candidate, m)
    }

    /// Adds an attachment row to a candidate; returns its id (above every existing one).
    pub fn add_attachment(
        &self,
        candidate_id: u64,
        application_id: Option<u64>,
        filename: &str,
        kind: &str,
    ) -> Result<u64, StoreError> {
        let now = self.now_ts();
        let mut store = write(&self.shared.store);
        if !store.table(Entity::Candidate).contains_key(&candidate_id) {
            return Err(StoreError::NotFound("candidate", candidate_id));
        }
        let id = store
            .table(Entity::Attachment)
            .keys()
            .next_back()
            .copied()
            .unwrap_or(90_000_000)
            + 1;
        let v = json!({"id": id, "candidate_id": candidate_id, "application_id": application_id, "filename": filename,
            "type": kind, "created_at": now, "updated_at": now});
        store.put_value(Entity::Attachment, &v)
    }

    /// Inserts (or replaces) a record. Without an `id` it gets one above every existing
    /// id; missing `created_at` / `updated_at` are set to now.
    /// Hides a record from this ATS's credential: it stays in the ATS, but listings
    /// leave it out and a read by id answers 403 (as for a private candidate the acting
    /// user may not see).
    pub fn hide(&self, e: Entity, id: u64) {
        write(&self.shared.store).hidden.insert((e, id));
    }

    /// Stores `value` exactly as given (its own `updated_at`, however wrong) while the
    /// `updated_at` filters see `listed_at`: a hostile ATS whose payload disagrees with its
    /// index, e.g. a far-future `updated_at` returned by an ordinary window.
    pub fn put_lying(
        &self,
        e: Entity,
        value: Value,
        listed_at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        write(&self.shared.store).put_value_listed_at(e, &value, listed_at.timestamp_millis())
    }

    pub fn insert(&self, e: Entity, mut value: Value) -> Result<u64, StoreError> {
        let now = self.now_ts();
        let mut store = write(&self.shared.store);
        let next = store.table(e).keys().next_back().copied().unwrap_or(1_000) + 1;
        let Value::Object(o) = &mut value else {
            return Err(StoreError::Invalid("a record must be a JSON object".into()));
        };
        o.entry("id").or_insert(json!(next));
        o.entry("created_at").or_insert(now.clone());
        o.insert("updated_at".into(), now);
        store.put_value(e, &value)
    }
}
