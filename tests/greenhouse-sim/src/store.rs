//! The live ATS state behind the server: per resource, rows sorted by id, each kept as
//! pre-serialised JSON plus the few values filters need. Serving a page is a range walk
//! and a byte copy; mutations re-parse one row, change it and serialise it again.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::model::{AtsData, Entity, millis, parse_ts, record_id, record_ts};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{0} {1} not found")]
    NotFound(&'static str, u64),
    #[error("record has no numeric id")]
    NoId,
    #[error("record is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid mutation: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub json: Box<[u8]>,
    pub updated: i64,
    pub created: i64,
    pub activity: i64,
    pub candidate_id: Option<u64>,
}

impl Row {
    pub fn from_value(v: &Value) -> Result<(u64, Row), StoreError> {
        let id = record_id(v).ok_or(StoreError::NoId)?;
        let t = |f: &str| record_ts(v, f).map(millis).unwrap_or(i64::MIN);
        let json = serde_json::to_vec(v)?.into_boxed_slice();
        Ok((
            id,
            Row {
                json,
                updated: t("updated_at"),
                created: t("created_at"),
                activity: t("last_activity_at"),
                candidate_id: v.get("candidate_id").and_then(Value::as_u64),
            },
        ))
    }

    /// A row from text that is already serialised (the truth keeps its records so):
    /// only the members the filters need are read, the text is copied as it is.
    pub fn from_json(json: &str) -> Result<(u64, Row), StoreError> {
        let m: RowMeta<'_> = serde_json::from_str(json)?;
        let id = m.id.ok_or(StoreError::NoId)?;
        let t =
            |f: Option<Cow<'_, str>>| f.and_then(|s| parse_ts(&s)).map(millis).unwrap_or(i64::MIN);
        Ok((
            id,
            Row {
                json: json.as_bytes().into(),
                updated: t(m.updated_at),
                created: t(m.created_at),
                activity: t(m.last_activity_at),
                candidate_id: m.candidate_id,
            },
        ))
    }

    pub fn value(&self) -> Result<Value, StoreError> {
        Ok(serde_json::from_slice(&self.json)?)
    }
}

/// The members of a v3 object a [`Row`] indexes; everything else is skipped.
#[derive(Deserialize)]
struct RowMeta<'a> {
    id: Option<u64>,
    #[serde(borrow, default)]
    updated_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    created_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    last_activity_at: Option<Cow<'a, str>>,
    #[serde(default)]
    candidate_id: Option<u64>,
}

/// Bounds on a timestamp (epoch milliseconds), from the pipe syntax `gte|..|lt|..`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Bounds {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gt: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gte: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lt: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lte: Option<i64>,
}

impl Bounds {
    pub fn matches(&self, t: i64) -> bool {
        self.gt.is_none_or(|b| t > b)
            && self.gte.is_none_or(|b| t >= b)
            && self.lt.is_none_or(|b| t < b)
            && self.lte.is_none_or(|b| t <= b)
    }
}

/// List filters; carried inside cursors so later pages apply the same ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Filters {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub updated: Option<Bounds>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created: Option<Bounds>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub activity: Option<Bounds>,
    /// Sorted ascending.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ids: Option<Vec<u64>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub candidate_ids: Option<Vec<u64>>,
}

impl Filters {
    pub fn matches(&self, row: &Row) -> bool {
        self.updated.as_ref().is_none_or(|b| b.matches(row.updated))
            && self.created.as_ref().is_none_or(|b| b.matches(row.created))
            && self
                .activity
                .as_ref()
                .is_none_or(|b| b.matches(row.activity))
            && self.candidate_ids.as_ref().is_none_or(|c| {
                row.candidate_id
                    .is_some_and(|x| c.binary_search(&x).is_ok())
            })
    }
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    pub tables: [BTreeMap<u64, Row>; 4],
    /// Records that exist but the credential cannot see (e.g. private candidates for a
    /// user without access): left out of every listing, refused (403) by id.
    pub hidden: std::collections::BTreeSet<(Entity, u64)>,
}

impl Store {
    pub fn from_data(data: &AtsData) -> Result<Store, StoreError> {
        let mut s = Store::default();
        for e in Entity::ALL {
            for json in data.records(e).json() {
                let (id, row) = Row::from_json(json)?;
                s.tables[e.index()].insert(id, row);
            }
        }
        Ok(s)
    }

    pub fn table(&self, e: Entity) -> &BTreeMap<u64, Row> {
        &self.tables[e.index()]
    }

    pub fn table_mut(&mut self, e: Entity) -> &mut BTreeMap<u64, Row> {
        &mut self.tables[e.index()]
    }

    /// One id-descending page strictly below `before`; `more` says whether another
    /// matching row exists after it.
    pub fn page_desc(
        &self,
        e: Entity,
        f: &Filters,
        before: u64,
        per_page: usize,
    ) -> (Vec<(u64, &Row)>, bool) {
        let t = self.table(e);
        let mut out = Vec::with_capacity(per_page.min(512));
        let mut more = false;
        let iter: Box<dyn Iterator<Item = (u64, &Row)> + '_> = match &f.ids {
            Some(ids) => Box::new(
                ids.iter()
                    .rev()
                    .filter(move |i| **i < before)
                    .filter_map(move |i| t.get(i).map(|r| (*i, r))),
            ),
            None => Box::new(t.range(..before).rev().map(|(i, r)| (*i, r))),
        };
        for (id, row) in iter {
            if !f.matches(row) || self.hidden.contains(&(e, id)) {
                continue;
            }
            if out.len() == per_page {
                more = true;
                break;
            }
            out.push((id, row));
        }
        (out, more)
    }

    pub fn get_value(&self, e: Entity, id: u64) -> Result<Value, StoreError> {
        self.table(e)
            .get(&id)
            .ok_or(StoreError::NotFound(e.as_str(), id))?
            .value()
    }

    pub fn put_value(&mut self, e: Entity, v: &Value) -> Result<u64, StoreError> {
        let (id, row) = Row::from_value(v)?;
        self.table_mut(e).insert(id, row);
        Ok(id)
    }

    /// Stores `v` as given while the `updated_at` filters see `listed_updated_ms`: a
    /// hostile ATS whose payload disagrees with its own index.
    pub fn put_value_listed_at(
        &mut self,
        e: Entity,
        v: &Value,
        listed_updated_ms: i64,
    ) -> Result<u64, StoreError> {
        let (id, mut row) = Row::from_value(v)?;
        row.updated = listed_updated_ms;
        self.table_mut(e).insert(id, row);
        Ok(id)
    }

    pub fn snapshot(&self, now: chrono::DateTime<chrono::Utc>, file_seed: u64) -> AtsData {
        let mut d = AtsData {
            now,
            file_seed,
            ..Default::default()
        };
        for e in Entity::ALL {
            let out = d.records_mut(e);
            for (id, row) in self.table(e) {
                if let Ok(json) = std::str::from_utf8(&row.json) {
                    out.push_json(*id, row.candidate_id, json.into());
                }
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store(n: u64) -> Store {
        let mut s = Store::default();
        for id in 1..=n {
            let v = json!({"id": id, "updated_at": format!("2026-01-01T00:00:{:02}.000Z", id % 60), "created_at": "2025-01-01T00:00:00Z"});
            s.put_value(Entity::Candidate, &v).ok();
        }
        s
    }

    #[test]
    fn pages_walk_ids_descending_and_report_more() {
        let s = store(10);
        let (p, more) = s.page_desc(Entity::Candidate, &Filters::default(), u64::MAX, 4);
        assert_eq!(p.iter().map(|x| x.0).collect::<Vec<_>>(), vec![10, 9, 8, 7]);
        assert!(more);
        let (p, more) = s.page_desc(Entity::Candidate, &Filters::default(), 3, 4);
        assert_eq!(p.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 1]);
        assert!(!more);
        let (_, more) = s.page_desc(Entity::Candidate, &Filters::default(), 5, 4);
        assert!(!more, "exactly per_page rows left means no next page");
    }

    #[test]
    fn bounds_apply_each_operator() {
        let b = Bounds {
            gt: Some(1),
            lte: Some(3),
            ..Default::default()
        };
        assert!(!b.matches(1) && b.matches(2) && b.matches(3) && !b.matches(4));
        let b = Bounds {
            gte: Some(1),
            lt: Some(3),
            ..Default::default()
        };
        assert!(b.matches(1) && !b.matches(3));
    }
}
