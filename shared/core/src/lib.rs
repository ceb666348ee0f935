//! eds core: the ATS-neutral domain. Ids, the canonical model, the merge of the push and
//! pull layers with per-field provenance, and versioning (content hash, next version,
//! SCD-2 validity).
//!
//! Pure logic only: this crate's dependencies are serde, chrono, thiserror and a hash;
//! no AWS SDK, no HTTP client, no async runtime (`cargo tree -p eds-core -e normal`).
//! The rest of eds reaches it as `eds_shared::domain`.

pub mod domain;
