//! What a pull of each ATS visits: the provider registry's static half, given to the
//! scheduler when it is built (`Scheduler::new(.., plan)`). The other half, building a
//! tenant's connection, is [`Providers`](super::providers::Providers).

use super::StreamPlan;
use super::greenhouse::streams as greenhouse;
use super::lever::streams as lever;
use crate::tenants::AtsKind;

/// The streams a pull of a `kind` tenant visits, and those a reconciliation lists.
pub fn plan(kind: AtsKind) -> StreamPlan {
    match kind {
        AtsKind::Greenhouse => StreamPlan {
            streams: greenhouse::STREAMS,
            reconciled: greenhouse::RECONCILED,
            swept: &[],
        },
        AtsKind::Lever => StreamPlan {
            streams: lever::STREAMS,
            reconciled: lever::RECONCILED,
            swept: lever::SWEPT,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::Stream;

    #[test]
    fn greenhouse_pulls_jobs_first_and_attachments_last_and_reconciles_the_rest() {
        let p = plan(AtsKind::Greenhouse);
        assert_eq!(
            p.streams,
            [
                Stream::Jobs,
                Stream::Candidates,
                Stream::Applications,
                Stream::Attachments
            ]
        );
        assert_eq!(
            p.reconciled,
            [Stream::Jobs, Stream::Candidates, Stream::Applications]
        );
    }
}
