//! The local equivalent of Lambda's SQS event source mapping, for `edsctl sync`, the
//! demo and the end-to-end tests: receive from the real (emulated) queue, hand the batch
//! to the same handler the Lambda runs, delete what succeeded, and leave failures to
//! their visibility timeout and the queue's redrive policy, as Lambda does.

use std::collections::HashMap;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};

/// Receives up to `max` messages (long polling `wait_secs`) as a Lambda SQS event.
pub async fn receive_event(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    max: i32,
    wait_secs: i32,
) -> Result<SqsEvent, String> {
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(max.clamp(1, 10))
        .wait_time_seconds(wait_secs)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    let arn = queue_arn(sqs, queue_url).await.unwrap_or_default();
    let mut event = SqsEvent::default();
    for m in out.messages.unwrap_or_default() {
        let mut msg = SqsMessage::default();
        msg.message_id = m.message_id.clone();
        msg.receipt_handle = m.receipt_handle.clone();
        msg.body = m.body.clone();
        msg.md5_of_body = m.md5_of_body.clone();
        msg.event_source = Some("aws:sqs".into());
        msg.event_source_arn = Some(arn.clone());
        msg.attributes = m
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.as_str().to_string(), v))
            .collect::<HashMap<_, _>>();
        event.records.push(msg);
    }
    Ok(event)
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Option<String> {
    sqs.get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .ok()?
        .attributes?
        .remove(&QueueAttributeName::QueueArn)
}

/// Deletes the messages of `event` that the handler did not report as failed (what the
/// event source mapping does after a successful invocation).
pub async fn delete_succeeded(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    event: &SqsEvent,
    response: &SqsBatchResponse,
) -> Result<usize, String> {
    let failed: std::collections::HashSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let mut deleted = 0;
    for m in &event.records {
        let id = m.message_id.as_deref().unwrap_or_default();
        if failed.contains(id) {
            continue;
        }
        if let Some(handle) = &m.receipt_handle {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(handle)
                .send()
                .await
                .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Approximate visible + in-flight messages of a queue.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<u64, String> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    let attrs = out.attributes.unwrap_or_default();
    let get = |k: &QueueAttributeName| {
        attrs
            .get(k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(get(&QueueAttributeName::ApproximateNumberOfMessages)
        + get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
}
