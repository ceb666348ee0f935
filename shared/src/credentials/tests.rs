//! Refresh protocol tests with in-memory peers: single flight in one container and
//! across containers, persistence before use, error classification, and redaction.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicI64;

use super::*;
use crate::auth::AccessTokens;
use crate::domain::ids::TenantId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const CLIENT_SECRET: &str = "cs-SECRET-0001";
const REFRESH_0: &str = "rt-SECRET-0000";
const API_KEY: &str = "ak-SECRET-0002";

#[derive(Default)]
struct MemSecrets {
    values: Mutex<HashMap<String, String>>,
    puts: AtomicU64,
    fail_puts: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl SecretStore for MemSecrets {
    async fn get_current(&self, name: &SecretName) -> Result<SecretString, SecretStoreError> {
        self.values
            .lock()
            .unwrap()
            .get(name.as_str())
            .map(|v| SecretString::from(v.clone()))
            .ok_or_else(|| SecretStoreError::NotFound(name.to_string()))
    }
    async fn put_new_version(
        &self,
        name: &SecretName,
        value: &SecretString,
    ) -> Result<(), SecretStoreError> {
        if self.fail_puts.load(Ordering::SeqCst) {
            return Err(SecretStoreError::Service {
                op: "PutSecretValue",
                name: name.to_string(),
                detail: "throttled".into(),
            });
        }
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.values
            .lock()
            .unwrap()
            .insert(name.as_str().into(), value.expose_secret().into());
        Ok(())
    }
    async fn delete_now(&self, name: &SecretName) -> Result<bool, SecretStoreError> {
        Ok(self.values.lock().unwrap().remove(name.as_str()).is_some())
    }
    async fn is_gone(&self, name: &SecretName) -> Result<bool, SecretStoreError> {
        Ok(!self.values.lock().unwrap().contains_key(name.as_str()))
    }
}

#[derive(Default)]
struct MemLock {
    held: Mutex<Option<(String, DateTime<Utc>)>>,
}

#[async_trait]
impl RefreshLock for MemLock {
    async fn try_acquire(
        &self,
        _tenant: &TenantId,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, LockError> {
        let mut h = self.held.lock().unwrap();
        if h.as_ref().is_some_and(|(_, until)| *until > now) {
            return Ok(false);
        }
        *h = Some((
            owner.into(),
            now + chrono::Duration::from_std(lease).unwrap(),
        ));
        Ok(true)
    }
    async fn release(&self, _tenant: &TenantId, owner: &str) -> Result<(), LockError> {
        let mut h = self.held.lock().unwrap();
        if h.as_ref().is_some_and(|(o, _)| o == owner) {
            *h = None;
        }
        Ok(())
    }
}

/// A token server with single-use rotating refresh tokens.
struct FakeIssuer {
    calls: AtomicU64,
    valid_refresh: Mutex<String>,
    fail_with: Mutex<Option<fn() -> AuthError>>,
    lifetime: Mutex<chrono::Duration>,
    clock: Arc<ManualClock>,
}

impl FakeIssuer {
    fn new(clock: Arc<ManualClock>) -> Self {
        Self {
            calls: AtomicU64::new(0),
            valid_refresh: Mutex::new(REFRESH_0.into()),
            fail_with: Mutex::new(None),
            lifetime: Mutex::new(chrono::Duration::hours(1)),
            clock,
        }
    }
}

#[async_trait]
impl TokenIssuer for FakeIssuer {
    async fn issue(
        &self,
        _client_id: &str,
        client_secret: &SecretString,
        grant: TokenGrant<'_>,
        requests: &AtomicU64,
        _now: DateTime<Utc>,
    ) -> Result<IssuedTokens, AuthError> {
        requests.fetch_add(1, Ordering::SeqCst);
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        // Let concurrent callers pile up behind the locks.
        tokio::time::sleep(Duration::from_millis(30)).await;
        if let Some(f) = *self.fail_with.lock().unwrap() {
            return Err(f());
        }
        assert_eq!(client_secret.expose_secret(), CLIENT_SECRET);
        let refresh_token = match grant {
            TokenGrant::RefreshToken(rt) => {
                let mut valid = self.valid_refresh.lock().unwrap();
                if rt.expose_secret() != valid.as_str() {
                    return Err(AuthError::InvalidGrant);
                }
                *valid = format!("rt-SECRET-{n:04}");
                Some(SecretString::from(valid.clone()))
            }
            _ => None,
        };
        Ok(IssuedTokens {
            access_token: format!("at-SECRET-{n:04}").into(),
            expires_at: self.clock.now() + *self.lifetime.lock().unwrap(),
            refresh_token,
        })
    }
}

struct ManualClock(AtomicI64);

impl ManualClock {
    fn new() -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(
            DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
                .unwrap()
                .timestamp_millis(),
        )))
    }
    fn advance(&self, d: chrono::Duration) {
        self.0.fetch_add(d.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0.load(Ordering::SeqCst)).unwrap()
    }
}

struct World {
    secrets: Arc<MemSecrets>,
    lock: Arc<MemLock>,
    issuer: Arc<FakeIssuer>,
    clock: Arc<ManualClock>,
    name: SecretName,
}

impl World {
    fn new(secret_json: &str) -> Self {
        let clock = ManualClock::new();
        let tenant = TenantId::parse("acme").unwrap();
        let name = SecretName::for_tenant(DEFAULT_SECRET_PREFIX, &tenant);
        let secrets = Arc::new(MemSecrets::default());
        secrets
            .values
            .lock()
            .unwrap()
            .insert(name.as_str().into(), secret_json.into());
        Self {
            secrets,
            lock: Arc::new(MemLock::default()),
            issuer: Arc::new(FakeIssuer::new(clock.clone())),
            clock,
            name,
        }
    }

    fn services(&self) -> TokenServices {
        TokenServices {
            secrets: self.secrets.clone(),
            lock: self.lock.clone(),
            issuer: self.issuer.clone(),
            config: TokenManagerConfig {
                lock_poll: Duration::from_millis(5),
                ..TokenManagerConfig::default()
            },
            clock: self.clock.clone(),
        }
    }

    /// A manager with a cache of its own: a separate container.
    fn container(&self) -> TokenManager {
        TokenManager::with_cache(self.name.clone(), self.services(), TokenCache::new())
    }

    fn stored(&self) -> TenantSecret {
        let raw = self.secrets.values.lock().unwrap()[self.name.as_str()].clone();
        TenantSecret::parse(&raw.into()).unwrap()
    }
}

fn client_credentials() -> String {
    format!(
        r#"{{"kind":"client_credentials","client_id":"cid","client_secret":"{CLIENT_SECRET}","sub":"5"}}"#
    )
}

fn authorization_code() -> String {
    format!(
        r#"{{"kind":"authorization_code","client_id":"cid","client_secret":"{CLIENT_SECRET}","refresh_token":"{REFRESH_0}"}}"#
    )
}

#[tokio::test]
async fn api_key_becomes_basic_auth_with_empty_password() {
    let w = World::new(&format!(r#"{{"kind":"api_key","api_key":"{API_KEY}"}}"#));
    let m = w.container();
    let h = m.authorization().await.unwrap();
    assert_eq!(
        h.expose_secret(),
        format!("Basic {}", B64.encode(format!("{API_KEY}:")))
    );
    // A 401 on the unchanged key is a configuration error, not a refresh.
    let err = m.refresh_after_unauthorized(&h).await.unwrap_err();
    assert!(matches!(err, AuthError::InvalidClient(_)));
    assert_eq!(
        m.refresh_now().await.unwrap(),
        RefreshOutcome::NothingToRefresh
    );
    assert_eq!(w.issuer.calls.load(Ordering::SeqCst), 0);
}

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

#[tokio::test]
async fn client_credentials_token_is_cached_per_container() {
    let w = World::new(&client_credentials());
    let m = w.container();
    let a = m.authorization().await.unwrap();
    let b = m.authorization().await.unwrap();
    assert_eq!(a.expose_secret(), "Bearer at-SECRET-0001");
    assert_eq!(a.expose_secret(), b.expose_secret());
    assert_eq!(m.token_requests(), 1);
    // A second container adopts the token stored in the secret.
    let other = w.container();
    assert_eq!(
        other.authorization().await.unwrap().expose_secret(),
        a.expose_secret()
    );
    assert_eq!(w.issuer.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn concurrent_callers_in_one_container_cause_one_token_request() {
    let w = World::new(&authorization_code());
    let m = Arc::new(w.container());
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(async move { m.authorization().await })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.unwrap().unwrap().expose_secret(),
            "Bearer at-SECRET-0001"
        );
    }
    assert_eq!(w.issuer.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_containers_refreshing_at_once_make_one_token_request() {
    let w = World::new(&authorization_code());
    let (a, b) = (Arc::new(w.container()), Arc::new(w.container()));
    let (ra, rb) = tokio::join!(
        {
            let a = a.clone();
            async move { a.authorization().await }
        },
        {
            let b = b.clone();
            async move { b.authorization().await }
        }
    );
    assert_eq!(
        ra.unwrap().expose_secret(),
        rb.unwrap().expose_secret(),
        "both containers use the same token"
    );
    assert_eq!(w.issuer.calls.load(Ordering::SeqCst), 1);
    // And both survive a 401 on that token with one more request in total.
    let h = a.authorization().await.unwrap();
    let (ra, rb) = tokio::join!(
        a.refresh_after_unauthorized(&h),
        b.refresh_after_unauthorized(&h)
    );
    assert_eq!(ra.unwrap().expose_secret(), rb.unwrap().expose_secret());
    assert_eq!(w.issuer.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn rotated_refresh_token_is_stored_before_the_access_token_is_returned() {
    let w = World::new(&authorization_code());
    let m = w.container();
    let h = m.authorization().await.unwrap();
    let stored = w.stored();
    let Grant::AuthorizationCode { refresh_token, .. } = &stored.grant else {
        panic!("kind changed")
    };
    assert_eq!(
        refresh_token.expose_secret(),
        w.issuer.valid_refresh.lock().unwrap().as_str()
    );
    assert_ne!(refresh_token.expose_secret(), REFRESH_0);
    let cached = stored.cached.unwrap();
    assert_eq!(
        format!("Bearer {}", cached.access_token.expose_secret()),
        h.expose_secret()
    );
}

#[tokio::test]
async fn failing_to_store_the_rotated_token_withholds_the_new_access_token() {
    let w = World::new(&authorization_code());
    w.secrets.fail_puts.store(true, Ordering::SeqCst);
    let err = w.container().authorization().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("could not be stored"));
}

#[tokio::test]
async fn invalid_grant_is_reported_once_without_retry() {
    let w = World::new(&authorization_code());
    *w.issuer.valid_refresh.lock().unwrap() = "someone-else-used-it".into();
    let m = w.container();
    assert!(matches!(
        m.authorization().await.unwrap_err(),
        AuthError::InvalidGrant
    ));
    assert_eq!(w.issuer.calls.load(Ordering::SeqCst), 1);
    // The lease was released: a later attempt is not blocked.
    assert!(w.lock.held.lock().unwrap().is_none());
}

#[tokio::test]
async fn token_is_refreshed_when_it_enters_the_margin() {
    let w = World::new(&authorization_code());
    let m = w.container();
    let first = m.authorization().await.unwrap();
    w.clock.advance(chrono::Duration::minutes(50));
    assert_eq!(
        m.authorization().await.unwrap().expose_secret(),
        first.expose_secret()
    );
    w.clock.advance(chrono::Duration::minutes(6)); // 4 minutes left < 5-minute margin
    let second = m.authorization().await.unwrap();
    assert_ne!(second.expose_secret(), first.expose_secret());
    assert_eq!(w.issuer.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn token_already_expired_by_our_clock_is_not_refreshed_on_every_call() {
    let w = World::new(&client_credentials());
    *w.issuer.lifetime.lock().unwrap() = chrono::Duration::minutes(-10); // clock skew
    let m = w.container();
    let a = m.authorization().await.unwrap();
    let b = m.authorization().await.unwrap();
    assert_eq!(a.expose_secret(), b.expose_secret());
    assert_eq!(w.issuer.calls.load(Ordering::SeqCst), 1);
    // It is replaced after the floor, not kept forever.
    w.clock.advance(chrono::Duration::seconds(31));
    m.authorization().await.unwrap();
    assert_eq!(w.issuer.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unauthorized_refreshes_once_and_later_callers_get_the_new_token() {
    let w = World::new(&client_credentials());
    let m = w.container();
    let old = m.authorization().await.unwrap();
    let new = m.refresh_after_unauthorized(&old).await.unwrap();
    assert_ne!(new.expose_secret(), old.expose_secret());
    // A slower request that also failed with the old token gets the new one for free.
    let again = m.refresh_after_unauthorized(&old).await.unwrap();
    assert_eq!(again.expose_secret(), new.expose_secret());
    assert_eq!(w.issuer.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn refresh_now_rotates_even_a_fresh_token() {
    let w = World::new(&authorization_code());
    let m = w.container();
    m.authorization().await.unwrap();
    let out = m.refresh_now().await.unwrap();
    assert!(matches!(out, RefreshOutcome::Refreshed { .. }), "{out:?}");
    assert_eq!(w.issuer.calls.load(Ordering::SeqCst), 2);
    assert_eq!(w.secrets.puts.load(Ordering::SeqCst), 2);
    // Client credentials have no refresh token to keep alive.
    let cc = World::new(&client_credentials());
    assert_eq!(
        cc.container().refresh_now().await.unwrap(),
        RefreshOutcome::NothingToRefresh
    );
    assert_eq!(cc.issuer.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn missing_or_malformed_secret_is_a_bad_secret() {
    let w = World::new(r#"{"kind":"client_credentials","client_id":"c"}"#);
    let err = w.container().authorization().await.unwrap_err();
    assert!(
        matches!(err, AuthError::BadSecret(ref m) if m.contains("client_secret")),
        "{err}"
    );
    w.secrets.values.lock().unwrap().clear();
    let err = w.container().authorization().await.unwrap_err();
    assert!(matches!(err, AuthError::BadSecret(_)), "{err}");
}

#[test]
fn errors_and_debug_output_never_contain_secret_values() {
    let known = [CLIENT_SECRET, REFRESH_0, API_KEY, "at-SECRET-9"];
    let secret = TenantSecret::parse(
        &format!(
            r#"{{"kind":"authorization_code","client_id":"cid","client_secret":"{CLIENT_SECRET}","refresh_token":"{REFRESH_0}","access_token":"at-SECRET-9","access_expires_at":"2026-01-01T00:00:00Z"}}"#
        )
        .into(),
    )
    .unwrap();
    let api = TenantSecret::parse(&format!(r#"{{"kind":"api_key","api_key":"{API_KEY}"}}"#).into())
        .unwrap();
    let issued = IssuedTokens {
        access_token: "at-SECRET-9".to_string().into(),
        expires_at: Utc::now(),
        refresh_token: Some(REFRESH_0.to_string().into()),
    };
    let w = World::new(&authorization_code());
    let mut texts = vec![
        format!("{secret:?}"),
        format!("{:?}", secret.grant),
        format!("{:?}", secret.cached),
        format!("{api:?}"),
        format!("{issued:?}"),
        format!("{:?}", secret.to_json()),
        format!("{:?}", w.container()),
        format!("{:?}", TokenCache::new()),
    ];
    let errors: Vec<Box<dyn std::error::Error>> = vec![
        Box::new(AuthError::InvalidGrant),
        Box::new(AuthError::InvalidClient("invalid_client".into())),
        Box::new(AuthError::BadSecret("x".into())),
        Box::new(AuthError::Transient("x".into())),
        Box::new(SecretFormatError::BadExpiry),
        Box::new(SecretFormatError::Missing("client_secret")),
        Box::new(SecretFormatError::NotAString("refresh_token")),
        Box::new(SecretFormatError::NotJson { line: 1, column: 2 }),
        Box::new(SecretFormatError::NotObject),
        Box::new(SecretFormatError::UnknownKind),
        Box::new(SecretStoreError::NotFound("eds/tenants/acme".into())),
        Box::new(SecretStoreError::NoStringValue("eds/tenants/acme".into())),
        Box::new(
            SecretName::from_config(
                "eds/tenants/x",
                DEFAULT_SECRET_PREFIX,
                &TenantId::parse("acme").unwrap(),
            )
            .unwrap_err(),
        ),
        Box::new(ConfigError::Missing("TENANTS_TABLE")),
        Box::new(token::classify_refusal(
            reqwest::StatusCode::BAD_REQUEST,
            format!(r#"{{"error":"{REFRESH_0}","refresh_token":"{REFRESH_0}"}}"#).as_bytes(),
        )),
    ];
    for e in &errors {
        texts.push(format!("{e} {e:?}"));
    }
    for t in &texts {
        for k in known {
            assert!(!t.contains(k), "{k} leaked in {t}");
        }
    }
}
