//! The puller: runs one tenant's pull job, step by step, page by page.
//!
//! Order of work for every page: renew the pull lease (the epoch fence; refused once a
//! disable, deletion or re-enable moved the epoch), read one page from the connector,
//! download its attachments to S3, merge it into the store (one batch read of heads,
//! writes only for changed records), record quarantined rows, then save the checkpoint
//! (window + cursor) in the stream's state. The watermark moves only when a window's
//! last page committed. Before the Lambda deadline the job sends its continuation (the
//! remaining steps) and stops; the checkpoint in the registry is where it resumes, so a
//! redelivered message re-reads at most one page and writes nothing twice.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use eds_core::attachments::BlobStore;
use eds_core::connection::{Connection, ConnectorFactory};
use eds_core::connector::{
    ConnectorError, Cursor, Presence, Probe, RequestStats, Window, WindowPolicy,
    canonical_timestamp,
};
use eds_core::domain::ids::{AtsId, EntityKind, RecordKey, TenantId};
use eds_core::domain::merge::ViewMode;
use eds_core::domain::model::{LayerKind, MAX_PULLED_FUTURE_SKEW, Observation, ObservationScope};
use eds_core::domain::version::Change;
use eds_core::jobs::{PullJob, Resume, Step, parse_job};
use eds_core::queue::{FifoMessage, JobError, JobQueue};
use eds_core::store::{PageOutcome, RecordOutcome, RecordStore, SHARDS, StoreError};
use eds_core::tenants::{
    Checkpoint, LeaseOutcome, QuarantineEntry, QuarantinedInRun, Registry, RegistryError,
    RunCounts, StreamName, StreamState, SyncRun, SyncStatus, TenantConfig, TenantState,
};

/// Invocations of a run in a row that may end without finishing one unit of work (a
/// page, an id page, a confirmation batch) before the step is failed and reported.
pub const MAX_STALLED_INVOCATIONS: u32 = 3;

/// Records confirmed by id per connector call.
const CONFIRM_BATCH: usize = 50;

/// Tunables of the puller.
#[derive(Debug, Clone)]
pub struct PullerSettings {
    /// Lease length; must exceed the function timeout so that an invocation can never
    /// write after its lease ran out (the template sets the puller timeout to 300 s).
    pub lease: chrono::Duration,
    /// Stop and continue this long before the Lambda deadline.
    pub margin: Duration,
    pub window: WindowPolicy,
    /// Restarts of a window whose cursor expired, per invocation.
    pub max_cursor_restarts: u32,
    /// Visibility for a job that failed transiently.
    pub retry_after: Duration,
}

impl Default for PullerSettings {
    fn default() -> Self {
        Self {
            lease: chrono::Duration::seconds(360),
            margin: Duration::from_secs(20),
            window: WindowPolicy::default(),
            max_cursor_restarts: 3,
            retry_after: Duration::from_secs(60),
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// Every step finished.
    Done,
    /// The deadline came: a continuation was sent.
    Continued,
    /// The job no longer applies (tenant disabled, deleting, re-generated): acknowledged.
    Dropped(String),
    /// The stored grant is invalid: the tenant is now `needs_reauth` and unscheduled.
    NeedsReauth(String),
}

/// What one invocation did, for callers that show progress (edsctl) and for tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobReport {
    pub counts: RunCounts,
    pub versions_written: u64,
    pub continuations_sent: u32,
}

enum StepEnd {
    Done,
    Continue(Option<Resume>),
    Stop(JobOutcome),
}

pub struct Puller {
    pub registry: Arc<dyn Registry>,
    pub store: Arc<dyn RecordStore>,
    /// The pull queue (continuations).
    pub queue: Arc<dyn JobQueue>,
    /// The attachments bucket: the reconciliation's "seen" sets live there too.
    pub blobs: Arc<dyn BlobStore>,
    pub factory: Arc<dyn ConnectorFactory>,
    pub settings: PullerSettings,
}

struct Run<'a> {
    job: &'a PullJob,
    owner: String,
    cfg: TenantConfig,
    conn: Connection,
    report: JobReport,
    deadline: Instant,
    /// Units of work finished by this invocation (pages committed, id pages read,
    /// confirmation batches, a token refresh, a re-merge page).
    units: u32,
    /// Set when the ATS's rate limit outlasts this invocation after it made progress:
    /// the continuation carries it (see [`PullJob::not_before`]).
    not_before: Option<DateTime<Utc>>,
}

/// The ids a listing has shown (a reconciliation's, or a backfill's kept for the
/// reconciliation of the same run), kept in S3 between invocations.
#[derive(Debug, Default)]
struct SeenIds {
    /// The listing reached its last page.
    complete: bool,
    /// From a backfill's `updated_at` listing, not a full id listing: every record
    /// absent from it is confirmed by id before it is tombstoned.
    from_backfill: bool,
    /// Pages of the listing these ids cover (checked against the backfill's checkpoint).
    pages: u64,
    ids: HashSet<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredSeenIds {
    complete: bool,
    from_backfill: bool,
    pages: u64,
    ids: Vec<String>,
}

impl SeenIds {
    fn stored(&self) -> StoredSeenIds {
        let mut ids: Vec<String> = self.ids.iter().cloned().collect();
        ids.sort();
        StoredSeenIds {
            complete: self.complete,
            from_backfill: self.from_backfill,
            pages: self.pages,
            ids,
        }
    }

    /// Also reads the earlier format, a bare array of ids (a listing in progress).
    fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            Ids(Vec<String>),
            Stored(StoredSeenIds),
        }
        Ok(match serde_json::from_slice::<Any>(bytes)? {
            Any::Ids(ids) => SeenIds {
                ids: ids.into_iter().collect(),
                ..SeenIds::default()
            },
            Any::Stored(s) => SeenIds {
                complete: s.complete,
                from_backfill: s.from_backfill,
                pages: s.pages,
                ids: s.ids.into_iter().collect(),
            },
        })
    }
}

/// A wait the ATS imposes beyond this invocation: the job comes back when it ends (the
/// message's visibility timeout), and nothing is sent to the ATS before.
fn rate_limited(retry_at: DateTime<Utc>) -> JobError {
    let wait = (retry_at - Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_secs(1));
    JobError::Retry {
        reason: format!(
            "the ATS rate limit holds until {}",
            canonical_timestamp(&retry_at)
        ),
        after: wait,
    }
}

/// A rate limit that outlasts the invocation. After progress, the job continues in a
/// new message that waits for `retry_at` ([`PullJob::not_before`]): the work done stays
/// done and the received message is not retried, so a run that meets the limit at the
/// end of many invocations never exhausts its receive count. Without progress, the
/// message itself waits (its visibility): one invocation and one request per wait.
fn rate_limited_end(run: &mut Run<'_>, retry_at: DateTime<Utc>) -> Result<StepEnd, JobError> {
    if run.units == 0 {
        return Err(rate_limited(retry_at));
    }
    run.not_before = Some(retry_at);
    Ok(StepEnd::Continue(None))
}

fn store_retry(e: StoreError, after: Duration) -> JobError {
    JobError::Retry {
        reason: e.to_string(),
        after,
    }
}

fn dropped() -> StepEnd {
    StepEnd::Stop(JobOutcome::Dropped("the tenant's epoch moved".into()))
}

fn stalled_reason() -> String {
    format!(
        "no progress in {MAX_STALLED_INVOCATIONS} invocations in a row: the ATS did not answer one page within an invocation"
    )
}

/// The per-stream run metrics (EMF): quarantined records and attachments, by stream
/// and outcome; an alarm on `AttachmentsQuarantined` reports degraded runs.
fn emit_stream_metrics(stream: StreamName, outcome: &str, q: &QuarantinedInRun) {
    use eds_core::metrics::{Metric, emit, function_name};
    let function = function_name("puller");
    emit(
        &[
            ("FunctionName", function.as_str()),
            ("stream", stream.as_str()),
            ("outcome", outcome),
        ],
        &[
            Metric::count("RecordsQuarantined", q.records),
            Metric::count("AttachmentsQuarantined", q.attachments),
            Metric::count("DegradedRuns", u64::from(!q.is_empty())),
        ],
    );
}

fn registry_err(e: RegistryError) -> JobError {
    if e.is_retryable() {
        JobError::Retry {
            reason: e.to_string(),
            after: Duration::from_secs(30),
        }
    } else {
        JobError::Poison(e.to_string())
    }
}

fn add_stats(c: &mut RunCounts, s: &RequestStats) {
    c.requests += s.requests;
    c.retries += s.retries;
    c.rate_limited_429 += s.rate_limited_429;
    c.rate_limit_wait_ms += s.rate_limit_wait.as_millis() as u64;
}

fn add_outcome(c: &mut RunCounts, o: &PageOutcome) {
    c.created += o.created as u64;
    c.updated += o.updated as u64;
    c.unchanged += o.unchanged as u64;
    c.fields_backfilled += o.backfilled as u64;
    c.fields_corrected += o.corrected as u64;
    c.push_newer_kept += o.push_newer_kept as u64;
}

impl Puller {
    /// Handles one message body (poison on an unparseable body or an unknown tenant).
    pub async fn handle_message(
        &self,
        body: &str,
        deadline: Instant,
    ) -> Result<(JobOutcome, JobReport), JobError> {
        let job: PullJob = parse_job(body).map_err(JobError::Poison)?;
        self.handle_job(&job, deadline).await
    }

    pub async fn handle_job(
        &self,
        job: &PullJob,
        deadline: Instant,
    ) -> Result<(JobOutcome, JobReport), JobError> {
        let tenant = &job.tenant;
        let span = tracing::info_span!("pull_job", tenant = %tenant, run_id = %job.run_id, continuation = job.continuation);
        let _enter = span.enter();
        let Some(rec) = self.registry.get(tenant).await.map_err(registry_err)? else {
            if self
                .registry
                .was_deleted(tenant)
                .await
                .map_err(registry_err)?
            {
                return Ok((
                    JobOutcome::Dropped("the tenant's data was deleted".into()),
                    JobReport::default(),
                ));
            }
            return Err(JobError::Poison(format!("unknown tenant {tenant}")));
        };
        let cfg = rec.config;
        if cfg.epoch != job.epoch || !matches!(cfg.state, TenantState::Enabled) {
            let why = format!(
                "tenant is {:?} at epoch {} (job epoch {})",
                cfg.state, cfg.epoch, job.epoch
            );
            tracing::info!(%why, "job dropped");
            return Ok((JobOutcome::Dropped(why), JobReport::default()));
        }
        self.wait_not_before(job, deadline).await?;
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let now = Utc::now();
        match self
            .registry
            .acquire_lease(tenant, &owner, job.epoch, now + self.settings.lease, now)
            .await
            .map_err(registry_err)?
        {
            LeaseOutcome::Held => {}
            // Disabled, deleted or re-enabled between the two reads: the job is stale.
            LeaseOutcome::EpochMoved => {
                let why = format!("the tenant's epoch moved from {}", job.epoch);
                tracing::info!(%why, "job dropped");
                return Ok((JobOutcome::Dropped(why), JobReport::default()));
            }
            // A duplicated or overlapping message: try again when that lease runs out.
            LeaseOutcome::HeldByOther => {
                return Err(JobError::Retry {
                    reason: "another puller holds the tenant's lease".into(),
                    after: self.settings.retry_after,
                });
            }
        }
        // Boxed: the step futures are deep, and callers' futures stay small.
        eds_core::crash::point("puller.after_lease_acquired");
        let result = Box::pin(self.run_steps(job, owner.clone(), cfg, deadline)).await;
        if let Err(e) = self.registry.release_lease(tenant, &owner).await {
            tracing::warn!(error = %e, "could not release the lease; it expires by itself");
        }
        result
    }

    /// A continuation sent under the ATS's rate limit starts no earlier than the limit's
    /// end: a wait that fits this invocation (keeping the margin) is slept here, a longer
    /// one goes back to the queue as the message's visibility, before any request.
    async fn wait_not_before(&self, job: &PullJob, deadline: Instant) -> Result<(), JobError> {
        let Some(at) = job.not_before else {
            return Ok(());
        };
        let Ok(wait) = (at - Utc::now()).to_std() else {
            return Ok(());
        };
        if Instant::now() + wait + self.settings.margin < deadline {
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                "waiting out the ATS rate limit"
            );
            tokio::time::sleep(wait).await;
            return Ok(());
        }
        Err(rate_limited(at))
    }

    async fn run_steps(
        &self,
        job: &PullJob,
        owner: String,
        cfg: TenantConfig,
        deadline: Instant,
    ) -> Result<(JobOutcome, JobReport), JobError> {
        let conn = match self.factory.connect(&cfg).await {
            Ok(c) => c,
            Err(e) => {
                let outcome = self.needs_reauth(&cfg, &e.to_string()).await?;
                return Ok((outcome, JobReport::default()));
            }
        };
        if !cfg.uses_refresh_token
            && cfg.last_token_refresh_at.is_none()
            && let Ok(true) = conn.tokens.uses_refresh_token().await
        {
            self.registry
                .set_uses_refresh_token(&cfg.tenant_id, true)
                .await
                .map_err(registry_err)?;
        }
        let mut run = Run {
            job,
            owner,
            cfg,
            conn,
            report: JobReport::default(),
            deadline,
            units: 0,
            not_before: None,
        };
        let mut resume = job.resume.clone();
        for (i, step) in job.steps.iter().enumerate() {
            let token_before = run.conn.tokens.token_requests();
            let end = match step {
                Step::RefreshToken => self.refresh_token(&mut run).await?,
                Step::Pull(stream) => self.pull_stream(&mut run, *stream, false).await?,
                Step::Sweep(stream) => self.pull_stream(&mut run, *stream, true).await?,
                Step::Reconcile(stream) => self.reconcile(&mut run, *stream, resume.take()).await?,
                Step::Remerge => self.remerge(&mut run, resume.take()).await?,
            };
            run.report.counts.token_requests += run.conn.tokens.token_requests() - token_before;
            match end {
                StepEnd::Done => {}
                StepEnd::Stop(outcome) => return Ok((outcome, run.report)),
                StepEnd::Continue(resume) => {
                    let next = PullJob {
                        tenant: job.tenant.clone(),
                        epoch: job.epoch,
                        run_id: job.run_id.clone(),
                        steps: job.steps[i..].to_vec(),
                        resume,
                        continuation: job.continuation + 1,
                        stalled: if run.units > 0 { 0 } else { job.stalled + 1 },
                        not_before: run.not_before,
                    };
                    self.send_continuation(&next).await?;
                    run.report.continuations_sent += 1;
                    return Ok((JobOutcome::Continued, run.report));
                }
            }
        }
        self.registry
            .finish_stream(&job.tenant, &job.run_id, "run")
            .await
            .map_err(registry_err)?;
        eds_core::crash::point("puller.after_run_finished");
        Ok((JobOutcome::Done, run.report))
    }

    async fn send_continuation(&self, next: &PullJob) -> Result<(), JobError> {
        let msg = FifoMessage {
            body: serde_json::to_string(next).map_err(|e| JobError::Poison(e.to_string()))?,
            group_id: next.tenant.to_string(),
            dedup_id: next.dedup_id(),
        };
        eds_core::crash::point("puller.before_continuation_send");
        self.queue
            .enqueue(&[msg])
            .await
            .map_err(|e| JobError::Retry {
                reason: e.to_string(),
                after: Duration::from_secs(10),
            })?;
        eds_core::crash::point("puller.after_continuation_send");
        Ok(())
    }

    fn time_left(&self, run: &Run<'_>) -> bool {
        run.deadline.saturating_duration_since(Instant::now()) > self.settings.margin
    }

    /// Whether another unit of work may start. The first unit of an invocation always
    /// may (with most of the margin as its reserve, see [`Puller::unit_deadline`]): an
    /// invocation that starts late still finishes one unit instead of continuing
    /// empty-handed.
    fn may_work(&self, run: &Run<'_>) -> bool {
        run.units == 0 || self.time_left(run)
    }

    /// The deadline a connector call must keep: the margin before the Lambda deadline,
    /// a quarter of it for the first unit of an invocation.
    fn unit_deadline(&self, run: &Run<'_>) -> Instant {
        let reserve = if run.units == 0 {
            self.settings.margin / 4
        } else {
            self.settings.margin
        };
        run.deadline.checked_sub(reserve).unwrap_or(run.deadline)
    }

    /// Whether continuing now would make [`MAX_STALLED_INVOCATIONS`] invocations in a row
    /// without one unit of work: the step is then failed and reported instead.
    fn stalled_out(&self, run: &Run<'_>) -> bool {
        run.units == 0 && run.job.stalled + 1 >= MAX_STALLED_INVOCATIONS
    }

    /// The fence: renew the lease under the job's epoch before any write.
    async fn fence(&self, run: &Run<'_>) -> Result<LeaseOutcome, JobError> {
        let now = Utc::now();
        self.registry
            .acquire_lease(
                &run.job.tenant,
                &run.owner,
                run.job.epoch,
                now + self.settings.lease,
                now,
            )
            .await
            .map_err(registry_err)
    }

    async fn needs_reauth(&self, cfg: &TenantConfig, reason: &str) -> Result<JobOutcome, JobError> {
        let tenant = &cfg.tenant_id;
        tracing::warn!(%reason, "tenant needs re-authorisation");
        let now = Utc::now();
        self.registry
            .set_state(
                tenant,
                TenantState::NeedsReauth,
                false,
                Some(reason),
                None,
                now,
            )
            .await
            .map_err(registry_err)?;
        for stream in StreamName::ALL {
            let mut st = self
                .registry
                .get_stream(tenant, stream)
                .await
                .map_err(registry_err)?
                .unwrap_or_else(|| new_stream_state(stream, now));
            st.status = SyncStatus::NeedsReauth;
            st.reason = Some(reason.to_string());
            st.updated_at = now;
            self.registry
                .put_stream(tenant, &st)
                .await
                .map_err(registry_err)?;
        }
        self.registry
            .clear_run(tenant)
            .await
            .map_err(registry_err)?;
        Ok(JobOutcome::NeedsReauth(reason.to_string()))
    }

    async fn refresh_token(&self, run: &mut Run<'_>) -> Result<StepEnd, JobError> {
        match run.conn.tokens.keep_alive().await {
            Ok(_) => {
                self.registry
                    .touch(&run.job.tenant, "last_token_refresh_at", Utc::now())
                    .await
                    .map_err(registry_err)?;
                run.units += 1;
                Ok(StepEnd::Done)
            }
            Err(e) if e.is_retryable() => Err(JobError::Retry {
                reason: e.to_string(),
                after: self.settings.retry_after,
            }),
            Err(e) => Ok(StepEnd::Stop(
                self.needs_reauth(&run.cfg, &e.to_string()).await?,
            )),
        }
    }

    async fn record_run(
        &self,
        run: &Run<'_>,
        stream: StreamName,
        kind: &str,
        started_at: DateTime<Utc>,
        outcome: &str,
        counts: &RunCounts,
    ) -> Result<(), JobError> {
        let r = SyncRun {
            run_id: run.job.run_id.clone(),
            stream,
            kind: kind.to_string(),
            started_at,
            finished_at: Utc::now(),
            outcome: outcome.to_string(),
            counts: counts.clone(),
        };
        self.registry
            .put_run(&run.job.tenant, &r)
            .await
            .map_err(registry_err)
    }

    async fn quarantine(
        &self,
        run: &Run<'_>,
        source: &str,
        ats_id: Option<String>,
        error: String,
    ) -> Result<(), JobError> {
        let entry = QuarantineEntry {
            source: source.to_string(),
            ats_id,
            error,
            at: Utc::now(),
            run_id: Some(run.job.run_id.clone()),
        };
        self.registry
            .put_quarantine(&run.job.tenant, &entry)
            .await
            .map_err(registry_err)
    }

    /// Marks a stream failed with a reason (403, malformed pages): reported, never
    /// silently skipped; the run goes on with the other streams.
    async fn fail_stream(
        &self,
        run: &Run<'_>,
        mut st: StreamState,
        reason: String,
    ) -> Result<StepEnd, JobError> {
        tracing::warn!(stream = st.stream.as_str(), %reason, "stream failed");
        st.status = SyncStatus::Failed;
        st.reason = Some(reason);
        st.checkpoint = None;
        st.last_run_id = Some(run.job.run_id.clone());
        st.updated_at = Utc::now();
        self.registry
            .put_stream(&run.job.tenant, &st)
            .await
            .map_err(registry_err)?;
        Ok(StepEnd::Done)
    }

    /// Pulls `stream` from its watermark, or from the epoch when `sweep` (the plan's
    /// `swept` streams when a reconciliation is due).
    async fn pull_stream(
        &self,
        run: &mut Run<'_>,
        stream: StreamName,
        sweep: bool,
    ) -> Result<StepEnd, JobError> {
        let tenant = run.job.tenant.clone();
        let started_at = Utc::now();
        let mut st = self
            .registry
            .get_stream(&tenant, stream)
            .await
            .map_err(registry_err)?
            .unwrap_or_else(|| new_stream_state(stream, started_at));
        let same_run = st.last_run_id.as_deref() == Some(run.job.run_id.as_str());
        if same_run && st.checkpoint.is_none() {
            // A redelivered message: this run already finished the stream.
            return Ok(StepEnd::Done);
        }
        let (window, mut cursor, mut pages) = match (&st.checkpoint, same_run) {
            (Some(cp), true) => (
                Window {
                    from: cp.window_from,
                    to: cp.window_to,
                },
                cp.cursor.clone().map(Cursor::from_checkpoint),
                cp.pages_committed,
            ),
            _ if sweep => (self.settings.window.initial(started_at), None, 0),
            _ => match self.settings.window.next(st.watermark, started_at) {
                Some(w) => (w, None, 0),
                None => return Ok(StepEnd::Done),
            },
        };
        if !same_run {
            st.run_quarantined = QuarantinedInRun::default();
        }
        // A backfill (or a sweep) lists every record the ATS shows, so when this run
        // reconciles the stream afterwards, its ids are that reconciliation's listing and
        // the ATS is not listed a second time (kept in S3 like a reconciliation's ids).
        // After a crash the kept ids may miss pages: then the reconciliation lists by
        // itself.
        let seen_key = Self::seen_key(&tenant, &run.job.run_id, stream);
        let mut seen: Option<HashSet<String>> = None;
        if window.from == DateTime::<Utc>::UNIX_EPOCH
            && run.job.steps.contains(&Step::Reconcile(stream))
        {
            seen = if pages == 0 && cursor.is_none() {
                Some(HashSet::new())
            } else {
                match self.load_seen(&seen_key).await? {
                    Some(s) if s.from_backfill && s.pages == pages => Some(s.ids),
                    _ => None,
                }
            };
        }
        st.status = SyncStatus::Syncing;
        st.reason = None;
        st.last_run_id = Some(run.job.run_id.clone());
        st.checkpoint = Some(Checkpoint {
            window_from: window.from,
            window_to: window.to,
            cursor: cursor.as_ref().map(|c| c.as_str().to_string()),
            pages_committed: pages,
        });
        st.updated_at = started_at;
        self.registry
            .put_stream(&tenant, &st)
            .await
            .map_err(registry_err)?;
        eds_core::crash::point("puller.after_stream_started");

        let mut counts = RunCounts::default();
        let mut restarts = 0;
        loop {
            if !self.may_work(run) {
                return self
                    .continue_pull(
                        run,
                        st,
                        started_at,
                        &counts,
                        &seen_key,
                        seen.as_ref(),
                        pages,
                    )
                    .await;
            }
            if let Some(why) = self.fence(run).await?.refusal() {
                run.report.counts.add(&counts);
                return Ok(StepEnd::Stop(JobOutcome::Dropped(why.into())));
            }
            let before = run.conn.ats.metrics();
            let result = run
                .conn
                .ats
                .list_changed(stream, &window, cursor.as_ref(), self.unit_deadline(run))
                .await;
            add_stats(&mut counts, &run.conn.ats.metrics().since(&before));
            let page = match result {
                Ok(p) => p,
                Err(ConnectorError::Deadline { .. }) => {
                    return self
                        .continue_pull(
                            run,
                            st,
                            started_at,
                            &counts,
                            &seen_key,
                            seen.as_ref(),
                            pages,
                        )
                        .await;
                }
                Err(ConnectorError::RateLimited { retry_at, .. }) => {
                    run.report.counts.add(&counts);
                    self.save_seen(&seen_key, seen.as_ref(), true, pages, false)
                        .await?;
                    self.record_run(
                        run,
                        stream,
                        "pull",
                        started_at,
                        &format!("rate_limited: until {}", canonical_timestamp(&retry_at)),
                        &counts,
                    )
                    .await?;
                    return rate_limited_end(run, retry_at);
                }
                Err(ConnectorError::CursorExpired { .. })
                    if restarts < self.settings.max_cursor_restarts =>
                {
                    // Restart the window: re-reading committed pages writes nothing (the
                    // ids seen so far stay valid: they were listed).
                    restarts += 1;
                    cursor = None;
                    pages = 0;
                    continue;
                }
                Err(ConnectorError::NeedsReauth) | Err(ConnectorError::Credentials(_)) => {
                    run.report.counts.add(&counts);
                    let outcome = self
                        .needs_reauth(&run.cfg, "the ATS refused the stored credentials")
                        .await?;
                    return Ok(StepEnd::Stop(outcome));
                }
                Err(e) if matches!(e, ConnectorError::Transient { .. }) => {
                    run.report.counts.add(&counts);
                    self.record_run(run, stream, "pull", started_at, "retrying", &counts)
                        .await?;
                    return Err(JobError::Retry {
                        reason: e.to_string(),
                        after: self.settings.retry_after,
                    });
                }
                Err(e) => {
                    run.report.counts.add(&counts);
                    self.record_run(
                        run,
                        stream,
                        "pull",
                        started_at,
                        &format!("failed: {e}"),
                        &counts,
                    )
                    .await?;
                    return self.fail_stream(run, st, e.to_string()).await;
                }
            };
            counts.pages += 1;
            counts.records_seen += page.observations.len() as u64;
            if let Some(ids) = seen.as_mut() {
                if page.quarantined.iter().any(|q| q.ats_id.is_none()) {
                    // A row without a readable id could be any stored record.
                    seen = None;
                } else {
                    ids.extend(page.observations.iter().map(|o| o.ats_id.to_string()));
                    ids.extend(page.quarantined.iter().filter_map(|q| q.ats_id.clone()));
                }
            }

            // A far-future `updated_at` would win every later merge: quarantined.
            let now = Utc::now();
            let mut refused_elements: HashSet<String> = HashSet::new();
            let mut observations = Vec::with_capacity(page.observations.len());
            for o in page.observations {
                let Some(t) = o.future_timestamp(now, MAX_PULLED_FUTURE_SKEW) else {
                    observations.push(o);
                    continue;
                };
                if let ObservationScope::Element { element, .. } = &o.scope
                    && let Some(id) = element.get("id").and_then(Value::as_str)
                {
                    refused_elements.insert(id.to_string());
                }
                counts.quarantined += 1;
                st.run_quarantined.records += 1;
                self.quarantine(
                    run,
                    "pull",
                    Some(o.ats_id.to_string()),
                    format!(
                        "updated_at {} is more than {} minutes ahead of eds's clock",
                        canonical_timestamp(&t),
                        MAX_PULLED_FUTURE_SKEW.num_minutes()
                    ),
                )
                .await?;
            }

            // Attachments are downloaded now: their links expire.
            let mut files: BTreeMap<String, Value> = BTreeMap::new();
            for a in &page.attachment_downloads {
                if refused_elements.contains(a.attachment_id.as_str()) {
                    continue;
                }
                match run.conn.attachments.fetch_and_store_ref(&tenant, a).await {
                    Ok(f) => {
                        if !f.already_stored {
                            counts.attachments_stored += 1;
                        }
                        files.insert(
                            a.attachment_id.to_string(),
                            serde_json::json!({"key": f.key, "sha256": f.sha256, "size": f.size}),
                        );
                    }
                    Err(e) => {
                        counts.quarantined += 1;
                        counts.attachments_quarantined += 1;
                        st.run_quarantined.attachments += 1;
                        self.quarantine(
                            run,
                            "attachment",
                            Some(a.attachment_id.to_string()),
                            e.to_string(),
                        )
                        .await?;
                    }
                }
            }
            let changes: Vec<Change> = observations
                .into_iter()
                .map(|mut o| {
                    if let ObservationScope::Element { element, .. } = &mut o.scope
                        && let Some(id) = element.get("id").and_then(Value::as_str)
                        && let Some(file) = files.get(id)
                        && let Some(obj) = element.as_object_mut()
                    {
                        obj.insert("file".into(), file.clone());
                    }
                    Change::Observe {
                        layer: LayerKind::Pull,
                        observation: o,
                    }
                })
                .collect();
            let outcome = self
                .store
                .apply_run_page(&tenant, &run.job.run_id, changes, Utc::now())
                .await
                .map_err(|e| JobError::Retry {
                    reason: e.to_string(),
                    after: self.settings.retry_after,
                })?;
            eds_core::crash::point("puller.after_apply_page");
            add_outcome(&mut counts, &outcome);
            run.report.versions_written += outcome.versions_written as u64;
            for r in &outcome.records {
                match &r.outcome {
                    RecordOutcome::Rejected { error } => {
                        counts.quarantined += 1;
                        st.run_quarantined.records += 1;
                        self.quarantine(run, "pull", Some(r.ats_id.to_string()), error.clone())
                            .await?;
                    }
                    RecordOutcome::Failed { error } => {
                        run.report.counts.add(&counts);
                        return Err(JobError::Retry {
                            reason: error.clone(),
                            after: self.settings.retry_after,
                        });
                    }
                    _ => {}
                }
            }
            for q in page.quarantined {
                counts.quarantined += 1;
                st.run_quarantined.records += 1;
                self.quarantine(run, "pull", q.ats_id, q.error).await?;
            }
            run.units += 1;
            pages += 1;
            cursor = page.next;
            let now = Utc::now();
            st.updated_at = now;
            if cursor.is_none() {
                self.save_seen(&seen_key, seen.as_ref(), true, pages, true)
                    .await?;
                st.watermark = Some(window.to);
                st.checkpoint = None;
                st.last_success_at = Some(now);
                let outcome = match st.run_quarantined.reason() {
                    Some(reason) => {
                        tracing::warn!(stream = stream.as_str(), %reason, "stream degraded");
                        st.status = SyncStatus::Degraded;
                        st.reason = Some(reason);
                        "degraded"
                    }
                    None => {
                        st.status = SyncStatus::Done;
                        "done"
                    }
                };
                self.registry
                    .put_stream(&tenant, &st)
                    .await
                    .map_err(registry_err)?;
                eds_core::crash::point("puller.after_watermark");
                self.record_run(run, stream, "pull", started_at, outcome, &counts)
                    .await?;
                eds_core::crash::point("puller.after_stream_run_recorded");
                emit_stream_metrics(stream, outcome, &st.run_quarantined);
                run.report.counts.add(&counts);
                return Ok(StepEnd::Done);
            }
            st.checkpoint = Some(Checkpoint {
                window_from: window.from,
                window_to: window.to,
                cursor: cursor.as_ref().map(|c| c.as_str().to_string()),
                pages_committed: pages,
            });
            self.registry
                .put_stream(&tenant, &st)
                .await
                .map_err(registry_err)?;
            eds_core::crash::point("puller.after_checkpoint");
        }
    }

    /// The end of an invocation inside a stream: keep the backfill's ids, record the run
    /// as continued, and continue from the checkpoint — unless the run has made no
    /// progress for [`MAX_STALLED_INVOCATIONS`] invocations, which fails the stream with
    /// its reason (an ATS too slow to answer one page is reported, not continued forever).
    #[allow(clippy::too_many_arguments)]
    async fn continue_pull(
        &self,
        run: &mut Run<'_>,
        st: StreamState,
        started_at: DateTime<Utc>,
        counts: &RunCounts,
        seen_key: &str,
        seen: Option<&HashSet<String>>,
        pages: u64,
    ) -> Result<StepEnd, JobError> {
        let stream = st.stream;
        run.report.counts.add(counts);
        if self.stalled_out(run) {
            // Reporting the stall is this invocation's unit: the next step starts with a
            // fresh count in the next invocation.
            run.units += 1;
            let reason = stalled_reason();
            self.record_run(
                run,
                stream,
                "pull",
                started_at,
                &format!("failed: {reason}"),
                counts,
            )
            .await?;
            return self.fail_stream(run, st, reason).await;
        }
        self.save_seen(seen_key, seen, true, pages, false).await?;
        self.record_run(run, stream, "pull", started_at, "continued", counts)
            .await?;
        Ok(StepEnd::Continue(None))
    }

    fn seen_key(tenant: &TenantId, run_id: &str, stream: StreamName) -> String {
        format!(
            "tenants/{tenant}/reconcile/{run_id}-{}.json",
            stream.as_str()
        )
    }

    async fn reconcile(
        &self,
        run: &mut Run<'_>,
        stream: StreamName,
        resume: Option<Resume>,
    ) -> Result<StepEnd, JobError> {
        let tenant = run.job.tenant.clone();
        let started_at = Utc::now();
        let key = Self::seen_key(&tenant, &run.job.run_id, stream);
        let mut counts = RunCounts::default();
        // Where the listing stands: resumed, complete from this run's backfill, or new.
        let (mut listing, mut cursor) = match resume {
            Some(Resume::Ids { cursor, seen_key }) if seen_key == key => {
                match self.load_seen(&key).await? {
                    Some(s) => (s, Some(Cursor::from_checkpoint(cursor))),
                    None => (SeenIds::default(), None),
                }
            }
            Some(Resume::Confirm { seen_key }) if seen_key == key => {
                match self.load_seen(&key).await? {
                    Some(s) if s.complete => (s, None),
                    _ => (SeenIds::default(), None),
                }
            }
            _ => match self.load_seen(&key).await? {
                Some(s) if s.complete && s.from_backfill => (s, None),
                _ => (SeenIds::default(), None),
            },
        };
        let mut unreadable = 0usize;
        while !listing.complete {
            if !self.may_work(run) {
                return self
                    .continue_reconcile(run, stream, &key, &listing, cursor, started_at, &counts)
                    .await;
            }
            let before = run.conn.ats.metrics();
            let result = run
                .conn
                .ats
                .list_ids(stream, cursor.as_ref(), self.unit_deadline(run))
                .await;
            add_stats(&mut counts, &run.conn.ats.metrics().since(&before));
            let page = match result {
                Ok(p) => p,
                Err(ConnectorError::Deadline { .. }) => {
                    return self
                        .continue_reconcile(
                            run, stream, &key, &listing, cursor, started_at, &counts,
                        )
                        .await;
                }
                Err(ConnectorError::RateLimited { retry_at, .. }) if run.units > 0 => {
                    run.not_before = Some(retry_at);
                    return self
                        .continue_reconcile(
                            run, stream, &key, &listing, cursor, started_at, &counts,
                        )
                        .await;
                }
                Err(e) => {
                    return self
                        .reconcile_error(run, stream, started_at, &counts, e)
                        .await;
                }
            };
            run.units += 1;
            counts.pages += 1;
            unreadable += page.quarantined.len();
            listing
                .ids
                .extend(page.ids.into_iter().map(|i| i.to_string()));
            listing.pages += 1;
            cursor = page.next;
            listing.complete = cursor.is_none();
        }
        // An id row we could not read might be any stored record: tombstoning on an
        // incomplete listing would delete live records, so skip this reconciliation.
        if unreadable > 0 {
            return self
                .skip_reconcile(
                    run,
                    stream,
                    &key,
                    started_at,
                    &counts,
                    &format!("skipped: {unreadable} unreadable id rows"),
                )
                .await;
        }
        let entity = stream.entity();
        let mut absent = Vec::new();
        let mut stored = 0usize;
        for shard in 0..SHARDS {
            let mut start: Option<String> = None;
            loop {
                let page = self
                    .store
                    .list_keys(&tenant, shard, start.as_deref(), 500)
                    .await
                    .map_err(|e| store_retry(e, self.settings.retry_after))?;
                for k in page.keys {
                    if k.entity == entity {
                        stored += 1;
                        if !k.tombstone && !listing.ids.contains(k.ats_id.as_str()) {
                            absent.push(k.ats_id);
                        }
                    }
                }
                start = page.next;
                if start.is_none() {
                    break;
                }
            }
        }
        if listing.ids.is_empty() && stored > 0 {
            // An empty listing while we hold records is more likely a permissions change
            // than a mass deletion: report it, tombstone nothing.
            return self
                .skip_reconcile(
                    run,
                    stream,
                    &key,
                    started_at,
                    &counts,
                    "skipped: the ATS listed no ids",
                )
                .await;
        }
        // Absence from a full id listing proves deletion only for a record the pull had
        // seen (the credential saw it once); a record only ever pushed may simply be
        // invisible to the credential (private, confidential, a missing scope), and a
        // backfill's listing stops a lag short of now. Those are confirmed by id.
        let (mut gone, to_confirm) = self
            .split_by_pull_layer(&tenant, entity, absent, listing.from_backfill)
            .await?;
        let mut i = 0;
        while i < to_confirm.len() {
            if !self.may_work(run) {
                return self
                    .continue_confirm(
                        run,
                        stream,
                        &key,
                        &mut listing,
                        &gone,
                        started_at,
                        &mut counts,
                    )
                    .await;
            }
            let chunk = &to_confirm[i..(i + CONFIRM_BATCH).min(to_confirm.len())];
            let before = run.conn.ats.metrics();
            let result = run
                .conn
                .ats
                .confirm_presence(stream, chunk, self.unit_deadline(run))
                .await;
            add_stats(&mut counts, &run.conn.ats.metrics().since(&before));
            let page = match result {
                Ok(p) if !p.checked.is_empty() => p,
                Err(ConnectorError::RateLimited { retry_at, .. }) if run.units > 0 => {
                    run.not_before = Some(retry_at);
                    return self
                        .continue_confirm(
                            run,
                            stream,
                            &key,
                            &mut listing,
                            &gone,
                            started_at,
                            &mut counts,
                        )
                        .await;
                }
                Ok(_) | Err(ConnectorError::Deadline { .. }) => {
                    return self
                        .continue_confirm(
                            run,
                            stream,
                            &key,
                            &mut listing,
                            &gone,
                            started_at,
                            &mut counts,
                        )
                        .await;
                }
                Err(e) => {
                    // Keep what was confirmed so far before the error decides.
                    if !self.tombstone(run, entity, &gone, &mut counts).await? {
                        return Ok(dropped());
                    }
                    return self
                        .reconcile_error(run, stream, started_at, &counts, e)
                        .await;
                }
            };
            run.units += 1;
            i += page.checked.len();
            for (id, presence) in page.checked {
                match presence {
                    Presence::Gone => gone.push(id),
                    Presence::Present | Presence::NotVisible => {
                        if presence == Presence::NotVisible {
                            counts.not_visible += 1;
                        }
                        // Kept, and not asked again if this reconciliation continues.
                        listing.ids.insert(id.to_string());
                    }
                }
            }
        }
        if !self.tombstone(run, entity, &gone, &mut counts).await? {
            return Ok(dropped());
        }
        self.record_run(run, stream, "reconcile", started_at, "done", &counts)
            .await?;
        eds_core::crash::point("puller.after_reconcile_run_recorded");
        run.report.counts.add(&counts);
        self.delete_seen(&key).await;
        Ok(StepEnd::Done)
    }

    /// Splits records absent from a full listing into those the pull had seen (gone) and
    /// those only ever pushed (to confirm by id, with their parent read from the stored
    /// head); after a backfill's listing every absent record is confirmed.
    async fn split_by_pull_layer(
        &self,
        tenant: &TenantId,
        entity: EntityKind,
        absent: Vec<AtsId>,
        confirm_all: bool,
    ) -> Result<(Vec<AtsId>, Vec<Probe>), JobError> {
        let heads: Vec<_> = futures::stream::iter(absent)
            .map(|id| async move {
                let key = RecordKey::new(tenant.clone(), entity, id.clone());
                self.store.get(&key).await.map(|h| (id, h))
            })
            .buffered(8)
            .collect()
            .await;
        let (mut gone, mut to_confirm) = (Vec::new(), Vec::new());
        for h in heads {
            let (id, head) = h.map_err(|e| store_retry(e, self.settings.retry_after))?;
            let Some(head) = head else { continue };
            if !confirm_all && head.state.layer(LayerKind::Pull).is_some() {
                gone.push(id);
                continue;
            }
            let parent = entity
                .parent_field()
                .and_then(|f| head.view.fields.get(f))
                .and_then(Value::as_str)
                .and_then(|p| AtsId::parse(p).ok());
            to_confirm.push(Probe { id, parent });
        }
        Ok((gone, to_confirm))
    }

    /// Tombstones `ids` page by page behind the fence; `false` when the epoch moved.
    async fn tombstone(
        &self,
        run: &mut Run<'_>,
        entity: EntityKind,
        ids: &[AtsId],
        counts: &mut RunCounts,
    ) -> Result<bool, JobError> {
        for chunk in ids.chunks(100) {
            if self.fence(run).await?.refusal().is_some() {
                return Ok(false);
            }
            let changes = chunk
                .iter()
                .map(|id| tombstone(entity, id.clone()))
                .collect();
            let outcome = self
                .store
                .apply_page(&run.job.tenant, changes, Utc::now())
                .await
                .map_err(|e| store_retry(e, self.settings.retry_after))?;
            eds_core::crash::point("puller.after_tombstone_page");
            counts.tombstoned += (outcome.updated + outcome.created) as u64;
            run.report.versions_written += outcome.versions_written as u64;
        }
        Ok(true)
    }

    /// A connector error in a reconciliation (listing or confirmation).
    async fn reconcile_error(
        &self,
        run: &mut Run<'_>,
        stream: StreamName,
        started_at: DateTime<Utc>,
        counts: &RunCounts,
        e: ConnectorError,
    ) -> Result<StepEnd, JobError> {
        run.report.counts.add(counts);
        match e {
            ConnectorError::RateLimited { retry_at, .. } => {
                self.record_run(
                    run,
                    stream,
                    "reconcile",
                    started_at,
                    &format!("rate_limited: until {}", canonical_timestamp(&retry_at)),
                    counts,
                )
                .await?;
                Err(rate_limited(retry_at))
            }
            ConnectorError::NeedsReauth | ConnectorError::Credentials(_) => {
                let outcome = self
                    .needs_reauth(&run.cfg, "the ATS refused the stored credentials")
                    .await?;
                Ok(StepEnd::Stop(outcome))
            }
            e if e.is_retryable() => Err(JobError::Retry {
                reason: e.to_string(),
                after: self.settings.retry_after,
            }),
            e => {
                self.record_run(
                    run,
                    stream,
                    "reconcile",
                    started_at,
                    &format!("failed: {e}"),
                    counts,
                )
                .await?;
                Ok(StepEnd::Done)
            }
        }
    }

    async fn skip_reconcile(
        &self,
        run: &mut Run<'_>,
        stream: StreamName,
        key: &str,
        started_at: DateTime<Utc>,
        counts: &RunCounts,
        outcome: &str,
    ) -> Result<StepEnd, JobError> {
        self.record_run(run, stream, "reconcile", started_at, outcome, counts)
            .await?;
        run.report.counts.add(counts);
        self.delete_seen(key).await;
        Ok(StepEnd::Done)
    }

    #[allow(clippy::too_many_arguments)]
    async fn continue_reconcile(
        &self,
        run: &mut Run<'_>,
        stream: StreamName,
        key: &str,
        listing: &SeenIds,
        cursor: Option<Cursor>,
        started_at: DateTime<Utc>,
        counts: &RunCounts,
    ) -> Result<StepEnd, JobError> {
        if self.stalled_out(run) {
            run.units += 1;
            return self
                .skip_reconcile(
                    run,
                    stream,
                    key,
                    started_at,
                    counts,
                    &format!("failed: {}", stalled_reason()),
                )
                .await;
        }
        let Some(cursor) = cursor else {
            // Not one page read yet: start over next time.
            run.report.counts.add(counts);
            return Ok(StepEnd::Continue(None));
        };
        self.put_seen(key, listing).await?;
        eds_core::crash::point("puller.after_reconcile_state_put");
        self.record_run(run, stream, "reconcile", started_at, "continued", counts)
            .await?;
        run.report.counts.add(counts);
        Ok(StepEnd::Continue(Some(Resume::Ids {
            cursor: cursor.as_str().to_string(),
            seen_key: key.to_string(),
        })))
    }

    /// The end of an invocation while records are being confirmed: tombstone what was
    /// confirmed gone, keep the listing with the records confirmed present, continue.
    #[allow(clippy::too_many_arguments)]
    async fn continue_confirm(
        &self,
        run: &mut Run<'_>,
        stream: StreamName,
        key: &str,
        listing: &mut SeenIds,
        gone: &[AtsId],
        started_at: DateTime<Utc>,
        counts: &mut RunCounts,
    ) -> Result<StepEnd, JobError> {
        if !self.tombstone(run, stream.entity(), gone, counts).await? {
            run.report.counts.add(counts);
            return Ok(dropped());
        }
        if self.stalled_out(run) {
            run.units += 1;
            return self
                .skip_reconcile(
                    run,
                    stream,
                    key,
                    started_at,
                    counts,
                    &format!("failed: {}", stalled_reason()),
                )
                .await;
        }
        listing.complete = true;
        self.put_seen(key, listing).await?;
        self.record_run(run, stream, "reconcile", started_at, "continued", counts)
            .await?;
        run.report.counts.add(counts);
        Ok(StepEnd::Continue(Some(Resume::Confirm {
            seen_key: key.to_string(),
        })))
    }

    /// Keeps a backfill's ids for the reconciliation of the same run (nothing when the
    /// run does not collect them).
    async fn save_seen(
        &self,
        key: &str,
        ids: Option<&HashSet<String>>,
        from_backfill: bool,
        pages: u64,
        complete: bool,
    ) -> Result<(), JobError> {
        let Some(ids) = ids else { return Ok(()) };
        let s = SeenIds {
            complete,
            from_backfill,
            pages,
            ids: ids.clone(),
        };
        self.put_seen(key, &s).await
    }

    async fn put_seen(&self, key: &str, s: &SeenIds) -> Result<(), JobError> {
        let body = serde_json::to_vec(&s.stored()).map_err(|e| JobError::Poison(e.to_string()))?;
        self.blobs
            .write_blob(key, body)
            .await
            .map_err(|e| JobError::Retry {
                reason: e.to_string(),
                after: Duration::from_secs(10),
            })
    }

    /// The ids kept under `key`; `None` when there are none.
    async fn load_seen(&self, key: &str) -> Result<Option<SeenIds>, JobError> {
        let Some(bytes) = self
            .blobs
            .read_blob(key)
            .await
            .map_err(|e| JobError::Retry {
                reason: e.to_string(),
                after: Duration::from_secs(10),
            })?
        else {
            return Ok(None);
        };
        SeenIds::parse(&bytes)
            .map(Some)
            .map_err(|e| JobError::Poison(format!("reconciliation state unreadable: {e}")))
    }

    /// Best effort: a stale set is replaced by the next reconciliation's first page and
    /// removed with the tenant's objects on deletion.
    async fn delete_seen(&self, key: &str) {
        if let Err(e) = self.blobs.delete_blob(key).await {
            tracing::warn!(error = %e, "reconciliation state not deleted");
        }
    }

    /// Re-merges every stored record (after a re-enable), shard by shard.
    async fn remerge(
        &self,
        run: &mut Run<'_>,
        resume: Option<Resume>,
    ) -> Result<StepEnd, JobError> {
        let tenant = run.job.tenant.clone();
        let (mut shard, mut after) = match resume {
            Some(Resume::Sweep { shard, after }) => (shard, after),
            _ => (0, None),
        };
        while shard < u32::from(SHARDS) {
            if !self.may_work(run) {
                if self.stalled_out(run) {
                    return Err(JobError::Retry {
                        reason: format!("re-merge: {}", stalled_reason()),
                        after: self.settings.retry_after,
                    });
                }
                return Ok(StepEnd::Continue(Some(Resume::Sweep { shard, after })));
            }
            if let Some(why) = self.fence(run).await?.refusal() {
                return Ok(StepEnd::Stop(JobOutcome::Dropped(why.into())));
            }
            let page = self
                .store
                .list_keys(&tenant, shard as u8, after.as_deref(), 100)
                .await
                .map_err(|e| JobError::Retry {
                    reason: e.to_string(),
                    after: self.settings.retry_after,
                })?;
            let keys: Vec<_> = page
                .keys
                .iter()
                .map(|k| (k.entity, k.ats_id.clone()))
                .collect();
            if !keys.is_empty() {
                let outcome = self
                    .store
                    .set_mode_page(&tenant, &keys, ViewMode::Merged, Utc::now())
                    .await
                    .map_err(|e| JobError::Retry {
                        reason: e.to_string(),
                        after: self.settings.retry_after,
                    })?;
                run.report.versions_written += outcome.versions_written as u64;
            }
            run.units += 1;
            after = page.next;
            if after.is_none() {
                shard += 1;
            }
        }
        self.registry
            .clear_remerge_pending(&tenant, run.job.epoch)
            .await
            .map_err(registry_err)?;
        Ok(StepEnd::Done)
    }
}

fn tombstone(entity: EntityKind, ats_id: AtsId) -> Change {
    Change::Observe {
        layer: LayerKind::Pull,
        observation: Observation {
            entity,
            ats_id,
            ats_updated_at: None,
            scope: ObservationScope::Deleted,
        },
    }
}

fn new_stream_state(stream: StreamName, now: DateTime<Utc>) -> StreamState {
    StreamState {
        stream,
        status: SyncStatus::Paused,
        reason: None,
        watermark: None,
        checkpoint: None,
        last_success_at: None,
        last_run_id: None,
        run_quarantined: QuarantinedInRun::default(),
        updated_at: now,
    }
}

impl Puller {
    /// The Lambda handler: a FIFO batch, in order; at the first failure that message and
    /// the later ones are reported for redelivery. Returns the batch response and what
    /// the successful jobs did.
    pub async fn handle(
        &self,
        event: aws_lambda_events::event::sqs::SqsEvent,
        invocation: eds_core::invocation::Invocation,
    ) -> (aws_lambda_events::event::sqs::SqsBatchResponse, JobReport) {
        let deadline = invocation.deadline.instant();
        let report = std::sync::Mutex::new(JobReport::default());
        let response = eds_core::queue::fifo_batch(&event, &*self.queue, |msg| {
            let body = msg.body.clone().unwrap_or_default();
            let report = &report;
            async move {
                let (outcome, r) = self.handle_message(&body, deadline).await?;
                tracing::info!(?outcome, counts = ?r.counts, "pull job finished");
                if let Ok(mut total) = report.lock() {
                    total.counts.add(&r.counts);
                    total.versions_written += r.versions_written;
                    total.continuations_sent += r.continuations_sent;
                }
                Ok(())
            }
        })
        .await;
        (response, report.into_inner().unwrap_or_default())
    }
}
