//! Credentials and attachments against real peers: the local AWS emulator (moto:
//! Secrets Manager, DynamoDB, S3; `AWS_ENDPOINT_URL` must point at it) and the
//! Greenhouse simulator (token endpoint, v3 API, signed storage host).
//!
//! Every test creates its own uniquely named secret, table and bucket. All logs of this
//! binary go to one capturing subscriber at TRACE; every test ends by checking that none
//! of its secret values reached a log line.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use eds_shared::attachments::{
    AttachmentError, AttachmentFetcher, AttachmentSource, DownloadConfig, GuardError, HostPolicy,
    S3BlobStore,
};
use eds_shared::auth::{AccessTokens, AuthError};
use eds_shared::credentials::{
    Clock, DEFAULT_SECRET_PREFIX, DynamoRefreshLock, Grant, RefreshLock, RefreshOutcome,
    SecretName, SecretStore, SecretsManagerStore, TenantSecret, TokenCache, TokenEndpoint,
    TokenEndpointConfig, TokenGrant, TokenManager, TokenManagerConfig, TokenServices,
};
use eds_shared::domain::ids::TenantId;
use greenhouse_sim::{
    ALL_SCOPES, ExpiryStyle, RateClock, Scenario, ScenarioSpec, SimClock, SimConfig, SimHandle,
    Simulator,
};

/// The simulated Greenhouse lives in simulated time: token expiries and leases follow it.
struct SimTime(SimClock);

impl Clock for SimTime {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.now()
    }
}
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

// ---------------------------------------------------------------- log capture

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        // Everything eds and its HTTP / AWS libraries log, at TRACE. The simulator's own
        // logs are not eds output and are left out.
        let filter = tracing_subscriber::EnvFilter::new("trace,greenhouse_sim=off");
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init();
        captured
    })
}

/// Fails if any of `secrets` appears in the captured logs.
fn assert_not_logged(secrets: &Secrets) {
    let text = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
    assert!(!text.is_empty(), "the log capture recorded nothing");
    for s in secrets.all() {
        assert!(!text.contains(&s), "a secret value appeared in the logs");
    }
}

/// The secret values one test has seen.
#[derive(Default, Clone)]
struct Secrets(Arc<Mutex<BTreeSet<String>>>);

impl Secrets {
    fn add(&self, s: &str) {
        // Ignore the "Bearer " prefix: the token itself is the secret.
        let s = s.strip_prefix("Bearer ").unwrap_or(s);
        assert!(
            s.len() >= 8,
            "secret values used in tests are long enough to find"
        );
        self.0.lock().unwrap().insert(s.to_string());
    }
    fn add_header(&self, h: &SecretString) {
        self.add(h.expose_secret());
    }
    fn add_stored(&self, secret: &TenantSecret) {
        match &secret.grant {
            Grant::ApiKey { api_key } => self.add(api_key.expose_secret()),
            Grant::ClientCredentials { client_secret, .. } => {
                self.add(client_secret.expose_secret())
            }
            Grant::AuthorizationCode {
                client_secret,
                refresh_token,
                ..
            } => {
                self.add(client_secret.expose_secret());
                self.add(refresh_token.expose_secret());
            }
        }
        if let Some(c) = &secret.cached {
            self.add(c.access_token.expose_secret());
        }
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().cloned().collect()
    }
}

// ---------------------------------------------------------------- environment

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

async fn aws() -> aws_config::SdkConfig {
    logs();
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "set AWS_ENDPOINT_URL to a local moto server (make test does this)"
    );
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
        loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "tests",
        ));
    }
    if std::env::var("AWS_REGION").is_err() {
        loader = loader.region(aws_config::Region::new("us-east-1"));
    }
    loader.load().await
}

async fn create_table(conf: &aws_config::SdkConfig) -> String {
    let name = unique("tenants-");
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |n: &str, t| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .unwrap()
    };
    aws_sdk_dynamodb::Client::new(conf)
        .create_table()
        .table_name(&name)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    name
}

struct Env {
    conf: aws_config::SdkConfig,
    sim: SimHandle,
    table: String,
    tenant: TenantId,
    name: SecretName,
    store: SecretsManagerStore,
    secrets: Secrets,
    client_id: String,
    client_secret: String,
}

impl Env {
    async fn start(cfg: SimConfig) -> Self {
        let conf = aws().await;
        let spec = ScenarioSpec {
            candidates: 6,
            jobs: 2,
            ..ScenarioSpec::default()
        };
        let scenario = Scenario::generate(&spec);
        let sim = Simulator::start(cfg, scenario.truth.clone()).await.unwrap();
        let client_id = unique("client-");
        let client_secret = unique("cs-secret-value-");
        sim.add_oauth_client(&client_id, &client_secret, ALL_SCOPES);
        let secrets = Secrets::default();
        secrets.add(&client_secret);
        let tenant = TenantId::parse(unique("t")).unwrap();
        Self {
            table: create_table(&conf).await,
            store: SecretsManagerStore::from_conf(&conf),
            name: SecretName::for_tenant(&unique("eds-test/"), &tenant),
            tenant,
            conf,
            sim,
            secrets,
            client_id,
            client_secret,
        }
    }

    fn endpoint(&self) -> TokenEndpoint {
        let mut cfg = TokenEndpointConfig::new(self.sim.token_url().parse().unwrap());
        cfg.base_backoff = Duration::from_millis(20);
        TokenEndpoint::new(cfg).unwrap()
    }

    fn services(&self) -> TokenServices {
        TokenServices {
            secrets: Arc::new(self.store.clone()),
            lock: Arc::new(DynamoRefreshLock::new(
                aws_sdk_dynamodb::Client::new(&self.conf),
                self.table.clone(),
            )),
            issuer: Arc::new(self.endpoint()),
            config: TokenManagerConfig {
                lock_poll: Duration::from_millis(50),
                ..TokenManagerConfig::default()
            },
            clock: Arc::new(SimTime(self.sim.clock())),
        }
    }

    /// A token manager with a cache of its own, as in a separate container.
    fn container(&self) -> TokenManager {
        TokenManager::with_cache(self.name.clone(), self.services(), TokenCache::new())
    }

    async fn put_secret(&self, json: String) {
        self.store
            .create_or_put(&self.name, &json.into())
            .await
            .unwrap();
    }

    async fn store_client_credentials(&self) {
        self.put_secret(format!(
            r#"{{"kind":"client_credentials","client_id":"{}","client_secret":"{}"}}"#,
            self.client_id, self.client_secret
        ))
        .await;
    }

    /// The onboarding step of a partner connection: exchange a fresh authorization code
    /// and store the refresh token. Returns that first refresh token.
    async fn store_authorization_code(&self) -> String {
        let code: SecretString = self.sim.issue_authorization_code(&self.client_id, 1).into();
        let issued = self
            .endpoint()
            .request(
                &self.client_id,
                &self.client_secret.clone().into(),
                TokenGrant::AuthorizationCode {
                    code: &code,
                    redirect_uri: None,
                },
                &AtomicU64::new(0),
                self.sim.clock().now(),
            )
            .await
            .unwrap();
        let refresh = issued
            .refresh_token
            .expect("authorization_code grant returns a refresh token")
            .expose_secret()
            .to_string();
        self.secrets.add(&refresh);
        self.secrets.add(issued.access_token.expose_secret());
        self.put_secret(format!(
            r#"{{"kind":"authorization_code","client_id":"{}","client_secret":"{}","refresh_token":"{refresh}"}}"#,
            self.client_id, self.client_secret
        ))
        .await;
        refresh
    }

    async fn stored(&self) -> TenantSecret {
        let s = TenantSecret::parse(&self.store.get_current(&self.name).await.unwrap()).unwrap();
        self.secrets.add_stored(&s);
        s
    }

    /// GET one page of candidates with `header`; returns the HTTP status.
    async fn call_api(&self, header: &SecretString) -> u16 {
        self.secrets.add_header(header);
        reqwest::Client::new()
            .get(format!("{}/v3/candidates?per_page=1", self.sim.api_base()))
            .header("Authorization", header.expose_secret())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn finish(self) {
        if self.store.get_current(&self.name).await.is_ok() {
            self.stored().await;
        }
        assert_not_logged(&self.secrets);
        self.sim.shutdown().await;
    }
}

fn refresh_token_of(s: &TenantSecret) -> String {
    match &s.grant {
        Grant::AuthorizationCode { refresh_token, .. } => refresh_token.expose_secret().to_string(),
        other => panic!("unexpected kind {}", other.kind()),
    }
}

// ---------------------------------------------------------------- credentials

#[tokio::test]
async fn client_credentials_token_is_obtained_once_and_cached() {
    let env = Env::start(SimConfig::default()).await;
    env.store_client_credentials().await;
    let m = env.container();
    let first = m.authorization().await.unwrap();
    let second = m.authorization().await.unwrap();
    assert!(first.expose_secret().starts_with("Bearer "));
    assert_eq!(first.expose_secret(), second.expose_secret());
    assert_eq!(env.call_api(&first).await, 200);
    assert_eq!(env.sim.stats().token_requests, 1);
    assert_eq!(m.token_requests(), 1);
    // Another container finds the token in the secret and makes no request either.
    let other = env.container();
    assert_eq!(
        other.authorization().await.unwrap().expose_secret(),
        first.expose_secret()
    );
    assert_eq!(env.sim.stats().token_requests, 1);
    env.finish().await;
}

#[tokio::test]
async fn token_expiring_mid_use_is_refreshed_once_after_401() {
    let env = Env::start(SimConfig {
        token_expiry_style: ExpiryStyle::ExpiresIn,
        ..SimConfig::default()
    })
    .await;
    env.store_client_credentials().await;
    let m = env.container();
    let old = m.authorization().await.unwrap();
    assert_eq!(env.call_api(&old).await, 200);
    env.sim.expire_access_tokens();
    assert_eq!(env.call_api(&old).await, 401);
    let new = m.refresh_after_unauthorized(&old).await.unwrap();
    assert_ne!(new.expose_secret(), old.expose_secret());
    assert_eq!(env.call_api(&new).await, 200);
    // A second request that failed with the old token gets the new one for free.
    let again = m.refresh_after_unauthorized(&old).await.unwrap();
    assert_eq!(again.expose_secret(), new.expose_secret());
    assert_eq!(
        m.authorization().await.unwrap().expose_secret(),
        new.expose_secret()
    );
    assert_eq!(env.sim.stats().token_requests, 2);
    env.finish().await;
}

#[tokio::test]
async fn rotated_refresh_token_is_in_secrets_manager_when_the_access_token_is_returned() {
    let env = Env::start(SimConfig::default()).await;
    let initial = env.store_authorization_code().await;
    let m = env.container();
    let header = m.authorization().await.unwrap();
    // Read back straight after the call: the rotation is already stored.
    let stored = env.stored().await;
    let rotated = refresh_token_of(&stored);
    assert_ne!(rotated, initial, "the refresh token rotated");
    let cached = stored.cached.as_ref().expect("access token stored with it");
    assert_eq!(
        format!("Bearer {}", cached.access_token.expose_secret()),
        header.expose_secret()
    );
    assert!(cached.expires_at > env.sim.clock().now());
    assert_eq!(env.call_api(&header).await, 200);
    // The stored refresh token is the live one: the next rotation succeeds with it.
    let out = env.container().refresh_now().await.unwrap();
    assert!(matches!(out, RefreshOutcome::Refreshed { .. }), "{out:?}");
    assert_ne!(refresh_token_of(&env.stored().await), rotated);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_containers_refreshing_concurrently_hit_the_token_endpoint_once() {
    let env = Env::start(SimConfig::default()).await;
    env.store_authorization_code().await;
    env.sim.reset_stats();
    let (a, b) = (Arc::new(env.container()), Arc::new(env.container()));
    let (ra, rb) = tokio::join!(
        tokio::spawn({
            let a = a.clone();
            async move { a.authorization().await }
        }),
        tokio::spawn({
            let b = b.clone();
            async move { b.authorization().await }
        })
    );
    let (ha, hb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
    assert_eq!(ha.expose_secret(), hb.expose_secret());
    assert_eq!(env.sim.stats().token_requests, 1);

    // Both see the token rejected at the same moment.
    env.sim.expire_access_tokens();
    let (ra, rb) = tokio::join!(
        tokio::spawn({
            let (a, h) = (a.clone(), ha.clone());
            async move { a.refresh_after_unauthorized(&h).await }
        }),
        tokio::spawn({
            let (b, h) = (b.clone(), ha.clone());
            async move { b.refresh_after_unauthorized(&h).await }
        })
    );
    let (na, nb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
    assert_eq!(na.expose_secret(), nb.expose_secret());
    assert_eq!(env.call_api(&na).await, 200);
    assert_eq!(env.sim.stats().token_requests, 2);
    assert_eq!(a.token_requests() + b.token_requests(), 2);
    env.finish().await;
}

/// The lease is a conditional put; DynamoDB makes it atomic, and so must the emulator
/// (moto's own server does not: `infra/local/scripts/moto_server.py`). Without that, two
/// containers asking at once both "hold" the lease and one spends a rotated refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_refresh_lease_has_one_holder_when_many_containers_ask_at_once() {
    let conf = aws().await;
    let table = create_table(&conf).await;
    let lock = Arc::new(DynamoRefreshLock::new(
        aws_sdk_dynamodb::Client::new(&conf),
        table,
    ));
    // One tenant, one lease item: each round starts after the previous lease ended, so
    // every round is a race among equals for an expired lease.
    let tenant = TenantId::parse(unique("lease")).unwrap();
    let start = chrono::Utc::now();
    for round in 0..50 {
        let now = start + chrono::Duration::seconds(61 * round);
        let tries = (0..8).map(|i| {
            let (lock, tenant) = (lock.clone(), tenant.clone());
            tokio::spawn(async move {
                lock.try_acquire(&tenant, &format!("owner{i}"), now, Duration::from_secs(60))
                    .await
            })
        });
        let mut holders = 0;
        for t in futures::future::join_all(tries).await {
            holders += usize::from(t.unwrap().unwrap());
        }
        assert_eq!(
            holders, 1,
            "round {round}: {holders} containers hold the lease"
        );
    }
}

#[tokio::test]
async fn revoked_or_reused_refresh_token_is_invalid_grant() {
    let env = Env::start(SimConfig::default()).await;
    let initial = env.store_authorization_code().await;
    env.container().authorization().await.unwrap();
    env.sim.reset_stats();

    // Reused: a stale copy of the secret still holding the first (already used) token.
    env.put_secret(format!(
        r#"{{"kind":"authorization_code","client_id":"{}","client_secret":"{}","refresh_token":"{initial}"}}"#,
        env.client_id, env.client_secret
    ))
    .await;
    let err = env.container().authorization().await.unwrap_err();
    assert!(matches!(err, AuthError::InvalidGrant), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(
        env.sim.stats().token_requests,
        1,
        "invalid_grant is not retried"
    );

    // Revoked: the customer disconnected the app.
    env.store_authorization_code().await;
    env.sim.revoke_refresh_tokens(&env.client_id);
    let err = env.container().refresh_now().await.unwrap_err();
    assert!(matches!(err, AuthError::InvalidGrant), "{err}");
    env.finish().await;
}

#[tokio::test]
async fn wrong_client_secret_is_invalid_client() {
    let env = Env::start(SimConfig::default()).await;
    let wrong = unique("wrong-secret-value-");
    env.secrets.add(&wrong);
    env.put_secret(format!(
        r#"{{"kind":"client_credentials","client_id":"{}","client_secret":"{wrong}"}}"#,
        env.client_id
    ))
    .await;
    let err = env.container().authorization().await.unwrap_err();
    assert!(
        matches!(err, AuthError::InvalidClient(ref c) if c == "invalid_client"),
        "{err}"
    );
    env.finish().await;
}

#[tokio::test]
async fn api_key_is_sent_as_basic_auth_with_the_key_as_user_name_and_no_token_request() {
    let env = Env::start(SimConfig::default()).await;
    let key = unique("api-key-value-");
    env.secrets.add(&key);
    env.put_secret(format!(r#"{{"kind":"api_key","api_key":"{key}"}}"#))
        .await;
    let m = env.container();
    let header = m.authorization().await.unwrap();
    let encoded = header
        .expose_secret()
        .strip_prefix("Basic ")
        .expect("a Basic header");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert_eq!(
        decoded,
        format!("{key}:").into_bytes(),
        "key, colon, empty password"
    );
    // A key is not refreshed: a 401 on it is the end (the ATS refused the key).
    let err = m.refresh_after_unauthorized(&header).await.unwrap_err();
    assert!(matches!(err, AuthError::InvalidClient(_)), "{err:?}");
    assert_eq!(env.sim.stats().token_requests, 0);
    env.finish().await;
}

#[tokio::test]
async fn token_endpoint_rate_limit_is_a_transient_error_not_a_long_wait() {
    // The token window is fixed and 60 s long. On the wall clock the two requests below
    // could fall on both sides of a window boundary (the second then succeeds); on the
    // simulator's clock, stopped at the start of a window, both are in one window and the
    // Retry-After is the whole window.
    let env = Env::start(SimConfig {
        rate_clock: RateClock::Simulated,
        ..SimConfig::default()
    })
    .await;
    let now = env.sim.clock().now();
    env.sim
        .clock()
        .set(now - chrono::Duration::seconds(now.timestamp().rem_euclid(60)));
    env.store_client_credentials().await;
    env.sim.set_token_rate_limit(1);
    let m = env.container();
    let old = m.authorization().await.unwrap();
    env.sim.expire_access_tokens();
    // The token window is 60 s: longer than we wait inside one call.
    let err = m.refresh_after_unauthorized(&old).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("429"), "{err}");
    assert_eq!(env.sim.stats().token_requests, 2, "no retry storm");
    env.finish().await;
}

// ---------------------------------------------------------------- attachments

async fn create_bucket(conf: &aws_config::SdkConfig) -> (S3BlobStore, aws_sdk_s3::Client) {
    let name = unique("eds-att-");
    let store = S3BlobStore::from_conf(conf, &name);
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(true)
            .build(),
    );
    client.create_bucket().bucket(&name).send().await.unwrap();
    (store, client)
}

fn local_policy(hosts: &[&str], loopback: bool) -> HostPolicy {
    HostPolicy {
        allow_http: true,
        allow_loopback_for_local_testing: loopback,
        ..HostPolicy::new(hosts.iter().copied())
    }
}

/// Signed attachment URLs from the simulator's `/v3/attachments`, as (id, url).
async fn attachment_urls(env: &Env) -> Vec<(u64, String)> {
    env.store_client_credentials().await;
    let header = env.container().authorization().await.unwrap();
    env.secrets.add_header(&header);
    let rows: Vec<serde_json::Value> = reqwest::Client::new()
        .get(format!("{}/v3/attachments?per_page=5", env.sim.api_base()))
        .header("Authorization", header.expose_secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let out: Vec<(u64, String)> = rows
        .iter()
        .map(|r| {
            (
                r["id"].as_u64().unwrap(),
                r["url"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(!out.is_empty(), "the scenario has attachments");
    out
}

#[tokio::test]
async fn attachment_is_streamed_hashed_and_stored_once_for_identical_downloads() {
    let env = Env::start(SimConfig::default()).await;
    let (blobs, s3) = create_bucket(&env.conf).await;
    let bucket = blobs.bucket().to_string();
    let (id, url) = attachment_urls(&env).await.remove(0);
    let fetcher = AttachmentFetcher::new(
        DownloadConfig::new(local_policy(&["127.0.0.1"], true)),
        Arc::new(blobs),
    );
    let first = fetcher.fetch_and_store(&env.tenant, &url).await.unwrap();
    assert_eq!(first.sha256, env.sim.attachment_sha256(id));
    assert_eq!(
        first.key,
        format!("tenants/{}/attachments/sha256/{}", env.tenant, first.sha256)
    );
    assert_eq!(first.content_type.as_deref(), Some("application/pdf"));
    assert!(!first.already_stored);
    let file = eds_shared::connector::AttachmentRef {
        candidate_id: eds_shared::domain::ids::AtsId::from_u64(1),
        attachment_id: eds_shared::domain::ids::AtsId::from_u64(id),
        url: SecretString::from(url.clone()),
        filename: None,
        access: eds_shared::connector::FileAccess::SignedLink,
    };
    let second = fetcher
        .fetch_and_store_ref(&env.tenant, &file)
        .await
        .unwrap();
    assert_eq!(second.key, first.key);
    assert!(second.already_stored);

    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(format!("tenants/{}/", env.tenant))
        .send()
        .await
        .unwrap();
    let objects = listed.contents();
    assert_eq!(objects.len(), 1, "stored once");
    assert_eq!(objects[0].size(), Some(first.size as i64));
    let body = s3
        .get_object()
        .bucket(&bucket)
        .key(&first.key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(hex::encode(sha2::Sha256::digest(&body)), first.sha256);
    env.finish().await;
}

use sha2::Digest;

#[tokio::test]
async fn attachment_size_cap_aborts_the_download() {
    let env = Env::start(SimConfig::default()).await;
    let (blobs, _) = create_bucket(&env.conf).await;
    let (_, url) = attachment_urls(&env).await.remove(0);
    let mut cfg = DownloadConfig::new(local_policy(&["127.0.0.1"], true));
    cfg.max_bytes = 1024; // simulator files are at least 30 KB
    let err = AttachmentFetcher::new(cfg, Arc::new(blobs))
        .fetch_and_store(&env.tenant, &url)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AttachmentError::TooLarge { max: 1024, .. }),
        "{err}"
    );
    env.finish().await;
}

#[tokio::test]
async fn attachment_on_metadata_or_loopback_address_is_refused() {
    let env = Env::start(SimConfig::default()).await;
    let (blobs, _) = create_bucket(&env.conf).await;
    let (_, url) = attachment_urls(&env).await.remove(0);
    let before = env.sim.stats().storage_requests;

    // Loopback without the local-testing allowance, even though the host is listed.
    let strict = AttachmentFetcher::new(
        DownloadConfig::new(local_policy(&["127.0.0.1", "169.254.169.254"], false)),
        Arc::new(blobs),
    );
    let err = strict.fetch_and_store(&env.tenant, &url).await.unwrap_err();
    assert!(
        matches!(
            err,
            AttachmentError::Refused(GuardError::ForbiddenAddress { .. })
        ),
        "{err}"
    );
    assert_eq!(
        env.sim.stats().storage_requests,
        before,
        "no request was made"
    );

    for bad in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
    ] {
        let err = strict.fetch_and_store(&env.tenant, bad).await.unwrap_err();
        assert!(matches!(err, AttachmentError::Refused(_)), "{bad}: {err}");
    }
    // A host outside the allow-list is refused before any DNS lookup.
    let err = strict
        .fetch_and_store(&env.tenant, "https://example.com/file.pdf")
        .await
        .unwrap_err();
    assert!(
        matches!(err, AttachmentError::Refused(GuardError::HostNotAllowed(_))),
        "{err}"
    );
    env.finish().await;
}

/// A server that answers every request with a redirect to `location`.
async fn redirector(location: String) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    (format!("http://{addr}/file.pdf"), hits)
}

#[tokio::test]
async fn redirect_to_a_private_address_is_refused() {
    let env = Env::start(SimConfig::default()).await;
    let (blobs, _) = create_bucket(&env.conf).await;
    for target in [
        "http://10.0.0.5/internal",
        "http://169.254.169.254/latest/meta-data/",
        "http://192.168.1.10/",
    ] {
        let host = url::Url::parse(target)
            .unwrap()
            .host_str()
            .unwrap()
            .to_string();
        let (start, hits) = redirector(target.to_string()).await;
        // Even with the target host listed, its address is refused at the hop.
        let fetcher = AttachmentFetcher::new(
            DownloadConfig::new(local_policy(&["127.0.0.1", &host], true)),
            Arc::new(blobs.clone()),
        );
        let err = fetcher
            .fetch_and_store(&env.tenant, &start)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                AttachmentError::Refused(GuardError::ForbiddenAddress { .. })
            ),
            "{target}: {err}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }
    // Redirect loops end after three hops.
    let (start, hits) = redirector("/again".into()).await;
    let fetcher = AttachmentFetcher::new(
        DownloadConfig::new(local_policy(&["127.0.0.1"], true)),
        Arc::new(blobs),
    );
    let err = fetcher
        .fetch_and_store(&env.tenant, &start)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AttachmentError::TooManyRedirects { max: 3, .. }),
        "{err}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    env.finish().await;
}

#[tokio::test]
async fn expired_attachment_link_gives_a_clear_error() {
    let env = Env::start(SimConfig::default()).await;
    let (blobs, _) = create_bucket(&env.conf).await;
    let (_, url) = attachment_urls(&env).await.remove(0);
    env.sim.clock().advance(Duration::from_secs(8 * 24 * 3600));
    let err = AttachmentFetcher::new(
        DownloadConfig::new(local_policy(&["127.0.0.1"], true)),
        Arc::new(blobs),
    )
    .fetch_and_store(&env.tenant, &url)
    .await
    .unwrap_err();
    assert!(
        matches!(err, AttachmentError::LinkExpired { status: 403, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("expire"), "{text}");
    assert!(!text.contains("sig="), "the signature is not shown: {text}");
    env.finish().await;
}

// ---------------------------------------------------------------- no secret anywhere

#[tokio::test]
async fn secret_values_never_reach_logs_or_stored_items() {
    let env = Env::start(SimConfig::default()).await;
    let (blobs, s3) = create_bucket(&env.conf).await;
    let bucket = blobs.bucket().to_string();

    // Exercise every path that touches a secret: exchange, rotation, 401, invalid_grant,
    // a wrong client secret, attachments.
    env.store_authorization_code().await;
    let m = env.container();
    let h = m.authorization().await.unwrap();
    env.secrets.add_header(&h);
    env.sim.expire_access_tokens();
    let h2 = m.refresh_after_unauthorized(&h).await.unwrap();
    env.secrets.add_header(&h2);
    env.stored().await;
    env.sim.revoke_refresh_tokens(&env.client_id);
    let err = env.container().refresh_now().await.unwrap_err();
    assert!(matches!(err, AuthError::InvalidGrant));
    let (_, url) = attachment_urls(&env).await.remove(0);
    AttachmentFetcher::new(
        DownloadConfig::new(local_policy(&["127.0.0.1"], true)),
        Arc::new(blobs),
    )
    .fetch_and_store(&env.tenant, &url)
    .await
    .unwrap();
    let api_key = unique("api-key-value-");
    env.secrets.add(&api_key);
    env.put_secret(format!(r#"{{"kind":"api_key","api_key":"{api_key}"}}"#))
        .await;
    let basic = env.container().authorization().await.unwrap();
    assert!(basic.expose_secret().starts_with("Basic "));
    let secrets = env.secrets.all();
    assert!(secrets.len() >= 6, "the test saw the values it checks for");

    // DynamoDB: everything in the tenants table (the refresh leases).
    let items = aws_sdk_dynamodb::Client::new(&env.conf)
        .scan()
        .table_name(&env.table)
        .send()
        .await
        .unwrap();
    let dynamo = format!("{:?}", items.items());
    // S3: every key and body stored for the tenant.
    let mut s3_text = String::new();
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    for o in listed.contents() {
        let key = o.key().unwrap();
        s3_text.push_str(key);
        let body = s3
            .get_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        s3_text.push_str(&String::from_utf8_lossy(&body));
    }
    assert!(!s3_text.is_empty());
    for s in &secrets {
        assert!(
            !dynamo.contains(s.as_str()),
            "a secret value is stored in DynamoDB"
        );
        assert!(
            !s3_text.contains(s.as_str()),
            "a secret value is stored in S3"
        );
    }
    env.finish().await;
}

#[test]
fn secret_name_of_another_tenant_is_refused() {
    let acme = TenantId::parse("acme").unwrap();
    let err =
        SecretName::from_config("eds/tenants/globex", DEFAULT_SECRET_PREFIX, &acme).unwrap_err();
    assert!(err.to_string().contains("own secret"), "{err}");
}
