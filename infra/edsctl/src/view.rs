//! `edsctl status` and `edsctl record`: what the records API serves (the same library
//! handler, `RecordsApi::serve`), shown as tables for people or JSON for scripts.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use eds_shared::domain::ids::{AtsId, EntityKind, RecordKey, TenantId};
use eds_shared::pipeline::records_api::{ApiError, RecordsApi, Route};
use serde_json::{Value, json};

use crate::deploy::Deployment;
use crate::error::CliError;
use crate::out::outln;
use crate::table::{Table, cell, short_time};

fn api(d: &Deployment) -> RecordsApi {
    let store = Arc::new(d.store());
    RecordsApi::new(d.registry(), store.clone(), store)
}

fn api_err(d: &Deployment, e: ApiError, what: &str) -> CliError {
    match e {
        ApiError::NotFound => CliError::NotFound(what.to_string()),
        ApiError::BadRequest(m) => CliError::Usage(m),
        ApiError::Unavailable => CliError::Unreachable(format!(
            "the records store is unavailable right now: retry{}",
            d.endpoint
                .as_deref()
                .map(|u| format!(" (endpoint {u})"))
                .unwrap_or_default()
        )),
        other => CliError::Failed(format!("reading failed: {other}")),
    }
}

pub async fn status(d: &Deployment, tenant: &TenantId) -> Result<Value, CliError> {
    crate::tenants::require(d, tenant).await?;
    api(d)
        .serve(&Route::Status {
            tenant: tenant.clone(),
        })
        .await
        .map_err(|e| api_err(d, e, &format!("tenant {tenant} is not registered")))
}

pub fn parse_key(tenant: &TenantId, entity: &str, id: &str) -> Result<RecordKey, CliError> {
    let entity = EntityKind::parse(entity).map_err(|_| {
        CliError::Usage(format!(
            "{entity:?} is not an entity: use candidate, application or job"
        ))
    })?;
    let id = AtsId::parse(id.to_string())
        .map_err(|e| CliError::Usage(format!("{id:?} is not a record id ({e})")))?;
    Ok(RecordKey::new(tenant.clone(), entity, id))
}

/// The record (view, provenance, layers) and, when asked, its history.
pub async fn record(
    d: &Deployment,
    key: &RecordKey,
    history: bool,
    as_of: Option<DateTime<Utc>>,
) -> Result<Value, CliError> {
    crate::tenants::require(d, &key.tenant).await?;
    let what = format!(
        "{} {} of tenant {} was not found{}: check the id (records appear after a push or a sync)",
        key.entity.as_str(),
        key.ats_id.as_str(),
        key.tenant,
        as_of
            .map(|t| format!(" as of {}", t.to_rfc3339()))
            .unwrap_or_default()
    );
    let api = api(d);
    let mut out = api
        .serve(&Route::Record {
            key: key.clone(),
            as_of,
        })
        .await
        .map_err(|e| api_err(d, e, &what))?;
    if history {
        let h = api
            .serve(&Route::History { key: key.clone() })
            .await
            .map_err(|e| api_err(d, e, &what))?;
        out["history"] = h["versions"].clone();
    }
    Ok(out)
}

/// A field value on one line, cut to `max` characters.
fn compact(v: &Value, max: usize) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > max {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    } else {
        s
    }
}

pub fn print_record(r: &Value) {
    outln!(
        "{} {} {} · version {} ({}) · view {}{}",
        cell(&r["tenant"]),
        cell(&r["entity"]),
        cell(&r["id"]),
        cell(&r["version"]),
        cell(&r["cause"]),
        cell(&r["mode"]),
        if r["pull_visible"] == json!(false) {
            " · pull disabled: pushed data only"
        } else {
            ""
        }
    );
    if let Some(by) = r["view"]["deleted"].as_str() {
        outln!("deleted (by {by})");
    }
    let prov = &r["view"]["provenance"];
    let mut t = Table::new(&["field", "provenance", "value"]);
    if let Some(fields) = r["view"]["fields"].as_object() {
        for (name, value) in fields {
            t.row(vec![name.clone(), cell(&prov[name]), compact(value, 70)]);
            if name == "attachments" {
                for el in value.as_array().into_iter().flatten() {
                    let id = el["id"].as_str().unwrap_or_default();
                    let stored = if el.get("file").is_some() {
                        " (file stored in S3)"
                    } else {
                        ""
                    };
                    t.row(vec![
                        format!("  attachments/{id}"),
                        cell(&prov[format!("attachments/{id}")]),
                        format!("{} {}{stored}", cell(&el["type"]), cell(&el["filename"])),
                    ]);
                }
            }
        }
    }
    t.print();
    let mut layers = Table::new(&["layer", "ats updated_at", "observed_at", "fields"]);
    for name in ["push", "pull"] {
        let l = &r["layers"][name];
        if l.is_null() {
            layers.row(vec![name.into(), "-".into(), "-".into(), "-".into()]);
        } else {
            layers.row(vec![
                name.into(),
                short_time(&l["ats_updated_at"]),
                short_time(&l["observed_at"]),
                l["fields"].as_object().map_or(0, |m| m.len()).to_string(),
            ]);
        }
    }
    outln!();
    layers.print();
    if let Some(h) = r["history"].as_array() {
        outln!();
        let mut t = Table::new(&[
            "version",
            "cause",
            "valid_from",
            "valid_to",
            "mode",
            "fields",
        ]);
        for v in h {
            t.row(vec![
                cell(&v["version"]),
                cell(&v["cause"]),
                short_time(&v["valid_from"]),
                short_time(&v["valid_to"]),
                cell(&v["mode"]),
                v["view"]["fields"]
                    .as_object()
                    .map_or(0, |m| m.len())
                    .to_string(),
            ]);
        }
        t.print();
    }
}

pub fn print_status(s: &Value) {
    outln!(
        "tenant {} · {}{} · {} {} · every {}s · next run {}",
        cell(&s["tenant"]),
        cell(&s["state"]),
        s["state_reason"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        cell(&s["ats_kind"]),
        cell(&s["api_version"]),
        cell(&s["interval_secs"]),
        short_time(&s["next_run_at"]),
    );
    if !s["running"].is_null() {
        outln!(
            "running: run {} since {}",
            cell(&s["running"]["run_id"]),
            short_time(&s["running"]["started_at"])
        );
    }
    if s["remerge_pending"] == json!(true) {
        outln!("re-merge pending (re-enabled after a disable)");
    }
    outln!("quarantined records: {}", cell(&s["quarantined"]));
    outln!();
    let mut t = Table::new(&[
        "stream",
        "status",
        "watermark",
        "last success",
        "checkpoint",
        "reason",
    ]);
    for st in s["streams"].as_array().into_iter().flatten() {
        t.row(vec![
            cell(&st["stream"]),
            cell(&st["status"]),
            short_time(&st["watermark"]),
            short_time(&st["last_success_at"]),
            if st["checkpoint"].is_null() {
                "-".into()
            } else {
                format!("{} pages", cell(&st["checkpoint"]["pages_committed"]))
            },
            st["reason"]
                .as_str()
                .map(|r| compact(&json!(r), 50))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    t.print();
    outln!();
    let mut t = Table::new(&[
        "started",
        "stream",
        "kind",
        "outcome",
        "pages",
        "records",
        "created",
        "updated",
        "backfilled",
        "corrected",
        "tombstoned",
        "requests",
        "429s",
    ]);
    for r in s["last_runs"].as_array().into_iter().flatten() {
        let c = &r["counts"];
        t.row(vec![
            short_time(&r["started_at"]),
            cell(&r["stream"]),
            cell(&r["kind"]),
            compact(&r["outcome"], 30),
            cell(&c["pages"]),
            cell(&c["records_seen"]),
            cell(&c["created"]),
            cell(&c["updated"]),
            cell(&c["fields_backfilled"]),
            cell(&c["fields_corrected"]),
            cell(&c["tombstoned"]),
            cell(&c["requests"]),
            cell(&c["rate_limited_429"]),
        ]);
    }
    t.print();
}
