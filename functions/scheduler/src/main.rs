//! scheduler: triggered by an EventBridge schedule every minute; enqueues one pull job
//! per due tenant (see `eds_shared::pipeline::scheduler`).

use eds_shared::invocation::Invocation;
use eds_shared::lambda::{Config, init_logging, sdk_config};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    let h = &eds_shared::wiring::scheduler::scheduler(&sdk_config().await, &config)?;
    run(service_fn(
        move |event: LambdaEvent<
            aws_lambda_events::event::eventbridge::EventBridgeEvent<serde_json::Value>,
        >| async move {
            let invocation = Invocation::new(event.context.deadline());
            Ok::<_, Error>(serde_json::to_value(
                h.handle(event.payload, invocation).await?,
            )?)
        },
    ))
    .await
}
