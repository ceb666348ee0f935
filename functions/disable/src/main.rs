//! disable: triggered by the settings event `tenant.disable_requested` and by its own
//! FIFO continuation queue; fences the pull and makes every view push-only (see
//! `eds_shared::pipeline::disable`).

use eds_shared::lambda::{Aws, Config, init_logging};
use eds_shared::pipeline::disable::Deadline;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    let aws = Aws::from_env().await;
    let disabler = &eds_shared::wiring::disable::disabler(&aws, &config);
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let deadline = Deadline::at(event.context.deadline());
            Ok::<_, Error>(disabler.handle(event.payload, deadline).await?)
        },
    ))
    .await
}
