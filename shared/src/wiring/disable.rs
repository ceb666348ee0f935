//! The disable handler as deployed.

use super::{registry, store};
use crate::lambda::{Aws, Config};
use crate::pipeline::disable::Disabler;

/// The disable handler, continuing on the disable queue.
pub fn disabler(aws: &Aws, config: &Config) -> Disabler {
    Disabler::new(
        registry(aws, config),
        store(aws, config),
        aws.queue(&config.disable_queue_url),
    )
}
