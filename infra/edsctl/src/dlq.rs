//! `edsctl dlq`: the dead-letter queues of the pull, push, disable and delete queues.
//!
//! `show` peeks (messages become visible again after a short timeout, nothing is
//! removed) and prints per message its id, receive count, tenant and kind, never the
//! body of a push message (it holds personal data). `redrive` moves messages back to the
//! source queue (a FIFO message keeps its group, the tenant, and gets a fresh
//! deduplication id) and deletes each from the DLQ only after it was sent.

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::{Value, json};

use crate::deploy::Deployment;
use crate::error::CliError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueKind {
    Pull,
    Push,
    Disable,
    Delete,
}

impl QueueKind {
    fn source(self, d: &Deployment) -> Result<String, CliError> {
        match self {
            QueueKind::Pull => Ok(d.config.pull_queue_url.clone()),
            QueueKind::Disable => Ok(d.config.disable_queue_url.clone()),
            QueueKind::Delete => Ok(d.config.delete_queue_url.clone()),
            QueueKind::Push => d.push_queue_url.clone().ok_or_else(|| {
                CliError::Usage(
                    "the push queue is not known: set PUSH_QUEUE_URL (or use --stage)".into(),
                )
            }),
        }
    }
}

fn summary(kind: QueueKind, body: &str) -> (String, String) {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let tenant = v["tenant"].as_str().unwrap_or("?").to_string();
    let what = match kind {
        QueueKind::Push => format!(
            "{} pushed record(s)",
            v["records"].as_array().map_or(0, Vec::len)
        ),
        QueueKind::Pull => {
            let steps = v["steps"].as_array().map_or(0, Vec::len);
            format!(
                "pull job: {steps} step(s), continuation {}",
                v["continuation"].as_u64().unwrap_or(0)
            )
        }
        QueueKind::Disable | QueueKind::Delete => v
            .as_object()
            .and_then(|o| o.get("kind").or_else(|| o.get("phase")))
            .map(|k| k.to_string())
            .unwrap_or_else(|| "lifecycle job".into()),
    };
    (tenant, what)
}

async fn depth(d: &Deployment, url: &str) -> Result<u64, CliError> {
    let out = d
        .aws
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| d.aws_err(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    Ok(out
        .attributes
        .and_then(|a| {
            a.get(&QueueAttributeName::ApproximateNumberOfMessages)
                .cloned()
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

pub async fn show(d: &Deployment, kind: QueueKind, max: usize) -> Result<Value, CliError> {
    let source = kind.source(d)?;
    let dlq = d.dead_letter_queue(&source).await?;
    let waiting = depth(d, &dlq).await?;
    let out = d
        .aws
        .sqs
        .receive_message()
        .queue_url(&dlq)
        .max_number_of_messages(max.clamp(1, 10) as i32)
        .visibility_timeout(2)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| d.aws_err(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    let messages: Vec<Value> = out
        .messages
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let (tenant, what) = summary(kind, m.body().unwrap_or_default());
            let attr = |k: MessageSystemAttributeName| {
                m.attributes().and_then(|a| a.get(&k)).cloned().unwrap_or_default()
            };
            json!({
                "message_id": m.message_id(),
                "tenant": tenant,
                "what": what,
                "receive_count": attr(MessageSystemAttributeName::ApproximateReceiveCount),
                "first_received_ms": attr(MessageSystemAttributeName::ApproximateFirstReceiveTimestamp),
            })
        })
        .collect();
    Ok(json!({"queue": dlq, "source": source, "messages_waiting": waiting, "sample": messages}))
}

pub async fn redrive(d: &Deployment, kind: QueueKind, max: usize) -> Result<Value, CliError> {
    let source = kind.source(d)?;
    let dlq = d.dead_letter_queue(&source).await?;
    let fifo = source.ends_with(".fifo");
    let mut moved = 0usize;
    let mut empty = 0;
    while moved < max && empty < 2 {
        let out = d
            .aws
            .sqs
            .receive_message()
            .queue_url(&dlq)
            .max_number_of_messages((max - moved).clamp(1, 10) as i32)
            .visibility_timeout(60)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(|e| d.aws_err(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        for m in messages {
            let body = m.body().unwrap_or_default();
            let mut send = d
                .aws
                .sqs
                .send_message()
                .queue_url(&source)
                .message_body(body);
            if fifo {
                let group = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    .cloned()
                    .unwrap_or_else(|| summary(kind, body).0);
                send = send
                    .message_group_id(group)
                    .message_deduplication_id(format!("redrive-{}", uuid::Uuid::new_v4().simple()));
            }
            send.send()
                .await
                .map_err(|e| d.aws_err(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            if let Some(h) = m.receipt_handle() {
                d.aws
                    .sqs
                    .delete_message()
                    .queue_url(&dlq)
                    .receipt_handle(h)
                    .send()
                    .await
                    .map_err(|e| d.aws_err(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            }
            moved += 1;
        }
    }
    Ok(json!({"queue": dlq, "source": source, "moved": moved}))
}
