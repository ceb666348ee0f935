//! The port between an ATS client and whoever holds the tenant's credentials.
//!
//! The HTTP client of a connector asks for the `Authorization` header value and, when the
//! ATS answers 401, asks once for a refreshed one. How credentials are stored, cached,
//! refreshed single-flight and persisted is the credentials adapter's business.

use async_trait::async_trait;
use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The refresh token or authorization is no longer valid (`invalid_grant`): a person
    /// must reconnect. The pipeline moves the tenant to `needs_reauth`; never retried.
    #[error("the ATS refused the stored grant (invalid_grant): the tenant must re-authorise")]
    InvalidGrant,
    /// The client id or secret is wrong (`invalid_client` / `unauthorized_client`).
    #[error("the ATS refused the client credentials ({0}): update the tenant's credentials")]
    InvalidClient(String),
    /// The stored secret is missing or not in a form we understand. The message never
    /// contains the secret's value.
    #[error("tenant credentials are unusable: {0}")]
    BadSecret(String),
    /// Token endpoint or secret store temporarily failing; retry later.
    #[error("transient credentials failure: {0}")]
    Transient(String),
}

impl AuthError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, AuthError::Transient(_))
    }
}

/// Supplies the value of the `Authorization` header for one tenant's ATS calls.
#[async_trait]
pub trait AccessTokens: Send + Sync {
    /// The current header value (`Bearer ...` or `Basic ...`), refreshing first if the
    /// cached token is expired or about to expire.
    async fn authorization(&self) -> Result<SecretString, AuthError>;

    /// The ATS answered 401 to a request made with `rejected`. Refresh (single-flight:
    /// if another caller already refreshed, return that newer value without a second
    /// token request) and return the new header value. Callers retry a 401 only once.
    async fn refresh_after_unauthorized(
        &self,
        rejected: &SecretString,
    ) -> Result<SecretString, AuthError>;

    /// Token requests made by this source so far (for run metrics and benchmarks).
    fn token_requests(&self) -> u64 {
        0
    }

    /// Whether the credentials hold a rotating refresh token, which expires when idle and
    /// so must be used on a schedule (OAuth authorization code). API keys and client
    /// credentials need no upkeep.
    async fn uses_refresh_token(&self) -> Result<bool, AuthError> {
        Ok(false)
    }

    /// Uses the refresh token now to keep it alive; nothing for credentials without one.
    async fn keep_alive(&self) -> Result<(), AuthError> {
        Ok(())
    }
}

/// Revalidates a tenant's credentials (a token request, for OAuth tenants): the settings
/// function's check before it enables a tenant or clears `needs_reauth`.
#[async_trait]
pub trait CredentialCheck: Send + Sync {
    async fn check(&self, cfg: &crate::tenants::TenantConfig) -> Result<(), AuthError>;
}
