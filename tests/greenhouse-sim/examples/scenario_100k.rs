//! Measures generating a 100,000-candidate scenario and loading it into a running
//! simulator: wall time, CPU time of the generating thread (the machine is shared, so
//! wall time alone says little) and peak resident memory (VmHWM from /proc/self/status).
//! Run: `cargo run --release -p greenhouse-sim --example scenario_100k [candidates]`.

use std::time::Instant;

use greenhouse_sim::{Scenario, ScenarioSpec, SimConfig, Simulator};

fn vm(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "n/a".into())
}

/// CPU time of the calling thread (the generator is single-threaded), from
/// /proc/thread-self/schedstat (first field, nanoseconds on CPU).
fn thread_cpu() -> std::time::Duration {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0);
    std::time::Duration::from_nanos(ns)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let t = Instant::now();
    let cpu = thread_cpu();
    let s = Scenario::generate(&ScenarioSpec {
        candidates: n,
        ..Default::default()
    });
    let gen_time = t.elapsed();
    let gen_cpu = thread_cpu().saturating_sub(cpu);
    println!(
        "generated {n} candidates ({} live), {} applications, {} jobs, {} attachments, {} pushed records, {} expected views in {gen_time:.2?} (CPU {gen_cpu:.2?})",
        s.truth.candidates.len(),
        s.truth.applications.len(),
        s.truth.jobs.len(),
        s.truth.attachments.len(),
        s.pushed.len(),
        s.manifest.expected_views.len()
    );
    println!("defect counts: {:?}", s.manifest.counts);
    println!(
        "after generation: VmRSS {} / VmHWM {}",
        vm("VmRSS:"),
        vm("VmHWM:")
    );
    let Scenario {
        truth,
        pushed,
        manifest,
    } = s;
    drop((pushed, manifest));
    let t = Instant::now();
    let sim = Simulator::start(SimConfig::default(), truth).await?;
    println!(
        "simulator loaded in {:.2?}; VmRSS {} / VmHWM {}",
        t.elapsed(),
        vm("VmRSS:"),
        vm("VmHWM:")
    );
    sim.shutdown().await;
    Ok(())
}
