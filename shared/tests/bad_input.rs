//! Bad input never panics (issue J, "bad input"): property tests over everything eds
//! parses from outside — Greenhouse payloads (v3 normalisation), pushed bodies
//! and records, SQS job bodies, EventBridge settings/lifecycle events, records API
//! routes. Each input is either accepted or refused with a short, non-empty error that
//! does not echo the input back.
//!
//! Two generators: arbitrary JSON (keys drawn from the real field names plus random
//! ones, so the parsers get past their first checks), and valid documents with one
//! member replaced by arbitrary JSON. Case counts: 256 per property by default (the
//! `make test` run); `EDS_LONG_TESTS=1` raises it to 20,000, `EDS_PROPTEST_CASES=N`
//! sets it exactly (see docs/reliability.md).

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use eds_shared::connector::greenhouse::normalize;
use eds_shared::jobs::{LifecycleJob, PullJob, parse_job};
use eds_shared::pipeline::{delete, disable, push, records_api, settings};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn cases() -> u32 {
    if let Some(n) = std::env::var("EDS_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    if std::env::var("EDS_LONG_TESTS").is_ok_and(|v| v == "1") {
        20_000
    } else {
        256
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Shrinking a panic is useful; thousands of shrink steps in CI are not.
        max_shrink_iters: 2_000,
        // Failures are reported with their input; no regression files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Longest error message accepted: errors name what is wrong, they do not dump input.
const MAX_ERROR_LEN: usize = 2_048;

fn assert_clear(what: &str, err: &str, input: &str) {
    assert!(!err.trim().is_empty(), "{what}: empty error");
    assert!(
        err.len() <= MAX_ERROR_LEN,
        "{what}: error of {} chars",
        err.len()
    );
    if input.len() > 300 {
        assert!(!err.contains(input), "{what}: the error echoes the input");
    }
}

const KEYS: &[&str] = &[
    "id",
    "tenant",
    "tenant_id",
    "records",
    "entity",
    "op",
    "updated_at",
    "created_at",
    "fields",
    "first_name",
    "last_name",
    "email_addresses",
    "phone_numbers",
    "custom_fields",
    "attachments",
    "candidate_id",
    "job_id",
    "office_ids",
    "value",
    "type",
    "name",
    "kind",
    "epoch",
    "run_id",
    "steps",
    "resume",
    "continuation",
    "request_id",
    "requested_at",
    "phase",
    "secret_name",
    "api_base_url",
    "interval_secs",
    "ats_kind",
    "api_version",
    "applications",
    "prospect",
    "url",
    "filename",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_#/.%-]{0,24}",
        "\\PC{0,40}",
        Just("2026-03-01T10:15:30.123Z".to_string()),
        Just("../../etc".to_string()),
        Just("a%2Fb".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("candidate".to_string()),
        Just("upsert".to_string()),
        Just("delete".to_string()),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(KEYS).prop_map(str::to_string),
                        arb_string()
                    ],
                    inner
                ),
                0..8
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `doc` with the member `key` (one of its own, or a new one) set to `value` or removed.
fn mutate(doc: &Value, pick: usize, value: Option<Value>, extra_key: Option<String>) -> Value {
    let mut doc = doc.clone();
    if let Some(obj) = doc.as_object_mut() {
        let keys: Vec<String> = obj.keys().cloned().collect();
        let key = match (extra_key, keys.is_empty()) {
            (Some(k), _) => k,
            (None, true) => return doc,
            (None, false) => keys[pick % keys.len()].clone(),
        };
        match value {
            Some(v) => {
                obj.insert(key, v);
            }
            None => {
                obj.remove(&key);
            }
        }
    }
    doc
}

fn arb_mutation() -> impl Strategy<Value = (usize, Option<Value>, Option<String>)> {
    (
        any::<usize>(),
        prop::option::weighted(0.85, arb_json()),
        prop::option::weighted(0.15, arb_string()),
    )
}

fn v3_candidate() -> Value {
    json!({
        "id": 123, "first_name": "Ada", "last_name": "Lovelace", "company": "Analytical",
        "created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-03-01T10:15:30.123Z",
        "private": false, "can_email": true, "tags": ["a"],
        "email_addresses": [{"type": "personal", "value": "ada@example.org"}],
        "custom_fields": {"shoe": {"name": "Shoe", "type": "number", "value": 38}}
    })
}

fn v3_application() -> Value {
    json!({
        "id": 9, "candidate_id": 123, "job_id": 4, "prospect": false, "status": "active",
        "stage_id": 77, "stage_name": "Screen", "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-02T00:00:00.000Z", "answers": [], "custom_fields": {}
    })
}

fn v3_job() -> Value {
    json!({
        "id": 5, "name": "Rust engineer", "requisition_id": 1001, "status": "open",
        "confidential": false, "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z", "office_ids": [1, "2"], "custom_fields": null
    })
}

fn v3_attachment() -> Value {
    json!({
        "id": 77, "candidate_id": 123, "filename": "cv.pdf", "type": "resume",
        "url": "https://storage.example/a?sig=x", "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z"
    })
}

fn normalize_all(v: &Value) {
    let text = v.to_string();
    let check = |what: &str, r: Result<String, String>| {
        if let Err(e) = r {
            assert_clear(what, &e, &text);
        }
    };
    check(
        "v3_candidate",
        normalize::v3_candidate(v)
            .map(|_| String::new())
            .map_err(|e| e.to_string()),
    );
    check(
        "v3_application",
        normalize::v3_application(v)
            .map(|_| String::new())
            .map_err(|e| e.to_string()),
    );
    check(
        "v3_job",
        normalize::v3_job(v)
            .map(|_| String::new())
            .map_err(|e| e.to_string()),
    );
    check(
        "v3_attachment",
        normalize::v3_attachment(v)
            .map(|_| String::new())
            .map_err(|e| e.to_string()),
    );
    let _ = normalize::best_effort_id(v);
}

fn now() -> DateTime<Utc> {
    "2026-03-02T00:00:00Z".parse().expect("constant")
}

fn push_record() -> Value {
    json!({"entity": "candidate", "id": "123", "op": "upsert",
           "updated_at": "2026-03-01T10:15:30.123Z",
           "fields": {"first_name": "Ada", "emails": [{"type": "work", "value": "a@x.org"}],
                      "custom_fields": {"shoe": 38}}})
}

fn check_push_body(body: &str) {
    match push::parse_body(body) {
        Ok(parsed) => {
            for r in &parsed.records {
                match r {
                    Ok(r) => {
                        if let Err(e) = push::validate_record(r, now()) {
                            assert_clear("validate_record", &e.to_string(), &r.to_string());
                        }
                    }
                    Err(e) => assert_clear("parse_record", &e.to_string(), body),
                }
            }
        }
        Err(e) => assert_clear("parse_body", &e.to_string(), body),
    }
}

fn pull_job() -> Value {
    json!({"tenant": "acme", "epoch": 3, "run_id": "r1",
           "steps": [{"step": "pull", "stream": "candidates"}], "continuation": 0})
}

fn delete_job() -> Value {
    json!({"kind": "delete", "tenant": "acme", "request_id": "req-1",
           "requested_at": "2026-03-01T00:00:00Z", "phase": "records", "counts": {}})
}

fn check_job(body: &str) {
    if let Err(e) = parse_job::<PullJob>(body) {
        assert_clear("parse_job<PullJob>", &e, body);
    }
    if let Err(e) = parse_job::<LifecycleJob>(body) {
        assert_clear("parse_job<LifecycleJob>", &e, body);
    }
}

const DETAIL_TYPES: &[&str] = &[
    "tenant.enabled",
    "tenant.credentials_updated",
    "tenant.interval_changed",
    "tenant.disable_requested",
    "tenant.deletion_requested",
    "tenant.unknown",
];

fn envelope(detail_type: &str, source: &str, detail: Value) -> Value {
    json!({
        "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": detail_type, "source": source, "account": "123456789012",
        "time": "2026-03-01T12:00:00Z", "region": "us-east-1", "resources": [],
        "detail": detail,
    })
}

fn enabled_detail() -> Value {
    json!({"tenant_id": "acme", "ats_kind": "greenhouse", "api_version": "v3",
           "api_base_url": "https://harvest.greenhouse.io", "secret_name": "eds/tenants/acme",
           "interval_secs": 900, "attachment_hosts": ["s3.amazonaws.com"]})
}

fn check_event(raw: &Value) {
    let text = raw.to_string();
    // The envelope itself may be malformed: the handlers refuse that before parsing.
    let Ok(event) = serde_json::from_value::<EventBridgeEvent<Value>>(raw.clone()) else {
        return;
    };
    if let Err(e) = settings::parse_event(&event, "eds/tenants/", Default::default()) {
        assert_clear("settings::parse_event", &e.to_string(), &text);
    }
    if let Err(e) = disable::parse_disable_requested(&event) {
        assert_clear("parse_disable_requested", &e, &text);
    }
    if let Err(e) = delete::parse_deletion_requested(&event) {
        assert_clear("parse_deletion_requested", &e, &text);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn greenhouse_normalisation_never_panics_on_arbitrary_json(v in arb_json()) {
        normalize_all(&v);
    }

    #[test]
    fn greenhouse_normalisation_never_panics_on_a_damaged_record(
        which in 0..4usize,
        (pick, value, extra) in arb_mutation(),
    ) {
        let base = [v3_candidate(), v3_application(), v3_job(), v3_attachment()][which].clone();
        normalize_all(&mutate(&base, pick, value, extra));
    }

    #[test]
    fn pushed_bodies_never_panic_whatever_the_bytes(body in "\\PC{0,200}") {
        check_push_body(&body);
    }

    #[test]
    fn pushed_bodies_never_panic_on_arbitrary_json(records in arb_json(), tenant in arb_json()) {
        check_push_body(&json!({"tenant": tenant, "records": records}).to_string());
        check_push_body(&json!({"tenant": "acme", "records": [records]}).to_string());
    }

    #[test]
    fn pushed_records_never_panic_when_damaged((pick, value, extra) in arb_mutation(),
                                               (fpick, fvalue, fextra) in arb_mutation()) {
        let mut rec = mutate(&push_record(), pick, value, extra);
        if let Some(fields) = rec.get("fields").cloned() {
            rec["fields"] = mutate(&fields, fpick, fvalue, fextra);
        }
        check_push_body(&json!({"tenant": "acme", "records": [rec]}).to_string());
    }

    #[test]
    fn job_bodies_never_panic(v in arb_json(), raw in "\\PC{0,120}") {
        check_job(&v.to_string());
        check_job(&raw);
    }

    #[test]
    fn damaged_job_bodies_never_panic((pick, value, extra) in arb_mutation(), delete in any::<bool>()) {
        let base = if delete { delete_job() } else { pull_job() };
        check_job(&mutate(&base, pick, value, extra).to_string());
    }

    #[test]
    fn eventbridge_events_never_panic(
        dt in prop::sample::select(DETAIL_TYPES),
        detail in arb_json(),
        (pick, value, extra) in arb_mutation(),
        source in prop_oneof![Just("eds.settings".to_string()), arb_string()],
    ) {
        check_event(&envelope(dt, &source, detail));
        let valid = match dt {
            "tenant.enabled" => enabled_detail(),
            "tenant.deletion_requested" => json!({"tenant_id": "acme", "request_id": "r-1"}),
            "tenant.interval_changed" => json!({"tenant_id": "acme", "interval_secs": 600}),
            _ => json!({"tenant_id": "acme"}),
        };
        check_event(&envelope(dt, "eds.settings", mutate(&valid, pick, value, extra)));
    }

    #[test]
    fn records_api_routes_never_panic(
        method in prop_oneof![Just("GET"), Just("POST"), Just("DELETE")],
        segments in prop::collection::vec(arb_string(), 0..7),
        query in "\\PC{0,60}",
    ) {
        let path = format!("/{}", segments.join("/"));
        if let Err(e) = records_api::route(method, &path, &query) {
            assert_clear("records_api::route", &e.to_string(), &path);
        }
    }
}

#[test]
fn the_valid_seeds_of_the_generators_are_accepted() {
    // Otherwise the "damaged" properties would only ever damage garbage.
    assert!(normalize::v3_candidate(&v3_candidate()).is_ok());
    assert!(normalize::v3_application(&v3_application()).is_ok());
    assert!(normalize::v3_job(&v3_job()).is_ok());
    assert!(normalize::v3_attachment(&v3_attachment()).is_ok());
    let body = json!({"tenant": "acme", "records": [push_record()]}).to_string();
    let parsed = push::parse_body(&body).expect("valid body");
    let first = parsed.records[0].as_ref().expect("a readable record");
    assert!(push::validate_record(first, now()).is_ok());
    assert!(parse_job::<PullJob>(&pull_job().to_string()).is_ok());
    assert!(parse_job::<LifecycleJob>(&delete_job().to_string()).is_ok());
    let ev: EventBridgeEvent<Value> =
        serde_json::from_value(envelope("tenant.enabled", "eds.settings", enabled_detail()))
            .expect("envelope");
    assert!(settings::parse_event(&ev, "eds/tenants/", Default::default()).is_ok());
    let ev: EventBridgeEvent<Value> = serde_json::from_value(envelope(
        "tenant.deletion_requested",
        "eds.settings",
        json!({"tenant_id": "acme", "request_id": "r-1"}),
    ))
    .expect("envelope");
    assert!(delete::parse_deletion_requested(&ev).is_ok());
    let ev: EventBridgeEvent<Value> = serde_json::from_value(envelope(
        "tenant.disable_requested",
        "eds.settings",
        json!({"tenant_id": "acme"}),
    ))
    .expect("envelope");
    assert!(disable::parse_disable_requested(&ev).is_ok());
}
