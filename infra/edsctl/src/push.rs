//! `edsctl push`: pushed records (JSON lines, one push-format record per line; see
//! docs/push-format.md) sent as the customer's standard push sends them: messages of at
//! most 100 records and 256 KiB (the SQS limit) on the SQS push queue, then consumed by the push-ingest handler
//! locally (receive, `independent_batch` over `PushIngest::handle_body`, delete what
//! succeeded), or, with `--direct` or without a push queue, handed to the handler as
//! message bodies without SQS.

use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::SqsMessage;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use chrono::Utc;
use eds_local::queue::{delete_succeeded, receive_event};
use eds_shared::domain::ids::TenantId;
use eds_shared::pipeline::push::{MAX_BODY_BYTES, MAX_RECORDS, PushIngest, PushReport};
use eds_shared::queue::independent_batch;
use serde::Serialize;
use serde_json::{Value, json};

use crate::deploy::Deployment;
use crate::error::CliError;

/// What a push did, summed over its messages.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushSummary {
    pub tenant: String,
    pub records: usize,
    pub messages: usize,
    pub via: &'static str,
    pub quarantined: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub unknown_deletes: usize,
    pub dropped_messages: usize,
    pub failed_messages: usize,
}

impl PushSummary {
    fn add(&mut self, r: &PushReport) {
        self.quarantined += r.quarantined;
        self.created += r.created;
        self.updated += r.updated;
        self.unchanged += r.unchanged;
        self.unknown_deletes += r.unknown_deletes;
        if r.dropped {
            self.dropped_messages += 1;
        }
    }
}

/// Reads JSON lines (`-` = stdin); blank lines are skipped. A line that is not JSON is
/// named by its number (its content may be personal data and is not echoed).
pub fn read_records(path: &str) -> Result<Vec<Value>, CliError> {
    let text = if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| CliError::Usage(format!("reading records from stdin failed: {e}")))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!(
                "the records file {path} cannot be read ({e}): pass an existing file or - for stdin"
            ))
        })?
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| {
            CliError::Usage(format!(
                "line {} of {path} is not JSON ({}): each line must be one push-format record (docs/push-format.md)",
                i + 1,
                e.classify_name()
            ))
        })?;
        if !v.is_object() {
            return Err(CliError::Usage(format!(
                "line {} of {path} is not a JSON object: each line must be one push-format record (docs/push-format.md)",
                i + 1
            )));
        }
        out.push(v);
    }
    Ok(out)
}

trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "data error",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

/// Message bodies of at most [`MAX_RECORDS`] records and [`MAX_BODY_BYTES`] bytes each
/// (the SQS message limit, which push-ingest enforces too). A record that cannot fit in
/// a message on its own is refused before anything is sent.
pub fn bodies(tenant: &TenantId, records: &[Value]) -> Result<Vec<String>, CliError> {
    // `{"tenant":"...","records":[` + `]}`; records are joined by commas.
    let envelope = json!({"tenant": tenant, "records": []}).to_string().len();
    let mut out = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut size = envelope;
    for (i, r) in records.iter().enumerate() {
        let text = r.to_string();
        if envelope + text.len() > MAX_BODY_BYTES {
            return Err(CliError::Usage(format!(
                "record {} is {} bytes serialized: a push message holds at most {MAX_BODY_BYTES} bytes (docs/push-format.md); nothing was sent",
                i + 1,
                text.len()
            )));
        }
        let added = text.len() + usize::from(!current.is_empty());
        if current.len() == MAX_RECORDS || size + added > MAX_BODY_BYTES {
            out.push(body(tenant, &current));
            current.clear();
            size = envelope;
        }
        size += text.len() + usize::from(!current.is_empty());
        current.push(text);
    }
    if !current.is_empty() {
        out.push(body(tenant, &current));
    }
    Ok(out)
}

fn body(tenant: &TenantId, records: &[String]) -> String {
    format!(
        r#"{{"tenant":{},"records":[{}]}}"#,
        Value::String(tenant.to_string()),
        records.join(",")
    )
}

/// Groups of at most 10 messages and [`MAX_BODY_BYTES`] in all: one `SendMessageBatch`
/// (SQS bounds a batch's total payload like a single message).
fn send_batches(bodies: &[String]) -> Vec<&[String]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, b) in bodies.iter().enumerate() {
        if i > start && (i - start == 10 || size + b.len() > MAX_BODY_BYTES) {
            out.push(&bodies[start..i]);
            (start, size) = (i, 0);
        }
        size += b.len();
    }
    if start < bodies.len() {
        out.push(&bodies[start..]);
    }
    out
}

/// The push handler, handing failed messages back on `queue` (the direct path calls
/// `handle_body` alone, which never touches the queue).
fn ingest(d: &Deployment, queue: &str) -> PushIngest {
    PushIngest::new(d.registry(), Arc::new(d.store()), d.aws.queue(queue))
}

pub async fn push(
    d: &Deployment,
    tenant: &TenantId,
    records: &[Value],
    direct: bool,
) -> Result<PushSummary, CliError> {
    crate::tenants::require(d, tenant).await?;
    let bodies = bodies(tenant, records)?;
    let mut summary = PushSummary {
        tenant: tenant.to_string(),
        records: records.len(),
        messages: bodies.len(),
        ..Default::default()
    };
    let ingest = ingest(d, d.push_queue_url.as_deref().unwrap_or_default());
    let queue = if direct {
        None
    } else {
        d.push_queue_url.clone()
    };
    let Some(queue) = queue else {
        summary.via = "handler";
        for (i, body) in bodies.iter().enumerate() {
            let r = Box::pin(ingest.handle_body(body, &format!("edsctl-{i}"), Utc::now()))
                .await
                .map_err(|e| CliError::Failed(format!("message {i} was rejected: {e}")))?;
            summary.add(&r);
        }
        return Ok(summary);
    };
    summary.via = "sqs";
    for (n, chunk) in send_batches(&bodies).into_iter().enumerate() {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{n}-{i}"))
                    .message_body(b)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CliError::Failed(format!("building the push messages failed: {e}")))?;
        let out = d
            .aws
            .sqs
            .send_message_batch()
            .queue_url(&queue)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| d.aws_err(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        if !out.failed().is_empty() {
            return Err(CliError::Failed(format!(
                "SQS refused {} push message(s): check the push queue {queue}",
                out.failed().len()
            )));
        }
    }
    // The event source mapping: receive, handle, delete what succeeded.
    let reports = Mutex::new(PushSummary::default());
    let mut handled = 0usize;
    let mut empty = 0;
    while handled < bodies.len() && empty < 5 {
        let event = receive_event(&d.aws.sqs, &queue, 10, 1)
            .await
            .map_err(|e| d.aws_err(e))?;
        if event.records.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        let response = independent_batch(&event, &*d.aws.queue(&queue), |msg: &SqsMessage| {
            let body = msg.body.clone().unwrap_or_default();
            let id = msg.message_id.clone().unwrap_or_default();
            let ingest = &ingest;
            let reports = &reports;
            Box::pin(async move {
                let r = ingest
                    .handle_body(&body, &id, Utc::now())
                    .await
                    .map_err(|e| e.to_job_error())?;
                if let Ok(mut s) = reports.lock() {
                    s.add(&r);
                }
                Ok(())
            })
        })
        .await;
        delete_succeeded(&d.aws.sqs, &queue, &event, &response)
            .await
            .map_err(|e| d.aws_err(e))?;
        summary.failed_messages += response.batch_item_failures.len();
        handled += event.records.len();
    }
    let r = reports.into_inner().unwrap_or_default();
    summary.quarantined = r.quarantined;
    summary.created = r.created;
    summary.updated = r.updated;
    summary.unchanged = r.unchanged;
    summary.unknown_deletes = r.unknown_deletes;
    summary.dropped_messages = r.dropped_messages;
    if summary.failed_messages > 0 {
        return Err(CliError::Failed(format!(
            "{} push message(s) failed and stay on the queue for retry (then its DLQ): see `edsctl dlq show push`",
            summary.failed_messages
        )));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_hold_at_most_a_hundred_records() {
        let t = TenantId::parse("acme").unwrap();
        let recs: Vec<Value> = (0..250).map(|i| json!({"id": i.to_string()})).collect();
        let b = bodies(&t, &recs).unwrap();
        assert_eq!(b.len(), 3);
        let last: Value = serde_json::from_str(&b[2]).unwrap();
        assert_eq!(last["tenant"], "acme");
        assert_eq!(last["records"].as_array().unwrap().len(), 50);
    }

    #[test]
    fn messages_hold_at_most_the_sqs_limit_in_bytes_and_batches_too() {
        let t = TenantId::parse("acme").unwrap();
        let big = "x".repeat(10 * 1024);
        let recs: Vec<Value> = (0..30)
            .map(|i| json!({"id": i.to_string(), "fields": {"custom_fields": {"k": big}}}))
            .collect();
        let b = bodies(&t, &recs).unwrap();
        assert!(b.len() >= 2, "{} messages", b.len());
        let mut seen = 0;
        for body in &b {
            assert!(body.len() <= MAX_BODY_BYTES, "{} bytes", body.len());
            let v: Value = serde_json::from_str(body).unwrap();
            for r in v["records"].as_array().unwrap() {
                assert_eq!(r["id"], json!(seen.to_string()), "order kept");
                seen += 1;
            }
        }
        assert_eq!(seen, 30);
        for batch in send_batches(&b) {
            assert!(batch.len() <= 10);
            assert!(batch.iter().map(String::len).sum::<usize>() <= MAX_BODY_BYTES);
        }
        assert_eq!(send_batches(&b).concat(), b);
        let huge = vec![json!({"id": "1", "fields": {"k": "x".repeat(MAX_BODY_BYTES)}})];
        let e = bodies(&t, &huge).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("record 1 is"), "{e}");
    }
}
