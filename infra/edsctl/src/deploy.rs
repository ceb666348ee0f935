//! Which deployment edsctl talks to, and the clients for it.
//!
//! Two ways, both through the standard AWS configuration chain (`AWS_PROFILE`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`, ...):
//! * the environment the functions themselves read (`RECORDS_TABLE`, `TENANTS_TABLE`,
//!   ..., `eds_shared::lambda::Config::from_env`), plus the optional `PUSH_QUEUE_URL`
//!   and `SETTINGS_BUS_NAME`, for a deployed stack;
//! * `--stage NAME` against the local emulator: the template's resources for that stage
//!   are provisioned (idempotently) by `eds_local::provision`, and their names used.
//!   Refused without `AWS_ENDPOINT_URL`, so a typo never creates tables in a real account.

use eds_local::{LocalStack, Template, provision, sdk_config_from_env, template_path};
use eds_shared::credentials::{CredentialsConfig, GREENHOUSE_TOKEN_URL};
use eds_shared::lambda::{Aws, Config};
use eds_shared::store::dynamodb::DynamoStore;
use eds_shared::tenants::TenantRegistry;

use crate::error::CliError;

/// A resolved deployment: names, clients, and where they came from.
pub struct Deployment {
    pub config: Config,
    pub aws: Aws,
    /// The push queue (push-ingest's event source), when known.
    pub push_queue_url: Option<String>,
    /// The settings bus, when known: lifecycle and settings events are also put on it.
    pub settings_bus: Option<String>,
    /// `AWS_ENDPOINT_URL`, when set (for error messages).
    pub endpoint: Option<String>,
    /// The local stage, when `--stage` was given.
    pub stage: Option<String>,
}

impl Deployment {
    /// Resolves the deployment from `--stage` or the environment and checks that its
    /// tenants table answers (so every later error is about the request, not the setup).
    pub async fn resolve(stage: Option<&str>) -> Result<Self, CliError> {
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|v| !v.is_empty());
        let d = match stage {
            Some(stage) => Self::local(stage, endpoint).await?,
            None => Self::from_env(endpoint).await?,
        };
        d.preflight().await?;
        Ok(d)
    }

    async fn local(stage: &str, endpoint: Option<String>) -> Result<Self, CliError> {
        let Some(url) = endpoint.clone() else {
            return Err(CliError::Usage(
                "--stage works against the local emulator only: set AWS_ENDPOINT_URL (or run under infra/local/scripts/with-emulator.sh)".into(),
            ));
        };
        if !valid_stage(stage) {
            return Err(CliError::Usage(format!(
                "stage {stage:?} is not valid: use 1 to 16 characters of a-z, 0-9 and -"
            )));
        }
        let sdk = sdk_config_from_env().await.map_err(CliError::Usage)?;
        let template = Template::load(&template_path())
            .map_err(|e| CliError::Usage(format!("the SAM template could not be read: {e}")))?;
        let local: LocalStack = provision(&sdk, &template, stage)
            .await
            .map_err(|e| CliError::from_aws_text(&e.to_string(), Some(&url)))?;
        let mut config = Config::from_lookup(|k| local.env.get(k).cloned())
            .map_err(|e| CliError::Usage(e.to_string()))?;
        // edsctl runs the handlers in its own process: the local-testing switch is its
        // own environment's (`make demo` sets it), not the stack's.
        config.local_testing = eds_shared::hosts::deployment_allows_local_testing();
        Ok(Self {
            config,
            aws: Aws::from_sdk(&sdk),
            push_queue_url: local.physical("PushQueue").map(str::to_string),
            settings_bus: local.physical("SettingsBus").map(str::to_string),
            endpoint,
            stage: Some(stage.to_string()),
        })
    }

    async fn from_env(endpoint: Option<String>) -> Result<Self, CliError> {
        let config = Config::from_env().map_err(|e| {
            CliError::Usage(format!(
                "{e}: export the deployment's names (RECORDS_TABLE, TENANTS_TABLE, ATTACHMENTS_BUCKET, PULL_QUEUE_URL, DISABLE_QUEUE_URL, DELETE_QUEUE_URL, SECRET_PREFIX) or pass --stage NAME for the local stack"
            ))
        })?;
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Ok(Self {
            config,
            aws: Aws::from_sdk(&sdk),
            push_queue_url: var("PUSH_QUEUE_URL"),
            settings_bus: var("SETTINGS_BUS_NAME"),
            endpoint,
            stage: None,
        })
    }

    async fn preflight(&self) -> Result<(), CliError> {
        self.aws
            .dynamodb
            .describe_table()
            .table_name(&self.config.tenants_table)
            .send()
            .await
            .map_err(|e| {
                let text = aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string();
                if text.contains("ResourceNotFound") {
                    CliError::Usage(format!(
                        "the tenants table {} does not exist: check TENANTS_TABLE (or --stage) and the AWS account/region",
                        self.config.tenants_table
                    ))
                } else {
                    CliError::from_aws_text(&text, self.endpoint.as_deref())
                }
            })?;
        Ok(())
    }

    pub fn registry(&self) -> std::sync::Arc<TenantRegistry> {
        std::sync::Arc::new(TenantRegistry::new(
            self.aws.dynamodb.clone(),
            self.config.tenants_table.clone(),
        ))
    }

    pub fn store(&self) -> DynamoStore {
        DynamoStore::new(self.aws.dynamodb.clone(), self.config.records_table.clone())
    }

    /// The credentials adapter's settings for this deployment (`GREENHOUSE_TOKEN_URL`
    /// as the functions read it; a tenant's own `auth_url` overrides it).
    pub fn credentials(&self) -> Result<CredentialsConfig, CliError> {
        let token_url = std::env::var("GREENHOUSE_TOKEN_URL")
            .unwrap_or_else(|_| GREENHOUSE_TOKEN_URL.to_string())
            .parse()
            .map_err(|_| CliError::Usage("GREENHOUSE_TOKEN_URL is not a valid URL".into()))?;
        Ok(CredentialsConfig {
            secret_prefix: self.config.secret_prefix.clone(),
            tenants_table: self.config.tenants_table.clone(),
            token_url,
        })
    }

    /// A queue's dead-letter queue, from its redrive policy.
    pub async fn dead_letter_queue(&self, queue_url: &str) -> Result<String, CliError> {
        use aws_sdk_sqs::types::QueueAttributeName;
        let out = self
            .aws
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| self.aws_err(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        let policy = out
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::RedrivePolicy))
            .ok_or_else(|| CliError::Usage(format!("{queue_url} has no dead-letter queue")))?;
        let arn = serde_json::from_str::<serde_json::Value>(&policy)
            .ok()
            .and_then(|v| v["deadLetterTargetArn"].as_str().map(str::to_string))
            .ok_or_else(|| {
                CliError::Usage(format!("{queue_url} has an unreadable redrive policy"))
            })?;
        let name = arn.rsplit(':').next().unwrap_or_default();
        let url = self
            .aws
            .sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| self.aws_err(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        url.queue_url
            .ok_or_else(|| CliError::Usage(format!("the dead-letter queue {name} was not found")))
    }

    /// An AWS error as one sentence (unreachable endpoint, missing credentials, ...).
    pub fn aws_err(&self, e: impl std::fmt::Display) -> CliError {
        CliError::from_aws_text(&e.to_string(), self.endpoint.as_deref())
    }
}

/// The template's `Stage` pattern.
pub fn valid_stage(s: &str) -> bool {
    (1..=16).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Provisions `stage` in the local emulator and writes the SAM CLI's `--env-vars` file
/// to `out`: every template function's environment in that stage, plus
/// `AWS_ENDPOINT_URL` and `extra`. Returns how many functions it holds.
pub async fn write_sam_env(
    stage: &str,
    out: &std::path::Path,
    extra: &[(String, String)],
) -> Result<usize, CliError> {
    let Some(url) = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        return Err(CliError::Usage(
            "sam-env writes the environment of a local stage: set AWS_ENDPOINT_URL (run under infra/local/scripts/with-emulator.sh)".into(),
        ));
    };
    if !valid_stage(stage) {
        return Err(CliError::Usage(format!(
            "stage {stage:?} is not valid: use 1 to 16 characters of a-z, 0-9 and -"
        )));
    }
    let sdk = sdk_config_from_env().await.map_err(CliError::Usage)?;
    let template = Template::load(&template_path())
        .map_err(|e| CliError::Usage(format!("the SAM template could not be read: {e}")))?;
    let local = provision(&sdk, &template, stage)
        .await
        .map_err(|e| CliError::from_aws_text(&e.to_string(), Some(&url)))?;
    let mut all = std::collections::BTreeMap::new();
    for f in template.of_kind("AWS::Serverless::Function") {
        let mut env = local
            .function_env(&template, &f.logical_id)
            .map_err(CliError::Usage)?;
        env.insert("AWS_ENDPOINT_URL".into(), url.clone());
        for (k, v) in extra {
            env.insert(k.clone(), v.clone());
        }
        all.insert(f.logical_id.clone(), env);
    }
    let text = serde_json::to_string_pretty(&all)
        .map_err(|e| CliError::Usage(format!("the env-vars file: {e}")))?;
    std::fs::write(out, text).map_err(|e| CliError::Usage(format!("{}: {e}", out.display())))?;
    Ok(all.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_follow_the_template_pattern() {
        assert!(valid_stage("demo"));
        assert!(valid_stage("e2e-01"));
        assert!(!valid_stage(""));
        assert!(!valid_stage("Demo"));
        assert!(!valid_stage("a_b"));
        assert!(!valid_stage("seventeen-chars-x"));
    }
}
