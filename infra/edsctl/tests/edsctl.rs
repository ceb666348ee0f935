//! edsctl driven as a subprocess, the way an operator or a script uses it, against the
//! local emulator (`AWS_ENDPOINT_URL`, started by `infra/local/scripts/with-emulator.sh`)
//! and the Greenhouse simulator. Each test uses its own stage, so tests share one
//! emulator and run in parallel.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use greenhouse_sim::{ALL_SCOPES, DefectKind, Scenario, ScenarioSpec, SimConfig, Simulator};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_edsctl");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn stage() -> String {
    format!("t{}", &uuid_like()[..10])
}

/// A unique suffix without another dependency: time, process id and a counter.
fn uuid_like() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{n:x}{:08x}{:x}", nanos, std::process::id())
}

fn edsctl(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("EDS_LOCAL_TESTING", "true")
        .env_remove("EDSCTL_STAGE")
        .output()
        .expect("edsctl runs")
}

/// Runs edsctl with `--json`, expects success, returns the parsed output.
fn json_ok(args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = edsctl(&all);
    assert!(
        out.status.success(),
        "edsctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "edsctl {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

fn temp_file(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edsctl-test-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn need_emulator() -> bool {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        panic!(
            "these tests need the local emulator: run them with infra/local/scripts/with-emulator.sh cargo test -p edsctl"
        );
    }
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn enable_push_sync_record_disable_delete_through_the_cli_json() {
    need_emulator();
    let stage = stage();
    // Secrets are not per stage (one prefix in the emulator): a tenant name of its own.
    let tenant = format!("cli-{}", &uuid_like()[..8]);
    let t = tenant.as_str();
    let spec = ScenarioSpec {
        seed: 11,
        candidates: 60,
        jobs: 5,
        now: chrono::Utc::now() - chrono::Duration::minutes(10),
        ..ScenarioSpec::default()
    };
    let scenario = Scenario::generate(&spec);
    let sim = Simulator::start(SimConfig::default(), scenario.truth.clone())
        .await
        .unwrap();
    sim.add_oauth_client("cli-client", "cli-secret-value", ALL_SCOPES);
    let creds = temp_file(
        "creds.json",
        r#"{"kind": "client_credentials", "client_id": "cli-client", "client_secret": "cli-secret-value"}"#,
    );
    let (api, token) = (sim.api_base(), sim.token_url());
    let run = |args: Vec<String>| {
        let mut all: Vec<String> = vec!["--stage".into(), stage.clone()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        json_ok(&refs)
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    let enabled = run(s(&[
        "tenants",
        "enable",
        t,
        "--ats",
        "greenhouse",
        "--api-base",
        &api,
        "--auth-url",
        &token,
        "--credentials",
        creds.to_str().unwrap(),
        "--attachment-host",
        "127.0.0.1",
        "--allow-loopback-attachments",
    ]));
    assert_eq!(enabled["state"], "enabled");
    // A first registration's epoch is the clock in milliseconds (registry `first_epoch`).
    let epoch = enabled["epoch"].as_u64().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        (now_ms - 600_000..=now_ms).contains(&epoch),
        "epoch {epoch}"
    );
    assert_eq!(enabled["secret_name"], format!("eds/tenants/{t}"));
    assert!(
        !enabled.to_string().contains("cli-secret-value"),
        "no secret in the output"
    );

    let listed = run(s(&["tenants", "list"]));
    assert_eq!(listed["tenants"][0]["tenant"], t);

    // The pushed snapshot, as JSON lines (the simulator writes the documented format).
    let lines: Vec<&str> = scenario.pushed.json_lines().collect();
    let file = temp_file("pushed.jsonl", &lines.join("\n"));
    let pushed = run(s(&["push", t, file.to_str().unwrap()]));
    assert_eq!(pushed["records"], json!(lines.len()));
    assert_eq!(pushed["via"], "sqs");
    assert_eq!(pushed["quarantined"], 0);
    assert!(pushed["created"].as_u64().unwrap() > 60);

    let synced = run(s(&["sync", t]));
    assert_eq!(synced["state"], "enabled");
    assert!(synced["counts"]["records_seen"].as_u64().unwrap() >= 60);
    assert!(synced["counts"]["fields_backfilled"].as_u64().unwrap() > 0);
    assert!(synced["counts"]["attachments_stored"].as_u64().unwrap() > 0);
    assert!(synced["versions_written"].as_u64().unwrap() > 0);

    let status = run(s(&["status", t]));
    assert_eq!(status["state"], "enabled");
    assert!(status["running"].is_null(), "the run finished: {status}");
    let streams = status["streams"].as_array().unwrap();
    assert!(!streams.is_empty());
    assert!(streams.iter().all(|s| s["status"] == "done"), "{streams:?}");
    assert!(!status["last_runs"].as_array().unwrap().is_empty());

    // A second sync of an unchanged ATS writes nothing.
    let again = run(s(&["sync", t]));
    assert_eq!(again["versions_written"], 0, "{again}");

    // A candidate whose emails the push lacked: backfilled from the pull.
    let d = scenario
        .manifest
        .defects_of(DefectKind::MissingEmails)
        .next()
        .or_else(|| {
            scenario
                .manifest
                .defects_of(DefectKind::MissingPhones)
                .next()
        })
        .expect("the scenario has a missing contact list");
    let field = d.field.clone().unwrap();
    let rec = run(s(&["record", t, "candidate", &d.id, "--history"]));
    assert_eq!(rec["pull_visible"], true);
    assert_eq!(rec["view"]["provenance"][&field], "pull");
    assert_eq!(rec["view"]["fields"][&field], d.expected);
    assert!(rec["layers"]["push"].is_object() && rec["layers"]["pull"].is_object());
    let history = rec["history"].as_array().unwrap();
    assert!(history.len() >= 2, "push then pull: {history:?}");
    assert_eq!(history[0]["cause"], "push");
    assert!(history.iter().any(|v| v["cause"] == "pull"));
    let first_time = history[0]["valid_from"].as_str().unwrap().to_string();
    let as_of = run(s(&[
        "record",
        t,
        "candidate",
        &d.id,
        "--as-of",
        &first_time,
    ]));
    assert_eq!(as_of["version"], 1);
    assert!(
        as_of["view"]["fields"].get(&field).is_none(),
        "before the pull the field was absent"
    );

    let disabled = run(s(&["tenants", "disable", t]));
    assert_eq!(disabled["state"], "disabled");
    assert_eq!(disabled["outcome"], "completed");
    let after = run(s(&["record", t, "candidate", &d.id]));
    assert_eq!(after["pull_visible"], false);
    assert_eq!(after["mode"], "push_only");
    assert!(after["layers"]["pull"].is_null());
    assert!(
        after["view"]["fields"].get(&field).is_none(),
        "pulled value hidden: {after}"
    );

    let deleted = run(s(&[
        "tenants",
        "delete",
        t,
        "--yes",
        "--request-id",
        "req-1",
    ]));
    assert_eq!(deleted["receipt"]["verified_empty"], true);
    assert_eq!(deleted["receipt"]["request_id"], "req-1");
    // Deleting again with the same request id prints the same receipt.
    let again = run(s(&[
        "tenants",
        "delete",
        t,
        "--yes",
        "--request-id",
        "req-1",
    ]));
    assert_eq!(again["receipt"], deleted["receipt"]);

    let gone = edsctl(&["--stage", &stage, "status", t]);
    assert_eq!(gone.status.code(), Some(3));
    assert!(
        stderr(&gone).contains("not registered"),
        "{}",
        stderr(&gone)
    );
    sim.shutdown().await;
}

#[test]
fn the_demo_report_equals_the_scenario_manifest() {
    need_emulator();
    let stage = stage();
    let tenant = format!("demo-{}", &uuid_like()[..8]);
    let out = json_ok(&[
        "--stage",
        &stage,
        "demo",
        "--candidates",
        "250",
        "--jobs",
        "12",
        "--seed",
        "7",
        "--tenant",
        &tenant,
    ]);
    // The scenario is regenerated here from the spec the demo printed, independently of
    // the demo's own comparison.
    let spec = ScenarioSpec {
        seed: out["spec"]["seed"].as_u64().unwrap(),
        candidates: out["spec"]["candidates"].as_u64().unwrap() as usize,
        jobs: out["spec"]["jobs"].as_u64().unwrap() as usize,
        now: serde_json::from_value(out["spec"]["now"].clone()).unwrap(),
        ..ScenarioSpec::default()
    };
    assert_eq!((spec.seed, spec.candidates), (7, 250));
    let m = Scenario::generate(&spec).manifest;
    let n = |k: DefectKind| m.counts.get(&k).copied().unwrap_or(0) as u64;
    let r = &out["report"];
    let num = |v: &Value| v.as_u64().unwrap_or(0);
    let sum = |v: &Value| {
        v.as_object()
            .map_or(0, |o| o.values().map(num).sum::<u64>())
    };
    assert!(n(DefectKind::MissingResume) > 0 && n(DefectKind::StaleApplication) > 0);
    assert_eq!(
        num(&r["backfilled_records"]["resumes"]),
        n(DefectKind::MissingResume),
        "{r}"
    );
    assert_eq!(
        num(&r["backfilled_records"]["emails"]),
        n(DefectKind::MissingEmails),
        "{r}"
    );
    assert_eq!(
        num(&r["backfilled_records"]["phones"]),
        n(DefectKind::MissingPhones),
        "{r}"
    );
    assert_eq!(
        num(&r["stale_applications_corrected"]),
        n(DefectKind::StaleApplication),
        "{r}"
    );
    assert_eq!(
        sum(&r["push_newer_kept_records"]),
        n(DefectKind::PushNewer),
        "{r}"
    );
    assert_eq!(
        sum(&r["tombstones"]),
        n(DefectKind::DeletedAfterPush) + n(DefectKind::MergedAfterPush),
        "{r}"
    );
    assert!(num(&r["versions"]) > 0);
    assert_eq!(out["sync"]["counts"]["quarantined"], 0);
    assert_eq!(out["push"]["quarantined"], 0);
    // The rate-limit bound is requests × window / limit.
    let rl = &out["rate_limit"];
    let bound =
        num(&rl["requests"]) as f64 * num(&rl["window_secs"]) as f64 / num(&rl["limit"]) as f64;
    assert!((rl["lower_bound_secs"].as_f64().unwrap() - bound).abs() < 1e-9);
    // The shown record: merged with a pulled resume, then push-only after the disable.
    let id = out["record_id"].as_str().expect("a record was shown");
    assert_eq!(out["record"]["id"], id);
    let prov = out["record"]["view"]["provenance"].as_object().unwrap();
    assert!(
        prov.iter()
            .any(|(k, v)| k.starts_with("attachments/") && v == "pull"),
        "a pulled attachment: {prov:?}"
    );
    assert_eq!(out["record_disabled"]["mode"], "push_only");
    // The backfilled resume: in the view, not in the push layer; hidden after the disable.
    let ids = |v: &Value| -> Vec<String> {
        v["attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["id"].as_str().map(str::to_string))
            .collect()
    };
    let pushed = ids(&out["record"]["layers"]["push"]["fields"]);
    let pulled: Vec<String> = ids(&out["record"]["view"]["fields"])
        .into_iter()
        .filter(|id| !pushed.contains(id))
        .collect();
    assert!(
        !pulled.is_empty(),
        "the shown record has a backfilled attachment"
    );
    let after = ids(&out["record_disabled"]["view"]["fields"]);
    assert!(
        pulled.iter().all(|id| !after.contains(id)),
        "pulled attachments hidden after the disable: {after:?}"
    );
}

/// `edsctl demo --ats lever` (`make demo ATS=lever`): every check of its manifest table
/// holds, and the numbers of records compared are the ones a scenario regenerated here
/// from the printed spec expects (the demo did not compare fewer records).
#[test]
fn the_lever_demo_matches_its_manifest() {
    need_emulator();
    let stage = stage();
    let tenant = format!("lever-{}", &uuid_like()[..8]);
    let out = json_ok(&[
        "--stage",
        &stage,
        "demo",
        "--ats",
        "lever",
        "--candidates",
        "40",
        "--jobs",
        "6",
        "--seed",
        "9",
        "--tenant",
        &tenant,
    ]);
    assert_eq!(out["spec"]["ats"], "lever");
    let spec = lever_sim::ScenarioSpec {
        seed: out["spec"]["seed"].as_u64().unwrap(),
        candidacies: out["spec"]["candidates"].as_u64().unwrap() as usize,
        postings: out["spec"]["jobs"].as_u64().unwrap() as usize,
        now: serde_json::from_value(out["spec"]["now"].clone()).unwrap(),
        ..lever_sim::ScenarioSpec::default()
    };
    assert_eq!((spec.seed, spec.candidacies), (9, 40));
    let m = lever_sim::Scenario::generate(&spec).manifest;
    let expected =
        |entity: &str| m.expected_views.keys().filter(|(e, _)| e == entity).count() as u64;
    let checks = out["checks"].as_array().unwrap();
    let check = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name:?}: {checks:?}"))
    };
    for (name, entity) in [
        ("candidates equal to the manifest", "candidate"),
        ("applications equal to the manifest", "application"),
        ("jobs equal to the manifest", "job"),
    ] {
        assert!(expected(entity) > 0, "{entity}");
        assert_eq!(check(name)["manifest"], expected(entity), "{name}");
    }
    for c in checks {
        assert_eq!(c["eds"], c["manifest"], "{c}");
    }
    assert!(
        check("resumes backfilled (candidates)")["manifest"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(out["sync"]["counts"]["quarantined"], 0);
    assert_eq!(out["push"]["quarantined"], 0);
    assert_eq!(
        out["rate_limit"]["simulator_429s"], 0,
        "{}",
        out["rate_limit"]
    );
    assert_eq!(out["disable"]["state"], "disabled", "{}", out["disable"]);
}

#[test]
fn errors_are_one_sentence_with_the_fix_and_a_non_zero_exit() {
    need_emulator();
    let stage = stage();
    // Unknown tenant.
    let o = edsctl(&["--stage", &stage, "status", "nobody"]);
    assert_eq!(o.status.code(), Some(3));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("tenant nobody is not registered") && e.contains("edsctl tenants list"),
        "{e}"
    );

    // Invalid credentials file: names the file and the problem, never the value.
    let bad = temp_file(
        "bad.json",
        r#"{"kind": "oauth", "client_secret": "do-not-print-me"}"#,
    );
    let o = edsctl(&[
        "--stage",
        &stage,
        "tenants",
        "enable",
        "acme",
        "--api-base",
        "https://harvest.example",
        "--credentials",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains(bad.to_str().unwrap()) && e.contains("unknown secret kind"),
        "{e}"
    );
    assert!(!e.contains("do-not-print-me"));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("do-not-print-me"));
    let missing = edsctl(&[
        "--stage",
        &stage,
        "tenants",
        "enable",
        "acme",
        "--api-base",
        "https://harvest.example",
        "--credentials",
        "/nonexistent/creds.json",
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("cannot be read"),
        "{}",
        stderr(&missing)
    );

    // Unreachable endpoint.
    let o = Command::new(BIN)
        .args(["--stage", "x", "status", "acme"])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("cannot reach AWS at http://127.0.0.1:9") && e.contains("with-emulator.sh"),
        "{e}"
    );

    // Deletion needs confirmation.
    let o = edsctl(&["--stage", &stage, "tenants", "delete", "acme"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--yes"));
}

/// Every `edsctl ...` line in the README's and the runbook's shell blocks.
fn documented_commands() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for doc in ["README.md", "docs/runbook.md"] {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        let mut in_block = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                in_block = !in_block;
                continue;
            }
            let line = line.trim();
            if in_block && line.starts_with("edsctl ") {
                // Comments, pipes and redirections are the shell's, not edsctl's.
                let cmd = line
                    .split(" #")
                    .next()
                    .and_then(|c| c.split(['|', '<', '>']).next())
                    .unwrap_or(line)
                    .trim();
                let words: Vec<String> = cmd
                    .split_whitespace()
                    .skip(1)
                    .map(|w| w.trim_matches(|c| c == '"' || c == '\'').to_string())
                    .collect();
                out.push((doc.to_string(), words));
            }
        }
    }
    out
}

#[test]
fn every_documented_command_parses_and_every_help_is_printed() {
    let commands = documented_commands();
    assert!(
        commands.len() >= 15,
        "README and runbook document the commands: {commands:?}"
    );
    for (doc, words) in &commands {
        // `--help` after the documented arguments: clap rejects an unknown subcommand or
        // flag before it gets to the help.
        let mut args: Vec<&str> = words.iter().map(String::as_str).collect();
        args.push("--help");
        let o = Command::new(BIN).args(&args).output().unwrap();
        assert!(
            o.status.success(),
            "{doc}: `edsctl {}` does not parse: {}",
            words.join(" "),
            stderr(&o)
        );
    }
    for sub in [
        vec![],
        vec!["tenants"],
        vec!["tenants", "enable"],
        vec!["tenants", "credentials"],
        vec!["tenants", "interval"],
        vec!["tenants", "disable"],
        vec!["tenants", "delete"],
        vec!["tenants", "list"],
        vec!["sync"],
        vec!["status"],
        vec!["record"],
        vec!["push"],
        vec!["dlq"],
        vec!["dlq", "show"],
        vec!["dlq", "redrive"],
        vec!["demo"],
    ] {
        let mut args = sub.clone();
        args.push("--help");
        let o = Command::new(BIN).args(&args).output().unwrap();
        assert!(o.status.success(), "edsctl {sub:?} --help");
        assert!(String::from_utf8_lossy(&o.stdout).contains("Usage: edsctl"));
    }
}

/// A tenant enabled through edsctl against a simulator whose OAuth client has `scopes`.
async fn enabled_tenant(
    stage: &str,
    prefix: &str,
    scopes: &[&str],
) -> (String, greenhouse_sim::SimHandle) {
    let tenant = format!("{prefix}-{}", &uuid_like()[..8]);
    let spec = ScenarioSpec {
        seed: 5,
        candidates: 8,
        jobs: 2,
        now: chrono::Utc::now() - chrono::Duration::minutes(10),
        ..ScenarioSpec::default()
    };
    let sim = Simulator::start(SimConfig::default(), Scenario::generate(&spec).truth)
        .await
        .unwrap();
    sim.add_oauth_client("cli-client", "cli-secret-value", scopes);
    let creds = temp_file(
        "creds.json",
        r#"{"kind": "client_credentials", "client_id": "cli-client", "client_secret": "cli-secret-value"}"#,
    );
    let (api, token) = (sim.api_base(), sim.token_url());
    json_ok(&[
        "--stage",
        stage,
        "tenants",
        "enable",
        &tenant,
        "--api-base",
        &api,
        "--auth-url",
        &token,
        "--credentials",
        creds.to_str().unwrap(),
    ]);
    (tenant, sim)
}

#[tokio::test(flavor = "multi_thread")]
async fn push_sends_large_records_in_messages_within_the_sqs_limit() {
    need_emulator();
    let stage = stage();
    let (t, sim) = enabled_tenant(&stage, "big", ALL_SCOPES).await;
    // 30 records of about 10 KB: 300 KB in all, more than one SQS message (256 KiB).
    let filler = "x".repeat(10 * 1024);
    let lines: Vec<String> = (0..30)
        .map(|i| {
            json!({"entity": "candidate", "id": format!("big-{i}"), "op": "upsert",
                   "updated_at": "2026-03-01T10:00:00Z",
                   "fields": {"custom_fields": {"notes": filler}}})
            .to_string()
        })
        .collect();
    let file = temp_file("big.jsonl", &lines.join("\n"));
    let pushed = json_ok(&["--stage", &stage, "push", &t, file.to_str().unwrap()]);
    assert_eq!(pushed["via"], "sqs");
    assert_eq!(pushed["records"], 30);
    assert_eq!(pushed["created"], 30, "{pushed}");
    assert_eq!(pushed["quarantined"], 0);
    assert_eq!(pushed["failed_messages"], 0);
    assert!(pushed["messages"].as_u64().unwrap() >= 2, "{pushed}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn terminal_escapes_in_values_are_escaped_in_tables_and_exact_in_json() {
    need_emulator();
    let stage = stage();
    let (t, sim) = enabled_tenant(&stage, "esc", ALL_SCOPES).await;
    let evil = "Ada\u{1b}]0;owned\u{7}\u{9b}2J";
    let line = json!({"entity": "candidate", "id": "esc-1", "op": "upsert",
                      "updated_at": "2026-03-01T10:00:00Z", "fields": {"first_name": evil}})
    .to_string();
    let file = temp_file("esc.jsonl", &line);
    json_ok(&["--stage", &stage, "push", &t, file.to_str().unwrap()]);

    let table = edsctl(&["--stage", &stage, "record", &t, "candidate", "esc-1"]);
    assert!(table.status.success(), "{}", stderr(&table));
    let shown = String::from_utf8_lossy(&table.stdout);
    assert!(
        !shown.contains(['\u{1b}', '\u{7}', '\u{9b}']),
        "raw control characters in: {shown:?}"
    );
    assert!(
        shown.contains("Ada\\u{1b}]0;owned\\u{7}\\u{9b}2J"),
        "{shown}"
    );

    let rec = json_ok(&["--stage", &stage, "record", &t, "candidate", "esc-1"]);
    assert_eq!(rec["view"]["fields"]["first_name"], evil);
    sim.shutdown().await;
}

#[test]
fn a_closed_pipe_ends_quietly_and_a_full_disk_is_a_clear_error() {
    need_emulator();
    let stage = stage();
    // The reader is gone before edsctl writes (`edsctl ... | head -0`).
    let mut child = Command::new(BIN)
        .args(["--stage", &stage, "tenants", "list"])
        .env("EDS_LOCAL_TESTING", "true")
        .env_remove("EDSCTL_STAGE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(BIN)
        .args(["--stage", &stage, "tenants", "list"])
        .env("EDS_LOCAL_TESTING", "true")
        .env_remove("EDSCTL_STAGE")
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let e = stderr(&out);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("writing the output failed"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_enable_leaves_no_secret_behind() {
    need_emulator();
    let stage = stage();
    let tenant = format!("rej-{}", &uuid_like()[..8]);
    let creds = temp_file(
        "creds.json",
        r#"{"kind": "client_credentials", "client_id": "c", "client_secret": "rejected-secret"}"#,
    );
    let o = edsctl(&[
        "--stage",
        &stage,
        "tenants",
        "enable",
        &tenant,
        "--api-base",
        "https://harvest.example/v3?debug=1",
        "--credentials",
        creds.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("rejected"), "{}", stderr(&o));
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let secrets = aws_sdk_secretsmanager::Client::new(&conf);
    let found = secrets
        .describe_secret()
        .secret_id(format!("eds/tenants/{tenant}"))
        .send()
        .await;
    assert!(
        found
            .as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "the secret of a rejected enable exists: {found:?}"
    );
    let gone = edsctl(&["--stage", &stage, "status", &tenant]);
    assert_eq!(gone.status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_exits_5_when_a_stream_failed_and_still_prints_its_summary() {
    need_emulator();
    let stage = stage();
    let scopes: Vec<&str> = ALL_SCOPES
        .iter()
        .copied()
        .filter(|s| *s != "harvest:applications:list")
        .collect();
    let (t, sim) = enabled_tenant(&stage, "f403", &scopes).await;
    let o = edsctl(&["--stage", &stage, "--json", "sync", &t]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let e = stderr(&o);
    let last = e.lines().last().unwrap_or_default();
    assert!(
        last.contains("failed stream(s): applications") && last.contains("403"),
        "{e}"
    );
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["failed_streams"][0]["stream"], "applications");
    assert_eq!(summary["state"], "enabled");
    sim.shutdown().await;
}
