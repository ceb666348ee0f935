//! Messages on the work queues. Every job is idempotent: SQS delivers at least once, and
//! a redelivered job finds its work committed (checkpoints, content hashes) and does
//! nothing twice. A job names a tenant and the epoch it was created under, never a
//! secret or a secret name: credentials come from the tenant's own configuration.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::ids::TenantId;
use crate::tenants::{Checkpoint, StreamName};

/// Maximum size we accept for a job body (SQS allows 256 KiB).
pub const MAX_JOB_BYTES: usize = 256 * 1024;

/// One step of a pull run. A run's steps are processed in order; the FIFO group
/// (`MessageGroupId` = tenant) serialises a tenant's runs, so one message per tenant
/// carries them all (fan-out costs ⌈tenants / 10⌉ SQS calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", content = "stream", rename_all = "snake_case")]
pub enum Step {
    /// Proactive OAuth refresh (keeps idle tenants' rotating refresh tokens alive).
    RefreshToken,
    /// Incremental pull of a stream from its watermark (a full backfill when it has none).
    Pull(StreamName),
    /// Full id listing of a stream compared with the stored records (tombstones).
    Reconcile(StreamName),
    /// A pull of a stream from the epoch, without an `updated_at` filter, in place of
    /// its incremental pull (for streams whose `updated_at` misses changes: the plan's
    /// `swept`); its watermark moves as after any pull.
    Sweep(StreamName),
    /// Re-merge every stored record of the tenant (after re-enable).
    Remerge,
}

/// Where the current step resumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum Resume {
    /// A pull window and the cursor of its next page.
    Window(Checkpoint),
    /// A reconciliation: the id-listing cursor; ids seen so far are kept in S3 under
    /// the tenant's prefix (too many for a message).
    Ids { cursor: String, seen_key: String },
    /// A reconciliation whose id listing is complete (in S3 under `seen_key`): records
    /// absent from it are being confirmed gone by id.
    Confirm { seen_key: String },
    /// A sweep over the tenant's records: shard and last key done.
    Sweep { shard: u32, after: Option<String> },
}

/// A job on the pull queue (`MessageGroupId` = tenant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullJob {
    pub tenant: TenantId,
    pub epoch: u64,
    pub run_id: String,
    /// Remaining steps; the first is the current one.
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
    /// 0 for the scheduler's message, then 1, 2, ... for each continuation.
    #[serde(default)]
    pub continuation: u32,
    /// Consecutive invocations of this run that ended without finishing one unit of work
    /// (a page, an id page, a confirmation batch): bounded, so that an ATS too slow to
    /// answer one page is reported instead of being continued forever.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stalled: u32,
    /// A continuation sent because the ATS's rate limit held past the invocation's
    /// deadline: the job sends no request before this time (the limiter's block carried
    /// into the next invocation, which may run in another container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl PullJob {
    /// A deduplication id that is the same for the same logical job (so a duplicated
    /// send within SQS's 5-minute window is dropped) and different for each
    /// continuation.
    pub fn dedup_id(&self) -> String {
        use sha2::{Digest, Sha256};
        let body = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(&Sha256::digest(&body)[..16])
    }
}

/// A job on the disable or delete queue (continuations of lifecycle sweeps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LifecycleJob {
    Disable {
        tenant: TenantId,
        epoch: u64,
        #[serde(default)]
        shard: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    Delete {
        tenant: TenantId,
        request_id: String,
        requested_at: DateTime<Utc>,
        #[serde(default)]
        phase: DeletePhase,
        /// The records phase's shard (the shards before it are empty). Older messages
        /// without it start at shard 0, which is always correct, only slower.
        #[serde(default)]
        shard: u32,
        #[serde(default)]
        counts: std::collections::BTreeMap<String, u64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeletePhase {
    #[default]
    WaitWriters,
    Records,
    Attachments,
    Registry,
    Verify,
}

/// Parses a job body, bounding its size and rejecting unknown shapes with a message
/// that names what was wrong (never echoing the whole body).
pub fn parse_job<T: for<'de> Deserialize<'de>>(body: &str) -> Result<T, String> {
    if body.len() > MAX_JOB_BYTES {
        return Err(format!(
            "job body of {} bytes exceeds {MAX_JOB_BYTES}",
            body.len()
        ));
    }
    serde_json::from_str(body).map_err(|e| format!("job body is not a valid job: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(continuation: u32) -> PullJob {
        PullJob {
            tenant: TenantId::parse("acme").unwrap(),
            epoch: 3,
            run_id: "r1".into(),
            steps: vec![Step::RefreshToken, Step::Pull(StreamName::Candidates)],
            resume: None,
            continuation,
            stalled: 0,
            not_before: None,
        }
    }

    #[test]
    fn jobs_round_trip_and_reject_unknown_fields() {
        let body = serde_json::to_string(&job(0)).unwrap();
        assert_eq!(parse_job::<PullJob>(&body).unwrap(), job(0));
        let with_secret = body.replace("\"epoch\"", "\"secret_name\":\"x\",\"epoch\"");
        assert!(parse_job::<PullJob>(&with_secret).is_err());
        assert!(
            parse_job::<PullJob>("{\"tenant\":\"../b\",\"epoch\":1,\"run_id\":\"r\",\"steps\":[]}")
                .is_err()
        );
        assert!(parse_job::<PullJob>(&"x".repeat(MAX_JOB_BYTES + 1)).is_err());
    }

    #[test]
    fn dedup_id_differs_per_continuation() {
        assert_eq!(job(0).dedup_id(), job(0).dedup_id());
        assert_ne!(job(0).dedup_id(), job(1).dedup_id());
    }
}
