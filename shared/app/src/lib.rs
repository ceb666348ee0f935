//! eds application layer: the handlers behind the Lambda functions, written against the
//! ports of `eds-core` only (`cargo tree -p eds-app -e normal` shows no AWS SDK and no
//! HTTP client). The functions' `main` only wires adapters into them
//! (`eds_shared::wiring`), and `edsctl` drives the very same handlers locally.
//!
//! Every handler has one shape: built once per container from its ports, entered by
//! `handle(event, invocation)` with a typed event and the invocation
//! ([`eds_core::invocation::Invocation`]).

pub mod delete;
pub mod disable;
pub mod puller;
pub mod push;
pub mod records_api;
pub mod scheduler;
pub mod settings;
