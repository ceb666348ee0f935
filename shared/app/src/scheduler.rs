//! The scheduler: every minute, find due tenants through the sparse, sharded `due`
//! index (never a table scan), claim each one (a conditional update that also refuses
//! a tenant whose run is still going) and send one pull job per tenant, ten per
//! `SendMessageBatch`, to the FIFO pull queue with `MessageGroupId` = tenant.

use std::sync::Arc;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use eds_core::connector::{Catalog, StreamPlan};
use eds_core::invocation::Invocation;
use eds_core::jobs::{PullJob, Step};
use eds_core::queue::{FifoMessage, JobQueue, SendError};
use eds_core::tenants::{
    Claim, DUE_SHARDS, Registry, RegistryError, TOKEN_REFRESH_EVERY_SECS, TenantConfig,
    reconcile_due, token_refresh_due,
};

/// What one scheduler invocation did.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct ScheduleReport {
    pub due: usize,
    pub claimed: usize,
    pub skipped: usize,
    pub reconciliations: usize,
    pub token_refreshes: usize,
    pub messages: usize,
    pub sqs_calls: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Send(#[from] SendError),
}

/// The steps of a new run for a claimed tenant whose ATS visits `plan`.
pub fn plan_run(cfg: &TenantConfig, now: DateTime<Utc>, plan: StreamPlan) -> Vec<Step> {
    let mut steps = Vec::new();
    if cfg.remerge_pending {
        steps.push(Step::Remerge);
    }
    if token_refresh_due(cfg, now) {
        steps.push(Step::RefreshToken);
    }
    let reconcile = reconcile_due(cfg, now);
    steps.extend(plan.streams.iter().map(|s| {
        if reconcile && plan.swept.contains(s) {
            Step::Sweep(*s)
        } else {
            Step::Pull(*s)
        }
    }));
    if reconcile {
        steps.extend(plan.reconciled.iter().map(|s| Step::Reconcile(*s)));
    }
    steps
}

/// When a claimed tenant is due next: its interval, but at least every 12 hours for
/// tenants with rotating refresh tokens (they expire after 24 h idle).
pub fn next_run(interval_secs: u64, uses_refresh_token: bool, now: DateTime<Utc>) -> DateTime<Utc> {
    let mut secs = interval_secs.max(60);
    if uses_refresh_token {
        secs = secs.min(TOKEN_REFRESH_EVERY_SECS);
    }
    now + Duration::seconds(secs as i64)
}

pub struct Scheduler {
    registry: Arc<dyn Registry>,
    pull_queue: Arc<dyn JobQueue>,
    catalog: Catalog,
}

impl Scheduler {
    /// `catalog`: what each ATS's pull visits (the provider registry's
    /// `connector::catalog::plan`).
    pub fn new(
        registry: Arc<dyn Registry>,
        pull_queue: Arc<dyn JobQueue>,
        catalog: Catalog,
    ) -> Self {
        Self {
            registry,
            pull_queue,
            catalog,
        }
    }

    /// The Lambda entry point: a tick of the schedule. Its payload carries nothing the
    /// run needs; the due time is the invocation's start.
    pub async fn handle(
        &self,
        _tick: EventBridgeEvent<Value>,
        invocation: Invocation,
    ) -> Result<ScheduleReport, SchedulerError> {
        self.run(invocation.now).await
    }

    /// Claims every tenant due at `now` and enqueues its run.
    pub async fn run(&self, now: DateTime<Utc>) -> Result<ScheduleReport, SchedulerError> {
        let mut report = ScheduleReport::default();
        let mut due = Vec::new();
        for shard in 0..DUE_SHARDS {
            due.extend(self.registry.due(&format!("{shard:02}"), now).await?);
        }
        report.due = due.len();
        let claims = futures::stream::iter(due)
            .map(|due| async move {
                let run_id = uuid::Uuid::new_v4().simple().to_string();
                // The settings come from the index (eventually consistent): an interval
                // changed a moment ago applies from the run after this one. A tenant
                // deleted or disabled since fails the claim's condition.
                let next = next_run(due.interval_secs, due.uses_refresh_token, now);
                let tenant = due.tenant;
                let claim = self
                    .registry
                    .claim_run(&tenant, &run_id, &["run".to_string()], now, next)
                    .await?;
                Ok::<_, RegistryError>(match claim {
                    Claim::Claimed { epoch, config } => {
                        let steps = plan_run(&config, now, (self.catalog)(config.ats.kind()));
                        Some(PullJob {
                            tenant,
                            epoch,
                            run_id,
                            steps,
                            resume: None,
                            continuation: 0,
                            stalled: 0,
                            not_before: None,
                        })
                    }
                    Claim::Skipped => None,
                })
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        let mut messages = Vec::new();
        for c in claims {
            match c? {
                Some(job) => {
                    report.claimed += 1;
                    if job.steps.contains(&Step::RefreshToken) {
                        report.token_refreshes += 1;
                    }
                    if job.steps.iter().any(|s| matches!(s, Step::Reconcile(_))) {
                        report.reconciliations += 1;
                        self.registry
                            .touch(&job.tenant, "last_reconcile_at", now)
                            .await?;
                    }
                    messages.push(FifoMessage {
                        body: serde_json::to_string(&job).unwrap_or_default(),
                        group_id: job.tenant.to_string(),
                        dedup_id: job.dedup_id(),
                    });
                }
                None => report.skipped += 1,
            }
        }
        report.messages = messages.len();
        report.sqs_calls = self.pull_queue.enqueue(&messages).await?;
        tracing::info!(?report, "scheduler run");
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eds_core::domain::ids::TenantId;
    use eds_core::tenants::{AtsSettings, GreenhouseSettings, StreamName, TenantState};

    /// A plan of four streams, three of them reconciled.
    const PLAN: StreamPlan = StreamPlan {
        streams: &[
            StreamName::Jobs,
            StreamName::Candidates,
            StreamName::Applications,
            StreamName::Attachments,
        ],
        reconciled: &[
            StreamName::Jobs,
            StreamName::Candidates,
            StreamName::Applications,
        ],
        swept: &[],
    };

    fn cfg() -> TenantConfig {
        let t = "2026-01-01T00:00:00Z".parse().unwrap();
        TenantConfig {
            tenant_id: TenantId::parse("acme").unwrap(),
            ats: AtsSettings::Greenhouse(GreenhouseSettings::default()),
            api_base_url: "https://harvest.example".into(),
            auth_url: None,
            secret_name: "eds/tenants/acme".into(),
            attachment_hosts: vec![],
            allow_loopback_attachments: false,
            interval_secs: 24 * 3600,
            reconcile_every_secs: 3 * 24 * 3600,
            state: TenantState::Enabled,
            epoch: 1,
            state_reason: None,
            uses_refresh_token: true,
            remerge_pending: false,
            last_reconcile_at: Some(t),
            last_token_refresh_at: Some(t),
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn refresh_token_tenants_run_at_least_every_twelve_hours() {
        let now: DateTime<Utc> = "2026-01-01T01:00:00Z".parse().unwrap();
        let c = cfg();
        assert_eq!(
            next_run(c.interval_secs, c.uses_refresh_token, now),
            now + Duration::hours(12)
        );
        assert_eq!(
            next_run(c.interval_secs, false, now),
            now + Duration::hours(24)
        );
        assert_eq!(next_run(0, false, now), now + Duration::seconds(60));
    }

    #[test]
    fn a_run_pulls_the_streams_its_ats_declares_in_their_order() {
        let c = cfg();
        let soon: DateTime<Utc> = "2026-01-01T02:00:00Z".parse().unwrap();
        let reversed = StreamPlan {
            streams: &[StreamName::Applications, StreamName::Jobs],
            reconciled: &[],
            swept: &[],
        };
        for plan in [PLAN, reversed] {
            let pulled: Vec<StreamName> = plan_run(&c, soon, plan)
                .into_iter()
                .filter_map(|s| match s {
                    Step::Pull(stream) => Some(stream),
                    _ => None,
                })
                .collect();
            assert_eq!(pulled, plan.streams);
        }
    }

    #[test]
    fn plan_adds_refresh_and_reconcile_only_when_due() {
        let c = cfg();
        let soon: DateTime<Utc> = "2026-01-01T02:00:00Z".parse().unwrap();
        let plan = plan_run(&c, soon, PLAN);
        assert_eq!(plan.len(), 4, "{plan:?}");
        let later: DateTime<Utc> = "2026-01-04T02:00:00Z".parse().unwrap();
        let plan = plan_run(&c, later, PLAN);
        assert_eq!(plan[0], Step::RefreshToken);
        assert_eq!(
            plan.iter()
                .filter(|s| matches!(s, Step::Reconcile(_)))
                .count(),
            3
        );
    }

    #[test]
    fn a_swept_stream_is_read_in_full_in_place_of_its_pull_when_a_reconciliation_is_due() {
        let c = cfg();
        let plan = StreamPlan {
            swept: &[StreamName::Candidates],
            ..PLAN
        };
        let soon: DateTime<Utc> = "2026-01-01T02:00:00Z".parse().unwrap();
        let steps = plan_run(&c, soon, plan);
        assert!(steps.contains(&Step::Pull(StreamName::Candidates)));
        assert!(!steps.iter().any(|s| matches!(s, Step::Sweep(_))));
        let later: DateTime<Utc> = "2026-01-04T02:00:00Z".parse().unwrap();
        let steps = plan_run(&c, later, plan);
        assert!(steps.contains(&Step::Sweep(StreamName::Candidates)));
        assert!(!steps.contains(&Step::Pull(StreamName::Candidates)));
        assert!(steps.contains(&Step::Pull(StreamName::Jobs)));
    }
}
