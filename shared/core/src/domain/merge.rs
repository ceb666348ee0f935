//! The merge of a record's pushed and pulled layers into the view downstream features
//! read, with per-field provenance (product.md section 4). Pure and deterministic.
//!
//! Rules, as implemented here:
//! 1. A field present in only one layer takes that layer's value (from the pull: a
//!    *backfill*).
//! 2. Equal values in both layers: provenance `both`.
//! 3. Different values: the layer whose observation carries the newer ATS `updated_at`
//!    wins; a tie goes to the pull (the system of record). A layer without an
//!    `ats_updated_at` orders before any layer with one (unknown is never "newer"), so
//!    two unknowns are a tie, which the pull wins.
//! 4. *Absent* (missing key) never overrides; an explicit `null` is a value like any
//!    other, so a newer null clears.
//! 5. Keyed collections (candidate `attachments`) are merged per element `id`: union;
//!    an element present in both layers is decided by the elements' own `updated_at`
//!    when both carry a parseable one, else by the layers' order of rule 3. Within an
//!    element, members the winning element lacks are kept from the losing one (absent
//!    never overrides, so a pulled `file` pointer survives a newer pushed row without
//!    it). Contact lists and every other field are compared and taken whole.
//!    A keyed field whose value is not a list of objects with unique string ids (a
//!    null, or a malformed list) is treated as a whole value by rules 1-4.
//! 6. Nothing is invented: every value in the view comes from a layer.
//! 7. Same input, same output (`BTreeMap`s throughout); unchanged content therefore
//!    hashes the same and writes no version (see `version`).
//! 8. [`ViewMode::PushOnly`] (pull disabled): the view is the push layer, exactly.
//!
//! Provenance keys: one entry per view field, named like the field. Keyed collections
//! additionally get one entry per element, `"<field>/<id>"` (e.g. `attachments/42`);
//! their field-level entry is `push` or `pull` when every element came from that layer
//! alone, else `both`. An element built from members of both layers has provenance
//! `both`.
//!
//! The report lists what the pull contributed: `backfilled` (fields, and elements as
//! `"attachments/<id>"`, only the pull had; explicit nulls are not counted as
//! backfills), `corrected` (both had different values and the pull won) and
//! `push_newer_kept` (the push was newer and won).

//!
//! The merge itself borrows: [`merge_ref`] returns a [`ViewRef`] whose values point into
//! the layers, so rendering a state only to compare reports, or serialising a view,
//! copies no JSON. [`merge`] is `merge_ref` followed by [`ViewRef::to_view`] for callers
//! that keep the view (decision D13 in docs/decisions.md).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use super::ids::EntityKind;
use super::model::{
    ELEMENT_ID, ELEMENT_UPDATED_AT, FieldKind, Fields, Layer, LayerKind, Provenance,
};

/// Whether the pulled layer takes part in the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewMode {
    /// Push and pull merged by the rules above (pull enabled).
    #[default]
    Merged,
    /// Only the pushed layer is shown (pull disabled); pulled data stays in history.
    PushOnly,
}

/// Why a record's view shows it as deleted (see `version` for when it applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletedBy {
    /// Full reconciliation no longer finds the record in the ATS.
    Ats,
    /// The customer's system pushed a delete.
    Push,
}

/// The merged record as downstream features read it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct View {
    pub fields: Fields,
    /// Field name (or `"<field>/<element id>"` for keyed collections) -> provenance.
    pub provenance: BTreeMap<String, Provenance>,
    /// Set when the record is a tombstone; its fields and provenance are then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<DeletedBy>,
}

/// What the pull contributed to one merge. Entries are field names or
/// `"<field>/<element id>"`, in field order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MergeReport {
    pub backfilled: Vec<String>,
    pub corrected: Vec<String>,
    pub push_newer_kept: Vec<String>,
}

impl MergeReport {
    pub fn is_empty(&self) -> bool {
        self.backfilled.is_empty() && self.corrected.is_empty() && self.push_newer_kept.is_empty()
    }
}

/// A provenance or report entry without an allocation: a field name, or a field name
/// and an element id, spelled `"<field>/<id>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path<'a> {
    pub field: &'a str,
    pub element: Option<&'a str>,
}

impl<'a> Path<'a> {
    fn field(field: &'a str) -> Self {
        Path {
            field,
            element: None,
        }
    }

    fn element(field: &'a str, id: &'a str) -> Self {
        Path {
            field,
            element: Some(id),
        }
    }

    fn bytes(&self) -> impl Iterator<Item = u8> + 'a {
        let (sep, id): (&'static [u8], &'a [u8]) = match self.element {
            Some(id) => (b"/", id.as_bytes()),
            None => (b"", b""),
        };
        self.field.as_bytes().iter().chain(sep).chain(id).copied()
    }

    /// Whether this path is spelled `s`.
    pub fn is(&self, s: &str) -> bool {
        match self.element {
            None => self.field == s,
            Some(id) => {
                s.len() == self.field.len() + 1 + id.len()
                    && s.starts_with(self.field)
                    && s.as_bytes()[self.field.len()] == b'/'
                    && s.ends_with(id)
            }
        }
    }

    /// Orders like the spelled strings (so like the owned view's `BTreeMap` keys).
    fn spelled_cmp(&self, other: &Path<'_>) -> Ordering {
        self.bytes().cmp(other.bytes())
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.element {
            None => f.write_str(self.field),
            Some(id) => write!(f, "{}/{}", self.field, id),
        }
    }
}

impl Serialize for Path<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.element {
            None => s.serialize_str(self.field),
            Some(_) => s.collect_str(self),
        }
    }
}

/// [`MergeReport`] with borrowed entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReportRef<'a> {
    pub backfilled: Vec<Path<'a>>,
    pub corrected: Vec<Path<'a>>,
    pub push_newer_kept: Vec<Path<'a>>,
}

impl ReportRef<'_> {
    pub fn to_report(&self) -> MergeReport {
        let own = |v: &[Path<'_>]| v.iter().map(Path::to_string).collect();
        MergeReport {
            backfilled: own(&self.backfilled),
            corrected: own(&self.corrected),
            push_newer_kept: own(&self.push_newer_kept),
        }
    }
}

/// One element of a merged keyed collection.
#[derive(Debug, Clone, PartialEq)]
enum ElementRef<'a> {
    /// Taken whole from one layer.
    Whole(&'a Map<String, Value>),
    /// The winning layer's element plus the members only the losing one had, in the
    /// losing element's order.
    Mixed {
        won: &'a Map<String, Value>,
        kept: Vec<(&'a String, &'a Value)>,
    },
}

impl ElementRef<'_> {
    fn to_value(&self) -> Value {
        match self {
            ElementRef::Whole(m) => Value::Object((*m).clone()),
            ElementRef::Mixed { won, kept } => {
                let mut m = (*won).clone();
                for (k, v) in kept {
                    m.insert((*k).clone(), (*v).clone());
                }
                Value::Object(m)
            }
        }
    }
}

impl Serialize for ElementRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ElementRef::Whole(m) => m.serialize(s),
            ElementRef::Mixed { won, kept } => {
                let mut map = s.serialize_map(Some(won.len() + kept.len()))?;
                for (k, v) in won.iter() {
                    map.serialize_entry(k, v)?;
                }
                for (k, v) in kept {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// A value of the merged view.
#[derive(Debug, Clone, PartialEq)]
enum ValueRef<'a> {
    /// A layer's value, taken whole.
    Whole(&'a Value),
    /// A keyed collection merged element by element.
    Keyed(Vec<ElementRef<'a>>),
}

impl ValueRef<'_> {
    fn to_value(&self) -> Value {
        match self {
            ValueRef::Whole(v) => (*v).clone(),
            ValueRef::Keyed(elements) => {
                Value::Array(elements.iter().map(ElementRef::to_value).collect())
            }
        }
    }
}

impl Serialize for ValueRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ValueRef::Whole(v) => v.serialize(s),
            ValueRef::Keyed(elements) => {
                let mut seq = s.serialize_seq(Some(elements.len()))?;
                for e in elements {
                    seq.serialize_element(e)?;
                }
                seq.end()
            }
        }
    }
}

/// A merged view that borrows its values from the layers. It serialises exactly like
/// the [`View`] [`ViewRef::to_view`] makes of it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ViewRef<'a> {
    /// In field-name order.
    fields: Vec<(&'a str, ValueRef<'a>)>,
    /// In the order of the spelled paths.
    provenance: Vec<(Path<'a>, Provenance)>,
    deleted: Option<DeletedBy>,
}

impl<'a> ViewRef<'a> {
    /// A tombstone view: no fields, no provenance.
    pub fn tombstone(by: DeletedBy) -> Self {
        ViewRef {
            deleted: Some(by),
            ..ViewRef::default()
        }
    }

    pub fn provenance(&self) -> &[(Path<'a>, Provenance)] {
        &self.provenance
    }

    /// The owned view (copies every value).
    pub fn to_view(&self) -> View {
        View {
            fields: self
                .fields
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.to_value()))
                .collect(),
            provenance: self
                .provenance
                .iter()
                .map(|(p, prov)| (p.to_string(), *prov))
                .collect(),
            deleted: self.deleted,
        }
    }
}

impl Serialize for ViewRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Entries<'b, K, V>(&'b [(K, V)]);
        impl<K: Serialize, V: Serialize> Serialize for Entries<'_, K, V> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
        let n = if self.deleted.is_some() { 3 } else { 2 };
        let mut st = s.serialize_struct("View", n)?;
        st.serialize_field("fields", &Entries(&self.fields))?;
        st.serialize_field("provenance", &Entries(&self.provenance))?;
        if let Some(by) = &self.deleted {
            st.serialize_field("deleted", by)?;
        }
        st.end()
    }
}

/// Merges the layers of one record of kind `entity` into its view (owned).
pub fn merge(
    entity: EntityKind,
    push: Option<&Layer>,
    pull: Option<&Layer>,
    mode: ViewMode,
) -> (View, MergeReport) {
    let (view, report) = merge_ref(entity, push, pull, mode);
    (view.to_view(), report.to_report())
}

/// Merges the layers of one record of kind `entity` into a view that borrows from them.
pub fn merge_ref<'a>(
    entity: EntityKind,
    push: Option<&'a Layer>,
    pull: Option<&'a Layer>,
    mode: ViewMode,
) -> (ViewRef<'a>, ReportRef<'a>) {
    let pull = match mode {
        ViewMode::Merged => pull,
        ViewMode::PushOnly => None,
    };
    let n = push.map_or(0, |l| l.fields.len()) + pull.map_or(0, |l| l.fields.len());
    let mut out = Out {
        fields: Vec::with_capacity(n),
        provenance: Vec::with_capacity(n + 4),
        report: ReportRef::default(),
        elements: false,
    };
    match (push, pull) {
        (None, None) => {}
        (Some(only), None) => out.take_layer(entity, &only.fields, LayerKind::Push),
        // A record nobody pushed: nothing was missing from a push, so nothing the pull
        // brings is a backfill (the report counts what the pull added to pushed data).
        (None, Some(only)) => {
            out.take_layer(entity, &only.fields, LayerKind::Pull);
            out.report.backfilled.clear();
        }
        (Some(push), Some(pull)) => {
            let winner = layer_winner(push.ats_updated_at, pull.ats_updated_at);
            merge_join(entity, push, pull, winner, &mut out);
        }
    }
    if out.elements {
        // Element paths follow their field's in merge order; restore the spelled order
        // (paths are unique, so an unstable sort is exact, and it does not allocate).
        out.provenance
            .sort_unstable_by(|a, b| a.0.spelled_cmp(&b.0));
    }
    (
        ViewRef {
            fields: out.fields,
            provenance: out.provenance,
            deleted: None,
        },
        out.report,
    )
}

/// Rule 3 at layer level: the newer `ats_updated_at` wins, unknown is oldest, tie -> pull.
fn layer_winner(push: Option<DateTime<Utc>>, pull: Option<DateTime<Utc>>) -> LayerKind {
    match (push, pull) {
        (Some(a), Some(b)) if a > b => LayerKind::Push,
        (Some(_), None) => LayerKind::Push,
        _ => LayerKind::Pull,
    }
}

fn provenance_of(kind: LayerKind) -> Provenance {
    match kind {
        LayerKind::Push => Provenance::Push,
        LayerKind::Pull => Provenance::Pull,
    }
}

struct Out<'a> {
    fields: Vec<(&'a str, ValueRef<'a>)>,
    provenance: Vec<(Path<'a>, Provenance)>,
    report: ReportRef<'a>,
    /// Whether element paths were recorded (the provenance then needs sorting).
    elements: bool,
}

impl<'a> Out<'a> {
    /// Rule 1 for a whole layer (the other layer is missing or excluded).
    fn take_layer(&mut self, entity: EntityKind, fields: &'a Fields, from: LayerKind) {
        for (name, value) in fields {
            self.take_one(entity, name, value, from);
        }
    }

    /// Rule 1 for one field only `from` has.
    fn take_one(&mut self, entity: EntityKind, name: &'a str, value: &'a Value, from: LayerKind) {
        let prov = provenance_of(from);
        self.provenance.push((Path::field(name), prov));
        if entity.field_kind(name) == FieldKind::Keyed
            && let Some(elements) = keyed_elements(value)
        {
            for (id, _) in &elements {
                self.elements = true;
                self.provenance.push((Path::element(name, id), prov));
                if from == LayerKind::Pull {
                    self.report.backfilled.push(Path::element(name, id));
                }
            }
        } else if from == LayerKind::Pull && !value.is_null() {
            self.report.backfilled.push(Path::field(name));
        }
        self.fields.push((name, ValueRef::Whole(value)));
    }

    /// Rules 2-4 for a field both layers have, taken whole.
    fn take_scalar(&mut self, name: &'a str, push: &'a Value, pull: &'a Value, winner: LayerKind) {
        let (value, prov) = if same(push, pull) {
            (pull, Provenance::Both)
        } else {
            match winner {
                LayerKind::Pull => {
                    self.report.corrected.push(Path::field(name));
                    (pull, Provenance::Pull)
                }
                LayerKind::Push => {
                    self.report.push_newer_kept.push(Path::field(name));
                    (push, Provenance::Push)
                }
            }
        };
        self.provenance.push((Path::field(name), prov));
        self.fields.push((name, ValueRef::Whole(value)));
    }
}

/// Walks both layers' fields in name order (both are sorted maps), so every field is
/// visited once without lookups.
fn merge_join<'a>(
    entity: EntityKind,
    push: &'a Layer,
    pull: &'a Layer,
    winner: LayerKind,
    out: &mut Out<'a>,
) {
    let mut a = push.fields.iter().peekable();
    let mut b = pull.fields.iter().peekable();
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ka, _)), Some((kb, _))) => ka.as_str().cmp(kb.as_str()),
        };
        match order {
            Ordering::Less => {
                if let Some((name, value)) = a.next() {
                    out.take_one(entity, name, value, LayerKind::Push);
                }
            }
            Ordering::Greater => {
                if let Some((name, value)) = b.next() {
                    out.take_one(entity, name, value, LayerKind::Pull);
                }
            }
            Ordering::Equal => {
                if let (Some((name, pv)), Some((_, lv))) = (a.next(), b.next()) {
                    if entity.field_kind(name) == FieldKind::Keyed
                        && let (Some(pe), Some(le)) = (keyed_elements(pv), keyed_elements(lv))
                    {
                        merge_keyed(name, &pe, &le, winner, out);
                        continue;
                    }
                    out.take_scalar(name, pv, lv, winner);
                }
            }
        }
    }
}

/// JSON equality (member order does not matter, as for `Value`'s `==`), with a fast
/// path for the usual case of both layers listing members in the same order: it avoids
/// hashing every member name for a lookup, which dominated the cost of merging.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => same_members(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        _ => a == b,
    }
}

fn same_members(x: &Map<String, Value>, y: &Map<String, Value>) -> bool {
    if x.len() != y.len() {
        return false;
    }
    if x.iter()
        .zip(y.iter())
        .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
    {
        return true;
    }
    x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
}

type Element<'a> = (&'a str, &'a Map<String, Value>);

/// The elements of a well-formed keyed collection: a list of objects, each with a unique
/// string `id`. Anything else is `None` and is merged as a whole value.
fn keyed_elements(value: &Value) -> Option<Vec<Element<'_>>> {
    let list = value.as_array()?;
    let mut out: Vec<Element<'_>> = Vec::with_capacity(list.len());
    for item in list {
        let obj = item.as_object()?;
        let id = obj.get(ELEMENT_ID)?.as_str()?;
        if out.iter().any(|(seen, _)| *seen == id) {
            return None;
        }
        out.push((id, obj));
    }
    Some(out)
}

fn element_updated_at(element: &Map<String, Value>) -> Option<DateTime<Utc>> {
    let s = element.get(ELEMENT_UPDATED_AT)?.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Rule 5: union by id. Output order: the pull's elements in the pull's order, then the
/// push-only elements in the push's order (deterministic, stable across merges).
fn merge_keyed<'a>(
    name: &'a str,
    push: &[Element<'a>],
    pull: &[Element<'a>],
    layer_winner: LayerKind,
    out: &mut Out<'a>,
) {
    out.elements = true;
    let field_at = out.provenance.len();
    out.provenance.push((Path::field(name), Provenance::Both));
    let mut merged = Vec::with_capacity(pull.len() + push.len());
    let mut seen_push = false;
    let mut seen_pull = false;
    let mut seen_both = false;
    for &(id, le) in pull {
        let path = Path::element(name, id);
        let prov = match push.iter().find(|(pid, _)| *pid == id) {
            None => {
                out.report.backfilled.push(path);
                merged.push(ElementRef::Whole(le));
                Provenance::Pull
            }
            Some((_, pe)) if same_members(pe, le) => {
                merged.push(ElementRef::Whole(le));
                Provenance::Both
            }
            Some(&(_, pe)) => {
                let winner = match (element_updated_at(pe), element_updated_at(le)) {
                    (Some(a), Some(b)) => {
                        if a > b {
                            LayerKind::Push
                        } else {
                            LayerKind::Pull
                        }
                    }
                    _ => layer_winner,
                };
                let (won, lost) = match winner {
                    LayerKind::Push => {
                        out.report.push_newer_kept.push(path);
                        (pe, le)
                    }
                    LayerKind::Pull => {
                        out.report.corrected.push(path);
                        (le, pe)
                    }
                };
                let kept: Vec<(&String, &Value)> =
                    lost.iter().filter(|(m, _)| !won.contains_key(*m)).collect();
                if kept.is_empty() {
                    merged.push(ElementRef::Whole(won));
                    provenance_of(winner)
                } else {
                    merged.push(ElementRef::Mixed { won, kept });
                    Provenance::Both
                }
            }
        };
        match prov {
            Provenance::Push => seen_push = true,
            Provenance::Pull => seen_pull = true,
            Provenance::Both => seen_both = true,
        }
        out.provenance.push((path, prov));
    }
    for &(id, pe) in push {
        if pull.iter().any(|(lid, _)| *lid == id) {
            continue;
        }
        seen_push = true;
        merged.push(ElementRef::Whole(pe));
        out.provenance
            .push((Path::element(name, id), Provenance::Push));
    }
    out.provenance[field_at].1 = match (seen_push, seen_pull, seen_both) {
        (true, false, false) => Provenance::Push,
        (false, true, false) => Provenance::Pull,
        _ => Provenance::Both,
    };
    out.fields.push((name, ValueRef::Keyed(merged)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn t(secs: i64) -> Option<DateTime<Utc>> {
        Some(Utc.timestamp_opt(1_770_000_000 + secs, 0).unwrap())
    }

    fn layer(fields: Value, at: Option<DateTime<Utc>>) -> Layer {
        let fields: Fields = serde_json::from_value(fields).unwrap();
        Layer {
            fields,
            ats_updated_at: at,
            observed_at: None,
        }
    }

    fn merged(push: &Layer, pull: &Layer) -> (View, MergeReport) {
        merge(
            EntityKind::Candidate,
            Some(push),
            Some(pull),
            ViewMode::Merged,
        )
    }

    #[test]
    fn rule1_value_only_in_pull_is_backfilled() {
        let push = layer(json!({"first_name": "Ada"}), t(10));
        let pull = layer(json!({"first_name": "Ada", "title": "CTO"}), t(0));
        let (view, report) = merged(&push, &pull);
        assert_eq!(view.fields["title"], json!("CTO"));
        assert_eq!(view.provenance["title"], Provenance::Pull);
        assert_eq!(report.backfilled, vec!["title"]);
    }

    #[test]
    fn a_record_nobody_pushed_reports_no_backfill() {
        // A pull-only tenant: a value the pull brings (even one that was null before)
        // fills no gap in pushed data, so it is not counted as backfilled.
        let pull = layer(
            json!({"title": "CTO", "attachments": [{"id": "1", "filename": "cv.pdf"}]}),
            t(0),
        );
        let (view, report) = merge(EntityKind::Candidate, None, Some(&pull), ViewMode::Merged);
        assert_eq!(view.fields["title"], json!("CTO"));
        assert_eq!(view.provenance["title"], Provenance::Pull);
        assert!(report.backfilled.is_empty(), "{report:?}");
    }

    #[test]
    fn rule1_value_only_in_push_is_kept_without_report() {
        let push = layer(json!({"company": "Acme"}), t(0));
        let pull = layer(json!({}), t(10));
        let (view, report) = merged(&push, &pull);
        assert_eq!(view.fields["company"], json!("Acme"));
        assert_eq!(view.provenance["company"], Provenance::Push);
        assert!(report.is_empty());
    }

    #[test]
    fn rule2_equal_values_have_provenance_both() {
        let push = layer(json!({"title": "CTO"}), t(0));
        let pull = layer(json!({"title": "CTO"}), t(5));
        let (view, report) = merged(&push, &pull);
        assert_eq!(view.provenance["title"], Provenance::Both);
        assert!(report.is_empty());
    }

    #[test]
    fn rule3_newer_pull_corrects_and_newer_push_is_kept() {
        let older_push = layer(json!({"title": "Dev"}), t(0));
        let newer_pull = layer(json!({"title": "CTO"}), t(5));
        let (view, report) = merged(&older_push, &newer_pull);
        assert_eq!(view.fields["title"], json!("CTO"));
        assert_eq!(view.provenance["title"], Provenance::Pull);
        assert_eq!(report.corrected, vec!["title"]);

        let newer_push = layer(json!({"title": "Dev"}), t(9));
        let (view, report) = merged(&newer_push, &newer_pull);
        assert_eq!(view.fields["title"], json!("Dev"));
        assert_eq!(view.provenance["title"], Provenance::Push);
        assert_eq!(report.push_newer_kept, vec!["title"]);
    }

    #[test]
    fn rule3_tie_goes_to_the_pull() {
        let push = layer(json!({"title": "Dev"}), t(3));
        let pull = layer(json!({"title": "CTO"}), t(3));
        assert_eq!(merged(&push, &pull).0.fields["title"], json!("CTO"));
        // Two unknown timestamps are a tie too.
        let push = layer(json!({"title": "Dev"}), None);
        let pull = layer(json!({"title": "CTO"}), None);
        assert_eq!(merged(&push, &pull).0.fields["title"], json!("CTO"));
    }

    #[test]
    fn rule3_unknown_timestamp_is_older_than_any_known() {
        let push = layer(json!({"title": "Dev"}), t(0));
        let pull = layer(json!({"title": "CTO"}), None);
        assert_eq!(merged(&push, &pull).0.fields["title"], json!("Dev"));
        let push = layer(json!({"title": "Dev"}), None);
        let pull = layer(json!({"title": "CTO"}), t(0));
        assert_eq!(merged(&push, &pull).0.fields["title"], json!("CTO"));
    }

    #[test]
    fn rule4_absent_never_overrides_even_when_newer() {
        let push = layer(json!({"title": "Dev", "company": "Acme"}), t(0));
        let pull = layer(json!({"title": "CTO"}), t(100));
        let (view, _) = merged(&push, &pull);
        assert_eq!(view.fields["company"], json!("Acme"));
    }

    #[test]
    fn rule4_newer_explicit_null_clears_and_older_null_does_not() {
        let push = layer(json!({"title": "Dev"}), t(0));
        let pull = layer(json!({"title": null}), t(1));
        let (view, report) = merged(&push, &pull);
        assert_eq!(view.fields["title"], Value::Null);
        assert_eq!(report.corrected, vec!["title"]);

        let push = layer(json!({"title": "Dev"}), t(2));
        let (view, _) = merged(&push, &pull);
        assert_eq!(view.fields["title"], json!("Dev"));
    }

    #[test]
    fn rule4_null_only_in_pull_is_taken_but_not_reported_as_backfill() {
        let push = layer(json!({}), t(0));
        let pull = layer(json!({"title": null}), t(1));
        let (view, report) = merged(&push, &pull);
        assert_eq!(view.fields["title"], Value::Null);
        assert!(report.backfilled.is_empty());
    }

    #[test]
    fn rule5_contact_lists_are_taken_whole_from_the_winner() {
        let push = layer(
            json!({"emails": [{"type": "work", "value": "a@x.io"}, {"type": "home", "value": "h@x.io"}]}),
            t(0),
        );
        let pull = layer(
            json!({"emails": [{"type": "work", "value": "b@x.io"}]}),
            t(1),
        );
        let (view, _) = merged(&push, &pull);
        assert_eq!(
            view.fields["emails"],
            json!([{"type": "work", "value": "b@x.io"}])
        );
        assert_eq!(view.provenance["emails"], Provenance::Pull);
    }

    #[test]
    fn rule5_attachments_are_a_union_by_id_with_per_element_provenance() {
        let push = layer(
            json!({"attachments": [
                {"id": "1", "filename": "cv.pdf", "updated_at": "2026-01-01T00:00:00.000Z"},
                {"id": "2", "filename": "cover.pdf"}
            ]}),
            t(0),
        );
        let pull = layer(
            json!({"attachments": [
                {"id": "3", "filename": "offer.pdf"},
                {"id": "1", "filename": "cv.pdf", "updated_at": "2026-01-01T00:00:00.000Z"}
            ]}),
            t(1),
        );
        let (view, report) = merged(&push, &pull);
        let ids: Vec<&str> = view.fields["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec!["3", "1", "2"]);
        assert_eq!(view.provenance["attachments/1"], Provenance::Both);
        assert_eq!(view.provenance["attachments/2"], Provenance::Push);
        assert_eq!(view.provenance["attachments/3"], Provenance::Pull);
        assert_eq!(view.provenance["attachments"], Provenance::Both);
        assert_eq!(report.backfilled, vec!["attachments/3"]);
    }

    #[test]
    fn rule5_attachment_conflict_uses_element_updated_at_over_layer_order() {
        // The push layer is older, but its element is newer: the element decides.
        let push = layer(
            json!({"attachments": [{"id": "1", "filename": "new.pdf", "updated_at": "2026-02-01T00:00:00.000Z"}]}),
            t(0),
        );
        let pull = layer(
            json!({"attachments": [{"id": "1", "filename": "old.pdf", "updated_at": "2026-01-01T00:00:00.000Z"}]}),
            t(9),
        );
        let (view, report) = merged(&push, &pull);
        assert_eq!(view.fields["attachments"][0]["filename"], json!("new.pdf"));
        assert_eq!(view.provenance["attachments/1"], Provenance::Push);
        assert_eq!(report.push_newer_kept, vec!["attachments/1"]);
    }

    #[test]
    fn rule5_attachment_conflict_without_element_times_uses_layer_order() {
        let push = layer(
            json!({"attachments": [{"id": "1", "filename": "a.pdf"}]}),
            t(5),
        );
        let pull = layer(
            json!({"attachments": [{"id": "1", "filename": "b.pdf"}]}),
            t(5),
        );
        let (view, report) = merged(&push, &pull);
        assert_eq!(view.fields["attachments"][0]["filename"], json!("b.pdf"));
        assert_eq!(report.corrected, vec!["attachments/1"]);
    }

    #[test]
    fn rule5_winning_element_keeps_members_it_lacks_from_the_other_layer() {
        let push = layer(
            json!({"attachments": [{"id": "1", "filename": "cv2.pdf", "updated_at": "2026-02-01T00:00:00.000Z"}]}),
            t(0),
        );
        let pull = layer(
            json!({"attachments": [{"id": "1", "filename": "cv.pdf", "updated_at": "2026-01-01T00:00:00.000Z",
                                     "file": {"key": "k", "sha256": "ab", "size": 3}}]}),
            t(0),
        );
        let (view, _) = merged(&push, &pull);
        let element = &view.fields["attachments"][0];
        assert_eq!(element["filename"], json!("cv2.pdf"));
        assert_eq!(element["file"]["key"], json!("k"));
        assert_eq!(view.provenance["attachments/1"], Provenance::Both);
    }

    #[test]
    fn rule5_malformed_keyed_collection_is_merged_whole() {
        let push = layer(json!({"attachments": null}), t(9));
        let pull = layer(json!({"attachments": [{"id": "1"}]}), t(0));
        let (view, report) = merged(&push, &pull);
        assert_eq!(view.fields["attachments"], Value::Null);
        assert_eq!(report.push_newer_kept, vec!["attachments"]);
    }

    #[test]
    fn attachments_are_plain_fields_for_other_entities() {
        let push = layer(json!({"attachments": [{"id": "1", "a": 1}]}), t(0));
        let pull = layer(json!({"attachments": [{"id": "2", "a": 1}]}), t(1));
        let (view, _) = merge(EntityKind::Job, Some(&push), Some(&pull), ViewMode::Merged);
        assert_eq!(view.fields["attachments"], json!([{"id": "2", "a": 1}]));
    }

    #[test]
    fn rule2_equality_ignores_member_order() {
        let push: Layer = layer(
            serde_json::from_str(r#"{"custom_fields": {"a": 1, "b": [1, {"x": 1, "y": 2}]}}"#)
                .unwrap(),
            t(9),
        );
        let pull: Layer = layer(
            serde_json::from_str(r#"{"custom_fields": {"b": [1, {"y": 2, "x": 1}], "a": 1}}"#)
                .unwrap(),
            t(0),
        );
        let (view, report) = merged(&push, &pull);
        assert_eq!(view.provenance["custom_fields"], Provenance::Both);
        assert!(report.is_empty());
        let other: Layer = layer(
            json!({"custom_fields": {"a": 1, "b": [1, {"x": 1, "y": 3}]}}),
            t(0),
        );
        assert_eq!(
            merged(&push, &other).0.provenance["custom_fields"],
            Provenance::Push
        );
    }

    #[test]
    fn rule6_missing_everywhere_stays_missing() {
        let push = layer(json!({"first_name": "Ada"}), t(0));
        let pull = layer(json!({"last_name": "L"}), t(1));
        let (view, _) = merged(&push, &pull);
        assert_eq!(view.fields.len(), 2);
        assert!(!view.fields.contains_key("title"));
    }

    #[test]
    fn rule7_same_input_gives_the_same_view() {
        let push = layer(json!({"title": "Dev", "tags": ["a"]}), t(0));
        let pull = layer(json!({"title": "CTO", "company": "X"}), t(1));
        assert_eq!(merged(&push, &pull), merged(&push, &pull));
    }

    #[test]
    fn rule8_push_only_view_is_the_push_layer() {
        let push = layer(json!({"title": "Dev", "attachments": [{"id": "1"}]}), t(0));
        let pull = layer(json!({"title": "CTO", "company": "X"}), t(1));
        let (view, report) = merge(
            EntityKind::Candidate,
            Some(&push),
            Some(&pull),
            ViewMode::PushOnly,
        );
        assert_eq!(view.fields, push.fields);
        assert!(view.provenance.values().all(|p| *p == Provenance::Push));
        assert!(report.is_empty());
        let (view, _) = merge(EntityKind::Candidate, None, Some(&pull), ViewMode::PushOnly);
        assert!(view.fields.is_empty());
    }

    #[test]
    fn borrowed_view_orders_and_spells_provenance_like_the_owned_view() {
        // Names that sort around "attachments/<id>": '.' < '/' < '_' < letters.
        let push = layer(
            json!({"attachments": [{"id": "9", "filename": "a.pdf"}], "attachments.x": 1, "attachments_y": 2}),
            t(10),
        );
        let pull = layer(
            json!({"attachments": [{"id": "10", "filename": "b.pdf"}, {"id": "9", "file": {"key": "k"}}], "attachmentsz": 3}),
            t(0),
        );
        let (borrowed, report) = merge_ref(
            EntityKind::Candidate,
            Some(&push),
            Some(&pull),
            ViewMode::Merged,
        );
        let owned = borrowed.to_view();
        assert_eq!(
            serde_json::to_string(&borrowed).unwrap(),
            serde_json::to_string(&owned).unwrap()
        );
        let spelled: Vec<String> = borrowed
            .provenance()
            .iter()
            .map(|(p, _)| p.to_string())
            .collect();
        let keys: Vec<String> = owned.provenance.keys().cloned().collect();
        assert_eq!(spelled, keys);
        assert_eq!(owned.provenance["attachments/9"], Provenance::Both);
        let r = report.to_report();
        assert_eq!(r.backfilled, vec!["attachments/10", "attachmentsz"]);
        assert!(report.backfilled[0].is("attachments/10"));
        assert!(!report.backfilled[0].is("attachments/1"));
        assert!(!report.backfilled[0].is("attachments_10"));
        assert!(report.backfilled[1].is("attachmentsz"));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde_json::json;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            prop::sample::select(vec!["a", "b", "c"]).prop_map(|s| json!(s)),
            (0i64..3).prop_map(|n| json!(n)),
            prop::collection::vec(prop::sample::select(vec!["x", "y"]), 0..3)
                .prop_map(|v| json!(v)),
        ]
    }

    fn element() -> impl Strategy<Value = Value> {
        (
            prop::sample::select(vec!["1", "2", "3", "4"]),
            prop::option::of(prop::sample::select(vec!["cv.pdf", "b.pdf"])),
            prop::option::of(prop::sample::select(vec![
                "2026-01-01T00:00:00.000Z",
                "2026-02-01T00:00:00.000Z",
            ])),
            prop::option::of(prop::sample::select(vec!["k1", "k2"])),
        )
            .prop_map(|(id, filename, updated_at, file)| {
                let mut m = Map::new();
                m.insert("id".into(), json!(id));
                if let Some(f) = filename {
                    m.insert("filename".into(), json!(f));
                }
                if let Some(u) = updated_at {
                    m.insert("updated_at".into(), json!(u));
                }
                if let Some(k) = file {
                    m.insert("file".into(), json!({"key": k}));
                }
                Value::Object(m)
            })
    }

    fn attachments() -> impl Strategy<Value = Value> {
        prop_oneof![
            1 => Just(Value::Null),
            4 => prop::collection::vec(element(), 0..4).prop_map(|mut v| {
                // Unique ids, so that most generated collections are well-formed.
                let mut seen = Vec::new();
                v.retain(|e| {
                    let id = e["id"].as_str().unwrap_or_default().to_owned();
                    if seen.contains(&id) { false } else { seen.push(id); true }
                });
                Value::Array(v)
            }),
        ]
    }

    fn layer() -> impl Strategy<Value = Layer> {
        (
            prop::collection::btree_map(
                prop::sample::select(vec!["first_name", "title", "emails", "tags"])
                    .prop_map(String::from),
                value(),
                0..4,
            ),
            prop::option::of(attachments()),
            prop::option::of(0i64..3),
        )
            .prop_map(|(mut fields, att, at)| {
                if let Some(a) = att {
                    fields.insert("attachments".into(), a);
                }
                Layer {
                    fields,
                    ats_updated_at: at.map(|s| Utc.timestamp_opt(1_770_000_000 + s, 0).unwrap()),
                    observed_at: None,
                }
            })
    }

    fn element_of<'a>(value: Option<&'a Value>, id: &str) -> Option<&'a Map<String, Value>> {
        keyed_elements(value?)?
            .into_iter()
            .find(|(i, _)| *i == id)
            .map(|(_, e)| e)
    }

    proptest! {
        #[test]
        fn merge_is_deterministic_and_idempotent(push in prop::option::of(layer()), pull in prop::option::of(layer())) {
            let once = merge(EntityKind::Candidate, push.as_ref(), pull.as_ref(), ViewMode::Merged);
            let again = merge(EntityKind::Candidate, push.clone().as_ref(), pull.clone().as_ref(), ViewMode::Merged);
            prop_assert_eq!(&once, &again);
            // Merging the view back as the pull layer at the same time changes nothing.
            let as_pull = Layer {
                fields: once.0.fields.clone(),
                ats_updated_at: pull.as_ref().and_then(|l| l.ats_updated_at).max(push.as_ref().and_then(|l| l.ats_updated_at)),
                observed_at: None,
            };
            let twice = merge(EntityKind::Candidate, push.as_ref(), Some(&as_pull), ViewMode::Merged);
            prop_assert_eq!(&twice.0.fields, &once.0.fields);
        }

        #[test]
        fn provenance_names_a_layer_that_holds_the_value(push in layer(), pull in layer()) {
            let (view, _) = merge(EntityKind::Candidate, Some(&push), Some(&pull), ViewMode::Merged);
            for (name, value) in &view.fields {
                let in_push = push.fields.get(name);
                let in_pull = pull.fields.get(name);
                let keyed = name == "attachments"
                    && in_push.is_none_or(|v| keyed_elements(v).is_some())
                    && in_pull.is_none_or(|v| keyed_elements(v).is_some());
                if keyed {
                    for (id, element) in keyed_elements(value).unwrap() {
                        let pe = element_of(in_push, id);
                        let le = element_of(in_pull, id);
                        match view.provenance[&format!("{name}/{id}")] {
                            Provenance::Push => prop_assert_eq!(pe, Some(element)),
                            Provenance::Pull => prop_assert_eq!(le, Some(element)),
                            Provenance::Both => {
                                prop_assert!(pe.is_some() && le.is_some());
                                for (m, v) in element {
                                    prop_assert!(pe.and_then(|e| e.get(m)) == Some(v) || le.and_then(|e| e.get(m)) == Some(v));
                                }
                            }
                        }
                    }
                } else {
                    match view.provenance[name] {
                        Provenance::Push => prop_assert_eq!(in_push, Some(value)),
                        Provenance::Pull => prop_assert_eq!(in_pull, Some(value)),
                        Provenance::Both => {
                            prop_assert_eq!(in_push, Some(value));
                            prop_assert_eq!(in_pull, Some(value));
                        }
                    }
                }
            }
        }

        #[test]
        fn no_value_is_invented_and_none_is_lost(push in layer(), pull in layer()) {
            let (view, _) = merge(EntityKind::Candidate, Some(&push), Some(&pull), ViewMode::Merged);
            let names: std::collections::BTreeSet<&String> = push.fields.keys().chain(pull.fields.keys()).collect();
            prop_assert_eq!(names, view.fields.keys().collect());
            for (name, value) in &view.fields {
                if push.fields.get(name) == Some(value) || pull.fields.get(name) == Some(value) {
                    continue;
                }
                // Only a merged keyed collection may differ from both layers, and every
                // member of every element must come from the same element in a layer.
                prop_assert_eq!(name.as_str(), "attachments");
                for (id, element) in keyed_elements(value).unwrap() {
                    for (m, v) in element {
                        let from_push = element_of(push.fields.get(name), id).and_then(|e| e.get(m)) == Some(v);
                        let from_pull = element_of(pull.fields.get(name), id).and_then(|e| e.get(m)) == Some(v);
                        prop_assert!(from_push || from_pull, "member {m} of {id} invented");
                    }
                }
            }
        }

        #[test]
        fn borrowed_view_serialises_like_the_owned_view(push in prop::option::of(layer()), pull in prop::option::of(layer())) {
            let (borrowed, report) = merge_ref(EntityKind::Candidate, push.as_ref(), pull.as_ref(), ViewMode::Merged);
            let owned = borrowed.to_view();
            prop_assert_eq!(serde_json::to_string(&borrowed).unwrap(), serde_json::to_string(&owned).unwrap());
            let spelled: Vec<String> = borrowed.provenance().iter().map(|(p, _)| p.to_string()).collect();
            prop_assert_eq!(spelled, owned.provenance.keys().cloned().collect::<Vec<_>>());
            let r = report.to_report();
            for (paths, strings) in [(&report.backfilled, &r.backfilled), (&report.corrected, &r.corrected), (&report.push_newer_kept, &r.push_newer_kept)] {
                prop_assert_eq!(paths.len(), strings.len());
                for (p, s) in paths.iter().zip(strings) {
                    prop_assert!(p.is(s));
                }
            }
        }

        #[test]
        fn push_only_view_equals_the_push_layer(push in prop::option::of(layer()), pull in prop::option::of(layer())) {
            let (view, report) = merge(EntityKind::Candidate, push.as_ref(), pull.as_ref(), ViewMode::PushOnly);
            prop_assert_eq!(&view.fields, &push.map(|l| l.fields).unwrap_or_default());
            prop_assert!(view.provenance.values().all(|p| *p == Provenance::Push));
            prop_assert!(report.is_empty());
        }
    }
}
