//! The delete handler as deployed.

use std::sync::Arc;

use super::{BuildError, blobs, registry, store};
use crate::credentials::store::SecretsManagerStore;
use crate::lambda::{Aws, Config};
use crate::pipeline::delete::Deleter;

/// The delete handler, continuing on the delete queue.
pub fn deleter(sdk: &aws_config::SdkConfig, config: &Config) -> Result<Deleter, BuildError> {
    Ok(deleter_on(&Aws::from_sdk(sdk), config))
}

/// The same on given clients (instrumented ones in the benchmarks).
pub fn deleter_on(aws: &Aws, config: &Config) -> Deleter {
    Deleter::new(
        registry(aws, config),
        store(aws, config),
        blobs(aws, config),
        Arc::new(SecretsManagerStore::new(aws.secrets.clone())),
        aws.queue(&config.delete_queue_url),
        config.secret_prefix.clone(),
    )
}
