//! Test support for the end-to-end suite: a provisioned local stack per test (unique
//! stage prefix on the shared emulator), clients, and helpers to drive the real handlers
//! with real SQS messages.

use eds_local::{LocalStack, Template, provision, sdk_config_from_env, template_path};
use eds_shared::lambda::{Aws, Config};

/// One isolated copy of the deployment in the emulator.
pub struct Stack {
    pub local: LocalStack,
    pub aws: Aws,
    pub config: Config,
}

impl Stack {
    /// Provisions the template's resources under a fresh stage name.
    pub async fn new() -> anyhow::Result<Self> {
        let sdk = sdk_config_from_env().await.map_err(anyhow::Error::msg)?;
        let template = Template::load(&template_path())?;
        let stage = format!("e{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let local = provision(&sdk, &template, &stage).await?;
        let config = Config::from_lookup(|k| local.env.get(k).cloned())?;
        Ok(Self {
            aws: Aws::from_sdk(&sdk),
            local,
            config,
        })
    }
}
