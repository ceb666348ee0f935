//! Push ingestion: the customer's standard push (SQS standard queue) merged as the push
//! layer. Format and limits: docs/push-format.md.
//!
//! A message is `{"tenant": "...", "records": [...]}` with 1..=100 records. The body is
//! checked first: a body that is not that shape, or names an unknown tenant, can never
//! succeed and is a poison message (it reaches the DLQ after the queue's bounded
//! receives). Each record is then validated on its own; an invalid record is quarantined
//! with a precise reason (which member, what was expected) and the rest of the batch
//! proceeds, so one bad record never holds up a hundred good ones.
//!
//! Valid records become `Change::Observe { layer: Push, .. }` applied with one
//! `apply_page` (idempotent: a redelivered batch writes nothing new). A pushed delete is
//! a `push_deleted` tombstone version; history is kept.
//!
//! Deletion fence: the batch registers a push lease on the tenant before it writes and
//! removes it afterwards. A deletion bumps the epoch first and then waits until no lease
//! is live, so either this writer sees the tenant `deleting` (and drops the batch,
//! writing nothing), or the deletion sees the lease and waits for it. The lease outlives
//! the function timeout, so a crashed writer still blocks the deletion until it expires.

mod scan;
mod strict;

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::Instrument;

use eds_core::domain::ids::{AtsId, EntityKind, IdError, TenantId};
use eds_core::domain::model::{ATTACHMENTS, Fields, LayerKind, Observation, ObservationScope};
use eds_core::domain::version::Change;
use eds_core::invocation::Invocation;
use eds_core::queue::{JobError, JobQueue, independent_batch};
use eds_core::store::{RecordOutcome, RecordWrite, StoreError};
use eds_core::tenants::{QuarantineEntry, Registry, RegistryError};

/// At most this many records per message.
pub const MAX_RECORDS: usize = 100;
/// SQS's own message size limit; a larger body cannot have come from the queue.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Serialized size bound of one record's `fields` (the store's layer bound).
pub const MAX_RECORD_FIELDS_BYTES: usize = eds_core::domain::version::MAX_LAYER_BYTES;
/// A pushed `updated_at` may be at most this far in the future: a far-future time would
/// win every later merge (rule 3), so it is treated as a sender clock error.
pub const MAX_FUTURE_SKEW_SECS: i64 = 24 * 3600;
/// Default push lease: longer than the function timeout (60 s in the template), so a
/// writer that crashes mid-batch still fences a deletion until the lease runs out.
pub const DEFAULT_PUSH_LEASE_SECS: i64 = 180;
/// Quarantine source name of pushed records.
pub const QUARANTINE_SOURCE: &str = "push";

/// Why a message body is unusable (poison: retrying cannot help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is {bytes} bytes, above the {max} byte limit")]
    TooLarge { bytes: usize, max: usize },
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body must be a JSON object")]
    NotObject,
    #[error("body member {0:?} is not allowed (expected only \"tenant\" and \"records\")")]
    UnknownMember(String),
    #[error("body member {0:?} appears more than once")]
    DuplicateMember(String),
    #[error("body member {0:?} is missing")]
    Missing(&'static str),
    #[error("body member \"tenant\" must be a string")]
    TenantNotString,
    #[error("body member \"tenant\" is invalid: {0}")]
    Tenant(IdError),
    #[error("body member \"records\" must be a list")]
    RecordsNotList,
    #[error("body holds no records")]
    Empty,
    #[error("body holds {count} records, above the limit of {max}")]
    TooManyRecords { count: usize, max: usize },
}

/// Why one pushed record is rejected (quarantined; the rest of the batch proceeds).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record is not readable JSON: {0}")]
    Json(String),
    #[error("record must be a JSON object")]
    NotObject,
    #[error("member {0:?} is not allowed")]
    UnknownMember(String),
    #[error("member {0:?} is missing")]
    Missing(&'static str),
    #[error("member {member:?} must be {expected}")]
    Type {
        member: &'static str,
        expected: &'static str,
    },
    #[error("entity {0:?} is unknown (expected candidate, application, job or attachment)")]
    Entity(String),
    #[error("member {member:?} is not a valid id: {error}")]
    Id {
        member: &'static str,
        error: IdError,
    },
    #[error("op {0:?} is unknown (expected upsert or delete)")]
    Op(String),
    #[error("member {member:?} is not an RFC 3339 timestamp")]
    Timestamp { member: &'static str },
    #[error("updated_at is more than {max_secs} s in the future")]
    Future { max_secs: i64 },
    #[error("member \"candidate_id\" is required for attachments")]
    CandidateIdRequired,
    #[error("member \"candidate_id\" is only allowed on attachments")]
    CandidateIdNotAllowed,
    #[error("a delete carries no fields")]
    DeleteWithFields,
    #[error("attachments cannot be deleted by push (the record model has no element delete)")]
    AttachmentDelete,
    #[error("field {field:?} is not a canonical field of {entity}")]
    UnknownField { entity: &'static str, field: String },
    #[error(
        "field \"attachments\" cannot be pushed inside a candidate; push each as an attachment record"
    )]
    AttachmentsInCandidate,
    #[error("field {path} must be {expected}")]
    FieldType { path: String, expected: String },
    #[error("field {path} is too large: {size} {unit}, at most {max}")]
    FieldTooLarge {
        path: String,
        size: usize,
        max: usize,
        unit: &'static str,
    },
    #[error("fields are {bytes} bytes serialized, above the {max} byte bound")]
    RecordTooLarge { bytes: usize, max: usize },
}

/// Entity of a pushed record: a record kind, or an attachment of a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushEntity {
    Record(EntityKind),
    Attachment,
}

impl PushEntity {
    pub fn as_str(self) -> &'static str {
        match self {
            PushEntity::Record(e) => e.as_str(),
            PushEntity::Attachment => "attachment",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOp {
    Upsert,
    Delete,
}

/// A validated pushed record (timestamps inside `fields` normalised to the canonical
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`).
#[derive(Debug, Clone, PartialEq)]
pub struct PushRecord {
    pub entity: PushEntity,
    pub id: AtsId,
    pub op: PushOp,
    pub updated_at: DateTime<Utc>,
    /// Attachments only: the candidate the attachment belongs to.
    pub candidate_id: Option<AtsId>,
    pub fields: Fields,
}

/// A parsed message body. Each record is parsed on its own: one that is not readable
/// JSON (nested deeper than the parser allows, a lone surrogate, a repeated member) is
/// an error of that record only, quarantined like any invalid record.
#[derive(Debug, Clone, PartialEq)]
pub struct PushBody {
    pub tenant: TenantId,
    pub records: Vec<Result<Value, RecordError>>,
}

/// Parses a message body (see [`BodyError`] for what makes it poison).
///
/// The outer object and the `records` list are split by [`scan`] (an iterative scanner:
/// linear time, no recursion, so no depth limit of its own), then `tenant` and each record
/// are parsed separately by serde_json. A record's own syntax is therefore checked by the
/// JSON parser, and only the outer structure decides whether the body is poison.
pub fn parse_body(body: &str) -> Result<PushBody, BodyError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge {
            bytes: body.len(),
            max: MAX_BODY_BYTES,
        });
    }
    if !body.trim_start().starts_with('{') {
        // Not an object: valid JSON of another type, or not JSON at all.
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(body) {
            Ok(_) => BodyError::NotObject,
            Err(e) => BodyError::NotJson(e.to_string()),
        });
    }
    let members = scan::object(body).map_err(BodyError::NotJson)?;
    let mut tenant_raw = None;
    let mut records_raw = None;
    for (key, raw) in members {
        let slot = match key.as_str() {
            "tenant" => &mut tenant_raw,
            "records" => &mut records_raw,
            other => return Err(BodyError::UnknownMember(excerpt(other))),
        };
        if slot.replace(raw).is_some() {
            return Err(BodyError::DuplicateMember(excerpt(&key)));
        }
    }
    let tenant = match tenant_raw.map(serde_json::from_str::<Value>) {
        None => return Err(BodyError::Missing("tenant")),
        Some(Ok(Value::String(s))) => TenantId::parse(s).map_err(BodyError::Tenant)?,
        Some(Ok(_)) => return Err(BodyError::TenantNotString),
        Some(Err(e)) => return Err(BodyError::NotJson(e.to_string())),
    };
    let Some(records_raw) = records_raw else {
        return Err(BodyError::Missing("records"));
    };
    let Some(items) = scan::array(records_raw).map_err(BodyError::NotJson)? else {
        return Err(BodyError::RecordsNotList);
    };
    if items.is_empty() {
        return Err(BodyError::Empty);
    }
    if items.len() > MAX_RECORDS {
        return Err(BodyError::TooManyRecords {
            count: items.len(),
            max: MAX_RECORDS,
        });
    }
    let records = items.into_iter().map(parse_record).collect();
    Ok(PushBody { tenant, records })
}

/// Parses one record's JSON text, refusing repeated member names at any depth (serde_json
/// alone keeps the last one silently; a sender that repeats a member did not mean both).
pub fn parse_record(raw: &str) -> Result<Value, RecordError> {
    let mut de = serde_json::Deserializer::from_str(raw);
    let value = serde::Deserialize::deserialize(&mut de)
        .and_then(|strict::Strict(v)| de.end().map(|()| v))
        // serde_json's message names a position and a category (and for a repeated member
        // its name), never a value.
        .map_err(|e| RecordError::Json(e.to_string()))?;
    Ok(value)
}

/// At most 64 characters of an untrusted name, for error messages.
fn excerpt(s: &str) -> String {
    s.chars().take(64).collect()
}

const RECORD_MEMBERS: &[&str] = &["entity", "id", "op", "updated_at", "fields", "candidate_id"];

/// Validates one pushed record. `now` bounds how far in the future `updated_at` may be.
pub fn validate_record(value: &Value, now: DateTime<Utc>) -> Result<PushRecord, RecordError> {
    let Value::Object(map) = value else {
        return Err(RecordError::NotObject);
    };
    if let Some(k) = map.keys().find(|k| !RECORD_MEMBERS.contains(&k.as_str())) {
        return Err(RecordError::UnknownMember(excerpt(k)));
    }
    let string = |member: &'static str| -> Result<&str, RecordError> {
        match map.get(member) {
            None => Err(RecordError::Missing(member)),
            Some(Value::String(s)) => Ok(s.as_str()),
            Some(_) => Err(RecordError::Type {
                member,
                expected: "a string",
            }),
        }
    };
    let entity = match string("entity")? {
        "attachment" => PushEntity::Attachment,
        other => PushEntity::Record(
            EntityKind::parse(other).map_err(|_| RecordError::Entity(excerpt(other)))?,
        ),
    };
    let id = AtsId::parse(string("id")?).map_err(|error| RecordError::Id {
        member: "id",
        error,
    })?;
    let op = match string("op")? {
        "upsert" => PushOp::Upsert,
        "delete" => PushOp::Delete,
        other => return Err(RecordError::Op(excerpt(other))),
    };
    let updated_at = parse_time(string("updated_at")?).ok_or(RecordError::Timestamp {
        member: "updated_at",
    })?;
    if updated_at > now + Duration::seconds(MAX_FUTURE_SKEW_SECS) {
        return Err(RecordError::Future {
            max_secs: MAX_FUTURE_SKEW_SECS,
        });
    }
    let candidate_id = match (entity, map.contains_key("candidate_id")) {
        (PushEntity::Attachment, false) => return Err(RecordError::CandidateIdRequired),
        (PushEntity::Attachment, true) => Some(AtsId::parse(string("candidate_id")?).map_err(
            |error| RecordError::Id {
                member: "candidate_id",
                error,
            },
        )?),
        (PushEntity::Record(_), true) => return Err(RecordError::CandidateIdNotAllowed),
        (PushEntity::Record(_), false) => None,
    };
    let raw_fields = match map.get("fields") {
        None => Map::new(),
        Some(Value::Object(f)) => f.clone(),
        Some(_) => {
            return Err(RecordError::Type {
                member: "fields",
                expected: "an object",
            });
        }
    };
    let fields = match op {
        PushOp::Delete if entity == PushEntity::Attachment => {
            return Err(RecordError::AttachmentDelete);
        }
        PushOp::Delete if !raw_fields.is_empty() => return Err(RecordError::DeleteWithFields),
        PushOp::Delete => Fields::new(),
        PushOp::Upsert => validate_fields(entity, raw_fields)?,
    };
    Ok(PushRecord {
        entity,
        id,
        op,
        updated_at,
        candidate_id,
        fields,
    })
}

/// RFC 3339 with a time zone, converted to UTC.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The canonical form of timestamps inside fields.
fn canonical_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// How a canonical field is checked.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A string of at most this many characters.
    Text(usize),
    /// A reference to another record: a string in the `AtsId` form.
    Id,
    /// A list of at most this many references.
    IdList(usize),
    Bool,
    /// RFC 3339; stored in canonical form.
    Time,
    /// `[{type?, value}]` (emails, phones, addresses, websites, social media).
    Contacts,
    /// A list of strings (tags).
    Strings,
    /// An object of at most this many serialized bytes (custom fields).
    Object(usize),
    /// Any JSON of at most this many serialized bytes (application answers, as given).
    Any(usize),
}

const NAME: Kind = Kind::Text(512);
const SHORT: Kind = Kind::Text(128);
const CUSTOM: Kind = Kind::Object(32 * 1024);
const LIST_MAX: usize = 100;
const CONTACT_VALUE_MAX: usize = 1024;

fn field_kind(entity: PushEntity, field: &str) -> Option<Kind> {
    use EntityKind::*;
    let kind = match (entity, field) {
        (PushEntity::Record(Candidate), f) => match f {
            "first_name" | "last_name" | "preferred_name" | "company" | "title" => NAME,
            "emails" | "phones" | "addresses" | "websites" | "social_media" => Kind::Contacts,
            "tags" => Kind::Strings,
            "is_private" | "can_email" => Kind::Bool,
            "time_zone" => SHORT,
            "custom_fields" => CUSTOM,
            "created_at" | "last_activity_at" => Kind::Time,
            _ => return None,
        },
        (PushEntity::Record(Application), f) => match f {
            "candidate_id"
            | "job_id"
            | "stage_id"
            | "source_id"
            | "referrer_id"
            | "recruiter_id"
            | "coordinator_id"
            | "rejection_reason_id" => Kind::Id,
            "prospect" => Kind::Bool,
            "status" => SHORT,
            "stage_name" => NAME,
            "rejected_at" | "created_at" | "last_activity_at" => Kind::Time,
            "answers" => Kind::Any(32 * 1024),
            "custom_fields" => CUSTOM,
            _ => return None,
        },
        (PushEntity::Record(Job), f) => match f {
            "name" => NAME,
            // A requisition id is free text typed by a recruiter, not a record id.
            "requisition_id" => Kind::Text(256),
            "status" => SHORT,
            "confidential" => Kind::Bool,
            "department_id" => Kind::Id,
            "office_ids" => Kind::IdList(LIST_MAX),
            "opened_at" | "closed_at" | "created_at" => Kind::Time,
            "custom_fields" => CUSTOM,
            _ => return None,
        },
        (PushEntity::Attachment, f) => match f {
            "filename" => Kind::Text(1024),
            "type" => SHORT,
            "created_at" => Kind::Time,
            _ => return None,
        },
    };
    Some(kind)
}

fn validate_fields(entity: PushEntity, raw: Map<String, Value>) -> Result<Fields, RecordError> {
    let bytes = serde_json::to_vec(&raw).map_or(usize::MAX, |v| v.len());
    if bytes > MAX_RECORD_FIELDS_BYTES {
        return Err(RecordError::RecordTooLarge {
            bytes,
            max: MAX_RECORD_FIELDS_BYTES,
        });
    }
    let mut out = Fields::new();
    for (name, value) in raw {
        if entity == PushEntity::Record(EntityKind::Candidate) && name == ATTACHMENTS {
            return Err(RecordError::AttachmentsInCandidate);
        }
        let Some(kind) = field_kind(entity, &name) else {
            return Err(RecordError::UnknownField {
                entity: entity.as_str(),
                field: excerpt(&name),
            });
        };
        let value = check_value(&name, kind, value)?;
        out.insert(name, value);
    }
    Ok(out)
}

fn type_error(path: impl Into<String>, expected: impl Into<String>) -> RecordError {
    RecordError::FieldType {
        path: path.into(),
        expected: expected.into(),
    }
}

fn check_text(path: &str, v: &Value, max: usize) -> Result<(), RecordError> {
    let Value::String(s) = v else {
        return Err(type_error(path, "a string or null"));
    };
    let chars = s.chars().count();
    if chars > max {
        return Err(RecordError::FieldTooLarge {
            path: path.to_owned(),
            size: chars,
            max,
            unit: "characters",
        });
    }
    Ok(())
}

fn check_list_len(path: &str, items: &[Value], max: usize) -> Result<(), RecordError> {
    if items.len() > max {
        return Err(RecordError::FieldTooLarge {
            path: path.to_owned(),
            size: items.len(),
            max,
            unit: "items",
        });
    }
    Ok(())
}

/// Checks one field value (explicit `null` is allowed everywhere: the sender says the
/// field is empty) and returns it in canonical form.
fn check_value(name: &str, kind: Kind, value: Value) -> Result<Value, RecordError> {
    if value.is_null() {
        return Ok(value);
    }
    let path = format!("fields.{name}");
    match kind {
        Kind::Text(max) => check_text(&path, &value, max)?,
        Kind::Id => match &value {
            Value::String(s) => {
                AtsId::parse(s.as_str()).map_err(|e| type_error(&path, format!("an id ({e})")))?;
            }
            _ => return Err(type_error(&path, "an id string or null")),
        },
        Kind::IdList(max) => {
            let Value::Array(items) = &value else {
                return Err(type_error(&path, "a list of id strings or null"));
            };
            check_list_len(&path, items, max)?;
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) if AtsId::parse(s.as_str()).is_ok() => {}
                    _ => return Err(type_error(format!("{path}[{i}]"), "an id string")),
                }
            }
        }
        Kind::Bool => {
            if !value.is_boolean() {
                return Err(type_error(&path, "true, false or null"));
            }
        }
        Kind::Time => {
            let t = value
                .as_str()
                .and_then(parse_time)
                .ok_or_else(|| type_error(&path, "an RFC 3339 timestamp or null"))?;
            return Ok(Value::String(canonical_time(t)));
        }
        Kind::Contacts => {
            let Value::Array(items) = &value else {
                return Err(type_error(
                    &path,
                    "a list of {type?, value} objects or null",
                ));
            };
            check_list_len(&path, items, LIST_MAX)?;
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let Value::Object(o) = item else {
                    return Err(type_error(p, "an object {type?, value}"));
                };
                if let Some(k) = o.keys().find(|k| *k != "type" && *k != "value") {
                    return Err(type_error(
                        format!("{p}.{}", excerpt(k)),
                        "absent (only \"type\" and \"value\" are allowed)",
                    ));
                }
                match o.get("value") {
                    Some(v @ Value::String(_)) => {
                        check_text(&format!("{p}.value"), v, CONTACT_VALUE_MAX)?
                    }
                    _ => return Err(type_error(format!("{p}.value"), "a string")),
                }
                match o.get("type") {
                    None | Some(Value::Null) => {}
                    Some(v @ Value::String(_)) => check_text(&format!("{p}.type"), v, 64)?,
                    Some(_) => return Err(type_error(format!("{p}.type"), "a string or null")),
                }
            }
        }
        Kind::Strings => {
            let Value::Array(items) = &value else {
                return Err(type_error(&path, "a list of strings or null"));
            };
            check_list_len(&path, items, LIST_MAX)?;
            for (i, item) in items.iter().enumerate() {
                check_text(&format!("{path}[{i}]"), item, 256).map_err(|_| {
                    type_error(format!("{path}[{i}]"), "a string of at most 256 characters")
                })?;
            }
        }
        Kind::Object(max) | Kind::Any(max) => {
            if matches!(kind, Kind::Object(_)) && !value.is_object() {
                return Err(type_error(&path, "an object or null"));
            }
            let bytes = serde_json::to_vec(&value).map_or(usize::MAX, |v| v.len());
            if bytes > max {
                return Err(RecordError::FieldTooLarge {
                    path,
                    size: bytes,
                    max,
                    unit: "bytes",
                });
            }
        }
    }
    Ok(value)
}

/// The store change a valid pushed record stands for.
pub fn to_change(record: &PushRecord) -> Change {
    let ats_updated_at = Some(record.updated_at);
    let observation = match (record.entity, record.op) {
        (PushEntity::Attachment, _) => {
            let mut element = Map::new();
            element.insert("id".into(), Value::String(record.id.to_string()));
            for (k, v) in &record.fields {
                element.insert(k.clone(), v.clone());
            }
            // The row's own time orders versions of the element (merge rule 5).
            element.insert(
                "updated_at".into(),
                Value::String(canonical_time(record.updated_at)),
            );
            Observation {
                entity: EntityKind::Candidate,
                // Validation guarantees it; the record's own id is the fallback only
                // to keep this function total.
                ats_id: record
                    .candidate_id
                    .clone()
                    .unwrap_or_else(|| record.id.clone()),
                ats_updated_at,
                scope: ObservationScope::Element {
                    field: ATTACHMENTS.to_owned(),
                    element: Value::Object(element),
                },
            }
        }
        (PushEntity::Record(entity), PushOp::Delete) => Observation {
            entity,
            ats_id: record.id.clone(),
            ats_updated_at,
            scope: ObservationScope::Deleted,
        },
        (PushEntity::Record(entity), PushOp::Upsert) => Observation {
            entity,
            ats_id: record.id.clone(),
            ats_updated_at,
            scope: ObservationScope::Record {
                fields: record.fields.clone(),
            },
        },
    };
    Change::Observe {
        layer: LayerKind::Push,
        observation,
    }
}

/// Best-effort id of an invalid record, for its quarantine entry (only if it is a
/// valid id: never an arbitrary string from the payload).
fn record_id_hint(value: &Value) -> Option<String> {
    value
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| AtsId::parse(s).ok())
        .map(String::from)
}

/// What one message did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PushReport {
    pub received: usize,
    pub quarantined: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Deletes of records eds does not hold (never pushed nor pulled): acknowledged,
    /// nothing written.
    pub unknown_deletes: usize,
    /// The tenant is being deleted (or vanished while we looked): nothing written.
    pub dropped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("tenant {0} is not registered")]
    UnknownTenant(TenantId),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} record(s) could not be written yet (throttling or contention)")]
    Incomplete(usize),
}

impl PushError {
    /// Poison (to the DLQ after bounded receives) or retry later.
    pub fn to_job_error(&self) -> JobError {
        match self {
            PushError::Body(_) | PushError::UnknownTenant(_) => JobError::Poison(self.to_string()),
            PushError::Registry(e) if !e.is_retryable() => JobError::Poison(self.to_string()),
            PushError::Store(e) if !e.is_retryable() => JobError::Poison(self.to_string()),
            _ => JobError::Retry {
                reason: self.to_string(),
                after: std::time::Duration::from_secs(30),
            },
        }
    }
}

/// The push-ingest handler.
pub struct PushIngest {
    registry: Arc<dyn Registry>,
    store: Arc<dyn RecordWrite>,
    /// The push queue: a failed message's visibility is set there (retry backoff).
    queue: Arc<dyn JobQueue>,
    lease: Duration,
}

impl PushIngest {
    pub fn new(
        registry: Arc<dyn Registry>,
        store: Arc<dyn RecordWrite>,
        queue: Arc<dyn JobQueue>,
    ) -> Self {
        Self {
            registry,
            store,
            queue,
            lease: Duration::seconds(DEFAULT_PUSH_LEASE_SECS),
        }
    }

    /// Overrides the push lease length (must exceed the function timeout).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Processes one SQS batch (standard queue): each message independently, failures
    /// reported as partial batch failures.
    pub async fn handle(&self, event: SqsEvent, _invocation: Invocation) -> SqsBatchResponse {
        independent_batch(&event, &*self.queue, |msg: &SqsMessage| {
            let body = msg.body.clone().unwrap_or_default();
            let id = msg.message_id.clone().unwrap_or_default();
            // Boxed: the message future is deep (registry, store, tracing), and an
            // unboxed one overflows the compiler's layout depth in the binary.
            Box::pin(async move {
                self.handle_body(&body, &id, Utc::now())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_job_error())
            })
        })
        .await
    }

    /// Processes one message body.
    pub async fn handle_body(
        &self,
        body: &str,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<PushReport, PushError> {
        let parsed = parse_body(body)?;
        let span = tracing::info_span!("push", tenant = %parsed.tenant, message_id);
        self.ingest(parsed, message_id, now).instrument(span).await
    }

    async fn ingest(
        &self,
        parsed: PushBody,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<PushReport, PushError> {
        let tenant = parsed.tenant;
        let mut report = PushReport {
            received: parsed.records.len(),
            ..PushReport::default()
        };

        let Some(rec) = self.registry.get(&tenant).await? else {
            if self.registry.was_deleted(&tenant).await? {
                tracing::warn!(
                    records = report.received,
                    "tenant was deleted: push batch dropped"
                );
                report.dropped = true;
                return Ok(report);
            }
            return Err(PushError::UnknownTenant(tenant));
        };
        if !rec.config.state.accepts_push() {
            tracing::warn!(state = ?rec.config.state, records = report.received, "tenant is being deleted: push batch dropped");
            report.dropped = true;
            return Ok(report);
        }

        let mut changes = Vec::new();
        let mut rejected = Vec::new();
        for (i, parsed) in parsed.records.iter().enumerate() {
            let checked = parsed
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|value| validate_record(value, now));
            match checked {
                Ok(r) => changes.push(to_change(&r)),
                Err(e) => rejected.push(QuarantineEntry {
                    source: QUARANTINE_SOURCE.to_owned(),
                    ats_id: parsed.as_ref().ok().and_then(record_id_hint),
                    error: format!("record {i}: {e}"),
                    at: now,
                    run_id: Some(format!("push:{message_id}")),
                }),
            }
        }

        if !changes.is_empty() {
            // Records this batch deletes: a delete of a record eds does not hold writes
            // nothing (version::apply) and is counted as an unknown id.
            let deletes: std::collections::HashSet<(EntityKind, AtsId)> = changes
                .iter()
                .filter(|c| c.cause() == eds_core::domain::version::Cause::PushDeleted)
                .map(|c| (c.entity(), c.ats_id().clone()))
                .collect();
            let lease_id = uuid::Uuid::new_v4().simple().to_string();
            let Some(_) = self
                .registry
                .acquire_push_lease(&tenant, &lease_id, now + self.lease)
                .await?
            else {
                tracing::warn!(
                    records = report.received,
                    "tenant deleted while the batch started: push batch dropped"
                );
                report.dropped = true;
                return Ok(report);
            };
            let applied = self.store.apply_page(&tenant, changes, now).await;
            eds_core::crash::point("push.after_apply");
            if let Err(e) = self.registry.release_push_lease(&tenant, &lease_id).await {
                // Not fatal: the lease expires on its own.
                tracing::warn!(error = %e, "could not release the push lease");
            }
            let outcome = applied?;
            let mut failed = 0;
            for r in &outcome.records {
                match &r.outcome {
                    RecordOutcome::Created { .. } => report.created += 1,
                    RecordOutcome::Updated { .. } => report.updated += 1,
                    RecordOutcome::Unchanged { version: None }
                        if deletes.contains(&(r.entity, r.ats_id.clone())) =>
                    {
                        report.unknown_deletes += 1
                    }
                    RecordOutcome::Unchanged { .. } => report.unchanged += 1,
                    RecordOutcome::Rejected { error } => rejected.push(QuarantineEntry {
                        source: QUARANTINE_SOURCE.to_owned(),
                        ats_id: Some(r.ats_id.to_string()),
                        error: format!("{} {}: {error}", r.entity, r.ats_id),
                        at: now,
                        run_id: Some(format!("push:{message_id}")),
                    }),
                    RecordOutcome::Failed { .. } => failed += 1,
                }
            }
            if failed > 0 {
                // Redelivery re-applies the whole batch; what was written is unchanged
                // content and writes nothing. Quarantine waits for that redelivery so it
                // is recorded once.
                return Err(PushError::Incomplete(failed));
            }
        }

        for entry in &rejected {
            tracing::warn!(error = %entry.error, "pushed record quarantined");
            self.registry.put_quarantine(&tenant, entry).await?;
        }
        report.quarantined = rejected.len();
        tracing::info!(?report, "push batch");
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    fn candidate(fields: Value) -> Value {
        json!({"entity": "candidate", "id": "42", "op": "upsert",
               "updated_at": "2026-03-01T10:15:30Z", "fields": fields})
    }

    #[test]
    fn valid_candidate_is_normalised_and_becomes_a_push_observation() {
        let r = validate_record(
            &candidate(json!({
                "first_name": "Ada", "emails": [{"type": "work", "value": "a@x.io"}],
                "is_private": false, "created_at": "2026-01-01T01:00:00+01:00",
                "tags": ["x"], "custom_fields": {"k": [1, 2]}, "title": null
            })),
            now(),
        )
        .unwrap();
        assert_eq!(r.fields["created_at"], json!("2026-01-01T00:00:00.000Z"));
        assert_eq!(r.fields["title"], Value::Null);
        let Change::Observe { layer, observation } = to_change(&r) else {
            panic!("not an observation")
        };
        assert_eq!(layer, LayerKind::Push);
        assert_eq!(
            observation.ats_updated_at,
            Some("2026-03-01T10:15:30Z".parse().unwrap())
        );
        assert!(matches!(observation.scope, ObservationScope::Record { .. }));
    }

    #[test]
    fn attachment_becomes_an_element_of_its_candidate() {
        let r = validate_record(
            &json!({"entity": "attachment", "id": "a-7", "candidate_id": "42", "op": "upsert",
                    "updated_at": "2026-03-01T10:00:00Z",
                    "fields": {"filename": "cv.pdf", "type": "resume", "created_at": "2026-02-01T00:00:00Z"}}),
            now(),
        )
        .unwrap();
        let Change::Observe { observation, .. } = to_change(&r) else {
            panic!("not an observation")
        };
        assert_eq!(observation.entity, EntityKind::Candidate);
        assert_eq!(observation.ats_id.as_str(), "42");
        let ObservationScope::Element { field, element } = observation.scope else {
            panic!("not an element")
        };
        assert_eq!(field, "attachments");
        assert_eq!(element["id"], json!("a-7"));
        assert_eq!(element["updated_at"], json!("2026-03-01T10:00:00.000Z"));
    }

    #[test]
    fn delete_becomes_a_tombstone_observation() {
        let r = validate_record(
            &json!({"entity": "job", "id": "9", "op": "delete", "updated_at": "2026-03-01T10:00:00Z"}),
            now(),
        )
        .unwrap();
        let Change::Observe { observation, .. } = to_change(&r) else {
            panic!("not an observation")
        };
        assert_eq!(observation.scope, ObservationScope::Deleted);
        assert_eq!(
            to_change(&r).cause(),
            eds_core::domain::version::Cause::PushDeleted
        );
    }

    #[test]
    fn invalid_records_are_rejected_with_the_offending_member_named() {
        let cases: Vec<(Value, &str)> = vec![
            (json!([1]), "must be a JSON object"),
            (
                json!({"entity": "widget", "id": "1", "op": "upsert", "updated_at": "2026-03-01T10:00:00Z"}),
                "entity \"widget\"",
            ),
            (
                json!({"entity": "job", "id": "../x", "op": "upsert", "updated_at": "2026-03-01T10:00:00Z"}),
                "\"id\" is not a valid id",
            ),
            (
                json!({"entity": "job", "id": 5, "op": "upsert", "updated_at": "2026-03-01T10:00:00Z"}),
                "\"id\" must be a string",
            ),
            (
                json!({"entity": "job", "id": "5", "op": "merge", "updated_at": "2026-03-01T10:00:00Z"}),
                "op \"merge\"",
            ),
            (
                json!({"entity": "job", "id": "5", "op": "upsert", "updated_at": "yesterday"}),
                "\"updated_at\" is not an RFC 3339",
            ),
            (
                json!({"entity": "job", "id": "5", "op": "upsert", "updated_at": "2027-03-01T10:00:00Z"}),
                "in the future",
            ),
            (
                json!({"entity": "job", "id": "5", "op": "upsert"}),
                "\"updated_at\" is missing",
            ),
            (
                json!({"entity": "job", "id": "5", "op": "upsert", "updated_at": "2026-03-01T10:00:00Z", "extra": 1}),
                "\"extra\" is not allowed",
            ),
            (
                candidate(json!({"salary": 1})),
                "\"salary\" is not a canonical field of candidate",
            ),
            (
                candidate(json!({"emails": "a@x.io"})),
                "fields.emails must be a list",
            ),
            (
                candidate(json!({"emails": [{"value": 3}]})),
                "fields.emails[0].value must be a string",
            ),
            (
                candidate(json!({"phones": [{"value": "1", "label": "x"}]})),
                "fields.phones[0].label",
            ),
            (
                candidate(json!({"is_private": "no"})),
                "fields.is_private must be true, false or null",
            ),
            (
                candidate(json!({"first_name": "x".repeat(600)})),
                "fields.first_name is too large",
            ),
            (
                candidate(json!({"attachments": []})),
                "push each as an attachment record",
            ),
            (
                candidate(json!({"created_at": "2026-13-01"})),
                "fields.created_at must be an RFC 3339",
            ),
            (
                json!({"entity": "application", "id": "5", "op": "upsert", "updated_at": "2026-03-01T10:00:00Z", "fields": {"job_id": 7}}),
                "fields.job_id must be an id",
            ),
            (
                json!({"entity": "attachment", "id": "5", "op": "upsert", "updated_at": "2026-03-01T10:00:00Z"}),
                "candidate_id\" is required",
            ),
            (
                json!({"entity": "job", "id": "5", "candidate_id": "1", "op": "upsert", "updated_at": "2026-03-01T10:00:00Z"}),
                "only allowed on attachments",
            ),
            (
                json!({"entity": "job", "id": "5", "op": "delete", "updated_at": "2026-03-01T10:00:00Z", "fields": {"name": "x"}}),
                "a delete carries no fields",
            ),
            (
                json!({"entity": "attachment", "id": "5", "candidate_id": "1", "op": "delete", "updated_at": "2026-03-01T10:00:00Z"}),
                "cannot be deleted by push",
            ),
            (
                candidate(json!({"custom_fields": {"k": "x".repeat(70_000)}})),
                "above the 65536 byte bound",
            ),
        ];
        for (value, expected) in cases {
            let err = validate_record(&value, now()).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{value}: got {err:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn bodies_are_bounded_and_strict() {
        assert!(matches!(parse_body("nope"), Err(BodyError::NotJson(_))));
        assert_eq!(parse_body("[]"), Err(BodyError::NotObject));
        assert_eq!(
            parse_body(r#"{"records":[{}]}"#),
            Err(BodyError::Missing("tenant"))
        );
        assert!(matches!(
            parse_body(r#"{"tenant":"A#b","records":[{}]}"#),
            Err(BodyError::Tenant(_))
        ));
        assert_eq!(
            parse_body(r#"{"tenant":"a","records":[]}"#),
            Err(BodyError::Empty)
        );
        let many = json!({"tenant": "a", "records": vec![json!({}); 101]}).to_string();
        assert_eq!(
            parse_body(&many),
            Err(BodyError::TooManyRecords {
                count: 101,
                max: 100
            })
        );
        assert_eq!(
            parse_body(r#"{"tenant":"a","records":[{}],"secret":1}"#),
            Err(BodyError::UnknownMember("secret".into()))
        );
        let ok = parse_body(r#"{"tenant":"acme","records":[{}]}"#).unwrap();
        assert_eq!(ok.tenant.as_str(), "acme");
    }

    #[test]
    fn a_record_the_json_parser_refuses_fails_alone_and_its_neighbours_parse() {
        let good = candidate(json!({"first_name": "Ada"})).to_string();
        let deep = format!(
            r#"{{"entity":"candidate","id":"7","op":"upsert","updated_at":"2026-03-01T10:00:00Z","fields":{{"custom_fields":{{"k":{}{}}}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let surrogate = r#"{"entity":"candidate","id":"8","op":"upsert","updated_at":"2026-03-01T10:00:00Z","fields":{"first_name":"\ud800"}}"#;
        let repeated = r#"{"entity":"candidate","id":"9","id":"10","op":"upsert","updated_at":"2026-03-01T10:00:00Z"}"#;
        let nested_repeat = r#"{"entity":"candidate","id":"11","op":"upsert","updated_at":"2026-03-01T10:00:00Z","fields":{"title":"a","title":"b"}}"#;
        let body = format!(
            r#"{{"tenant":"acme","records":[{good},{deep},{surrogate},{repeated},{nested_repeat},{good}]}}"#
        );
        let parsed = parse_body(&body).unwrap();
        assert_eq!(parsed.records.len(), 6);
        let err = |i: usize| match &parsed.records[i] {
            Err(e) => e.to_string(),
            Ok(v) => panic!("record {i} parsed: {v}"),
        };
        assert!(err(1).contains("recursion limit"), "{}", err(1));
        // serde_json: "unexpected end of hex escape" (a lone surrogate before the quote).
        assert!(
            matches!(parsed.records[2], Err(RecordError::Json(_))),
            "{}",
            err(2)
        );
        assert!(
            err(3).contains("member \"id\" appears more than once"),
            "{}",
            err(3)
        );
        assert!(
            err(4).contains("member \"title\" appears more than once"),
            "{}",
            err(4)
        );
        for i in [0, 5] {
            let v = parsed.records[i].as_ref().unwrap();
            assert!(validate_record(v, now()).is_ok());
        }
    }

    #[test]
    fn a_repeated_body_member_or_a_broken_outer_structure_is_poison() {
        assert_eq!(
            parse_body(r#"{"tenant":"a","tenant":"b","records":[{}]}"#),
            Err(BodyError::DuplicateMember("tenant".into()))
        );
        for bad in [
            r#"{"tenant":"a","records":[{}]"#,
            r#"{"tenant":"a","records":[{}}]}"#,
            r#"{"tenant":"a","records":[{}]} x"#,
            r#"{"tenant":"\ud800","records":[{}]}"#,
        ] {
            assert!(
                matches!(parse_body(bad), Err(BodyError::NotJson(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn unparseable_bodies_and_unknown_tenants_are_poison_but_throttling_is_retried() {
        assert!(matches!(
            PushError::Body(BodyError::Empty).to_job_error(),
            JobError::Poison(_)
        ));
        assert!(matches!(
            PushError::UnknownTenant(TenantId::parse("x").unwrap()).to_job_error(),
            JobError::Poison(_)
        ));
        assert!(matches!(
            PushError::Incomplete(1).to_job_error(),
            JobError::Retry { .. }
        ));
    }
}
