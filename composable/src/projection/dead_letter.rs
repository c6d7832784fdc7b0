//! What a projection does with an event it cannot apply: stop, or park it — and the later
//! events of its stream, so that order holds — among its dead letters, to be replayed once
//! fixed.

use chrono::{DateTime, Utc};

use crate::envelope::RecordedEvent;

/// What a projection does with an event that still fails after its attempts
/// ([`ProjectionRunner::attempts`](super::ProjectionRunner::attempts)), or cannot be decoded at
/// all (trying that again cannot help). `docs/adr/0009-projection-failures.md` explains the
/// default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnFailure {
    /// Park the event, and every later event of its stream, among the projection's dead
    /// letters, and go on with the other streams. The default.
    #[default]
    Park,
    /// Stop the projection with the error: the read model stays as it was before the batch
    /// until the projection is fixed and started again.
    Stop,
}

/// An event a projection parked: the event as it was stored, why, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The projection's checkpoint name (`projection.{NAME}`).
    pub projection: String,
    /// The event, whole: replaying it needs nothing else.
    pub event: RecordedEvent,
    /// Why it was parked: the error, or the earlier event of its stream it waits behind.
    pub reason: String,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
}

/// What [`ProjectionRunner::replay_parked`](super::ProjectionRunner::replay_parked) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Events applied and removed from the dead letters.
    pub applied: usize,
    /// Streams whose dead letters failed again (and stay parked), with the error.
    pub still_parked: Vec<(String, String)>,
}
