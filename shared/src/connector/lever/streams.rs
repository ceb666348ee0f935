//! The streams Lever is pulled by (kept apart from the client so that the scheduler,
//! which plans runs, links none of it).

use crate::connector::Stream;

/// A pull's streams: postings (jobs) first, then opportunities, which carry the
/// candidate, its application (`expand=applications`), its resumes and files, and end
/// with the deleted list. Applications and attachments have no list of their own in
/// Lever: reading them apart would list every opportunity again.
pub const STREAMS: &[Stream] = &[Stream::Jobs, Stream::Candidates];

/// The streams a reconciliation lists in full. Applications are listed by id (from the
/// opportunities) so that the application of an opportunity deleted before eds saw it
/// is confirmed gone under its opportunity.
pub const RECONCILED: &[Stream] = &[Stream::Jobs, Stream::Candidates, Stream::Applications];

/// Re-read in full when a reconciliation is due: an opportunity whose `updatedAt` is
/// null is in no filtered list, and resumes and files never bump `updatedAt`.
pub const SWEPT: &[Stream] = &[Stream::Candidates];
