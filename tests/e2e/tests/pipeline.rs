//! End-to-end tests of the pull pipeline against the local AWS emulator (and, for the
//! puller, the Greenhouse simulator). One test binary with modules keeps link time low.

mod scheduler {
    use std::collections::BTreeMap;

    use chrono::{Duration, Utc};
    use eds_e2e::Stack;
    use eds_shared::domain::ids::TenantId;
    use eds_shared::jobs::{PullJob, Step, parse_job};
    use eds_shared::pipeline::scheduler::Scheduler;
    use eds_shared::tenants::*;

    pub fn tenant_config(id: &str, now: chrono::DateTime<Utc>) -> TenantConfig {
        TenantConfig {
            tenant_id: TenantId::parse(id).unwrap(),
            ats_kind: AtsKind::Greenhouse,
            api_version: ApiVersion::V3,
            api_base_url: "http://127.0.0.1:1".into(),
            auth_url: None,
            secret_name: format!("eds/tenants/{id}"),
            attachment_hosts: vec![],
            allow_loopback_attachments: false,
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
        }
    }

    async fn drain(stack: &Stack) -> Vec<(String, PullJob)> {
        let mut out = Vec::new();
        loop {
            let msgs = stack
                .aws
                .sqs
                .receive_message()
                .queue_url(&stack.config.pull_queue_url)
                .max_number_of_messages(10)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                .send()
                .await
                .unwrap();
            let batch = msgs.messages.unwrap_or_default();
            if batch.is_empty() {
                break;
            }
            for m in batch {
                let group = m
                    .attributes()
                    .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId))
                    .cloned()
                    .unwrap_or_default();
                let job: PullJob = parse_job(m.body().unwrap()).unwrap();
                stack
                    .aws
                    .sqs
                    .delete_message()
                    .queue_url(&stack.config.pull_queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
                out.push((group, job));
            }
        }
        out
    }

    #[tokio::test]
    async fn due_tenants_get_exactly_one_job_each_in_batches_of_ten_and_no_double_enqueue() {
        let stack = Stack::new().await.unwrap();
        let registry = TenantRegistry::new(stack.aws.dynamodb.clone(), stack.config.tenants_table.clone());
        let now = Utc::now();
        for i in 0..23 {
            registry.enable(tenant_config(&format!("t{i}"), now), now).await.unwrap();
        }
        // A disabled tenant is never scheduled.
        registry.enable(tenant_config("off", now), now).await.unwrap();
        registry
            .set_state(&TenantId::parse("off").unwrap(), TenantState::Disabled, true, None, None, now)
            .await
            .unwrap();
        let scheduler = Scheduler::new(registry.clone(), stack.aws.sqs.clone(), stack.config.pull_queue_url.clone());
        let report = scheduler.run(now + Duration::seconds(1)).await.unwrap();
        assert_eq!(report.claimed, 23);
        assert_eq!(report.sqs_calls, 3, "⌈23/10⌉ SendMessageBatch calls");
        let jobs = drain(&stack).await;
        assert_eq!(jobs.len(), 23);
        let mut per_tenant = BTreeMap::new();
        for (group, job) in &jobs {
            assert_eq!(group, job.tenant.as_str(), "MessageGroupId is the tenant");
            assert_eq!(job.epoch, 1);
            assert!(job.steps.contains(&Step::Pull(StreamName::Candidates)));
            assert!(job.steps.iter().any(|s| matches!(s, Step::Reconcile(_))), "first run reconciles");
            *per_tenant.entry(job.tenant.to_string()).or_insert(0) += 1;
        }
        assert!(per_tenant.values().all(|&n| n == 1));
        assert!(!per_tenant.contains_key("off"));

        // Past the interval but with the run still going: nothing is enqueued again.
        let later = now + Duration::seconds(3600);
        let report = scheduler.run(later).await.unwrap();
        assert_eq!(report.claimed, 0);
        assert_eq!(report.skipped, 23);
        assert!(drain(&stack).await.is_empty());

        // Once a tenant's run finished, it is due again after its interval.
        let t0 = TenantId::parse("t0").unwrap();
        let rec = registry.require(&t0).await.unwrap();
        let run = rec.active_run.expect("run recorded");
        registry.finish_stream(&t0, &run.run_id, "run").await.unwrap();
        let report = scheduler.run(later).await.unwrap();
        assert_eq!(report.claimed, 1);
        let jobs = drain(&stack).await;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].1.tenant, t0);
        assert!(
            !jobs[0].1.steps.iter().any(|s| matches!(s, Step::Reconcile(_))),
            "reconciliation waits for its own period"
        );
    }
}
