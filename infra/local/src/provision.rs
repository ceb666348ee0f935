//! Creating the template's resources in the local emulator.

use std::collections::BTreeMap;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_yaml::Value;

use crate::intrinsics::Scope;
use crate::{LOCAL_ACCOUNT_ID, LOCAL_REGION, Template, TemplateError};

/// What was created: physical names by logical id and the functions' environment.
#[derive(Debug, Clone)]
pub struct LocalStack {
    pub stage: String,
    /// `!Ref` values by logical id: table and bucket names, queue URLs, bus names.
    pub refs: BTreeMap<String, String>,
    /// `!GetAtt` values (`Logical.Arn`, `Logical.QueueName`).
    pub attrs: BTreeMap<String, String>,
    /// `Globals.Function.Environment.Variables`, evaluated: what every function reads.
    pub env: BTreeMap<String, String>,
}

impl LocalStack {
    pub fn physical(&self, logical_id: &str) -> Option<&str> {
        self.refs.get(logical_id).map(String::as_str)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("creating {logical_id} in the local emulator failed: {message}")]
    Create { logical_id: String, message: String },
}

fn create_err(logical_id: &str, e: impl std::fmt::Display) -> ProvisionError {
    ProvisionError::Create {
        logical_id: logical_id.to_string(),
        message: e.to_string(),
    }
}

fn shape(msg: impl Into<String>) -> ProvisionError {
    ProvisionError::Template(TemplateError::Shape(msg.into()))
}

/// An SDK configuration for the local emulator, from the standard variables
/// (`AWS_ENDPOINT_URL`, region, credentials). Dummy credentials and the local region are
/// filled in when missing so the SDK never falls back to the instance metadata endpoint.
pub async fn sdk_config_from_env() -> Result<SdkConfig, String> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").map_err(|_| {
        "AWS_ENDPOINT_URL is not set: the local AWS emulator is needed (run `make test`, which starts it)"
            .to_string()
    })?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).endpoint_url(endpoint);
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        loader = loader.region(Region::new(LOCAL_REGION));
    }
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "eds-local",
        ));
    }
    Ok(loader.load().await)
}

/// Creates every table, queue, bucket and event bus of `template` for `stage` (the
/// template's `Stage` parameter) and returns their names and the functions' environment.
/// Re-running for the same stage is harmless (existing resources are reused).
pub async fn provision(
    sdk: &SdkConfig,
    template: &Template,
    stage: &str,
) -> Result<LocalStack, ProvisionError> {
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| LOCAL_REGION.to_string());
    let mut scope = base_scope(template, stage, &region);

    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    );
    let events = aws_sdk_eventbridge::Client::new(sdk);

    for r in template.of_kind("AWS::DynamoDB::Table") {
        let name = create_table(&ddb, &scope, &r.logical_id, &r.properties).await?;
        scope.attrs.insert(
            format!("{}.Arn", r.logical_id),
            format!("arn:aws:dynamodb:{region}:{LOCAL_ACCOUNT_ID}:table/{name}"),
        );
        scope.refs.insert(r.logical_id.clone(), name);
    }
    for r in template.of_kind("AWS::S3::Bucket") {
        let name = scope.string(
            r.properties
                .get("BucketName")
                .ok_or_else(|| shape(format!("{} has no BucketName", r.logical_id)))?,
        )?;
        match s3.create_bucket().bucket(&name).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_bucket_already_owned_by_you()) => {}
            Err(e) => {
                return Err(create_err(
                    &r.logical_id,
                    aws_sdk_s3::error::DisplayErrorContext(e),
                ));
            }
        }
        scope.attrs.insert(
            format!("{}.Arn", r.logical_id),
            format!("arn:aws:s3:::{name}"),
        );
        scope.refs.insert(r.logical_id.clone(), name);
    }
    for r in template.of_kind("AWS::Events::EventBus") {
        let name = scope.string(
            r.properties
                .get("Name")
                .ok_or_else(|| shape(format!("{} has no Name", r.logical_id)))?,
        )?;
        match events.create_event_bus().name(&name).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) => {}
            Err(e) => {
                return Err(create_err(
                    &r.logical_id,
                    aws_sdk_eventbridge::error::DisplayErrorContext(e),
                ));
            }
        }
        scope.attrs.insert(
            format!("{}.Arn", r.logical_id),
            format!("arn:aws:events:{region}:{LOCAL_ACCOUNT_ID}:event-bus/{name}"),
        );
        scope.refs.insert(r.logical_id.clone(), name);
    }
    // Dead-letter queues first: a redrive policy names its target's ARN.
    let mut queues: Vec<_> = template.of_kind("AWS::SQS::Queue").collect();
    queues.sort_by_key(|r| r.properties.get("RedrivePolicy").is_some());
    for r in queues {
        let name = scope.string(
            r.properties
                .get("QueueName")
                .ok_or_else(|| shape(format!("{} has no QueueName", r.logical_id)))?,
        )?;
        let mut req = sqs.create_queue().queue_name(&name);
        for (attr, value) in queue_attributes(&scope, &r.properties)? {
            req = req.attributes(attr, value);
        }
        let url = req
            .send()
            .await
            .map_err(|e| create_err(&r.logical_id, aws_sdk_sqs::error::DisplayErrorContext(e)))?
            .queue_url
            .ok_or_else(|| create_err(&r.logical_id, "no queue URL returned"))?;
        scope.attrs.insert(
            format!("{}.Arn", r.logical_id),
            format!("arn:aws:sqs:{region}:{LOCAL_ACCOUNT_ID}:{name}"),
        );
        scope
            .attrs
            .insert(format!("{}.QueueName", r.logical_id), name.clone());
        scope.refs.insert(r.logical_id.clone(), url);
    }

    let mut env = BTreeMap::new();
    for (k, v) in template.global_env() {
        // A variable whose value is `AWS::NoValue` (the sam-local-only ones) is absent.
        if scope.eval(&v)? != serde_yaml::Value::Null {
            env.insert(k, scope.string(&v)?);
        }
    }
    Ok(LocalStack {
        stage: stage.to_string(),
        refs: scope.refs,
        attrs: scope.attrs,
        env,
    })
}

/// Parameters (defaults, `Stage`, pseudo parameters) and conditions of `template`.
fn base_scope(template: &Template, stage: &str, region: &str) -> Scope {
    let mut scope = Scope::default();
    for (k, v) in &template.parameters {
        if let Some(s) = scalar(v) {
            scope.params.insert(k.clone(), s);
        }
    }
    scope.params.insert("Stage".into(), stage.to_string());
    if let Some(Value::Mapping(cs)) = template.raw.get("Conditions") {
        for (k, v) in cs {
            if let Some(name) = k.as_str() {
                scope.conditions.insert(name.to_string(), v.clone());
            }
        }
    }
    scope
        .params
        .insert("AWS::AccountId".into(), LOCAL_ACCOUNT_ID.into());
    scope
        .params
        .insert("AWS::Region".into(), region.to_string());
    scope
}

impl LocalStack {
    /// The environment `template` gives function `logical` in this stack: the globals
    /// (as provisioned) plus the function's own variables, evaluated (a variable whose
    /// value is `AWS::NoValue` is absent).
    pub fn function_env(
        &self,
        template: &Template,
        logical: &str,
    ) -> Result<BTreeMap<String, String>, String> {
        let f = template
            .resources
            .get(logical)
            .filter(|r| r.kind == "AWS::Serverless::Function")
            .ok_or_else(|| format!("no function {logical}"))?;
        let mut scope = base_scope(template, &self.stage, LOCAL_REGION);
        scope.refs = self.refs.clone();
        scope.attrs = self.attrs.clone();
        let mut env = self.env.clone();
        let own = f
            .properties
            .get("Environment")
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping);
        for (k, v) in own.into_iter().flatten() {
            let key = k.as_str().ok_or("a variable name is not a string")?;
            let value = scope.eval(v).map_err(|e| format!("{logical} {key}: {e}"))?;
            if value != Value::Null {
                env.insert(
                    key.to_string(),
                    scope
                        .string(&value)
                        .map_err(|e| format!("{logical} {key}: {e}"))?,
                );
            }
        }
        Ok(env)
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// SQS attributes the template sets that the emulator understands, as strings.
pub(crate) fn queue_attributes(
    scope: &Scope,
    props: &Value,
) -> Result<Vec<(QueueAttributeName, String)>, ProvisionError> {
    let mut out = Vec::new();
    let simple = [
        ("FifoQueue", QueueAttributeName::FifoQueue),
        (
            "ContentBasedDeduplication",
            QueueAttributeName::ContentBasedDeduplication,
        ),
        ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
        (
            "MessageRetentionPeriod",
            QueueAttributeName::MessageRetentionPeriod,
        ),
        ("DeduplicationScope", QueueAttributeName::DeduplicationScope),
        (
            "FifoThroughputLimit",
            QueueAttributeName::FifoThroughputLimit,
        ),
    ];
    for (prop, attr) in simple {
        if let Some(v) = props.get(prop) {
            out.push((attr, scope.string(v)?));
        }
    }
    if let Some(rp) = props.get("RedrivePolicy") {
        let target = scope.string(
            rp.get("deadLetterTargetArn")
                .ok_or_else(|| shape("RedrivePolicy without deadLetterTargetArn"))?,
        )?;
        let max = scope.string(
            rp.get("maxReceiveCount")
                .ok_or_else(|| shape("RedrivePolicy without maxReceiveCount"))?,
        )?;
        let policy = serde_json::json!({ "deadLetterTargetArn": target, "maxReceiveCount": max });
        out.push((QueueAttributeName::RedrivePolicy, policy.to_string()));
    }
    Ok(out)
}

async fn create_table(
    ddb: &aws_sdk_dynamodb::Client,
    scope: &Scope,
    logical_id: &str,
    props: &Value,
) -> Result<String, ProvisionError> {
    let name = scope.string(
        props
            .get("TableName")
            .ok_or_else(|| shape(format!("{logical_id} has no TableName")))?,
    )?;
    let mut req = ddb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest);
    for a in seq(props, "AttributeDefinitions") {
        let attr_name = scope.string(a.get("AttributeName").unwrap_or(&Value::Null))?;
        let ty = scope.string(a.get("AttributeType").unwrap_or(&Value::Null))?;
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attr_name)
                .attribute_type(ScalarAttributeType::from(ty.as_str()))
                .build()
                .map_err(|e| create_err(logical_id, e))?,
        );
    }
    for k in key_schema(scope, logical_id, props.get("KeySchema"))? {
        req = req.key_schema(k);
    }
    for g in seq(props, "GlobalSecondaryIndexes") {
        let index_name = scope.string(g.get("IndexName").unwrap_or(&Value::Null))?;
        let mut gb = GlobalSecondaryIndex::builder().index_name(index_name);
        for k in key_schema(scope, logical_id, g.get("KeySchema"))? {
            gb = gb.key_schema(k);
        }
        let p = g.get("Projection").unwrap_or(&Value::Null);
        let ptype = scope.string(p.get("ProjectionType").unwrap_or(&Value::Null))?;
        let mut pb = Projection::builder().projection_type(ProjectionType::from(ptype.as_str()));
        for a in seq(p, "NonKeyAttributes") {
            pb = pb.non_key_attributes(scope.string(a)?);
        }
        gb = gb.projection(pb.build());
        req = req.global_secondary_indexes(gb.build().map_err(|e| create_err(logical_id, e))?);
    }
    match req.send().await {
        Ok(_) => Ok(name),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            Ok(name)
        }
        Err(e) => Err(create_err(
            logical_id,
            aws_sdk_dynamodb::error::DisplayErrorContext(e),
        )),
    }
}

fn seq<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> + 'a {
    v.get(key)
        .and_then(Value::as_sequence)
        .map(|s| s.iter())
        .into_iter()
        .flatten()
}

fn key_schema(
    scope: &Scope,
    logical_id: &str,
    v: Option<&Value>,
) -> Result<Vec<KeySchemaElement>, ProvisionError> {
    let mut out = Vec::new();
    for k in v.and_then(Value::as_sequence).into_iter().flatten() {
        let name = scope.string(k.get("AttributeName").unwrap_or(&Value::Null))?;
        let ty = scope.string(k.get("KeyType").unwrap_or(&Value::Null))?;
        out.push(
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(KeyType::from(ty.as_str()))
                .build()
                .map_err(|e| create_err(logical_id, e))?,
        );
    }
    Ok(out)
}
