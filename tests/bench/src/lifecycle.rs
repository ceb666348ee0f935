//! Scheduler fan-out (group 7) and tenant deletion (group 8) against the emulator,
//! with every AWS request counted by an SDK interceptor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use chrono::Utc;
use eds_e2e::Stack;
use eds_local::queue::{delete_succeeded, receive_event};
use eds_shared::domain::ids::{AtsId, EntityKind, RecordKey, TenantId};
use eds_shared::domain::model::{LayerKind, Observation, ObservationScope};
use eds_shared::domain::version::Change;
use eds_shared::jobs::PullJob;
use eds_shared::pipeline::disable::{Deadline, LifecycleOptions};
use eds_shared::pipeline::scheduler::Scheduler;
use eds_shared::store::dynamodb::DynamoStore;
use eds_shared::store::{RecordRead, RecordWrite};
use eds_shared::tenants::dynamo::tenant_pk;
use eds_shared::tenants::{
    AtsSettings, DEFAULT_RECONCILE_EVERY_SECS, GreenhouseSettings, TenantConfig, TenantRegistry,
    TenantState, due_shard,
};
use eds_shared::tenants::{Erasure, TenantLifecycle};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::probe::{RequestCounter, counting_aws, thread_cpu};
use crate::report::{Figure, Goal};

pub const FANOUT_CMD: &str =
    "infra/local/scripts/with-emulator.sh cargo run --release -p eds-bench -- run --only fanout";
pub const DELETE_CMD: &str =
    "infra/local/scripts/with-emulator.sh cargo run --release -p eds-bench -- run --only delete";

fn tenant_config(id: &str) -> anyhow::Result<TenantConfig> {
    let now = Utc::now();
    Ok(TenantConfig {
        tenant_id: TenantId::parse(id)?,
        ats: AtsSettings::Greenhouse(GreenhouseSettings::default()),
        api_base_url: "http://127.0.0.1:9".into(),
        auth_url: None,
        secret_name: format!("eds/tenants/{id}"),
        attachment_hosts: vec![],
        allow_loopback_attachments: false,
        interval_secs: 900,
        reconcile_every_secs: DEFAULT_RECONCILE_EVERY_SECS,
        state: TenantState::Enabled,
        epoch: 0,
        state_reason: None,
        uses_refresh_token: false,
        remerge_pending: false,
        // Steady state: reconciliation not due, so a run is one claim per tenant.
        last_reconcile_at: Some(now),
        last_token_refresh_at: None,
        created_at: now,
        updated_at: now,
    })
}

/// Writes `items` with BatchWriteItem, 25 per request, 8 requests in flight, until
/// nothing is left unprocessed.
async fn batch_put(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    items: Vec<HashMap<String, AttributeValue>>,
) -> anyhow::Result<()> {
    let batches: Vec<Vec<HashMap<String, AttributeValue>>> =
        items.chunks(25).map(<[_]>::to_vec).collect();
    let done: Vec<anyhow::Result<()>> = futures::stream::iter(batches)
        .map(|batch| async move {
            let mut pending: Vec<WriteRequest> = batch
                .into_iter()
                .map(|item| {
                    PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .map(|p| WriteRequest::builder().put_request(p).build())
                })
                .collect::<Result<_, _>>()?;
            while !pending.is_empty() {
                let out = db
                    .batch_write_item()
                    .request_items(table, pending)
                    .send()
                    .await?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(table))
                    .unwrap_or_default();
            }
            Ok(())
        })
        .buffer_unordered(8)
        .collect()
        .await;
    done.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(())
}

/// `n` enabled, due tenants: one registered through the registry, its `CONFIG` item
/// copied for the others (tenant id, secret name and due shard replaced), so that
/// seeding costs n/25 requests instead of 2n.
async fn seed_tenants(stack: &Stack, registry: &TenantRegistry, n: usize) -> anyhow::Result<()> {
    let first = TenantId::parse("t00000")?;
    registry
        .enable(tenant_config(first.as_str())?, Utc::now())
        .await?;
    let table = stack.config.tenants_table.clone();
    let template = stack
        .aws
        .dynamodb
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(tenant_pk(&first)))
        .key("sk", AttributeValue::S("CONFIG".into()))
        .consistent_read(true)
        .send()
        .await?
        .item
        .ok_or_else(|| anyhow::anyhow!("template tenant not stored"))?;
    let mut items = Vec::with_capacity(n);
    for i in 1..n {
        let id = TenantId::parse(format!("t{i:05}"))?;
        let mut item = template.clone();
        item.insert("pk".into(), AttributeValue::S(tenant_pk(&id)));
        item.insert("tenant_id".into(), AttributeValue::S(id.to_string()));
        item.insert(
            "secret_name".into(),
            AttributeValue::S(format!("eds/tenants/{id}")),
        );
        item.insert("due_shard".into(), AttributeValue::S(due_shard(&id)));
        items.push(item);
    }
    batch_put(&stack.aws.dynamodb, &table, items).await
}

/// What the consumers received: the number of jobs, and the tenants they name.
type Received = (usize, HashSet<TenantId>);

/// The pull queue's consumer while the scheduler runs (what the puller's event source
/// mapping does in AWS): receives and deletes jobs until the scheduler is `done` and the
/// queue answers empty. Returns the jobs received and the tenants they name.
///
/// Why it is part of the benchmark: moto evaluates the queue's attributes, each a pass
/// over every message in the queue, several times per message sent to a FIFO queue, so a
/// send costs O(queue depth) there and 10,000 unconsumed jobs take hours to enqueue
/// (measured: 1,000 messages in 63 s into an unconsumed queue). SQS has no such cost, and
/// in production the queue is consumed while the scheduler sends.
async fn consume(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    done: Arc<AtomicBool>,
) -> anyhow::Result<Received> {
    let mut tenants = HashSet::new();
    let mut delivered = 0;
    loop {
        let finished = done.load(Ordering::Relaxed);
        let event = receive_event(&sqs, &queue_url, 10, 1)
            .await
            .map_err(|e| anyhow::anyhow!("receive: {e}"))?;
        if event.records.is_empty() {
            if finished {
                return Ok((delivered, tenants));
            }
            continue;
        }
        for m in &event.records {
            let job: PullJob = serde_json::from_str(m.body.as_deref().unwrap_or_default())?;
            tenants.insert(job.tenant);
            delivered += 1;
        }
        let entries = event
            .records
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle.clone())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        sqs.delete_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("delete: {}", aws_sdk_sqs::error::DisplayErrorContext(e))
            })?;
    }
}

/// Three pollers (like the event source mapping's several) on a thread and runtime of
/// their own, with their own SDK client, so that the scheduler's thread CPU excludes them.
/// One poller falls behind the scheduler on moto (its receive and delete cost O(depth) as
/// well), and the queue's depth then makes every send slower.
fn spawn_consumers(
    queue_url: String,
    done: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<Received>>> {
    Ok(std::thread::Builder::new()
        .name("consumer".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let sdk = eds_shared::lambda::sdk_config().await;
                let sqs = aws_sdk_sqs::Client::new(&sdk);
                let pollers: Vec<_> = (0..3)
                    .map(|_| tokio::spawn(consume(sqs.clone(), queue_url.clone(), done.clone())))
                    .collect();
                let (mut delivered, mut tenants) = (0, HashSet::new());
                for p in pollers {
                    let (n, t) = p.await??;
                    delivered += n;
                    tenants.extend(t);
                }
                Ok((delivered, tenants))
            })
        })?)
}

/// Group 7: one scheduler invocation over `n` due tenants, on a fresh stack each.
pub async fn fanout(sizes: &[usize]) -> anyhow::Result<Vec<Figure>> {
    let mut figs = Vec::new();
    let mut per_tenant = Vec::new();
    for &n in sizes {
        let stack = Stack::new().await?;
        let counter = RequestCounter::default();
        let aws = counting_aws(&stack.aws.sdk, &counter);
        let registry = Arc::new(TenantRegistry::new(
            aws.dynamodb.clone(),
            stack.config.tenants_table.clone(),
        ));
        let seed = Instant::now();
        seed_tenants(&stack, &registry, n).await?;
        let seeded_in = seed.elapsed();
        counter.reset();
        let scheduler = Scheduler::new(
            registry,
            aws.queue(&stack.config.pull_queue_url),
            eds_shared::connector::catalog::plan,
        );
        let done = Arc::new(AtomicBool::new(false));
        let consumers = spawn_consumers(stack.config.pull_queue_url.clone(), done.clone())?;
        let (t, cpu0) = (Instant::now(), thread_cpu());
        let report = scheduler
            .run(Utc::now() + chrono::Duration::seconds(1))
            .await?;
        let took = t.elapsed();
        let cpu = thread_cpu().saturating_sub(cpu0);
        done.store(true, Ordering::Relaxed);
        let (delivered, tenants) = tokio::task::spawn_blocking(move || consumers.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the consumer thread panicked"))??;
        let distinct = tenants.len();
        anyhow::ensure!(
            distinct == n,
            "{n} tenants: jobs delivered for only {distinct} of them"
        );
        let ops = counter.describe();
        let sends = counter.matching("sqs.SendMessage");
        let expect = n.div_ceil(10) as f64;
        figs.push(Figure::new(
            7,
            &format!("scheduler.sqs_calls_{n}"),
            &format!("scheduler: SQS send calls for {n} due tenants"),
            sends as f64,
            "calls",
            Goal::Exactly(expect),
            FANOUT_CMD,
            format!(
                "claimed {}, messages {}, calls reported by the scheduler {}; consumer received {delivered} jobs for {distinct} tenants; DynamoDB requests {} ({:.1} per tenant); requests: {ops}; eds CPU {:.0} µs per tenant; seeding took {:.0} s",
                report.claimed,
                report.messages,
                report.sqs_calls,
                counter.matching("dynamodb."),
                counter.matching("dynamodb.") as f64 / n.max(1) as f64,
                cpu.as_secs_f64() * 1e6 / n.max(1) as f64,
                seeded_in.as_secs_f64()
            ),
        ));
        figs.push(Figure::new(
            7,
            &format!("scheduler.seconds_{n}"),
            &format!("scheduler: time for {n} due tenants"),
            took.as_secs_f64(),
            "s",
            Goal::None,
            FANOUT_CMD,
            format!(
                "{:.1} s of it waiting on the emulator's answers (summed over the 16 claims in flight)",
                counter.wire_time().as_secs_f64()
            ),
        ));
        figs.push(Figure::new(
            7,
            &format!("scheduler.eds_cpu_us_per_tenant_{n}"),
            &format!("scheduler: eds CPU per tenant at {n} tenants"),
            cpu.as_secs_f64() * 1e6 / n.max(1) as f64,
            "µs/tenant",
            Goal::None,
            FANOUT_CMD,
            "thread CPU of the scheduler run (claims, JSON, SDK); the emulator runs in another process",
        ));
        figs.push(Figure::new(
            7,
            &format!("scheduler.duplicate_jobs_{n}"),
            &format!("scheduler: jobs the consumers received twice, {n} due tenants"),
            (delivered - distinct) as f64,
            "jobs",
            Goal::None,
            FANOUT_CMD,
            if sends == report.sqs_calls as u64 {
                format!(
                    "the scheduler sent each job once ({sends} SendMessageBatch attempts for {} calls); a second receipt is moto's: its receive is not atomic across request threads, so concurrent pollers can be handed one FIFO message twice, which SQS does not do within the visibility timeout (and the puller's lease makes a duplicate job a no-op)",
                    report.sqs_calls
                )
            } else {
                format!(
                    "{sends} SendMessageBatch attempts for {} calls: retried batches can enqueue a job again where the emulator no longer deduplicates it",
                    report.sqs_calls
                )
            },
        ));
        per_tenant.push((n, took, cpu));
        figs.push(Figure::new(
            7,
            &format!("scheduler.dynamodb_requests_per_tenant_{n}"),
            &format!("scheduler: DynamoDB requests per tenant at {n} tenants"),
            counter.matching("dynamodb.") as f64 / n.max(1) as f64,
            "requests/tenant",
            Goal::None,
            FANOUT_CMD,
            "one conditional claim per tenant (the due index carries the interval, D18), plus the due-index shard queries",
        ));
    }
    if let (Some((n0, w0, c0)), Some((n1, w1, c1))) = (per_tenant.first(), per_tenant.last())
        && n1 > n0
    {
        let per = |d: &Duration, n: &usize| d.as_secs_f64() / *n as f64;
        figs.push(Figure::new(
            7,
            "scheduler.cpu_per_tenant_growth",
            &format!("scheduler: eds CPU per tenant at {n1} ÷ at {n0} (1.0 = linear)"),
            per(c1, n1) / per(c0, n0),
            "×",
            Goal::AtMost(1.5),
            FANOUT_CMD,
            "linear growth is a constant cost per tenant; 1.5 leaves room for the shared machine's noise",
        ));
        figs.push(Figure::new(
            7,
            "scheduler.wall_per_tenant_growth",
            &format!("scheduler: wall time per tenant at {n1} ÷ at {n0}"),
            per(w1, n1) / per(w0, n0),
            "×",
            Goal::None,
            FANOUT_CMD,
            "the requests per tenant stay constant; the emulator's own cost per request is not (docs/benchmarks.md §7)",
        ));
    }
    Ok(figs)
}

/// Group 8: a tenant with `records` × `versions` version items, seeded directly with
/// BatchWriteItem, deleted by the real handler to its receipt.
pub async fn deletion(records: usize, versions: u64) -> anyhow::Result<Vec<Figure>> {
    let stack = Stack::new().await?;
    let tenant = TenantId::parse("doomed")?;
    stack
        .registry()
        .enable(tenant_config(tenant.as_str())?, Utc::now())
        .await?;

    // One real record through the store gives the item layout; its head is the template
    // of every seeded version.
    let store = stack.store();
    let template_id = AtsId::parse("template".to_string())?;
    let obs = Observation {
        entity: EntityKind::Candidate,
        ats_id: template_id.clone(),
        ats_updated_at: Some(Utc::now()),
        scope: ObservationScope::Record {
            fields: serde_json::from_value(json!({
                "first_name": "Ada", "last_name": "Lovelace", "title": "Engineer",
                "emails": [{"type": "personal", "value": "ada@example.com"}],
                "tags": ["rust"], "created_at": "2026-01-15T09:30:00.000Z"
            }))?,
        },
    };
    store
        .apply_page(
            &tenant,
            vec![Change::Observe {
                layer: LayerKind::Pull,
                observation: obs,
            }],
            Utc::now(),
        )
        .await?;
    let head = store
        .get(&RecordKey::new(
            tenant.clone(),
            EntityKind::Candidate,
            template_id,
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("template record not stored"))?;

    let seed = Instant::now();
    let mut items = Vec::with_capacity(records * (versions as usize + 1));
    for r in 0..records {
        let key = RecordKey::new(
            tenant.clone(),
            EntityKind::Candidate,
            AtsId::from_u64(1_000_000 + r as u64),
        );
        for v in 1..=versions {
            let mut ver = head.clone();
            ver.version = v;
            items.push(DynamoStore::encode_item(&key, &ver, false)?);
            if v == versions {
                items.push(DynamoStore::encode_item(&key, &ver, true)?);
            }
        }
    }
    batch_put(&stack.aws.dynamodb, &stack.config.records_table, items).await?;
    let seeded_in = seed.elapsed();

    let counter = RequestCounter::default();
    let aws = counting_aws(&stack.aws.sdk, &counter);
    let deleter = eds_shared::wiring::delete::deleter_on(&aws, &stack.config)
        .with_options(LifecycleOptions::default());
    let event: EventBridgeEvent<Value> = serde_json::from_value(json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "tenant.deletion_requested", "source": "eds.settings",
        "account": "000000000000", "time": Utc::now().to_rfc3339(), "region": "us-east-1",
        "resources": [],
        "detail": {"tenant_id": tenant.as_str(), "request_id": "bench-delete-1"}
    }))?;
    // A Lambda invocation of the delete function lasts at most 900 s.
    let invocation = Duration::from_secs(900);
    let t = Instant::now();
    let mut invocations = 1;
    let first = deleter
        .on_event(&event, Deadline::after(invocation))
        .await?;
    let mut done = first.receipt.is_some();
    while !done {
        let ev = receive_event(&aws.sqs, &stack.config.delete_queue_url, 10, 1)
            .await
            .map_err(anyhow::Error::msg)?;
        if ev.records.is_empty() {
            break;
        }
        invocations += 1;
        let resp = deleter.on_sqs(&ev, Deadline::after(invocation)).await;
        delete_succeeded(&aws.sqs, &stack.config.delete_queue_url, &ev, &resp)
            .await
            .map_err(anyhow::Error::msg)?;
        done = stack
            .registry()
            .receipt(&tenant, "bench-delete-1")
            .await?
            .is_some();
    }
    let took = t.elapsed();
    let receipt = stack.registry().receipt(&tenant, "bench-delete-1").await?;
    let left = deleter.leftovers(&tenant).await?;
    if receipt.is_none() || !left.is_empty() {
        anyhow::bail!("deletion did not complete: leftovers {left:?}");
    }
    let total_versions = records as u64 * versions;
    let reqs = counter.total();
    let detail = counter.describe();
    Ok(vec![
        Figure::new(
            8,
            "delete.requests",
            &format!("deletion of a {total_versions}-version tenant: AWS requests"),
            reqs as f64,
            "requests",
            Goal::None,
            DELETE_CMD,
            format!(
                "{records} records × {versions} versions (+ heads); {detail}; {invocations} invocation(s); seeding {:.0} s",
                seeded_in.as_secs_f64()
            ),
        ),
        Figure::new(
            8,
            "delete.items_per_request",
            "deletion: items removed per DynamoDB request",
            (total_versions + records as u64) as f64 / counter.matching("dynamodb.").max(1) as f64,
            "items/request",
            Goal::None,
            DELETE_CMD,
            "BatchWriteItem carries 25 deletes; two BatchGetItem per 100 records locate them (the head names its versions, D16)",
        ),
        Figure::new(
            8,
            "delete.seconds",
            &format!("deletion of a {total_versions}-version tenant: time to receipt"),
            took.as_secs_f64(),
            "s",
            Goal::None,
            DELETE_CMD,
            "against the emulator, default options (8 records in parallel)",
        ),
    ])
}
