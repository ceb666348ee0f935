//! The tenant secret as stored in Secrets Manager, parsed into types that never print a
//! secret value.
//!
//! Parsing goes through `serde_json::Value` and hand-written field extraction on purpose:
//! serde's own "invalid type" errors quote the offending value, and the offending value
//! may be a token. Every error here names the field, never its content.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

/// Why a stored secret could not be used. Messages name fields, never values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretFormatError {
    #[error("the secret is not a JSON object (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    #[error("the secret is not a JSON object")]
    NotObject,
    #[error("the secret has no string field `{0}`")]
    Missing(&'static str),
    #[error("the secret field `{0}` must be a non-empty string")]
    NotAString(&'static str),
    #[error("the secret field `access_expires_at` is not an RFC 3339 timestamp")]
    BadExpiry,
    #[error("unknown secret kind (expected api_key, client_credentials or authorization_code)")]
    UnknownKind,
}

/// How the tenant authenticates to the ATS.
pub enum Grant {
    /// Harvest v1: Basic auth with the key as user name and an empty password.
    ApiKey { api_key: SecretString },
    /// OAuth client credentials (customer-built integration); `sub` is the Greenhouse
    /// user id the token acts as.
    ClientCredentials {
        client_id: String,
        client_secret: SecretString,
        sub: Option<String>,
    },
    /// OAuth authorization code (partner integration): the refresh token rotates on every
    /// use and must be persisted before the new access token is used.
    AuthorizationCode {
        client_id: String,
        client_secret: SecretString,
        refresh_token: SecretString,
    },
}

impl Grant {
    pub fn kind(&self) -> &'static str {
        match self {
            Grant::ApiKey { .. } => "api_key",
            Grant::ClientCredentials { .. } => "client_credentials",
            Grant::AuthorizationCode { .. } => "authorization_code",
        }
    }

    pub fn is_oauth(&self) -> bool {
        !matches!(self, Grant::ApiKey { .. })
    }
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // client_id is an identifier, not a secret, but it is of no use in a log line
        // either; only the kind is printed.
        f.debug_struct("Grant")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

/// An access token cached inside the secret so that other containers can reuse it
/// instead of calling the token endpoint.
#[derive(Clone)]
pub struct CachedAccess {
    pub access_token: SecretString,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for CachedAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedAccess")
            .field("access_token", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The whole secret value of one tenant.
#[derive(Debug)]
pub struct TenantSecret {
    pub grant: Grant,
    pub cached: Option<CachedAccess>,
}

impl TenantSecret {
    /// Parse the JSON stored in Secrets Manager (format in the module doc of
    /// `credentials`). Unknown fields are ignored so that operators may add notes.
    pub fn parse(raw: &SecretString) -> Result<Self, SecretFormatError> {
        let value: Value =
            serde_json::from_str(raw.expose_secret()).map_err(|e| SecretFormatError::NotJson {
                line: e.line(),
                column: e.column(),
            })?;
        let Value::Object(map) = value else {
            return Err(SecretFormatError::NotObject);
        };
        let kind = required(&map, "kind")?;
        let grant = match kind.as_str() {
            "api_key" => Grant::ApiKey {
                api_key: required(&map, "api_key")?.into(),
            },
            "client_credentials" => Grant::ClientCredentials {
                client_id: required(&map, "client_id")?,
                client_secret: required(&map, "client_secret")?.into(),
                sub: optional(&map, "sub")?,
            },
            "authorization_code" => Grant::AuthorizationCode {
                client_id: required(&map, "client_id")?,
                client_secret: required(&map, "client_secret")?.into(),
                refresh_token: required(&map, "refresh_token")?.into(),
            },
            _ => return Err(SecretFormatError::UnknownKind),
        };
        let cached = match (
            optional(&map, "access_token")?,
            optional(&map, "access_expires_at")?,
        ) {
            (Some(token), Some(at)) => Some(CachedAccess {
                access_token: token.into(),
                expires_at: DateTime::parse_from_rfc3339(&at)
                    .map_err(|_| SecretFormatError::BadExpiry)?
                    .with_timezone(&Utc),
            }),
            // A token without an expiry cannot be trusted to be fresh: ignore it.
            _ => None,
        };
        Ok(Self { grant, cached })
    }

    /// The JSON to store as the new secret version. This is the only place where secret
    /// values are serialised, and the result is itself a `SecretString`.
    pub fn to_json(&self) -> SecretString {
        let mut map = Map::new();
        map.insert("kind".into(), self.grant.kind().into());
        match &self.grant {
            Grant::ApiKey { api_key } => {
                map.insert("api_key".into(), api_key.expose_secret().into());
            }
            Grant::ClientCredentials {
                client_id,
                client_secret,
                sub,
            } => {
                map.insert("client_id".into(), client_id.as_str().into());
                map.insert("client_secret".into(), client_secret.expose_secret().into());
                if let Some(sub) = sub {
                    map.insert("sub".into(), sub.as_str().into());
                }
            }
            Grant::AuthorizationCode {
                client_id,
                client_secret,
                refresh_token,
            } => {
                map.insert("client_id".into(), client_id.as_str().into());
                map.insert("client_secret".into(), client_secret.expose_secret().into());
                map.insert("refresh_token".into(), refresh_token.expose_secret().into());
            }
        }
        if let Some(c) = &self.cached {
            map.insert("access_token".into(), c.access_token.expose_secret().into());
            map.insert(
                "access_expires_at".into(),
                c.expires_at
                    .to_rfc3339_opts(SecondsFormat::Millis, true)
                    .into(),
            );
        }
        Value::Object(map).to_string().into()
    }
}

fn required(map: &Map<String, Value>, field: &'static str) -> Result<String, SecretFormatError> {
    optional(map, field)?.ok_or(SecretFormatError::Missing(field))
}

fn optional(
    map: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, SecretFormatError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        // Greenhouse user ids are integers; accept `sub` given as a number.
        Some(Value::Number(n)) if field == "sub" => Ok(Some(n.to_string())),
        Some(_) => Err(SecretFormatError::NotAString(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> SecretString {
        v.to_string().into()
    }

    #[test]
    fn parses_each_kind_and_round_trips() {
        for raw in [
            r#"{"kind":"api_key","api_key":"k-123"}"#,
            r#"{"kind":"client_credentials","client_id":"c","client_secret":"cs","sub":"77"}"#,
            r#"{"kind":"authorization_code","client_id":"c","client_secret":"cs","refresh_token":"r1","access_token":"a1","access_expires_at":"2026-01-01T12:00:00.000Z"}"#,
        ] {
            let parsed = TenantSecret::parse(&s(raw)).unwrap();
            let again = TenantSecret::parse(&parsed.to_json()).unwrap();
            let a: Value = serde_json::from_str(raw).unwrap();
            let b: Value = serde_json::from_str(again.to_json().expose_secret()).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn numeric_sub_is_accepted_as_user_id() {
        let p = TenantSecret::parse(&s(
            r#"{"kind":"client_credentials","client_id":"c","client_secret":"cs","sub":42}"#,
        ))
        .unwrap();
        assert!(matches!(p.grant, Grant::ClientCredentials { sub: Some(ref v), .. } if v == "42"));
    }

    #[test]
    fn access_token_without_expiry_is_ignored() {
        let p = TenantSecret::parse(&s(
            r#"{"kind":"client_credentials","client_id":"c","client_secret":"cs","access_token":"a"}"#,
        ))
        .unwrap();
        assert!(p.cached.is_none());
    }

    #[test]
    fn format_errors_name_fields_not_values() {
        let cases = [
            (r#"not json SECRETVALUE"#, "not a JSON object"),
            (r#"["SECRETVALUE"]"#, "not a JSON object"),
            (r#"{"kind":"api_key"}"#, "api_key"),
            (r#"{"kind":"api_key","api_key":["SECRETVALUE"]}"#, "api_key"),
            (r#"{"kind":"SECRETVALUE"}"#, "unknown secret kind"),
            (
                r#"{"kind":"api_key","api_key":"k","access_token":"SECRETVALUE","access_expires_at":"SECRETVALUE"}"#,
                "access_expires_at",
            ),
        ];
        for (raw, expect) in cases {
            let err = TenantSecret::parse(&s(raw)).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(text.contains(expect), "{text}");
            assert!(!text.contains("SECRETVALUE"), "{text}");
        }
    }
}
