//! `edsctl sync`: the local equivalent of the scheduler's schedule and the pull queue's
//! event source mapping, for one tenant.
//!
//! The tenant is made due now, the scheduler handler runs (it enqueues the run's pull
//! job to the real, possibly emulated, FIFO queue), and then batches are received from
//! that queue and handed to the puller handler, exactly as Lambda would: messages the
//! handler reports as failed are left to their visibility timeout (the handler sets it)
//! and the queue's redrive policy; the others are deleted. Continuations the puller
//! sends before its (simulated) deadline come back through the queue. The loop ends
//! when the tenant has no active run and no lease, i.e. it is idle.
//!
//! Progress goes to stderr: a bar on a terminal, one plain line per batch otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use chrono::Utc;
use eds_local::queue::{delete_succeeded, queue_depth, receive_event};
use eds_shared::domain::ids::TenantId;
use eds_shared::pipeline::puller::{JobReport, Puller, PullerSettings};
use eds_shared::pipeline::scheduler::{ScheduleReport, Scheduler};
use eds_shared::tenants::{RunCounts, SyncStatus, TenantState};
use eds_shared::tenants::{RunLog, TenantLifecycle};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::deploy::Deployment;
use crate::error::CliError;

/// How a local sync runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Forget the watermarks first: every stream is read in full again.
    pub full: bool,
    /// The simulated Lambda timeout of each batch (the puller continues before it).
    pub invocation: Duration,
    /// Give up (non-zero exit) after this long.
    pub timeout: Duration,
    /// Records the run is expected to read, when known (for the bar and its ETA).
    pub expected_records: Option<u64>,
    /// Draw a bar even when stderr is not a terminal (never for `--json` runs).
    pub quiet: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            full: false,
            invocation: Duration::from_secs(30),
            timeout: Duration::from_secs(3600),
            expected_records: None,
            quiet: false,
        }
    }
}

/// What a sync did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncSummary {
    pub tenant: TenantId,
    pub scheduled: ScheduleReport,
    pub counts: RunCounts,
    pub versions_written: u64,
    pub continuations: u32,
    pub batches: u64,
    /// Messages the puller reported as failed (retried through the queue).
    pub failed_messages: u64,
    pub elapsed_ms: u64,
    pub state: TenantState,
    /// Streams whose status is `failed` when the run ended (the command then exits 5).
    pub failed_streams: Vec<FailedStream>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedStream {
    pub stream: String,
    pub reason: Option<String>,
}

/// The puller as deployed, with a local invocation budget. Attachment downloads from
/// loopback hosts follow `EDS_LOCAL_TESTING`, as in the function.
pub fn puller(d: &Deployment, invocation: Duration) -> Result<Puller, CliError> {
    let margin = (invocation / 5).clamp(Duration::from_secs(2), Duration::from_secs(20));
    let settings = PullerSettings {
        margin,
        ..PullerSettings::default()
    };
    eds_shared::wiring::puller::puller_with(&d.aws, &d.config, d.credentials()?, settings, false)
        .map_err(|e| CliError::Usage(format!("the puller cannot start: {e}")))
}

enum Progress {
    Bar(ProgressBar),
    Lines,
    Quiet,
}

impl Progress {
    fn new(opts: &SyncOptions) -> Self {
        if opts.quiet {
            return Progress::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines;
        }
        let bar = match opts.expected_records {
            Some(n) => {
                let b = ProgressBar::new(n);
                b.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} records · {msg} · ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b
            }
            None => {
                let b = ProgressBar::new_spinner();
                b.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {pos} records · {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b
            }
        };
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress::Bar(bar)
    }

    fn update(&self, tenant: &TenantId, batches: u64, c: &RunCounts, note: &str) {
        let msg = format!(
            "pages {} · requests {} · rate-limit waits {} ({:.1}s){}",
            c.pages,
            c.requests,
            c.rate_limited_429,
            c.rate_limit_wait_ms as f64 / 1000.0,
            if note.is_empty() {
                String::new()
            } else {
                format!(" · {note}")
            }
        );
        match self {
            Progress::Bar(b) => {
                if let Some(len) = b.length()
                    && c.records_seen > len
                {
                    b.set_length(c.records_seen);
                }
                b.set_position(c.records_seen);
                b.set_message(msg);
            }
            Progress::Lines => crate::out::error_line(&format!(
                "sync {tenant}: batch {batches}: records {} · {msg}",
                c.records_seen
            )),
            Progress::Quiet => {}
        }
    }

    fn finish(&self) {
        if let Progress::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

/// Runs a sync of `tenant` to idle.
pub async fn sync(
    d: &Deployment,
    puller: &Puller,
    tenant: &TenantId,
    opts: &SyncOptions,
) -> Result<SyncSummary, CliError> {
    let registry = d.registry();
    let rec = registry
        .get(tenant)
        .await
        .map_err(|e| d.aws_err(e))?
        .ok_or_else(|| CliError::unknown_tenant(tenant.as_str()))?;
    match rec.config.state {
        TenantState::Enabled => {}
        TenantState::NeedsReauth => {
            return Err(CliError::Failed(format!(
                "tenant {tenant} needs re-authorisation ({}): store working credentials with `edsctl tenants credentials {tenant} --credentials FILE`",
                rec.config
                    .state_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            )));
        }
        other => {
            return Err(CliError::Failed(format!(
                "tenant {tenant} is {}: only an enabled tenant syncs; enable it with `edsctl tenants enable {tenant} ...`",
                serde_json::to_value(other)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            )));
        }
    }
    let started = Instant::now();
    let now = Utc::now();
    if opts.full {
        for mut st in registry.streams(tenant).await.map_err(|e| d.aws_err(e))? {
            st.watermark = None;
            st.checkpoint = None;
            st.updated_at = now;
            registry
                .put_stream(tenant, &st)
                .await
                .map_err(|e| d.aws_err(e))?;
        }
    }
    // Due now (the schedule would make it due after its interval): same state, same
    // epoch, only `next_run_at` moves. A run still going is not claimed again; its
    // queued jobs are simply drained below.
    if rec.active_run.is_none() {
        registry
            .set_state(tenant, TenantState::Enabled, false, None, Some(now), now)
            .await
            .map_err(|e| d.aws_err(e))?;
    }
    let scheduler = Scheduler::new(
        registry.clone(),
        d.aws.queue(&d.config.pull_queue_url),
        eds_shared::connector::catalog::plan,
    );
    let scheduled = scheduler
        .run(now)
        .await
        .map_err(|e| CliError::Failed(format!("the scheduler failed: {e}")))?;

    let progress = Progress::new(opts);
    let mut total = JobReport::default();
    let mut batches = 0u64;
    let mut failed = 0u64;
    let queue = &d.config.pull_queue_url;
    let result = loop {
        if started.elapsed() > opts.timeout {
            break Err(CliError::Failed(format!(
                "the sync of {tenant} did not finish within {}s: see `edsctl status {tenant}`",
                opts.timeout.as_secs()
            )));
        }
        let event = receive_event(&d.aws.sqs, queue, 10, 1)
            .await
            .map_err(|e| d.aws_err(e))?;
        if event.records.is_empty() {
            let rec = registry
                .get(tenant)
                .await
                .map_err(|e| d.aws_err(e))?
                .ok_or_else(|| CliError::unknown_tenant(tenant.as_str()))?;
            let leased = rec.lease.as_ref().is_some_and(|l| l.until > Utc::now());
            if rec.active_run.is_none() && !leased {
                break Ok(rec.config.state);
            }
            if rec.config.state != TenantState::Enabled {
                break Ok(rec.config.state);
            }
            let depth = queue_depth(&d.aws.sqs, queue)
                .await
                .map_err(|e| d.aws_err(e))?;
            if depth == 0 && !leased {
                break Err(CliError::Failed(format!(
                    "the run of {tenant} has not finished but no pull job is queued: its job may be in the dead-letter queue (`edsctl dlq show pull`), see docs/runbook.md"
                )));
            }
            progress.update(tenant, batches, &total.counts, "waiting for a retried job");
            continue;
        }
        batches += 1;
        let invocation_budget = eds_shared::invocation::Invocation::after(opts.invocation);
        let (response, report) = Box::pin(puller.handle(event.clone(), invocation_budget)).await;
        failed += response.batch_item_failures.len() as u64;
        delete_succeeded(&d.aws.sqs, queue, &event, &response)
            .await
            .map_err(|e| d.aws_err(e))?;
        total.counts.add(&report.counts);
        total.versions_written += report.versions_written;
        total.continuations_sent += report.continuations_sent;
        let note = if response.batch_item_failures.is_empty() {
            ""
        } else {
            "a job failed; it is retried"
        };
        progress.update(tenant, batches, &total.counts, note);
    };
    progress.finish();
    let state = result?;
    let failed_streams = registry
        .streams(tenant)
        .await
        .map_err(|e| d.aws_err(e))?
        .into_iter()
        .filter(|st| st.status == SyncStatus::Failed)
        .map(|st| FailedStream {
            stream: st.stream.as_str().to_string(),
            reason: st.reason,
        })
        .collect();
    Ok(SyncSummary {
        tenant: tenant.clone(),
        scheduled,
        counts: total.counts,
        versions_written: total.versions_written,
        continuations: total.continuations_sent,
        batches,
        failed_messages: failed,
        elapsed_ms: started.elapsed().as_millis() as u64,
        state,
        failed_streams,
    })
}
