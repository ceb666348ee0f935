//! Where tenant secrets live: the Secrets Manager adapter of the `SecretStore` port
//! (`eds_core::secrets`, re-exported here with `SecretName`).

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use secrecy::{ExposeSecret, SecretString};

pub use eds_core::secrets::*;

/// Secrets Manager adapter.
#[derive(Clone, Debug)]
pub struct SecretsManagerStore {
    client: Client,
}

impl SecretsManagerStore {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub fn from_conf(conf: &aws_config::SdkConfig) -> Self {
        Self::new(Client::new(conf))
    }

    /// Create the secret, or put a new version if it exists (used when credentials are
    /// first set up by an operator, and by tests).
    pub async fn create_or_put(
        &self,
        name: &SecretName,
        value: &SecretString,
    ) -> Result<(), SecretStoreError> {
        let created = self
            .client
            .create_secret()
            .name(name.as_str())
            .secret_string(value.expose_secret())
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_exists_exception()) =>
            {
                self.put_new_version(name, value).await
            }
            Err(e) => Err(service_error("CreateSecret", name, &e)),
        }
    }
}

fn service_error<E: std::error::Error + 'static>(
    op: &'static str,
    name: &SecretName,
    e: &E,
) -> SecretStoreError {
    // Only the error chain of the SDK, which describes the failure (timeouts, throttling,
    // access denied) and never echoes the request's secret string.
    let mut detail = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        src = s.source();
    }
    SecretStoreError::Service {
        op,
        name: name.to_string(),
        detail,
    }
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn get_current(&self, name: &SecretName) -> Result<SecretString, SecretStoreError> {
        // moto (and stale caches in general) may answer with an older version unless the
        // stage is asked for explicitly.
        let out = self
            .client
            .get_secret_value()
            .secret_id(name.as_str())
            .version_stage("AWSCURRENT")
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception())
                {
                    SecretStoreError::NotFound(name.to_string())
                } else {
                    service_error("GetSecretValue", name, &e)
                }
            })?;
        out.secret_string()
            .map(|s| SecretString::from(s.to_owned()))
            .ok_or_else(|| SecretStoreError::NoStringValue(name.to_string()))
    }

    async fn put_new_version(
        &self,
        name: &SecretName,
        value: &SecretString,
    ) -> Result<(), SecretStoreError> {
        self.client
            .put_secret_value()
            .secret_id(name.as_str())
            .secret_string(value.expose_secret())
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception())
                {
                    SecretStoreError::NotFound(name.to_string())
                } else {
                    service_error("PutSecretValue", name, &e)
                }
            })?;
        Ok(())
    }

    async fn delete_now(&self, name: &SecretName) -> Result<bool, SecretStoreError> {
        match self
            .client
            .delete_secret()
            .secret_id(name.as_str())
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(service_error("DeleteSecret", name, &e)),
        }
    }

    async fn is_gone(&self, name: &SecretName) -> Result<bool, SecretStoreError> {
        match self
            .client
            .describe_secret()
            .secret_id(name.as_str())
            .send()
            .await
        {
            Ok(d) => Ok(d.deleted_date().is_some()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(true)
            }
            Err(e) => Err(service_error("DescribeSecret", name, &e)),
        }
    }
}
