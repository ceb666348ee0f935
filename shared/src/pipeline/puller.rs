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
use serde_json::Value;
use tokio::time::Instant;

use super::connect::{Connection, ConnectorFactory};
use crate::connector::{ConnectorError, Cursor, RequestStats, Window, WindowPolicy};
use crate::domain::ids::{AtsId, TenantId};
use crate::domain::merge::ViewMode;
use crate::domain::model::{LayerKind, Observation, ObservationScope};
use crate::domain::version::Change;
use crate::jobs::{PullJob, Resume, Step, parse_job};
use crate::lambda::{FifoMessage, JobError, send_fifo_batches};
use crate::store::dynamodb::DynamoStore;
use crate::store::{PageOutcome, RecordOutcome, RecordSweep, RecordWrite, SHARDS};
use crate::tenants::{
    Checkpoint, QuarantineEntry, RegistryError, RunCounts, StreamName, StreamState, SyncRun,
    SyncStatus, TenantConfig, TenantRegistry, TenantState,
};

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
    pub registry: TenantRegistry,
    pub store: Arc<DynamoStore>,
    pub sqs: aws_sdk_sqs::Client,
    pub pull_queue_url: String,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
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
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let now = Utc::now();
        if !self
            .registry
            .acquire_lease(tenant, &owner, job.epoch, now + self.settings.lease, now)
            .await
            .map_err(registry_err)?
        {
            // Either the epoch moved between the two reads, or another invocation holds
            // the lease (a duplicated message): try again later.
            return Err(JobError::Retry {
                reason: "another puller holds the tenant's lease".into(),
                after: self.settings.retry_after,
            });
        }
        // Boxed: the step futures are deep, and callers' futures stay small.
        crate::crash::point("puller.after_lease_acquired");
        let result = Box::pin(self.run_steps(job, owner.clone(), cfg, deadline)).await;
        if let Err(e) = self.registry.release_lease(tenant, &owner).await {
            tracing::warn!(error = %e, "could not release the lease; it expires by itself");
        }
        result
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
            && let Ok(true) = self.factory.uses_refresh_token(&cfg).await
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
        };
        let mut resume = job.resume.clone();
        for (i, step) in job.steps.iter().enumerate() {
            let token_before = run.conn.tokens_requests();
            let end = match step {
                Step::RefreshToken => self.refresh_token(&mut run).await?,
                Step::Pull(stream) => self.pull_stream(&mut run, *stream).await?,
                Step::Reconcile(stream) => self.reconcile(&mut run, *stream, resume.take()).await?,
                Step::Remerge => self.remerge(&mut run, resume.take()).await?,
            };
            run.report.counts.token_requests += run.conn.tokens_requests() - token_before;
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
        crate::crash::point("puller.after_run_finished");
        Ok((JobOutcome::Done, run.report))
    }

    async fn send_continuation(&self, next: &PullJob) -> Result<(), JobError> {
        let msg = FifoMessage {
            body: serde_json::to_string(next).map_err(|e| JobError::Poison(e.to_string()))?,
            group_id: next.tenant.to_string(),
            dedup_id: next.dedup_id(),
        };
        crate::crash::point("puller.before_continuation_send");
        send_fifo_batches(&self.sqs, &self.pull_queue_url, &[msg])
            .await
            .map_err(|e| JobError::Retry {
                reason: e.to_string(),
                after: Duration::from_secs(10),
            })?;
        crate::crash::point("puller.after_continuation_send");
        Ok(())
    }

    fn time_left(&self, run: &Run<'_>) -> bool {
        run.deadline.saturating_duration_since(Instant::now()) > self.settings.margin
    }

    /// The fence: renew the lease under the job's epoch before any write.
    async fn fence(&self, run: &Run<'_>) -> Result<bool, JobError> {
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
        match run.conn.tokens.refresh_now().await {
            Ok(_) => {
                self.registry
                    .touch(&run.job.tenant, "last_token_refresh_at", Utc::now())
                    .await
                    .map_err(registry_err)?;
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

    async fn pull_stream(
        &self,
        run: &mut Run<'_>,
        stream: StreamName,
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
            _ => match self.settings.window.next(st.watermark, started_at) {
                Some(w) => (w, None, 0),
                None => return Ok(StepEnd::Done),
            },
        };
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
        crate::crash::point("puller.after_stream_started");

        let mut counts = RunCounts::default();
        let mut restarts = 0;
        loop {
            if !self.time_left(run) {
                self.record_run(run, stream, "pull", started_at, "continued", &counts)
                    .await?;
                run.report.counts.add(&counts);
                return Ok(StepEnd::Continue(None));
            }
            if !self.fence(run).await? {
                run.report.counts.add(&counts);
                return Ok(StepEnd::Stop(JobOutcome::Dropped(
                    "the tenant's epoch moved (disable, deletion or re-enable)".into(),
                )));
            }
            let page_deadline = run.deadline - self.settings.margin;
            let page = match run
                .conn
                .ats
                .list_changed(stream, &window, cursor.as_ref(), page_deadline)
                .await
            {
                Ok(p) => p,
                Err(ConnectorError::Deadline { .. }) => {
                    self.record_run(run, stream, "pull", started_at, "continued", &counts)
                        .await?;
                    run.report.counts.add(&counts);
                    return Ok(StepEnd::Continue(None));
                }
                Err(ConnectorError::CursorExpired { .. })
                    if restarts < self.settings.max_cursor_restarts =>
                {
                    // Restart the window: re-reading committed pages writes nothing.
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
                Err(ConnectorError::Unsupported(_)) => return Ok(StepEnd::Done),
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
            add_stats(&mut counts, &page.stats);
            counts.pages += 1;
            counts.records_seen += page.observations.len() as u64;

            // Attachments are downloaded now: their links expire.
            let mut files: BTreeMap<String, Value> = BTreeMap::new();
            for a in &page.attachment_downloads {
                match run
                    .conn
                    .attachments
                    .fetch_and_store_signed(&tenant, &a.url)
                    .await
                {
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
            let changes: Vec<Change> = page
                .observations
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
            crate::crash::point("puller.after_apply_page");
            add_outcome(&mut counts, &outcome);
            run.report.versions_written += outcome.versions_written as u64;
            for r in &outcome.records {
                match &r.outcome {
                    RecordOutcome::Rejected { error } => {
                        counts.quarantined += 1;
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
                self.quarantine(run, "pull", q.ats_id, q.error).await?;
            }
            pages += 1;
            cursor = page.next;
            let now = Utc::now();
            st.updated_at = now;
            if cursor.is_none() {
                st.watermark = Some(window.to);
                st.checkpoint = None;
                st.status = SyncStatus::Done;
                st.last_success_at = Some(now);
                self.registry
                    .put_stream(&tenant, &st)
                    .await
                    .map_err(registry_err)?;
                crate::crash::point("puller.after_watermark");
                self.record_run(run, stream, "pull", started_at, "done", &counts)
                    .await?;
                crate::crash::point("puller.after_stream_run_recorded");
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
            crate::crash::point("puller.after_checkpoint");
        }
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
        let (mut seen, mut cursor): (HashSet<String>, Option<Cursor>) = match resume {
            Some(Resume::Ids { cursor, seen_key }) if seen_key == key => (
                self.load_seen(&key).await?,
                Some(Cursor::from_checkpoint(cursor)),
            ),
            _ => (HashSet::new(), None),
        };
        let mut counts = RunCounts::default();
        let mut unreadable = 0usize;
        loop {
            if !self.time_left(run) {
                return self
                    .continue_reconcile(run, stream, &key, &seen, cursor, started_at, &counts)
                    .await;
            }
            let page = match run
                .conn
                .ats
                .list_ids(stream, cursor.as_ref(), run.deadline - self.settings.margin)
                .await
            {
                Ok(p) => p,
                Err(ConnectorError::Deadline { .. }) => {
                    return self
                        .continue_reconcile(run, stream, &key, &seen, cursor, started_at, &counts)
                        .await;
                }
                Err(ConnectorError::NeedsReauth) | Err(ConnectorError::Credentials(_)) => {
                    let outcome = self
                        .needs_reauth(&run.cfg, "the ATS refused the stored credentials")
                        .await?;
                    return Ok(StepEnd::Stop(outcome));
                }
                Err(ConnectorError::Unsupported(_)) => return Ok(StepEnd::Done),
                Err(e) if e.is_retryable() => {
                    return Err(JobError::Retry {
                        reason: e.to_string(),
                        after: self.settings.retry_after,
                    });
                }
                Err(e) => {
                    self.record_run(
                        run,
                        stream,
                        "reconcile",
                        started_at,
                        &format!("failed: {e}"),
                        &counts,
                    )
                    .await?;
                    return Ok(StepEnd::Done);
                }
            };
            add_stats(&mut counts, &page.stats);
            counts.pages += 1;
            unreadable += page.quarantined.len();
            seen.extend(page.ids.into_iter().map(|i| i.to_string()));
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        // An id row we could not read might be any stored record: tombstoning on an
        // incomplete listing would delete live records, so skip this reconciliation.
        if unreadable > 0 {
            self.record_run(
                run,
                stream,
                "reconcile",
                started_at,
                &format!("skipped: {unreadable} unreadable id rows"),
                &counts,
            )
            .await?;
            self.delete_seen(&key).await;
            return Ok(StepEnd::Done);
        }
        let entity = stream.entity();
        let mut gone = Vec::new();
        let mut stored = 0usize;
        for shard in 0..SHARDS {
            let mut start: Option<String> = None;
            loop {
                let page = self
                    .store
                    .list_keys(&tenant, shard, start.as_deref(), 500)
                    .await
                    .map_err(|e| JobError::Retry {
                        reason: e.to_string(),
                        after: self.settings.retry_after,
                    })?;
                for k in page.keys {
                    if k.entity == entity {
                        stored += 1;
                        if !k.tombstone && !seen.contains(k.ats_id.as_str()) {
                            gone.push(k.ats_id);
                        }
                    }
                }
                start = page.next;
                if start.is_none() {
                    break;
                }
            }
        }
        if seen.is_empty() && stored > 0 {
            // An empty listing while we hold records is more likely a permissions change
            // than a mass deletion: report it, tombstone nothing.
            self.record_run(
                run,
                stream,
                "reconcile",
                started_at,
                "skipped: the ATS listed no ids",
                &counts,
            )
            .await?;
            self.delete_seen(&key).await;
            return Ok(StepEnd::Done);
        }
        for chunk in gone.chunks(100) {
            if !self.fence(run).await? {
                return Ok(StepEnd::Stop(JobOutcome::Dropped(
                    "the tenant's epoch moved".into(),
                )));
            }
            let changes = chunk
                .iter()
                .map(|id| tombstone(entity, id.clone()))
                .collect();
            let outcome = self
                .store
                .apply_page(&tenant, changes, Utc::now())
                .await
                .map_err(|e| JobError::Retry {
                    reason: e.to_string(),
                    after: self.settings.retry_after,
                })?;
            crate::crash::point("puller.after_tombstone_page");
            counts.tombstoned += (outcome.updated + outcome.created) as u64;
            run.report.versions_written += outcome.versions_written as u64;
        }
        self.record_run(run, stream, "reconcile", started_at, "done", &counts)
            .await?;
        crate::crash::point("puller.after_reconcile_run_recorded");
        run.report.counts.add(&counts);
        self.delete_seen(&key).await;
        Ok(StepEnd::Done)
    }

    #[allow(clippy::too_many_arguments)]
    async fn continue_reconcile(
        &self,
        run: &mut Run<'_>,
        stream: StreamName,
        key: &str,
        seen: &HashSet<String>,
        cursor: Option<Cursor>,
        started_at: DateTime<Utc>,
        counts: &RunCounts,
    ) -> Result<StepEnd, JobError> {
        let Some(cursor) = cursor else {
            // Not one page read yet: start over next time.
            return Ok(StepEnd::Continue(None));
        };
        let mut ids: Vec<&String> = seen.iter().collect();
        ids.sort();
        let body = serde_json::to_vec(&ids).map_err(|e| JobError::Poison(e.to_string()))?;
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .map_err(|e| JobError::Retry {
                reason: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
                after: Duration::from_secs(10),
            })?;
        crate::crash::point("puller.after_reconcile_state_put");
        self.record_run(run, stream, "reconcile", started_at, "continued", counts)
            .await?;
        run.report.counts.add(counts);
        Ok(StepEnd::Continue(Some(Resume::Ids {
            cursor: cursor.as_str().to_string(),
            seen_key: key.to_string(),
        })))
    }

    async fn load_seen(&self, key: &str) -> Result<HashSet<String>, JobError> {
        let out = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| JobError::Retry {
                reason: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
                after: Duration::from_secs(10),
            })?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| JobError::Retry {
                reason: e.to_string(),
                after: Duration::from_secs(10),
            })?
            .into_bytes();
        serde_json::from_slice::<Vec<String>>(&bytes)
            .map(|v| v.into_iter().collect())
            .map_err(|e| JobError::Poison(format!("reconciliation state unreadable: {e}")))
    }

    async fn delete_seen(&self, key: &str) {
        let _ = self
            .s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
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
            if !self.time_left(run) {
                return Ok(StepEnd::Continue(Some(Resume::Sweep { shard, after })));
            }
            if !self.fence(run).await? {
                return Ok(StepEnd::Stop(JobOutcome::Dropped(
                    "the tenant's epoch moved".into(),
                )));
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

impl Connection {
    fn tokens_requests(&self) -> u64 {
        use crate::auth::AccessTokens;
        self.tokens.token_requests()
    }
}

fn tombstone(entity: crate::domain::ids::EntityKind, ats_id: AtsId) -> Change {
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
        updated_at: now,
    }
}

impl Puller {
    /// The Lambda handler: a FIFO batch, in order; at the first failure that message and
    /// the later ones are reported for redelivery. Returns the batch response and what
    /// the successful jobs did.
    pub async fn handle_batch(
        &self,
        event: &aws_lambda_events::event::sqs::SqsEvent,
        deadline: Instant,
    ) -> (aws_lambda_events::event::sqs::SqsBatchResponse, JobReport) {
        let report = std::sync::Mutex::new(JobReport::default());
        let response = crate::lambda::fifo_batch(event, &self.sqs, &self.pull_queue_url, |msg| {
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

impl Puller {
    /// The puller as deployed: AWS adapters from the configuration, the Greenhouse
    /// connector factory with the credentials adapter.
    pub fn from_config(
        config: &crate::lambda::Config,
        aws: &crate::lambda::Aws,
        credentials: crate::credentials::CredentialsConfig,
        settings: PullerSettings,
        fast_retries: bool,
    ) -> Result<Self, crate::auth::AuthError> {
        let services = credentials.services(&aws.sdk)?;
        let blobs: Arc<dyn crate::attachments::BlobStore> = Arc::new(
            crate::attachments::S3BlobStore::new(aws.s3.clone(), config.attachments_bucket.clone()),
        );
        let factory = super::connect::GreenhouseFactory {
            credentials,
            services,
            blobs,
            allow_loopback_for_local_testing:
                crate::attachments::guard::deployment_allows_local_testing(),
            fast_retries,
        };
        Ok(Self {
            registry: TenantRegistry::new(aws.dynamodb.clone(), config.tenants_table.clone()),
            store: Arc::new(DynamoStore::new(
                aws.dynamodb.clone(),
                config.records_table.clone(),
            )),
            sqs: aws.sqs.clone(),
            pull_queue_url: config.pull_queue_url.clone(),
            s3: aws.s3.clone(),
            bucket: config.attachments_bucket.clone(),
            factory: Arc::new(factory),
            settings,
        })
    }
}
