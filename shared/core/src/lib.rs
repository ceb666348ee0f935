//! eds core: the types and ports every layer shares, and pure logic.
//!
//! - [`domain`]: ids, the canonical model, the merge of the push and pull layers with
//!   per-field provenance, versioning (content hash, next version, SCD-2 validity).
//! - [`stream`], [`tenants`] (model and registry ports), [`jobs`] (queue messages),
//!   [`store`] (record ports), [`queue`] (job queue port and batch helpers), [`auth`]
//!   (the access-token port).
//!
//! No AWS SDK, no HTTP client, no tokio (`cargo tree -p eds-core -e normal`): adapters
//! live in `eds-shared`, which re-exports these modules at the same paths
//! (`eds_shared::domain`, `eds_shared::tenants`, ...).

pub mod auth;
pub mod domain;
pub mod jobs;
pub mod queue;
pub mod store;
pub mod stream;
pub mod tenants;
