//! settings: handles settings-change events from the settings bus (see
//! `eds_shared::pipeline::settings` and docs/events.md). A rejected event returns an
//! error, so EventBridge retries it and then sends it to the rule's DLQ.

use std::sync::Arc;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use eds_shared::credentials::CredentialsConfig;
use eds_shared::credentials::TokenCheck;
use eds_shared::lambda::{Config, dynamodb_client, init_logging, sdk_config};
use eds_shared::pipeline::settings::Settings;
use eds_shared::tenants::TenantRegistry;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    let sdk = sdk_config().await;
    let credentials = CredentialsConfig::from_env()?;
    let services = credentials.services(&sdk)?;
    let registry = Arc::new(TenantRegistry::new(
        dynamodb_client(&sdk),
        config.tenants_table.clone(),
    ));
    let settings = Settings::new(
        registry,
        TokenCheck::new(credentials, services),
        config.secret_prefix.clone(),
    );
    let settings = &settings;
    run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            let outcome = settings.handle(&event.payload, chrono::Utc::now()).await?;
            Ok::<_, Error>(serde_json::to_value(outcome)?)
        },
    ))
    .await
}
