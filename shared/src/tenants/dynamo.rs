//! The tenant registry on DynamoDB (the tenants table of `infra/template.yaml`).
//!
//! Items under `pk = T#{tenant}`: `CONFIG` (configuration, state, epoch, schedule, pull
//! lease, active run), `STREAM#{stream}`, `RUN#{started}#{run}#{stream}`,
//! `QUARANTINE#{at}#{id}`, `LEASE#push#{id}`. Receipts live under `RECEIPT#{tenant}` so
//! that deleting every `T#{tenant}` item leaves them. `next_run_at` exists only while a
//! tenant is schedulable, which keeps the `due` index sparse.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use async_trait::async_trait;

use super::model::*;
use super::ports::*;
use crate::domain::ids::TenantId;

fn ddb_err<E>(e: aws_sdk_dynamodb::error::SdkError<E>) -> RegistryError
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
{
    RegistryError::Dynamo(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
}

use crate::dynamo::is_conditional;

/// Whether a conditional write was applied: `false` when its condition did not hold.
fn applied<T, E>(
    res: Result<T, aws_sdk_dynamodb::error::SdkError<E>>,
) -> Result<bool, RegistryError>
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
{
    match res {
        Ok(_) => Ok(true),
        Err(e) if is_conditional(&e) => Ok(false),
        Err(e) => Err(ddb_err(e)),
    }
}

/// A value as a table item (its key added by the caller).
fn to_item<T: Serialize>(v: &T) -> Result<HashMap<String, AttributeValue>, RegistryError> {
    serde_dynamo::to_item(v).map_err(|e| RegistryError::Malformed(e.to_string()))
}

/// A table item as a value; a shape that does not decode is `Malformed`.
fn from_item<T: serde::de::DeserializeOwned>(
    item: HashMap<String, AttributeValue>,
) -> Result<T, RegistryError> {
    serde_dynamo::from_item(item).map_err(|e| RegistryError::Malformed(e.to_string()))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn tenant_pk(t: &TenantId) -> String {
    format!("T#{t}")
}

const CONFIG: &str = "CONFIG";

#[derive(Debug, Deserialize)]
struct ConfigItem {
    #[serde(flatten)]
    config: TenantConfig,
    #[serde(default)]
    next_run_at: Option<DateTime<Utc>>,
    #[serde(default)]
    lease_owner: Option<String>,
    #[serde(default)]
    lease_epoch: Option<u64>,
    #[serde(default)]
    lease_until: Option<DateTime<Utc>>,
    #[serde(default)]
    active_run_id: Option<String>,
    #[serde(default)]
    run_started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pending_streams: Option<BTreeSet<String>>,
}

#[derive(Clone)]
pub struct TenantRegistry {
    client: Client,
    table: String,
}

impl TenantRegistry {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn key(&self, tenant: &TenantId, sk: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_string(), s(tenant_pk(tenant))),
            ("sk".to_string(), s(sk)),
        ])
    }

    /// Writes `value` as the tenant's row `sk` (unconditionally: rows of runs, stream
    /// states and quarantine entries have one writer, the tenant's lease holder).
    async fn put_row<T: Serialize>(
        &self,
        tenant: &TenantId,
        sk: &str,
        value: &T,
    ) -> Result<(), RegistryError> {
        let mut item = to_item(value)?;
        item.extend(self.key(tenant, sk));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(ddb_err)?;
        Ok(())
    }

    async fn query_prefix(
        &self,
        tenant: &TenantId,
        prefix: &str,
        descending: bool,
        limit: Option<i32>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, RegistryError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", s(tenant_pk(tenant)));
            // DynamoDB rejects an empty key value: no prefix means the whole partition.
            query = if prefix.is_empty() {
                query.key_condition_expression("pk = :pk")
            } else {
                query
                    .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                    .expression_attribute_values(":p", s(prefix))
            };
            let page = query
                .scan_index_forward(!descending)
                .consistent_read(true)
                .set_limit(limit)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(ddb_err)?;
            out.extend(page.items().iter().cloned());
            start = page.last_evaluated_key;
            if start.is_none() || limit.is_some_and(|l| out.len() >= l as usize) {
                break;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl TenantLifecycle for TenantRegistry {
    async fn get(&self, tenant: &TenantId) -> Result<Option<TenantRecord>, RegistryError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(tenant, CONFIG)))
            .consistent_read(true)
            .send()
            .await
            .map_err(ddb_err)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let c: ConfigItem = from_item(item)?;
        let lease = match (c.lease_owner, c.lease_epoch, c.lease_until) {
            (Some(owner), Some(epoch), Some(until)) => Some(Lease {
                owner,
                epoch,
                until,
            }),
            _ => None,
        };
        let active_run = match (c.active_run_id, c.run_started_at) {
            (Some(run_id), Some(started_at)) => c.pending_streams.map(|pending| ActiveRun {
                run_id,
                started_at,
                pending,
            }),
            _ => None,
        };
        Ok(Some(TenantRecord {
            config: c.config,
            next_run_at: c.next_run_at,
            lease,
            active_run,
        }))
    }

    async fn require(&self, tenant: &TenantId) -> Result<TenantRecord, RegistryError> {
        self.get(tenant)
            .await?
            .ok_or_else(|| RegistryError::UnknownTenant(tenant.to_string()))
    }

    async fn enable(
        &self,
        mut cfg: TenantConfig,
        now: DateTime<Utc>,
    ) -> Result<TenantConfig, RegistryError> {
        let existing = self.get(&cfg.tenant_id).await?;
        let prev_epoch = existing.as_ref().map(|r| r.config.epoch);
        if let Some(r) = &existing {
            if r.config.state == TenantState::Deleting {
                return Err(RegistryError::Conflict {
                    tenant: cfg.tenant_id.to_string(),
                    detail: "a deletion is in progress; enable it again after it completes".into(),
                });
            }
            cfg.created_at = r.config.created_at;
            cfg.last_reconcile_at = r.config.last_reconcile_at;
        }
        cfg.state = TenantState::Enabled;
        cfg.state_reason = None;
        cfg.epoch = prev_epoch.map_or_else(|| first_epoch(now), |e| e + 1);
        cfg.updated_at = now;
        let mut item: HashMap<String, AttributeValue> = to_item(&cfg)?;
        item.extend(self.key(&cfg.tenant_id, CONFIG));
        item.insert("due_shard".into(), s(due_shard(&cfg.tenant_id)));
        item.insert("next_run_at".into(), s(key_time(now)));
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        req = match prev_epoch {
            Some(e) => req
                .condition_expression("epoch = :e")
                .expression_attribute_values(":e", n(e)),
            None => req.condition_expression("attribute_not_exists(pk)"),
        };
        req.send().await.map_err(|e| {
            if is_conditional(&e) {
                RegistryError::Conflict {
                    tenant: cfg.tenant_id.to_string(),
                    detail: "changed concurrently; retry".into(),
                }
            } else {
                ddb_err(e)
            }
        })?;
        Ok(cfg)
    }

    async fn set_state(
        &self,
        tenant: &TenantId,
        state: TenantState,
        bump_epoch: bool,
        reason: Option<&str>,
        schedule: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<u64, RegistryError> {
        let mut set = vec!["#st = :st", "updated_at = :now"];
        let mut remove = vec![];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(tenant, CONFIG)))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":st", s(snake(&state)))
            .expression_attribute_values(":now", s(key_time(now)));
        if bump_epoch {
            set.push("epoch = epoch + :one");
            req = req.expression_attribute_values(":one", n(1));
        }
        match reason {
            Some(r) => {
                set.push("state_reason = :r");
                req = req.expression_attribute_values(":r", s(r));
            }
            None => remove.push("state_reason"),
        }
        match schedule {
            Some(t) => {
                set.push("next_run_at = :next");
                req = req.expression_attribute_values(":next", s(key_time(t)));
            }
            None => remove.push("next_run_at"),
        }
        let mut expr = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let out = req
            .update_expression(expr)
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| {
                if is_conditional(&e) {
                    RegistryError::UnknownTenant(tenant.to_string())
                } else {
                    ddb_err(e)
                }
            })?;
        epoch_of(out.attributes.as_ref())
    }

    async fn touch(
        &self,
        tenant: &TenantId,
        attribute: &'static str,
        at: DateTime<Utc>,
    ) -> Result<(), RegistryError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(tenant, CONFIG)))
            .condition_expression("attribute_exists(pk)")
            .update_expression("SET #a = :t")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":t", s(key_time(at)))
            .send()
            .await
            .map_err(ddb_err)?;
        Ok(())
    }

    async fn clear_remerge_pending(
        &self,
        tenant: &TenantId,
        epoch: u64,
    ) -> Result<(), RegistryError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(tenant, CONFIG)))
            .condition_expression("epoch = :e")
            .update_expression("SET remerge_pending = :f")
            .expression_attribute_values(":e", n(epoch))
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .send()
            .await;
        applied(res).map(|_| ())
    }

    async fn set_uses_refresh_token(
        &self,
        tenant: &TenantId,
        uses: bool,
    ) -> Result<(), RegistryError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(tenant, CONFIG)))
            .condition_expression("attribute_exists(pk)")
            .update_expression("SET uses_refresh_token = :u")
            .expression_attribute_values(":u", AttributeValue::Bool(uses))
            .send()
            .await
            .map_err(ddb_err)?;
        Ok(())
    }

    async fn update_config_fenced(
        &self,
        tenant: &TenantId,
        epoch: u64,
        states: &[TenantState],
        update: &ConfigUpdate,
    ) -> Result<bool, RegistryError> {
        let mut set = vec![("updated_at", s(key_time(update.updated_at)))];
        let mut remove = Vec::new();
        if let Some(state) = update.state {
            set.push(("state", s(snake(&state))));
        }
        if let Some(secs) = update.interval_secs {
            set.push(("interval_secs", n(secs)));
        }
        if let Some(allow) = update.allow_loopback_attachments {
            set.push(("allow_loopback_attachments", AttributeValue::Bool(allow)));
        }
        match &update.state_reason {
            Edit::Keep => {}
            Edit::Set(reason) => set.push(("state_reason", s(reason.clone()))),
            Edit::Clear => remove.push("state_reason"),
        }
        match update.next_run_at {
            Edit::Keep => {}
            Edit::Set(at) => set.push(("next_run_at", s(key_time(at)))),
            Edit::Clear => remove.push("next_run_at"),
        }
        let mut names = HashMap::from([("#st".to_owned(), "state".to_owned())]);
        let mut values = HashMap::from([(":epoch".to_owned(), n(epoch))]);
        let mut allowed = Vec::new();
        for (i, st) in states.iter().enumerate() {
            values.insert(format!(":ok{i}"), s(snake(st)));
            allowed.push(format!(":ok{i}"));
        }
        let mut sets = Vec::new();
        for (i, (name, value)) in set.iter().enumerate() {
            names.insert(format!("#s{i}"), (*name).to_owned());
            values.insert(format!(":s{i}"), value.clone());
            sets.push(format!("#s{i} = :s{i}"));
        }
        let mut removes = Vec::new();
        for (i, name) in remove.iter().enumerate() {
            names.insert(format!("#r{i}"), (*name).to_owned());
            removes.push(format!("#r{i}"));
        }
        let mut expr = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expr.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(tenant, CONFIG)))
            .condition_expression(format!(
                "epoch = :epoch AND #st IN ({})",
                allowed.join(", ")
            ))
            .update_expression(expr)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        applied(res)
    }

    async fn delete_config(&self, tenant: &TenantId) -> Result<(), RegistryError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(self.key(tenant, CONFIG)))
            .send()
            .await
            .map_err(ddb_err)?;
        Ok(())
    }

    async fn was_deleted(&self, tenant: &TenantId) -> Result<bool, RegistryError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(format!("RECEIPT#{tenant}")))
            .limit(1)
            .send()
            .await
            .map_err(ddb_err)?;
        Ok(out.count() > 0)
    }

    async fn list(&self) -> Result<Vec<TenantConfig>, RegistryError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk = :c")
                .expression_attribute_values(":c", s(CONFIG))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(ddb_err)?;
            for i in page.items() {
                let c: ConfigItem = serde_dynamo::from_item(i.clone())
                    .map_err(|e| RegistryError::Malformed(e.to_string()))?;
                out.push(c.config);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl RunLog for TenantRegistry {
    async fn due(&self, shard: &str, now: DateTime<Utc>) -> Result<Vec<DueTenant>, RegistryError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("due")
                .key_condition_expression("due_shard = :s AND next_run_at <= :now")
                .expression_attribute_values(":s", s(shard))
                .expression_attribute_values(":now", s(key_time(now)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(ddb_err)?;
            for item in page.items() {
                if let Some(AttributeValue::S(pk)) = item.get("pk")
                    && let Some(t) = pk.strip_prefix("T#")
                    && let Ok(tenant) = TenantId::parse(t)
                {
                    out.push(DueTenant {
                        tenant,
                        // Absent only if the index lost its projection: 0 = the minimum
                        // interval, and the claim's condition still prevents a double run.
                        interval_secs: match item.get("interval_secs") {
                            Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
                            _ => 0,
                        },
                        uses_refresh_token: matches!(
                            item.get("uses_refresh_token"),
                            Some(AttributeValue::Bool(true))
                        ),
                    });
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn claim_run(
        &self,
        tenant: &TenantId,
        run_id: &str,
        streams: &[String],
        now: DateTime<Utc>,
        next: DateTime<Utc>,
    ) -> Result<Claim, RegistryError> {
        let stale = now - chrono::Duration::seconds(RUN_STALE_AFTER_SECS);
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(tenant, CONFIG)))
            .condition_expression(
                "#st = :enabled AND next_run_at <= :now AND \
                 (attribute_not_exists(pending_streams) OR run_started_at < :stale)",
            )
            .update_expression(
                "SET next_run_at = :next, active_run_id = :run, run_started_at = :now, \
                 pending_streams = :streams",
            )
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":enabled", s("enabled"))
            .expression_attribute_values(":now", s(key_time(now)))
            .expression_attribute_values(":stale", s(key_time(stale)))
            .expression_attribute_values(":next", s(key_time(next)))
            .expression_attribute_values(":run", s(run_id))
            .expression_attribute_values(":streams", AttributeValue::Ss(streams.to_vec()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                let c: ConfigItem = serde_dynamo::from_item(item)
                    .map_err(|e| RegistryError::Malformed(e.to_string()))?;
                Ok(Claim::Claimed {
                    epoch: c.config.epoch,
                    config: Box::new(c.config),
                })
            }
            Err(e) if is_conditional(&e) => Ok(Claim::Skipped),
            Err(e) => Err(ddb_err(e)),
        }
    }

    async fn finish_stream(
        &self,
        tenant: &TenantId,
        run_id: &str,
        stream: &str,
    ) -> Result<(), RegistryError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(tenant, CONFIG)))
            .condition_expression("active_run_id = :run")
            .update_expression("DELETE pending_streams :s")
            .expression_attribute_values(":run", s(run_id))
            .expression_attribute_values(":s", AttributeValue::Ss(vec![stream.to_string()]))
            .send()
            .await;
        applied(res).map(|_| ())
    }

    async fn clear_run(&self, tenant: &TenantId) -> Result<(), RegistryError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(tenant, CONFIG)))
            .condition_expression("attribute_exists(pk)")
            .update_expression("REMOVE pending_streams, active_run_id, run_started_at")
            .send()
            .await
            .map_err(ddb_err)?;
        Ok(())
    }

    async fn get_stream(
        &self,
        tenant: &TenantId,
        stream: StreamName,
    ) -> Result<Option<StreamState>, RegistryError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(
                self.key(tenant, &format!("STREAM#{}", stream.as_str())),
            ))
            .consistent_read(true)
            .send()
            .await
            .map_err(ddb_err)?;
        out.item.map(from_item).transpose()
    }

    async fn put_stream(
        &self,
        tenant: &TenantId,
        state: &StreamState,
    ) -> Result<(), RegistryError> {
        self.put_row(tenant, &format!("STREAM#{}", state.stream.as_str()), state)
            .await
    }

    async fn streams(&self, tenant: &TenantId) -> Result<Vec<StreamState>, RegistryError> {
        self.query_prefix(tenant, "STREAM#", false, None)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    async fn put_run(&self, tenant: &TenantId, run: &SyncRun) -> Result<(), RegistryError> {
        let sk = format!(
            "RUN#{}#{}#{}",
            key_time(run.started_at),
            run.run_id,
            run.stream.as_str()
        );
        self.put_row(tenant, &sk, run).await
    }

    async fn runs(&self, tenant: &TenantId, limit: usize) -> Result<Vec<SyncRun>, RegistryError> {
        self.query_prefix(tenant, "RUN#", true, Some(limit as i32))
            .await?
            .into_iter()
            .take(limit)
            .map(from_item)
            .collect()
    }

    async fn put_quarantine(
        &self,
        tenant: &TenantId,
        entry: &QuarantineEntry,
    ) -> Result<(), RegistryError> {
        let sk = format!(
            "QUARANTINE#{}#{}",
            key_time(entry.at),
            uuid::Uuid::new_v4().simple()
        );
        self.put_row(tenant, &sk, entry).await
    }

    async fn quarantine(&self, tenant: &TenantId) -> Result<Vec<QuarantineEntry>, RegistryError> {
        self.query_prefix(tenant, "QUARANTINE#", false, None)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }
}

#[async_trait]
impl Leases for TenantRegistry {
    async fn acquire_lease(
        &self,
        tenant: &TenantId,
        owner: &str,
        epoch: u64,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<LeaseOutcome, RegistryError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(tenant, CONFIG)))
            .condition_expression(
                "epoch = :e AND #st IN (:enabled, :reauth) AND \
                 (attribute_not_exists(lease_owner) OR lease_owner = :o OR lease_until < :now)",
            )
            .update_expression("SET lease_owner = :o, lease_epoch = :e, lease_until = :until")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":e", n(epoch))
            .expression_attribute_values(":enabled", s("enabled"))
            .expression_attribute_values(":reauth", s("needs_reauth"))
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":now", s(key_time(now)))
            .expression_attribute_values(":until", s(key_time(until)))
            .send()
            .await;
        match res {
            Ok(_) => Ok(LeaseOutcome::Held),
            Err(e) if is_conditional(&e) => Ok(match self.get(tenant).await? {
                Some(r) if r.config.epoch == epoch && r.config.state.pull_visible() => {
                    LeaseOutcome::HeldByOther
                }
                _ => LeaseOutcome::EpochMoved,
            }),
            Err(e) => Err(ddb_err(e)),
        }
    }

    async fn release_lease(&self, tenant: &TenantId, owner: &str) -> Result<(), RegistryError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(tenant, CONFIG)))
            .condition_expression("lease_owner = :o")
            .update_expression("REMOVE lease_owner, lease_epoch, lease_until")
            .expression_attribute_values(":o", s(owner))
            .send()
            .await;
        applied(res).map(|_| ())
    }

    async fn acquire_push_lease(
        &self,
        tenant: &TenantId,
        id: &str,
        until: DateTime<Utc>,
    ) -> Result<Option<TenantRecord>, RegistryError> {
        let sk = format!("LEASE#push#{id}");
        let mut item = self.key(tenant, &sk);
        item.insert("until".into(), s(key_time(until)));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(ddb_err)?;
        match self.get(tenant).await? {
            Some(r) if r.config.state.accepts_push() => Ok(Some(r)),
            _ => {
                self.release_push_lease(tenant, id).await?;
                Ok(None)
            }
        }
    }

    async fn release_push_lease(&self, tenant: &TenantId, id: &str) -> Result<(), RegistryError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(self.key(tenant, &format!("LEASE#push#{id}"))))
            .send()
            .await
            .map_err(ddb_err)?;
        Ok(())
    }

    async fn writers_live(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> Result<bool, RegistryError> {
        Ok(self.writers_live_until(tenant, now).await?.is_some())
    }

    async fn writers_live_until(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, RegistryError> {
        let mut latest = self
            .get(tenant)
            .await?
            .and_then(|r| r.lease)
            .map(|l| l.until)
            .filter(|until| *until > now);
        let items = self
            .query_prefix(tenant, "LEASE#push#", false, None)
            .await?;
        for item in &items {
            let until = match item.get("until") {
                Some(AttributeValue::S(u)) => match DateTime::parse_from_rfc3339(u) {
                    Ok(t) => t.with_timezone(&Utc),
                    Err(_) => continue,
                },
                _ => continue,
            };
            if until > now && latest.is_none_or(|l| until > l) {
                latest = Some(until);
            }
        }
        Ok(latest)
    }
}

#[async_trait]
impl Erasure for TenantRegistry {
    async fn item_sort_keys(
        &self,
        tenant: &TenantId,
        limit: Option<usize>,
    ) -> Result<Vec<String>, RegistryError> {
        let limit = limit.map(|l| i32::try_from(l).unwrap_or(i32::MAX));
        Ok(self
            .query_prefix(tenant, "", false, limit)
            .await?
            .into_iter()
            .filter_map(|mut i| match i.remove("sk") {
                Some(AttributeValue::S(sk)) => Some(sk),
                _ => None,
            })
            .collect())
    }

    async fn delete_tenant_items(
        &self,
        tenant: &TenantId,
        max: usize,
    ) -> Result<std::collections::BTreeMap<String, u64>, RegistryError> {
        let sks: Vec<String> = self
            .item_sort_keys(tenant, Some(max + 1))
            .await?
            .into_iter()
            .filter(|sk| sk != CONFIG)
            .take(max)
            .collect();
        let mut counts = std::collections::BTreeMap::new();
        for chunk in sks.chunks(25) {
            let mut pending = chunk
                .iter()
                .map(|sk| {
                    DeleteRequest::builder()
                        .set_key(Some(self.key(tenant, sk)))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| RegistryError::Malformed(e.to_string()))?;
            let mut round = 0u32;
            while !pending.is_empty() {
                round += 1;
                if round > 8 {
                    return Err(RegistryError::Dynamo(format!(
                        "{} tenants-table deletes still unprocessed",
                        pending.len()
                    )));
                }
                if round > 1 {
                    tokio::time::sleep(std::time::Duration::from_millis(25 << round.min(6))).await;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, std::mem::take(&mut pending))
                    .send()
                    .await
                    .map_err(ddb_err)?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
            }
            for sk in chunk {
                let kind = sk.split('#').next().unwrap_or("other").to_ascii_lowercase();
                *counts.entry(kind).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    async fn put_receipt(&self, receipt: &DeletionReceipt) -> Result<(), RegistryError> {
        let mut item: HashMap<String, AttributeValue> = to_item(receipt)?;
        item.insert("pk".into(), s(format!("RECEIPT#{}", receipt.tenant_id)));
        item.insert("sk".into(), s(receipt.request_id.clone()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(ddb_err)?;
        Ok(())
    }

    async fn receipt(
        &self,
        tenant: &TenantId,
        request_id: &str,
    ) -> Result<Option<DeletionReceipt>, RegistryError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("RECEIPT#{tenant}")))
            .key("sk", s(request_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(ddb_err)?;
        out.item.map(from_item).transpose()
    }
}

fn snake<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn epoch_of(attrs: Option<&HashMap<String, AttributeValue>>) -> Result<u64, RegistryError> {
    match attrs.and_then(|a| a.get("epoch")) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| RegistryError::Malformed("epoch is not a number".into())),
        _ => Err(RegistryError::Malformed("epoch missing".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_round_trips_through_the_tables_item_format_flat() {
        let cfg: TenantConfig = serde_json::from_value(serde_json::json!({
            "tenant_id": "acme", "ats_kind": "greenhouse", "api_version": "v3",
            "api_base_url": "https://harvest.greenhouse.io", "secret_name": "eds/tenants/acme",
            "interval_secs": 900, "state": "enabled", "epoch": 7,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        }))
        .unwrap();
        let item: HashMap<String, AttributeValue> = serde_dynamo::to_item(&cfg).unwrap();
        assert_eq!(item.get("ats_kind"), Some(&s("greenhouse")));
        assert_eq!(item.get("api_version"), Some(&s("v3")));
        assert!(!item.contains_key("ats"));
        assert_eq!(
            serde_dynamo::from_item::<_, TenantConfig>(item).unwrap(),
            cfg
        );
    }
}
