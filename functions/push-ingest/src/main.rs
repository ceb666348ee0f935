//! push-ingest: consumes the push queue (SQS standard, partial batch responses) and
//! merges each pushed record as the push layer (see `eds_shared::pipeline::push` and
//! docs/push-format.md). Needs `PUSH_QUEUE_URL` besides the common environment.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use eds_shared::lambda::{Config, SqsQueue, dynamodb_client, init_logging, sdk_config, sqs_client};
use eds_shared::pipeline::push::PushIngest;
use eds_shared::store::dynamodb::DynamoStore;
use eds_shared::tenants::TenantRegistry;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    let queue_url = std::env::var("PUSH_QUEUE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or("configuration: environment variable PUSH_QUEUE_URL is missing or empty")?;
    let sdk = sdk_config().await;
    let dynamodb = dynamodb_client(&sdk);
    let registry = Arc::new(TenantRegistry::new(
        dynamodb.clone(),
        config.tenants_table.clone(),
    ));
    let store = Arc::new(DynamoStore::new(dynamodb, config.records_table.clone()));
    let ingest = PushIngest::new(registry, store);
    let queue = SqsQueue::new(sqs_client(&sdk), queue_url);
    let (ingest, queue) = (&ingest, &queue);
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(ingest.handle_event(&event.payload, queue).await)
    }))
    .await
}
