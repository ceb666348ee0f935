//! push-ingest: consumes the push queue (SQS standard, partial batch responses) and
//! merges each pushed record as the push layer (see `eds_shared::pipeline::push` and
//! docs/push-format.md). Needs `PUSH_QUEUE_URL` besides the common environment.

use eds_shared::invocation::Invocation;
use eds_shared::lambda::{Config, init_logging, sdk_config};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    let h = &eds_shared::wiring::push::push_ingest(&sdk_config().await, &config)?;
    run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| async move {
            let invocation = Invocation::new(event.context.deadline());
            Ok::<_, Error>(h.handle(event.payload, invocation).await)
        },
    ))
    .await
}
