//! `greenhouse-sim`: runs the simulator on fixed or free ports with a generated
//! scenario and prints (or writes) its endpoints and demo credentials as JSON, so
//! `make demo` and manual runs can point eds at it. Runs until Ctrl-C.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use greenhouse_sim::{ALL_SCOPES, Scenario, ScenarioSpec, SimConfig, Simulator};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Local Greenhouse Harvest simulator (v3 + OAuth + attachment host)")]
struct Args {
    /// API + token listener port (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The address both listeners bind (the Docker bridge gateway for `make sam-local`).
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Attachment storage listener port (0 = any free port).
    #[arg(long, default_value_t = 0)]
    storage_port: u16,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 200)]
    candidates: usize,
    #[arg(long, default_value_t = 12)]
    jobs: usize,
    /// v3 requests per 30 s per credential (0 = off).
    #[arg(long, default_value_t = 50)]
    rate_limit: u32,
    #[arg(long, default_value = "eds-demo-client")]
    client_id: String,
    #[arg(long, default_value = "eds-demo-secret")]
    client_secret: String,
    /// Write the endpoints/credentials JSON here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the pushed snapshot (a JSON array of push-format records) here.
    #[arg(long)]
    pushed: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let spec = ScenarioSpec {
        seed: args.seed,
        candidates: args.candidates,
        jobs: args.jobs,
        ..Default::default()
    };
    let scenario = Scenario::generate(&spec);
    if let Some(p) = &args.pushed {
        std::fs::write(p, serde_json::to_vec(&scenario.pushed)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let cfg = SimConfig {
        api_port: args.port,
        storage_port: args.storage_port,
        bind_host: args.host,
        rate_limit_v3: args.rate_limit,
        ..Default::default()
    };
    let counts: serde_json::Map<String, serde_json::Value> = scenario
        .manifest
        .counts
        .iter()
        .map(|(k, v)| {
            (
                serde_json::to_value(k)
                    .ok()
                    .and_then(|x| x.as_str().map(str::to_string))
                    .unwrap_or_default(),
                json!(v),
            )
        })
        .collect();
    let sim = Simulator::start(cfg, scenario.truth).await?;
    sim.add_oauth_client(&args.client_id, &args.client_secret, ALL_SCOPES);
    let info = json!({
        "api_base": sim.api_base(),
        "v3_base": format!("{}/v3", sim.api_base()),
        "token_url": sim.token_url(),
        "storage_base": sim.storage_base(),
        "client_id": args.client_id,
        "client_secret": args.client_secret,
        "scopes": ALL_SCOPES,
        "seed": args.seed,
        "candidates": args.candidates,
        "defects": counts,
        "now": greenhouse_sim::model::ts(sim.clock().now()),
    });
    let text = serde_json::to_string_pretty(&info)?;
    match &args.out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => println!("{text}"),
    }
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
