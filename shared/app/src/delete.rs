//! The delete function: the customer's request to delete all their ATS data
//! (product.md sections 1 and 7). Triggered by the settings event
//! `tenant.deletion_requested` `{tenant_id, request_id}`, continued through the FIFO
//! delete queue (group = tenant), idempotent per request id.
//!
//! Phases ([`DeletePhase`]), each bounded by the invocation deadline and resumable. An
//! invocation finishes at least one unit of work (a page, a phase step) before it heeds
//! the deadline ([`Budget`], shared by the phases of one invocation), and the records
//! phase carries its shard in the continuation, so every invocation moves the deletion
//! on; a wait for writers never continues at once from the queue (see `wait_writers`).
//! * **WaitWriters**: the fence. The tenant moves to `deleting` with a new epoch, leaves
//!   the due index and loses its active run; then the phase waits until no writer is
//!   live (no pull lease, no push lease). A puller's next lease renewal fails on the
//!   epoch; a push writer registers its lease before it re-reads the state, so either it
//!   sees `deleting` or this phase sees its lease. Nothing writes after this phase.
//! * **Records**: every `by_tenant` shard, a page of keys at a time, each record's items
//!   deleted (versions first, head last, so an interrupted record stays listed).
//! * **Attachments**: every S3 object under `tenants/{tenant}/`, up to 1000 per request.
//! * **Registry**: runs, streams and watermarks, quarantine, leases; then the tenant's
//!   secret `{SECRET_PREFIX}{tenant}` (force delete, not found is fine).
//! * **Verify**: nothing listed in any shard, no S3 object, no tenants-table item but
//!   the `deleting` `CONFIG`, no secret. Then the receipt is written (under
//!   `RECEIPT#{tenant}`, which the deletion does not touch) and `CONFIG` deleted last:
//!   while `CONFIG` says `deleting`, a re-enable is refused, so nothing new can start
//!   before the receipt exists. Leftovers are deleted again and the message retried
//!   (a persistent leftover ends in the DLQ, with its alarm, and no receipt).
//!
//! A crash anywhere is finished by the redelivery: every step is idempotent, a receipt
//! already written means the request is done (only `CONFIG` may still need deleting).
//! Counts travel in the continuation; the records of an invocation that crashed before
//! handing on are not counted (the verification, not the counts, proves emptiness).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::Instrument;

use super::disable::{
    Budget, Deadline, Invocation, LifecycleEvent, LifecycleOptions, LifecycleResponse, Via,
    event_source_id, parse_settings_detail, send_continuation, wait_visibility,
};
use eds_core::attachments::{BlobError, BlobStore, DELETE_BLOBS_MAX};
use eds_core::domain::ids::{RecordKey, TenantId};
use eds_core::jobs::{DeletePhase, LifecycleJob, parse_job};
use eds_core::queue::{JobError, JobQueue, SendError, fifo_batch};
use eds_core::secrets::{SecretName, SecretStore, SecretStoreError};
use eds_core::store::{RecordSweep, SHARDS, StoreError};
use eds_core::tenants::{DeletionReceipt, Registry, RegistryError, TenantState};

/// `detail-type` of a deletion request.
pub const DELETION_REQUESTED: &str = "tenant.deletion_requested";
/// Longest accepted request id (it becomes a sort key and appears in logs).
pub const MAX_REQUEST_ID_LEN: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// Malformed or unexpected event: rejected before any side effect.
    #[error("rejected event: {0}")]
    InvalidEvent(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Secrets(#[from] SecretStoreError),
    #[error(transparent)]
    Send(#[from] SendError),
    /// The verification pass found data (deleted again; verified on the retry).
    #[error("verification found items left: {0}")]
    Leftovers(String),
    /// A writer's lease is still live and the invocation has no time to poll again: the
    /// continuation message goes back to the queue for `after` (its visibility).
    #[error("writers are still live; the deletion waits {}s in its queue", after.as_secs())]
    WritersLive { after: Duration },
}

impl DeleteError {
    pub fn is_retryable(&self) -> bool {
        match self {
            DeleteError::InvalidEvent(_) => false,
            DeleteError::Registry(e) => e.is_retryable(),
            DeleteError::Store(e) => e.is_retryable(),
            DeleteError::Blob(_)
            | DeleteError::Secrets(_)
            | DeleteError::Send(_)
            | DeleteError::Leftovers(_)
            | DeleteError::WritersLive { .. } => true,
        }
    }

    pub fn to_job_error(&self) -> JobError {
        if let DeleteError::WritersLive { after } = self {
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

/// A validated deletion request.
#[derive(Debug, Clone, PartialEq)]
pub struct DeletionRequest {
    pub tenant: TenantId,
    pub request_id: String,
    pub requested_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeletionRequested {
    tenant_id: String,
    request_id: String,
}

/// Parses a `tenant.deletion_requested` event strictly (no side effect on failure).
/// `requested_at` is the event's time (the same on every redelivery).
pub fn parse_deletion_requested(
    event: &EventBridgeEvent<Value>,
) -> Result<DeletionRequest, String> {
    let d: DeletionRequested = parse_settings_detail(event, DELETION_REQUESTED)?;
    let tenant = TenantId::parse(d.tenant_id).map_err(|e| format!("tenant_id: {e}"))?;
    validate_request_id(&d.request_id)?;
    Ok(DeletionRequest {
        tenant,
        request_id: d.request_id,
        requested_at: event.time.unwrap_or_else(Utc::now),
    })
}

/// A request id is 1..=128 characters of `A-Z a-z 0-9 . _ : -`.
pub fn validate_request_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_REQUEST_ID_LEN {
        return Err(format!(
            "request_id must be 1..={MAX_REQUEST_ID_LEN} characters, got {}",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(format!(
            "request_id contains {c:?} (allowed: A-Z a-z 0-9 . _ : -)"
        ));
    }
    Ok(())
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteOutcome {
    /// Verified empty; the receipt is written.
    Completed,
    /// The rest was sent to the delete queue.
    Continued,
    /// A receipt for this request already existed.
    AlreadyDone,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeleteReport {
    pub tenant: TenantId,
    pub request_id: String,
    pub outcome: DeleteOutcome,
    /// The phase the invocation ended in (the continuation's phase when continued).
    pub phase: DeletePhase,
    /// The records phase's shard (where the continuation resumes).
    pub shard: u32,
    /// Counts so far (the receipt's counts when completed).
    pub counts: BTreeMap<String, u64>,
    pub waited_ms: u64,
    pub receipt: Option<DeletionReceipt>,
}

/// The delete handler (library side of `functions/delete`).
pub struct Deleter {
    registry: Arc<dyn Registry>,
    store: Arc<dyn RecordSweep>,
    blobs: Arc<dyn BlobStore>,
    secrets: Arc<dyn SecretStore>,
    queue: Arc<dyn JobQueue>,
    secret_prefix: String,
    opts: LifecycleOptions,
}

impl Deleter {
    /// `queue` is the delete queue (continuations); `secret_prefix` names the tenant's
    /// secret (`SecretName::for_tenant`).
    pub fn new(
        registry: Arc<dyn Registry>,
        store: Arc<dyn RecordSweep>,
        blobs: Arc<dyn BlobStore>,
        secrets: Arc<dyn SecretStore>,
        queue: Arc<dyn JobQueue>,
        secret_prefix: impl Into<String>,
    ) -> Self {
        Self {
            registry,
            store,
            blobs,
            secrets,
            queue,
            secret_prefix: secret_prefix.into(),
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
    ) -> Result<LifecycleResponse<DeleteReport>, DeleteError> {
        let deadline = invocation.deadline;
        event
            .route(
                |request| async move { self.on_event(&request, deadline).await },
                |batch| async move { self.on_sqs(&batch, deadline).await },
            )
            .await
    }

    /// A `tenant.deletion_requested` event.
    pub async fn on_event(
        &self,
        event: &EventBridgeEvent<Value>,
        deadline: Deadline,
    ) -> Result<DeleteReport, DeleteError> {
        let req = parse_deletion_requested(event).map_err(|e| {
            tracing::warn!(error = %e, "deletion event rejected");
            DeleteError::InvalidEvent(e)
        })?;
        let job = LifecycleJob::Delete {
            tenant: req.tenant,
            request_id: req.request_id,
            requested_at: req.requested_at,
            phase: DeletePhase::WaitWriters,
            shard: 0,
            counts: BTreeMap::new(),
        };
        self.run(job, &event_source_id(event), Via::Event, deadline)
            .await
    }

    /// A batch of continuations from the delete queue, in FIFO order.
    pub async fn on_sqs(&self, event: &SqsEvent, deadline: Deadline) -> SqsBatchResponse {
        fifo_batch(event, &*self.queue, |msg: &SqsMessage| {
            let msg = msg.clone();
            async move {
                let job: LifecycleJob =
                    parse_job(msg.body.as_deref().unwrap_or("")).map_err(JobError::Poison)?;
                if let LifecycleJob::Delete { request_id, .. } = &job {
                    validate_request_id(request_id).map_err(JobError::Poison)?;
                }
                let source = msg.message_id.clone().unwrap_or_default();
                self.run(job, &source, Via::Queue, deadline)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_job_error())
            }
        })
        .await
    }

    /// Runs a deletion from the job's phase until it completes or the deadline nears
    /// (after at least one unit of work: [`Budget`]). `via` says whether a wait can hand
    /// its message back to the queue.
    pub async fn run(
        &self,
        job: LifecycleJob,
        source_id: &str,
        via: Via,
        deadline: Deadline,
    ) -> Result<DeleteReport, DeleteError> {
        let LifecycleJob::Delete {
            tenant,
            request_id,
            requested_at,
            phase,
            shard,
            counts,
        } = job
        else {
            return Err(DeleteError::InvalidEvent("not a delete job".into()));
        };
        let span = tracing::info_span!("delete", tenant = %tenant, request_id = %request_id);
        let mut report = DeleteReport {
            tenant,
            request_id,
            outcome: DeleteOutcome::Completed,
            phase,
            shard: shard.min(u32::from(SHARDS)),
            counts,
            waited_ms: 0,
            receipt: None,
        };
        let mut budget = Budget::new(deadline, self.opts.margin);
        self.run_phases(&mut report, requested_at, source_id, via, &mut budget)
            .instrument(span)
            .await?;
        Ok(report)
    }

    async fn run_phases(
        &self,
        report: &mut DeleteReport,
        requested_at: DateTime<Utc>,
        source_id: &str,
        via: Via,
        budget: &mut Budget,
    ) -> Result<(), DeleteError> {
        let tenant = report.tenant.clone();
        if let Some(receipt) = self.registry.receipt(&tenant, &report.request_id).await? {
            // Done before; a crash may have come between the receipt and `CONFIG`.
            self.drop_config(&tenant).await?;
            report.outcome = DeleteOutcome::AlreadyDone;
            report.counts = receipt.counts.clone();
            report.receipt = Some(receipt);
            return Ok(());
        }
        if self.fence(&tenant).await? && report.phase != DeletePhase::WaitWriters {
            // The tenant was live again (re-enabled after another request finished):
            // its new writers must be drained before anything is deleted.
            report.phase = DeletePhase::WaitWriters;
            report.shard = 0;
        }
        loop {
            // The budget is the invocation's, across phases: once one unit is done and
            // the deadline is near, the next phase starts in the continuation.
            if budget.may_stop() {
                return self.continue_later(report, requested_at, source_id).await;
            }
            let done = match report.phase {
                DeletePhase::WaitWriters => self.wait_writers(report, via, budget).await?,
                DeletePhase::Records => self.delete_records(report, budget).await?,
                DeletePhase::Attachments => self.delete_objects(report, budget).await?,
                DeletePhase::Registry => self.delete_registry(report, budget).await?,
                DeletePhase::Verify => {
                    self.verify_and_receipt(report, requested_at, budget)
                        .await?;
                    return Ok(());
                }
            };
            if !done {
                return self.continue_later(report, requested_at, source_id).await;
            }
            report.shard = 0;
            report.phase = match report.phase {
                DeletePhase::WaitWriters => DeletePhase::Records,
                DeletePhase::Records => DeletePhase::Attachments,
                DeletePhase::Attachments => DeletePhase::Registry,
                DeletePhase::Registry | DeletePhase::Verify => DeletePhase::Verify,
            };
        }
    }

    /// Moves a registered tenant that is not yet `deleting` there, with a new epoch,
    /// unscheduled, its run cleared. Returns whether it did (false: already deleting or
    /// not registered).
    async fn fence(&self, tenant: &TenantId) -> Result<bool, DeleteError> {
        let Some(rec) = self.registry.get(tenant).await? else {
            return Ok(false);
        };
        if rec.config.state == TenantState::Deleting {
            return Ok(false);
        }
        let epoch = self
            .registry
            .set_state(
                tenant,
                TenantState::Deleting,
                true,
                Some("deletion requested"),
                None,
                Utc::now(),
            )
            .await?;
        self.registry.clear_run(tenant).await?;
        tracing::info!(epoch, "tenant fenced for deletion");
        eds_core::crash::point("delete.after_fence");
        Ok(true)
    }

    /// Waits until no writer is live. Waiting is no unit of work: with no time to poll
    /// again, the message is handed back to the queue until the last lease runs out
    /// (`via` the queue), or the wait continues in a continuation (`via` the event,
    /// which has no message to hand back). Never an immediate continuation from the
    /// queue: a chain of short invocations would spin until the leases run out.
    async fn wait_writers(
        &self,
        report: &mut DeleteReport,
        via: Via,
        budget: &mut Budget,
    ) -> Result<bool, DeleteError> {
        let mut started: Option<Instant> = None;
        let waited =
            |started: Option<Instant>| started.map_or(0, |s| s.elapsed().as_millis().max(1) as u64);
        loop {
            let now = Utc::now();
            let Some(until) = self
                .registry
                .writers_live_until(&report.tenant, now)
                .await?
            else {
                report.waited_ms += waited(started);
                // The fence holds and no writer is left: a phase step done.
                budget.unit_done();
                return Ok(true);
            };
            started.get_or_insert_with(Instant::now);
            if !budget.can_poll(self.opts.poll_every) {
                report.waited_ms += waited(started);
                tracing::info!(%until, "writers still live; waiting in the queue");
                return match via {
                    Via::Queue => Err(DeleteError::WritersLive {
                        after: wait_visibility(until, now),
                    }),
                    Via::Event => Ok(false),
                };
            }
            tokio::time::sleep(self.opts.poll_every).await;
        }
    }

    /// Deletes every record listed in every shard from the report's shard on. A shard
    /// is listed from its start each time (deleted records leave the index); the shard
    /// itself travels in the continuation, so an invocation's one page always moves the
    /// deletion on: it deletes records, or it finds its shard empty and moves past it.
    async fn delete_records(
        &self,
        report: &mut DeleteReport,
        budget: &mut Budget,
    ) -> Result<bool, DeleteError> {
        let tenant = report.tenant.clone();
        while let Ok(shard) = u8::try_from(report.shard)
            && shard < SHARDS
        {
            let mut after: Option<String> = None;
            loop {
                if budget.may_stop() {
                    return Ok(false);
                }
                let page = self
                    .store
                    .list_keys(&tenant, shard, after.as_deref(), self.opts.page_size)
                    .await?;
                let keys: Vec<RecordKey> = page
                    .keys
                    .iter()
                    .map(|k| RecordKey::new(tenant.clone(), k.entity, k.ats_id.clone()))
                    .collect();
                let deleted = self
                    .store
                    .delete_all_items(&keys, self.opts.concurrency)
                    .await?;
                for items in deleted {
                    // Zero items: already deleted (a lagging index lists it once more).
                    if items > 0 {
                        bump(&mut report.counts, "records", 1);
                        bump(&mut report.counts, "record_versions", items as u64 - 1);
                    }
                }
                eds_core::crash::point("delete.after_records_page");
                let next = page.next;
                if next.is_none() {
                    report.shard += 1;
                }
                budget.unit_done();
                match next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        Ok(true)
    }

    fn prefix(&self, tenant: &TenantId) -> String {
        format!("tenants/{tenant}/")
    }

    /// Deletes the tenant's S3 objects, listing from the start each round (what was
    /// deleted is no longer listed).
    async fn delete_objects(
        &self,
        report: &mut DeleteReport,
        budget: &mut Budget,
    ) -> Result<bool, DeleteError> {
        let prefix = self.prefix(&report.tenant);
        loop {
            if budget.may_stop() {
                return Ok(false);
            }
            let keys = self.blobs.list_blobs(&prefix, DELETE_BLOBS_MAX).await?;
            if keys.is_empty() {
                budget.unit_done();
                return Ok(true);
            }
            self.blobs.delete_blobs(&keys).await?;
            bump(&mut report.counts, "s3_objects", keys.len() as u64);
            eds_core::crash::point("delete.after_s3_delete");
            budget.unit_done();
        }
    }

    /// Runs, streams (watermarks), quarantine, leases; then the secret. `CONFIG` stays
    /// until the receipt is written.
    async fn delete_registry(
        &self,
        report: &mut DeleteReport,
        budget: &mut Budget,
    ) -> Result<bool, DeleteError> {
        loop {
            if budget.may_stop() {
                return Ok(false);
            }
            let deleted = self
                .registry
                .delete_tenant_items(&report.tenant, self.opts.page_size as usize)
                .await?;
            if deleted.is_empty() {
                break;
            }
            for (kind, n) in deleted {
                bump(&mut report.counts, registry_kind(&kind), n);
            }
            eds_core::crash::point("delete.after_registry_page");
            budget.unit_done();
        }
        if self
            .secrets
            .delete_now(&self.secret_name(&report.tenant))
            .await?
        {
            bump(&mut report.counts, "secrets", 1);
        }
        eds_core::crash::point("delete.after_registry");
        budget.unit_done();
        Ok(true)
    }

    fn secret_name(&self, tenant: &TenantId) -> SecretName {
        SecretName::for_tenant(&self.secret_prefix, tenant)
    }

    /// What is left of the tenant besides its `deleting` `CONFIG` (empty: nothing).
    pub async fn leftovers(&self, tenant: &TenantId) -> Result<Vec<String>, DeleteError> {
        let mut left = Vec::new();
        for shard in 0..SHARDS {
            if !self
                .store
                .list_keys(tenant, shard, None, 1)
                .await?
                .keys
                .is_empty()
            {
                left.push(format!("records in shard {shard}"));
            }
        }
        if !self
            .blobs
            .list_blobs(&self.prefix(tenant), 1)
            .await?
            .is_empty()
        {
            left.push("S3 objects".into());
        }
        let items = self.registry.item_sort_keys(tenant, None).await?.len();
        let config = usize::from(self.registry.get(tenant).await?.is_some());
        if items > config {
            left.push(format!("{} tenants-table items", items - config));
        }
        if !self.secrets.is_gone(&self.secret_name(tenant)).await? {
            left.push("secret".into());
        }
        Ok(left)
    }

    async fn verify_and_receipt(
        &self,
        report: &mut DeleteReport,
        requested_at: DateTime<Utc>,
        budget: &mut Budget,
    ) -> Result<(), DeleteError> {
        let tenant = report.tenant.clone();
        let left = self.leftovers(&tenant).await?;
        budget.unit_done();
        if !left.is_empty() {
            // Something was (re)created after its phase: delete it again, then let the
            // retried message verify once more. No receipt without an empty check.
            // (Bounded by the deadline like every phase; the retry goes on from there.)
            report.shard = 0;
            let _ = self.delete_records(report, budget).await?
                && self.delete_objects(report, budget).await?
                && self.delete_registry(report, budget).await?;
            return Err(DeleteError::Leftovers(left.join(", ")));
        }
        let config = self.registry.get(&tenant).await?;
        if config.is_some() {
            report.counts.insert("tenant_config".into(), 1);
        }
        let receipt = DeletionReceipt {
            request_id: report.request_id.clone(),
            tenant_id: tenant.clone(),
            requested_at,
            completed_at: Utc::now(),
            counts: report.counts.clone(),
            verified_empty: true,
        };
        eds_core::crash::point("delete.before_receipt");
        self.registry.put_receipt(&receipt).await?;
        eds_core::crash::point("delete.after_receipt");
        self.drop_config(&tenant).await?;
        tracing::info!(counts = ?receipt.counts, "deletion complete; receipt written");
        report.outcome = DeleteOutcome::Completed;
        report.receipt = Some(receipt);
        Ok(())
    }

    /// Deletes `CONFIG` if it is still the `deleting` one (never a re-enabled tenant's).
    async fn drop_config(&self, tenant: &TenantId) -> Result<(), DeleteError> {
        if let Some(rec) = self.registry.get(tenant).await?
            && rec.config.state == TenantState::Deleting
        {
            self.registry.delete_config(tenant).await?;
        }
        Ok(())
    }

    async fn continue_later(
        &self,
        report: &mut DeleteReport,
        requested_at: DateTime<Utc>,
        source_id: &str,
    ) -> Result<(), DeleteError> {
        let job = LifecycleJob::Delete {
            tenant: report.tenant.clone(),
            request_id: report.request_id.clone(),
            requested_at,
            phase: report.phase,
            shard: report.shard,
            counts: report.counts.clone(),
        };
        send_continuation(&*self.queue, &report.tenant, &job, source_id).await?;
        tracing::info!(phase = ?report.phase, "deletion continues in a new message");
        report.outcome = DeleteOutcome::Continued;
        Ok(())
    }
}

fn bump(counts: &mut BTreeMap<String, u64>, kind: &str, n: u64) {
    *counts.entry(kind.to_string()).or_insert(0) += n;
}

/// Receipt names of the registry's item kinds (`RUN#..` -> `runs`, ...).
fn registry_kind(kind: &str) -> &str {
    match kind {
        "run" => "runs",
        "stream" => "streams",
        "quarantine" => "quarantine_entries",
        "lease" => "leases",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disable::SETTINGS_SOURCE;

    fn event(detail_type: &str, detail: Value) -> EventBridgeEvent<Value> {
        serde_json::from_value(serde_json::json!({
            "version": "0", "id": "e1", "detail-type": detail_type, "source": SETTINGS_SOURCE,
            "account": "123456789012", "time": "2026-03-01T10:00:00Z", "region": "us-east-1",
            "resources": [], "detail": detail,
        }))
        .unwrap()
    }

    #[test]
    fn deletion_request_is_parsed_strictly() {
        let ok = parse_deletion_requested(&event(
            DELETION_REQUESTED,
            serde_json::json!({"tenant_id": "acme", "request_id": "req-1"}),
        ))
        .unwrap();
        assert_eq!(ok.tenant.as_str(), "acme");
        assert_eq!(ok.request_id, "req-1");
        assert_eq!(
            ok.requested_at,
            "2026-03-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let bad = [
            serde_json::json!({"tenant_id": "acme"}),
            serde_json::json!({"request_id": "r"}),
            serde_json::json!({"tenant_id": "acme", "request_id": ""}),
            serde_json::json!({"tenant_id": "acme", "request_id": "a/b"}),
            serde_json::json!({"tenant_id": "acme", "request_id": "r".repeat(129)}),
            serde_json::json!({"tenant_id": "ac me", "request_id": "r"}),
            serde_json::json!({"tenant_id": "acme", "request_id": "r", "extra": 1}),
        ];
        for d in bad {
            assert!(
                parse_deletion_requested(&event(DELETION_REQUESTED, d.clone())).is_err(),
                "{d}"
            );
        }
        assert!(
            parse_deletion_requested(&event(
                "tenant.disable_requested",
                serde_json::json!({"tenant_id": "acme", "request_id": "r"})
            ))
            .is_err()
        );
    }

    #[test]
    fn registry_kinds_get_receipt_names() {
        assert_eq!(registry_kind("run"), "runs");
        assert_eq!(registry_kind("quarantine"), "quarantine_entries");
        assert_eq!(registry_kind("other"), "other");
    }

    #[test]
    fn leftovers_are_retried_and_bad_events_are_not() {
        assert!(DeleteError::Leftovers("x".into()).is_retryable());
        assert!(matches!(
            DeleteError::InvalidEvent("x".into()).to_job_error(),
            JobError::Poison(_)
        ));
    }
}
