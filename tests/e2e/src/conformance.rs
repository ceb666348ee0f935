//! The ATS side of the conformance suite (`tests/conformance.rs`): each ATS eds pulls
//! from gives its simulator, a scenario with its manifest of right answers, and the few
//! mutations the properties need. The properties are written once against
//! [`AtsUnderTest`]; a new ATS implements it and runs them all.

use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use crate::Stack;
use eds_shared::credentials::{TokenEndpoint, TokenEndpointConfig, TokenGrant};
use eds_shared::domain::ids::{AtsId, EntityKind, RecordKey, TenantId};
use eds_shared::pipeline::push::{to_change, validate_record};
use eds_shared::store::{RecordRead, RecordWrite};
use eds_shared::tenants::{AtsSettings, GreenhouseSettings, LeverSettings, TenantConfig};

/// The partner OAuth client every fixture registers.
pub const CLIENT_ID: &str = "eds-partner";
pub const CLIENT_SECRET: &str = "partner-client-secret-value";

/// One ATS under test: its simulator, serving a generated scenario.
#[async_trait]
pub trait AtsUnderTest: Send + Sync + Sized {
    /// The ATS's name as tenants spell it (`ats_kind`).
    const ATS: &'static str;
    /// Requests of a run that finds nothing changed: one per list the ATS is read by.
    const UNCHANGED_RUN_REQUESTS: u64;
    /// The requests the limit of [`AtsUnderTest::limit_rate`] lets through at once: a
    /// backfill must need more, or the property proves nothing.
    const RATE_LIMIT_BUDGET: u64;

    /// A simulator serving a scenario of `candidates` candidates, with the partner
    /// OAuth client registered.
    async fn start(seed: u64, candidates: usize, now: DateTime<Utc>) -> anyhow::Result<Self>;
    /// The ATS's part of a tenant configuration (kind, URLs, file hosts).
    fn configure(&self, cfg: &mut TenantConfig);
    /// An authorization code for the OAuth client `client_id` (onboarding).
    fn authorization_code(&self, client_id: &str) -> String;
    /// Registers an OAuth client with every scope but the one its jobs list needs.
    fn add_client_without_jobs_scope(&self, client_id: &str, client_secret: &str);
    /// Makes every access token issued so far expire (the next call needs a refresh).
    fn expire_access_tokens(&self);
    /// Seeded faults on the API from now on (`on`), or none: 5xx answers and bursts
    /// of 429s.
    fn storm(&self, on: bool);
    /// 5xx answers the simulator gave.
    fn server_errors(&self) -> u64;
    /// The token endpoint's `audience`, when the ATS takes one.
    fn audience(&self) -> Option<&'static str> {
        None
    }
    /// The `redirect_uri` the code grant needs, when the ATS requires one.
    fn redirect_uri(&self) -> Option<&'static str> {
        None
    }
    fn token_url(&self) -> String;
    /// The scenario's pushed snapshot (push format).
    fn pushed(&self) -> Vec<Value>;
    /// Every `(entity, id)` the manifest has an expected view for.
    fn expected_keys(&self) -> Vec<(String, String)>;
    /// How `view` (`None`: no live view) differs from the expected one.
    fn differences(&self, entity: &str, id: &str, view: Option<&Map<String, Value>>)
    -> Vec<String>;
    /// Candidate ids the ATS holds now, in a stable order, without an injected defect
    /// (their merged view is the ATS's).
    fn candidate_ids(&self) -> Vec<String>;
    /// Changes one candidate in the ATS; returns the canonical field and its new value.
    fn change_candidate(&self, id: &str) -> anyhow::Result<(&'static str, Value)>;
    /// The records a change of candidate `id` re-stamps in the ATS (the candidate, and
    /// for Lever its application, which orders by its opportunity's `updatedAt`): each
    /// gets exactly one version.
    fn restamped_by_change(&self, id: &str) -> u64 {
        let _ = id;
        1
    }
    /// Deletes a candidate in the ATS.
    fn delete_candidate(&self, id: &str) -> anyhow::Result<()>;
    /// API requests the simulator answered (token requests not included).
    fn api_requests(&self) -> u64;
    fn token_requests(&self) -> u64;
    fn rate_limited(&self) -> u64;
    fn reset_stats(&self);
    /// Revokes every refresh token of the partner client.
    fn revoke_grant(&self);
    /// Sets the simulator's clock (the time its mutations stamp).
    fn set_clock(&self, to: DateTime<Utc>);
    /// Makes the simulator enforce a rate limit the sync must stay under (the ATS's
    /// documented one, or a tight one where the ATS tells its budget in headers).
    fn limit_rate(&self);
}

/// Exchanges an authorization code of `client_id` as onboarding does; returns the
/// refresh token.
pub async fn onboard<A: AtsUnderTest>(
    ats: &A,
    client_id: &str,
    client_secret: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let mut config = TokenEndpointConfig::new(ats.token_url().parse()?);
    config.audience = ats.audience().map(str::to_string);
    let endpoint = TokenEndpoint::new(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let issued = endpoint
        .request(
            client_id,
            &client_secret.to_string().into(),
            TokenGrant::AuthorizationCode {
                code: &ats.authorization_code(client_id).into(),
                redirect_uri: ats.redirect_uri(),
            },
            &AtomicU64::new(0),
            now,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let refresh = issued
        .refresh_token
        .ok_or_else(|| anyhow::anyhow!("no refresh token issued"))?;
    Ok(refresh.expose_secret().to_string())
}

/// Registers `tenant` for `ats` with a freshly onboarded authorization-code grant of
/// the partner client.
pub async fn enable<A: AtsUnderTest>(
    stack: &Stack,
    ats: &A,
    tenant: &str,
) -> anyhow::Result<TenantConfig> {
    enable_as(stack, ats, tenant, CLIENT_ID, CLIENT_SECRET).await
}

/// Registers `tenant` for `ats` with a freshly onboarded grant of `client_id`.
pub async fn enable_as<A: AtsUnderTest>(
    stack: &Stack,
    ats: &A,
    tenant: &str,
    client_id: &str,
    client_secret: &str,
) -> anyhow::Result<TenantConfig> {
    let refresh = onboard(ats, client_id, client_secret, Utc::now()).await?;
    let secret = json!({"kind": "authorization_code", "client_id": client_id,
        "client_secret": client_secret, "refresh_token": refresh});
    stack
        .enable_tenant_with(tenant, secret, |cfg| ats.configure(cfg))
        .await
}

/// Writes the scenario's pushed snapshot as the push function would (validated, one
/// change per record).
pub async fn push_snapshot<A: AtsUnderTest>(stack: &Stack, ats: &A, tenant: &TenantId) {
    let now = Utc::now();
    let changes: Vec<_> = ats
        .pushed()
        .iter()
        .map(|r| to_change(&validate_record(r, now).expect("the snapshot is valid push format")))
        .collect();
    let store = stack.store();
    for chunk in changes.chunks(100) {
        store
            .apply_page(tenant, chunk.to_vec(), now)
            .await
            .expect("push page applied");
    }
}

/// Every stored live view compared with the manifest.
pub async fn differences<A: AtsUnderTest>(
    stack: &Stack,
    ats: &A,
    tenant: &TenantId,
) -> Vec<String> {
    let store = stack.store();
    let mut out = Vec::new();
    for (entity, id) in ats.expected_keys() {
        let key = RecordKey::new(
            tenant.clone(),
            EntityKind::parse(&entity).unwrap(),
            AtsId::parse(id.clone()).unwrap(),
        );
        let head = store.get(&key).await.unwrap();
        let view = head.as_ref().filter(|h| h.view.deleted.is_none()).map(|h| {
            h.view
                .fields
                .clone()
                .into_iter()
                .collect::<serde_json::Map<_, _>>()
        });
        out.extend(ats.differences(&entity, &id, view.as_ref()));
    }
    out
}

/// Greenhouse Harvest v3 (`greenhouse-sim`).
pub struct Greenhouse {
    pub sim: greenhouse_sim::SimHandle,
    pub scenario: greenhouse_sim::Scenario,
}

#[async_trait]
impl AtsUnderTest for Greenhouse {
    const ATS: &'static str = "greenhouse";
    /// Candidates, applications, jobs, attachments.
    const UNCHANGED_RUN_REQUESTS: u64 = 4;
    const RATE_LIMIT_BUDGET: u64 = 2;

    async fn start(seed: u64, candidates: usize, now: DateTime<Utc>) -> anyhow::Result<Self> {
        use greenhouse_sim::{ALL_SCOPES, Scenario, ScenarioSpec, SimConfig, Simulator};
        let scenario = Scenario::generate(&ScenarioSpec {
            seed,
            candidates,
            jobs: 8,
            now,
            ..ScenarioSpec::default()
        });
        let sim = Simulator::start(SimConfig::default(), scenario.truth.clone()).await?;
        sim.add_oauth_client(CLIENT_ID, CLIENT_SECRET, ALL_SCOPES);
        Ok(Self { sim, scenario })
    }

    fn configure(&self, cfg: &mut TenantConfig) {
        cfg.ats = AtsSettings::Greenhouse(GreenhouseSettings::default());
        cfg.api_base_url = self.sim.api_base();
        cfg.auth_url = Some(self.sim.token_url());
        let storage = url::Url::parse(&self.sim.storage_base())
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "127.0.0.1".into());
        cfg.attachment_hosts = vec![storage];
    }

    fn authorization_code(&self, client_id: &str) -> String {
        self.sim.issue_authorization_code(client_id, 7)
    }

    fn add_client_without_jobs_scope(&self, client_id: &str, client_secret: &str) {
        let scopes: Vec<&str> = greenhouse_sim::ALL_SCOPES
            .iter()
            .copied()
            .filter(|s| *s != "harvest:jobs:list")
            .collect();
        self.sim.add_oauth_client(client_id, client_secret, &scopes);
    }

    fn expire_access_tokens(&self) {
        self.sim.expire_access_tokens();
    }

    fn storm(&self, on: bool) {
        self.sim.set_faults(if on {
            greenhouse_sim::Faults {
                // A seed whose storm, in this scenario's few requests, holds both a
                // 429 burst and a 5xx (each 429 waits for the window's reset).
                seed: 4,
                error_5xx_rate: 0.2,
                burst_429: Some(greenhouse_sim::Burst429 {
                    probability: 0.25,
                    length: 2,
                    retry_after_secs: 1,
                }),
                ..greenhouse_sim::Faults::default()
            }
        } else {
            greenhouse_sim::Faults::default()
        });
    }

    fn server_errors(&self) -> u64 {
        let s = self.sim.stats();
        s.status_total(500) + s.status_total(502) + s.status_total(503)
    }

    fn token_url(&self) -> String {
        self.sim.token_url()
    }

    fn pushed(&self) -> Vec<Value> {
        self.scenario.pushed.to_vec()
    }

    fn expected_keys(&self) -> Vec<(String, String)> {
        self.scenario
            .manifest
            .expected_views
            .keys()
            .cloned()
            .collect()
    }

    fn differences(
        &self,
        entity: &str,
        id: &str,
        view: Option<&Map<String, Value>>,
    ) -> Vec<String> {
        self.scenario
            .manifest
            .check(entity, id, view)
            .into_iter()
            .map(|d| {
                format!(
                    "{entity}/{id}: {} expected {:?} got {:?}",
                    d.field, d.expected, d.actual
                )
            })
            .collect()
    }

    fn candidate_ids(&self) -> Vec<String> {
        self.sim
            .mutate()
            .ids(greenhouse_sim::Entity::Candidate)
            .into_iter()
            .map(|i| i.to_string())
            .collect()
    }

    fn change_candidate(&self, id: &str) -> anyhow::Result<(&'static str, Value)> {
        let value = json!(format!("Principal Engineer {id}"));
        self.sim
            .mutate()
            .update(
                greenhouse_sim::Entity::Candidate,
                id.parse()?,
                "title",
                value.clone(),
            )
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(("title", value))
    }

    fn delete_candidate(&self, id: &str) -> anyhow::Result<()> {
        self.sim
            .mutate()
            .delete(greenhouse_sim::Entity::Candidate, id.parse()?)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
    }

    fn api_requests(&self) -> u64 {
        let s = self.sim.stats();
        s.total_requests - s.token_requests
    }

    fn token_requests(&self) -> u64 {
        self.sim.stats().token_requests
    }

    fn rate_limited(&self) -> u64 {
        self.sim.stats().status_total(429)
    }

    fn reset_stats(&self) {
        self.sim.reset_stats();
    }

    fn revoke_grant(&self) {
        self.sim.revoke_refresh_tokens(CLIENT_ID);
    }

    fn set_clock(&self, to: DateTime<Utc>) {
        self.sim.clock().set(to);
    }

    fn limit_rate(&self) {
        // A budget of 2 requests per 2-second window, told in `X-RateLimit-*` headers.
        let mut cfg = self.sim.config();
        cfg.rate_limit_v3 = 2;
        cfg.rate_window_v3 = std::time::Duration::from_secs(2);
        self.sim.set_config(cfg);
    }
}

/// Lever v1 (`lever-sim`).
pub struct Lever {
    pub sim: lever_sim::SimHandle,
    pub scenario: lever_sim::Scenario,
}

impl Lever {
    /// A simulator configured by `cfg` serving the scenario of `spec`, with the
    /// partner OAuth client registered.
    pub async fn start_with(
        spec: lever_sim::ScenarioSpec,
        cfg: lever_sim::SimConfig,
    ) -> anyhow::Result<Self> {
        let scenario = lever_sim::Scenario::generate(&spec);
        let sim = lever_sim::Simulator::start(cfg, scenario.truth.clone()).await?;
        sim.add_oauth_client(CLIENT_ID, CLIENT_SECRET, lever_sim::ALL_SCOPES);
        Ok(Self { sim, scenario })
    }
}

#[async_trait]
impl AtsUnderTest for Lever {
    const ATS: &'static str = "lever";
    /// Postings, opportunities, the deleted list.
    const UNCHANGED_RUN_REQUESTS: u64 = 3;
    const RATE_LIMIT_BUDGET: u64 = 20;

    async fn start(seed: u64, candidates: usize, now: DateTime<Utc>) -> anyhow::Result<Self> {
        let spec = lever_sim::ScenarioSpec {
            seed,
            candidacies: candidates,
            postings: 8,
            // Two candidacies with 103 resumes each in the larger scenarios only: their
            // downloads, paced at 8/s, take half a minute.
            many_resumes: if candidates >= 20 { 2 } else { 0 },
            now,
            ..lever_sim::ScenarioSpec::default()
        };
        let cfg = lever_sim::SimConfig {
            // Page 2 of resumes with a handful of them.
            resume_page_size: 5,
            // The strict reading of the (uncertain) token endpoint: `audience` required
            // on refresh, and a reused refresh token revokes its family. The trap tests
            // (`tests/lever.rs`) run the lenient defaults.
            require_audience_on_refresh: true,
            revoke_family_on_reuse: true,
            ..lever_sim::SimConfig::default()
        };
        Self::start_with(spec, cfg).await
    }

    fn configure(&self, cfg: &mut TenantConfig) {
        cfg.ats = AtsSettings::Lever(LeverSettings {});
        cfg.api_base_url = self.sim.api_base();
        cfg.auth_url = Some(self.sim.token_url());
        cfg.attachment_hosts = vec![];
    }

    fn authorization_code(&self, client_id: &str) -> String {
        self.sim.issue_authorization_code(client_id)
    }

    fn add_client_without_jobs_scope(&self, client_id: &str, client_secret: &str) {
        let scopes: Vec<&str> = lever_sim::ALL_SCOPES
            .iter()
            .copied()
            .filter(|s| *s != lever_sim::model::SCOPE_POSTINGS)
            .collect();
        self.sim.add_oauth_client(client_id, client_secret, &scopes);
    }

    fn expire_access_tokens(&self) {
        self.sim.expire_access_tokens();
    }

    fn storm(&self, on: bool) {
        self.sim.set_faults(if on {
            lever_sim::Faults {
                seed: 3,
                error_5xx_rate: 0.2,
                burst_429: Some(lever_sim::Burst429 {
                    probability: 0.25,
                    length: 2,
                }),
                ..lever_sim::Faults::default()
            }
        } else {
            lever_sim::Faults::default()
        });
    }

    fn server_errors(&self) -> u64 {
        let s = self.sim.stats();
        s.status_total(500) + s.status_total(502) + s.status_total(503)
    }

    fn audience(&self) -> Option<&'static str> {
        Some(lever_sim::AUDIENCE)
    }

    fn redirect_uri(&self) -> Option<&'static str> {
        Some("https://eds.example/oauth/lever/callback")
    }

    fn token_url(&self) -> String {
        self.sim.token_url()
    }

    fn pushed(&self) -> Vec<Value> {
        self.scenario.pushed.to_vec()
    }

    fn expected_keys(&self) -> Vec<(String, String)> {
        self.scenario
            .manifest
            .expected_views
            .keys()
            .cloned()
            .collect()
    }

    fn differences(
        &self,
        entity: &str,
        id: &str,
        view: Option<&Map<String, Value>>,
    ) -> Vec<String> {
        self.scenario
            .manifest
            .check(entity, id, view)
            .into_iter()
            .map(|d| {
                format!(
                    "{entity}/{id}: {} expected {:?} got {:?}",
                    d.field, d.expected, d.actual
                )
            })
            .collect()
    }

    fn candidate_ids(&self) -> Vec<String> {
        // Candidacies without an injected defect on them or their application: a
        // change re-stamps the application too (it orders by its opportunity's
        // `updatedAt`), which would let the ATS's value beat a newer pushed one.
        let t = &self.scenario.truth;
        let mut flagged = std::collections::HashSet::new();
        for d in &self.scenario.manifest.defects {
            flagged.insert(d.id.clone());
            if let Some(a) = t.application(&d.id) {
                flagged.insert(a.opportunity_id.clone());
            }
        }
        self.sim
            .mutate()
            .opportunity_ids()
            .into_iter()
            .filter(|id| !flagged.contains(id))
            .collect()
    }

    fn change_candidate(&self, id: &str) -> anyhow::Result<(&'static str, Value)> {
        let tags = json!(["Conformance", id]);
        self.sim
            .mutate()
            .update(id, "tags", tags.clone())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(("tags", tags))
    }

    fn restamped_by_change(&self, id: &str) -> u64 {
        let apps = self
            .scenario
            .truth
            .opportunity(id)
            .map_or(0, |o| o.applications.len() as u64);
        1 + apps
    }

    fn delete_candidate(&self, id: &str) -> anyhow::Result<()> {
        self.sim
            .mutate()
            .delete(id, None)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn api_requests(&self) -> u64 {
        let s = self.sim.stats();
        s.total_requests - s.token_requests
    }

    fn token_requests(&self) -> u64 {
        self.sim.stats().token_requests
    }

    fn rate_limited(&self) -> u64 {
        self.sim.stats().rate_limited
    }

    fn reset_stats(&self) {
        self.sim.reset_stats();
    }

    fn revoke_grant(&self) {
        self.sim.revoke_refresh_tokens(CLIENT_ID);
    }

    fn set_clock(&self, to: DateTime<Utc>) {
        self.sim.clock().set(to);
    }

    fn limit_rate(&self) {
        // Lever's documented bucket: 10 requests/s, bursts to 20, on wall time.
        let mut cfg = self.sim.config();
        cfg.rate_per_sec = 10.0;
        cfg.rate_burst = 20;
        cfg.rate_clock = lever_sim::RateClock::Real;
        self.sim.set_config(cfg);
    }
}

/// The scenario time the fixtures use: three hours before now, so that the scenario's
/// own changes are older than an incremental run's lookback (an unchanged run finds
/// nothing), and the pull's lag covers everything it holds.
pub fn scenario_now() -> DateTime<Utc> {
    Utc::now() - Duration::hours(3)
}
