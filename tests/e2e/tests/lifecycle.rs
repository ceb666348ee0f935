//! End-to-end tests of the lifecycle functions (disable, delete) against the local AWS
//! emulator: the customer-facing guarantees of product.md sections 1 and 7, and seeded
//! random interleavings of an in-flight pull writer racing disable and delete.
//!
//! Each test provisions its own stack (unique stage) and uses tenants with unique ids.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eds_e2e::Invoke;
use eds_e2e::Stack;
use eds_shared::domain::ids::{AtsId, EntityKind, RecordKey, TenantId};
use eds_shared::domain::merge::ViewMode;
use eds_shared::domain::model::{Fields, LayerKind, Observation, ObservationScope};
use eds_shared::domain::version::{Cause, Change};
use eds_shared::invocation::Invocation;
use eds_shared::lambda::Config;
use eds_shared::pipeline::delete::{DeleteOutcome, Deleter};
use eds_shared::pipeline::disable::{DisableOutcome, Disabler, LifecycleOptions, Via};
use eds_shared::store::dynamodb::DynamoStore;
use eds_shared::store::{RecordRead, RecordSweep, RecordWrite, SHARDS};
use eds_shared::tenants::{Erasure, Leases, RunLog, TenantLifecycle};
use eds_shared::tenants::{
    LeaseOutcome, QuarantineEntry, RunCounts, StreamName, StreamState, SyncRun, SyncStatus,
    TenantConfig, TenantRegistry, TenantState,
};
use serde_json::{Value, json};

// ------------------------------------------------------------------ fixtures

fn uniq() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

fn tid(prefix: &str) -> TenantId {
    TenantId::parse(format!("{prefix}-{}", uniq())).unwrap()
}

fn options() -> LifecycleOptions {
    LifecycleOptions {
        page_size: 100,
        poll_every: Duration::from_millis(20),
        margin: Duration::from_millis(300),
        concurrency: 8,
    }
}

/// A generous deadline for runs that must complete in one invocation.
fn long() -> Invocation {
    Invocation::after(Duration::from_secs(120))
}

/// A deadline already past: the invocation does its one guaranteed unit of work (or,
/// waiting, hands off at once). What it then does depends on no machine's speed.
fn expired() -> Invocation {
    Invocation::after(Duration::ZERO)
}

/// Options with one record per page: each unit of work is as small as it gets.
fn tiny_pages() -> LifecycleOptions {
    LifecycleOptions {
        page_size: 1,
        concurrency: 1,
        ..options()
    }
}

struct Env {
    stack: Stack,
    config: Config,
    registry: TenantRegistry,
    store: Arc<DynamoStore>,
}

impl Env {
    async fn new() -> Self {
        let stack = Stack::new().await.unwrap();
        let mut config = stack.config.clone();
        // Secrets are account-wide in the emulator: a per-stack prefix isolates tests.
        config.secret_prefix = format!("eds-test/{}/", uniq());
        let registry =
            TenantRegistry::new(stack.aws.dynamodb.clone(), config.tenants_table.clone());
        let store = Arc::new(DynamoStore::new(
            stack.aws.dynamodb.clone(),
            config.records_table.clone(),
        ));
        Self {
            stack,
            config,
            registry,
            store,
        }
    }

    fn disabler(&self) -> Disabler {
        eds_shared::wiring::disable::disabler_on(&self.stack.aws, &self.config)
            .with_options(options())
    }

    fn deleter(&self) -> Deleter {
        eds_shared::wiring::delete::deleter_on(&self.stack.aws, &self.config)
            .with_options(options())
    }

    fn config_for(&self, tenant: &TenantId, now: DateTime<Utc>) -> TenantConfig {
        serde_json::from_value(json!({
            "tenant_id": tenant.as_str(),
            "ats_kind": "greenhouse",
            "api_base_url": "http://127.0.0.1:1",
            "secret_name": format!("{}{tenant}", self.config.secret_prefix),
            "interval_secs": 900,
            "state": "enabled",
            "epoch": 0,
            "created_at": now,
            "updated_at": now,
        }))
        .unwrap()
    }

    /// Registers and enables the tenant; returns its epoch.
    async fn enable(&self, tenant: &TenantId) -> u64 {
        let now = Utc::now();
        self.registry
            .enable(self.config_for(tenant, now), now)
            .await
            .unwrap()
            .epoch
    }

    fn key(&self, tenant: &TenantId, id: &str) -> RecordKey {
        RecordKey::new(
            tenant.clone(),
            EntityKind::Candidate,
            AtsId::parse(id).unwrap(),
        )
    }
}

fn t0() -> DateTime<Utc> {
    "2026-03-01T10:00:00Z".parse().unwrap()
}

fn observe(layer: LayerKind, id: &str, at: DateTime<Utc>, fields: Value) -> Change {
    let fields: Fields = serde_json::from_value(fields).unwrap();
    Change::Observe {
        layer,
        observation: Observation {
            entity: EntityKind::Candidate,
            ats_id: AtsId::parse(id).unwrap(),
            ats_updated_at: Some(at),
            scope: ObservationScope::Record { fields },
        },
    }
}

/// Pushed layer of record `i`.
fn pushed(i: usize) -> Change {
    observe(
        LayerKind::Push,
        &i.to_string(),
        t0(),
        json!({"first_name": format!("P{i}"), "last_name": "Pushed", "emails": [{"value": format!("p{i}@example.com")}]}),
    )
}

/// Pulled layer of record `i` in round `round`: newer than the push, so it corrects
/// `first_name` and backfills `title` in a merged view.
fn pulled(i: usize, round: u32) -> Change {
    observe(
        LayerKind::Pull,
        &i.to_string(),
        t0() + chrono::Duration::seconds(60 + i64::from(round)),
        json!({"first_name": format!("Q{i}-{round}"), "title": format!("Title {round}")}),
    )
}

/// A tenant with `pushed_n` pushed records (0..pushed_n), pulled layers on records
/// 0..pulled_n (those above `pushed_n` exist only by the pull), S3 objects, runs,
/// streams, quarantine entries and a secret.
async fn seed(env: &Env, tenant: &TenantId, pushed_n: usize, pulled_n: usize) {
    env.enable(tenant).await;
    let now = Utc::now();
    let out = env
        .store
        .apply_page(tenant, (0..pushed_n).map(pushed).collect(), now)
        .await
        .unwrap();
    assert_eq!(out.created, pushed_n);
    let out = env
        .store
        .apply_page(tenant, (0..pulled_n).map(|i| pulled(i, 0)).collect(), now)
        .await
        .unwrap();
    assert_eq!(out.failed + out.rejected, 0);
    for n in 0..3 {
        env.stack
            .aws
            .s3
            .put_object()
            .bucket(&env.config.attachments_bucket)
            .key(format!("tenants/{tenant}/attachments/sha256/{n:064x}"))
            .body(format!("resume {n} of {tenant}").into_bytes().into())
            .send()
            .await
            .unwrap();
    }
    for stream in [StreamName::Jobs, StreamName::Candidates] {
        env.registry
            .put_stream(
                tenant,
                &StreamState {
                    stream,
                    status: SyncStatus::Done,
                    reason: None,
                    watermark: Some(now),
                    checkpoint: None,
                    last_success_at: Some(now),
                    last_run_id: Some("run-1".into()),
                    run_quarantined: Default::default(),
                    updated_at: now,
                },
            )
            .await
            .unwrap();
    }
    env.registry
        .put_run(
            tenant,
            &SyncRun {
                run_id: "run-1".into(),
                stream: StreamName::Candidates,
                kind: "pull".into(),
                started_at: now,
                finished_at: now,
                outcome: "done".into(),
                counts: RunCounts::default(),
            },
        )
        .await
        .unwrap();
    env.registry
        .put_quarantine(
            tenant,
            &QuarantineEntry {
                source: "candidates".into(),
                ats_id: Some("999".into()),
                error: "emails: expected a list".into(),
                at: now,
                run_id: Some("run-1".into()),
            },
        )
        .await
        .unwrap();
    env.stack
        .aws
        .secrets
        .create_secret()
        .name(format!("{}{tenant}", env.config.secret_prefix))
        .secret_string("{\"api_key\":\"not-a-real-key\"}")
        .send()
        .await
        .unwrap();
}

/// Everything a tenant owns, counted the slow, independent way.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Footprint {
    record_items: usize,
    listed: usize,
    tenant_items: usize,
    objects: usize,
    secret: bool,
}

impl Footprint {
    fn is_empty(&self) -> bool {
        *self
            == Footprint {
                record_items: 0,
                listed: 0,
                tenant_items: 0,
                objects: 0,
                secret: false,
            }
    }
}

async fn count_query(env: &Env, table: &str, pk: String) -> usize {
    let mut n = 0;
    let mut start = None;
    loop {
        let out = env
            .stack
            .aws
            .dynamodb
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(pk.clone()),
            )
            .select(aws_sdk_dynamodb::types::Select::Count)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        n += out.count() as usize;
        start = out.last_evaluated_key;
        if start.is_none() {
            return n;
        }
    }
}

async fn listed(env: &Env, tenant: &TenantId) -> Vec<(EntityKind, AtsId)> {
    let mut out = Vec::new();
    for shard in 0..SHARDS {
        let mut after = None;
        loop {
            let page = env
                .store
                .list_keys(tenant, shard, after.as_deref(), 100)
                .await
                .unwrap();
            out.extend(page.keys.into_iter().map(|k| (k.entity, k.ats_id)));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
    }
    out
}

/// `ids`: every record id the test ever wrote for the tenant (queried by pk, so items
/// the index does not list are counted too).
async fn footprint(env: &Env, tenant: &TenantId, ids: usize) -> Footprint {
    let mut record_items = 0;
    for i in 0..ids {
        record_items += count_query(
            env,
            &env.config.records_table,
            format!("R#{tenant}#candidate#{i}"),
        )
        .await;
    }
    let objects = env
        .stack
        .aws
        .s3
        .list_objects_v2()
        .bucket(&env.config.attachments_bucket)
        .prefix(format!("tenants/{tenant}/"))
        .send()
        .await
        .unwrap()
        .key_count()
        .unwrap_or(0) as usize;
    let secret = env
        .stack
        .aws
        .secrets
        .describe_secret()
        .secret_id(format!("{}{tenant}", env.config.secret_prefix))
        .send()
        .await
        .is_ok_and(|d| d.deleted_date().is_none());
    Footprint {
        record_items,
        listed: listed(env, tenant).await.len(),
        tenant_items: count_query(env, &env.config.tenants_table, format!("T#{tenant}")).await,
        objects,
        secret,
    }
}

fn event(detail_type: &str, detail: Value) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": detail_type,
        "source": "eds.settings",
        "account": "123456789012",
        "time": "2026-03-01T12:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    })
}

fn disable_event(tenant: &TenantId) -> Value {
    event(
        "tenant.disable_requested",
        json!({"tenant_id": tenant.as_str()}),
    )
}

fn delete_event(tenant: &TenantId, request_id: &str) -> Value {
    event(
        "tenant.deletion_requested",
        json!({"tenant_id": tenant.as_str(), "request_id": request_id}),
    )
}

/// Receives the queue's messages as a Lambda SQS event (what the event source mapping
/// would deliver).
async fn receive(env: &Env, queue_url: &str) -> Value {
    let event = eds_local::queue::receive_event(&env.stack.aws.sqs, queue_url, 10, 1)
        .await
        .unwrap();
    serde_json::to_value(event).unwrap()
}

/// What the queue does once a handed-back message's visibility timeout has passed
/// (fast-forwarded: made visible at once).
async fn make_visible(env: &Env, queue_url: &str, event: &Value) {
    for r in event["Records"].as_array().unwrap() {
        env.stack
            .aws
            .sqs
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(r["receiptHandle"].as_str().unwrap())
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
}

/// The message ids a batch response hands back to the queue.
fn handed_back(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect()
}

/// Visible and in-flight messages of a queue.
async fn queue_counts(env: &Env, queue_url: &str) -> (u64, u64) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = env
        .stack
        .aws
        .sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attrs = out.attributes.unwrap_or_default();
    let get = |k: A| attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
    (
        get(A::ApproximateNumberOfMessages),
        get(A::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Drives a lifecycle chain where every invocation's deadline has already passed: the
/// event, then each continuation the queue holds, until the queue is empty. Returns the
/// number of invocations (batches). `redeliver` handles that invocation's batch twice
/// (at-least-once delivery). Stops with a panic past `cap` invocations (no progress).
async fn expired_chain<F, Fut>(
    env: &Env,
    queue_url: &str,
    first: Value,
    cap: usize,
    redeliver: Option<usize>,
    handle: F,
) -> usize
where
    F: Fn(Value) -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let out = handle(first).await;
    let mut invocations = 1;
    if out["outcome"] != "continued" {
        return invocations;
    }
    loop {
        let batch = receive(env, queue_url).await;
        if batch["Records"].as_array().unwrap().is_empty() {
            return invocations;
        }
        invocations += 1;
        assert!(
            invocations <= cap,
            "the chain makes progress: {invocations} invocations, at most {cap} expected"
        );
        let response = handle(batch.clone()).await;
        if redeliver == Some(invocations) {
            // The same message handled again is harmless (it may fork the chain; both
            // branches are idempotent).
            let again = handle(batch.clone()).await;
            assert!(handed_back(&again).is_empty(), "{again}");
        }
        ack(env, queue_url, &batch, &response).await;
    }
}

/// The most invocations a deletion needs when each does exactly one unit of work
/// (docs/lifecycle.md, "Progress"): the fence; per shard one page per `page` records
/// plus its last listing; one S3 round per 1000 objects plus the empty one; one registry
/// page per `page` items plus the last one (with the secret); the verification.
fn deletion_chain_bound(
    records: usize,
    objects: usize,
    registry_items: usize,
    page: usize,
) -> usize {
    1 + (records / page + SHARDS as usize)
        + (objects.div_ceil(1000) + 1)
        + (registry_items.div_ceil(page) + 1)
        + 1
}

async fn ack(env: &Env, queue_url: &str, event: &Value, response: &Value) {
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_value(event.clone()).unwrap();
    let response: aws_lambda_events::event::sqs::SqsBatchResponse =
        serde_json::from_value(response.clone()).unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    eds_local::queue::delete_succeeded(&env.stack.aws.sqs, queue_url, &event, &response)
        .await
        .unwrap();
}

// ------------------------------------------------------------------ disable

mod disable {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disable_shows_exactly_the_push_layer_keeps_history_and_repeats_write_nothing() {
        let env = Env::new().await;
        let (a, b) = (tid("dis-a"), tid("dis-b"));
        // Records 0..6 pushed, 0..8 pulled: 6 and 7 exist only through the pull.
        seed(&env, &a, 6, 8).await;
        seed(&env, &b, 6, 8).await;
        let epoch_before = env.registry.require(&a).await.unwrap().config.epoch;
        let mut history_before = BTreeMap::new();
        for i in 0..8 {
            let h = env
                .store
                .history(&env.key(&a, &i.to_string()))
                .await
                .unwrap();
            let head = h.last().unwrap();
            if i < 6 {
                assert_ne!(
                    head.version.view.fields,
                    head.version.state.push.as_ref().unwrap().fields,
                    "the merged view shows pulled values before the disable"
                );
            }
            history_before.insert(i, h);
        }
        let b_before = footprint(&env, &b, 8).await;
        let b_heads: Vec<_> = futures::future::join_all((0..8).map(|i| {
            let (store, key) = (env.store.clone(), env.key(&b, &i.to_string()));
            async move { store.get(&key).await }
        }))
        .await;

        let out = env
            .disabler()
            .invoke(disable_event(&a), long())
            .await
            .unwrap();
        assert_eq!(out["outcome"], "completed", "{out}");
        assert_eq!(out["fenced"], true);
        assert_eq!(out["records_changed"], 8);

        let rec = env.registry.require(&a).await.unwrap();
        assert_eq!(rec.config.state, TenantState::Disabled);
        assert_eq!(rec.config.epoch, epoch_before + 1, "the epoch moved");
        assert_eq!(rec.next_run_at, None, "no longer scheduled");
        assert!(rec.active_run.is_none());
        for s in env.registry.streams(&a).await.unwrap() {
            assert_eq!(s.status, SyncStatus::Paused, "{s:?}");
        }
        for i in 0..8 {
            let history = env
                .store
                .history(&env.key(&a, &i.to_string()))
                .await
                .unwrap();
            assert_eq!(
                history.len(),
                history_before[&i].len() + 1,
                "one new version"
            );
            let versions = |h: &[eds_shared::store::HistoryEntry]| {
                h.iter().map(|e| e.version.clone()).collect::<Vec<_>>()
            };
            assert_eq!(
                versions(&history[..history.len() - 1]),
                versions(&history_before[&i]),
                "history is kept"
            );
            let head = &history.last().unwrap().version;
            assert_eq!(head.cause, Cause::Disable);
            assert_eq!(head.state.mode, ViewMode::PushOnly);
            let push_fields = head
                .state
                .push
                .as_ref()
                .map(|l| l.fields.clone())
                .unwrap_or_default();
            assert_eq!(
                head.view.fields, push_fields,
                "the view is exactly the push layer"
            );
            assert!(head.state.pull.is_some(), "the pull layer is kept");
        }

        // A second disable (a redelivered or repeated request) writes nothing.
        let items_before = footprint(&env, &a, 8).await;
        let out = env
            .disabler()
            .invoke(disable_event(&a), long())
            .await
            .unwrap();
        assert_eq!(out["outcome"], "completed");
        assert_eq!(out["fenced"], false);
        assert_eq!(out["records_changed"], 0);
        assert_eq!(out["versions_written"], 0);
        assert_eq!(out["streams_paused"], 0);
        assert_eq!(footprint(&env, &a, 8).await, items_before);
        assert_eq!(
            env.registry.require(&a).await.unwrap().config.epoch,
            epoch_before + 1
        );

        // The other tenant is untouched.
        assert_eq!(footprint(&env, &b, 8).await, b_before);
        let b_after: Vec<_> = futures::future::join_all((0..8).map(|i| {
            let (store, key) = (env.store.clone(), env.key(&b, &i.to_string()));
            async move { store.get(&key).await }
        }))
        .await;
        assert_eq!(
            b_heads.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            b_after.into_iter().map(Result::unwrap).collect::<Vec<_>>()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disable_waits_for_the_pull_lease_continues_through_its_queue_and_fences_the_puller() {
        let env = Env::new().await;
        let a = tid("dis-wait");
        seed(&env, &a, 3, 3).await;
        let epoch = env.registry.require(&a).await.unwrap().config.epoch;
        let now = Utc::now();
        assert!(
            env.registry
                .acquire_lease(&a, "puller-1", epoch, now + chrono::Duration::hours(1), now)
                .await
                .unwrap()
                == LeaseOutcome::Held
        );

        let out = env
            .disabler()
            .invoke(disable_event(&a), expired())
            .await
            .unwrap();
        assert_eq!(out["outcome"], "continued", "{out}");
        assert_eq!(
            out["records_changed"], 0,
            "nothing is swept while the puller may write"
        );
        // The in-flight puller's next renewal is refused: it cannot write another page.
        let now = Utc::now();
        assert!(
            env.registry
                .acquire_lease(&a, "puller-1", epoch, now + chrono::Duration::hours(1), now)
                .await
                .unwrap()
                == LeaseOutcome::EpochMoved
        );
        let head = env.store.get(&env.key(&a, "0")).await.unwrap().unwrap();
        assert_eq!(head.state.mode, ViewMode::Merged);

        // The puller gives up and releases; the continuation finishes the sweep.
        env.registry.release_lease(&a, "puller-1").await.unwrap();
        let batch = receive(&env, &env.config.disable_queue_url).await;
        assert_eq!(batch["Records"].as_array().unwrap().len(), 1);
        let body: Value =
            serde_json::from_str(batch["Records"][0]["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["kind"], "disable");
        assert_eq!(body["epoch"], epoch + 1);
        let response = env.disabler().invoke(batch.clone(), long()).await.unwrap();
        ack(&env, &env.config.disable_queue_url, &batch, &response).await;
        for i in 0..3 {
            let head = env
                .store
                .get(&env.key(&a, &i.to_string()))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(head.state.mode, ViewMode::PushOnly);
            assert_eq!(head.cause, Cause::Disable);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disable_with_tiny_pages_and_no_time_left_completes_one_page_per_invocation() {
        let env = Env::new().await;
        let a = tid("dis-pages");
        seed(&env, &a, 4, 10).await;
        let disabler = eds_shared::wiring::disable::disabler_on(&env.stack.aws, &env.config)
            .with_options(tiny_pages());
        // Every invocation's deadline has passed: each sweeps its one guaranteed page (of
        // one record). At most one page per record plus each shard's last listing.
        let bound = 10 + SHARDS as usize;
        let invocations = expired_chain(
            &env,
            &env.config.disable_queue_url,
            disable_event(&a),
            bound,
            None,
            |ev| {
                let disabler = &disabler;
                async move { disabler.invoke(ev, expired()).await.unwrap() }
            },
        )
        .await;
        eprintln!("disable of 10 records in pages of 1: {invocations} invocations (bound {bound})");
        assert!(
            invocations >= 10,
            "one page per record at least ({invocations})"
        );
        for i in 0..10 {
            let head = env
                .store
                .get(&env.key(&a, &i.to_string()))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(head.state.mode, ViewMode::PushOnly, "record {i}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_disable_waiting_for_the_pull_lease_hands_its_message_back_instead_of_spinning() {
        let env = Env::new().await;
        let a = tid("dis-spin");
        seed(&env, &a, 2, 3).await;
        let epoch = env.registry.require(&a).await.unwrap().config.epoch;
        let now = Utc::now();
        assert!(
            env.registry
                .acquire_lease(
                    &a,
                    "puller-1",
                    epoch,
                    now + chrono::Duration::seconds(300),
                    now
                )
                .await
                .unwrap()
                == LeaseOutcome::Held
        );
        let url = env.config.disable_queue_url.clone();
        let out = env
            .disabler()
            .invoke(disable_event(&a), expired())
            .await
            .unwrap();
        assert_eq!(out["outcome"], "continued", "{out}");
        for round in 1..=3 {
            let batch = receive(&env, &url).await;
            assert_eq!(
                batch["Records"].as_array().unwrap().len(),
                1,
                "round {round}"
            );
            assert_eq!(
                batch["Records"][0]["attributes"]["ApproximateReceiveCount"],
                round.to_string(),
                "the same message each round"
            );
            let response = env
                .disabler()
                .invoke(batch.clone(), expired())
                .await
                .unwrap();
            assert_eq!(handed_back(&response).len(), 1, "round {round}: {response}");
            assert_eq!(queue_counts(&env, &url).await, (0, 1), "round {round}");
            make_visible(&env, &url, &batch).await;
        }
        let head = env.store.get(&env.key(&a, "0")).await.unwrap().unwrap();
        assert_eq!(
            head.state.mode,
            ViewMode::Merged,
            "nothing swept while the lease lives"
        );

        env.registry.release_lease(&a, "puller-1").await.unwrap();
        let batch = receive(&env, &url).await;
        let response = env.disabler().invoke(batch.clone(), long()).await.unwrap();
        ack(&env, &url, &batch, &response).await;
        for i in 0..3 {
            let head = env
                .store
                .get(&env.key(&a, &i.to_string()))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(head.state.mode, ViewMode::PushOnly);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_disable_events_are_rejected_without_side_effects() {
        let env = Env::new().await;
        let a = tid("dis-bad");
        seed(&env, &a, 2, 2).await;
        let before = env.registry.require(&a).await.unwrap();
        let bad = [
            json!({}),
            json!({"detail-type": "tenant.disable_requested", "source": "eds.settings"}),
            event("tenant.disable_requested", json!({})),
            event("tenant.disable_requested", json!({"tenant_id": "UPPER"})),
            event(
                "tenant.disable_requested",
                json!({"tenant_id": a.as_str(), "x": 1}),
            ),
            event(
                "tenant.disable_requested",
                json!({"tenant_id": [a.as_str()]}),
            ),
            event(
                "tenant.deletion_requested",
                json!({"tenant_id": a.as_str()}),
            ),
            {
                let mut e = disable_event(&a);
                e["source"] = json!("aws.events");
                e
            },
            event(
                "tenant.disable_requested",
                json!({"tenant_id": "never-registered"}),
            ),
        ];
        for e in bad {
            let err = env.disabler().invoke(e.clone(), long()).await;
            assert!(err.is_err(), "{e}");
        }
        assert_eq!(env.registry.require(&a).await.unwrap(), before);
        let head = env.store.get(&env.key(&a, "0")).await.unwrap().unwrap();
        assert_eq!(head.state.mode, ViewMode::Merged);
        assert!(
            eds_local::queue::receive_event(
                &env.stack.aws.sqs,
                &env.config.disable_queue_url,
                10,
                0
            )
            .await
            .unwrap()
            .records
            .is_empty()
        );
    }
}

// ------------------------------------------------------------------ delete

mod delete {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deletion_leaves_nothing_of_the_tenant_writes_a_receipt_and_spares_other_tenants() {
        let env = Env::new().await;
        let (a, b) = (tid("del-a"), tid("del-b"));
        seed(&env, &a, 5, 7).await;
        seed(&env, &b, 5, 7).await;
        // A stale push lease (its writer is gone) is deleted too.
        env.registry
            .acquire_push_lease(&a, "batch-1", Utc::now() - chrono::Duration::seconds(1))
            .await
            .unwrap()
            .unwrap();
        let mut versions = 0;
        for i in 0..7 {
            versions += env
                .store
                .history(&env.key(&a, &i.to_string()))
                .await
                .unwrap()
                .len();
        }
        let a_before = footprint(&env, &a, 7).await;
        assert_eq!(
            a_before.record_items,
            versions + 7,
            "versions plus one head each"
        );
        let b_before = footprint(&env, &b, 7).await;
        let epoch_before = env.registry.require(&a).await.unwrap().config.epoch;

        let out = env
            .deleter()
            .invoke(delete_event(&a, "req-1"), long())
            .await
            .unwrap();
        assert_eq!(out["outcome"], "completed", "{out}");
        assert!(
            footprint(&env, &a, 7).await.is_empty(),
            "{:?}",
            footprint(&env, &a, 7).await
        );
        assert_eq!(
            footprint(&env, &b, 7).await,
            b_before,
            "another tenant is untouched"
        );

        let receipt = env
            .registry
            .receipt(&a, "req-1")
            .await
            .unwrap()
            .expect("receipt kept");
        assert!(receipt.verified_empty);
        assert_eq!(
            receipt.requested_at,
            "2026-03-01T12:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(receipt.completed_at >= receipt.requested_at);
        let expected: BTreeMap<String, u64> = [
            ("records", 7),
            ("record_versions", versions as u64),
            ("s3_objects", 3),
            ("runs", 1),
            ("streams", 2),
            ("quarantine_entries", 1),
            ("leases", 1),
            ("secrets", 1),
            ("tenant_config", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(receipt.counts, expected);
        let stored = serde_json::to_string(&receipt).unwrap();
        assert!(
            !stored.contains("Pushed") && !stored.contains("example.com"),
            "no personal data"
        );

        // The same request again is fine and changes nothing.
        let out = env
            .deleter()
            .invoke(delete_event(&a, "req-1"), long())
            .await
            .unwrap();
        assert_eq!(out["outcome"], "already_done");
        assert_eq!(
            env.registry.receipt(&a, "req-1").await.unwrap(),
            Some(receipt)
        );
        assert_eq!(footprint(&env, &b, 7).await, b_before);

        // A push arriving after the deletion is refused and re-creates nothing.
        assert!(
            env.registry
                .acquire_push_lease(&a, "late", Utc::now() + chrono::Duration::minutes(5))
                .await
                .unwrap()
                .is_none()
        );
        assert!(footprint(&env, &a, 7).await.is_empty());

        // Registered again, the tenant's epoch starts above every epoch of the deleted
        // registration: a pull job queued before the deletion cannot pass the new fence.
        let epoch_after = env.enable(&a).await;
        assert!(
            epoch_after > epoch_before + 1,
            "{epoch_after} vs {epoch_before}"
        );
        let now = Utc::now();
        for stale in [epoch_before, epoch_before + 1] {
            assert!(
                env.registry
                    .acquire_lease(
                        &a,
                        "old-job",
                        stale,
                        now + chrono::Duration::minutes(5),
                        now
                    )
                    .await
                    .unwrap()
                    == LeaseOutcome::EpochMoved,
                "epoch {stale} of the deleted registration"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deletion_waits_for_live_writers_continues_through_its_queue_and_fences_them() {
        let env = Env::new().await;
        let a = tid("del-wait");
        seed(&env, &a, 3, 4).await;
        let epoch = env.registry.require(&a).await.unwrap().config.epoch;
        let now = Utc::now();
        let hour = chrono::Duration::hours(1);
        assert!(
            env.registry
                .acquire_lease(&a, "puller-1", epoch, now + hour, now)
                .await
                .unwrap()
                == LeaseOutcome::Held
        );
        assert!(
            env.registry
                .acquire_push_lease(&a, "batch-7", now + hour)
                .await
                .unwrap()
                .is_some()
        );
        let before = footprint(&env, &a, 4).await;

        let short = expired;
        let out = env
            .deleter()
            .invoke(delete_event(&a, "req-w"), short())
            .await
            .unwrap();
        assert_eq!(out["outcome"], "continued", "{out}");
        assert_eq!(out["phase"], "wait_writers");
        assert_eq!(
            footprint(&env, &a, 4).await,
            before,
            "nothing deleted while writers live"
        );
        let rec = env.registry.require(&a).await.unwrap();
        assert_eq!(rec.config.state, TenantState::Deleting);
        assert_eq!(rec.next_run_at, None);
        // The in-flight puller's renewal after the epoch bump is refused; so is a new push.
        let now = Utc::now();
        assert!(
            env.registry
                .acquire_lease(&a, "puller-1", epoch, now + hour, now)
                .await
                .unwrap()
                == LeaseOutcome::EpochMoved
        );
        assert!(
            env.registry
                .acquire_push_lease(&a, "batch-8", now + hour)
                .await
                .unwrap()
                .is_none()
        );

        // The puller stops; the push batch is still being written: wait again, and with
        // no time to poll, the message goes back to the queue until the push lease runs
        // out (no new continuation: a chain of short invocations would spin).
        env.registry.release_lease(&a, "puller-1").await.unwrap();
        let batch = receive(&env, &env.config.delete_queue_url).await;
        let body: Value =
            serde_json::from_str(batch["Records"][0]["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["kind"], "delete");
        assert_eq!(body["phase"], "wait_writers");
        let response = env.deleter().invoke(batch.clone(), short()).await.unwrap();
        assert_eq!(
            handed_back(&response),
            vec![
                batch["Records"][0]["messageId"]
                    .as_str()
                    .unwrap()
                    .to_string()
            ]
        );
        eds_local::queue::delete_succeeded(
            &env.stack.aws.sqs,
            &env.config.delete_queue_url,
            &serde_json::from_value(batch.clone()).unwrap(),
            &serde_json::from_value(response).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(
            queue_counts(&env, &env.config.delete_queue_url).await,
            (0, 1),
            "the one message waits, invisible; nothing new was sent"
        );
        assert_eq!(footprint(&env, &a, 4).await, before);
        assert!(env.registry.receipt(&a, "req-w").await.unwrap().is_none());

        // The push writer finishes; once the visibility timeout passed, the same
        // message completes the deletion.
        env.registry
            .release_push_lease(&a, "batch-7")
            .await
            .unwrap();
        make_visible(&env, &env.config.delete_queue_url, &batch).await;
        let batch = receive(&env, &env.config.delete_queue_url).await;
        assert_eq!(
            batch["Records"].as_array().unwrap().len(),
            1,
            "one message per wait"
        );
        assert_eq!(
            batch["Records"][0]["attributes"]["ApproximateReceiveCount"],
            "2"
        );
        let response = env.deleter().invoke(batch.clone(), long()).await.unwrap();
        ack(&env, &env.config.delete_queue_url, &batch, &response).await;
        assert!(footprint(&env, &a, 4).await.is_empty());
        let receipt = env.registry.receipt(&a, "req-w").await.unwrap().unwrap();
        assert_eq!(receipt.counts["records"], 4);
        assert!(receipt.verified_empty);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deletion_resumes_across_continuations_with_tiny_pages() {
        let env = Env::new().await;
        let a = tid("del-pages");
        seed(&env, &a, 12, 12).await;
        let before = footprint(&env, &a, 12).await;
        let registry_items = before.tenant_items - 1; // all but CONFIG
        let bound = deletion_chain_bound(12, before.objects, registry_items, 1);
        // One record per page and a deadline already past on every invocation: each
        // invocation does its one guaranteed unit, so the deletion is carried by a
        // chain of continuations whose length depends on the pages, not on the clock.
        let deleter = eds_shared::wiring::delete::deleter_on(&env.stack.aws, &env.config)
            .with_options(tiny_pages());
        let invocations = expired_chain(
            &env,
            &env.config.delete_queue_url,
            delete_event(&a, "req-p"),
            bound,
            None,
            |ev| {
                let deleter = &deleter;
                async move { deleter.invoke(ev, expired()).await.unwrap() }
            },
        )
        .await;
        eprintln!(
            "deletion of 12 records in pages of 1: {invocations} invocations (bound {bound})"
        );
        // At least one invocation per record page, per registry page, for the fence and
        // the verification; at most the bound.
        assert!(
            invocations >= 12 + registry_items + 2,
            "the deletion really was split into its units ({invocations})"
        );
        assert!(footprint(&env, &a, 12).await.is_empty());
        let receipt = env.registry.receipt(&a, "req-p").await.unwrap().unwrap();
        assert!(receipt.verified_empty);
        assert_eq!(receipt.counts["records"], 12);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redelivered_deletion_continuation_is_harmless() {
        let env = Env::new().await;
        let a = tid("del-redeliver");
        seed(&env, &a, 6, 6).await;
        let before = footprint(&env, &a, 6).await;
        let bound = deletion_chain_bound(6, before.objects, before.tenant_items - 1, 1);
        let deleter = eds_shared::wiring::delete::deleter_on(&env.stack.aws, &env.config)
            .with_options(tiny_pages());
        // The second invocation's message is handled twice: the chain may fork in two,
        // each branch at most as long as the chain.
        let invocations = expired_chain(
            &env,
            &env.config.delete_queue_url,
            delete_event(&a, "req-r"),
            2 * bound,
            Some(2),
            |ev| {
                let deleter = &deleter;
                async move { deleter.invoke(ev, expired()).await.unwrap() }
            },
        )
        .await;
        assert!(
            invocations > 2,
            "the deletion really was split ({invocations})"
        );
        assert!(footprint(&env, &a, 6).await.is_empty());
        let receipt = env.registry.receipt(&a, "req-r").await.unwrap().unwrap();
        assert!(receipt.verified_empty);
        assert!(receipt.counts["records"] <= 6);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deletion_waiting_for_writers_hands_its_message_back_instead_of_spinning() {
        let env = Env::new().await;
        let a = tid("del-spin");
        seed(&env, &a, 2, 2).await;
        let epoch = env.registry.require(&a).await.unwrap().config.epoch;
        let now = Utc::now();
        let until = now + chrono::Duration::seconds(300);
        assert!(
            env.registry
                .acquire_lease(&a, "puller-1", epoch, until, now)
                .await
                .unwrap()
                == LeaseOutcome::Held
        );
        let before = footprint(&env, &a, 2).await;
        let url = env.config.delete_queue_url.clone();
        // Every invocation starts with no time left. The event has no message to hand
        // back: it continues once.
        let out = env
            .deleter()
            .invoke(delete_event(&a, "req-s"), expired())
            .await
            .unwrap();
        assert_eq!(out["outcome"], "continued", "{out}");
        // The continuation waits in the queue (invisible) instead of sending another.
        for round in 1..=3 {
            let batch = receive(&env, &url).await;
            assert_eq!(
                batch["Records"].as_array().unwrap().len(),
                1,
                "round {round}"
            );
            assert_eq!(
                batch["Records"][0]["attributes"]["ApproximateReceiveCount"],
                round.to_string(),
                "the same message each round"
            );
            let response = env
                .deleter()
                .invoke(batch.clone(), expired())
                .await
                .unwrap();
            assert_eq!(handed_back(&response).len(), 1, "round {round}: {response}");
            assert_eq!(queue_counts(&env, &url).await, (0, 1), "round {round}");
            // (Time passes: the visibility timeout runs out.)
            make_visible(&env, &url, &batch).await;
        }
        assert_eq!(
            footprint(&env, &a, 2).await,
            before,
            "nothing deleted while writers live"
        );

        // The lease runs out (the puller released it): the same message completes.
        env.registry.release_lease(&a, "puller-1").await.unwrap();
        let batch = receive(&env, &url).await;
        let response = env.deleter().invoke(batch.clone(), long()).await.unwrap();
        ack(&env, &url, &batch, &response).await;
        assert!(footprint(&env, &a, 2).await.is_empty());
        assert!(
            env.registry
                .receipt(&a, "req-s")
                .await
                .unwrap()
                .unwrap()
                .verified_empty
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_deletion_events_are_rejected_without_side_effects() {
        let env = Env::new().await;
        let a = tid("del-bad");
        seed(&env, &a, 2, 2).await;
        let before = footprint(&env, &a, 2).await;
        let config = env.registry.require(&a).await.unwrap();
        let bad = [
            event(
                "tenant.deletion_requested",
                json!({"tenant_id": a.as_str()}),
            ),
            event("tenant.deletion_requested", json!({"request_id": "r1"})),
            event(
                "tenant.deletion_requested",
                json!({"tenant_id": a.as_str(), "request_id": ""}),
            ),
            event(
                "tenant.deletion_requested",
                json!({"tenant_id": a.as_str(), "request_id": "r/1"}),
            ),
            event(
                "tenant.deletion_requested",
                json!({"tenant_id": a.as_str(), "request_id": "r1", "secret_name": "x"}),
            ),
            event(
                "tenant.deletion_requested",
                json!({"tenant_id": "No", "request_id": "r1"}),
            ),
            event(
                "tenant.disable_requested",
                json!({"tenant_id": a.as_str(), "request_id": "r1"}),
            ),
            {
                let mut e = delete_event(&a, "r1");
                e["source"] = json!("eds.other");
                e
            },
            json!({"Records": "not a list"}),
        ];
        for e in bad {
            assert!(
                env.deleter().invoke(e.clone(), long()).await.is_err(),
                "{e}"
            );
        }
        assert_eq!(footprint(&env, &a, 2).await, before);
        assert_eq!(env.registry.require(&a).await.unwrap(), config);
    }
}

// ------------------------------------------------------------------ races

mod races {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// SplitMix64: a tiny seeded generator, so a failing seed replays exactly.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    async fn jitter(rng: &mut Rng) {
        match rng.below(3) {
            0 => {}
            1 => tokio::task::yield_now().await,
            _ => tokio::time::sleep(Duration::from_millis(rng.below(15))).await,
        }
    }

    /// Pushed records 0..PUSHED, the pull writes 0..IDS (the rest exist only by pull).
    const PUSHED: usize = 2;
    const IDS: usize = 4;
    const SEEDS: u64 = 100;
    /// Seeds run concurrently on one stack.
    const GROUP: u64 = 10;
    /// Longer than any page write takes here: the simulated writer, like the real
    /// puller, can never write after its lease ran out.
    const LEASE: chrono::Duration = chrono::Duration::milliseconds(2500);

    #[derive(Default)]
    struct Tally {
        writer_refused: AtomicUsize,
        writer_finished: AtomicUsize,
        writer_crashed: AtomicUsize,
        pages_written: AtomicUsize,
        lifecycle_waited: AtomicUsize,
    }

    /// The puller's write loop: renew the lease (the fence), then commit a page of pull
    /// observations; repeat. Stops when the fence refuses it (and releases), or at the
    /// end, or "crashes" (stops without releasing: the lease has to expire).
    async fn pull_writer(
        env: Arc<Env>,
        tenant: TenantId,
        epoch: u64,
        seed: u64,
        tally: Arc<Tally>,
    ) {
        let mut rng = Rng(seed ^ 0x5eed);
        let owner = format!("puller-{seed}");
        let pages = 1 + rng.below(3) as u32;
        let crash_after = rng.chance(8).then(|| rng.below(u64::from(pages)) as u32);
        for round in 1..=pages {
            jitter(&mut rng).await;
            let now = Utc::now();
            if env
                .registry
                .acquire_lease(&tenant, &owner, epoch, now + LEASE, now)
                .await
                .unwrap()
                != LeaseOutcome::Held
            {
                env.registry.release_lease(&tenant, &owner).await.unwrap();
                tally.writer_refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
            jitter(&mut rng).await;
            let ids: Vec<usize> = (0..IDS).filter(|_| rng.chance(60)).collect();
            let out = env
                .store
                .apply_page(
                    &tenant,
                    ids.iter().map(|&i| pulled(i, round)).collect(),
                    Utc::now(),
                )
                .await
                .unwrap();
            assert_eq!(out.failed + out.rejected, 0, "seed {seed}: {out:?}");
            tally.pages_written.fetch_add(1, Ordering::Relaxed);
            if crash_after == Some(round) {
                tally.writer_crashed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        env.registry.release_lease(&tenant, &owner).await.unwrap();
        tally.writer_finished.fetch_add(1, Ordering::Relaxed);
    }

    async fn setup(env: &Env, tenant: &TenantId) -> u64 {
        let epoch = env.enable(tenant).await;
        let now = Utc::now();
        env.store
            .apply_page(tenant, (0..PUSHED).map(pushed).collect(), now)
            .await
            .unwrap();
        env.store
            .apply_page(tenant, (0..PUSHED).map(|i| pulled(i, 0)).collect(), now)
            .await
            .unwrap();
        epoch
    }

    async fn run_seeds<F, Fut>(label: &str, one: F)
    where
        F: Fn(Arc<Env>, u64, Arc<Tally>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        use futures::StreamExt;
        let tally = Arc::new(Tally::default());
        let started = std::time::Instant::now();
        // A fresh stack per group of seeds: the emulator's queries scan whole tables,
        // so small tables keep every interleaving cheap.
        for group in 0..SEEDS / GROUP {
            let env = Arc::new(Env::new().await);
            let results: Vec<_> = futures::stream::iter(group * GROUP..(group + 1) * GROUP)
                .map(|seed| tokio::spawn(one(env.clone(), seed, tally.clone())))
                .buffer_unordered(GROUP as usize)
                .collect()
                .await;
            for r in results {
                if let Err(e) = r {
                    match e.try_into_panic() {
                        Ok(panic) => std::panic::resume_unwind(panic),
                        Err(e) => panic!("seed task did not finish: {e}"),
                    }
                }
            }
        }
        eprintln!(
            "{label}: {SEEDS} seeded interleavings in {:.1}s; writer refused by the fence in {}, \
             finished before in {}, crashed holding its lease in {}; {} pull pages committed; \
             lifecycle waited for a lease in {}",
            started.elapsed().as_secs_f64(),
            tally.writer_refused.load(Ordering::Relaxed),
            tally.writer_finished.load(Ordering::Relaxed),
            tally.writer_crashed.load(Ordering::Relaxed),
            tally.pages_written.load(Ordering::Relaxed),
            tally.lifecycle_waited.load(Ordering::Relaxed),
        );
        assert_eq!(
            tally.writer_refused.load(Ordering::Relaxed)
                + tally.writer_finished.load(Ordering::Relaxed)
                + tally.writer_crashed.load(Ordering::Relaxed),
            SEEDS as usize
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn disable_racing_an_in_flight_pull_never_leaves_a_pulled_value_visible() {
        run_seeds("disable race", |env, seed, tally| async move {
            let tenant = TenantId::parse(format!("rd{seed}-{}", uniq())).unwrap();
            let epoch = setup(&env, &tenant).await;
            let writer = tokio::spawn(pull_writer(
                env.clone(),
                tenant.clone(),
                epoch,
                seed,
                tally.clone(),
            ));
            let mut rng = Rng(seed);
            tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
            let report = env
                .disabler()
                .disable(&tenant, &format!("seed-{seed}"), long().deadline)
                .await
                .unwrap();
            assert_eq!(report.outcome, DisableOutcome::Completed, "seed {seed}");
            if report.waited_ms > 0 {
                tally.lifecycle_waited.fetch_add(1, Ordering::Relaxed);
            }
            writer.await.unwrap();
            // After the disable completed (and the writer ended): every view is the
            // push layer, whatever the writer did.
            for i in 0..IDS {
                let head = env
                    .store
                    .get(&env.key(&tenant, &i.to_string()))
                    .await
                    .unwrap();
                let Some(head) = head else {
                    // Never written: the writer was fenced before it got to this id.
                    assert!(i >= PUSHED, "seed {seed}: pushed record {i} is missing");
                    continue;
                };
                assert_eq!(
                    head.state.mode,
                    ViewMode::PushOnly,
                    "seed {seed} record {i}"
                );
                let push = head.state.push.map(|l| l.fields).unwrap_or_default();
                assert_eq!(head.view.fields, push, "seed {seed} record {i}");
                for (field, value) in &head.view.fields {
                    assert_eq!(
                        push.get(field),
                        Some(value),
                        "seed {seed}: {field} from the pull"
                    );
                }
            }
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn delete_racing_an_in_flight_pull_leaves_nothing_behind() {
        run_seeds("delete race", |env, seed, tally| async move {
            let tenant = TenantId::parse(format!("rx{seed}-{}", uniq())).unwrap();
            let epoch = setup(&env, &tenant).await;
            let writer = tokio::spawn(pull_writer(
                env.clone(),
                tenant.clone(),
                epoch,
                seed,
                tally.clone(),
            ));
            let mut rng = Rng(seed);
            tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
            let job = eds_shared::jobs::LifecycleJob::Delete {
                tenant: tenant.clone(),
                request_id: format!("req-{seed}"),
                requested_at: Utc::now(),
                phase: Default::default(),
                shard: 0,
                counts: BTreeMap::new(),
            };
            let report = env
                .deleter()
                .run(job, &format!("seed-{seed}"), Via::Event, long().deadline)
                .await
                .unwrap();
            assert_eq!(report.outcome, DeleteOutcome::Completed, "seed {seed}");
            if report.waited_ms > 0 {
                tally.lifecycle_waited.fetch_add(1, Ordering::Relaxed);
            }
            writer.await.unwrap();
            // After the deletion completed (and the writer ended): nothing is left and
            // nothing was re-created.
            let left = footprint(&env, &tenant, IDS).await;
            assert!(left.is_empty(), "seed {seed}: {left:?}");
            assert!(
                env.registry
                    .receipt(&tenant, &format!("req-{seed}"))
                    .await
                    .unwrap()
                    .is_some()
            );
        })
        .await;
    }
}
