//! `TokenManager`: the `AccessTokens` implementation for one tenant.
//!
//! Refresh protocol (OAuth kinds), chosen so that rotating refresh tokens survive many
//! concurrent workers:
//! 1. Serve the per-container cached header while it is fresh (`TokenCache`, one per
//!    tenant per process; `TokenCache::for_tenant` is the process-wide registry).
//! 2. Otherwise take the tenant's in-process `tokio::sync::Mutex` and re-check: another
//!    task may have refreshed while we waited.
//! 3. Read the secret (`AWSCURRENT`). If it carries an access token another container
//!    obtained that is fresh (and is not the one the ATS just rejected), adopt it.
//! 4. Take the cross-container lease (DynamoDB, `lock` module). While it is held by
//!    someone else, poll the secret and adopt their result when it appears.
//! 5. With the lease, re-read the secret (the previous holder may have rotated just
//!    before we got it), then call the token endpoint with what that fresh copy holds.
//! 6. Persist the rotated refresh token and the new access token as a new secret version
//!    **before** anyone uses the new access token; if that fails for an
//!    authorization-code tenant the new token is not handed out (the refresh token it
//!    came with would otherwise be lost with this container).
//! 7. Release the lease, update the cache, return.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, OnceLock, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

use super::lock::RefreshLock;
use super::secret::{CachedAccess, Grant, TenantSecret};
use super::store::{SecretName, SecretStore, SecretStoreError};
use super::token::{IssuedTokens, TokenEndpoint, TokenGrant};
use crate::auth::{AccessTokens, AuthError};
use crate::domain::ids::TenantId;

/// Minimum time a freshly issued access token is used before the next proactive refresh.
const MIN_ISSUED_VALIDITY: chrono::Duration = chrono::Duration::seconds(30);

/// Source of the current time (a seam for tests).
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// Wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Something that issues OAuth tokens: the HTTP token endpoint in production.
#[async_trait]
pub trait TokenIssuer: Send + Sync {
    async fn issue(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        grant: TokenGrant<'_>,
        requests: &AtomicU64,
        now: DateTime<Utc>,
    ) -> Result<IssuedTokens, AuthError>;
}

#[async_trait]
impl TokenIssuer for TokenEndpoint {
    async fn issue(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        grant: TokenGrant<'_>,
        requests: &AtomicU64,
        now: DateTime<Utc>,
    ) -> Result<IssuedTokens, AuthError> {
        self.request(client_id, client_secret, grant, requests, now)
            .await
    }
}

/// Tunables of the refresh protocol.
#[derive(Debug, Clone)]
pub struct TokenManagerConfig {
    /// Refresh this long before the access token expires.
    pub refresh_margin: Duration,
    /// Length of the cross-container lease; must exceed one bounded token request.
    pub lease: Duration,
    /// How long to wait for another container's refresh before giving up (`Transient`).
    pub lock_wait: Duration,
    /// Poll interval while waiting for the lease.
    pub lock_poll: Duration,
    /// Attempts to persist the rotated secret.
    pub persist_attempts: u32,
}

impl Default for TokenManagerConfig {
    fn default() -> Self {
        Self {
            refresh_margin: Duration::from_secs(300),
            lease: Duration::from_secs(60),
            lock_wait: Duration::from_secs(45),
            lock_poll: Duration::from_millis(250),
            persist_attempts: 3,
        }
    }
}

/// What a container builds once and hands to every tenant's `TokenManager`.
#[derive(Clone)]
pub struct TokenServices {
    pub secrets: Arc<dyn SecretStore>,
    pub lock: Arc<dyn RefreshLock>,
    pub issuer: Arc<dyn TokenIssuer>,
    pub config: TokenManagerConfig,
    pub clock: Arc<dyn Clock>,
}

struct Current {
    header: SecretString,
    /// `None`: never expires (API key).
    refresh_after: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

/// The per-container token state of one tenant.
#[derive(Default)]
pub struct TokenCache {
    refresh: tokio::sync::Mutex<()>,
    current: RwLock<Option<Current>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").finish_non_exhaustive()
    }
}

fn registry() -> &'static StdMutex<HashMap<TenantId, Arc<TokenCache>>> {
    static REGISTRY: OnceLock<StdMutex<HashMap<TenantId, Arc<TokenCache>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

impl TokenCache {
    /// A cache of its own (tests simulating another container use this).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The process-wide cache of `tenant`: every `TokenManager` of this tenant in this
    /// container shares it, and with it the refresh mutex.
    pub fn for_tenant(tenant: &TenantId) -> Arc<Self> {
        let mut map = registry().lock().unwrap_or_else(|p| p.into_inner());
        map.entry(tenant.clone()).or_default().clone()
    }

    /// Forget a tenant's tokens (tenant disabled or deleted, credentials replaced).
    pub fn evict(tenant: &TenantId) {
        let mut map = registry().lock().unwrap_or_else(|p| p.into_inner());
        map.remove(tenant);
    }

    fn fresh(&self, now: DateTime<Utc>) -> Option<SecretString> {
        let cur = self.current.read().unwrap_or_else(|p| p.into_inner());
        cur.as_ref()
            .filter(|c| c.refresh_after.is_none_or(|t| now < t))
            .map(|c| c.header.clone())
    }

    /// The cached header if it is still valid and differs from `rejected`.
    fn replacement_for(&self, rejected: &SecretString, now: DateTime<Utc>) -> Option<SecretString> {
        self.fresh(now)
            .filter(|h| h.expose_secret() != rejected.expose_secret())
    }

    fn set(&self, c: Current) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(c);
    }

    fn expires_at(&self) -> Option<DateTime<Utc>> {
        let cur = self.current.read().unwrap_or_else(|p| p.into_inner());
        cur.as_ref().and_then(|c| c.expires_at)
    }
}

/// Why a refresh is being attempted; decides which existing token may be adopted.
enum Reason<'a> {
    /// The cached token expired or is within the margin.
    Expiring,
    /// The ATS answered 401 to this header.
    Rejected(&'a SecretString),
    /// The proactive refresh job: always rotate, unless another container rotated after
    /// we started (the token in the secret then differs from `baseline`).
    Forced { baseline: Option<String> },
}

/// What `refresh_now` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// API-key and client-credentials tenants have no refresh token to keep alive.
    NothingToRefresh,
    /// This container obtained new tokens and stored them.
    Refreshed { expires_at: DateTime<Utc> },
    /// Another container refreshed at the same time; its tokens are used.
    AdoptedFromOtherContainer { expires_at: DateTime<Utc> },
}

/// `AccessTokens` for one tenant.
pub struct TokenManager {
    secret_name: SecretName,
    services: TokenServices,
    cache: Arc<TokenCache>,
    requests: AtomicU64,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("secret_name", &self.secret_name.as_str())
            .finish_non_exhaustive()
    }
}

fn bearer(token: &SecretString) -> SecretString {
    format!("Bearer {}", token.expose_secret()).into()
}

fn basic_api_key(key: &SecretString) -> SecretString {
    format!("Basic {}", B64.encode(format!("{}:", key.expose_secret()))).into()
}

fn store_error(e: SecretStoreError) -> AuthError {
    match e {
        SecretStoreError::NotFound(n) => AuthError::BadSecret(format!("secret {n} does not exist")),
        SecretStoreError::NoStringValue(n) => {
            AuthError::BadSecret(format!("secret {n} has no string value"))
        }
        other => AuthError::Transient(other.to_string()),
    }
}

impl TokenManager {
    /// A manager using the process-wide cache of the secret's tenant.
    pub fn new(secret_name: SecretName, services: TokenServices) -> Self {
        let cache = TokenCache::for_tenant(secret_name.tenant());
        Self::with_cache(secret_name, services, cache)
    }

    /// A manager with an explicit cache (a separate cache behaves like another container).
    pub fn with_cache(
        secret_name: SecretName,
        services: TokenServices,
        cache: Arc<TokenCache>,
    ) -> Self {
        Self {
            secret_name,
            services,
            cache,
            requests: AtomicU64::new(0),
        }
    }

    pub fn tenant(&self) -> &TenantId {
        self.secret_name.tenant()
    }

    /// Expiry of the cached access token, if any (for the refresh job's metrics).
    pub fn cached_expiry(&self) -> Option<DateTime<Utc>> {
        self.cache.expires_at()
    }

    /// Rotate now, for the proactive refresh job that keeps idle tenants' 24-hour
    /// refresh tokens alive. Single-flight like every other refresh.
    pub async fn refresh_now(&self) -> Result<RefreshOutcome, AuthError> {
        let _guard = self.cache.refresh.lock().await;
        let secret = self.load().await?;
        // Only a refresh token expires when idle; API keys and client credentials need
        // no upkeep, and a token request for them would only spend the rate limit.
        if !matches!(secret.grant, Grant::AuthorizationCode { .. }) {
            return Ok(RefreshOutcome::NothingToRefresh);
        }
        let baseline = secret
            .cached
            .as_ref()
            .map(|c| c.access_token.expose_secret().to_string());
        let (_, adopted, expires_at) = self
            .refresh_oauth(secret, Reason::Forced { baseline })
            .await?;
        let expires_at = expires_at.unwrap_or_else(|| self.services.clock.now());
        Ok(if adopted {
            RefreshOutcome::AdoptedFromOtherContainer { expires_at }
        } else {
            RefreshOutcome::Refreshed { expires_at }
        })
    }

    async fn load(&self) -> Result<TenantSecret, AuthError> {
        let raw = self
            .services
            .secrets
            .get_current(&self.secret_name)
            .await
            .map_err(store_error)?;
        TenantSecret::parse(&raw)
            .map_err(|e| AuthError::BadSecret(format!("secret {}: {e}", self.secret_name)))
    }

    /// Called with the tenant's refresh mutex held.
    async fn refresh_locked(&self, reason: Reason<'_>) -> Result<SecretString, AuthError> {
        let secret = self.load().await?;
        if let Grant::ApiKey { api_key } = &secret.grant {
            let header = basic_api_key(api_key);
            if let Reason::Rejected(r) = reason
                && r.expose_secret() == header.expose_secret()
            {
                return Err(AuthError::InvalidClient(
                    "the ATS refused the stored API key (401)".into(),
                ));
            }
            self.cache.set(Current {
                header: header.clone(),
                refresh_after: None,
                expires_at: None,
            });
            return Ok(header);
        }
        let (header, _, _) = self.refresh_oauth(secret, reason).await?;
        Ok(header)
    }

    /// Whether a token found in the secret can be used instead of asking for a new one.
    fn adoptable(&self, cached: Option<&CachedAccess>, reason: &Reason<'_>) -> bool {
        let Some(c) = cached else { return false };
        let margin = chrono::Duration::from_std(self.services.config.refresh_margin)
            .unwrap_or_else(|_| chrono::Duration::minutes(5));
        if c.expires_at <= self.services.clock.now() + margin {
            return false;
        }
        match reason {
            Reason::Expiring => true,
            Reason::Rejected(r) => bearer(&c.access_token).expose_secret() != r.expose_secret(),
            Reason::Forced { baseline } => {
                baseline.as_deref() != Some(c.access_token.expose_secret())
            }
        }
    }

    fn adopt(&self, c: &CachedAccess) -> SecretString {
        let header = bearer(&c.access_token);
        self.remember(&header, c.expires_at);
        header
    }

    fn remember(&self, header: &SecretString, expires_at: DateTime<Utc>) {
        let now = self.services.clock.now();
        let lifetime = expires_at - now;
        let margin = chrono::Duration::from_std(self.services.config.refresh_margin)
            .unwrap_or_else(|_| chrono::Duration::minutes(5))
            .min(lifetime / 2);
        self.cache.set(Current {
            header: header.clone(),
            refresh_after: Some(expires_at - margin),
            expires_at: Some(expires_at),
        });
    }

    /// A token just issued is used for at least `MIN_ISSUED_VALIDITY` even if its stated
    /// expiry is already near or past on our clock (clock skew with the ATS): refreshing
    /// on every call would hammer the token endpoint, while a really expired token is
    /// caught by the 401 path anyway.
    fn remember_issued(&self, header: &SecretString, expires_at: DateTime<Utc>) {
        let now = self.services.clock.now();
        let floor = now + MIN_ISSUED_VALIDITY;
        if expires_at <= floor {
            tracing::warn!(tenant = %self.tenant(), %expires_at, %now,
                "new access token expires (almost) immediately on our clock: clock skew with the ATS?");
            self.cache.set(Current {
                header: header.clone(),
                refresh_after: Some(floor),
                expires_at: Some(expires_at),
            });
        } else {
            self.remember(header, expires_at);
            let mut cur = self
                .cache
                .current
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cur.as_mut() {
                c.refresh_after = c.refresh_after.map(|t| t.max(floor));
            }
        }
    }

    /// Returns (header, adopted from someone else, expiry).
    async fn refresh_oauth(
        &self,
        secret: TenantSecret,
        reason: Reason<'_>,
    ) -> Result<(SecretString, bool, Option<DateTime<Utc>>), AuthError> {
        if let Some(c) = secret
            .cached
            .as_ref()
            .filter(|c| self.adoptable(Some(c), &reason))
        {
            tracing::debug!(tenant = %self.tenant(), "using access token stored by another container");
            return Ok((self.adopt(c), true, Some(c.expires_at)));
        }

        let owner = uuid::Uuid::new_v4().to_string();
        let cfg = &self.services.config;
        let started = tokio::time::Instant::now();
        loop {
            let now = self.services.clock.now();
            let got = self
                .services
                .lock
                .try_acquire(self.tenant(), &owner, now, cfg.lease)
                .await
                .map_err(|e| AuthError::Transient(e.to_string()))?;
            if got {
                break;
            }
            if started.elapsed() >= cfg.lock_wait {
                return Err(AuthError::Transient(format!(
                    "another worker has been refreshing tenant {}'s token for over {:?}",
                    self.tenant(),
                    cfg.lock_wait
                )));
            }
            let poll = cfg.lock_poll.as_millis().max(1) as u64;
            let jitter = rand::rng().random_range(poll / 2..=poll);
            tokio::time::sleep(Duration::from_millis(jitter)).await;
            let seen = self.load().await?;
            if let Some(c) = seen
                .cached
                .as_ref()
                .filter(|c| self.adoptable(Some(c), &reason))
            {
                tracing::debug!(tenant = %self.tenant(), "another container refreshed while we waited");
                return Ok((self.adopt(c), true, Some(c.expires_at)));
            }
        }

        let result = self.refresh_with_lease(&reason).await;
        if let Err(e) = self.services.lock.release(self.tenant(), &owner).await {
            // The lease runs out by itself; nothing else to do.
            tracing::warn!(tenant = %self.tenant(), error = %e, "token lock not released");
        }
        result
    }

    async fn refresh_with_lease(
        &self,
        reason: &Reason<'_>,
    ) -> Result<(SecretString, bool, Option<DateTime<Utc>>), AuthError> {
        // The previous lease holder may have rotated just before we got the lease: its
        // refresh token is the only valid one now.
        let secret = self.load().await?;
        if let Some(c) = secret
            .cached
            .as_ref()
            .filter(|c| self.adoptable(Some(c), reason))
        {
            return Ok((self.adopt(c), true, Some(c.expires_at)));
        }
        let issuer = &self.services.issuer;
        let (issued, grant) = match secret.grant {
            Grant::ApiKey { .. } => {
                return Err(AuthError::BadSecret("API keys are not refreshed".into()));
            }
            Grant::ClientCredentials {
                client_id,
                client_secret,
                sub,
            } => {
                let issued = issuer
                    .issue(
                        &client_id,
                        &client_secret,
                        TokenGrant::ClientCredentials {
                            sub: sub.as_deref(),
                        },
                        &self.requests,
                        self.services.clock.now(),
                    )
                    .await?;
                (
                    issued,
                    Grant::ClientCredentials {
                        client_id,
                        client_secret,
                        sub,
                    },
                )
            }
            Grant::AuthorizationCode {
                client_id,
                client_secret,
                refresh_token,
            } => {
                let mut issued = issuer
                    .issue(
                        &client_id,
                        &client_secret,
                        TokenGrant::RefreshToken(&refresh_token),
                        &self.requests,
                        self.services.clock.now(),
                    )
                    .await?;
                // Some servers do not rotate: keep the old refresh token then.
                let refresh_token = issued.refresh_token.take().unwrap_or(refresh_token);
                (
                    issued,
                    Grant::AuthorizationCode {
                        client_id,
                        client_secret,
                        refresh_token,
                    },
                )
            }
        };
        crate::crash::point("token.after_issue_before_persist");
        let must_persist = matches!(grant, Grant::AuthorizationCode { .. });
        let updated = TenantSecret {
            grant,
            cached: Some(CachedAccess {
                access_token: issued.access_token,
                expires_at: issued.expires_at,
            }),
        };
        if let Err(e) = self.persist(&updated).await {
            if must_persist {
                tracing::error!(tenant = %self.tenant(), error = %e,
                    "rotated refresh token could not be stored; the tenant may need to re-authorise");
                return Err(AuthError::Transient(format!(
                    "the rotated refresh token could not be stored: {e}"
                )));
            }
            // Client credentials can always be re-requested: losing the shared cache only
            // costs other containers one token request each.
            tracing::warn!(tenant = %self.tenant(), error = %e, "access token not shared via the secret");
        }
        crate::crash::point("token.after_persist_before_return");
        let Some(cached) = updated.cached.as_ref() else {
            return Err(AuthError::Transient("no access token".into()));
        };
        tracing::info!(tenant = %self.tenant(), expires_at = %cached.expires_at, "access token refreshed");
        let header = bearer(&cached.access_token);
        self.remember_issued(&header, cached.expires_at);
        Ok((header, false, Some(cached.expires_at)))
    }

    async fn persist(&self, secret: &TenantSecret) -> Result<(), SecretStoreError> {
        let json = secret.to_json();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .services
                .secrets
                .put_new_version(&self.secret_name, &json)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if attempt < self.services.config.persist_attempts.max(1) => {
                    tracing::warn!(tenant = %self.tenant(), attempt, error = %e, "storing secret failed, retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl AccessTokens for TokenManager {
    async fn authorization(&self) -> Result<SecretString, AuthError> {
        if let Some(h) = self.cache.fresh(self.services.clock.now()) {
            return Ok(h);
        }
        let _guard = self.cache.refresh.lock().await;
        // Another task of this container may have refreshed while we waited.
        if let Some(h) = self.cache.fresh(self.services.clock.now()) {
            return Ok(h);
        }
        self.refresh_locked(Reason::Expiring).await
    }

    async fn refresh_after_unauthorized(
        &self,
        rejected: &SecretString,
    ) -> Result<SecretString, AuthError> {
        if let Some(h) = self
            .cache
            .replacement_for(rejected, self.services.clock.now())
        {
            return Ok(h);
        }
        let _guard = self.cache.refresh.lock().await;
        if let Some(h) = self
            .cache
            .replacement_for(rejected, self.services.clock.now())
        {
            return Ok(h);
        }
        self.refresh_locked(Reason::Rejected(rejected)).await
    }

    fn token_requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    async fn uses_refresh_token(&self) -> Result<bool, AuthError> {
        Ok(matches!(
            self.load().await?.grant,
            Grant::AuthorizationCode { .. }
        ))
    }

    async fn keep_alive(&self) -> Result<(), AuthError> {
        self.refresh_now().await.map(|_| ())
    }
}
