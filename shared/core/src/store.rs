//! The versioned record store: ports (narrow traits the pipeline and the API depend on)
//! and the DynamoDB adapter ([`dynamodb::DynamoStore`]).
//!
//! Keys (docs/data-model.md; table declared in infra/template.yaml):
//! * every item of a record lives under `pk = R#{tenant}#{entity}#{ats_id}`;
//! * `sk = HEAD`: the current version (a full copy, so reading a record is one GetItem),
//!   the only item carrying the `by_tenant` index keys, `gsi1pk = {tenant}#{shard:02}`
//!   (16 shards from a stable hash of entity and id, so a 100k-record backfill spreads
//!   its index writes over 16 partitions) and `gsi1sk = {entity}#{ats_id}`;
//! * `sk = V#{version:010}`: immutable versions, written with `attribute_not_exists`.
//!
//! Write order per changed record: version item(s) first, then the head, conditioned on
//! the version it was computed from. A crash between the two leaves an *orphan* version
//! that the head does not point to yet; the next writer's version put collides with it,
//! and the writer rolls the head forward onto it before applying its own change. So the
//! head never points to a missing version and no version number is used twice. Reads
//! (`history`, `as_of`) ignore versions above the head until then.
//!
//! One exception to "a version is written once": a pull run writes at most one version
//! per record ([`RecordWrite::apply_run_page`]); its later changes to the same record
//! (the attachments stream after the candidates stream) *amend* the version it wrote,
//! with single-item conditional writes, no transaction (D23): the head first (the
//! commit), conditioned on its number, content hash and run, then the version item's
//! copy, which never replaces a copy with more amends. Every head move is conditioned
//! on the content hash as well as the number, and every version item records the hash
//! of the content it follows (`base_hash`): an orphan computed from content an amend
//! replaced is never rolled forward, and the next writer replaces it. Versions of a
//! push, a sweep or an earlier run are never rewritten.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::ids::{AtsId, EntityKind, RecordKey, TenantId};
use crate::domain::merge::{MergeReport, ViewMode};
use crate::domain::version::{Change, Version, VersionError};

/// Number of `by_tenant` index shards per tenant.
pub const SHARDS: u8 = 16;
/// Sort key of a record's head item.
pub const HEAD_SK: &str = "HEAD";
/// DynamoDB's BatchWriteItem limit (moto accepts more; AWS does not).
pub const BATCH_WRITE_MAX: usize = 25;
/// DynamoDB's BatchGetItem limit.
pub const BATCH_GET_MAX: usize = 100;
/// Upper bound of a stored item; above it the record is rejected rather than written.
/// With layers bounded by `version::MAX_LAYER_BYTES` it is not reached in practice.
pub const MAX_ITEM_BYTES: usize = 350 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB {op} failed: {message}")]
    Dynamo {
        op: &'static str,
        message: String,
        retryable: bool,
    },
    #[error("stored item {what} is malformed: {message}")]
    Malformed { what: String, message: String },
    #[error("record {key}: the head kept moving, gave up after {attempts} attempts")]
    Contention { key: String, attempts: u32 },
    #[error("record {key}: item would be {bytes} bytes, above the {max} byte bound")]
    ItemTooLarge {
        key: String,
        bytes: usize,
        max: usize,
    },
    #[error("shard {0} out of range (0..16)")]
    Shard(u8),
    #[error(transparent)]
    Version(#[from] VersionError),
}

impl StoreError {
    /// Whether trying again later (redelivering the message) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Dynamo { retryable, .. } => *retryable,
            StoreError::Contention { .. } => true,
            StoreError::Malformed { .. }
            | StoreError::ItemTooLarge { .. }
            | StoreError::Shard(_)
            | StoreError::Version(_) => false,
        }
    }
}

/// A version with its derived end of validity (the next version's `valid_from`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: Version,
    pub valid_to: Option<DateTime<Utc>>,
}

/// What happened to one record of a page.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    Created {
        version: u64,
        report: MergeReport,
    },
    Updated {
        from: u64,
        to: u64,
        report: MergeReport,
    },
    /// Nothing changed: zero writes. `version` is None when the record does not exist.
    Unchanged {
        version: Option<u64>,
    },
    /// Not retryable (invalid or oversized data): quarantine it with this error.
    Rejected {
        error: String,
    },
    /// Retryable (throttling, contention): redeliver; re-applying is idempotent.
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordResult {
    pub entity: EntityKind,
    pub ats_id: AtsId,
    pub outcome: RecordOutcome,
}

/// Requests sent to DynamoDB (reads: GetItem, BatchGetItem, Query; writes: PutItem,
/// BatchWriteItem), retries included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestCount {
    pub reads: u64,
    pub writes: u64,
}

/// The result of one page of changes. Counters count records (`backfilled` etc. count
/// report entries newly contributed by the versions written).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PageOutcome {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub rejected: usize,
    pub failed: usize,
    pub versions_written: usize,
    pub backfilled: usize,
    pub corrected: usize,
    pub push_newer_kept: usize,
    /// One entry per distinct record of the page, in order of first appearance.
    pub records: Vec<RecordResult>,
    pub requests: RequestCount,
}

/// One record as listed by the `by_tenant` index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySummary {
    pub entity: EntityKind,
    pub ats_id: AtsId,
    pub version: u64,
    pub changed_at: DateTime<Utc>,
    pub tombstone: bool,
}

/// A page of a tenant's records in one shard; `next` resumes after the last one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage {
    pub keys: Vec<KeySummary>,
    pub next: Option<String>,
}

/// Reading records and their history (records API, operator CLI).
#[async_trait]
pub trait RecordRead: Send + Sync {
    /// The current version (head) of a record.
    async fn get(&self, key: &RecordKey) -> Result<Option<Version>, StoreError>;
    /// Every committed version, oldest first, with derived `valid_to`.
    async fn history(&self, key: &RecordKey) -> Result<Vec<HistoryEntry>, StoreError>;
    /// The version valid at `t` (the latest with `valid_from <= t`).
    async fn as_of(&self, key: &RecordKey, t: DateTime<Utc>)
    -> Result<Option<Version>, StoreError>;
}

/// Writing changes (push ingest, puller, disable/enable sweeps).
#[async_trait]
pub trait RecordWrite: Send + Sync {
    /// Applies a page of changes for one tenant: one batch read of the heads, then
    /// writes only for records whose content changed. Per-record problems are reported
    /// in the outcome; `Err` means the page as a whole could not be processed.
    async fn apply_page(
        &self,
        tenant: &TenantId,
        changes: Vec<Change>,
        now: DateTime<Utc>,
    ) -> Result<PageOutcome, StoreError>;

    /// [`RecordWrite::apply_page`] for the pull run `run_id`: versions are tagged with
    /// the run, and a change on top of a pull version this same run wrote amends that
    /// version (same number and `valid_from`) instead of appending one, so that one sync
    /// writes at most one version per changed record (reported as `Updated` with
    /// `from == to`). Versions of a push, a sweep or another run are never amended.
    async fn apply_run_page(
        &self,
        tenant: &TenantId,
        run_id: &str,
        changes: Vec<Change>,
        now: DateTime<Utc>,
    ) -> Result<PageOutcome, StoreError>;

    /// Disable (`PushOnly`, cause `disable`) or enable (`Merged`, cause `enable`) the
    /// pull for these records. Records that do not exist are left alone.
    async fn set_mode_page(
        &self,
        tenant: &TenantId,
        keys: &[(EntityKind, AtsId)],
        mode: ViewMode,
        now: DateTime<Utc>,
    ) -> Result<PageOutcome, StoreError> {
        let changes = keys
            .iter()
            .map(|(entity, ats_id)| Change::SetMode {
                entity: *entity,
                ats_id: ats_id.clone(),
                mode,
            })
            .collect();
        self.apply_page(tenant, changes, now).await
    }
}

/// Enumerating and purging a tenant's records (reconciliation, sweeps, deletion).
#[async_trait]
pub trait RecordSweep: Send + Sync {
    /// One page (at most `limit`) of the tenant's records in `shard` (0..SHARDS), in
    /// key order; pass the returned `next` as `start` to continue.
    async fn list_keys(
        &self,
        tenant: &TenantId,
        shard: u8,
        start: Option<&str>,
        limit: u32,
    ) -> Result<KeyPage, StoreError>;
    /// Deletes every item of each record, `concurrency` records at a time (versions
    /// first, head last, so a deletion interrupted midway still finds the record through
    /// the index). The items are located without listing them: the head names its
    /// version and the versions above it (a crashed writer's orphans) are probed.
    /// Returns, per key, the number of items the record had by that reckoning (head and
    /// versions `1..=top`; 0 if it had no head); idempotent.
    async fn delete_all_items(
        &self,
        keys: &[RecordKey],
        concurrency: usize,
    ) -> Result<Vec<usize>, StoreError>;
}

/// Every record port at once, for the handlers that read, write and sweep (the puller,
/// disable).
pub trait RecordStore: RecordRead + RecordWrite + RecordSweep {}

impl<T: RecordRead + RecordWrite + RecordSweep> RecordStore for T {}

/// The stable `by_tenant` shard of a record (XXH3 of `entity#ats_id`, mod 16).
pub fn shard_of(entity: EntityKind, ats_id: &AtsId) -> u8 {
    let digest = twox_hash::XxHash3_128::oneshot(gsi1sk(entity, ats_id).as_bytes());
    (digest % u128::from(SHARDS)) as u8
}

/// `{entity}#{ats_id}`.
pub fn gsi1sk(entity: EntityKind, ats_id: &AtsId) -> String {
    format!("{entity}#{ats_id}")
}

/// Parses a `gsi1sk` back into its parts (used to resume a listing from a cursor).
pub fn parse_gsi1sk(s: &str) -> Option<(EntityKind, AtsId)> {
    let (entity, id) = s.split_once('#')?;
    Some((EntityKind::parse(entity).ok()?, AtsId::parse(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RecordKey {
        RecordKey::new(
            TenantId::parse("acme").unwrap(),
            EntityKind::Candidate,
            AtsId::parse("42").unwrap(),
        )
    }

    #[test]
    fn listing_cursors_name_the_record_and_parse_back() {
        assert_eq!(gsi1sk(EntityKind::Job, &key().ats_id), "job#42");
        assert_eq!(
            parse_gsi1sk("application#a-1"),
            Some((EntityKind::Application, AtsId::parse("a-1").unwrap()))
        );
        assert_eq!(parse_gsi1sk("widget#1"), None);
    }

    #[test]
    fn shards_are_stable_and_spread_a_backfill() {
        let id = AtsId::from_u64(123);
        assert_eq!(
            shard_of(EntityKind::Candidate, &id),
            shard_of(EntityKind::Candidate, &id)
        );
        let mut counts = [0usize; SHARDS as usize];
        for n in 0..16_000u64 {
            counts[shard_of(EntityKind::Candidate, &AtsId::from_u64(n)) as usize] += 1;
        }
        // Each shard gets roughly 1/16 (1000) of a sequential id range.
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn only_transport_and_contention_errors_are_retryable() {
        let throttled = StoreError::Dynamo {
            op: "PutItem",
            message: "throttled".into(),
            retryable: true,
        };
        assert!(throttled.is_retryable());
        assert!(
            StoreError::Contention {
                key: "k".into(),
                attempts: 5
            }
            .is_retryable()
        );
        assert!(!StoreError::Shard(16).is_retryable());
        assert!(
            !StoreError::ItemTooLarge {
                key: "k".into(),
                bytes: 1,
                max: 0
            }
            .is_retryable()
        );
    }
}
