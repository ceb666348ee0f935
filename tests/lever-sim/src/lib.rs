//! A local Lever: the v1 API (opportunities, applications, resumes, files, postings,
//! deleted opportunities, stages, archive reasons) behind OAuth 2.0 (authorization
//! code, rotating refresh tokens) and API keys, with opaque signed page tokens,
//! confidentiality rules, a token-bucket rate limit, seeded faults, a simulated clock
//! with mutations, and a seeded scenario generator that writes the pushed snapshot and
//! the manifest of right answers. The oracle eds's Lever connector is tested against;
//! independent of eds's own code. See README.md for the decisions taken.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use lever_sim::*;
//! let scenario = Scenario::generate(&ScenarioSpec::default());
//! let sim = Simulator::start(SimConfig::default(), scenario.truth.clone()).await?;
//! sim.add_api_key("key", ALL_SCOPES);
//! println!("{}/opportunities", sim.api_base());
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

pub use canonical::{Difference, ExpectedRecord, canonical_view, compare_view};
pub use clock::SimClock;
pub use config::{Burst429, ConfidentialPolicy, Faults, LimitPolicy, RateClock, SimConfig};
pub use files::{file_bytes, file_sha256, file_size};
pub use model::{ALL_SCOPES, AUDIENCE, LeverData};
pub use scenario::{Defect, DefectKind, Manifest, PushedSnapshot, Scenario, ScenarioSpec, Trap};
pub use server::{MutationError, Mutator, SimHandle, Simulator, Stats};
