//! Tenant credentials: the secret format, where it is stored, and the `TokenManager`
//! that turns it into `Authorization` headers (`auth::AccessTokens`).
//!
//! # Secret format (Secrets Manager, name `{SECRET_PREFIX}{tenant}`)
//!
//! A JSON object with a `kind` and the fields of that kind:
//!
//! ```json
//! {"kind": "api_key", "api_key": "..."}
//! {"kind": "client_credentials", "client_id": "...", "client_secret": "...", "sub": "123"}
//! {"kind": "authorization_code", "client_id": "...", "client_secret": "...", "refresh_token": "..."}
//! ```
//!
//! - `api_key`: Harvest v1 Basic auth (`Basic base64(key:)`).
//! - `client_credentials`: OAuth client credentials; `sub` (optional, string or number)
//!   is the Greenhouse user id the token acts as.
//! - `authorization_code`: a partner connection. `refresh_token` rotates on every
//!   refresh; eds writes the new one back (a new secret version) before it uses the new
//!   access token.
//!
//! OAuth kinds may also carry `"access_token"` and `"access_expires_at"` (RFC 3339 UTC):
//! the last access token eds obtained, cached in the secret so that other containers use
//! it instead of each calling the token endpoint. eds writes both; an operator writing a
//! new secret leaves them out. Unknown fields are ignored.
//!
//! # Isolation
//!
//! The secret name comes from the tenant's configuration and must equal
//! `{prefix}{tenant}` (`SecretName::from_config`); a message never names a secret.
//!
//! # Never printed
//!
//! Secret values live in `secrecy::SecretString`; every type here that holds one
//! implements `Debug` by hand without the value; errors name fields, never values.

pub mod check;
pub mod lock;
pub mod manager;
pub mod secret;
pub mod store;
pub mod token;

use std::sync::Arc;

pub use check::TokenCheck;
pub use lock::{DynamoRefreshLock, LockError, RefreshLock};
pub use manager::{
    Clock, RefreshOutcome, SystemClock, TokenCache, TokenIssuer, TokenManager, TokenManagerConfig,
    TokenServices,
};
pub use secret::{CachedAccess, Grant, SecretFormatError, TenantSecret};
pub use store::{
    DEFAULT_SECRET_PREFIX, SecretName, SecretNameError, SecretStore, SecretStoreError,
    SecretsManagerStore,
};
pub use token::{
    GREENHOUSE_TOKEN_URL, IssuedTokens, TokenEndpoint, TokenEndpointConfig, TokenGrant,
};

use crate::auth::AuthError;

/// Deployment settings of the credentials adapters, read once at cold start.
#[derive(Debug, Clone)]
pub struct CredentialsConfig {
    /// `SECRET_PREFIX`, default `eds/tenants/`.
    pub secret_prefix: String,
    /// `TENANTS_TABLE`: holds the refresh lease items.
    pub tenants_table: String,
    /// `GREENHOUSE_TOKEN_URL`, default the Greenhouse token endpoint.
    pub token_url: url::Url,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {0} is not a valid URL")]
    BadUrl(&'static str),
}

impl CredentialsConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let secret_prefix =
            std::env::var("SECRET_PREFIX").unwrap_or_else(|_| DEFAULT_SECRET_PREFIX.to_string());
        let tenants_table =
            std::env::var("TENANTS_TABLE").map_err(|_| ConfigError::Missing("TENANTS_TABLE"))?;
        let token_url = std::env::var("GREENHOUSE_TOKEN_URL")
            .unwrap_or_else(|_| GREENHOUSE_TOKEN_URL.to_string())
            .parse()
            .map_err(|_| ConfigError::BadUrl("GREENHOUSE_TOKEN_URL"))?;
        Ok(Self {
            secret_prefix,
            tenants_table,
            token_url,
        })
    }

    /// The AWS-backed services every `TokenManager` of this container shares.
    pub fn services(&self, aws: &aws_config::SdkConfig) -> Result<TokenServices, AuthError> {
        Ok(TokenServices {
            secrets: Arc::new(SecretsManagerStore::from_conf(aws)),
            lock: Arc::new(DynamoRefreshLock::new(
                aws_sdk_dynamodb::Client::new(aws),
                self.tenants_table.clone(),
            )),
            issuer: Arc::new(TokenEndpoint::new(TokenEndpointConfig::new(
                self.token_url.clone(),
            ))?),
            config: TokenManagerConfig::default(),
            clock: Arc::new(SystemClock),
        })
    }

    /// The manager for a tenant whose configuration names `configured_secret`; refuses a
    /// name that is not the tenant's own.
    pub fn manager(
        &self,
        tenant: &crate::domain::ids::TenantId,
        configured_secret: &str,
        services: TokenServices,
    ) -> Result<TokenManager, SecretNameError> {
        let name = SecretName::from_config(configured_secret, &self.secret_prefix, tenant)?;
        Ok(TokenManager::new(name, services))
    }
}

#[cfg(test)]
mod tests;
