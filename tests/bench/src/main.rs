//! `eds-bench`: the benchmarks of issue I that need the emulator and the simulator,
//! and the report that gathers every figure (criterion's included).
//!
//! * `eds-bench run` (under `infra/local/scripts/with-emulator.sh`, release build):
//!   requests, rate-limit pacing, throughput by stage, DynamoDB requests per record,
//!   puller peak RSS, init times, scheduler fan-out, deletion; writes
//!   `target/bench/eds-bench.json`.
//! * `eds-bench report`: reads that file, criterion's estimates and the release binaries'
//!   sizes; writes `target/bench/report.json` and `target/bench/summary.md`.
//! * `eds-bench rss-child --job <json>`: internal, the puller in a process of its own.
//!
//! `make bench` runs all of it.

mod footprint;
mod lever;
mod lifecycle;
mod offline;
mod pipeline;
mod probe;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::runtime::Handle;

use crate::report::{Environment, Figure, Report};

#[derive(Parser)]
#[command(about = "eds benchmarks (issue I)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measures the figures that need the emulator (run under with-emulator.sh).
    Run(RunArgs),
    /// Gathers every figure into report.json and summary.md.
    Report {
        #[arg(long, default_value = "target/bench")]
        out_dir: PathBuf,
        #[arg(long, default_value = "target/criterion")]
        criterion: PathBuf,
        #[arg(long, default_value = "target/release")]
        release_dir: PathBuf,
    },
    /// Internal: one pull job in this process, then its peak RSS on stdout.
    RssChild {
        #[arg(long)]
        job: String,
    },
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Comma-separated subset: pipeline, crawl, lever, footprint, fanout, delete.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    #[arg(long, default_value = "target/bench/eds-bench.json")]
    out: PathBuf,
    #[arg(long, default_value = "target/release")]
    release_dir: PathBuf,
    /// Candidates of the unlimited backfill scenario.
    #[arg(long, default_value_t = 1000)]
    candidates: usize,
    /// Candidates of the connector crawls (requests per 1,000 records, rate limit).
    #[arg(long, default_value_t = 10_000)]
    crawl_candidates: usize,
    /// Candidacies of the Lever crawl (requests against the lower bound).
    #[arg(long, default_value_t = 10_000)]
    lever_candidacies: usize,
    /// Requests per window of the simulated rate limit.
    #[arg(long, default_value_t = 10)]
    rate_limit: u32,
    #[arg(long, default_value_t = 2)]
    rate_window_secs: u64,
    /// Tenant counts of the scheduler fan-out (1,000 + 10,000: 5–6 minutes against moto, with
    /// the queue consumed while the scheduler sends).
    #[arg(long, value_delimiter = ',', default_values_t = [1000usize, 10_000])]
    fanout: Vec<usize>,
    /// Records × versions of the deleted tenant (default: 100,000 versions).
    #[arg(long, default_value_t = 1_000)]
    delete_records: usize,
    #[arg(long, default_value_t = 100)]
    delete_versions: u64,
    /// Run the fan-out after the other sections instead of beside them (when everything
    /// runs, it runs at the same time on an emulator of its own: it is bound by moto's one
    /// core, and so is the deletion).
    #[arg(long)]
    serial: bool,
    /// The script that starts an emulator for the fan-out run beside the others.
    #[arg(long, default_value = "infra/local/scripts/with-emulator.sh")]
    emulator_script: PathBuf,
}

impl RunArgs {
    fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == part)
    }
}

async fn run(args: RunArgs, sims: Handle) -> anyhow::Result<()> {
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        anyhow::bail!("no emulator: run under infra/local/scripts/with-emulator.sh");
    }
    let mut env = Environment {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_start: report::load_average(),
        ..Environment::default()
    };
    let mut figures: Vec<Figure> = Vec::new();
    let started = Instant::now();
    let mut section = |name: &str, r: anyhow::Result<Vec<Figure>>, env: &mut Environment| {
        eprintln!(
            "eds-bench: {name} done after {:.0} s",
            started.elapsed().as_secs_f64()
        );
        match r {
            Ok(f) => figures.extend(f),
            Err(e) => {
                eprintln!("eds-bench: {name} failed: {e:#}");
                env.notes.push(format!("{name} failed: {e:#}"));
            }
        }
    };
    let beside = args.only.is_empty() && !args.serial;
    let fanout_child = if beside {
        Some(spawn_fanout(&args)?)
    } else {
        None
    };
    let opts = pipeline::PipelineOptions {
        candidates: args.candidates,
        crawl_candidates: args.crawl_candidates,
        rate_limit: args.rate_limit,
        rate_window: Duration::from_secs(args.rate_window_secs),
    };
    if args.wants("pipeline")
        || args.wants("crawl")
        || args.wants("lever")
        || args.wants("footprint")
    {
        let stack = eds_e2e::Stack::new().await?;
        if args.wants("pipeline") {
            let r = pipeline::unlimited(&stack, &sims, &opts).await;
            section("pipeline", r, &mut env);
        }
        if args.wants("crawl") {
            let r = pipeline::crawls(&stack, &sims, &opts).await;
            section("crawl", r, &mut env);
        }
        if args.wants("lever") {
            let r = lever::run(&stack, &sims, args.lever_candidacies).await;
            section("lever", r, &mut env);
        }
        if args.wants("footprint") {
            let exe = std::env::current_exe()?;
            let mut figs = Vec::new();
            for page in [
                footprint::RssPage::Records500,
                footprint::RssPage::Hostile(300_000),
            ] {
                match footprint::puller_rss(&stack, &sims, &exe, page).await {
                    Ok(f) => figs.push(f),
                    Err(e) => env
                        .notes
                        .push(format!("puller RSS ({page:?}) failed: {e:#}")),
                }
            }
            let (f, missing) = footprint::init_times(&stack, &args.release_dir);
            figs.extend(f);
            env.notes.extend(missing);
            section("footprint", Ok(figs), &mut env);
        }
    }
    if args.wants("fanout") && !beside {
        let r = lifecycle::fanout(&args.fanout).await;
        section("fanout", r, &mut env);
    }
    if args.wants("delete") {
        let r = lifecycle::deletion(args.delete_records, args.delete_versions).await;
        section("delete", r, &mut env);
    }
    if let Some((mut child, out)) = fanout_child {
        let r = tokio::task::spawn_blocking(move || child.wait())
            .await?
            .map_err(anyhow::Error::from)
            .and_then(|status| {
                anyhow::ensure!(status.success(), "the fan-out run ended with {status}");
                let child: Report = serde_json::from_slice(&std::fs::read(&out)?)?;
                Ok(child)
            });
        let r = r.map(|child| {
            env.notes.extend(child.environment.notes);
            env.notes.push(
                "the fan-out ran at the same time as the other sections, on an emulator of its own"
                    .into(),
            );
            child.figures
        });
        section("fanout (beside)", r, &mut env);
    }
    env.load_end = report::load_average();
    let out = Report {
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        environment: env,
        figures,
    };
    report::write_json(&args.out, &out)?;
    eprintln!(
        "eds-bench: {} figures in {} ({:.0} s)",
        out.figures.len(),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Starts `eds-bench run --only fanout` under an emulator of its own; returns the child
/// and the file it writes.
fn spawn_fanout(args: &RunArgs) -> anyhow::Result<(std::process::Child, PathBuf)> {
    let out = args.out.with_extension("fanout.json");
    let sizes: Vec<String> = args.fanout.iter().map(usize::to_string).collect();
    let child = std::process::Command::new(&args.emulator_script)
        .arg(std::env::current_exe()?)
        .args(["run", "--only", "fanout", "--fanout", &sizes.join(",")])
        .arg("--out")
        .arg(&out)
        .spawn()
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.emulator_script.display()))?;
    Ok((child, out))
}

fn gather(out_dir: PathBuf, criterion: PathBuf, release_dir: PathBuf) -> anyhow::Result<()> {
    let measured: Report = std::fs::read(out_dir.join("eds-bench.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut env = measured.environment;
    env.notes.push(format!(
        "criterion figures from {}, binary sizes from {}",
        criterion.display(),
        release_dir.display()
    ));
    let (crit, missing) = offline::criterion_figures(&criterion);
    env.notes.extend(missing);
    let (sizes, missing) = offline::binary_sizes(&release_dir);
    env.notes.extend(missing);
    let mut figures = measured.figures;
    figures.extend(crit);
    figures.extend(sizes);
    figures.sort_by_key(|f| f.group);
    let r = Report {
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        environment: env,
        figures,
    };
    report::write_json(&out_dir.join("report.json"), &r)?;
    std::fs::write(out_dir.join("summary.md"), report::summary_markdown(&r))?;
    let missed: Vec<&str> = r
        .figures
        .iter()
        .filter(|f| f.met == Some(false))
        .map(|f| f.id.as_str())
        .collect();
    println!(
        "{} figures; missed goals: {}",
        r.figures.len(),
        if missed.is_empty() {
            "none".to_string()
        } else {
            missed.join(", ")
        }
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Report {
            out_dir,
            criterion,
            release_dir,
        } => gather(out_dir, criterion, release_dir),
        Cmd::RssChild { job } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(footprint::rss_child(&job))),
        Cmd::Run(args) => (|| {
            // The simulator on threads of its own, the pipeline on this one.
            let sims = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("sim-worker")
                .enable_all()
                .build()?;
            let main = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let r = main.block_on(run(args, sims.handle().clone()));
            sims.shutdown_background();
            r
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eds-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
