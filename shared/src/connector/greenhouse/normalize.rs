//! Greenhouse payloads -> canonical observations. Pure: no I/O, tested with hand-written
//! payloads.
//!
//! Rules (team brief, "Greenhouse v3 -> canonical mapping"):
//! - a key missing from the payload stays absent; an explicit `null` stays null;
//! - timestamps become RFC 3339 UTC with milliseconds; every `*_id` becomes a string;
//! - `updated_at` is not a field but the observation's `ats_updated_at`;
//! - a value of the wrong type for a known field fails that record only (quarantine);
//!   fields Greenhouse adds later are ignored;
//! - attachment rows become `attachments` elements of their candidate; the signed `url`
//!   goes only into the download list, never into fields.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::connector::{AttachmentRef, FileAccess, canonical_timestamp};
use crate::domain::ids::{AtsId, EntityKind};
use crate::domain::model::{ATTACHMENTS, Fields, Observation, ObservationScope};

/// Why one record was quarantined. Messages name the field, never echo a value (a
/// value may be personal data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record is not a JSON object")]
    NotAnObject,
    #[error("missing or invalid id: {0}")]
    Id(String),
    #[error("field {field}: {detail}")]
    Field { field: &'static str, detail: String },
    #[error("attachment is not linked to a candidate")]
    NoCandidate,
}

type Conv = fn(&Value) -> Result<Value, String>;

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn string(v: &Value) -> Result<Value, String> {
    match v {
        Value::Null | Value::String(_) => Ok(v.clone()),
        other => Err(format!("expected string or null, got {}", type_name(other))),
    }
}

fn boolean(v: &Value) -> Result<Value, String> {
    match v {
        Value::Null | Value::Bool(_) => Ok(v.clone()),
        other => Err(format!(
            "expected boolean or null, got {}",
            type_name(other)
        )),
    }
}

fn id_string(v: &Value) -> Result<String, String> {
    match v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Ok(u.to_string())
            } else if let Some(i) = n.as_i64() {
                Ok(i.to_string())
            } else {
                Err("expected an integer id, got a fraction".to_string())
            }
        }
        Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Value::String(_) => Err("empty id".to_string()),
        other => Err(format!("expected id, got {}", type_name(other))),
    }
}

/// Free text that Greenhouse may send as a number (`requisition_id`): kept as typed,
/// an empty or blank string included; it is not a record id and never converted as one.
fn text(v: &Value) -> Result<Value, String> {
    match v {
        Value::Null | Value::String(_) => Ok(v.clone()),
        Value::Number(n) => Ok(Value::String(n.to_string())),
        other => Err(format!(
            "expected string, number or null, got {}",
            type_name(other)
        )),
    }
}

fn id(v: &Value) -> Result<Value, String> {
    match v {
        Value::Null => Ok(Value::Null),
        other => id_string(other).map(Value::String),
    }
}

fn id_list(v: &Value) -> Result<Value, String> {
    match v {
        Value::Null => Ok(Value::Null),
        Value::Array(items) => items
            .iter()
            .map(|i| id_string(i).map(Value::String))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Err(format!("expected list of ids, got {}", type_name(other))),
    }
}

fn list(v: &Value) -> Result<Value, String> {
    match v {
        Value::Null | Value::Array(_) => Ok(v.clone()),
        other => Err(format!("expected list or null, got {}", type_name(other))),
    }
}

fn string_list(v: &Value) -> Result<Value, String> {
    match v {
        Value::Null => Ok(Value::Null),
        Value::Array(items) if items.iter().all(Value::is_string) => Ok(v.clone()),
        Value::Array(_) => Err("expected list of strings".to_string()),
        other => Err(format!("expected list or null, got {}", type_name(other))),
    }
}

fn any(v: &Value) -> Result<Value, String> {
    Ok(v.clone())
}

pub(crate) fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| "not an RFC 3339 timestamp".to_string())
}

fn timestamp(v: &Value) -> Result<Value, String> {
    match v {
        Value::Null => Ok(Value::Null),
        Value::String(s) => parse_timestamp(s).map(|t| Value::String(canonical_timestamp(&t))),
        other => Err(format!(
            "expected timestamp or null, got {}",
            type_name(other)
        )),
    }
}

/// v3 `{key: {name, type, value}}` -> `{key: value}`.
fn keyed_custom_fields(v: &Value) -> Result<Value, String> {
    match v {
        Value::Null => Ok(Value::Null),
        Value::Object(m) => {
            let mut out = Map::with_capacity(m.len());
            for (k, entry) in m {
                match entry {
                    Value::Object(e) => {
                        out.insert(k.clone(), e.get("value").cloned().unwrap_or(Value::Null));
                    }
                    Value::Null => {
                        out.insert(k.clone(), Value::Null);
                    }
                    other => {
                        return Err(format!(
                            "custom field {k:?}: expected {{name, type, value}}, got {}",
                            type_name(other)
                        ));
                    }
                }
            }
            Ok(Value::Object(out))
        }
        other => Err(format!("expected object or null, got {}", type_name(other))),
    }
}

/// (payload key, canonical name, conversion)
type Mapping = (&'static str, &'static str, Conv);

const V3_CANDIDATE: &[Mapping] = &[
    ("first_name", "first_name", string),
    ("last_name", "last_name", string),
    ("preferred_name", "preferred_name", string),
    ("company", "company", string),
    ("title", "title", string),
    ("email_addresses", "emails", list),
    ("phone_numbers", "phones", list),
    ("addresses", "addresses", list),
    ("website_addresses", "websites", list),
    ("social_media_addresses", "social_media", list),
    ("tags", "tags", string_list),
    ("private", "is_private", boolean),
    ("can_email", "can_email", boolean),
    ("time_zone", "time_zone", string),
    ("custom_fields", "custom_fields", keyed_custom_fields),
    ("created_at", "created_at", timestamp),
    ("last_activity_at", "last_activity_at", timestamp),
];

const V3_APPLICATION: &[Mapping] = &[
    ("candidate_id", "candidate_id", id),
    ("job_id", "job_id", id),
    ("prospect", "prospect", boolean),
    ("status", "status", string),
    ("stage_id", "stage_id", id),
    ("stage_name", "stage_name", string),
    ("source_id", "source_id", id),
    ("referrer_id", "referrer_id", id),
    ("recruiter_id", "recruiter_id", id),
    ("coordinator_id", "coordinator_id", id),
    ("rejected_at", "rejected_at", timestamp),
    ("rejection_reason_id", "rejection_reason_id", id),
    ("answers", "answers", any),
    ("custom_fields", "custom_fields", keyed_custom_fields),
    ("created_at", "created_at", timestamp),
    ("last_activity_at", "last_activity_at", timestamp),
];

const V3_JOB: &[Mapping] = &[
    ("name", "name", string),
    ("requisition_id", "requisition_id", text),
    ("status", "status", string),
    ("confidential", "confidential", boolean),
    ("department_id", "department_id", id),
    ("office_ids", "office_ids", id_list),
    ("opened_at", "opened_at", timestamp),
    ("closed_at", "closed_at", timestamp),
    ("custom_fields", "custom_fields", keyed_custom_fields),
    ("created_at", "created_at", timestamp),
];

fn apply(
    obj: &Map<String, Value>,
    mappings: &[Mapping],
    fields: &mut Fields,
) -> Result<(), RecordError> {
    for (src, dst, conv) in mappings {
        if let Some(v) = obj.get(*src) {
            let c = conv(v).map_err(|detail| RecordError::Field { field: src, detail })?;
            fields.insert((*dst).to_string(), c);
        }
    }
    Ok(())
}

fn record_id(obj: &Map<String, Value>) -> Result<AtsId, RecordError> {
    let v = obj
        .get("id")
        .ok_or_else(|| RecordError::Id("missing".into()))?;
    let s = id_string(v).map_err(RecordError::Id)?;
    AtsId::parse(s).map_err(|e| RecordError::Id(e.to_string()))
}

/// `updated_at` orders conflicting values, so a record without a readable one cannot be
/// merged safely: quarantined rather than guessed.
fn required_timestamp(
    obj: &Map<String, Value>,
    key: &'static str,
) -> Result<DateTime<Utc>, RecordError> {
    match obj.get(key) {
        Some(Value::String(s)) => {
            parse_timestamp(s).map_err(|detail| RecordError::Field { field: key, detail })
        }
        Some(other) => Err(RecordError::Field {
            field: key,
            detail: format!("expected timestamp, got {}", type_name(other)),
        }),
        None => Err(RecordError::Field {
            field: key,
            detail: "missing".to_string(),
        }),
    }
}

/// The id of a record for a quarantine entry, as far as it can be read.
pub fn best_effort_id(v: &Value) -> Option<String> {
    v.get("id").and_then(|i| id_string(i).ok())
}

fn as_object(v: &Value) -> Result<&Map<String, Value>, RecordError> {
    v.as_object().ok_or(RecordError::NotAnObject)
}

fn record(
    entity: EntityKind,
    obj: &Map<String, Value>,
    mappings: &[Mapping],
    updated_key: &'static str,
) -> Result<Observation, RecordError> {
    let ats_id = record_id(obj)?;
    let updated = required_timestamp(obj, updated_key)?;
    let mut fields = Fields::new();
    apply(obj, mappings, &mut fields)?;
    Ok(Observation {
        entity,
        ats_id,
        ats_updated_at: Some(updated),
        scope: ObservationScope::Record { fields },
    })
}

pub fn v3_candidate(v: &Value) -> Result<Observation, RecordError> {
    record(
        EntityKind::Candidate,
        as_object(v)?,
        V3_CANDIDATE,
        "updated_at",
    )
}

pub fn v3_application(v: &Value) -> Result<Observation, RecordError> {
    record(
        EntityKind::Application,
        as_object(v)?,
        V3_APPLICATION,
        "updated_at",
    )
}

pub fn v3_job(v: &Value) -> Result<Observation, RecordError> {
    record(EntityKind::Job, as_object(v)?, V3_JOB, "updated_at")
}

const ATTACHMENT_ELEMENT: &[Mapping] = &[
    ("filename", "filename", string),
    ("type", "type", string),
    ("created_at", "created_at", timestamp),
    ("updated_at", "updated_at", timestamp),
];

/// An attachment as an element observation on `candidate_id`, plus its download link.
///
/// The observation's `ats_updated_at` is `None`: the element orders itself by its own
/// `updated_at`, and an attachment change must not make the candidate's other fields
/// look newer than they are.
fn attachment(
    obj: &Map<String, Value>,
    attachment_id: AtsId,
    candidate_id: AtsId,
) -> Result<(Observation, Option<AttachmentRef>), RecordError> {
    let mut element = Fields::new();
    element.insert("id".to_string(), Value::String(attachment_id.to_string()));
    apply(obj, ATTACHMENT_ELEMENT, &mut element)?;
    let url = match obj.get("url") {
        Some(Value::String(u)) if !u.trim().is_empty() => Some(u.trim().to_string()),
        Some(Value::String(_)) | Some(Value::Null) | None => None,
        Some(other) => {
            return Err(RecordError::Field {
                field: "url",
                detail: format!("expected string or null, got {}", type_name(other)),
            });
        }
    };
    let filename = obj
        .get("filename")
        .and_then(Value::as_str)
        .map(str::to_string);
    let download = url.map(|u| AttachmentRef {
        candidate_id: candidate_id.clone(),
        attachment_id: attachment_id.clone(),
        url: SecretString::from(u),
        filename,
        access: FileAccess::SignedLink,
    });
    let obs = Observation {
        entity: EntityKind::Candidate,
        ats_id: candidate_id,
        ats_updated_at: None,
        scope: ObservationScope::Element {
            field: ATTACHMENTS.to_string(),
            element: Value::Object(element.into_iter().collect()),
        },
    };
    Ok((obs, download))
}

pub fn v3_attachment(v: &Value) -> Result<(Observation, Option<AttachmentRef>), RecordError> {
    let obj = as_object(v)?;
    let attachment_id = record_id(obj)?;
    // Validated so that a broken row is quarantined rather than silently unordered.
    required_timestamp(obj, "updated_at")?;
    let candidate_id = match obj.get("candidate_id") {
        None | Some(Value::Null) => return Err(RecordError::NoCandidate),
        Some(c) => id_string(c)
            .and_then(|s| AtsId::parse(s).map_err(|e| e.to_string()))
            .map_err(|detail| RecordError::Field {
                field: "candidate_id",
                detail,
            })?,
    };
    attachment(obj, attachment_id, candidate_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(o: &Observation) -> &Fields {
        match &o.scope {
            ObservationScope::Record { fields } => fields,
            other => panic!("expected record scope, got {other:?}"),
        }
    }

    #[test]
    fn v3_candidate_maps_names_and_drops_layer_metadata() {
        let v = json!({
            "id": 123, "first_name": "Ada", "last_name": "Lovelace", "preferred_name": null,
            "company": "Analytical", "title": "Engineer",
            "created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-03-01T10:15:30.123Z",
            "last_activity_at": "2026-03-01T10:15:30.123456+00:00",
            "private": false, "can_email": true, "time_zone": "Europe/London",
            "tags": ["a", "b"], "linked_user_ids": [5],
            "phone_numbers": [{"type": "mobile", "value": "+44 1"}],
            "email_addresses": [{"type": "personal", "value": "ada@example.org"}],
            "addresses": [], "website_addresses": [{"type": "blog", "value": "x"}],
            "social_media_addresses": [{"value": "@ada"}],
            "custom_fields": {"shoe": {"name": "Shoe size", "type": "number", "value": 38}, "empty": {"name": "E", "type": "short_text", "value": null}},
            "brand_new_field": {"whatever": 1}
        });
        let o = v3_candidate(&v).unwrap();
        assert_eq!(o.entity, EntityKind::Candidate);
        assert_eq!(o.ats_id.as_str(), "123");
        assert_eq!(
            o.ats_updated_at,
            Some(parse_timestamp("2026-03-01T10:15:30.123Z").unwrap())
        );
        let f = fields(&o);
        assert_eq!(f["first_name"], json!("Ada"));
        assert_eq!(f["preferred_name"], Value::Null, "null stays null");
        assert_eq!(f["is_private"], json!(false));
        assert_eq!(
            f["emails"],
            json!([{"type": "personal", "value": "ada@example.org"}])
        );
        assert_eq!(f["social_media"], json!([{"value": "@ada"}]));
        assert_eq!(f["websites"], json!([{"type": "blog", "value": "x"}]));
        assert_eq!(f["custom_fields"], json!({"shoe": 38, "empty": null}));
        assert_eq!(f["created_at"], json!("2026-01-02T03:04:05.000Z"));
        assert_eq!(f["last_activity_at"], json!("2026-03-01T10:15:30.123Z"));
        for dropped in [
            "id",
            "updated_at",
            "linked_user_ids",
            "brand_new_field",
            "private",
        ] {
            assert!(!f.contains_key(dropped), "{dropped} must not be a field");
        }
        for k in f.keys() {
            assert!(
                EntityKind::Candidate.is_known_field(k),
                "{k} is not canonical"
            );
        }
    }

    #[test]
    fn absent_keys_stay_absent() {
        let o = v3_candidate(
            &json!({"id": "7", "updated_at": "2026-03-01T10:15:30Z", "first_name": "A"}),
        )
        .unwrap();
        let f = fields(&o);
        assert_eq!(f.len(), 1);
        assert!(!f.contains_key("last_name"));
    }

    #[test]
    fn v3_application_ids_become_strings_and_prospect_job_is_null() {
        let v = json!({
            "id": 9, "candidate_id": 123, "job_id": null, "job_post_id": 4, "prospect": true,
            "prospective_job_ids": [1], "status": "in_process", "stage_id": 77, "stage_name": "Screen",
            "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-02T00:00:00.000Z",
            "last_activity_at": "2026-01-02T00:00:00.000Z", "rejected_at": null,
            "rejection_reason_id": null, "source_id": 3, "referrer_id": null, "recruiter_id": 11,
            "coordinator_id": "12", "location_address": "x",
            "answers": [{"question": "Q", "answer": "A"}], "custom_fields": {}
        });
        let o = v3_application(&v).unwrap();
        let f = fields(&o);
        assert_eq!(f["candidate_id"], json!("123"));
        assert_eq!(f["job_id"], Value::Null);
        assert_eq!(f["stage_id"], json!("77"));
        assert_eq!(f["coordinator_id"], json!("12"));
        assert_eq!(f["answers"], json!([{"question": "Q", "answer": "A"}]));
        assert_eq!(f["custom_fields"], json!({}));
        assert!(!f.contains_key("job_post_id") && !f.contains_key("location_address"));
        for k in f.keys() {
            assert!(EntityKind::Application.is_known_field(k), "{k}");
        }
    }

    #[test]
    fn a_requisition_id_is_free_text_kept_as_typed_even_when_empty() {
        let job = |req: Value| {
            json!({"id": 5, "name": "x", "requisition_id": req,
                   "updated_at": "2026-01-01T00:00:00Z"})
        };
        for req in [json!(""), json!("  "), json!(" REQ 7/b "), Value::Null] {
            let o = v3_job(&job(req.clone())).unwrap();
            assert_eq!(fields(&o)["requisition_id"], req);
        }
        assert!(v3_job(&job(json!({"a": 1}))).is_err());
    }

    #[test]
    fn v3_job_office_ids_and_requisition_id_are_strings() {
        let v = json!({
            "id": 5, "name": "Rust engineer", "requisition_id": 1001, "status": "open",
            "confidential": false, "created_at": "2026-01-01T00:00:00Z", "opened_at": "2026-01-01T00:00:00Z",
            "closed_at": null, "updated_at": "2026-01-01T00:00:00Z", "department_id": 8,
            "office_ids": [1, "2"], "custom_fields": null
        });
        let o = v3_job(&v).unwrap();
        let f = fields(&o);
        assert_eq!(f["requisition_id"], json!("1001"));
        assert_eq!(f["office_ids"], json!(["1", "2"]));
        assert_eq!(f["department_id"], json!("8"));
        assert_eq!(f["custom_fields"], Value::Null);
        assert_eq!(f["closed_at"], Value::Null);
        for k in f.keys() {
            assert!(EntityKind::Job.is_known_field(k), "{k}");
        }
    }

    #[test]
    fn broken_records_are_rejected_with_the_reason() {
        let ok_ts = "2026-01-01T00:00:00Z";
        let cases = [
            (json!([1, 2]), "not a JSON object"),
            (json!({"updated_at": ok_ts}), "id"),
            (json!({"id": 1.5, "updated_at": ok_ts}), "id"),
            (json!({"id": "a/b", "updated_at": ok_ts}), "id"),
            (json!({"id": 1}), "updated_at"),
            (json!({"id": 1, "updated_at": "yesterday"}), "updated_at"),
            (json!({"id": 1, "updated_at": null}), "updated_at"),
            (
                json!({"id": 1, "updated_at": ok_ts, "first_name": 5}),
                "first_name",
            ),
            (json!({"id": 1, "updated_at": ok_ts, "tags": "a,b"}), "tags"),
            (
                json!({"id": 1, "updated_at": ok_ts, "private": "no"}),
                "private",
            ),
            (
                json!({"id": 1, "updated_at": ok_ts, "created_at": "03/01/2026"}),
                "created_at",
            ),
            (
                json!({"id": 1, "updated_at": ok_ts, "custom_fields": [1]}),
                "custom_fields",
            ),
        ];
        for (v, needle) in cases {
            let e = v3_candidate(&v).expect_err(&v.to_string()).to_string();
            assert!(e.contains(needle), "{v}: {e}");
        }
        assert_eq!(
            best_effort_id(&json!({"id": 44, "first_name": 5})),
            Some("44".into())
        );
    }

    #[test]
    fn v3_attachment_is_an_element_of_its_candidate_and_its_url_is_only_a_download() {
        use secrecy::ExposeSecret;
        let v = json!({
            "id": 31, "candidate_id": 123, "application_id": 9, "filename": "cv.pdf", "type": "resume",
            "url": "https://files.example/cv.pdf?X-Sig=abc", "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00.5Z"
        });
        let (o, d) = v3_attachment(&v).unwrap();
        assert_eq!(o.entity, EntityKind::Candidate);
        assert_eq!(o.ats_id.as_str(), "123");
        assert_eq!(o.ats_updated_at, None);
        let ObservationScope::Element { field, element } = &o.scope else {
            panic!("element expected")
        };
        assert_eq!(field, ATTACHMENTS);
        assert_eq!(
            element,
            &json!({"id": "31", "filename": "cv.pdf", "type": "resume",
                    "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.500Z"})
        );
        assert!(!serde_json::to_string(&o).unwrap().contains("X-Sig"));
        let d = d.unwrap();
        assert_eq!(d.attachment_id.as_str(), "31");
        assert_eq!(d.candidate_id.as_str(), "123");
        assert_eq!(
            d.url.expose_secret(),
            "https://files.example/cv.pdf?X-Sig=abc"
        );
        assert_eq!(d.filename.as_deref(), Some("cv.pdf"));
    }

    #[test]
    fn attachment_without_candidate_is_rejected() {
        let v = json!({"id": 1, "application_id": 3, "updated_at": "2026-01-01T00:00:00Z"});
        assert_eq!(v3_attachment(&v).unwrap_err(), RecordError::NoCandidate);
        let v = json!({"id": 1, "candidate_id": null, "updated_at": "2026-01-01T00:00:00Z", "url": null});
        assert_eq!(v3_attachment(&v).unwrap_err(), RecordError::NoCandidate);
    }
}
