//! Reading a gap-safe global log in tests.

use std::time::Duration;

use crate::checkpoint::InMemoryCheckpointStore;
use crate::consumer::LogReader;
use crate::envelope::RecordedEvent;
use crate::event_store::EventStore;
use crate::stream::Position;

/// How long [`read_all_to_head`] waits for the log to reach its head.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The events of the global log after `after`, read until the store's
/// [`head`](EventStore::head) as it was when called: what a test appended is all there (the last
/// page may go past the head).
///
/// A gap-safe store holds commits back from [`read_all`](EventStore::read_all) while older
/// transactions run — on PostgreSQL, those of any client of the server, such as tests beside
/// this one creating their databases. This reads until the head is reached, waiting up to 30 s
/// ([`LogReader::read_to_head`]).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use composable::testing::read_all_to_head;
/// use composable::{EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, Position, StreamId};
/// # use composable::EventMetadata;
/// # let event = || NewEvent {
/// #     event_id: uuid::Uuid::now_v7(),
/// #     name: "thing.happened".into(),
/// #     version: 1,
/// #     format: "raw".into(),
/// #     payload: vec![],
/// #     metadata: EventMetadata::new_flow(chrono::Utc::now()),
/// # };
///
/// let store = InMemoryEventStore::new();
/// let stream = StreamId::new("thing", "1").unwrap();
/// store.append(&stream, ExpectedVersion::NoStream, vec![event(), event()]).await.unwrap();
/// assert_eq!(read_all_to_head(&store, Position::START).await.len(), 2);
/// # });
/// ```
///
/// # Panics
/// When the store fails, or the log stays behind its head for 30 s; the message says which.
pub async fn read_all_to_head<S: EventStore + Clone>(
    store: &S,
    after: Position,
) -> Vec<RecordedEvent> {
    let mut reader =
        LogReader::new("read_all_to_head", store.clone(), InMemoryCheckpointStore::new())
            .batch_size(1000)
            .settle(Duration::from_millis(5), SETTLE_TIMEOUT)
            .starting_after(after);
    match reader.read_to_head().await {
        Ok(events) => events,
        Err(error) => panic!("reading the log after {after} up to its head failed: {error}"),
    }
}
