//! Peak memory of one page fetch against a hostile page: the simulator serves one page
//! of N synthetic rows of about 1,000 bytes each, chunked and generated while sent, and
//! the Greenhouse client fetches it once, as the puller does for every page. Run under
//! `/usr/bin/time -v` and read "Maximum resident set size":
//!
//!   cargo build -p eds-shared --example hostile_page_rss
//!   /usr/bin/time -v target/debug/examples/hostile_page_rss 300000
//!
//! The simulator runs in the same process: its share is the few chunks in flight.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use eds_shared::auth::{AccessTokens, AuthError};
use eds_shared::connector::greenhouse::{GreenhouseConfig, GreenhouseV3};
use eds_shared::connector::{AtsConnector, RateLimiter, Stream, Window};
use greenhouse_sim::{ALL_SCOPES, Hostile, Scenario, ScenarioSpec, SimConfig, Simulator};
use secrecy::SecretString;

/// One bearer token obtained up front (the page fetch is what is measured).
struct Bearer(SecretString);

#[async_trait]
impl AccessTokens for Bearer {
    async fn authorization(&self) -> Result<SecretString, AuthError> {
        Ok(self.0.clone())
    }
    async fn refresh_after_unauthorized(
        &self,
        _: &SecretString,
    ) -> Result<SecretString, AuthError> {
        Err(AuthError::InvalidClient("token refused".into()))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rows: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(300_000);
    let data = Scenario::generate(&ScenarioSpec {
        seed: 1,
        candidates: 10,
        jobs: 2,
        ..ScenarioSpec::default()
    })
    .truth;
    let cfg = SimConfig {
        hostile: Hostile {
            page_rows: Some(rows),
            ..Hostile::default()
        },
        ..SimConfig::default()
    };
    let sim = Simulator::start(cfg, data).await?;
    sim.add_oauth_client("measure", "measure-secret", ALL_SCOPES);
    let token: serde_json::Value = reqwest::Client::new()
        .post(sim.token_url())
        .basic_auth("measure", Some("measure-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let access = token["access_token"].as_str().unwrap_or_default();
    let tokens = Arc::new(Bearer(format!("Bearer {access}").into()));
    let gh = GreenhouseConfig::new(sim.api_base().parse()?);
    let v3 = GreenhouseV3::new(gh, tokens, Arc::new(RateLimiter::default()))?;
    let window = Window {
        from: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        to: sim.clock().now(),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let result = v3.list_changed(Stream::Jobs, &window, None, deadline).await;
    let m = v3.metrics();
    match result {
        Ok(p) => println!(
            "rows={rows}: page read: {} observations, {} quarantined, {} bytes",
            p.observations.len(),
            p.quarantined.len(),
            m.bytes
        ),
        Err(e) => println!("rows={rows}: refused after {} bytes: {e}", m.bytes),
    }
    Ok(())
}
