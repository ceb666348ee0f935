//! The canonical, ATS-neutral record model.
//!
//! A record's content is a map of canonical field names to JSON values. A field that
//! is *absent* (the key is missing: the source did not say) is different from a field
//! that is *null* (the source said it is empty): absent never overrides anything, a
//! newer explicit null clears (product.md section 4). Connectors normalise their ATS
//! payloads into these names; pushed records use them directly (docs/push-format.md).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::{AtsId, EntityKind};

/// Canonical field name -> value. Missing key = absent; `Value::Null` = explicit null.
pub type Fields = BTreeMap<String, Value>;

/// Which layer a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    Push,
    Pull,
}

/// Per-field provenance of a value in the merged view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    Push,
    Pull,
    Both,
}

/// How a field is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A single value (string, number, bool, object or list), compared and taken whole.
    /// Contact lists (emails, phones, ...) are of this kind: taken whole from the
    /// winning layer, never mixed element by element.
    Scalar,
    /// A list of objects, each identified by its `"id"`; merged element by element
    /// (union, each element with its own provenance). Candidate attachments.
    Keyed,
}

/// The name of the identity member of elements of a keyed collection.
pub const ELEMENT_ID: &str = "id";
/// The name of the member that orders versions of one element of a keyed collection.
pub const ELEMENT_UPDATED_AT: &str = "updated_at";

/// Candidate attachments: a keyed collection of
/// `{id, filename, type, created_at, updated_at, url?, file?: {key, sha256, size}}`.
pub const ATTACHMENTS: &str = "attachments";

/// Canonical field names per entity. Connectors must produce only these; pushed records
/// are validated against them. `updated_at` is not a field: it is the layer's
/// `ats_updated_at`, which orders conflicting values.
pub const CANDIDATE_FIELDS: &[&str] = &[
    "first_name",
    "last_name",
    "preferred_name",
    "company",
    "title",
    "emails",
    "phones",
    "addresses",
    "websites",
    "social_media",
    "tags",
    "is_private",
    "can_email",
    "time_zone",
    "custom_fields",
    "created_at",
    "last_activity_at",
    ATTACHMENTS,
];

pub const APPLICATION_FIELDS: &[&str] = &[
    "candidate_id",
    "job_id",
    "prospect",
    "status",
    "stage_id",
    "stage_name",
    "source_id",
    "referrer_id",
    "recruiter_id",
    "coordinator_id",
    "rejected_at",
    "rejection_reason_id",
    "answers",
    "custom_fields",
    "created_at",
    "last_activity_at",
];

pub const JOB_FIELDS: &[&str] = &[
    "name",
    "requisition_id",
    "status",
    "confidential",
    "department_id",
    "office_ids",
    "opened_at",
    "closed_at",
    "custom_fields",
    "created_at",
];

impl EntityKind {
    /// The canonical field names of this entity.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            EntityKind::Candidate => CANDIDATE_FIELDS,
            EntityKind::Application => APPLICATION_FIELDS,
            EntityKind::Job => JOB_FIELDS,
        }
    }

    /// The field naming the record a record of this entity is read under, in ATSs that
    /// nest it (a Lever application lives under its opportunity, the candidate).
    pub fn parent_field(self) -> Option<&'static str> {
        match self {
            EntityKind::Application => Some("candidate_id"),
            EntityKind::Candidate | EntityKind::Job => None,
        }
    }

    pub fn is_known_field(self, name: &str) -> bool {
        self.fields().contains(&name)
    }

    /// How the named field of this entity is merged.
    pub fn field_kind(self, name: &str) -> FieldKind {
        if self == EntityKind::Candidate && name == ATTACHMENTS {
            FieldKind::Keyed
        } else {
            FieldKind::Scalar
        }
    }
}

/// One layer of a record: what one side (push or pull) last said about it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Layer {
    pub fields: Fields,
    /// The ATS `updated_at` carried by the observation; orders conflicting values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ats_updated_at: Option<DateTime<Utc>>,
    /// When eds observed it (not part of the content: re-observing the same content is
    /// not a change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<DateTime<Utc>>,
}

/// What a source (a page of the pull, or a pushed record) says about one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub entity: EntityKind,
    pub ats_id: AtsId,
    pub ats_updated_at: Option<DateTime<Utc>>,
    pub scope: ObservationScope,
}

/// How far ahead of eds's clock a pulled `updated_at` may be. Timestamps order
/// conflicting values (merge rule 3), so a far-future one would win against every later
/// correct observation and freeze the record; beyond this skew the observation is
/// quarantined like a pushed record with a future `updated_at`.
pub const MAX_PULLED_FUTURE_SKEW: chrono::TimeDelta = chrono::TimeDelta::hours(1);

impl Observation {
    /// The first timestamp of this observation that orders values (the record's
    /// `updated_at`, or an element's) and lies more than `max_skew` after `now`.
    pub fn future_timestamp(
        &self,
        now: DateTime<Utc>,
        max_skew: chrono::TimeDelta,
    ) -> Option<DateTime<Utc>> {
        let bound = now + max_skew;
        if let Some(t) = self.ats_updated_at.filter(|t| *t > bound) {
            return Some(t);
        }
        if let ObservationScope::Element { element, .. } = &self.scope
            && let Some(t) = element
                .get(ELEMENT_UPDATED_AT)
                .and_then(Value::as_str)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc))
                .filter(|t| *t > bound)
        {
            return Some(t);
        }
        None
    }
}

/// Which part of a layer an observation replaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum ObservationScope {
    /// The whole record as the source sees it: replaces every field of the layer
    /// except keyed collections the observation does not carry (attachments arrive on
    /// their own stream and are kept).
    Record { fields: Fields },
    /// One element of a keyed collection (an attachment row): upserted by its `id`.
    Element { field: String, element: Value },
    /// The source says the record no longer exists (ATS deleted / merged, or a pushed
    /// delete). The layer's content is kept in history; the record becomes a tombstone
    /// for this side.
    Deleted,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(updated: &str, scope: ObservationScope) -> Observation {
        Observation {
            entity: EntityKind::Candidate,
            ats_id: AtsId::from_u64(1),
            ats_updated_at: Some(updated.parse().unwrap()),
            scope,
        }
    }

    #[test]
    fn a_far_future_updated_at_is_found_and_a_small_skew_is_not() {
        let now: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let record = |t| {
            obs(
                t,
                ObservationScope::Record {
                    fields: Fields::new(),
                },
            )
        };
        assert_eq!(
            record("9999-12-31T23:59:59Z").future_timestamp(now, MAX_PULLED_FUTURE_SKEW),
            Some("9999-12-31T23:59:59Z".parse().unwrap())
        );
        assert_eq!(
            record("2026-12-01T00:59:00Z").future_timestamp(now, MAX_PULLED_FUTURE_SKEW),
            None
        );
        assert_eq!(
            record("2020-01-01T00:00:00Z").future_timestamp(now, MAX_PULLED_FUTURE_SKEW),
            None
        );
    }

    #[test]
    fn an_elements_own_future_updated_at_is_found() {
        let now: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let o = obs(
            "2026-11-30T00:00:00Z",
            ObservationScope::Element {
                field: ATTACHMENTS.into(),
                element: serde_json::json!({"id": "3", "updated_at": "3000-01-01T00:00:00Z"}),
            },
        );
        assert_eq!(
            o.future_timestamp(now, MAX_PULLED_FUTURE_SKEW),
            Some("3000-01-01T00:00:00Z".parse().unwrap())
        );
    }
}
