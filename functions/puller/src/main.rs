//! puller: consumes the FIFO pull queue (batch item failures reported) and runs each
//! tenant's pull job page by page (see `eds_shared::pipeline::puller`).

// The handler future (batch -> job -> steps -> SDK calls) is deep for the type checker.
#![recursion_limit = "256"]

use eds_shared::invocation::Invocation;
use eds_shared::lambda::{Config, init_logging, sdk_config};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    let h = &eds_shared::wiring::puller::puller(&sdk_config().await, &config)?;
    run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| async move {
            let invocation = Invocation::new(event.context.deadline());
            Ok::<_, Error>(h.handle(event.payload, invocation).await.0)
        },
    ))
    .await
}
