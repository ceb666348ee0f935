//! The settings function's credential check: a token request with the tenant's own
//! secret, through the same host rules a sync would use.

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    CredentialsConfig, SecretName, TokenCache, TokenEndpoint, TokenEndpointConfig, TokenManager,
    TokenServices,
};
use crate::auth::{AuthError, CredentialCheck};
use crate::tenants::TenantConfig;

/// The production check: a forced token request through the credentials adapter
/// (`TokenManager::refresh_now`), with the tenant's own secret and, when configured,
/// its own token endpoint. For an API key (no token endpoint) it loads and parses the
/// secret. A fresh token cache makes it a real request, not a cached answer.
pub struct TokenCheck {
    credentials: CredentialsConfig,
    services: TokenServices,
    local_testing: bool,
}

impl TokenCheck {
    /// `local_testing`: the deployment's switch (`Config::local_testing`).
    pub fn new(
        credentials: CredentialsConfig,
        services: TokenServices,
        local_testing: bool,
    ) -> Self {
        Self {
            credentials,
            services,
            local_testing,
        }
    }
}

#[async_trait]
impl CredentialCheck for TokenCheck {
    async fn check(&self, cfg: &TenantConfig) -> Result<(), AuthError> {
        let name = SecretName::from_config(
            &cfg.secret_name,
            &self.credentials.secret_prefix,
            &cfg.tenant_id,
        )
        .map_err(|e| AuthError::BadSecret(e.to_string()))?;
        let mut services = self.services.clone();
        if let Some(auth_url) = &cfg.auth_url {
            let url = url::Url::parse(auth_url)
                .map_err(|_| AuthError::BadSecret("auth_url is not a URL".into()))?;
            // The tenant's own token URL: the same host rules as at connect time (https,
            // no internal address, also after DNS), so that the enable check never sends
            // the client secret where a sync would not.
            services.issuer = Arc::new(TokenEndpoint::new(TokenEndpointConfig::for_tenant(
                url,
                self.local_testing,
            ))?);
        }
        TokenManager::with_cache(name, services, TokenCache::new())
            .refresh_now()
            .await
            .map(|_| ())
    }
}
