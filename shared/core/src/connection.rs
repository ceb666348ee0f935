//! A tenant's ATS connection, as the puller sees it: the connector, the access-token
//! source and the attachment source, built by a [`ConnectorFactory`] (in production the
//! provider registry, `eds_shared::connector::providers::Providers`). Re-exported as
//! `eds_shared::connection`.

use std::sync::Arc;

use async_trait::async_trait;

use crate::attachments::AttachmentSource;
use crate::auth::AccessTokens;
use crate::connector::AtsConnector;
use crate::tenants::TenantConfig;

/// Everything a job needs to talk to one tenant's ATS.
pub struct Connection {
    pub ats: Arc<dyn AtsConnector>,
    /// The tenant's credentials as the ATS sees them (refresh-token upkeep, counts).
    pub tokens: Arc<dyn AccessTokens>,
    pub attachments: Arc<dyn AttachmentSource>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The configuration cannot work as it is (bad URL, secret name of another tenant):
    /// the tenant needs an operator, retrying will not help.
    #[error("tenant configuration: {0}")]
    Config(String),
}

/// Builds connections; a port so tests can count or fail connections.
#[async_trait]
pub trait ConnectorFactory: Send + Sync {
    async fn connect(&self, cfg: &TenantConfig) -> Result<Connection, ConnectError>;
}
