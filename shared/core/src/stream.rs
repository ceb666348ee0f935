//! The lists a connector pages through. A core type: tenant state, jobs and the
//! connectors all name them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::ids::EntityKind;

/// A list the connector can page through. Attachments are a stream of their own
/// (Greenhouse v3 lists them separately) although canonically they live inside the
/// candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Candidates,
    Applications,
    Jobs,
    Attachments,
}

impl Stream {
    pub const ALL: [Stream; 4] = [
        Stream::Candidates,
        Stream::Applications,
        Stream::Jobs,
        Stream::Attachments,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Candidates => "candidates",
            Stream::Applications => "applications",
            Stream::Jobs => "jobs",
            Stream::Attachments => "attachments",
        }
    }

    /// The canonical entity whose records this stream's observations touch
    /// (attachments are elements of the candidate).
    pub fn entity(self) -> EntityKind {
        match self {
            Stream::Candidates | Stream::Attachments => EntityKind::Candidate,
            Stream::Applications => EntityKind::Application,
            Stream::Jobs => EntityKind::Job,
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
