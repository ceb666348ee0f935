//! Conversion of Greenhouse v3 JSON into the canonical field names of the brief, and
//! comparison of a view against an expected one.
//!
//! This is deliberately independent of `eds-shared`: the simulator is the oracle the
//! product is measured against, so it must not share the code under test.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{AtsData, Entity, parse_ts, record_id, ts};

/// Canonical name of the candidate attachments collection.
pub const ATTACHMENTS: &str = "attachments";

/// A timestamp normalised to RFC3339 UTC with milliseconds; null and unparsable values
/// are kept as given (never invent a value).
fn norm_ts(v: &Value) -> Value {
    match v.as_str().and_then(parse_ts) {
        Some(d) => Value::String(ts(d)),
        None => v.clone(),
    }
}

/// Every `*_id` is a JSON string (or null) in the canonical model.
pub fn id_str(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::String(n.to_string()),
        other => other.clone(),
    }
}

fn id_list(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(id_str).collect()),
        other => other.clone(),
    }
}

/// `{key: {name, type, value}}` -> `{key: value}`.
fn flat_custom_fields(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, cf)| {
                    let val = match cf {
                        Value::Object(o) => o.get("value").cloned().unwrap_or(Value::Null),
                        other => other.clone(),
                    };
                    (k.clone(), val)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn copy(out: &mut Map<String, Value>, src: &Value, from: &str, to: &str, f: fn(&Value) -> Value) {
    if let Some(v) = src.get(from) {
        out.insert(to.to_string(), f(v));
    }
}

fn same(v: &Value) -> Value {
    v.clone()
}

/// Canonical fields of a v3 candidate, without attachments.
pub fn candidate_fields(v: &Value) -> Map<String, Value> {
    let mut o = Map::new();
    for f in [
        "first_name",
        "last_name",
        "preferred_name",
        "company",
        "title",
    ] {
        copy(&mut o, v, f, f, same);
    }
    copy(&mut o, v, "email_addresses", "emails", same);
    copy(&mut o, v, "phone_numbers", "phones", same);
    copy(&mut o, v, "addresses", "addresses", same);
    copy(&mut o, v, "website_addresses", "websites", same);
    copy(&mut o, v, "social_media_addresses", "social_media", same);
    copy(&mut o, v, "tags", "tags", same);
    copy(&mut o, v, "private", "is_private", same);
    copy(&mut o, v, "can_email", "can_email", same);
    copy(&mut o, v, "time_zone", "time_zone", same);
    copy(
        &mut o,
        v,
        "custom_fields",
        "custom_fields",
        flat_custom_fields,
    );
    copy(&mut o, v, "created_at", "created_at", norm_ts);
    copy(&mut o, v, "last_activity_at", "last_activity_at", norm_ts);
    o
}

/// Canonical element of the attachments collection for a v3 attachment row.
pub fn attachment_element(a: &Value) -> Value {
    let mut o = Map::new();
    copy(&mut o, a, "id", "id", id_str);
    copy(&mut o, a, "filename", "filename", same);
    copy(&mut o, a, "type", "type", same);
    copy(&mut o, a, "created_at", "created_at", norm_ts);
    copy(&mut o, a, "updated_at", "updated_at", norm_ts);
    Value::Object(o)
}

/// Canonical fields of a v3 application.
pub fn application_fields(v: &Value) -> Map<String, Value> {
    let mut o = Map::new();
    for f in [
        "candidate_id",
        "job_id",
        "stage_id",
        "source_id",
        "referrer_id",
        "recruiter_id",
        "coordinator_id",
        "rejection_reason_id",
    ] {
        copy(&mut o, v, f, f, id_str);
    }
    for f in ["prospect", "status", "stage_name", "answers"] {
        copy(&mut o, v, f, f, same);
    }
    copy(
        &mut o,
        v,
        "custom_fields",
        "custom_fields",
        flat_custom_fields,
    );
    for f in ["rejected_at", "created_at", "last_activity_at"] {
        copy(&mut o, v, f, f, norm_ts);
    }
    o
}

/// Canonical fields of a v3 job.
pub fn job_fields(v: &Value) -> Map<String, Value> {
    let mut o = Map::new();
    for f in ["name", "requisition_id", "status", "confidential"] {
        copy(&mut o, v, f, f, same);
    }
    copy(&mut o, v, "department_id", "department_id", id_str);
    copy(&mut o, v, "office_ids", "office_ids", id_list);
    for f in ["opened_at", "closed_at", "created_at"] {
        copy(&mut o, v, f, f, norm_ts);
    }
    copy(
        &mut o,
        v,
        "custom_fields",
        "custom_fields",
        flat_custom_fields,
    );
    o
}

/// Canonical fields of one v3 record (candidates without attachments).
pub fn record_fields(entity: Entity, v: &Value) -> Map<String, Value> {
    match entity {
        Entity::Candidate => candidate_fields(v),
        Entity::Application => application_fields(v),
        Entity::Job => job_fields(v),
        Entity::Attachment => match attachment_element(v) {
            Value::Object(o) => o,
            _ => Map::new(),
        },
    }
}

/// The full canonical view of one record of the truth (a candidate with its
/// attachments collection when it has any), or `None` when the ATS has no such record.
pub fn canonical_view(data: &AtsData, entity: Entity, id: u64) -> Option<Map<String, Value>> {
    let v = data.get(entity, id)?;
    let mut fields = record_fields(entity, v);
    if entity == Entity::Candidate {
        let atts: Vec<Value> = data
            .attachments_of(id)
            .into_iter()
            .map(attachment_element)
            .collect();
        if !atts.is_empty() {
            fields.insert(ATTACHMENTS.to_string(), Value::Array(atts));
        }
    }
    Some(fields)
}

/// What a record's merged view should be after push + pull.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", content = "fields", rename_all = "snake_case")]
pub enum ExpectedRecord {
    Present(Map<String, Value>),
    /// Deleted or merged away in the ATS after the push.
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

/// Attachments compare by `id`, `filename` and `type` only (the signed URL, the stored
/// file and the timestamps are eds's business), as a set ordered by id.
fn attachment_projection(v: Option<&Value>) -> Value {
    let mut elems: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(Value::Array(a)) = v {
        for e in a {
            let id = match e.get("id").map(id_str) {
                Some(Value::String(s)) => s,
                other => format!("{other:?}"),
            };
            let mut o = Map::new();
            o.insert("id".into(), Value::String(id.clone()));
            o.insert(
                "filename".into(),
                e.get("filename").cloned().unwrap_or(Value::Null),
            );
            o.insert("type".into(), e.get("type").cloned().unwrap_or(Value::Null));
            elems.insert(id, Value::Object(o));
        }
    }
    Value::Array(elems.into_values().collect())
}

/// Compares an actual view (`None` = no record or a tombstone) with the expected one.
/// An empty result means the view is right.
pub fn compare_view(
    expected: &ExpectedRecord,
    actual: Option<&Map<String, Value>>,
) -> Vec<Difference> {
    match (expected, actual) {
        (ExpectedRecord::Tombstone, None) => vec![],
        (ExpectedRecord::Tombstone, Some(a)) => vec![Difference {
            field: "<record>".into(),
            expected: None,
            actual: Some(Value::Object(a.clone())),
        }],
        (ExpectedRecord::Present(e), None) => vec![Difference {
            field: "<record>".into(),
            expected: Some(Value::Object(e.clone())),
            actual: None,
        }],
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

pub(crate) fn id_of(v: &Value) -> u64 {
    record_id(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn candidate_mapping_renames_flattens_and_stringifies() {
        let v = json!({"id": 5, "first_name": "Zoë", "private": true, "email_addresses": [{"type":"work","value":"z@x.io"}],
            "custom_fields": {"salary": {"name":"Salary","type":"number","value": 3}}, "created_at": "2026-01-01T00:00:00Z",
            "linked_user_ids": [1], "updated_at": "2026-01-02T00:00:00.000Z"});
        let f = candidate_fields(&v);
        assert_eq!(f["first_name"], json!("Zoë"));
        assert_eq!(f["is_private"], json!(true));
        assert_eq!(f["emails"], json!([{"type":"work","value":"z@x.io"}]));
        assert_eq!(f["custom_fields"], json!({"salary": 3}));
        assert_eq!(f["created_at"], json!("2026-01-01T00:00:00.000Z"));
        assert!(
            !f.contains_key("updated_at")
                && !f.contains_key("linked_user_ids")
                && !f.contains_key("id")
        );
    }

    #[test]
    fn attachments_compare_by_id_filename_type_only() {
        let e = ExpectedRecord::Present(json!({"attachments": [{"id":"1","filename":"a.pdf","type":"resume","created_at":"x"}]})
            .as_object().cloned().unwrap_or_default());
        let a = json!({"attachments": [{"id":"1","filename":"a.pdf","type":"resume","file":{"sha256":"00"}}]});
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
