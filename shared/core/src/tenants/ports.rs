//! The tenant registry's ports: what the handlers may ask of the tenants table, split
//! by concern, and the types they exchange. The one adapter is
//! `TenantRegistry` (`eds_shared::tenants`) on DynamoDB; it alone knows the table's keys.
//!
//! - [`TenantLifecycle`]: the `CONFIG` item (registration, state and epoch, settings).
//! - [`RunLog`]: scheduling (the due index, run claims), per-stream state, run reports
//!   and the quarantine.
//! - [`Leases`]: the pull lease (the fence every page write passes) and push leases.
//! - [`Erasure`]: a deletion's sweep of the tenant's items and its receipt.
//!
//! [`Registry`] is all four, for the handlers that need them together.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::*;
use crate::domain::ids::TenantId;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("tenant {0} is not registered")]
    UnknownTenant(String),
    #[error("tenant {tenant}: {detail}")]
    Conflict { tenant: String, detail: String },
    #[error("tenants table request failed: {0}")]
    Dynamo(String),
    #[error("tenants table item is malformed: {0}")]
    Malformed(String),
}

impl RegistryError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, RegistryError::Dynamo(_))
    }
}

/// The pull lease held by a running puller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub epoch: u64,
    pub until: DateTime<Utc>,
}

/// What taking or renewing the pull lease came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The caller holds the lease until the time it asked for.
    Held,
    /// The tenant's epoch is not the job's (disable, deletion or re-enable since), or the
    /// tenant no longer pulls: the job is stale and must not write.
    EpochMoved,
    /// Another live owner holds it (a duplicated or overlapping message).
    HeldByOther,
}

impl LeaseOutcome {
    /// Why a writer must stop; `None` when it holds the lease.
    pub fn refusal(self) -> Option<&'static str> {
        match self {
            LeaseOutcome::Held => None,
            LeaseOutcome::EpochMoved => {
                Some("the tenant's epoch moved (disable, deletion or re-enable)")
            }
            LeaseOutcome::HeldByOther => Some("another puller holds the tenant's lease"),
        }
    }
}

/// The run a scheduler started and which streams of it are still pending.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveRun {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub pending: BTreeSet<String>,
}

/// The `CONFIG` item: configuration plus scheduling state.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRecord {
    pub config: TenantConfig,
    pub next_run_at: Option<DateTime<Utc>>,
    pub lease: Option<Lease>,
    pub active_run: Option<ActiveRun>,
}

/// A tenant listed by the `due` index, with the settings that index projects.
#[derive(Debug, Clone, PartialEq)]
pub struct DueTenant {
    pub tenant: TenantId,
    pub interval_secs: u64,
    pub uses_refresh_token: bool,
}

/// Outcome of trying to claim a due tenant for a new run.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    Claimed {
        epoch: u64,
        config: Box<TenantConfig>,
    },
    /// Not due any more, not enabled, or a run is still going.
    Skipped,
}

#[async_trait]
pub trait TenantLifecycle: Send + Sync {
    /// Reads the `CONFIG` item (strongly consistent: the epoch is a fence).
    async fn get(&self, tenant: &TenantId) -> Result<Option<TenantRecord>, RegistryError>;

    async fn require(&self, tenant: &TenantId) -> Result<TenantRecord, RegistryError>;

    /// Writes the configuration of a (re-)enabled tenant: state `enabled`, a new epoch,
    /// due now. Refused while the tenant is being deleted.
    async fn enable(
        &self,
        cfg: TenantConfig,
        now: DateTime<Utc>,
    ) -> Result<TenantConfig, RegistryError>;

    /// Moves the tenant to `state`, bumping the epoch when asked (disable, delete), and
    /// either scheduling it at `schedule` or removing it from the due index.
    async fn set_state(
        &self,
        tenant: &TenantId,
        state: TenantState,
        bump_epoch: bool,
        reason: Option<&str>,
        schedule: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<u64, RegistryError>;

    /// Records a timestamp attribute (`last_reconcile_at`, `last_token_refresh_at`).
    async fn touch(
        &self,
        tenant: &TenantId,
        attribute: &'static str,
        at: DateTime<Utc>,
    ) -> Result<(), RegistryError>;

    /// The re-merge after a re-enable finished (only for the epoch it ran under).
    async fn clear_remerge_pending(
        &self,
        tenant: &TenantId,
        epoch: u64,
    ) -> Result<(), RegistryError>;

    async fn set_uses_refresh_token(
        &self,
        tenant: &TenantId,
        uses: bool,
    ) -> Result<(), RegistryError>;

    /// Applies `update` to `CONFIG` only while the tenant is still at `epoch` and in one
    /// of `states` (the settings function's fenced update). `Ok(false)`: the tenant moved
    /// on (another event or a lifecycle step came first).
    async fn update_config_fenced(
        &self,
        tenant: &TenantId,
        epoch: u64,
        states: &[TenantState],
        update: &ConfigUpdate,
    ) -> Result<bool, RegistryError>;

    /// Deletes the `CONFIG` item itself (the last step of a deletion).
    async fn delete_config(&self, tenant: &TenantId) -> Result<(), RegistryError>;

    /// Whether the tenant's data was deleted (a deletion receipt exists). Work that
    /// arrives for such a tenant is dropped, not dead-lettered: a DLQ would keep
    /// personal data that the customer asked to delete.
    async fn was_deleted(&self, tenant: &TenantId) -> Result<bool, RegistryError>;

    /// Every registered tenant (for `edsctl tenants list`; a scan, operator use only).
    async fn list(&self) -> Result<Vec<TenantConfig>, RegistryError>;
}

#[async_trait]
pub trait RunLog: Send + Sync {
    /// Tenants of one due shard whose `next_run_at` has passed (the sparse index holds
    /// only schedulable tenants), with the two settings the index projects so that the
    /// scheduler can set their next run without reading each tenant.
    async fn due(&self, shard: &str, now: DateTime<Utc>) -> Result<Vec<DueTenant>, RegistryError>;

    /// Claims a due tenant for a new run: only an enabled tenant whose `next_run_at` has
    /// passed and which has no run in progress (or only an abandoned one). Moves
    /// `next_run_at` to `next` and records the run's pending streams, atomically.
    async fn claim_run(
        &self,
        tenant: &TenantId,
        run_id: &str,
        streams: &[String],
        now: DateTime<Utc>,
        next: DateTime<Utc>,
    ) -> Result<Claim, RegistryError>;

    /// Marks one stream of a run finished (idempotent: removing from a set twice is a
    /// no-op). When the last stream finishes, the run is over.
    async fn finish_stream(
        &self,
        tenant: &TenantId,
        run_id: &str,
        stream: &str,
    ) -> Result<(), RegistryError>;

    /// Ends the active run whatever streams are left (used when a run cannot go on:
    /// needs_reauth, disable, delete).
    async fn clear_run(&self, tenant: &TenantId) -> Result<(), RegistryError>;

    async fn get_stream(
        &self,
        tenant: &TenantId,
        stream: StreamName,
    ) -> Result<Option<StreamState>, RegistryError>;

    async fn put_stream(&self, tenant: &TenantId, state: &StreamState)
    -> Result<(), RegistryError>;

    async fn streams(&self, tenant: &TenantId) -> Result<Vec<StreamState>, RegistryError>;

    async fn put_run(&self, tenant: &TenantId, run: &SyncRun) -> Result<(), RegistryError>;

    /// The most recent runs, newest first.
    async fn runs(&self, tenant: &TenantId, limit: usize) -> Result<Vec<SyncRun>, RegistryError>;

    async fn put_quarantine(
        &self,
        tenant: &TenantId,
        entry: &QuarantineEntry,
    ) -> Result<(), RegistryError>;

    async fn quarantine(&self, tenant: &TenantId) -> Result<Vec<QuarantineEntry>, RegistryError>;
}

#[async_trait]
pub trait Leases: Send + Sync {
    /// Takes or renews the pull lease for `owner` under `epoch`. Refused when the epoch
    /// moved (disable, delete, re-enable) or the tenant no longer pulls
    /// ([`LeaseOutcome::EpochMoved`]), or when another live owner holds it
    /// ([`LeaseOutcome::HeldByOther`]; told apart by a consistent read after the refusal).
    /// This is the fence every page write passes first.
    async fn acquire_lease(
        &self,
        tenant: &TenantId,
        owner: &str,
        epoch: u64,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<LeaseOutcome, RegistryError>;

    /// Releases the pull lease if `owner` still holds it.
    async fn release_lease(&self, tenant: &TenantId, owner: &str) -> Result<(), RegistryError>;

    /// Registers a push writer for a batch (item `LEASE#push#{id}`), then re-reads the
    /// tenant: if it is being deleted the lease is dropped and `None` returned. A
    /// deletion bumps the epoch before it looks for push leases, so either the writer
    /// sees the deletion or the deletion sees the writer.
    async fn acquire_push_lease(
        &self,
        tenant: &TenantId,
        id: &str,
        until: DateTime<Utc>,
    ) -> Result<Option<TenantRecord>, RegistryError>;

    async fn release_push_lease(&self, tenant: &TenantId, id: &str) -> Result<(), RegistryError>;

    /// Whether any writer (the pull lease, or a push lease) is live at `now`.
    async fn writers_live(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> Result<bool, RegistryError>;

    /// When the last live writer's lease (pull or push) runs out at the latest; `None`
    /// when no writer is live. Once the tenant is fenced no lease can be renewed or
    /// taken, so this bounds how long a lifecycle function has to wait. A push lease
    /// without a readable `until` is not live (as before: only `key_time` writes it).
    async fn writers_live_until(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, RegistryError>;
}

#[async_trait]
pub trait Erasure: Send + Sync {
    /// Sort keys of the tenant's items (`CONFIG` included), at most `limit`.
    async fn item_sort_keys(
        &self,
        tenant: &TenantId,
        limit: Option<usize>,
    ) -> Result<Vec<String>, RegistryError>;

    /// Deletes up to `max` of the tenant's items other than `CONFIG` (runs, streams,
    /// quarantine, leases) in batches of 25; counts by kind (the sort key's first part,
    /// lower case).
    async fn delete_tenant_items(
        &self,
        tenant: &TenantId,
        max: usize,
    ) -> Result<BTreeMap<String, u64>, RegistryError>;

    async fn put_receipt(&self, receipt: &DeletionReceipt) -> Result<(), RegistryError>;

    async fn receipt(
        &self,
        tenant: &TenantId,
        request_id: &str,
    ) -> Result<Option<DeletionReceipt>, RegistryError>;
}

/// Every concern of the registry at once.
pub trait Registry: TenantLifecycle + RunLog + Leases + Erasure {}

impl<T: TenantLifecycle + RunLog + Leases + Erasure> Registry for T {}
