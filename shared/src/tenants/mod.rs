//! The tenant registry: each tenant's configuration, lifecycle state, epoch, schedule,
//! pull lease and per-stream sync status, kept in the tenants table.
//!
//! The epoch is the fence between the pull and the lifecycle functions: it changes on
//! enable, disable and delete, every pull job carries the epoch it was scheduled under,
//! and a puller renews its lease (conditioned on that epoch) before writing each page. A
//! disable or deletion bumps the epoch first and then waits for live leases of older
//! epochs to end, so nothing pulled under the old epoch is written after it sweeps.

pub mod dynamo;

pub use dynamo::TenantRegistry;
/// The model and the ports are core types (`eds_core::tenants`).
pub use eds_core::tenants::*;
