//! scheduler: triggered by an EventBridge schedule every minute; enqueues one pull job
//! per due tenant (see `eds_shared::pipeline::scheduler`).

use std::sync::Arc;

use eds_shared::lambda::{Config, SqsQueue, dynamodb_client, init_logging, sdk_config, sqs_client};
use eds_shared::pipeline::scheduler::Scheduler;
use eds_shared::tenants::TenantRegistry;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    let sdk = sdk_config().await;
    let registry = Arc::new(TenantRegistry::new(
        dynamodb_client(&sdk),
        config.tenants_table.clone(),
    ));
    let scheduler = Scheduler::new(
        registry,
        Arc::new(SqsQueue::new(
            sqs_client(&sdk),
            config.pull_queue_url.clone(),
        )),
    );
    let scheduler = &scheduler;
    // The schedule's payload carries nothing we need: the time is taken from the clock.
    run(service_fn(
        move |_event: LambdaEvent<serde_json::Value>| async move {
            let report = scheduler.run(chrono::Utc::now()).await?;
            Ok::<_, Error>(serde_json::to_value(report)?)
        },
    ))
    .await
}
