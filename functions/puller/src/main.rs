//! puller: consumes the FIFO pull queue (batch item failures reported) and runs each
//! tenant's pull job page by page (see `eds_shared::pipeline::puller`).

// The handler future (batch -> job -> steps -> SDK calls) is deep for the type checker.
#![recursion_limit = "256"]

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use eds_shared::credentials::CredentialsConfig;
use eds_shared::lambda::{Aws, Config, deadline_instant, init_logging};
use eds_shared::pipeline::puller::PullerSettings;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    let aws = Aws::from_env().await;
    let credentials = CredentialsConfig::from_env()?;
    let puller = eds_shared::wiring::puller::puller(
        &aws,
        &config,
        credentials,
        PullerSettings::default(),
        false,
    )?;
    let puller = &puller;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = deadline_instant(event.context.deadline);
        let (response, _report) = puller.handle_batch(&event.payload, deadline).await;
        Ok::<SqsBatchResponse, Error>(response)
    }))
    .await
}
