//! The settings handler as deployed.

use std::sync::Arc;

use super::BuildError;
use crate::credentials::{CredentialsConfig, TokenCheck};
use crate::lambda::{Config, dynamodb_client};
use crate::pipeline::settings::Settings;
use crate::tenants::TenantRegistry;

/// The settings handler: the tenant registry, and the credential check through the
/// credentials adapter (a real token request at enable time).
pub fn settings(
    sdk: &aws_config::SdkConfig,
    config: &Config,
) -> Result<Settings<TokenCheck>, BuildError> {
    let credentials = CredentialsConfig::from_env()?;
    let services = credentials.services(sdk)?;
    let registry = Arc::new(TenantRegistry::new(
        dynamodb_client(sdk),
        config.tenants_table.clone(),
    ));
    Ok(Settings::new(
        registry,
        TokenCheck::new(credentials, services, config.local_testing),
        config.secret_prefix.clone(),
        config.api_host_rules(),
    ))
}
