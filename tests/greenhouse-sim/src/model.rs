//! Greenhouse-shaped records as the simulator holds them: the v3 JSON objects of
//! greenhouse.md, grouped per resource, plus timestamp helpers shared by the generator
//! and the server.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A Harvest resource served by the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Candidate,
    Application,
    Job,
    Attachment,
}

impl Entity {
    pub const ALL: [Entity; 4] = [
        Entity::Candidate,
        Entity::Application,
        Entity::Job,
        Entity::Attachment,
    ];

    /// Singular name, as used in the push format and the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Candidate => "candidate",
            Entity::Application => "application",
            Entity::Job => "job",
            Entity::Attachment => "attachment",
        }
    }

    /// The URL path segment (`/v3/{path}`).
    pub fn path(self) -> &'static str {
        match self {
            Entity::Candidate => "candidates",
            Entity::Application => "applications",
            Entity::Job => "jobs",
            Entity::Attachment => "attachments",
        }
    }

    pub fn from_path(p: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.path() == p)
    }

    /// The OAuth / API-key scope needed to list (and read) this resource.
    pub fn list_scope(self) -> &'static str {
        match self {
            Entity::Candidate => "harvest:candidates:list",
            Entity::Application => "harvest:applications:list",
            Entity::Job => "harvest:jobs:list",
            Entity::Attachment => "harvest:attachments:list",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Every scope the simulator knows, handy for a fully-privileged test credential.
pub const ALL_SCOPES: &[&str] = &[
    "harvest:candidates:list",
    "harvest:applications:list",
    "harvest:jobs:list",
    "harvest:attachments:list",
];

/// The ATS truth: Greenhouse v3 JSON objects per resource. Attachment rows carry
/// `id, candidate_id, application_id, filename, type, created_at, updated_at`; the
/// signed `url` is added by the server when a row is served (it depends on the clock).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AtsData {
    /// The simulated "now" at which this data was generated; the server clock starts here.
    pub now: DateTime<Utc>,
    /// Seed of the attachment file contents (bytes are generated on request).
    pub file_seed: u64,
    pub candidates: Vec<Value>,
    pub applications: Vec<Value>,
    pub jobs: Vec<Value>,
    pub attachments: Vec<Value>,
}

impl AtsData {
    pub fn records(&self, e: Entity) -> &Vec<Value> {
        match e {
            Entity::Candidate => &self.candidates,
            Entity::Application => &self.applications,
            Entity::Job => &self.jobs,
            Entity::Attachment => &self.attachments,
        }
    }

    pub fn records_mut(&mut self, e: Entity) -> &mut Vec<Value> {
        match e {
            Entity::Candidate => &mut self.candidates,
            Entity::Application => &mut self.applications,
            Entity::Job => &mut self.jobs,
            Entity::Attachment => &mut self.attachments,
        }
    }

    /// Linear lookup; fine for tests (the server keeps its own index).
    pub fn get(&self, e: Entity, id: u64) -> Option<&Value> {
        self.records(e).iter().find(|v| record_id(v) == Some(id))
    }

    /// Attachment rows of one candidate.
    pub fn attachments_of(&self, candidate_id: u64) -> Vec<&Value> {
        self.attachments
            .iter()
            .filter(|a| a.get("candidate_id").and_then(Value::as_u64) == Some(candidate_id))
            .collect()
    }
}

/// Greenhouse timestamp format: RFC3339 UTC with milliseconds and `Z`.
pub fn ts(dt: DateTime<Utc>) -> String {
    dt.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC3339 timestamp (with or without fractional seconds).
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

pub(crate) fn millis(dt: DateTime<Utc>) -> i64 {
    dt.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// The numeric `id` of a v3 object.
pub fn record_id(v: &Value) -> Option<u64> {
    v.get("id").and_then(Value::as_u64)
}

/// A timestamp member of a v3 object, parsed.
pub fn record_ts(v: &Value, field: &str) -> Option<DateTime<Utc>> {
    v.get(field).and_then(Value::as_str).and_then(parse_ts)
}
