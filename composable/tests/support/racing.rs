//! A store that races the runner once: a conflict on demand.

use composable::envelope::Snapshot;
use composable::{
    Bincode, EventMetadata, EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, StreamId,
    Version,
};
use uuid::Uuid;

use super::account::{AccountEvent, Deposited};

/// A store that lets one foreign append in right before the runner's first append, so the
/// runner's decision is always stale once.
#[derive(Clone)]
pub(crate) struct RacingStore {
    /// The store the runner's appends and the rival's go to.
    pub(crate) inner: InMemoryEventStore,
    raced: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl EventStore for RacingStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<composable::event_store::AppendResult, composable::event_store::EventStoreError>
    {
        if !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let rival = NewEvent::encode(
                &AccountEvent::Deposited(Deposited { amount: 100 }),
                &Bincode,
                EventMetadata::new_flow(chrono::Utc::now()),
            )
            .expect("encode");
            self.inner.append(stream, ExpectedVersion::Any, vec![rival]).await?;
        }
        self.inner.append(stream, expected, events).await
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        after: Version,
    ) -> futures::stream::BoxStream<
        'a,
        Result<composable::RecordedEvent, composable::event_store::EventStoreError>,
    > {
        self.inner.read_stream(stream, after)
    }

    async fn read_all(
        &self,
        after: composable::Position,
        limit: usize,
    ) -> Result<Vec<composable::RecordedEvent>, composable::event_store::EventStoreError> {
        self.inner.read_all(after, limit).await
    }

    async fn stream_version(
        &self,
        stream: &StreamId,
    ) -> Result<Version, composable::event_store::EventStoreError> {
        self.inner.stream_version(stream).await
    }

    async fn save_snapshot(
        &self,
        snapshot: Snapshot,
    ) -> Result<(), composable::event_store::EventStoreError> {
        self.inner.save_snapshot(snapshot).await
    }

    async fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> Result<Option<Snapshot>, composable::event_store::EventStoreError> {
        self.inner.load_snapshot(stream).await
    }

    async fn event(
        &self,
        id: Uuid,
    ) -> Result<Option<composable::RecordedEvent>, composable::event_store::EventStoreError> {
        self.inner.event(id).await
    }

    async fn head(&self) -> Result<composable::Position, composable::event_store::EventStoreError> {
        self.inner.head().await
    }
}

/// A racing store, empty.
pub(crate) fn racing() -> RacingStore {
    RacingStore { inner: InMemoryEventStore::new(), raced: Default::default() }
}
