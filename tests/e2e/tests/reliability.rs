//! The reliability and security suite (issue J): the guarantees of product.md §1 and §7
//! under crashes, fault storms, races, poison messages, tenant-crossing input and SSRF,
//! with the secret-leak harness (`eds_e2e::secrets`) run at the end of each test.
//!
//! Sizes are CI-sized by default; `EDS_LONG_TESTS=1` runs the long variants (more crash
//! hits, seeds and storm records). See docs/reliability.md for the figures.

mod common {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    use async_trait::async_trait;
    use aws_lambda_events::event::sqs::SqsEvent;
    use aws_sdk_dynamodb::types::AttributeValue;
    use chrono::Utc;
    use eds_e2e::Stack;
    use eds_local::queue::{delete_succeeded, receive_event};
    use eds_shared::connection::{ConnectError, Connection, ConnectorFactory};
    use eds_shared::connector::greenhouse::{GreenhouseConfig, GreenhouseV3};
    use eds_shared::connector::{
        AtsConnector, ConnectorError, Cursor, IdPage, Page, RateLimiter, RequestStats, Window,
    };
    use eds_shared::crash::{self, Crashed, Plan};
    use eds_shared::credentials::{TokenCache, TokenEndpoint, TokenEndpointConfig, TokenGrant};
    use eds_shared::domain::ids::TenantId;
    use eds_shared::pipeline::puller::{Puller, PullerSettings};
    use eds_shared::tenants::{StreamName, TenantConfig};
    use greenhouse_sim::{ALL_SCOPES, Scenario, ScenarioSpec, SimConfig, SimHandle, Simulator};
    use secrecy::{ExposeSecret, SecretString};
    use serde_json::json;

    pub const CLIENT_ID: &str = "reliability-client";
    /// Long enough for the leak harness to search for it.
    pub const CLIENT_SECRET: &str = "rel-client-secret-5d1f0c2a";

    pub fn long_tests() -> bool {
        std::env::var("EDS_LONG_TESTS").is_ok_and(|v| v == "1")
    }

    pub fn uniq() -> String {
        uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
    }

    pub fn tenant(prefix: &str) -> TenantId {
        TenantId::parse(format!("{prefix}-{}", uniq())).unwrap()
    }

    pub fn scenario(seed: u64, candidates: usize) -> Scenario {
        Scenario::generate(&ScenarioSpec {
            seed,
            candidates,
            jobs: 4,
            now: Utc::now() - chrono::Duration::minutes(10),
            ..ScenarioSpec::default()
        })
    }

    pub async fn simulator(scenario: &Scenario, cfg: SimConfig) -> SimHandle {
        let sim = Simulator::start(cfg, scenario.truth.clone()).await.unwrap();
        sim.add_oauth_client(CLIENT_ID, CLIENT_SECRET, ALL_SCOPES);
        sim
    }

    /// A tenant with client credentials (no rotating token).
    pub async fn client_credentials_tenant(
        stack: &Stack,
        sim: &SimHandle,
        tenant: &TenantId,
    ) -> TenantConfig {
        stack
            .enable_greenhouse_tenant(
                tenant.as_str(),
                sim,
                json!({"kind": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
            )
            .await
            .unwrap()
    }

    /// A tenant authorised by the authorization-code flow: its refresh token rotates on
    /// every refresh (the simulator kills a reused one).
    pub async fn authorization_code_tenant(
        stack: &Stack,
        sim: &SimHandle,
        tenant: &TenantId,
    ) -> TenantConfig {
        let code = sim.issue_authorization_code(CLIENT_ID, 7);
        let endpoint =
            TokenEndpoint::new(TokenEndpointConfig::new(sim.token_url().parse().unwrap())).unwrap();
        let issued = endpoint
            .request(
                CLIENT_ID,
                &CLIENT_SECRET.to_string().into(),
                TokenGrant::AuthorizationCode {
                    code: &code.into(),
                    redirect_uri: None,
                },
                &AtomicU64::new(0),
                sim.clock().now(),
            )
            .await
            .unwrap();
        let refresh = issued.refresh_token.unwrap();
        stack
            .enable_greenhouse_tenant(
                tenant.as_str(),
                sim,
                json!({"kind": "authorization_code", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                       "refresh_token": refresh.expose_secret()}),
            )
            .await
            .unwrap()
    }

    /// The deployed factory with a smaller Greenhouse page, so that a small scenario
    /// still has many pages (and so many checkpoints and crash points).
    pub struct SmallPages {
        pub inner: Arc<dyn ConnectorFactory>,
        pub per_page: u32,
    }

    #[async_trait]
    impl ConnectorFactory for SmallPages {
        async fn connect(&self, cfg: &TenantConfig) -> Result<Connection, ConnectError> {
            let mut conn = self.inner.connect(cfg).await?;
            let base = url::Url::parse(&cfg.api_base_url)
                .map_err(|_| ConnectError::Config("api_base_url".into()))?;
            let mut gh = GreenhouseConfig::new(base).with_fast_retries();
            gh.per_page = self.per_page;
            conn.ats = Arc::new(
                GreenhouseV3::new(
                    gh,
                    conn.tokens.clone(),
                    RateLimiter::shared(cfg.tenant_id.as_str()),
                )
                .map_err(|e| ConnectError::Config(e.to_string()))?,
            );
            Ok(conn)
        }
    }

    /// Rewrites every signed attachment link the ATS returns (the SSRF tests).
    pub struct RewriteLinks {
        pub inner: Arc<dyn ConnectorFactory>,
        pub rewrite: fn(&str) -> String,
    }

    struct RewritingConnector {
        inner: Arc<dyn AtsConnector>,
        rewrite: fn(&str) -> String,
    }

    #[async_trait]
    impl AtsConnector for RewritingConnector {
        fn streams(&self) -> &'static [StreamName] {
            self.inner.streams()
        }

        async fn list_changed(
            &self,
            stream: StreamName,
            window: &Window,
            cursor: Option<&Cursor>,
            deadline: tokio::time::Instant,
        ) -> Result<Page, ConnectorError> {
            let mut page = self
                .inner
                .list_changed(stream, window, cursor, deadline)
                .await?;
            for a in &mut page.attachment_downloads {
                a.url = SecretString::from((self.rewrite)(a.url.expose_secret()));
            }
            Ok(page)
        }

        async fn list_ids(
            &self,
            stream: StreamName,
            cursor: Option<&Cursor>,
            deadline: tokio::time::Instant,
        ) -> Result<IdPage, ConnectorError> {
            self.inner.list_ids(stream, cursor, deadline).await
        }

        fn metrics(&self) -> RequestStats {
            self.inner.metrics()
        }
    }

    #[async_trait]
    impl ConnectorFactory for RewriteLinks {
        async fn connect(&self, cfg: &TenantConfig) -> Result<Connection, ConnectError> {
            let mut conn = self.inner.connect(cfg).await?;
            conn.ats = Arc::new(RewritingConnector {
                inner: conn.ats.clone(),
                rewrite: self.rewrite,
            });
            Ok(conn)
        }
    }

    /// The puller as deployed (loopback storage allowed for the simulator), with small
    /// pages and no deadline margin (a short invocation budget then forces
    /// continuations).
    pub fn puller(stack: &Stack, per_page: u32) -> Puller {
        let mut p = stack
            .puller(PullerSettings {
                margin: Duration::from_millis(0),
                ..PullerSettings::default()
            })
            .unwrap();
        p.factory = Arc::new(SmallPages {
            inner: p.factory.clone(),
            per_page,
        });
        p
    }

    /// What the platform does after an invocation died: its leases (pull lease, token
    /// lock, push leases) run out — fast-forwarded here by removing them — and the
    /// container's in-memory token cache is gone.
    pub async fn after_death(stack: &Stack, tenant: &TenantId) {
        let db = &stack.aws.dynamodb;
        let table = &stack.config.tenants_table;
        let pk = format!("T#{tenant}");
        let _ = db
            .update_item()
            .table_name(table)
            .key("pk", AttributeValue::S(pk.clone()))
            .key("sk", AttributeValue::S("CONFIG".into()))
            .update_expression("REMOVE lease_owner, lease_epoch, lease_until")
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        let items = db
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
            .send()
            .await
            .unwrap();
        for item in items.items() {
            let sk = item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            if sk == "TOKEN_LOCK" || sk.starts_with("LEASE#") {
                db.delete_item()
                    .table_name(table)
                    .key("pk", AttributeValue::S(pk.clone()))
                    .key("sk", AttributeValue::S(sk))
                    .send()
                    .await
                    .unwrap();
            }
        }
        TokenCache::evict(tenant);
    }

    pub async fn make_visible(stack: &Stack, queue_url: &str, event: &SqsEvent) {
        for m in &event.records {
            if let Some(h) = &m.receipt_handle {
                let _ = stack
                    .aws
                    .sqs
                    .change_message_visibility()
                    .queue_url(queue_url)
                    .receipt_handle(h)
                    .visibility_timeout(0)
                    .send()
                    .await;
            }
        }
    }

    #[derive(Debug, Default)]
    pub struct Driven {
        pub invocations: usize,
        pub crashes: Vec<Crashed>,
        pub retried: usize,
        pub versions_written: u64,
    }

    /// The local event source mapping with deaths: receive one message at a time from
    /// the pull queue, run the puller under `plan`; a crashed invocation leaves its
    /// message (made visible again at once: its visibility timeout "passed") and its
    /// leases (expired); a failed one is retried at once too (its `Retry` delay passed).
    pub async fn drive(
        stack: &Stack,
        puller: &Puller,
        plan: &Arc<Plan>,
        tenant: &TenantId,
        budget: Duration,
    ) -> Driven {
        let url = stack.config.pull_queue_url.clone();
        let mut d = Driven::default();
        let mut empty = 0;
        while d.invocations < 600 {
            let event = receive_event(&stack.aws.sqs, &url, 1, 0).await.unwrap();
            if event.records.is_empty() {
                empty += 1;
                if empty > 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            empty = 0;
            d.invocations += 1;
            let invocation_budget = eds_shared::invocation::Invocation::after(budget);
            match crash::run(
                plan.clone(),
                puller.handle(event.clone(), invocation_budget),
            )
            .await
            {
                Ok((response, report)) => {
                    d.versions_written += report.versions_written;
                    if !response.batch_item_failures.is_empty() {
                        d.retried += 1;
                        make_visible(stack, &url, &event).await;
                    }
                    delete_succeeded(&stack.aws.sqs, &url, &event, &response)
                        .await
                        .unwrap();
                }
                Err(crash) => {
                    d.crashes.push(crash);
                    make_visible(stack, &url, &event).await;
                    after_death(stack, tenant).await;
                }
            }
        }
        d
    }

    /// Every item of the tenant's records: `{entity}#{id}|{sk}` -> (content hash,
    /// tombstone, version). Times and run ids are not part of it.
    pub async fn dump(stack: &Stack, tenant: &TenantId) -> BTreeMap<String, String> {
        let prefix = format!("R#{tenant}#");
        let mut out = BTreeMap::new();
        let mut start = None;
        loop {
            let page = stack
                .aws
                .dynamodb
                .scan()
                .table_name(&stack.config.records_table)
                .filter_expression("begins_with(pk, :p)")
                .expression_attribute_values(":p", AttributeValue::S(prefix.clone()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            for item in page.items() {
                let s = |k: &str| item.get(k).map(|v| format!("{v:?}")).unwrap_or_default();
                let pk = item
                    .get("pk")
                    .and_then(|v| v.as_s().ok())
                    .map(|p| p.trim_start_matches(&prefix).to_string())
                    .unwrap_or_default();
                let sk = item
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                // The view, with the tenant's own id (in attachment keys) normalised:
                // tenants with the same ATS data compare equal.
                let view = item
                    .get("view")
                    .and_then(|v| v.as_s().ok())
                    .map(|v| v.replace(tenant.as_str(), "{tenant}"))
                    .unwrap_or_default();
                out.insert(
                    format!("{pk}|{sk}"),
                    format!("{} {} {view}", s("tombstone"), s("version")),
                );
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return out;
            }
        }
    }

    /// The keys whose items differ between two dumps (missing, extra or changed).
    pub fn differing(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
        a.keys()
            .chain(b.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .take(5)
            .cloned()
            .collect()
    }

    /// Heads that do not point at their newest version item (an orphan left behind).
    pub fn orphans(dump: &BTreeMap<String, String>) -> Vec<String> {
        let mut newest: BTreeMap<&str, &str> = BTreeMap::new();
        let mut heads: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in dump {
            let Some((record, sk)) = k.split_once('|') else {
                continue;
            };
            if sk == "HEAD" {
                heads.insert(record, v.as_str());
            } else {
                newest.insert(record, v.as_str());
            }
        }
        newest
            .iter()
            .filter(|(r, v)| heads.get(*r) != Some(*v))
            .map(|(r, _)| r.to_string())
            .collect()
    }

    /// The tenant's S3 keys below `tenants/{tenant}/`.
    pub async fn objects(stack: &Stack, tenant: &TenantId) -> BTreeSet<String> {
        let prefix = format!("tenants/{tenant}/");
        let mut out = BTreeSet::new();
        let mut token = None;
        loop {
            let page = stack
                .aws
                .s3
                .list_objects_v2()
                .bucket(&stack.config.attachments_bucket)
                .prefix(&prefix)
                .set_continuation_token(token)
                .send()
                .await
                .unwrap();
            for o in page.contents() {
                if let Some(k) = o.key() {
                    out.insert(k.trim_start_matches(&prefix).to_string());
                }
            }
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return out;
            }
        }
    }

    pub async fn queue_depth(stack: &Stack, url: &str) -> u64 {
        eds_local::queue::queue_depth(&stack.aws.sqs, url)
            .await
            .unwrap()
    }

    pub async fn tenant_items(stack: &Stack, pk: String) -> usize {
        stack
            .aws
            .dynamodb
            .query()
            .table_name(&stack.config.tenants_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk))
            .send()
            .await
            .unwrap()
            .count() as usize
    }

    /// A tiny deterministic generator (the seeds are the interleavings' names).
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }
}

// ------------------------------------------------------------------ crashes

mod crashes {
    use eds_shared::tenants::{Erasure, RunLog, TenantLifecycle};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::Utc;
    use eds_e2e::Invoke;
    use eds_e2e::Stack;
    use eds_shared::crash::Plan;
    use eds_shared::domain::ids::TenantId;
    use eds_shared::domain::ids::{AtsId, EntityKind, RecordKey};
    use eds_shared::domain::merge::ViewMode;
    use eds_shared::invocation::Invocation;
    use eds_shared::pipeline::delete::Deleter;
    use eds_shared::pipeline::disable::{Deadline, DisableOutcome, LifecycleOptions};
    use eds_shared::pipeline::push::PushIngest;
    use eds_shared::store::RecordRead;
    use eds_shared::tenants::{SyncStatus, TenantState};
    use greenhouse_sim::SimConfig;
    use serde_json::{Value, json};

    use super::common::*;

    /// The one crash whose outcome cannot be "finished by the next delivery": the ATS
    /// rotated the refresh token and the process died before storing the new one. The
    /// old token is dead (single use) and the new one is gone with the process; the
    /// tenant must end `needs_reauth`, reported, with nothing lost or half-written.
    const LOSES_THE_GRANT: &str = "token.after_issue_before_persist";

    const PER_PAGE: u32 = 7;
    const BUDGET: Duration = Duration::from_millis(1500);

    struct Outcome {
        dump: BTreeMap<String, String>,
        objects: BTreeSet<String>,
        hits: BTreeMap<String, u32>,
        crashes: usize,
        state: TenantState,
    }

    /// A fully synced tenant for a disable or deletion crash: one the sync matrix left, else
    /// a fresh crash-free sync (how many the matrix leaves depends on how many sync points
    /// the scenario reaches, so every disable and deletion point still gets its tenant).
    async fn synced_tenant(
        stack: &Stack,
        sim: &greenhouse_sim::SimHandle,
        synced: &mut Vec<TenantId>,
    ) -> TenantId {
        match synced.pop() {
            Some(t) => t,
            None => sync_under(stack, sim, Plan::record()).await.0,
        }
    }

    async fn sync_under(
        stack: &Stack,
        sim: &greenhouse_sim::SimHandle,
        plan: Arc<Plan>,
    ) -> (TenantId, Outcome) {
        let tenant = tenant("cr");
        authorization_code_tenant(stack, sim, &tenant).await;
        let puller = puller(stack, PER_PAGE);
        stack.scheduler().run(Utc::now()).await.unwrap();
        let driven = drive(stack, &puller, &plan, &tenant, BUDGET).await;
        // A later run (the next scheduled sync) must find nothing left to repair.
        let later = drive(stack, &puller, &Plan::record(), &tenant, BUDGET).await;
        assert_eq!(later.invocations, 0, "work left in the queue");
        let state = stack
            .registry()
            .require(&tenant)
            .await
            .unwrap()
            .config
            .state;
        let out = Outcome {
            dump: dump(stack, &tenant).await,
            objects: objects(stack, &tenant).await,
            hits: plan.hits(),
            crashes: driven.crashes.len(),
            state,
        };
        (tenant, out)
    }

    fn options() -> LifecycleOptions {
        LifecycleOptions {
            page_size: 5,
            poll_every: Duration::from_millis(20),
            margin: Duration::from_millis(300),
            concurrency: 4,
        }
    }

    fn deleter(stack: &Stack) -> Deleter {
        eds_shared::wiring::delete::deleter_on(&stack.aws, &stack.config).with_options(options())
    }

    fn deletion_event(tenant: &TenantId, request_id: &str) -> Value {
        json!({
            "version": "0", "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "tenant.deletion_requested", "source": "eds.settings",
            "account": "123456789012", "time": "2026-03-01T12:00:00Z", "region": "us-east-1",
            "resources": [], "detail": {"tenant_id": tenant.as_str(), "request_id": request_id},
        })
    }

    /// Runs a deletion under `plan`; a crash or an error is retried (EventBridge retries
    /// the event; the continuation message would be redelivered) until it completes.
    async fn delete_under(stack: &Stack, tenant: &TenantId, plan: Arc<Plan>) -> usize {
        let request = format!("req-{}", uniq());
        let mut crashes = 0;
        for attempt in 0..20 {
            let run = eds_shared::crash::run(
                plan.clone(),
                deleter(stack).invoke(
                    deletion_event(tenant, &request),
                    Invocation::after(Duration::from_secs(120)),
                ),
            )
            .await;
            match run {
                Ok(Ok(report)) => {
                    let outcome = report
                        .get("outcome")
                        .cloned()
                        .unwrap_or(Value::Null)
                        .to_string();
                    assert!(
                        outcome.contains("completed") || outcome.contains("already_done"),
                        "attempt {attempt}: {report}"
                    );
                    break;
                }
                Ok(Err(e)) => {
                    eds_e2e::secrets::assert_text_clean("deletion error", &e.to_string());
                }
                Err(_) => {
                    crashes += 1;
                    after_death(stack, tenant).await;
                }
            }
        }
        // Whatever crashed: the tenant is gone, completely, with its receipt.
        assert!(dump(stack, tenant).await.is_empty(), "records left");
        assert!(objects(stack, tenant).await.is_empty(), "objects left");
        assert_eq!(
            tenant_items(stack, format!("T#{tenant}")).await,
            0,
            "tenant items left"
        );
        assert!(
            stack
                .registry()
                .receipt(tenant, &request)
                .await
                .unwrap()
                .is_some(),
            "receipt"
        );
        let secret = stack
            .aws
            .secrets
            .describe_secret()
            .secret_id(format!("{}{tenant}", stack.config.secret_prefix))
            .send()
            .await;
        assert!(
            secret.is_err() || secret.is_ok_and(|d| d.deleted_date().is_some()),
            "secret left"
        );
        crashes
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_crash_at_any_point_of_a_sync_or_a_deletion_loses_nothing_and_duplicates_nothing() {
        let stack = Stack::new().await.unwrap();
        let scen = scenario(41, if long_tests() { 60 } else { 10 });
        let sim = simulator(&scen, SimConfig::default()).await;

        // The crash-free run: the reference state, and the points a sync passes.
        let (reference_tenant, reference) = sync_under(&stack, &sim, Plan::record()).await;
        assert!(!reference.dump.is_empty());
        assert!(
            !reference.objects.is_empty(),
            "the scenario has attachments"
        );
        assert!(orphans(&reference.dump).is_empty());
        let mut targets: Vec<(String, u32)> = Vec::new();
        for (point, hits) in &reference.hits {
            targets.push((point.clone(), 1));
            if long_tests() && *hits > 2 {
                targets.push((point.clone(), hits / 2 + 1));
                targets.push((point.clone(), *hits));
            }
        }

        if !long_tests() {
            // CI size: an even spread of at most 8 sync points; EDS_LONG_TESTS=1 crashes
            // every point (and the middle and last hit of each).
            let step = targets.len().div_ceil(8).max(1);
            targets = targets.into_iter().step_by(step).collect();
        }
        let mut crashed_points = BTreeSet::new();
        let mut synced = Vec::new();
        for (point, nth) in &targets {
            let plan = Plan::crash_at(point, *nth);
            let (tenant, out) = sync_under(&stack, &sim, plan.clone()).await;
            let Some(crash) = plan.fired() else {
                // Timing-dependent points (continuations) may not recur: not counted.
                eprintln!("{point}#{nth}: not reached in this run");
                continue;
            };
            assert!(out.crashes >= 1);
            crashed_points.insert(crash.point.clone());
            if point == LOSES_THE_GRANT {
                assert_eq!(out.state, TenantState::NeedsReauth, "{point}");
                for st in stack.registry().streams(&tenant).await.unwrap() {
                    assert_eq!(st.status, SyncStatus::NeedsReauth, "{point}");
                    assert!(st.reason.is_some());
                }
                assert!(orphans(&out.dump).is_empty(), "{point}");
                continue;
            }
            assert_eq!(out.state, TenantState::Enabled, "{point}#{nth}");
            let missing: Vec<_> = reference
                .dump
                .keys()
                .filter(|k| !out.dump.contains_key(*k))
                .take(5)
                .collect();
            let extra: Vec<_> = out
                .dump
                .keys()
                .filter(|k| !reference.dump.contains_key(*k))
                .take(5)
                .collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{point}#{nth}: lost {missing:?}, extra (duplicate or orphan) {extra:?}"
            );
            let changed = differing(&out.dump, &reference.dump);
            assert!(
                changed.is_empty(),
                "{point}#{nth}: contents differ: {changed:?}"
            );
            assert!(orphans(&out.dump).is_empty(), "{point}#{nth}");
            assert_eq!(out.objects, reference.objects, "{point}#{nth}: S3 listing");
            synced.push(tenant);
        }

        // Disable: a crash after a sweep page, redelivered, ends like a crash-free disable
        // (every view push-only: this scenario has no pushed data, so every view is empty).
        let mut disabled = Vec::new();
        for crash_at in [None, Some("disable.after_sweep_page")] {
            let tenant = synced_tenant(&stack, &sim, &mut synced).await;
            let plan = match crash_at {
                Some(p) => Plan::crash_at(p, 1),
                None => Plan::record(),
            };
            let disabler = eds_shared::wiring::disable::disabler_on(&stack.aws, &stack.config)
                .with_options(options());
            let mut done = false;
            for _ in 0..5 {
                let run = eds_shared::crash::run(
                    plan.clone(),
                    disabler.disable(
                        &tenant,
                        "crash-test",
                        Deadline::after(Duration::from_secs(120)),
                    ),
                )
                .await;
                match run {
                    Ok(report) => {
                        assert_eq!(report.unwrap().outcome, DisableOutcome::Completed);
                        done = true;
                        break;
                    }
                    Err(_) => after_death(&stack, &tenant).await,
                }
            }
            assert!(done);
            if let Some(c) = plan.fired() {
                crashed_points.insert(c.point);
            }
            let store = stack.store();
            for k in dump(&stack, &tenant)
                .await
                .keys()
                .filter(|k| k.ends_with("|HEAD"))
            {
                let (record, _) = k.split_once('|').unwrap();
                let (entity, id) = record.split_once('#').unwrap();
                let key = RecordKey::new(
                    tenant.clone(),
                    EntityKind::parse(entity).unwrap(),
                    AtsId::parse(id).unwrap(),
                );
                let head = store.get(&key).await.unwrap().unwrap();
                assert_eq!(head.state.mode, ViewMode::PushOnly, "{crash_at:?} {k}");
                assert!(
                    head.view.fields.is_empty(),
                    "{crash_at:?} {k}: a pulled value is visible"
                );
            }
            disabled.push(dump(&stack, &tenant).await);
        }
        if let [a, b] = disabled.as_slice() {
            let changed = differing(a, b);
            assert!(
                changed.is_empty(),
                "disable with a crash differs: {changed:?}"
            );
        }

        // Deletion: discover its points on the reference tenant, then crash each one
        // on one of the tenants the sync matrix left fully synced.
        let plan = Plan::record();
        assert_eq!(
            delete_under(&stack, &reference_tenant, plan.clone()).await,
            0
        );
        let delete_points: Vec<String> = plan.hits().keys().cloned().collect();
        assert!(!delete_points.is_empty());
        let mut deletion_crashes = 0;
        for point in &delete_points {
            let tenant = synced_tenant(&stack, &sim, &mut synced).await;
            let plan = Plan::crash_at(point, 1);
            deletion_crashes += delete_under(&stack, &tenant, plan.clone()).await;
            if let Some(c) = plan.fired() {
                crashed_points.insert(c.point);
            }
        }
        eprintln!(
            "crash matrix: {} targets, {} distinct points crashed ({} deletion crashes): {:?}",
            targets.len(),
            crashed_points.len(),
            deletion_crashes,
            crashed_points
        );
        assert!(
            crashed_points.len() >= 15,
            "only {} points crashed: {crashed_points:?}",
            crashed_points.len()
        );
        eds_e2e::secrets::assert_no_secret_leaked(&stack).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_push_that_dies_after_writing_is_finished_by_its_redelivery() {
        let stack = Stack::new().await.unwrap();
        let scen = scenario(3, 2);
        let sim = simulator(&scen, SimConfig::default()).await;
        let body = |t: &TenantId| {
            json!({"tenant": t.as_str(), "records": (0..12).map(|i| json!({
                "entity": "candidate", "id": format!("p{i}"), "op": "upsert",
                "updated_at": "2026-03-01T10:00:00.000Z",
                "fields": {"first_name": format!("P{i}"), "title": "Pushed"}
            })).collect::<Vec<_>>()})
            .to_string()
        };
        let ingest = PushIngest::new(stack.registry(), stack.store(), stack.push_queue());
        let reference = tenant("pr");
        client_credentials_tenant(&stack, &sim, &reference).await;
        let rec = Plan::record();
        eds_shared::crash::run(
            rec.clone(),
            ingest.handle_body(&body(&reference), "m0", Utc::now()),
        )
        .await
        .unwrap()
        .unwrap();
        let want = dump(&stack, &reference).await;
        let mut crashed = 0;
        for point in rec.hits().keys() {
            let t = tenant("pc");
            client_credentials_tenant(&stack, &sim, &t).await;
            let plan = Plan::crash_at(point, 1);
            let first = eds_shared::crash::run(
                plan.clone(),
                ingest.handle_body(&body(&t), "m1", Utc::now()),
            )
            .await;
            assert!(first.is_err(), "{point} did not crash");
            crashed += 1;
            after_death(&stack, &t).await;
            ingest
                .handle_body(&body(&t), "m1", Utc::now())
                .await
                .unwrap();
            let got = dump(&stack, &t).await;
            assert_eq!(got, want, "{point}");
            assert!(orphans(&got).is_empty());
        }
        assert!(crashed >= 2, "{:?}", rec.hits());
        eds_e2e::secrets::assert_no_secret_leaked(&stack).await;
    }
}

// ------------------------------------------------------------------ fault storm

mod storm {
    use eds_shared::tenants::{RunLog, TenantLifecycle};
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::Utc;
    use eds_e2e::Stack;
    use eds_shared::crash::Plan;
    use eds_shared::credentials::{CredentialsConfig, SecretName, TokenCache, TokenManager};
    use eds_shared::domain::ids::{AtsId, EntityKind, RecordKey};
    use eds_shared::store::RecordRead;
    use eds_shared::tenants::{StreamName, SyncStatus, TenantState};
    use greenhouse_sim::{ALL_SCOPES, Burst429, DefectKind, Faults, SimConfig};

    use super::common::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_sync_through_a_fault_storm_ends_with_the_ats_truth() {
        let stack = Stack::new().await.unwrap();
        let scen = scenario(77, if long_tests() { 400 } else { 60 });
        let sim = simulator(&scen, SimConfig::default()).await;
        sim.set_faults(Faults {
            seed: 5,
            error_5xx_rate: 0.2,
            latency: Some((Duration::from_millis(1), Duration::from_millis(60))),
            burst_429: Some(Burst429 {
                probability: 0.03,
                length: 3,
                retry_after_secs: 1,
            }),
            malformed_body_rate: 0.0,
            cursor_expiry_rate: 0.05,
        });
        let t = tenant("storm");
        authorization_code_tenant(&stack, &sim, &t).await;
        let puller = puller(&stack, 10);
        stack.scheduler().run(Utc::now()).await.unwrap();

        // The refresh race: while the puller works, two other "containers" (their own
        // token caches) force refreshes of the same rotating grant, and the simulator
        // expires every access token and every cursor twice.
        let services = CredentialsConfig {
            secret_prefix: eds_e2e::SECRET_PREFIX.into(),
            tenants_table: stack.config.tenants_table.clone(),
            token_url: sim.token_url().parse().unwrap(),
        }
        .services(&stack.aws.sdk)
        .unwrap();
        let name = SecretName::for_tenant(eds_e2e::SECRET_PREFIX, &t);
        let racers: Vec<Arc<TokenManager>> = (0..2)
            .map(|_| {
                Arc::new(TokenManager::with_cache(
                    name.clone(),
                    services.clone(),
                    TokenCache::new(),
                ))
            })
            .collect();
        let plan = Plan::record();
        let work = drive(&stack, &puller, &plan, &t, Duration::from_secs(30));
        let chaos = async {
            for round in 0..2 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                sim.expire_access_tokens();
                sim.expire_cursors();
                let (a, b) = tokio::join!(racers[0].refresh_now(), racers[1].refresh_now());
                assert!(
                    a.is_ok() && b.is_ok(),
                    "round {round}: {:?} {:?}",
                    a.as_ref().err(),
                    b.as_ref().err()
                );
            }
        };
        let (driven, ()) = tokio::join!(work, chaos);
        // Anything the storm made fail is retried by the next scheduled run.
        sim.set_faults(Faults::default());
        let after = drive(&stack, &puller, &plan, &t, Duration::from_secs(30)).await;
        stack
            .scheduler()
            .run(Utc::now() + chrono::Duration::seconds(901))
            .await
            .unwrap();
        let last = drive(&stack, &puller, &plan, &t, Duration::from_secs(30)).await;
        eprintln!(
            "storm: {} invocations ({} retried), then {} + {}; sim stats {:?}",
            driven.invocations,
            driven.retried,
            after.invocations,
            last.invocations,
            sim.stats()
        );
        assert!(
            sim.stats().status_total(500)
                + sim.stats().status_total(502)
                + sim.stats().status_total(503)
                > 0
        );
        let rec = stack.registry().require(&t).await.unwrap();
        assert_eq!(
            rec.config.state,
            TenantState::Enabled,
            "{:?}",
            rec.config.state_reason
        );
        for st in stack.registry().streams(&t).await.unwrap() {
            assert_eq!(
                st.status,
                SyncStatus::Done,
                "{:?}: {:?}",
                st.stream,
                st.reason
            );
        }
        let dlq = stack.local.refs["PullDeadLetterQueue"].clone();
        assert_eq!(
            queue_depth(&stack, &dlq).await,
            0,
            "a job was dead-lettered"
        );

        // Views equal the manifest for the pulled fields.
        let mut allowed = BTreeSet::new();
        for d in &scen.manifest.defects {
            if d.kind == DefectKind::PushNewer {
                allowed.insert((
                    d.entity.clone(),
                    d.id.clone(),
                    d.field.clone().unwrap_or_default(),
                ));
            }
        }
        let store = stack.store();
        let mut diffs = Vec::new();
        for (entity, id) in scen.manifest.expected_views.keys() {
            let key = RecordKey::new(
                t.clone(),
                EntityKind::parse(entity).unwrap(),
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
            for d in scen.manifest.check(entity, id, view.as_ref()) {
                if !allowed.contains(&(entity.clone(), id.clone(), d.field.clone())) {
                    diffs.push(format!("{entity}/{id}: {}", d.field));
                }
            }
        }
        assert!(
            diffs.is_empty(),
            "{} differences: {:?}",
            diffs.len(),
            &diffs[..diffs.len().min(5)]
        );
        eds_e2e::secrets::assert_no_secret_leaked(&stack).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_403_on_one_stream_is_reported_and_the_other_streams_complete() {
        let stack = Stack::new().await.unwrap();
        let scen = scenario(8, 10);
        let sim = simulator(&scen, SimConfig::default()).await;
        let scopes: Vec<&str> = ALL_SCOPES
            .iter()
            .copied()
            .filter(|s| *s != "harvest:applications:list")
            .collect();
        sim.add_oauth_client("no-apps-client", "no-apps-secret-81bd", &scopes);
        let t = tenant("f403");
        stack
            .enable_greenhouse_tenant(
                t.as_str(),
                &sim,
                serde_json::json!({"kind": "client_credentials", "client_id": "no-apps-client",
                                   "client_secret": "no-apps-secret-81bd"}),
            )
            .await
            .unwrap();
        let puller = puller(&stack, 50);
        stack.sync(&puller, Utc::now()).await.unwrap();
        let streams = stack.registry().streams(&t).await.unwrap();
        let apps = streams
            .iter()
            .find(|s| s.stream == StreamName::Applications)
            .expect("applications stream state");
        assert_eq!(apps.status, SyncStatus::Failed);
        let reason = apps.reason.clone().unwrap_or_default();
        assert!(reason.contains("applications"), "{reason}");
        assert!(reason.contains("forbidden (403)"), "{reason}");
        // The failed call's request is counted (it was 0: a failed call reported nothing).
        let runs = stack.registry().runs(&t, 50).await.unwrap();
        let failed = runs
            .iter()
            .find(|r| r.stream == StreamName::Applications && r.outcome.starts_with("failed"))
            .expect("the applications run");
        assert_eq!(failed.counts.requests, 1, "{failed:?}");
        for st in streams
            .iter()
            .filter(|s| s.stream != StreamName::Applications)
        {
            assert_eq!(
                st.status,
                SyncStatus::Done,
                "{:?}: {:?}",
                st.stream,
                st.reason
            );
        }
        assert_eq!(
            stack.registry().require(&t).await.unwrap().config.state,
            TenantState::Enabled
        );
        eds_e2e::secrets::assert_no_secret_leaked(&stack).await;
    }

    /// P item 3, after progress: a rate limit that outlasts the invocation at the end of
    /// each of many invocations. Each invocation commits a page and continues in a new
    /// message that waits for the limit; the received message is not retried, so the run
    /// completes instead of exhausting its receive count (5) into the dead-letter queue.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rate_limit_at_the_end_of_every_invocation_continues_and_never_dead_letters() {
        let stack = Stack::new().await.unwrap();
        let scen = scenario(12, 30);
        // One request per credential per second: after one page, the next waits ~1 s.
        let sim = simulator(
            &scen,
            SimConfig {
                rate_limit_v3: 1,
                rate_window_v3: Duration::from_secs(1),
                ..SimConfig::default()
            },
        )
        .await;
        let t = tenant("limited");
        client_credentials_tenant(&stack, &sim, &t).await;
        let puller = puller(&stack, 5);
        stack.scheduler().run(Utc::now()).await.unwrap();
        // An invocation of 1.5 s: a continuation's wait for the limit (at most the
        // window) fits, the wait after its one page does not.
        let driven = drive(
            &stack,
            &puller,
            &Plan::record(),
            &t,
            Duration::from_millis(1500),
        )
        .await;
        let stats = sim.stats();
        eprintln!("rate-limited: {driven:?}; {stats:?}");
        let pages = stats.total_requests - stats.token_requests;
        assert!(
            pages >= 10,
            "enough pages to exhaust a receive count: {stats:?}"
        );
        assert!(
            driven.invocations >= 6,
            "more invocations than one message may be received: {driven:?}"
        );
        for st in stack.registry().streams(&t).await.unwrap() {
            assert_eq!(
                st.status,
                SyncStatus::Done,
                "{:?}: {:?}",
                st.stream,
                st.reason
            );
        }
        let dlq = stack.local.refs["PullDeadLetterQueue"].clone();
        assert_eq!(
            queue_depth(&stack, &dlq).await,
            0,
            "a job was dead-lettered"
        );
        let runs = stack.registry().runs(&t, 100).await.unwrap();
        assert!(
            runs.iter()
                .any(|r| r.outcome.starts_with("rate_limited: until ")),
            "the waits are recorded"
        );
    }
}

// ------------------------------------------------------------------ races

mod races {
    use eds_shared::tenants::{RunLog, TenantLifecycle};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use chrono::{DateTime, Utc};
    use eds_e2e::Stack;
    use eds_shared::domain::ids::{AtsId, EntityKind, RecordKey, TenantId};
    use eds_shared::domain::model::{Fields, LayerKind, Observation, ObservationScope, Provenance};
    use eds_shared::domain::version::Change;
    use eds_shared::jobs::PullJob;
    use eds_shared::pipeline::push::PushIngest;
    use eds_shared::pipeline::scheduler::plan_run;
    use eds_shared::queue::JobError;
    use eds_shared::store::{RecordRead, RecordWrite};
    use eds_shared::tenants::TenantRegistry;
    use futures::StreamExt;
    use greenhouse_sim::SimConfig;
    use serde_json::{Value, json};

    use super::common::*;

    fn seeds() -> u64 {
        if long_tests() { 1000 } else { 100 }
    }

    fn t0() -> DateTime<Utc> {
        "2026-03-01T10:00:00Z".parse().unwrap()
    }

    fn ts(t: DateTime<Utc>) -> String {
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }

    fn pull_change(id: &str, at: DateTime<Utc>, fields: Value) -> Change {
        let fields: Fields = serde_json::from_value(fields).unwrap();
        Change::Observe {
            layer: LayerKind::Pull,
            observation: Observation {
                entity: EntityKind::Candidate,
                ats_id: AtsId::parse(id).unwrap(),
                ats_updated_at: Some(at),
                scope: ObservationScope::Record { fields },
            },
        }
    }

    fn push_body(tenant: &TenantId, id: &str, at: DateTime<Utc>, fields: &Value) -> String {
        json!({"tenant": tenant.as_str(), "records": [{
            "entity": "candidate", "id": id, "op": "upsert", "updated_at": ts(at), "fields": fields
        }]})
        .to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn push_and_pull_of_one_record_in_any_order_give_the_merge_rules_view() {
        let stack = Stack::new().await.unwrap();
        let scen = scenario(1, 1);
        let sim = simulator(&scen, SimConfig::default()).await;
        let t = tenant("pp");
        client_credentials_tenant(&stack, &sim, &t).await;
        let store = stack.store();
        let ingest = Arc::new(PushIngest::new(
            stack.registry(),
            stack.store(),
            stack.push_queue(),
        ));
        let push_first = Arc::new(AtomicUsize::new(0));
        let names = ["Ada", "Grace", "Edsger"];
        let outcomes = futures::stream::iter(0..seeds())
            .map(|seed| {
                let (store, ingest, t, push_first) =
                    (store.clone(), ingest.clone(), t.clone(), push_first.clone());
                async move {
                    let mut rng = Rng(seed);
                    let push_at = t0() + chrono::Duration::seconds(rng.below(3) as i64);
                    let pull_at = t0() + chrono::Duration::seconds(rng.below(3) as i64);
                    let push_name = names[rng.below(3) as usize];
                    let pull_name = names[rng.below(3) as usize];
                    let push_fields = json!({"first_name": push_name, "company": "Pushed Ltd"});
                    let pull_fields = json!({"first_name": pull_name, "title": "Engineer"});
                    let race = format!("race{seed}");
                    // Race: both writers start after random delays, concurrently.
                    let d1 = rng.below(15);
                    let d2 = rng.below(15);
                    if d1 <= d2 {
                        push_first.fetch_add(1, Ordering::Relaxed);
                    }
                    let body = push_body(&t, &race, push_at, &push_fields);
                    let (a, b) = tokio::join!(
                        async {
                            tokio::time::sleep(Duration::from_millis(d1)).await;
                            ingest
                                .handle_body(&body, &format!("m{seed}"), Utc::now())
                                .await
                        },
                        async {
                            tokio::time::sleep(Duration::from_millis(d2)).await;
                            store
                                .apply_page(
                                    &t,
                                    vec![pull_change(&race, pull_at, pull_fields.clone())],
                                    Utc::now(),
                                )
                                .await
                        }
                    );
                    a.unwrap();
                    b.unwrap();
                    let key = RecordKey::new(
                        t.clone(),
                        EntityKind::Candidate,
                        AtsId::parse(race).unwrap(),
                    );
                    let head = store.get(&key).await.unwrap().unwrap();
                    // The rules (product.md §4): newer ATS time wins, a tie goes to the
                    // pull; one-sided fields are backfilled; equal values are `both`.
                    let v = &head.view;
                    let want_name = if push_at > pull_at {
                        push_name
                    } else {
                        pull_name
                    };
                    assert_eq!(v.fields["first_name"], json!(want_name), "seed {seed}");
                    assert_eq!(v.fields["company"], json!("Pushed Ltd"), "seed {seed}");
                    assert_eq!(v.fields["title"], json!("Engineer"), "seed {seed}");
                    let want_prov = if push_name == pull_name {
                        Provenance::Both
                    } else if push_at > pull_at {
                        Provenance::Push
                    } else {
                        Provenance::Pull
                    };
                    assert_eq!(v.provenance["first_name"], want_prov, "seed {seed}");
                    assert_eq!(v.provenance["company"], Provenance::Push);
                    assert_eq!(v.provenance["title"], Provenance::Pull);
                    // Both layers are kept whole (the loser stays in its layer).
                    let push = head.state.push.as_ref().unwrap();
                    assert_eq!(push.fields["first_name"], json!(push_name));
                    let pull = head.state.pull.as_ref().unwrap();
                    assert_eq!(pull.fields["first_name"], json!(pull_name));
                    let history = store.history(&key).await.unwrap();
                    assert_eq!(history.len(), 2, "seed {seed}: one version per writer");
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<()>>()
            .await;
        assert_eq!(outcomes.len() as u64, seeds());
        let pf = push_first.load(Ordering::Relaxed) as u64;
        eprintln!(
            "push/pull race: {} seeds, push started first in {pf}",
            seeds()
        );
        assert!(pf > 0 && pf < seeds(), "both orders exercised");
        eds_e2e::secrets::assert_no_secret_leaked(&stack).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_pullers_given_one_duplicated_message_write_what_one_run_writes() {
        let stack = Stack::new().await.unwrap();
        let scen = scenario(5, 6);
        let sim = simulator(&scen, SimConfig::default()).await;
        let registry = stack.registry();

        // The reference: one puller, one delivery.
        let reference = tenant("dref");
        client_credentials_tenant(&stack, &sim, &reference).await;
        let job_for = |registry: Arc<TenantRegistry>, t: TenantId| async move {
            let now = Utc::now();
            let cfg = registry.require(&t).await.unwrap().config;
            let run_id = uuid::Uuid::new_v4().simple().to_string();
            let claim = registry
                .claim_run(
                    &t,
                    &run_id,
                    &["run".to_string()],
                    now,
                    now + chrono::Duration::seconds(900),
                )
                .await
                .unwrap();
            assert!(matches!(claim, eds_shared::tenants::Claim::Claimed { .. }));
            PullJob {
                tenant: t,
                epoch: cfg.epoch,
                run_id,
                steps: plan_run(
                    &cfg,
                    now,
                    eds_shared::connector::catalog::plan(cfg.ats.kind()),
                ),
                resume: None,
                continuation: 0,
                stalled: 0,
                not_before: None,
            }
        };
        let long = || tokio::time::Instant::now() + Duration::from_secs(120);
        let p0 = stack.puller(Default::default()).unwrap();
        let job = job_for(registry.clone(), reference.clone()).await;
        p0.handle_job(&job, long()).await.unwrap();
        let want = dump(&stack, &reference).await;
        let want_objects = objects(&stack, &reference).await;
        assert!(!want.is_empty());

        // Ten seeds per stack of their own: moto sorts a table's every item on each
        // query, so one table holding every seed's records makes the test quadratic.
        let mut stacks = Vec::new();
        for _ in 0..seeds().div_ceil(10) {
            stacks.push(Stack::new().await.unwrap());
        }
        let refused = Arc::new(AtomicUsize::new(0));
        let sim = &sim;
        let stacks = &stacks;
        let results: Vec<()> = futures::stream::iter(0..seeds())
            .map(|seed| {
                let (stack, refused) = (&stacks[(seed / 10) as usize], refused.clone());
                let job_for = &job_for;
                let want = &want;
                let want_objects = &want_objects;
                async move {
                    let t = tenant(&format!("dup{seed}"));
                    client_credentials_tenant(stack, sim, &t).await;
                    let job = job_for(stack.registry(), t.clone()).await;
                    // Two containers receive the same message.
                    let (a, b) = (
                        stack.puller(Default::default()).unwrap(),
                        stack.puller(Default::default()).unwrap(),
                    );
                    let mut rng = Rng(seed);
                    let (d1, d2) = (rng.below(30), rng.below(30));
                    let (ra, rb) = tokio::join!(
                        async {
                            tokio::time::sleep(Duration::from_millis(d1)).await;
                            a.handle_job(&job, long()).await
                        },
                        async {
                            tokio::time::sleep(Duration::from_millis(d2)).await;
                            b.handle_job(&job, long()).await
                        }
                    );
                    for r in [ra, rb] {
                        match r {
                            Ok(_) => {}
                            Err(JobError::Retry { reason, .. }) => {
                                assert!(reason.contains("lease"), "seed {seed}: {reason}");
                                refused.fetch_add(1, Ordering::Relaxed);
                                // Redelivered later: the run is finished, nothing to do.
                                let (_, again) = a.handle_job(&job, long()).await.unwrap();
                                assert_eq!(again.versions_written, 0, "seed {seed}");
                            }
                            Err(e) => panic!("seed {seed}: {e}"),
                        }
                    }
                    let got = dump(stack, &t).await;
                    let changed = differing(&got, want);
                    assert!(changed.is_empty(), "seed {seed}: {changed:?}");
                    assert_eq!(&objects(stack, &t).await, want_objects, "seed {seed}");
                }
            })
            .buffer_unordered(6)
            .collect()
            .await;
        assert_eq!(results.len() as u64, seeds());
        let refused = refused.load(Ordering::Relaxed);
        eprintln!(
            "duplicated delivery: {} seeds, lease refused the second puller {refused} times",
            seeds()
        );
        assert!(refused > 0, "the two pullers never overlapped");
        eds_e2e::secrets::assert_no_secret_leaked(&stack).await;
        for s in stacks {
            eds_e2e::secrets::assert_no_secret_leaked(s).await;
        }
    }
}

// ------------------------------------------------------------------ poison messages

mod poison {
    use eds_shared::tenants::RunLog;
    use std::time::Duration;

    use chrono::Utc;
    use eds_e2e::Stack;
    use eds_shared::crash::Plan;
    use eds_shared::tenants::SyncStatus;
    use greenhouse_sim::SimConfig;

    use super::common::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_poison_message_reaches_the_dlq_and_never_blocks_another_tenant() {
        let stack = Stack::new().await.unwrap();
        let scen = scenario(9, 5);
        let sim = simulator(&scen, SimConfig::default()).await;
        let good = tenant("good");
        client_credentials_tenant(&stack, &sim, &good).await;
        let url = stack.config.pull_queue_url.clone();
        // The poison: a body that is not a job, in its own tenant's FIFO group, sent
        // before the good tenant's jobs.
        let bad_group = tenant("bad");
        for (i, body) in [
            "{not json",
            r#"{"tenant":"x","epoch":1,"run_id":"r","steps":[],"secret_name":"eds/tenants/good"}"#,
        ]
        .iter()
        .enumerate()
        {
            stack
                .aws
                .sqs
                .send_message()
                .queue_url(&url)
                .message_body(*body)
                .message_group_id(bad_group.as_str())
                .message_deduplication_id(format!("poison-{i}"))
                .send()
                .await
                .unwrap();
        }
        stack.scheduler().run(Utc::now()).await.unwrap();
        let puller = puller(&stack, 50);
        // The real redrive: the handler makes poison visible at once; after
        // maxReceiveCount receives the queue moves it to the DLQ.
        let driven = drive(
            &stack,
            &puller,
            &Plan::record(),
            &good,
            Duration::from_secs(60),
        )
        .await;
        let dlq = stack.local.refs["PullDeadLetterQueue"].clone();
        assert_eq!(
            queue_depth(&stack, &dlq).await,
            2,
            "both poison messages dead-lettered"
        );
        assert_eq!(queue_depth(&stack, &url).await, 0);
        assert!(
            driven.invocations <= 2 * 5 + 10,
            "bounded receives: {driven:?}"
        );
        for st in stack.registry().streams(&good).await.unwrap() {
            assert_eq!(st.status, SyncStatus::Done, "{:?}", st.stream);
        }
        eds_e2e::secrets::assert_no_secret_leaked(&stack).await;
    }
}

// ------------------------------------------------------------------ isolation

mod isolation {
    use eds_shared::tenants::TenantLifecycle;
    use std::time::Duration;

    use chrono::Utc;
    use eds_e2e::Stack;
    use eds_shared::credentials::SecretName;
    use eds_shared::jobs::Step;
    use eds_shared::jobs::{PullJob, parse_job};
    use eds_shared::pipeline::puller::JobOutcome;
    use eds_shared::pipeline::push::PushIngest;
    use eds_shared::pipeline::records_api::route;
    use eds_shared::queue::JobError;
    use eds_shared::tenants::{StreamName, TenantState};
    use greenhouse_sim::SimConfig;
    use serde_json::json;

    use super::common::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_job_push_or_path_for_one_tenant_reads_or_writes_another() {
        let stack = Stack::new().await.unwrap();
        let scen = scenario(12, 5);
        let sim = simulator(&scen, SimConfig::default()).await;
        let a = tenant("isa");
        let b = tenant("isb");
        client_credentials_tenant(&stack, &sim, &a).await;
        client_credentials_tenant(&stack, &sim, &b).await;
        let puller = puller(&stack, 50);
        stack.sync(&puller, Utc::now()).await.unwrap();
        let a_before = dump(&stack, &a).await;
        let b_before = dump(&stack, &b).await;
        assert!(!a_before.is_empty() && !b_before.is_empty());
        let long = || tokio::time::Instant::now() + Duration::from_secs(60);

        // A job naming B under an epoch B does not have (A's epoch after A moved on):
        // dropped, nothing written for anyone.
        let registry = stack.registry();
        let a_epoch = registry
            .set_state(&a, TenantState::Enabled, true, None, None, Utc::now())
            .await
            .unwrap();
        let b_epoch = registry.require(&b).await.unwrap().config.epoch;
        assert_ne!(a_epoch, b_epoch);
        let crafted = PullJob {
            tenant: b.clone(),
            epoch: a_epoch,
            run_id: "crafted".into(),
            steps: vec![Step::Pull(StreamName::Candidates)],
            resume: None,
            continuation: 0,
            stalled: 0,
            not_before: None,
        };
        let (outcome, report) = puller.handle_job(&crafted, long()).await.unwrap();
        assert!(matches!(outcome, JobOutcome::Dropped(_)), "{outcome:?}");
        assert_eq!(report.versions_written, 0);

        // A job body naming a secret: refused as a job (unknown field), poison.
        let body = json!({"tenant": b.as_str(), "epoch": b_epoch, "run_id": "r", "steps": [],
                          "secret_name": format!("eds/tenants/{a}")})
        .to_string();
        assert!(
            parse_job::<PullJob>(&body)
                .unwrap_err()
                .contains("secret_name")
        );
        assert!(matches!(
            puller.handle_message(&body, long()).await,
            Err(JobError::Poison(_))
        ));

        // A configuration that names another tenant's secret is refused...
        let theirs = format!("{}{a}", eds_e2e::SECRET_PREFIX);
        assert!(SecretName::from_config(&theirs, eds_e2e::SECRET_PREFIX, &b).is_err());
        // ...and a tenant registered that way never gets A's credentials: its pull ends
        // in needs_reauth with the configuration error, and writes nothing.
        let c = tenant("isc");
        let mut cfg = client_credentials_tenant(&stack, &sim, &c).await;
        cfg.secret_name = theirs;
        registry.enable(cfg, Utc::now()).await.unwrap();
        stack.sync(&puller, Utc::now()).await.unwrap();
        let rec = registry.require(&c).await.unwrap();
        assert_eq!(rec.config.state, TenantState::NeedsReauth);
        assert!(
            rec.config
                .state_reason
                .unwrap_or_default()
                .contains("secret")
        );
        assert!(dump(&stack, &c).await.is_empty());

        // A push for A carrying B's record ids (and a smuggled tenant member) writes only
        // into A's partition, or nowhere.
        let b_ids: Vec<String> = b_before
            .keys()
            .filter_map(|k| k.split('|').next())
            .filter_map(|r| r.strip_prefix("candidate#"))
            .map(str::to_string)
            .take(3)
            .collect();
        let records: Vec<_> = b_ids
            .iter()
            .map(|id| json!({"entity": "candidate", "id": id, "op": "upsert",
                             "updated_at": "2026-03-01T10:00:00.000Z", "fields": {"first_name": "Mallory"}}))
            .chain([json!({"entity": "candidate", "id": "1", "op": "upsert", "tenant": b.as_str(),
                           "updated_at": "2026-03-01T10:00:00.000Z", "fields": {"first_name": "Mallory"}})])
            .collect();
        let ingest = PushIngest::new(stack.registry(), stack.store(), stack.push_queue());
        let _ = ingest
            .handle_body(
                &json!({"tenant": a.as_str(), "records": records}).to_string(),
                "iso",
                Utc::now(),
            )
            .await;
        assert_eq!(dump(&stack, &b).await, b_before, "B changed by A's push");

        // Records API paths: traversal and encoded separators never reach another tenant.
        let ok = route("GET", &format!("/tenants/{a}/records/candidate/1"), "").unwrap();
        assert!(format!("{ok:?}").contains(a.as_str()));
        for path in [
            format!("/tenants/{a}/records/candidate/..%2F..%2F{b}"),
            format!("/tenants/{a}/records/candidate/../../{b}/records/candidate/1"),
            format!("/tenants/{a}%2F..%2F{b}/records/candidate/1"),
            format!("/tenants/{a}/../{b}/records/candidate/1"),
            format!("/tenants/{a}#/../{b}/status"),
            format!("/tenants/{a}/records/candidate/1#{b}"),
            format!("/tenants/../tenants/{b}/status"),
            format!("/tenants/{a}/records/candidate/%2e%2e"),
        ] {
            match route("GET", &path, "") {
                Err(_) => {}
                Ok(r) => {
                    let shown = format!("{r:?}");
                    assert!(!shown.contains(b.as_str()), "{path} routed to {shown}");
                }
            }
        }
        eds_e2e::secrets::assert_no_secret_leaked(&stack).await;
    }
}

// ------------------------------------------------------------------ SSRF

mod ssrf {
    use eds_shared::tenants::RunLog;
    use std::time::Duration;

    use chrono::Utc;
    use eds_e2e::Stack;
    use eds_shared::crash::Plan;
    use eds_shared::pipeline::puller::PullerSettings;
    use greenhouse_sim::SimConfig;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::common::*;

    fn to_metadata(url: &str) -> String {
        let u = url::Url::parse(url).unwrap();
        format!(
            "http://169.254.169.254/latest/meta-data/iam{}?{}",
            u.path(),
            u.query().unwrap_or("")
        )
    }

    fn to_private(url: &str) -> String {
        let u = url::Url::parse(url).unwrap();
        format!("http://10.1.2.3{}?{}", u.path(), u.query().unwrap_or(""))
    }

    /// A local server that answers every request with a redirect to the metadata
    /// address, counting what it was asked.
    async fn redirector() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 2048];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            }
        });
        (format!("http://{addr}"), hits)
    }

    static REDIRECT_BASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

    fn to_redirector(url: &str) -> String {
        let u = url::Url::parse(url).unwrap();
        format!(
            "{}{}?{}",
            REDIRECT_BASE.get().unwrap(),
            u.path(),
            u.query().unwrap_or("")
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attachment_links_to_internal_addresses_are_quarantined_never_fetched() {
        let stack = Stack::new().await.unwrap();
        let scen = scenario(21, 4);
        let sim = simulator(&scen, SimConfig::default()).await;
        let (base, redirects) = redirector().await;
        REDIRECT_BASE.set(base).unwrap();
        for (label, rewrite) in [
            ("metadata", to_metadata as fn(&str) -> String),
            ("private", to_private),
            ("redirect", to_redirector),
        ] {
            let t = tenant(label);
            client_credentials_tenant(&stack, &sim, &t).await;
            let mut p = stack.puller(PullerSettings::default()).unwrap();
            p.factory = Arc::new(RewriteLinks {
                inner: p.factory.clone(),
                rewrite,
            });
            stack.scheduler().run(Utc::now()).await.unwrap();
            drive(&stack, &p, &Plan::record(), &t, Duration::from_secs(60)).await;
            assert!(
                objects(&stack, &t)
                    .await
                    .iter()
                    .all(|k| !k.starts_with("attachments/")),
                "{label}: a file was stored"
            );
            let quarantined = stack.registry().quarantine(&t).await.unwrap();
            let attachments: Vec<_> = quarantined
                .iter()
                .filter(|q| q.source == "attachment")
                .collect();
            assert!(!attachments.is_empty(), "{label}: nothing quarantined");
            for q in &attachments {
                eds_e2e::secrets::assert_text_clean("quarantine error", &q.error);
                assert!(
                    !q.error.contains("sig="),
                    "{label}: the signed link is in the error: {}",
                    q.error
                );
            }
        }
        // The redirector was asked (loopback is allowed for this tenant) but its target
        // never was: nothing listens on 169.254.169.254 here, and the refusal is recorded.
        assert!(redirects.load(std::sync::atomic::Ordering::SeqCst) > 0);
        eds_e2e::secrets::assert_no_secret_leaked(&stack).await;
    }
}
