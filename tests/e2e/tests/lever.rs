//! Lever's traps, each present in the simulator's scenario and each handled by the
//! connector: confidential candidacies (missing unless `confidentiality=all`),
//! candidacies whose `updatedAt` is null (missing from any filtered read), resumes
//! beyond the first page of `/resumes`, candidacies in the deleted list, and resumes
//! added without moving `updatedAt` (seen only by the periodic unfiltered sweep). Each
//! test fails if the connector drops the behaviour it names. The properties every ATS
//! shares are in `conformance.rs`.

use chrono::{Duration, Utc};
use eds_e2e::Stack;
use eds_e2e::conformance::{AtsUnderTest, Lever, differences, enable, push_snapshot, scenario_now};
use eds_shared::domain::ids::{AtsId, EntityKind, RecordKey, TenantId};
use eds_shared::domain::version::Version;
use eds_shared::pipeline::puller::PullerSettings;
use eds_shared::store::RecordRead;
use lever_sim::{ScenarioSpec, SimConfig, Trap};
use serde_json::Value;

/// Resumes per page of `/opportunities/{id}/resumes` in these tests.
const RESUME_PAGE: usize = 5;

async fn head(stack: &Stack, tenant: &TenantId, entity: EntityKind, id: &str) -> Option<Version> {
    let key = RecordKey::new(tenant.clone(), entity, AtsId::parse(id).unwrap());
    stack.store().get(&key).await.unwrap()
}

fn attachment_ids(v: &Version) -> Vec<String> {
    v.view
        .fields
        .get("attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect()
}

/// One backfill (with the push) of a scenario holding every trap: each trapped record
/// equals the manifest. Without `confidentiality=all` the confidential ones are absent;
/// with an `updated_at_start` filter on the backfill the null-`updatedAt` ones are; with
/// page 1 of `/resumes` only, the many-resumes candidate lacks resumes; without the
/// deleted list the deleted ones stay live.
#[tokio::test]
async fn confidential_null_updated_at_many_resumes_and_deleted_candidacies_are_each_handled() {
    let spec = ScenarioSpec {
        seed: 21,
        candidacies: 30,
        postings: 4,
        confidential_rate: 0.15,
        null_updated_rate: 0.15,
        many_resumes: 1,
        many_resumes_count: 3 * RESUME_PAGE + 2,
        deleted_after_push_rate: 0.1,
        deleted_before_push: 2,
        now: scenario_now(),
        ..ScenarioSpec::default()
    };
    let cfg = SimConfig {
        resume_page_size: RESUME_PAGE,
        ..SimConfig::default()
    };
    let fixture = Lever::start_with(spec, cfg).await.unwrap();
    let manifest = &fixture.scenario.manifest;
    let truth = &fixture.scenario.truth;
    for trap in [
        Trap::Confidential,
        Trap::NullUpdatedAt,
        Trap::ManyResumes,
        Trap::DeletedAfterPush,
        Trap::DeletedBeforePush,
    ] {
        assert!(
            !manifest.trap(trap).is_empty(),
            "the scenario holds no {trap:?} candidacy"
        );
    }

    let stack = Stack::new().await.unwrap();
    let tenant = enable(&stack, &fixture, "traps").await.unwrap().tenant_id;
    push_snapshot(&stack, &fixture, &tenant).await;
    let puller = stack.puller(PullerSettings::default()).unwrap();
    let report = stack.sync(&puller, Utc::now()).await.unwrap();
    assert_eq!(report.counts.quarantined, 0, "{:?}", report.counts);

    let check = |id: &String, view: Option<&Version>| {
        let fields = view
            .filter(|v| v.view.deleted.is_none())
            .map(|v| v.view.fields.clone().into_iter().collect());
        fixture.differences("candidate", id, fields.as_ref())
    };
    for trap in [Trap::Confidential, Trap::NullUpdatedAt, Trap::ManyResumes] {
        for id in manifest.trap(trap) {
            let v = head(&stack, &tenant, EntityKind::Candidate, id).await;
            assert!(
                v.as_ref().is_some_and(|v| v.view.deleted.is_none()),
                "{trap:?} candidacy {id} has no live record"
            );
            let diffs = check(id, v.as_ref());
            assert!(diffs.is_empty(), "{trap:?} candidacy {id}: {diffs:?}");
        }
    }
    for id in manifest.trap(Trap::Confidential) {
        let app = &truth.opportunity(id).unwrap().applications;
        for a in app {
            let v = head(&stack, &tenant, EntityKind::Application, a).await;
            assert!(
                v.is_some_and(|v| v.view.deleted.is_none()),
                "the confidential candidacy {id}'s application {a} has no live record"
            );
        }
    }
    for id in manifest.trap(Trap::ManyResumes) {
        let want = truth.resumes_of(id).count() + truth.files_of(id).count();
        assert!(
            truth.resumes_of(id).count() > 2 * RESUME_PAGE,
            "{id}: the trap needs resumes on page 3"
        );
        let v = head(&stack, &tenant, EntityKind::Candidate, id)
            .await
            .unwrap();
        // The pulled layer alone: the push may hold the same resumes.
        let pulled = v
            .state
            .pull
            .as_ref()
            .and_then(|l| l.fields.get("attachments"))
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        assert_eq!(pulled, want, "{id}: every resume page read from Lever");
    }
    for id in manifest.trap(Trap::DeletedAfterPush) {
        let v = head(&stack, &tenant, EntityKind::Candidate, id).await;
        assert!(
            v.is_some_and(|v| v.view.deleted.is_some()),
            "{id}, deleted in Lever after the push, is a tombstone"
        );
    }
    for id in manifest.trap(Trap::DeletedBeforePush) {
        let v = head(&stack, &tenant, EntityKind::Candidate, id).await;
        assert!(
            v.is_none_or(|v| v.view.deleted.is_some()),
            "{id}, deleted before the push, has no live record"
        );
    }
    let diffs = differences(&stack, &fixture, &tenant).await;
    assert!(
        diffs.is_empty(),
        "{} differences: {:?}",
        diffs.len(),
        &diffs[..diffs.len().min(8)]
    );
}

/// A resume added in Lever does not move the opportunity's `updatedAt`: an incremental
/// run cannot see it, the periodic unfiltered sweep (with the reconciliation, after 3
/// days) does, and stores its file. Without the sweep the resume never shows. A
/// deletion shows at once, from the deleted list.
#[tokio::test]
async fn a_resume_added_without_moving_updated_at_shows_after_the_sweep_and_a_deletion_at_once() {
    let spec = ScenarioSpec {
        seed: 23,
        candidacies: 8,
        postings: 2,
        many_resumes: 0,
        deleted_after_push_rate: 0.0,
        deleted_before_push: 0,
        anonymized_rate: 0.0,
        now: scenario_now(),
        ..ScenarioSpec::default()
    };
    let fixture = Lever::start_with(spec, SimConfig::default()).await.unwrap();
    let stack = Stack::new().await.unwrap();
    let tenant = enable(&stack, &fixture, "sweep").await.unwrap().tenant_id;
    let puller = stack.puller(PullerSettings::default()).unwrap();
    let t0 = Utc::now();
    stack.sync(&puller, t0).await.unwrap();

    let id = fixture.candidate_ids()[0].clone();
    let before = head(&stack, &tenant, EntityKind::Candidate, &id)
        .await
        .unwrap();
    let updated_at = fixture.sim.mutate().get(&id).unwrap()["updatedAt"].clone();
    fixture.set_clock(Utc::now() - Duration::minutes(10));
    let resume = fixture
        .sim
        .mutate()
        .add_resume(&id, "late-resume.pdf")
        .unwrap();
    assert_eq!(
        fixture.sim.mutate().get(&id).unwrap()["updatedAt"],
        updated_at,
        "the simulator keeps Lever's trap: a new resume does not move updatedAt"
    );

    // A deletion in Lever, by contrast, shows on the next incremental run: the deleted
    // list is read with every window (no reconciliation is due yet).
    let gone = fixture.candidate_ids()[1].clone();
    fixture.delete_candidate(&gone).unwrap();

    let t1 = t0 + Duration::seconds(901);
    stack.sync(&puller, t1).await.unwrap();
    let deleted = head(&stack, &tenant, EntityKind::Candidate, &gone)
        .await
        .unwrap();
    assert!(
        deleted.view.deleted.is_some(),
        "{gone}, deleted in Lever, is a tombstone after the next incremental run"
    );
    let after_incremental = head(&stack, &tenant, EntityKind::Candidate, &id)
        .await
        .unwrap();
    assert!(
        !attachment_ids(&after_incremental).contains(&resume),
        "an incremental run cannot see the new resume (the test would prove nothing)"
    );
    assert_eq!(after_incremental.version, before.version);

    let t2 = t1 + Duration::days(3) + Duration::hours(1);
    let report = stack.sync(&puller, t2).await.unwrap();
    let swept = head(&stack, &tenant, EntityKind::Candidate, &id)
        .await
        .unwrap();
    assert!(
        attachment_ids(&swept).contains(&resume),
        "the sweep read the new resume: {:?}",
        attachment_ids(&swept)
    );
    assert!(report.counts.attachments_stored >= 1, "{:?}", report.counts);
    let element = swept.view.fields["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"].as_str() == Some(resume.as_str()))
        .cloned()
        .unwrap();
    assert_eq!(element["type"], "resume", "{element}");
    assert_eq!(
        element["file"]["sha256"].as_str(),
        Some(fixture.sim.file_sha256(&resume).as_str()),
        "the resume's bytes were downloaded and stored: {element}"
    );
}
