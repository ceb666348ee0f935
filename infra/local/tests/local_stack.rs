//! The local stack must be the deployment: every table, queue, bucket and bus the SAM
//! template declares exists in the emulator with the same keys, indexes and queue
//! attributes, and every function environment variable resolves.

use std::collections::BTreeSet;

use aws_sdk_sqs::types::QueueAttributeName;
use eds_local::{Template, provision, sdk_config_from_env, template_path};
use serde_yaml::Value;

fn yaml_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn key_pairs(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .map(|k| (yaml_str(&k["AttributeName"]), yaml_str(&k["KeyType"])))
        .collect()
}

#[tokio::test]
async fn local_resources_match_the_template() {
    let sdk = sdk_config_from_env().await.expect("emulator configured");
    let template = Template::load(&template_path()).expect("template parses");
    let stage = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let stack = provision(&sdk, &template, &stage)
        .await
        .expect("provisioned");

    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let tables: Vec<_> = template.of_kind("AWS::DynamoDB::Table").collect();
    assert!(tables.len() >= 2, "template declares the data tables");
    for t in tables {
        let name = stack.physical(&t.logical_id).expect("table provisioned");
        assert!(name.contains(&stage), "{name} is named for the stage");
        let desc = ddb
            .describe_table()
            .table_name(name)
            .send()
            .await
            .expect("table exists")
            .table
            .expect("table description");
        let actual: Vec<_> = desc
            .key_schema()
            .iter()
            .map(|k| {
                (
                    k.attribute_name().to_string(),
                    k.key_type().as_str().to_string(),
                )
            })
            .collect();
        assert_eq!(
            actual,
            key_pairs(t.properties.get("KeySchema")),
            "{} keys",
            t.logical_id
        );
        let declared_attrs: BTreeSet<_> = t.properties["AttributeDefinitions"]
            .as_sequence()
            .expect("attribute definitions")
            .iter()
            .map(|a| (yaml_str(&a["AttributeName"]), yaml_str(&a["AttributeType"])))
            .collect();
        let actual_attrs: BTreeSet<_> = desc
            .attribute_definitions()
            .iter()
            .map(|a| {
                (
                    a.attribute_name().to_string(),
                    a.attribute_type().as_str().to_string(),
                )
            })
            .collect();
        assert_eq!(actual_attrs, declared_attrs, "{} attributes", t.logical_id);
        let declared_gsis = t
            .properties
            .get("GlobalSecondaryIndexes")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        assert_eq!(desc.global_secondary_indexes().len(), declared_gsis.len());
        for g in declared_gsis {
            let name = yaml_str(&g["IndexName"]);
            let actual = desc
                .global_secondary_indexes()
                .iter()
                .find(|a| a.index_name() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("index {name} missing"));
            let keys: Vec<_> = actual
                .key_schema()
                .iter()
                .map(|k| {
                    (
                        k.attribute_name().to_string(),
                        k.key_type().as_str().to_string(),
                    )
                })
                .collect();
            assert_eq!(keys, key_pairs(g.get("KeySchema")), "index {name} keys");
            let projection = actual.projection().expect("projection");
            assert_eq!(
                projection.projection_type().map(|p| p.as_str().to_string()),
                Some(yaml_str(&g["Projection"]["ProjectionType"])),
                "index {name} projection"
            );
            let declared_non_key: BTreeSet<_> = g["Projection"]
                .get("NonKeyAttributes")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .map(yaml_str)
                .collect();
            let actual_non_key: BTreeSet<_> =
                projection.non_key_attributes().iter().cloned().collect();
            assert_eq!(actual_non_key, declared_non_key, "index {name} attributes");
        }
    }

    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queues: Vec<_> = template.of_kind("AWS::SQS::Queue").collect();
    assert!(queues.len() >= 2, "template declares queues");
    for q in queues {
        let url = stack.physical(&q.logical_id).expect("queue provisioned");
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("queue exists")
            .attributes
            .unwrap_or_default();
        let fifo = q
            .properties
            .get("FifoQueue")
            .map(yaml_str)
            .unwrap_or_default();
        assert_eq!(
            attrs
                .get(&QueueAttributeName::FifoQueue)
                .map(String::as_str)
                .unwrap_or("false"),
            if fifo.is_empty() {
                "false"
            } else {
                fifo.as_str()
            },
            "{} FIFO",
            q.logical_id
        );
        if let Some(v) = q.properties.get("VisibilityTimeout") {
            assert_eq!(
                attrs.get(&QueueAttributeName::VisibilityTimeout),
                Some(&yaml_str(v)),
                "{} visibility",
                q.logical_id
            );
        }
        if let Some(rp) = q.properties.get("RedrivePolicy") {
            let actual: serde_json::Value = serde_json::from_str(
                attrs
                    .get(&QueueAttributeName::RedrivePolicy)
                    .expect("redrive policy set"),
            )
            .expect("redrive policy is JSON");
            let dlq_logical = match &rp["deadLetterTargetArn"] {
                Value::Tagged(t) => yaml_str(&t.value).trim_end_matches(".Arn").to_string(),
                other => panic!("unexpected DLQ reference {other:?}"),
            };
            let dlq_arn = stack
                .attrs
                .get(&format!("{dlq_logical}.Arn"))
                .expect("DLQ provisioned");
            assert_eq!(
                actual["deadLetterTargetArn"].as_str(),
                Some(dlq_arn.as_str())
            );
            assert_eq!(
                actual["maxReceiveCount"].to_string().trim_matches('"'),
                yaml_str(&rp["maxReceiveCount"])
            );
        }
    }

    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    for b in template.of_kind("AWS::S3::Bucket") {
        let name = stack.physical(&b.logical_id).expect("bucket provisioned");
        s3.head_bucket()
            .bucket(name)
            .send()
            .await
            .expect("bucket exists");
    }

    // Every declared variable resolves, but for the sam-local-only ones, which are
    // `AWS::NoValue` under the default parameters (LocalEndpointUrl empty, D26).
    let sam_local_only = [
        "AWS_ENDPOINT_URL",
        "EDS_LOCAL_TESTING",
        "EDS_LOCAL_TESTING_ADDRS",
    ];
    let declared: BTreeSet<_> = template
        .global_env()
        .into_keys()
        .filter(|k| !sam_local_only.contains(&k.as_str()))
        .collect();
    let resolved: BTreeSet<_> = stack.env.keys().cloned().collect();
    assert_eq!(resolved, declared, "every function variable resolves");
    assert!(stack.env.values().all(|v| !v.is_empty()));
}

#[tokio::test]
async fn provisioning_twice_reuses_the_same_resources() {
    let sdk = sdk_config_from_env().await.expect("emulator configured");
    let template = Template::load(&template_path()).expect("template parses");
    let stage = format!("r{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let first = provision(&sdk, &template, &stage).await.expect("first");
    let second = provision(&sdk, &template, &stage).await.expect("second");
    assert_eq!(first.env, second.env);
}
