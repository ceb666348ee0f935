//! Building a tenant's ATS connection from its configuration: credentials (the secret
//! named by the tenant's own configuration, never by a message), the OAuth token manager
//! shared by every client of the tenant in this container, the rate limiter shared per
//! credential, the Greenhouse client of the configured API version, and the attachment
//! fetcher with the tenant's allowed hosts.

use std::sync::Arc;

use async_trait::async_trait;
use url::Url;

use crate::attachments::guard::ApiHostRules;
use crate::attachments::{AttachmentFetcher, BlobStore, DownloadConfig, HostPolicy};
use crate::connector::AtsConnector;
use crate::connector::greenhouse::{GreenhouseConfig, GreenhouseV3};
use crate::connector::ratelimit::RateLimiter;
use crate::credentials::{
    CredentialsConfig, Grant, SecretName, TenantSecret, TokenEndpoint, TokenEndpointConfig,
    TokenManager, TokenServices,
};
use crate::tenants::{ApiVersion, AtsKind, TenantConfig};

/// Everything a job needs to talk to one tenant's ATS.
pub struct Connection {
    pub ats: Arc<dyn AtsConnector>,
    pub tokens: Arc<TokenManager>,
    pub attachments: AttachmentFetcher,
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
    /// Whether the tenant's stored grant uses rotating refresh tokens.
    async fn uses_refresh_token(&self, cfg: &TenantConfig) -> Result<bool, ConnectError>;
}

/// The production factory (Greenhouse Harvest v3).
pub struct GreenhouseFactory {
    pub credentials: CredentialsConfig,
    pub services: TokenServices,
    pub blobs: Arc<dyn BlobStore>,
    /// Local testing only (`EDS_LOCAL_TESTING=true` in the deployment): the tenant's API
    /// and token URLs may be plain http on loopback, and tenants whose configuration
    /// allows it may download attachments over plain http from loopback hosts. Never
    /// set in a deployed template.
    pub allow_loopback_for_local_testing: bool,
    /// Short retry backoffs (tests against the simulator).
    pub fast_retries: bool,
}

impl GreenhouseFactory {
    fn secret_name(&self, cfg: &TenantConfig) -> Result<SecretName, ConnectError> {
        SecretName::from_config(
            &cfg.secret_name,
            &self.credentials.secret_prefix,
            &cfg.tenant_id,
        )
        .map_err(|e| ConnectError::Config(e.to_string()))
    }
}

#[async_trait]
impl ConnectorFactory for GreenhouseFactory {
    async fn connect(&self, cfg: &TenantConfig) -> Result<Connection, ConnectError> {
        let AtsKind::Greenhouse = cfg.ats_kind;
        if cfg.api_version == ApiVersion::Retired {
            return Err(ConnectError::Config(
                "the tenant is configured for Greenhouse Harvest v1/v2, which Greenhouse \
                 removed on 2026-08-31: reconnect it with OAuth (Harvest v3)"
                    .into(),
            ));
        }
        let name = self.secret_name(cfg)?;
        let mut services = self.services.clone();
        // The tenant's URLs come from its settings: https on public hosts only (http
        // and loopback under local testing), checked now and on every DNS answer, so
        // that neither the client secret nor the bearer token goes to an internal host.
        let rules = ApiHostRules::new(self.allow_loopback_for_local_testing);
        if let Some(auth_url) = &cfg.auth_url {
            let url = Url::parse(auth_url)
                .map_err(|_| ConnectError::Config("auth_url is not a URL".into()))?;
            rules
                .check_url(&url)
                .map_err(|why| ConnectError::Config(format!("auth_url {why}")))?;
            services.issuer = Arc::new(
                TokenEndpoint::new(TokenEndpointConfig::for_tenant(
                    url,
                    self.allow_loopback_for_local_testing,
                ))
                .map_err(|e| ConnectError::Config(e.to_string()))?,
            );
        }
        let tokens = Arc::new(TokenManager::new(name, services));
        let base = Url::parse(&cfg.api_base_url)
            .map_err(|_| ConnectError::Config("api_base_url is not a URL".into()))?;
        rules
            .check_url(&base)
            .map_err(|why| ConnectError::Config(format!("api_base_url {why}")))?;
        let mut gh = GreenhouseConfig::for_tenant(base, self.allow_loopback_for_local_testing);
        if self.fast_retries {
            gh = gh.with_fast_retries();
        }
        let limiter = RateLimiter::shared(cfg.tenant_id.as_str());
        let ats: Arc<dyn AtsConnector> = Arc::new(
            GreenhouseV3::new(gh, tokens.clone(), limiter)
                .map_err(|e| ConnectError::Config(e.to_string()))?,
        );
        // The provider's own file hosts, then the tenant's additions.
        let hosts: Vec<String> = crate::connector::greenhouse::ATTACHMENT_HOSTS
            .iter()
            .map(|h| h.to_string())
            .chain(cfg.attachment_hosts.iter().cloned())
            .collect();
        let policy = HostPolicy::for_tenant(
            &hosts,
            cfg.allow_loopback_attachments,
            self.allow_loopback_for_local_testing,
        );
        let attachments = AttachmentFetcher::new(DownloadConfig::new(policy), self.blobs.clone());
        Ok(Connection {
            ats,
            tokens,
            attachments,
        })
    }

    async fn uses_refresh_token(&self, cfg: &TenantConfig) -> Result<bool, ConnectError> {
        let name = self.secret_name(cfg)?;
        let raw = self
            .services
            .secrets
            .get_current(&name)
            .await
            .map_err(|e| ConnectError::Config(e.to_string()))?;
        let secret = TenantSecret::parse(&raw).map_err(|e| ConnectError::Config(e.to_string()))?;
        Ok(matches!(secret.grant, Grant::AuthorizationCode { .. }))
    }
}
