//! DynamoDB adapter of the record store (see the parent module for the key design and
//! the crash-safe write order).
//!
//! Items are mapped with `serde_dynamo`. A version's state (layers, markers, mode) and
//! view are stored as two JSON strings rather than nested DynamoDB maps: JSON keeps the
//! difference between absent and null, number spelling and member order exactly as
//! merged (a DynamoDB map round trip does not), and the record's content is only ever
//! read whole. The attributes the index and the operator need (`entity`, `ats_id`,
//! `version`, `changed_at`, `tombstone`, `cause`, `content_hash`) are top level.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, KeysAndAttributes, WriteRequest};
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    BATCH_GET_MAX, BATCH_WRITE_MAX, HEAD_SK, HistoryEntry, KeyPage, KeySummary, MAX_ITEM_BYTES,
    PageOutcome, RecordOutcome, RecordRead, RecordResult, RecordSweep, RecordWrite, RequestCount,
    SHARDS, StoreError, gsi1sk, parse_gsi1sk, shard_of,
};
use crate::domain::ids::{AtsId, EntityKind, RecordKey, TenantId};
use crate::domain::merge::{MergeReport, View};
use crate::domain::version::{Cause, Change, ContentHash, RecordState, Version, apply_in_run};

/// Name of the tenant index (infra/template.yaml).
pub const BY_TENANT_INDEX: &str = "by_tenant";
/// Attempts per record when its head keeps moving under concurrent writers.
const MAX_ATTEMPTS: u32 = 5;
/// Rounds of retrying unprocessed batch keys/items before giving up (retryable error).
const MAX_BATCH_ROUNDS: u32 = 8;
/// Records of a page written concurrently.
const WRITE_CONCURRENCY: usize = 8;

/// `R#{tenant}#{entity}#{ats_id}`.
pub fn record_pk(key: &RecordKey) -> String {
    format!("R#{}#{}#{}", key.tenant, key.entity, key.ats_id)
}

/// `V#{version:010}`: zero-padded so that sort order is version order.
pub fn version_sk(version: u64) -> String {
    format!("V#{version:010}")
}

/// `{tenant}#{shard:02}`.
pub fn gsi1pk(tenant: &TenantId, shard: u8) -> String {
    format!("{tenant}#{shard:02}")
}

/// Splits the sort keys of a record's items into BatchWriteItem-sized delete batches,
/// the head last, so that the record stays listed until everything else is gone.
pub fn delete_batches(mut sks: Vec<String>) -> Vec<Vec<String>> {
    sks.sort_by_key(|sk| sk == HEAD_SK);
    sks.chunks(BATCH_WRITE_MAX)
        .map(<[String]>::to_vec)
        .collect()
}

type Item = HashMap<String, AttributeValue>;

/// The stored form of a head or version item.
#[derive(Debug, Serialize, Deserialize)]
struct StoredItem {
    pk: String,
    sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi1sk: Option<String>,
    entity: EntityKind,
    ats_id: AtsId,
    version: u64,
    changed_at: DateTime<Utc>,
    tombstone: bool,
    cause: Cause,
    content_hash: ContentHash,
    state: String,
    view: String,
    /// The pull run that wrote the version (absent: not a pull run's write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
    /// Version items: the hash of the content this version was computed from (absent
    /// for a first version and for items written before amends existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base_hash: Option<ContentHash>,
    /// [`Version::amends`].
    #[serde(default, skip_serializing_if = "is_zero")]
    amends: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A head re-read after a conflict, with the base of a stale orphan above it.
struct Settled {
    head: Option<Version>,
    stale_above: Option<ContentHash>,
}

/// The index projection of a head item.
#[derive(Debug, Deserialize)]
struct IndexItem {
    entity: EntityKind,
    ats_id: AtsId,
    version: u64,
    changed_at: DateTime<Utc>,
    tombstone: bool,
}

/// Requests made by one operation, so that callers (and tests) see the cost of a page.
#[derive(Default)]
struct Counter {
    reads: AtomicU64,
    writes: AtomicU64,
}

impl Counter {
    fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }
    fn write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
    fn snapshot(&self) -> RequestCount {
        RequestCount {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
        }
    }
}

/// Whether a conditional write lost its race.
enum Put {
    Done,
    ConditionFailed,
}

/// The DynamoDB record store over the records table.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn key_item(pk: String, sk: String) -> Item {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(pk)),
            ("sk".to_owned(), AttributeValue::S(sk)),
        ])
    }

    /// The stored form of `v` as the record's head (`head = true`) or as its version
    /// item. Public for operator tools and for tests that simulate a crashed writer.
    pub fn encode_item(key: &RecordKey, v: &Version, head: bool) -> Result<Item, StoreError> {
        Self::to_item(key, v, head, None)
    }

    fn to_item(
        key: &RecordKey,
        v: &Version,
        head: bool,
        base: Option<&ContentHash>,
    ) -> Result<Item, StoreError> {
        let encode = |what: &str, r: serde_json::Result<String>| {
            r.map_err(|e| StoreError::Malformed {
                what: format!("{key} {what}"),
                message: e.to_string(),
            })
        };
        let state = encode("state", serde_json::to_string(&v.state))?;
        let view = encode("view", serde_json::to_string(&v.view))?;
        let bytes = state.len() + view.len() + 512;
        if bytes > MAX_ITEM_BYTES {
            return Err(StoreError::ItemTooLarge {
                key: key.to_string(),
                bytes,
                max: MAX_ITEM_BYTES,
            });
        }
        let stored = StoredItem {
            pk: record_pk(key),
            sk: if head {
                HEAD_SK.to_owned()
            } else {
                version_sk(v.version)
            },
            gsi1pk: head.then(|| gsi1pk(&key.tenant, shard_of(key.entity, &key.ats_id))),
            gsi1sk: head.then(|| gsi1sk(key.entity, &key.ats_id)),
            entity: key.entity,
            ats_id: key.ats_id.clone(),
            version: v.version,
            changed_at: v.valid_from,
            tombstone: v.view.deleted.is_some(),
            cause: v.cause,
            content_hash: v.content_hash,
            state,
            view,
            run_id: v.run.clone(),
            base_hash: base.copied(),
            amends: v.amends,
        };
        serde_dynamo::to_item(stored).map_err(|e| StoreError::Malformed {
            what: key.to_string(),
            message: e.to_string(),
        })
    }

    fn from_item(item: Item) -> Result<Version, StoreError> {
        let stored: StoredItem =
            serde_dynamo::from_item(item).map_err(|e| StoreError::Malformed {
                what: "record item".into(),
                message: e.to_string(),
            })?;
        let what = || format!("{} {}", stored.pk, stored.sk);
        let state: RecordState =
            serde_json::from_str(&stored.state).map_err(|e| StoreError::Malformed {
                what: what(),
                message: e.to_string(),
            })?;
        let view: View = serde_json::from_str(&stored.view).map_err(|e| StoreError::Malformed {
            what: what(),
            message: e.to_string(),
        })?;
        Ok(Version {
            version: stored.version,
            cause: stored.cause,
            valid_from: stored.changed_at,
            content_hash: stored.content_hash,
            state,
            view,
            run: stored.run_id,
            amends: stored.amends,
        })
    }

    async fn get_item(
        &self,
        pk: String,
        sk: String,
        n: &Counter,
    ) -> Result<Option<Version>, StoreError> {
        self.get_raw(pk, sk, n)
            .await?
            .map(Self::from_item)
            .transpose()
    }

    /// One item as stored (consistent read).
    async fn get_raw(
        &self,
        pk: String,
        sk: String,
        n: &Counter,
    ) -> Result<Option<Item>, StoreError> {
        n.read();
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key_item(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item)
    }

    /// Puts an item under a condition; a failed condition is an outcome, not an error.
    async fn put_conditional(
        &self,
        item: Item,
        condition: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
        n: &Counter,
    ) -> Result<Put, StoreError> {
        n.write();
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition);
        for (k, v) in names {
            req = req.expression_attribute_names(*k, *v);
        }
        for (k, v) in values {
            req = req.expression_attribute_values(k, v);
        }
        match req.send().await {
            Ok(_) => Ok(Put::Done),
            Err(e) if crate::dynamo::is_conditional(&e) => Ok(Put::ConditionFailed),
            Err(e) => Err(sdk_error("PutItem", e)),
        }
    }

    /// Moves the head from `expected` (None: no head yet) to `to`, conditioned on the
    /// head still holding `expected`'s number *and* content (an amend keeps the number).
    async fn put_head(
        &self,
        key: &RecordKey,
        to: &Version,
        expected: Option<&Version>,
        n: &Counter,
    ) -> Result<Put, StoreError> {
        let item = Self::to_item(key, to, true, None)?;
        match expected {
            None => {
                self.put_conditional(item, "attribute_not_exists(pk)", &[], vec![], n)
                    .await
            }
            Some(h) => {
                self.put_conditional(
                    item,
                    "#v = :v AND #h = :h",
                    &[("#v", "version"), ("#h", "content_hash")],
                    vec![
                        (":v", AttributeValue::N(h.version.to_string())),
                        (":h", AttributeValue::S(h.content_hash.to_string())),
                    ],
                    n,
                )
                .await
            }
        }
    }

    /// A version item with the hash of the content it was computed from.
    async fn get_version_item(
        &self,
        key: &RecordKey,
        version: u64,
        n: &Counter,
    ) -> Result<Option<(Version, Option<ContentHash>)>, StoreError> {
        let Some(item) = self.get_raw(record_pk(key), version_sk(version), n).await? else {
            return Ok(None);
        };
        let base =
            match item.get("base_hash") {
                Some(AttributeValue::S(s)) => Some(ContentHash::try_from(s.clone()).map_err(
                    |e| StoreError::Malformed {
                        what: format!("{key} base_hash"),
                        message: e.to_string(),
                    },
                )?),
                _ => None,
            };
        Ok(Some((Self::from_item(item)?, base)))
    }

    /// Reads the head and rolls it forward over orphan versions a crashed writer left
    /// behind (versions written whose head update never happened). An orphan computed
    /// from content the head no longer has (the head was amended since) is never
    /// committed: its base is returned as stale, and the next writer replaces it.
    async fn settle_head(&self, key: &RecordKey, n: &Counter) -> Result<Settled, StoreError> {
        let pk = record_pk(key);
        let mut head = self.get_item(pk.clone(), HEAD_SK.to_owned(), n).await?;
        // Bounded: each round either advances the head by one version or re-reads it.
        for _ in 0..64 {
            let next = head.as_ref().map_or(1, |h| h.version + 1);
            let Some((orphan, base)) = self.get_version_item(key, next, n).await? else {
                return Ok(Settled {
                    head,
                    stale_above: None,
                });
            };
            if let (Some(b), Some(h)) = (&base, &head)
                && *b != h.content_hash
            {
                return Ok(Settled {
                    head,
                    stale_above: base,
                });
            }
            tracing::info!(record = %key, version = next, "rolling head forward onto orphan version");
            match self.put_head(key, &orphan, head.as_ref(), n).await? {
                Put::Done => head = Some(orphan),
                Put::ConditionFailed => {
                    head = self.get_item(pk.clone(), HEAD_SK.to_owned(), n).await?
                }
            }
        }
        Err(StoreError::Contention {
            key: key.to_string(),
            attempts: 64,
        })
    }

    /// Applies a record's changes on top of `head` and writes the resulting versions,
    /// retrying on conflicts with concurrent (or crashed) writers. A writer of a pull run
    /// (`run`) amends the version its own run wrote instead of following it
    /// ([`apply_in_run`]), so that one run writes at most one version per record.
    async fn write_record(
        &self,
        key: &RecordKey,
        changes: &[Change],
        mut head: Option<Version>,
        now: DateTime<Utc>,
        run: Option<&str>,
        n: &Counter,
    ) -> Result<RecordOutcome, StoreError> {
        let initial = head.as_ref().map(|h| h.version);
        // The base of a stale orphan above the head, once a re-read has found one.
        let mut stale_above: Option<ContentHash> = None;
        // The newest version item this call managed to put, with its report: if a
        // concurrent writer then rolled the head onto it, it is committed and ours.
        let mut ours: Option<(u64, MergeReport)> = None;
        let committed = |from: Option<u64>, to: u64, report: MergeReport| match from {
            None => RecordOutcome::Created {
                version: to,
                report,
            },
            Some(from) => RecordOutcome::Updated { from, to, report },
        };
        for attempt in 1..=MAX_ATTEMPTS {
            // New versions above the head, and the head's version amended by this run.
            let mut pending: Vec<Version> = Vec::new();
            let mut amended: Option<Version> = None;
            let mut report = MergeReport::default();
            for change in changes {
                let base = pending.last().or(amended.as_ref()).or(head.as_ref());
                let Some(next) = apply_in_run(base, change, now, run)? else {
                    continue;
                };
                let amends = base.is_some_and(|b| b.version == next.version.version);
                report.backfilled.extend(next.report.backfilled);
                report.corrected.extend(next.report.corrected);
                report.push_newer_kept.extend(next.report.push_newer_kept);
                match pending.last_mut() {
                    Some(last) if amends => *last = next.version,
                    None if amends => amended = Some(next.version),
                    _ => pending.push(next.version),
                }
            }
            if pending.is_empty() && amended.is_none() {
                let current = head.as_ref().map(|h| h.version);
                return Ok(match ours {
                    Some((to, report)) if current.is_some_and(|c| c >= to) => {
                        committed(initial, to, report)
                    }
                    _ => RecordOutcome::Unchanged { version: current },
                });
            }
            let mut done = true;
            if let Some(a) = &amended {
                let Some(h) = head.as_ref() else {
                    return Err(StoreError::Malformed {
                        what: key.to_string(),
                        message: "an amend without a head".into(),
                    });
                };
                done = matches!(self.amend(key, h, a, n).await?, Put::Done);
                if done {
                    ours = Some((a.version, report.clone()));
                }
            }
            if done && !pending.is_empty() {
                let base = amended.as_ref().or(head.as_ref());
                let stale = if amended.is_some() {
                    None
                } else {
                    stale_above.as_ref()
                };
                let (all, written) = self.write_versions(key, base, &pending, stale, n).await?;
                if let Some(last) = written.checked_sub(1).and_then(|i| pending.get(i)) {
                    ours = Some((last.version, report.clone()));
                }
                done = all;
            }
            if done {
                let to = pending.last().or(amended.as_ref()).map_or(0, |v| v.version);
                // `from` is the head this attempt built on (after any orphan repair).
                return Ok(committed(head.as_ref().map(|h| h.version), to, report));
            }
            // Someone else moved first (or crashed midway): back off, re-read, redo.
            let pause = {
                let mut rng = rand::rng();
                rng.random_range(5..25u64) * u64::from(attempt)
            };
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let settled = self.settle_head(key, n).await?;
            head = settled.head;
            stale_above = settled.stale_above;
        }
        Err(StoreError::Contention {
            key: key.to_string(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Version items first (never overwriting a live one), then the head, conditioned on
    /// the version and content the change was computed from (`base`). Each version item
    /// records the hash of the content it follows, so that an orphan left above a head
    /// that was amended since is recognised as stale; `stale` is such an orphan's base,
    /// found by a re-read: the slot above the head may then be replaced. Returns whether
    /// everything was written and how many version items were put.
    async fn write_versions(
        &self,
        key: &RecordKey,
        base: Option<&Version>,
        pending: &[Version],
        stale: Option<&ContentHash>,
        n: &Counter,
    ) -> Result<(bool, usize), StoreError> {
        let mut below = base;
        for (i, v) in pending.iter().enumerate() {
            let item = Self::to_item(key, v, false, below.map(|b| &b.content_hash))?;
            let put = match stale.filter(|_| i == 0) {
                None => {
                    self.put_conditional(item, "attribute_not_exists(pk)", &[], vec![], n)
                        .await?
                }
                Some(s) => {
                    self.put_conditional(
                        item,
                        "attribute_not_exists(pk) OR #b = :b",
                        &[("#b", "base_hash")],
                        vec![(":b", AttributeValue::S(s.to_string()))],
                        n,
                    )
                    .await?
                }
            };
            if let Put::ConditionFailed = put {
                return Ok((false, i));
            }
            crate::crash::point("store.after_version_put");
            below = Some(v);
        }
        let Some(last) = pending.last() else {
            return Ok((true, 0));
        };
        let moved = self.put_head(key, last, base, n).await?;
        crate::crash::point("store.after_head_update");
        Ok((matches!(moved, Put::Done), pending.len()))
    }

    /// Amends the head's version `head` (written by the same pull run) to `to` (same
    /// number and `valid_from`, new content), with single-item conditional writes (D23):
    /// the head first, conditioned on still holding `head`'s number, content and run —
    /// the commit — then the version item's copy, which never replaces a newer amend.
    /// An orphan above the head built on its current content (a crashed writer's) is
    /// committed and followed instead (`ConditionFailed`: the caller re-reads). A writer
    /// that built on the content being replaced fails its head condition and redoes.
    async fn amend(
        &self,
        key: &RecordKey,
        head: &Version,
        to: &Version,
        n: &Counter,
    ) -> Result<Put, StoreError> {
        let Some(run) = to.run.as_deref().filter(|_| to.version == head.version) else {
            return Err(StoreError::Malformed {
                what: key.to_string(),
                message: "an amend must keep the version number and name its run".into(),
            });
        };
        if let Some((_, base)) = self.get_version_item(key, head.version + 1, n).await?
            && base.is_none_or(|b| b == head.content_hash)
        {
            return Ok(Put::ConditionFailed);
        }
        let moved = self
            .put_conditional(
                Self::to_item(key, to, true, None)?,
                "#v = :v AND #h = :h AND #r = :r",
                &[("#v", "version"), ("#h", "content_hash"), ("#r", "run_id")],
                vec![
                    (":v", AttributeValue::N(head.version.to_string())),
                    (":h", AttributeValue::S(head.content_hash.to_string())),
                    (":r", AttributeValue::S(run.to_owned())),
                ],
                n,
            )
            .await?;
        if let Put::ConditionFailed = moved {
            return Ok(moved);
        }
        crate::crash::point("store.after_amend");
        // The copy: lost only if this invocation dies right here (the head holds the
        // content; history reads the head for its own version).
        self.put_conditional(
            Self::to_item(key, to, false, None)?,
            "#r = :r AND (attribute_not_exists(#a) OR #a < :a)",
            &[("#r", "run_id"), ("#a", "amends")],
            vec![
                (":r", AttributeValue::S(run.to_owned())),
                (":a", AttributeValue::N(to.amends.to_string())),
            ],
            n,
        )
        .await?;
        Ok(Put::Done)
    }

    /// Consistent batch read of heads, 100 keys per request.
    async fn batch_get_heads(
        &self,
        keys: &[RecordKey],
        n: &Counter,
    ) -> Result<HashMap<String, Version>, StoreError> {
        let items = self
            .batch_get(
                keys.iter()
                    .map(|k| (record_pk(k), HEAD_SK.to_owned()))
                    .collect(),
                None,
                n,
            )
            .await?;
        let mut heads = HashMap::with_capacity(items.len());
        for (pk, item) in items {
            heads.insert(pk, Self::from_item(item)?);
        }
        Ok(heads)
    }

    /// Consistent batch read of `(pk, sk)` items with distinct pks, 100 keys per request,
    /// retrying unprocessed keys. Returns the items found, by pk; `projection` (an
    /// expression and its attribute name aliases) narrows what is read.
    async fn batch_get(
        &self,
        keys: Vec<(String, String)>,
        projection: Option<(&str, &[(&str, &str)])>,
        n: &Counter,
    ) -> Result<HashMap<String, Item>, StoreError> {
        let mut found = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut pending: Vec<Item> = chunk
                .iter()
                .map(|(pk, sk)| Self::key_item(pk.clone(), sk.clone()))
                .collect();
            let mut round = 0;
            while !pending.is_empty() {
                round += 1;
                if round > MAX_BATCH_ROUNDS {
                    return Err(StoreError::Dynamo {
                        op: "BatchGetItem",
                        message: format!(
                            "{} keys still unprocessed after {MAX_BATCH_ROUNDS} rounds",
                            pending.len()
                        ),
                        retryable: true,
                    });
                }
                if round > 1 {
                    tokio::time::sleep(backoff(round)).await;
                }
                let mut request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true);
                if let Some((expression, names)) = projection {
                    request = request.projection_expression(expression);
                    for (alias, name) in names {
                        request = request.expression_attribute_names(*alias, *name);
                    }
                }
                let request = request
                    .build()
                    .map_err(|e| build_error("BatchGetItem", e))?;
                n.read();
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchGetItem", e))?;
                if let Some(items) = out.responses().and_then(|r| r.get(&self.table)) {
                    for item in items {
                        if let Some(AttributeValue::S(pk)) = item.get("pk") {
                            found.insert(pk.clone(), item.clone());
                        }
                    }
                }
                if let Some(left) = out.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                    pending = left.keys().to_vec();
                }
            }
        }
        Ok(found)
    }

    /// The highest version item of each record (0: no item), read without a query: the
    /// head names its version, and versions above it (orphans a crashed writer left,
    /// always contiguous) are probed one number at a time for the records that have them.
    async fn top_versions(&self, keys: &[RecordKey], n: &Counter) -> Result<Vec<u64>, StoreError> {
        let pks: Vec<String> = keys.iter().map(record_pk).collect();
        let version_of = |item: &Item| match item.get("version") {
            Some(AttributeValue::N(v)) => v.parse::<u64>().ok(),
            _ => None,
        };
        let heads = self
            .batch_get(
                pks.iter()
                    .map(|pk| (pk.clone(), HEAD_SK.to_owned()))
                    .collect(),
                Some(("pk, #v", &[("#v", "version")])),
                n,
            )
            .await?;
        let mut top = Vec::with_capacity(keys.len());
        for (key, pk) in keys.iter().zip(&pks) {
            top.push(match heads.get(pk) {
                None => 0,
                Some(item) => version_of(item).ok_or_else(|| StoreError::Malformed {
                    what: format!("{key} head"),
                    message: "no numeric version".into(),
                })?,
            });
        }
        // Records without a head are not probed: the index that listed them lists heads.
        let mut probing: Vec<usize> = (0..keys.len()).filter(|&i| top[i] > 0).collect();
        for _ in 0..64 {
            if probing.is_empty() {
                return Ok(top);
            }
            let found = self
                .batch_get(
                    probing
                        .iter()
                        .map(|&i| (pks[i].clone(), version_sk(top[i] + 1)))
                        .collect(),
                    Some(("pk", &[])),
                    n,
                )
                .await?;
            probing.retain(|&i| found.contains_key(&pks[i]));
            for &i in &probing {
                top[i] += 1;
            }
        }
        Err(StoreError::Contention {
            key: format!("{} records above their head", probing.len()),
            attempts: 64,
        })
    }

    /// Deletes `V#1..=V#top` and then the head of one record, 25 items per request.
    async fn delete_items(&self, key: &RecordKey, top: u64, n: &Counter) -> Result<(), StoreError> {
        let pk = record_pk(key);
        let sks = (1..=top)
            .map(version_sk)
            .chain([HEAD_SK.to_owned()])
            .collect();
        for batch in delete_batches(sks) {
            let mut pending = batch
                .into_iter()
                .map(|sk| {
                    DeleteRequest::builder()
                        .set_key(Some(Self::key_item(pk.clone(), sk)))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|e| build_error("BatchWriteItem", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut round = 0;
            while !pending.is_empty() {
                round += 1;
                if round > MAX_BATCH_ROUNDS {
                    return Err(StoreError::Dynamo {
                        op: "BatchWriteItem",
                        message: format!(
                            "{} deletes still unprocessed after {MAX_BATCH_ROUNDS} rounds",
                            pending.len()
                        ),
                        retryable: true,
                    });
                }
                if round > 1 {
                    tokio::time::sleep(backoff(round)).await;
                }
                n.write();
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, std::mem::take(&mut pending))
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchWriteItem", e))?;
                crate::crash::point("store.after_delete_batch");
                if let Some(left) = out.unprocessed_items().and_then(|u| u.get(&self.table)) {
                    pending = left.clone();
                }
            }
        }
        Ok(())
    }

    /// Sort keys and versions of every item under a record's pk (`(sk, version)`).
    async fn item_index(
        &self,
        key: &RecordKey,
        n: &Counter,
    ) -> Result<Vec<(String, u64, Option<DateTime<Utc>>)>, StoreError> {
        #[derive(Deserialize)]
        struct Row {
            sk: String,
            version: u64,
            changed_at: Option<DateTime<Utc>>,
        }
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            n.read();
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(record_pk(key)))
                .projection_expression("sk, #v, changed_at")
                .expression_attribute_names("#v", "version")
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in page.items() {
                let row: Row =
                    serde_dynamo::from_item(item.clone()).map_err(|e| StoreError::Malformed {
                        what: key.to_string(),
                        message: e.to_string(),
                    })?;
                out.push((row.sk, row.version, row.changed_at));
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }
}

fn backoff(round: u32) -> Duration {
    let jitter = rand::rng().random_range(0..20u64);
    Duration::from_millis(25 * u64::from(round) + jitter)
}

fn build_error(op: &'static str, e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Dynamo {
        op,
        message: e.to_string(),
        retryable: false,
    }
}

/// Maps an SDK error; throttling, server errors and transport failures are retryable.
fn sdk_error<E, R>(op: &'static str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let retryable = match &e {
        SdkError::ServiceError(s) => matches!(
            s.err().code(),
            Some(
                "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable"
                    | "TransactionConflictException"
                    | "TransactionInProgressException"
            )
        ),
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    };
    StoreError::Dynamo {
        op,
        message: DisplayErrorContext(&e).to_string(),
        retryable,
    }
}

#[async_trait]
impl RecordRead for DynamoStore {
    async fn get(&self, key: &RecordKey) -> Result<Option<Version>, StoreError> {
        self.get_item(record_pk(key), HEAD_SK.to_owned(), &Counter::default())
            .await
    }

    async fn history(&self, key: &RecordKey) -> Result<Vec<HistoryEntry>, StoreError> {
        let n = Counter::default();
        let pk = record_pk(key);
        let mut versions = Vec::new();
        let mut start: Option<Item> = None;
        let mut head: Option<Version> = None;
        loop {
            n.read();
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in page.items() {
                let is_head =
                    matches!(item.get("sk"), Some(AttributeValue::S(sk)) if sk == HEAD_SK);
                let v = Self::from_item(item.clone())?;
                if is_head {
                    head = Some(v);
                } else {
                    versions.push(v);
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        // Versions above the head are orphans of a crashed writer: not committed yet. The
        // head is the commit of its own version: an amend whose copy was lost to a crash
        // is read from it.
        let head_version = head.as_ref().map_or(0, |h| h.version);
        versions.retain(|v| v.version < head_version);
        versions.extend(head);
        versions.sort_by_key(|v| v.version);
        let valid_to: Vec<Option<DateTime<Utc>>> = versions
            .iter()
            .skip(1)
            .map(|v| Some(v.valid_from))
            .chain([None])
            .collect();
        Ok(versions
            .into_iter()
            .zip(valid_to)
            .map(|(version, valid_to)| HistoryEntry { version, valid_to })
            .collect())
    }

    async fn as_of(
        &self,
        key: &RecordKey,
        t: DateTime<Utc>,
    ) -> Result<Option<Version>, StoreError> {
        let n = Counter::default();
        let rows = self.item_index(key, &n).await?;
        let head = rows
            .iter()
            .find(|(sk, _, _)| sk == HEAD_SK)
            .map(|(_, v, _)| *v);
        let Some(head) = head else {
            return Ok(None);
        };
        let valid = rows
            .iter()
            .filter(|(sk, v, from)| sk != HEAD_SK && *v <= head && from.is_some_and(|f| f <= t))
            .map(|(_, v, _)| *v)
            .max();
        match valid {
            None => Ok(None),
            Some(v) if v == head => self.get_item(record_pk(key), HEAD_SK.to_owned(), &n).await,
            Some(v) => self.get_item(record_pk(key), version_sk(v), &n).await,
        }
    }
}

#[async_trait]
impl RecordWrite for DynamoStore {
    async fn apply_page(
        &self,
        tenant: &TenantId,
        changes: Vec<Change>,
        now: DateTime<Utc>,
    ) -> Result<PageOutcome, StoreError> {
        self.apply_changes(tenant, changes, now, None).await
    }

    async fn apply_run_page(
        &self,
        tenant: &TenantId,
        run_id: &str,
        changes: Vec<Change>,
        now: DateTime<Utc>,
    ) -> Result<PageOutcome, StoreError> {
        self.apply_changes(tenant, changes, now, Some(run_id)).await
    }
}

impl DynamoStore {
    /// [`RecordWrite::apply_page`], as a writer of the pull run `run` when given.
    async fn apply_changes(
        &self,
        tenant: &TenantId,
        changes: Vec<Change>,
        now: DateTime<Utc>,
        run: Option<&str>,
    ) -> Result<PageOutcome, StoreError> {
        let n = Counter::default();
        // Group by record, keeping the order of first appearance and of changes.
        let mut order: HashMap<(EntityKind, AtsId), usize> = HashMap::new();
        let mut groups: Vec<(RecordKey, Vec<Change>)> = Vec::new();
        for change in changes {
            let id = (change.entity(), change.ats_id().clone());
            match order.get(&id) {
                Some(&i) => groups[i].1.push(change),
                None => {
                    order.insert(id.clone(), groups.len());
                    groups.push((RecordKey::new(tenant.clone(), id.0, id.1), vec![change]));
                }
            }
        }
        let keys: Vec<RecordKey> = groups.iter().map(|(k, _)| k.clone()).collect();
        let heads = self.batch_get_heads(&keys, &n).await?;

        let heads = &heads;
        let n_ref = &n;
        let mut results: Vec<(usize, RecordResult)> = stream::iter(groups.into_iter().enumerate())
            .map(|(i, (key, changes))| async move {
                let head = heads.get(&record_pk(&key)).cloned();
                let outcome = match self
                    .write_record(&key, &changes, head, now, run, n_ref)
                    .await
                {
                    Ok(o) => o,
                    Err(e) if e.is_retryable() => RecordOutcome::Failed {
                        error: e.to_string(),
                    },
                    Err(e) => RecordOutcome::Rejected {
                        error: e.to_string(),
                    },
                };
                (
                    i,
                    RecordResult {
                        entity: key.entity,
                        ats_id: key.ats_id,
                        outcome,
                    },
                )
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        results.sort_by_key(|(i, _)| *i);

        let mut outcome = PageOutcome::default();
        for (_, r) in results {
            let report = match &r.outcome {
                RecordOutcome::Created { version, report } => {
                    outcome.created += 1;
                    outcome.versions_written += *version as usize;
                    Some(report)
                }
                RecordOutcome::Updated { from, to, report } => {
                    outcome.updated += 1;
                    outcome.versions_written += (to - from) as usize;
                    Some(report)
                }
                RecordOutcome::Unchanged { .. } => {
                    outcome.unchanged += 1;
                    None
                }
                RecordOutcome::Rejected { .. } => {
                    outcome.rejected += 1;
                    None
                }
                RecordOutcome::Failed { .. } => {
                    outcome.failed += 1;
                    None
                }
            };
            if let Some(report) = report {
                outcome.backfilled += report.backfilled.len();
                outcome.corrected += report.corrected.len();
                outcome.push_newer_kept += report.push_newer_kept.len();
            }
            outcome.records.push(r);
        }
        outcome.requests = n.snapshot();
        Ok(outcome)
    }
}

#[async_trait]
impl RecordSweep for DynamoStore {
    async fn list_keys(
        &self,
        tenant: &TenantId,
        shard: u8,
        start: Option<&str>,
        limit: u32,
    ) -> Result<KeyPage, StoreError> {
        if shard >= SHARDS {
            return Err(StoreError::Shard(shard));
        }
        let partition = gsi1pk(tenant, shard);
        // The cursor is the last gsi1sk; the rest of the start key is derived from it,
        // inside this tenant's key space, so a cursor cannot reach another tenant.
        let exclusive_start = match start {
            None => None,
            Some(cursor) => {
                let (entity, ats_id) =
                    parse_gsi1sk(cursor).ok_or_else(|| StoreError::Malformed {
                        what: "list cursor".into(),
                        message: "expected {entity}#{ats_id}".into(),
                    })?;
                let key = RecordKey::new(tenant.clone(), entity, ats_id);
                let mut item = Self::key_item(record_pk(&key), HEAD_SK.to_owned());
                item.insert("gsi1pk".into(), AttributeValue::S(partition.clone()));
                item.insert("gsi1sk".into(), AttributeValue::S(cursor.to_owned()));
                Some(item)
            }
        };
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_TENANT_INDEX)
            .key_condition_expression("gsi1pk = :p")
            .expression_attribute_values(":p", AttributeValue::S(partition))
            .set_exclusive_start_key(exclusive_start)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        let mut keys = Vec::with_capacity(page.items().len());
        for item in page.items() {
            let row: IndexItem =
                serde_dynamo::from_item(item.clone()).map_err(|e| StoreError::Malformed {
                    what: "index item".into(),
                    message: e.to_string(),
                })?;
            keys.push(KeySummary {
                entity: row.entity,
                ats_id: row.ats_id,
                version: row.version,
                changed_at: row.changed_at,
                tombstone: row.tombstone,
            });
        }
        let next = match page.last_evaluated_key().and_then(|k| k.get("gsi1sk")) {
            Some(AttributeValue::S(s)) => Some(s.clone()),
            _ => None,
        };
        Ok(KeyPage { keys, next })
    }

    async fn delete_all_items(
        &self,
        keys: &[RecordKey],
        concurrency: usize,
    ) -> Result<Vec<usize>, StoreError> {
        let n = Counter::default();
        let top = self.top_versions(keys, &n).await?;
        // Owned keys: a stream over borrowed ones makes the future unprovably `Send` for
        // spawned callers (a known compiler limitation).
        let present: Vec<(RecordKey, u64)> = keys
            .iter()
            .zip(&top)
            .filter(|(_, t)| **t > 0)
            .map(|(k, t)| (k.clone(), *t))
            .collect();
        let n = &n;
        let results: Vec<Result<(), StoreError>> = stream::iter(present)
            .map(|(key, top)| async move { self.delete_items(&key, top, n).await })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        // The items that existed: the versions up to the top and the head.
        Ok(top
            .iter()
            .map(|&t| if t == 0 { 0 } else { t as usize + 1 })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let key = RecordKey::new(
            TenantId::parse("acme").unwrap(),
            EntityKind::Candidate,
            AtsId::parse("42").unwrap(),
        );
        assert_eq!(record_pk(&key), "R#acme#candidate#42");
        assert_eq!(version_sk(7), "V#0000000007");
        assert!(version_sk(9) < version_sk(10));
        assert_eq!(gsi1pk(&key.tenant, 3), "acme#03");
    }

    #[test]
    fn delete_batches_hold_at_most_25_and_put_the_head_last() {
        let mut sks: Vec<String> = (1..=60).map(version_sk).collect();
        sks.insert(10, HEAD_SK.to_owned());
        let batches = delete_batches(sks);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![25, 25, 11]);
        assert_eq!(batches.last().unwrap().last().unwrap(), HEAD_SK);
        assert_eq!(batches.iter().flatten().count(), 61);
        assert!(delete_batches(Vec::new()).is_empty());
    }
}
