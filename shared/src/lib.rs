//! eds shared library: the domain (ATS-neutral model, merge, versioning), the ports
//! (traits the pipeline needs) and the adapters (DynamoDB, SQS, Secrets Manager, S3,
//! ATS HTTP clients). Lambda binaries under `functions/` only wire these together.

/// Core types and ports live in their own crate (`eds-core`), which depends on no I/O.
pub use eds_core::{auth, connection, crash, domain, hosts, invocation, jobs, metrics, queue};

/// The handlers are the application crate (`eds-app`), which knows only the core ports.
pub use eds_app as pipeline;

pub mod attachments;
pub mod connector;
pub mod credentials;
pub(crate) mod dynamo;
pub mod lambda;
pub mod store;
pub mod tenants;
pub mod wiring;
