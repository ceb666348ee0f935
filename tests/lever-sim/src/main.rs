//! `lever-sim`: runs the simulator with a generated scenario and prints (or writes) its
//! bases and demo credentials as JSON, so manual runs and demos can point eds at it.
//! Runs until Ctrl-C.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use lever_sim::{ALL_SCOPES, AUDIENCE, Scenario, ScenarioSpec, SimConfig, Simulator};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Local Lever API simulator (v1 + OAuth + API keys)")]
struct Args {
    /// Listener port for API and token endpoint (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The address to bind (the Docker bridge gateway for containerised functions).
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of opportunities.
    #[arg(long, default_value_t = 200)]
    candidacies: usize,
    #[arg(long, default_value_t = 12)]
    postings: usize,
    /// Steady requests per second per credential (burst 2x); 0 = off.
    #[arg(long, default_value_t = 10.0)]
    rate_per_sec: f64,
    #[arg(long, default_value = "eds-demo-key")]
    api_key: String,
    #[arg(long, default_value = "eds-demo-client")]
    client_id: String,
    #[arg(long, default_value = "eds-demo-secret")]
    client_secret: String,
    /// Write the bases/credentials JSON here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the pushed snapshot (a JSON array of push-format records) here.
    #[arg(long)]
    pushed: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scenario = Scenario::generate(&ScenarioSpec {
        seed: args.seed,
        candidacies: args.candidacies,
        postings: args.postings,
        ..Default::default()
    });
    if let Some(p) = &args.pushed {
        std::fs::write(p, serde_json::to_vec(&scenario.pushed)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let cfg = SimConfig {
        port: args.port,
        bind_host: args.host,
        rate_per_sec: args.rate_per_sec,
        rate_burst: (args.rate_per_sec * 2.0).round() as u32,
        ..Default::default()
    };
    let defects = serde_json::to_value(&scenario.manifest.counts)?;
    let traps: serde_json::Map<String, serde_json::Value> = scenario
        .manifest
        .traps
        .iter()
        .map(|(k, v)| {
            let name = serde_json::to_value(k)
                .ok()
                .and_then(|x| x.as_str().map(str::to_string))
                .unwrap_or_default();
            (name, json!(v.len()))
        })
        .collect();
    let sim = Simulator::start(cfg, scenario.truth).await?;
    sim.add_api_key(&args.api_key, ALL_SCOPES);
    sim.add_oauth_client(&args.client_id, &args.client_secret, ALL_SCOPES);
    let info = json!({
        "api_base": sim.api_base(),
        "auth_base": sim.auth_base(),
        "token_url": sim.token_url(),
        "audience": AUDIENCE,
        "api_key": args.api_key,
        "client_id": args.client_id,
        "client_secret": args.client_secret,
        "authorization_code": sim.issue_authorization_code(&args.client_id),
        "scopes": ALL_SCOPES,
        "seed": args.seed,
        "candidacies": args.candidacies,
        "defects": defects,
        "traps": traps,
        "now": lever_sim::model::ts(sim.clock().now()),
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
