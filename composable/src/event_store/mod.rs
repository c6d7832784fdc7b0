//! The event store: the source of truth every aggregate is rebuilt from.
//!
//! [`EventStore`] is implemented by [`crate::event_store::InMemoryEventStore`] here and by
//! `composable-postgres`; one conformance suite runs against both, so the in-memory store is an
//! exact twin for tests. An append is all-or-nothing and checks the [`ExpectedVersion`] before it
//! assigns any position; reads of the global log are gap-safe.

use std::fmt;
use std::future::Future;

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryFutureExt, TryStreamExt};
use tokio::sync::watch;
use uuid::Uuid;

use crate::envelope::{NewEvent, RecordedEvent, Snapshot, StoredEvent};
use crate::stream::{ExpectedVersion, Position, StreamId, Version};

use crate::BoxError;

mod memory;

pub use memory::InMemoryEventStore;

/// What [`EventStore::read_stream_from_snapshot`] yields: the snapshot first, when there is a
/// usable one, then the events after it.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamPart<T> {
    /// The stream's snapshot, of the schema and format asked for.
    Snapshot(Snapshot),
    /// An event after the snapshot (or after the start without one), as the reader made it.
    Event(T),
}

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

    /// The events of `stream` with a version greater than `after`, in version order, each
    /// passed to `read` as a [`StoredEvent`] borrowed from the store, and yielded as what `read`
    /// made of it. For folding events into a state: a store that can read less than the whole
    /// envelope (PostgreSQL reads six columns instead of fourteen, and copies nothing) overrides
    /// the default, which reads whole envelopes through [`Self::read_stream`].
    fn read_stream_with<'a, T, F>(
        &'a self,
        stream: &'a StreamId,
        after: Version,
        mut read: F,
    ) -> BoxStream<'a, Result<T, EventStoreError>>
    where
        T: Send + 'a,
        F: FnMut(StoredEvent<'_>) -> T + Send + 'a,
    {
        self.read_stream(stream, after).map_ok(move |event| read(event.as_stored())).boxed()
    }

    /// The snapshot of `stream` if it has one of state schema `schema_version` in `format`,
    /// then the events after it (after the start without one) through `read`, as
    /// [`Self::read_stream_with`] yields them: how an aggregate with snapshots is loaded. A
    /// snapshot of another schema or format is passed over. The default loads the snapshot and
    /// then reads the events; PostgreSQL does both in one query (one round trip).
    fn read_stream_from_snapshot<'a, T, F>(
        &'a self,
        stream: &'a StreamId,
        schema_version: u32,
        format: &'a str,
        read: F,
    ) -> BoxStream<'a, Result<StreamPart<T>, EventStoreError>>
    where
        T: Send + 'a,
        F: FnMut(StoredEvent<'_>) -> T + Send + 'a,
    {
        async move {
            let snapshot = self.load_snapshot(stream).await?.filter(|snapshot| {
                snapshot.schema_version == schema_version && snapshot.format == format
            });
            let after = snapshot.as_ref().map_or(Version::ZERO, |snapshot| snapshot.version);
            let first = stream::iter(snapshot.map(|snapshot| Ok(StreamPart::Snapshot(snapshot))));
            Ok(first.chain(self.read_stream_with(stream, after, read).map_ok(StreamPart::Event)))
        }
        .try_flatten_stream()
        .boxed()
    }

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

    /// Wakes a reader of the global log when events may have been committed, so that it need
    /// not poll: the in-memory store on every append, PostgreSQL through `LISTEN/NOTIFY`. A
    /// wake-up is a hint (a reader still reads gap-safe, and may find nothing new); a store
    /// that cannot tell keeps the default, which never wakes, and readers fall back to polling.
    fn appends(&self) -> Appends {
        Appends::never()
    }

    /// How many committed events follow `after` in the global log: how far behind a
    /// consumer at `after` is. By default it reads the log through in pages; a store that can
    /// count (PostgreSQL) answers in one query.
    fn count_after(
        &self,
        after: Position,
    ) -> impl Future<Output = Result<u64, EventStoreError>> + Send {
        async move {
            const PAGE: usize = 1000;
            let mut count = 0_u64;
            let mut after = after;
            loop {
                let page = self.read_all(after, PAGE).await?;
                count += page.len() as u64;
                match page.last() {
                    Some(last) if page.len() == PAGE => after = last.position,
                    _ => return Ok(count),
                }
            }
        }
    }
}

impl<S: EventStore> EventStore for std::sync::Arc<S> {
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<AppendResult, EventStoreError>> + Send {
        (**self).append(stream, expected, events)
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        after: Version,
    ) -> BoxStream<'a, Result<RecordedEvent, EventStoreError>> {
        (**self).read_stream(stream, after)
    }

    fn read_stream_with<'a, T, F>(
        &'a self,
        stream: &'a StreamId,
        after: Version,
        read: F,
    ) -> BoxStream<'a, Result<T, EventStoreError>>
    where
        T: Send + 'a,
        F: FnMut(StoredEvent<'_>) -> T + Send + 'a,
    {
        (**self).read_stream_with(stream, after, read)
    }

    fn read_stream_from_snapshot<'a, T, F>(
        &'a self,
        stream: &'a StreamId,
        schema_version: u32,
        format: &'a str,
        read: F,
    ) -> BoxStream<'a, Result<StreamPart<T>, EventStoreError>>
    where
        T: Send + 'a,
        F: FnMut(StoredEvent<'_>) -> T + Send + 'a,
    {
        (**self).read_stream_from_snapshot(stream, schema_version, format, read)
    }

    fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, EventStoreError>> + Send {
        (**self).read_all(after, limit)
    }

    fn stream_version(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Version, EventStoreError>> + Send {
        (**self).stream_version(stream)
    }

    fn save_snapshot(
        &self,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), EventStoreError>> + Send {
        (**self).save_snapshot(snapshot)
    }

    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>, EventStoreError>> + Send {
        (**self).load_snapshot(stream)
    }

    fn event(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<RecordedEvent>, EventStoreError>> + Send {
        (**self).event(id)
    }

    fn head(&self) -> impl Future<Output = Result<Position, EventStoreError>> + Send {
        (**self).head()
    }

    fn appends(&self) -> Appends {
        (**self).appends()
    }

    fn count_after(
        &self,
        after: Position,
    ) -> impl Future<Output = Result<u64, EventStoreError>> + Send {
        (**self).count_after(after)
    }
}

/// Wake-ups from an event store when events may have been committed: see
/// [`EventStore::appends`].
///
/// ```
/// use composable::event_store::Appends;
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let (appended, receiver) = tokio::sync::watch::channel(0u64);
/// let mut appends = composable::backend::appends(receiver);
/// appended.send_modify(|count| *count += 1);
/// appends.changed().await;
/// assert!(appends.can_wake());
/// assert!(!Appends::never().can_wake());
/// # });
/// ```
pub struct Appends(Option<Box<dyn Changed>>);

impl Appends {
    /// Wake-ups that never come: the reader polls.
    pub fn never() -> Self {
        Self(None)
    }

    /// A wake-up whenever `receiver`'s value changes: [`crate::backend::appends`].
    pub(crate) fn from_watch<T: Send + Sync + 'static>(receiver: watch::Receiver<T>) -> Self {
        Self(Some(Box::new(receiver)))
    }

    /// Whether these wake-ups can come at all (otherwise the reader depends on polling).
    pub fn can_wake(&self) -> bool {
        self.0.is_some()
    }

    /// Completes at the next wake-up since the last one; never, once the store stopped telling.
    /// Cancel-safe.
    pub async fn changed(&mut self) {
        let told = match &mut self.0 {
            Some(changed) => changed.changed().await,
            None => false,
        };
        if !told {
            self.0 = None;
            std::future::pending::<()>().await;
        }
    }
}

impl fmt::Debug for Appends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Appends").field("can_wake", &self.can_wake()).finish()
    }
}

trait Changed: Send + Sync {
    /// `false` once the sender is gone.
    fn changed(&mut self) -> BoxFuture<'_, bool>;
}

impl<T: Send + Sync> Changed for watch::Receiver<T> {
    fn changed(&mut self) -> BoxFuture<'_, bool> {
        Box::pin(async move { watch::Receiver::changed(self).await.is_ok() })
    }
}
