//! The OAuth token endpoint client (Greenhouse: `POST https://auth.greenhouse.io/token`,
//! HTTP Basic client authentication, form-encoded body).
//!
//! Classification is what matters here: `invalid_grant` must surface as its own error
//! (the tenant needs a person to reconnect, retrying cannot help), wrong client
//! credentials as a configuration error, and only 5xx, 408/429 and network failures are
//! retried, a bounded number of times with jittered backoff.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::attachments::guard::ApiHostRules;
use crate::auth::AuthError;

/// Default Greenhouse token endpoint.
pub const GREENHOUSE_TOKEN_URL: &str = "https://auth.greenhouse.io/token";

/// Largest token endpoint response read (success or error): a token response is a few
/// hundred bytes; anything beyond this is refused (success) or cut (error) unread.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// Greenhouse access tokens live one hour; used when a response gives no expiry.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// The grant to present to the token endpoint.
pub enum TokenGrant<'a> {
    ClientCredentials {
        sub: Option<&'a str>,
    },
    RefreshToken(&'a SecretString),
    /// Onboarding only: exchange the one-minute authorization code for the first tokens.
    AuthorizationCode {
        code: &'a SecretString,
        redirect_uri: Option<&'a str>,
    },
}

impl TokenGrant<'_> {
    fn form(&self) -> Vec<(&'static str, String)> {
        match self {
            TokenGrant::ClientCredentials { sub } => {
                let mut f = vec![("grant_type", "client_credentials".to_string())];
                if let Some(sub) = sub {
                    f.push(("sub", (*sub).to_string()));
                }
                f
            }
            TokenGrant::RefreshToken(t) => vec![
                ("grant_type", "refresh_token".to_string()),
                ("refresh_token", t.expose_secret().to_string()),
            ],
            TokenGrant::AuthorizationCode { code, redirect_uri } => {
                let mut f = vec![
                    ("grant_type", "authorization_code".to_string()),
                    ("code", code.expose_secret().to_string()),
                ];
                if let Some(r) = redirect_uri {
                    f.push(("redirect_uri", (*r).to_string()));
                }
                f
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            TokenGrant::ClientCredentials { .. } => "client_credentials",
            TokenGrant::RefreshToken(_) => "refresh_token",
            TokenGrant::AuthorizationCode { .. } => "authorization_code",
        }
    }
}

/// What the token endpoint issued.
pub struct IssuedTokens {
    pub access_token: SecretString,
    pub expires_at: DateTime<Utc>,
    /// The rotated refresh token, when the grant returns one.
    pub refresh_token: Option<SecretString>,
}

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("expires_at", &self.expires_at)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct RawResponse {
    access_token: String,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    #[serde(default)]
    error: Option<String>,
}

/// Retry and timeout settings of the token endpoint client.
#[derive(Debug, Clone)]
pub struct TokenEndpointConfig {
    pub url: Url,
    /// Attempts per token request (first try included).
    pub max_attempts: u32,
    pub request_timeout: Duration,
    pub base_backoff: Duration,
    /// A `Retry-After` longer than this is not waited out: the caller gets `Transient`.
    pub max_retry_after: Duration,
    /// The bar a tenant's token URL must meet, also after DNS resolution; `None` for
    /// the deployment's own token URL.
    pub host_rules: Option<ApiHostRules>,
    /// An `audience` form field sent with every grant (Lever requires it on the code
    /// grant, and checks it on a refresh when sent).
    pub audience: Option<String>,
}

impl TokenEndpointConfig {
    pub fn new(url: Url) -> Self {
        Self {
            url,
            max_attempts: 3,
            request_timeout: Duration::from_secs(10),
            base_backoff: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(10),
            host_rules: None,
            audience: None,
        }
    }

    /// The token endpoint of a tenant's configured `auth_url`: https on a public host
    /// only (plain http and loopback too when `local_testing`, i.e.
    /// `EDS_LOCAL_TESTING`), checked when the client is built and on every DNS answer,
    /// so that the client secret never goes to an internal address.
    pub fn for_tenant(url: Url, local_testing: bool) -> Self {
        Self {
            host_rules: Some(ApiHostRules::new(local_testing)),
            ..Self::new(url)
        }
    }
}

/// Client of one OAuth token endpoint.
#[derive(Clone, Debug)]
pub struct TokenEndpoint {
    http: reqwest::Client,
    config: TokenEndpointConfig,
}

impl TokenEndpoint {
    pub fn new(config: TokenEndpointConfig) -> Result<Self, AuthError> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            // A token response is never a redirect; following one would send the client
            // secret to wherever it points.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(rules) = config.host_rules {
            rules
                .check_url(&config.url)
                .map_err(|why| AuthError::BadSecret(format!("the token URL {why}")))?;
            builder = builder.dns_resolver(crate::attachments::guard::checked_resolver(rules));
        }
        let http = builder
            .build()
            .map_err(|e| AuthError::Transient(format!("cannot build HTTP client: {e}")))?;
        Ok(Self { http, config })
    }

    pub fn url(&self) -> &Url {
        &self.config.url
    }

    /// Request tokens. `requests` counts every HTTP attempt (for run metrics); `now` is
    /// the caller's clock, from which an `expires_in` answer is turned into an instant.
    pub async fn request(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        grant: TokenGrant<'_>,
        requests: &AtomicU64,
        now: DateTime<Utc>,
    ) -> Result<IssuedTokens, AuthError> {
        let mut auth = HeaderValue::from_str(&format!(
            "Basic {}",
            B64.encode(format!("{client_id}:{}", client_secret.expose_secret()))
        ))
        .map_err(|_| {
            AuthError::BadSecret("client id or secret contains characters not allowed".into())
        })?;
        auth.set_sensitive(true);
        let mut form = grant.form();
        if let Some(a) = &self.config.audience {
            form.push(("audience", a.clone()));
        }
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            requests.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .http
                .post(self.config.url.clone())
                .header(AUTHORIZATION, auth.clone())
                .form(&form)
                .send()
                .await;
            let last = attempt >= self.config.max_attempts;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    // reqwest errors name the URL (ours, no secret in it) and the cause.
                    let msg = format!("token endpoint unreachable: {}", e.without_url());
                    tracing::warn!(attempt, grant = grant.name(), error = %msg, "token request failed");
                    if last {
                        return Err(AuthError::Transient(msg));
                    }
                    tokio::time::sleep(self.backoff(attempt)).await;
                    continue;
                }
            };
            let status = resp.status();
            if status.is_success() {
                let body = match read_capped(resp).await {
                    Ok((body, false)) => body,
                    Ok((_, true)) => {
                        return Err(AuthError::Transient(format!(
                            "token response larger than {MAX_TOKEN_RESPONSE_BYTES} bytes: refused"
                        )));
                    }
                    Err(e) => {
                        return Err(AuthError::Transient(format!(
                            "token response not read: {}",
                            e.without_url()
                        )));
                    }
                };
                return parse_success(&body, now);
            }
            if status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
                || status.is_server_error()
            {
                let wait = retry_after(resp.headers().get(RETRY_AFTER))
                    .unwrap_or_else(|| self.backoff(attempt));
                tracing::warn!(
                    attempt,
                    grant = grant.name(),
                    status = status.as_u16(),
                    "token endpoint busy"
                );
                if last || wait > self.config.max_retry_after {
                    return Err(AuthError::Transient(format!(
                        "token endpoint answered {status} after {attempt} attempt(s)"
                    )));
                }
                tokio::time::sleep(wait).await;
                continue;
            }
            // Only the OAuth error code is used: the head of the body is enough.
            let body = read_capped(resp).await.map(|(b, _)| b).unwrap_or_default();
            return Err(classify_refusal(status, &body));
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.config.base_backoff * 2u32.saturating_pow(attempt.saturating_sub(1));
        let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
    }
}

/// Reads at most [`MAX_TOKEN_RESPONSE_BYTES`]; `true`: there was more (left unread).
async fn read_capped(mut resp: reqwest::Response) -> Result<(Vec<u8>, bool), reqwest::Error> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_TOKEN_RESPONSE_BYTES as u64)
    {
        return Ok((Vec::new(), true));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_TOKEN_RESPONSE_BYTES - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

fn retry_after(v: Option<&HeaderValue>) -> Option<Duration> {
    let secs: u64 = v?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// Turn a 2xx body into tokens, accepting `expires_at` (RFC 3339) or `expires_in`
/// (seconds, number or numeric string).
pub(crate) fn parse_success(body: &[u8], now: DateTime<Utc>) -> Result<IssuedTokens, AuthError> {
    let raw: RawResponse = serde_json::from_slice(body).map_err(|_| {
        // serde's message could quote a token: say only what is wrong.
        AuthError::Transient("token endpoint response has no usable access_token".into())
    })?;
    if raw.access_token.is_empty() {
        return Err(AuthError::Transient(
            "token endpoint returned an empty access_token".into(),
        ));
    }
    let expires_at = if let Some(at) = raw.expires_at.as_deref() {
        DateTime::parse_from_rfc3339(at)
            .map_err(|_| AuthError::Transient("token response expires_at is not RFC 3339".into()))?
            .with_timezone(&Utc)
    } else if let Some(v) = raw.expires_in.as_ref() {
        let secs = match v {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|s| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| AuthError::Transient("token response expires_in is not a number".into()))?;
        now + chrono::Duration::milliseconds((secs * 1000.0) as i64)
    } else {
        now + chrono::Duration::from_std(DEFAULT_LIFETIME).unwrap_or_default()
    };
    Ok(IssuedTokens {
        access_token: raw.access_token.into(),
        expires_at,
        refresh_token: raw.refresh_token.filter(|t| !t.is_empty()).map(Into::into),
    })
}

/// Map a 4xx refusal to the error the pipeline acts on. Only the OAuth error code is
/// kept, and only when it looks like one, so that a body echoing a token never reaches
/// an error message.
pub(crate) fn classify_refusal(status: StatusCode, body: &[u8]) -> AuthError {
    let code = serde_json::from_slice::<RawError>(body)
        .ok()
        .and_then(|e| e.error)
        .filter(|c| c.len() <= 40 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    match code.as_deref() {
        Some("invalid_grant") => AuthError::InvalidGrant,
        Some(c @ ("invalid_client" | "unauthorized_client")) => AuthError::InvalidClient(c.into()),
        Some(c) => AuthError::InvalidClient(format!("{c}, HTTP {}", status.as_u16())),
        None if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => {
            AuthError::InvalidClient(format!("HTTP {}", status.as_u16()))
        }
        None => AuthError::Transient(format!("token endpoint answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn expiry_is_read_from_expires_at_or_expires_in() {
        let a = parse_success(
            br#"{"access_token":"a","token_type":"Bearer","expires_at":"2026-01-01T12:00:00Z","refresh_token":"r"}"#,
            now(),
        )
        .unwrap();
        assert_eq!(a.expires_at.to_rfc3339(), "2026-01-01T12:00:00+00:00");
        assert_eq!(a.refresh_token.unwrap().expose_secret(), "r");
        let b = parse_success(br#"{"access_token":"a","expires_in":3600}"#, now()).unwrap();
        assert_eq!(b.expires_at, now() + chrono::Duration::hours(1));
        assert!(b.refresh_token.is_none());
        let c = parse_success(br#"{"access_token":"a","expires_in":"60"}"#, now()).unwrap();
        assert_eq!(c.expires_at, now() + chrono::Duration::seconds(60));
        let d = parse_success(br#"{"access_token":"a"}"#, now()).unwrap();
        assert_eq!(d.expires_at, now() + chrono::Duration::hours(1));
    }

    #[test]
    fn malformed_success_body_never_echoes_it() {
        for body in [
            &br#"{"access_token":["TOPSECRET"]}"#[..],
            br#"{"access_token":"TOPSECRET","expires_at":"TOPSECRET"}"#,
            br#"TOPSECRET"#,
        ] {
            let e = parse_success(body, now()).unwrap_err();
            assert!(!format!("{e} {e:?}").contains("TOPSECRET"));
            assert!(e.is_retryable());
        }
    }

    #[test]
    fn refusals_are_classified_by_oauth_error_code() {
        let s400 = StatusCode::BAD_REQUEST;
        assert!(matches!(
            classify_refusal(s400, br#"{"error":"invalid_grant"}"#),
            AuthError::InvalidGrant
        ));
        assert!(matches!(
            classify_refusal(StatusCode::UNAUTHORIZED, br#"{"error":"invalid_client"}"#),
            AuthError::InvalidClient(c) if c == "invalid_client"
        ));
        assert!(matches!(
            classify_refusal(s400, br#"{"error":"unauthorized_client"}"#),
            AuthError::InvalidClient(_)
        ));
        assert!(matches!(
            classify_refusal(StatusCode::UNAUTHORIZED, b"nope"),
            AuthError::InvalidClient(_)
        ));
        assert!(matches!(
            classify_refusal(StatusCode::NOT_FOUND, b""),
            AuthError::Transient(_)
        ));
        // An error "code" that is really an echoed token is not repeated.
        let e = classify_refusal(s400, br#"{"error":"Bearer ABC.DEF-123"}"#);
        assert!(!e.to_string().contains("ABC.DEF"));
    }

    #[test]
    fn grant_forms_carry_the_expected_parameters() {
        let rt: SecretString = "r1".to_string().into();
        let f = TokenGrant::RefreshToken(&rt).form();
        assert_eq!(f[0], ("grant_type", "refresh_token".to_string()));
        assert_eq!(f[1], ("refresh_token", "r1".to_string()));
        let f = TokenGrant::ClientCredentials { sub: Some("9") }.form();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1], ("sub", "9".to_string()));
    }
}
