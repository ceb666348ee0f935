//! Test support for the end-to-end suite: a provisioned local stack per test (unique
//! stage prefix on the shared emulator), clients, and helpers to drive the real handlers
//! with real SQS messages.

use eds_local::{LocalStack, Template, provision, sdk_config_from_env, template_path};
use eds_shared::lambda::{Aws, Config};

pub mod conformance;
pub mod secrets;

/// One isolated copy of the deployment in the emulator.
pub struct Stack {
    pub local: LocalStack,
    pub aws: Aws,
    pub config: Config,
}

impl Stack {
    /// Provisions the template's resources under a fresh stage name.
    pub async fn new() -> anyhow::Result<Self> {
        secrets::install();
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

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eds_local::queue::{delete_succeeded, receive_event};
use eds_shared::attachments::{BlobStore, S3BlobStore};
use eds_shared::connector::providers::Providers;
use eds_shared::credentials::{CredentialsConfig, SecretName, SecretsManagerStore};
use eds_shared::domain::ids::TenantId;
use eds_shared::pipeline::puller::{JobReport, Puller, PullerSettings};
use eds_shared::pipeline::scheduler::Scheduler;
use eds_shared::store::dynamodb::DynamoStore;
use eds_shared::tenants::{
    AtsSettings, DEFAULT_RECONCILE_EVERY_SECS, GreenhouseSettings, TenantConfig, TenantLifecycle,
    TenantRegistry, TenantState,
};
use greenhouse_sim::SimHandle;

/// The secret prefix the template's default gives.
pub const SECRET_PREFIX: &str = "eds/tenants/";

impl Stack {
    pub fn registry(&self) -> Arc<TenantRegistry> {
        Arc::new(TenantRegistry::new(
            self.aws.dynamodb.clone(),
            self.config.tenants_table.clone(),
        ))
    }

    pub fn store(&self) -> Arc<DynamoStore> {
        Arc::new(DynamoStore::new(
            self.aws.dynamodb.clone(),
            self.config.records_table.clone(),
        ))
    }

    pub fn scheduler(&self) -> Scheduler {
        Scheduler::new(
            self.registry(),
            self.aws.queue(&self.config.pull_queue_url),
            eds_shared::connector::catalog::plan,
        )
    }

    /// The puller as deployed, with loopback attachment hosts allowed (the simulator's
    /// storage host is on 127.0.0.1) and short retry backoffs.
    pub fn puller(&self, settings: PullerSettings) -> anyhow::Result<Puller> {
        let credentials = CredentialsConfig {
            secret_prefix: SECRET_PREFIX.into(),
            tenants_table: self.config.tenants_table.clone(),
            token_url: "http://127.0.0.1:9/token".parse()?,
        };
        let services = credentials
            .services(&self.aws.sdk)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let blobs: Arc<dyn BlobStore> = Arc::new(S3BlobStore::new(
            self.aws.s3.clone(),
            self.config.attachments_bucket.clone(),
        ));
        let factory = Providers {
            credentials,
            services,
            blobs: blobs.clone(),
            allow_loopback_for_local_testing: true,
            fast_retries: true,
        };
        Ok(Puller {
            registry: self.registry(),
            store: self.store(),
            queue: self.aws.queue(&self.config.pull_queue_url),
            blobs,
            factory: Arc::new(factory),
            settings,
        })
    }

    /// Stores a tenant secret and registers the tenant as enabled against `sim`.
    pub async fn enable_greenhouse_tenant(
        &self,
        tenant: &str,
        sim: &SimHandle,
        secret_json: serde_json::Value,
    ) -> anyhow::Result<TenantConfig> {
        self.enable_greenhouse_tenant_with(tenant, sim, secret_json, |_| {})
            .await
    }

    /// [`Stack::enable_greenhouse_tenant`] with the configuration changed by `edit`
    /// before it is registered.
    pub async fn enable_greenhouse_tenant_with(
        &self,
        tenant: &str,
        sim: &SimHandle,
        secret_json: serde_json::Value,
        edit: impl FnOnce(&mut TenantConfig),
    ) -> anyhow::Result<TenantConfig> {
        let storage_host = url::Url::parse(&sim.storage_base())?
            .host_str()
            .unwrap_or("127.0.0.1")
            .to_string();
        self.enable_tenant_with(tenant, secret_json, |cfg| {
            cfg.api_base_url = sim.api_base();
            cfg.auth_url = Some(sim.token_url());
            cfg.attachment_hosts = vec![storage_host];
            edit(cfg)
        })
        .await
    }

    /// Stores a tenant secret and registers the tenant as enabled, with a configuration
    /// that `edit` points at its ATS (the default is a Greenhouse tenant with no URLs).
    pub async fn enable_tenant_with(
        &self,
        tenant: &str,
        secret_json: serde_json::Value,
        edit: impl FnOnce(&mut TenantConfig),
    ) -> anyhow::Result<TenantConfig> {
        let id = TenantId::parse(tenant)?;
        let secrets = SecretsManagerStore::new(self.aws.secrets.clone());
        let name = SecretName::for_tenant(SECRET_PREFIX, &id);
        secrets::register_tenant_secret(name.as_str(), &secret_json);
        secrets
            .create_or_put(&name, &secret_json.to_string().into())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let now = Utc::now();
        let mut cfg = TenantConfig {
            tenant_id: id,
            ats: AtsSettings::Greenhouse(GreenhouseSettings::default()),
            api_base_url: String::new(),
            auth_url: None,
            secret_name: name.as_str().to_string(),
            attachment_hosts: vec![],
            allow_loopback_attachments: true,
            interval_secs: 900,
            reconcile_every_secs: DEFAULT_RECONCILE_EVERY_SECS,
            state: TenantState::Enabled,
            epoch: 0,
            state_reason: None,
            uses_refresh_token: false,
            remerge_pending: false,
            last_reconcile_at: None,
            last_token_refresh_at: None,
            created_at: now,
            updated_at: now,
        };
        edit(&mut cfg);
        Ok(self.registry().enable(cfg, now).await?)
    }

    /// The local event source mapping: receive batches from the pull queue and hand
    /// them to the puller until the queue is empty. `invocation` is the simulated
    /// Lambda timeout of each batch.
    pub async fn drain_pull_queue(
        &self,
        puller: &Puller,
        invocation: Duration,
        max_batches: usize,
    ) -> anyhow::Result<(JobReport, usize)> {
        let mut total = JobReport::default();
        let mut batches = 0;
        let mut empty_polls = 0;
        while batches < max_batches {
            let event = receive_event(&self.aws.sqs, &self.config.pull_queue_url, 1, 0)
                .await
                .map_err(anyhow::Error::msg)?;
            if event.records.is_empty() {
                empty_polls += 1;
                if empty_polls > 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            empty_polls = 0;
            batches += 1;
            let invocation_budget = eds_shared::invocation::Invocation::after(invocation);
            let (response, report) = puller.handle(event.clone(), invocation_budget).await;
            delete_succeeded(
                &self.aws.sqs,
                &self.config.pull_queue_url,
                &event,
                &response,
            )
            .await
            .map_err(anyhow::Error::msg)?;
            total.counts.add(&report.counts);
            total.versions_written += report.versions_written;
            total.continuations_sent += report.continuations_sent;
        }
        Ok((total, batches))
    }

    /// Scheduler then puller until idle, as the deployed functions would over time.
    pub async fn sync(&self, puller: &Puller, now: DateTime<Utc>) -> anyhow::Result<JobReport> {
        self.scheduler().run(now).await?;
        let (report, _) = self
            .drain_pull_queue(puller, Duration::from_secs(300), 10_000)
            .await?;
        Ok(report)
    }
}

/// A lifecycle handler driven as the Lambda runtime drives it: the invocation's JSON is
/// decoded into the typed event (a payload that does not decode fails the invocation,
/// like a handler error), the answer encoded back.
#[allow(async_fn_in_trait)]
pub trait Invoke {
    async fn invoke(
        &self,
        event: serde_json::Value,
        invocation: eds_shared::invocation::Invocation,
    ) -> Result<serde_json::Value, String>;
}

macro_rules! invoke_lifecycle {
    ($handler:ty) => {
        impl Invoke for $handler {
            async fn invoke(
                &self,
                event: serde_json::Value,
                invocation: eds_shared::invocation::Invocation,
            ) -> Result<serde_json::Value, String> {
                let event = eds_shared::invocation::LifecycleEvent::from_value(event)?;
                let answer = self
                    .handle(event, invocation)
                    .await
                    .map_err(|e| e.to_string())?;
                serde_json::to_value(answer).map_err(|e| e.to_string())
            }
        }
    };
}
invoke_lifecycle!(eds_shared::pipeline::disable::Disabler);
invoke_lifecycle!(eds_shared::pipeline::delete::Deleter);

impl Stack {
    /// The push queue (where the push handler hands failed messages back).
    pub fn push_queue(&self) -> Arc<dyn eds_shared::queue::JobQueue> {
        self.aws.queue(
            self.local
                .physical("PushQueue")
                .expect("the template declares the push queue"),
        )
    }
}
