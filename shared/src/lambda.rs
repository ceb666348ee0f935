//! What every Lambda function shares: configuration from the environment (read once at
//! cold start), AWS clients built once, JSON logging, and the SQS adapter of the job
//! queue port.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::queue::{FifoMessage, JobQueue, SendError};

/// The environment the SAM template gives every function (`Globals.Function.Environment`).
#[derive(Debug, Clone)]
pub struct Config {
    pub records_table: String,
    pub tenants_table: String,
    pub attachments_bucket: String,
    pub pull_queue_url: String,
    pub disable_queue_url: String,
    pub delete_queue_url: String,
    pub secret_prefix: String,
    /// `EDS_LOCAL_TESTING=true`: the local stack's switch (D26), absent from every
    /// deployment. Plain http and loopback hosts for the ATS API, the token URL and,
    /// when the tenant asks too, attachments. Read here once; handlers get it passed.
    pub local_testing: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: environment variable {0} is missing or empty")]
pub struct ConfigError(pub &'static str);

/// Environment variables the functions read. A template test checks every one of them is
/// set for every function.
pub const ENV_VARS: &[&str] = &[
    "RECORDS_TABLE",
    "TENANTS_TABLE",
    "ATTACHMENTS_BUCKET",
    "PULL_QUEUE_URL",
    "DISABLE_QUEUE_URL",
    "DELETE_QUEUE_URL",
    "SECRET_PREFIX",
];

impl Config {
    /// The bar a tenant's API base URL and token URL must meet in this deployment.
    pub fn api_host_rules(&self) -> crate::hosts::ApiHostRules {
        crate::hosts::ApiHostRules::new(self.local_testing)
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |k: &'static str| get(k).filter(|v| !v.is_empty()).ok_or(ConfigError(k));
        Ok(Self {
            records_table: var("RECORDS_TABLE")?,
            tenants_table: var("TENANTS_TABLE")?,
            attachments_bucket: var("ATTACHMENTS_BUCKET")?,
            pull_queue_url: var("PULL_QUEUE_URL")?,
            disable_queue_url: var("DISABLE_QUEUE_URL")?,
            delete_queue_url: var("DELETE_QUEUE_URL")?,
            secret_prefix: var("SECRET_PREFIX")?,
            local_testing: get("EDS_LOCAL_TESTING").is_some_and(|v| v == "true"),
        })
    }
}

/// AWS clients, built once per container from the standard configuration chain (so
/// `AWS_ENDPOINT_URL` points them at the local emulator).
#[derive(Clone, Debug)]
pub struct Aws {
    pub sdk: aws_config::SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

/// The standard AWS configuration chain (`AWS_ENDPOINT_URL` points it at the emulator).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// A DynamoDB client alone, for functions that need no other service: a function builds
/// only the clients it calls, so the others' code is not linked into its binary (D14).
pub fn dynamodb_client(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(sdk)
}

/// An SQS client alone (see [`dynamodb_client`]).
pub fn sqs_client(sdk: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(sdk)
}

impl Aws {
    /// Every client, for functions that call all four services (puller, disable, delete).
    pub async fn from_env() -> Self {
        Self::from_sdk(&sdk_config().await)
    }

    pub fn from_sdk(sdk: &aws_config::SdkConfig) -> Self {
        // Custom S3 endpoints (an emulator, a VPC endpoint URL) need path-style
        // addressing; this follows the configuration, not a code path.
        let path_style = sdk.endpoint_url().is_some();
        Self {
            sdk: sdk.clone(),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(sdk)
                    .force_path_style(path_style)
                    .build(),
            ),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }

    /// The job queue at `url`.
    pub fn queue(&self, url: &str) -> std::sync::Arc<dyn JobQueue> {
        std::sync::Arc::new(SqsQueue::new(self.sqs.clone(), url))
    }
}

/// The Lambda deadline (milliseconds since the epoch, from the invocation context) as
/// a tokio instant.
pub fn deadline_instant(deadline_ms: u64) -> tokio::time::Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    tokio::time::Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// JSON logs for Lambda (level from `RUST_LOG`, default info), plain text on a terminal.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_target(false)
        .without_time()
        .try_init();
}

/// The SQS adapter of the [`JobQueue`] port: one queue, by URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }
}

#[async_trait]
impl JobQueue for SqsQueue {
    fn name(&self) -> &str {
        &self.url
    }

    /// Batches of 10 (the SQS maximum), retrying the entries SQS reports as failed.
    async fn enqueue(&self, messages: &[FifoMessage]) -> Result<usize, SendError> {
        let queue_url = self.url.as_str();
        let mut calls = 0;
        for chunk in messages.chunks(10) {
            let mut pending: Vec<(usize, &FifoMessage)> = chunk.iter().enumerate().collect();
            for attempt in 0..5u32 {
                if pending.is_empty() {
                    break;
                }
                let entries: Vec<_> = pending
                    .iter()
                    .map(|(i, m)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(&m.body)
                            .message_group_id(&m.group_id)
                            .message_deduplication_id(&m.dedup_id)
                            .build()
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|e| SendError {
                        queue: queue_url.to_string(),
                        detail: e.to_string(),
                    })?;
                calls += 1;
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| SendError {
                        queue: queue_url.to_string(),
                        detail: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
                    })?;
                let failed: std::collections::HashSet<String> =
                    out.failed().iter().map(|f| f.id().to_string()).collect();
                pending.retain(|(i, _)| failed.contains(&i.to_string()));
                if !pending.is_empty() {
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
            if !pending.is_empty() {
                return Err(SendError {
                    queue: queue_url.to_string(),
                    detail: format!("{} messages still failing after retries", pending.len()),
                });
            }
        }
        Ok(calls)
    }

    async fn set_visibility(&self, receipt_handle: &str, secs: i32) {
        if let Err(e) = self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await
        {
            // Not fatal: the message becomes visible when its timeout runs out.
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "could not change message visibility");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_missing_variable() {
        let err =
            Config::from_lookup(|k| (k != "PULL_QUEUE_URL").then(|| "x".to_string())).unwrap_err();
        assert_eq!(err.0, "PULL_QUEUE_URL");
        assert!(Config::from_lookup(|_| Some("x".into())).is_ok());
        assert!(Config::from_lookup(|_| Some(String::new())).is_err());
    }
}
