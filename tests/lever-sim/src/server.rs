//! The HTTP simulator: one listener serving the Lever v1 API under `/v1` and the OAuth
//! token endpoint at `/oauth/token` (Lever's separate auth host, here another path).
//! Every API request goes through the same pipeline: authenticate (bearer token or API
//! key), rate-limit (token bucket per credential), check scope, inject faults, serve,
//! count.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Bound;
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
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::{AuthError, AuthState, GrantError, GrantRules, Principal};
use crate::clock::SimClock;
use crate::config::{ConfidentialPolicy, Faults, LimitPolicy, RateClock, SimConfig};
use crate::files::{file_bytes, file_sha256, file_size};
use crate::model::{
    ArchiveReason, CONTACT_FIELDS, Deleted, FileRec, LeverData, Opportunity, Posting, ResumeRec,
    SCOPE_APPLICATIONS, SCOPE_ARCHIVE_REASONS, SCOPE_CONFIDENTIAL, SCOPE_FILES,
    SCOPE_OPPORTUNITIES, SCOPE_POSTINGS, SCOPE_RESUMES, SCOPE_STAGES, Stage, User,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

/// Per-request statistics, readable by tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// `"GET /v1/opportunities"` -> status -> count; path parameters read `{id}`.
    pub requests: BTreeMap<String, BTreeMap<u16, u64>>,
    pub total_requests: u64,
    /// 429 answers (the bucket and injected ones).
    pub rate_limited: u64,
    pub token_requests: u64,
    /// Response body bytes sent.
    pub bytes_sent: u64,
    /// Records in 200 list and read bodies.
    pub records_served: u64,
    /// Successful resume and file downloads, and their bytes.
    pub downloads: u64,
    pub download_bytes: u64,
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

/// Why a mutation was refused.
#[derive(Debug, Error, PartialEq)]
pub enum MutationError {
    #[error("{0} {1} not found")]
    NotFound(&'static str, String),
    #[error("invalid mutation: {0}")]
    Invalid(String),
}

struct Out {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    records: u64,
    headers: Vec<(HeaderName, String)>,
}

impl Out {
    fn json(status: u16, v: &Value) -> Out {
        Out {
            status,
            body: v.to_string().into_bytes(),
            content_type: "application/json; charset=utf-8",
            records: 0,
            headers: vec![],
        }
    }
    /// Lever's error body: `{"code", "message"}`.
    fn error(status: u16, message: &str) -> Out {
        let code = match status {
            400 => "BadRequestError",
            401 => "UnauthorizedError",
            403 => "ForbiddenError",
            404 => "ResourceNotFound",
            429 => "TooManyRequestsError",
            502 => "BadGatewayError",
            503 => "ServiceUnavailableError",
            _ => "InternalServerError",
        };
        Out::json(status, &json!({"code": code, "message": message}))
    }
    fn bad(message: &str) -> Out {
        Out::error(400, message)
    }
    fn not_found(what: &str) -> Out {
        Out::error(404, &format!("{what} not found"))
    }
    fn data(v: Value) -> Out {
        let mut o = Out::json(200, &json!({ "data": v }));
        o.records = 1;
        o
    }
}

/// The position a list page ends at, signed so that a client cannot forge one.
#[derive(Debug, Serialize, Deserialize)]
struct Offset {
    /// The list it belongs to (`opportunities`, `resumes:{opportunity}`, ...).
    r: String,
    /// The last key served.
    k: u64,
}

struct Bucket {
    tokens: f64,
    last_ms: i64,
}

#[derive(Default)]
struct Injected {
    fail_next: Vec<u16>,
    delay_next: u32,
    delay: Duration,
    rate_limit_next: u32,
}

struct FaultState {
    rng: ChaCha8Rng,
    burst_left: u32,
    injected: Injected,
}

/// The live ATS state. Lists are keyed by an insertion sequence, the order Lever-style
/// pages walk (records created during a crawl appear at its end).
#[derive(Default)]
struct Db {
    seq: u64,
    opps: BTreeMap<u64, Opportunity>,
    opp_key: HashMap<String, u64>,
    apps: HashMap<String, crate::model::Application>,
    postings: BTreeMap<u64, Posting>,
    posting_key: HashMap<String, u64>,
    resumes: HashMap<String, BTreeMap<u64, ResumeRec>>,
    files: HashMap<String, BTreeMap<u64, FileRec>>,
    deleted: BTreeMap<u64, Deleted>,
    stages: Vec<Stage>,
    reasons: Vec<ArchiveReason>,
    users: Vec<User>,
}

impl Db {
    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn from_data(d: &LeverData) -> Db {
        let mut db = Db {
            stages: d.stages.clone(),
            reasons: d.archive_reasons.clone(),
            users: d.users.clone(),
            ..Default::default()
        };
        for p in &d.postings {
            let k = db.next();
            db.posting_key.insert(p.id.clone(), k);
            db.postings.insert(k, p.clone());
        }
        for o in &d.opportunities {
            let k = db.next();
            db.opp_key.insert(o.id.clone(), k);
            db.opps.insert(k, o.clone());
        }
        for a in &d.applications {
            db.apps.insert(a.id.clone(), a.clone());
        }
        for r in &d.resumes {
            let k = db.next();
            db.resumes
                .entry(r.opportunity_id.clone())
                .or_default()
                .insert(k, r.clone());
        }
        for f in &d.files {
            let k = db.next();
            db.files
                .entry(f.opportunity_id.clone())
                .or_default()
                .insert(k, f.clone());
        }
        for x in &d.deleted {
            let k = db.next();
            db.deleted.insert(k, x.clone());
        }
        db
    }

    fn opp(&self, id: &str) -> Option<&Opportunity> {
        self.opp_key.get(id).and_then(|k| self.opps.get(k))
    }

    fn opp_mut(&mut self, id: &str) -> Option<&mut Opportunity> {
        let k = *self.opp_key.get(id)?;
        self.opps.get_mut(&k)
    }

    fn snapshot(&self, now: chrono::DateTime<chrono::Utc>, file_seed: u64) -> LeverData {
        let opps: Vec<Opportunity> = self.opps.values().cloned().collect();
        let mut apps = vec![];
        let mut resumes = vec![];
        let mut files = vec![];
        for o in &opps {
            apps.extend(
                o.applications
                    .iter()
                    .filter_map(|a| self.apps.get(a))
                    .cloned(),
            );
            resumes.extend(
                self.resumes
                    .get(&o.id)
                    .into_iter()
                    .flat_map(|m| m.values())
                    .cloned(),
            );
            files.extend(
                self.files
                    .get(&o.id)
                    .into_iter()
                    .flat_map(|m| m.values())
                    .cloned(),
            );
        }
        LeverData {
            now,
            file_seed,
            users: self.users.clone(),
            stages: self.stages.clone(),
            archive_reasons: self.reasons.clone(),
            postings: self.postings.values().cloned().collect(),
            opportunities: opps,
            applications: apps,
            resumes,
            files,
            deleted: self.deleted.values().cloned().collect(),
        }
    }
}

pub(crate) struct Shared {
    cfg: RwLock<SimConfig>,
    clock: SimClock,
    db: RwLock<Db>,
    auth: Mutex<AuthState>,
    buckets: Mutex<HashMap<String, Bucket>>,
    stats: Mutex<Stats>,
    faults: Mutex<FaultState>,
    secret: Vec<u8>,
    file_seed: u64,
    root: String,
}

/// The query string, decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
    fn all(&self, k: &str) -> impl Iterator<Item = &str> + '_ {
        let k = k.to_string();
        self.0
            .iter()
            .filter(move |(n, _)| *n == k)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
    }
    fn ms(&self, k: &str) -> Result<Option<i64>, Out> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| Out::bad(&format!("{k} must be a timestamp in milliseconds"))),
        }
    }
    /// An inclusive `{name}_start` / `{name}_end` window.
    fn window(&self, name: &str) -> Result<Option<(i64, i64)>, Out> {
        let (s, e) = (
            self.ms(&format!("{name}_start"))?,
            self.ms(&format!("{name}_end"))?,
        );
        Ok((s.is_some() || e.is_some()).then(|| (s.unwrap_or(i64::MIN), e.unwrap_or(i64::MAX))))
    }
}

fn within(w: Option<(i64, i64)>, t: Option<i64>) -> bool {
    match w {
        None => true,
        Some((s, e)) => t.is_some_and(|t| s <= t && t <= e),
    }
}

/// Which opportunities or postings a list asks for.
#[derive(Clone, Copy)]
struct Confidentiality {
    confidential: bool,
    non_confidential: bool,
}

#[derive(Default)]
struct Expand {
    applications: bool,
    stage: bool,
    owner: bool,
    followers: bool,
}

fn parse_basic(h: &str) -> Option<(String, String)> {
    let (scheme, rest) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let s = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (u, p) = s.split_once(':').unwrap_or((s.as_str(), ""));
    Some((u.to_string(), p.to_string()))
}

enum Fault {
    None,
    Status(u16),
    RateLimited,
}

impl Shared {
    fn rate_now_ms(&self, clock: RateClock) -> i64 {
        match clock {
            RateClock::Real => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            RateClock::Simulated => self.clock.now_ms(),
        }
    }

    /// Takes one token from the credential's bucket; `Err(seconds until one is back)`.
    fn take_token(&self, credential: &str) -> Result<(), u64> {
        let (rate, burst, clock) = {
            let c = read(&self.cfg);
            (c.rate_per_sec, c.rate_burst, c.rate_clock)
        };
        if rate <= 0.0 {
            return Ok(());
        }
        let now = self.rate_now_ms(clock);
        let mut g = lock(&self.buckets);
        let b = g.entry(credential.to_string()).or_insert(Bucket {
            tokens: f64::from(burst),
            last_ms: now,
        });
        let elapsed = (now - b.last_ms).max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * rate).min(f64::from(burst));
        b.last_ms = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }

    fn too_many(&self, retry_after: u64) -> Out {
        let mut o = Out::error(429, "Rate limit exceeded");
        if read(&self.cfg).retry_after_header {
            o.headers
                .push((header::RETRY_AFTER, retry_after.to_string()));
        }
        o
    }

    fn finish(&self, endpoint: &str, out: Out) -> Response {
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
        for (k, v) in out.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
        resp
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Out> {
        let h = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let auth = lock(&self.auth);
        let result = if let Some(t) = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
        {
            auth.bearer(t.trim(), self.clock.now_ms())
        } else if let Some((key, password)) = parse_basic(h) {
            auth.api_key(&key, &password)
        } else {
            let mut o = Out::error(401, "Missing credentials");
            o.headers
                .push((header::WWW_AUTHENTICATE, "Basic realm=\"Lever\"".into()));
            return Err(o);
        };
        result.map_err(|e| {
            Out::error(
                401,
                match e {
                    AuthError::Expired => "The access token has expired",
                    AuthError::Unknown => "Invalid credentials",
                },
            )
        })
    }

    fn draw_fault(&self, f: &Faults) -> (Fault, Option<Duration>) {
        let mut st = lock(&self.faults);
        let mut delay = f.latency.map(|(lo, hi)| {
            if hi <= lo {
                lo
            } else {
                lo + Duration::from_micros(st.rng.random_range(0..=(hi - lo).as_micros() as u64))
            }
        });
        if st.injected.delay_next > 0 {
            st.injected.delay_next -= 1;
            delay = Some(delay.unwrap_or_default() + st.injected.delay);
        }
        if st.injected.rate_limit_next > 0 {
            st.injected.rate_limit_next -= 1;
            return (Fault::RateLimited, delay);
        }
        if !st.injected.fail_next.is_empty() {
            let s = st.injected.fail_next.remove(0);
            return (Fault::Status(s), delay);
        }
        if st.burst_left > 0 {
            st.burst_left -= 1;
            return (Fault::RateLimited, delay);
        }
        if let Some(b) = f.burst_429
            && b.length > 0
            && st.rng.random::<f64>() < b.probability
        {
            st.burst_left = b.length - 1;
            return (Fault::RateLimited, delay);
        }
        if f.error_5xx_rate > 0.0 && st.rng.random::<f64>() < f.error_5xx_rate {
            return (
                Fault::Status([500, 502, 503][st.rng.random_range(0..3)]),
                delay,
            );
        }
        (Fault::None, delay)
    }

    /// The pipeline every API request goes through.
    async fn api(
        &self,
        endpoint: &str,
        headers: &HeaderMap,
        scope: &'static str,
        f: impl FnOnce(&Shared, &Principal) -> Out,
    ) -> Response {
        let principal = match self.authenticate(headers) {
            Ok(p) => p,
            Err(out) => return self.finish(endpoint, out),
        };
        if let Err(retry) = self.take_token(&principal.credential) {
            let out = self.too_many(retry);
            return self.finish(endpoint, out);
        }
        if !principal.has(scope) {
            let out = Out::error(403, &format!("Missing required scope {scope}"));
            return self.finish(endpoint, out);
        }
        let faults = read(&self.cfg).faults.clone();
        let (fault, delay) = self.draw_fault(&faults);
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let out = match fault {
            Fault::RateLimited => self.too_many(1),
            Fault::Status(s) => Out::error(s, "Simulated failure"),
            Fault::None => f(self, &principal),
        };
        self.finish(endpoint, out)
    }

    fn encode_offset(&self, o: &Offset) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(o).unwrap_or_default());
        format!("{body}.{}", self.sign(&body))
    }

    fn sign(&self, body: &str) -> String {
        let mut h = Sha256::new();
        h.update(&self.secret);
        h.update(body.as_bytes());
        hex::encode(&h.finalize()[..12])
    }

    fn decode_offset(&self, tok: &str, resource: &str) -> Option<u64> {
        let (body, sig) = tok.split_once('.')?;
        if self.sign(body) != sig {
            return None;
        }
        let o: Offset = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        (o.r == resource).then_some(o.k)
    }

    /// `limit` (1..=100, at most `cap`) and the key to continue after.
    fn paging(&self, q: &Query, resource: &str, cap: usize) -> Result<(usize, Option<u64>), Out> {
        let policy = read(&self.cfg).limit_policy;
        let limit = match q.get("limit") {
            None | Some("") => 100,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (1..=100).contains(&n) => n as usize,
                Ok(n) if policy == LimitPolicy::Clamp => n.clamp(1, 100) as usize,
                _ => return Err(Out::bad("limit must be an integer between 1 and 100")),
            },
        };
        let after = match q.get("offset") {
            None | Some("") => None,
            Some(t) => Some(
                self.decode_offset(t, resource)
                    .ok_or_else(|| Out::bad("Invalid offset token"))?,
            ),
        };
        Ok((limit.min(cap.max(1)), after))
    }

    /// One page: the items after `after` that pass, `hasNext`, and `next` when there is
    /// another page.
    fn page<'a, T: 'a>(
        &self,
        resource: &str,
        items: impl Iterator<Item = (u64, &'a T)>,
        limit: usize,
        mut render: impl FnMut(&T) -> Value,
    ) -> Out {
        let mut data = Vec::with_capacity(limit.min(128));
        let mut last = None;
        let mut more = false;
        for (k, item) in items {
            if data.len() == limit {
                more = true;
                break;
            }
            data.push(render(item));
            last = Some(k);
        }
        let n = data.len() as u64;
        let mut body = json!({"data": data, "hasNext": more});
        if let (true, Some(k)) = (more, last) {
            body["next"] = json!(self.encode_offset(&Offset {
                r: resource.to_string(),
                k
            }));
        }
        let mut o = Out::json(200, &body);
        o.records = n;
        o
    }

    fn confidentiality(&self, q: &Query, p: &Principal) -> Result<Confidentiality, Out> {
        let mut c = match q.get("confidentiality") {
            None | Some("") | Some("non-confidential") => Confidentiality {
                confidential: false,
                non_confidential: true,
            },
            Some("confidential") => Confidentiality {
                confidential: true,
                non_confidential: false,
            },
            Some("all") => Confidentiality {
                confidential: true,
                non_confidential: true,
            },
            Some(_) => {
                return Err(Out::bad(
                    "confidentiality must be confidential, non-confidential or all",
                ));
            }
        };
        if c.confidential && !p.has(SCOPE_CONFIDENTIAL) {
            if read(&self.cfg).confidential_policy == ConfidentialPolicy::Forbid {
                return Err(Out::error(
                    403,
                    &format!("Confidential data requires the scope {SCOPE_CONFIDENTIAL}"),
                ));
            }
            c.confidential = false;
        }
        Ok(c)
    }

    fn expand(&self, q: &Query, p: &Principal) -> Result<Expand, Out> {
        let mut e = Expand::default();
        for v in q.all("expand") {
            match v {
                "applications" => e.applications = true,
                "stage" => e.stage = true,
                "owner" => e.owner = true,
                "followers" => e.followers = true,
                _ => {}
            }
        }
        if e.applications && !p.has(SCOPE_APPLICATIONS) {
            return Err(Out::error(
                403,
                &format!("expand=applications requires the scope {SCOPE_APPLICATIONS}"),
            ));
        }
        Ok(e)
    }

    fn user_json(db: &Db, id: &Option<String>) -> Value {
        match id
            .as_ref()
            .and_then(|i| db.users.iter().find(|u| &u.id == i))
        {
            Some(u) => serde_json::to_value(u).unwrap_or(Value::Null),
            None => json!(id),
        }
    }

    fn opp_json(db: &Db, o: &Opportunity, e: &Expand) -> Value {
        let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
        if e.applications {
            v["applications"] = Value::Array(
                o.applications
                    .iter()
                    .filter_map(|a| db.apps.get(a))
                    .map(|a| serde_json::to_value(a).unwrap_or(Value::Null))
                    .collect(),
            );
        }
        if e.stage {
            v["stage"] = match db.stages.iter().find(|s| s.id == o.stage) {
                Some(s) => json!({"id": s.id, "text": s.text}),
                None => json!(o.stage),
            };
        }
        if e.owner {
            v["owner"] = Self::user_json(db, &o.owner);
        }
        if e.followers {
            v["followers"] = Value::Array(
                o.followers
                    .iter()
                    .map(|f| Self::user_json(db, &Some(f.clone())))
                    .collect(),
            );
        }
        v
    }

    fn v1(&self) -> String {
        format!("{}/v1", self.root)
    }

    fn resume_json(&self, r: &ResumeRec) -> Value {
        json!({"id": r.id, "createdAt": r.created_at,
            "file": {"name": r.name, "ext": r.ext,
                "downloadUrl": format!("{}/opportunities/{}/resumes/{}/download", self.v1(), r.opportunity_id, r.id),
                "uploadedAt": r.uploaded_at, "status": "processed", "size": r.size},
            "parsedData": {"positions": [], "schools": []}})
    }

    fn file_json(&self, f: &FileRec) -> Value {
        json!({"id": f.id, "name": f.name, "ext": f.ext,
            "downloadUrl": format!("{}/opportunities/{}/files/{}/download", self.v1(), f.opportunity_id, f.id),
            "uploadedAt": f.uploaded_at, "status": "processed", "size": f.size})
    }

    fn list_opportunities(&self, p: &Principal, q: &Query) -> Out {
        let run = || -> Result<Out, Out> {
            let (limit, after) = self.paging(q, "opportunities", 100)?;
            let conf = self.confidentiality(q, p)?;
            let exp = self.expand(q, p)?;
            let updated = q.window("updated_at")?;
            let created = q.window("created_at")?;
            let archived = match q.get("archived") {
                None | Some("") => None,
                Some("true") => Some(true),
                Some("false") => Some(false),
                Some(_) => return Err(Out::bad("archived must be true or false")),
            };
            let contacts: Vec<&str> = q.all("contact_id").collect();
            let postings: Vec<&str> = q.all("posting_id").collect();
            let db = read(&self.db);
            let start = after.map_or(Bound::Unbounded, Bound::Excluded);
            let items = db
                .opps
                .range((start, Bound::Unbounded))
                .filter(|(_, o)| {
                    (if o.is_confidential() {
                        conf.confidential
                    } else {
                        conf.non_confidential
                    }) && within(updated, o.updated_at)
                        && within(created, Some(o.created_at))
                        && archived.is_none_or(|a| a == o.archived.is_some())
                        && (contacts.is_empty() || contacts.contains(&o.contact.as_str()))
                        && (postings.is_empty()
                            || o.applications.iter().any(|a| {
                                db.apps
                                    .get(a)
                                    .and_then(|a| a.posting.as_deref())
                                    .is_some_and(|x| postings.contains(&x))
                            }))
                })
                .map(|(k, o)| (*k, o));
            Ok(self.page("opportunities", items, limit, |o| {
                Self::opp_json(&db, o, &exp)
            }))
        };
        run().unwrap_or_else(|e| e)
    }

    /// The opportunity, if it exists and the credential may see it.
    fn visible<'a>(db: &'a Db, p: &Principal, id: &str) -> Result<&'a Opportunity, Out> {
        let o = db.opp(id).ok_or_else(|| Out::not_found("Opportunity"))?;
        if o.is_confidential() && !p.has(SCOPE_CONFIDENTIAL) {
            return Err(Out::error(
                403,
                &format!("Confidential data requires the scope {SCOPE_CONFIDENTIAL}"),
            ));
        }
        Ok(o)
    }

    fn get_opportunity(&self, p: &Principal, id: &str, q: &Query) -> Out {
        let run = || -> Result<Out, Out> {
            let exp = self.expand(q, p)?;
            let db = read(&self.db);
            let o = Self::visible(&db, p, id)?;
            Ok(Out::data(Self::opp_json(&db, o, &exp)))
        };
        run().unwrap_or_else(|e| e)
    }

    fn list_applications(&self, p: &Principal, id: &str, q: &Query) -> Out {
        let run = || -> Result<Out, Out> {
            let resource = format!("applications:{id}");
            let (limit, after) = self.paging(q, &resource, 100)?;
            let db = read(&self.db);
            let o = Self::visible(&db, p, id)?;
            let items = o
                .applications
                .iter()
                .enumerate()
                .filter_map(|(i, a)| db.apps.get(a).map(|a| (i as u64 + 1, a)))
                .filter(|(k, _)| after.is_none_or(|x| *k > x));
            Ok(self.page(&resource, items, limit, |a| {
                serde_json::to_value(a).unwrap_or(Value::Null)
            }))
        };
        run().unwrap_or_else(|e| e)
    }

    fn get_application(&self, p: &Principal, id: &str, aid: &str) -> Out {
        let db = read(&self.db);
        match Self::visible(&db, p, id) {
            Err(e) => e,
            Ok(o) => match o
                .applications
                .iter()
                .find(|a| *a == aid)
                .and_then(|a| db.apps.get(a))
            {
                Some(a) => Out::data(serde_json::to_value(a).unwrap_or(Value::Null)),
                None => Out::not_found("Application"),
            },
        }
    }

    fn list_resumes(&self, p: &Principal, id: &str, q: &Query, files: bool) -> Out {
        let run = || -> Result<Out, Out> {
            let resource = format!("{}:{id}", if files { "files" } else { "resumes" });
            let cap = read(&self.cfg).resume_page_size;
            let (limit, after) = self.paging(q, &resource, cap)?;
            let db = read(&self.db);
            Self::visible(&db, p, id)?;
            let start = after.map_or(Bound::Unbounded, Bound::Excluded);
            Ok(if files {
                let empty = BTreeMap::new();
                let m = db.files.get(id).unwrap_or(&empty);
                let items = m.range((start, Bound::Unbounded)).map(|(k, v)| (*k, v));
                self.page(&resource, items, limit, |f| self.file_json(f))
            } else {
                let empty = BTreeMap::new();
                let m = db.resumes.get(id).unwrap_or(&empty);
                let items = m.range((start, Bound::Unbounded)).map(|(k, v)| (*k, v));
                self.page(&resource, items, limit, |r| self.resume_json(r))
            })
        };
        run().unwrap_or_else(|e| e)
    }

    fn get_resume(&self, p: &Principal, id: &str, rid: &str) -> Out {
        let db = read(&self.db);
        if let Err(e) = Self::visible(&db, p, id) {
            return e;
        }
        match db
            .resumes
            .get(id)
            .and_then(|m| m.values().find(|r| r.id == rid))
        {
            Some(r) => Out::data(self.resume_json(r)),
            None => Out::not_found("Resume"),
        }
    }

    fn download(&self, p: &Principal, id: &str, fid: &str, files: bool) -> Out {
        let db = read(&self.db);
        if let Err(e) = Self::visible(&db, p, id) {
            return e;
        }
        let found = if files {
            db.files
                .get(id)
                .and_then(|m| m.values().find(|f| f.id == fid))
                .map(|f| f.name.clone())
        } else {
            db.resumes
                .get(id)
                .and_then(|m| m.values().find(|r| r.id == fid))
                .map(|r| r.name.clone())
        };
        drop(db);
        let Some(name) = found else {
            return Out::not_found(if files { "File" } else { "Resume" });
        };
        let bytes = file_bytes(self.file_seed, fid);
        {
            let mut st = lock(&self.stats);
            st.downloads += 1;
            st.download_bytes += bytes.len() as u64;
        }
        let safe: String = name
            .chars()
            .map(|c| if c == '"' || c.is_control() { '_' } else { c })
            .collect();
        Out {
            status: 200,
            body: bytes,
            content_type: "application/pdf",
            records: 1,
            headers: vec![(
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}\"",
                    safe.replace(|c: char| !c.is_ascii(), "_")
                ),
            )],
        }
    }

    fn list_postings(&self, p: &Principal, q: &Query) -> Out {
        let run = || -> Result<Out, Out> {
            let (limit, after) = self.paging(q, "postings", 100)?;
            let conf = self.confidentiality(q, p)?;
            let updated = q.window("updated_at")?;
            let created = q.window("created_at")?;
            let states: Vec<&str> = q.all("state").collect();
            let db = read(&self.db);
            let start = after.map_or(Bound::Unbounded, Bound::Excluded);
            let items = db
                .postings
                .range((start, Bound::Unbounded))
                .filter(|(_, x)| {
                    (if x.confidentiality == "confidential" {
                        conf.confidential
                    } else {
                        conf.non_confidential
                    }) && within(updated, Some(x.updated_at))
                        && within(created, Some(x.created_at))
                        && (states.is_empty() || states.contains(&x.state.as_str()))
                })
                .map(|(k, v)| (*k, v));
            Ok(self.page("postings", items, limit, |x| {
                serde_json::to_value(x).unwrap_or(Value::Null)
            }))
        };
        run().unwrap_or_else(|e| e)
    }

    fn get_posting(&self, p: &Principal, id: &str) -> Out {
        let db = read(&self.db);
        match db.posting_key.get(id).and_then(|k| db.postings.get(k)) {
            None => Out::not_found("Posting"),
            Some(x) if x.confidentiality == "confidential" && !p.has(SCOPE_CONFIDENTIAL) => {
                Out::error(
                    403,
                    &format!("Confidential data requires the scope {SCOPE_CONFIDENTIAL}"),
                )
            }
            Some(x) => Out::data(serde_json::to_value(x).unwrap_or(Value::Null)),
        }
    }

    fn list_deleted(&self, q: &Query) -> Out {
        let run = || -> Result<Out, Out> {
            let (limit, after) = self.paging(q, "deleted", 100)?;
            let w = q.window("deleted_at")?;
            if let Some(max) = read(&self.cfg).deleted_max_window {
                let (s, e) = w.unwrap_or((i64::MIN, i64::MAX));
                let e = e.min(self.clock.now_ms());
                if e.saturating_sub(s) > max.as_millis() as i64 {
                    return Err(Out::bad(&format!(
                        "deleted_at_start and deleted_at_end must be at most {} days apart",
                        max.as_secs() / 86_400
                    )));
                }
            }
            let db = read(&self.db);
            let start = after.map_or(Bound::Unbounded, Bound::Excluded);
            let items = db
                .deleted
                .range((start, Bound::Unbounded))
                .filter(|(_, x)| within(w, Some(x.deleted_at)))
                .map(|(k, v)| (*k, v));
            Ok(self.page("deleted", items, limit, |x| {
                serde_json::to_value(x).unwrap_or(Value::Null)
            }))
        };
        run().unwrap_or_else(|e| e)
    }

    fn list_static<T: Serialize>(&self, q: &Query, resource: &str, rows: &[T]) -> Out {
        match self.paging(q, resource, 100) {
            Err(e) => e,
            Ok((limit, after)) => {
                let items = rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (i as u64 + 1, r))
                    .filter(|(k, _)| after.is_none_or(|a| *k > a));
                self.page(resource, items, limit, |r| {
                    serde_json::to_value(r).unwrap_or(Value::Null)
                })
            }
        }
    }

    fn token(&self, headers: &HeaderMap, body: &str) -> Response {
        lock(&self.stats).token_requests += 1;
        let mut form: HashMap<String, String> = if body.trim_start().starts_with('{') {
            serde_json::from_str::<Map<String, Value>>(body)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
                .collect()
        } else {
            url::form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect()
        };
        // Client credentials may also come as HTTP Basic.
        if let Some((id, secret)) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_basic)
        {
            form.entry("client_id".into()).or_insert(id);
            form.entry("client_secret".into()).or_insert(secret);
        }
        let (rules, grant_status) = {
            let c = read(&self.cfg);
            (
                GrantRules {
                    now: self.clock.now_ms(),
                    access_ttl: c.access_token_ttl.as_millis() as i64,
                    refresh_max_ttl: c.refresh_token_max_ttl.as_millis() as i64,
                    refresh_idle_ttl: c.refresh_token_idle_ttl.as_millis() as i64,
                    audience: c.audience.clone(),
                    require_audience_on_refresh: c.require_audience_on_refresh,
                    revoke_family_on_reuse: c.revoke_family_on_reuse,
                },
                c.invalid_grant_status,
            )
        };
        let result = lock(&self.auth).grant(&form, &rules);
        let out = match result {
            Err(e) => {
                let status = match e {
                    GrantError::InvalidClient => 401,
                    GrantError::InvalidGrant(_) => grant_status,
                    _ => 400,
                };
                Out::json(
                    status,
                    &json!({"error": e.code(), "error_description": e.description()}),
                )
            }
            Ok(i) => {
                let mut m = Map::new();
                m.insert("access_token".into(), json!(i.access_token));
                if let Some(r) = i.refresh_token {
                    m.insert("refresh_token".into(), json!(r));
                }
                m.insert("token_type".into(), json!("Bearer"));
                m.insert("expires_in".into(), json!(i.expires_in));
                m.insert("scope".into(), json!(i.scope));
                let mut o = Out::json(200, &Value::Object(m));
                o.headers.push((header::CACHE_CONTROL, "no-store".into()));
                o
            }
        };
        self.finish("POST /oauth/token", out)
    }
}

type S = State<Arc<Shared>>;

async fn h_token(State(s): S, headers: HeaderMap, body: String) -> Response {
    s.token(&headers, &body)
}

async fn h_opps(State(s): S, h: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    s.api("GET /v1/opportunities", &h, SCOPE_OPPORTUNITIES, |s, p| {
        s.list_opportunities(p, &q)
    })
    .await
}

async fn h_deleted(State(s): S, h: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    s.api(
        "GET /v1/opportunities/deleted",
        &h,
        SCOPE_OPPORTUNITIES,
        |s, _| s.list_deleted(&q),
    )
    .await
}

async fn h_opp(
    State(s): S,
    Path(id): Path<String>,
    h: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let q = Query::parse(q.as_deref());
    s.api(
        "GET /v1/opportunities/{id}",
        &h,
        SCOPE_OPPORTUNITIES,
        |s, p| s.get_opportunity(p, &id, &q),
    )
    .await
}

async fn h_apps(
    State(s): S,
    Path(id): Path<String>,
    h: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let q = Query::parse(q.as_deref());
    s.api(
        "GET /v1/opportunities/{id}/applications",
        &h,
        SCOPE_APPLICATIONS,
        |s, p| s.list_applications(p, &id, &q),
    )
    .await
}

async fn h_app(State(s): S, Path((id, aid)): Path<(String, String)>, h: HeaderMap) -> Response {
    s.api(
        "GET /v1/opportunities/{id}/applications/{id}",
        &h,
        SCOPE_APPLICATIONS,
        |s, p| s.get_application(p, &id, &aid),
    )
    .await
}

async fn h_resumes(
    State(s): S,
    Path(id): Path<String>,
    h: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let q = Query::parse(q.as_deref());
    s.api(
        "GET /v1/opportunities/{id}/resumes",
        &h,
        SCOPE_RESUMES,
        |s, p| s.list_resumes(p, &id, &q, false),
    )
    .await
}

async fn h_resume(State(s): S, Path((id, rid)): Path<(String, String)>, h: HeaderMap) -> Response {
    s.api(
        "GET /v1/opportunities/{id}/resumes/{id}",
        &h,
        SCOPE_RESUMES,
        |s, p| s.get_resume(p, &id, &rid),
    )
    .await
}

async fn h_resume_dl(
    State(s): S,
    Path((id, rid)): Path<(String, String)>,
    h: HeaderMap,
) -> Response {
    s.api(
        "GET /v1/opportunities/{id}/resumes/{id}/download",
        &h,
        SCOPE_RESUMES,
        |s, p| s.download(p, &id, &rid, false),
    )
    .await
}

async fn h_files(
    State(s): S,
    Path(id): Path<String>,
    h: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let q = Query::parse(q.as_deref());
    s.api(
        "GET /v1/opportunities/{id}/files",
        &h,
        SCOPE_FILES,
        |s, p| s.list_resumes(p, &id, &q, true),
    )
    .await
}

async fn h_file_dl(State(s): S, Path((id, fid)): Path<(String, String)>, h: HeaderMap) -> Response {
    s.api(
        "GET /v1/opportunities/{id}/files/{id}/download",
        &h,
        SCOPE_FILES,
        |s, p| s.download(p, &id, &fid, true),
    )
    .await
}

async fn h_postings(State(s): S, h: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    s.api("GET /v1/postings", &h, SCOPE_POSTINGS, |s, p| {
        s.list_postings(p, &q)
    })
    .await
}

async fn h_posting(State(s): S, Path(id): Path<String>, h: HeaderMap) -> Response {
    s.api("GET /v1/postings/{id}", &h, SCOPE_POSTINGS, |s, p| {
        s.get_posting(p, &id)
    })
    .await
}

async fn h_stages(State(s): S, h: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    s.api("GET /v1/stages", &h, SCOPE_STAGES, |s, _| {
        let rows = read(&s.db).stages.clone();
        s.list_static(&q, "stages", &rows)
    })
    .await
}

async fn h_reasons(State(s): S, h: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    s.api(
        "GET /v1/archive_reasons",
        &h,
        SCOPE_ARCHIVE_REASONS,
        |s, _| {
            let rows = read(&s.db).reasons.clone();
            s.list_static(&q, "archive_reasons", &rows)
        },
    )
    .await
}

async fn h_not_found(State(s): S) -> Response {
    s.finish("other", Out::error(404, "Not found"))
}

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Binds `cfg.bind_host:cfg.port` (127.0.0.1 and a free port by default) and serves
    /// `data` until the handle is shut down or dropped.
    pub async fn start(cfg: SimConfig, data: LeverData) -> anyhow::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind((cfg.bind_host, cfg.port)).await?;
        let addr = listener.local_addr()?;
        let secret: [u8; 32] = rand::random();
        let fault_seed = cfg.faults.seed;
        let shared = Arc::new(Shared {
            cfg: RwLock::new(cfg),
            clock: SimClock::new(data.now),
            db: RwLock::new(Db::from_data(&data)),
            auth: Mutex::new(AuthState::new(secret.to_vec())),
            buckets: Mutex::new(HashMap::new()),
            stats: Mutex::new(Stats::default()),
            faults: Mutex::new(FaultState {
                rng: ChaCha8Rng::seed_from_u64(fault_seed),
                burst_left: 0,
                injected: Injected::default(),
            }),
            secret: secret.to_vec(),
            file_seed: data.file_seed,
            root: format!("http://{addr}"),
        });
        drop(data);
        let app = Router::new()
            .route("/oauth/token", post(h_token))
            .route("/v1/opportunities", get(h_opps))
            .route("/v1/opportunities/deleted", get(h_deleted))
            .route("/v1/opportunities/{id}", get(h_opp))
            .route("/v1/opportunities/{id}/applications", get(h_apps))
            .route("/v1/opportunities/{id}/applications/{aid}", get(h_app))
            .route("/v1/opportunities/{id}/resumes", get(h_resumes))
            .route("/v1/opportunities/{id}/resumes/{rid}", get(h_resume))
            .route(
                "/v1/opportunities/{id}/resumes/{rid}/download",
                get(h_resume_dl),
            )
            .route("/v1/opportunities/{id}/files", get(h_files))
            .route(
                "/v1/opportunities/{id}/files/{fid}/download",
                get(h_file_dl),
            )
            .route("/v1/postings", get(h_postings))
            .route("/v1/postings/{id}", get(h_posting))
            .route("/v1/stages", get(h_stages))
            .route("/v1/archive_reasons", get(h_reasons))
            .fallback(h_not_found)
            .with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(SimHandle {
            shared,
            addr,
            stop: Some(tx),
            task: Some(task),
        })
    }
}

/// A running simulator. Dropping it stops the listener.
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT/v1`: the equivalent of `https://api.lever.co/v1`.
    pub fn api_base(&self) -> String {
        self.shared.v1()
    }
    /// `http://127.0.0.1:PORT`: the equivalent of `https://auth.lever.co`.
    pub fn auth_base(&self) -> String {
        self.shared.root.clone()
    }
    /// The OAuth token endpoint, `{auth_base}/oauth/token`.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.shared.root)
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Registers an OAuth app; `scopes` are what its users consent to by default.
    pub fn add_oauth_client(&self, client_id: &str, client_secret: &str, scopes: &[&str]) {
        lock(&self.shared.auth).add_client(client_id, client_secret, scopes);
    }
    /// An API key (HTTP Basic, key as user name, empty password) with these scopes.
    pub fn add_api_key(&self, key: &str, scopes: &[&str]) {
        lock(&self.shared.auth).add_api_key(key, scopes);
    }
    pub fn revoke_api_key(&self, key: &str) {
        lock(&self.shared.auth).revoke_api_key(key);
    }
    /// A single-use authorization code (as the redirect after consent would carry) for
    /// all the client's scopes, any `redirect_uri`.
    pub fn issue_authorization_code(&self, client_id: &str) -> String {
        self.issue_code(client_id, None, None)
    }
    /// A code for a consent to `scopes` only, bound to `redirect_uri` when given.
    pub fn issue_authorization_code_with(
        &self,
        client_id: &str,
        scopes: &[&str],
        redirect_uri: Option<&str>,
    ) -> String {
        self.issue_code(client_id, Some(scopes), redirect_uri)
    }
    fn issue_code(
        &self,
        client_id: &str,
        scopes: Option<&[&str]>,
        redirect: Option<&str>,
    ) -> String {
        let ttl = read(&self.shared.cfg).auth_code_ttl.as_millis() as i64;
        let exp = self.shared.clock.now_ms() + ttl;
        lock(&self.shared.auth).issue_code(client_id, scopes, redirect, exp)
    }
    /// Revokes every refresh token of the client (the customer disconnects the app).
    pub fn revoke_refresh_tokens(&self, client_id: &str) {
        lock(&self.shared.auth).revoke_refresh(client_id);
    }
    /// Every access token issued so far is expired (calls get 401 until a refresh).
    pub fn expire_access_tokens(&self) {
        lock(&self.shared.auth).expire_access();
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
    /// Changes the ATS on the simulated clock.
    pub fn mutate(&self) -> Mutator {
        Mutator {
            shared: self.shared.clone(),
        }
    }
    /// The current ATS state (for expected views after mutations).
    pub fn snapshot(&self) -> LeverData {
        read(&self.shared.db).snapshot(self.shared.clock.now(), self.shared.file_seed)
    }
    pub fn config(&self) -> SimConfig {
        read(&self.shared.cfg).clone()
    }
    pub fn set_config(&self, cfg: SimConfig) {
        self.set_faults(cfg.faults.clone());
        *write(&self.shared.cfg) = cfg;
    }
    pub fn set_faults(&self, f: Faults) {
        {
            let mut st = lock(&self.shared.faults);
            st.rng = ChaCha8Rng::seed_from_u64(f.seed);
            st.burst_left = 0;
        }
        write(&self.shared.cfg).faults = f;
    }
    /// The next `n` authenticated API requests are answered `status` (e.g. 503).
    pub fn fail_next(&self, n: u32, status: u16) {
        let mut st = lock(&self.shared.faults);
        st.injected
            .fail_next
            .extend(std::iter::repeat_n(status, n as usize));
    }
    /// The next `n` authenticated API requests wait `by` before answering.
    pub fn delay_next(&self, n: u32, by: Duration) {
        let mut st = lock(&self.shared.faults);
        st.injected.delay_next = n;
        st.injected.delay = by;
    }
    /// The next `n` authenticated API requests are answered 429.
    pub fn rate_limit_next(&self, n: u32) {
        lock(&self.shared.faults).injected.rate_limit_next = n;
    }
    pub fn file_seed(&self) -> u64 {
        self.shared.file_seed
    }
    /// Hex sha256 of the bytes served for resume or file `id`.
    pub fn file_sha256(&self, id: &str) -> String {
        file_sha256(self.shared.file_seed, id)
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Changes to the ATS while the simulator runs, on the simulated clock.
pub struct Mutator {
    shared: Arc<Shared>,
}

impl Mutator {
    fn now(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    fn new_id(&self, db: &mut Db) -> String {
        let n = db.next();
        let mut h = Sha256::new();
        h.update(&self.shared.secret);
        h.update(b"id");
        h.update(n.to_le_bytes());
        crate::model::uuid_from(&mut ChaCha8Rng::from_seed(h.finalize().into()))
    }

    /// The opportunity as the API serves it (no expansion).
    pub fn get(&self, opportunity: &str) -> Option<Value> {
        read(&self.shared.db)
            .opp(opportunity)
            .and_then(|o| serde_json::to_value(o).ok())
    }

    pub fn opportunity_ids(&self) -> Vec<String> {
        read(&self.shared.db)
            .opps
            .values()
            .map(|o| o.id.clone())
            .collect()
    }

    /// Sets opportunity members (wire names, e.g. `"tags"`, `"stage"`, `"archived"`)
    /// and moves `updatedAt` to now. Contact members (`name`, `headline`, `location`,
    /// `phones`, `emails`, `links`) change on every opportunity of the contact, and
    /// each of them gets the new `updatedAt`.
    pub fn update_fields(
        &self,
        opportunity: &str,
        fields: Map<String, Value>,
    ) -> Result<(), MutationError> {
        const FIXED: &[&str] = &[
            "id",
            "contact",
            "createdAt",
            "updatedAt",
            "applications",
            "isAnonymized",
        ];
        if let Some(k) = fields.keys().find(|k| FIXED.contains(&k.as_str())) {
            return Err(MutationError::Invalid(format!("{k} cannot be set")));
        }
        let now = self.now();
        let mut db = write(&self.shared.db);
        let o = db
            .opp(opportunity)
            .ok_or_else(|| MutationError::NotFound("opportunity", opportunity.into()))?;
        let contact = o.contact.clone();
        let touches_contact = fields.keys().any(|k| CONTACT_FIELDS.contains(&k.as_str()));
        let targets: Vec<u64> = db
            .opps
            .iter()
            .filter(|(_, x)| x.id == opportunity || (touches_contact && x.contact == contact))
            .map(|(k, _)| *k)
            .collect();
        let mut updated = vec![];
        for k in &targets {
            let Some(x) = db.opps.get(k) else { continue };
            let mut v =
                serde_json::to_value(x).map_err(|e| MutationError::Invalid(e.to_string()))?;
            for (f, val) in &fields {
                if x.id == opportunity || CONTACT_FIELDS.contains(&f.as_str()) {
                    v[f.as_str()] = val.clone();
                }
            }
            v["updatedAt"] = json!(now);
            let o: Opportunity =
                serde_json::from_value(v).map_err(|e| MutationError::Invalid(e.to_string()))?;
            updated.push((*k, o));
        }
        for (k, o) in updated {
            db.opps.insert(k, o);
        }
        Ok(())
    }

    pub fn update(
        &self,
        opportunity: &str,
        field: &str,
        value: Value,
    ) -> Result<(), MutationError> {
        self.update_fields(opportunity, Map::from_iter([(field.to_string(), value)]))
    }

    /// Moves `updatedAt` to now without changing content.
    pub fn touch(&self, opportunity: &str) -> Result<(), MutationError> {
        self.update_fields(opportunity, Map::new())
    }

    /// Sets `updatedAt` to `null` (an old opportunity Lever never re-stamped).
    pub fn set_updated_at_null(&self, opportunity: &str) -> Result<(), MutationError> {
        let mut db = write(&self.shared.db);
        let o = db
            .opp_mut(opportunity)
            .ok_or_else(|| MutationError::NotFound("opportunity", opportunity.into()))?;
        o.updated_at = None;
        Ok(())
    }

    /// Deletes an opportunity with its application, resumes and files; it joins the
    /// deleted list with `deletedAt` = now.
    pub fn delete(&self, opportunity: &str, deleted_by: Option<&str>) -> Result<(), MutationError> {
        let now = self.now();
        let mut db = write(&self.shared.db);
        let k = db
            .opp_key
            .remove(opportunity)
            .ok_or_else(|| MutationError::NotFound("opportunity", opportunity.into()))?;
        if let Some(o) = db.opps.remove(&k) {
            for a in &o.applications {
                db.apps.remove(a);
            }
        }
        db.resumes.remove(opportunity);
        db.files.remove(opportunity);
        let seq = db.next();
        db.deleted.insert(
            seq,
            Deleted {
                id: opportunity.into(),
                deleted_at: now,
                deleted_by: deleted_by.map(str::to_string),
            },
        );
        Ok(())
    }

    /// Anonymizes the person: every opportunity of the contact gets `isAnonymized`,
    /// the name "Anonymized", no headline, location, emails, phones or links, a new
    /// `updatedAt`, and loses its resumes and files.
    pub fn anonymize(&self, opportunity: &str) -> Result<(), MutationError> {
        let now = self.now();
        let mut db = write(&self.shared.db);
        let contact = db
            .opp(opportunity)
            .ok_or_else(|| MutationError::NotFound("opportunity", opportunity.into()))?
            .contact
            .clone();
        let mut ids = vec![];
        for o in db.opps.values_mut().filter(|o| o.contact == contact) {
            o.name = "Anonymized".into();
            o.headline.clear();
            o.location.clear();
            o.emails.clear();
            o.phones.clear();
            o.links.clear();
            o.is_anonymized = true;
            o.updated_at = Some(now);
            ids.push((o.id.clone(), o.applications.clone()));
        }
        for (id, apps) in ids {
            db.resumes.remove(&id);
            db.files.remove(&id);
            for a in apps {
                if let Some(a) = db.apps.get_mut(&a) {
                    a.name = "Anonymized".into();
                    a.email = None;
                    a.phone = None;
                    a.links.clear();
                }
            }
        }
        Ok(())
    }

    /// Adds a resume created now; returns its id. `updatedAt` does not move (Lever's
    /// notes, feedback, interviews, offers and files never move it).
    pub fn add_resume(&self, opportunity: &str, filename: &str) -> Result<String, MutationError> {
        self.add_doc(opportunity, filename, false)
    }

    /// Adds a file uploaded now; returns its id. `updatedAt` does not move.
    pub fn add_file(&self, opportunity: &str, filename: &str) -> Result<String, MutationError> {
        self.add_doc(opportunity, filename, true)
    }

    fn add_doc(
        &self,
        opportunity: &str,
        filename: &str,
        file: bool,
    ) -> Result<String, MutationError> {
        let now = self.now();
        let mut db = write(&self.shared.db);
        if db.opp(opportunity).is_none() {
            return Err(MutationError::NotFound("opportunity", opportunity.into()));
        }
        let id = self.new_id(&mut db);
        let size = file_size(self.shared.file_seed, &id) as u64;
        let ext = filename
            .rsplit_once('.')
            .map(|x| x.1)
            .unwrap_or("pdf")
            .to_string();
        let seq = db.next();
        if file {
            db.files.entry(opportunity.into()).or_default().insert(
                seq,
                FileRec {
                    id: id.clone(),
                    opportunity_id: opportunity.into(),
                    name: filename.into(),
                    ext,
                    uploaded_at: now,
                    size,
                },
            );
        } else {
            db.resumes.entry(opportunity.into()).or_default().insert(
                seq,
                ResumeRec {
                    id: id.clone(),
                    opportunity_id: opportunity.into(),
                    created_at: now,
                    name: filename.into(),
                    ext,
                    uploaded_at: now,
                    size,
                },
            );
        }
        Ok(id)
    }

    /// Sets posting members (wire names) and moves the posting's `updatedAt` to now.
    pub fn update_posting(
        &self,
        posting: &str,
        field: &str,
        value: Value,
    ) -> Result<(), MutationError> {
        if matches!(field, "id" | "createdAt" | "updatedAt") {
            return Err(MutationError::Invalid(format!("{field} cannot be set")));
        }
        let now = self.now();
        let mut db = write(&self.shared.db);
        let k = *db
            .posting_key
            .get(posting)
            .ok_or_else(|| MutationError::NotFound("posting", posting.into()))?;
        let Some(p) = db.postings.get(&k) else {
            return Err(MutationError::NotFound("posting", posting.into()));
        };
        let mut v = serde_json::to_value(p).map_err(|e| MutationError::Invalid(e.to_string()))?;
        v[field] = value;
        v["updatedAt"] = json!(now);
        let p: Posting =
            serde_json::from_value(v).map_err(|e| MutationError::Invalid(e.to_string()))?;
        db.postings.insert(k, p);
        Ok(())
    }
}
