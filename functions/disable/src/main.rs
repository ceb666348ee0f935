//! disable: triggered by the settings event `tenant.disable_requested` and by its own
//! FIFO continuation queue; fences the pull and makes every view push-only (see
//! `eds_shared::pipeline::disable`).

use eds_shared::invocation::Invocation;
use eds_shared::lambda::{Config, init_logging, sdk_config};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    let h = &eds_shared::wiring::disable::disabler(&sdk_config().await, &config)?;
    run(service_fn(
        move |event: LambdaEvent<eds_shared::invocation::LifecycleEvent>| async move {
            let invocation = Invocation::new(event.context.deadline());
            Ok::<_, Error>(serde_json::to_value(
                h.handle(event.payload, invocation).await?,
            )?)
        },
    ))
    .await
}
