//! Lever's requests (issue L): the connector's full backfill crawl of 10,000
//! candidacies against the lower bound the API forces, an unchanged incremental run,
//! and 429s under Lever's bucket.
//!
//! The lower bound is computed from the simulator's truth, list by list:
//! ⌈rows/100⌉ pages (at least one) of the opportunities, postings, deleted list and
//! archive reasons, plus the child lists the API forces on each candidacy: at least one
//! page of its resumes and one of its files, plus one page per further 100. The
//! downloads (one per file, also forced) are not part of a crawl: the puller sends them
//! (`docs/ats/lever.md`).
//!
//! At Lever's rate (10/s) a crawl of 10,000 candidacies (about 20,000 requests) takes
//! over half an hour. So the large crawl runs with the bucket and the client's pacing
//! both scaled by [`SCALE`]: the same pacing logic at 20 times the rate. A small crawl
//! runs at the real rate, with the connector exactly as the puller builds it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use eds_e2e::Stack;
use eds_shared::connection::Connection;
use eds_shared::connector::lever::{LeverClient, LeverConfig, MAX_DELETED_WINDOW, MAX_LIMIT, PACE};
use eds_shared::connector::ratelimit::Pace;
use eds_shared::connector::{AtsConnector, Cursor, RateLimiter, Window};
use eds_shared::pipeline::puller::PullerSettings;
use eds_shared::tenants::{AtsSettings, LeverSettings};
use lever_sim::{
    ALL_SCOPES, LeverData, RateClock, Scenario, ScenarioSpec, SimConfig, SimHandle, Simulator,
    Stats,
};
use serde_json::json;
use tokio::runtime::Handle;

use crate::report::{Figure, Goal};

pub const CMD: &str =
    "infra/local/scripts/with-emulator.sh cargo run --release -p eds-bench -- run --only lever";

/// The factor the large crawl scales Lever's bucket and eds's pacing by.
pub const SCALE: f64 = 20.0;

/// Candidacies of the crawl at the real rate.
const REAL_RATE_CANDIDACIES: usize = 100;

const API_KEY: &str = "bench-lever-key";

async fn start(sims: &Handle, cfg: SimConfig, data: LeverData) -> anyhow::Result<SimHandle> {
    let sim = sims.spawn(Simulator::start(cfg, data)).await??;
    sim.add_api_key(API_KEY, ALL_SCOPES);
    Ok(sim)
}

/// Lever's bucket (10/s, bursts to 20, wall time), times `scale`.
fn bucket(scale: f64) -> SimConfig {
    SimConfig {
        rate_per_sec: 10.0 * scale,
        rate_burst: (20.0 * scale) as u32,
        rate_clock: RateClock::Real,
        ..SimConfig::default()
    }
}

fn scenario(candidacies: usize, seed: u64) -> Scenario {
    Scenario::generate(&ScenarioSpec {
        seed,
        candidacies,
        postings: 40,
        // Old enough that an incremental window of the last 15 minutes holds nothing.
        now: Utc::now() - chrono::Duration::hours(3),
        ..ScenarioSpec::default()
    })
}

async fn connect(stack: &Stack, tenant: &str, sim: &SimHandle) -> anyhow::Result<Connection> {
    let cfg = stack
        .enable_tenant_with(
            tenant,
            json!({"kind": "api_key", "api_key": API_KEY}),
            |c| {
                c.ats = AtsSettings::Lever(LeverSettings {});
                c.api_base_url = sim.api_base();
                c.auth_url = None;
                c.attachment_hosts = vec![];
            },
        )
        .await?;
    let puller = stack.puller(PullerSettings::default())?;
    Ok(puller.factory.connect(&cfg).await?)
}

/// Every page of every stream of `ats` within `window`; returns the pages read.
async fn crawl(ats: &dyn AtsConnector, window: &Window) -> anyhow::Result<u64> {
    let mut pages = 0u64;
    for &stream in ats.streams() {
        let mut cursor: Option<Cursor> = None;
        loop {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
            let page = ats
                .list_changed(stream, window, cursor.as_ref(), deadline)
                .await?;
            pages += 1;
            anyhow::ensure!(
                page.quarantined.is_empty(),
                "{} rows quarantined",
                page.quarantined.len()
            );
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
    }
    Ok(pages)
}

fn pages(rows: usize) -> u64 {
    rows.div_ceil(MAX_LIMIT as usize).max(1) as u64
}

/// The fewest requests a full crawl of `t` at `now` can make, by list. The deleted
/// list is asked for its last 30 days (`MAX_DELETED_WINDOW`; older deletions are the
/// reconciliation's), so only those count.
fn lower_bound(t: &LeverData, now: chrono::DateTime<Utc>) -> Vec<(&'static str, u64)> {
    let since = (now - MAX_DELETED_WINDOW).timestamp_millis();
    let deleted = t.deleted.iter().filter(|d| d.deleted_at >= since).count();
    let mut resumes = 0;
    let mut files = 0;
    for o in &t.opportunities {
        resumes += pages(t.resumes_of(&o.id).count());
        files += pages(t.files_of(&o.id).count());
    }
    let archived = t.opportunities.iter().any(|o| o.archived.is_some());
    vec![
        ("GET /v1/opportunities", pages(t.opportunities.len())),
        ("GET /v1/opportunities/{id}/resumes", resumes),
        ("GET /v1/opportunities/{id}/files", files),
        ("GET /v1/postings", pages(t.postings.len())),
        ("GET /v1/opportunities/deleted", pages(deleted)),
        (
            "GET /v1/archive_reasons",
            if archived {
                pages(t.archive_reasons.len())
            } else {
                0
            },
        ),
    ]
}

fn api_requests(s: &Stats) -> u64 {
    s.total_requests - s.token_requests
}

fn endpoints(s: &Stats) -> String {
    s.requests
        .iter()
        .map(|(e, by_status)| format!("{e}: {}", by_status.values().sum::<u64>()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn by_list(s: &Stats, bound: &[(&str, u64)]) -> String {
    let mut parts: Vec<String> = bound
        .iter()
        .map(|(e, b)| format!("{e}: {} (floor {b})", s.endpoint_total(e)))
        .collect();
    let named: u64 = bound.iter().map(|(e, _)| s.endpoint_total(e)).sum();
    let other = api_requests(s).saturating_sub(named);
    if other > 0 {
        parts.push(format!("other: {other}"));
    }
    parts.join(", ")
}

pub async fn run(stack: &Stack, sims: &Handle, candidacies: usize) -> anyhow::Result<Vec<Figure>> {
    let mut figs = Vec::new();
    let t = Instant::now();
    let sc = scenario(candidacies, 505);
    let generated = t.elapsed();

    // The large crawl: Lever's client with its pacing scaled like the bucket.
    let sim = start(sims, bucket(SCALE), sc.truth.clone()).await?;
    let conn = connect(stack, "bench-lever", &sim).await?;
    let pace = Pace {
        per_second: PACE.per_second * SCALE,
        burst: PACE.burst * SCALE,
    };
    let client = LeverClient::new(
        LeverConfig::new(sim.api_base().parse()?),
        conn.tokens.clone(),
        Arc::new(RateLimiter::paced(pace)),
    )?;
    let now = Utc::now();
    let bound = lower_bound(&sc.truth, now);
    let floor: u64 = bound.iter().map(|(_, b)| b).sum();
    let full = Window {
        from: chrono::DateTime::<Utc>::UNIX_EPOCH,
        to: now,
    };
    let started = Instant::now();
    let pages_read = crawl(&client, &full).await?;
    let wall = started.elapsed();
    let st = sim.stats();
    let requests = api_requests(&st);
    figs.push(Figure::new(
        1,
        "lever.backfill_requests_over_lower_bound",
        "Lever: requests of a full backfill crawl ÷ the lower bound the API forces",
        requests as f64 / floor as f64,
        "×",
        Goal::AtMost(1.05),
        CMD,
        format!(
            "{candidacies} candidacies generated ({} live, {} in the deleted list), {} resumes, {} files, {} postings (generated in {:.1} s); {requests} API requests in {pages_read} connector pages, lower bound {floor}; by list: {}; downloads (one per file) are the puller's, not the crawl's",
            sc.truth.opportunities.len(),
            sc.truth.deleted.len(),
            sc.truth.resumes.len(),
            sc.truth.files.len(),
            sc.truth.postings.len(),
            generated.as_secs_f64(),
            by_list(&st, &bound),
        ),
    ));
    let lower_secs = requests as f64 / (10.0 * SCALE);
    figs.push(Figure::new(
        2,
        "lever.responses_429_scaled",
        "Lever: 429 responses during the backfill crawl (bucket and pacing scaled ×20)",
        st.rate_limited as f64,
        "responses",
        Goal::AtMost(0.0),
        CMD,
        format!(
            "bucket {:.0}/s bursts {:.0}, eds paced at {:.0}/s bursts {:.0}; wall {:.1} s against {lower_secs:.1} s at the bucket's rate and {:.1} s at eds's pace",
            10.0 * SCALE,
            20.0 * SCALE,
            pace.per_second,
            pace.burst,
            wall.as_secs_f64(),
            requests as f64 / pace.per_second
        ),
    ));

    // An unchanged incremental run: one request per list.
    sim.reset_stats();
    let incremental = Window {
        from: now - chrono::Duration::minutes(15),
        to: now,
    };
    crawl(&client, &incremental).await?;
    let st = sim.stats();
    figs.push(Figure::new(
        1,
        "lever.unchanged_run_requests",
        "Lever: requests of an unchanged incremental run (3 lists)",
        api_requests(&st) as f64,
        "requests",
        Goal::Exactly(3.0),
        CMD,
        format!("{candidacies} candidacies; {}", endpoints(&st)),
    ));
    sim.shutdown().await;

    // At Lever's real rate, through the connector the puller builds (its own pacing).
    let small = scenario(REAL_RATE_CANDIDACIES, 506);
    let sim = start(sims, bucket(1.0), small.truth.clone()).await?;
    let conn = connect(stack, "bench-lever-real", &sim).await?;
    let started = Instant::now();
    crawl(conn.ats.as_ref(), &full).await?;
    let wall = started.elapsed();
    let st = sim.stats();
    let requests = api_requests(&st);
    figs.push(Figure::new(
        2,
        "lever.responses_429_real_rate",
        "Lever: 429 responses of a backfill crawl under Lever's 10/s bucket",
        st.rate_limited as f64,
        "responses",
        Goal::AtMost(0.0),
        CMD,
        format!(
            "{REAL_RATE_CANDIDACIES} candidacies, {requests} API requests in {:.1} s ({:.1} requests/s; eds paces at {}/s bursts {})",
            wall.as_secs_f64(),
            requests as f64 / wall.as_secs_f64().max(1e-9),
            PACE.per_second,
            PACE.burst
        ),
    ));
    sim.shutdown().await;
    Ok(figs)
}
