//! `edsctl demo`: the main job end to end on the local stack, through the same code
//! paths as the other commands.
//!
//! It generates a seeded scenario (ATS truth, the pushed snapshot with injected
//! defects, the manifest of right answers), starts the Greenhouse simulator in-process
//! with a realistic rate limit, provisions a fresh stage in the emulator, enables the
//! tenant (`tenants enable`), pushes the snapshot (`push`), syncs (`sync`, with
//! progress), and then reads every stored record back to report what the pull did:
//! fields backfilled by kind, values corrected, pushed values kept because newer,
//! tombstones after reconciliation, versions written, and the ATS requests against
//! the rate limit's lower bound. It shows one record's provenance and history, disables
//! the pull (`tenants disable`) and shows the same record again, push-only.
//!
//! The report is computed from the store, not from the scenario; a test compares it
//! with the scenario's manifest.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use eds_shared::domain::ids::{EntityKind, RecordKey, TenantId};
use eds_shared::domain::merge::DeletedBy;
use eds_shared::domain::version::Version;
use eds_shared::store::{RecordRead, RecordSweep, SHARDS};
use futures::StreamExt;
use greenhouse_sim::{
    ALL_SCOPES, DefectKind, Manifest, Scenario, ScenarioSpec, SimConfig, Simulator,
};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::{Value, json};

use crate::deploy::Deployment;
use crate::error::CliError;
use crate::out::outln;
use crate::sync::SyncOptions;
use crate::tenants::EnableArgs;

/// The simulator's v3 rate limit in the demo: Greenhouse's documented 50 per 30 s.
pub const DEMO_RATE_LIMIT: u32 = 50;
pub const DEMO_RATE_WINDOW_SECS: u64 = 30;
const CLIENT_ID: &str = "eds-demo-client";
const CLIENT_SECRET: &str = "eds-demo-secret";

#[derive(Debug, Clone)]
pub struct DemoArgs {
    pub candidates: usize,
    pub jobs: usize,
    pub seed: u64,
    pub tenant: String,
    pub quiet: bool,
}

/// Counts of records (and fields) per kind of contribution of the pull.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Report {
    /// Live records by entity.
    pub records: BTreeMap<String, u64>,
    /// Records that were pushed and also read from the ATS.
    pub pushed_and_pulled: u64,
    /// Records only the ATS had (created after the push snapshot).
    pub pull_only: u64,
    /// Records (pushed ones only) with at least one backfilled field of this kind:
    /// `resumes`, `attachments` (other files), `emails`, `phones`, or the field name.
    pub backfilled_records: BTreeMap<String, u64>,
    /// Backfilled fields (or attachment elements) in total, pushed records only.
    pub fields_backfilled: u64,
    /// Records whose pushed value was corrected by a newer ATS value, by entity.
    pub corrected_records: BTreeMap<String, u64>,
    /// Corrected fields by field name.
    pub corrected_fields: BTreeMap<String, u64>,
    /// Applications whose pushed state was stale (the ATS moved them on after the push).
    pub stale_applications_corrected: u64,
    /// Records where a pushed value newer than the ATS was kept, by entity.
    pub push_newer_kept_records: BTreeMap<String, u64>,
    /// Records the ATS no longer has (tombstones after reconciliation), by entity.
    pub tombstones: BTreeMap<String, u64>,
    /// Records deleted by a pushed delete.
    pub push_deleted: u64,
    /// Versions stored, in total (every record's history).
    pub versions: u64,
    /// Attachment files stored in S3.
    pub files_stored: u64,
    /// Pushed attachment rows the pull completed with their stored file.
    pub files_attached: u64,
}

fn resume_of(v: &Version, element: &str) -> bool {
    let id = element.strip_prefix("attachments/").unwrap_or_default();
    v.view
        .fields
        .get("attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|e| e["id"].as_str() == Some(id) && e["type"].as_str() == Some("resume"))
}

/// The element `attachments/<id>` of both layers, when the pulled one holds every
/// member of the pushed one with the same value (it may add more, e.g. `file`).
fn only_adds_members(v: &Version, path: &str) -> bool {
    let Some(id) = path.strip_prefix("attachments/") else {
        return false;
    };
    let element = |l: Option<&eds_shared::domain::model::Layer>| {
        l.and_then(|l| l.fields.get("attachments"))
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|e| e["id"].as_str() == Some(id)))
            .and_then(Value::as_object)
            .cloned()
    };
    match (
        element(v.state.push.as_ref()),
        element(v.state.pull.as_ref()),
    ) {
        (Some(push), Some(pull)) => push
            .iter()
            .all(|(k, val)| k == "updated_at" || pull.get(k) == Some(val)),
        _ => false,
    }
}

/// Adds one record's head to the report.
/// The report of a tenant's record heads.
pub fn report_of(heads: &[(RecordKey, Version)]) -> Report {
    // Attachment rows the customer pushed, under any candidate: a row the pull finds
    // under another candidate was moved there by an ATS merge, it was not missing.
    let pushed_attachments: std::collections::HashSet<String> = heads
        .iter()
        .filter_map(|(_, v)| v.state.push.as_ref())
        .filter_map(|l| l.fields.get("attachments").and_then(Value::as_array))
        .flatten()
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect();
    let mut report = Report::default();
    for (key, v) in heads {
        tally(&mut report, key.entity, v, &pushed_attachments);
    }
    report
}

fn tally(
    report: &mut Report,
    entity: EntityKind,
    v: &Version,
    pushed_attachments: &std::collections::HashSet<String>,
) {
    let e = entity.as_str().to_string();
    report.versions += v.version;
    match v.view.deleted {
        Some(DeletedBy::Ats) => {
            *report.tombstones.entry(e).or_default() += 1;
            return;
        }
        Some(DeletedBy::Push) => {
            report.push_deleted += 1;
            return;
        }
        None => {}
    }
    *report.records.entry(e.clone()).or_default() += 1;
    report.files_stored += v
        .view
        .fields
        .get("attachments")
        .and_then(Value::as_array)
        .map_or(0, |a| {
            a.iter().filter(|el| el.get("file").is_some()).count() as u64
        });
    match (&v.state.push, &v.state.pull) {
        (Some(_), Some(_)) => report.pushed_and_pulled += 1,
        (None, Some(_)) => {
            report.pull_only += 1;
            return;
        }
        _ => return,
    }
    let (_, merge) = v.state.render(entity);
    let mut kinds: std::collections::BTreeSet<String> = Default::default();
    for f in &merge.backfilled {
        report.fields_backfilled += 1;
        let kind = if let Some(id) = f.strip_prefix("attachments/") {
            if pushed_attachments.contains(id) {
                "attachments_moved_by_merges"
            } else if resume_of(v, f) {
                "resumes"
            } else {
                "attachments"
            }
            .to_string()
        } else {
            f.clone()
        };
        kinds.insert(kind);
    }
    for k in kinds {
        *report.backfilled_records.entry(k).or_default() += 1;
    }
    // A pulled attachment element that only adds members the pushed row lacks (the
    // stored `file`) completes the row; the merge reports it as the pull winning, but no
    // pushed value changed, so it is not a correction.
    let corrected: Vec<&String> = merge
        .corrected
        .iter()
        .filter(|f| {
            if only_adds_members(v, f) {
                report.files_attached += 1;
                false
            } else {
                true
            }
        })
        .collect();
    // An application the ATS moved on after the push (new stage or status, or only its
    // activity); one whose only change is its candidate was moved by a candidate merge.
    if entity == EntityKind::Application && corrected.iter().any(|f| f.as_str() != "candidate_id") {
        report.stale_applications_corrected += 1;
    }
    if !corrected.is_empty() {
        *report.corrected_records.entry(e.clone()).or_default() += 1;
        for f in corrected {
            let name = f.split('/').next().unwrap_or(f).to_string();
            *report.corrected_fields.entry(name).or_default() += 1;
        }
    }
    if !merge.push_newer_kept.is_empty() {
        *report.push_newer_kept_records.entry(e).or_default() += 1;
    }
}

/// Reads every record head of the tenant (16 index shards, heads read concurrently).
pub async fn read_all(
    d: &Deployment,
    tenant: &TenantId,
) -> Result<Vec<(RecordKey, Version)>, CliError> {
    let store = Arc::new(d.store());
    let mut keys = Vec::new();
    for shard in 0..SHARDS {
        let mut after: Option<String> = None;
        loop {
            let page = store
                .list_keys(tenant, shard, after.as_deref(), 500)
                .await
                .map_err(|e| d.aws_err(e))?;
            keys.extend(
                page.keys
                    .into_iter()
                    .map(|k| RecordKey::new(tenant.clone(), k.entity, k.ats_id)),
            );
            after = page.next;
            if after.is_none() {
                break;
            }
        }
    }
    let heads = futures::stream::iter(keys)
        .map(|key| {
            let store = store.clone();
            async move {
                let v = store.get(&key).await;
                (key, v)
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let mut out = Vec::with_capacity(heads.len());
    for (key, h) in heads {
        if let Some(v) = h.map_err(|e| d.aws_err(e))? {
            out.push((key, v));
        }
    }
    Ok(out)
}

fn say(quiet: bool, s: impl AsRef<str>) {
    if !quiet {
        outln!("{}", s.as_ref());
    }
}

/// Runs the demo; returns everything it measured (printed as JSON with `--json`).
pub async fn run(d: &Deployment, args: &DemoArgs) -> Result<Value, CliError> {
    if !d.config.local_testing {
        return Err(CliError::Usage(
            "the demo downloads resumes from the simulator on 127.0.0.1: set EDS_LOCAL_TESTING=true (make demo does)".into(),
        ));
    }
    let q = args.quiet;
    let started = Instant::now();
    let tenant = crate::tenants::parse_tenant(&args.tenant)?;
    let spec = ScenarioSpec {
        seed: args.seed,
        candidates: args.candidates,
        jobs: args.jobs,
        now: Utc::now() - chrono::Duration::minutes(10),
        ..ScenarioSpec::default()
    };
    let scenario = Scenario::generate(&spec);
    let truth = &scenario.truth;
    say(
        q,
        format!(
            "== scenario: seed {}, {} candidates, {} applications, {} jobs, {} attachments in the ATS; {} pushed records",
            spec.seed,
            truth.candidates.len(),
            truth.applications.len(),
            truth.jobs.len(),
            truth.attachments.len(),
            scenario.pushed.len()
        ),
    );
    let sim_cfg = SimConfig {
        rate_limit_v3: DEMO_RATE_LIMIT,
        rate_window_v3: Duration::from_secs(DEMO_RATE_WINDOW_SECS),
        ..SimConfig::default()
    };
    let sim = Simulator::start(sim_cfg, truth.clone())
        .await
        .map_err(|e| CliError::Failed(format!("the Greenhouse simulator did not start: {e}")))?;
    sim.add_oauth_client(CLIENT_ID, CLIENT_SECRET, ALL_SCOPES);
    say(
        q,
        format!(
            "== Greenhouse simulator: {} (rate limit {DEMO_RATE_LIMIT} requests per {DEMO_RATE_WINDOW_SECS} s)",
            sim.api_base()
        ),
    );
    let result = Box::pin(drive(d, args, &tenant, &scenario, &sim, started)).await;
    sim.shutdown().await;
    let mut out = result?;
    out["spec"] = json!({"seed": spec.seed, "candidates": spec.candidates, "jobs": spec.jobs, "now": spec.now});
    out["elapsed_ms"] = json!(started.elapsed().as_millis() as u64);
    say(
        q,
        format!(
            "== done in {:.1} s; simulator stopped",
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(out)
}

async fn drive(
    d: &Deployment,
    args: &DemoArgs,
    tenant: &TenantId,
    scenario: &Scenario,
    sim: &greenhouse_sim::SimHandle,
    started: Instant,
) -> Result<Value, CliError> {
    let q = args.quiet;
    let storage_host = url::Url::parse(&sim.storage_base())
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "127.0.0.1".into());
    let creds = json!({"kind": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET});
    let enabled = crate::tenants::enable(
        d,
        EnableArgs {
            tenant: tenant.clone(),
            api_version: "v3".into(),
            api_base: sim.api_base(),
            auth_url: Some(sim.token_url()),
            credentials: SecretString::from(creds.to_string()),
            interval_secs: Some(900),
            attachment_hosts: vec![storage_host],
            allow_loopback_attachments: true,
        },
    )
    .await?;
    say(
        q,
        format!(
            "== edsctl tenants enable {tenant}: state {}, epoch {}, secret {}",
            enabled["state"].as_str().unwrap_or("?"),
            enabled["epoch"],
            enabled["secret_name"].as_str().unwrap_or("?")
        ),
    );

    // The simulator writes its snapshot in the documented push format already.
    let snapshot = scenario.pushed.to_vec();
    let pushed = crate::push::push(d, tenant, &snapshot, false).await?;
    say(
        q,
        format!(
            "== edsctl push {tenant} (the standard push snapshot): {} records in {} SQS messages → push-ingest: {} created, {} quarantined",
            pushed.records, pushed.messages, pushed.created, pushed.quarantined
        ),
    );

    let truth = &scenario.truth;
    let expected = (truth.candidates.len()
        + truth.applications.len()
        + truth.jobs.len()
        + truth.attachments.len()) as u64;
    let puller = crate::sync::puller(d, Duration::from_secs(30))?;
    say(
        q,
        format!("== edsctl sync {tenant}: scheduler → pull queue → puller, until idle"),
    );
    let opts = SyncOptions {
        expected_records: Some(expected),
        quiet: q,
        ..SyncOptions::default()
    };
    let sync_started = Instant::now();
    let summary = crate::sync::sync(d, &puller, tenant, &opts).await?;
    let sync_secs = sync_started.elapsed().as_secs_f64();
    let stats = sim.stats();

    let heads = read_all(d, tenant).await?;
    let report = report_of(&heads);
    let requests = summary.counts.requests;
    let lower_bound_secs =
        requests as f64 * DEMO_RATE_WINDOW_SECS as f64 / f64::from(DEMO_RATE_LIMIT);
    if !q {
        print_report(
            &report,
            &scenario.manifest,
            &summary,
            sync_secs,
            lower_bound_secs,
            stats.rate_limited,
        );
    }

    // One record to look at: a candidate whose resume the push lacked (the lowest id,
    // so the same seed shows the same record).
    let record_id = heads
        .iter()
        .filter(|(k, v)| {
            k.entity == EntityKind::Candidate
                && v.state.push.is_some()
                && v.state
                    .render(k.entity)
                    .1
                    .backfilled
                    .iter()
                    .any(|f| resume_of(v, f))
        })
        .map(|(k, _)| k.ats_id.as_str().to_string())
        .min_by_key(|id| (id.len(), id.clone()));
    let mut record = Value::Null;
    let mut record_disabled = Value::Null;
    if let Some(id) = &record_id {
        let key = crate::view::parse_key(tenant, "candidate", id)?;
        record = crate::view::record(d, &key, true, None).await?;
        say(
            q,
            format!(
                "\n== edsctl record {tenant} candidate {id} --history (provenance per field: push / pull / both)"
            ),
        );
        if !q {
            crate::view::print_record(&record);
        }
    }
    let disabled = crate::tenants::disable(d, tenant).await?;
    say(
        q,
        format!(
            "\n== edsctl tenants disable {tenant}: {} records made push-only ({} versions written, history kept)",
            disabled["records_changed"], disabled["versions_written"]
        ),
    );
    if let Some(id) = &record_id {
        let key = crate::view::parse_key(tenant, "candidate", id)?;
        record_disabled = crate::view::record(d, &key, false, None).await?;
        say(
            q,
            format!("\n== edsctl record {tenant} candidate {id} (pull disabled: only pushed data)"),
        );
        if !q {
            crate::view::print_record(&record_disabled);
        }
    }
    Ok(json!({
        "tenant": tenant,
        "stage": d.stage,
        "enable": enabled,
        "push": pushed,
        "sync": summary,
        "sync_secs": sync_secs,
        "rate_limit": {"limit": DEMO_RATE_LIMIT, "window_secs": DEMO_RATE_WINDOW_SECS,
                       "requests": requests, "lower_bound_secs": lower_bound_secs,
                       "simulator_429s": stats.rate_limited},
        "checks": checks(&report, &scenario.manifest).iter()
            .map(|(name, got, want)| json!({"name": name, "eds": got, "manifest": want}))
            .collect::<Vec<_>>(),
        "report": report,
        "record_id": record_id,
        "record": record,
        "disable": disabled,
        "record_disabled": record_disabled,
        "before_report_ms": started.elapsed().as_millis() as u64,
    }))
}

fn join(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "0".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report's numbers next to the ones the scenario's manifest says they must be.
pub fn checks(r: &Report, m: &Manifest) -> Vec<(&'static str, u64, u64)> {
    let n = |k: DefectKind| m.counts.get(&k).copied().unwrap_or(0) as u64;
    let b = |k: &str| r.backfilled_records.get(k).copied().unwrap_or(0);
    vec![
        (
            "resumes backfilled (candidates)",
            b("resumes"),
            n(DefectKind::MissingResume),
        ),
        (
            "emails backfilled (candidates)",
            b("emails"),
            n(DefectKind::MissingEmails),
        ),
        (
            "phones backfilled (candidates)",
            b("phones"),
            n(DefectKind::MissingPhones),
        ),
        (
            "stale applications corrected",
            r.stale_applications_corrected,
            n(DefectKind::StaleApplication),
        ),
        (
            "pushed values kept because newer",
            r.push_newer_kept_records.values().sum(),
            n(DefectKind::PushNewer),
        ),
        (
            "tombstones after reconciliation",
            r.tombstones.values().sum(),
            n(DefectKind::DeletedAfterPush) + n(DefectKind::MergedAfterPush),
        ),
    ]
}

fn print_report(
    r: &Report,
    m: &Manifest,
    s: &crate::sync::SyncSummary,
    sync_secs: f64,
    lower: f64,
    sim_429: u64,
) {
    let c = &s.counts;
    outln!("\n== what the pull did (read back from the records table)");
    outln!("records now:                 {}", join(&r.records));
    outln!("  pushed and read from ATS:  {}", r.pushed_and_pulled);
    outln!("  only in the ATS:           {}", r.pull_only);
    outln!(
        "fields backfilled:           {} in pushed records",
        r.fields_backfilled
    );
    outln!(
        "  records backfilled, by kind: {}",
        join(&r.backfilled_records)
    );
    outln!(
        "values corrected (ATS newer): {} records ({})",
        r.corrected_records.values().sum::<u64>(),
        join(&r.corrected_records)
    );
    outln!("  corrected fields:          {}", join(&r.corrected_fields));
    outln!(
        "pushed values kept (newer):  {} records ({})",
        r.push_newer_kept_records.values().sum::<u64>(),
        join(&r.push_newer_kept_records)
    );
    outln!(
        "tombstones (reconciliation): {} records ({})",
        r.tombstones.values().sum::<u64>(),
        join(&r.tombstones)
    );
    outln!(
        "versions stored:             {} ({} written by this sync)",
        r.versions,
        s.versions_written
    );
    outln!(
        "attachment files in S3:      {} ({} pushed rows completed with their file)",
        r.files_stored,
        r.files_attached
    );
    outln!("\n== checked against the scenario's manifest of injected defects");
    let mut t = crate::table::Table::new(&["", "eds", "manifest", ""]);
    for (name, got, want) in checks(r, m) {
        t.row(vec![
            name.into(),
            got.to_string(),
            want.to_string(),
            if got == want { "ok" } else { "DIFFERENT" }.into(),
        ]);
    }
    t.print();
    outln!();
    outln!(
        "ATS requests:                {} in {:.1} s (+{} token); rate limit {DEMO_RATE_LIMIT}/{DEMO_RATE_WINDOW_SECS}s → lower bound {:.1} s; 429s {}, waits {:.1} s",
        c.requests,
        sync_secs,
        c.token_requests,
        lower,
        sim_429,
        c.rate_limit_wait_ms as f64 / 1000.0
    );
    outln!(
        "pages {}, records read {}, quarantined {}, batches {}, continuations {}",
        c.pages,
        c.records_seen,
        c.quarantined,
        s.batches,
        s.continuations
    );
}
