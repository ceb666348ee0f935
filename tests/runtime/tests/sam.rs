//! Every function, built by `sam build` and invoked by `sam local invoke` with the
//! `tests/events` fixtures in a Lambda container (the offline base image), against the
//! AWS emulator on the Docker bridge: the cases of `cases/`, as the SAM CLI runs them.
//! Needs Docker; `make test SAM_LOCAL=0` leaves this binary out.

mod cases;

runtime_cases!(eds_runtime_tests::Backend::SamInvoke);

mod start_lambda {
    use eds_shared::tenants::{Erasure, TenantLifecycle};
    use std::time::Duration;

    use aws_sdk_lambda::primitives::Blob;
    use chrono::Utc;
    use eds_runtime_tests::sam::{StartLambda, container_host};
    use eds_runtime_tests::{Backend, Harness, repo_root};
    use eds_shared::tenants::TenantState;
    use greenhouse_sim::scenario::{Scenario, ScenarioSpec};
    use greenhouse_sim::{ALL_SCOPES, SimConfig, Simulator};
    use serde_json::{Value, json};

    fn fixture(name: &str) -> Value {
        let path = repo_root().join("tests/events").join(name);
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("JSON")
    }

    /// Invokes `function` through the Lambda Invoke API of `sam local start-lambda`, as
    /// a deployed caller would (the SDK's Lambda client).
    async fn invoke(lambda: &aws_sdk_lambda::Client, function: &str, event: &Value) -> Value {
        let out = lambda
            .invoke()
            .function_name(function)
            .payload(Blob::new(serde_json::to_vec(event).expect("event")))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoking {function}: {e:?}"));
        let payload = out
            .payload()
            .map(|p| p.as_ref().to_vec())
            .unwrap_or_default();
        let v: Value = serde_json::from_slice(&payload).expect("a JSON response");
        assert!(out.function_error().is_none(), "{function} failed: {v}");
        v
    }

    /// The SQS event source mapping of `queue_url`, by hand: receive what is visible,
    /// hand it to `function` in the fixture's SQS envelope, delete what succeeded;
    /// until the queue stays empty. Returns the number of invocations.
    async fn drain(
        h: &Harness,
        lambda: &aws_sdk_lambda::Client,
        queue_url: &str,
        function: &str,
    ) -> usize {
        let sqs = aws_sdk_sqs::Client::new(&h.sdk);
        let template = fixture("runtime-sqs-pull-job.json")["Records"][0].clone();
        let mut invocations = 0;
        let mut empty_rounds = 0;
        while empty_rounds < 3 {
            assert!(invocations < 60, "{function}: the queue never drained");
            let got = sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("received");
            if got.messages().is_empty() {
                empty_rounds += 1;
                continue;
            }
            empty_rounds = 0;
            let records: Vec<Value> = got
                .messages()
                .iter()
                .map(|m| {
                    let mut r = template.clone();
                    r["messageId"] = json!(m.message_id().unwrap_or_default());
                    r["receiptHandle"] = json!(m.receipt_handle().unwrap_or_default());
                    r["body"] = json!(m.body().unwrap_or_default());
                    r
                })
                .collect();
            let resp = invoke(lambda, function, &json!({ "Records": records })).await;
            invocations += 1;
            let failed: Vec<&str> = resp["batchItemFailures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["itemIdentifier"].as_str())
                .collect();
            assert!(failed.is_empty(), "{function} failed {failed:?}");
            for m in got.messages() {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("deleted");
            }
        }
        invocations
    }

    async fn heads(h: &Harness, entity: &str) -> usize {
        let ddb = aws_sdk_dynamodb::Client::new(&h.sdk);
        let mut n = 0;
        let mut start = None;
        loop {
            let page = ddb
                .scan()
                .table_name(&h.stack.env["RECORDS_TABLE"])
                .consistent_read(true)
                .filter_expression("begins_with(pk, :p) AND sk = :h")
                .expression_attribute_values(
                    ":p",
                    aws_sdk_dynamodb::types::AttributeValue::S(format!("R#acme#{entity}#")),
                )
                .expression_attribute_values(
                    ":h",
                    aws_sdk_dynamodb::types::AttributeValue::S("HEAD".into()),
                )
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            n += page.count() as usize;
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return n;
            }
        }
    }

    async fn tenant_state(h: &Harness) -> Option<eds_shared::tenants::TenantState> {
        let id = eds_shared::domain::ids::TenantId::parse("acme").expect("id");
        registry(h)
            .get(&id)
            .await
            .expect("registry read")
            .map(|r| r.config.state)
    }

    fn registry(h: &Harness) -> eds_shared::tenants::TenantRegistry {
        eds_shared::tenants::TenantRegistry::new(
            aws_sdk_dynamodb::Client::new(&h.sdk),
            h.stack.env["TENANTS_TABLE"].clone(),
        )
    }

    /// enable -> push -> sync -> disable -> delete with a receipt, every step a function
    /// invoked through `sam local start-lambda` with the SDK's Lambda client, the puller
    /// reading the Greenhouse simulator (on the Docker bridge) from its container.
    #[tokio::test]
    async fn a_tenant_s_whole_life_through_sam_local_start_lambda() {
        let h = Harness::on(Backend::SamInvoke).await.expect("stack");
        let gw = container_host().expect("the emulator on the Docker bridge");
        let spec = ScenarioSpec {
            seed: 11,
            candidates: 25,
            jobs: 3,
            applications_per_candidate: 1.0,
            now: Utc::now() - chrono::Duration::minutes(10),
            ..ScenarioSpec::default()
        };
        let scenario = Scenario::generate(&spec);
        let sim = Simulator::start(
            SimConfig {
                bind_host: gw.parse().expect("gateway address"),
                ..SimConfig::default()
            },
            scenario.truth.clone(),
        )
        .await
        .expect("simulator");
        sim.add_oauth_client("eds-client", "client-secret-value", ALL_SCOPES);
        // Secrets are not per stage: a prefix of this test's own (the settings case on the
        // same emulator stores eds/tenants/acme).
        let prefix = format!("eds/{}/tenants/", h.stack.stage);
        let secret_name = format!("{prefix}acme");
        aws_sdk_secretsmanager::Client::new(&h.sdk)
            .create_secret()
            .name(&secret_name)
            .secret_string(
                json!({"kind": "client_credentials", "client_id": "eds-client",
                       "client_secret": "client-secret-value"})
                .to_string(),
            )
            .send()
            .await
            .expect("secret");
        let token_url = sim.token_url();
        let sl = StartLambda::start(
            &h,
            &[
                ("SECRET_PREFIX", prefix.as_str()),
                ("EDS_LOCAL_TESTING", "true"),
                ("EDS_LOCAL_TESTING_ADDRS", gw.as_str()),
                ("GREENHOUSE_TOKEN_URL", token_url.as_str()),
            ],
        )
        .await
        .expect("start-lambda");
        let lambda = aws_sdk_lambda::Client::from_conf(
            aws_sdk_lambda::config::Builder::from(&h.sdk)
                .endpoint_url(&sl.url)
                .timeout_config(
                    aws_sdk_lambda::config::timeout::TimeoutConfig::builder()
                        .operation_timeout(Duration::from_secs(300))
                        .build(),
                )
                .build(),
        );

        // enable
        let mut enabled = fixture("runtime-eventbridge-tenant-enabled.json");
        let storage_host = sim.storage_addr().ip().to_string();
        enabled["detail"] = json!({
            "tenant_id": "acme", "ats_kind": "greenhouse", "api_version": "v3",
            "api_base_url": sim.api_base(), "auth_url": token_url,
            "secret_name": secret_name, "interval_secs": 900,
            "attachment_hosts": [storage_host],
        });
        invoke(&lambda, "SettingsFunction", &enabled).await;
        assert_eq!(
            tenant_state(&h).await,
            Some(TenantState::Enabled),
            "{}",
            sl.log_text()
        );

        // push (one good message, one poison: only that one is reported)
        let push_queue = h
            .stack
            .physical("PushQueue")
            .expect("push queue")
            .to_string();
        let mut push = fixture("runtime-sqs-push-batch.json");
        for r in push["Records"].as_array_mut().expect("Records") {
            r["receiptHandle"] = json!("not-used-by-push-ingest");
            r["eventSourceARN"] = json!(format!("arn:aws:sqs:us-east-1:123456789012:{push_queue}"));
        }
        let resp = invoke(&lambda, "PushIngestFunction", &push).await;
        assert_eq!(
            resp["batchItemFailures"][0]["itemIdentifier"],
            json!("push-poison")
        );
        assert_eq!(heads(&h, "candidate").await, 1, "the pushed candidate");

        // sync: the scheduler enqueues the run, the puller works the queue
        let report = invoke(
            &lambda,
            "SchedulerFunction",
            &fixture("runtime-scheduled-event.json"),
        )
        .await;
        assert_eq!(report["claimed"], json!(1), "{report}");
        let pulls = drain(
            &h,
            &lambda,
            &h.stack.env["PULL_QUEUE_URL"],
            "PullerFunction",
        )
        .await;
        let candidates = scenario.truth.candidates.len();
        let stored = heads(&h, "candidate").await;
        assert!(
            stored >= candidates,
            "{stored} candidate heads after {pulls} puller invocations, the ATS has {candidates}; log: {}",
            sl.log_text()
        );
        assert!(heads(&h, "application").await > 0);

        // disable
        let report = invoke(
            &lambda,
            "DisableFunction",
            &fixture("runtime-eventbridge-tenant-disable-requested.json"),
        )
        .await;
        drain(
            &h,
            &lambda,
            &h.stack.env["DISABLE_QUEUE_URL"],
            "DisableFunction",
        )
        .await;
        assert_eq!(
            tenant_state(&h).await,
            Some(TenantState::Disabled),
            "{report}"
        );

        // delete, with a receipt
        invoke(
            &lambda,
            "DeleteFunction",
            &fixture("runtime-eventbridge-tenant-deletion-requested.json"),
        )
        .await;
        drain(
            &h,
            &lambda,
            &h.stack.env["DELETE_QUEUE_URL"],
            "DeleteFunction",
        )
        .await;
        assert_eq!(
            heads(&h, "candidate").await,
            0,
            "the tenant's records are gone"
        );
        let tenant = eds_shared::domain::ids::TenantId::parse("acme").expect("id");
        let receipt = registry(&h)
            .receipt(&tenant, "req-fixture")
            .await
            .expect("read");
        assert!(
            receipt.is_some(),
            "a deletion receipt; log: {}",
            sl.log_text()
        );
        drop(sim);
    }
}
