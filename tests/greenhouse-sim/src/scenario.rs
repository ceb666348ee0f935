//! The seeded scenario generator: ATS truth, the pushed snapshot with injected defects,
//! and the manifest that says what the merged view must be.
//!
//! Timeline: records are created over two years up to `push_time` (= `now` − 2 days);
//! the push snapshot is taken at `push_time`; between `push_time` and `now` the ATS
//! moves on (stages change, candidates are deleted or merged). The truth is the state
//! at `now`. Defects are chosen on disjoint records so that every expected value has
//! exactly one reason.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::canonical::{
    ATTACHMENTS, Difference, ExpectedRecord, attachment_candidate, attachment_element,
    compare_view, id_of, record_fields,
};
use crate::model::{AtsData, Entity, record_ts, ts};

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

/// Everything a fidelity test needs to judge eds's merged views.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    pub push_time: DateTime<Utc>,
    pub defects: Vec<Defect>,
    /// Number of affected records per defect kind (a record with two changed fields
    /// counts once).
    pub counts: BTreeMap<DefectKind, usize>,
    /// `(entity, id)` -> expected merged view, for every record pushed or in the truth.
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
        match self.expected(entity, id) {
            Some(e) => compare_view(e, actual),
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

/// A generated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub truth: AtsData,
    /// Push-format record objects (tenant-less), `{entity,id,op,updated_at,fields}`.
    pub pushed: Vec<Value>,
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

impl Scenario {
    /// Generates a scenario; the same spec always gives the same scenario.
    pub fn generate(spec: &ScenarioSpec) -> Scenario {
        let mut g = Gen {
            rng: ChaCha8Rng::seed_from_u64(spec.seed),
        };
        let now = spec.now;
        let push_time = now - Duration::days(2);
        let origin = now - Duration::days(730);
        let mut data = AtsData {
            now,
            file_seed: spec.seed.wrapping_mul(31).wrapping_add(7),
            ..Default::default()
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
            data.jobs.push(json!({
                "id": jid, "name": g.pick(JOB_NAMES), "requisition_id": format!("REQ-{:04}", jid % 10_000),
                "status": status, "confidential": g.chance(0.1), "created_at": ts(created), "opened_at": opened,
                "closed_at": closed, "updated_at": ts(updated), "department_id": 50_000 + g.rng.random_range(0..8u64),
                "office_ids": (0..office_n).map(|k| 60_000 + k * 3 + (jid % 3)).collect::<Vec<_>>(),
                "custom_fields": {
                    "employment_type": {"name": "Employment Type", "type": "single_select", "value": g.pick(&["Full-time", "Part-time", "Contract"])},
                    "salary_range": {"name": "Salary Range", "type": "currency_range",
                        "value": {"min_value": "50000", "max_value": "90000", "unit": "EUR"}}
                }
            }));
            job_ids.push(jid);
        }

        // Candidates, their applications and attachments (ids ascend with creation).
        let n = spec.candidates;
        let mut cid = 40_000_000u64;
        let mut aid = 70_000_000u64;
        let mut tid = 90_000_000u64;
        let span = (push_time - Duration::hours(1) - origin)
            .num_milliseconds()
            .max(1);
        for i in 0..n {
            cid += g.rng.random_range(1..=5);
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
            let mut apps = vec![];
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
                apps.push(json!({
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
                }));
                if a_updated > updated {
                    updated = a_updated;
                }
            }
            let natt = g.count(spec.attachments_per_candidate);
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
                    apps[g.rng.random_range(0..apps.len())]["id"].clone()
                };
                data.attachments.push(json!({
                    "id": tid, "candidate_id": cid, "application_id": app_id, "filename": filename, "type": kind,
                    "created_at": ts(at), "updated_at": ts(at)
                }));
            }
            data.candidates.push(json!({
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
            }));
            data.applications.extend(apps);
        }

        let mut manifest = Manifest {
            push_time,
            ..Default::default()
        };
        let pushed = inject_and_evolve(&mut g, spec, &mut data, &mut manifest);
        manifest.expected_views = expected_views(&data, &pushed);
        Scenario {
            truth: data,
            pushed,
            manifest,
        }
    }
}

fn push_record(entity: Entity, v: &Value, fields: Map<String, Value>) -> Value {
    let mut r = json!({
        "entity": entity.as_str(), "id": id_of(v).to_string(), "op": "upsert",
        "updated_at": v.get("updated_at").cloned().unwrap_or(Value::Null), "fields": fields
    });
    if entity == Entity::Attachment {
        set(
            &mut r,
            "candidate_id",
            Value::String(attachment_candidate(v).unwrap_or(0).to_string()),
        );
    }
    r
}

fn defect(
    m: &mut Manifest,
    kind: DefectKind,
    entity: Entity,
    id: u64,
    field: Option<&str>,
    pushed: Value,
    expected: Value,
) {
    m.defects.push(Defect {
        kind,
        entity: entity.as_str().into(),
        id: id.to_string(),
        field: field.map(str::to_string),
        pushed,
        expected,
    });
}

/// Chooses the defect records, writes the pushed snapshot (at push time), then moves
/// the truth on to `now`.
fn inject_and_evolve(
    g: &mut Gen,
    spec: &ScenarioSpec,
    data: &mut AtsData,
    m: &mut Manifest,
) -> Vec<Value> {
    let push_time = m.push_time;
    let now = data.now;
    let cand_ids: Vec<u64> = data.candidates.iter().map(id_of).collect();
    let mut touched: BTreeSet<u64> = BTreeSet::new(); // candidates changed after the push
    let mut affected: BTreeMap<DefectKind, BTreeSet<(Entity, u64)>> = BTreeMap::new();

    // Whole-record fates first: deletes, then merges among the rest.
    let deleted: BTreeSet<u64> = cand_ids
        .iter()
        .copied()
        .filter(|_| g.chance(spec.deleted_after_push_rate))
        .collect();
    touched.extend(&deleted);
    let mut merges: Vec<(u64, u64)> = vec![]; // (loser, winner)
    for &c in &cand_ids {
        if touched.contains(&c) || !g.chance(spec.merged_after_push_rate) {
            continue;
        }
        // Rejection sampling keeps this linear: most candidates are untouched.
        let mut w = None;
        for _ in 0..64 {
            let x = cand_ids[g.rng.random_range(0..cand_ids.len())];
            if x != c && !touched.contains(&x) {
                w = Some(x);
                break;
            }
        }
        let Some(w) = w else { continue };
        touched.insert(c);
        touched.insert(w);
        merges.push((c, w));
    }
    let losers: BTreeSet<u64> = merges.iter().map(|p| p.0).collect();

    // Per-field defects on candidates.
    let mut pushed = Vec::with_capacity(
        data.candidates.len() + data.applications.len() + data.attachments.len() + data.jobs.len(),
    );
    let mut push_newer_cands: BTreeSet<u64> = BTreeSet::new();
    for c in &data.candidates {
        let id = id_of(c);
        let mut fields = record_fields(Entity::Candidate, c);
        let mut rec_updated = c["updated_at"].clone();
        if !touched.contains(&id) && g.chance(spec.push_newer_rate) {
            let old = fields.get("title").cloned().unwrap_or(Value::Null);
            let new = Value::String(format!(
                "{} (updated by HRIS)",
                old.as_str().unwrap_or("Consultant")
            ));
            fields.insert("title".into(), new.clone());
            let upd = record_ts(c, "updated_at").unwrap_or(push_time);
            let later = upd + Duration::seconds(g.rng.random_range(1..7200));
            rec_updated = Value::String(ts(later));
            defect(
                m,
                DefectKind::PushNewer,
                Entity::Candidate,
                id,
                Some("title"),
                new.clone(),
                new,
            );
            affected
                .entry(DefectKind::PushNewer)
                .or_default()
                .insert((Entity::Candidate, id));
            push_newer_cands.insert(id);
        }
        if !touched.contains(&id)
            && fields
                .get("emails")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
            && g.chance(spec.missing_emails_rate)
        {
            let truth = fields.remove("emails").unwrap_or(Value::Null);
            defect(
                m,
                DefectKind::MissingEmails,
                Entity::Candidate,
                id,
                Some("emails"),
                Value::Null,
                truth,
            );
            affected
                .entry(DefectKind::MissingEmails)
                .or_default()
                .insert((Entity::Candidate, id));
        }
        if !touched.contains(&id)
            && fields
                .get("phones")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
            && g.chance(spec.missing_phones_rate)
        {
            let truth = fields.remove("phones").unwrap_or(Value::Null);
            defect(
                m,
                DefectKind::MissingPhones,
                Entity::Candidate,
                id,
                Some("phones"),
                Value::Null,
                truth,
            );
            affected
                .entry(DefectKind::MissingPhones)
                .or_default()
                .insert((Entity::Candidate, id));
        }
        let mut r = push_record(Entity::Candidate, c, fields);
        set(&mut r, "updated_at", rec_updated);
        pushed.push(r);
    }
    for j in &data.jobs {
        pushed.push(push_record(Entity::Job, j, record_fields(Entity::Job, j)));
    }

    // Missing resumes: the first resume of a live, non-merged candidate is not pushed.
    let mut seen_resume: BTreeSet<u64> = BTreeSet::new();
    for a in &data.attachments {
        let c = attachment_candidate(a).unwrap_or(0);
        let is_first_resume = a["type"] == "resume" && seen_resume.insert(c);
        if is_first_resume
            && !deleted.contains(&c)
            && !losers.contains(&c)
            && g.chance(spec.missing_resume_rate)
        {
            defect(
                m,
                DefectKind::MissingResume,
                Entity::Candidate,
                c,
                Some(ATTACHMENTS),
                Value::Null,
                attachment_element(a),
            );
            affected
                .entry(DefectKind::MissingResume)
                .or_default()
                .insert((Entity::Candidate, c));
            continue;
        }
        pushed.push(push_record(
            Entity::Attachment,
            a,
            record_fields(Entity::Attachment, a),
        ));
    }

    // Applications: push-newer and stale stages (only where the candidate stays put).
    let mut app_deleted: BTreeSet<u64> = BTreeSet::new();
    for a in data.applications.iter_mut() {
        let id = id_of(a);
        let c = a["candidate_id"].as_u64().unwrap_or(0);
        let mut fields = record_fields(Entity::Application, a);
        let mut rec_updated = a["updated_at"].clone();
        let has_stage = a["stage_id"].is_u64() && a["status"] == "in_process";
        let free = !touched.contains(&c) && !push_newer_cands.contains(&c);
        if free && has_stage && g.chance(spec.push_newer_rate) {
            let new = Value::String("Offer (pushed by HRIS)".into());
            fields.insert("stage_name".into(), new.clone());
            let upd = record_ts(a, "updated_at").unwrap_or(push_time);
            rec_updated = Value::String(ts(upd + Duration::seconds(g.rng.random_range(1..7200))));
            defect(
                m,
                DefectKind::PushNewer,
                Entity::Application,
                id,
                Some("stage_name"),
                new.clone(),
                new,
            );
            affected
                .entry(DefectKind::PushNewer)
                .or_default()
                .insert((Entity::Application, id));
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
            let old_status = a["status"].clone();
            let old_stage_id = a["stage_id"].clone();
            let old_stage_name = a["stage_name"].clone();
            set(a, "status", json!(new_status));
            set(a, "stage_id", json!(new_stage_id));
            set(a, "stage_name", new_stage_name.clone());
            if reject {
                set(a, "rejected_at", json!(ts(t)));
                set(a, "rejection_reason_id", json!(80_001));
            }
            set(a, "updated_at", json!(ts(t)));
            set(a, "last_activity_at", json!(ts(t)));
            if old_status != json!(new_status) {
                defect(
                    m,
                    DefectKind::StaleApplication,
                    Entity::Application,
                    id,
                    Some("status"),
                    old_status,
                    json!(new_status),
                );
            }
            if old_stage_id != json!(new_stage_id) {
                defect(
                    m,
                    DefectKind::StaleApplication,
                    Entity::Application,
                    id,
                    Some("stage_id"),
                    crate::canonical::id_str(&old_stage_id),
                    json!(new_stage_id.to_string()),
                );
                defect(
                    m,
                    DefectKind::StaleApplication,
                    Entity::Application,
                    id,
                    Some("stage_name"),
                    old_stage_name,
                    new_stage_name,
                );
            }
            affected
                .entry(DefectKind::StaleApplication)
                .or_default()
                .insert((Entity::Application, id));
        } else if free && g.chance(spec.deleted_after_push_rate) {
            app_deleted.insert(id);
            defect(
                m,
                DefectKind::DeletedAfterPush,
                Entity::Application,
                id,
                None,
                Value::Null,
                json!("tombstone"),
            );
            affected
                .entry(DefectKind::DeletedAfterPush)
                .or_default()
                .insert((Entity::Application, id));
        }
        let mut r = push_record(Entity::Application, a, fields);
        set(&mut r, "updated_at", rec_updated);
        pushed.push(r);
    }

    // Deleted candidates take their applications and attachments with them.
    for &c in &deleted {
        defect(
            m,
            DefectKind::DeletedAfterPush,
            Entity::Candidate,
            c,
            None,
            Value::Null,
            json!("tombstone"),
        );
        affected
            .entry(DefectKind::DeletedAfterPush)
            .or_default()
            .insert((Entity::Candidate, c));
    }
    for a in &data.applications {
        if deleted.contains(&a["candidate_id"].as_u64().unwrap_or(0)) {
            defect(
                m,
                DefectKind::DeletedAfterPush,
                Entity::Application,
                id_of(a),
                None,
                Value::Null,
                json!("tombstone"),
            );
            affected
                .entry(DefectKind::DeletedAfterPush)
                .or_default()
                .insert((Entity::Application, id_of(a)));
        }
    }
    data.candidates.retain(|c| !deleted.contains(&id_of(c)));
    data.applications.retain(|a| {
        !deleted.contains(&a["candidate_id"].as_u64().unwrap_or(0))
            && !app_deleted.contains(&id_of(a))
    });
    data.attachments
        .retain(|a| !deleted.contains(&attachment_candidate(a).unwrap_or(0)));
    for a in data.attachments.iter_mut() {
        if a["application_id"]
            .as_u64()
            .is_some_and(|x| app_deleted.contains(&x))
        {
            set(a, "application_id", Value::Null);
        }
    }

    // Merges: the loser disappears; its children move to the winner with a new updated_at.
    let idx: HashMap<u64, usize> = data
        .candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (id_of(c), i))
        .collect();
    let mut moves: HashMap<u64, (u64, Value)> = HashMap::new();
    for &(loser, winner) in &merges {
        let t = g.between(
            push_time + Duration::minutes(1),
            now - Duration::minutes(10),
        );
        let tv = json!(ts(t));
        defect(
            m,
            DefectKind::MergedAfterPush,
            Entity::Candidate,
            loser,
            None,
            Value::Null,
            json!({"merged_into": winner.to_string()}),
        );
        affected
            .entry(DefectKind::MergedAfterPush)
            .or_default()
            .insert((Entity::Candidate, loser));
        moves.insert(loser, (winner, tv.clone()));
        if let (Some(&li), Some(&wi)) = (idx.get(&loser), idx.get(&winner)) {
            let loser_v = data.candidates[li].clone();
            let w = &mut data.candidates[wi];
            for list in ["email_addresses", "phone_numbers"] {
                let mut merged = w[list].as_array().cloned().unwrap_or_default();
                for e in loser_v[list].as_array().into_iter().flatten() {
                    if !merged.iter().any(|x| x["value"] == e["value"]) {
                        merged.push(e.clone());
                    }
                }
                set(w, list, Value::Array(merged));
            }
            set(w, "updated_at", tv.clone());
            set(w, "last_activity_at", tv);
        }
    }
    // One pass over the children of all losers (a scan per merge would be quadratic).
    for a in data.applications.iter_mut() {
        let Some((winner, tv)) = a["candidate_id"].as_u64().and_then(|c| moves.get(&c)) else {
            continue;
        };
        let loser = a["candidate_id"].as_u64().unwrap_or(0);
        set(a, "candidate_id", json!(winner));
        set(a, "updated_at", tv.clone());
        defect(
            m,
            DefectKind::MergedAfterPush,
            Entity::Application,
            id_of(a),
            Some("candidate_id"),
            json!(loser.to_string()),
            json!(winner.to_string()),
        );
    }
    for a in data.attachments.iter_mut() {
        let Some((winner, tv)) = attachment_candidate(a).and_then(|c| moves.get(&c)) else {
            continue;
        };
        set(a, "candidate_id", json!(winner));
        set(a, "updated_at", tv.clone());
    }
    data.candidates.retain(|c| !losers.contains(&id_of(c)));

    m.counts = affected.into_iter().map(|(k, v)| (k, v.len())).collect();
    pushed
}

/// The expected merged view of every record: the truth in canonical form, except that
/// a pushed record whose `updated_at` is newer than the ATS wins on the fields it
/// carries (absent never overrides), attachments are a union by id, and records that
/// the ATS no longer has are tombstones.
fn expected_views(data: &AtsData, pushed: &[Value]) -> BTreeMap<(String, String), ExpectedRecord> {
    let mut by_cand: HashMap<u64, Vec<Value>> = HashMap::new();
    for a in &data.attachments {
        by_cand
            .entry(attachment_candidate(a).unwrap_or(0))
            .or_default()
            .push(attachment_element(a));
    }
    let mut pushed_idx: HashMap<(String, String), &Value> = HashMap::new();
    let mut pushed_atts: HashMap<String, Vec<Value>> = HashMap::new();
    for p in pushed {
        let (e, id) = (
            p["entity"].as_str().unwrap_or(""),
            p["id"].as_str().unwrap_or(""),
        );
        if e == "attachment" {
            let mut el = p["fields"].clone();
            set(&mut el, "id", json!(id));
            pushed_atts
                .entry(p["candidate_id"].as_str().unwrap_or("").to_string())
                .or_default()
                .push(el);
        } else {
            pushed_idx.insert((e.to_string(), id.to_string()), p);
        }
    }
    let mut out = BTreeMap::new();
    for entity in [Entity::Candidate, Entity::Application, Entity::Job] {
        for v in data.records(entity) {
            let id = id_of(v);
            let ids = id.to_string();
            let mut view = record_fields(entity, v);
            if let Some(p) = pushed_idx.remove(&(entity.as_str().to_string(), ids.clone())) {
                let pu = p["updated_at"].as_str().and_then(crate::model::parse_ts);
                if pu.is_some() && pu > record_ts(v, "updated_at") {
                    for (k, val) in p["fields"].as_object().into_iter().flatten() {
                        view.insert(k.clone(), val.clone());
                    }
                }
            }
            if entity == Entity::Candidate {
                let mut atts: BTreeMap<String, Value> = BTreeMap::new();
                for el in pushed_atts
                    .get(&ids)
                    .into_iter()
                    .flatten()
                    .chain(by_cand.get(&id).into_iter().flatten())
                {
                    atts.insert(el["id"].as_str().unwrap_or("").to_string(), el.clone());
                }
                if !atts.is_empty() {
                    view.insert(
                        ATTACHMENTS.into(),
                        Value::Array(atts.into_values().collect()),
                    );
                }
            }
            out.insert(
                (entity.as_str().to_string(), ids),
                ExpectedRecord::Present(view),
            );
        }
    }
    for (key, _) in pushed_idx {
        out.insert(key, ExpectedRecord::Tombstone);
    }
    out
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
                    assert_eq!(exp, Some(&ExpectedRecord::Tombstone), "{d:?}");
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
            .expect("expected view")
            .clone();
        assert!(compare_view(&e, Some(&view)).is_empty());
        view.insert("title".into(), json!("changed"));
        assert_eq!(compare_view(&e, Some(&view)).len(), 1);
    }
}
