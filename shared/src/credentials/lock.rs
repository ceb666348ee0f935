//! Cross-container single-flight for token refreshes: a lease item in the tenants table.
//!
//! Item: pk=`T#{tenant}`, sk=`TOKEN_LOCK`, `owner` (random per attempt), `expires_at_ms`
//! (epoch milliseconds, the lease end) and `ttl` (epoch seconds, for DynamoDB TTL to
//! clean up leases of crashed holders). Acquire is a conditional put that succeeds when
//! no item exists or the existing lease has ended; release deletes only our own lease.
//! The lease only needs to outlive one bounded token request, so a crashed holder blocks
//! its tenant for at most one lease period.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use crate::domain::ids::TenantId;

pub const LOCK_SK: &str = "TOKEN_LOCK";

#[derive(Debug, thiserror::Error)]
#[error("token lock {op} for tenant {tenant} failed: {detail}")]
pub struct LockError {
    pub op: &'static str,
    pub tenant: TenantId,
    pub detail: String,
}

/// A lease that serialises token refreshes of one tenant across containers.
#[async_trait]
pub trait RefreshLock: Send + Sync {
    /// Try once to take the lease for `lease`; `Ok(false)` when someone else holds it.
    async fn try_acquire(
        &self,
        tenant: &TenantId,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, LockError>;

    /// Give the lease back if we still hold it.
    async fn release(&self, tenant: &TenantId, owner: &str) -> Result<(), LockError>;
}

/// DynamoDB lease in the tenants table.
#[derive(Clone, Debug)]
pub struct DynamoRefreshLock {
    client: Client,
    table: String,
}

impl DynamoRefreshLock {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn pk(tenant: &TenantId) -> String {
        crate::tenants::dynamo::tenant_pk(tenant)
    }
}

fn detail<E: std::error::Error + 'static>(e: &E) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

#[async_trait]
impl RefreshLock for DynamoRefreshLock {
    async fn try_acquire(
        &self,
        tenant: &TenantId,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, LockError> {
        let now_ms = now.timestamp_millis();
        let until_ms = now_ms + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(Self::pk(tenant)))
            .item("sk", AttributeValue::S(LOCK_SK.into()))
            .item("owner", AttributeValue::S(owner.into()))
            .item("expires_at_ms", AttributeValue::N(until_ms.to_string()))
            .item(
                "ttl",
                AttributeValue::N((until_ms / 1000 + 3600).to_string()),
            )
            .condition_expression("attribute_not_exists(pk) OR expires_at_ms < :now")
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if crate::dynamo::is_conditional(&e) => Ok(false),
            Err(e) => Err(LockError {
                op: "acquire",
                tenant: tenant.clone(),
                detail: detail(&e),
            }),
        }
    }

    async fn release(&self, tenant: &TenantId, owner: &str) -> Result<(), LockError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(Self::pk(tenant)))
            .key("sk", AttributeValue::S(LOCK_SK.into()))
            .condition_expression("#o = :me")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":me", AttributeValue::S(owner.into()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            // The lease ran out and someone else took it: nothing of ours to release.
            Err(e) if crate::dynamo::is_conditional(&e) => Ok(()),
            Err(e) => Err(LockError {
                op: "release",
                tenant: tenant.clone(),
                detail: detail(&e),
            }),
        }
    }
}
