//! records-api: the Function URL (IAM auth) downstream features read records from (see
//! `eds_shared::pipeline::records_api` and docs/records-api.md).

use eds_shared::invocation::Invocation;
use eds_shared::lambda::{Config, init_logging, sdk_config};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    let h = &eds_shared::wiring::records_api::records_api(&sdk_config().await, &config)?;
    run(service_fn(
        move |event: LambdaEvent<
            aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest,
        >| async move {
            let invocation = Invocation::new(event.context.deadline());
            Ok::<_, Error>(h.handle(event.payload, invocation).await)
        },
    ))
    .await
}
