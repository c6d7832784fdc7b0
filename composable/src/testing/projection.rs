//! Given events → then the read model: a projection tested on the in-memory stores.

use std::fmt;

use uuid::Uuid;

use crate::codec::Bincode;
use crate::consumer::LogConsumer;
use crate::envelope::{EventMetadata, NewEvent};
use crate::event_store::{EventStore, InMemoryEventStore};
use crate::projection::{Projection, ProjectionRunner, ReadStore};
use crate::stream::ExpectedVersion;
use crate::stream::StreamId;
use crate::{Clock, SystemClock};

type Consumer<P> = LogConsumer<
    InMemoryEventStore,
    <<P as Projection>::Store as ReadStore>::Checkpoints,
    ProjectionRunner<P>,
>;

/// A projection run by its real runner on an in-memory log: the test records events on the
/// streams it names, [`then`](Self::then) applies what was recorded since the last time (in
/// batches, with the checkpoint, as a host would), and the test queries the read store.
///
/// ```
/// use composable::projection::{DocumentBatch, DocumentError, InMemoryDocuments};
/// use composable::testing::ProjectionTest;
/// use composable::{event, project, projection};
/// use serde::{Deserialize, Serialize};
///
/// #[event(name = "visit.made", version = 1)]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct Visited { pub page: String }
///
/// struct Visits;
///
/// #[projection(name = "visits", store = InMemoryDocuments)]
/// impl Visits {
///     #[project]
///     fn visited(&self, batch: &mut DocumentBatch, e: &Visited) -> Result<(), DocumentError> {
///         let count: u64 = batch.get("pages", &e.page)?.unwrap_or(0);
///         batch.put("pages", &e.page, &(count + 1))
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut test = ProjectionTest::new(Visits, InMemoryDocuments::new());
/// test.given("visitor-1", Visited { page: "/".into() }).await;
/// test.given("visitor-2", Visited { page: "/".into() }).await;
/// let read = test.then().await;
/// assert_eq!(read.get::<u64>("pages", "/").unwrap(), Some(2));
/// # });
/// ```
pub struct ProjectionTest<P: Projection> {
    events: InMemoryEventStore,
    consumer: Consumer<P>,
    correlation_id: Uuid,
}

impl<P: Projection> fmt::Debug for ProjectionTest<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionTest").field("projection", &P::NAME).finish_non_exhaustive()
    }
}

impl<P: Projection> ProjectionTest<P> {
    /// `projection` writing to `read`, fed from a new in-memory log.
    pub fn new(projection: P, read: P::Store) -> Self {
        let events = InMemoryEventStore::new();
        let consumer = ProjectionRunner::new(projection, read).consumer(events.clone());
        Self { events, consumer, correlation_id: Uuid::now_v7() }
    }

    /// Records `event` at the end of stream `stream` (`{category}-{id}`), as a command would.
    ///
    /// # Panics
    /// When `stream` is not a stream id, or the event does not encode.
    pub async fn given(&mut self, stream: &str, event: impl Into<P::Event>) -> &mut Self {
        let event = event.into();
        let metadata =
            EventMetadata::caused_by(self.correlation_id, Uuid::now_v7(), SystemClock.now());
        let new = NewEvent::encode(&event, &Bincode, metadata)
            .unwrap_or_else(|error| panic!("cannot encode {event:?}: {error}"));
        self.given_raw(stream, new).await
    }

    /// Records `event` as it is — an event of another projection, a corrupt payload, a version
    /// from the future — at the end of stream `stream`.
    ///
    /// # Panics
    /// When `stream` is not a stream id.
    pub async fn given_raw(&mut self, stream: &str, event: NewEvent) -> &mut Self {
        let stream = StreamId::parse(stream)
            .unwrap_or_else(|error| panic!("`{stream}` is not a stream id: {error}"));
        if let Err(error) = self.events.append(&stream, ExpectedVersion::Any, vec![event]).await {
            panic!("cannot record an event on `{stream}`: {error}");
        }
        self
    }

    /// Applies every event recorded since the last call, and answers the read store to query.
    ///
    /// # Panics
    /// When the projection fails in a way its policy does not park (the read store failed, or
    /// [`OnFailure::Stop`](crate::projection::OnFailure::Stop)).
    pub async fn then(&mut self) -> &P::Store {
        if let Err(error) = self.consumer.catch_up().await {
            panic!("projection `{}` failed: {error}", P::NAME);
        }
        self.consumer.handler().store()
    }

    /// The log the events are recorded in.
    pub fn events(&self) -> &InMemoryEventStore {
        &self.events
    }
}
