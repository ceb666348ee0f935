//! Integration tests of the ATS connector against the Greenhouse simulator, over HTTP.
//!
//! Each test starts its own simulator in-process (its own ports, data and counters) and
//! talks to it the way production talks to Greenhouse. Request counts come from the
//! simulator's own statistics, not from the client's, so that the client cannot grade
//! itself. The last tests run the main flows with a TRACE log capture and fail if a
//! credential appears in it; an ignored test measures cost per record.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use eds_shared::auth::{AccessTokens, AuthError};
use eds_shared::connector::greenhouse::{GreenhouseConfig, GreenhouseV3};
use eds_shared::connector::{
    AtsConnector, AttachmentRef, ConnectorError, Cursor, Quarantined, RateLimiter, RequestStats,
    Stream, Window,
};
use eds_shared::domain::model::{Observation, ObservationScope};
use greenhouse_sim::canonical::{attachment_element, record_fields};
use greenhouse_sim::model::record_id;
use greenhouse_sim::{
    ALL_SCOPES, AtsData, Burst429, Entity, Faults, Hostile, Scenario, ScenarioSpec, SimConfig,
    SimHandle, Simulator,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use url::Url;

// ---------------------------------------------------------------------------------
// Test-only credential sources. Production uses the credentials adapter; these only do
// what the connector needs from the `AccessTokens` port.

/// OAuth client credentials against the simulator's token endpoint; one token request
/// on first use and one per 401.
struct ClientCredentials {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    current: tokio::sync::Mutex<Option<SecretString>>,
    requests: AtomicU64,
    /// Every access token obtained, for the log check.
    issued: Mutex<Vec<String>>,
}

impl ClientCredentials {
    fn new(sim: &SimHandle, client_id: &str, client_secret: &str) -> Arc<Self> {
        Arc::new(Self {
            http: reqwest::Client::new(),
            token_url: sim.token_url(),
            client_id: client_id.to_string(),
            client_secret: SecretString::from(client_secret.to_string()),
            current: tokio::sync::Mutex::new(None),
            requests: AtomicU64::new(0),
            issued: Mutex::new(Vec::new()),
        })
    }

    async fn fetch(&self) -> Result<SecretString, AuthError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let resp = self
            .http
            .post(&self.token_url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| AuthError::Transient(e.without_url().to_string()))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .map_err(|_| AuthError::Transient("token response is not JSON".into()))?;
        if !status.is_success() {
            return match body["error"].as_str() {
                Some("invalid_grant") => Err(AuthError::InvalidGrant),
                Some(other) => Err(AuthError::InvalidClient(other.to_string())),
                None => Err(AuthError::Transient(format!("token endpoint {status}"))),
            };
        }
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| AuthError::Transient("no access_token".into()))?
            .to_string();
        self.issued.lock().unwrap().push(token.clone());
        Ok(SecretString::from(format!("Bearer {token}")))
    }

    fn issued(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }
}

#[async_trait]
impl AccessTokens for ClientCredentials {
    async fn authorization(&self) -> Result<SecretString, AuthError> {
        let mut cur = self.current.lock().await;
        if let Some(t) = cur.as_ref() {
            return Ok(t.clone());
        }
        let t = self.fetch().await?;
        *cur = Some(t.clone());
        Ok(t)
    }

    async fn refresh_after_unauthorized(
        &self,
        rejected: &SecretString,
    ) -> Result<SecretString, AuthError> {
        let mut cur = self.current.lock().await;
        if let Some(t) = cur.as_ref()
            && t.expose_secret() != rejected.expose_secret()
        {
            return Ok(t.clone());
        }
        let t = self.fetch().await?;
        *cur = Some(t.clone());
        Ok(t)
    }

    fn token_requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

/// An API key: Basic auth with the key as user name and an empty password.
struct ApiKey(SecretString);

#[async_trait]
impl AccessTokens for ApiKey {
    async fn authorization(&self) -> Result<SecretString, AuthError> {
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:", self.0.expose_secret()));
        Ok(SecretString::from(format!("Basic {b64}")))
    }

    async fn refresh_after_unauthorized(
        &self,
        _rejected: &SecretString,
    ) -> Result<SecretString, AuthError> {
        // A key cannot be refreshed: hand back the same value; the connector's second
        // 401 ends the call.
        self.authorization().await
    }
}

// ---------------------------------------------------------------------------------
// Fixtures.

const CLIENT_ID: &str = "eds-test-client";
const CLIENT_SECRET: &str = "cs-very-secret-4711";
const API_KEY: &str = "gh-api-key-secret-0815";

fn big_scenario() -> &'static Scenario {
    static S: OnceLock<Scenario> = OnceLock::new();
    S.get_or_init(|| {
        Scenario::generate(&ScenarioSpec {
            seed: 10_000,
            candidates: 10_000,
            jobs: 120,
            ..ScenarioSpec::default()
        })
    })
}

fn small_scenario() -> &'static Scenario {
    static S: OnceLock<Scenario> = OnceLock::new();
    S.get_or_init(|| {
        Scenario::generate(&ScenarioSpec {
            seed: 7,
            candidates: 1_000,
            jobs: 20,
            ..ScenarioSpec::default()
        })
    })
}

struct Env {
    sim: SimHandle,
    tokens: Arc<ClientCredentials>,
    v3: GreenhouseV3,
}

async fn start(cfg: SimConfig, data: AtsData) -> SimHandle {
    Simulator::start(cfg, data).await.expect("simulator starts")
}

fn gh_config(sim: &SimHandle) -> GreenhouseConfig {
    GreenhouseConfig::new(Url::parse(&sim.api_base()).unwrap()).with_fast_retries()
}

async fn env_with(
    cfg: SimConfig,
    data: AtsData,
    scopes: &[&str],
    gh: impl FnOnce(&mut GreenhouseConfig),
) -> Env {
    let sim = start(cfg, data).await;
    sim.add_oauth_client(CLIENT_ID, CLIENT_SECRET, scopes);
    let tokens = ClientCredentials::new(&sim, CLIENT_ID, CLIENT_SECRET);
    let mut c = gh_config(&sim);
    gh(&mut c);
    let v3 = GreenhouseV3::new(c, tokens.clone(), Arc::new(RateLimiter::default())).unwrap();
    Env { sim, tokens, v3 }
}

async fn env(data: AtsData) -> Env {
    env_with(SimConfig::default(), data, ALL_SCOPES, |_| {}).await
}

fn far() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(600)
}

fn everything_until(now: DateTime<Utc>) -> Window {
    Window {
        from: DateTime::<Utc>::UNIX_EPOCH,
        to: now,
    }
}

fn entity_of(stream: Stream) -> Entity {
    match stream {
        Stream::Candidates => Entity::Candidate,
        Stream::Applications => Entity::Application,
        Stream::Jobs => Entity::Job,
        Stream::Attachments => Entity::Attachment,
    }
}

fn endpoint(stream: Stream) -> String {
    format!("GET /v3/{}", stream.as_str())
}

fn pages_for(n: usize, per_page: usize) -> u64 {
    n.div_ceil(per_page).max(1) as u64
}

/// The id a stream's observation is about: the record, or for attachments the element.
fn stream_id(stream: Stream, o: &Observation) -> String {
    match (&o.scope, stream) {
        (ObservationScope::Element { element, .. }, Stream::Attachments) => {
            element["id"].as_str().unwrap_or("?").to_string()
        }
        _ => o.ats_id.to_string(),
    }
}

#[derive(Default)]
struct Crawl {
    observations: Vec<Observation>,
    downloads: Vec<AttachmentRef>,
    quarantined: Vec<Quarantined>,
    pages: usize,
    stats: RequestStats,
}

impl Crawl {
    fn ids(&self, stream: Stream) -> Vec<String> {
        self.observations
            .iter()
            .map(|o| stream_id(stream, o))
            .collect()
    }
}

/// Pages through one window; `between` runs after each page (mutations, faults).
async fn crawl(
    conn: &dyn AtsConnector,
    stream: Stream,
    window: &Window,
    mut between: impl FnMut(usize),
) -> Result<Crawl, ConnectorError> {
    let mut c = Crawl::default();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = conn
            .list_changed(stream, window, cursor.as_ref(), far())
            .await?;
        c.pages += 1;
        c.observations.extend(page.observations);
        c.downloads.extend(page.attachment_downloads);
        c.quarantined.extend(page.quarantined);
        c.stats += page.stats;
        between(c.pages);
        match page.next {
            Some(n) => cursor = Some(n),
            None => return Ok(c),
        }
    }
}

fn truth_ids(data: &AtsData, stream: Stream) -> HashSet<String> {
    data.records(entity_of(stream))
        .iter()
        .map(|v| record_id(v).unwrap().to_string())
        .collect()
}

fn assert_exactly_once(stream: Stream, got: &[String], expected: &HashSet<String>) {
    let mut seen = HashSet::new();
    let dups: Vec<&String> = got.iter().filter(|i| !seen.insert(*i)).collect();
    assert!(
        dups.is_empty(),
        "{stream}: duplicates {:?}",
        &dups[..dups.len().min(5)]
    );
    let missing: Vec<_> = expected
        .difference(&seen.iter().map(|s| s.to_string()).collect())
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "{stream}: {} missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(seen.len(), expected.len(), "{stream}: unexpected extra ids");
}

fn as_map(fields: &BTreeMap<String, Value>) -> Map<String, Value> {
    fields.clone().into_iter().collect()
}

/// Our normalisation of every record equals the simulator's canonical conversion of
/// its truth (the oracle, written independently of eds-shared).
fn assert_matches_canonical_truth(stream: Stream, crawl: &Crawl, data: &AtsData) {
    let e = entity_of(stream);
    let by_id: HashMap<String, &Value> = data
        .records(e)
        .iter()
        .map(|v| (record_id(v).unwrap().to_string(), v))
        .collect();
    let mut checked = 0;
    for o in &crawl.observations {
        let id = stream_id(stream, o);
        let truth = by_id[&id];
        match &o.scope {
            ObservationScope::Record { fields } => {
                assert_eq!(as_map(fields), record_fields(e, truth), "{stream} {id}");
                let upd = truth["updated_at"].as_str().unwrap();
                assert_eq!(
                    o.ats_updated_at,
                    Some(
                        DateTime::parse_from_rfc3339(upd)
                            .unwrap()
                            .with_timezone(&Utc)
                    ),
                    "{stream} {id}: updated_at is the layer timestamp"
                );
                assert!(!fields.contains_key("updated_at"));
            }
            ObservationScope::Element { field, element } => {
                assert_eq!(field, "attachments");
                assert_eq!(element, &attachment_element(truth), "attachment {id}");
                assert_eq!(
                    o.ats_id.to_string(),
                    truth["candidate_id"].as_u64().unwrap().to_string()
                );
            }
            ObservationScope::Deleted => panic!("a list never yields deletions"),
        }
        checked += 1;
    }
    assert_eq!(checked, by_id.len());
}

// ---------------------------------------------------------------------------------
// Full crawls.

#[tokio::test]
async fn full_crawl_of_10k_candidates_returns_every_record_once_as_canonical_truth_at_one_request_per_page()
 {
    let s = big_scenario();
    let env = env(s.truth.clone()).await;
    let window = everything_until(env.sim.clock().now());
    let mut total = RequestStats::default();
    let mut crawls = HashMap::new();
    for stream in Stream::ALL {
        let c = crawl(&env.v3, stream, &window, |_| {}).await.unwrap();
        let expected = truth_ids(&s.truth, stream);
        assert_exactly_once(stream, &c.ids(stream), &expected);
        assert!(
            c.quarantined.is_empty(),
            "{stream}: {:?}",
            &c.quarantined[..1]
        );
        assert_matches_canonical_truth(stream, &c, &s.truth);
        let pages = pages_for(expected.len(), 500);
        assert_eq!(
            env.sim.stats().endpoint_total(&endpoint(stream)),
            pages,
            "{stream}"
        );
        assert_eq!(c.stats.requests, pages);
        assert_eq!(c.pages as u64, pages);
        if stream == Stream::Attachments {
            assert_eq!(
                c.downloads.len(),
                expected.len(),
                "one download per attachment"
            );
            for d in &c.downloads {
                let u = Url::parse(d.url.expose_secret()).unwrap();
                assert_eq!(
                    u.origin(),
                    Url::parse(&env.sim.storage_base()).unwrap().origin()
                );
            }
        } else {
            assert!(c.downloads.is_empty());
        }
        total += c.stats;
        crawls.insert(stream, c);
    }
    assert_pull_views_match_the_manifest(s, &crawls);
    let st = env.sim.stats();
    assert_eq!(st.token_requests, 1, "one token for the whole crawl");
    assert_eq!(env.tokens.token_requests(), 1);
    assert_eq!(
        st.total_requests,
        total.requests + 1,
        "API pages plus the token request"
    );
    assert_eq!(env.v3.metrics().requests, total.requests);
    assert_eq!(total.retries, 0);
    assert_eq!(total.rate_limited_429, 0);
    // The simulator's byte count also includes the token response.
    assert!(total.bytes > 0 && total.bytes < st.bytes_sent);
}

/// For every record the scenario did not tamper with (no defect: push and ATS agree),
/// the view built from the pull alone (candidate fields plus its attachment elements)
/// is what the manifest expects eds to show.
fn assert_pull_views_match_the_manifest(s: &Scenario, crawls: &HashMap<Stream, Crawl>) {
    let tampered: HashSet<(String, String)> = s
        .manifest
        .defects
        .iter()
        .map(|d| (d.entity.clone(), d.id.clone()))
        .collect();
    let mut views: HashMap<(String, String), Map<String, Value>> = HashMap::new();
    for stream in [Stream::Candidates, Stream::Applications, Stream::Jobs] {
        for o in &crawls[&stream].observations {
            let ObservationScope::Record { fields } = &o.scope else {
                panic!("record scope expected")
            };
            views.insert((o.entity.to_string(), o.ats_id.to_string()), as_map(fields));
        }
    }
    for o in &crawls[&Stream::Attachments].observations {
        let ObservationScope::Element { element, .. } = &o.scope else {
            panic!("element scope expected")
        };
        let view = views
            .get_mut(&("candidate".to_string(), o.ats_id.to_string()))
            .expect("attachment of a listed candidate");
        match view
            .entry("attachments")
            .or_insert_with(|| Value::Array(vec![]))
        {
            Value::Array(a) => a.push(element.clone()),
            _ => unreachable!(),
        }
    }
    let mut checked = 0;
    for ((entity, id), view) in &views {
        if tampered.contains(&(entity.clone(), id.clone())) {
            continue;
        }
        let diffs = s.manifest.check(entity, id, Some(view));
        assert!(diffs.is_empty(), "{entity} {id}: {diffs:?}");
        checked += 1;
    }
    assert!(
        checked > views.len() / 2,
        "most records are untampered ({checked})"
    );
}

#[tokio::test]
async fn records_changed_mid_crawl_are_returned_once_per_window_and_caught_by_the_next_window() {
    let s = big_scenario();
    let env = env(s.truth.clone()).await;
    let clock = env.sim.clock();
    let w1 = everything_until(clock.now());
    let mut ids: Vec<u64> = s
        .truth
        .candidates
        .iter()
        .map(|v| record_id(v).unwrap())
        .collect();
    ids.sort_unstable();
    // Pages come in descending id order: the highest ids are served first, the lowest
    // last. Change records on both sides of the crawl's position, and add one.
    let served_early = *ids.last().unwrap();
    let served_late = ids[0];
    let mutator = env.sim.mutate();
    let mut inserted = None;
    let c1 = crawl(&env.v3, Stream::Candidates, &w1, |page| {
        if page == 2 {
            clock.advance(Duration::from_secs(60));
            mutator
                .update(
                    Entity::Candidate,
                    served_early,
                    "first_name",
                    json!("Changed-Early"),
                )
                .unwrap();
            mutator
                .update(
                    Entity::Candidate,
                    served_late,
                    "first_name",
                    json!("Changed-Late"),
                )
                .unwrap();
            inserted = Some(
                mutator
                    .insert(
                        Entity::Candidate,
                        json!({"first_name": "New", "last_name": "Person"}),
                    )
                    .unwrap(),
            );
        }
    })
    .await
    .unwrap();
    let got1 = c1.ids(Stream::Candidates);
    let unique: HashSet<&String> = got1.iter().collect();
    assert_eq!(unique.len(), got1.len(), "no record twice within a window");
    // The late one moved out of the two-sided window before it was reached.
    let expected1: HashSet<String> = ids
        .iter()
        .filter(|i| **i != served_late)
        .map(u64::to_string)
        .collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<HashSet<_>>(),
        expected1
    );

    // The next window (watermark = w1.to, one hour lookback) catches every change.
    clock.advance(Duration::from_secs(10 * 60));
    let policy = eds_shared::connector::WindowPolicy::default();
    let w2 = policy.next(Some(w1.to), clock.now()).unwrap();
    let c2 = crawl(&env.v3, Stream::Candidates, &w2, |_| {})
        .await
        .unwrap();
    let latest: HashMap<String, &Observation> = c1
        .observations
        .iter()
        .chain(&c2.observations)
        .fold(HashMap::new(), |mut m, o| {
            let e = m.entry(o.ats_id.to_string()).or_insert(o);
            if o.ats_updated_at >= e.ats_updated_at {
                *e = o;
            }
            m
        });
    let snapshot = env.sim.snapshot();
    assert_eq!(
        latest.len(),
        snapshot.candidates.len(),
        "every record seen across the two windows"
    );
    for v in &snapshot.candidates {
        let id = record_id(v).unwrap().to_string();
        let ObservationScope::Record { fields } = &latest[&id].scope else {
            panic!()
        };
        assert_eq!(
            as_map(fields),
            record_fields(Entity::Candidate, v),
            "candidate {id}"
        );
    }
    let inserted = inserted.unwrap().to_string();
    for (id, name) in [
        (served_early.to_string(), "Changed-Early"),
        (served_late.to_string(), "Changed-Late"),
        (inserted, "New"),
    ] {
        let ObservationScope::Record { fields } = &latest[&id].scope else {
            panic!()
        };
        assert_eq!(fields["first_name"], json!(name));
    }
}

#[tokio::test]
async fn window_without_changes_costs_one_request_per_stream() {
    let env = env(small_scenario().truth.clone()).await;
    let clock = env.sim.clock();
    let quiet_from = clock.now() + chrono::Duration::seconds(1);
    clock.advance(Duration::from_secs(2 * 3600));
    let w = Window {
        from: quiet_from,
        to: clock.now(),
    };
    env.sim.reset_stats();
    for stream in Stream::ALL {
        let page = env.v3.list_changed(stream, &w, None, far()).await.unwrap();
        assert!(
            page.observations.is_empty() && page.next.is_none(),
            "{stream}"
        );
        assert_eq!(page.stats.requests, 1);
        assert_eq!(
            env.sim.stats().endpoint_total(&endpoint(stream)),
            1,
            "{stream}"
        );
    }
    assert_eq!(
        env.sim.stats().total_requests,
        4 + env.sim.stats().token_requests
    );
}

// ---------------------------------------------------------------------------------
// Credentials and configuration errors.

#[tokio::test]
async fn access_token_expiring_mid_crawl_is_refreshed_once_and_the_crawl_completes() {
    let s = big_scenario();
    let env = env(s.truth.clone()).await;
    let window = everything_until(env.sim.clock().now());
    let sim = &env.sim;
    let c = crawl(&env.v3, Stream::Applications, &window, |page| {
        if page == 3 {
            sim.expire_access_tokens();
        }
    })
    .await
    .unwrap();
    assert_exactly_once(
        Stream::Applications,
        &c.ids(Stream::Applications),
        &truth_ids(&s.truth, Stream::Applications),
    );
    let st = sim.stats();
    assert_eq!(st.count("GET /v3/applications", 401), 1);
    assert_eq!(st.token_requests, 2);
    assert_eq!(
        c.stats.retries, 1,
        "the 401 is retried once with the new token"
    );
}

#[tokio::test]
async fn missing_scope_is_forbidden_naming_the_endpoint_and_never_an_empty_stream() {
    let scopes = [
        "harvest:candidates:list",
        "harvest:applications:list",
        "harvest:jobs:list",
    ];
    let env = env_with(
        SimConfig::default(),
        small_scenario().truth.clone(),
        &scopes,
        |_| {},
    )
    .await;
    let window = everything_until(env.sim.clock().now());
    let err = env
        .v3
        .list_changed(Stream::Attachments, &window, None, far())
        .await
        .unwrap_err();
    match &err {
        ConnectorError::Forbidden { endpoint } => assert_eq!(endpoint, "GET /v3/attachments"),
        other => panic!("expected Forbidden, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("/v3/attachments"));
    let err = env
        .v3
        .list_ids(Stream::Attachments, None, far())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Forbidden { .. }));
    // Other streams are unaffected.
    assert!(
        env.v3
            .list_changed(Stream::Jobs, &window, None, far())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn wrong_client_secret_is_a_credentials_error_not_a_retry_loop() {
    let sim = start(SimConfig::default(), small_scenario().truth.clone()).await;
    sim.add_oauth_client(CLIENT_ID, CLIENT_SECRET, ALL_SCOPES);
    let tokens = ClientCredentials::new(&sim, CLIENT_ID, "not-the-secret");
    let v3 = GreenhouseV3::new(gh_config(&sim), tokens, Arc::new(RateLimiter::default())).unwrap();
    let err = v3
        .list_changed(
            Stream::Jobs,
            &everything_until(sim.clock().now()),
            None,
            far(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Credentials(_)), "{err:?}");
    assert_eq!(sim.stats().token_requests, 1);
    assert_eq!(sim.stats().endpoint_total("GET /v3/jobs"), 0);
}

// ---------------------------------------------------------------------------------
// Faults.

#[tokio::test]
async fn twenty_percent_server_errors_still_return_every_record_exactly_once() {
    let s = big_scenario();
    let env = env_with(SimConfig::default(), s.truth.clone(), ALL_SCOPES, |c| {
        c.retry.max_retries = 8
    })
    .await;
    env.sim.set_faults(Faults {
        seed: 20,
        error_5xx_rate: 0.2,
        ..Faults::default()
    });
    let window = everything_until(env.sim.clock().now());
    let mut retries = 0;
    for stream in Stream::ALL {
        let c = crawl(&env.v3, stream, &window, |_| {}).await.unwrap();
        assert_exactly_once(stream, &c.ids(stream), &truth_ids(&s.truth, stream));
        retries += c.stats.retries;
        assert!(c.stats.backoff_wait > Duration::ZERO || c.stats.retries == 0);
    }
    let st = env.sim.stats();
    let errors = st.status_total(500) + st.status_total(502) + st.status_total(503);
    assert!(errors > 0, "the fault injection did something");
    assert_eq!(retries, errors, "every 5xx retried, nothing else");
}

#[tokio::test]
async fn persistent_server_errors_end_as_transient_after_bounded_retries() {
    let env = env(small_scenario().truth.clone()).await;
    env.sim.set_faults(Faults {
        seed: 2,
        error_5xx_rate: 1.0,
        ..Faults::default()
    });
    let err = env
        .v3
        .list_changed(
            Stream::Jobs,
            &everything_until(env.sim.clock().now()),
            None,
            far(),
        )
        .await
        .unwrap_err();
    match &err {
        ConnectorError::Transient {
            endpoint, attempts, ..
        } => {
            assert_eq!(endpoint, "GET /v3/jobs");
            assert_eq!(*attempts, 5, "4 retries, then give up");
        }
        other => panic!("expected Transient, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert_eq!(env.sim.stats().endpoint_total("GET /v3/jobs"), 5);
    assert_eq!(env.v3.metrics().retries, 4);
}

#[tokio::test]
async fn bursts_of_429_are_waited_out_and_reported() {
    let cfg = SimConfig {
        rate_window_v3: Duration::from_secs(2),
        ..SimConfig::default()
    };
    let env = env_with(cfg, small_scenario().truth.clone(), ALL_SCOPES, |_| {}).await;
    env.sim.set_faults(Faults {
        seed: 3,
        burst_429: Some(Burst429 {
            probability: 0.3,
            length: 2,
            retry_after_secs: 1,
        }),
        ..Faults::default()
    });
    let s = small_scenario();
    let window = everything_until(env.sim.clock().now());
    let mut stats = RequestStats::default();
    for stream in [Stream::Candidates, Stream::Applications] {
        let c = crawl(&env.v3, stream, &window, |_| {}).await.unwrap();
        assert_exactly_once(stream, &c.ids(stream), &truth_ids(&s.truth, stream));
        stats += c.stats;
    }
    let sim_429 = env.sim.stats().rate_limited;
    assert!(sim_429 > 0, "the seed produced bursts");
    assert_eq!(stats.rate_limited_429, sim_429, "every 429 is counted");
    assert!(
        stats.rate_limit_wait > Duration::ZERO,
        "the waits are reported"
    );
}

#[tokio::test]
async fn a_wait_past_the_deadline_returns_rate_limited_instead_of_sleeping() {
    let env = env(small_scenario().truth.clone()).await;
    env.sim.set_faults(Faults {
        seed: 1,
        burst_429: Some(Burst429 {
            probability: 1.0,
            length: 1,
            retry_after_secs: 120,
        }),
        ..Faults::default()
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let before = Utc::now();
    let err = env
        .v3
        .list_changed(
            Stream::Jobs,
            &everything_until(env.sim.clock().now()),
            None,
            deadline,
        )
        .await
        .unwrap_err();
    let ConnectorError::RateLimited { retry_at, .. } = &err else {
        panic!("expected RateLimited, got {err:?}");
    };
    assert!(
        *retry_at >= before + chrono::Duration::seconds(120),
        "{retry_at}"
    );
    assert!(err.is_retryable());
    assert_eq!(env.v3.metrics().rate_limited_429, 1);
}

// ---------------------------------------------------------------------------------
// A hostile ATS at the HTTP level (simulator `Hostile` modes).

async fn hostile_env(hostile: Hostile, gh: impl FnOnce(&mut GreenhouseConfig)) -> Env {
    let cfg = SimConfig {
        hostile,
        ..SimConfig::default()
    };
    env_with(cfg, small_scenario().truth.clone(), ALL_SCOPES, gh).await
}

async fn first_jobs_page(
    env: &Env,
    deadline: tokio::time::Instant,
) -> Result<usize, ConnectorError> {
    env.v3
        .list_changed(
            Stream::Jobs,
            &everything_until(env.sim.clock().now()),
            None,
            deadline,
        )
        .await
        .map(|p| p.observations.len() + p.quarantined.len())
}

#[tokio::test]
async fn a_page_larger_than_the_body_limit_is_refused_while_streaming() {
    use eds_shared::connector::greenhouse::RetryPolicy;
    let limit = RetryPolicy::default().max_body_bytes;
    // About 20 MB, chunked, generated while sent: more than the default limit.
    let env = hostile_env(
        Hostile {
            page_rows: Some(20_000),
            ..Hostile::default()
        },
        |_| {},
    )
    .await;
    let err = first_jobs_page(&env, far()).await.unwrap_err();
    match &err {
        ConnectorError::BodyTooLarge { endpoint, limit: l } => {
            assert_eq!(endpoint, "GET /v3/jobs");
            assert_eq!(*l, limit);
        }
        other => panic!("expected BodyTooLarge, got {other:?}"),
    }
    assert!(err.to_string().contains(&format!("{limit} bytes")), "{err}");
    assert!(!err.is_retryable(), "the same page would be refused again");
    assert_eq!(
        env.sim.stats().endpoint_total("GET /v3/jobs"),
        1,
        "not retried"
    );
    // Reading stopped at the limit (plus at most the chunk that crossed it).
    let read = env.v3.metrics().bytes;
    assert!(
        read > limit && read <= limit + 256 * 1024,
        "read {read} bytes"
    );
}

#[tokio::test]
async fn a_page_just_under_the_body_limit_is_read_and_one_over_is_not() {
    // 100 synthetic rows of 1,000 bytes: about 100 kB.
    let rows = Hostile {
        page_rows: Some(100),
        ..Hostile::default()
    };
    let env = hostile_env(rows.clone(), |c| c.retry.max_body_bytes = 128 * 1024).await;
    assert_eq!(first_jobs_page(&env, far()).await.unwrap(), 100);
    let env = hostile_env(rows, |c| c.retry.max_body_bytes = 64 * 1024).await;
    let err = first_jobs_page(&env, far()).await.unwrap_err();
    assert!(
        matches!(err, ConnectorError::BodyTooLarge { limit: 65536, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_content_length_above_the_limit_is_refused_before_reading() {
    // The simulator's ordinary pages carry a Content-Length.
    let env = env_with(
        SimConfig::default(),
        small_scenario().truth.clone(),
        ALL_SCOPES,
        |c| c.retry.max_body_bytes = 200,
    )
    .await;
    let err = first_jobs_page(&env, far()).await.unwrap_err();
    assert!(
        matches!(err, ConnectorError::BodyTooLarge { limit: 200, .. }),
        "{err:?}"
    );
    assert_eq!(env.v3.metrics().bytes, 0, "nothing of the body was read");
}

/// A `Retry-After` on every request; the caller has 5 s.
async fn rate_limited_once(retry_after: &str) -> (Env, ConnectorError, DateTime<Utc>) {
    let env = hostile_env(
        Hostile {
            retry_after: Some(retry_after.to_string()),
            ..Hostile::default()
        },
        |_| {},
    )
    .await;
    let before = Utc::now();
    let err = first_jobs_page(&env, tokio::time::Instant::now() + Duration::from_secs(5))
        .await
        .unwrap_err();
    (env, err, before)
}

fn retry_at_of(err: &ConnectorError) -> DateTime<Utc> {
    match err {
        ConnectorError::RateLimited { endpoint, retry_at } => {
            assert_eq!(endpoint, "GET /v3/jobs");
            *retry_at
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

#[tokio::test]
async fn a_long_retry_after_is_one_request_then_rate_limited_until_then() {
    for (value, secs) in [
        ("3600", 3600),
        ("999999", 3600),
        ("1e20", 3600),
        ("120", 120),
    ] {
        let (env, err, before) = rate_limited_once(value).await;
        let retry_at = retry_at_of(&err);
        let after = Utc::now();
        // Clamped to the stated maximum of one hour.
        assert!(
            retry_at >= before + chrono::Duration::seconds(secs)
                && retry_at <= after + chrono::Duration::seconds(secs),
            "Retry-After {value}: retry_at {retry_at}"
        );
        assert!(err.is_retryable());
        assert!(
            err.to_string().contains("rate limited by the ATS until"),
            "{err}"
        );
        assert_eq!(
            env.sim.stats().endpoint_total("GET /v3/jobs"),
            1,
            "Retry-After {value}: exactly one request"
        );
        // The block holds for every later call through the same limiter: no request.
        let again = first_jobs_page(&env, tokio::time::Instant::now() + Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(retry_at_of(&again).timestamp(), retry_at.timestamp());
        assert_eq!(env.sim.stats().endpoint_total("GET /v3/jobs"), 1);
    }
}

#[tokio::test]
async fn hostile_retry_after_values_never_panic() {
    for value in [
        "1e20",
        "inf",
        "-1",
        "NaN",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "soon",
    ] {
        let (env, err, _) = rate_limited_once(value).await;
        // Whatever the value, an error instead of a panic (unusable values fall back
        // to the 5 s default wait, which does not fit the 5 s left either).
        assert!(err.is_retryable(), "{value}: {err:?}");
        assert!(env.sim.stats().endpoint_total("GET /v3/jobs") >= 1);
    }
}

#[tokio::test]
async fn a_block_seeded_from_outside_sends_nothing_before_it_ends() {
    let env = env(small_scenario().truth.clone()).await;
    let limiter = Arc::new(RateLimiter::default());
    let until = std::time::SystemTime::now() + Duration::from_secs(1800);
    limiter.block_until(until);
    let v3 = GreenhouseV3::new(gh_config(&env.sim), env.tokens.clone(), limiter).unwrap();
    let err = v3
        .list_changed(
            Stream::Jobs,
            &everything_until(env.sim.clock().now()),
            None,
            far(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        retry_at_of(&err).timestamp(),
        DateTime::<Utc>::from(until).timestamp()
    );
    assert_eq!(env.sim.stats().endpoint_total("GET /v3/jobs"), 0);
}

#[tokio::test]
async fn a_trickling_body_is_cut_by_the_request_timeout_and_says_so() {
    // One byte per second: the page would take minutes.
    let drip = Hostile {
        drip_bytes_per_sec: Some(1),
        ..Hostile::default()
    };
    let env = hostile_env(drip.clone(), |c| {
        c.retry.request_timeout = Duration::from_secs(2);
        c.retry.max_retries = 1;
    })
    .await;
    let err = first_jobs_page(&env, far()).await.unwrap_err();
    match &err {
        ConnectorError::Transient {
            attempts, detail, ..
        } => {
            assert_eq!(*attempts, 2);
            assert!(detail.contains("slow response"), "{detail}");
        }
        other => panic!("expected Transient, got {other:?}"),
    }
    // Cut by the caller's deadline instead: `Deadline`, still naming the slow response.
    let env = hostile_env(drip, |_| {}).await;
    let err = first_jobs_page(&env, tokio::time::Instant::now() + Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Deadline { .. }), "{err:?}");
    assert!(err.to_string().contains("slow response"), "{err}");
}

#[tokio::test]
async fn tenant_urls_must_be_https_on_a_public_host_unless_local_testing() {
    let env = env(small_scenario().truth.clone()).await;
    let sim_url = Url::parse(&env.sim.api_base()).unwrap();
    let limiter = || Arc::new(RateLimiter::default());
    // The simulator's plain-http loopback URL, as a tenant's setting in production.
    let err = GreenhouseV3::new(
        GreenhouseConfig::for_tenant(sim_url.clone(), false),
        env.tokens.clone(),
        limiter(),
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("https"), "{err}");
    for hostile in [
        "https://169.254.169.254/latest/meta-data",
        "https://0x7f000001:8080/",
        "https://[::1]:8080/",
        "https://localhost:22/",
    ] {
        let r = GreenhouseV3::new(
            GreenhouseConfig::for_tenant(Url::parse(hostile).unwrap(), false),
            env.tokens.clone(),
            limiter(),
        );
        assert!(
            matches!(r, Err(ConnectorError::Config(_))),
            "{hostile} accepted"
        );
    }
    // Under the local-testing switch the simulator is reachable, by address and by the
    // name `localhost` (resolved through the checking resolver).
    let by_name = Url::parse(&format!("http://localhost:{}", sim_url.port().unwrap())).unwrap();
    for url in [sim_url, by_name] {
        let mut c = GreenhouseConfig::for_tenant(url, true).with_fast_retries();
        c.per_page = 500;
        let v3 = GreenhouseV3::new(c, env.tokens.clone(), limiter()).unwrap();
        let page = v3
            .list_changed(
                Stream::Jobs,
                &everything_until(env.sim.clock().now()),
                None,
                far(),
            )
            .await
            .unwrap();
        assert!(!page.observations.is_empty());
    }
}

#[tokio::test]
async fn pacing_from_rate_limit_headers_avoids_429_for_clients_sharing_a_credential() {
    let cfg = SimConfig {
        rate_limit_v3: 4,
        rate_window_v3: Duration::from_secs(1),
        ..SimConfig::default()
    };
    let sim = start(cfg, small_scenario().truth.clone()).await;
    sim.add_oauth_client(CLIENT_ID, CLIENT_SECRET, ALL_SCOPES);
    let tokens = ClientCredentials::new(&sim, CLIENT_ID, CLIENT_SECRET);
    let shared = RateLimiter::shared("pacing-test-tenant");
    let mut c = gh_config(&sim);
    c.per_page = 100;
    let a = GreenhouseV3::new(c.clone(), tokens.clone(), shared.clone()).unwrap();
    let b = GreenhouseV3::new(c, tokens.clone(), shared).unwrap();
    let window = everything_until(sim.clock().now());
    let (ca, cb) = tokio::join!(
        crawl(&a, Stream::Candidates, &window, |_| {}),
        crawl(&b, Stream::Applications, &window, |_| {})
    );
    let (ca, cb) = (ca.unwrap(), cb.unwrap());
    let s = small_scenario();
    assert_exactly_once(
        Stream::Candidates,
        &ca.ids(Stream::Candidates),
        &truth_ids(&s.truth, Stream::Candidates),
    );
    assert_exactly_once(
        Stream::Applications,
        &cb.ids(Stream::Applications),
        &truth_ids(&s.truth, Stream::Applications),
    );
    assert!(ca.pages + cb.pages > 8, "enough requests to need pacing");
    assert_eq!(sim.stats().rate_limited, 0, "steady state never hits 429");
    assert!(
        ca.stats.rate_limit_wait + cb.stats.rate_limit_wait > Duration::ZERO,
        "the pacing waits are reported"
    );
}

#[tokio::test]
async fn expired_cursor_is_reported_and_restarting_the_window_loses_no_record() {
    let s = big_scenario();
    let env = env(s.truth.clone()).await;
    let window = everything_until(env.sim.clock().now());
    let mut cursor = None;
    for _ in 0..3 {
        let p = env
            .v3
            .list_changed(Stream::Candidates, &window, cursor.as_ref(), far())
            .await
            .unwrap();
        cursor = p.next;
    }
    env.sim.expire_cursors();
    let err = env
        .v3
        .list_changed(Stream::Candidates, &window, cursor.as_ref(), far())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConnectorError::CursorExpired { .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let c = crawl(&env.v3, Stream::Candidates, &window, |_| {})
        .await
        .unwrap();
    assert_exactly_once(
        Stream::Candidates,
        &c.ids(Stream::Candidates),
        &truth_ids(&s.truth, Stream::Candidates),
    );
}

#[tokio::test]
async fn page_body_that_is_not_a_json_array_fails_the_page() {
    let env = env(small_scenario().truth.clone()).await;
    env.sim.set_faults(Faults {
        seed: 1,
        malformed_body_rate: 1.0,
        ..Faults::default()
    });
    let err = env
        .v3
        .list_changed(
            Stream::Candidates,
            &everything_until(env.sim.clock().now()),
            None,
            far(),
        )
        .await
        .unwrap_err();
    match err {
        ConnectorError::Malformed { endpoint, .. } => assert_eq!(endpoint, "GET /v3/candidates"),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[tokio::test]
async fn broken_record_is_quarantined_while_the_rest_of_the_page_proceeds() {
    let env = env(small_scenario().truth.clone()).await;
    let m = env.sim.mutate();
    let bad = m
        .insert(
            Entity::Candidate,
            json!({"first_name": 42, "tags": "not-a-list"}),
        )
        .unwrap();
    let window = everything_until(env.sim.clock().now());
    let c = crawl(&env.v3, Stream::Candidates, &window, |_| {})
        .await
        .unwrap();
    assert_eq!(c.quarantined.len(), 1);
    assert_eq!(
        c.quarantined[0].ats_id.as_deref(),
        Some(bad.to_string().as_str())
    );
    assert_eq!(c.quarantined[0].stream, Stream::Candidates);
    assert!(c.quarantined[0].error.contains("first_name"));
    assert_exactly_once(
        Stream::Candidates,
        &c.ids(Stream::Candidates),
        &truth_ids(&small_scenario().truth, Stream::Candidates),
    );
}

#[tokio::test]
async fn stored_cursor_pointing_at_another_host_or_stream_is_refused_before_any_request() {
    let env = env(small_scenario().truth.clone()).await;
    let window = everything_until(env.sim.clock().now());
    for bad in [
        "https://attacker.example/v3/candidates?cursor=abc",
        "http://169.254.169.254/v3/candidates?cursor=abc",
        &format!("{}/v3/jobs?cursor=abc", env.sim.api_base()),
        "not a url",
    ] {
        let c = Cursor::from_checkpoint(bad);
        let err = env
            .v3
            .list_changed(Stream::Candidates, &window, Some(&c), far())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ConnectorError::UntrustedLink(_)),
            "{bad}: {err:?}"
        );
    }
    assert_eq!(
        env.sim.stats().total_requests,
        0,
        "no credential was sent anywhere"
    );
}

#[tokio::test]
async fn id_listing_returns_every_current_id_so_deletions_can_be_found() {
    let s = small_scenario();
    let env = env(s.truth.clone()).await;
    let gone = record_id(&s.truth.candidates[0]).unwrap();
    env.sim.mutate().delete(Entity::Candidate, gone).unwrap();
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let p = env
            .v3
            .list_ids(Stream::Candidates, cursor.as_ref(), far())
            .await
            .unwrap();
        ids.extend(p.ids.into_iter().map(|i| i.to_string()));
        match p.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let mut expected = truth_ids(&s.truth, Stream::Candidates);
    expected.remove(&gone.to_string());
    assert_exactly_once(Stream::Candidates, &ids, &expected);
    assert_eq!(
        env.sim.stats().endpoint_total("GET /v3/candidates"),
        pages_for(expected.len(), 500)
    );
}

// ---------------------------------------------------------------------------------
// Secrets never reach logs.

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs the connector's main flows (token, 401 refresh, 403, 429, 5xx, cursor expiry,
/// quarantine, an API key, attachments with signed URLs) with every TRACE event
/// of every crate captured, then looks for each secret in the capture and in the
/// `Debug` output of everything the connector returned.
#[tokio::test]
async fn secrets_never_appear_in_trace_logs_or_debug_output() {
    let capture = Capture::default();
    let sink = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut debug_out = String::new();

    let s = small_scenario();
    let cfg = SimConfig {
        rate_window_v3: Duration::from_secs(1),
        ..SimConfig::default()
    };
    let env = env_with(cfg, s.truth.clone(), ALL_SCOPES, |c| c.per_page = 200).await;
    let window = everything_until(env.sim.clock().now());
    env.sim.set_faults(Faults {
        seed: 5,
        error_5xx_rate: 0.2,
        burst_429: Some(Burst429 {
            probability: 0.2,
            length: 1,
            retry_after_secs: 1,
        }),
        ..Faults::default()
    });
    let sim = &env.sim;
    for stream in Stream::ALL {
        let c = crawl(&env.v3, stream, &window, |page| {
            if page == 2 {
                sim.expire_access_tokens();
            }
        })
        .await
        .unwrap();
        debug_out.push_str(&format!(
            "{:?}{:?}{:?}",
            c.observations.first(),
            c.downloads,
            c.quarantined
        ));
    }
    env.sim.set_faults(Faults::default());
    env.sim.expire_cursors();
    let p = env
        .v3
        .list_changed(Stream::Jobs, &window, None, far())
        .await
        .unwrap();
    debug_out.push_str(&format!("{:?}", p));
    env.sim
        .mutate()
        .insert(Entity::Candidate, json!({"first_name": 1}))
        .unwrap();
    let p = env
        .v3
        .list_changed(Stream::Candidates, &window, None, far())
        .await
        .unwrap();
    debug_out.push_str(&format!("{:?}", p.quarantined));
    let p1 = env
        .v3
        .list_changed(Stream::Candidates, &window, None, far())
        .await
        .unwrap();
    env.sim.expire_cursors();
    let e = env
        .v3
        .list_changed(Stream::Candidates, &window, p1.next.as_ref(), far())
        .await
        .unwrap_err();
    debug_out.push_str(&format!("{e:?} {e}"));
    // 403 with a narrower client.
    env.sim
        .add_oauth_client("narrow", CLIENT_SECRET, &["harvest:jobs:list"]);
    let narrow = ClientCredentials::new(&env.sim, "narrow", CLIENT_SECRET);
    let nv3 = GreenhouseV3::new(
        gh_config(&env.sim),
        narrow.clone(),
        Arc::new(RateLimiter::default()),
    )
    .unwrap();
    let e = nv3
        .list_changed(Stream::Candidates, &window, None, far())
        .await
        .unwrap_err();
    debug_out.push_str(&format!("{e:?} {e}"));
    // An API key (the credential of API-key ATSs) through the same HTTP core: Greenhouse
    // v3 wants a bearer token, so it is refused (401, after one retry), never logged.
    for key in [API_KEY, "wrong-key-secret-99"] {
        let keyed = GreenhouseV3::new(
            gh_config(&env.sim),
            Arc::new(ApiKey(SecretString::from(key))),
            Arc::new(RateLimiter::default()),
        )
        .unwrap();
        let e = keyed
            .list_changed(Stream::Jobs, &window, None, far())
            .await
            .unwrap_err();
        assert!(matches!(e, ConnectorError::Unauthorized { .. }), "{e:?}");
        debug_out.push_str(&format!("{e:?} {e}"));
    }

    drop(_guard);
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("ATS response"),
        "the capture saw the connector's events"
    );
    assert!(logs.contains("429"), "the capture saw the rate-limit path");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(format!("{s}:"));
    let mut secrets: Vec<String> = vec![
        CLIENT_SECRET.to_string(),
        API_KEY.to_string(),
        "wrong-key-secret-99".to_string(),
        b64(API_KEY),
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")),
        "sig=".to_string(),
    ];
    secrets.extend(env.tokens.issued());
    secrets.extend(narrow.issued());
    assert!(env.tokens.issued().len() >= 2, "a refresh happened");
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret appeared in the logs"
        );
        assert!(
            !debug_out.contains(secret.as_str()),
            "a secret appeared in Debug output"
        );
    }
}

// ---------------------------------------------------------------------------------
// Measurement (not a test of behaviour; run explicitly):
// cargo test -p eds-shared --test connector -- --ignored --nocapture measure

/// CPU time of the calling thread, from the kernel's scheduler statistics.
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns: u64 = s
        .split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

#[test]
#[ignore]
fn measure_cpu_per_record_and_requests_per_1000_records() {
    // The simulator runs on its own runtime thread so that the measured thread does only
    // the client's work: HTTP, JSON parsing and normalisation.
    let sim_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let s = big_scenario();
    let sim = sim_rt.block_on(start(SimConfig::default(), s.truth.clone()));
    sim.add_oauth_client(CLIENT_ID, CLIENT_SECRET, ALL_SCOPES);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tokens = ClientCredentials::new(&sim, CLIENT_ID, CLIENT_SECRET);
    let v3 = GreenhouseV3::new(gh_config(&sim), tokens, Arc::new(RateLimiter::default())).unwrap();
    let window = everything_until(sim.clock().now());
    let wall = std::time::Instant::now();
    let cpu0 = thread_cpu();
    let mut records = 0usize;
    let mut stats = RequestStats::default();
    rt.block_on(async {
        for stream in Stream::ALL {
            let c = crawl(&v3, stream, &window, |_| {}).await.unwrap();
            records += c.observations.len();
            stats += c.stats;
        }
    });
    let cpu = thread_cpu() - cpu0;
    let requests = stats.requests + sim.stats().token_requests;
    println!(
        "records={records} requests={requests} (api {}) bytes={} wall={:?} client_cpu={:?} cpu_per_record={:.2}us requests_per_1000_records={:.2}",
        stats.requests,
        stats.bytes,
        wall.elapsed(),
        cpu,
        cpu.as_secs_f64() * 1e6 / records as f64,
        requests as f64 * 1000.0 / records as f64
    );
    assert!(records > 0);
}
