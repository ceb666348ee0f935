//! Integration tests of the DynamoDB record store against the local AWS emulator (moto).
//! They need `AWS_ENDPOINT_URL` pointing at a running moto server; each test creates its
//! own uniquely named table with the schema of infra/template.yaml.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, TimeZone, Utc};
use eds_shared::domain::ids::{AtsId, EntityKind, RecordKey, TenantId};
use eds_shared::domain::merge::{DeletedBy, ViewMode};
use eds_shared::domain::model::{LayerKind, Observation, ObservationScope, Provenance};
use eds_shared::domain::version::{Cause, Change, apply, apply_in_run};
use eds_shared::store::dynamodb::{DynamoStore, record_pk};
use eds_shared::store::{RecordOutcome, RecordRead, RecordSweep, RecordWrite, SHARDS, shard_of};
use serde_json::{Value, json};

/// Records the DynamoDB operation (`X-Amz-Target`) of every request sent.
#[derive(Debug, Clone, Default)]
struct OperationLog(Arc<Mutex<Vec<String>>>);

impl OperationLog {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for OperationLog {
    fn name(&self) -> &'static str {
        "operation-log"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(target) = context.request().headers().get("x-amz-target") {
            let op = target.rsplit('.').next().unwrap_or(target).to_owned();
            self.0.lock().unwrap().push(op);
        }
        Ok(())
    }
}

const WRITE_OPERATIONS: &[&str] = &[
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
];

struct Fixture {
    store: DynamoStore,
    client: Client,
    log: OperationLog,
    tenant: TenantId,
}

async fn fixture(_name: &str) -> Fixture {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL must point at a moto server (see the team brief)");
    let log = OperationLog::default();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version_latest()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .interceptor(log.clone())
        .build();
    let client = Client::from_conf(config);
    let table = create_records_table().await;
    log.take();
    Fixture {
        store: DynamoStore::new(client.clone(), table),
        client,
        log,
        tenant: TenantId::parse(format!(
            "t-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ))
        .unwrap(),
    }
}

/// The records table exactly as infra/template.yaml declares it (the local stack is
/// provisioned from the template); returns its name.
async fn create_records_table() -> String {
    let sdk = eds_local::sdk_config_from_env()
        .await
        .expect("emulator configured");
    let template = eds_local::Template::load(&eds_local::template_path()).expect("template");
    let stage = format!("s{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let stack = eds_local::provision(&sdk, &template, &stage)
        .await
        .expect("provisioned");
    stack
        .physical("RecordsTable")
        .expect("records table")
        .to_string()
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + secs, 0).unwrap()
}

fn fields(v: Value) -> eds_shared::domain::model::Fields {
    serde_json::from_value(v).unwrap()
}

fn record(entity: EntityKind, id: &str, layer: LayerKind, f: Value, at: i64) -> Change {
    Change::Observe {
        layer,
        observation: Observation {
            entity,
            ats_id: AtsId::parse(id).unwrap(),
            ats_updated_at: Some(t(at)),
            scope: ObservationScope::Record { fields: fields(f) },
        },
    }
}

fn attachment(id: &str, attachment_id: &str) -> Change {
    Change::Observe {
        layer: LayerKind::Pull,
        observation: Observation {
            entity: EntityKind::Candidate,
            ats_id: AtsId::parse(id).unwrap(),
            ats_updated_at: None,
            scope: ObservationScope::Element {
                field: "attachments".into(),
                element: json!({"id": attachment_id, "filename": format!("{attachment_id}.pdf")}),
            },
        },
    }
}

impl Fixture {
    fn key(&self, entity: EntityKind, id: &str) -> RecordKey {
        RecordKey::new(self.tenant.clone(), entity, AtsId::parse(id).unwrap())
    }
}

#[tokio::test]
async fn concurrent_writers_on_one_record_lose_no_update_and_duplicate_no_version() {
    let fx = fixture("concurrent").await;
    let key = fx.key(EntityKind::Candidate, "1");
    let seed = fx
        .store
        .apply_page(
            &fx.tenant,
            vec![record(
                EntityKind::Candidate,
                "1",
                LayerKind::Pull,
                json!({"title": "Dev"}),
                0,
            )],
            t(0),
        )
        .await
        .unwrap();
    assert_eq!(seed.created, 1);

    const WRITERS: usize = 6;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = fx.store.clone();
        let tenant = fx.tenant.clone();
        tasks.push(tokio::spawn(async move {
            // A writer that runs out of attempts is redelivered, as SQS would.
            for _ in 0..10 {
                let page = store
                    .apply_page(&tenant, vec![attachment("1", &format!("a{w}"))], t(10))
                    .await
                    .unwrap();
                match &page.records[0].outcome {
                    RecordOutcome::Failed { .. } => continue,
                    RecordOutcome::Updated { .. } => return,
                    other => panic!("writer {w}: unexpected {other:?}"),
                }
            }
            panic!("writer {w} never got through");
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let puts = fx.log.take().iter().filter(|op| *op == "PutItem").count();
    eprintln!("{puts} PutItem requests for {WRITERS} changes (2 each without contention)");

    let head = fx.store.get(&key).await.unwrap().unwrap();
    let mut ids: Vec<String> = head.view.fields["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let expected: Vec<String> = (0..WRITERS).map(|w| format!("a{w}")).collect();
    assert_eq!(ids, expected, "no writer's update was lost");

    let history = fx.store.history(&key).await.unwrap();
    let numbers: Vec<u64> = history.iter().map(|h| h.version.version).collect();
    assert_eq!(
        numbers,
        (1..=(WRITERS as u64 + 1)).collect::<Vec<_>>(),
        "one version per change, no gaps"
    );
    assert_eq!(head.version, WRITERS as u64 + 1);
    let mut hashes: Vec<_> = history.iter().map(|h| h.version.content_hash).collect();
    hashes.dedup();
    assert_eq!(
        hashes.len(),
        history.len(),
        "no version duplicates its predecessor"
    );
    // Every version adds exactly one attachment to the one before it.
    for (i, h) in history.iter().enumerate() {
        let n = h
            .version
            .view
            .fields
            .get("attachments")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        assert_eq!(n, i);
    }
}

#[tokio::test]
async fn crash_between_version_write_and_head_update_is_repaired_by_the_next_write() {
    let fx = fixture("crash").await;
    let key = fx.key(EntityKind::Job, "9");
    fx.store
        .apply_page(
            &fx.tenant,
            vec![record(
                EntityKind::Job,
                "9",
                LayerKind::Push,
                json!({"name": "Eng"}),
                0,
            )],
            t(0),
        )
        .await
        .unwrap();
    let v1 = fx.store.get(&key).await.unwrap().unwrap();

    // A writer computed version 2, wrote its version item and crashed before the head.
    let crashed = record(
        EntityKind::Job,
        "9",
        LayerKind::Pull,
        json!({"name": "Engineer"}),
        1,
    );
    let orphan = apply(Some(&v1), &crashed, t(5)).unwrap().unwrap().version;
    fx.client
        .put_item()
        .table_name(fx.store.table())
        .set_item(Some(
            DynamoStore::encode_item(&key, &orphan, false).unwrap(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(fx.store.get(&key).await.unwrap().unwrap().version, 1);
    assert_eq!(
        fx.store.history(&key).await.unwrap().len(),
        1,
        "uncommitted orphan is not history yet"
    );

    // The next write (another change) rolls the head onto the orphan, then applies.
    let next = record(
        EntityKind::Job,
        "9",
        LayerKind::Push,
        json!({"name": "Eng", "status": "open"}),
        2,
    );
    let page = fx
        .store
        .apply_page(&fx.tenant, vec![next], t(6))
        .await
        .unwrap();
    assert!(
        matches!(
            page.records[0].outcome,
            RecordOutcome::Updated { from: 2, to: 3, .. }
        ),
        "{:?}",
        page.records[0].outcome
    );
    let head = fx.store.get(&key).await.unwrap().unwrap();
    assert_eq!(head.version, 3);
    let pulled = head
        .state
        .pull
        .as_ref()
        .expect("the orphan's pull layer is not lost");
    assert_eq!(pulled.fields["name"], json!("Engineer"));
    assert_eq!(
        head.view.fields["name"],
        json!("Eng"),
        "the newer push wins the conflict"
    );
    assert_eq!(head.view.fields["status"], json!("open"));
    let history = fx.store.history(&key).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|h| h.version.version)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(history[1].version, orphan);
}

#[tokio::test]
async fn redelivery_after_a_crash_commits_the_orphan_without_a_duplicate() {
    let fx = fixture("redeliver").await;
    let key = fx.key(EntityKind::Candidate, "5");
    let first = record(
        EntityKind::Candidate,
        "5",
        LayerKind::Push,
        json!({"first_name": "Ada"}),
        0,
    );
    fx.store
        .apply_page(&fx.tenant, vec![first], t(0))
        .await
        .unwrap();
    let v1 = fx.store.get(&key).await.unwrap().unwrap();
    let change = record(
        EntityKind::Candidate,
        "5",
        LayerKind::Pull,
        json!({"first_name": "Ada", "title": "CTO"}),
        1,
    );
    let orphan = apply(Some(&v1), &change, t(1)).unwrap().unwrap().version;
    fx.client
        .put_item()
        .table_name(fx.store.table())
        .set_item(Some(
            DynamoStore::encode_item(&key, &orphan, false).unwrap(),
        ))
        .send()
        .await
        .unwrap();

    // SQS redelivers the same message: the orphan becomes the head, nothing else.
    let page = fx
        .store
        .apply_page(&fx.tenant, vec![change], t(2))
        .await
        .unwrap();
    assert_eq!(page.unchanged, 1);
    let head = fx.store.get(&key).await.unwrap().unwrap();
    assert_eq!(head, orphan);
    assert_eq!(fx.store.history(&key).await.unwrap().len(), 2);
    assert_eq!(head.view.provenance["title"], Provenance::Pull);
}

#[tokio::test]
async fn as_of_returns_the_version_valid_at_that_time() {
    let fx = fixture("asof").await;
    let key = fx.key(EntityKind::Application, "3");
    for (i, stage) in ["Applied", "Interview", "Offer"].iter().enumerate() {
        let c = record(
            EntityKind::Application,
            "3",
            LayerKind::Pull,
            json!({"stage_name": stage}),
            i as i64,
        );
        fx.store
            .apply_page(&fx.tenant, vec![c], t(100 * (i as i64 + 1)))
            .await
            .unwrap();
    }
    let stage_at = |v: Option<eds_shared::domain::version::Version>| {
        v.map(|v| v.view.fields["stage_name"].clone())
    };
    assert_eq!(stage_at(fx.store.as_of(&key, t(99)).await.unwrap()), None);
    assert_eq!(
        stage_at(fx.store.as_of(&key, t(100)).await.unwrap()),
        Some(json!("Applied"))
    );
    assert_eq!(
        stage_at(fx.store.as_of(&key, t(250)).await.unwrap()),
        Some(json!("Interview"))
    );
    assert_eq!(
        stage_at(
            fx.store
                .as_of(&key, t(300) - Duration::milliseconds(1))
                .await
                .unwrap()
        ),
        Some(json!("Interview"))
    );
    assert_eq!(
        stage_at(fx.store.as_of(&key, t(10_000)).await.unwrap()),
        Some(json!("Offer"))
    );

    let history = fx.store.history(&key).await.unwrap();
    let intervals: Vec<_> = history
        .iter()
        .map(|h| (h.version.valid_from, h.valid_to))
        .collect();
    assert_eq!(
        intervals,
        vec![
            (t(100), Some(t(200))),
            (t(200), Some(t(300))),
            (t(300), None)
        ]
    );
}

#[tokio::test]
async fn unchanged_page_causes_zero_write_requests() {
    let fx = fixture("unchanged").await;
    let page: Vec<Change> = (0..150)
        .map(|i| {
            record(
                EntityKind::Candidate,
                &i.to_string(),
                LayerKind::Pull,
                json!({"first_name": format!("N{i}")}),
                0,
            )
        })
        .collect();
    let first = fx
        .store
        .apply_page(&fx.tenant, page.clone(), t(0))
        .await
        .unwrap();
    assert_eq!(first.created, 150);
    assert_eq!(
        first.requests.writes, 300,
        "one version item and one head per new record"
    );
    fx.log.take();

    let again = fx.store.apply_page(&fx.tenant, page, t(60)).await.unwrap();
    let sent = fx.log.take();
    assert_eq!(again.unchanged, 150);
    assert_eq!(again.versions_written, 0);
    let writes: Vec<&String> = sent
        .iter()
        .filter(|op| WRITE_OPERATIONS.contains(&op.as_str()))
        .collect();
    assert!(writes.is_empty(), "unchanged page wrote: {writes:?}");
    assert_eq!(
        sent,
        vec!["BatchGetItem", "BatchGetItem"],
        "150 heads read in two batches"
    );
    assert_eq!(again.requests.writes, 0);
    assert_eq!(again.requests.reads, 2);
}

#[tokio::test]
async fn page_reports_backfills_corrections_and_skips_bad_records() {
    let fx = fixture("report").await;
    let push = vec![
        record(
            EntityKind::Candidate,
            "1",
            LayerKind::Push,
            json!({"first_name": "Ada", "title": "Dev"}),
            0,
        ),
        record(
            EntityKind::Candidate,
            "2",
            LayerKind::Push,
            json!({"first_name": "Bo"}),
            0,
        ),
    ];
    fx.store.apply_page(&fx.tenant, push, t(0)).await.unwrap();
    let pull = vec![
        record(
            EntityKind::Candidate,
            "1",
            LayerKind::Pull,
            json!({"first_name": "Ada", "title": "CTO", "company": "X"}),
            5,
        ),
        record(
            EntityKind::Candidate,
            "2",
            LayerKind::Pull,
            json!({"first_name": "x".repeat(70 * 1024)}),
            5,
        ),
        record(
            EntityKind::Candidate,
            "3",
            LayerKind::Pull,
            json!({"first_name": "Cy"}),
            5,
        ),
    ];
    let out = fx.store.apply_page(&fx.tenant, pull, t(10)).await.unwrap();
    assert_eq!((out.created, out.updated, out.rejected), (1, 1, 1));
    // A record nobody pushed (id 3) backfills nothing: there was no pushed gap to fill.
    assert_eq!(
        (out.backfilled, out.corrected),
        (1, 1),
        "company backfilled; title corrected"
    );
    assert!(
        matches!(&out.records[1].outcome, RecordOutcome::Rejected { error } if error.contains("bound"))
    );
    assert_eq!(
        fx.store
            .get(&fx.key(EntityKind::Candidate, "2"))
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
}

#[tokio::test]
async fn disable_sweep_hides_every_pulled_value_and_enable_restores_it() {
    let fx = fixture("disable").await;
    let key = fx.key(EntityKind::Candidate, "1");
    let changes = vec![
        record(
            EntityKind::Candidate,
            "1",
            LayerKind::Push,
            json!({"first_name": "Ada"}),
            0,
        ),
        record(
            EntityKind::Candidate,
            "1",
            LayerKind::Pull,
            json!({"first_name": "Ada", "title": "CTO"}),
            1,
        ),
    ];
    fx.store
        .apply_page(&fx.tenant, changes, t(0))
        .await
        .unwrap();
    let keys = vec![
        (EntityKind::Candidate, AtsId::parse("1").unwrap()),
        (EntityKind::Job, AtsId::parse("404").unwrap()),
    ];
    let out = fx
        .store
        .set_mode_page(&fx.tenant, &keys, ViewMode::PushOnly, t(5))
        .await
        .unwrap();
    assert_eq!(
        (out.updated, out.unchanged),
        (1, 1),
        "a missing record is not created"
    );
    let head = fx.store.get(&key).await.unwrap().unwrap();
    assert_eq!(head.cause, Cause::Disable);
    assert_eq!(head.view.fields, fields(json!({"first_name": "Ada"})));
    assert!(
        fx.store
            .get(&fx.key(EntityKind::Job, "404"))
            .await
            .unwrap()
            .is_none()
    );

    fx.store
        .set_mode_page(&fx.tenant, &keys, ViewMode::Merged, t(6))
        .await
        .unwrap();
    let head = fx.store.get(&key).await.unwrap().unwrap();
    assert_eq!(head.cause, Cause::Enable);
    assert_eq!(head.view.fields["title"], json!("CTO"));
    assert_eq!(
        fx.store.history(&key).await.unwrap().len(),
        4,
        "history kept throughout"
    );
}

#[tokio::test]
async fn list_keys_enumerates_a_tenant_by_shard_and_delete_removes_every_item() {
    let fx = fixture("sweep").await;
    let other = TenantId::parse(format!("{}-other", fx.tenant)).unwrap();
    let theirs: Vec<Change> = (0..3)
        .map(|i| {
            record(
                EntityKind::Candidate,
                &i.to_string(),
                LayerKind::Push,
                json!({"first_name": "Z"}),
                0,
            )
        })
        .collect();
    fx.store.apply_page(&other, theirs, t(0)).await.unwrap();
    let page: Vec<Change> = (0..40)
        .map(|i| {
            record(
                EntityKind::Candidate,
                &i.to_string(),
                LayerKind::Push,
                json!({"first_name": "A"}),
                0,
            )
        })
        .collect();
    fx.store.apply_page(&fx.tenant, page, t(0)).await.unwrap();
    // A second version for record 7, then a tombstone for record 8.
    let more = vec![
        record(
            EntityKind::Candidate,
            "7",
            LayerKind::Push,
            json!({"first_name": "B"}),
            1,
        ),
        Change::Observe {
            layer: LayerKind::Push,
            observation: Observation {
                entity: EntityKind::Candidate,
                ats_id: AtsId::parse("8").unwrap(),
                ats_updated_at: Some(t(1)),
                scope: ObservationScope::Deleted,
            },
        },
    ];
    fx.store.apply_page(&fx.tenant, more, t(1)).await.unwrap();

    let mut listed = Vec::new();
    let mut shards_used = 0;
    for shard in 0..SHARDS {
        let mut start: Option<String> = None;
        let mut in_shard = 0;
        loop {
            let page = fx
                .store
                .list_keys(&fx.tenant, shard, start.as_deref(), 2)
                .await
                .unwrap();
            for k in &page.keys {
                assert_eq!(shard_of(k.entity, &k.ats_id), shard);
            }
            in_shard += page.keys.len();
            listed.extend(page.keys);
            match page.next {
                Some(n) => start = Some(n),
                None => break,
            }
        }
        shards_used += usize::from(in_shard > 0);
    }
    assert_eq!(listed.len(), 40, "every record once, heads only");
    assert!(
        shards_used >= 8,
        "40 records spread over {shards_used} shards"
    );
    let k7 = listed.iter().find(|k| k.ats_id.as_str() == "7").unwrap();
    assert_eq!(k7.version, 2);
    assert!(
        listed
            .iter()
            .find(|k| k.ats_id.as_str() == "8")
            .unwrap()
            .tombstone
    );
    assert_eq!(
        fx.store
            .get(&fx.key(EntityKind::Candidate, "8"))
            .await
            .unwrap()
            .unwrap()
            .view
            .deleted,
        Some(DeletedBy::Push)
    );
    // The other tenant's records (same ids) live in their own key space.
    let mut theirs = 0;
    for shard in 0..SHARDS {
        theirs += fx
            .store
            .list_keys(&other, shard, None, 100)
            .await
            .unwrap()
            .keys
            .len();
    }
    assert_eq!(theirs, 3);

    let key7 = fx.key(EntityKind::Candidate, "7");
    assert_eq!(
        fx.store
            .delete_all_items(std::slice::from_ref(&key7), 4)
            .await
            .unwrap(),
        vec![3],
        "two versions and the head"
    );
    assert!(fx.store.get(&key7).await.unwrap().is_none());
    assert!(fx.store.history(&key7).await.unwrap().is_empty());
    assert_eq!(
        fx.store
            .delete_all_items(std::slice::from_ref(&key7), 4)
            .await
            .unwrap(),
        vec![0],
        "idempotent"
    );
    let shard = shard_of(EntityKind::Candidate, &key7.ats_id);
    let remaining = fx
        .store
        .list_keys(&fx.tenant, shard, None, 100)
        .await
        .unwrap();
    assert!(remaining.keys.iter().all(|k| k.ats_id.as_str() != "7"));
}

#[tokio::test]
async fn deletion_finds_every_version_and_orphan_from_the_head_without_a_query() {
    let fx = fixture("delete-orphans").await;
    let key = fx.key(EntityKind::Candidate, "3");
    let plain = fx.key(EntityKind::Candidate, "4");
    for (at, name) in [(0, "A"), (1, "B")] {
        let page = ["3", "4"]
            .iter()
            .map(|id| {
                record(
                    EntityKind::Candidate,
                    id,
                    LayerKind::Push,
                    json!({ "first_name": name }),
                    at,
                )
            })
            .collect();
        fx.store.apply_page(&fx.tenant, page, t(at)).await.unwrap();
    }
    // A writer with two changes for record 3 put versions 3 and 4, then crashed before
    // the head: two contiguous orphans above head version 2.
    let mut last = fx.store.get(&key).await.unwrap().unwrap();
    for at in [2, 3] {
        let change = record(
            EntityKind::Candidate,
            "3",
            LayerKind::Pull,
            json!({ "first_name": "C", "title": format!("T{at}") }),
            at,
        );
        last = apply(Some(&last), &change, t(at)).unwrap().unwrap().version;
        fx.client
            .put_item()
            .table_name(fx.store.table())
            .set_item(Some(DynamoStore::encode_item(&key, &last, false).unwrap()))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(last.version, 4);
    let absent = fx.key(EntityKind::Candidate, "404");
    fx.log.take();

    let counts = fx
        .store
        .delete_all_items(&[key.clone(), plain.clone(), absent], 2)
        .await
        .unwrap();
    assert_eq!(
        counts,
        vec![5, 3, 0],
        "head + 2 versions + 2 orphans; head + 2 versions; nothing"
    );
    let ops = fx.log.take();
    assert!(
        ops.iter()
            .all(|op| op == "BatchGetItem" || op == "BatchWriteItem"),
        "located by reads of known keys, not by queries: {ops:?}"
    );
    for k in [&key, &plain] {
        let left = fx
            .client
            .query()
            .table_name(fx.store.table())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(record_pk(k)))
            .send()
            .await
            .unwrap();
        assert_eq!(left.count(), 0, "{k}: {:?}", left.items());
    }
}

/// Every item under the record's pk (head and version items, orphans included).
async fn items_of(fx: &Fixture, key: &RecordKey) -> Vec<String> {
    let out = fx
        .client
        .query()
        .table_name(fx.store.table())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(record_pk(key)))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .filter_map(|i| i.get("sk").and_then(|v| v.as_s().ok()).cloned())
        .collect()
}

fn attachment_ids(v: &eds_shared::domain::version::Version) -> Vec<String> {
    let mut ids: Vec<String> = v
        .view
        .fields
        .get("attachments")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_pull_run_amends_its_own_version_so_a_record_gets_one_version_per_sync() {
    let fx = fixture("amend").await;
    let key = fx.key(EntityKind::Candidate, "7");
    let candidate = record(
        EntityKind::Candidate,
        "7",
        LayerKind::Pull,
        json!({"first_name": "Ada"}),
        0,
    );
    let first = fx
        .store
        .apply_run_page(&fx.tenant, "run-1", vec![candidate.clone()], t(10))
        .await
        .unwrap();
    assert_eq!(first.created, 1);
    let v1 = fx.store.get(&key).await.unwrap().unwrap();
    assert_eq!(v1.run.as_deref(), Some("run-1"));

    // The attachments stream of the same run: the run's version is amended.
    let page = fx
        .store
        .apply_run_page(
            &fx.tenant,
            "run-1",
            vec![attachment("7", "cv"), attachment("7", "cover")],
            t(20),
        )
        .await
        .unwrap();
    assert!(
        matches!(
            page.records[0].outcome,
            RecordOutcome::Updated { from: 1, to: 1, .. }
        ),
        "{:?}",
        page.records[0].outcome
    );
    assert_eq!(page.versions_written, 0);
    let head = fx.store.get(&key).await.unwrap().unwrap();
    assert_eq!(head.version, 1);
    assert_eq!(head.valid_from, v1.valid_from, "valid_from kept");
    assert_eq!(head.view.fields["first_name"], json!("Ada"));
    assert_eq!(attachment_ids(&head), ["cover", "cv"]);
    let history = fx.store.history(&key).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        history[0].version, head,
        "the version item is the head's copy"
    );
    assert_eq!(items_of(&fx, &key).await, ["HEAD", "V#0000000001"]);

    // Redelivery of both pages (same run, or the next run re-reading them): no write.
    fx.log.take();
    for run in ["run-1", "run-2"] {
        let again = fx
            .store
            .apply_run_page(
                &fx.tenant,
                run,
                vec![candidate.clone(), attachment("7", "cv")],
                t(30),
            )
            .await
            .unwrap();
        assert_eq!(again.unchanged, 1, "{run}");
    }
    let writes: Vec<String> = fx
        .log
        .take()
        .into_iter()
        .filter(|op| WRITE_OPERATIONS.contains(&op.as_str()))
        .collect();
    assert!(writes.is_empty(), "redelivery wrote: {writes:?}");
    assert_eq!(fx.store.get(&key).await.unwrap().unwrap(), head);
}

#[tokio::test]
async fn versions_of_an_earlier_run_or_of_a_push_are_never_amended() {
    let fx = fixture("no-amend").await;
    let key = fx.key(EntityKind::Candidate, "8");
    let pull = |title: &str, at: i64| {
        record(
            EntityKind::Candidate,
            "8",
            LayerKind::Pull,
            json!({"title": title}),
            at,
        )
    };
    fx.store
        .apply_run_page(&fx.tenant, "run-1", vec![pull("Dev", 0)], t(10))
        .await
        .unwrap();
    let v1 = fx.store.get(&key).await.unwrap().unwrap();

    // A push lands between the run's two writes: it gets its own version, and the run's
    // next write follows it instead of amending anything.
    let push = record(
        EntityKind::Candidate,
        "8",
        LayerKind::Push,
        json!({"first_name": "Ada"}),
        1,
    );
    let pushed = fx
        .store
        .apply_page(&fx.tenant, vec![push], t(20))
        .await
        .unwrap();
    assert_eq!(pushed.versions_written, 1);
    let page = fx
        .store
        .apply_run_page(&fx.tenant, "run-1", vec![attachment("8", "cv")], t(30))
        .await
        .unwrap();
    assert!(
        matches!(
            page.records[0].outcome,
            RecordOutcome::Updated { from: 2, to: 3, .. }
        ),
        "{:?}",
        page.records[0].outcome
    );

    // The next run changes the record: a new version, the earlier run's is kept.
    let page = fx
        .store
        .apply_run_page(&fx.tenant, "run-2", vec![pull("CTO", 2)], t(40))
        .await
        .unwrap();
    assert_eq!(page.versions_written, 1);
    // A disable sweep, then the same run again: the sweep's version is not amended.
    fx.store
        .set_mode_page(
            &fx.tenant,
            &[(EntityKind::Candidate, AtsId::parse("8").unwrap())],
            ViewMode::PushOnly,
            t(50),
        )
        .await
        .unwrap();
    let page = fx
        .store
        .apply_run_page(&fx.tenant, "run-2", vec![attachment("8", "cover")], t(60))
        .await
        .unwrap();
    assert_eq!(page.versions_written, 1);

    let history = fx.store.history(&key).await.unwrap();
    let summary: Vec<(u64, Cause, Option<&str>)> = history
        .iter()
        .map(|h| (h.version.version, h.version.cause, h.version.run.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, Cause::Pull, Some("run-1")),
            (2, Cause::Push, None),
            (3, Cause::Pull, Some("run-1")),
            (4, Cause::Pull, Some("run-2")),
            (5, Cause::Disable, None),
            (6, Cause::Pull, Some("run-2")),
        ]
    );
    assert_eq!(history[0].version, v1, "the first version is untouched");
    assert!(attachment_ids(&history[1].version).is_empty());
    assert_eq!(history[2].version.view.fields["first_name"], json!("Ada"));
    assert_eq!(attachment_ids(&history[2].version), ["cv"]);
    let pulled: Vec<&str> = history[5].version.state.pull.as_ref().unwrap().fields["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(
        pulled.len(),
        2,
        "both rows kept in the pull layer: {pulled:?}"
    );
    assert_eq!(
        history[5].version.state.mode,
        ViewMode::PushOnly,
        "still disabled"
    );
    assert!(!history[5].version.view.fields.contains_key("attachments"));
}

/// Candidate `id` written by the pull run "run-1" ({"title": "Dev"} at t(10)): its key
/// and version 1.
async fn written_by_run_1(
    fx: &Fixture,
    id: &str,
) -> (RecordKey, eds_shared::domain::version::Version) {
    let key = fx.key(EntityKind::Candidate, id);
    let pulled = record(
        EntityKind::Candidate,
        id,
        LayerKind::Pull,
        json!({"title": "Dev"}),
        0,
    );
    fx.store
        .apply_run_page(&fx.tenant, "run-1", vec![pulled], t(10))
        .await
        .unwrap();
    let v1 = fx.store.get(&key).await.unwrap().unwrap();
    (key, v1)
}

#[tokio::test]
async fn an_orphan_above_a_runs_version_is_committed_and_followed_not_amended_away() {
    let fx = fixture("amend-orphan").await;
    let (key, v1) = written_by_run_1(&fx, "9").await;
    // A push computed version 2 from version 1, put it and crashed before the head.
    let push = record(
        EntityKind::Candidate,
        "9",
        LayerKind::Push,
        json!({"first_name": "Ada"}),
        1,
    );
    let orphan = apply(Some(&v1), &push, t(15)).unwrap().unwrap().version;
    fx.client
        .put_item()
        .table_name(fx.store.table())
        .set_item(Some(
            DynamoStore::encode_item(&key, &orphan, false).unwrap(),
        ))
        .send()
        .await
        .unwrap();

    // The run's attachment: amending version 1 would leave the orphan built on content
    // that no longer exists; instead the orphan is committed and the run follows it.
    let page = fx
        .store
        .apply_run_page(&fx.tenant, "run-1", vec![attachment("9", "cv")], t(20))
        .await
        .unwrap();
    assert!(
        matches!(
            page.records[0].outcome,
            RecordOutcome::Updated { from: 2, to: 3, .. }
        ),
        "{:?}",
        page.records[0].outcome
    );
    let history = fx.store.history(&key).await.unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].version, v1, "version 1 untouched");
    assert_eq!(history[1].version, orphan, "the push is not lost");
    let head = fx.store.get(&key).await.unwrap().unwrap();
    assert_eq!(head.view.fields["first_name"], json!("Ada"));
    assert_eq!(attachment_ids(&head), ["cv"]);
}

#[tokio::test]
async fn writers_racing_a_runs_amends_lose_no_update_and_never_follow_amended_away_content() {
    let fx = fixture("amend-race").await;
    let key = fx.key(EntityKind::Candidate, "1");
    fx.store
        .apply_run_page(
            &fx.tenant,
            "run-1",
            vec![record(
                EntityKind::Candidate,
                "1",
                LayerKind::Pull,
                json!({"title": "Dev"}),
                0,
            )],
            t(0),
        )
        .await
        .unwrap();

    // Writers of the run (amending) race writers outside it (appending on top of a
    // version the run may amend), several rounds each.
    const EACH: usize = 4;
    let mut tasks = Vec::new();
    for w in 0..2 * EACH {
        let store = fx.store.clone();
        let tenant = fx.tenant.clone();
        tasks.push(tokio::spawn(async move {
            let change = vec![attachment("1", &format!("a{w}"))];
            for _ in 0..10 {
                let page = if w % 2 == 0 {
                    store
                        .apply_run_page(&tenant, "run-1", change.clone(), t(10))
                        .await
                } else {
                    store.apply_page(&tenant, change.clone(), t(10)).await
                }
                .unwrap();
                match &page.records[0].outcome {
                    RecordOutcome::Failed { .. } => continue,
                    RecordOutcome::Updated { .. } => return,
                    other => panic!("writer {w}: unexpected {other:?}"),
                }
            }
            panic!("writer {w} never got through");
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let head = fx.store.get(&key).await.unwrap().unwrap();
    let expected: Vec<String> = (0..2 * EACH).map(|w| format!("a{w}")).collect();
    assert_eq!(
        attachment_ids(&head),
        expected,
        "no writer's update was lost"
    );
    let history = fx.store.history(&key).await.unwrap();
    let numbers: Vec<u64> = history.iter().map(|h| h.version.version).collect();
    assert_eq!(numbers, (1..=head.version).collect::<Vec<_>>(), "no gaps");
    assert!(
        head.version <= 1 + 2 * EACH as u64,
        "at most one version per change"
    );
    // Each version holds every attachment of the one before it: none was built on
    // content that an amend replaced.
    for pair in history.windows(2) {
        let (before, after) = (
            attachment_ids(&pair[0].version),
            attachment_ids(&pair[1].version),
        );
        assert!(
            before.iter().all(|a| after.contains(a)),
            "version {} lost {before:?} -> {after:?}",
            pair[1].version.version
        );
    }
    let mut items = items_of(&fx, &key).await;
    items.retain(|sk| sk != "HEAD");
    assert_eq!(items.len() as u64, head.version, "no orphan left behind");
}

/// D23 without transactions: a writer read the run's version, the run amended it, and
/// the writer crashed after putting its version item (built on the content the amend
/// replaced). That orphan is never committed; the next writer replaces it, and no
/// version follows amended-away content.
#[tokio::test]
async fn an_orphan_built_on_content_an_amend_replaced_is_replaced_not_committed() {
    let fx = fixture("stale-orphan").await;
    let (key, v1) = written_by_run_1(&fx, "5").await;
    let push = record(
        EntityKind::Candidate,
        "5",
        LayerKind::Push,
        json!({"first_name": "Ada"}),
        1,
    );
    let stale = apply(Some(&v1), &push, t(15)).unwrap().unwrap().version;
    fx.store
        .apply_run_page(&fx.tenant, "run-1", vec![attachment("5", "cv")], t(20))
        .await
        .unwrap();
    let amended = fx.store.get(&key).await.unwrap().unwrap();
    assert_eq!((amended.version, amended.amends), (1, 1));
    let mut item = DynamoStore::encode_item(&key, &stale, false).unwrap();
    item.insert(
        "base_hash".into(),
        AttributeValue::S(v1.content_hash.to_string()),
    );
    fx.client
        .put_item()
        .table_name(fx.store.table())
        .set_item(Some(item))
        .send()
        .await
        .unwrap();

    // The push is redelivered: it builds on the amended version, replacing the orphan.
    let page = fx
        .store
        .apply_page(&fx.tenant, vec![push], t(30))
        .await
        .unwrap();
    assert!(
        matches!(
            page.records[0].outcome,
            RecordOutcome::Updated { from: 1, to: 2, .. }
        ),
        "{:?}",
        page.records[0].outcome
    );
    let history = fx.store.history(&key).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].version, amended);
    let v2 = &history[1].version;
    assert_ne!(
        v2.content_hash, stale.content_hash,
        "the orphan was replaced"
    );
    assert_eq!(v2.view.fields["first_name"], json!("Ada"));
    assert_eq!(attachment_ids(v2), ["cv"], "the amend's attachment is kept");
    assert_eq!(fx.store.get(&key).await.unwrap().as_ref(), Some(v2));
}

/// An invocation that died between an amend's two puts left the head amended and the
/// version item's copy as it was: the head is the commit, so history and as-of reads
/// show the amended content, and the next version follows it.
#[tokio::test]
async fn an_amend_whose_copy_was_lost_is_read_from_the_head_and_followed() {
    let fx = fixture("amend-copy").await;
    let (key, v1) = written_by_run_1(&fx, "6").await;
    let amended = apply_in_run(Some(&v1), &attachment("6", "cv"), t(20), Some("run-1"))
        .unwrap()
        .unwrap()
        .version;
    assert_eq!((amended.version, amended.amends), (1, 1));
    // The state the crash left: the head amended, `V#1` still the first copy.
    fx.client
        .put_item()
        .table_name(fx.store.table())
        .set_item(Some(
            DynamoStore::encode_item(&key, &amended, true).unwrap(),
        ))
        .send()
        .await
        .unwrap();
    let history = fx.store.history(&key).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].version, amended);
    assert_eq!(
        fx.store.as_of(&key, t(30)).await.unwrap().as_ref(),
        Some(&amended)
    );
    let push = record(
        EntityKind::Candidate,
        "6",
        LayerKind::Push,
        json!({"first_name": "Ada"}),
        1,
    );
    fx.store
        .apply_page(&fx.tenant, vec![push], t(40))
        .await
        .unwrap();
    let head = fx.store.get(&key).await.unwrap().unwrap();
    assert_eq!(head.version, 2);
    assert_eq!(attachment_ids(&head), ["cv"]);
}
