//! What every handler is given besides its event ([`Invocation`]: when it started, when
//! it must have handed its remaining work on), and the one event type the two lifecycle
//! functions (disable, delete) receive.
//!
//! Every function's `main` has one shape: it builds its handler once per container
//! (`eds_shared::wiring::<function>`), then for each event calls
//! `handler.handle(event, Invocation::new(context.deadline()))` with the typed event.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// When the current invocation must have handed its remaining work on.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// From `lambda_runtime::Context::deadline()`.
    pub fn at(deadline: SystemTime) -> Self {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Self::after(left)
    }

    /// `d` from now (tests, local runs).
    pub fn after(d: Duration) -> Self {
        Self {
            at: Instant::now() + d,
        }
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether less than `margin` is left.
    pub fn near(&self, margin: Duration) -> bool {
        self.remaining() < margin
    }

    /// The same instant on tokio's clock, for timers.
    pub fn instant(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.at)
    }
}

/// One invocation: its start on the wall clock (a handler's "now": the scheduler's
/// due time, the settings' `updated_at`) and its deadline.
#[derive(Debug, Clone, Copy)]
pub struct Invocation {
    pub now: DateTime<Utc>,
    pub deadline: Deadline,
}

impl Invocation {
    /// From `lambda_runtime::Context::deadline()`, starting now.
    pub fn new(deadline: SystemTime) -> Self {
        Self {
            now: Utc::now(),
            deadline: Deadline::at(deadline),
        }
    }

    /// Starting now with `d` to run (tests, local runs).
    pub fn after(d: Duration) -> Self {
        Self {
            now: Utc::now(),
            deadline: Deadline::after(d),
        }
    }

    /// The same invocation seen at another wall-clock time (tests of schedules).
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.now = now;
        self
    }
}

/// What a lifecycle function (disable, delete) is invoked with: the settings bus's
/// request, or a batch of its own continuations from its FIFO queue. Told apart once,
/// here, by the SQS event's `Records` member; either shape is then decoded strictly, and
/// a payload that is neither fails the invocation (EventBridge retries it, then the
/// rule's DLQ takes it).
#[derive(Debug, Clone)]
pub enum LifecycleEvent {
    Request(Box<EventBridgeEvent<Value>>),
    Continuations(SqsEvent),
}

impl LifecycleEvent {
    /// Decodes a payload (what the runtime does with the invocation's JSON).
    pub fn from_value(value: Value) -> Result<Self, String> {
        if value.get("Records").is_some() {
            serde_json::from_value(value)
                .map(LifecycleEvent::Continuations)
                .map_err(|e| format!("SQS event: {e}"))
        } else {
            serde_json::from_value(value)
                .map(|e| LifecycleEvent::Request(Box::new(e)))
                .map_err(|e| format!("EventBridge event: {e}"))
        }
    }
}

impl LifecycleEvent {
    /// Runs the handler's half for this event: `request` for the settings bus's request,
    /// `batch` for continuations; the answer is the report or the batch response. Both
    /// futures are boxed (they are deep: SDK calls inside a batch helper, and a boxed
    /// future keeps the functions' `main` within the compiler's limits).
    pub async fn route<R, E, FR, FB>(
        self,
        request: impl FnOnce(Box<EventBridgeEvent<Value>>) -> FR,
        batch: impl FnOnce(SqsEvent) -> FB,
    ) -> Result<LifecycleResponse<R>, E>
    where
        FR: Future<Output = Result<R, E>>,
        FB: Future<Output = SqsBatchResponse>,
    {
        Ok(match self {
            LifecycleEvent::Continuations(b) => LifecycleResponse::Batch(Box::pin(batch(b)).await),
            LifecycleEvent::Request(r) => LifecycleResponse::Report(Box::pin(request(r)).await?),
        })
    }
}

impl<'de> Deserialize<'de> for LifecycleEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        LifecycleEvent::from_value(value).map_err(serde::de::Error::custom)
    }
}

/// A lifecycle function's answer: the batch response (failed continuations are
/// redelivered) or the request's report.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum LifecycleResponse<R> {
    Batch(SqsBatchResponse),
    Report(R),
}

impl<R> LifecycleResponse<R> {
    /// The report, if this answered a request.
    pub fn report(self) -> Option<R> {
        match self {
            LifecycleResponse::Report(r) => Some(r),
            LifecycleResponse::Batch(_) => None,
        }
    }

    /// The batch response, if this answered continuations.
    pub fn batch(self) -> Option<SqsBatchResponse> {
        match self {
            LifecycleResponse::Batch(b) => Some(b),
            LifecycleResponse::Report(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_deadline_in_the_past_has_nothing_left() {
        let d = Deadline::at(SystemTime::now() - Duration::from_secs(1));
        assert_eq!(d.remaining(), Duration::ZERO);
        assert!(d.near(Duration::from_millis(1)));
        assert!(!Deadline::after(Duration::from_secs(60)).near(Duration::from_secs(1)));
    }

    #[test]
    fn lifecycle_events_are_told_apart_by_records_and_decoded_strictly() {
        let request = json!({"version": "0", "id": "e1", "detail-type": "tenant.disable_requested",
            "source": "eds.settings", "account": "1", "time": "2026-01-01T00:00:00Z",
            "region": "us-east-1", "resources": [], "detail": {"tenant_id": "acme"}});
        assert!(matches!(
            serde_json::from_value::<LifecycleEvent>(request).unwrap(),
            LifecycleEvent::Request(e) if e.detail["tenant_id"] == "acme"
        ));
        let batch = json!({"Records": [{"messageId": "m1", "body": "{}"}]});
        assert!(matches!(
            serde_json::from_value::<LifecycleEvent>(batch).unwrap(),
            LifecycleEvent::Continuations(e) if e.records.len() == 1
        ));
        let err = serde_json::from_value::<LifecycleEvent>(json!({"Records": "not a list"}))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("SQS event"), "{err}");
        let err = serde_json::from_value::<LifecycleEvent>(json!({"detail": {}}))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("EventBridge event"), "{err}");
    }

    #[tokio::test]
    async fn route_runs_the_half_the_event_is_for() {
        let batch = LifecycleEvent::from_value(json!({"Records": []})).unwrap();
        let answer: LifecycleResponse<&str> = batch
            .route(
                |_| async { Err::<&str, String>("not a request".into()) },
                |b| async move {
                    assert!(b.records.is_empty());
                    SqsBatchResponse::default()
                },
            )
            .await
            .unwrap();
        assert!(answer.batch().is_some());
        let request = LifecycleEvent::from_value(json!({"detail-type": "t", "source": "s",
            "detail": {}}))
        .unwrap();
        let failed = request
            .route(
                |r| async move { Err::<&str, String>(format!("refused {}", r.detail_type)) },
                |_| async { panic!("not a batch") },
            )
            .await;
        assert_eq!(failed.err().as_deref(), Some("refused t"));
    }
}
