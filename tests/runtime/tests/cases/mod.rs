//! The runtime test cases, one body per function behaviour, run by two binaries:
//! `functions` (the binary under the runtime interface emulator on this host) and `sam`
//! (the SAM CLI's `sam local invoke` on the built template, in a Lambda container).
//! Each function, invoked with the `tests/events` fixtures, answers in the shape its
//! trigger expects and has the side effects it should (and none when it rejects its
//! input).

use chrono::Utc;
use eds_runtime_tests::{Backend, Harness, repo_root};
use eds_shared::domain::ids::TenantId;
use eds_shared::tenants::{
    AtsSettings, DEFAULT_RECONCILE_EVERY_SECS, GreenhouseSettings, TenantConfig, TenantRegistry,
    TenantState,
};
use eds_shared::tenants::{Erasure, TenantLifecycle};
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = repo_root().join("tests/events").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn registry(h: &Harness) -> TenantRegistry {
    TenantRegistry::new(
        aws_sdk_dynamodb::Client::new(&h.sdk),
        h.stack.env["TENANTS_TABLE"].clone(),
    )
}

/// Registers `tenant` as enabled (Harvest v3), due now; returns its epoch.
async fn enable(h: &Harness, tenant: &str) -> u64 {
    let now = Utc::now();
    let cfg = TenantConfig {
        tenant_id: TenantId::parse(tenant).expect("tenant id"),
        ats: AtsSettings::Greenhouse(GreenhouseSettings::default()),
        api_base_url: "https://harvest.greenhouse.io".into(),
        auth_url: None,
        secret_name: format!("{}{tenant}", h.stack.env["SECRET_PREFIX"]),
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
    };
    registry(h).enable(cfg, now).await.expect("enabled").epoch
}

async fn tenant_state(h: &Harness, tenant: &str) -> Option<(TenantState, u64, u64)> {
    let id = TenantId::parse(tenant).expect("tenant id");
    registry(h)
        .get(&id)
        .await
        .expect("registry read")
        .map(|r| (r.config.state, r.config.epoch, r.config.interval_secs))
}

async fn item_count(h: &Harness, table_var: &str) -> i32 {
    aws_sdk_dynamodb::Client::new(&h.sdk)
        .scan()
        .table_name(&h.stack.env[table_var])
        .consistent_read(true)
        .send()
        .await
        .expect("scan")
        .count()
}

fn sqs(h: &Harness) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&h.sdk)
}

/// Puts `event`'s messages on `queue_url` and replaces the fixture's receipt handles with
/// the real ones, as the SQS event source hands them to the function.
async fn deliver(h: &Harness, queue_url: &str, mut event: Value) -> Value {
    let sqs = sqs(h);
    let fifo = queue_url.ends_with(".fifo");
    for rec in event["Records"].as_array_mut().expect("Records") {
        let mut send = sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(rec["body"].as_str().expect("body"));
        if fifo {
            send = send
                .message_group_id(rec["attributes"]["MessageGroupId"].as_str().expect("group"))
                .message_deduplication_id(
                    rec["attributes"]["MessageDeduplicationId"]
                        .as_str()
                        .expect("dedup"),
                );
        }
        send.send().await.expect("sent");
        let got = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(1)
            .send()
            .await
            .expect("received");
        let msg = got.messages().first().expect("the message just sent");
        rec["receiptHandle"] = json!(msg.receipt_handle().expect("handle"));
    }
    event
}

/// Receives what is visible on `queue_url` and deletes it (a FIFO group stays blocked
/// while one of its messages is in flight).
async fn take_messages(h: &Harness, queue_url: &str) -> Vec<String> {
    let sqs = sqs(h);
    let got = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("received");
    let mut bodies = Vec::new();
    for m in got.messages() {
        bodies.push(m.body().unwrap_or_default().to_string());
        sqs.delete_message()
            .queue_url(queue_url)
            .receipt_handle(m.receipt_handle().expect("handle"))
            .send()
            .await
            .expect("deleted");
    }
    bodies
}

fn failures(resp: &Value) -> Vec<String> {
    resp["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("a partial batch response, got {resp}"))
        .iter()
        .map(|f| {
            f["itemIdentifier"]
                .as_str()
                .expect("itemIdentifier")
                .to_string()
        })
        .collect()
}

pub async fn scheduler_enqueues_a_pull_job_for_a_due_tenant(backend: Backend) {
    let h = Harness::on(backend).await.expect("stack");
    let epoch = enable(&h, "acme").await;
    let f = h.start("SchedulerFunction").await.expect("started");
    let report = f
        .invoke(&fixture("runtime-scheduled-event.json"))
        .await
        .expect("invoked");
    assert_eq!(
        report["claimed"],
        json!(1),
        "report: {report}; log: {}",
        f.log_text()
    );
    assert!(
        report["messages"].as_u64().is_some_and(|m| m >= 1),
        "{report}"
    );
    let bodies = take_messages(&h, &h.stack.env["PULL_QUEUE_URL"]).await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let job: Value = serde_json::from_str(&bodies[0]).expect("job JSON");
    assert_eq!(job["tenant"], json!("acme"));
    assert_eq!(job["epoch"], json!(epoch));
    // A second tick finds nothing due: the run is claimed.
    let again = f
        .invoke(&fixture("runtime-scheduled-event.json"))
        .await
        .expect("invoked");
    assert_eq!(again["claimed"], json!(0), "{again}");
}

pub async fn puller_reports_a_poison_job_as_a_batch_item_failure_and_drops_a_stale_one(
    backend: Backend,
) {
    let h = Harness::on(backend).await.expect("stack");
    enable(&h, "acme").await;
    let queue = h.stack.env["PULL_QUEUE_URL"].clone();
    let f = h.start("PullerFunction").await.expect("started");

    let poison = deliver(&h, &queue, fixture("runtime-sqs-pull-poison.json")).await;
    let resp = f.invoke(&poison).await.expect("invoked");
    assert_eq!(
        failures(&resp),
        vec!["pull-poison"],
        "log: {}",
        f.log_text()
    );
    // Made visible again at once, so it reaches the DLQ after maxReceiveCount quick
    // receives instead of blocking the tenant's FIFO group for the visibility timeout.
    let again = take_messages(&h, &queue).await;
    assert_eq!(again, vec!["this is not a pull job".to_string()]);

    // A job of an epoch that is not the tenant's (0: before the first enable) is
    // acknowledged without touching the tenant.
    let before = tenant_state(&h, "acme").await;
    let stale = deliver(&h, &queue, fixture("runtime-sqs-pull-job.json")).await;
    let resp = f.invoke(&stale).await.expect("invoked");
    assert!(failures(&resp).is_empty(), "{resp}; log: {}", f.log_text());
    assert_eq!(tenant_state(&h, "acme").await, before);
}

pub async fn push_ingest_merges_a_good_message_and_reports_only_the_bad_one(backend: Backend) {
    let h = Harness::on(backend).await.expect("stack");
    enable(&h, "acme").await;
    let queue = h
        .stack
        .physical("PushQueue")
        .expect("push queue")
        .to_string();
    let f = h.start("PushIngestFunction").await.expect("started");
    let event = deliver(&h, &queue, fixture("runtime-sqs-push-batch.json")).await;
    let resp = f.invoke(&event).await.expect("invoked");
    assert_eq!(
        failures(&resp),
        vec!["push-poison"],
        "log: {}",
        f.log_text()
    );
    let head = aws_sdk_dynamodb::Client::new(&h.sdk)
        .get_item()
        .table_name(&h.stack.env["RECORDS_TABLE"])
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("R#acme#candidate#42".into()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("HEAD".into()),
        )
        .consistent_read(true)
        .send()
        .await
        .expect("get");
    assert!(
        head.item().is_some(),
        "the pushed candidate has a head item"
    );
}

pub async fn settings_enables_changes_the_interval_and_rejects_a_malformed_event_without_writing(
    backend: Backend,
) {
    let h = Harness::on(backend).await.expect("stack");
    let secrets = aws_sdk_secretsmanager::Client::new(&h.sdk);
    secrets
        .create_secret()
        .name(format!("{}acme", h.stack.env["SECRET_PREFIX"]))
        .secret_string(
            json!({"kind": "client_credentials", "client_id": "runtime-client",
                   "client_secret": "runtime-test-key"})
            .to_string(),
        )
        .send()
        .await
        .expect("secret");
    let f = h.start("SettingsFunction").await.expect("started");

    let rejected = f
        .invoke(&fixture("runtime-eventbridge-tenant-malformed.json"))
        .await
        .expect("invoked");
    assert!(
        rejected.get("errorType").is_some(),
        "a function error, got {rejected}"
    );
    assert_eq!(item_count(&h, "TENANTS_TABLE").await, 0, "nothing written");
    assert!(!f.log_text().contains("runtime-test-key"));

    let enabled = f
        .invoke(&fixture("runtime-eventbridge-tenant-enabled.json"))
        .await
        .expect("invoked");
    assert!(
        enabled.get("errorType").is_none(),
        "{enabled}; log: {}",
        f.log_text()
    );
    assert!(matches!(
        tenant_state(&h, "acme").await,
        Some((TenantState::Enabled, _, 900))
    ));

    let changed = f
        .invoke(&fixture("runtime-eventbridge-tenant-interval-changed.json"))
        .await
        .expect("invoked");
    assert!(changed.get("errorType").is_none(), "{changed}");
    assert!(matches!(
        tenant_state(&h, "acme").await,
        Some((TenantState::Enabled, _, 3600))
    ));
    assert!(
        !f.log_text().contains("runtime-test-key"),
        "no secret in the logs"
    );
}

pub async fn disable_fences_the_tenant_and_reports_a_poison_continuation(backend: Backend) {
    let h = Harness::on(backend).await.expect("stack");
    let epoch = enable(&h, "acme").await;
    let f = h.start("DisableFunction").await.expect("started");
    let report = f
        .invoke(&fixture(
            "runtime-eventbridge-tenant-disable-requested.json",
        ))
        .await
        .expect("invoked");
    assert_eq!(
        report["outcome"],
        json!("completed"),
        "{report}; log: {}",
        f.log_text()
    );
    let (state, new_epoch, _) = tenant_state(&h, "acme").await.expect("tenant");
    assert_eq!(state, TenantState::Disabled);
    assert!(new_epoch > epoch, "the epoch fence moved");

    let queue = h.stack.env["DISABLE_QUEUE_URL"].clone();
    let poison = deliver(&h, &queue, fixture("runtime-sqs-lifecycle-poison.json")).await;
    let resp = f.invoke(&poison).await.expect("invoked");
    assert_eq!(failures(&resp), vec!["lifecycle-poison"]);

    // A continuation for an epoch that is no longer current does nothing and succeeds.
    let stale = deliver(&h, &queue, fixture("runtime-sqs-disable-continuation.json")).await;
    let resp = f.invoke(&stale).await.expect("invoked");
    assert!(failures(&resp).is_empty(), "{resp}; log: {}", f.log_text());
}

pub async fn delete_purges_the_tenant_writes_a_receipt_and_treats_a_repeat_as_done(
    backend: Backend,
) {
    let h = Harness::on(backend).await.expect("stack");
    enable(&h, "acme").await;
    let f = h.start("DeleteFunction").await.expect("started");
    let report = f
        .invoke(&fixture(
            "runtime-eventbridge-tenant-deletion-requested.json",
        ))
        .await
        .expect("invoked");
    assert_eq!(
        report["outcome"],
        json!("completed"),
        "{report}; log: {}",
        f.log_text()
    );
    let id = TenantId::parse("acme").expect("id");
    let receipt = registry(&h)
        .receipt(&id, "req-fixture")
        .await
        .expect("read");
    assert!(receipt.is_some(), "a deletion receipt");
    assert!(
        tenant_state(&h, "acme").await.is_none(),
        "the tenant config is gone"
    );

    let queue = h.stack.env["DELETE_QUEUE_URL"].clone();
    let again = deliver(&h, &queue, fixture("runtime-sqs-delete-continuation.json")).await;
    let resp = f.invoke(&again).await.expect("invoked");
    assert!(failures(&resp).is_empty(), "{resp}; log: {}", f.log_text());
}

pub async fn records_api_answers_a_function_url_request_and_isolates_unknown_tenants(
    backend: Backend,
) {
    let h = Harness::on(backend).await.expect("stack");
    enable(&h, "acme").await;
    let f = h.start("RecordsApiFunction").await.expect("started");
    let resp = f
        .invoke(&fixture("runtime-function-url-status.json"))
        .await
        .expect("invoked");
    assert_eq!(
        resp["statusCode"],
        json!(200),
        "{resp}; log: {}",
        f.log_text()
    );
    let body: Value =
        serde_json::from_str(resp["body"].as_str().expect("body")).expect("JSON body");
    assert!(body.to_string().contains("enabled"), "{body}");

    let mut other = fixture("runtime-function-url-status.json");
    other["rawPath"] = json!("/tenants/nobody/status");
    other["requestContext"]["http"]["path"] = json!("/tenants/nobody/status");
    let resp = f.invoke(&other).await.expect("invoked");
    assert_eq!(resp["statusCode"], json!(404), "{resp}");
}

pub async fn a_function_missing_its_configuration_fails_at_cold_start_naming_the_variable(
    backend: Backend,
) {
    let h = Harness::on(backend).await.expect("stack");
    let f = h
        .start_with("SchedulerFunction", &[("PULL_QUEUE_URL", "")])
        .await
        .expect("started");
    let resp = f.invoke(&fixture("runtime-scheduled-event.json")).await;
    let text = match resp {
        Ok(v) => v.to_string(),
        Err(e) => e.to_string(),
    };
    let log = f.log_text();
    assert!(
        text.contains("PULL_QUEUE_URL") || log.contains("PULL_QUEUE_URL"),
        "the error names the variable: {text}; log: {log}"
    );
}

/// One `#[tokio::test]` per case, on `$backend`.
#[macro_export]
macro_rules! runtime_cases {
    ($backend:expr) => {
        $crate::runtime_cases!(@each $backend; scheduler_enqueues_a_pull_job_for_a_due_tenant, puller_reports_a_poison_job_as_a_batch_item_failure_and_drops_a_stale_one, push_ingest_merges_a_good_message_and_reports_only_the_bad_one, settings_enables_changes_the_interval_and_rejects_a_malformed_event_without_writing, disable_fences_the_tenant_and_reports_a_poison_continuation, delete_purges_the_tenant_writes_a_receipt_and_treats_a_repeat_as_done, records_api_answers_a_function_url_request_and_isolates_unknown_tenants, a_function_missing_its_configuration_fails_at_cold_start_naming_the_variable);
    };
    (@each $backend:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                cases::$name($backend).await
            }
        )*
    };
}
