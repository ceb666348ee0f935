//! Credentials: API keys (HTTP Basic, key as user name, empty password) and OAuth 2.0
//! authorization-code clients with rotating refresh tokens. Pure state transitions over
//! simulated milliseconds; the HTTP layer lives in `server`.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::model::SCOPE_OFFLINE;

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// The rate-limit bucket: one per API key or OAuth client.
    pub credential: String,
    pub scopes: Vec<String>,
}

impl Principal {
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

#[derive(Debug, Clone)]
struct Client {
    secret: String,
    scopes: Vec<String>,
}

#[derive(Debug, Clone)]
struct Access {
    client_id: String,
    scopes: Vec<String>,
    expires: i64,
}

#[derive(Debug, Clone)]
struct Refresh {
    client_id: String,
    scopes: Vec<String>,
    /// The authorization-code grant the token descends from.
    family: u64,
    family_started: i64,
    issued: i64,
    /// Rotated: used once already.
    used: bool,
}

#[derive(Debug, Clone)]
struct Code {
    client_id: String,
    scopes: Vec<String>,
    redirect_uri: Option<String>,
    expires: i64,
    used: bool,
}

/// Why a token request failed, as the OAuth error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GrantError {
    InvalidClient,
    InvalidGrant(&'static str),
    InvalidRequest(&'static str),
    UnsupportedGrantType,
}

impl GrantError {
    pub fn code(&self) -> &'static str {
        match self {
            GrantError::InvalidClient => "invalid_client",
            GrantError::InvalidGrant(_) => "invalid_grant",
            GrantError::InvalidRequest(_) => "invalid_request",
            GrantError::UnsupportedGrantType => "unsupported_grant_type",
        }
    }
    pub fn description(&self) -> &'static str {
        match self {
            GrantError::InvalidClient => "Client authentication failed",
            GrantError::InvalidGrant(d) | GrantError::InvalidRequest(d) => d,
            GrantError::UnsupportedGrantType => "Unsupported grant type",
        }
    }
}

/// A successful grant.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: i64,
    pub scope: String,
}

/// Lifetimes and rules of the token endpoint, in milliseconds.
#[derive(Debug, Clone)]
pub(crate) struct GrantRules {
    pub now: i64,
    pub access_ttl: i64,
    pub refresh_max_ttl: i64,
    pub refresh_idle_ttl: i64,
    pub audience: String,
    pub require_audience_on_refresh: bool,
    pub revoke_family_on_reuse: bool,
}

/// Why a bearer token or API key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthError {
    Unknown,
    Expired,
}

#[derive(Debug, Default)]
pub(crate) struct AuthState {
    clients: HashMap<String, Client>,
    api_keys: HashMap<String, Vec<String>>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    codes: HashMap<String, Code>,
    counter: u64,
    secret: Vec<u8>,
}

fn owned(s: &[&str]) -> Vec<String> {
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
        format!("{kind}_{}", hex::encode(&h.finalize()[..24]))
    }

    pub fn add_client(&mut self, id: &str, secret: &str, scopes: &[&str]) {
        self.clients.insert(
            id.into(),
            Client {
                secret: secret.into(),
                scopes: owned(scopes),
            },
        );
    }

    pub fn add_api_key(&mut self, key: &str, scopes: &[&str]) {
        self.api_keys.insert(key.into(), owned(scopes));
    }

    pub fn revoke_api_key(&mut self, key: &str) {
        self.api_keys.remove(key);
    }

    /// A code for `client_id` consenting to `scopes` (`None`: all the client's scopes).
    pub fn issue_code(
        &mut self,
        client_id: &str,
        scopes: Option<&[&str]>,
        redirect_uri: Option<&str>,
        expires: i64,
    ) -> String {
        let scopes = match scopes {
            Some(s) => owned(s),
            None => self
                .clients
                .get(client_id)
                .map(|c| c.scopes.clone())
                .unwrap_or_default(),
        };
        let code = self.mint("code");
        self.codes.insert(
            code.clone(),
            Code {
                client_id: client_id.into(),
                scopes,
                redirect_uri: redirect_uri.map(str::to_string),
                expires,
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

    fn issue(
        &mut self,
        client_id: &str,
        scopes: Vec<String>,
        family: Option<(u64, i64)>,
        r: &GrantRules,
    ) -> Issued {
        let access_token = self.mint("lvr_at");
        self.access.insert(
            access_token.clone(),
            Access {
                client_id: client_id.into(),
                scopes: scopes.clone(),
                expires: r.now + r.access_ttl,
            },
        );
        // Without offline_access no refresh token is issued.
        let refresh_token = scopes.iter().any(|s| s == SCOPE_OFFLINE).then(|| {
            let (family, family_started) = family.unwrap_or_else(|| {
                self.counter += 1;
                (self.counter, r.now)
            });
            let t = self.mint("lvr_rt");
            self.refresh.insert(
                t.clone(),
                Refresh {
                    client_id: client_id.into(),
                    scopes: scopes.clone(),
                    family,
                    family_started,
                    issued: r.now,
                    used: false,
                },
            );
            t
        });
        Issued {
            access_token,
            refresh_token,
            expires_in: r.access_ttl / 1000,
            scope: scopes.join(" "),
        }
    }

    /// Runs one grant. The client authenticates with `client_id` / `client_secret`.
    pub fn grant(
        &mut self,
        form: &HashMap<String, String>,
        r: &GrantRules,
    ) -> Result<Issued, GrantError> {
        let get = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let grant_type = get("grant_type").ok_or(GrantError::InvalidRequest(
            "Missing required parameter: grant_type",
        ))?;
        if !matches!(grant_type, "authorization_code" | "refresh_token") {
            return Err(GrantError::UnsupportedGrantType);
        }
        let client_id = get("client_id").ok_or(GrantError::InvalidClient)?;
        match self.clients.get(client_id) {
            Some(c) if Some(c.secret.as_str()) == get("client_secret") => {}
            _ => return Err(GrantError::InvalidClient),
        }
        let audience = get("audience");
        if audience.is_some_and(|a| a != r.audience) {
            return Err(GrantError::InvalidRequest("Service not found: audience"));
        }
        if grant_type == "authorization_code" {
            if audience.is_none() {
                return Err(GrantError::InvalidRequest(
                    "Missing required parameter: audience",
                ));
            }
            let code = get("code").ok_or(GrantError::InvalidRequest(
                "Missing required parameter: code",
            ))?;
            let redirect = get("redirect_uri").ok_or(GrantError::InvalidRequest(
                "Missing required parameter: redirect_uri",
            ))?;
            let c = self
                .codes
                .get_mut(code)
                .ok_or(GrantError::InvalidGrant("Invalid authorization code"))?;
            if c.used || c.client_id != client_id || c.expires <= r.now {
                return Err(GrantError::InvalidGrant("Invalid authorization code"));
            }
            if c.redirect_uri.as_deref().is_some_and(|u| u != redirect) {
                return Err(GrantError::InvalidGrant(
                    "redirect_uri does not match the authorization request",
                ));
            }
            c.used = true;
            let scopes = c.scopes.clone();
            return Ok(self.issue(client_id, scopes, None, r));
        }
        if r.require_audience_on_refresh && audience.is_none() {
            return Err(GrantError::InvalidRequest(
                "Missing required parameter: audience",
            ));
        }
        let t = get("refresh_token").ok_or(GrantError::InvalidRequest(
            "Missing required parameter: refresh_token",
        ))?;
        let rt = self
            .refresh
            .get(t)
            .cloned()
            .ok_or(GrantError::InvalidGrant(
                "Unknown or invalid refresh token.",
            ))?;
        if rt.client_id != client_id {
            return Err(GrantError::InvalidGrant(
                "Unknown or invalid refresh token.",
            ));
        }
        if rt.used {
            if r.revoke_family_on_reuse {
                self.refresh.retain(|_, x| x.family != rt.family);
            }
            return Err(GrantError::InvalidGrant(
                "Unknown or invalid refresh token.",
            ));
        }
        if r.now >= rt.family_started + r.refresh_max_ttl || r.now >= rt.issued + r.refresh_idle_ttl
        {
            return Err(GrantError::InvalidGrant("Refresh token expired."));
        }
        if let Some(x) = self.refresh.get_mut(t) {
            x.used = true;
        }
        Ok(self.issue(
            client_id,
            rt.scopes,
            Some((rt.family, rt.family_started)),
            r,
        ))
    }

    pub fn bearer(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        let a = self.access.get(token).ok_or(AuthError::Unknown)?;
        if a.expires <= now {
            return Err(AuthError::Expired);
        }
        Ok(Principal {
            credential: format!("oauth:{}", a.client_id),
            scopes: a.scopes.clone(),
        })
    }

    pub fn api_key(&self, key: &str, password: &str) -> Result<Principal, AuthError> {
        match self.api_keys.get(key) {
            Some(scopes) if password.is_empty() => Ok(Principal {
                credential: format!("apikey:{key}"),
                scopes: scopes.clone(),
            }),
            _ => Err(AuthError::Unknown),
        }
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

    fn rules(now: i64) -> GrantRules {
        GrantRules {
            now,
            access_ttl: 10,
            refresh_max_ttl: 1_000,
            refresh_idle_ttl: 100,
            audience: "aud".into(),
            require_audience_on_refresh: false,
            revoke_family_on_reuse: false,
        }
    }

    fn code_grant(a: &mut AuthState, code: &str, now: i64) -> Result<Issued, GrantError> {
        a.grant(
            &form(&[
                ("grant_type", "authorization_code"),
                ("client_id", "c"),
                ("client_secret", "x"),
                ("code", code),
                ("redirect_uri", "https://x/cb"),
                ("audience", "aud"),
            ]),
            &rules(now),
        )
    }

    fn refresh(a: &mut AuthState, rt: &str, now: i64) -> Result<Issued, GrantError> {
        a.grant(
            &form(&[
                ("grant_type", "refresh_token"),
                ("client_id", "c"),
                ("client_secret", "x"),
                ("refresh_token", rt),
            ]),
            &rules(now),
        )
    }

    #[test]
    fn refresh_tokens_rotate_die_on_reuse_and_expire_idle_or_at_the_maximum() {
        let mut a = AuthState::new(b"s".to_vec());
        a.add_client("c", "x", &["opportunities:read:admin", SCOPE_OFFLINE]);
        let code = a.issue_code("c", None, None, 50);
        let first = code_grant(&mut a, &code, 1).unwrap();
        assert!(matches!(
            code_grant(&mut a, &code, 1),
            Err(GrantError::InvalidGrant(_))
        ));
        let rt = first.refresh_token.unwrap();
        let second = refresh(&mut a, &rt, 2).unwrap();
        assert!(matches!(
            refresh(&mut a, &rt, 3),
            Err(GrantError::InvalidGrant(_))
        ));
        let rt2 = second.refresh_token.unwrap();
        assert!(
            refresh(&mut a, &rt2, 2 + 100).is_err(),
            "idle for the idle lifetime"
        );
        // Used every 90 ms, the family still dies at its maximum age.
        let t = a.issue_code("c", None, None, 2_000);
        let mut rt = code_grant(&mut a, &t, 0).unwrap().refresh_token.unwrap();
        for now in (90..1_000).step_by(90) {
            rt = refresh(&mut a, &rt, now).unwrap().refresh_token.unwrap();
        }
        assert!(refresh(&mut a, &rt, 1_000).is_err());
        assert!(a.bearer(&second.access_token, 5).is_ok());
        assert_eq!(
            a.bearer(&second.access_token, 12).unwrap_err(),
            AuthError::Expired
        );
    }

    #[test]
    fn without_offline_access_no_refresh_token_is_issued() {
        let mut a = AuthState::new(b"s".to_vec());
        a.add_client("c", "x", &["opportunities:read:admin", SCOPE_OFFLINE]);
        let code = a.issue_code("c", Some(&["opportunities:read:admin"]), None, 50);
        let i = code_grant(&mut a, &code, 1).unwrap();
        assert!(i.refresh_token.is_none());
        assert_eq!(i.scope, "opportunities:read:admin");
    }
}
