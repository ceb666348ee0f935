//! ATS connectors: the port and its types are core (`eds_core::connector`, re-exported
//! here); this module holds the HTTP core (auth, pacing, retries, deadline), the rate
//! limiter, the provider registry (the stream catalog and the connection builder) and one
//! folder per ATS.

pub mod catalog;
pub mod greenhouse;
mod http;
pub mod lever;
pub mod providers;
pub mod ratelimit;

pub use eds_core::connector::*;
pub use http::RetryPolicy;
pub use ratelimit::RateLimiter;
