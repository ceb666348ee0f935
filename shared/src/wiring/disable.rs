//! The disable handler as deployed.

use super::{BuildError, registry, store};
use crate::lambda::{Aws, Config};
use crate::pipeline::disable::Disabler;

/// The disable handler, continuing on the disable queue.
pub fn disabler(sdk: &aws_config::SdkConfig, config: &Config) -> Result<Disabler, BuildError> {
    Ok(disabler_on(&Aws::from_sdk(sdk), config))
}

/// The same on given clients (instrumented ones in the benchmarks).
pub fn disabler_on(aws: &Aws, config: &Config) -> Disabler {
    Disabler::new(
        registry(aws, config),
        store(aws, config),
        aws.queue(&config.disable_queue_url),
    )
}
