//! Lever v1 objects to canonical observations: pure, tested without a network.
//!
//! The canonical candidate is the opportunity (one candidacy; the person is its
//! `contact`, whose data Lever repeats on each opportunity), its one application (if
//! any) carries the opportunity's stage and archive state, a posting is a job, and
//! resumes and files are the candidate's attachments. `docs/ats/lever.md` gives the
//! mapping and its reasons.
//!
//! Lever sends times as epoch milliseconds; canonical times are RFC 3339 with
//! milliseconds. A row whose shape is wrong is refused with the field's name (and never
//! its value), so the caller can quarantine it and keep the page.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use url::Url;

use crate::connector::{AttachmentRef, FileAccess, canonical_timestamp};
use crate::domain::ids::{AtsId, EntityKind};
use crate::domain::model::{ATTACHMENTS, Fields, Observation, ObservationScope};

/// Why one Lever row could not be normalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("row is not a JSON object")]
    NotObject,
    #[error("field `{field}`: {detail}")]
    Field { field: &'static str, detail: String },
}

fn field_err(field: &'static str, detail: impl Into<String>) -> RowError {
    RowError::Field {
        field,
        detail: detail.into(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn object(v: &Value) -> Result<&Map<String, Value>, RowError> {
    v.as_object().ok_or(RowError::NotObject)
}

/// The row's `id` as an [`AtsId`].
pub fn row_id(obj: &Map<String, Value>) -> Result<AtsId, RowError> {
    match obj.get("id") {
        Some(Value::String(s)) => {
            AtsId::parse(s.as_str()).map_err(|e| field_err("id", e.to_string()))
        }
        Some(other) => Err(field_err(
            "id",
            format!("expected a string, got {}", kind(other)),
        )),
        None => Err(field_err("id", "missing")),
    }
}

/// The id of a row, if it has a usable one (for quarantine entries).
pub fn best_effort_id(v: &Value) -> Option<String> {
    v.get("id")
        .and_then(Value::as_str)
        .filter(|s| AtsId::parse(*s).is_ok())
        .map(str::to_string)
}

/// Epoch milliseconds (Lever's times) as a UTC time; out of range is an error.
pub fn from_millis(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

/// A window bound as Lever's epoch-millisecond filter value.
pub fn millis(t: &DateTime<Utc>) -> String {
    t.timestamp_millis().to_string()
}

fn time_opt(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<DateTime<Utc>>, RowError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(from_millis)
            .map(Some)
            .ok_or_else(|| field_err(field, "not an epoch-millisecond time in range")),
        Some(other) => Err(field_err(
            field,
            format!("expected epoch milliseconds, got {}", kind(other)),
        )),
    }
}

fn time(obj: &Map<String, Value>, field: &'static str) -> Result<DateTime<Utc>, RowError> {
    time_opt(obj, field)?.ok_or_else(|| field_err(field, "missing"))
}

fn time_value(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| Value::String(canonical_timestamp(&t)))
}

fn str_opt<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, RowError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(field_err(
            field,
            format!("expected a string, got {}", kind(other)),
        )),
    }
}

/// A list of strings (`emails`, `links`, `tags`); null or absent is empty.
fn strings<'a>(obj: &'a Map<String, Value>, field: &'static str) -> Result<Vec<&'a str>, RowError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .ok_or_else(|| field_err(field, format!("expected strings, got {}", kind(i))))
            })
            .collect(),
        Some(other) => Err(field_err(
            field,
            format!("expected a list, got {}", kind(other)),
        )),
    }
}

/// An id given as a string or, when expanded, as an object with an `id`.
fn ref_id<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, RowError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(Value::Object(o)) => match o.get("id") {
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            _ => Err(field_err(field, "expanded object without a string id")),
        },
        Some(other) => Err(field_err(
            field,
            format!("expected an id, got {}", kind(other)),
        )),
    }
}

/// `"Ana de la Cruz"` → `Ana` / `de la Cruz`; one word has no last name.
pub fn split_name(name: &str) -> (Value, Value) {
    let name = name.trim();
    if name.is_empty() {
        return (Value::Null, Value::Null);
    }
    match name.find(' ') {
        Some(i) => (json!(&name[..i]), json!(name[i + 1..].trim())),
        None => (json!(name), Value::Null),
    }
}

/// The time a Lever opportunity orders itself by: `updatedAt`, or `createdAt` for old
/// opportunities whose `updatedAt` is null (never updated since Lever added the field:
/// the record is at least as new as its creation).
fn opportunity_time(obj: &Map<String, Value>) -> Result<DateTime<Utc>, RowError> {
    match time_opt(obj, "updatedAt")? {
        Some(t) => Ok(t),
        None => time(obj, "createdAt"),
    }
}

/// An opportunity as the canonical candidate (attachments come from its resumes and
/// files).
pub fn candidate(v: &Value) -> Result<Observation, RowError> {
    let obj = object(v)?;
    let id = row_id(obj)?;
    let updated = opportunity_time(obj)?;
    let mut f = Fields::new();
    let (first, last) = split_name(str_opt(obj, "name")?.unwrap_or(""));
    f.insert("first_name".into(), first);
    f.insert("last_name".into(), last);
    let emails = strings(obj, "emails")?;
    f.insert(
        "emails".into(),
        Value::Array(emails.iter().map(|e| json!({"value": e})).collect()),
    );
    let phones = match obj.get("phones") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(items)) => items
            .iter()
            .map(|p| {
                let p = p
                    .as_object()
                    .ok_or_else(|| field_err("phones", "expected objects"))?;
                let value = str_opt(p, "value")
                    .map_err(|_| field_err("phones", "value is not a string"))?;
                let kind =
                    str_opt(p, "type").map_err(|_| field_err("phones", "type is not a string"))?;
                Ok(json!({"type": kind, "value": value}))
            })
            .collect::<Result<Vec<_>, RowError>>()?,
        Some(other) => {
            return Err(field_err(
                "phones",
                format!("expected a list, got {}", kind(other)),
            ));
        }
    };
    f.insert("phones".into(), Value::Array(phones));
    let location = str_opt(obj, "location")?.unwrap_or("").trim();
    f.insert(
        "addresses".into(),
        if location.is_empty() {
            json!([])
        } else {
            json!([{"value": location}])
        },
    );
    let links = strings(obj, "links")?;
    f.insert(
        "websites".into(),
        Value::Array(links.iter().map(|l| json!({"value": l})).collect()),
    );
    f.insert("tags".into(), json!(strings(obj, "tags")?));
    f.insert(
        "is_private".into(),
        json!(str_opt(obj, "confidentiality")? == Some("confidential")),
    );
    f.insert("created_at".into(), time_value(time_opt(obj, "createdAt")?));
    f.insert(
        "last_activity_at".into(),
        time_value(time_opt(obj, "lastInteractionAt")?),
    );
    Ok(Observation {
        entity: EntityKind::Candidate,
        ats_id: id,
        ats_updated_at: Some(updated),
        scope: ObservationScope::Record { fields: f },
    })
}

/// The archive reasons' statuses (`hired` or not) by reason id (`GET /archive_reasons`).
pub type ArchiveReasons = HashMap<String, String>;

/// The reason ids of archived opportunities in `rows` (to know whether the reasons must
/// be read before normalising the page).
pub fn archive_reasons_of(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .filter_map(|r| r.get("archived")?.get("reason")?.as_str())
        .map(str::to_string)
        .collect()
}

/// The applications embedded in an opportunity listed with `expand=applications`, as
/// canonical applications: each carries the opportunity's stage and archive state and
/// orders itself by the opportunity's time (Lever applications have no `updatedAt`).
pub fn applications(v: &Value, reasons: &ArchiveReasons) -> Result<Vec<Observation>, RowError> {
    let opp = object(v)?;
    let opp_id = row_id(opp)?;
    let updated = opportunity_time(opp)?;
    let items = match opp.get("applications") {
        None | Some(Value::Null) => return Ok(vec![]),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(field_err(
                "applications",
                format!("expected a list, got {}", kind(other)),
            ));
        }
    };
    let (stage_id, stage_name) = match opp.get("stage") {
        None | Some(Value::Null) => (Value::Null, Value::Null),
        Some(Value::String(s)) => (json!(s), Value::Null),
        Some(Value::Object(s)) => (
            s.get("id")
                .filter(|i| i.is_string())
                .cloned()
                .unwrap_or(Value::Null),
            s.get("text")
                .filter(|t| t.is_string())
                .cloned()
                .unwrap_or(Value::Null),
        ),
        Some(other) => {
            return Err(field_err(
                "stage",
                format!("expected an id, got {}", kind(other)),
            ));
        }
    };
    let archived = match opp.get("archived") {
        None | Some(Value::Null) => None,
        Some(Value::Object(a)) => Some((
            time_opt(a, "archivedAt")
                .map_err(|_| field_err("archived", "archivedAt is not a time"))?,
            str_opt(a, "reason").map_err(|_| field_err("archived", "reason is not a string"))?,
        )),
        Some(other) => {
            return Err(field_err(
                "archived",
                format!("expected an object, got {}", kind(other)),
            ));
        }
    };
    let status = match archived {
        None => "in_process",
        Some((_, Some(reason))) if reasons.get(reason).map(String::as_str) == Some("hired") => {
            "hired"
        }
        Some(_) => "rejected",
    };
    let rejected = status == "rejected";
    let recruiter = ref_id(opp, "owner")?;
    let last_activity = time_value(time_opt(opp, "lastInteractionAt")?);
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        // Without `expand=applications` the list holds ids only: nothing to map.
        let Value::Object(a) = item else {
            return Err(field_err("applications", "not expanded (expected objects)"));
        };
        let id = row_id(a)
            .map_err(|_| field_err("applications", "an application without a usable id"))?;
        let posting =
            ref_id(a, "posting").map_err(|_| field_err("applications", "posting is not an id"))?;
        let referral = str_opt(a, "type").ok().flatten() == Some("referral");
        let user = ref_id(a, "user").map_err(|_| field_err("applications", "user is not an id"))?;
        let created = time_opt(a, "createdAt")
            .map_err(|_| field_err("applications", "createdAt is not a time"))?;
        let mut f = Fields::new();
        f.insert("candidate_id".into(), json!(opp_id.as_str()));
        f.insert("job_id".into(), json!(posting));
        f.insert("prospect".into(), json!(posting.is_none()));
        f.insert("status".into(), json!(status));
        f.insert("stage_id".into(), stage_id.clone());
        f.insert("stage_name".into(), stage_name.clone());
        f.insert(
            "referrer_id".into(),
            if referral { json!(user) } else { Value::Null },
        );
        f.insert("recruiter_id".into(), json!(recruiter));
        let (rejected_at, reason) = match archived {
            Some((at, reason)) if rejected => (time_value(at), json!(reason)),
            _ => (Value::Null, Value::Null),
        };
        f.insert("rejected_at".into(), rejected_at);
        f.insert("rejection_reason_id".into(), reason);
        f.insert("created_at".into(), time_value(created));
        f.insert("last_activity_at".into(), last_activity.clone());
        out.push(Observation {
            entity: EntityKind::Application,
            ats_id: id,
            ats_updated_at: Some(updated),
            scope: ObservationScope::Record { fields: f },
        });
    }
    Ok(out)
}

/// A posting as the canonical job.
pub fn job(v: &Value) -> Result<Observation, RowError> {
    let obj = object(v)?;
    let id = row_id(obj)?;
    let updated = match time_opt(obj, "updatedAt")? {
        Some(t) => t,
        None => time(obj, "createdAt")?,
    };
    let codes = strings(obj, "requisitionCodes")?;
    let mut f = Fields::new();
    f.insert("name".into(), json!(str_opt(obj, "text")?));
    f.insert("requisition_id".into(), json!(codes.first()));
    f.insert("status".into(), json!(str_opt(obj, "state")?));
    f.insert(
        "confidential".into(),
        json!(str_opt(obj, "confidentiality")? == Some("confidential")),
    );
    f.insert("created_at".into(), time_value(time_opt(obj, "createdAt")?));
    let cat = match obj.get("categories") {
        Some(Value::Object(c)) => c.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(other) => {
            return Err(field_err(
                "categories",
                format!("expected an object, got {}", kind(other)),
            ));
        }
    };
    let category = |k: &str| {
        cat.get(k)
            .filter(|v| v.is_string())
            .cloned()
            .unwrap_or(Value::Null)
    };
    f.insert(
        "custom_fields".into(),
        json!({
            "team": category("team"), "department": category("department"),
            "location": category("location"), "commitment": category("commitment"),
            "workplace_type": obj.get("workplaceType").filter(|v| v.is_string()).cloned().unwrap_or(Value::Null),
        }),
    );
    Ok(Observation {
        entity: EntityKind::Job,
        ats_id: id,
        ats_updated_at: Some(updated),
        scope: ObservationScope::Record { fields: f },
    })
}

/// Whether a row is a resume (`/resumes`: the file is nested) or a file (`/files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Resume,
    File,
}

impl FileKind {
    pub fn path(self) -> &'static str {
        match self {
            FileKind::Resume => "resumes",
            FileKind::File => "files",
        }
    }
}

/// A resume or file of opportunity `opp` as an `attachments` element, with its
/// download: an API call built from the configured `base` (never the row's own
/// `downloadUrl`, which is data from outside), so the credential goes nowhere else.
pub fn attachment(
    v: &Value,
    opp: &AtsId,
    file_kind: FileKind,
    base: &Url,
) -> Result<(Observation, AttachmentRef), RowError> {
    let obj = object(v)?;
    let id = row_id(obj)?;
    let (filename, created, uploaded) = match file_kind {
        FileKind::Resume => {
            let file = match obj.get("file") {
                Some(Value::Object(f)) => f,
                _ => return Err(field_err("file", "missing or not an object")),
            };
            (
                str_opt(file, "name").map_err(|_| field_err("file", "name is not a string"))?,
                time_opt(obj, "createdAt")?,
                time_opt(file, "uploadedAt")
                    .map_err(|_| field_err("file", "uploadedAt is not a time"))?,
            )
        }
        FileKind::File => {
            let uploaded = time_opt(obj, "uploadedAt")?;
            (str_opt(obj, "name")?, uploaded, uploaded)
        }
    };
    let element = json!({
        "id": id.as_str(),
        "filename": filename,
        "type": match file_kind { FileKind::Resume => "resume", FileKind::File => "other" },
        "created_at": time_value(created),
        "updated_at": time_value(uploaded.or(created)),
    });
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|_| field_err("id", "the API base URL cannot take a path"))?
        .pop_if_empty()
        .extend([
            "opportunities",
            opp.as_str(),
            file_kind.path(),
            id.as_str(),
            "download",
        ]);
    let download = AttachmentRef {
        candidate_id: opp.clone(),
        attachment_id: id,
        url: SecretString::from(url.to_string()),
        filename: filename.map(str::to_string),
        access: FileAccess::ApiCall,
    };
    let obs = Observation {
        entity: EntityKind::Candidate,
        ats_id: opp.clone(),
        ats_updated_at: None,
        scope: ObservationScope::Element {
            field: ATTACHMENTS.to_string(),
            element,
        },
    };
    Ok((obs, download))
}

/// An entry of `GET /opportunities/deleted` as the candidate's tombstone.
pub fn deleted(v: &Value) -> Result<Observation, RowError> {
    let obj = object(v)?;
    let id = row_id(obj)?;
    time(obj, "deletedAt")?;
    Ok(Observation {
        entity: EntityKind::Candidate,
        ats_id: id,
        ats_updated_at: None,
        scope: ObservationScope::Deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn opp() -> Value {
        json!({
            "id": "0f1e2d3c-4b5a-4968-8776-655443322110", "name": "Ana de la Cruz",
            "headline": "Engineer", "contact": "c1", "location": "Lisbon, Portugal",
            "phones": [{"type": "mobile", "value": "+351 1"}], "emails": ["ana@example.com"],
            "links": ["https://ana.example"], "stage": {"id": "st1", "text": "Phone screen"},
            "confidentiality": "confidential", "archived": null, "tags": ["Rust"],
            "owner": "u1", "createdAt": 1_700_000_000_000i64, "updatedAt": null,
            "lastInteractionAt": 1_700_000_500_000i64,
            "applications": [{"id": "a1", "opportunityId": "0f1e2d3c-4b5a-4968-8776-655443322110",
                "createdAt": 1_700_000_000_001i64, "type": "referral", "posting": "p1", "user": "u2"}],
        })
    }

    fn fields(o: &Observation) -> &Fields {
        match &o.scope {
            ObservationScope::Record { fields } => fields,
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn an_opportunity_is_a_candidate_and_a_null_updated_at_orders_by_creation() {
        let o = candidate(&opp()).unwrap();
        assert_eq!(o.ats_updated_at, from_millis(1_700_000_000_000));
        let f = fields(&o);
        assert_eq!(f["first_name"], json!("Ana"));
        assert_eq!(f["last_name"], json!("de la Cruz"));
        assert_eq!(f["emails"], json!([{"value": "ana@example.com"}]));
        assert_eq!(f["phones"], json!([{"type": "mobile", "value": "+351 1"}]));
        assert_eq!(f["addresses"], json!([{"value": "Lisbon, Portugal"}]));
        assert_eq!(f["websites"], json!([{"value": "https://ana.example"}]));
        assert_eq!(f["is_private"], json!(true));
        assert_eq!(f["created_at"], json!("2023-11-14T22:13:20.000Z"));
        assert!(
            !f.contains_key("company"),
            "no Lever equivalent: absent, not invented"
        );
    }

    #[test]
    fn an_expanded_application_carries_the_opportunitys_stage_and_archive_state() {
        let mut reasons = ArchiveReasons::new();
        let a = applications(&opp(), &reasons).unwrap();
        assert_eq!(a.len(), 1);
        let f = fields(&a[0]);
        assert_eq!(
            f["candidate_id"],
            json!("0f1e2d3c-4b5a-4968-8776-655443322110")
        );
        assert_eq!(f["stage_id"], json!("st1"));
        assert_eq!(f["stage_name"], json!("Phone screen"));
        assert_eq!(f["status"], json!("in_process"));
        assert_eq!(f["referrer_id"], json!("u2"));
        assert_eq!(f["prospect"], json!(false));
        let mut archived = opp();
        archived["archived"] = json!({"archivedAt": 1_700_000_900_000i64, "reason": "r-hired"});
        reasons.insert("r-hired".into(), "hired".into());
        let f = applications(&archived, &reasons).unwrap().remove(0);
        assert_eq!(fields(&f)["status"], json!("hired"));
        assert_eq!(fields(&f)["rejected_at"], Value::Null);
        archived["archived"]["reason"] = json!("r-other");
        let f = applications(&archived, &reasons).unwrap().remove(0);
        assert_eq!(fields(&f)["status"], json!("rejected"));
        assert_eq!(fields(&f)["rejected_at"], json!("2023-11-14T22:28:20.000Z"));
        assert_eq!(fields(&f)["rejection_reason_id"], json!("r-other"));
    }

    #[test]
    fn a_wrongly_typed_field_is_refused_by_name_without_its_value() {
        let mut bad = opp();
        bad["emails"] = json!("SECRET-LOOKING-VALUE");
        let e = candidate(&bad).unwrap_err().to_string();
        assert!(e.contains("emails") && !e.contains("SECRET"), "{e}");
        let mut bad = opp();
        bad["updatedAt"] = json!(1e300);
        assert!(candidate(&bad).is_err());
        assert_eq!(candidate(&json!([1])).unwrap_err(), RowError::NotObject);
    }

    #[test]
    fn a_resume_downloads_from_the_configured_api_never_from_its_download_url() {
        let base = Url::parse("https://api.lever.co/v1/").unwrap();
        let row = json!({"id": "r1", "createdAt": 1_700_000_000_000i64,
            "file": {"name": "cv.pdf", "downloadUrl": "https://evil.example/steal", "uploadedAt": 1_700_000_000_500i64}});
        let opp = AtsId::parse("o1").unwrap();
        let (o, d) = attachment(&row, &opp, FileKind::Resume, &base).unwrap();
        assert_eq!(
            d.url.expose_secret(),
            "https://api.lever.co/v1/opportunities/o1/resumes/r1/download"
        );
        assert_eq!(d.access, FileAccess::ApiCall);
        let ObservationScope::Element { element, .. } = o.scope else {
            panic!()
        };
        assert_eq!(element["type"], json!("resume"));
        assert_eq!(element["filename"], json!("cv.pdf"));
        let file = json!({"id": "f1", "name": "offer.pdf", "uploadedAt": 1_700_000_000_500i64});
        let (o, d) = attachment(&file, &opp, FileKind::File, &base).unwrap();
        assert!(
            d.url
                .expose_secret()
                .ends_with("/opportunities/o1/files/f1/download")
        );
        let ObservationScope::Element { element, .. } = o.scope else {
            panic!()
        };
        assert_eq!(element["type"], json!("other"));
    }

    #[test]
    fn a_posting_is_a_job_and_a_deleted_entry_a_tombstone() {
        let p = json!({"id": "p1", "text": "Backend Engineer", "state": "published",
            "confidentiality": "non-confidential", "requisitionCodes": ["R-1", "R-2"],
            "categories": {"team": "Platform", "location": "Remote"}, "workplaceType": "remote",
            "createdAt": 1_700_000_000_000i64, "updatedAt": 1_700_000_100_000i64});
        let j = job(&p).unwrap();
        let f = fields(&j);
        assert_eq!(f["name"], json!("Backend Engineer"));
        assert_eq!(f["requisition_id"], json!("R-1"));
        assert_eq!(f["custom_fields"]["team"], json!("Platform"));
        assert_eq!(f["custom_fields"]["workplace_type"], json!("remote"));
        let d = deleted(&json!({"id": "o9", "deletedAt": 1_700_000_000_000i64})).unwrap();
        assert_eq!(d.scope, ObservationScope::Deleted);
        assert!(deleted(&json!({"id": "o9"})).is_err());
    }

    #[test]
    fn names_split_at_the_first_space() {
        assert_eq!(split_name("Ada"), (json!("Ada"), Value::Null));
        assert_eq!(split_name("  "), (Value::Null, Value::Null));
        assert_eq!(
            split_name("Ada King Lovelace"),
            (json!("Ada"), json!("King Lovelace"))
        );
    }
}
