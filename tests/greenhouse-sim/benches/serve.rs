// Serving throughput: records per second over HTTP on loopback, crawling
// `/v3/candidates` and `/v3/applications` with `per_page=500` (goal: ≥ 20,000/s so the
// simulator never limits eds's measurements). Also one 100k-candidate scenario
// generation timing (peak memory: `cargo run --release --example scenario_100k`).

use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use greenhouse_sim::{ALL_SCOPES, Scenario, ScenarioSpec, SimConfig, Simulator};
use serde_json::Value;

async fn crawl(client: &reqwest::Client, first: String, token: &str) -> usize {
    let mut url = first;
    let mut n = 0;
    loop {
        let r = client
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        let next = r
            .headers()
            .get("link")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| {
                h.split_once('<')
                    .and_then(|(_, rest)| rest.split_once('>'))
                    .map(|(u, _)| u.to_string())
            });
        let body: Value = r.json().await.expect("json");
        n += body.as_array().map(Vec::len).unwrap_or(0);
        match next {
            Some(u) => url = u,
            None => return n,
        }
    }
}

fn serve(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let scenario = Scenario::generate(&ScenarioSpec {
        candidates: 20_000,
        ..Default::default()
    });
    let (n_cand, n_apps) = (
        scenario.truth.candidates.len(),
        scenario.truth.applications.len(),
    );
    let sim = rt
        .block_on(Simulator::start(SimConfig::default(), scenario.truth))
        .expect("start");
    sim.add_oauth_client("bench", "bench", ALL_SCOPES);
    let client = reqwest::Client::new();
    let token: String = rt.block_on(async {
        let v: Value = client
            .post(sim.token_url())
            .basic_auth("bench", Some("bench"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("json");
        v["access_token"].as_str().unwrap_or_default().to_string()
    });
    let mut g = c.benchmark_group("serve_v3");
    g.sample_size(10);
    for (path, n) in [("candidates", n_cand), ("applications", n_apps)] {
        g.throughput(Throughput::Elements(n as u64));
        let url = format!("{}/v3/{path}?per_page=500", sim.api_base());
        g.bench_function(format!("crawl_{path}_per_page_500"), |b| {
            b.iter(|| {
                let got = rt.block_on(crawl(&client, url.clone(), &token));
                assert_eq!(got, n);
            })
        });
    }
    g.finish();
    let st = sim.stats();
    println!(
        "stats: {} requests, {} records, {:.1} MB sent",
        st.total_requests,
        st.records_served,
        st.bytes_sent as f64 / 1e6
    );
}

fn generate(c: &mut Criterion) {
    let mut g = c.benchmark_group("scenario");
    g.sample_size(10);
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("generate_10k_candidates", |b| {
        b.iter(|| {
            Scenario::generate(&ScenarioSpec {
                candidates: 10_000,
                ..Default::default()
            })
        })
    });
    g.finish();
    let t = Instant::now();
    let s = Scenario::generate(&ScenarioSpec {
        candidates: 100_000,
        ..Default::default()
    });
    println!(
        "generate 100k candidates: {:.2?} ({} applications, {} attachments, {} pushed records)",
        t.elapsed(),
        s.truth.applications.len(),
        s.truth.attachments.len(),
        s.pushed.len()
    );
}

criterion_group!(benches, serve, generate);
criterion_main!(benches);
