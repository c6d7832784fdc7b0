//! An event store a test can step into: hold an append back, fail it, race it, note what it
//! wrote, or hide part of the log from readers — everything else goes to the store inside.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use uuid::Uuid;

use crate::envelope::{NewEvent, RecordedEvent, Snapshot, StoredEvent};
use crate::event_store::{AppendResult, Appends, EventStore, EventStoreError, StreamPart};
use crate::stream::{ExpectedVersion, Position, StreamId, Version};

type BeforeAppend = Arc<
    dyn Fn(&StreamId, &[NewEvent]) -> BoxFuture<'static, Result<(), EventStoreError>> + Send + Sync,
>;
type AfterAppend = Arc<dyn Fn(&StreamId, &AppendResult) + Send + Sync>;
type Reads = Arc<dyn Fn(Vec<RecordedEvent>) -> Vec<RecordedEvent> + Send + Sync>;
type StreamReads = Arc<dyn Fn(&StreamId, Version) + Send + Sync>;

/// `inner`, with hooks a test sets: [`before_append`](Self::before_append) runs before each
/// append and may hold it back (await something), fail it (return an error) or race it (append
/// something else first); [`after_append`](Self::after_append) sees each append that
/// succeeded; [`filter_reads`](Self::filter_reads) decides what a read of the global log
/// returns; [`on_read_stream`](Self::on_read_stream) sees each read of a stream. Clones share the
/// hooks and the store.
///
/// ```
/// use composable::event_store::EventStoreError;
/// use composable::testing::HookedStore;
/// use composable::{EventMetadata, EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, StreamId};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // A store whose `payment` streams are down.
/// let store = HookedStore::new(InMemoryEventStore::new()).before_append(|stream, _| {
///     let down = stream.category() == "payment";
///     async move {
///         if down {
///             return Err(EventStoreError::Unavailable { operation: "append", source: "down".into() });
///         }
///         Ok(())
///     }
/// });
/// let event = || NewEvent {
///     event_id: uuid::Uuid::now_v7(), name: "thing.happened".into(), version: 1,
///     format: "raw".into(), payload: vec![], metadata: EventMetadata::new_flow(chrono::Utc::now()),
/// };
/// let payment = StreamId::new("payment", 1)?;
/// assert!(store.append(&payment, ExpectedVersion::Any, vec![event()]).await.is_err());
/// let order = StreamId::new("order", 1)?;
/// assert!(store.append(&order, ExpectedVersion::Any, vec![event()]).await.is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct HookedStore<S> {
    inner: S,
    before_append: Option<BeforeAppend>,
    after_append: Option<AfterAppend>,
    reads: Option<Reads>,
    stream_reads: Option<StreamReads>,
}

impl<S: Clone> Clone for HookedStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            before_append: self.before_append.clone(),
            after_append: self.after_append.clone(),
            reads: self.reads.clone(),
            stream_reads: self.stream_reads.clone(),
        }
    }
}

impl<S> fmt::Debug for HookedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookedStore")
            .field("before_append", &self.before_append.is_some())
            .field("after_append", &self.after_append.is_some())
            .field("filter_reads", &self.reads.is_some())
            .field("on_read_stream", &self.stream_reads.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> HookedStore<S> {
    /// `inner` without hooks yet.
    pub fn new(inner: S) -> Self {
        Self { inner, before_append: None, after_append: None, reads: None, stream_reads: None }
    }

    /// Runs `hook` before each append, with the stream and the events; the append goes on
    /// when its future returns `Ok`, and fails with its error otherwise.
    #[must_use]
    pub fn before_append<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(&StreamId, &[NewEvent]) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), EventStoreError>> + Send + 'static,
    {
        self.before_append = Some(Arc::new(move |stream, events| Box::pin(hook(stream, events))));
        self
    }

    /// Calls `hook` after each append that succeeded.
    #[must_use]
    pub fn after_append(
        mut self,
        hook: impl Fn(&StreamId, &AppendResult) + Send + Sync + 'static,
    ) -> Self {
        self.after_append = Some(Arc::new(hook));
        self
    }

    /// Passes what each read of the global log ([`EventStore::read_all`]) found through `hook`,
    /// which returns what the reader gets: all of it, a prefix (a log lagging behind), nothing.
    #[must_use]
    pub fn filter_reads(
        mut self,
        hook: impl Fn(Vec<RecordedEvent>) -> Vec<RecordedEvent> + Send + Sync + 'static,
    ) -> Self {
        self.reads = Some(Arc::new(hook));
        self
    }

    /// Calls `hook` with the stream and the version after which it is read, on each read of a
    /// stream ([`EventStore::read_stream`], [`EventStore::read_stream_with`], and
    /// [`EventStore::read_stream_from_snapshot`], which reports [`Version::ZERO`]).
    #[must_use]
    pub fn on_read_stream(
        mut self,
        hook: impl Fn(&StreamId, Version) + Send + Sync + 'static,
    ) -> Self {
        self.stream_reads = Some(Arc::new(hook));
        self
    }

    /// The store inside.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: EventStore> EventStore for HookedStore<S> {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, EventStoreError> {
        if let Some(hook) = &self.before_append {
            hook(stream, &events).await?;
        }
        let appended = self.inner.append(stream, expected, events).await?;
        if let Some(hook) = &self.after_append {
            hook(stream, &appended);
        }
        Ok(appended)
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        after: Version,
    ) -> BoxStream<'a, Result<RecordedEvent, EventStoreError>> {
        if let Some(hook) = &self.stream_reads {
            hook(stream, after);
        }
        self.inner.read_stream(stream, after)
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
        if let Some(hook) = &self.stream_reads {
            hook(stream, after);
        }
        self.inner.read_stream_with(stream, after, read)
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
        if let Some(hook) = &self.stream_reads {
            hook(stream, Version::ZERO);
        }
        self.inner.read_stream_from_snapshot(stream, schema_version, format, read)
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        let events = self.inner.read_all(after, limit).await?;
        Ok(match &self.reads {
            Some(hook) => hook(events),
            None => events,
        })
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, EventStoreError> {
        self.inner.stream_version(stream).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError> {
        self.inner.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, EventStoreError> {
        self.inner.load_snapshot(stream).await
    }

    async fn event(&self, id: Uuid) -> Result<Option<RecordedEvent>, EventStoreError> {
        self.inner.event(id).await
    }

    async fn head(&self) -> Result<Position, EventStoreError> {
        self.inner.head().await
    }

    fn appends(&self) -> Appends {
        self.inner.appends()
    }
}
