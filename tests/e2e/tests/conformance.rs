//! One conformance suite for every ATS eds pulls from: each property is written once
//! against `eds_e2e::conformance::AtsUnderTest` and instantiated per ATS by
//! `conformance!`, so every test's name says which ATS ran (`greenhouse::…`,
//! `lever::…`). The real handlers run against the local AWS emulator and the ATS's
//! simulator; the right answers come from the simulator's scenario manifest.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use eds_e2e::Invoke;
use eds_e2e::Stack;
use eds_e2e::conformance::{
    AtsUnderTest, Greenhouse, Lever, differences, enable, enable_as, push_snapshot, scenario_now,
};
use eds_shared::domain::ids::{AtsId, EntityKind, RecordKey, TenantId};
use eds_shared::domain::merge::ViewMode;
use eds_shared::invocation::Invocation;
use eds_shared::pipeline::puller::PullerSettings;
use eds_shared::store::RecordRead;
use eds_shared::tenants::{RunLog, StreamName, SyncStatus, TenantLifecycle, TenantState};

const CANDIDATES: usize = 40;

async fn history_len(stack: &Stack, tenant: &TenantId, id: &str) -> usize {
    let key = RecordKey::new(
        tenant.clone(),
        EntityKind::Candidate,
        AtsId::parse(id).unwrap(),
    );
    stack.store().history(&key).await.unwrap().len()
}

/// Backfill with the push equals the manifest; then an unchanged run costs one request
/// per list and writes nothing; then exactly the changed records get a version; then an
/// ATS deletion is a tombstone (by the next reconciliation at the latest) whose history
/// is kept. Secrets are never logged or stored.
async fn sync_is_faithful<A: AtsUnderTest>() {
    let ats = A::ATS;
    let stack = Stack::new().await.unwrap();
    let fixture = A::start(7, CANDIDATES, scenario_now()).await.unwrap();
    let cfg = enable(&stack, &fixture, "acme").await.unwrap();
    let tenant = cfg.tenant_id.clone();
    push_snapshot(&stack, &fixture, &tenant).await;
    let puller = stack.puller(PullerSettings::default()).unwrap();

    let t0 = Utc::now();
    let report = stack.sync(&puller, t0).await.unwrap();
    assert_eq!(report.counts.quarantined, 0, "{ats}: {:?}", report.counts);
    assert!(
        report.counts.attachments_stored > 0,
        "{ats}: {:?}",
        report.counts
    );
    let diffs = differences(&stack, &fixture, &tenant).await;
    assert!(
        diffs.is_empty(),
        "{ats}: {} differences from the manifest, first: {:?}",
        diffs.len(),
        &diffs[..diffs.len().min(8)]
    );

    fixture.reset_stats();
    let t1 = t0 + Duration::seconds(901);
    let report = stack.sync(&puller, t1).await.unwrap();
    assert_eq!(report.versions_written, 0, "{ats}: {:?}", report.counts);
    assert_eq!(
        fixture.api_requests(),
        A::UNCHANGED_RUN_REQUESTS,
        "{ats}: an unchanged run sends one request per list"
    );

    fixture.set_clock(Utc::now() - Duration::minutes(10));
    let ids = fixture.candidate_ids();
    let changed = &ids[..3];
    let mut before = Vec::new();
    for id in changed {
        before.push(history_len(&stack, &tenant, id).await);
    }
    let mut values = BTreeMap::new();
    for id in changed {
        values.insert(id.clone(), fixture.change_candidate(id).unwrap());
    }
    let t2 = t1 + Duration::seconds(901);
    let report = stack.sync(&puller, t2).await.unwrap();
    let restamped: u64 = changed
        .iter()
        .map(|id| fixture.restamped_by_change(id))
        .sum();
    assert_eq!(
        report.versions_written, restamped,
        "{ats}: {:?}",
        report.counts
    );
    let store = stack.store();
    for (id, n) in changed.iter().zip(before) {
        let key = RecordKey::new(
            tenant.clone(),
            EntityKind::Candidate,
            AtsId::parse(id.as_str()).unwrap(),
        );
        let head = store.get(&key).await.unwrap().unwrap();
        let (field, value) = &values[id];
        assert_eq!(&head.view.fields[*field], value, "{ats}: {id}");
        assert_eq!(
            history_len(&stack, &tenant, id).await,
            n + 1,
            "{ats}: one new version"
        );
    }

    let gone = ids[5].clone();
    fixture.delete_candidate(&gone).unwrap();
    let t3 = t2 + Duration::days(3) + Duration::hours(1);
    let report = stack.sync(&puller, t3).await.unwrap();
    assert!(
        report.counts.tombstoned >= 1 || report.versions_written >= 1,
        "{ats}: {:?}",
        report.counts
    );
    let key = RecordKey::new(
        tenant.clone(),
        EntityKind::Candidate,
        AtsId::parse(gone.as_str()).unwrap(),
    );
    let head = store.get(&key).await.unwrap().unwrap();
    assert!(head.view.deleted.is_some(), "{ats}: {gone} is a tombstone");
    assert!(
        store.history(&key).await.unwrap().len() >= 2,
        "{ats}: history kept"
    );
    let diffs = differences(&stack, &fixture, &tenant).await;
    let unexpected: Vec<_> = diffs
        .iter()
        .filter(|d| !d.contains(&gone) && !changed.iter().any(|c| d.contains(c.as_str())))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{ats}: after the sweep: {unexpected:?}"
    );
    eds_e2e::secrets::assert_no_secret_leaked(&stack).await;
}

/// A refresh token the ATS revoked ends the pull in `needs_reauth`, unscheduled,
/// without a retry storm on the token endpoint.
async fn a_revoked_grant_needs_reauth<A: AtsUnderTest>() {
    let ats = A::ATS;
    let stack = Stack::new().await.unwrap();
    let fixture = A::start(11, 10, scenario_now()).await.unwrap();
    let cfg = enable(&stack, &fixture, "reauth").await.unwrap();
    fixture.revoke_grant();
    fixture.reset_stats();
    let puller = stack.puller(PullerSettings::default()).unwrap();
    let now = Utc::now();
    stack.sync(&puller, now).await.unwrap();
    let rec = stack.registry().require(&cfg.tenant_id).await.unwrap();
    assert_eq!(rec.config.state, TenantState::NeedsReauth, "{ats}");
    assert!(rec.next_run_at.is_none(), "{ats}: unscheduled");
    let streams = stack.registry().streams(&cfg.tenant_id).await.unwrap();
    assert!(
        streams.iter().all(|s| s.status == SyncStatus::NeedsReauth),
        "{ats}: {streams:?}"
    );
    assert!(fixture.token_requests() <= 2, "{ats}: no retry storm");
    assert_eq!(
        fixture.api_requests(),
        0,
        "{ats}: no API request without a token"
    );
    eds_e2e::secrets::assert_no_secret_leaked(&stack).await;
}

/// Under the ATS's rate limit a whole backfill gets no 429: eds paces itself (from the
/// ATS's headers, or below its documented bucket).
async fn a_backfill_stays_under_the_rate_limit<A: AtsUnderTest>() {
    let ats = A::ATS;
    let stack = Stack::new().await.unwrap();
    let fixture = A::start(13, 25, scenario_now()).await.unwrap();
    fixture.limit_rate();
    let cfg = enable(&stack, &fixture, "paced").await.unwrap();
    let puller = stack.puller(PullerSettings::default()).unwrap();
    let (report, _) = {
        stack.scheduler().run(Utc::now()).await.unwrap();
        stack
            .drain_pull_queue(&puller, StdDuration::from_secs(300), 1000)
            .await
            .unwrap()
    };
    assert_eq!(fixture.rate_limited(), 0, "{ats}: {:?}", report.counts);
    assert!(
        report.counts.requests > A::RATE_LIMIT_BUDGET,
        "{ats}: the backfill needed more requests than the limit's budget: {:?}",
        report.counts
    );
    let rec = stack.registry().require(&cfg.tenant_id).await.unwrap();
    assert_eq!(rec.config.state, TenantState::Enabled, "{ats}");
}

/// Refresh tokens rotate at both ATSs. Three runs, each with a new puller (nothing
/// cached in memory) and each after the access token expired, refresh and succeed: each
/// rotated token was stored before it was needed, and none was used twice.
async fn rotation_is_stored_before_use<A: AtsUnderTest>() {
    let ats = A::ATS;
    let stack = Stack::new().await.unwrap();
    let fixture = A::start(29, 5, scenario_now()).await.unwrap();
    let cfg = enable(&stack, &fixture, "rotation").await.unwrap();
    fixture.reset_stats();
    let t0 = Utc::now();
    for run in 0..3 {
        fixture.expire_access_tokens();
        let puller = stack.puller(PullerSettings::default()).unwrap();
        stack
            .sync(&puller, t0 + Duration::seconds(901 * run))
            .await
            .unwrap();
        let rec = stack.registry().require(&cfg.tenant_id).await.unwrap();
        assert_eq!(rec.config.state, TenantState::Enabled, "{ats}: run {run}");
    }
    assert!(
        fixture.token_requests() >= 3,
        "{ats}: every run refreshed ({} token requests)",
        fixture.token_requests()
    );
    eds_e2e::secrets::assert_no_secret_leaked(&stack).await;
}

/// A credential without the scope of one list: that stream fails loudly with the
/// reason (never an empty stream that looks done), the others complete, and the tenant
/// stays enabled.
async fn a_missing_scope_fails_its_stream_loudly<A: AtsUnderTest>() {
    let ats = A::ATS;
    let stack = Stack::new().await.unwrap();
    let fixture = A::start(31, 8, scenario_now()).await.unwrap();
    fixture.add_client_without_jobs_scope("no-jobs-client", "no-jobs-secret-5c1e");
    let cfg = enable_as(
        &stack,
        &fixture,
        "noscope",
        "no-jobs-client",
        "no-jobs-secret-5c1e",
    )
    .await
    .unwrap();
    let puller = stack.puller(PullerSettings::default()).unwrap();
    stack.sync(&puller, Utc::now()).await.unwrap();
    let streams = stack.registry().streams(&cfg.tenant_id).await.unwrap();
    let jobs = streams
        .iter()
        .find(|s| s.stream == StreamName::Jobs)
        .unwrap_or_else(|| panic!("{ats}: no jobs stream state: {streams:?}"));
    assert_eq!(jobs.status, SyncStatus::Failed, "{ats}: {jobs:?}");
    let reason = jobs.reason.clone().unwrap_or_default();
    assert!(reason.contains("forbidden (403)"), "{ats}: {reason}");
    for st in streams.iter().filter(|s| s.stream != StreamName::Jobs) {
        assert_eq!(st.status, SyncStatus::Done, "{ats}: {st:?}");
    }
    let rec = stack.registry().require(&cfg.tenant_id).await.unwrap();
    assert_eq!(rec.config.state, TenantState::Enabled, "{ats}");
}

/// After a disable every record shows exactly what was pushed (pull-only records show
/// nothing), the pulled layer and the history are kept, and the tenant is no longer
/// scheduled.
async fn disable_shows_only_the_pushed_data<A: AtsUnderTest>() {
    let ats = A::ATS;
    let stack = Stack::new().await.unwrap();
    let fixture = A::start(37, 12, scenario_now()).await.unwrap();
    let cfg = enable(&stack, &fixture, "disable").await.unwrap();
    let tenant = cfg.tenant_id.clone();
    push_snapshot(&stack, &fixture, &tenant).await;
    let puller = stack.puller(PullerSettings::default()).unwrap();
    stack.sync(&puller, Utc::now()).await.unwrap();
    let store = stack.store();
    let mut before = Vec::new();
    for (entity, id) in fixture.expected_keys() {
        let key = RecordKey::new(
            tenant.clone(),
            EntityKind::parse(&entity).unwrap(),
            AtsId::parse(id.clone()).unwrap(),
        );
        if let Some(head) = store.get(&key).await.unwrap() {
            let history = store.history(&key).await.unwrap();
            before.push((key, head, history));
        }
    }
    let pulled_shown = before
        .iter()
        .filter(|(_, h, _)| {
            h.state.pull.is_some()
                && Some(&h.view.fields) != h.state.push.as_ref().map(|l| &l.fields)
        })
        .count();
    assert!(
        pulled_shown > 0,
        "{ats}: before the disable some views show pulled data"
    );

    let disabler = eds_shared::wiring::disable::disabler_on(&stack.aws, &stack.config);
    let event = serde_json::json!({
        "version": "0", "id": "conformance-disable", "detail-type": "tenant.disable_requested",
        "source": "eds.settings", "account": "123456789012", "time": "2026-03-01T12:00:00Z",
        "region": "us-east-1", "resources": [],
        "detail": {"tenant_id": tenant.as_str()},
    });
    let out = disabler
        .invoke(event, Invocation::after(StdDuration::from_secs(120)))
        .await
        .unwrap();
    assert_eq!(out["outcome"], "completed", "{ats}: {out}");
    let rec = stack.registry().require(&tenant).await.unwrap();
    assert_eq!(rec.config.state, TenantState::Disabled, "{ats}");
    assert_eq!(rec.next_run_at, None, "{ats}: no longer scheduled");
    for (key, was, history_before) in before {
        let head = store.get(&key).await.unwrap().unwrap();
        assert_eq!(head.state.mode, ViewMode::PushOnly, "{ats}: {key:?}");
        assert_eq!(
            head.view.fields,
            head.state
                .push
                .as_ref()
                .map(|l| l.fields.clone())
                .unwrap_or_default(),
            "{ats}: {key:?} shows exactly the push layer"
        );
        assert_eq!(
            head.state.pull, was.state.pull,
            "{ats}: {key:?}: the pulled layer is kept as it was"
        );
        let history = store.history(&key).await.unwrap();
        let n = history_before.len();
        assert!(
            history.len() == n || history.len() == n + 1,
            "{ats}: {key:?}: at most one version added"
        );
        let versions = |h: &[eds_shared::store::HistoryEntry]| {
            h.iter().map(|e| e.version.clone()).collect::<Vec<_>>()
        };
        assert_eq!(
            versions(&history[..n]),
            versions(&history_before),
            "{ats}: {key:?}: history kept"
        );
    }
}

/// Through a storm of 5xx answers and bursts of 429s the sync retries with backoff
/// (never in a loop: 429s stay in proportion to the other answers) and, with the next run
/// once the storm is over at the latest, ends with the manifest; nothing is
/// dead-lettered.
async fn a_fault_storm_ends_with_the_manifest<A: AtsUnderTest>() {
    let ats = A::ATS;
    let stack = Stack::new().await.unwrap();
    let fixture = A::start(41, 12, scenario_now()).await.unwrap();
    let cfg = enable(&stack, &fixture, "storm").await.unwrap();
    let tenant = cfg.tenant_id.clone();
    push_snapshot(&stack, &fixture, &tenant).await;
    let puller = stack.puller(PullerSettings::default()).unwrap();
    fixture.reset_stats();
    fixture.storm(true);
    let t0 = Utc::now();
    stack.sync(&puller, t0).await.unwrap();
    let (requests, limited, errors) = (
        fixture.api_requests(),
        fixture.rate_limited(),
        fixture.server_errors(),
    );
    assert!(
        limited > 0 && errors > 0,
        "{ats}: the storm hit ({limited} × 429, {errors} × 5xx in {requests} requests)"
    );
    // A burst is 2 answers long, and 1 request in 4 starts one: a client that backs
    // off sees about 2 × 0.25 / 0.75 ≈ 0.7 429s per other answer; one that loops on a
    // 429 sees far more.
    assert!(
        limited <= 2 * (requests - limited),
        "{ats}: {limited} × 429 in {requests} requests: retried in a loop"
    );
    fixture.storm(false);
    stack
        .sync(&puller, t0 + Duration::seconds(901))
        .await
        .unwrap();
    let diffs = differences(&stack, &fixture, &tenant).await;
    assert!(
        diffs.is_empty(),
        "{ats}: {} differences after the storm, first: {:?}",
        diffs.len(),
        &diffs[..diffs.len().min(8)]
    );
    for st in stack.registry().streams(&tenant).await.unwrap() {
        assert_eq!(st.status, SyncStatus::Done, "{ats}: {st:?}");
    }
    let dlq = stack.local.refs["PullDeadLetterQueue"].clone();
    let depth = eds_local::queue::queue_depth(&stack.aws.sqs, &dlq)
        .await
        .unwrap();
    assert_eq!(depth, 0, "{ats}: nothing dead-lettered");
}

macro_rules! conformance {
    ($name:ident, $ats:ty) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn backfill_equals_the_manifest_unchanged_costs_one_request_per_list_changes_version_and_deletions_tombstone() {
                sync_is_faithful::<$ats>().await;
            }

            #[tokio::test]
            async fn a_revoked_grant_ends_in_needs_reauth_without_a_retry_storm() {
                a_revoked_grant_needs_reauth::<$ats>().await;
            }

            #[tokio::test]
            async fn a_backfill_under_the_ats_rate_limit_gets_no_429() {
                a_backfill_stays_under_the_rate_limit::<$ats>().await;
            }

            #[tokio::test]
            async fn rotated_refresh_tokens_are_stored_before_use() {
                rotation_is_stored_before_use::<$ats>().await;
            }

            #[tokio::test]
            async fn a_missing_scope_fails_its_stream_loudly_and_the_others_complete() {
                a_missing_scope_fails_its_stream_loudly::<$ats>().await;
            }

            #[tokio::test]
            async fn a_storm_of_5xx_and_429_ends_with_the_manifest_without_a_retry_loop() {
                a_fault_storm_ends_with_the_manifest::<$ats>().await;
            }

            #[tokio::test]
            async fn disable_shows_exactly_the_pushed_data_and_keeps_the_pulled_layer() {
                disable_shows_only_the_pushed_data::<$ats>().await;
            }
        }
    };
}

conformance!(greenhouse, Greenhouse);
conformance!(lever, Lever);
