//! The provider registry: builds a tenant's connection for the ATS its settings name,
//! from its configuration: credentials (the secret named by the tenant's own
//! configuration, never by a message), the OAuth token manager, the rate limiter shared
//! per credential, the ATS's connector, and the attachment fetcher with the tenant's
//! allowed hosts. Adding an ATS adds one arm to the `match`es here (its connector, its
//! token endpoint default) and one in [`catalog`](super::catalog) (D30).

use std::sync::Arc;

use async_trait::async_trait;
use url::Url;

use crate::attachments::guard::ApiHostRules;
use crate::attachments::{ApiDownloads, AttachmentFetcher, BlobStore, DownloadConfig, HostPolicy};
use crate::auth::AccessTokens;
use crate::connector::ratelimit::RateLimiter;
use crate::connector::{AtsConnector, greenhouse, lever};
use crate::credentials::{
    CredentialsConfig, SecretName, TokenEndpoint, TokenEndpointConfig, TokenManager, TokenServices,
};
use crate::tenants::{AtsKind, AtsSettings, TenantConfig};
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

    /// The tenant's ATS connector and what the rest of the connection needs of that
    /// ATS.
    fn connector(
        &self,
        cfg: &TenantConfig,
        base: Url,
        tokens: Arc<dyn AccessTokens>,
    ) -> Result<AtsParts, String> {
        let local = self.allow_loopback_for_local_testing;
        let fast = self.fast_retries;
        match &cfg.ats {
            AtsSettings::Greenhouse(s) => {
                let limiter = RateLimiter::shared(cfg.tenant_id.as_str());
                Ok(AtsParts {
                    connector: greenhouse::provider::connector(
                        s,
                        base,
                        tokens,
                        limiter.clone(),
                        local,
                        fast,
                    )?,
                    file_hosts: greenhouse::ATTACHMENT_HOSTS,
                    api_downloads: None,
                })
            }
            AtsSettings::Lever(s) => {
                let limiter = RateLimiter::shared_with(cfg.tenant_id.as_str(), Some(lever::PACE));
                Ok(AtsParts {
                    connector: lever::provider::connector(
                        s,
                        base.clone(),
                        tokens.clone(),
                        limiter.clone(),
                        local,
                        fast,
                    )?,
                    file_hosts: &[],
                    // Resumes and files are API calls on the API's own host.
                    api_downloads: Some(ApiDownloads {
                        origin: base,
                        tokens,
                        limiter,
                    }),
                })
            }
        }
    }

    /// The token endpoint of a tenant: its own `auth_url`, else its ATS's default
    /// (none for Greenhouse: the deployment's `GREENHOUSE_TOKEN_URL`).
    fn token_endpoint(&self, cfg: &TenantConfig) -> Result<Option<TokenEndpoint>, ConnectError> {
        let (default, audience) = match cfg.ats.kind() {
            AtsKind::Greenhouse => (None, None),
            AtsKind::Lever => (Some(lever::DEFAULT_TOKEN_URL), Some(lever::AUDIENCE)),
        };
        let Some(raw) = cfg.auth_url.as_deref().or(default) else {
            return Ok(None);
        };
        let url =
            Url::parse(raw).map_err(|_| ConnectError::Config("auth_url is not a URL".into()))?;
        let rules = ApiHostRules::new(self.allow_loopback_for_local_testing);
        rules
            .check_url(&url)
            .map_err(|why| ConnectError::Config(format!("auth_url {why}")))?;
        let mut config =
            TokenEndpointConfig::for_tenant(url, self.allow_loopback_for_local_testing);
        config.audience = audience.map(str::to_string);
        TokenEndpoint::new(config)
            .map(Some)
            .map_err(|e| ConnectError::Config(e.to_string()))
    }
}

/// What one ATS contributes to a tenant's connection.
struct AtsParts {
    connector: Arc<dyn AtsConnector>,
    /// Hosts the ATS serves signed file links from (the tenant's own are added).
    file_hosts: &'static [&'static str],
    /// Files fetched by API calls with the tenant's credential.
    api_downloads: Option<ApiDownloads>,
}

#[async_trait]
impl ConnectorFactory for Providers {
    async fn connect(&self, cfg: &TenantConfig) -> Result<Connection, ConnectError> {
        let name = self.secret_name(cfg)?;
        let mut services = self.services.clone();
        // The tenant's URLs come from its settings: https on public hosts only (http
        // and loopback under local testing), checked now and on every DNS answer, so
        // that neither the client secret nor the bearer token goes to an internal host.
        if let Some(issuer) = self.token_endpoint(cfg)? {
            services.issuer = Arc::new(issuer);
        }
        let rules = ApiHostRules::new(self.allow_loopback_for_local_testing);
        let tokens: Arc<dyn AccessTokens> = Arc::new(TokenManager::new(name, services));
        let base = Url::parse(&cfg.api_base_url)
            .map_err(|_| ConnectError::Config("api_base_url is not a URL".into()))?;
        rules
            .check_url(&base)
            .map_err(|why| ConnectError::Config(format!("api_base_url {why}")))?;
        let parts = self
            .connector(cfg, base, tokens.clone())
            .map_err(ConnectError::Config)?;
        // The provider's own file hosts (and the API's, for API downloads), then the
        // tenant's additions.
        let api_host = parts
            .api_downloads
            .as_ref()
            .and_then(|a| a.origin.host_str().map(str::to_string));
        let hosts: Vec<String> = parts
            .file_hosts
            .iter()
            .map(|h| h.to_string())
            .chain(api_host)
            .chain(cfg.attachment_hosts.iter().cloned())
            .collect();
        let policy = HostPolicy::for_tenant(
            &hosts,
            cfg.allow_loopback_attachments,
            self.allow_loopback_for_local_testing,
        );
        let mut fetcher = AttachmentFetcher::new(DownloadConfig::new(policy), self.blobs.clone());
        if let Some(api) = parts.api_downloads {
            fetcher = fetcher.with_api_downloads(api);
        }
        let attachments = Arc::new(fetcher);
        let ats = parts.connector;
        Ok(Connection {
            ats,
            tokens,
            attachments,
        })
    }
}
