//! The push ingest as deployed.

use std::sync::Arc;

use super::BuildError;
use crate::lambda::{Config, ConfigError, SqsQueue, dynamodb_client, sqs_client};
use crate::pipeline::push::PushIngest;
use crate::store::dynamodb::DynamoStore;
use crate::tenants::TenantRegistry;

/// The push ingest: the registry and the record store on one DynamoDB client, failed
/// messages handed back on the push queue (`PUSH_QUEUE_URL`, the one variable only this
/// function has).
pub fn push_ingest(sdk: &aws_config::SdkConfig, config: &Config) -> Result<PushIngest, BuildError> {
    let queue_url = std::env::var("PUSH_QUEUE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError("PUSH_QUEUE_URL"))?;
    let dynamodb = dynamodb_client(sdk);
    let registry = Arc::new(TenantRegistry::new(
        dynamodb.clone(),
        config.tenants_table.clone(),
    ));
    let store = Arc::new(DynamoStore::new(dynamodb, config.records_table.clone()));
    let queue = Arc::new(SqsQueue::new(sqs_client(sdk), queue_url));
    Ok(PushIngest::new(registry, store, queue))
}
