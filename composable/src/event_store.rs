//! The event store: the source of truth every aggregate is rebuilt from.
//!
//! [`EventStore`] is implemented by [`crate::memory::InMemoryEventStore`] here and by
//! `composable-postgres`; one conformance suite runs against both, so the in-memory store is an
//! exact twin for tests. An append is all-or-nothing and checks the [`ExpectedVersion`] before it
//! assigns any position; reads of the global log are gap-safe.

use std::future::Future;

use futures::stream::BoxStream;

use std::collections::HashSet;

use uuid::Uuid;

use crate::envelope::{NewEvent, RecordedEvent, Snapshot};
use crate::stream::{ExpectedVersion, Position, StreamId, Version};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where an append put its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream version of the first appended event.
    pub first_version: Version,
    /// The stream version of the last appended event: the next append's expected version.
    pub last_version: Version,
    /// The global position of the last appended event.
    pub last_position: Position,
}

/// An event store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventStoreError {
    /// The stream was not at the expected version: another writer got there first. (With
    /// [`ExpectedVersion::Any`], other writers kept taking the versions the append read.)
    #[error("stream `{stream}` expected {expected} but is at version {actual}")]
    Conflict {
        /// The stream appended to.
        stream: StreamId,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was refused.
        actual: Version,
    },
    /// An event id already stored was appended with different content or to another place.
    #[error("event id {event_id} is already stored in stream `{stream}` at version {version}")]
    DuplicateEventId {
        /// The repeated id.
        event_id: uuid::Uuid,
        /// Where the stored event with that id lives.
        stream: StreamId,
        /// Its version in that stream.
        version: Version,
    },
    /// An append with no events.
    #[error("an append to `{stream}` must carry at least one event")]
    EmptyAppend {
        /// The stream appended to.
        stream: StreamId,
    },
    /// A stored row could not be read back (bad metadata, an impossible value).
    #[error("corrupt row at position {position}: {reason}")]
    Corrupt {
        /// The row's global position.
        position: Position,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend could not be reached, or the operation lost a race the backend reports as
    /// retryable (a serialization failure); it may succeed when retried.
    #[error("event store unavailable while trying to {operation}: {source}")]
    Unavailable {
        /// What was being done.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// The backend failed in a way retrying will not fix.
    #[error("event store failed to {operation}: {source}")]
    Backend {
        /// What was being done.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

impl EventStoreError {
    /// Whether retrying the same operation may succeed (the backend was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Durable, ordered storage of event streams, with snapshots.
///
/// Semantics every implementation keeps (the conformance suite checks them):
/// * `append` writes all events or none; when the stream is not at `expected` it writes
///   nothing and refuses with [`EventStoreError::Conflict`].
/// * Appending events whose ids are all already stored, at the same place, is a retry: it
///   returns the original [`AppendResult`] and writes nothing.
/// * `read_stream` yields the stream's events after a version, in version order, as a stream.
/// * `read_all` yields up to `limit` events after a global position, in position order, and never
///   skips an event that commits later with a lower position (gap-safe).
/// * `event` finds one stored event by its id, as soon as its append returned.
/// * `head` is the highest position committed; `read_all` reaches it once the transactions that
///   may still commit below it have finished.
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if the stream is at `expected`.
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<AppendResult, EventStoreError>> + Send;

    /// The events of `stream` with a version greater than `after`, in version order.
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        after: Version,
    ) -> BoxStream<'a, Result<RecordedEvent, EventStoreError>>;

    /// Up to `limit` events with a global position greater than `after`, in position order,
    /// gap-safe.
    fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, EventStoreError>> + Send;

    /// The version of `stream`'s last event, [`Version::ZERO`] when it has none.
    fn stream_version(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Version, EventStoreError>> + Send;

    /// Stores `snapshot`, replacing an older one of the same stream.
    fn save_snapshot(
        &self,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), EventStoreError>> + Send;

    /// The latest snapshot of `stream`, if any.
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>, EventStoreError>> + Send;

    /// The stored event with id `id`, if any: an exact lookup, not limited by the gap-safe
    /// rule of `read_all` (an event is found as soon as its append returned). The runner uses
    /// it to tell a repeated command from a refused one
    /// ([`AggregateRunner::execute_in`](crate::AggregateRunner::execute_in)).
    fn event(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<RecordedEvent>, EventStoreError>> + Send;

    /// The highest position committed, [`Position::START`] when there is none. Not
    /// limited by the gap-safe rule: a gap-safe `read_all` may stop short of it for a moment
    /// while older transactions run, and reaches it once they finish. A reader that must not
    /// stop early — one waiting for the system to go quiet, like
    /// [`SagaRunner::run_until_idle`](crate::saga::SagaRunner::run_until_idle) — reads until it
    /// gets here.
    fn head(&self) -> impl Future<Output = Result<Position, EventStoreError>> + Send;
}

/// For backends: the original [`AppendResult`] when `records` (the stored events carrying the ids
/// of `events`, in the same order) are exactly what appending `events` to `stream` at `expected`
/// stored — the append is a retry. `None` means any other overlap, which is a
/// [`EventStoreError::DuplicateEventId`].
///
/// Every store applies this one rule, and the conformance suite holds them to it.
pub fn retried_append(
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[NewEvent],
    records: &[&RecordedEvent],
) -> Option<AppendResult> {
    let first = records.first()?;
    let last = records.last()?;
    if records.len() != events.len() {
        return None;
    }
    let first_version = first.stream_version.get();
    let in_place = records.iter().zip(0u64..).all(|(record, offset)| {
        record.stream_id == *stream && record.stream_version.get() == first_version + offset
    });
    let where_expected = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => first_version == 1,
        ExpectedVersion::Exact(version) => first_version == version.get() + 1,
    };
    let same_content = records.iter().zip(events).all(|(record, event)| {
        record.event_id == event.event_id
            && record.name == event.name
            && record.version == event.version
            && record.format == event.format
            && record.payload == event.payload
            && record.metadata == event.metadata
    });
    (in_place && where_expected && same_content).then_some(AppendResult {
        first_version: first.stream_version,
        last_version: last.stream_version,
        last_position: last.position,
    })
}

/// For backends: the first event id that appears twice in one append, with the index of its
/// first occurrence. Stores refuse such an append before writing anything.
pub fn repeated_event_id(events: &[NewEvent]) -> Option<(usize, Uuid)> {
    let mut seen = HashSet::with_capacity(events.len());
    let repeated = events.iter().find(|event| !seen.insert(event.event_id))?;
    let first = events.iter().position(|event| event.event_id == repeated.event_id)?;
    Some((first, repeated.event_id))
}
