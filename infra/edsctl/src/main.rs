//! edsctl: the eds operator CLI.
//!
//! It drives the product's own handlers (settings, scheduler, puller, push-ingest,
//! disable, delete, records API) as library code, against a deployed stack (names from
//! the same environment variables the functions read) or against the local emulator
//! (`--stage NAME`). Output is a table for people and JSON with `--json` for scripts;
//! errors are one sentence naming the problem and the fix, with a non-zero exit code.

// The handler futures (batch -> job -> steps -> SDK calls) are deep for the type checker.
#![recursion_limit = "256"]

mod demo;
mod deploy;
mod dlq;
mod error;
mod out;
mod push;
mod sync;
mod table;
mod tenants;
mod view;

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::deploy::Deployment;
use crate::error::CliError;
use crate::out::outln;
use crate::table::{Table, cell};

#[derive(Debug, Parser)]
#[command(
    name = "edsctl",
    version,
    about = "Operate eds (Enhanced Data Sync): tenants, syncs, status, records, pushes, dead-letter queues",
    long_about = "Operate eds (Enhanced Data Sync).\n\n\
        edsctl runs the product's own handlers locally against the AWS resources of a deployment. \
        It finds them through the environment variables the functions read (RECORDS_TABLE, TENANTS_TABLE, \
        ATTACHMENTS_BUCKET, PULL_QUEUE_URL, DISABLE_QUEUE_URL, DELETE_QUEUE_URL, SECRET_PREFIX; optional \
        PUSH_QUEUE_URL and SETTINGS_BUS_NAME), or, with --stage NAME, provisions and uses that stage of the \
        SAM template in the local emulator (AWS_ENDPOINT_URL). AWS access follows the standard variables \
        (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...).\n\n\
        Exit codes: 0 ok, 2 bad input or configuration, 3 not found, 4 AWS unreachable or credentials refused, \
        5 an operation failed."
)]
struct Cli {
    /// Use this stage of the template in the local emulator (needs AWS_ENDPOINT_URL); created if missing.
    #[arg(long, global = true, env = "EDSCTL_STAGE")]
    stage: Option<String>,
    /// Print JSON for scripts instead of tables (progress still goes to stderr).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enable, re-key, reschedule, disable, delete and list tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Run a sync of one tenant now, locally: the scheduler, then the pull queue through the puller until the tenant is idle.
    #[command(long_about = "Run a sync of one tenant now, locally.\n\n\
        Makes the tenant due, runs the scheduler handler (which enqueues the run's pull job), then receives \
        batches from the real pull queue and hands them to the puller handler, as Lambda's event source \
        mapping does: failed messages are left to their visibility timeout and the queue's redrive policy, \
        continuations come back through the queue. Ends when the tenant has no active run. Shows a progress \
        bar on a terminal (records, pages, requests, rate-limit waits), plain lines otherwise. Other due \
        tenants' jobs on the same queue are processed too, as the deployed puller would.")]
    Sync {
        tenant: String,
        /// Forget the watermarks first: read every stream in full again.
        #[arg(long)]
        full: bool,
        /// Simulated Lambda timeout per batch, in seconds (the puller hands on before it).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=900))]
        invocation_secs: u64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout_secs: u64,
    },
    /// A tenant's state, streams (status, watermark, checkpoint) and last runs with their counts.
    Status { tenant: String },
    /// One record: its view with provenance per field (push / pull / both), both layers, and optionally its version history.
    Record {
        tenant: String,
        /// candidate, application or job.
        entity: String,
        /// The ATS id.
        id: String,
        /// Also list every version with its cause and validity interval.
        #[arg(long)]
        history: bool,
        /// Show the record as it was at this time (RFC 3339, e.g. 2026-03-01T10:00:00Z).
        #[arg(long, value_parser = parse_time)]
        as_of: Option<DateTime<Utc>>,
    },
    /// Send pushed records (JSON lines, one push-format record per line; - for stdin) through push-ingest.
    #[command(long_about = "Send pushed records through push-ingest.\n\n\
        FILE holds JSON lines, one record per line in the push format of docs/push-format.md \
        ({\"entity\":\"candidate\",\"id\":\"123\",\"op\":\"upsert\",\"updated_at\":\"...\",\"fields\":{...}}). \
        Records are sent in messages of at most 100 records and 256 KiB to the SQS push queue and consumed by the push-ingest \
        handler locally; with --direct (or when no push queue is known) the messages go straight to the handler.")]
    Push {
        tenant: String,
        file: String,
        /// Hand the messages to the handler without going through SQS.
        #[arg(long)]
        direct: bool,
    },
    /// Inspect and redrive the dead-letter queues (pull, push, disable, delete).
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// The whole job end to end on the local stack: simulator, push, enable, sync with progress, report, disable.
    #[command(long_about = "The whole job end to end on the local stack.\n\n\
        Starts the Greenhouse simulator in-process with a seeded scenario (ATS truth, a pushed snapshot with \
        injected defects), provisions a fresh stage in the emulator (AWS_ENDPOINT_URL), enables the tenant, \
        pushes the snapshot, runs a sync with progress, prints what the pull backfilled and corrected, shows \
        one record's provenance and history, disables the pull and shows the same record push-only. \
        Needs EDS_LOCAL_TESTING=true (resumes are downloaded from the simulator on 127.0.0.1). `make demo` runs it.")]
    /// Provision a stage in the local emulator and write the `sam local --env-vars` file for every function.
    #[command(
        long_about = "Provision a stage in the local emulator and write the SAM CLI's --env-vars file.\n\n\
        Creates the template's tables, queues, bucket and bus for --stage (default `local`) in the emulator at \
        AWS_ENDPOINT_URL, then writes OUT: for every function of the template, its environment in that stage \
        plus AWS_ENDPOINT_URL and each --set NAME=VALUE (SAM applies only names the template declares). \
        `make sam-local` runs it."
    )]
    SamEnv {
        out: std::path::PathBuf,
        /// Another variable for every function (repeatable), e.g. --set EDS_LOCAL_TESTING=true.
        #[arg(long = "set", value_parser = parse_assignment)]
        set: Vec<(String, String)>,
    },
    Demo {
        /// The ATS the simulator imitates.
        #[arg(long, value_enum, default_value = "greenhouse")]
        ats: demo::DemoAts,
        /// Candidates (Lever: candidacies) in the scenario (default: Greenhouse 2000, Lever 200).
        #[arg(long)]
        candidates: Option<usize>,
        #[arg(long, default_value_t = 40)]
        jobs: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value = "acme")]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
enum TenantsCommand {
    /// Store the tenant's credentials in Secrets Manager and apply the `tenant.enabled` settings event (first backfill on the next sync).
    Enable {
        tenant: String,
        /// The ATS kind.
        #[arg(long, value_parser = ["greenhouse", "lever"], default_value = "greenhouse")]
        ats: String,
        /// Greenhouse's Harvest API version (default v3); Lever takes none (or v1).
        #[arg(long, value_parser = ["v3", "v1"])]
        api_version: Option<String>,
        /// The ATS API base URL, e.g. https://harvest.greenhouse.io or https://api.lever.co/v1.
        #[arg(long)]
        api_base: String,
        /// The OAuth token endpoint, when it is not the ATS's default (Greenhouse: the
        /// deployment's GREENHOUSE_TOKEN_URL; Lever: https://auth.lever.co/oauth/token).
        #[arg(long)]
        auth_url: Option<String>,
        /// JSON credentials file (- for stdin): {"kind":"client_credentials"|"authorization_code"|"api_key", ...}.
        #[arg(long)]
        credentials: String,
        /// Sync interval in seconds (60..=86400; default 900).
        #[arg(long)]
        interval: Option<u64>,
        /// Host suffix attachments may be downloaded from (repeatable).
        #[arg(long = "attachment-host")]
        attachment_hosts: Vec<String>,
        /// Local testing only (needs EDS_LOCAL_TESTING=true): allow attachment downloads from loopback hosts.
        #[arg(long)]
        allow_loopback_attachments: bool,
    },
    /// Store new credentials (a new secret version) and apply `tenant.credentials_updated`, which revalidates them.
    Credentials {
        tenant: String,
        /// JSON credentials file (- for stdin).
        #[arg(long)]
        credentials: String,
    },
    /// Change the sync interval (seconds, 60..=86400).
    Interval { tenant: String, secs: u64 },
    /// Stop pulling and make every view push-only (history kept); runs to completion.
    Disable { tenant: String },
    /// Delete all of the tenant's data (records, versions, files, sync state, secret) and print the receipt.
    Delete {
        tenant: String,
        /// Idempotency key of the request (default: a new one); running again with the same id resumes it.
        #[arg(long)]
        request_id: Option<String>,
        /// Confirm: this cannot be undone.
        #[arg(long)]
        yes: bool,
    },
    /// Every registered tenant with its state.
    List,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Count and peek at the messages of a dead-letter queue (push bodies are not shown).
    Show {
        #[arg(value_enum)]
        queue: dlq::QueueKind,
        /// Messages to peek at (1..=10).
        #[arg(long, default_value_t = 10)]
        max: usize,
    },
    /// Move messages from a dead-letter queue back to its source queue.
    Redrive {
        #[arg(value_enum)]
        queue: dlq::QueueKind,
        /// Move at most this many messages.
        #[arg(long, default_value_t = 1000)]
        max: usize,
    },
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| "expected an RFC 3339 time such as 2026-03-01T10:00:00Z".to_string())
}

fn init_logging() {
    // Handlers log through tracing; on a terminal only warnings and errors matter.
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDSCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

fn print_json(v: &Value) {
    out::json(&serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Prints an action's result as `key: value` lines.
fn print_kv(v: &Value) {
    if let Some(m) = v.as_object() {
        for (k, val) in m {
            if !val.is_null() {
                outln!("{k}: {}", cell(val));
            }
        }
    }
}

fn parse_assignment(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let json = cli.json;
    match cli.command {
        Command::SamEnv { out, set } => {
            let stage = cli.stage.unwrap_or_else(|| "local".into());
            let written = deploy::write_sam_env(&stage, &out, &set).await?;
            outln!(
                "{}: --env-vars for {written} functions (stage {stage})",
                out.display()
            );
            Ok(())
        }
        Command::Demo {
            ats,
            candidates,
            jobs,
            seed,
            tenant,
        } => {
            if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
                return Err(CliError::Usage(
                    "the demo runs against the local emulator: run `make demo`, or set AWS_ENDPOINT_URL (infra/local/scripts/with-emulator.sh edsctl demo)".into(),
                ));
            }
            let stage = cli.stage.unwrap_or_else(|| {
                format!("demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..6])
            });
            let d = Deployment::resolve(Some(&stage)).await?;
            let args = demo::DemoArgs {
                ats,
                candidates: candidates.unwrap_or_else(|| ats.default_candidates()),
                jobs,
                seed,
                tenant,
                quiet: json,
            };
            let out = Box::pin(demo::run(&d, &args)).await?;
            if json {
                print_json(&out);
            }
            Ok(())
        }
        Command::Tenants(t) => {
            let d = Deployment::resolve(cli.stage.as_deref()).await?;
            let out = match t {
                TenantsCommand::Enable {
                    tenant,
                    ats,
                    api_version,
                    api_base,
                    auth_url,
                    credentials,
                    interval,
                    attachment_hosts,
                    allow_loopback_attachments,
                } => {
                    let tenant = tenants::parse_tenant(&tenant)?;
                    let credentials = tenants::read_credentials(&credentials)?;
                    tenants::enable(
                        &d,
                        tenants::EnableArgs {
                            tenant,
                            ats,
                            api_version,
                            api_base,
                            auth_url,
                            credentials,
                            interval_secs: interval,
                            attachment_hosts,
                            allow_loopback_attachments,
                        },
                    )
                    .await?
                }
                TenantsCommand::Credentials {
                    tenant,
                    credentials,
                } => {
                    let tenant = tenants::parse_tenant(&tenant)?;
                    let secret = tenants::read_credentials(&credentials)?;
                    tenants::credentials(&d, &tenant, secret).await?
                }
                TenantsCommand::Interval { tenant, secs } => {
                    tenants::interval(&d, &tenants::parse_tenant(&tenant)?, secs).await?
                }
                TenantsCommand::Disable { tenant } => {
                    Box::pin(tenants::disable(&d, &tenants::parse_tenant(&tenant)?)).await?
                }
                TenantsCommand::Delete {
                    tenant,
                    request_id,
                    yes,
                } => {
                    let tenant = tenants::parse_tenant(&tenant)?;
                    if !yes {
                        return Err(CliError::Usage(format!(
                            "deleting {tenant} removes all of its data and cannot be undone: add --yes to confirm"
                        )));
                    }
                    let id = request_id
                        .unwrap_or_else(|| format!("edsctl-{}", uuid::Uuid::new_v4().simple()));
                    Box::pin(tenants::delete(&d, &tenant, &id)).await?
                }
                TenantsCommand::List => {
                    let out = tenants::list(&d).await?;
                    if !json {
                        let mut t = Table::new(&[
                            "tenant", "state", "ats", "api", "base url", "interval", "epoch",
                            "reason",
                        ]);
                        for r in out["tenants"].as_array().into_iter().flatten() {
                            t.row(vec![
                                cell(&r["tenant"]),
                                cell(&r["state"]),
                                cell(&r["ats_kind"]),
                                cell(&r["api_version"]),
                                cell(&r["api_base_url"]),
                                format!("{}s", cell(&r["interval_secs"])),
                                cell(&r["epoch"]),
                                cell(&r["state_reason"]),
                            ]);
                        }
                        t.print();
                        return Ok(());
                    }
                    out
                }
            };
            if json {
                print_json(&out);
            } else if out.get("receipt").is_some() {
                print_kv(&json!({"tenant": out["tenant"], "request_id": out["request_id"]}));
                outln!("receipt:");
                out::json(&serde_json::to_string_pretty(&out["receipt"]).unwrap_or_default());
            } else {
                print_kv(&out);
            }
            Ok(())
        }
        Command::Sync {
            tenant,
            full,
            invocation_secs,
            timeout_secs,
        } => {
            let d = Deployment::resolve(cli.stage.as_deref()).await?;
            let tenant = tenants::parse_tenant(&tenant)?;
            let invocation = Duration::from_secs(invocation_secs);
            let puller = sync::puller(&d, invocation)?;
            let opts = sync::SyncOptions {
                full,
                invocation,
                timeout: Duration::from_secs(timeout_secs),
                ..Default::default()
            };
            let summary = Box::pin(sync::sync(&d, &puller, &tenant, &opts)).await?;
            let v = serde_json::to_value(&summary).unwrap_or_default();
            if json {
                print_json(&v);
            } else {
                let c = &summary.counts;
                outln!(
                    "synced {tenant} in {:.1} s: {} pages, {} records read ({} created, {} updated, {} unchanged), {} fields backfilled, {} corrected, {} pushed values kept, {} attachments stored, {} tombstoned, {} quarantined; {} ATS requests, {} rate-limit waits ({:.1} s); {} versions written",
                    summary.elapsed_ms as f64 / 1000.0,
                    c.pages,
                    c.records_seen,
                    c.created,
                    c.updated,
                    c.unchanged,
                    c.fields_backfilled,
                    c.fields_corrected,
                    c.push_newer_kept,
                    c.attachments_stored,
                    c.tombstoned,
                    c.quarantined,
                    c.requests,
                    c.rate_limited_429,
                    c.rate_limit_wait_ms as f64 / 1000.0,
                    summary.versions_written
                );
            }
            if summary.state != eds_shared::tenants::TenantState::Enabled {
                let st = tenants::require(&d, &tenant).await?;
                return Err(CliError::Failed(format!(
                    "the sync stopped: tenant {tenant} is now {}{}; see docs/runbook.md",
                    cell(&serde_json::to_value(st.state).unwrap_or_default()),
                    st.state_reason
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                )));
            }
            if !summary.failed_streams.is_empty() {
                let streams: Vec<String> = summary
                    .failed_streams
                    .iter()
                    .map(|f| match &f.reason {
                        Some(r) => format!("{} ({r})", f.stream),
                        None => f.stream.clone(),
                    })
                    .collect();
                return Err(CliError::Failed(format!(
                    "the sync of {tenant} ended with failed stream(s): {}; see `edsctl status {tenant}` and docs/runbook.md",
                    streams.join(", ")
                )));
            }
            Ok(())
        }
        Command::Status { tenant } => {
            let d = Deployment::resolve(cli.stage.as_deref()).await?;
            let out = view::status(&d, &tenants::parse_tenant(&tenant)?).await?;
            if json {
                print_json(&out)
            } else {
                view::print_status(&out)
            }
            Ok(())
        }
        Command::Record {
            tenant,
            entity,
            id,
            history,
            as_of,
        } => {
            let d = Deployment::resolve(cli.stage.as_deref()).await?;
            let key = view::parse_key(&tenants::parse_tenant(&tenant)?, &entity, &id)?;
            let out = view::record(&d, &key, history, as_of).await?;
            if json {
                print_json(&out)
            } else {
                view::print_record(&out)
            }
            Ok(())
        }
        Command::Push {
            tenant,
            file,
            direct,
        } => {
            let tenant = tenants::parse_tenant(&tenant)?;
            let records = push::read_records(&file)?;
            let d = Deployment::resolve(cli.stage.as_deref()).await?;
            let out = push::push(&d, &tenant, &records, direct).await?;
            let v = serde_json::to_value(&out).unwrap_or_default();
            if json {
                print_json(&v)
            } else {
                print_kv(&v)
            }
            Ok(())
        }
        Command::Dlq(c) => {
            let d = Deployment::resolve(cli.stage.as_deref()).await?;
            let out = match c {
                DlqCommand::Show { queue, max } => dlq::show(&d, queue, max).await?,
                DlqCommand::Redrive { queue, max } => dlq::redrive(&d, queue, max).await?,
            };
            if json {
                print_json(&out);
            } else {
                print_kv(&json!({"queue": out["queue"], "source": out["source"],
                                 "messages_waiting": out["messages_waiting"], "moved": out["moved"]}));
                if let Some(sample) = out["sample"].as_array().filter(|s| !s.is_empty()) {
                    let mut t = Table::new(&["message id", "tenant", "receives", "what"]);
                    for m in sample {
                        t.row(vec![
                            cell(&m["message_id"]),
                            cell(&m["tenant"]),
                            cell(&m["receive_count"]),
                            cell(&m["what"]),
                        ]);
                    }
                    t.print();
                }
            }
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() {
    init_logging();
    let cli = Cli::parse();
    // The command's error first; else whether its output could be written.
    if let Err(e) = run(cli).await.and_then(|()| out::finish()) {
        out::error_line(&format!("edsctl: {e}"));
        std::process::exit(e.exit_code());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn times_must_be_rfc3339() {
        assert!(parse_time("2026-03-01T10:00:00Z").is_ok());
        assert!(parse_time("2026-03-01T10:00:00+02:00").is_ok());
        assert!(parse_time("yesterday").is_err());
    }
}
