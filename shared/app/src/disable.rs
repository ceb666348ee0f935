//! The disable function: the customer turns the pull off, and from then on every view
//! shows only what was pushed (product.md sections 1 and 7). Triggered by the settings
//! event `tenant.disable_requested` and continued through the FIFO disable queue.
//!
//! Order of work, and why (docs/lifecycle.md):
//! 1. **Fence.** The tenant moves to `disabled` with a new epoch and leaves the due index
//!    (`set_state(.., bump_epoch = true, schedule = None)`), and its active run is
//!    cleared. From this write on, no puller can take or renew the pull lease: every
//!    renewal is conditioned on the epoch it was scheduled under and on an enabled state.
//! 2. **Drain.** Wait until the pull lease of the old epoch is gone (released, or expired:
//!    a lease outlives the puller's Lambda timeout, so an expired lease means its holder
//!    can no longer write). Polled every `poll_every`, bounded by the invocation deadline.
//! 3. **Pause** every stream's sync status (after the drain, so a finishing puller cannot
//!    overwrite it).
//! 4. **Sweep** all 16 `by_tenant` shards, a page of keys at a time, setting each record's
//!    view mode to `PushOnly`: a record whose view changes gets a new version with cause
//!    `disable`; layers and history stay. Unchanged records cost zero writes, so a second
//!    disable or a redelivered continuation writes nothing.
//!
//! Before the deadline the remaining work is sent as a [`LifecycleJob::Disable`] (epoch,
//! shard, cursor) to the disable queue (FIFO group = tenant), but only after the
//! invocation swept at least one page ([`Budget`]), so every chain makes progress. A
//! drain with no time left to poll hands its queue message back with a visibility
//! timeout until the lease runs out ([`wait_visibility`]) instead of continuing at once.
//! If the epoch moved during the sweep (re-enable, deletion), the sweep stops: the newer
//! lifecycle event owns the tenant.
//!
//! The pieces both lifecycle functions share (deadline, options, event validation,
//! continuation sending) live here too; deletion implies a disable and reuses them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use eds_core::domain::ids::{AtsId, EntityKind, TenantId};
use eds_core::domain::merge::ViewMode;
pub use eds_core::invocation::{Deadline, Invocation, LifecycleEvent, LifecycleResponse};
use eds_core::jobs::{LifecycleJob, parse_job};
use eds_core::queue::{FifoMessage, JobError, JobQueue, SendError, fifo_batch};
use eds_core::store::{RecordOutcome, RecordStore, SHARDS, StoreError};
use eds_core::tenants::{Registry, RegistryError, SyncStatus, TenantState};

/// `source` of every settings event.
pub const SETTINGS_SOURCE: &str = "eds.settings";
/// `detail-type` of a disable request.
pub const DISABLE_REQUESTED: &str = "tenant.disable_requested";

/// One invocation's allowance of work. An invocation may stop (hand the rest on) only
/// after it finished at least one unit of work (a page of a sweep, a phase step), and
/// then only when less than the margin is left: the margin exists to finish the unit in
/// flight, and the Lambda timeout is far above one unit. So an invocation that starts
/// with too little time left still does one unit, and a chain of continuations always
/// makes progress, however slow the store answers or however short the invocations are.
#[derive(Debug, Clone)]
pub struct Budget {
    deadline: Deadline,
    margin: Duration,
    units: u64,
}

impl Budget {
    pub fn new(deadline: Deadline, margin: Duration) -> Self {
        Self {
            deadline,
            margin,
            units: 0,
        }
    }

    /// One unit of work is finished (its effect is stored or carried in the
    /// continuation).
    pub fn unit_done(&mut self) {
        self.units += 1;
    }

    /// Units finished in this invocation.
    pub fn units(&self) -> u64 {
        self.units
    }

    /// Whether the invocation may stop now.
    pub fn may_stop(&self) -> bool {
        may_stop(self.units, self.deadline.remaining(), self.margin)
    }

    /// Whether a waiting invocation has time for another poll of `poll_every`.
    pub fn can_poll(&self, poll_every: Duration) -> bool {
        can_poll(self.deadline.remaining(), self.margin, poll_every)
    }
}

/// The stop rule as pure logic: never before the first unit; after it, once less than
/// `margin` is left.
pub fn may_stop(units_done: u64, remaining: Duration, margin: Duration) -> bool {
    units_done > 0 && remaining < margin
}

/// Whether a wait can sleep `poll_every` and still keep `margin` before the deadline.
pub fn can_poll(remaining: Duration, margin: Duration, poll_every: Duration) -> bool {
    remaining >= margin.saturating_add(poll_every)
}

/// How long a message that waits for writers is handed back to its queue (its
/// visibility timeout): until the last live lease runs out (no lease can be renewed
/// once the tenant is fenced, so one hand-back normally ends the wait), at least 1 s,
/// at most the SQS maximum of 12 h.
pub fn wait_visibility(until: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    let ms = (until - now).num_milliseconds().max(0) as u64;
    // Rounded up to whole seconds (SQS counts seconds) plus one, so the lease has run
    // out when the message is seen again.
    Duration::from_secs((ms.div_ceil(1000) + 1).min(43_200))
}

/// Where an invocation's work came from: the settings event (no message to hand back:
/// the rest goes on in a continuation) or a continuation message from the function's
/// queue (a wait hands that message back with a visibility timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Event,
    Queue,
}

/// Tuning of the lifecycle sweeps (defaults are the production values).
#[derive(Debug, Clone)]
pub struct LifecycleOptions {
    /// Keys listed (and records changed or deleted) per page.
    pub page_size: u32,
    /// How often a waiting invocation re-reads the leases.
    pub poll_every: Duration,
    /// Time kept back before the deadline to send the continuation and return.
    pub margin: Duration,
    /// Records deleted concurrently within a page (deletion only).
    pub concurrency: usize,
}

impl Default for LifecycleOptions {
    fn default() -> Self {
        Self {
            page_size: 100,
            poll_every: Duration::from_millis(500),
            margin: Duration::from_secs(20),
            concurrency: 8,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DisableError {
    /// Malformed or unexpected event: rejected before any side effect.
    #[error("rejected event: {0}")]
    InvalidEvent(String),
    #[error("tenant {0} is not registered")]
    UnknownTenant(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record the sweep could not make push-only (it stays visible with pulled data,
    /// so this needs an operator; retrying does not help).
    #[error("{entity} {ats_id} could not be made push-only: {error}")]
    RecordRejected {
        entity: EntityKind,
        ats_id: AtsId,
        error: String,
    },
    #[error("{failed} records of a page kept failing: {error}")]
    PageFailed { failed: usize, error: String },
    #[error(transparent)]
    Send(#[from] SendError),
    /// The pull lease is still live and the invocation has no time to poll again: the
    /// continuation message goes back to the queue for `after` (its visibility).
    #[error("the pull lease is still live; the disable waits {}s in its queue", after.as_secs())]
    LeaseLive { after: Duration },
}

impl DisableError {
    pub fn is_retryable(&self) -> bool {
        match self {
            DisableError::InvalidEvent(_)
            | DisableError::UnknownTenant(_)
            | DisableError::RecordRejected { .. } => false,
            DisableError::Registry(e) => e.is_retryable(),
            DisableError::Store(e) => e.is_retryable(),
            DisableError::PageFailed { .. }
            | DisableError::Send(_)
            | DisableError::LeaseLive { .. } => true,
        }
    }

    pub fn to_job_error(&self) -> JobError {
        if let DisableError::LeaseLive { after } = self {
            return JobError::Retry {
                reason: self.to_string(),
                after: *after,
            };
        }
        if self.is_retryable() {
            JobError::Retry {
                reason: self.to_string(),
                after: Duration::from_secs(30),
            }
        } else {
            JobError::Poison(self.to_string())
        }
    }
}

/// How an invocation ended for one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisableOutcome {
    /// Every record is push-only.
    Completed,
    /// The rest was sent to the disable queue.
    Continued,
    /// The tenant was re-enabled or is being deleted: a newer event owns it.
    Superseded,
}

/// What one invocation did for one tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisableReport {
    pub tenant: TenantId,
    pub epoch: u64,
    pub outcome: DisableOutcome,
    /// Whether this invocation bumped the epoch (false for a repeated disable).
    pub fenced: bool,
    pub waited_ms: u64,
    pub streams_paused: usize,
    pub pages: usize,
    pub records_seen: usize,
    pub records_changed: usize,
    pub versions_written: usize,
}

impl DisableReport {
    fn new(tenant: &TenantId, epoch: u64) -> Self {
        Self {
            tenant: tenant.clone(),
            epoch,
            outcome: DisableOutcome::Completed,
            fenced: false,
            waited_ms: 0,
            streams_paused: 0,
            pages: 0,
            records_seen: 0,
            records_changed: 0,
            versions_written: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisableRequested {
    tenant_id: String,
}

/// Checks an EventBridge settings event's source and detail type and parses its detail
/// strictly (unknown fields are refused). Error messages name the problem, never echo
/// the payload.
pub fn parse_settings_detail<T: DeserializeOwned>(
    event: &EventBridgeEvent<Value>,
    detail_type: &str,
) -> Result<T, String> {
    if event.source != SETTINGS_SOURCE {
        return Err(format!(
            "source {:?} is not {SETTINGS_SOURCE:?}",
            truncate(&event.source)
        ));
    }
    if event.detail_type != detail_type {
        return Err(format!(
            "detail-type {:?} is not {detail_type:?}",
            truncate(&event.detail_type)
        ));
    }
    serde_json::from_value(event.detail.clone()).map_err(|e| format!("detail: {e}"))
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Parses a disable request's tenant (strict; no side effect on failure).
pub fn parse_disable_requested(event: &EventBridgeEvent<Value>) -> Result<TenantId, String> {
    let d: DisableRequested = parse_settings_detail(event, DISABLE_REQUESTED)?;
    TenantId::parse(d.tenant_id).map_err(|e| format!("tenant_id: {e}"))
}

/// The deduplication id of a continuation: derived from the message or event that
/// produced it and the continuation itself, so that a redelivered invocation sending the
/// same continuation is deduplicated by SQS, while two waits in a row (same body, new
/// source message) are not.
pub fn continuation_dedup_id(source_id: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(source_id.as_bytes());
    h.update([0u8]);
    h.update(body.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Sends a lifecycle continuation to its FIFO queue (group = tenant).
pub async fn send_continuation(
    queue: &dyn JobQueue,
    tenant: &TenantId,
    job: &LifecycleJob,
    source_id: &str,
) -> Result<(), SendError> {
    let body = serde_json::to_string(job).map_err(|e| SendError {
        queue: queue.name().to_string(),
        detail: e.to_string(),
    })?;
    let msg = FifoMessage {
        dedup_id: continuation_dedup_id(source_id, &body),
        group_id: tenant.to_string(),
        body,
    };
    queue.enqueue(std::slice::from_ref(&msg)).await?;
    Ok(())
}

/// The id a continuation's dedup id derives from: the EventBridge event id (a fresh one
/// when the event has none, so nothing is wrongly deduplicated).
pub fn event_source_id(event: &EventBridgeEvent<Value>) -> String {
    event
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The disable handler (library side of `functions/disable`).
pub struct Disabler {
    registry: Arc<dyn Registry>,
    store: Arc<dyn RecordStore>,
    queue: Arc<dyn JobQueue>,
    opts: LifecycleOptions,
}

impl Disabler {
    pub fn new(
        registry: Arc<dyn Registry>,
        store: Arc<dyn RecordStore>,
        queue: Arc<dyn JobQueue>,
    ) -> Self {
        Self {
            registry,
            store,
            queue,
            opts: LifecycleOptions::default(),
        }
    }

    pub fn with_options(mut self, opts: LifecycleOptions) -> Self {
        self.opts = opts;
        self
    }

    /// The Lambda entry point: the settings bus's request, or a batch of continuations.
    pub async fn handle(
        &self,
        event: LifecycleEvent,
        invocation: Invocation,
    ) -> Result<LifecycleResponse<DisableReport>, DisableError> {
        let deadline = invocation.deadline;
        event
            .route(
                |request| async move { self.on_event(&request, deadline).await },
                |batch| async move { self.on_sqs(&batch, deadline).await },
            )
            .await
    }

    /// A `tenant.disable_requested` event: validated strictly, then fence and sweep.
    pub async fn on_event(
        &self,
        event: &EventBridgeEvent<Value>,
        deadline: Deadline,
    ) -> Result<DisableReport, DisableError> {
        let tenant = parse_disable_requested(event).map_err(|e| {
            tracing::warn!(error = %e, "disable event rejected");
            DisableError::InvalidEvent(e)
        })?;
        self.disable(&tenant, &event_source_id(event), deadline)
            .await
    }

    /// A batch of continuations from the disable queue, in FIFO order.
    pub async fn on_sqs(&self, event: &SqsEvent, deadline: Deadline) -> SqsBatchResponse {
        fifo_batch(event, &*self.queue, |msg: &SqsMessage| {
            let msg = msg.clone();
            async move {
                let job: LifecycleJob =
                    parse_job(msg.body.as_deref().unwrap_or("")).map_err(JobError::Poison)?;
                let LifecycleJob::Disable {
                    tenant,
                    epoch,
                    shard,
                    after,
                } = job
                else {
                    return Err(JobError::Poison("not a disable job".into()));
                };
                let shard = u8::try_from(shard)
                    .ok()
                    .filter(|s| *s <= SHARDS)
                    .ok_or_else(|| JobError::Poison(format!("shard {shard} out of range")))?;
                let source = msg.message_id.clone().unwrap_or_default();
                self.resume(
                    &tenant,
                    epoch,
                    (shard, after),
                    Via::Queue,
                    &source,
                    deadline,
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_job_error())
            }
        })
        .await
    }

    /// Disables `tenant`: fences (unless already disabled: a repeated request resumes
    /// under the current epoch and writes nothing new), then drains and sweeps.
    pub async fn disable(
        &self,
        tenant: &TenantId,
        source_id: &str,
        deadline: Deadline,
    ) -> Result<DisableReport, DisableError> {
        let span = tracing::info_span!("disable", tenant = %tenant);
        self.disable_inner(tenant, source_id, deadline)
            .instrument(span)
            .await
    }

    async fn disable_inner(
        &self,
        tenant: &TenantId,
        source_id: &str,
        deadline: Deadline,
    ) -> Result<DisableReport, DisableError> {
        let rec = self
            .registry
            .get(tenant)
            .await?
            .ok_or_else(|| DisableError::UnknownTenant(tenant.to_string()))?;
        let (epoch, fenced) = match rec.config.state {
            TenantState::Deleting | TenantState::Deleted => {
                tracing::info!("tenant is being deleted; disable has nothing to do");
                let mut r = DisableReport::new(tenant, rec.config.epoch);
                r.outcome = DisableOutcome::Superseded;
                return Ok(r);
            }
            TenantState::Disabled => (rec.config.epoch, false),
            TenantState::Enabled | TenantState::NeedsReauth => {
                let now = Utc::now();
                let epoch = self
                    .registry
                    .set_state(
                        tenant,
                        TenantState::Disabled,
                        true,
                        Some("disabled by request"),
                        None,
                        now,
                    )
                    .await?;
                self.registry.clear_run(tenant).await?;
                tracing::info!(epoch, "tenant disabled; epoch bumped");
                (epoch, true)
            }
        };
        let mut report = self
            .resume(tenant, epoch, (0, None), Via::Event, source_id, deadline)
            .await?;
        report.fenced = fenced;
        Ok(report)
    }

    /// Drains and sweeps from `(shard, after)` under `epoch` (the EventBridge path after
    /// fencing, and every continuation). The invocation sweeps at least one page before
    /// it heeds the deadline ([`Budget`]); a drain with no time to poll again hands its
    /// message back with a delay (`via` the queue) or continues (`via` the event).
    pub async fn resume(
        &self,
        tenant: &TenantId,
        epoch: u64,
        from: (u8, Option<String>),
        via: Via,
        source_id: &str,
        deadline: Deadline,
    ) -> Result<DisableReport, DisableError> {
        let (mut shard, mut after) = from;
        let mut budget = Budget::new(deadline, self.opts.margin);
        let mut report = DisableReport::new(tenant, epoch);
        if !self.still_ours(tenant, epoch).await? {
            report.outcome = DisableOutcome::Superseded;
            return Ok(report);
        }

        // Drain: no pull lease may be live (any lease is of an older epoch: a disabled
        // tenant's lease cannot be taken, nor renewed).
        let mut started: Option<Instant> = None;
        loop {
            let rec = self.registry.require(tenant).await?;
            let now = Utc::now();
            let Some(until) = rec.lease.map(|l| l.until).filter(|u| *u > now) else {
                break;
            };
            let since = *started.get_or_insert_with(Instant::now);
            report.waited_ms = since.elapsed().as_millis() as u64;
            if !budget.can_poll(self.opts.poll_every) {
                return match via {
                    // Not an immediate continuation: a chain of short invocations would
                    // spin until the lease runs out.
                    Via::Queue => Err(DisableError::LeaseLive {
                        after: wait_visibility(until, now),
                    }),
                    // The event has no message to hand back; its continuation, received
                    // by the queue path, waits in the queue.
                    Via::Event => self.continue_later(report, shard, after, source_id).await,
                };
            }
            tokio::time::sleep(self.opts.poll_every).await;
        }
        if let Some(since) = started {
            report.waited_ms = since.elapsed().as_millis().max(1) as u64;
        }

        report.streams_paused = self.pause_streams(tenant).await?;

        while shard < SHARDS {
            if budget.may_stop() {
                return self.continue_later(report, shard, after, source_id).await;
            }
            let page = self
                .store
                .list_keys(tenant, shard, after.as_deref(), self.opts.page_size)
                .await?;
            report.pages += 1;
            report.records_seen += page.keys.len();
            if !page.keys.is_empty() {
                // A re-enable or deletion stops this sweep before its next write: writing
                // PushOnly after a re-enable would hide pulled data the tenant wants
                // shown again.
                if !self.still_ours(tenant, epoch).await? {
                    report.outcome = DisableOutcome::Superseded;
                    return Ok(report);
                }
                let keys: Vec<(EntityKind, AtsId)> = page
                    .keys
                    .iter()
                    .map(|k| (k.entity, k.ats_id.clone()))
                    .collect();
                let (changed, versions) = self.push_only(tenant, &keys).await?;
                report.records_changed += changed;
                report.versions_written += versions;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => {
                    shard += 1;
                    after = None;
                }
            }
            // The page is written and the cursor moved: the continuation starts after it.
            budget.unit_done();
        }
        tracing::info!(?report, "disable sweep complete");
        Ok(report)
    }

    async fn still_ours(&self, tenant: &TenantId, epoch: u64) -> Result<bool, DisableError> {
        Ok(self
            .registry
            .get(tenant)
            .await?
            .is_some_and(|r| r.config.state == TenantState::Disabled && r.config.epoch == epoch))
    }

    async fn continue_later(
        &self,
        mut report: DisableReport,
        shard: u8,
        after: Option<String>,
        source_id: &str,
    ) -> Result<DisableReport, DisableError> {
        let job = LifecycleJob::Disable {
            tenant: report.tenant.clone(),
            epoch: report.epoch,
            shard: u32::from(shard),
            after,
        };
        send_continuation(&*self.queue, &report.tenant, &job, source_id).await?;
        tracing::info!(shard, "disable continues in a new message");
        report.outcome = DisableOutcome::Continued;
        Ok(report)
    }

    /// Marks every stream paused (only those not paused yet: a repeat writes nothing).
    async fn pause_streams(&self, tenant: &TenantId) -> Result<usize, DisableError> {
        let mut n = 0;
        for mut stream in self.registry.streams(tenant).await? {
            if stream.status == SyncStatus::Paused {
                continue;
            }
            stream.status = SyncStatus::Paused;
            stream.reason = Some("pull disabled".into());
            stream.updated_at = Utc::now();
            self.registry.put_stream(tenant, &stream).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Sets one page of records push-only. Records that failed transiently are retried
    /// (the change is idempotent); a rejected record is an error for an operator.
    async fn push_only(
        &self,
        tenant: &TenantId,
        keys: &[(EntityKind, AtsId)],
    ) -> Result<(usize, usize), DisableError> {
        let mut todo = keys.to_vec();
        let (mut changed, mut versions) = (0, 0);
        for attempt in 1..=3u32 {
            let out = self
                .store
                .set_mode_page(tenant, &todo, ViewMode::PushOnly, Utc::now())
                .await?;
            eds_core::crash::point("disable.after_sweep_page");
            changed += out.created + out.updated;
            versions += out.versions_written;
            let mut retry = Vec::new();
            let mut last_error = String::new();
            for r in out.records {
                match r.outcome {
                    RecordOutcome::Rejected { error } => {
                        return Err(DisableError::RecordRejected {
                            entity: r.entity,
                            ats_id: r.ats_id,
                            error,
                        });
                    }
                    RecordOutcome::Failed { error } => {
                        last_error = error;
                        retry.push((r.entity, r.ats_id));
                    }
                    _ => {}
                }
            }
            if retry.is_empty() {
                return Ok((changed, versions));
            }
            if attempt == 3 {
                return Err(DisableError::PageFailed {
                    failed: retry.len(),
                    error: last_error,
                });
            }
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            todo = retry;
        }
        Ok((changed, versions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn event(source: &str, detail_type: &str, detail: Value) -> EventBridgeEvent<Value> {
        serde_json::from_value(serde_json::json!({
            "version": "0", "id": "e1", "detail-type": detail_type, "source": source,
            "account": "123456789012", "time": "2026-03-01T10:00:00Z", "region": "us-east-1",
            "resources": [], "detail": detail,
        }))
        .unwrap()
    }

    #[test]
    fn disable_request_is_parsed_strictly() {
        let ok = event(
            SETTINGS_SOURCE,
            DISABLE_REQUESTED,
            serde_json::json!({"tenant_id": "acme"}),
        );
        assert_eq!(parse_disable_requested(&ok).unwrap().as_str(), "acme");
        let bad = [
            event(
                "aws.events",
                DISABLE_REQUESTED,
                serde_json::json!({"tenant_id": "acme"}),
            ),
            event(
                SETTINGS_SOURCE,
                "tenant.enabled",
                serde_json::json!({"tenant_id": "acme"}),
            ),
            event(SETTINGS_SOURCE, DISABLE_REQUESTED, serde_json::json!({})),
            event(
                SETTINGS_SOURCE,
                DISABLE_REQUESTED,
                serde_json::json!({"tenant_id": "Acme"}),
            ),
            event(
                SETTINGS_SOURCE,
                DISABLE_REQUESTED,
                serde_json::json!({"tenant_id": 7}),
            ),
            event(
                SETTINGS_SOURCE,
                DISABLE_REQUESTED,
                serde_json::json!({"tenant_id": "acme", "secret_name": "x"}),
            ),
            event(
                SETTINGS_SOURCE,
                DISABLE_REQUESTED,
                serde_json::json!("acme"),
            ),
        ];
        for e in &bad {
            assert!(parse_disable_requested(e).is_err(), "{e:?}");
        }
    }

    #[test]
    fn continuation_dedup_ids_differ_per_source_and_body() {
        let a = continuation_dedup_id("m1", "{}");
        assert_eq!(a, continuation_dedup_id("m1", "{}"));
        assert_ne!(a, continuation_dedup_id("m2", "{}"));
        assert_ne!(a, continuation_dedup_id("m1", "{ }"));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn an_invocation_stops_only_after_one_unit_and_near_the_deadline() {
        let margin = Duration::from_secs(20);
        // No unit done yet: never stop, however little time is left.
        assert!(!may_stop(0, Duration::ZERO, margin));
        assert!(!may_stop(0, Duration::from_secs(5), margin));
        // After a unit: stop once less than the margin is left.
        assert!(may_stop(1, Duration::ZERO, margin));
        assert!(may_stop(3, Duration::from_secs(19), margin));
        assert!(!may_stop(1, Duration::from_secs(20), margin));
        assert!(!may_stop(7, Duration::from_secs(600), margin));
    }

    #[test]
    fn a_budget_whose_deadline_passed_allows_exactly_one_unit() {
        let mut b = Budget::new(
            Deadline::at(SystemTime::now() - Duration::from_secs(1)),
            Duration::from_secs(20),
        );
        assert!(!b.may_stop(), "the first unit is always done");
        b.unit_done();
        assert!(b.may_stop());
        assert_eq!(b.units(), 1);
        let mut roomy = Budget::new(Deadline::after(Duration::from_secs(3600)), Duration::ZERO);
        roomy.unit_done();
        assert!(!roomy.may_stop());
    }

    #[test]
    fn a_wait_polls_only_when_a_poll_fits_before_the_margin() {
        let (margin, poll) = (Duration::from_secs(20), Duration::from_millis(500));
        assert!(can_poll(Duration::from_secs(21), margin, poll));
        assert!(can_poll(Duration::from_millis(20_500), margin, poll));
        assert!(!can_poll(Duration::from_millis(20_499), margin, poll));
        assert!(!can_poll(Duration::ZERO, margin, poll));
        assert!(
            !can_poll(Duration::from_secs(1), Duration::MAX, poll),
            "no overflow"
        );
    }

    #[test]
    fn a_waiting_message_comes_back_after_the_last_lease_ran_out() {
        let now: DateTime<Utc> = "2026-03-01T10:00:00Z".parse().unwrap();
        let secs = |until: DateTime<Utc>| wait_visibility(until, now).as_secs();
        assert_eq!(secs(now + chrono::Duration::seconds(360)), 361);
        assert_eq!(secs(now + chrono::Duration::milliseconds(1)), 2);
        // Already expired (clock skew): soon, never at once.
        assert_eq!(secs(now - chrono::Duration::seconds(5)), 1);
        // Bounded by the SQS maximum visibility.
        assert_eq!(secs(now + chrono::Duration::days(400)), 43_200);
        let err = DisableError::LeaseLive {
            after: Duration::from_secs(361),
        };
        assert!(matches!(
            err.to_job_error(),
            JobError::Retry { after, .. } if after == Duration::from_secs(361)
        ));
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(!DisableError::InvalidEvent("x".into()).is_retryable());
        assert!(matches!(
            DisableError::UnknownTenant("t".into()).to_job_error(),
            JobError::Poison(_)
        ));
        assert!(matches!(
            DisableError::PageFailed {
                failed: 1,
                error: "x".into()
            }
            .to_job_error(),
            JobError::Retry { .. }
        ));
    }
}
