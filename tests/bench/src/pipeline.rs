//! The pull against its physical limits (figure groups 1, 2, 3 and 5): the real puller
//! (scheduler job, SQS, lease, connector, merge, DynamoDB store) against the Greenhouse
//! simulator and the emulator.
//!
//! The pipeline runs on this process's main thread (a current-thread runtime), the
//! simulator on its own runtime threads (`sim-worker`), the emulator in another
//! process: the main thread's CPU clock is therefore eds's own cost. The connector is
//! wrapped so that the time and CPU of every connector call (HTTP + JSON + normalise)
//! are split from the rest of a page (merge + store + lease + checkpoint).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use eds_e2e::Stack;
use eds_local::queue::{delete_succeeded, receive_event};
use eds_shared::connection::{ConnectError, Connection, ConnectorFactory};
use eds_shared::connector::{AtsConnector, ConnectorError, Cursor, IdPage, Page, RequestStats};
use eds_shared::connector::{Stream, Window};
use eds_shared::domain::ids::TenantId;
use eds_shared::domain::model::{LayerKind, ObservationScope};
use eds_shared::domain::version::Change;
use eds_shared::pipeline::puller::{JobReport, Puller, PullerSettings};
use eds_shared::store::RecordWrite;
use eds_shared::tenants::TenantLifecycle;
use eds_shared::tenants::{StreamName, TenantConfig};
use greenhouse_sim::{ALL_SCOPES, Scenario, ScenarioSpec, SimConfig, SimHandle, Simulator};
use serde_json::json;
use tokio::runtime::Handle;

use crate::probe::{emulator_pid, named_threads_cpu, pid_cpu, process_cpu, thread_cpu};
use crate::report::{Figure, Goal};

pub const CMD: &str =
    "infra/local/scripts/with-emulator.sh cargo run --release -p eds-bench -- run --only pipeline";

/// Time and CPU spent inside connector calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct StageTime {
    pub calls: u64,
    pub wall: Duration,
    pub cpu: Duration,
}

/// The connector as built by the real factory, with every call timed.
struct TimedAts {
    inner: Arc<dyn AtsConnector>,
    acc: Arc<Mutex<StageTime>>,
}

impl TimedAts {
    fn add(&self, wall: Duration, cpu: Duration) {
        if let Ok(mut a) = self.acc.lock() {
            a.calls += 1;
            a.wall += wall;
            a.cpu += cpu;
        }
    }
}

#[async_trait]
impl AtsConnector for TimedAts {
    fn streams(&self) -> &'static [Stream] {
        self.inner.streams()
    }

    async fn list_changed(
        &self,
        stream: Stream,
        window: &Window,
        cursor: Option<&Cursor>,
        deadline: tokio::time::Instant,
    ) -> Result<Page, ConnectorError> {
        let (w, c) = (Instant::now(), thread_cpu());
        let r = self
            .inner
            .list_changed(stream, window, cursor, deadline)
            .await;
        self.add(w.elapsed(), thread_cpu().saturating_sub(c));
        r
    }

    async fn list_ids(
        &self,
        stream: Stream,
        cursor: Option<&Cursor>,
        deadline: tokio::time::Instant,
    ) -> Result<IdPage, ConnectorError> {
        let (w, c) = (Instant::now(), thread_cpu());
        let r = self.inner.list_ids(stream, cursor, deadline).await;
        self.add(w.elapsed(), thread_cpu().saturating_sub(c));
        r
    }

    fn metrics(&self) -> RequestStats {
        self.inner.metrics()
    }
}

/// Wraps the real factory's connections in [`TimedAts`].
pub struct TimedFactory {
    inner: Arc<dyn ConnectorFactory>,
    pub acc: Arc<Mutex<StageTime>>,
}

#[async_trait]
impl ConnectorFactory for TimedFactory {
    async fn connect(&self, cfg: &TenantConfig) -> Result<Connection, ConnectError> {
        let c = self.inner.connect(cfg).await?;
        Ok(Connection {
            ats: Arc::new(TimedAts {
                inner: c.ats,
                acc: self.acc.clone(),
            }),
            tokens: c.tokens,
            attachments: c.attachments,
        })
    }
}

/// A puller whose connector calls are timed.
pub fn timed_puller(stack: &Stack) -> anyhow::Result<(Puller, Arc<Mutex<StageTime>>)> {
    let mut puller = stack.puller(PullerSettings::default())?;
    let acc = Arc::new(Mutex::new(StageTime::default()));
    puller.factory = Arc::new(TimedFactory {
        inner: puller.factory.clone(),
        acc: acc.clone(),
    });
    Ok((puller, acc))
}

pub fn stage(acc: &Arc<Mutex<StageTime>>) -> StageTime {
    acc.lock().map(|a| *a).unwrap_or_default()
}

/// Starts a simulator on the simulator runtime (its threads are `sim-worker-*`).
pub async fn start_sim(
    sims: &Handle,
    cfg: SimConfig,
    scenario: &Scenario,
) -> anyhow::Result<SimHandle> {
    let truth = scenario.truth.clone();
    let sim = sims.spawn(Simulator::start(cfg, truth)).await??;
    sim.add_oauth_client("bench", "bench-secret", ALL_SCOPES);
    Ok(sim)
}

pub fn scenario(candidates: usize, seed: u64) -> Scenario {
    Scenario::generate(&ScenarioSpec {
        seed,
        candidates,
        jobs: (candidates / 40).max(5),
        now: Utc::now() - chrono::Duration::minutes(10),
        ..ScenarioSpec::default()
    })
}

/// Registers a tenant against `sim`; `reconciled` marks the periodic reconciliation as
/// just done, so that a run is the incremental pull alone.
pub async fn enable(
    stack: &Stack,
    tenant: &str,
    sim: &SimHandle,
    reconciled: bool,
) -> anyhow::Result<TenantConfig> {
    let cfg = stack
        .enable_greenhouse_tenant(
            tenant,
            sim,
            json!({"kind": "client_credentials", "client_id": "bench", "client_secret": "bench-secret"}),
        )
        .await?;
    if reconciled {
        stack
            .registry()
            .touch(&cfg.tenant_id, "last_reconcile_at", Utc::now())
            .await?;
    }
    Ok(cfg)
}

/// What driving the pull queue to empty cost.
#[derive(Debug, Default)]
pub struct Drive {
    pub report: JobReport,
    pub batches: usize,
    /// Wall time inside the puller's batch handler.
    pub wall: Duration,
    /// This thread's CPU time inside the puller's batch handler.
    pub cpu: Duration,
}

/// The local event source: receive one job at a time, run the real batch handler,
/// delete what succeeded; only the handler is timed.
pub async fn drive(stack: &Stack, puller: &Puller) -> anyhow::Result<Drive> {
    let mut d = Drive::default();
    let mut empty = 0;
    loop {
        let event = receive_event(&stack.aws.sqs, &stack.config.pull_queue_url, 1, 0)
            .await
            .map_err(anyhow::Error::msg)?;
        if event.records.is_empty() {
            empty += 1;
            if empty > 2 {
                return Ok(d);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        empty = 0;
        d.batches += 1;
        let (w, c) = (Instant::now(), thread_cpu());
        let invocation_budget = eds_shared::invocation::Invocation::after(Duration::from_secs(900));
        let (response, report) = puller.handle(event.clone(), invocation_budget).await;
        d.wall += w.elapsed();
        d.cpu += thread_cpu().saturating_sub(c);
        if !response.batch_item_failures.is_empty() {
            anyhow::bail!("a pull job failed: {:?}", report.counts);
        }
        delete_succeeded(
            &stack.aws.sqs,
            &stack.config.pull_queue_url,
            &event,
            &response,
        )
        .await
        .map_err(anyhow::Error::msg)?;
        d.report.counts.add(&report.counts);
        d.report.versions_written += report.versions_written;
        d.report.continuations_sent += report.continuations_sent;
    }
}

/// Settings of the pipeline benchmarks.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub candidates: usize,
    /// Candidates of the connector crawls (groups 1 and 2).
    pub crawl_candidates: usize,
    pub rate_limit: u32,
    pub rate_window: Duration,
}

/// Requests to the Harvest API proper (`/v3/...`), without token and file downloads.
fn api_requests(s: &greenhouse_sim::Stats) -> u64 {
    s.requests
        .iter()
        .filter(|(k, _)| k.contains(" /v3/"))
        .map(|(_, v)| v.values().sum::<u64>())
        .sum()
}

/// The fewest list requests a full backfill can make: one per started page of 500,
/// at least one per stream.
fn page_floor(sc: &Scenario) -> u64 {
    let t = &sc.truth;
    [
        t.candidates.len(),
        t.applications.len(),
        t.jobs.len(),
        t.attachments.len(),
    ]
    .iter()
    .map(|n| (*n as u64).div_ceil(500).max(1))
    .sum()
}

fn endpoints(s: &greenhouse_sim::Stats) -> String {
    s.requests
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.values().sum::<u64>()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Groups 1, 3 and 5: full backfill and unchanged incremental run with the rate limit
/// off, then the store alone on one page.
pub async fn unlimited(
    stack: &Stack,
    sims: &Handle,
    opts: &PipelineOptions,
) -> anyhow::Result<Vec<Figure>> {
    let mut figs = Vec::new();
    let sc = scenario(opts.candidates, 101);
    let sim = start_sim(sims, SimConfig::default(), &sc).await?;
    // A tenant's first sync as the scheduler plans it: backfill and first reconciliation.
    let cfg = enable(stack, "bench-full", &sim, false).await?;
    let (puller, acc) = timed_puller(stack)?;

    let moto = emulator_pid();
    let moto0 = moto.and_then(pid_cpu);
    let sim0 = named_threads_cpu("sim-worker");
    let proc0 = process_cpu();
    let t0 = Utc::now();
    stack.scheduler().run(t0).await?;
    let d = drive(stack, &puller).await?;
    let sim_cpu = named_threads_cpu("sim-worker").saturating_sub(sim0);
    let proc_cpu = process_cpu().saturating_sub(proc0);
    let moto_cpu = match (moto, moto0) {
        (Some(p), Some(c0)) => pid_cpu(p).map(|c| c.saturating_sub(c0)),
        _ => None,
    };
    let st = sim.stats();
    let conn = stage(&acc);
    let records = d.report.counts.records_seen.max(1) as f64;
    let streams = StreamName::ALL.len() as u64;
    let pages_per_stream = format!(
        "records {}, API requests {} ({}), token requests {}",
        d.report.counts.records_seen,
        api_requests(&st),
        endpoints(&st),
        st.token_requests
    );

    // Group 1: the puller makes no request beyond the page floor.
    figs.push(Figure::new(
        1,
        "ats.requests_over_page_floor_backfill",
        "puller first sync (backfill + reconciliation): ATS requests beyond one per page of 500 per stream",
        api_requests(&st) as f64 - page_floor(&sc) as f64,
        "requests",
        Goal::AtMost(0.0),
        CMD,
        format!(
            "{} candidates scenario through the real puller; page floor {}; {pages_per_stream}",
            opts.candidates,
            page_floor(&sc)
        ),
    ));

    figs.push(Figure::new(
        1,
        "ats.first_sync_requests_over_floor_ratio",
        "first sync: ATS requests (incl. token) ÷ (⌈records/500⌉ per stream + 1 token)",
        (api_requests(&st) + st.token_requests) as f64 / (page_floor(&sc) + 1) as f64,
        "ratio",
        Goal::AtMost(1.05),
        CMD,
        format!(
            "the first reconciliation uses the backfill's listing (issue P item 8); {pages_per_stream}"
        ),
    ));

    // Group 3: throughput and CPU by stage.
    let store_wall = d.wall.saturating_sub(conn.wall);
    let store_cpu = d.cpu.saturating_sub(conn.cpu);
    let us = |t: Duration| t.as_secs_f64() * 1e6 / records;
    figs.push(Figure::new(
        3,
        "e2e.records_per_second",
        "backfill throughput: pull + normalise + merge + store (rate limit off)",
        records / d.wall.as_secs_f64(),
        "records/s",
        Goal::None,
        CMD,
        format!(
            "{} records in {:.1} s of handler time ({} jobs); bounded by the emulator's latency, not by eds's CPU",
            d.report.counts.records_seen,
            d.wall.as_secs_f64(),
            d.batches
        ),
    ));
    figs.push(Figure::new(
        3,
        "e2e.cpu_us_per_record",
        "eds CPU per record: pull + normalise + merge + store",
        us(d.cpu),
        "µs/record",
        Goal::None,
        CMD,
        format!(
            "thread CPU clock of the pipeline thread; the simulator (own threads) and the emulator (own process) are excluded; whole process incl. simulator and SDK background threads: {:.0} µs/record",
            us(proc_cpu)
        ),
    ));
    figs.push(Figure::new(
        3,
        "e2e.cpu_us_per_record.pull_normalise",
        "  of which pull + normalise (connector calls: HTTP, JSON, mapping)",
        us(conn.cpu),
        "µs/record",
        Goal::None,
        CMD,
        format!(
            "{} connector calls, {:.1} s wall",
            conn.calls,
            conn.wall.as_secs_f64()
        ),
    ));
    figs.push(Figure::new(
        3,
        "e2e.cpu_us_per_record.merge_store",
        "  of which attachment downloads + merge + store + lease/checkpoint",
        us(store_cpu),
        "µs/record",
        Goal::None,
        CMD,
        format!(
            "{:.1} s wall outside connector calls",
            store_wall.as_secs_f64()
        ),
    ));
    figs.push(Figure::new(
        3,
        "e2e.cpu_us_per_record.simulator",
        "  excluded: the simulator's CPU per record",
        us(sim_cpu),
        "µs/record",
        Goal::None,
        CMD,
        "CPU of the simulator's runtime threads, same run",
    ));
    if let Some(m) = moto_cpu {
        figs.push(Figure::new(
            3,
            "e2e.cpu_us_per_record.emulator",
            "  excluded: the emulator's (moto) CPU per record",
            us(m),
            "µs/record",
            Goal::None,
            CMD,
            "CPU of the moto process, same run: the emulator is what limits the throughput here",
        ));
    }

    // Group 1: an unchanged incremental run.
    sim.reset_stats();
    let t1 = t0 + chrono::Duration::seconds(901);
    stack.scheduler().run(t1).await?;
    let inc = drive(stack, &puller).await?;
    let st = sim.stats();
    figs.push(Figure::new(
        1,
        "ats.requests_incremental_unchanged",
        "ATS requests, incremental run with no changes (all streams, incl. token)",
        (api_requests(&st) + st.token_requests) as f64,
        "requests",
        Goal::Exactly(streams as f64),
        CMD,
        format!(
            "{streams} streams; {}; versions written {}",
            endpoints(&st),
            inc.report.versions_written
        ),
    ));

    // Group 5: the store alone on one page of candidates.
    figs.extend(store_requests(stack, &puller, &cfg, t1).await?);
    Ok(figs)
}

/// Group 5: DynamoDB requests per created, unchanged and changed record, from the
/// store's own count (`PageOutcome.requests`).
async fn store_requests(
    stack: &Stack,
    puller: &Puller,
    cfg: &TenantConfig,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Figure>> {
    let conn = puller.factory.connect(cfg).await?;
    let window = Window {
        from: now - chrono::Duration::days(3650),
        to: now,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let page = conn
        .ats
        .list_changed(StreamName::Candidates, &window, None, deadline)
        .await?;
    let obs = page.observations;
    let n = obs.len().max(1) as f64;
    let tenant = TenantId::parse("bench-store")?;
    let store = stack.store();
    let changes = |obs: &[eds_shared::domain::model::Observation]| -> Vec<Change> {
        obs.iter()
            .cloned()
            .map(|observation| Change::Observe {
                layer: LayerKind::Pull,
                observation,
            })
            .collect()
    };
    let created = store.apply_page(&tenant, changes(&obs), now).await?;
    let unchanged = store.apply_page(&tenant, changes(&obs), now).await?;
    let mut changed_obs = obs.clone();
    for (i, o) in changed_obs.iter_mut().enumerate() {
        o.ats_updated_at = o.ats_updated_at.map(|t| t + chrono::Duration::minutes(1));
        if let ObservationScope::Record { fields } = &mut o.scope {
            fields.insert("title".into(), json!(format!("Changed title {i}")));
        }
    }
    let changed = store
        .apply_page(&tenant, changes(&changed_obs), now)
        .await?;
    let cmd = CMD;
    let note = |o: &eds_shared::store::PageOutcome| {
        format!(
            "page of {} candidates: {} reads, {} writes (requests, batches count once); created {}, updated {}, unchanged {}",
            obs.len(),
            o.requests.reads,
            o.requests.writes,
            o.created,
            o.updated,
            o.unchanged
        )
    };
    Ok(vec![
        Figure::new(
            5,
            "dynamodb.writes_per_unchanged_record",
            "DynamoDB write requests per unchanged record",
            unchanged.requests.writes as f64 / n,
            "writes/record",
            Goal::AtMost(0.0),
            cmd,
            note(&unchanged),
        ),
        Figure::new(
            5,
            "dynamodb.reads_per_unchanged_record",
            "DynamoDB read requests per unchanged record",
            unchanged.requests.reads as f64 / n,
            "reads/record",
            Goal::None,
            cmd,
            "heads are read with BatchGetItem, 100 keys per request",
        ),
        Figure::new(
            5,
            "dynamodb.writes_per_changed_record",
            "DynamoDB write requests per changed record",
            changed.requests.writes as f64 / changed.updated.max(1) as f64,
            "writes/record",
            Goal::AtMost(2.0),
            cmd,
            note(&changed),
        ),
        Figure::new(
            5,
            "dynamodb.writes_per_created_record",
            "DynamoDB write requests per new record",
            created.requests.writes as f64 / created.created.max(1) as f64,
            "writes/record",
            Goal::None,
            cmd,
            note(&created),
        ),
    ])
}

/// Every page of every stream of a full window, as the puller's pull steps read them
/// (pull + normalise; the records are dropped). Returns records, calls, thread CPU.
async fn crawl(conn: &Connection, now: DateTime<Utc>) -> anyhow::Result<(u64, u64, Duration)> {
    let window = Window {
        from: now - chrono::Duration::days(3650),
        to: now + chrono::Duration::minutes(1),
    };
    let cpu0 = thread_cpu();
    let (mut records, mut calls) = (0u64, 0u64);
    for stream in StreamName::ALL {
        let mut cursor: Option<Cursor> = None;
        loop {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
            let page = conn
                .ats
                .list_changed(stream, &window, cursor.as_ref(), deadline)
                .await?;
            calls += 1;
            records += page.observations.len() as u64;
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
    }
    Ok((records, calls, thread_cpu().saturating_sub(cpu0)))
}

pub const CRAWL_CMD: &str =
    "infra/local/scripts/with-emulator.sh cargo run --release -p eds-bench -- run --only crawl";

/// Groups 1 and 2 at scale: the connector's full backfill crawl of a large scenario,
/// first without a limit (requests per 1,000 records), then under the simulator's rate
/// limit (wall time against the lower bound, 429s). The store is left out here: against
/// the emulator it is slower than the pacing, which would hide the limiter (the
/// puller's own requests are checked against the page floor in the pipeline run).
pub async fn crawls(
    stack: &Stack,
    sims: &Handle,
    opts: &PipelineOptions,
) -> anyhow::Result<Vec<Figure>> {
    let mut figs = Vec::new();
    let t = Instant::now();
    let sc = scenario(opts.crawl_candidates, 404);
    let generated = t.elapsed();
    let puller = stack.puller(PullerSettings::default())?;

    let sim = start_sim(sims, SimConfig::default(), &sc).await?;
    let cfg = enable(stack, "bench-crawl", &sim, true).await?;
    let conn = puller.factory.connect(&cfg).await?;
    let (records, calls, cpu) = crawl(&conn, Utc::now()).await?;
    let st = sim.stats();
    let n = records.max(1) as f64;
    figs.push(Figure::new(
        1,
        "ats.requests_per_1000_records_backfill",
        "ATS requests per 1,000 records, full backfill at per_page 500 (incl. token)",
        (api_requests(&st) + st.token_requests) as f64 * 1000.0 / n,
        "requests/1000 records",
        Goal::AtMost(2.1),
        CRAWL_CMD,
        format!(
            "{} candidates scenario (generated in {:.1} s): {records} records in {calls} pages; {}; page floor {}; the limit 2.0 is reached only as the last partial page of each stream vanishes",
            opts.crawl_candidates,
            generated.as_secs_f64(),
            endpoints(&st),
            page_floor(&sc)
        ),
    ));
    figs.push(Figure::new(
        3,
        "connector.cpu_us_per_record_at_scale",
        "pull + normalise CPU per record (connector crawl, large scenario)",
        cpu.as_secs_f64() * 1e6 / n,
        "µs/record",
        Goal::None,
        CRAWL_CMD,
        format!("{records} records; HTTP client, JSON parse and Greenhouse → canonical mapping on the pipeline thread"),
    ));

    let limited = SimConfig {
        rate_limit_v3: opts.rate_limit,
        rate_window_v3: opts.rate_window,
        ..SimConfig::default()
    };
    let sim = start_sim(sims, limited, &sc).await?;
    let cfg = enable(stack, "bench-crawl-limited", &sim, true).await?;
    let conn = puller.factory.connect(&cfg).await?;
    let start = Instant::now();
    let (records, calls, _) = crawl(&conn, Utc::now()).await?;
    let wall = start.elapsed();
    let st = sim.stats();
    let requests = api_requests(&st);
    let w = opts.rate_window.as_secs_f64();
    let l = f64::from(opts.rate_limit);
    let lower = requests as f64 * w / l;
    let m = conn.ats.metrics();
    figs.push(Figure::new(
        2,
        "ratelimit.backfill_wall_over_lower_bound",
        "rate-limited backfill crawl: wall time ÷ (requests × window ÷ limit)",
        wall.as_secs_f64() / lower,
        "×",
        Goal::AtMost(1.10),
        CRAWL_CMD,
        format!(
            "limit {} requests per {:.0} s window (Greenhouse's 50 per 30 s scaled down to fit the run; the pacing logic is the same), {records} records, {requests} API requests in {calls} pages, lower bound {lower:.1} s, wall {:.1} s, limiter waits {} ms; fixed windows let the first window's budget go at once, so the ratio can be below 1",
            opts.rate_limit,
            w,
            wall.as_secs_f64(),
            m.rate_limit_wait.as_millis()
        ),
    ));
    figs.push(Figure::new(
        2,
        "ratelimit.responses_429",
        "429 responses during the rate-limited backfill crawl",
        st.rate_limited as f64,
        "responses",
        Goal::AtMost(0.0),
        CRAWL_CMD,
        format!(
            "the connector counted {} 429s and {} retries",
            m.rate_limited_429, m.retries
        ),
    ));
    Ok(figs)
}
