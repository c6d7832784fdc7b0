//! The checkout on a store whose global log lags behind its commits, as a gap-safe PostgreSQL
//! log does while an older transaction on the server is still running: the saga waits for the
//! log to reach its head instead of calling itself idle, and says so when it never gets there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use checkout_saga::{Checkout, OrderStatus, PlaceOrder, Restock};
use composable::envelope::Snapshot;
use composable::event_store::{AppendResult, EventStoreError};
use composable::saga::{InMemoryTimerStore, SagaError, SagaStatus};
use composable::{
    EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, Position, RecordedEvent, StreamId,
    TestClock, Version,
};
use composable_conformance::event_store::new_events;
use futures::stream::BoxStream;
use uuid::Uuid;

/// An in-memory store whose `read_all` shows each append only `lag` after it returned — or
/// nothing new at all, once `stuck` — while `head` tells the truth.
#[derive(Clone, Default)]
struct LaggingStore {
    inner: InMemoryEventStore,
    lag: Duration,
    /// Each append's last position and when it returned, in order.
    appended: Arc<Mutex<Vec<(Position, Instant)>>>,
    stuck: Arc<AtomicBool>,
}

impl LaggingStore {
    fn lagging_by(lag: Duration) -> Self {
        Self { lag, ..Self::default() }
    }

    /// The last position old enough to be shown.
    fn visible(&self) -> Position {
        let appended = self.appended.lock().unwrap_or_else(PoisonError::into_inner);
        appended
            .iter()
            .take_while(|(_, at)| at.elapsed() >= self.lag)
            .last()
            .map_or(Position::START, |(position, _)| *position)
    }
}

impl EventStore for LaggingStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, EventStoreError> {
        let result = self.inner.append(stream, expected, events).await?;
        let mut appended = self.appended.lock().unwrap_or_else(PoisonError::into_inner);
        appended.push((result.last_position, Instant::now()));
        appended.sort_by_key(|(position, _)| *position);
        Ok(result)
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        after: Version,
    ) -> BoxStream<'a, Result<RecordedEvent, EventStoreError>> {
        self.inner.read_stream(stream, after)
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        if self.stuck.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        let visible = self.visible();
        let mut events = self.inner.read_all(after, limit).await?;
        events.retain(|event| event.position <= visible);
        Ok(events)
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
}

async fn place_an_order(checkout: &Checkout<LaggingStore, InMemoryTimerStore>) {
    let restock = Restock { quantity: 5, manual: false };
    checkout.inventory.execute("tea", restock).await.expect("restock");
    let order = PlaceOrder {
        order_id: "1".into(),
        sku: "tea".into(),
        quantity: 2,
        total: 900,
        card: "tok_visa".into(),
    };
    checkout.orders.execute("1", order).await.expect("place");
}

#[tokio::test]
async fn the_saga_waits_for_a_lagging_log_to_show_every_commit() {
    let store = LaggingStore::lagging_by(Duration::from_millis(20));
    let checkout = Checkout::new(store, InMemoryTimerStore::new(), TestClock::new());
    place_an_order(&checkout).await;

    // The events of the saga's own commands are held back too; the run goes on regardless.
    let progress = checkout.saga.run_until_idle().await.expect("run the saga");
    assert_eq!(progress.len(), 3, "{progress:#?}");
    assert_eq!(checkout.orders.load("1").await.expect("load").state.status, OrderStatus::Confirmed);
    let saga = checkout.saga.load("1").await.expect("load the saga").expect("started");
    assert_eq!(saga.status, SagaStatus::Completed);
}

#[tokio::test]
async fn a_log_that_never_reaches_its_head_is_reported_as_behind() {
    let store = LaggingStore::default();
    store.stuck.store(true, Ordering::SeqCst);
    let checkout = Checkout::new(store.clone(), InMemoryTimerStore::new(), TestClock::new());
    let checkout =
        Checkout { saga: checkout.saga.with_settle_timeout(Duration::from_millis(50)), ..checkout };
    place_an_order(&checkout).await;

    let error = checkout.saga.run_until_idle().await.expect_err("the log never caught up");
    let head = store.head().await.expect("head");
    match error {
        SagaError::Behind { head: reported, reached, waited } => {
            assert_eq!(reported, head);
            assert_eq!(reached, Position::START);
            assert!(waited >= Duration::from_millis(50), "{waited:?}");
        }
        other => panic!("expected `Behind`, got {other}"),
    }
    assert!(checkout.saga.load("1").await.expect("load the saga").is_none(), "nothing was read");

    // Once the transaction holding the log back finishes, the same runner carries on.
    store.stuck.store(false, Ordering::SeqCst);
    checkout.saga.run_until_idle().await.expect("run the saga");
    assert_eq!(checkout.orders.load("1").await.expect("load").state.status, OrderStatus::Confirmed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_writers_committing_all_the_time_do_not_keep_the_saga_running() {
    let store = LaggingStore::lagging_by(Duration::from_millis(3));
    let checkout = Checkout::new(store.clone(), InMemoryTimerStore::new(), TestClock::new());
    place_an_order(&checkout).await;
    // Another writer appends every millisecond, so the log is never all shown.
    let writer = tokio::spawn(async move {
        let stream = StreamId::new("other", "1").expect("stream id");
        loop {
            let event = new_events(0, 1);
            store.append(&stream, ExpectedVersion::Any, event).await.expect("append");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });

    let run = tokio::time::timeout(Duration::from_secs(10), checkout.saga.run_until_idle()).await;
    writer.abort();
    let progress = run.expect("the saga stops at the head it saw").expect("run the saga");
    assert_eq!(progress.len(), 3, "{progress:#?}");
    assert_eq!(checkout.orders.load("1").await.expect("load").state.status, OrderStatus::Confirmed);
}
