//! The provider registry: builds a tenant's connection for the ATS its settings name,
//! from its configuration: credentials (the secret named by the tenant's own
//! configuration, never by a message), the OAuth token manager, the rate limiter shared
//! per credential, the ATS's connector, and the attachment fetcher with the tenant's
//! allowed hosts. Adding an ATS adds one arm to the `match` here and to each in
//! [`catalog`](super::catalog) (D30).

use std::sync::Arc;

use async_trait::async_trait;
use url::Url;

use crate::attachments::guard::ApiHostRules;
use crate::attachments::{AttachmentFetcher, BlobStore, DownloadConfig, HostPolicy};
use crate::auth::AccessTokens;
use crate::connector::ratelimit::RateLimiter;
use crate::connector::{AtsConnector, greenhouse};
use crate::credentials::{
    CredentialsConfig, SecretName, TokenEndpoint, TokenEndpointConfig, TokenManager, TokenServices,
};
use crate::tenants::{AtsSettings, TenantConfig};
use eds_core::connection::{ConnectError, Connection, ConnectorFactory};

/// The provider registry: builds a tenant's connection for the ATS its settings name.
/// What every ATS shares is done here (the tenant's own secret, the token manager, the
/// URL checks, the attachment host policy); the connector comes from the ATS's folder.
pub struct Providers {
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

impl Providers {
    fn secret_name(&self, cfg: &TenantConfig) -> Result<SecretName, ConnectError> {
        SecretName::from_config(
            &cfg.secret_name,
            &self.credentials.secret_prefix,
            &cfg.tenant_id,
        )
        .map_err(|e| ConnectError::Config(e.to_string()))
    }

    /// The tenant's ATS connector and the hosts that ATS serves files from.
    fn connector(
        &self,
        cfg: &TenantConfig,
        base: Url,
        tokens: Arc<dyn AccessTokens>,
    ) -> Result<(Arc<dyn AtsConnector>, &'static [&'static str]), String> {
        let limiter = RateLimiter::shared(cfg.tenant_id.as_str());
        let local = self.allow_loopback_for_local_testing;
        match &cfg.ats {
            AtsSettings::Greenhouse(s) => Ok((
                greenhouse::provider::connector(
                    s,
                    base,
                    tokens,
                    limiter,
                    local,
                    self.fast_retries,
                )?,
                greenhouse::ATTACHMENT_HOSTS,
            )),
        }
    }
}

#[async_trait]
impl ConnectorFactory for Providers {
    async fn connect(&self, cfg: &TenantConfig) -> Result<Connection, ConnectError> {
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
        let tokens: Arc<dyn AccessTokens> = Arc::new(TokenManager::new(name, services));
        let base = Url::parse(&cfg.api_base_url)
            .map_err(|_| ConnectError::Config("api_base_url is not a URL".into()))?;
        rules
            .check_url(&base)
            .map_err(|why| ConnectError::Config(format!("api_base_url {why}")))?;
        let (ats, provider_hosts) = self
            .connector(cfg, base, tokens.clone())
            .map_err(ConnectError::Config)?;
        // The provider's own file hosts, then the tenant's additions.
        let hosts: Vec<String> = provider_hosts
            .iter()
            .map(|h| h.to_string())
            .chain(cfg.attachment_hosts.iter().cloned())
            .collect();
        let policy = HostPolicy::for_tenant(
            &hosts,
            cfg.allow_loopback_attachments,
            self.allow_loopback_for_local_testing,
        );
        let attachments = Arc::new(AttachmentFetcher::new(
            DownloadConfig::new(policy),
            self.blobs.clone(),
        ));
        Ok(Connection {
            ats,
            tokens,
            attachments,
        })
    }
}
