//! The puller as deployed.

use std::sync::Arc;

use super::{blobs, registry, store};
use crate::attachments::deployment_allows_local_testing;
use crate::auth::AuthError;
use crate::connector::providers::Providers;
use crate::credentials::CredentialsConfig;
use crate::lambda::{Aws, Config};
use crate::pipeline::puller::{Puller, PullerSettings};

/// The puller: the provider registry with the credentials adapter, continuing on the
/// pull queue.
pub fn puller(
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
        allow_loopback_for_local_testing: deployment_allows_local_testing(),
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
