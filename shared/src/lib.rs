//! eds shared library: the domain (ATS-neutral model, merge, versioning), the ports
//! (traits the pipeline needs) and the adapters (DynamoDB, SQS, Secrets Manager, S3,
//! ATS HTTP clients). Lambda binaries under `functions/` only wire these together.

pub mod attachments;
pub mod auth;
pub mod connector;
pub mod crash;
pub mod credentials;
/// The domain lives in its own crate (`eds-core`), which depends on no I/O at all.
pub use eds_core::domain;
pub(crate) mod dynamo;
pub mod jobs;
pub mod lambda;
pub mod metrics;
pub mod pipeline;
pub mod queue;
pub mod store;
pub mod tenants;
pub mod wiring;
