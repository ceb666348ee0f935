//! The ATS-neutral domain: identifiers, canonical records, the merge of pushed and
//! pulled layers, and versioning. Nothing here performs I/O or knows about AWS or HTTP.

pub mod ids;
pub mod merge;
pub mod model;
pub mod version;
