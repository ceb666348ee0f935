//! The puller as deployed.

use std::sync::Arc;

use super::{BuildError, blobs, registry, store};
use crate::auth::AuthError;
use crate::connector::providers::Providers;
use crate::credentials::CredentialsConfig;
use crate::lambda::{Aws, Config};
use crate::pipeline::puller::{Puller, PullerSettings};

/// The puller as the function runs it: the credentials adapter configured from the
/// environment, the default settings.
pub fn puller(sdk: &aws_config::SdkConfig, config: &Config) -> Result<Puller, BuildError> {
    let credentials = CredentialsConfig::from_env()?;
    Ok(puller_with(
        &Aws::from_sdk(sdk),
        config,
        credentials,
        PullerSettings::default(),
        false,
    )?)
}

/// The puller with explicit credentials configuration and settings (`edsctl sync`, the
/// tests): the provider registry with the credentials adapter, continuing on the pull
/// queue.
pub fn puller_with(
    aws: &Aws,
    config: &Config,
    credentials: CredentialsConfig,
    settings: PullerSettings,
    fast_retries: bool,
) -> Result<Puller, AuthError> {
    let services = credentials.services(&aws.sdk)?;
    let blobs = blobs(aws, config);
    let providers = Providers {
        credentials,
        services,
        blobs: blobs.clone(),
        allow_loopback_for_local_testing: config.local_testing,
        fast_retries,
    };
    Ok(Puller {
        registry: registry(aws, config),
        store: store(aws, config),
        queue: aws.queue(&config.pull_queue_url),
        blobs,
        factory: Arc::new(providers),
        settings,
    })
}
