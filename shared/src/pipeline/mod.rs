//! The handlers behind the Lambda functions, as library code so that the functions'
//! `main` is only wiring and `edsctl` can drive the very same handlers locally.

/// The connection port is core (`eds_core::connection`).
pub use eds_core::connection as connect;
pub mod delete;
pub mod disable;
pub mod puller;
pub mod push;
pub mod records_api;
pub mod scheduler;
pub mod settings;
