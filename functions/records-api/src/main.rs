//! records-api: the Function URL (IAM auth) downstream features read records from (see
//! `eds_shared::pipeline::records_api` and docs/records-api.md).

use std::sync::Arc;

use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use eds_shared::lambda::{Config, dynamodb_client, init_logging, sdk_config};
use eds_shared::pipeline::records_api::RecordsApi;
use eds_shared::store::dynamodb::DynamoStore;
use eds_shared::tenants::TenantRegistry;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    let dynamodb = dynamodb_client(&sdk_config().await);
    let registry = Arc::new(TenantRegistry::new(
        dynamodb.clone(),
        config.tenants_table.clone(),
    ));
    let store = Arc::new(DynamoStore::new(dynamodb, config.records_table.clone()));
    let api = RecordsApi::new(registry, store.clone(), store);
    let api = &api;
    run(service_fn(
        move |event: LambdaEvent<LambdaFunctionUrlRequest>| async move {
            Ok::<LambdaFunctionUrlResponse, Error>(api.handle(&event.payload).await)
        },
    ))
    .await
}
