//! Identifier newtypes. Parsing validates once ("parse, don't validate"), so that a
//! tenant id can never be confused with a record id and never carries characters that
//! could escape a key prefix (`#`, `/`, `..`, whitespace).

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("{kind} must be 1..={max} characters, got {len}")]
    Length {
        kind: &'static str,
        max: usize,
        len: usize,
    },
    #[error("{kind} may only contain {allowed}; found {found:?}")]
    Character {
        kind: &'static str,
        allowed: &'static str,
        found: char,
    },
    #[error("unknown entity kind {0:?} (expected candidate, application or job)")]
    Entity(String),
}

/// A customer of eds with one ATS connection: lowercase ASCII letters, digits and `-`,
/// starting with a letter or digit, at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(IdError::Length {
                kind: "tenant id",
                max: Self::MAX_LEN,
                len: s.len(),
            });
        }
        for (i, c) in s.chars().enumerate() {
            let ok = c.is_ascii_lowercase() || c.is_ascii_digit() || (c == '-' && i > 0);
            if !ok {
                return Err(IdError::Character {
                    kind: "tenant id",
                    allowed: "a-z, 0-9 and '-' (not first)",
                    found: c,
                });
            }
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ATS's own identifier of a record. Greenhouse ids are integers, other ATSs use
/// strings: we keep the decimal or string form, restricted to `[A-Za-z0-9_.-]`, at most
/// 128 characters, so that it can be embedded in a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AtsId(String);

impl AtsId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(IdError::Length {
                kind: "ATS id",
                max: Self::MAX_LEN,
                len: s.len(),
            });
        }
        if s == "." || s == ".." {
            return Err(IdError::Character {
                kind: "ATS id",
                allowed: "A-Z, a-z, 0-9, '_', '-', '.' (not only dots)",
                found: '.',
            });
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(IdError::Character {
                kind: "ATS id",
                allowed: "A-Z, a-z, 0-9, '_', '-', '.'",
                found: c,
            });
        }
        Ok(Self(s))
    }

    pub fn from_u64(n: u64) -> Self {
        Self(n.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AtsId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<AtsId> for String {
    fn from(t: AtsId) -> String {
        t.0
    }
}

impl fmt::Display for AtsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kinds of record eds keeps. Attachments are not records of their own: they are a
/// keyed collection inside the candidate (see `model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Candidate,
    Application,
    Job,
}

impl EntityKind {
    pub const ALL: [EntityKind; 3] = [
        EntityKind::Candidate,
        EntityKind::Application,
        EntityKind::Job,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Candidate => "candidate",
            EntityKind::Application => "application",
            EntityKind::Job => "job",
        }
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        match s {
            "candidate" => Ok(EntityKind::Candidate),
            "application" => Ok(EntityKind::Application),
            "job" => Ok(EntityKind::Job),
            other => Err(IdError::Entity(other.chars().take(64).collect())),
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity of one record: (tenant, entity, ATS id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordKey {
    pub tenant: TenantId,
    pub entity: EntityKind,
    pub ats_id: AtsId,
}

impl RecordKey {
    pub fn new(tenant: TenantId, entity: EntityKind, ats_id: AtsId) -> Self {
        Self {
            tenant,
            entity,
            ats_id,
        }
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.entity, self.ats_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_id_rejects_key_and_path_characters() {
        for bad in ["", "A", "a#b", "a/b", "../x", "a b", "-a", "a\u{0}"] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(TenantId::parse("acme-1").unwrap().as_str(), "acme-1");
        assert!(TenantId::parse("x".repeat(65)).is_err());
    }

    #[test]
    fn ats_id_rejects_separators_and_dot_only() {
        for bad in ["", "..", ".", "1#2", "1/2", "a b", "é"] {
            assert!(AtsId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(AtsId::from_u64(42).as_str(), "42");
        assert!(AtsId::parse("gh_123-a.b").is_ok());
    }

    #[test]
    fn ids_deserialize_through_validation() {
        assert!(serde_json::from_str::<TenantId>("\"a#b\"").is_err());
        assert!(serde_json::from_str::<EntityKind>("\"widget\"").is_err());
        let k: RecordKey =
            serde_json::from_str(r#"{"tenant":"t1","entity":"job","ats_id":"9"}"#).unwrap();
        assert_eq!(k.to_string(), "t1/job/9");
    }
}
