//! settings: handles settings-change events from the settings bus (see
//! `eds_shared::pipeline::settings` and docs/events.md). A rejected event returns an
//! error, so EventBridge retries it and then sends it to the rule's DLQ.

use eds_shared::invocation::Invocation;
use eds_shared::lambda::{Config, init_logging, sdk_config};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    let h = &eds_shared::wiring::settings::settings(&sdk_config().await, &config)?;
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
