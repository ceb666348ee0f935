//! Figures that need no emulator: criterion's estimates of the merge and simulator
//! benches (read from `target/criterion/**/new/estimates.json`, written by the criterion
//! runs that `make bench` does first: the benches built as release examples, D17) and the
//! stripped release size of every function binary.

use std::path::Path;

use serde::Deserialize;

use crate::report::{Figure, Goal};

pub const MERGE_CMD: &str = "cargo bench -p eds-shared --bench merge (make bench: target/release/examples/bench_merge --bench)";
pub const SERVE_CMD: &str = "cargo bench -p greenhouse-sim --bench serve (make bench: target/release/examples/bench_serve --bench)";
pub const BUILD_CMD: &str = "cargo build --release --bin <each function> --bin eds-bench --example bench_merge --example bench_serve (one invocation, as make bench builds them)";

/// The functions of the template, by binary name.
pub const FUNCTIONS: [&str; 7] = [
    "scheduler",
    "puller",
    "push-ingest",
    "settings",
    "disable",
    "delete",
    "records-api",
];

#[derive(Debug, Deserialize)]
struct Estimate {
    point_estimate: f64,
}

#[derive(Debug, Deserialize)]
struct Estimates {
    mean: Estimate,
    median: Estimate,
}

#[derive(Debug, Deserialize)]
struct BenchmarkMeta {
    throughput: Option<Throughput>,
}

#[derive(Debug, Deserialize)]
enum Throughput {
    Elements(u64),
    /// Bytes per iteration: a byte count is not a record count, so it counts as one.
    Bytes(#[allow(dead_code)] u64),
}

/// Mean and median nanoseconds per iteration and elements per iteration.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub mean_ns: f64,
    pub median_ns: f64,
    pub elements: u64,
}

pub fn criterion_timing(root: &Path, bench: &str) -> anyhow::Result<Timing> {
    let dir = root.join(bench).join("new");
    let est: Estimates = serde_json::from_slice(&std::fs::read(dir.join("estimates.json"))?)?;
    let meta: BenchmarkMeta = serde_json::from_slice(&std::fs::read(dir.join("benchmark.json"))?)?;
    let elements = match meta.throughput {
        Some(Throughput::Elements(n)) => n,
        Some(Throughput::Bytes(_)) | None => 1,
    };
    Ok(Timing {
        mean_ns: est.mean.point_estimate,
        median_ns: est.median.point_estimate,
        elements,
    })
}

/// Figure group 4 (and the simulator's serving rate, which belongs to the throughput
/// context of group 3).
pub fn criterion_figures(root: &Path) -> (Vec<Figure>, Vec<String>) {
    let mut figs = Vec::new();
    let mut missing = Vec::new();
    let merge = criterion_timing(root, "candidate_2kb/merge");
    let merge_ser = criterion_timing(root, "candidate_2kb/merge_and_serialise_view");
    let parse = criterion_timing(root, "candidate_2kb/serde_json_parse_same_bytes");
    match &merge {
        Ok(t) => {
            figs.push(Figure::new(
                4,
                "merge.merges_per_second",
                "merges per second, one core (2 KB candidate, median)",
                1e9 / t.median_ns,
                "merges/s",
                Goal::AtLeast(200_000.0),
                MERGE_CMD,
                format!(
                    "criterion median {:.2} µs, mean {:.2} µs per merge (the mean carries the noise of the shared machine)",
                    t.median_ns / 1e3,
                    t.mean_ns / 1e3
                ),
            ));
        }
        Err(e) => missing.push(format!("candidate_2kb/merge: {e}")),
    }
    match (&merge_ser, &parse) {
        (Ok(ms), Ok(p)) => {
            figs.push(Figure::new(
                4,
                "merge.serialise_vs_parse_ratio",
                "merge + serialise ÷ serde_json parse of the same bytes (medians)",
                ms.median_ns / p.median_ns,
                "×",
                Goal::AtMost(2.0),
                MERGE_CMD,
                format!(
                    "merge+serialise {:.2} µs, parse {:.2} µs (medians, same criterion run); ratio of means {:.2}",
                    ms.median_ns / 1e3,
                    p.median_ns / 1e3,
                    ms.mean_ns / p.mean_ns
                ),
            ));
        }
        _ => {
            for (n, r) in [("merge_and_serialise_view", &merge_ser), ("parse", &parse)] {
                if let Err(e) = r {
                    missing.push(format!("candidate_2kb/{n}: {e}"));
                }
            }
        }
    }
    for (bench, what) in [
        (
            "serve_v3/crawl_candidates_per_page_500",
            "simulator serving candidates (HTTP, per_page 500)",
        ),
        (
            "serve_v3/crawl_applications_per_page_500",
            "simulator serving applications (HTTP, per_page 500)",
        ),
    ] {
        match criterion_timing(root, bench) {
            Ok(t) => figs.push(Figure::new(
                3,
                &format!("sim.{}", bench.rsplit('/').next().unwrap_or(bench)),
                what,
                t.elements as f64 / (t.median_ns / 1e9),
                "records/s",
                Goal::AtLeast(20_000.0),
                SERVE_CMD,
                "issue B's goal: the simulator must never limit eds's measurements",
            )),
            Err(e) => missing.push(format!("{bench}: {e}")),
        }
    }
    (figs, missing)
}

/// Figure group 6: stripped release sizes (the release profile strips).
pub fn binary_sizes(release_dir: &Path) -> (Vec<Figure>, Vec<String>) {
    let mut figs = Vec::new();
    let mut missing = Vec::new();
    for f in FUNCTIONS {
        match std::fs::metadata(release_dir.join(f)) {
            Ok(m) => figs.push(Figure::new(
                6,
                &format!("size.{f}"),
                &format!("{f}: stripped release binary"),
                m.len() as f64 / 1e6,
                "MB",
                Goal::AtMost(8.0),
                BUILD_CMD,
                "built in one invocation with eds-bench and the criterion examples, so with \
                 their dependencies' unified features: about 0.5 MB above the per-function \
                 build `sam build` ships (docs/benchmarks.md §6); the goal is missed by both",
            )),
            Err(e) => missing.push(format!("{f}: {e}")),
        }
    }
    (figs, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criterion_estimates_are_read_with_their_throughput() {
        let dir = std::env::temp_dir().join(format!("eds-bench-{}", uuid::Uuid::new_v4()));
        let b = dir.join("g/f/new");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(
            b.join("estimates.json"),
            r#"{"mean":{"point_estimate":2000.0,"standard_error":1.0,"confidence_interval":{}},
                "median":{"point_estimate":1000.0},"std_dev":null}"#,
        )
        .unwrap();
        std::fs::write(
            b.join("benchmark.json"),
            r#"{"group_id":"g","throughput":{"Elements":500}}"#,
        )
        .unwrap();
        let t = criterion_timing(&dir, "g/f").unwrap();
        assert_eq!(t.median_ns, 1000.0);
        assert_eq!(t.mean_ns, 2000.0);
        assert_eq!(t.elements, 500);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
