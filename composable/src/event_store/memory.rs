//! The in-memory twin of [`EventStore`].
//!
//! [`InMemoryEventStore`] keeps the exact semantics of `composable-postgres`' event store (the
//! same conformance suite runs against both), so an aggregate tested here behaves the same way
//! against Postgres: all-or-nothing appends, expected versions checked before positions are
//! assigned, idempotent retries, and global positions in commit order (each append one transaction).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::sync::watch;
use uuid::Uuid;

use crate::backend::{repeated_event_id, retried_append};
use crate::envelope::{NewEvent, RecordedEvent, Snapshot};
use crate::event_store::{AppendResult, Appends, EventStore, EventStoreError};
use crate::stream::{ExpectedVersion, Position, StreamId, Version};

/// An [`EventStore`] held in memory: cheap to clone (clones share the same log), fast, and
/// deterministic.
///
/// ```
/// use composable::event_store::InMemoryEventStore;
/// use composable::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StreamId, Version};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = InMemoryEventStore::new();
/// let stream = StreamId::new("order", 1)?;
/// let event = NewEvent {
///     event_id: uuid::Uuid::now_v7(),
///     name: "order.placed".into(),
///     version: 1,
///     format: "json".into(),
///     payload: b"{}".to_vec(),
///     metadata: EventMetadata::new_flow(chrono::Utc::now()),
/// };
/// let appended = store.append(&stream, ExpectedVersion::NoStream, vec![event]).await?;
/// assert_eq!(appended.last_version, Version(1));
/// assert_eq!(store.stream_version(&stream).await?, Version(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct InMemoryEventStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    log: Mutex<Log>,
    appended: watch::Sender<Position>,
}

#[derive(Debug, Default)]
struct Log {
    /// The global log, in position order. Each append is one transaction, numbered from 1, and
    /// its events are numbered from 1 within it.
    events: Vec<RecordedEvent>,
    /// How many appends committed: the transaction number of the last one.
    appends: u64,
    /// Per stream, the indexes of its events in `events`, in version order.
    streams: HashMap<StreamId, Vec<usize>>,
    /// Where each stored event id lives, as an index into `events`.
    ids: HashMap<Uuid, usize>,
    snapshots: HashMap<StreamId, Snapshot>,
}

impl Default for InMemoryEventStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                log: Mutex::new(Log::default()),
                appended: watch::channel(Position::START).0,
            }),
        }
    }

    /// A receiver of the global position of the last committed event, updated after every
    /// append. Subscribers wait on it instead of polling [`EventStore::read_all`].
    pub fn subscribe_appends(&self) -> watch::Receiver<Position> {
        self.inner.appended.subscribe()
    }

    /// A panic in another thread while the lock was held cannot leave the log half-written
    /// (every append validates before it writes), so a poisoned lock is still consistent.
    fn log(&self) -> MutexGuard<'_, Log> {
        self.inner.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Log {
    fn version_of(&self, stream: &StreamId) -> Version {
        Version(self.streams.get(stream).map_or(0, |events| events.len() as u64))
    }

    /// Decides whether `events`, some of whose ids are stored, are a retry of an append that
    /// already happened: every id stored, in `stream`, at consecutive versions in the same order,
    /// where `expected` would have put them, with the same content.
    fn retry_result(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, EventStoreError> {
        let stored: Vec<Option<&RecordedEvent>> = events
            .iter()
            .map(|event| self.ids.get(&event.event_id).map(|&index| &self.events[index]))
            .collect();
        let first_stored =
            stored.iter().flatten().next().copied().ok_or_else(|| EventStoreError::Backend {
                operation: "check an append retry",
                source: "no event id of the append is stored".into(),
            })?;
        let duplicate = || EventStoreError::DuplicateEventId {
            event_id: first_stored.event_id,
            stream: first_stored.stream_id.clone(),
            version: first_stored.stream_version,
        };
        let records: Vec<&RecordedEvent> = stored.into_iter().flatten().collect();
        if records.len() != events.len() {
            return Err(duplicate());
        }
        retried_append(stream, expected, events, &records).ok_or_else(duplicate)
    }
}

impl EventStore for InMemoryEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, EventStoreError> {
        if events.is_empty() {
            return Err(EventStoreError::EmptyAppend { stream: stream.clone() });
        }
        let result = {
            let mut log = self.log();
            let actual = log.version_of(stream);
            if let Some((first, event_id)) = repeated_event_id(&events) {
                return Err(EventStoreError::DuplicateEventId {
                    event_id,
                    stream: stream.clone(),
                    version: Version(actual.get() + first as u64 + 1),
                });
            }
            if events.iter().any(|event| log.ids.contains_key(&event.event_id)) {
                return log.retry_result(stream, expected, &events);
            }
            if !expected.admits(actual) {
                return Err(EventStoreError::Conflict { stream: stream.clone(), expected, actual });
            }
            let recorded_at = Utc::now();
            log.appends += 1;
            let transaction = log.appends;
            let Log { events: log_events, streams, ids, .. } = &mut *log;
            let stream_events = match streams.entry(stream.clone()) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(Vec::new()),
            };
            let first_version = actual.next();
            let mut last_position = Position::START;
            for (event, sequence) in events.into_iter().zip(1..) {
                let index = log_events.len();
                last_position = Position::new(transaction, sequence);
                let record = RecordedEvent {
                    position: last_position,
                    stream_id: stream.clone(),
                    stream_version: Version(stream_events.len() as u64 + 1),
                    event_id: event.event_id,
                    name: event.name,
                    version: event.version,
                    format: event.format,
                    payload: event.payload,
                    metadata: event.metadata,
                    recorded_at,
                };
                ids.insert(record.event_id, index);
                stream_events.push(index);
                log_events.push(record);
            }
            AppendResult {
                first_version,
                last_version: Version(stream_events.len() as u64),
                last_position,
            }
        };
        self.inner.appended.send_replace(result.last_position);
        Ok(result)
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        after: Version,
    ) -> BoxStream<'a, Result<RecordedEvent, EventStoreError>> {
        let events: Vec<RecordedEvent> = {
            let log = self.log();
            log.streams
                .get(stream)
                .map(|indexes| {
                    let skip = usize::try_from(after.get()).unwrap_or(usize::MAX);
                    indexes.iter().skip(skip).map(|&index| log.events[index].clone()).collect()
                })
                .unwrap_or_default()
        };
        stream::iter(events).map(Ok).boxed()
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        let log = self.log();
        let skip = log.events.partition_point(|event| event.position <= after);
        Ok(log.events[skip..].iter().take(limit).cloned().collect())
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, EventStoreError> {
        Ok(self.log().version_of(stream))
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError> {
        let mut log = self.log();
        match log.snapshots.entry(snapshot.stream_id.clone()) {
            Entry::Occupied(mut entry) => {
                if snapshot.version >= entry.get().version {
                    entry.insert(snapshot);
                }
            }
            Entry::Vacant(entry) => {
                entry.insert(snapshot);
            }
        }
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, EventStoreError> {
        Ok(self.log().snapshots.get(stream).cloned())
    }

    async fn event(&self, id: Uuid) -> Result<Option<RecordedEvent>, EventStoreError> {
        let log = self.log();
        Ok(log.ids.get(&id).map(|&index| log.events[index].clone()))
    }

    async fn head(&self) -> Result<Position, EventStoreError> {
        Ok(self.log().events.last().map_or(Position::START, |event| event.position))
    }

    fn appends(&self) -> Appends {
        Appends::from_watch(self.subscribe_appends())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::EventMetadata;

    fn event() -> NewEvent {
        NewEvent {
            event_id: Uuid::now_v7(),
            name: "thing.happened".into(),
            version: 1,
            format: "raw".into(),
            payload: vec![1, 2, 3],
            metadata: EventMetadata::new_flow(Utc::now()),
        }
    }

    #[tokio::test]
    async fn positions_number_appends_and_the_events_within_each_from_one() {
        let store = InMemoryEventStore::new();
        let mut appends = store.subscribe_appends();
        let a = StreamId::new("a", 1).unwrap();
        let b = StreamId::new("b", 1).unwrap();
        store.append(&a, ExpectedVersion::Any, vec![event(), event()]).await.unwrap();
        store.append(&b, ExpectedVersion::Any, vec![event()]).await.unwrap();
        let positions: Vec<Position> = store
            .read_all(Position::START, 10)
            .await
            .unwrap()
            .iter()
            .map(|event| event.position)
            .collect();
        assert_eq!(positions, [Position::new(1, 1), Position::new(1, 2), Position::new(2, 1)]);
        assert!(appends.has_changed().unwrap());
        assert_eq!(*appends.borrow_and_update(), Position::new(2, 1));
        let after_first = store.read_all(Position::new(1, 2), 10).await.unwrap();
        assert_eq!(after_first.len(), 1);
        assert_eq!(after_first[0].stream_id, b);
    }

    #[tokio::test]
    async fn a_repeated_id_within_one_append_is_refused() {
        let store = InMemoryEventStore::new();
        let stream = StreamId::new("a", 1).unwrap();
        let once = event();
        let error = store
            .append(&stream, ExpectedVersion::Any, vec![once.clone(), once.clone()])
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            EventStoreError::DuplicateEventId { event_id, version: Version(1), .. }
                if event_id == once.event_id
        ));
        assert_eq!(store.stream_version(&stream).await.unwrap(), Version::ZERO);
    }
}
