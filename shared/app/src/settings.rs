//! The settings function: settings-change events from the platform (EventBridge bus
//! `eds-{stage}-settings`, source `eds.settings`). Schema and examples: docs/events.md.
//!
//! * `tenant.enabled`: writes the tenant's configuration (new epoch, due now, so the
//!   scheduler starts its first backfill within a minute). A tenant that was disabled
//!   gets `remerge_pending`: its records' views are push-only until the puller re-merges
//!   them.
//! * `tenant.credentials_updated`: revalidates the credentials ([`CredentialCheck`]);
//!   on success a `needs_reauth` tenant is enabled again under the same epoch, due now;
//!   on a definitive failure the tenant is (or stays) `needs_reauth` with the reason; a
//!   transient failure is an error, so EventBridge delivers the event again.
//! * `tenant.interval_changed`: the new interval, effective at once for an enabled
//!   tenant whose next run is further away than the new interval.
//!
//! Every event is parsed and validated completely before anything is written: an
//! unknown or malformed event is rejected with an error (EventBridge retries it, then
//! sends it to the rule's DLQ) without any side effect. State changes are conditional on
//! the epoch and state that were read, so a disable or deletion racing with a settings
//! event is never overwritten (the event fails and is retried against the new state).

use std::sync::Arc;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use eds_core::auth::AuthError;
use eds_core::domain::ids::{IdError, TenantId};
use eds_core::hosts::ApiHostRules;
use eds_core::invocation::Invocation;
use eds_core::tenants::{
    AtsSettings, AtsSettingsError, ConfigUpdate, DEFAULT_INTERVAL_SECS,
    DEFAULT_RECONCILE_EVERY_SECS, Edit, Registry, RegistryError, TenantConfig, TenantState,
    first_epoch,
};

/// The `source` of every settings event.
pub const SOURCE: &str = "eds.settings";
pub const ENABLED: &str = "tenant.enabled";
pub const CREDENTIALS_UPDATED: &str = "tenant.credentials_updated";
pub const INTERVAL_CHANGED: &str = "tenant.interval_changed";
/// Lifecycle events on the same bus, routed to the disable and delete functions.
pub const DISABLE_REQUESTED: &str = "tenant.disable_requested";
pub const DELETION_REQUESTED: &str = "tenant.deletion_requested";
/// Bounds of a tenant's sync interval (seconds).
pub const MIN_INTERVAL_SECS: u64 = 60;
pub const MAX_INTERVAL_SECS: u64 = 86_400;
/// At most this many attachment host suffixes per tenant.
pub const MAX_ATTACHMENT_HOSTS: usize = 20;

/// Why an event is rejected (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event source {0:?} is not {SOURCE:?}")]
    Source(String),
    #[error("detail-type {0:?} is unknown")]
    DetailType(String),
    #[error("detail-type {0:?} is handled by the disable/delete functions, not settings")]
    NotSettings(String),
    #[error("{detail_type} detail is malformed: {message}")]
    Detail {
        detail_type: &'static str,
        message: String,
    },
    #[error("tenant_id is invalid: {0}")]
    Tenant(IdError),
    #[error(transparent)]
    Ats(#[from] AtsSettingsError),
    #[error("{member} is not a usable URL: {reason}")]
    Url {
        member: &'static str,
        reason: &'static str,
    },
    #[error("secret_name must be {expected:?} (the configured prefix followed by the tenant id)")]
    SecretName { expected: String },
    #[error("interval_secs {0} is outside {MIN_INTERVAL_SECS}..={MAX_INTERVAL_SECS}")]
    Interval(u64),
    #[error("attachment_hosts: {0}")]
    AttachmentHosts(String),
}

/// `tenant.enabled` detail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnabledDetail {
    tenant_id: String,
    ats_kind: String,
    /// Greenhouse's setting; ATSs without versions have none.
    #[serde(default)]
    api_version: Option<String>,
    api_base_url: String,
    #[serde(default)]
    auth_url: Option<String>,
    secret_name: String,
    #[serde(default)]
    interval_secs: Option<u64>,
    #[serde(default)]
    attachment_hosts: Option<Vec<String>>,
}

/// `tenant.credentials_updated` detail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantOnlyDetail {
    tenant_id: String,
}

/// `tenant.interval_changed` detail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntervalDetail {
    tenant_id: String,
    interval_secs: u64,
}

/// A validated `tenant.enabled` event.
#[derive(Debug, Clone, PartialEq)]
pub struct EnableSpec {
    pub tenant_id: TenantId,
    pub ats: AtsSettings,
    pub api_base_url: String,
    pub auth_url: Option<String>,
    pub secret_name: String,
    pub interval_secs: u64,
    pub attachment_hosts: Vec<String>,
}

/// A validated settings event.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingsEvent {
    Enabled(EnableSpec),
    CredentialsUpdated {
        tenant_id: TenantId,
    },
    IntervalChanged {
        tenant_id: TenantId,
        interval_secs: u64,
    },
}

impl SettingsEvent {
    pub fn tenant(&self) -> &TenantId {
        match self {
            SettingsEvent::Enabled(s) => &s.tenant_id,
            SettingsEvent::CredentialsUpdated { tenant_id }
            | SettingsEvent::IntervalChanged { tenant_id, .. } => tenant_id,
        }
    }
}

fn detail<T: serde::de::DeserializeOwned>(
    detail_type: &'static str,
    value: &Value,
) -> Result<T, EventError> {
    // serde's messages name members and expected types (`unknown field `x``,
    // `missing field `tenant_id``), never the values.
    serde_json::from_value(value.clone()).map_err(|e| EventError::Detail {
        detail_type,
        message: e.to_string(),
    })
}

fn tenant(s: String) -> Result<TenantId, EventError> {
    TenantId::parse(s).map_err(EventError::Tenant)
}

fn interval(secs: u64) -> Result<u64, EventError> {
    if (MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS).contains(&secs) {
        Ok(secs)
    } else {
        Err(EventError::Interval(secs))
    }
}

/// An https URL on a public host (never an IP literal or name of a loopback, private,
/// link-local, CGNAT, metadata or unspecified address), with no user information
/// (credentials never travel in URLs), without query or fragment. Under the
/// local-testing switch (`EDS_LOCAL_TESTING=true`) plain http and loopback hosts are
/// accepted too. The same rules hold again at connect time, after DNS resolution.
fn check_url(member: &'static str, s: &str, hosts: ApiHostRules) -> Result<String, EventError> {
    let url = url::Url::parse(s).map_err(|_| EventError::Url {
        member,
        reason: "does not parse",
    })?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(EventError::Url {
            member,
            reason: "scheme must be https (or http for local testing)",
        });
    }
    if url.scheme() == "http" && !hosts.local_testing {
        return Err(EventError::Url {
            member,
            reason: "scheme must be https (plain http only under EDS_LOCAL_TESTING)",
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(EventError::Url {
            member,
            reason: "has no host",
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EventError::Url {
            member,
            reason: "must not carry user information",
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(EventError::Url {
            member,
            reason: "must not carry a query or fragment",
        });
    }
    if hosts.check_url(&url).is_err() {
        return Err(EventError::Url {
            member,
            reason: "host must be public (no loopback, private, link-local, CGNAT, metadata or unspecified address, no localhost)",
        });
    }
    Ok(s.to_owned())
}

fn check_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && !h.starts_with('.')
        && !h.ends_with('.')
        && !h.contains("..")
        && h.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

/// Parses and validates a settings event. `secret_prefix` is the deployment's
/// `SECRET_PREFIX`: a tenant's secret must be `{prefix}{tenant_id}`.
pub fn parse_event(
    event: &EventBridgeEvent<Value>,
    secret_prefix: &str,
    hosts: ApiHostRules,
) -> Result<SettingsEvent, EventError> {
    if event.source != SOURCE {
        return Err(EventError::Source(event.source.chars().take(64).collect()));
    }
    match event.detail_type.as_str() {
        ENABLED => {
            let d: EnabledDetail = detail(ENABLED, &event.detail)?;
            let tenant_id = tenant(d.tenant_id)?;
            let ats = AtsSettings::from_event(&d.ats_kind, d.api_version.as_deref())?;
            let api_base_url = check_url("api_base_url", &d.api_base_url, hosts)?;
            let auth_url = d
                .auth_url
                .as_deref()
                .map(|u| check_url("auth_url", u, hosts))
                .transpose()?;
            let expected = format!("{secret_prefix}{tenant_id}");
            if d.secret_name != expected {
                return Err(EventError::SecretName { expected });
            }
            let interval_secs = interval(d.interval_secs.unwrap_or(DEFAULT_INTERVAL_SECS))?;
            let attachment_hosts = d.attachment_hosts.unwrap_or_default();
            if attachment_hosts.len() > MAX_ATTACHMENT_HOSTS {
                return Err(EventError::AttachmentHosts(format!(
                    "at most {MAX_ATTACHMENT_HOSTS} hosts"
                )));
            }
            if let Some(i) = attachment_hosts.iter().position(|h| !check_host(h)) {
                return Err(EventError::AttachmentHosts(format!(
                    "entry {i} is not a lowercase host name"
                )));
            }
            Ok(SettingsEvent::Enabled(EnableSpec {
                tenant_id,
                ats,
                api_base_url,
                auth_url,
                secret_name: d.secret_name,
                interval_secs,
                attachment_hosts,
            }))
        }
        CREDENTIALS_UPDATED => {
            let d: TenantOnlyDetail = detail(CREDENTIALS_UPDATED, &event.detail)?;
            Ok(SettingsEvent::CredentialsUpdated {
                tenant_id: tenant(d.tenant_id)?,
            })
        }
        INTERVAL_CHANGED => {
            let d: IntervalDetail = detail(INTERVAL_CHANGED, &event.detail)?;
            Ok(SettingsEvent::IntervalChanged {
                tenant_id: tenant(d.tenant_id)?,
                interval_secs: interval(d.interval_secs)?,
            })
        }
        DISABLE_REQUESTED | DELETION_REQUESTED => {
            Err(EventError::NotSettings(event.detail_type.clone()))
        }
        other => Err(EventError::DetailType(other.chars().take(64).collect())),
    }
}

/// The credential check is a core port (`eds_core::auth`).
pub use eds_core::auth::CredentialCheck;

/// What a settings event did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingsOutcome {
    pub tenant: TenantId,
    pub action: &'static str,
    pub state: TenantState,
    pub epoch: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub remerge_pending: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("rejected event: {0}")]
    Event(#[from] EventError),
    #[error("tenant {0} is not registered")]
    UnknownTenant(TenantId),
    #[error("tenant {tenant}: {detail}")]
    Conflict { tenant: TenantId, detail: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("credentials could not be checked now: {0}")]
    CheckUnavailable(AuthError),
}

/// The settings handler.
pub struct Settings<C: CredentialCheck> {
    registry: Arc<dyn Registry>,
    check: C,
    secret_prefix: String,
    hosts: ApiHostRules,
}

impl<C: CredentialCheck> Settings<C> {
    /// `hosts`: the bar the event's URLs must meet (the deployment's local-testing
    /// switch decides whether plain http and loopback pass).
    pub fn new(
        registry: Arc<dyn Registry>,
        check: C,
        secret_prefix: impl Into<String>,
        hosts: ApiHostRules,
    ) -> Self {
        Self {
            registry,
            check,
            secret_prefix: secret_prefix.into(),
            hosts,
        }
    }

    /// Handles one event: validates it fully, then applies it.
    pub async fn handle(
        &self,
        event: EventBridgeEvent<Value>,
        invocation: Invocation,
    ) -> Result<SettingsOutcome, SettingsError> {
        let (event, now) = (&event, invocation.now);
        let parsed = match parse_event(event, &self.secret_prefix, self.hosts) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(event_id = event.id.as_deref().unwrap_or(""), error = %e, "settings event rejected");
                return Err(e.into());
            }
        };
        let span = tracing::info_span!("settings", tenant = %parsed.tenant(), detail_type = %event.detail_type);
        let result = tracing::Instrument::instrument(self.apply(parsed, now), span).await;
        match &result {
            Ok(outcome) => tracing::info!(?outcome, "settings event applied"),
            Err(e) => tracing::warn!(error = %e, "settings event failed"),
        }
        result
    }

    /// Applies an already validated event.
    pub async fn apply(
        &self,
        event: SettingsEvent,
        now: DateTime<Utc>,
    ) -> Result<SettingsOutcome, SettingsError> {
        match event {
            SettingsEvent::Enabled(spec) => self.enable(spec, now).await,
            SettingsEvent::CredentialsUpdated { tenant_id } => {
                self.credentials_updated(tenant_id, now).await
            }
            SettingsEvent::IntervalChanged {
                tenant_id,
                interval_secs,
            } => self.interval_changed(tenant_id, interval_secs, now).await,
        }
    }

    async fn enable(
        &self,
        spec: EnableSpec,
        now: DateTime<Utc>,
    ) -> Result<SettingsOutcome, SettingsError> {
        let existing = self.registry.get(&spec.tenant_id).await?.map(|r| r.config);
        if existing
            .as_ref()
            .is_some_and(|c| c.state == TenantState::Deleting)
        {
            return Err(SettingsError::Conflict {
                tenant: spec.tenant_id,
                detail: "a deletion is in progress; enable again after it completes".into(),
            });
        }
        let remerge = existing
            .as_ref()
            .is_some_and(|c| c.state == TenantState::Disabled || c.remerge_pending);
        let mut cfg = TenantConfig {
            tenant_id: spec.tenant_id.clone(),
            ats: spec.ats,
            api_base_url: spec.api_base_url,
            auth_url: spec.auth_url,
            secret_name: spec.secret_name,
            attachment_hosts: spec.attachment_hosts,
            allow_loopback_attachments: existing
                .as_ref()
                .is_some_and(|c| c.allow_loopback_attachments),
            interval_secs: spec.interval_secs,
            reconcile_every_secs: existing
                .as_ref()
                .map_or(DEFAULT_RECONCILE_EVERY_SECS, |c| c.reconcile_every_secs),
            state: TenantState::Enabled,
            epoch: 0,
            state_reason: None,
            uses_refresh_token: existing.as_ref().is_some_and(|c| c.uses_refresh_token),
            remerge_pending: remerge,
            last_reconcile_at: None,
            last_token_refresh_at: existing.as_ref().and_then(|c| c.last_token_refresh_at),
            created_at: now,
            updated_at: now,
        };
        let expected_epoch = existing
            .as_ref()
            .map_or_else(|| first_epoch(now), |c| c.epoch + 1);
        let mut written = self.registry.enable(cfg.clone(), now).await?;
        if written.epoch != expected_epoch && !remerge {
            // The tenant changed between our read and the enable (a disable may have
            // slipped in): re-merging is idempotent, missing one is not.
            cfg.remerge_pending = true;
            written = self.registry.enable(cfg, now).await?;
        }
        Ok(SettingsOutcome {
            tenant: written.tenant_id,
            action: "enabled",
            state: written.state,
            epoch: written.epoch,
            remerge_pending: written.remerge_pending,
            reason: None,
        })
    }

    async fn credentials_updated(
        &self,
        tenant: TenantId,
        now: DateTime<Utc>,
    ) -> Result<SettingsOutcome, SettingsError> {
        let Some(rec) = self.registry.get(&tenant).await? else {
            return Err(SettingsError::UnknownTenant(tenant));
        };
        let cfg = rec.config;
        let outcome = |state, reason| SettingsOutcome {
            tenant: tenant.clone(),
            action: "credentials_updated",
            state,
            epoch: cfg.epoch,
            remerge_pending: cfg.remerge_pending,
            reason,
        };
        match cfg.state {
            TenantState::Deleting | TenantState::Deleted => {
                return Err(SettingsError::Conflict {
                    tenant,
                    detail: "the tenant is being deleted".into(),
                });
            }
            TenantState::Disabled => {
                // The pull is off: validate and report, but do not change the state.
                let reason = match self.check.check(&cfg).await {
                    Ok(()) => None,
                    Err(e) if e.is_retryable() => return Err(SettingsError::CheckUnavailable(e)),
                    Err(e) => Some(e.to_string()),
                };
                return Ok(outcome(TenantState::Disabled, reason));
            }
            TenantState::Enabled | TenantState::NeedsReauth => {}
        }
        let live = [TenantState::Enabled, TenantState::NeedsReauth];
        match self.check.check(&cfg).await {
            Ok(()) => {
                self.update_config(
                    &tenant,
                    cfg.epoch,
                    &live,
                    &ConfigUpdate {
                        state: Some(TenantState::Enabled),
                        state_reason: Edit::Clear,
                        next_run_at: Edit::Set(now),
                        ..ConfigUpdate::at(now)
                    },
                )
                .await?;
                Ok(outcome(TenantState::Enabled, None))
            }
            Err(e) if e.is_retryable() => Err(SettingsError::CheckUnavailable(e)),
            Err(e) => {
                let reason = e.to_string();
                self.update_config(
                    &tenant,
                    cfg.epoch,
                    &live,
                    &ConfigUpdate {
                        state: Some(TenantState::NeedsReauth),
                        state_reason: Edit::Set(reason.clone()),
                        // Not schedulable until the credentials work.
                        next_run_at: Edit::Clear,
                        ..ConfigUpdate::at(now)
                    },
                )
                .await?;
                Ok(outcome(TenantState::NeedsReauth, Some(reason)))
            }
        }
    }

    async fn interval_changed(
        &self,
        tenant: TenantId,
        interval_secs: u64,
        now: DateTime<Utc>,
    ) -> Result<SettingsOutcome, SettingsError> {
        let Some(rec) = self.registry.get(&tenant).await? else {
            return Err(SettingsError::UnknownTenant(tenant));
        };
        let state = rec.config.state;
        if matches!(state, TenantState::Deleting | TenantState::Deleted) {
            return Err(SettingsError::Conflict {
                tenant,
                detail: "the tenant is being deleted".into(),
            });
        }
        let mut update = ConfigUpdate {
            interval_secs: Some(interval_secs),
            ..ConfigUpdate::at(now)
        };
        // A shorter interval takes effect now rather than after the old, longer wait.
        let sooner = now + Duration::seconds(interval_secs as i64);
        if state == TenantState::Enabled && rec.next_run_at.is_some_and(|t| t > sooner) {
            update.next_run_at = Edit::Set(sooner);
        }
        self.update_config(&tenant, rec.config.epoch, &[state], &update)
            .await?;
        Ok(SettingsOutcome {
            tenant,
            action: "interval_changed",
            state,
            epoch: rec.config.epoch,
            remerge_pending: rec.config.remerge_pending,
            reason: None,
        })
    }

    /// Updates the `CONFIG` item only if its epoch and state are still what we read.
    async fn update_config(
        &self,
        tenant: &TenantId,
        epoch: u64,
        states: &[TenantState],
        update: &ConfigUpdate,
    ) -> Result<(), SettingsError> {
        let applied = self
            .registry
            .update_config_fenced(tenant, epoch, states, update)
            .await?;
        if applied {
            Ok(())
        } else {
            Err(SettingsError::Conflict {
                tenant: tenant.clone(),
                detail: "the tenant changed concurrently; the event will be retried".into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(detail_type: &str, detail: Value) -> EventBridgeEvent<Value> {
        serde_json::from_value(json!({
            "version": "0", "id": "e1", "detail-type": detail_type, "source": SOURCE,
            "account": "123456789012", "time": "2026-03-01T00:00:00Z", "region": "us-east-1",
            "resources": [], "detail": detail
        }))
        .unwrap()
    }

    fn enabled() -> Value {
        json!({"tenant_id": "acme", "ats_kind": "greenhouse", "api_version": "v3",
               "api_base_url": "https://harvest.greenhouse.io", "secret_name": "eds/tenants/acme",
               "interval_secs": 600, "attachment_hosts": ["s3.amazonaws.com"]})
    }

    #[test]
    fn a_complete_enable_event_parses() {
        let SettingsEvent::Enabled(spec) = parse_event(
            &event(ENABLED, enabled()),
            "eds/tenants/",
            ApiHostRules::default(),
        )
        .unwrap() else {
            panic!("not an enable")
        };
        assert_eq!(spec.tenant_id.as_str(), "acme");
        assert_eq!(spec.interval_secs, 600);
        let mut d = enabled();
        d.as_object_mut().unwrap().remove("interval_secs");
        let SettingsEvent::Enabled(spec) =
            parse_event(&event(ENABLED, d), "eds/tenants/", ApiHostRules::default()).unwrap()
        else {
            panic!("not an enable")
        };
        assert_eq!(spec.interval_secs, DEFAULT_INTERVAL_SECS);
    }

    #[test]
    fn malformed_events_name_what_is_wrong() {
        let with = |k: &str, v: Value| {
            let mut d = enabled();
            d[k] = v;
            event(ENABLED, d)
        };
        let cases = vec![
            (
                with("secret_name", json!("eds/tenants/other")),
                "secret_name must be",
            ),
            (
                with("api_base_url", json!("ftp://x")),
                "scheme must be https",
            ),
            (
                with("api_base_url", json!("https://u:p@x.io")),
                "user information",
            ),
            (with("interval_secs", json!(59)), "outside 60..=86400"),
            (with("tenant_id", json!("Acme")), "tenant_id is invalid"),
            (with("ats_kind", json!("workday")), "ats_kind \"workday\""),
            (with("api_version", json!("v2")), "api_version \"v2\""),
            (
                with("attachment_hosts", json!(["Bad Host"])),
                "attachment_hosts",
            ),
            (with("extra", json!(1)), "unknown field `extra`"),
            (
                event(INTERVAL_CHANGED, json!({"tenant_id": "acme"})),
                "missing field `interval_secs`",
            ),
            (
                event("tenant.renamed", json!({})),
                "detail-type \"tenant.renamed\" is unknown",
            ),
            (
                event(DISABLE_REQUESTED, json!({"tenant_id": "acme"})),
                "handled by the disable/delete",
            ),
        ];
        for (ev, expected) in cases {
            let err = parse_event(&ev, "eds/tenants/", ApiHostRules::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "got {err:?}, expected {expected:?}");
        }
        let mut wrong_source = event(CREDENTIALS_UPDATED, json!({"tenant_id": "acme"}));
        wrong_source.source = "aws.events".into();
        assert_eq!(
            parse_event(&wrong_source, "eds/tenants/", ApiHostRules::default()),
            Err(EventError::Source("aws.events".into()))
        );
    }

    #[test]
    fn api_and_token_urls_must_be_https_on_a_public_host() {
        for member in ["api_base_url", "auth_url"] {
            for ok in [
                "https://harvest.greenhouse.io",
                "https://auth.greenhouse.io/token",
                "https://8.8.8.8/v3",
            ] {
                assert!(
                    check_url(member, ok, ApiHostRules::new(false)).is_ok(),
                    "{ok}"
                );
            }
            for bad in [
                "http://harvest.greenhouse.io",
                "http://169.254.169.254/latest/meta-data",
                "https://169.254.169.254/latest/meta-data",
                "https://0x7f000001:8080/",
                "https://2130706433/",
                "https://0177.0.0.1/",
                "https://[::1]:8080/",
                "https://[::ffff:a9fe:a9fe]/",
                "https://[fd00:ec2::254]/",
                "https://localhost:22/",
                "https://x.localhost/",
                "https://10.1.2.3/",
                "https://100.64.0.1/",
                "https://0.0.0.0/",
            ] {
                let err = check_url(member, bad, ApiHostRules::new(false))
                    .unwrap_err()
                    .to_string();
                assert!(
                    err.starts_with(&format!("{member} is not a usable URL")),
                    "{err}"
                );
            }
            // Local testing: the simulator on loopback over http, nothing else internal.
            assert!(check_url(member, "http://127.0.0.1:8080", ApiHostRules::new(true)).is_ok());
            assert!(
                check_url(
                    member,
                    "http://localhost:8080/token",
                    ApiHostRules::new(true)
                )
                .is_ok()
            );
            for bad in [
                "http://169.254.169.254/",
                "http://10.0.0.1/",
                "http://[fe80::1]/",
            ] {
                assert!(
                    check_url(member, bad, ApiHostRules::new(true)).is_err(),
                    "{bad}"
                );
            }
        }
    }
}
