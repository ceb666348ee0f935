//! `edsctl tenants ...`: the tenant lifecycle through the product's own handlers.
//!
//! Every command builds the settings or lifecycle event the platform would send
//! (docs/events.md) and hands it to the same library handler the Lambda function runs
//! (settings, disable, delete), locally, to completion. When a settings bus is known the
//! event is also put on EventBridge, so a deployed stack's rules see it too.

use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use chrono::Utc;
use eds_local::queue::{delete_succeeded, receive_event};
use eds_shared::credentials::{SecretName, SecretsManagerStore, TenantSecret, TokenCheck};
use eds_shared::domain::ids::TenantId;
use eds_shared::pipeline::delete::{DeleteOutcome, DeleteReport};
use eds_shared::pipeline::disable::{Deadline, DisableOutcome, DisableReport};
use eds_shared::pipeline::settings::{
    CREDENTIALS_UPDATED, DELETION_REQUESTED, DISABLE_REQUESTED, ENABLED, INTERVAL_CHANGED, SOURCE,
    Settings, SettingsError, SettingsOutcome,
};
use eds_shared::tenants::{ConfigUpdate, DeletionReceipt, TenantConfig, TenantState};
use eds_shared::tenants::{Erasure, TenantLifecycle};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::deploy::Deployment;
use crate::error::CliError;

/// How long a local lifecycle invocation may run before it hands on (a Lambda timeout).
const LIFECYCLE_INVOCATION: Duration = Duration::from_secs(300);

/// What `tenants enable` needs.
pub struct EnableArgs {
    pub tenant: TenantId,
    /// `greenhouse` or `lever`.
    pub ats: String,
    /// Greenhouse's Harvest version (`v3` when not given); Lever takes none.
    pub api_version: Option<String>,
    pub api_base: String,
    pub auth_url: Option<String>,
    pub credentials: SecretString,
    pub interval_secs: Option<u64>,
    pub attachment_hosts: Vec<String>,
    pub allow_loopback_attachments: bool,
}

pub fn parse_tenant(s: &str) -> Result<TenantId, CliError> {
    TenantId::parse(s).map_err(|e| {
        CliError::Usage(format!(
            "{s:?} is not a tenant id ({e}): use lowercase letters, digits and -"
        ))
    })
}

/// Reads and validates a credentials file (`-` = stdin). The error names the file and
/// the field, never a value.
pub fn read_credentials(path: &str) -> Result<SecretString, CliError> {
    let raw = if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| CliError::Usage(format!("reading credentials from stdin failed: {e}")))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!(
                "the credentials file {path} cannot be read ({e}): pass an existing file or - for stdin"
            ))
        })?
    };
    let secret = SecretString::from(raw.trim().to_string());
    TenantSecret::parse(&secret).map_err(|e| {
        CliError::Usage(format!(
            "the credentials file {path} is invalid: {e}; expected e.g. {{\"kind\": \"client_credentials\", \"client_id\": \"...\", \"client_secret\": \"...\"}} (see docs/runbook.md)"
        ))
    })?;
    Ok(secret)
}

/// An EventBridge event as the settings bus delivers it.
pub fn settings_event(detail_type: &str, detail: Value) -> EventBridgeEvent<Value> {
    let event = json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": detail_type,
        "source": SOURCE,
        "account": eds_local::LOCAL_ACCOUNT_ID,
        "time": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": eds_local::LOCAL_REGION,
        "resources": [],
        "detail": detail,
    });
    // The shape above is always a valid EventBridge event.
    serde_json::from_value(event).unwrap_or_default()
}

/// Puts the event on the settings bus too, when one is configured.
async fn publish(d: &Deployment, event: &EventBridgeEvent<Value>) -> Result<bool, CliError> {
    let Some(bus) = &d.settings_bus else {
        return Ok(false);
    };
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .event_bus_name(bus)
        .source(SOURCE)
        .detail_type(&event.detail_type)
        .detail(event.detail.to_string())
        .build();
    let out = aws_sdk_eventbridge::Client::new(&d.aws.sdk)
        .put_events()
        .entries(entry)
        .send()
        .await
        .map_err(|e| d.aws_err(aws_sdk_eventbridge::error::DisplayErrorContext(e)))?;
    if out.failed_entry_count() > 0 {
        return Err(CliError::Failed(format!(
            "the event was applied but EventBridge refused to put it on {bus}: check the bus name (SETTINGS_BUS_NAME)"
        )));
    }
    Ok(true)
}

fn settings_handler(d: &Deployment) -> Result<Settings<TokenCheck>, CliError> {
    let credentials = d.credentials()?;
    let services = credentials
        .services(&d.aws.sdk)
        .map_err(|e| CliError::Usage(format!("the credentials adapter cannot start: {e}")))?;
    Ok(Settings::new(
        d.registry(),
        TokenCheck::new(credentials, services, d.config.local_testing),
        d.config.secret_prefix.clone(),
        d.config.api_host_rules(),
    ))
}

fn settings_err(d: &Deployment, e: SettingsError) -> CliError {
    match e {
        SettingsError::Event(ev) => {
            CliError::Usage(format!("the settings event was rejected: {ev}"))
        }
        SettingsError::UnknownTenant(t) => CliError::unknown_tenant(t.as_str()),
        SettingsError::Conflict { tenant, detail } => {
            CliError::Failed(format!("tenant {tenant}: {detail}"))
        }
        SettingsError::Registry(r) => d.aws_err(r),
        SettingsError::CheckUnavailable(a) => CliError::Failed(format!(
            "the credentials could not be checked now ({a}): retry later"
        )),
    }
}

async fn apply(
    d: &Deployment,
    detail_type: &str,
    detail: Value,
) -> Result<(SettingsOutcome, bool), CliError> {
    let event = settings_event(detail_type, detail);
    let outcome = settings_handler(d)?
        .handle(
            event.clone(),
            eds_shared::invocation::Invocation::after(LIFECYCLE_INVOCATION),
        )
        .await
        .map_err(|e| settings_err(d, e))?;
    let published = publish(d, &event).await?;
    Ok((outcome, published))
}

async fn store_secret(
    d: &Deployment,
    tenant: &TenantId,
    secret: &SecretString,
) -> Result<String, CliError> {
    let name = SecretName::for_tenant(&d.config.secret_prefix, tenant);
    SecretsManagerStore::new(d.aws.secrets.clone())
        .create_or_put(&name, secret)
        .await
        .map_err(|e| d.aws_err(e))?;
    Ok(name.as_str().to_string())
}

/// Whether the secret exists (any state but scheduled for deletion counts).
async fn secret_exists(d: &Deployment, name: &SecretName) -> Result<bool, CliError> {
    match d
        .aws
        .secrets
        .describe_secret()
        .secret_id(name.as_str())
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(d.aws_err(aws_sdk_secretsmanager::error::DisplayErrorContext(e))),
    }
}

/// Removes a secret this command created for an enable that did not happen.
async fn remove_secret(d: &Deployment, name: &SecretName) -> Result<(), CliError> {
    d.aws
        .secrets
        .delete_secret()
        .secret_id(name.as_str())
        .force_delete_without_recovery(true)
        .send()
        .await
        .map_err(|e| d.aws_err(aws_sdk_secretsmanager::error::DisplayErrorContext(e)))?;
    Ok(())
}

/// `tenants enable`: the event is validated first (nothing is stored for an invalid
/// one), then the secret (the event references it), then the event is applied. If the
/// enable still fails and the secret is new, it is removed again: a rejected enable
/// leaves nothing behind (no secret of a tenant that is not registered).
pub async fn enable(d: &Deployment, a: EnableArgs) -> Result<Value, CliError> {
    if a.allow_loopback_attachments && !d.config.local_testing {
        return Err(CliError::Usage(
            "--allow-loopback-attachments is for local testing only: set EDS_LOCAL_TESTING=true (never in a deployment)".into(),
        ));
    }
    let name = SecretName::for_tenant(&d.config.secret_prefix, &a.tenant);
    let detail = enable_detail(&a, name.as_str());
    eds_shared::pipeline::settings::parse_event(
        &settings_event(ENABLED, detail.clone()),
        &d.config.secret_prefix,
        d.config.api_host_rules(),
    )
    .map_err(|ev| CliError::Usage(format!("the settings event was rejected: {ev}")))?;
    let existed = secret_exists(d, &name).await?;
    let secret_name = store_secret(d, &a.tenant, &a.credentials).await?;
    let applied = apply(d, ENABLED, detail).await;
    let (outcome, published) = match applied {
        Ok(o) => o,
        Err(e) => {
            let registered = d.registry().get(&a.tenant).await.ok().flatten().is_some();
            if !existed
                && !registered
                && let Err(cleanup) = remove_secret(d, &name).await
            {
                return Err(CliError::Failed(format!(
                    "{e}; removing its new secret {} failed too ({cleanup}): delete it by hand",
                    name.as_str()
                )));
            }
            return Err(e);
        }
    };
    if a.allow_loopback_attachments {
        allow_loopback(d, &a.tenant, outcome.epoch).await?;
    }
    Ok(json!({
        "tenant": outcome.tenant, "action": outcome.action, "state": outcome.state,
        "epoch": outcome.epoch, "remerge_pending": outcome.remerge_pending,
        "secret_name": secret_name, "published": published,
        "allow_loopback_attachments": a.allow_loopback_attachments,
    }))
}

fn enable_detail(a: &EnableArgs, secret_name: &str) -> Value {
    let mut detail = json!({
        "tenant_id": a.tenant,
        "ats_kind": a.ats,
        "api_base_url": a.api_base,
        "secret_name": secret_name,
    });
    let version = match (&a.api_version, a.ats.as_str()) {
        (Some(v), _) => Some(v.as_str()),
        (None, "greenhouse") => Some("v3"),
        (None, _) => None,
    };
    if let Some(v) = version {
        detail["api_version"] = json!(v);
    }
    if let Some(u) = &a.auth_url {
        detail["auth_url"] = json!(u);
    }
    if let Some(i) = a.interval_secs {
        detail["interval_secs"] = json!(i);
    }
    if !a.attachment_hosts.is_empty() {
        detail["attachment_hosts"] = json!(a.attachment_hosts);
    }
    detail
}

/// Local testing: lets the tenant download attachments from the simulator's loopback
/// storage host (the settings event has no such member on purpose; the deployment must
/// also say `EDS_LOCAL_TESTING=true` for it to take effect).
async fn allow_loopback(d: &Deployment, tenant: &TenantId, epoch: u64) -> Result<(), CliError> {
    let update = ConfigUpdate {
        allow_loopback_attachments: Some(true),
        ..ConfigUpdate::at(chrono::Utc::now())
    };
    let live = [
        TenantState::Enabled,
        TenantState::NeedsReauth,
        TenantState::Disabled,
    ];
    let applied = d
        .registry()
        .update_config_fenced(tenant, epoch, &live, &update)
        .await
        .map_err(|e| d.aws_err(e))?;
    if applied {
        Ok(())
    } else {
        Err(d.aws_err(format!(
            "tenant {tenant} changed while loopback attachments were allowed; run the command again"
        )))
    }
}

/// `tenants credentials`: new secret version, then `tenant.credentials_updated` (which
/// revalidates them and lifts `needs_reauth` when they work).
pub async fn credentials(
    d: &Deployment,
    tenant: &TenantId,
    secret: SecretString,
) -> Result<Value, CliError> {
    require(d, tenant).await?;
    let secret_name = store_secret(d, tenant, &secret).await?;
    let (outcome, published) = apply(d, CREDENTIALS_UPDATED, json!({"tenant_id": tenant})).await?;
    Ok(json!({
        "tenant": outcome.tenant, "action": outcome.action, "state": outcome.state,
        "epoch": outcome.epoch, "reason": outcome.reason, "secret_name": secret_name,
        "published": published,
    }))
}

pub async fn interval(d: &Deployment, tenant: &TenantId, secs: u64) -> Result<Value, CliError> {
    require(d, tenant).await?;
    let (outcome, published) = apply(
        d,
        INTERVAL_CHANGED,
        json!({"tenant_id": tenant, "interval_secs": secs}),
    )
    .await?;
    Ok(json!({
        "tenant": outcome.tenant, "action": outcome.action, "state": outcome.state,
        "interval_secs": secs, "published": published,
    }))
}

pub async fn require(d: &Deployment, tenant: &TenantId) -> Result<TenantConfig, CliError> {
    match d.registry().get(tenant).await {
        Ok(Some(r)) => Ok(r.config),
        Ok(None) => Err(CliError::unknown_tenant(tenant.as_str())),
        Err(e) => Err(d.aws_err(e)),
    }
}

/// Receives continuations of `tenant` from a lifecycle queue and hands them to
/// `handle` until the queue holds none (the local event source mapping).
async fn drain_lifecycle<F, Fut>(
    d: &Deployment,
    queue_url: &str,
    mut handle: F,
) -> Result<(), CliError>
where
    F: FnMut(SqsEvent) -> Fut,
    Fut: std::future::Future<Output = aws_lambda_events::event::sqs::SqsBatchResponse>,
{
    let mut empty = 0;
    while empty < 2 {
        let event = receive_event(&d.aws.sqs, queue_url, 10, 1)
            .await
            .map_err(|e| d.aws_err(e))?;
        if event.records.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        let response = handle(event.clone()).await;
        delete_succeeded(&d.aws.sqs, queue_url, &event, &response)
            .await
            .map_err(|e| d.aws_err(e))?;
        if !response.batch_item_failures.is_empty() {
            return Err(CliError::Failed(format!(
                "a continuation failed and will be retried by the queue ({} message(s)): see `edsctl status` and docs/runbook.md",
                response.batch_item_failures.len()
            )));
        }
    }
    Ok(())
}

/// `tenants disable`: fence, drain, sweep every record push-only, to completion.
pub async fn disable(d: &Deployment, tenant: &TenantId) -> Result<Value, CliError> {
    require(d, tenant).await?;
    let disabler = eds_shared::wiring::disable::disabler_on(&d.aws, &d.config);
    let event = settings_event(DISABLE_REQUESTED, json!({"tenant_id": tenant}));
    let report: DisableReport =
        Box::pin(disabler.on_event(&event, Deadline::after(LIFECYCLE_INVOCATION)))
            .await
            .map_err(|e| CliError::Failed(format!("disable failed: {e}")))?;
    let mut continued = report.outcome == DisableOutcome::Continued;
    if continued {
        drain_lifecycle(d, &d.config.disable_queue_url, |ev| {
            let disabler = &disabler;
            async move {
                disabler
                    .on_sqs(&ev, Deadline::after(LIFECYCLE_INVOCATION))
                    .await
            }
        })
        .await?;
        continued = false;
    }
    let published = publish(d, &event).await?;
    let state = require(d, tenant).await?.state;
    Ok(json!({
        "tenant": tenant, "action": "disabled", "state": state, "epoch": report.epoch,
        "outcome": if continued { "continued" } else { "completed" },
        "fenced": report.fenced, "records_seen": report.records_seen,
        "records_changed": report.records_changed, "versions_written": report.versions_written,
        "published": published,
    }))
}

/// `tenants delete`: the deletion request, run to completion; returns the receipt.
pub async fn delete(
    d: &Deployment,
    tenant: &TenantId,
    request_id: &str,
) -> Result<Value, CliError> {
    eds_shared::pipeline::delete::validate_request_id(request_id)
        .map_err(|e| CliError::Usage(format!("--request-id is invalid: {e}")))?;
    let registry = d.registry();
    let existing = registry
        .receipt(tenant, request_id)
        .await
        .map_err(|e| d.aws_err(e))?;
    if existing.is_none() {
        require(d, tenant).await?;
    }
    let deleter = eds_shared::wiring::delete::deleter_on(&d.aws, &d.config);
    let event = settings_event(
        DELETION_REQUESTED,
        json!({"tenant_id": tenant, "request_id": request_id}),
    );
    let report: DeleteReport =
        Box::pin(deleter.on_event(&event, Deadline::after(LIFECYCLE_INVOCATION)))
            .await
            .map_err(|e| {
                CliError::Failed(format!(
                    "deletion failed: {e} (the request is resumable: run the same command again)"
                ))
            })?;
    if report.outcome == DeleteOutcome::Continued {
        drain_lifecycle(d, &d.config.delete_queue_url, |ev| {
            let deleter = &deleter;
            async move {
                deleter
                    .on_sqs(&ev, Deadline::after(LIFECYCLE_INVOCATION))
                    .await
            }
        })
        .await?;
    }
    let published = publish(d, &event).await?;
    let receipt: Option<DeletionReceipt> = registry
        .receipt(tenant, request_id)
        .await
        .map_err(|e| d.aws_err(e))?;
    let Some(receipt) = receipt else {
        return Err(CliError::Failed(format!(
            "the deletion of {tenant} has not completed (no receipt for {request_id}): run the same command again"
        )));
    };
    Ok(json!({
        "tenant": tenant, "action": "deleted", "request_id": request_id,
        "receipt": receipt, "published": published,
    }))
}

pub async fn list(d: &Deployment) -> Result<Value, CliError> {
    let mut tenants = d.registry().list().await.map_err(|e| d.aws_err(e))?;
    tenants.sort_by(|a, b| a.tenant_id.as_str().cmp(b.tenant_id.as_str()));
    Ok(json!({
        "tenants": tenants.iter().map(|c| {
            let mut row = json!({
                "tenant": c.tenant_id, "state": c.state, "state_reason": c.state_reason,
                "api_base_url": c.api_base_url, "interval_secs": c.interval_secs,
                "epoch": c.epoch, "remerge_pending": c.remerge_pending,
                "updated_at": c.updated_at,
            });
            // `ats_kind` and that ATS's own settings, flat as they are stored.
            if let (Some(out), Ok(Value::Object(ats))) =
                (row.as_object_mut(), serde_json::to_value(&c.ats))
            {
                out.extend(ats);
            }
            row
        }).collect::<Vec<_>>()
    }))
}
