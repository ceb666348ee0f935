//! The seeded scenario generator: the ATS truth, the pushed snapshot with injected
//! defects, and the manifest of the right merged answer per record.
//!
//! Timeline: opportunities are created over two years up to `push_time` (= `now` − 2
//! days); the snapshot is pushed at `push_time`; between `push_time` and `now` the ATS
//! moves on (stages advance, opportunities are archived, anonymized or deleted). The
//! truth is the state at `now`. Each trap and defect is placed on chosen records (at
//! least one of each when its rate is above 0), and the ones that change a record after
//! the push are disjoint, so every expected value has exactly one reason.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::canonical::{
    ATTACHMENTS, Difference, ExpectedRecord, application_fields, attachments_from,
    candidate_fields, compare_view, file_element, job_fields, resume_element,
};
use crate::files::file_size;
use crate::model::{
    Application, ArchiveReason, Archived, Categories, Deleted, FileRec, LeverData, Opportunity,
    Phone, Posting, ResumeRec, Stage, StageChange, User, ms_ts, uuid_from,
};

/// What to generate. `Default` is a small realistic account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioSpec {
    pub seed: u64,
    /// Number of opportunities (candidacies).
    pub candidacies: usize,
    pub postings: usize,
    /// Share of opportunities whose person already had an earlier opportunity (same contact).
    pub shared_contact_rate: f64,
    /// Share of opportunities on a confidential posting (hence confidential).
    pub confidential_rate: f64,
    /// Share of (old) opportunities whose `updatedAt` is `null`.
    pub null_updated_rate: f64,
    /// Share of opportunities archived (hired or rejected) before the push.
    pub archived_rate: f64,
    /// Share of opportunities anonymized after the push.
    pub anonymized_rate: f64,
    /// Share of opportunities without an application.
    pub no_application_rate: f64,
    /// Mean resumes per opportunity (0..=2·mean, uniform).
    pub resumes_per_candidacy: f64,
    pub files_per_candidacy: f64,
    /// Opportunities given `many_resumes_count` resumes (beyond one page of 100).
    pub many_resumes: usize,
    pub many_resumes_count: usize,
    /// Share of opportunities with a resume whose first resume is absent from the push.
    pub missing_resume_rate: f64,
    /// Share of opportunities with emails pushed without the `emails` field.
    pub missing_emails_rate: f64,
    /// Share of opportunities with phones pushed without the `phones` field.
    pub missing_phones_rate: f64,
    /// Share of opportunities whose stage moved (or which were archived) after the push.
    pub stale_stage_rate: f64,
    /// Share of candidates, and separately of applications, whose pushed value is newer.
    pub push_newer_rate: f64,
    /// Share of opportunities deleted after the push.
    pub deleted_after_push_rate: f64,
    /// Opportunities deleted before the push (in the deleted list, never pushed).
    pub deleted_before_push: usize,
    /// The simulated "now" at the end of the scenario.
    pub now: DateTime<Utc>,
}

impl Default for ScenarioSpec {
    fn default() -> Self {
        ScenarioSpec {
            seed: 42,
            candidacies: 200,
            postings: 12,
            shared_contact_rate: 0.15,
            confidential_rate: 0.06,
            null_updated_rate: 0.04,
            archived_rate: 0.3,
            anonymized_rate: 0.02,
            no_application_rate: 0.05,
            resumes_per_candidacy: 1.0,
            files_per_candidacy: 0.4,
            many_resumes: 2,
            many_resumes_count: 103,
            missing_resume_rate: 0.05,
            missing_emails_rate: 0.05,
            missing_phones_rate: 0.05,
            stale_stage_rate: 0.05,
            push_newer_rate: 0.03,
            deleted_after_push_rate: 0.03,
            deleted_before_push: 3,
            now: Utc
                .with_ymd_and_hms(2026, 11, 1, 12, 0, 0)
                .single()
                .unwrap_or_default(),
        }
    }
}

/// The kinds of injected defects (the push disagrees with the truth).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefectKind {
    MissingResume,
    MissingEmails,
    MissingPhones,
    StaleStage,
    PushNewer,
    DeletedAfterPush,
    AnonymizedAfterPush,
}

/// Lever behaviours a scenario contains on purpose; values are opportunity ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trap {
    Confidential,
    NullUpdatedAt,
    /// Opportunities whose contact has two or more opportunities.
    SharedContact,
    /// Opportunities with more resumes than one page holds.
    ManyResumes,
    /// Archived (hired or rejected), not deleted.
    Archived,
    Anonymized,
    DeletedAfterPush,
    /// In the deleted list, deleted before the push, never pushed.
    DeletedBeforePush,
    /// An application without a posting.
    Prospect,
    NoApplication,
}

/// One injected defect. `pushed` is what the push said (`null` when it said nothing);
/// `expected` is what the merged view must hold for that field (`"tombstone"` for a
/// whole record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Defect {
    pub kind: DefectKind,
    pub entity: String,
    pub id: String,
    pub field: Option<String>,
    pub pushed: Value,
    pub expected: Value,
}

/// Everything a fidelity test needs to judge eds's merged views.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Manifest {
    pub push_time: DateTime<Utc>,
    pub defects: Vec<Defect>,
    /// Records affected per defect kind (a record with two changed fields counts once).
    pub counts: BTreeMap<DefectKind, usize>,
    pub traps: BTreeMap<Trap, Vec<String>>,
    /// `(entity, id)` -> the expected merged view of every record pushed or in the truth.
    /// Assumes a credential that can see confidential opportunities.
    #[serde(skip)]
    pub expected_views: BTreeMap<(String, String), ExpectedRecord>,
}

impl Manifest {
    pub fn expected(&self, entity: &str, id: &str) -> Option<&ExpectedRecord> {
        self.expected_views
            .get(&(entity.to_string(), id.to_string()))
    }

    /// Differences between an actual view and the expected one for a record.
    /// `actual = None` means eds has no live view (absent or tombstone).
    pub fn check(
        &self,
        entity: &str,
        id: &str,
        actual: Option<&Map<String, Value>>,
    ) -> Vec<Difference> {
        match (self.expected(entity, id), actual) {
            (Some(e), a) => compare_view(e, a),
            (None, None) => vec![],
            (None, Some(a)) => vec![Difference {
                field: "<record>".into(),
                expected: None,
                actual: Some(Value::Object(a.clone())),
            }],
        }
    }

    pub fn defects_of(&self, kind: DefectKind) -> impl Iterator<Item = &Defect> {
        self.defects.iter().filter(move |d| d.kind == kind)
    }

    pub fn trap(&self, t: Trap) -> &[String] {
        self.traps.get(&t).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// The pushed snapshot: push-format records (docs/push-format.md, without the tenant),
/// `{entity, id, op, updated_at, fields}` plus `candidate_id` on attachments.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct PushedSnapshot {
    records: Vec<Value>,
}

impl PushedSnapshot {
    pub fn len(&self) -> usize {
        self.records.len()
    }
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Value> + '_ {
        self.records.iter()
    }
    /// One JSON text per record (a JSON-lines file).
    pub fn json_lines(&self) -> impl ExactSizeIterator<Item = String> + '_ {
        self.records.iter().map(Value::to_string)
    }
    pub fn to_vec(&self) -> Vec<Value> {
        self.records.clone()
    }
}

/// A generated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub truth: LeverData,
    pub pushed: PushedSnapshot,
    pub manifest: Manifest,
}

const FIRST: &[&str] = &[
    "Amira",
    "Bao",
    "Camille",
    "Dario",
    "Eszter",
    "Farid",
    "Greta",
    "Hamza",
    "Ines",
    "Jonas",
    "Keiko",
    "Leandro",
    "Małgorzata",
    "Nils",
    "Oksana",
    "Pedro",
    "Ragnhild",
    "Sanjay",
    "Thérèse",
    "Ugo",
    "Vera",
    "Wanjiru",
    "Xavier",
    "Yara",
    "Zeynep",
    "Åsa",
    "Çağla",
    "Đorđe",
];
const LAST: &[&str] = &[
    "Achterberg",
    "Bianchi",
    "Caruso",
    "de la Cruz",
    "Eriksen",
    "Fontaine",
    "Gómez",
    "Hoffmann",
    "Iwasaki",
    "Jovanović",
    "Kaczmarek",
    "Larsen",
    "Mbeki",
    "Nakamura",
    "O'Connor",
    "Petrov",
    "Quispe",
    "Rahman",
    "Schäfer",
    "Tran",
    "Uçar",
    "Virtanen",
    "Wójcik",
    "Zhang",
    "van Dijk",
];
const COMPANIES: &[&str] = &[
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Blue Yonder",
    "Müller & Söhne",
    "Tailspin",
    "Litware",
    "Proseware",
    "Wide World Importers",
    "Adventure Works",
];
const CITIES: &[&str] = &[
    "Berlin, Germany",
    "Lisbon, Portugal",
    "Toronto, Canada",
    "Austin, TX",
    "Kraków, Poland",
    "Nairobi, Kenya",
    "Osaka, Japan",
    "São Paulo, Brazil",
];
const TAGS: &[&str] = &[
    "Rust",
    "Go",
    "Design",
    "Sales",
    "Referral",
    "Silver medalist",
    "Relocation",
    "Remote",
];
const SOURCES: &[&str] = &[
    "LinkedIn",
    "Company website",
    "Referral",
    "Agency",
    "Indeed",
];
const STAGES: &[&str] = &[
    "New lead",
    "Reached out",
    "New applicant",
    "Recruiter screen",
    "Phone interview",
    "On-site interview",
    "Offer",
];
const REASONS: &[(&str, &str)] = &[
    ("Hired", "hired"),
    ("Underqualified", "non-hired"),
    ("Withdrew", "non-hired"),
    ("Position filled", "non-hired"),
    ("Timing", "non-hired"),
];
const JOBS: &[&str] = &[
    "Backend Engineer",
    "Frontend Engineer",
    "Account Executive DACH",
    "Data Analyst",
    "People Partner",
    "Site Reliability Engineer",
    "Product Designer",
    "Customer Success Manager",
];
const TEAMS: &[(&str, &str)] = &[
    ("Engineering", "Platform"),
    ("Engineering", "Web"),
    ("Sales", "EMEA"),
    ("Data", "Analytics"),
    ("People", "HR"),
];
const DOMAINS: &[&str] = &["example.com", "mail.example.org", "post.example"];

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
    /// A time in `[a, b)` (epoch ms).
    fn between(&mut self, a: i64, b: i64) -> i64 {
        a + self.rng.random_range(0..(b - a).max(1))
    }
    fn id(&mut self) -> String {
        uuid_from(&mut self.rng)
    }
}

fn ascii(s: &str) -> String {
    let out: String = s
        .chars()
        .filter_map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => Some(c),
            'é' | 'è' | 'É' => Some('e'),
            'ä' | 'á' | 'å' | 'Å' => Some('a'),
            'ö' | 'ó' => Some('o'),
            'ü' | 'ú' => Some('u'),
            'ç' | 'Ç' | 'ć' => Some('c'),
            'ğ' => Some('g'),
            'ł' => Some('l'),
            'đ' | 'Đ' => Some('d'),
            _ => None,
        })
        .collect();
    if out.is_empty() { "x".into() } else { out }
}

/// `max(1, round(rate · n))` records when the rate is above 0, else none.
fn quota(rate: f64, n: usize) -> usize {
    if rate <= 0.0 || n == 0 {
        0
    } else {
        ((rate * n as f64).round() as usize).clamp(1, n)
    }
}

/// What happens to an opportunity after the push (exclusive), or a trap that must not
/// meet a post-push change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Plain,
    Deleted,
    Anonymized,
    NullUpdated,
    Stale,
    PushNewerCandidate,
    PushNewerApplication,
    ManyResumes,
}

fn assign(roles: &mut [Role], order: &[usize], role: Role, k: usize, ok: impl Fn(usize) -> bool) {
    let mut taken = 0;
    for &i in order {
        if taken == k {
            break;
        }
        if roles[i] == Role::Plain && ok(i) {
            roles[i] = role;
            taken += 1;
        }
    }
}

/// A person: the data Lever keeps on the contact, shared by its opportunities.
struct Person {
    id: String,
    name: String,
    headline: String,
    location: String,
    emails: Vec<String>,
    phones: Vec<Phone>,
    links: Vec<String>,
}

fn person(g: &mut Gen) -> Person {
    let first = g.pick(FIRST);
    let last = g.pick(LAST);
    let local = format!("{}.{}", ascii(first), ascii(last));
    let n_emails = if g.chance(0.92) {
        g.rng.random_range(1..=2)
    } else {
        0
    };
    let emails = (0..n_emails)
        .map(|k| {
            let suffix = if k == 0 { String::new() } else { k.to_string() };
            format!("{local}{suffix}@{}", g.pick(DOMAINS))
        })
        .collect();
    let n_phones = if g.chance(0.85) {
        g.rng.random_range(1..=2)
    } else {
        0
    };
    let phones = (0..n_phones)
        .map(|k| Phone {
            kind: Some(["mobile", "work", "home"][k % 3].to_string()),
            value: format!("+49 15{k} {:07}", g.rng.random_range(0..10_000_000u32)),
        })
        .collect();
    let links = if g.chance(0.5) {
        vec![format!("https://linkedin.example/in/{local}")]
    } else {
        vec![]
    };
    let headline = if g.chance(0.8) {
        format!("{}, {}", g.pick(COMPANIES), g.pick(COMPANIES))
    } else {
        String::new()
    };
    let location = if g.chance(0.75) {
        g.pick(CITIES).to_string()
    } else {
        String::new()
    };
    Person {
        id: g.id(),
        name: format!("{first} {last}"),
        headline,
        location,
        emails,
        phones,
        links,
    }
}

fn push_record(
    entity: &str,
    id: &str,
    updated_ms: i64,
    candidate_id: Option<&str>,
    fields: Map<String, Value>,
) -> Value {
    let mut r =
        json!({"entity": entity, "id": id, "op": "upsert", "updated_at": ms_ts(updated_ms)});
    if let Some(c) = candidate_id {
        r["candidate_id"] = json!(c);
    }
    r["fields"] = Value::Object(fields);
    r
}

/// An attachment element as push fields: without `id` and `updated_at` (members of the
/// record), see docs/push-format.md.
fn attachment_push(el: &Value, candidate: &str) -> Value {
    let id = el["id"].as_str().unwrap_or_default();
    let updated = el["updated_at"].clone();
    let mut f = Map::new();
    for k in ["filename", "type", "created_at"] {
        f.insert(k.into(), el[k].clone());
    }
    json!({"entity": "attachment", "id": id, "candidate_id": candidate, "op": "upsert",
        "updated_at": updated, "fields": f})
}

struct Defects {
    list: Vec<Defect>,
    affected: BTreeMap<DefectKind, std::collections::BTreeSet<(String, String)>>,
}

impl Defects {
    fn add(
        &mut self,
        kind: DefectKind,
        entity: &str,
        id: &str,
        field: Option<&str>,
        pushed: Value,
        expected: Value,
    ) {
        self.list.push(Defect {
            kind,
            entity: entity.into(),
            id: id.into(),
            field: field.map(str::to_string),
            pushed,
            expected,
        });
        self.affected
            .entry(kind)
            .or_default()
            .insert((entity.into(), id.into()));
    }
}

impl Scenario {
    /// Generates a scenario; the same spec always gives the same scenario.
    pub fn generate(spec: &ScenarioSpec) -> Scenario {
        let mut g = Gen {
            rng: ChaCha8Rng::seed_from_u64(spec.seed),
        };
        let now = spec.now.timestamp_millis();
        let push = now - Duration::days(2).num_milliseconds();
        let origin = now - Duration::days(730).num_milliseconds();
        let min = Duration::minutes(1).num_milliseconds();
        let mut data = LeverData {
            now: spec.now,
            file_seed: spec.seed.wrapping_mul(31).wrapping_add(11),
            ..Default::default()
        };

        // Account-wide lists.
        for i in 0..20 {
            let (f, l) = (FIRST[i % FIRST.len()], LAST[(i * 7) % LAST.len()]);
            data.users.push(User {
                id: g.id(),
                name: format!("{f} {l}"),
                email: format!("{}@company.example", ascii(f)),
                access_role: if i < 3 { "super admin" } else { "interviewer" }.into(),
            });
        }
        let users: Vec<String> = data.users.iter().map(|u| u.id.clone()).collect();
        for s in STAGES {
            data.stages.push(Stage {
                id: g.id(),
                text: (*s).into(),
            });
        }
        for (text, status) in REASONS {
            data.archive_reasons.push(ArchiveReason {
                id: g.id(),
                text: (*text).into(),
                status: (*status).into(),
            });
        }
        let hired_reason = data.archive_reasons[0].id.clone();

        // Postings; the second one is confidential.
        let n_postings = spec.postings.max(2);
        for i in 0..n_postings {
            let created = g.between(origin, origin + Duration::days(300).num_milliseconds());
            let (team, dept) = TEAMS[g.rng.random_range(0..TEAMS.len())];
            let state = if i < 2 {
                "published"
            } else {
                [
                    "published",
                    "published",
                    "internal",
                    "closed",
                    "draft",
                    "pending",
                ][g.rng.random_range(0..6)]
            };
            let location = g.pick(CITIES).to_string();
            data.postings.push(Posting {
                id: g.id(),
                text: g.pick(JOBS).into(),
                state: state.into(),
                confidentiality: if i == 1 {
                    "confidential"
                } else {
                    "non-confidential"
                }
                .into(),
                distribution_channels: if state == "published" {
                    vec!["public".into(), "internal".into()]
                } else {
                    vec![]
                },
                user: Some(users[0].clone()),
                owner: Some(users[g.rng.random_range(0..users.len())].clone()),
                hiring_manager: Some(users[g.rng.random_range(0..users.len())].clone()),
                followers: vec![],
                categories: Categories {
                    team: Some(team.into()),
                    department: Some(dept.into()),
                    location: Some(location.clone()),
                    commitment: Some(g.pick(&["Full-time", "Part-time", "Contract"]).into()),
                    all_locations: vec![location],
                },
                tags: vec![],
                workplace_type: g.pick(&["onsite", "remote", "hybrid"]).into(),
                requisition_codes: if g.chance(0.6) {
                    vec![format!("REQ-{:04}", 100 + i)]
                } else {
                    vec![]
                },
                created_at: created,
                updated_at: g.between(created, push - 10 * min),
            });
        }
        let open_postings: Vec<usize> = (0..n_postings).filter(|&i| i != 1).collect();

        // Who is who: contacts (some people have several opportunities), roles, traps.
        let n = spec.candidacies;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut g.rng);
        let mut shared = vec![false; n];
        for &i in order
            .iter()
            .filter(|&&i| i > 0)
            .take(quota(spec.shared_contact_rate, n.saturating_sub(1)))
        {
            shared[i] = true;
        }
        let mut people: Vec<Person> = vec![];
        let mut contact_of = vec![0usize; n];
        for i in 0..n {
            contact_of[i] = if shared[i] {
                contact_of[g.rng.random_range(0..i)]
            } else {
                people.push(person(&mut g));
                people.len() - 1
            };
        }
        let mut per_contact = vec![0usize; people.len()];
        for &c in &contact_of {
            per_contact[c] += 1;
        }
        let mut roles = vec![Role::Plain; n];
        order.shuffle(&mut g.rng);
        let alone = |i: usize| per_contact[contact_of[i]] == 1;
        assign(
            &mut roles,
            &order,
            Role::ManyResumes,
            spec.many_resumes.min(n),
            |_| true,
        );
        assign(
            &mut roles,
            &order,
            Role::Anonymized,
            quota(spec.anonymized_rate, n),
            alone,
        );
        assign(
            &mut roles,
            &order,
            Role::NullUpdated,
            quota(spec.null_updated_rate, n),
            |i| i < n / 2,
        );
        for (role, rate) in [
            (Role::Deleted, spec.deleted_after_push_rate),
            (Role::Stale, spec.stale_stage_rate),
            (Role::PushNewerCandidate, spec.push_newer_rate),
            (Role::PushNewerApplication, spec.push_newer_rate),
        ] {
            assign(&mut roles, &order, role, quota(rate, n), |_| true);
        }
        order.shuffle(&mut g.rng);
        let mut confidential = vec![false; n];
        for &i in order.iter().take(quota(spec.confidential_rate, n)) {
            confidential[i] = true;
        }

        // Phase 1: every opportunity as it was at push time.
        let mut opps: Vec<Opportunity> = Vec::with_capacity(n);
        let mut apps: Vec<Option<Application>> = Vec::with_capacity(n);
        let mut resumes: Vec<Vec<ResumeRec>> = Vec::with_capacity(n);
        let mut files: Vec<Vec<FileRec>> = Vec::with_capacity(n);
        let span = (push - Duration::hours(2).num_milliseconds() - origin).max(1);
        let last_stage = STAGES.len() - 1;
        for i in 0..n {
            let role = roles[i];
            let p = &people[contact_of[i]];
            let created =
                origin + span * i as i64 / n.max(1) as i64 + g.rng.random_range(0..60_000);
            let updated =
                created + ((push - min - created) as f64 * g.rng.random::<f64>().powi(3)) as i64;
            let archived = role != Role::Stale && g.chance(spec.archived_rate);
            let stage_idx = if archived {
                g.rng.random_range(2..=last_stage)
            } else {
                g.rng.random_range(0..last_stage)
            };
            let mut stage_changes = vec![];
            let mut t = created;
            for s in 0..=stage_idx {
                if s > 0 {
                    t = g.between(t, updated.max(t + 1));
                }
                stage_changes.push(StageChange {
                    to_stage_id: data.stages[s].id.clone(),
                    to_stage_index: s,
                    updated_at: t,
                    user_id: Some(users[g.rng.random_range(0..users.len())].clone()),
                });
            }
            let archived = archived.then(|| Archived {
                archived_at: updated,
                reason: if g.chance(0.25) {
                    hired_reason.clone()
                } else {
                    data.archive_reasons[g.rng.random_range(1..REASONS.len())]
                        .id
                        .clone()
                },
            });
            let needs_app =
                confidential[i] || matches!(role, Role::Stale | Role::PushNewerApplication);
            let has_app = needs_app || !g.chance(spec.no_application_rate);
            let kind = if confidential[i] {
                "posting"
            } else {
                [
                    "posting", "posting", "posting", "posting", "user", "referral",
                ][g.rng.random_range(0..6)]
            };
            let posting = if confidential[i] {
                Some(data.postings[1].id.clone())
            } else if kind == "user" && g.chance(0.5) {
                None
            } else {
                Some(
                    data.postings[open_postings[g.rng.random_range(0..open_postings.len())]]
                        .id
                        .clone(),
                )
            };
            let owner = users[g.rng.random_range(0..users.len())].clone();
            let id = g.id();
            let app = has_app.then(|| {
                let post = posting
                    .as_ref()
                    .and_then(|pid| data.postings.iter().find(|x| &x.id == pid));
                Application {
                    id: g.id(),
                    opportunity_id: id.clone(),
                    candidate_id: id.clone(),
                    created_at: created + g.rng.random_range(0..5_000),
                    kind: kind.into(),
                    posting: posting.clone(),
                    posting_hiring_manager: post.and_then(|x| x.hiring_manager.clone()),
                    posting_owner: post.and_then(|x| x.owner.clone()),
                    user: (kind != "posting")
                        .then(|| users[g.rng.random_range(0..users.len())].clone()),
                    name: p.name.clone(),
                    email: p.emails.first().cloned(),
                    phone: p.phones.first().cloned(),
                    company: None,
                    links: p.links.clone(),
                    comments: None,
                    custom_questions: vec![],
                    requisition_for_hire: None,
                }
            });
            let tags: Vec<String> = {
                let mut t: Vec<String> = (0..g.rng.random_range(0..=3))
                    .map(|_| g.pick(TAGS).to_string())
                    .collect();
                t.sort();
                t.dedup();
                t
            };
            let source = match kind {
                "referral" => "Referral",
                _ => g.pick(SOURCES),
            };
            opps.push(Opportunity {
                id: id.clone(),
                name: p.name.clone(),
                headline: p.headline.clone(),
                contact: p.id.clone(),
                location: p.location.clone(),
                phones: p.phones.clone(),
                emails: p.emails.clone(),
                links: p.links.clone(),
                stage: data.stages[stage_idx].id.clone(),
                last_advanced_at: stage_changes
                    .last()
                    .map(|s| s.updated_at)
                    .unwrap_or(created),
                stage_changes,
                confidentiality: if confidential[i] {
                    "confidential"
                } else {
                    "non-confidential"
                }
                .into(),
                archived,
                tags,
                sources: vec![source.into()],
                origin: match kind {
                    "referral" => "referred",
                    "user" => "sourced",
                    _ => "applied",
                }
                .into(),
                owner: Some(owner.clone()),
                followers: vec![owner],
                applications: app.iter().map(|a| a.id.clone()).collect(),
                created_at: created,
                updated_at: (role != Role::NullUpdated).then_some(updated),
                last_interaction_at: updated,
                snoozed_until: None,
                is_anonymized: false,
            });
            apps.push(app);
            let n_resumes = match role {
                Role::Anonymized => 0,
                Role::ManyResumes => spec.many_resumes_count,
                _ => g.count(spec.resumes_per_candidacy),
            };
            let first_last = p.name.replace(' ', "_");
            let mut rs: Vec<ResumeRec> = (0..n_resumes)
                .map(|k| {
                    let rid = g.id();
                    let at = g.between(created, push - min);
                    ResumeRec {
                        size: file_size(data.file_seed, &rid) as u64,
                        name: if k == 0 {
                            format!("{first_last}_CV.pdf")
                        } else {
                            format!("{first_last}_CV_v{}.pdf", k + 1)
                        },
                        id: rid,
                        opportunity_id: id.clone(),
                        created_at: at,
                        ext: "pdf".into(),
                        uploaded_at: at,
                    }
                })
                .collect();
            rs.sort_by_key(|r| r.created_at);
            resumes.push(rs);
            let n_files = if role == Role::Anonymized {
                0
            } else {
                g.count(spec.files_per_candidacy)
            };
            let fs: Vec<FileRec> = (0..n_files)
                .map(|k| {
                    let fid = g.id();
                    let at = g.between(created, push - min);
                    FileRec {
                        size: file_size(data.file_seed, &fid) as u64,
                        name: ["Portfolio.pdf", "Cover letter.pdf", "Work sample.pdf"][k % 3]
                            .into(),
                        id: fid,
                        opportunity_id: id.clone(),
                        ext: "pdf".into(),
                        uploaded_at: at,
                    }
                })
                .collect();
            files.push(fs);
        }
        data.postings.sort_by_key(|p| p.created_at);

        // Phase 2: the pushed snapshot (state at push time) with its defects.
        let mut d = Defects {
            list: vec![],
            affected: BTreeMap::new(),
        };
        let mut overlays: HashMap<(String, String), Map<String, Value>> = HashMap::new();
        let mut pushed: Vec<Value> = vec![];
        for p in &data.postings {
            pushed.push(push_record("job", &p.id, p.updated_at, None, job_fields(p)));
        }
        let live = |i: usize| roles[i] != Role::Deleted && roles[i] != Role::Anonymized;
        let pick_defect = |g: &mut Gen, rate: f64, ok: &dyn Fn(usize) -> bool| {
            let mut idx: Vec<usize> = (0..n).filter(|&i| ok(i)).collect();
            idx.shuffle(&mut g.rng);
            // A null-updatedAt one first when it qualifies: only a full read backfills it.
            idx.sort_by_key(|&i| roles[i] != Role::NullUpdated);
            let mut out = vec![false; n];
            for &i in idx.iter().take(quota(rate, n).min(idx.len())) {
                out[i] = true;
            }
            out
        };
        let miss_emails = pick_defect(&mut g, spec.missing_emails_rate, &|i| {
            live(i) && !opps[i].emails.is_empty()
        });
        let miss_phones = pick_defect(&mut g, spec.missing_phones_rate, &|i| {
            live(i) && !opps[i].phones.is_empty()
        });
        let miss_resume = pick_defect(&mut g, spec.missing_resume_rate, &|i| {
            live(i) && !resumes[i].is_empty()
        });
        let reason_of = |o: &Opportunity| {
            o.archived
                .as_ref()
                .and_then(|a| data.archive_reasons.iter().find(|r| r.id == a.reason))
        };
        let stage_text = |id: &str| {
            data.stages
                .iter()
                .find(|s| s.id == id)
                .map(|s| s.text.as_str())
        };
        for i in 0..n {
            let o = &opps[i];
            let ats_time = o.updated_at.unwrap_or(o.created_at);
            let mut fields = candidate_fields(o);
            let mut pushed_time = ats_time;
            if roles[i] == Role::PushNewerCandidate {
                let mut tags = o.tags.clone();
                tags.push("HRIS: verified".into());
                fields.insert("tags".into(), json!(tags));
                pushed_time = ats_time + g.rng.random_range(1_000..7_200_000);
                d.add(
                    DefectKind::PushNewer,
                    "candidate",
                    &o.id,
                    Some("tags"),
                    json!(tags),
                    json!(tags),
                );
                overlays.insert(
                    ("candidate".into(), o.id.clone()),
                    Map::from_iter([("tags".to_string(), json!(tags))]),
                );
            }
            for (on, field, kind) in [
                (miss_emails[i], "emails", DefectKind::MissingEmails),
                (miss_phones[i], "phones", DefectKind::MissingPhones),
            ] {
                if on {
                    let truth = fields.remove(field).unwrap_or(Value::Null);
                    d.add(kind, "candidate", &o.id, Some(field), Value::Null, truth);
                }
            }
            pushed.push(push_record("candidate", &o.id, pushed_time, None, fields));
            if let Some(a) = &apps[i] {
                let mut f = application_fields(a, o, stage_text(&o.stage), reason_of(o));
                let mut t = ats_time;
                if roles[i] == Role::PushNewerApplication {
                    let v = json!("Offer (pushed by HRIS)");
                    f.insert("stage_name".into(), v.clone());
                    t = ats_time + g.rng.random_range(1_000..7_200_000);
                    d.add(
                        DefectKind::PushNewer,
                        "application",
                        &a.id,
                        Some("stage_name"),
                        v.clone(),
                        v.clone(),
                    );
                    overlays.insert(
                        ("application".into(), a.id.clone()),
                        Map::from_iter([("stage_name".to_string(), v)]),
                    );
                }
                pushed.push(push_record("application", &a.id, t, None, f));
            }
            for (k, r) in resumes[i].iter().enumerate() {
                let el = resume_element(r);
                if k == 0 && miss_resume[i] {
                    d.add(
                        DefectKind::MissingResume,
                        "candidate",
                        &o.id,
                        Some(ATTACHMENTS),
                        Value::Null,
                        el,
                    );
                    continue;
                }
                pushed.push(attachment_push(&el, &o.id));
            }
            for f in &files[i] {
                pushed.push(attachment_push(&file_element(f), &o.id));
            }
        }

        // Phase 3: the ATS moves on after the push.
        let mut deleted: Vec<Deleted> = (0..spec.deleted_before_push)
            .map(|_| Deleted {
                id: g.id(),
                deleted_at: g.between(origin, push - min),
                deleted_by: Some(users[g.rng.random_range(0..users.len())].clone()),
            })
            .collect();
        let mut traps: BTreeMap<Trap, Vec<String>> = BTreeMap::new();
        traps.insert(
            Trap::DeletedBeforePush,
            deleted.iter().map(|x| x.id.clone()).collect(),
        );
        let mut keep = vec![true; n];
        for i in 0..n {
            let t = g.between(push + min, now - 10 * min);
            let before_c = candidate_fields(&opps[i]);
            let before_a = apps[i].as_ref().map(|a| {
                application_fields(a, &opps[i], stage_text(&opps[i].stage), reason_of(&opps[i]))
            });
            let o = &mut opps[i];
            match roles[i] {
                Role::Deleted => {
                    keep[i] = false;
                    deleted.push(Deleted {
                        id: o.id.clone(),
                        deleted_at: t,
                        deleted_by: Some(users[g.rng.random_range(0..users.len())].clone()),
                    });
                    d.add(
                        DefectKind::DeletedAfterPush,
                        "candidate",
                        &o.id,
                        None,
                        Value::Null,
                        json!("tombstone"),
                    );
                    if let Some(a) = &apps[i] {
                        d.add(
                            DefectKind::DeletedAfterPush,
                            "application",
                            &a.id,
                            None,
                            Value::Null,
                            json!("tombstone"),
                        );
                    }
                }
                Role::Stale => {
                    let cur = data
                        .stages
                        .iter()
                        .position(|s| s.id == o.stage)
                        .unwrap_or(0);
                    if cur < last_stage && g.chance(0.7) {
                        o.stage = data.stages[cur + 1].id.clone();
                        o.stage_changes.push(StageChange {
                            to_stage_id: o.stage.clone(),
                            to_stage_index: cur + 1,
                            updated_at: t,
                            user_id: o.owner.clone(),
                        });
                        o.last_advanced_at = t;
                    } else {
                        o.archived = Some(Archived {
                            archived_at: t,
                            reason: data.archive_reasons
                                [1 + g.rng.random_range(0..REASONS.len() - 1)]
                            .id
                            .clone(),
                        });
                    }
                    o.updated_at = Some(t);
                    o.last_interaction_at = t;
                }
                Role::Anonymized => {
                    o.name = "Anonymized".into();
                    o.headline = String::new();
                    o.location = String::new();
                    o.emails.clear();
                    o.phones.clear();
                    o.links.clear();
                    o.is_anonymized = true;
                    o.updated_at = Some(t);
                    if let Some(a) = apps[i].as_mut() {
                        a.name = "Anonymized".into();
                        a.email = None;
                        a.phone = None;
                        a.links.clear();
                    }
                }
                _ => {}
            }
            let o = &opps[i];
            let (kind, after_c) = match roles[i] {
                Role::Stale => (DefectKind::StaleStage, candidate_fields(o)),
                Role::Anonymized => (DefectKind::AnonymizedAfterPush, candidate_fields(o)),
                _ => continue,
            };
            if roles[i] == Role::Anonymized {
                for (k, v) in &after_c {
                    if before_c.get(k) != Some(v) && k != "last_activity_at" {
                        d.add(
                            kind,
                            "candidate",
                            &o.id,
                            Some(k),
                            before_c[k].clone(),
                            v.clone(),
                        );
                    }
                }
            }
            if let (Some(a), Some(before)) = (&apps[i], before_a) {
                let after = application_fields(a, o, stage_text(&o.stage), reason_of(o));
                if kind == DefectKind::StaleStage {
                    for k in ["status", "stage_id", "stage_name"] {
                        if before.get(k) != after.get(k) {
                            d.add(
                                kind,
                                "application",
                                &a.id,
                                Some(k),
                                before[k].clone(),
                                after[k].clone(),
                            );
                        }
                    }
                }
            }
        }
        deleted.sort_by_key(|x| x.deleted_at);
        data.deleted = deleted;

        // The truth at `now`, and the manifest: truth in canonical form, newer pushed
        // fields on top, tombstones for what the ATS no longer has.
        let mut views: BTreeMap<(String, String), ExpectedRecord> = BTreeMap::new();
        for i in 0..n {
            let o = &opps[i];
            let tag = |traps: &mut BTreeMap<Trap, Vec<String>>, t: Trap| {
                traps.entry(t).or_default().push(o.id.clone());
            };
            match roles[i] {
                Role::Deleted => tag(&mut traps, Trap::DeletedAfterPush),
                Role::Anonymized => tag(&mut traps, Trap::Anonymized),
                Role::NullUpdated => tag(&mut traps, Trap::NullUpdatedAt),
                Role::ManyResumes => tag(&mut traps, Trap::ManyResumes),
                _ => {}
            }
            if !keep[i] {
                continue;
            }
            if o.is_confidential() {
                tag(&mut traps, Trap::Confidential);
            }
            if per_contact[contact_of[i]] > 1 {
                tag(&mut traps, Trap::SharedContact);
            }
            if o.archived.is_some() {
                tag(&mut traps, Trap::Archived);
            }
            match &apps[i] {
                None => tag(&mut traps, Trap::NoApplication),
                Some(a) if a.posting.is_none() => tag(&mut traps, Trap::Prospect),
                Some(_) => {}
            }
            let mut view = candidate_fields(o);
            let key = ("candidate".to_string(), o.id.clone());
            if let Some(ov) = overlays.remove(&key) {
                view.extend(ov);
            }
            let atts = attachments_from(&resumes[i], &files[i]);
            if !atts.is_empty() {
                view.insert(ATTACHMENTS.into(), Value::Array(atts));
            }
            views.insert(key, ExpectedRecord::Present(view));
            if let Some(a) = &apps[i] {
                let mut view = application_fields(a, o, stage_text(&o.stage), reason_of(o));
                let key = ("application".to_string(), a.id.clone());
                if let Some(ov) = overlays.remove(&key) {
                    view.extend(ov);
                }
                views.insert(key, ExpectedRecord::Present(view));
            }
        }
        for i in 0..n {
            if keep[i] {
                data.opportunities.push(opps[i].clone());
                data.applications.extend(apps[i].iter().cloned());
                data.resumes.extend(resumes[i].iter().cloned());
                data.files.extend(files[i].iter().cloned());
            }
        }
        for p in &data.postings {
            views.insert(
                ("job".to_string(), p.id.clone()),
                ExpectedRecord::Present(job_fields(p)),
            );
        }
        for r in &pushed {
            let (e, id) = (
                r["entity"].as_str().unwrap_or_default(),
                r["id"].as_str().unwrap_or_default(),
            );
            if e != "attachment" {
                views
                    .entry((e.to_string(), id.to_string()))
                    .or_insert(ExpectedRecord::Tombstone);
            }
        }

        Scenario {
            truth: data,
            pushed: PushedSnapshot { records: pushed },
            manifest: Manifest {
                push_time: crate::model::from_ms(push),
                counts: d.affected.into_iter().map(|(k, v)| (k, v.len())).collect(),
                defects: d.list,
                traps,
                expected_views: views,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::canonical_view;
    use std::collections::HashSet;

    fn small() -> Scenario {
        Scenario::generate(&ScenarioSpec::default())
    }

    #[test]
    fn generation_is_deterministic_per_seed() {
        let spec = ScenarioSpec {
            candidacies: 80,
            ..Default::default()
        };
        let (a, b) = (Scenario::generate(&spec), Scenario::generate(&spec));
        assert_eq!(
            serde_json::to_string(&a.truth).ok(),
            serde_json::to_string(&b.truth).ok()
        );
        assert_eq!(a.pushed, b.pushed);
        assert_eq!(a.manifest.defects, b.manifest.defects);
        let c = Scenario::generate(&ScenarioSpec { seed: 7, ..spec });
        assert_ne!(
            serde_json::to_string(&a.truth).ok(),
            serde_json::to_string(&c.truth).ok()
        );
    }

    #[test]
    fn the_default_scenario_contains_every_trap_and_defect() {
        let s = small();
        for t in [
            Trap::Confidential,
            Trap::NullUpdatedAt,
            Trap::SharedContact,
            Trap::ManyResumes,
            Trap::Archived,
            Trap::Anonymized,
            Trap::DeletedAfterPush,
            Trap::DeletedBeforePush,
            Trap::Prospect,
        ] {
            assert!(!s.manifest.trap(t).is_empty(), "{t:?} missing");
        }
        for k in [
            DefectKind::MissingResume,
            DefectKind::MissingEmails,
            DefectKind::MissingPhones,
            DefectKind::StaleStage,
            DefectKind::PushNewer,
            DefectKind::DeletedAfterPush,
            DefectKind::AnonymizedAfterPush,
        ] {
            assert!(
                s.manifest.counts.get(&k).copied().unwrap_or(0) > 0,
                "{k:?} missing"
            );
        }
    }

    #[test]
    fn traps_have_the_lever_shape_they_claim() {
        let s = small();
        let (t, m) = (&s.truth, &s.manifest);
        for id in m.trap(Trap::Confidential) {
            let o = t.opportunity(id).unwrap();
            assert!(o.is_confidential());
            let a = t.application(&o.applications[0]).unwrap();
            let p = t.posting(a.posting.as_deref().unwrap()).unwrap();
            assert_eq!(p.confidentiality, "confidential");
        }
        for id in m.trap(Trap::NullUpdatedAt) {
            assert_eq!(t.opportunity(id).unwrap().updated_at, None);
        }
        assert!(
            t.opportunities
                .iter()
                .filter(|o| o.updated_at.is_none())
                .count()
                == m.trap(Trap::NullUpdatedAt).len()
        );
        // Only a full (unfiltered) read can backfill this one.
        assert!(
            m.defects_of(DefectKind::MissingEmails)
                .any(|d| m.trap(Trap::NullUpdatedAt).contains(&d.id))
        );
        for id in m.trap(Trap::ManyResumes) {
            assert!(t.resumes_of(id).count() > 100);
        }
        for id in m.trap(Trap::SharedContact) {
            let o = t.opportunity(id).unwrap();
            let same: Vec<&Opportunity> = t
                .opportunities
                .iter()
                .filter(|x| x.contact == o.contact)
                .collect();
            assert!(same.len() >= 2);
            for x in same {
                assert_eq!(
                    (&x.name, &x.emails, &x.phones),
                    (&o.name, &o.emails, &o.phones)
                );
            }
        }
        for id in m.trap(Trap::Anonymized) {
            let o = t.opportunity(id).unwrap();
            assert!(o.is_anonymized && o.emails.is_empty() && o.name == "Anonymized");
            assert!(o.updated_at.unwrap() > m.push_time.timestamp_millis());
        }
        for id in m.trap(Trap::Archived) {
            assert!(t.opportunity(id).unwrap().archived.is_some());
        }
        let deleted: HashSet<&str> = t.deleted.iter().map(|d| d.id.as_str()).collect();
        for id in m
            .trap(Trap::DeletedAfterPush)
            .iter()
            .chain(m.trap(Trap::DeletedBeforePush))
        {
            assert!(deleted.contains(id.as_str()) && t.opportunity(id).is_none());
        }
        for id in m.trap(Trap::DeletedBeforePush) {
            assert!(!s.pushed.iter().any(|r| r["id"] == json!(id)));
            assert_eq!(m.expected("candidate", id), None);
        }
        // Lever's legacy candidate id is the opportunity id.
        for a in &t.applications {
            assert_eq!(a.candidate_id, a.opportunity_id);
        }
    }

    #[test]
    fn expected_views_follow_the_defects() {
        let s = small();
        let m = &s.manifest;
        for d in &m.defects {
            let exp = m.expected(&d.entity, &d.id);
            match (d.kind, &d.field) {
                (DefectKind::DeletedAfterPush, None) => {
                    assert_eq!(exp, Some(&ExpectedRecord::Tombstone), "{d:?}")
                }
                (DefectKind::MissingResume, _) => {
                    let Some(ExpectedRecord::Present(v)) = exp else {
                        panic!("{d:?}")
                    };
                    assert!(
                        v[ATTACHMENTS]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|e| e["id"] == d.expected["id"]))
                    );
                    assert!(!s.pushed.iter().any(|p| p["id"] == d.expected["id"]));
                }
                (_, Some(f)) => {
                    let Some(ExpectedRecord::Present(v)) = exp else {
                        panic!("{d:?}")
                    };
                    assert_eq!(v.get(f), Some(&d.expected), "{d:?}");
                }
                _ => panic!("unexpected defect {d:?}"),
            }
        }
        // A record without defects: its view is the truth's canonical form.
        let o = s
            .truth
            .opportunities
            .iter()
            .find(|o| !m.defects.iter().any(|d| d.id == o.id))
            .expect("an untouched opportunity");
        let mut view = canonical_view(&s.truth, "candidate", &o.id).unwrap();
        assert!(m.check("candidate", &o.id, Some(&view)).is_empty());
        view.insert("tags".into(), json!(["changed"]));
        assert_eq!(m.check("candidate", &o.id, Some(&view)).len(), 1);
        assert_eq!(m.check("candidate", "no-such-id", None), vec![]);
    }

    #[test]
    fn pushed_records_have_the_documented_push_shape() {
        let s = small();
        let mut entities = HashSet::new();
        for r in s.pushed.iter() {
            let o = r.as_object().unwrap();
            let e = r["entity"].as_str().unwrap();
            entities.insert(e.to_string());
            let mut members: Vec<&str> = o.keys().map(String::as_str).collect();
            members.sort_unstable();
            let mut want = vec!["entity", "fields", "id", "op", "updated_at"];
            if e == "attachment" {
                want.push("candidate_id");
                want.sort_unstable();
                let mut f: Vec<&str> = r["fields"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                f.sort_unstable();
                assert_eq!(f, ["created_at", "filename", "type"]);
            }
            assert_eq!(members, want, "{r}");
            assert!(r["updated_at"].as_str().is_some_and(|t| t.ends_with('Z')));
            let allowed: &[&str] = match e {
                "candidate" => crate::canonical::CANDIDATE_FIELDS,
                "application" => crate::canonical::APPLICATION_FIELDS,
                "job" => crate::canonical::JOB_FIELDS,
                _ => &["filename", "type", "created_at"],
            };
            for k in r["fields"].as_object().unwrap().keys() {
                assert!(allowed.contains(&k.as_str()), "{e}.{k} is not canonical");
            }
        }
        assert_eq!(entities.len(), 4);
    }

    #[test]
    fn ten_thousand_candidacies_generate() {
        let t = std::time::Instant::now();
        let s = Scenario::generate(&ScenarioSpec {
            candidacies: 10_000,
            ..Default::default()
        });
        assert!(s.truth.opportunities.len() > 9_000);
        assert!(s.manifest.expected_views.len() > 19_000);
        eprintln!("10,000 candidacies in {:?}", t.elapsed());
    }
}
