//! The records API as deployed.

use std::sync::Arc;

use super::BuildError;
use crate::lambda::{Config, dynamodb_client};
use crate::pipeline::records_api::RecordsApi;
use crate::store::dynamodb::DynamoStore;
use crate::tenants::TenantRegistry;

/// The records API: reads only, on one DynamoDB client.
pub fn records_api(sdk: &aws_config::SdkConfig, config: &Config) -> Result<RecordsApi, BuildError> {
    let dynamodb = dynamodb_client(sdk);
    let registry = Arc::new(TenantRegistry::new(
        dynamodb.clone(),
        config.tenants_table.clone(),
    ));
    let store = Arc::new(DynamoStore::new(dynamodb, config.records_table.clone()));
    Ok(RecordsApi::new(registry, store.clone(), store))
}
