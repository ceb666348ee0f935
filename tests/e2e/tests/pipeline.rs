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

mod pull {
    use std::collections::BTreeSet;

    use chrono::{Duration, Utc};
    use eds_e2e::Stack;
    use eds_shared::domain::ids::{AtsId, EntityKind, RecordKey, TenantId};
    use eds_shared::pipeline::puller::PullerSettings;
    use eds_shared::store::RecordRead;
    use greenhouse_sim::{
        ALL_SCOPES, DefectKind, Entity, Scenario, ScenarioSpec, SimConfig, Simulator,
    };
    use serde_json::json;

    fn entity_of(s: &str) -> EntityKind {
        EntityKind::parse(s).unwrap()
    }

    /// Compares every record's stored view with the scenario manifest; returns the
    /// fields that differ, except those listed in `allowed` (entity, id, field).
    async fn differences(
        stack: &Stack,
        tenant: &TenantId,
        scenario: &Scenario,
        allowed: &BTreeSet<(String, String, String)>,
    ) -> Vec<String> {
        let store = stack.store();
        let mut out = Vec::new();
        for (entity, id) in scenario.manifest.expected_views.keys() {
            let key = RecordKey::new(tenant.clone(), entity_of(entity), AtsId::parse(id.clone()).unwrap());
            let head = store.get(&key).await.unwrap();
            let view = head
                .as_ref()
                .filter(|h| h.view.deleted.is_none())
                .map(|h| h.view.fields.clone().into_iter().collect::<serde_json::Map<_, _>>());
            for d in scenario.manifest.check(entity, id, view.as_ref()) {
                if !allowed.contains(&(entity.clone(), id.clone(), d.field.clone())) {
                    out.push(format!("{entity}/{id}: {} expected {:?} got {:?}", d.field, d.expected, d.actual));
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn backfill_equals_the_ats_truth_then_incremental_runs_touch_only_changed_records() {
        let stack = Stack::new().await.unwrap();
        let spec = ScenarioSpec {
            seed: 7,
            candidates: 600,
            jobs: 15,
            now: Utc::now() - Duration::minutes(10),
            ..ScenarioSpec::default()
        };
        let scenario = Scenario::generate(&spec);
        let sim = Simulator::start(SimConfig::default(), scenario.truth.clone()).await.unwrap();
        sim.add_oauth_client("eds-client", "client-secret-value", ALL_SCOPES);
        let cfg = stack
            .enable_greenhouse_tenant(
                "acme",
                &sim,
                json!({"kind": "client_credentials", "client_id": "eds-client", "client_secret": "client-secret-value"}),
            )
            .await
            .unwrap();
        let tenant = cfg.tenant_id.clone();
        let puller = stack.puller(PullerSettings::default()).unwrap();

        // First run: full backfill of every stream plus the first reconciliation.
        let t0 = Utc::now();
        let report = stack.sync(&puller, t0).await.unwrap();
        assert!(report.counts.created > 600, "{:?}", report.counts);
        assert_eq!(report.counts.quarantined, 0);
        assert!(report.counts.attachments_stored > 0);

        // Without the push, the only differences from the manifest are the fields whose
        // pushed value is newer than the ATS (the push would have won them) and the
        // records that exist only in the push.
        let mut allowed = BTreeSet::new();
        for d in &scenario.manifest.defects {
            if d.kind == DefectKind::PushNewer {
                allowed.insert((d.entity.clone(), d.id.clone(), d.field.clone().unwrap_or_default()));
            }
        }
        let diffs = differences(&stack, &tenant, &scenario, &allowed).await;
        assert!(diffs.is_empty(), "{} differences, first: {:?}", diffs.len(), &diffs[..diffs.len().min(5)]);

        // Requests: ⌈N/500⌉ pages per stream (plus the reconciliation listings) and one token.
        let stats = sim.stats();
        let candidates = scenario.truth.candidates.len() as u64;
        assert!(stats.endpoint_total("/v3/candidates") <= 2 * candidates.div_ceil(500), "{stats:?}");

        // An unchanged incremental run: one request per stream, zero writes.
        sim.reset_stats();
        let t1 = t0 + Duration::seconds(901);
        let report = stack.sync(&puller, t1).await.unwrap();
        assert_eq!(report.versions_written, 0, "{:?}", report.counts);
        assert_eq!(report.counts.requests, 4, "{:?}", report.counts);

        // Change three candidates in the ATS: the next run writes exactly three versions.
        let ids = sim.mutate().ids(Entity::Candidate);
        let store = stack.store();
        let mut before = Vec::new();
        for id in &ids[..3] {
            let key = RecordKey::new(tenant.clone(), EntityKind::Candidate, AtsId::from_u64(*id));
            before.push(store.history(&key).await.unwrap().len());
        }
        for id in &ids[..3] {
            sim.mutate().update(Entity::Candidate, *id, "title", json!("Principal Engineer")).unwrap();
        }
        let t2 = t1 + Duration::seconds(901);
        let report = stack.sync(&puller, t2).await.unwrap();
        assert_eq!(report.versions_written, 3, "{:?}", report.counts);
        for (id, n) in ids[..3].iter().zip(before) {
            let key = RecordKey::new(tenant.clone(), EntityKind::Candidate, AtsId::from_u64(*id));
            let head = store.get(&key).await.unwrap().unwrap();
            assert_eq!(head.view.fields["title"], json!("Principal Engineer"));
            assert_eq!(store.history(&key).await.unwrap().len(), n + 1, "one new version");
        }

        // A candidate deleted in the ATS becomes a tombstone at the next reconciliation
        // (every 3 days); its history is kept.
        let gone = ids[5];
        sim.mutate().delete(Entity::Candidate, gone).unwrap();
        let t3 = t2 + Duration::days(3) + Duration::hours(1);
        let report = stack.sync(&puller, t3).await.unwrap();
        assert!(report.counts.tombstoned >= 1, "{:?}", report.counts);
        let key = RecordKey::new(tenant.clone(), EntityKind::Candidate, AtsId::from_u64(gone));
        let head = store.get(&key).await.unwrap().unwrap();
        assert!(head.view.deleted.is_some());
        assert!(store.history(&key).await.unwrap().len() >= 2);
    }
}
