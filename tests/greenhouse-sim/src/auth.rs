//! Credentials: OAuth clients, authorization codes, access and refresh tokens (v3), and
//! users who are not Site Admins. Pure state transitions over the
//! simulated time; the HTTP layer lives in `server`.

use std::collections::{HashMap, HashSet};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// The rate-limit bucket: one per OAuth client or API key.
    pub credential: String,
    pub scopes: Vec<String>,
    pub sub: Option<u64>,
}

#[derive(Debug, Clone)]
struct Client {
    secret: String,
    scopes: Vec<String>,
}

#[derive(Debug, Clone)]
struct Access {
    client_id: String,
    sub: Option<u64>,
    scopes: Vec<String>,
    expires: i64,
}

#[derive(Debug, Clone)]
struct Refresh {
    client_id: String,
    sub: Option<u64>,
    expires: i64,
    used: bool,
}

#[derive(Debug, Clone)]
struct Code {
    client_id: String,
    user: u64,
    expires: i64,
    used: bool,
}

/// Why a token request failed, as the OAuth error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrantError {
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    UnsupportedGrantType,
}

impl GrantError {
    pub fn code(self) -> &'static str {
        match self {
            GrantError::InvalidClient => "invalid_client",
            GrantError::InvalidGrant => "invalid_grant",
            GrantError::InvalidRequest => "invalid_request",
            GrantError::UnsupportedGrantType => "unsupported_grant_type",
        }
    }
    pub fn status(self) -> u16 {
        if self == GrantError::InvalidClient {
            401
        } else {
            400
        }
    }
}

/// A successful grant.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires: i64,
    pub scope: String,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenError {
    Unknown,
    Expired,
}

#[derive(Debug, Default)]
pub(crate) struct AuthState {
    clients: HashMap<String, Client>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    codes: HashMap<String, Code>,
    pub non_admins: HashSet<u64>,
    counter: u64,
    secret: Vec<u8>,
}

fn scopes_of(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

impl AuthState {
    pub fn new(secret: Vec<u8>) -> Self {
        AuthState {
            secret,
            ..Default::default()
        }
    }

    fn mint(&mut self, kind: &str) -> String {
        self.counter += 1;
        let mut h = Sha256::new();
        h.update(&self.secret);
        h.update(kind.as_bytes());
        h.update(self.counter.to_le_bytes());
        let d = h.finalize();
        format!("{kind}_{}", hex::encode(&d[..20]))
    }

    fn mint_jwt(&mut self, client_id: &str, sub: Option<u64>, exp: i64) -> String {
        self.counter += 1;
        let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = json!({"iss": "greenhouse-sim", "client_id": client_id, "sub": sub, "exp": exp / 1000, "jti": self.counter});
        let body = URL_SAFE_NO_PAD.encode(body.to_string());
        let mut h = Sha256::new();
        h.update(&self.secret);
        h.update(head.as_bytes());
        h.update(body.as_bytes());
        format!("{head}.{body}.{}", URL_SAFE_NO_PAD.encode(h.finalize()))
    }

    pub fn add_client(&mut self, id: &str, secret: &str, scopes: &[&str]) {
        self.clients.insert(
            id.into(),
            Client {
                secret: secret.into(),
                scopes: scopes_of(scopes),
            },
        );
    }

    pub fn issue_code(&mut self, client_id: &str, user: u64, now: i64, ttl_ms: i64) -> String {
        let code = self.mint("code");
        self.codes.insert(
            code.clone(),
            Code {
                client_id: client_id.into(),
                user,
                expires: now + ttl_ms,
                used: false,
            },
        );
        code
    }

    pub fn revoke_refresh(&mut self, client_id: &str) {
        self.refresh.retain(|_, r| r.client_id != client_id);
    }

    pub fn expire_access(&mut self) {
        for a in self.access.values_mut() {
            a.expires = i64::MIN;
        }
    }

    /// Client authentication for the token endpoint.
    pub fn check_client(&self, id: &str, secret: &str) -> Result<(), GrantError> {
        match self.clients.get(id) {
            Some(c) if c.secret == secret => Ok(()),
            _ => Err(GrantError::InvalidClient),
        }
    }

    fn issue(
        &mut self,
        client_id: &str,
        sub: Option<u64>,
        with_refresh: bool,
        now: i64,
        access_ttl: i64,
        refresh_ttl: i64,
    ) -> Issued {
        let scopes = self
            .clients
            .get(client_id)
            .map(|c| c.scopes.clone())
            .unwrap_or_default();
        let expires = now + access_ttl;
        let access_token = self.mint_jwt(client_id, sub, expires);
        self.access.insert(
            access_token.clone(),
            Access {
                client_id: client_id.into(),
                sub,
                scopes: scopes.clone(),
                expires,
            },
        );
        let refresh_token = with_refresh.then(|| {
            let t = self.mint("rt");
            self.refresh.insert(
                t.clone(),
                Refresh {
                    client_id: client_id.into(),
                    sub,
                    expires: now + refresh_ttl,
                    used: false,
                },
            );
            t
        });
        Issued {
            access_token,
            refresh_token,
            expires,
            scope: scopes.join(" "),
        }
    }

    /// Runs one grant for an authenticated client.
    pub fn grant(
        &mut self,
        client_id: &str,
        form: &HashMap<String, String>,
        now: i64,
        access_ttl: i64,
        refresh_ttl: i64,
    ) -> Result<Issued, GrantError> {
        match form.get("grant_type").map(String::as_str) {
            Some("client_credentials") => {
                let sub = match form.get("sub") {
                    None => None,
                    Some(s) => Some(s.parse::<u64>().map_err(|_| GrantError::InvalidRequest)?),
                };
                Ok(self.issue(client_id, sub, false, now, access_ttl, refresh_ttl))
            }
            Some("authorization_code") => {
                let code = form.get("code").ok_or(GrantError::InvalidRequest)?;
                let c = self.codes.get_mut(code).ok_or(GrantError::InvalidGrant)?;
                if c.used || c.client_id != client_id || c.expires <= now {
                    return Err(GrantError::InvalidGrant);
                }
                c.used = true;
                let user = c.user;
                Ok(self.issue(client_id, Some(user), true, now, access_ttl, refresh_ttl))
            }
            Some("refresh_token") => {
                let t = form
                    .get("refresh_token")
                    .ok_or(GrantError::InvalidRequest)?;
                let r = self.refresh.get_mut(t).ok_or(GrantError::InvalidGrant)?;
                if r.used || r.client_id != client_id || r.expires <= now {
                    return Err(GrantError::InvalidGrant);
                }
                // Single use: the presented token dies, a new one takes its place.
                r.used = true;
                let sub = r.sub;
                Ok(self.issue(client_id, sub, true, now, access_ttl, refresh_ttl))
            }
            Some(_) => Err(GrantError::UnsupportedGrantType),
            None => Err(GrantError::InvalidRequest),
        }
    }

    pub fn bearer(&self, token: &str, now: i64) -> Result<Principal, TokenError> {
        let a = self.access.get(token).ok_or(TokenError::Unknown)?;
        if a.expires <= now {
            return Err(TokenError::Expired);
        }
        Ok(Principal {
            credential: format!("oauth:{}", a.client_id),
            scopes: a.scopes.clone(),
            sub: a.sub,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn refresh_tokens_rotate_and_die_on_reuse() {
        let mut a = AuthState::new(b"s".to_vec());
        a.add_client("c", "x", &["harvest:jobs:list"]);
        let code = a.issue_code("c", 7, 0, 60_000);
        let first = a
            .grant(
                "c",
                &form(&[("grant_type", "authorization_code"), ("code", &code)]),
                1,
                10,
                100,
            )
            .unwrap();
        assert_eq!(
            a.grant(
                "c",
                &form(&[("grant_type", "authorization_code"), ("code", &code)]),
                1,
                10,
                100
            )
            .unwrap_err(),
            GrantError::InvalidGrant
        );
        let rt = first.refresh_token.unwrap();
        let second = a
            .grant(
                "c",
                &form(&[("grant_type", "refresh_token"), ("refresh_token", &rt)]),
                2,
                10,
                100,
            )
            .unwrap();
        assert_ne!(second.refresh_token.as_deref(), Some(rt.as_str()));
        assert_eq!(
            a.grant(
                "c",
                &form(&[("grant_type", "refresh_token"), ("refresh_token", &rt)]),
                3,
                10,
                100
            )
            .unwrap_err(),
            GrantError::InvalidGrant
        );
        let rt2 = second.refresh_token.unwrap();
        assert_eq!(
            a.grant(
                "c",
                &form(&[("grant_type", "refresh_token"), ("refresh_token", &rt2)]),
                500,
                10,
                100
            )
            .unwrap_err(),
            GrantError::InvalidGrant,
            "idle expiry"
        );
        assert!(a.bearer(&second.access_token, 5).is_ok());
        assert_eq!(
            a.bearer(&second.access_token, 50).unwrap_err(),
            TokenError::Expired
        );
    }
}
