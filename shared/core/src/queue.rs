//! The job queue port and the batch helpers that turn a per-message handler into a
//! partial-batch response (SQS's `ReportBatchItemFailures`). The helpers know the queue
//! only through [`JobQueue`]; the SQS adapter is `lambda::SqsQueue`.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};

/// A queue the handlers send jobs to and whose received messages they return.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// The queue's name (its URL for SQS), for errors and logs.
    fn name(&self) -> &str;

    /// Sends `messages` in order; returns the number of calls made.
    async fn enqueue(&self, messages: &[FifoMessage]) -> Result<usize, SendError>;

    /// Makes a received message visible again after `secs` seconds. Best effort: a
    /// failure only leaves the message invisible until its timeout runs out.
    async fn set_visibility(&self, receipt_handle: &str, secs: i32);
}

/// How a message handler failed.
#[derive(Debug, Clone, PartialEq)]
pub enum JobError {
    /// The message can never succeed (unparseable, unknown tenant, invalid): it is made
    /// visible again at once so it reaches the DLQ after `maxReceiveCount` quick
    /// receives instead of blocking its FIFO group for hours.
    Poison(String),
    /// Worth retrying after `after` (e.g. the ATS or AWS is failing).
    Retry { reason: String, after: Duration },
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Poison(r) => write!(f, "poison message: {r}"),
            JobError::Retry { reason, after } => {
                write!(f, "retry in {}s: {reason}", after.as_secs())
            }
        }
    }
}

/// Visibility (seconds) to give a failed message.
pub fn visibility_after(err: &JobError) -> i32 {
    match err {
        JobError::Poison(_) => 0,
        JobError::Retry { after, .. } => after.as_secs().min(43_200) as i32,
    }
}

/// A message's receive count (1 on first delivery).
pub fn receive_count(msg: &SqsMessage) -> u32 {
    msg.attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Processes a FIFO batch in order. At the first failure, that message and every later
/// one are reported as failures (a FIFO group must not be processed out of order); the
/// later ones were not attempted and are made visible again at once.
pub async fn fifo_batch<F, Fut>(
    event: &SqsEvent,
    queue: &dyn JobQueue,
    mut handle: F,
) -> SqsBatchResponse
where
    F: FnMut(&SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), JobError>>,
{
    let mut response = SqsBatchResponse::default();
    let mut failed_from = None;
    for (i, msg) in event.records.iter().enumerate() {
        if let Err(err) = handle(msg).await {
            tracing::warn!(message_id = msg.message_id.as_deref().unwrap_or(""), error = %err, "message failed");
            set_visibility(queue, msg, visibility_after(&err)).await;
            failed_from = Some(i);
            break;
        }
    }
    if let Some(first) = failed_from {
        for (i, msg) in event.records.iter().enumerate().skip(first) {
            if i > first {
                set_visibility(queue, msg, 0).await;
            }
            response.batch_item_failures.push(failure(msg));
        }
    }
    response
}

/// Processes a standard-queue batch: each message independently; failures reported.
pub async fn independent_batch<F, Fut>(
    event: &SqsEvent,
    queue: &dyn JobQueue,
    mut handle: F,
) -> SqsBatchResponse
where
    F: FnMut(&SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), JobError>>,
{
    let mut response = SqsBatchResponse::default();
    for msg in &event.records {
        if let Err(err) = handle(msg).await {
            tracing::warn!(message_id = msg.message_id.as_deref().unwrap_or(""), error = %err, "message failed");
            set_visibility(queue, msg, visibility_after(&err)).await;
            response.batch_item_failures.push(failure(msg));
        }
    }
    response
}

fn failure(msg: &SqsMessage) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = msg.message_id.clone().unwrap_or_default();
    f
}

/// A message to send to a FIFO queue.
#[derive(Debug, Clone)]
pub struct FifoMessage {
    pub body: String,
    pub group_id: String,
    pub dedup_id: String,
}

#[derive(Debug, thiserror::Error)]
#[error("sending to {queue} failed: {detail}")]
pub struct SendError {
    pub queue: String,
    pub detail: String,
}

async fn set_visibility(queue: &dyn JobQueue, msg: &SqsMessage, secs: i32) {
    if let Some(handle) = msg.receipt_handle.as_deref() {
        queue.set_visibility(handle, secs).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poison_messages_become_visible_at_once() {
        assert_eq!(visibility_after(&JobError::Poison("x".into())), 0);
        assert_eq!(
            visibility_after(&JobError::Retry {
                reason: "x".into(),
                after: Duration::from_secs(90)
            }),
            90
        );
    }
}
