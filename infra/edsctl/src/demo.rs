//! `edsctl demo`: the main job end to end on the local stack, through the same code
//! paths as the other commands.
//!
//! It generates a seeded scenario (ATS truth, the pushed snapshot with injected
//! defects, the manifest of right answers), starts the ATS's simulator (Greenhouse or
//! Lever, `--ats`) in-process with a realistic rate limit, provisions a fresh stage in the emulator, enables the
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
use greenhouse_sim::{DefectKind, Manifest};
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
/// Lever's documented bucket: 10 requests per second (bursts to 20).
pub const LEVER_RATE_LIMIT: u32 = 10;
const CLIENT_ID: &str = "eds-demo-client";
const CLIENT_SECRET: &str = "eds-demo-secret";
const LEVER_API_KEY: &str = "eds-demo-lever-api-key";

/// The ATS the demo's simulator imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoAts {
    Greenhouse,
    Lever,
}

impl DemoAts {
    /// Candidates (Lever: candidacies) when `--candidates` is not given: Lever's
    /// resumes are read per candidacy at 10 requests/s, so its default is smaller.
    pub fn default_candidates(self) -> usize {
        match self {
            DemoAts::Greenhouse => 2000,
            DemoAts::Lever => 200,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DemoArgs {
    pub ats: DemoAts,
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

/// The demo's simulator, running, with the scenario it serves.
enum Sim {
    Greenhouse {
        sim: greenhouse_sim::SimHandle,
        scenario: greenhouse_sim::Scenario,
    },
    Lever {
        sim: lever_sim::SimHandle,
        scenario: lever_sim::Scenario,
    },
}

impl Sim {
    /// Generates the scenario of `args` at `now` and starts its simulator.
    async fn start(args: &DemoArgs, now: chrono::DateTime<Utc>) -> Result<Sim, CliError> {
        fn failed(e: impl std::fmt::Display) -> CliError {
            CliError::Failed(format!("the simulator did not start: {e}"))
        }
        Ok(match args.ats {
            DemoAts::Greenhouse => {
                let scenario = greenhouse_sim::Scenario::generate(&greenhouse_sim::ScenarioSpec {
                    seed: args.seed,
                    candidates: args.candidates,
                    jobs: args.jobs,
                    now,
                    ..greenhouse_sim::ScenarioSpec::default()
                });
                let cfg = greenhouse_sim::SimConfig {
                    rate_limit_v3: DEMO_RATE_LIMIT,
                    rate_window_v3: Duration::from_secs(DEMO_RATE_WINDOW_SECS),
                    ..greenhouse_sim::SimConfig::default()
                };
                let sim = greenhouse_sim::Simulator::start(cfg, scenario.truth.clone())
                    .await
                    .map_err(failed)?;
                sim.add_oauth_client(CLIENT_ID, CLIENT_SECRET, greenhouse_sim::ALL_SCOPES);
                Sim::Greenhouse { sim, scenario }
            }
            DemoAts::Lever => {
                let scenario = lever_sim::Scenario::generate(&lever_sim::ScenarioSpec {
                    seed: args.seed,
                    candidacies: args.candidates,
                    postings: args.jobs,
                    now,
                    ..lever_sim::ScenarioSpec::default()
                });
                // Lever's own bucket (10/s, bursts to 20, wall time).
                let sim = lever_sim::Simulator::start(
                    lever_sim::SimConfig::default(),
                    scenario.truth.clone(),
                )
                .await
                .map_err(failed)?;
                sim.add_api_key(LEVER_API_KEY, lever_sim::ALL_SCOPES);
                Sim::Lever { sim, scenario }
            }
        })
    }

    fn describe(&self) -> (String, String) {
        match self {
            Sim::Greenhouse { sim, scenario } => {
                let t = &scenario.truth;
                (
                    format!(
                        "{} candidates, {} applications, {} jobs, {} attachments in Greenhouse; {} pushed records",
                        t.candidates.len(),
                        t.applications.len(),
                        t.jobs.len(),
                        t.attachments.len(),
                        scenario.pushed.len()
                    ),
                    format!(
                        "Greenhouse simulator: {} (rate limit {DEMO_RATE_LIMIT} requests per {DEMO_RATE_WINDOW_SECS} s)",
                        sim.api_base()
                    ),
                )
            }
            Sim::Lever { sim, scenario } => {
                let t = &scenario.truth;
                (
                    format!(
                        "{} candidacies, {} applications, {} postings, {} resumes and {} files in Lever, {} deleted; {} pushed records",
                        t.opportunities.len(),
                        t.applications.len(),
                        t.postings.len(),
                        t.resumes.len(),
                        t.files.len(),
                        t.deleted.len(),
                        scenario.pushed.len()
                    ),
                    format!(
                        "Lever simulator: {} (bucket {LEVER_RATE_LIMIT} requests/s, bursts to 20; API key)",
                        sim.api_base()
                    ),
                )
            }
        }
    }

    fn enable_args(&self, tenant: &TenantId) -> EnableArgs {
        match self {
            Sim::Greenhouse { sim, .. } => {
                let storage_host = url::Url::parse(&sim.storage_base())
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .unwrap_or_else(|| "127.0.0.1".into());
                let creds = json!({"kind": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET});
                EnableArgs {
                    tenant: tenant.clone(),
                    ats: "greenhouse".into(),
                    api_version: Some("v3".into()),
                    api_base: sim.api_base(),
                    auth_url: Some(sim.token_url()),
                    credentials: SecretString::from(creds.to_string()),
                    interval_secs: Some(900),
                    attachment_hosts: vec![storage_host],
                    allow_loopback_attachments: true,
                }
            }
            // Resumes are API calls to the API's own host: no file host to name.
            Sim::Lever { sim, .. } => EnableArgs {
                tenant: tenant.clone(),
                ats: "lever".into(),
                api_version: None,
                api_base: sim.api_base(),
                auth_url: None,
                credentials: SecretString::from(
                    json!({"kind": "api_key", "api_key": LEVER_API_KEY}).to_string(),
                ),
                interval_secs: Some(900),
                attachment_hosts: vec![],
                allow_loopback_attachments: true,
            },
        }
    }

    fn snapshot(&self) -> Vec<Value> {
        match self {
            Sim::Greenhouse { scenario, .. } => scenario.pushed.to_vec(),
            Sim::Lever { scenario, .. } => scenario.pushed.to_vec(),
        }
    }

    /// Records the sync reads (for the progress bar).
    fn expected_records(&self) -> u64 {
        match self {
            Sim::Greenhouse { scenario, .. } => {
                let t = &scenario.truth;
                (t.candidates.len() + t.applications.len() + t.jobs.len() + t.attachments.len())
                    as u64
            }
            Sim::Lever { scenario, .. } => {
                let t = &scenario.truth;
                (t.opportunities.len()
                    + t.applications.len()
                    + t.postings.len()
                    + t.resumes.len()
                    + t.files.len()
                    + t.deleted.len()) as u64
            }
        }
    }

    /// The simulator's rate limit: requests per window of seconds.
    fn rate_limit(&self) -> (u32, u64) {
        match self {
            Sim::Greenhouse { .. } => (DEMO_RATE_LIMIT, DEMO_RATE_WINDOW_SECS),
            Sim::Lever { .. } => (LEVER_RATE_LIMIT, 1),
        }
    }

    fn rate_limited(&self) -> u64 {
        match self {
            Sim::Greenhouse { sim, .. } => sim.stats().rate_limited,
            Sim::Lever { sim, .. } => sim.stats().rate_limited,
        }
    }

    fn checks(
        &self,
        report: &Report,
        heads: &[(RecordKey, Version)],
    ) -> Vec<(&'static str, u64, u64)> {
        match self {
            Sim::Greenhouse { scenario, .. } => checks(report, &scenario.manifest),
            Sim::Lever { scenario, .. } => lever_checks(report, &scenario.manifest, heads),
        }
    }

    async fn shutdown(self) {
        match self {
            Sim::Greenhouse { sim, .. } => sim.shutdown().await,
            Sim::Lever { sim, .. } => sim.shutdown().await,
        }
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
    let now = Utc::now() - chrono::Duration::minutes(10);
    let sim = Sim::start(args, now).await?;
    let (scenario, simulator) = sim.describe();
    say(q, format!("== scenario: seed {}, {scenario}", args.seed));
    say(q, format!("== {simulator}"));
    let result = Box::pin(drive(d, args, &tenant, &sim, started)).await;
    sim.shutdown().await;
    let mut out = result?;
    let ats = match args.ats {
        DemoAts::Greenhouse => "greenhouse",
        DemoAts::Lever => "lever",
    };
    out["spec"] = json!({"ats": ats, "seed": args.seed, "candidates": args.candidates, "jobs": args.jobs, "now": now});
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
    sim: &Sim,
    started: Instant,
) -> Result<Value, CliError> {
    let q = args.quiet;
    let enabled = crate::tenants::enable(d, sim.enable_args(tenant)).await?;
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
    let snapshot = sim.snapshot();
    let pushed = crate::push::push(d, tenant, &snapshot, false).await?;
    say(
        q,
        format!(
            "== edsctl push {tenant} (the standard push snapshot): {} records in {} SQS messages → push-ingest: {} created, {} quarantined",
            pushed.records, pushed.messages, pushed.created, pushed.quarantined
        ),
    );

    let expected = sim.expected_records();
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
    let rate_limited = sim.rate_limited();

    let heads = read_all(d, tenant).await?;
    let report = report_of(&heads);
    let checks = sim.checks(&report, &heads);
    let requests = summary.counts.requests;
    let (limit, window_secs) = sim.rate_limit();
    let lower_bound_secs = requests as f64 * window_secs as f64 / f64::from(limit);
    if !q {
        print_report(
            &report,
            &checks,
            &summary,
            sync_secs,
            (limit, window_secs, lower_bound_secs),
            rate_limited,
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
        "rate_limit": {"limit": limit, "window_secs": window_secs,
                       "requests": requests, "lower_bound_secs": lower_bound_secs,
                       "simulator_429s": rate_limited},
        "checks": checks.iter()
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

/// The Lever demo's numbers next to the manifest's: every record's merged view
/// compared with the expected one, by entity, and the records per kind of defect.
pub fn lever_checks(
    r: &Report,
    m: &lever_sim::Manifest,
    heads: &[(RecordKey, Version)],
) -> Vec<(&'static str, u64, u64)> {
    use lever_sim::DefectKind as D;
    let live: std::collections::HashMap<(&str, &str), serde_json::Map<String, Value>> = heads
        .iter()
        .filter(|(_, v)| v.view.deleted.is_none())
        .map(|(k, v)| {
            (
                (k.entity.as_str(), k.ats_id.as_str()),
                v.view.fields.clone().into_iter().collect(),
            )
        })
        .collect();
    let mut equal: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (entity, id) in m.expected_views.keys() {
        let same = m
            .check(entity, id, live.get(&(entity.as_str(), id.as_str())))
            .is_empty();
        let e = equal.entry(entity.as_str()).or_default();
        e.0 += u64::from(same);
        e.1 += 1;
    }
    let eq = |e: &str| equal.get(e).copied().unwrap_or_default();
    let n = |k: D| m.counts.get(&k).copied().unwrap_or(0) as u64;
    let b = |k: &str| r.backfilled_records.get(k).copied().unwrap_or(0);
    let (c, a, j) = (eq("candidate"), eq("application"), eq("job"));
    vec![
        ("candidates equal to the manifest", c.0, c.1),
        ("applications equal to the manifest", a.0, a.1),
        ("jobs equal to the manifest", j.0, j.1),
        (
            "resumes backfilled (candidates)",
            b("resumes"),
            n(D::MissingResume),
        ),
        (
            "emails backfilled (candidates)",
            b("emails"),
            n(D::MissingEmails),
        ),
        (
            "phones backfilled (candidates)",
            b("phones"),
            n(D::MissingPhones),
        ),
        (
            "pushed values kept because newer",
            r.push_newer_kept_records.values().sum(),
            n(D::PushNewer),
        ),
        (
            "tombstones (Lever's deleted list)",
            r.tombstones.values().sum(),
            n(D::DeletedAfterPush),
        ),
    ]
}

fn print_report(
    r: &Report,
    checks: &[(&'static str, u64, u64)],
    s: &crate::sync::SyncSummary,
    sync_secs: f64,
    (limit, window_secs, lower): (u32, u64, f64),
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
    for &(name, got, want) in checks {
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
        "ATS requests:                {} in {:.1} s (+{} token); rate limit {limit}/{window_secs}s → lower bound {:.1} s; 429s {}, waits {:.1} s",
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
