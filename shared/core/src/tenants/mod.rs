//! A tenant's configuration, lifecycle state and sync status ([`model`]), and the ports
//! through which handlers read and write them ([`ports`]). The DynamoDB adapter is
//! `eds_shared::tenants::TenantRegistry`.

pub mod model;
pub mod ports;

pub use model::*;
pub use ports::*;
