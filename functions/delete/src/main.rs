//! delete: triggered by the settings event `tenant.deletion_requested` and by its own
//! FIFO continuation queue; purges the tenant's data and writes a deletion receipt (see
//! `eds_shared::pipeline::delete`).

use eds_shared::lambda::{Aws, Config, init_logging};
use eds_shared::pipeline::disable::Deadline;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    let aws = Aws::from_env().await;
    let deleter = &eds_shared::wiring::delete::deleter(&aws, &config);
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let deadline = Deadline::at(event.context.deadline());
            Ok::<_, Error>(deleter.handle(event.payload, deadline).await?)
        },
    ))
    .await
}
