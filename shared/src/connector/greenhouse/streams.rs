//! The streams Greenhouse is pulled by (kept apart from the client so that the scheduler,
//! which plans runs, links none of it).

use crate::connector::Stream;

/// The streams of a full pull, in order: jobs first so that applications refer to known
/// jobs sooner; attachments last so that their candidates exist.
pub const STREAMS: &[Stream] = &[
    Stream::Jobs,
    Stream::Candidates,
    Stream::Applications,
    Stream::Attachments,
];

/// The streams a reconciliation lists in full (attachments are elements of candidates,
/// reconciled with them).
pub const RECONCILED: &[Stream] = &[Stream::Jobs, Stream::Candidates, Stream::Applications];
