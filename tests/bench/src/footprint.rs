//! Footprint (group 6): the puller's peak RSS for one 500-record page, measured in a
//! child process (this binary's `rss-child` mode, wired like `functions/puller`), and
//! each function's init time from process start to its first runtime-API poll.
//!
//! Init time: the binary is started with `AWS_LAMBDA_RUNTIME_API` pointing at a small
//! recording server here, which timestamps the first
//! `GET /2018-06-01/runtime/invocation/next` and answers nothing (the process is then
//! killed). That is the interface the Lambda runtime interface emulator provides; the
//! recording server measures the same instant without the emulator's own start-up.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use eds_e2e::Stack;
use eds_local::queue::receive_event;
use eds_shared::credentials::CredentialsConfig;
use eds_shared::jobs::{PullJob, Step, parse_job};
use eds_shared::lambda::{Aws, Config};
use eds_shared::pipeline::puller::PullerSettings;
use eds_shared::tenants::StreamName;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::offline::FUNCTIONS;
use crate::pipeline::{enable, scenario, start_sim};
use crate::probe::peak_rss_kb;
use crate::report::{Figure, Goal};

pub const RSS_CMD: &str =
    "infra/local/scripts/with-emulator.sh cargo run --release -p eds-bench -- run --only footprint";

/// What the child reports on stdout (one JSON line).
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildReport {
    pub hwm_after_init_kb: u64,
    pub hwm_kb: u64,
    pub records: u64,
    pub pages: u64,
}

/// The child: the puller as `functions/puller` builds it (configuration from the
/// environment), one job, then the peak RSS.
pub async fn rss_child(job_json: &str) -> anyhow::Result<()> {
    let job: PullJob = parse_job(job_json).map_err(anyhow::Error::msg)?;
    let config = Config::from_env()?;
    let aws = Aws::from_env().await;
    let credentials = CredentialsConfig::from_env()?;
    let puller = eds_shared::wiring::puller::puller_with(
        &aws,
        &config,
        credentials,
        PullerSettings::default(),
        true,
    )?;
    let hwm_after_init_kb = peak_rss_kb().unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let (_outcome, report) = puller
        .handle_job(&job, deadline)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let r = ChildReport {
        hwm_after_init_kb,
        hwm_kb: peak_rss_kb().unwrap_or(0),
        records: report.counts.records_seen,
        pages: report.counts.pages,
    };
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

/// Environment a function gets in the template, for this stack.
fn function_env(stack: &Stack) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = stack
        .local
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push(("EDS_LOCAL_TESTING".into(), "true".into()));
    // push-ingest's own variable, beside the common environment (as the template sets it).
    if let Some(url) = stack.local.physical("PushQueue") {
        env.push(("PUSH_QUEUE_URL".into(), url.to_string()));
    }
    env.push((
        "GREENHOUSE_TOKEN_URL".into(),
        "http://127.0.0.1:9/token".into(),
    ));
    env.push(("RUST_LOG".into(), "warn".into()));
    env
}

/// The page the RSS child reads.
#[derive(Debug, Clone, Copy)]
pub enum RssPage {
    /// One page of 500 candidates.
    Records500,
    /// A hostile page of this many synthetic rows of about 1 kB, streamed (chunked, no
    /// `Content-Length`): the puller must refuse it at its body limit (issue P item 1).
    Hostile(u64),
}

/// Parent side of the RSS figures: one tenant, the job claimed by the scheduler and
/// narrowed to the candidates stream, run by the child.
pub async fn puller_rss(
    stack: &Stack,
    sims: &Handle,
    exe: &Path,
    page: RssPage,
) -> anyhow::Result<Figure> {
    let sc = scenario(500, 303);
    let (config, tenant) = match page {
        RssPage::Records500 => (greenhouse_sim::SimConfig::default(), "bench-rss"),
        RssPage::Hostile(rows) => (
            greenhouse_sim::SimConfig {
                hostile: greenhouse_sim::Hostile {
                    page_rows: Some(rows),
                    ..Default::default()
                },
                ..greenhouse_sim::SimConfig::default()
            },
            "bench-rss-hostile",
        ),
    };
    let sim = start_sim(sims, config, &sc).await?;
    let cfg = enable(stack, tenant, &sim, true).await?;
    stack.scheduler().run(Utc::now()).await?;
    // The scheduler also sends the jobs of other sections' tenants still due: take this
    // tenant's (the others stay in the queue, received and left to time out).
    let mut found = None;
    for _ in 0..100 {
        let ev = receive_event(&stack.aws.sqs, &stack.config.pull_queue_url, 1, 0)
            .await
            .map_err(anyhow::Error::msg)?;
        let Some(msg) = ev.records.first() else {
            break;
        };
        let job: PullJob =
            parse_job(msg.body.as_deref().unwrap_or_default()).map_err(anyhow::Error::msg)?;
        if job.tenant == cfg.tenant_id {
            found = Some(job);
            break;
        }
    }
    let mut job: PullJob =
        found.ok_or_else(|| anyhow::anyhow!("no job was scheduled for {tenant}"))?;
    job.steps = vec![Step::Pull(StreamName::Candidates)];
    let out = tokio::process::Command::new(exe)
        .arg("rss-child")
        .arg("--job")
        .arg(serde_json::to_string(&job)?)
        .envs(function_env(stack))
        .stderr(Stdio::inherit())
        .output()
        .await?;
    if !out.status.success() {
        anyhow::bail!("rss child failed: {}", out.status);
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let r: ChildReport = serde_json::from_str(line.lines().last().unwrap_or_default())?;
    let after_init = r.hwm_after_init_kb as f64 / 1024.0;
    let (id, title, goal, detail) = match page {
        RssPage::Records500 => (
            "puller.peak_rss_500_record_page",
            "puller peak RSS, one job of one 500-record page",
            64.0,
            format!(
                "VmHWM of a child process built like functions/puller (release); {after_init:.1} MB after init, {} records in {} page(s); the child is eds-bench, so its code pages are larger than the puller's",
                r.records, r.pages
            ),
        ),
        RssPage::Hostile(rows) => {
            // The page must have been refused (at the body limit), not read.
            if r.pages > 0 {
                anyhow::bail!(
                    "the hostile page of {rows} rows was read ({} pages)",
                    r.pages
                );
            }
            (
                "puller.peak_rss_hostile_page",
                "puller peak RSS, one job against a hostile page of any size",
                128.0,
                format!(
                    "VmHWM of the child (release) whose candidates page is {rows} synthetic rows of about 1 kB (about {} MB, chunked), refused at the body limit (0 pages read); {after_init:.1} MB after init",
                    rows / 1000
                ),
            )
        }
    };
    Ok(Figure::new(
        6,
        id,
        title,
        r.hwm_kb as f64 / 1024.0,
        "MB",
        Goal::AtMost(goal),
        RSS_CMD,
        detail,
    ))
}

/// Starts `bin` against a recording runtime API and returns the time to its first
/// `invocation/next` poll.
fn time_to_first_poll(bin: &Path, env: &[(String, String)]) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(false)?;
    let start = Instant::now();
    let mut child = Command::new(bin)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("_HANDLER", "bootstrap")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Connections that are not the poll (none expected) are skipped.
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            if reader.read_line(&mut line).is_ok()
                && line.starts_with("GET /2018-06-01/runtime/invocation/next")
            {
                let _ = tx.send(start.elapsed());
                // Keep the connection open until the process is killed.
                std::thread::sleep(Duration::from_secs(5));
                return;
            }
        }
    });
    let got = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let out = child.wait_with_output()?;
    match got {
        Ok(d) => Ok(d),
        Err(_) => anyhow::bail!(
            "{} never polled: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
                .chars()
                .take(400)
                .collect::<String>()
        ),
    }
}

/// Median init time of every function binary (5 starts each).
pub fn init_times(stack: &Stack, release_dir: &Path) -> (Vec<Figure>, Vec<String>) {
    let env = {
        let mut e = function_env(stack);
        for k in [
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
        ] {
            if let Ok(v) = std::env::var(k) {
                e.push((k.into(), v));
            }
        }
        e
    };
    let mut figs = Vec::new();
    let mut missing = Vec::new();
    for f in FUNCTIONS {
        let bin: PathBuf = release_dir.join(f);
        let mut times = Vec::new();
        let mut err = None;
        for _ in 0..5 {
            match time_to_first_poll(&bin, &env) {
                Ok(d) => times.push(d),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = err {
            missing.push(format!("init time of {f}: {e}"));
            continue;
        }
        times.sort();
        let median = times[times.len() / 2];
        figs.push(Figure::new(
            6,
            &format!("init.{f}"),
            &format!("{f}: process start to first runtime API poll (median of 5)"),
            median.as_secs_f64() * 1e3,
            "ms",
            Goal::None,
            RSS_CMD,
            format!(
                "min {:.1} ms, max {:.1} ms",
                times[0].as_secs_f64() * 1e3,
                times[times.len() - 1].as_secs_f64() * 1e3
            ),
        ));
    }
    (figs, missing)
}
