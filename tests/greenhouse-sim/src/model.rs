//! Greenhouse-shaped records as the simulator holds them: the v3 JSON objects of
//! greenhouse.md, grouped per resource, plus timestamp helpers shared by the generator
//! and the server. Records are kept serialised (a parsed `serde_json::Value` costs
//! about ten times its text), so a 100,000-candidate truth fits in a few hundred MB.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

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

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(8192));
}

/// Serialises `v` into a reused buffer and hands the text to `f` (which copies it into
/// its final, exactly sized allocation): generating 100,000 candidates serialises about
/// a million objects, and growing a fresh buffer for each was a large share of the time.
pub(crate) fn with_json<T: Serialize + ?Sized, R>(v: &T, f: impl FnOnce(&str) -> R) -> R {
    SCRATCH.with(|cell| {
        // A nested call (none today) gets a buffer of its own instead of a panic.
        let mut own = Vec::new();
        let mut guard = cell.try_borrow_mut().ok();
        let buf = guard.as_deref_mut().unwrap_or(&mut own);
        buf.clear();
        // Serialising `Value`s and plain structs cannot fail, and serde_json writes UTF-8.
        let text = match serde_json::to_writer(&mut *buf, v) {
            Ok(()) => std::str::from_utf8(buf).unwrap_or("null"),
            Err(_) => "null",
        };
        f(text)
    })
}

/// One record of the truth, kept as its serialised JSON (about a tenth of the memory of
/// a parsed `Value`); the `Value` is parsed on the first read and then kept.
struct Row {
    id: u64,
    candidate_id: Option<u64>,
    json: Arc<str>,
    parsed: OnceLock<Value>,
}

impl Row {
    fn of(v: &Value) -> Row {
        Row {
            id: record_id(v).unwrap_or(0),
            candidate_id: v.get("candidate_id").and_then(Value::as_u64),
            json: with_json(v, |s| Arc::from(s)),
            parsed: OnceLock::new(),
        }
    }

    fn value(&self) -> &Value {
        // The text was written by `serde_json` from a `Value`, so it always parses back.
        self.parsed
            .get_or_init(|| serde_json::from_str(&self.json).unwrap_or(Value::Null))
    }
}

impl Clone for Row {
    /// A clone shares the text and starts without a parsed copy (cloning a large
    /// truth stays cheap).
    fn clone(&self) -> Self {
        Row {
            id: self.id,
            candidate_id: self.candidate_id,
            json: Arc::clone(&self.json),
            parsed: OnceLock::new(),
        }
    }
}

/// The records of one resource, in insertion order. Reads give `&Value` like a
/// `Vec<Value>` would (`records[i]`, `iter()`, `len()`); storage is compact.
#[derive(Clone, Default)]
pub struct Records {
    rows: Vec<Row>,
}

/// Iterator over the parsed records of a [`Records`].
#[derive(Clone)]
pub struct RecordsIter<'a>(std::slice::Iter<'a, Row>);

impl<'a> Iterator for RecordsIter<'a> {
    type Item = &'a Value;
    fn next(&mut self) -> Option<&'a Value> {
        self.0.next().map(Row::value)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for RecordsIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(Row::value)
    }
}

impl ExactSizeIterator for RecordsIter<'_> {}

impl Records {
    pub fn new() -> Records {
        Records::default()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Appends a record (serialised once; a record without a numeric `id` gets id 0).
    pub fn push(&mut self, v: Value) {
        self.push_ref(&v);
    }

    pub(crate) fn push_ref(&mut self, v: &Value) {
        self.rows.push(Row::of(v));
    }

    /// Replaces the record at `i` (ignored when there is none).
    pub(crate) fn replace(&mut self, i: usize, v: &Value) {
        if let Some(r) = self.rows.get_mut(i) {
            *r = Row::of(v);
        }
    }

    /// Appends an already serialised record (the generator and the store have the text).
    pub(crate) fn push_json(&mut self, id: u64, candidate_id: Option<u64>, json: Arc<str>) {
        self.rows.push(Row {
            id,
            candidate_id,
            json,
            parsed: OnceLock::new(),
        });
    }

    pub fn get(&self, i: usize) -> Option<&Value> {
        self.rows.get(i).map(Row::value)
    }

    pub fn iter(&self) -> RecordsIter<'_> {
        RecordsIter(self.rows.iter())
    }

    /// The serialised records, without parsing them.
    pub fn json(&self) -> impl Iterator<Item = &str> + '_ {
        self.rows.iter().map(|r| &*r.json)
    }

    /// `(id, candidate_id, text)` of every record, without parsing them.
    pub(crate) fn raw(&self) -> impl Iterator<Item = (u64, Option<u64>, &Arc<str>)> + '_ {
        self.rows.iter().map(|r| (r.id, r.candidate_id, &r.json))
    }

    /// Position of the first record with this id (no parsing).
    pub fn position(&self, id: u64) -> Option<usize> {
        self.rows.iter().position(|r| r.id == id)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&Value) -> bool) {
        self.rows.retain(|r| keep(r.value()));
    }
}

impl std::ops::Index<usize> for Records {
    type Output = Value;
    fn index(&self, i: usize) -> &Value {
        self.rows[i].value()
    }
}

impl<'a> IntoIterator for &'a Records {
    type Item = &'a Value;
    type IntoIter = RecordsIter<'a>;
    fn into_iter(self) -> RecordsIter<'a> {
        self.iter()
    }
}

impl FromIterator<Value> for Records {
    fn from_iter<I: IntoIterator<Item = Value>>(iter: I) -> Records {
        let mut r = Records::new();
        for v in iter {
            r.push(v);
        }
        r
    }
}

impl From<Vec<Value>> for Records {
    fn from(v: Vec<Value>) -> Records {
        v.into_iter().collect()
    }
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.json()).finish()
    }
}

impl Serialize for Records {
    /// Serialises as a JSON array of the records; unparsed rows are parsed one at a
    /// time and not kept.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = s.serialize_seq(Some(self.rows.len()))?;
        for r in &self.rows {
            match r.parsed.get() {
                Some(v) => seq.serialize_element(v)?,
                None => {
                    let v: Value = serde_json::from_str(&r.json).map_err(S::Error::custom)?;
                    seq.serialize_element(&v)?;
                }
            }
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Records {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Records, D::Error> {
        Ok(Vec::<Value>::deserialize(d)?.into())
    }
}

/// The ATS truth: Greenhouse v3 JSON objects per resource. Attachment rows carry
/// `id, candidate_id, application_id, filename, type, created_at, updated_at`; the
/// signed `url` is added by the server when a row is served (it depends on the clock).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AtsData {
    /// The simulated "now" at which this data was generated; the server clock starts here.
    pub now: DateTime<Utc>,
    /// Seed of the attachment file contents (bytes are generated on request).
    pub file_seed: u64,
    pub candidates: Records,
    pub applications: Records,
    pub jobs: Records,
    pub attachments: Records,
}

impl AtsData {
    pub fn records(&self, e: Entity) -> &Records {
        match e {
            Entity::Candidate => &self.candidates,
            Entity::Application => &self.applications,
            Entity::Job => &self.jobs,
            Entity::Attachment => &self.attachments,
        }
    }

    pub fn records_mut(&mut self, e: Entity) -> &mut Records {
        match e {
            Entity::Candidate => &mut self.candidates,
            Entity::Application => &mut self.applications,
            Entity::Job => &mut self.jobs,
            Entity::Attachment => &mut self.attachments,
        }
    }

    /// Linear lookup by id (the ids are kept beside the text, so nothing else is
    /// parsed); fine for tests (the server keeps its own index).
    pub fn get(&self, e: Entity, id: u64) -> Option<&Value> {
        let r = self.records(e);
        r.position(id).and_then(|i| r.get(i))
    }

    /// Attachment rows of one candidate.
    pub fn attachments_of(&self, candidate_id: u64) -> Vec<&Value> {
        self.attachments
            .rows
            .iter()
            .filter(|a| a.candidate_id == Some(candidate_id))
            .map(Row::value)
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
