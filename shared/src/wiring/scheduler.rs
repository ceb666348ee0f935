//! The scheduler as deployed.

use std::sync::Arc;

use super::BuildError;
use crate::connector::catalog;
use crate::lambda::{Config, SqsQueue, dynamodb_client, sqs_client};
use crate::pipeline::scheduler::Scheduler;
use crate::tenants::TenantRegistry;

/// The scheduler: the tenants table's due index, enqueuing on the pull queue. Builds only
/// the DynamoDB and SQS clients (D14).
pub fn scheduler(sdk: &aws_config::SdkConfig, config: &Config) -> Result<Scheduler, BuildError> {
    let registry = Arc::new(TenantRegistry::new(
        dynamodb_client(sdk),
        config.tenants_table.clone(),
    ));
    let queue = Arc::new(SqsQueue::new(
        sqs_client(sdk),
        config.pull_queue_url.clone(),
    ));
    Ok(Scheduler::new(registry, queue, catalog::plan))
}
