//! The seeded scenario generator: ATS truth, the pushed snapshot with injected defects,
//! and the manifest that says what the merged view must be.
//!
//! Timeline: records are created over two years up to `push_time` (= `now` − 2 days);
//! the push snapshot is taken at `push_time`; between `push_time` and `now` the ATS
//! moves on (stages change, candidates are deleted or merged). The truth is the state
//! at `now`. Defects are chosen on disjoint records so that every expected value has
//! exactly one reason.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::canonical::{
    ATTACHMENTS, Difference, ExpectedRecord, application_fields, attachment_element,
    candidate_fields, compare_view, id_of, record_fields,
};
use crate::model::{AtsData, Entity, ts, with_json};

/// What to generate. `Default` is a small realistic tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioSpec {
    pub seed: u64,
    pub candidates: usize,
    pub jobs: usize,
    /// Average applications per candidate.
    pub applications_per_candidate: f64,
    /// Average attachments per candidate (the first one of a candidate is a resume).
    pub attachments_per_candidate: f64,
    /// Share of candidates with a resume whose resume is absent from the push.
    pub missing_resume_rate: f64,
    /// Share of candidates with emails pushed without the `emails` field.
    pub missing_emails_rate: f64,
    /// Share of candidates with phones pushed without the `phones` field.
    pub missing_phones_rate: f64,
    /// Share of in-process applications whose stage moved in the ATS after the push.
    pub stale_application_rate: f64,
    /// Share of candidates and of applications whose pushed value is newer than the ATS.
    pub push_newer_rate: f64,
    /// Share of candidates (and, separately, of applications) deleted after the push.
    pub deleted_after_push_rate: f64,
    /// Share of candidates merged into another candidate after the push.
    pub merged_after_push_rate: f64,
    /// The simulated "now" at the end of the scenario.
    pub now: DateTime<Utc>,
}

impl Default for ScenarioSpec {
    fn default() -> Self {
        ScenarioSpec {
            seed: 42,
            candidates: 200,
            jobs: 12,
            applications_per_candidate: 1.5,
            attachments_per_candidate: 1.3,
            missing_resume_rate: 0.05,
            missing_emails_rate: 0.05,
            missing_phones_rate: 0.05,
            stale_application_rate: 0.05,
            push_newer_rate: 0.03,
            deleted_after_push_rate: 0.02,
            merged_after_push_rate: 0.02,
            now: Utc
                .with_ymd_and_hms(2026, 11, 1, 12, 0, 0)
                .single()
                .unwrap_or_default(),
        }
    }
}

/// The kinds of injected defects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefectKind {
    MissingResume,
    MissingEmails,
    MissingPhones,
    StaleApplication,
    PushNewer,
    DeletedAfterPush,
    MergedAfterPush,
}

/// One injected defect. `pushed` is what the push said (`null` when it said nothing);
/// `expected` is what the merged view must hold for that field (`"tombstone"` /
/// `{"merged_into": id}` for whole-record defects).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Defect {
    pub kind: DefectKind,
    pub entity: String,
    pub id: String,
    pub field: Option<String>,
    pub pushed: Value,
    pub expected: Value,
}

/// The expected merged view of one record, kept compact: the record's v3 text in the
/// truth (shared with [`AtsData`]), its attachment rows and the pushed fields that win.
/// [`ExpectedViews`] turns it into an [`ExpectedRecord`] only when asked.
#[derive(Debug, Clone)]
enum ViewSource {
    Tombstone,
    Present {
        entity: Entity,
        row: Arc<str>,
        /// Candidates: the v3 text of their attachment rows.
        attachments: Vec<Arc<str>>,
        /// Pushed fields newer than the ATS, as a JSON object (absent never overrides).
        overlay: Option<Box<str>>,
    },
}

fn parse(text: &str) -> Value {
    // Every text here was serialised by this module from a `Value`.
    serde_json::from_str(text).unwrap_or(Value::Null)
}

impl ViewSource {
    fn build(&self) -> ExpectedRecord {
        let ViewSource::Present {
            entity,
            row,
            attachments,
            overlay,
        } = self
        else {
            return ExpectedRecord::Tombstone;
        };
        let mut view = record_fields(*entity, &parse(row));
        if let Some(Value::Object(o)) = overlay.as_deref().map(parse) {
            view.extend(o);
        }
        if !attachments.is_empty() {
            let mut atts: BTreeMap<String, Value> = BTreeMap::new();
            for a in attachments {
                let el = attachment_element(&parse(a));
                atts.insert(el["id"].as_str().unwrap_or("").to_string(), el);
            }
            view.insert(
                ATTACHMENTS.into(),
                Value::Array(atts.into_values().collect()),
            );
        }
        ExpectedRecord::Present(view)
    }
}

/// `(entity, id)` -> expected merged view, for every record pushed or in the truth,
/// ordered by key. Views are built on demand from compact sources, so a
/// 100,000-candidate manifest costs tens of MB, not GB.
#[derive(Debug, Clone, Default)]
pub struct ExpectedViews {
    /// Sorted by key, keys unique.
    entries: Vec<((String, String), ViewSource)>,
}

impl ExpectedViews {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, entity: &str, id: &str) -> Option<&ViewSource> {
        self.entries
            .binary_search_by(|((e, i), _)| (e.as_str(), i.as_str()).cmp(&(entity, id)))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    /// The expected view of a record; `None` when the scenario never had it.
    pub fn get(&self, entity: &str, id: &str) -> Option<ExpectedRecord> {
        self.find(entity, id).map(ViewSource::build)
    }

    /// Whether the record must be a tombstone (cheap: builds nothing).
    pub fn is_tombstone(&self, entity: &str, id: &str) -> Option<bool> {
        self.find(entity, id)
            .map(|s| matches!(s, ViewSource::Tombstone))
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &(String, String)> + '_ {
        self.entries.iter().map(|(k, _)| k)
    }

    /// The views in key order, each built when the iterator reaches it.
    pub fn values(&self) -> impl ExactSizeIterator<Item = ExpectedRecord> + '_ {
        self.entries.iter().map(|(_, s)| s.build())
    }

    pub fn iter(&self) -> ExpectedViewsIter<'_> {
        ExpectedViewsIter(self.entries.iter())
    }
}

/// Iterator over `(key, view)` of [`ExpectedViews`]; each view is built as it is reached.
pub struct ExpectedViewsIter<'a>(std::slice::Iter<'a, ((String, String), ViewSource)>);

impl<'a> Iterator for ExpectedViewsIter<'a> {
    type Item = (&'a (String, String), ExpectedRecord);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, s)| (k, s.build()))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<'a> IntoIterator for &'a ExpectedViews {
    type Item = (&'a (String, String), ExpectedRecord);
    type IntoIter = ExpectedViewsIter<'a>;
    fn into_iter(self) -> ExpectedViewsIter<'a> {
        self.iter()
    }
}

/// Everything a fidelity test needs to judge eds's merged views.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    pub push_time: DateTime<Utc>,
    pub defects: Vec<Defect>,
    /// Number of affected records per defect kind (a record with two changed fields
    /// counts once).
    pub counts: BTreeMap<DefectKind, usize>,
    /// The expected merged view of every record pushed or in the truth.
    pub expected_views: ExpectedViews,
}

impl Manifest {
    pub fn expected(&self, entity: &str, id: &str) -> Option<ExpectedRecord> {
        self.expected_views.get(entity, id)
    }

    /// Differences between an actual view and the expected one for a record.
    /// `actual = None` means eds has no live view (absent or tombstone).
    pub fn check(
        &self,
        entity: &str,
        id: &str,
        actual: Option<&Map<String, Value>>,
    ) -> Vec<Difference> {
        match self.expected(entity, id) {
            Some(e) => compare_view(&e, actual),
            None => match actual {
                None => vec![],
                Some(a) => vec![Difference {
                    field: "<record>".into(),
                    expected: None,
                    actual: Some(Value::Object(a.clone())),
                }],
            },
        }
    }

    pub fn defects_of(&self, kind: DefectKind) -> impl Iterator<Item = &Defect> {
        self.defects.iter().filter(move |d| d.kind == kind)
    }
}

/// The pushed snapshot: push-format records (docs/push-format.md, without the
/// tenant), `{entity, id, op, updated_at, fields}` plus `candidate_id` on
/// attachments. Each record is kept serialised; `iter()` parses them one at a time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushedSnapshot {
    records: Vec<Box<str>>,
}

impl PushedSnapshot {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records, parsed one at a time.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Value> + '_ {
        self.records.iter().map(|r| parse(r))
    }

    /// The records as JSON text (one record each, e.g. for a JSON-lines file).
    pub fn json_lines(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.records.iter().map(|r| &**r)
    }

    pub fn to_vec(&self) -> Vec<Value> {
        self.iter().collect()
    }
}

impl Serialize for PushedSnapshot {
    /// A JSON array of the records.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.records.len()))?;
        for r in self.iter() {
            seq.serialize_element(&r)?;
        }
        seq.end()
    }
}

/// A generated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub truth: AtsData,
    pub pushed: PushedSnapshot,
    pub manifest: Manifest,
}

const FIRST: &[&str] = &[
    "Anna",
    "Ben",
    "Chloé",
    "David",
    "Elif",
    "François",
    "Grace",
    "Hiroshi",
    "Ingrid",
    "José",
    "Karin",
    "Lukas",
    "María",
    "Noah",
    "Olúwaseun",
    "Priya",
    "Quentin",
    "Rania",
    "Søren",
    "Tomás",
    "Uma",
    "Viktor",
    "Wei",
    "Ximena",
    "Yusuf",
    "Zoë",
    "Ahmed",
    "Björn",
    "Chiara",
    "Dmitri",
    "Emma",
    "Fatima",
    "Gustavo",
    "Hannah",
    "Ilse",
    "Jamal",
    "Ľubica",
    "Mei",
    "Nikolai",
    "Oğuz",
    "Paula",
    "Renée",
    "Siobhán",
    "Thảo",
    "Ulrich",
    "Valentina",
    "Wojciech",
];
const LAST: &[&str] = &[
    "Müller",
    "O'Brien",
    "Nguyễn",
    "Smith",
    "García",
    "Kowalski",
    "Rossi",
    "Dubois",
    "Schmidt",
    "Jansen",
    "Okafor",
    "Tanaka",
    "Andersson",
    "Fernández",
    "Ivanova",
    "Lefèvre",
    "Papadopoulos",
    "Kim",
    "Silva",
    "Yılmaz",
    "Novák",
    "Haddad",
    "Brown",
    "van der Berg",
    "Łukasiewicz",
    "Ó Súilleabháin",
    "Patel",
    "Chen",
    "Moreau",
    "Weiß",
    "李",
];
const COMPANIES: &[&str] = &[
    "Acme GmbH",
    "Globex",
    "Initech",
    "Umbrella & Co",
    "Stark Industries",
    "Wayne Enterprises",
    "Société Générale",
    "Hooli",
    "Vandelay Industries",
    "Zürich Data AG",
    "北京科技",
    "Tyrell Corp",
];
const TITLES: &[&str] = &[
    "Software Engineer",
    "Data Scientist",
    "Product Manager",
    "Account Executive",
    "Designer",
    "Recruiter",
    "Site Reliability Engineer",
    "Customer Success Manager",
    "Head of Finance",
    "QA Engineer",
    "Développeur Backend",
];
const TZ: &[&str] = &[
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "Asia/Tokyo",
    "Europe/Paris",
    "America/Sao_Paulo",
];
const TAGS: &[&str] = &[
    "Python",
    "Rust",
    "Referral",
    "Silver medalist",
    "Do not contact",
    "Relocation",
    "Remote",
    "Senior",
];
const STAGES: &[&str] = &[
    "Application Review",
    "Phone Screen",
    "Technical Interview",
    "Onsite",
    "Offer",
];
const JOB_NAMES: &[&str] = &[
    "Backend Engineer",
    "Frontend Engineer",
    "Data Analyst",
    "Sales Manager DACH",
    "Office Manager",
    "Head of People",
    "ML Engineer",
    "Support Specialist",
    "UX Researcher",
    "Controller",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "posteo.example",
    "proton.example",
];

struct Gen {
    rng: ChaCha8Rng,
}

impl Gen {
    fn pick<'a>(&mut self, s: &[&'a str]) -> &'a str {
        s[self.rng.random_range(0..s.len())]
    }
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random_bool(p.clamp(0.0, 1.0))
    }
    /// A count with the given mean (0..=2·mean, uniform).
    fn count(&mut self, mean: f64) -> usize {
        if mean <= 0.0 {
            return 0;
        }
        (self.rng.random::<f64>() * (2.0 * mean + 1.0)).floor() as usize
    }
    fn between(&mut self, a: DateTime<Utc>, b: DateTime<Utc>) -> DateTime<Utc> {
        let span = (b - a).num_milliseconds().max(1);
        a + Duration::milliseconds(self.rng.random_range(0..span))
    }
}

fn ascii_local(s: &str) -> String {
    let out: String = s
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            'é' | 'è' | 'ê' | 'É' => Some('e'),
            'ü' | 'ú' | 'Ú' => Some('u'),
            'ö' | 'ó' | 'ø' | 'Ó' => Some('o'),
            'á' | 'ä' | 'ã' | 'ả' => Some('a'),
            'ñ' => Some('n'),
            'ç' => Some('c'),
            'ß' => Some('s'),
            'ğ' => Some('g'),
            'ı' | 'í' => Some('i'),
            _ => None,
        })
        .collect();
    if out.is_empty() { "x".into() } else { out }
}

/// Greenhouse sometimes omits the milliseconds.
fn gh_ts(g: &mut Gen, d: DateTime<Utc>) -> Value {
    if g.chance(0.03) {
        Value::String(d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
    } else {
        Value::String(ts(d))
    }
}

fn set(v: &mut Value, k: &str, x: Value) {
    if let Value::Object(o) = v {
        o.insert(k.to_string(), x);
    }
}

/// What happens to a candidate after the push. Whole-record fates are chosen before
/// anything else, so per-field defects go to other candidates (every expected value
/// has exactly one reason).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Live,
    Deleted,
    /// Merged into the candidate at index `winner` at `at`.
    Loser {
        winner: usize,
        at: DateTime<Utc>,
    },
    /// Absorbs the candidate at index `loser` at `at`.
    Winner {
        loser: usize,
        at: DateTime<Utc>,
    },
}

/// One push-format record; serialised straight from borrowed parts.
#[derive(Serialize)]
struct PushRecord<'a> {
    entity: &'static str,
    id: String,
    op: &'static str,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_id: Option<String>,
    fields: &'a Map<String, Value>,
}

fn push_line(
    entity: Entity,
    id: u64,
    candidate_id: Option<u64>,
    updated_at: DateTime<Utc>,
    fields: &Map<String, Value>,
) -> Box<str> {
    let r = PushRecord {
        entity: entity.as_str(),
        id: id.to_string(),
        op: "upsert",
        updated_at: ts(updated_at),
        candidate_id: candidate_id.map(|c| c.to_string()),
        fields,
    };
    with_json(&r, |s| Box::from(s))
}

/// The fields an attachment record may push: the element without `id` (the record's
/// `id`) and `updated_at` (the record's `updated_at`); see docs/push-format.md.
fn attachment_push_fields(a: &Value) -> Map<String, Value> {
    let mut f = record_fields(Entity::Attachment, a);
    f.remove("id");
    f.remove("updated_at");
    f
}

/// Merges the loser's emails and phones into the winner (Greenhouse keeps both
/// candidates' contacts) and moves the winner's timestamps to the merge.
fn absorb(winner: &mut Value, loser_contacts: &[Value; 2], at: DateTime<Utc>) {
    for (list, from) in ["email_addresses", "phone_numbers"]
        .iter()
        .zip(loser_contacts)
    {
        let mut merged = winner[*list].as_array().cloned().unwrap_or_default();
        for e in from.as_array().into_iter().flatten() {
            if !merged.iter().any(|x| x["value"] == e["value"]) {
                merged.push(e.clone());
            }
        }
        set(winner, list, Value::Array(merged));
    }
    set(winner, "updated_at", json!(ts(at)));
    set(winner, "last_activity_at", json!(ts(at)));
}

/// Collects the outputs while candidates are generated one at a time.
struct Out {
    data: AtsData,
    pushed_cands: Vec<Box<str>>,
    pushed_jobs: Vec<Box<str>>,
    pushed_atts: Vec<Box<str>>,
    pushed_apps: Vec<Box<str>>,
    /// `(entity, id)` of every pushed candidate, application and job.
    pushed_keys: Vec<(Entity, u64)>,
    /// Pushed fields that are newer than the final truth of their record.
    overlays: HashMap<(Entity, u64), Box<str>>,
    defects: Vec<Defect>,
    affected: BTreeMap<DefectKind, BTreeSet<(Entity, u64)>>,
}

impl Out {
    /// Records a defect and counts its record as affected.
    fn defect(
        &mut self,
        kind: DefectKind,
        entity: Entity,
        id: u64,
        field: Option<&str>,
        pushed: Value,
        expected: Value,
    ) {
        self.note(kind, entity, id, field, pushed, expected);
        self.affected.entry(kind).or_default().insert((entity, id));
    }

    /// Records a defect that follows from another one and is not counted on its own
    /// (an application moved by a merge: the merge counts its candidate).
    fn note(
        &mut self,
        kind: DefectKind,
        entity: Entity,
        id: u64,
        field: Option<&str>,
        pushed: Value,
        expected: Value,
    ) {
        self.defects.push(Defect {
            kind,
            entity: entity.as_str().into(),
            id: id.to_string(),
            field: field.map(str::to_string),
            pushed,
            expected,
        });
    }

    /// Records a pushed candidate, application or job; `final_updated` is the truth's
    /// `updated_at` at `now` (a pushed record newer than that wins on its fields).
    fn push_record(
        &mut self,
        entity: Entity,
        id: u64,
        updated: DateTime<Utc>,
        final_updated: Option<DateTime<Utc>>,
        fields: &Map<String, Value>,
    ) {
        let line = push_line(entity, id, None, updated, fields);
        let target = match entity {
            Entity::Candidate => &mut self.pushed_cands,
            Entity::Job => &mut self.pushed_jobs,
            _ => &mut self.pushed_apps,
        };
        target.push(line);
        self.pushed_keys.push((entity, id));
        if final_updated.is_some_and(|f| updated > f) {
            let overlay: Box<str> = with_json(fields, |s| Box::from(s));
            self.overlays.insert((entity, id), overlay);
        }
    }

    fn truth(&mut self, entity: Entity, v: &Value) {
        self.data.records_mut(entity).push_ref(v);
    }
}

impl Scenario {
    /// Generates a scenario; the same spec always gives the same scenario.
    ///
    /// Candidates are generated one at a time: each record is built once as a `Value`,
    /// pushed and stored as text, and dropped; the views of the manifest are built
    /// from that text when a test asks for them.
    pub fn generate(spec: &ScenarioSpec) -> Scenario {
        let mut g = Gen {
            rng: ChaCha8Rng::seed_from_u64(spec.seed),
        };
        let now = spec.now;
        let push_time = now - Duration::days(2);
        let origin = now - Duration::days(730);
        let mut out = Out {
            data: AtsData {
                now,
                file_seed: spec.seed.wrapping_mul(31).wrapping_add(7),
                ..Default::default()
            },
            pushed_cands: Vec::with_capacity(spec.candidates),
            pushed_jobs: Vec::with_capacity(spec.jobs),
            pushed_atts: Vec::new(),
            pushed_apps: Vec::new(),
            pushed_keys: Vec::new(),
            overlays: HashMap::new(),
            defects: Vec::new(),
            affected: BTreeMap::new(),
        };

        // Jobs.
        let users: Vec<u64> = (0..25).map(|i| 1_000_100 + i).collect();
        let mut job_ids = vec![];
        let mut jid = 4_400_000u64;
        for _ in 0..spec.jobs.max(1) {
            jid += g.rng.random_range(1..=9);
            let created = g.between(origin, origin + Duration::days(365));
            let status = ["open", "open", "open", "closed", "draft"][g.rng.random_range(0..5)];
            let opened = if status == "draft" {
                Value::Null
            } else {
                Value::String(ts(created + Duration::days(2)))
            };
            let closed = if status == "closed" {
                Value::String(ts(g.between(created + Duration::days(30), push_time)))
            } else {
                Value::Null
            };
            let updated = g.between(created + Duration::days(3), push_time);
            let office_n = g.rng.random_range(1..=2u64);
            let job = json!({
                "id": jid, "name": g.pick(JOB_NAMES), "requisition_id": format!("REQ-{:04}", jid % 10_000),
                "status": status, "confidential": g.chance(0.1), "created_at": ts(created), "opened_at": opened,
                "closed_at": closed, "updated_at": ts(updated), "department_id": 50_000 + g.rng.random_range(0..8u64),
                "office_ids": (0..office_n).map(|k| 60_000 + k * 3 + (jid % 3)).collect::<Vec<_>>(),
                "custom_fields": {
                    "employment_type": {"name": "Employment Type", "type": "single_select", "value": g.pick(&["Full-time", "Part-time", "Contract"])},
                    "salary_range": {"name": "Salary Range", "type": "currency_range",
                        "value": {"min_value": "50000", "max_value": "90000", "unit": "EUR"}}
                }
            });
            out.push_record(
                Entity::Job,
                jid,
                updated,
                Some(updated),
                &record_fields(Entity::Job, &job),
            );
            out.truth(Entity::Job, &job);
            job_ids.push(jid);
        }

        // Candidate ids (ascending with creation) and their fates: deletes, then merges
        // among the rest.
        let n = spec.candidates;
        let mut cid = 40_000_000u64;
        let cand_ids: Vec<u64> = (0..n)
            .map(|_| {
                cid += g.rng.random_range(1..=5);
                cid
            })
            .collect();
        let mut fates: Vec<Fate> = (0..n)
            .map(|_| {
                if g.chance(spec.deleted_after_push_rate) {
                    Fate::Deleted
                } else {
                    Fate::Live
                }
            })
            .collect();
        for i in 0..n {
            if fates[i] != Fate::Live || !g.chance(spec.merged_after_push_rate) {
                continue;
            }
            // Rejection sampling keeps this linear: most candidates are untouched.
            for _ in 0..64 {
                let w = g.rng.random_range(0..n);
                if w != i && fates[w] == Fate::Live {
                    let at = g.between(
                        push_time + Duration::minutes(1),
                        now - Duration::minutes(10),
                    );
                    fates[i] = Fate::Loser { winner: w, at };
                    fates[w] = Fate::Winner { loser: i, at };
                    break;
                }
            }
        }
        // Merge partners generated before their counterpart wait here (a few %).
        let mut waiting_winners: HashMap<usize, (usize, Value)> = HashMap::new(); // loser -> (truth position, winner)
        let mut waiting_contacts: HashMap<usize, [Value; 2]> = HashMap::new(); // winner -> loser's contacts

        let mut aid = 70_000_000u64;
        let mut tid = 90_000_000u64;
        let span = (push_time - Duration::hours(1) - origin)
            .num_milliseconds()
            .max(1);
        for (i, &cid) in cand_ids.iter().enumerate() {
            let base = origin + Duration::milliseconds(span * i as i64 / n.max(1) as i64);
            let created = base + Duration::milliseconds(g.rng.random_range(0..60_000));
            let mut updated = created
                + Duration::milliseconds(
                    ((push_time - created).num_milliseconds() as f64
                        * g.rng.random::<f64>().powi(3)) as i64,
                );
            let first = g.pick(FIRST);
            let last = g.pick(LAST);
            let local = format!("{}.{}", ascii_local(first), ascii_local(last));
            let emails: Vec<Value> = (0..if g.chance(0.9) { g.rng.random_range(1..=2) } else { 0 })
                .map(|k| json!({"type": (["personal", "work", "other"][k % 3]), "value": format!("{local}{}@{}", if k == 0 { String::new() } else { k.to_string() }, DOMAINS[(cid as usize + k) % DOMAINS.len()])}))
                .collect();
            let phones: Vec<Value> = (0..if g.chance(0.85) { g.rng.random_range(1..=2) } else { 0 })
                .map(|k| json!({"type": (["mobile", "home", "work"][k % 3]), "value": format!("+49 {} {:07}", 150 + k, g.rng.random_range(0..10_000_000u32))}))
                .collect();
            let tags: Vec<&str> = (0..g.rng.random_range(0..=3))
                .map(|_| g.pick(TAGS))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let preferred = if g.chance(0.2) {
                Value::String(first.chars().take(3).collect())
            } else {
                Value::Null
            };
            let company = if g.chance(0.8) {
                Value::String(g.pick(COMPANIES).into())
            } else {
                Value::Null
            };
            let title = if g.chance(0.85) {
                Value::String(g.pick(TITLES).into())
            } else {
                Value::Null
            };
            let tz = if g.chance(0.7) {
                Value::String(g.pick(TZ).into())
            } else {
                Value::Null
            };
            let napps = g.count(spec.applications_per_candidate);
            let mut apps = Vec::with_capacity(napps);
            for _ in 0..napps {
                aid += g.rng.random_range(1..=4);
                let a_created = g.between(created, push_time - Duration::minutes(30));
                let a_updated = g.between(a_created, push_time);
                let prospect = g.chance(0.1);
                let job = job_ids[g.rng.random_range(0..job_ids.len())];
                let status = if prospect {
                    "in_process"
                } else {
                    [
                        "in_process",
                        "in_process",
                        "in_process",
                        "rejected",
                        "rejected",
                        "hired",
                    ][g.rng.random_range(0..6)]
                };
                let stage = g.rng.random_range(0..STAGES.len());
                let rejected = status == "rejected";
                let answers = if prospect {
                    json!([])
                } else {
                    json!([
                        {"question": "Why do you want to work with us?", "answer": format!("<p>I enjoy <b>{}</b> &amp; building things.</p><ul><li>Teamwork</li><li>Ownership ✓</li></ul>", g.pick(TAGS))},
                        {"question": "Do you require visa sponsorship?", "answer": if g.chance(0.2) { "Yes" } else { "No" }}
                    ])
                };
                apps.push((a_updated, json!({
                    "id": aid, "candidate_id": cid, "job_id": if prospect { Value::Null } else { json!(job) },
                    "job_post_id": if prospect { Value::Null } else { json!(job * 3 + 1) }, "prospect": prospect,
                    "prospective_job_ids": if prospect { json!([job]) } else { json!([]) },
                    "status": status,
                    "stage_id": if prospect { Value::Null } else { json!(job * 10 + stage as u64) },
                    "stage_name": if prospect { Value::Null } else { json!(STAGES[stage]) },
                    "created_at": gh_ts(&mut g, a_created), "updated_at": ts(a_updated), "last_activity_at": ts(a_updated),
                    "rejected_at": if rejected { json!(ts(a_updated)) } else { Value::Null },
                    "rejection_reason_id": if rejected { json!(80_000 + g.rng.random_range(0..6u64)) } else { Value::Null },
                    "source_id": if g.chance(0.9) { json!(90_000 + g.rng.random_range(0..12u64)) } else { Value::Null },
                    "referrer_id": if g.chance(0.15) { json!(users[g.rng.random_range(0..users.len())]) } else { Value::Null },
                    "recruiter_id": json!(users[g.rng.random_range(0..users.len())]),
                    "coordinator_id": if g.chance(0.6) { json!(users[g.rng.random_range(0..users.len())]) } else { Value::Null },
                    "location_address": Value::Null,
                    "answers": answers,
                    "custom_fields": {"referral_bonus": {"name": "Referral bonus", "type": "boolean", "value": g.chance(0.1)}}
                })));
                if a_updated > updated {
                    updated = a_updated;
                }
            }
            let natt = g.count(spec.attachments_per_candidate);
            let mut atts = Vec::with_capacity(natt);
            for k in 0..natt {
                tid += g.rng.random_range(1..=3);
                let at = g.between(created, push_time);
                let (kind, filename) = match k {
                    0 => ("resume", format!("{first}_{last}_CV.pdf")),
                    1 => ("cover_letter", format!("Cover letter {first} {last}.pdf")),
                    _ => (
                        ["offer_letter", "other", "other"][k % 3],
                        format!("document-{tid}.pdf"),
                    ),
                };
                let app_id = if apps.is_empty() || g.chance(0.3) {
                    Value::Null
                } else {
                    apps[g.rng.random_range(0..apps.len())].1["id"].clone()
                };
                atts.push((tid, at, json!({
                    "id": tid, "candidate_id": cid, "application_id": app_id, "filename": filename, "type": kind,
                    "created_at": ts(at), "updated_at": ts(at)
                })));
            }
            let mut cand = json!({
                "id": cid, "first_name": first, "last_name": last, "preferred_name": preferred, "company": company,
                "title": title, "created_at": gh_ts(&mut g, created), "updated_at": ts(updated), "last_activity_at": ts(updated),
                "private": g.chance(0.05), "can_email": g.chance(0.9), "time_zone": tz, "tags": tags,
                "linked_user_ids": if g.chance(0.02) { json!([users[0]]) } else { json!([]) },
                "phone_numbers": phones, "email_addresses": emails,
                "addresses": if g.chance(0.4) { json!([{"type": "home", "value": format!("Hauptstraße {}, 10115 Berlin", cid % 200)}]) } else { json!([]) },
                "website_addresses": if g.chance(0.2) { json!([{"type": "portfolio", "value": format!("https://{}.example.dev", ascii_local(first))}]) } else { json!([]) },
                "social_media_addresses": if g.chance(0.3) { json!([{"value": format!("https://linkedin.example/in/{local}")}]) } else { json!([]) },
                "custom_fields": {
                    "desired_salary": {"name": "Desired salary", "type": "currency", "value": if g.chance(0.6) { json!({"unit": "EUR", "amount": format!("{}", 40_000 + 1000 * g.rng.random_range(0..60u32))}) } else { Value::Null }},
                    "notice_period": {"name": "Notice period", "type": "short_text", "value": g.pick(&["none", "1 month", "3 months", "6 Monate"])},
                    "relocation": {"name": "Willing to relocate", "type": "boolean", "value": g.chance(0.5)}
                }
            });

            // The push snapshot of this candidate (state at push time) with its defects.
            let fate = fates[i];
            let live = fate == Fate::Live;
            let mut fields = candidate_fields(&cand);
            let mut pushed_updated = updated;
            if live && g.chance(spec.push_newer_rate) {
                let old = fields.get("title").cloned().unwrap_or(Value::Null);
                let new = Value::String(format!(
                    "{} (updated by HRIS)",
                    old.as_str().unwrap_or("Consultant")
                ));
                fields.insert("title".into(), new.clone());
                pushed_updated = updated + Duration::seconds(g.rng.random_range(1..7200));
                out.defect(
                    DefectKind::PushNewer,
                    Entity::Candidate,
                    cid,
                    Some("title"),
                    new.clone(),
                    new,
                );
            }
            let push_newer_cand = pushed_updated > updated;
            for (field, kind, rate) in [
                (
                    "emails",
                    DefectKind::MissingEmails,
                    spec.missing_emails_rate,
                ),
                (
                    "phones",
                    DefectKind::MissingPhones,
                    spec.missing_phones_rate,
                ),
            ] {
                if live
                    && fields
                        .get(field)
                        .and_then(Value::as_array)
                        .is_some_and(|a| !a.is_empty())
                    && g.chance(rate)
                {
                    let truth = fields.remove(field).unwrap_or(Value::Null);
                    out.defect(
                        kind,
                        Entity::Candidate,
                        cid,
                        Some(field),
                        Value::Null,
                        truth,
                    );
                }
            }
            let final_updated = match fate {
                Fate::Live => Some(updated),
                Fate::Winner { at, .. } => Some(at),
                Fate::Deleted | Fate::Loser { .. } => None,
            };
            out.push_record(
                Entity::Candidate,
                cid,
                pushed_updated,
                final_updated,
                &fields,
            );

            // Attachments: the first resume of a candidate that stays may be missing.
            let mut seen_resume = false;
            for (id, at, a) in &atts {
                let first_resume = a["type"] == "resume" && !seen_resume;
                seen_resume |= first_resume;
                if first_resume
                    && matches!(fate, Fate::Live | Fate::Winner { .. })
                    && g.chance(spec.missing_resume_rate)
                {
                    out.defect(
                        DefectKind::MissingResume,
                        Entity::Candidate,
                        cid,
                        Some(ATTACHMENTS),
                        Value::Null,
                        attachment_element(a),
                    );
                    continue;
                }
                out.pushed_atts.push(push_line(
                    Entity::Attachment,
                    *id,
                    Some(cid),
                    *at,
                    &attachment_push_fields(a),
                ));
            }

            // Applications: push-newer and stale stages (only where the candidate stays
            // put), deletions; then the ATS moves on to `now`.
            let mut deleted_apps: Vec<u64> = vec![];
            for (a_updated, mut a) in apps {
                let id = id_of(&a);
                let fields = application_fields(&a);
                let mut pushed_updated = a_updated;
                let mut final_updated = a_updated;
                let has_stage = a["stage_id"].is_u64() && a["status"] == "in_process";
                let free = live && !push_newer_cand;
                if free && has_stage && g.chance(spec.push_newer_rate) {
                    let new = Value::String("Offer (pushed by HRIS)".into());
                    let mut f = fields.clone();
                    f.insert("stage_name".into(), new.clone());
                    pushed_updated = a_updated + Duration::seconds(g.rng.random_range(1..7200));
                    out.defect(
                        DefectKind::PushNewer,
                        Entity::Application,
                        id,
                        Some("stage_name"),
                        new.clone(),
                        new,
                    );
                    out.push_record(
                        Entity::Application,
                        id,
                        pushed_updated,
                        Some(final_updated),
                        &f,
                    );
                    out.truth(Entity::Application, &a);
                    continue;
                } else if free && has_stage && g.chance(spec.stale_application_rate) {
                    // The ATS moves the application on after the push; the push keeps the old stage.
                    let stage_id = a["stage_id"].as_u64().unwrap_or(0);
                    let t = g.between(
                        push_time + Duration::minutes(1),
                        now - Duration::minutes(10),
                    );
                    let reject = g.chance(0.3);
                    let (new_status, new_stage_id, new_stage_name) = if reject {
                        ("rejected", stage_id, a["stage_name"].clone())
                    } else {
                        let next = ((stage_id % 10) as usize + 1).min(STAGES.len() - 1);
                        (
                            "in_process",
                            stage_id - stage_id % 10 + next as u64,
                            json!(STAGES[next]),
                        )
                    };
                    if a["status"] != json!(new_status) {
                        out.defect(
                            DefectKind::StaleApplication,
                            Entity::Application,
                            id,
                            Some("status"),
                            a["status"].clone(),
                            json!(new_status),
                        );
                    }
                    if a["stage_id"] != json!(new_stage_id) {
                        out.defect(
                            DefectKind::StaleApplication,
                            Entity::Application,
                            id,
                            Some("stage_id"),
                            crate::canonical::id_str(&a["stage_id"]),
                            json!(new_stage_id.to_string()),
                        );
                        out.defect(
                            DefectKind::StaleApplication,
                            Entity::Application,
                            id,
                            Some("stage_name"),
                            a["stage_name"].clone(),
                            new_stage_name.clone(),
                        );
                    }
                    // A reject that keeps the stage changes only the status.
                    out.affected
                        .entry(DefectKind::StaleApplication)
                        .or_default()
                        .insert((Entity::Application, id));
                    set(&mut a, "status", json!(new_status));
                    set(&mut a, "stage_id", json!(new_stage_id));
                    set(&mut a, "stage_name", new_stage_name);
                    if reject {
                        set(&mut a, "rejected_at", json!(ts(t)));
                        set(&mut a, "rejection_reason_id", json!(80_001));
                    }
                    set(&mut a, "updated_at", json!(ts(t)));
                    set(&mut a, "last_activity_at", json!(ts(t)));
                    final_updated = t;
                } else if free && g.chance(spec.deleted_after_push_rate) {
                    out.defect(
                        DefectKind::DeletedAfterPush,
                        Entity::Application,
                        id,
                        None,
                        Value::Null,
                        json!("tombstone"),
                    );
                    deleted_apps.push(id);
                }
                out.push_record(
                    Entity::Application,
                    id,
                    pushed_updated,
                    Some(final_updated),
                    &fields,
                );
                match fate {
                    // Deleted candidates take their applications with them.
                    Fate::Deleted => out.defect(
                        DefectKind::DeletedAfterPush,
                        Entity::Application,
                        id,
                        None,
                        Value::Null,
                        json!("tombstone"),
                    ),
                    // A merge moves the loser's applications to the winner.
                    Fate::Loser { winner, at } => {
                        let w = cand_ids[winner];
                        set(&mut a, "candidate_id", json!(w));
                        set(&mut a, "updated_at", json!(ts(at)));
                        out.note(
                            DefectKind::MergedAfterPush,
                            Entity::Application,
                            id,
                            Some("candidate_id"),
                            json!(cid.to_string()),
                            json!(w.to_string()),
                        );
                        out.truth(Entity::Application, &a);
                    }
                    Fate::Live | Fate::Winner { .. } => {
                        if !deleted_apps.contains(&id) {
                            out.truth(Entity::Application, &a);
                        }
                    }
                }
            }

            // Attachments follow their candidate (gone with it, or moved by a merge).
            if fate != Fate::Deleted {
                for (_, _, mut a) in atts {
                    if a["application_id"]
                        .as_u64()
                        .is_some_and(|x| deleted_apps.contains(&x))
                    {
                        set(&mut a, "application_id", Value::Null);
                    }
                    if let Fate::Loser { winner, at } = fate {
                        set(&mut a, "candidate_id", json!(cand_ids[winner]));
                        set(&mut a, "updated_at", json!(ts(at)));
                    }
                    out.truth(Entity::Attachment, &a);
                }
            }

            // The candidate itself at `now`.
            match fate {
                Fate::Live => out.truth(Entity::Candidate, &cand),
                Fate::Deleted => out.defect(
                    DefectKind::DeletedAfterPush,
                    Entity::Candidate,
                    cid,
                    None,
                    Value::Null,
                    json!("tombstone"),
                ),
                Fate::Loser { winner, at } => {
                    out.defect(
                        DefectKind::MergedAfterPush,
                        Entity::Candidate,
                        cid,
                        None,
                        Value::Null,
                        json!({"merged_into": cand_ids[winner].to_string()}),
                    );
                    let contacts = [cand["email_addresses"].take(), cand["phone_numbers"].take()];
                    match waiting_winners.remove(&i) {
                        Some((pos, mut w)) => {
                            absorb(&mut w, &contacts, at);
                            out.data.candidates.replace(pos, &w);
                        }
                        None => {
                            waiting_contacts.insert(winner, contacts);
                        }
                    }
                }
                Fate::Winner { loser, at } => match waiting_contacts.remove(&i) {
                    Some(contacts) => {
                        absorb(&mut cand, &contacts, at);
                        out.truth(Entity::Candidate, &cand);
                    }
                    None => {
                        waiting_winners.insert(loser, (out.data.candidates.len(), cand.clone()));
                        out.truth(Entity::Candidate, &cand);
                    }
                },
            }
        }

        out.into_scenario(push_time)
    }
}

impl Out {
    fn into_scenario(self, push_time: DateTime<Utc>) -> Scenario {
        let Out {
            data,
            pushed_cands,
            pushed_jobs,
            pushed_atts,
            pushed_apps,
            pushed_keys,
            mut overlays,
            defects,
            affected,
        } = self;
        // Candidates first, then jobs, attachments and applications (the order of the
        // earlier generator; push ingestion does not depend on it).
        let mut records = pushed_cands;
        records.extend(pushed_jobs);
        records.extend(pushed_atts);
        records.extend(pushed_apps);

        // A candidate's expected attachments are the truth's: every pushed attachment
        // of a candidate that is still live is in the truth too (deletes and merges
        // make their candidate a tombstone), and on a common id the truth wins.
        let mut atts_by_cand: HashMap<u64, Vec<Arc<str>>> = HashMap::new();
        for (_, c, json) in data.attachments.raw() {
            atts_by_cand
                .entry(c.unwrap_or(0))
                .or_default()
                .push(Arc::clone(json));
        }
        let mut entries = Vec::with_capacity(
            data.candidates.len() + data.applications.len() + data.jobs.len() + 16,
        );
        let mut in_truth: HashSet<(Entity, u64)> = HashSet::new();
        for entity in [Entity::Candidate, Entity::Application, Entity::Job] {
            for (id, _, json) in data.records(entity).raw() {
                in_truth.insert((entity, id));
                let attachments = if entity == Entity::Candidate {
                    atts_by_cand.remove(&id).unwrap_or_default()
                } else {
                    vec![]
                };
                entries.push((
                    (entity.as_str().to_string(), id.to_string()),
                    ViewSource::Present {
                        entity,
                        row: Arc::clone(json),
                        attachments,
                        overlay: overlays.remove(&(entity, id)),
                    },
                ));
            }
        }
        // Records the ATS no longer has: tombstones.
        for key in pushed_keys {
            if !in_truth.contains(&key) {
                entries.push((
                    (key.0.as_str().to_string(), key.1.to_string()),
                    ViewSource::Tombstone,
                ));
            }
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);

        Scenario {
            truth: data,
            pushed: PushedSnapshot { records },
            manifest: Manifest {
                push_time,
                defects,
                counts: affected.into_iter().map(|(k, v)| (k, v.len())).collect(),
                expected_views: ExpectedViews { entries },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_per_seed() {
        let spec = ScenarioSpec {
            candidates: 60,
            ..Default::default()
        };
        let a = Scenario::generate(&spec);
        let b = Scenario::generate(&spec);
        assert_eq!(
            serde_json::to_string(&a.truth).ok(),
            serde_json::to_string(&b.truth).ok()
        );
        assert_eq!(a.pushed, b.pushed);
        assert_eq!(a.manifest.defects, b.manifest.defects);
        let c = Scenario::generate(&ScenarioSpec { seed: 43, ..spec });
        assert_ne!(
            serde_json::to_string(&a.truth).ok(),
            serde_json::to_string(&c.truth).ok()
        );
    }

    #[test]
    fn every_defect_kind_is_injected_at_high_rates_and_counted() {
        let spec = ScenarioSpec {
            candidates: 300,
            missing_resume_rate: 0.2,
            missing_emails_rate: 0.2,
            missing_phones_rate: 0.2,
            stale_application_rate: 0.2,
            push_newer_rate: 0.1,
            deleted_after_push_rate: 0.05,
            merged_after_push_rate: 0.05,
            ..Default::default()
        };
        let s = Scenario::generate(&spec);
        for k in [
            DefectKind::MissingResume,
            DefectKind::MissingEmails,
            DefectKind::MissingPhones,
            DefectKind::StaleApplication,
            DefectKind::PushNewer,
            DefectKind::DeletedAfterPush,
            DefectKind::MergedAfterPush,
        ] {
            assert!(
                s.manifest.counts.get(&k).copied().unwrap_or(0) > 0,
                "{k:?} not injected"
            );
        }
    }

    #[test]
    fn expected_views_follow_the_defects() {
        let spec = ScenarioSpec {
            candidates: 300,
            push_newer_rate: 0.1,
            deleted_after_push_rate: 0.05,
            merged_after_push_rate: 0.05,
            stale_application_rate: 0.2,
            missing_emails_rate: 0.2,
            ..Default::default()
        };
        let s = Scenario::generate(&spec);
        let m = &s.manifest;
        for d in &m.defects {
            let exp = m.expected(&d.entity, &d.id);
            match (d.kind, &d.field) {
                (DefectKind::DeletedAfterPush, None) | (DefectKind::MergedAfterPush, None) => {
                    assert_eq!(exp, Some(ExpectedRecord::Tombstone), "{d:?}");
                }
                (DefectKind::MissingResume, _) => {
                    let Some(ExpectedRecord::Present(v)) = exp else {
                        panic!("{d:?}")
                    };
                    assert!(
                        v["attachments"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|e| e["id"] == d.expected["id"]))
                    );
                    assert!(
                        !s.pushed
                            .iter()
                            .any(|p| p["entity"] == "attachment" && p["id"] == d.expected["id"])
                    );
                }
                (_, Some(f)) => {
                    let Some(ExpectedRecord::Present(v)) = exp else {
                        panic!("{d:?}")
                    };
                    assert_eq!(v.get(f), Some(&d.expected), "{d:?}");
                }
                _ => panic!("unexpected defect shape {d:?}"),
            }
        }
        // A record without defects: the view equals the truth's canonical form.
        let id = s
            .truth
            .candidates
            .iter()
            .map(id_of)
            .find(|id| !m.defects.iter().any(|d| d.id == id.to_string()))
            .expect("some candidate without defects");
        let mut view =
            crate::canonical::canonical_view(&s.truth, Entity::Candidate, id).expect("in truth");
        let e = m
            .expected("candidate", &id.to_string())
            .expect("expected view");
        assert!(compare_view(&e, Some(&view)).is_empty());
        view.insert("title".into(), json!("changed"));
        assert_eq!(compare_view(&e, Some(&view)).len(), 1);
    }

    #[test]
    fn pushed_records_have_the_documented_push_shape() {
        let s = Scenario::generate(&ScenarioSpec {
            candidates: 150,
            ..Default::default()
        });
        assert!(!s.pushed.is_empty());
        for r in s.pushed.iter() {
            let o = r.as_object().expect("object");
            let entity = r["entity"].as_str().expect("entity");
            let mut members: Vec<&str> = o.keys().map(String::as_str).collect();
            members.sort_unstable();
            let mut want = vec!["entity", "fields", "id", "op", "updated_at"];
            if entity == "attachment" {
                want.push("candidate_id");
                want.sort_unstable();
                assert!(r["candidate_id"].is_string(), "{r}");
                let mut fields: Vec<&str> = r["fields"]
                    .as_object()
                    .expect("fields")
                    .keys()
                    .map(String::as_str)
                    .collect();
                fields.sort_unstable();
                assert_eq!(fields, ["created_at", "filename", "type"], "{r}");
            }
            assert_eq!(members, want, "{r}");
            assert!(r["id"].is_string() && r["op"] == "upsert", "{r}");
            assert!(
                r["updated_at"]
                    .as_str()
                    .and_then(crate::model::parse_ts)
                    .is_some(),
                "{r}"
            );
        }
        assert_eq!(
            s.pushed.json_lines().count(),
            s.pushed.len(),
            "one text per record"
        );
    }

    /// The manifest's views, recomputed eagerly from the truth and the pushed snapshot:
    /// a pushed record newer than the ATS wins on the fields it carries, attachments
    /// are a union by id (the truth wins), records missing from the truth are tombstones.
    fn eager_views(s: &Scenario) -> BTreeMap<(String, String), ExpectedRecord> {
        let mut pushed: HashMap<(String, String), Value> = HashMap::new();
        let mut pushed_atts: HashMap<String, Vec<Value>> = HashMap::new();
        for p in s.pushed.iter() {
            let (e, id) = (p["entity"].as_str().unwrap(), p["id"].as_str().unwrap());
            if e == "attachment" {
                let mut el = p["fields"].clone();
                set(&mut el, "id", json!(id));
                set(&mut el, "updated_at", p["updated_at"].clone());
                let c = p["candidate_id"].as_str().unwrap().to_string();
                pushed_atts.entry(c).or_default().push(el);
            } else {
                pushed.insert((e.to_string(), id.to_string()), p);
            }
        }
        let mut out = BTreeMap::new();
        for entity in [Entity::Candidate, Entity::Application, Entity::Job] {
            for v in s.truth.records(entity) {
                let id = id_of(v).to_string();
                let key = (entity.as_str().to_string(), id.clone());
                let mut view = record_fields(entity, v);
                if let Some(p) = pushed.remove(&key) {
                    let pu = p["updated_at"].as_str().and_then(crate::model::parse_ts);
                    if pu > crate::model::record_ts(v, "updated_at") {
                        view.extend(p["fields"].as_object().unwrap().clone());
                    }
                }
                if entity == Entity::Candidate {
                    let mut atts: BTreeMap<String, Value> = BTreeMap::new();
                    let truth_atts = s.truth.attachments_of(id_of(v));
                    for el in pushed_atts
                        .get(&id)
                        .into_iter()
                        .flatten()
                        .cloned()
                        .chain(truth_atts.into_iter().map(attachment_element))
                    {
                        atts.insert(el["id"].as_str().unwrap().to_string(), el);
                    }
                    if !atts.is_empty() {
                        view.insert(
                            ATTACHMENTS.into(),
                            Value::Array(atts.into_values().collect()),
                        );
                    }
                }
                out.insert(key, ExpectedRecord::Present(view));
            }
        }
        for (key, _) in pushed {
            out.insert(key, ExpectedRecord::Tombstone);
        }
        out
    }

    #[test]
    fn views_built_on_demand_equal_an_eager_recomputation() {
        let s = Scenario::generate(&ScenarioSpec {
            candidates: 400,
            push_newer_rate: 0.1,
            deleted_after_push_rate: 0.05,
            merged_after_push_rate: 0.05,
            stale_application_rate: 0.2,
            missing_resume_rate: 0.2,
            ..Default::default()
        });
        let eager = eager_views(&s);
        let lazy: Vec<((String, String), ExpectedRecord)> = s
            .manifest
            .expected_views
            .iter()
            .map(|(k, v)| (k.clone(), v))
            .collect();
        assert_eq!(lazy.len(), eager.len());
        for ((k, v), (ek, ev)) in lazy.iter().zip(&eager) {
            assert_eq!(k, ek);
            assert_eq!(v, ev, "{k:?}");
            assert_eq!(
                s.manifest.expected_views.is_tombstone(&k.0, &k.1),
                Some(*v == ExpectedRecord::Tombstone)
            );
        }
        assert!(
            lazy.iter().any(|(_, v)| *v == ExpectedRecord::Tombstone),
            "some tombstones"
        );
        assert_eq!(s.manifest.expected("candidate", "1"), None);
    }
}
