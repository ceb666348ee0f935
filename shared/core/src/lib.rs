//! eds core: the types and ports every layer shares, and pure logic.
//!
//! - [`domain`]: ids, the canonical model, the merge of the push and pull layers with
//!   per-field provenance, versioning (content hash, next version, SCD-2 validity).
//! - [`stream`], [`tenants`] (model and registry ports), [`jobs`] (queue messages),
//!   [`store`] (record ports), [`queue`] (job queue port and batch helpers), [`auth`]
//!   (the access-token port), [`connector`] (the ATS connector port, its page types and
//!   the sync windows), [`connection`] (what the puller talks to a tenant's ATS through,
//!   and the factory port that builds it), [`attachments`] (the blob store and attachment source ports),
//!   [`secrets`] (the secret store port and tenant secret names).
//! - [`crash`] (the reliability suite's crash points) and [`metrics`] (run metrics in
//!   CloudWatch's embedded metric format, written to stdout).
//!
//! No AWS SDK, no HTTP client, no tokio (`cargo tree -p eds-core -e normal`): adapters
//! live in `eds-shared`, which re-exports these modules at the same paths
//! (`eds_shared::domain`, `eds_shared::tenants`, ...).

pub mod attachments;
pub mod auth;
pub mod connection;
pub mod connector;
pub mod crash;
pub mod domain;
pub mod hosts;
pub mod invocation;
pub mod jobs;
pub mod metrics;
pub mod queue;
pub mod secrets;
pub mod store;
pub mod stream;
pub mod tenants;
