//! Tenant registry records (pure data and rules, no I/O).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::ids::TenantId;

/// Number of shards of the `due` index. The scheduler queries each shard; tenants are
/// spread by a stable hash of their id so no single index partition holds them all.
pub const DUE_SHARDS: u32 = 8;

/// Default sync interval (seconds) when the enable event does not say.
pub const DEFAULT_INTERVAL_SECS: u64 = 15 * 60;
/// Default period of the full reconciliation (ids only): 3 days.
pub const DEFAULT_RECONCILE_EVERY_SECS: u64 = 3 * 24 * 3600;
/// Proactive token refresh period for tenants with rotating refresh tokens (24 h idle
/// expiry at Greenhouse): twice a day.
pub const TOKEN_REFRESH_EVERY_SECS: u64 = 12 * 3600;
/// A run that has not finished after this long is considered abandoned by the
/// scheduler (its jobs are in the DLQ or lost); a new run may start.
pub const RUN_STALE_AFTER_SECS: i64 = 6 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantState {
    Enabled,
    Disabled,
    NeedsReauth,
    Deleting,
    Deleted,
}

impl TenantState {
    /// Pulled data may be shown (views are merged) only in these states.
    pub fn pull_visible(self) -> bool {
        matches!(self, TenantState::Enabled | TenantState::NeedsReauth)
    }
    /// Pushed records are accepted (deletion stops everything).
    pub fn accepts_push(self) -> bool {
        !matches!(self, TenantState::Deleting | TenantState::Deleted)
    }
}

/// Which ATS a tenant pulls from (the provider registry's key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AtsKind {
    Greenhouse,
    Lever,
}

impl AtsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AtsKind::Greenhouse => "greenhouse",
            AtsKind::Lever => "lever",
        }
    }
}

/// The tenant's ATS with that ATS's own settings. Stored flat in `CONFIG`: `ats_kind`
/// names the ATS and its settings sit beside it (a Greenhouse tenant's `api_version`), so
/// configurations written before this enum read unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ats_kind", rename_all = "snake_case")]
pub enum AtsSettings {
    Greenhouse(GreenhouseSettings),
    Lever(LeverSettings),
}

/// A Lever tenant's own settings: none yet (Lever has one API version, v1). A struct so
/// that settings can be added without changing the stored shape.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LeverSettings {}

/// A Greenhouse tenant's own settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GreenhouseSettings {
    #[serde(default)]
    pub api_version: ApiVersion,
}

/// A `tenant.enabled` event named an ATS or an ATS setting eds does not support.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtsSettingsError {
    #[error("ats_kind {0:?} is not supported (expected \"greenhouse\" or \"lever\")")]
    Kind(String),
    #[error(
        "api_version {0:?} is not supported (expected \"v3\"; Greenhouse removed Harvest v1/v2 on 2026-08-31)"
    )]
    ApiVersion(String),
    #[error("api_version {0:?} is not supported for Lever (expected none, or \"v1\")")]
    LeverApiVersion(String),
}

impl AtsSettings {
    pub fn kind(&self) -> AtsKind {
        match self {
            AtsSettings::Greenhouse(_) => AtsKind::Greenhouse,
            AtsSettings::Lever(_) => AtsKind::Lever,
        }
    }

    /// The settings a `tenant.enabled` event gives: the ATS by name and the settings
    /// that ATS takes (`api_version` for Greenhouse). Names in errors are cut short.
    pub fn from_event(
        ats_kind: &str,
        api_version: Option<&str>,
    ) -> Result<AtsSettings, AtsSettingsError> {
        let cut = |s: &str| s.chars().take(32).collect::<String>();
        match ats_kind {
            "greenhouse" => match api_version {
                Some("v3") => Ok(AtsSettings::Greenhouse(GreenhouseSettings {
                    api_version: ApiVersion::V3,
                })),
                other => Err(AtsSettingsError::ApiVersion(cut(other.unwrap_or("")))),
            },
            "lever" => match api_version {
                None | Some("v1") => Ok(AtsSettings::Lever(LeverSettings {})),
                Some(other) => Err(AtsSettingsError::LeverApiVersion(cut(other))),
            },
            other => Err(AtsSettingsError::Kind(cut(other))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ApiVersion {
    #[default]
    V3,
    /// Any other value read from a stored configuration: Harvest v1/v2, which Greenhouse
    /// removed on 2026-08-31 and eds with it (D28). Such a tenant is not pulled; it goes to
    /// `needs_reauth` until it is reconnected with OAuth (v3).
    #[serde(other)]
    Retired,
}

/// One tenant's configuration and lifecycle (item `T#{tenant}` / `CONFIG`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantConfig {
    pub tenant_id: TenantId,
    #[serde(flatten)]
    pub ats: AtsSettings,
    pub api_base_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_url: Option<String>,
    /// Secrets Manager name; must be `{SECRET_PREFIX}{tenant_id}` (checked on use).
    pub secret_name: String,
    /// Host suffixes attachments may be downloaded from.
    #[serde(default)]
    pub attachment_hosts: Vec<String>,
    /// Local testing only: allow attachment downloads from loopback.
    #[serde(default)]
    pub allow_loopback_attachments: bool,
    pub interval_secs: u64,
    #[serde(default = "default_reconcile")]
    pub reconcile_every_secs: u64,
    pub state: TenantState,
    /// Changes on every enable, disable and delete.
    pub epoch: u64,
    /// Why the tenant is in its state (e.g. the `needs_reauth` reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    #[serde(default)]
    pub uses_refresh_token: bool,
    /// Set when a disabled tenant is enabled again: its records' views are still
    /// push-only and must be re-merged (the puller's `Remerge` step clears it).
    #[serde(default)]
    pub remerge_pending: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconcile_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_token_refresh_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn default_reconcile() -> u64 {
    DEFAULT_RECONCILE_EVERY_SECS
}

/// The epoch of a first registration: the clock in milliseconds. A deletion removes the
/// `CONFIG` item, so a tenant registered again starts a new epoch sequence; starting it from
/// the clock keeps it above every epoch of the deleted registration (each bump is one
/// enable, disable or delete, far fewer than the milliseconds between two registrations),
/// so a job queued under the old registration can never pass the new fence.
pub fn first_epoch(now: DateTime<Utc>) -> u64 {
    u64::try_from(now.timestamp_millis()).unwrap_or(1).max(1)
}

/// The stable due-index shard of a tenant (FNV-1a of the id).
pub fn due_shard(tenant: &TenantId) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in tenant.as_str().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{:02}", h % DUE_SHARDS)
}

/// Timestamps in keys and index sort keys: fixed-width RFC 3339 with milliseconds, so
/// that string order is time order.
pub fn key_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One attribute of a [`ConfigUpdate`]: left as it is, set, or removed.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Edit<T> {
    #[default]
    Keep,
    Set(T),
    Clear,
}

/// A change to a tenant's `CONFIG` that the registry applies only while the tenant is
/// still at the epoch and in a state the caller read (the settings function's fenced
/// update). `updated_at` is always written.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigUpdate {
    pub state: Option<TenantState>,
    pub state_reason: Edit<String>,
    pub interval_secs: Option<u64>,
    pub next_run_at: Edit<DateTime<Utc>>,
    /// Local testing only (`edsctl tenants enable --allow-loopback-attachments`).
    pub allow_loopback_attachments: Option<bool>,
    pub updated_at: DateTime<Utc>,
}

impl ConfigUpdate {
    /// An update that changes nothing but `updated_at`.
    pub fn at(updated_at: DateTime<Utc>) -> Self {
        Self {
            state: None,
            state_reason: Edit::Keep,
            interval_secs: None,
            next_run_at: Edit::Keep,
            allow_loopback_attachments: None,
            updated_at,
        }
    }
}

/// The streams a pull reads are the connector's (`connector::Stream`); the registry
/// keys stream state and runs by them.
pub use crate::stream::Stream as StreamName;

/// Sync status of one stream, as shown to operators and the records API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    Syncing,
    Done,
    /// The stream completed, but some of its data was quarantined in this run (records
    /// or attachments that could not be used): see the reason and the quarantine.
    Degraded,
    Failed,
    Paused,
    NeedsReauth,
}

/// Where an interrupted window resumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub window_from: DateTime<Utc>,
    pub window_to: DateTime<Utc>,
    /// The connector's opaque cursor for the next page (None: the window's first page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    pub pages_committed: u64,
}

/// Per-stream state (item `T#{tenant}` / `STREAM#{stream}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamState {
    pub stream: StreamName,
    pub status: SyncStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Everything updated before this instant has been committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_id: Option<String>,
    /// Records and attachments quarantined by the run in `last_run_id` so far (across
    /// its invocations): a run that completes with any is reported `degraded`.
    #[serde(default, skip_serializing_if = "QuarantinedInRun::is_empty")]
    pub run_quarantined: QuarantinedInRun,
    pub updated_at: DateTime<Utc>,
}

/// What one run of a stream had to quarantine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuarantinedInRun {
    pub records: u64,
    pub attachments: u64,
}

impl QuarantinedInRun {
    pub fn is_empty(&self) -> bool {
        self.records == 0 && self.attachments == 0
    }

    /// The operator's reason for a `degraded` stream.
    pub fn reason(&self) -> Option<String> {
        (!self.is_empty()).then(|| {
            format!(
                "completed with {} record(s) and {} attachment(s) quarantined in this run (see the tenant's quarantine)",
                self.records, self.attachments
            )
        })
    }
}

/// Counts of one sync run of one stream (item `T#{tenant}` / `RUN#{started}#{run}#{stream}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunCounts {
    pub requests: u64,
    pub token_requests: u64,
    pub pages: u64,
    pub records_seen: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub fields_backfilled: u64,
    pub fields_corrected: u64,
    pub push_newer_kept: u64,
    pub attachments_stored: u64,
    pub quarantined: u64,
    pub tombstoned: u64,
    pub rate_limit_wait_ms: u64,
    pub rate_limited_429: u64,
    pub retries: u64,
    /// Attachments that could not be downloaded or stored (also in `quarantined`).
    pub attachments_quarantined: u64,
    /// Records absent from a listing that the ATS did not confirm gone (a by-id read
    /// answered or was refused): kept, not tombstoned.
    pub not_visible: u64,
}

impl RunCounts {
    pub fn add(&mut self, o: &RunCounts) {
        self.requests += o.requests;
        self.token_requests += o.token_requests;
        self.pages += o.pages;
        self.records_seen += o.records_seen;
        self.created += o.created;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.fields_backfilled += o.fields_backfilled;
        self.fields_corrected += o.fields_corrected;
        self.push_newer_kept += o.push_newer_kept;
        self.attachments_stored += o.attachments_stored;
        self.quarantined += o.quarantined;
        self.tombstoned += o.tombstoned;
        self.rate_limit_wait_ms += o.rate_limit_wait_ms;
        self.rate_limited_429 += o.rate_limited_429;
        self.retries += o.retries;
        self.attachments_quarantined += o.attachments_quarantined;
        self.not_visible += o.not_visible;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRun {
    pub run_id: String,
    pub stream: StreamName,
    pub kind: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// `done`, `continued`, `failed: <reason>`, `needs_reauth`, `dropped: <reason>`.
    pub outcome: String,
    pub counts: RunCounts,
}

/// A quarantined record: what could not be used and why (never the secret, never the
/// whole payload: an excerpt bounded in size).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ats_id: Option<String>,
    pub error: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// The receipt of a completed deletion (kept after the tenant's data is gone; no
/// personal data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletionReceipt {
    pub request_id: String,
    pub tenant_id: TenantId,
    pub requested_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub counts: std::collections::BTreeMap<String, u64>,
    pub verified_empty: bool,
}

/// Whether a proactive token refresh is due.
pub fn token_refresh_due(cfg: &TenantConfig, now: DateTime<Utc>) -> bool {
    cfg.uses_refresh_token
        && cfg.state == TenantState::Enabled
        && cfg
            .last_token_refresh_at
            .is_none_or(|t| now - t >= Duration::seconds(TOKEN_REFRESH_EVERY_SECS as i64))
}

/// Whether the periodic full reconciliation is due.
pub fn reconcile_due(cfg: &TenantConfig, now: DateTime<Utc>) -> bool {
    cfg.state == TenantState::Enabled
        && cfg
            .last_reconcile_at
            .is_none_or(|t| now - t >= Duration::seconds(cfg.reconcile_every_secs as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_shard_is_stable_and_spread() {
        let t = TenantId::parse("acme").unwrap();
        assert_eq!(due_shard(&t), due_shard(&t));
        let shards: std::collections::BTreeSet<_> = (0..200)
            .map(|i| due_shard(&TenantId::parse(format!("t{i}")).unwrap()))
            .collect();
        assert_eq!(shards.len(), DUE_SHARDS as usize);
    }

    #[test]
    fn key_time_orders_as_strings() {
        let a = "2026-01-01T00:00:00.5Z".parse::<DateTime<Utc>>().unwrap();
        let b = "2026-01-01T00:00:01Z".parse::<DateTime<Utc>>().unwrap();
        assert!(key_time(a) < key_time(b));
        assert_eq!(key_time(b), "2026-01-01T00:00:01.000Z");
    }

    #[test]
    fn a_stored_api_version_other_than_v3_reads_as_retired() {
        let read = |v: &str| serde_json::from_value::<ApiVersion>(serde_json::json!(v)).unwrap();
        assert_eq!(read("v3"), ApiVersion::V3);
        assert_eq!(read("v1"), ApiVersion::Retired);
        assert_eq!(read("v2"), ApiVersion::Retired);
        assert_eq!(ApiVersion::default(), ApiVersion::V3);
    }

    #[test]
    fn a_stored_configuration_keeps_its_flat_ats_layout() {
        let stored = serde_json::json!({
            "tenant_id": "acme", "ats_kind": "greenhouse", "api_version": "v3",
            "api_base_url": "https://harvest.greenhouse.io", "secret_name": "eds/tenants/acme",
            "interval_secs": 900, "state": "enabled", "epoch": 7,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        });
        let cfg: TenantConfig = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(
            cfg.ats,
            AtsSettings::Greenhouse(GreenhouseSettings::default())
        );
        assert_eq!(cfg.ats.kind(), AtsKind::Greenhouse);
        let written = serde_json::to_value(&cfg).unwrap();
        assert_eq!(written["ats_kind"], "greenhouse");
        assert_eq!(written["api_version"], "v3");
        assert!(written.get("ats").is_none());
        // A configuration stored before `api_version` existed.
        let mut older = stored;
        older.as_object_mut().unwrap().remove("api_version");
        let cfg: TenantConfig = serde_json::from_value(older).unwrap();
        assert_eq!(
            cfg.ats,
            AtsSettings::Greenhouse(GreenhouseSettings::default())
        );
    }

    #[test]
    fn an_enabled_event_names_a_supported_ats_and_its_settings() {
        assert_eq!(
            AtsSettings::from_event("greenhouse", Some("v3")),
            Ok(AtsSettings::Greenhouse(GreenhouseSettings::default()))
        );
        assert_eq!(
            AtsSettings::from_event("greenhouse", Some("v1")),
            Err(AtsSettingsError::ApiVersion("v1".into()))
        );
        assert_eq!(
            AtsSettings::from_event("greenhouse", None),
            Err(AtsSettingsError::ApiVersion(String::new()))
        );
        assert_eq!(
            AtsSettings::from_event("lever", None),
            Ok(AtsSettings::Lever(LeverSettings {}))
        );
        assert_eq!(
            AtsSettings::from_event("lever", Some("v3")),
            Err(AtsSettingsError::LeverApiVersion("v3".into()))
        );
        assert_eq!(
            AtsSettings::from_event("workday", Some("v3")),
            Err(AtsSettingsError::Kind("workday".into()))
        );
    }

    #[test]
    fn only_enabled_states_show_pulled_data() {
        assert!(TenantState::Enabled.pull_visible());
        assert!(!TenantState::Disabled.pull_visible());
        assert!(!TenantState::Deleting.accepts_push());
        assert!(TenantState::Disabled.accepts_push());
    }
}
