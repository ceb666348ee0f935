//! Versioning of records (SCD type 2), pure: given the current head and one change,
//! decide whether the record's content changed and, if so, build the next version.
//!
//! * A record's content is its [`RecordState`]: the push and pull layers (fields and
//!   ATS `updated_at`), the deletion markers and the view mode. `observed_at` is not
//!   content: re-observing the same data is not a change.
//! * [`RecordState::content_hash`] is XXH3-128 over a canonical encoding of the content
//!   (object members sorted, lengths prefixed), so it does not depend on the member order
//!   a JSON or DynamoDB round trip produces. Same content, same hash: no new version.
//! * Versions are immutable. `valid_from` never goes backwards (`max(now, previous)`);
//!   a version's `valid_to` is the next version's `valid_from` (derived on read, so
//!   version items never need rewriting).
//! * Stale input is ignored: an observation, element or delete whose ATS time is older
//!   than what the layer already holds is a redelivery, not news.
//! * Tombstones: a pulled delete (reconciliation no longer finds the id) sets
//!   `ats_deleted`, a pushed delete sets `push_deleted`. Layers are kept (history). The
//!   view of a tombstoned record has no fields and `deleted = Some(..)`; in
//!   [`ViewMode::PushOnly`] only `push_deleted` counts, since the pull is excluded.
//!   A re-appearing id revives the record with a new version: an observation clears its
//!   own side's marker unless it is older than the delete, and the other side's marker
//!   only when it is strictly newer than the delete.
//! * Layers are bounded to [`MAX_LAYER_BYTES`] of serialized fields, so a head or version
//!   item (two layers and their view) stays far below DynamoDB's 400 KB item limit. A
//!   larger layer is rejected with [`VersionError::LayerTooLarge`], for the caller to
//!   quarantine. (Attachment files never enter a layer: only their S3 pointer does.)

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use twox_hash::XxHash3_128;

use super::ids::{AtsId, EntityKind};
use super::merge::{DeletedBy, MergeReport, Path, ReportRef, View, ViewMode, ViewRef, merge_ref};
use super::model::{
    ELEMENT_ID, ELEMENT_UPDATED_AT, FieldKind, Layer, LayerKind, Observation, ObservationScope,
};

/// Serialized size bound of one layer's fields (64 KiB). Two layers plus a view are at
/// most about 4 x this, well below the 400 KB item limit.
pub const MAX_LAYER_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    #[error(
        "{layer:?} layer of {entity} {ats_id} is {bytes} bytes serialized, above the {max} byte bound"
    )]
    LayerTooLarge {
        entity: EntityKind,
        ats_id: AtsId,
        layer: LayerKind,
        bytes: usize,
        max: usize,
    },
    #[error("{field:?} of {entity} is not a keyed collection")]
    NotKeyed { entity: EntityKind, field: String },
    #[error("element of {field:?} has no string \"id\"")]
    ElementWithoutId { field: String },
    #[error("change for {0} applied to a record of another kind")]
    EntityMismatch(EntityKind),
}

/// Why a version was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Push,
    Pull,
    Disable,
    Enable,
    AtsDeleted,
    PushDeleted,
}

/// A deletion marker, with the ATS time of the delete when the source gave one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

/// Everything that makes up a record's content.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RecordState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<Layer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<Layer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ats_deleted: Option<Tombstone>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_deleted: Option<Tombstone>,
    #[serde(default)]
    pub mode: ViewMode,
}

/// XXH3-128 of a record's content; printed and stored as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentHash(pub u128);

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl From<ContentHash> for String {
    fn from(h: ContentHash) -> String {
        h.to_string()
    }
}

impl TryFrom<String> for ContentHash {
    type Error = std::num::ParseIntError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        u128::from_str_radix(&s, 16).map(ContentHash)
    }
}

/// One version of a record. The head of a record is a copy of its latest version.
/// A version is immutable once a later version exists or once its sync run is over; see
/// [`apply_in_run`] for the one rewrite there is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    /// 1, 2, 3, ... without gaps.
    pub version: u64,
    pub cause: Cause,
    pub valid_from: DateTime<Utc>,
    pub content_hash: ContentHash,
    pub state: RecordState,
    pub view: View,
    /// The pull run that wrote this version (None: a push, a sweep, a tombstone, or a
    /// version written before runs were recorded). Not content: not in the hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// How many times its run amended this version (0: as first written). Orders the
    /// copies of one version number: the store never replaces a copy by an older one.
    /// Not content: not in the hash.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub amends: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Version {
    /// Whether a later pull write of `run` may amend this version in place instead of
    /// appending one: it is a pull version written by that same run.
    pub fn is_amendable_by(&self, run: &str) -> bool {
        self.cause == Cause::Pull && self.run.as_deref() == Some(run)
    }
}

/// The record's current version, as read from the store.
pub type Head = Version;

/// One change to apply to a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// What the push or the pull says about the record (including deletes).
    Observe {
        layer: LayerKind,
        observation: Observation,
    },
    /// Disable (`PushOnly`) or enable (`Merged`) the pull for this record's view.
    SetMode {
        entity: EntityKind,
        ats_id: AtsId,
        mode: ViewMode,
    },
}

impl Change {
    pub fn entity(&self) -> EntityKind {
        match self {
            Change::Observe { observation, .. } => observation.entity,
            Change::SetMode { entity, .. } => *entity,
        }
    }

    pub fn ats_id(&self) -> &AtsId {
        match self {
            Change::Observe { observation, .. } => &observation.ats_id,
            Change::SetMode { ats_id, .. } => ats_id,
        }
    }

    pub fn cause(&self) -> Cause {
        match self {
            Change::Observe {
                layer,
                observation:
                    Observation {
                        scope: ObservationScope::Deleted,
                        ..
                    },
            } => match layer {
                LayerKind::Push => Cause::PushDeleted,
                LayerKind::Pull => Cause::AtsDeleted,
            },
            Change::Observe {
                layer: LayerKind::Push,
                ..
            } => Cause::Push,
            Change::Observe {
                layer: LayerKind::Pull,
                ..
            } => Cause::Pull,
            Change::SetMode {
                mode: ViewMode::PushOnly,
                ..
            } => Cause::Disable,
            Change::SetMode {
                mode: ViewMode::Merged,
                ..
            } => Cause::Enable,
        }
    }
}

/// A version to write, with what the pull newly contributed to the view (report entries
/// that were not already in the previous version's report).
#[derive(Debug, Clone, PartialEq)]
pub struct NextVersion {
    pub version: Version,
    pub report: MergeReport,
}

impl RecordState {
    pub fn layer(&self, kind: LayerKind) -> Option<&Layer> {
        match kind {
            LayerKind::Push => self.push.as_ref(),
            LayerKind::Pull => self.pull.as_ref(),
        }
    }

    fn layer_mut(&mut self, kind: LayerKind) -> &mut Option<Layer> {
        match kind {
            LayerKind::Push => &mut self.push,
            LayerKind::Pull => &mut self.pull,
        }
    }

    fn marker_mut(&mut self, kind: LayerKind) -> &mut Option<Tombstone> {
        match kind {
            LayerKind::Push => &mut self.push_deleted,
            LayerKind::Pull => &mut self.ats_deleted,
        }
    }

    /// The view of this state, and what the pull contributed to it.
    pub fn render(&self, entity: EntityKind) -> (View, MergeReport) {
        let (view, report) = self.render_ref(entity);
        (view.to_view(), report.to_report())
    }

    /// [`RecordState::render`] without copying: the view borrows from the layers.
    pub fn render_ref(&self, entity: EntityKind) -> (ViewRef<'_>, ReportRef<'_>) {
        let deleted = match self.mode {
            _ if self.push_deleted.is_some() => Some(DeletedBy::Push),
            ViewMode::Merged if self.ats_deleted.is_some() => Some(DeletedBy::Ats),
            _ => None,
        };
        match deleted {
            Some(by) => (ViewRef::tombstone(by), ReportRef::default()),
            None => merge_ref(entity, self.push.as_ref(), self.pull.as_ref(), self.mode),
        }
    }

    /// Stable hash of the content (see the module doc).
    pub fn content_hash(&self) -> ContentHash {
        let mut h = XxHash3_128::new();
        h.write(b"eds-record-state-v1");
        for layer in [&self.push, &self.pull] {
            match layer {
                None => h.write(&[0]),
                Some(l) => {
                    h.write(&[1]);
                    hash_time(&mut h, l.ats_updated_at);
                    h.write(&(l.fields.len() as u64).to_le_bytes());
                    for (name, value) in &l.fields {
                        hash_str(&mut h, name);
                        hash_value(&mut h, value);
                    }
                }
            }
        }
        for marker in [&self.ats_deleted, &self.push_deleted] {
            match marker {
                None => h.write(&[0]),
                Some(t) => {
                    h.write(&[1]);
                    hash_time(&mut h, t.at);
                }
            }
        }
        h.write(&[match self.mode {
            ViewMode::Merged => 0,
            ViewMode::PushOnly => 1,
        }]);
        ContentHash(h.finish_128())
    }
}

fn hash_time(h: &mut XxHash3_128, t: Option<DateTime<Utc>>) {
    match t {
        None => h.write(&[0]),
        Some(t) => {
            h.write(&[1]);
            h.write(&t.timestamp().to_le_bytes());
            h.write(&t.timestamp_subsec_nanos().to_le_bytes());
        }
    }
}

fn hash_str(h: &mut XxHash3_128, s: &str) {
    h.write(&(s.len() as u64).to_le_bytes());
    h.write(s.as_bytes());
}

fn hash_value(h: &mut XxHash3_128, v: &Value) {
    match v {
        Value::Null => h.write(b"n"),
        Value::Bool(b) => h.write(&[b'b', u8::from(*b)]),
        Value::Number(n) => {
            h.write(b"#");
            hash_str(h, &n.to_string());
        }
        Value::String(s) => {
            h.write(b"s");
            hash_str(h, s);
        }
        Value::Array(items) => {
            h.write(b"[");
            h.write(&(items.len() as u64).to_le_bytes());
            for item in items {
                hash_value(h, item);
            }
        }
        Value::Object(map) => {
            // Member order is not content: hash members sorted by name.
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            h.write(b"{");
            h.write(&(members.len() as u64).to_le_bytes());
            for (k, v) in members {
                hash_str(h, k);
                hash_value(h, v);
            }
        }
    }
}

/// Applies `change` to the record whose current version is `head` (None: the record
/// does not exist yet). Returns `Ok(None)` when the content does not change (same input
/// twice, stale input): nothing to write.
pub fn apply(
    head: Option<&Head>,
    change: &Change,
    now: DateTime<Utc>,
) -> Result<Option<NextVersion>, VersionError> {
    let entity = change.entity();
    let mut state = head.map(|h| h.state.clone()).unwrap_or_default();
    let changed = match change {
        // A mode sweep never creates a record that does not exist.
        Change::SetMode { mode, .. } => {
            state.mode = *mode;
            head.is_some()
        }
        // Nor does a delete: a tombstone of a record eds never held would be a record
        // that never existed (counted by the caller as a delete of an unknown id).
        Change::Observe { observation, .. }
            if head.is_none() && observation.scope == ObservationScope::Deleted =>
        {
            false
        }
        Change::Observe { layer, observation } => {
            observe(&mut state, entity, *layer, observation, now)?
        }
    };
    if !changed {
        return Ok(None);
    }
    let content_hash = state.content_hash();
    if head.is_some_and(|h| h.content_hash == content_hash) {
        return Ok(None);
    }
    for kind in [LayerKind::Push, LayerKind::Pull] {
        if let Some(l) = state.layer(kind) {
            let bytes = serde_json::to_vec(&l.fields)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if bytes > MAX_LAYER_BYTES {
                return Err(VersionError::LayerTooLarge {
                    entity,
                    ats_id: change.ats_id().clone(),
                    layer: kind,
                    bytes,
                    max: MAX_LAYER_BYTES,
                });
            }
        }
    }
    let (view, mut report) = state.render(entity);
    if let Some(h) = head {
        // Only the previous report is needed: render it without copying its view.
        let (_, before) = h.state.render_ref(entity);
        let new = |e: &String, old: &[Path<'_>]| !old.iter().any(|p| p.is(e));
        report.backfilled.retain(|e| new(e, &before.backfilled));
        report.corrected.retain(|e| new(e, &before.corrected));
        report
            .push_newer_kept
            .retain(|e| new(e, &before.push_newer_kept));
    }
    let valid_from = head.map_or(now, |h| h.valid_from.max(now));
    Ok(Some(NextVersion {
        version: Version {
            version: head.map_or(1, |h| h.version + 1),
            cause: change.cause(),
            valid_from,
            content_hash,
            state,
            view,
            run: None,
            amends: 0,
        },
        report,
    }))
}

/// [`apply`] for a writer that belongs to a pull run (`run`), so that one sync writes at
/// most one version per changed record: a pull change on top of a pull version that
/// this same run wrote *amends* it (the result keeps its number and `valid_from`,
/// with the new content and hash) instead of following it. Anything else (no run, a
/// base written by a push, a sweep or another run, a change that is not a pull) is
/// [`apply`] with the version tagged with `run`. An amend is recognisable by its number:
/// equal to the base's. The report is relative to the base, as for [`apply`].
pub fn apply_in_run(
    base: Option<&Version>,
    change: &Change,
    now: DateTime<Utc>,
    run: Option<&str>,
) -> Result<Option<NextVersion>, VersionError> {
    let Some(mut next) = apply(base, change, now)? else {
        return Ok(None);
    };
    next.version.run = run.map(str::to_owned);
    if let (Some(b), Some(run)) = (base, run)
        && b.is_amendable_by(run)
        && next.version.cause == Cause::Pull
    {
        next.version.version = b.version;
        next.version.valid_from = b.valid_from;
        next.version.amends = b.amends + 1;
    }
    Ok(Some(next))
}

/// True when `new` is older than `old` (both known): a redelivery, ignored.
fn is_stale(new: Option<DateTime<Utc>>, old: Option<DateTime<Utc>>) -> bool {
    matches!((new, old), (Some(n), Some(o)) if n < o)
}

/// Updates `state` with one observation; false when it is stale and ignored.
fn observe(
    state: &mut RecordState,
    entity: EntityKind,
    kind: LayerKind,
    obs: &Observation,
    now: DateTime<Utc>,
) -> Result<bool, VersionError> {
    if obs.entity != entity {
        return Err(VersionError::EntityMismatch(obs.entity));
    }
    let current_at = state.layer(kind).and_then(|l| l.ats_updated_at);
    match &obs.scope {
        ObservationScope::Deleted => {
            if is_stale(obs.ats_updated_at, current_at) {
                return Ok(false);
            }
            let marker = state.marker_mut(kind);
            if marker.is_none() {
                *marker = Some(Tombstone {
                    at: obs.ats_updated_at,
                });
            }
        }
        ObservationScope::Record { fields } => {
            if is_stale(obs.ats_updated_at, current_at) {
                return Ok(false);
            }
            let slot = state.layer_mut(kind);
            let mut fields = fields.clone();
            // Keyed collections arrive on their own stream: a record observation
            // without them keeps the ones the layer has.
            if let Some(old) = slot.as_ref() {
                for (name, value) in &old.fields {
                    if entity.field_kind(name) == FieldKind::Keyed && !fields.contains_key(name) {
                        fields.insert(name.clone(), value.clone());
                    }
                }
            }
            *slot = Some(Layer {
                fields,
                ats_updated_at: obs.ats_updated_at,
                observed_at: Some(now),
            });
            revive(state, kind, obs.ats_updated_at);
        }
        ObservationScope::Element { field, element } => {
            if entity.field_kind(field) != FieldKind::Keyed {
                return Err(VersionError::NotKeyed {
                    entity,
                    field: field.clone(),
                });
            }
            let Some(id) = element.get(ELEMENT_ID).and_then(Value::as_str) else {
                return Err(VersionError::ElementWithoutId {
                    field: field.clone(),
                });
            };
            let slot = state.layer_mut(kind);
            let layer = slot.get_or_insert_with(Layer::default);
            layer.observed_at = Some(now);
            let list = layer
                .fields
                .entry(field.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if !list.is_array() {
                *list = Value::Array(Vec::new());
            }
            let Value::Array(items) = list else {
                return Ok(false);
            };
            let element_at = |e: &Value| {
                e.get(ELEMENT_UPDATED_AT)
                    .and_then(Value::as_str)
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|t| t.with_timezone(&Utc))
            };
            match items
                .iter_mut()
                .find(|e| e.get(ELEMENT_ID).and_then(Value::as_str) == Some(id))
            {
                Some(existing) => {
                    if is_stale(element_at(element), element_at(existing)) {
                        return Ok(false);
                    }
                    *existing = element.clone();
                }
                None => items.push(element.clone()),
            }
        }
    }
    Ok(true)
}

/// A re-appearing record: clear this side's marker unless the observation is older
/// than the delete, the other side's only when strictly newer than the delete.
fn revive(state: &mut RecordState, kind: LayerKind, at: Option<DateTime<Utc>>) {
    let own = state.marker_mut(kind);
    if own.is_some_and(|t| !is_stale(at, t.at)) {
        *own = None;
    }
    let other = state.marker_mut(match kind {
        LayerKind::Push => LayerKind::Pull,
        LayerKind::Pull => LayerKind::Push,
    });
    if let (Some(t), Some(a)) = (*other, at)
        && t.at.is_some_and(|d| a > d)
    {
        *other = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::Provenance;
    use chrono::{Duration, TimeZone};
    use serde_json::json;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_770_000_000 + secs, 0).unwrap()
    }

    fn id() -> AtsId {
        AtsId::parse("7").unwrap()
    }

    fn observe_change(layer: LayerKind, fields: Value, at: i64) -> Change {
        Change::Observe {
            layer,
            observation: Observation {
                entity: EntityKind::Candidate,
                ats_id: id(),
                ats_updated_at: Some(t(at)),
                scope: ObservationScope::Record {
                    fields: serde_json::from_value(fields).unwrap(),
                },
            },
        }
    }

    fn deleted(layer: LayerKind, at: Option<i64>) -> Change {
        Change::Observe {
            layer,
            observation: Observation {
                entity: EntityKind::Candidate,
                ats_id: id(),
                ats_updated_at: at.map(t),
                scope: ObservationScope::Deleted,
            },
        }
    }

    fn set_mode(mode: ViewMode) -> Change {
        Change::SetMode {
            entity: EntityKind::Candidate,
            ats_id: id(),
            mode,
        }
    }

    /// Applies changes in order, returning every version written.
    fn run(changes: &[Change]) -> Vec<Version> {
        let mut out: Vec<Version> = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            if let Some(next) = apply(out.last(), c, t(1000 + i as i64)).unwrap() {
                out.push(next.version);
            }
        }
        out
    }

    #[test]
    fn mode_change_on_a_missing_record_creates_nothing() {
        assert!(
            apply(None, &set_mode(ViewMode::PushOnly), t(0))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_delete_of_a_missing_record_creates_nothing() {
        for layer in [LayerKind::Push, LayerKind::Pull] {
            assert!(
                apply(None, &deleted(layer, Some(0)), t(0))
                    .unwrap()
                    .is_none()
            );
        }
        // A record that exists is still tombstoned.
        let v = run(&[
            observe_change(LayerKind::Push, json!({"title": "Dev"}), 0),
            deleted(LayerKind::Push, Some(1)),
        ]);
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].cause, Cause::PushDeleted);
    }

    #[test]
    fn first_observation_creates_version_one() {
        let v = run(&[observe_change(LayerKind::Push, json!({"title": "Dev"}), 0)]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].version, 1);
        assert_eq!(v[0].cause, Cause::Push);
        assert_eq!(v[0].view.fields["title"], json!("Dev"));
    }

    #[test]
    fn same_input_twice_writes_no_new_version() {
        let c = observe_change(LayerKind::Pull, json!({"title": "Dev"}), 0);
        assert_eq!(run(&[c.clone(), c]).len(), 1);
    }

    #[test]
    fn re_observing_later_is_not_a_change() {
        let c = observe_change(LayerKind::Pull, json!({"title": "Dev"}), 0);
        let v1 = apply(None, &c, t(1)).unwrap().unwrap().version;
        assert!(apply(Some(&v1), &c, t(500)).unwrap().is_none());
    }

    #[test]
    fn content_hash_ignores_member_order_and_observed_at() {
        let a: Value = serde_json::from_str(r#"{"x":1,"y":{"a":1,"b":2}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"y":{"b":2,"a":1},"x":1}"#).unwrap();
        let s1 = RecordState {
            push: Some(Layer {
                fields: [("custom_fields".to_owned(), a)].into(),
                ats_updated_at: Some(t(0)),
                observed_at: Some(t(1)),
            }),
            ..RecordState::default()
        };
        let mut s2 = s1.clone();
        s2.push
            .as_mut()
            .unwrap()
            .fields
            .insert("custom_fields".into(), b);
        s2.push.as_mut().unwrap().observed_at = Some(t(99));
        assert_eq!(s1.content_hash(), s2.content_hash());
        s2.mode = ViewMode::PushOnly;
        assert_ne!(s1.content_hash(), s2.content_hash());
    }

    #[test]
    fn content_hash_distinguishes_null_from_absent_and_types() {
        let s1 = RecordState {
            pull: Some(Layer::default()),
            ..RecordState::default()
        };
        let mut s2 = s1.clone();
        s2.pull
            .as_mut()
            .unwrap()
            .fields
            .insert("title".into(), Value::Null);
        let mut s3 = s1.clone();
        s3.pull
            .as_mut()
            .unwrap()
            .fields
            .insert("title".into(), json!("null"));
        let hashes = [s1.content_hash(), s2.content_hash(), s3.content_hash()];
        assert_ne!(hashes[0], hashes[1]);
        assert_ne!(hashes[1], hashes[2]);
        assert_ne!(RecordState::default().content_hash(), s1.content_hash());
    }

    #[test]
    fn content_hash_round_trips_through_hex() {
        let h = ContentHash(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let s = serde_json::to_string(&h).unwrap();
        assert_eq!(s, "\"0123456789abcdef0011223344556677\"");
        assert_eq!(serde_json::from_str::<ContentHash>(&s).unwrap(), h);
    }

    #[test]
    fn stale_observation_is_ignored() {
        let v = run(&[
            observe_change(LayerKind::Push, json!({"title": "New"}), 10),
            observe_change(LayerKind::Push, json!({"title": "Old"}), 5),
        ]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].view.fields["title"], json!("New"));
    }

    #[test]
    fn valid_from_never_goes_backwards() {
        let v1 = apply(
            None,
            &observe_change(LayerKind::Push, json!({"a": 1}), 0),
            t(100),
        )
        .unwrap()
        .unwrap()
        .version;
        let v2 = apply(
            Some(&v1),
            &observe_change(LayerKind::Push, json!({"a": 2}), 1),
            t(50),
        )
        .unwrap()
        .unwrap()
        .version;
        assert_eq!(v2.version, 2);
        assert_eq!(v2.valid_from, t(100));
        let v3 = apply(
            Some(&v2),
            &observe_change(LayerKind::Push, json!({"a": 3}), 2),
            t(100) + Duration::seconds(1),
        )
        .unwrap()
        .unwrap()
        .version;
        assert_eq!(v3.valid_from, t(101));
    }

    #[test]
    fn pull_version_reports_only_what_it_newly_contributed() {
        let push = observe_change(LayerKind::Push, json!({"title": "Dev"}), 0);
        let pull1 = observe_change(LayerKind::Pull, json!({"title": "Dev", "company": "X"}), 1);
        let pull2 = observe_change(LayerKind::Pull, json!({"title": "CTO", "company": "X"}), 2);
        let v1 = apply(None, &push, t(10)).unwrap().unwrap();
        let v2 = apply(Some(&v1.version), &pull1, t(11)).unwrap().unwrap();
        assert_eq!(v2.version.cause, Cause::Pull);
        assert_eq!(v2.report.backfilled, vec!["company"]);
        let v3 = apply(Some(&v2.version), &pull2, t(12)).unwrap().unwrap();
        assert!(v3.report.backfilled.is_empty());
        assert_eq!(v3.report.corrected, vec!["title"]);
    }

    #[test]
    fn disable_shows_push_only_and_enable_restores_the_merge() {
        let v = run(&[
            observe_change(LayerKind::Push, json!({"title": "Dev"}), 0),
            observe_change(LayerKind::Pull, json!({"title": "CTO", "company": "X"}), 1),
            set_mode(ViewMode::PushOnly),
            set_mode(ViewMode::PushOnly),
            observe_change(LayerKind::Pull, json!({"title": "VP"}), 2),
            set_mode(ViewMode::Merged),
        ]);
        let causes: Vec<Cause> = v.iter().map(|v| v.cause).collect();
        assert_eq!(
            causes,
            [
                Cause::Push,
                Cause::Pull,
                Cause::Disable,
                Cause::Pull,
                Cause::Enable
            ]
        );
        assert_eq!(v[2].view.fields, v[0].state.push.as_ref().unwrap().fields);
        // A pull arriving while disabled is kept in its layer but not shown.
        assert_eq!(v[3].view.fields["title"], json!("Dev"));
        assert!(
            v[3].view
                .provenance
                .values()
                .all(|p| *p == Provenance::Push)
        );
        assert_eq!(v[4].view.fields["title"], json!("VP"));
    }

    #[test]
    fn ats_delete_tombstones_and_reappearance_revives() {
        let v = run(&[
            observe_change(LayerKind::Pull, json!({"title": "Dev"}), 0),
            deleted(LayerKind::Pull, None),
            deleted(LayerKind::Pull, None),
            observe_change(LayerKind::Pull, json!({"title": "Dev"}), 0),
        ]);
        assert_eq!(v.len(), 3);
        assert_eq!(v[1].cause, Cause::AtsDeleted);
        assert_eq!(v[1].view.deleted, Some(DeletedBy::Ats));
        assert!(v[1].view.fields.is_empty());
        assert!(v[1].state.pull.is_some(), "layer kept in history");
        assert_eq!(v[2].view.deleted, None);
        assert_eq!(v[2].view.fields["title"], json!("Dev"));
    }

    #[test]
    fn push_delete_is_revived_only_by_newer_data() {
        let v = run(&[
            observe_change(LayerKind::Push, json!({"title": "Dev"}), 0),
            deleted(LayerKind::Push, Some(10)),
            observe_change(LayerKind::Pull, json!({"title": "Dev"}), 5),
        ]);
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[2].view.deleted,
            Some(DeletedBy::Push),
            "older pull does not revive"
        );
        let v4 = apply(
            Some(&v[2]),
            &observe_change(LayerKind::Pull, json!({"title": "Dev"}), 11),
            t(2000),
        )
        .unwrap()
        .unwrap()
        .version;
        assert_eq!(v4.view.deleted, None);
    }

    #[test]
    fn ats_delete_is_not_shown_while_the_pull_is_disabled() {
        let v = run(&[
            observe_change(LayerKind::Push, json!({"title": "Dev"}), 0),
            set_mode(ViewMode::PushOnly),
            deleted(LayerKind::Pull, None),
        ]);
        assert_eq!(v[2].view.deleted, None);
        assert_eq!(v[2].view.fields["title"], json!("Dev"));
    }

    #[test]
    fn attachment_rows_are_upserted_by_id_and_kept_across_record_observations() {
        let att = |name: &str, at: &str| Change::Observe {
            layer: LayerKind::Pull,
            observation: Observation {
                entity: EntityKind::Candidate,
                ats_id: id(),
                ats_updated_at: None,
                scope: ObservationScope::Element {
                    field: "attachments".into(),
                    element: json!({"id": "a1", "filename": name, "updated_at": at}),
                },
            },
        };
        let v = run(&[
            att("cv.pdf", "2026-01-01T00:00:00.000Z"),
            observe_change(LayerKind::Pull, json!({"title": "Dev"}), 0),
            att("cv2.pdf", "2026-02-01T00:00:00.000Z"),
            att("old.pdf", "2025-01-01T00:00:00.000Z"),
        ]);
        assert_eq!(v.len(), 3, "stale attachment row ignored");
        assert_eq!(
            v[1].view.fields["attachments"][0]["filename"],
            json!("cv.pdf")
        );
        let list = v[2].view.fields["attachments"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["filename"], json!("cv2.pdf"));
    }

    #[test]
    fn a_pull_change_of_the_same_run_amends_the_version_that_run_wrote() {
        let att = Change::Observe {
            layer: LayerKind::Pull,
            observation: Observation {
                entity: EntityKind::Candidate,
                ats_id: id(),
                ats_updated_at: None,
                scope: ObservationScope::Element {
                    field: "attachments".into(),
                    element: json!({"id": "a1", "filename": "cv.pdf"}),
                },
            },
        };
        let pulled = observe_change(LayerKind::Pull, json!({"title": "Dev"}), 0);
        let v1 = apply_in_run(None, &pulled, t(10), Some("run-1"))
            .unwrap()
            .unwrap()
            .version;
        assert_eq!((v1.version, v1.run.as_deref()), (1, Some("run-1")));
        let amended = apply_in_run(Some(&v1), &att, t(20), Some("run-1"))
            .unwrap()
            .unwrap()
            .version;
        assert_eq!(amended.version, 1, "same number");
        assert_eq!(amended.valid_from, t(10), "same valid_from");
        assert_eq!(amended.cause, Cause::Pull);
        assert_ne!(amended.content_hash, v1.content_hash);
        assert_eq!(amended.content_hash, amended.state.content_hash());
        assert_eq!(amended.view.fields["title"], json!("Dev"));
        assert_eq!(
            amended.view.fields["attachments"][0]["filename"],
            json!("cv.pdf")
        );
        // The same change again (a redelivery) is no change at all.
        assert!(
            apply_in_run(Some(&amended), &att, t(30), Some("run-1"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_version_of_another_run_a_push_or_a_sweep_is_never_amended() {
        let pulled = observe_change(LayerKind::Pull, json!({"title": "Dev"}), 0);
        let newer = observe_change(LayerKind::Pull, json!({"title": "CTO"}), 1);
        let v1 = apply_in_run(None, &pulled, t(10), Some("run-1"))
            .unwrap()
            .unwrap()
            .version;
        let number = |base: &Version, c: &Change, run: Option<&str>| {
            apply_in_run(Some(base), c, t(20), run)
                .unwrap()
                .unwrap()
                .version
                .version
        };
        assert_eq!(number(&v1, &newer, Some("run-2")), 2, "another run");
        assert_eq!(number(&v1, &newer, None), 2, "a writer outside any run");
        let push = observe_change(LayerKind::Push, json!({"title": "Lead"}), 2);
        assert_eq!(number(&v1, &push, Some("run-1")), 2, "a push change");
        let pushed = apply(Some(&v1), &push, t(15)).unwrap().unwrap().version;
        assert_eq!(pushed.run, None);
        assert_eq!(number(&pushed, &newer, Some("run-1")), 3, "a push version");
        let disabled = apply(Some(&v1), &set_mode(ViewMode::PushOnly), t(15))
            .unwrap()
            .unwrap()
            .version;
        assert_eq!(
            number(&disabled, &newer, Some("run-1")),
            3,
            "a sweep version"
        );
        let gone = apply_in_run(
            Some(&v1),
            &deleted(LayerKind::Pull, None),
            t(15),
            Some("run-1"),
        )
        .unwrap()
        .unwrap()
        .version;
        assert_eq!(gone.version, 2, "a tombstone is its own version");
    }

    #[test]
    fn element_on_a_plain_field_or_without_id_is_rejected() {
        let mk = |field: &str, element: Value| Change::Observe {
            layer: LayerKind::Pull,
            observation: Observation {
                entity: EntityKind::Candidate,
                ats_id: id(),
                ats_updated_at: None,
                scope: ObservationScope::Element {
                    field: field.into(),
                    element,
                },
            },
        };
        assert!(matches!(
            apply(None, &mk("emails", json!({"id": "1"})), t(0)),
            Err(VersionError::NotKeyed { .. })
        ));
        assert!(matches!(
            apply(None, &mk("attachments", json!({"id": 1})), t(0)),
            Err(VersionError::ElementWithoutId { .. })
        ));
    }

    #[test]
    fn oversized_layer_is_rejected() {
        let big = "x".repeat(MAX_LAYER_BYTES);
        let err = apply(
            None,
            &observe_change(LayerKind::Pull, json!({"title": big}), 0),
            t(0),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            VersionError::LayerTooLarge {
                layer: LayerKind::Pull,
                ..
            }
        ));
    }

    #[test]
    fn version_round_trips_through_json() {
        let v = run(&[
            observe_change(
                LayerKind::Push,
                json!({"title": "Dev", "custom_fields": {"b": 1, "a": [1.5, null]}}),
                0,
            ),
            observe_change(LayerKind::Pull, json!({"title": null}), 1),
        ]);
        let s = serde_json::to_string(&v[1]).unwrap();
        let back: Version = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v[1]);
        assert_eq!(back.state.content_hash(), v[1].content_hash);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde_json::json;

    fn change() -> impl Strategy<Value = Change> {
        let id = AtsId::parse("1").unwrap();
        (
            0u8..5,
            prop::sample::select(vec![LayerKind::Push, LayerKind::Pull]),
            prop::collection::btree_map(
                prop::sample::select(vec!["title", "company"]).prop_map(String::from),
                prop::sample::select(vec![json!("a"), json!("b"), Value::Null]),
                0..3,
            ),
            prop::option::of(0i64..4),
        )
            .prop_map(move |(what, layer, fields, at)| {
                let at = at.map(|s| Utc.timestamp_opt(1_770_000_000 + s, 0).unwrap());
                let observation = |scope| Observation {
                    entity: EntityKind::Candidate,
                    ats_id: id.clone(),
                    ats_updated_at: at,
                    scope,
                };
                match what {
                    0 => Change::SetMode {
                        entity: EntityKind::Candidate,
                        ats_id: id.clone(),
                        mode: if fields.is_empty() {
                            ViewMode::PushOnly
                        } else {
                            ViewMode::Merged
                        },
                    },
                    1 => Change::Observe {
                        layer,
                        observation: observation(ObservationScope::Deleted),
                    },
                    _ => Change::Observe {
                        layer,
                        observation: observation(ObservationScope::Record { fields }),
                    },
                }
            })
    }

    proptest! {
        #[test]
        fn applying_the_same_change_twice_writes_once(history in prop::collection::vec(change(), 0..6), last in change()) {
            let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
            let mut head: Option<Version> = None;
            for c in &history {
                if let Some(next) = apply(head.as_ref(), c, now).unwrap() {
                    prop_assert_eq!(next.version.version, head.as_ref().map_or(1, |h| h.version + 1));
                    prop_assert_eq!(next.version.content_hash, next.version.state.content_hash());
                    head = Some(next.version);
                }
            }
            if let Some(next) = apply(head.as_ref(), &last, now).unwrap() {
                head = Some(next.version);
            }
            prop_assert!(apply(head.as_ref(), &last, now).unwrap().is_none());
        }
    }
}
