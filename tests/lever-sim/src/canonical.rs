//! Lever v1 objects in eds's canonical field names (the same names greenhouse-sim
//! produces, docs/push-format.md), and the comparison of a view with an expected one.
//!
//! The mapping (README, "Canonical mapping"):
//! - candidate = one opportunity (id = opportunity id), carrying its contact's data;
//! - application = the opportunity's application (id = application id) with the
//!   opportunity's stage and archive state; its ATS time is the opportunity's `updatedAt`;
//! - job = posting;
//! - the candidate's `attachments` = the opportunity's resumes and files.
//!
//! Independent of `eds-shared` on purpose: the simulator is the oracle eds is measured
//! against and must not share the code under test.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::model::{
    Application, ArchiveReason, FileRec, LeverData, Opportunity, Posting, ResumeRec, ms_ts,
};

/// Canonical name of the candidate attachments collection.
pub const ATTACHMENTS: &str = "attachments";

/// The canonical fields this mapping can fill, per entity (a subset of eds's names:
/// Lever has no `preferred_name`, `company`, `title`, `can_email`, `time_zone`, ...).
pub const CANDIDATE_FIELDS: &[&str] = &[
    "first_name",
    "last_name",
    "emails",
    "phones",
    "addresses",
    "websites",
    "tags",
    "is_private",
    "created_at",
    "last_activity_at",
];
pub const APPLICATION_FIELDS: &[&str] = &[
    "candidate_id",
    "job_id",
    "prospect",
    "status",
    "stage_id",
    "stage_name",
    "referrer_id",
    "recruiter_id",
    "rejected_at",
    "rejection_reason_id",
    "created_at",
    "last_activity_at",
];
pub const JOB_FIELDS: &[&str] = &[
    "name",
    "requisition_id",
    "status",
    "confidential",
    "created_at",
    "custom_fields",
];

/// `"Ada King Lovelace"` -> (`"Ada"`, `"King Lovelace"`); a single word has no last name.
pub fn split_name(name: &str) -> (Value, Value) {
    let name = name.trim();
    match name.split_once(' ') {
        Some((f, l)) => (json!(f), json!(l.trim())),
        None if name.is_empty() => (Value::Null, Value::Null),
        None => (json!(name), Value::Null),
    }
}

/// Canonical fields of an opportunity as a candidate, without attachments.
pub fn candidate_fields(o: &Opportunity) -> Map<String, Value> {
    let (first, last) = split_name(&o.name);
    let mut m = Map::new();
    m.insert("first_name".into(), first);
    m.insert("last_name".into(), last);
    m.insert(
        "emails".into(),
        Value::Array(o.emails.iter().map(|e| json!({"value": e})).collect()),
    );
    m.insert(
        "phones".into(),
        Value::Array(
            o.phones
                .iter()
                .map(|p| json!({"type": p.kind, "value": p.value}))
                .collect(),
        ),
    );
    let addresses: Vec<Value> = if o.location.trim().is_empty() {
        vec![]
    } else {
        vec![json!({"value": o.location})]
    };
    m.insert("addresses".into(), Value::Array(addresses));
    m.insert(
        "websites".into(),
        Value::Array(o.links.iter().map(|l| json!({"value": l})).collect()),
    );
    m.insert("tags".into(), json!(o.tags));
    m.insert("is_private".into(), json!(o.is_confidential()));
    m.insert("created_at".into(), json!(ms_ts(o.created_at)));
    m.insert(
        "last_activity_at".into(),
        json!(ms_ts(o.last_interaction_at)),
    );
    m
}

/// `"hired"` when archived for a hired reason, `"rejected"` when archived otherwise,
/// else `"in_process"` (Greenhouse's vocabulary, so both ATSs read alike).
pub fn status_of(o: &Opportunity, reason: Option<&ArchiveReason>) -> &'static str {
    match (&o.archived, reason) {
        (None, _) => "in_process",
        (Some(_), Some(r)) if r.status == "hired" => "hired",
        (Some(_), _) => "rejected",
    }
}

/// Canonical fields of an application (with its opportunity's stage and archive state).
pub fn application_fields(
    a: &Application,
    o: &Opportunity,
    stage_text: Option<&str>,
    reason: Option<&ArchiveReason>,
) -> Map<String, Value> {
    let status = status_of(o, reason);
    let rejected = status == "rejected";
    let mut m = Map::new();
    m.insert("candidate_id".into(), json!(o.id));
    m.insert("job_id".into(), json!(a.posting));
    m.insert("prospect".into(), json!(a.posting.is_none()));
    m.insert("status".into(), json!(status));
    m.insert("stage_id".into(), json!(o.stage));
    m.insert("stage_name".into(), json!(stage_text));
    m.insert(
        "referrer_id".into(),
        if a.kind == "referral" {
            json!(a.user)
        } else {
            Value::Null
        },
    );
    m.insert("recruiter_id".into(), json!(o.owner));
    m.insert(
        "rejected_at".into(),
        match &o.archived {
            Some(x) if rejected => json!(ms_ts(x.archived_at)),
            _ => Value::Null,
        },
    );
    m.insert(
        "rejection_reason_id".into(),
        match &o.archived {
            Some(x) if rejected => json!(x.reason),
            _ => Value::Null,
        },
    );
    m.insert("created_at".into(), json!(ms_ts(a.created_at)));
    m.insert(
        "last_activity_at".into(),
        json!(ms_ts(o.last_interaction_at)),
    );
    m
}

/// Canonical fields of a posting as a job.
pub fn job_fields(p: &Posting) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(p.text));
    m.insert("requisition_id".into(), json!(p.requisition_codes.first()));
    m.insert("status".into(), json!(p.state));
    m.insert(
        "confidential".into(),
        json!(p.confidentiality == "confidential"),
    );
    m.insert("created_at".into(), json!(ms_ts(p.created_at)));
    m.insert(
        "custom_fields".into(),
        json!({
            "team": p.categories.team, "department": p.categories.department,
            "location": p.categories.location, "commitment": p.categories.commitment,
            "workplace_type": p.workplace_type,
        }),
    );
    m
}

/// A resume as an element of the candidate's attachments.
pub fn resume_element(r: &ResumeRec) -> Value {
    json!({"id": r.id, "filename": r.name, "type": "resume",
        "created_at": ms_ts(r.created_at), "updated_at": ms_ts(r.uploaded_at)})
}

/// A file as an element of the candidate's attachments.
pub fn file_element(f: &FileRec) -> Value {
    json!({"id": f.id, "filename": f.name, "type": "other",
        "created_at": ms_ts(f.uploaded_at), "updated_at": ms_ts(f.uploaded_at)})
}

/// Resumes and files as an attachments collection, ordered by id.
pub fn attachments_from<'a>(
    resumes: impl IntoIterator<Item = &'a ResumeRec>,
    files: impl IntoIterator<Item = &'a FileRec>,
) -> Vec<Value> {
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for r in resumes {
        by_id.insert(r.id.clone(), resume_element(r));
    }
    for f in files {
        by_id.insert(f.id.clone(), file_element(f));
    }
    by_id.into_values().collect()
}

/// The attachments of an opportunity, ordered by id.
pub fn attachments_of(data: &LeverData, opp: &str) -> Vec<Value> {
    attachments_from(data.resumes_of(opp), data.files_of(opp))
}

/// The canonical application of an application id in `data`.
pub fn application_view(data: &LeverData, a: &Application) -> Option<Map<String, Value>> {
    let o = data.opportunity(&a.opportunity_id)?;
    let reason = o
        .archived
        .as_ref()
        .and_then(|x| data.archive_reason(&x.reason));
    Some(application_fields(a, o, data.stage_text(&o.stage), reason))
}

/// The full canonical view of one record of `data` (`entity`: `candidate`,
/// `application` or `job`; a candidate with its attachments when it has any), or `None`
/// when the ATS has no such record.
pub fn canonical_view(data: &LeverData, entity: &str, id: &str) -> Option<Map<String, Value>> {
    match entity {
        "candidate" => {
            let o = data.opportunity(id)?;
            let mut m = candidate_fields(o);
            let atts = attachments_of(data, id);
            if !atts.is_empty() {
                m.insert(ATTACHMENTS.into(), Value::Array(atts));
            }
            Some(m)
        }
        "application" => application_view(data, data.application(id)?),
        "job" => Some(job_fields(data.posting(id)?)),
        _ => None,
    }
}

/// What a record's merged view should be after push + pull.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", content = "fields", rename_all = "snake_case")]
pub enum ExpectedRecord {
    Present(Map<String, Value>),
    /// Deleted in the ATS after the push.
    Tombstone,
}

/// One mismatch between an expected and an actual view. `None` = absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// The canonical field, or `"<record>"` when presence itself differs.
    pub field: String,
    pub expected: Option<Value>,
    pub actual: Option<Value>,
}

/// Attachments compare by `id`, `filename` and `type` only (the stored file and the
/// timestamps are eds's business), as a set ordered by id.
fn attachment_projection(v: Option<&Value>) -> Value {
    let mut elems: BTreeMap<String, Value> = BTreeMap::new();
    for e in v.and_then(Value::as_array).into_iter().flatten() {
        let id = match e.get("id") {
            Some(Value::String(s)) => s.clone(),
            other => format!("{other:?}"),
        };
        elems.insert(
            id.clone(),
            json!({"id": id, "filename": e.get("filename").cloned().unwrap_or(Value::Null),
                "type": e.get("type").cloned().unwrap_or(Value::Null)}),
        );
    }
    Value::Array(elems.into_values().collect())
}

/// Compares an actual view (`None` = no record or a tombstone) with the expected one.
/// An empty result means the view is right.
pub fn compare_view(
    expected: &ExpectedRecord,
    actual: Option<&Map<String, Value>>,
) -> Vec<Difference> {
    let whole = |e: Option<&Map<String, Value>>, a: Option<&Map<String, Value>>| {
        vec![Difference {
            field: "<record>".into(),
            expected: e.map(|m| Value::Object(m.clone())),
            actual: a.map(|m| Value::Object(m.clone())),
        }]
    };
    match (expected, actual) {
        (ExpectedRecord::Tombstone, None) => vec![],
        (ExpectedRecord::Tombstone, Some(a)) => whole(None, Some(a)),
        (ExpectedRecord::Present(e), None) => whole(Some(e), None),
        (ExpectedRecord::Present(e), Some(a)) => {
            let mut keys: Vec<&String> = e.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            let mut out = vec![];
            for k in keys {
                if k == ATTACHMENTS {
                    let (pe, pa) = (
                        attachment_projection(e.get(k)),
                        attachment_projection(a.get(k)),
                    );
                    if pe != pa {
                        out.push(Difference {
                            field: k.clone(),
                            expected: Some(pe),
                            actual: Some(pa),
                        });
                    }
                } else if e.get(k) != a.get(k) {
                    out.push(Difference {
                        field: k.clone(),
                        expected: e.get(k).cloned(),
                        actual: a.get(k).cloned(),
                    });
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_the_first_space() {
        assert_eq!(
            split_name("Anna van der Berg"),
            (json!("Anna"), json!("van der Berg"))
        );
        assert_eq!(split_name("Anonymized"), (json!("Anonymized"), Value::Null));
        assert_eq!(split_name(" "), (Value::Null, Value::Null));
    }

    #[test]
    fn attachments_compare_by_id_filename_type_only() {
        let e = ExpectedRecord::Present(
            json!({"attachments": [{"id":"r1","filename":"cv.pdf","type":"resume","created_at":"x"}]})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let a = json!({"attachments": [{"id":"r1","filename":"cv.pdf","type":"resume","file":{"sha256":"00"}}]});
        assert!(compare_view(&e, a.as_object()).is_empty());
        let b = json!({"attachments": []});
        assert_eq!(compare_view(&e, b.as_object()).len(), 1);
        assert_eq!(
            compare_view(&ExpectedRecord::Tombstone, b.as_object()).len(),
            1
        );
        assert!(compare_view(&ExpectedRecord::Tombstone, None).is_empty());
    }
}
