//! What a pull of each ATS visits: the provider registry's static half, read by the
//! scheduler when it plans a run. The other half, building a tenant's connection, is
//! [`Providers`](super::providers::Providers).

use super::Stream;
use super::greenhouse::streams as greenhouse;
use crate::tenants::AtsKind;

/// The streams a full pull of a `kind` tenant visits, in the connector's order (its
/// `AtsConnector::streams`).
pub fn streams(kind: AtsKind) -> &'static [Stream] {
    match kind {
        AtsKind::Greenhouse => greenhouse::STREAMS,
    }
}

/// The streams a reconciliation of a `kind` tenant lists in full.
pub fn reconciled(kind: AtsKind) -> &'static [Stream] {
    match kind {
        AtsKind::Greenhouse => greenhouse::RECONCILED,
    }
}
