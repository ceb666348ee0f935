//! Tenant secrets: the `SecretStore` port and the names secrets have. The Secrets
//! Manager adapter is `eds_shared::credentials::SecretsManagerStore`.
//!
//! A secret is addressed by a `SecretName`, which can only be built as
//! `{prefix}{tenant}`: the name a tenant configuration carries is checked against its own
//! tenant id, so no configuration (and no message) can point one tenant at another
//! tenant's secret.

use std::fmt;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::domain::ids::TenantId;

/// Default prefix of tenant secret names.
pub const DEFAULT_SECRET_PREFIX: &str = "eds/tenants/";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretNameError {
    #[error(
        "tenant {tenant}: configured secret name {configured:?} is not {expected:?}; \
         a tenant may only use its own secret"
    )]
    NotTenantsOwn {
        tenant: TenantId,
        configured: String,
        expected: String,
    },
}

/// The Secrets Manager name of one tenant's secret: always `{prefix}{tenant}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretName {
    name: String,
    tenant: TenantId,
}

impl SecretName {
    /// The name a tenant's secret must have.
    pub fn for_tenant(prefix: &str, tenant: &TenantId) -> Self {
        Self {
            name: format!("{prefix}{tenant}"),
            tenant: tenant.clone(),
        }
    }

    /// Accept the name stored in a tenant's configuration only if it is that tenant's
    /// own name (isolation: a configuration cannot borrow another tenant's secret).
    pub fn from_config(
        configured: &str,
        prefix: &str,
        tenant: &TenantId,
    ) -> Result<Self, SecretNameError> {
        let expected = Self::for_tenant(prefix, tenant);
        if configured == expected.name {
            Ok(expected)
        } else {
            Err(SecretNameError::NotTenantsOwn {
                tenant: tenant.clone(),
                configured: configured.chars().take(256).collect(),
                expected: expected.name,
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    #[error("secret {0} does not exist")]
    NotFound(String),
    #[error("secret {0} has no string value")]
    NoStringValue(String),
    /// Network or service failure. The message is the SDK's error kind, which never
    /// carries the secret value.
    #[error("secret store call {op} on {name} failed: {detail}")]
    Service {
        op: &'static str,
        name: String,
        detail: String,
    },
}

/// Read and write tenant secrets.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The current version (`AWSCURRENT`) of the secret.
    async fn get_current(&self, name: &SecretName) -> Result<SecretString, SecretStoreError>;

    /// Store `value` as the new current version.
    async fn put_new_version(
        &self,
        name: &SecretName,
        value: &SecretString,
    ) -> Result<(), SecretStoreError>;

    /// Delete the secret at once, without a recovery window; false when there was none.
    async fn delete_now(&self, name: &SecretName) -> Result<bool, SecretStoreError>;

    /// Whether the secret is gone (or its deletion, which the store may finish
    /// asynchronously, has begun).
    async fn is_gone(&self, name: &SecretName) -> Result<bool, SecretStoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_name_must_be_the_tenants_own() {
        let acme = TenantId::parse("acme").unwrap();
        let ok = SecretName::from_config("eds/tenants/acme", DEFAULT_SECRET_PREFIX, &acme).unwrap();
        assert_eq!(ok.as_str(), "eds/tenants/acme");
        assert_eq!(ok.tenant(), &acme);
        for bad in [
            "eds/tenants/other",
            "eds/tenants/acme2",
            "eds/tenants/acme/../other",
            "other/eds/tenants/acme",
            "eds/tenants/",
            "",
        ] {
            assert!(
                SecretName::from_config(bad, DEFAULT_SECRET_PREFIX, &acme).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
