//! A local Greenhouse Harvest: the v3 API (OAuth, cursors, windows, rate limits,
//! scopes), a signed attachment storage host, a simulated clock with mutations, seeded faults, and a seeded
//! scenario generator that also writes the pushed snapshot and the manifest of the
//! right answers. See `../shared/spec/greenhouse.md` for the behaviour imitated.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use greenhouse_sim::*;
//! let scenario = Scenario::generate(&ScenarioSpec::default());
//! let sim = Simulator::start(SimConfig::default(), scenario.truth.clone()).await?;
//! sim.add_oauth_client("client", "secret", ALL_SCOPES);
//! println!("{}/v3/candidates", sim.api_base());
//! # Ok(()) }
//! ```

mod auth;
pub mod canonical;
pub mod clock;
pub mod config;
pub mod files;
pub mod model;
pub mod scenario;
mod server;
mod store;

pub use canonical::{Difference, ExpectedRecord, canonical_view, compare_view};
pub use clock::SimClock;
pub use config::{Burst429, ExpiryStyle, Faults, Hostile, RateClock, SimConfig};
pub use files::{attachment_bytes, attachment_sha256, attachment_size};
pub use model::{ALL_SCOPES, AtsData, Entity, Records};
pub use scenario::{
    Defect, DefectKind, ExpectedViews, Manifest, PushedSnapshot, Scenario, ScenarioSpec,
};
pub use server::{Mutator, SimHandle, Simulator, Stats};
pub use store::StoreError;
