//! Readers of the log are woken by `LISTEN/NOTIFY`: a consumer on another pool (as in another
//! process) sees an append long before its poll would, and keeps being woken after the server
//! drops its listening connection.

mod common;

use std::time::Duration;

use chrono::Utc;
use composable::checkpoint::InMemoryCheckpointStore;
use composable::consumer::{EventHandler, LogConsumer};
use composable::service::{self, ServiceHandle};
use composable::{
    EventMetadata, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId,
};
use composable_postgres::PostgresEventStore;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use common::{TestDatabase, test_database};

fn event() -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        name: "thing.happened".into(),
        version: 1,
        format: "raw".into(),
        payload: vec![1],
        metadata: EventMetadata::new_flow(Utc::now()),
    }
}

/// Sends the position of every event it handles.
struct Forward(mpsc::UnboundedSender<Position>);

impl EventHandler for Forward {
    type Error = mpsc::error::SendError<Position>;

    async fn handle(&mut self, events: &[RecordedEvent]) -> Result<(), Self::Error> {
        events.iter().try_for_each(|event| self.0.send(event.position))
    }
}

/// A second store on its own pool: what another process would have.
async fn other_process(db: &TestDatabase) -> PostgresEventStore {
    PostgresEventStore::builder()
        .connect_options(db.options())
        .max_connections(2)
        .connect()
        .await
        .expect("a second pool on the test database")
}

/// A consumer of `store` that polls only once an hour: anything it sees sooner, it was woken to.
async fn hour_polling_consumer(
    store: PostgresEventStore,
) -> (ServiceHandle, mpsc::UnboundedReceiver<Position>) {
    let (sender, received) = mpsc::unbounded_channel();
    let consumer =
        LogConsumer::new("woken", store, InMemoryCheckpointStore::new(), Forward(sender))
            .poll_interval(Duration::from_secs(3600));
    let mut handle = service::spawn(consumer);
    let health =
        tokio::time::timeout(Duration::from_secs(30), handle.wait_until(|health| health.caught_up))
            .await
            .expect("the consumer catches up with the empty log");
    assert!(health.caught_up, "{health:?}");
    (handle, received)
}

async fn next(received: &mut mpsc::UnboundedReceiver<Position>, what: &str) -> Position {
    tokio::time::timeout(Duration::from_secs(20), received.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: not woken within 20 s (the poll is an hour)"))
        .expect("the consumer is running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_on_another_pool_is_woken_by_notify() {
    let db = test_database().await;
    let reader = other_process(&db).await;
    let (handle, mut received) = hour_polling_consumer(reader.clone()).await;
    // Let the listener connect before the append (a missed NOTIFY would only cost the poll).
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stream = StreamId::new("thing", 1).unwrap();
    let appended =
        db.store.append(&stream, ExpectedVersion::NoStream, vec![event()]).await.unwrap();
    assert_eq!(next(&mut received, "the first append").await, appended.last_position);
    let appended = db.store.append(&stream, ExpectedVersion::Any, vec![event()]).await.unwrap();
    assert_eq!(next(&mut received, "the second append").await, appended.last_position);

    handle.stop().await.unwrap();
    reader.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects_after_the_server_drops_it() {
    let db = test_database().await;
    let reader = other_process(&db).await;
    let (handle, mut received) = hour_polling_consumer(reader.clone()).await;

    // The server ends the listening connection, as a restart or a network cut would.
    let mut admin = db.connection().await;
    let listening = async |admin: &mut sqlx::PgConnection| {
        sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
        )
        .bind(&db.name)
        .fetch_all(admin)
        .await
        .unwrap()
    };
    let mut pids = Vec::new();
    for _ in 0..200 {
        pids = listening(&mut admin).await;
        if !pids.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(pids.len(), 1, "one listening connection for the reader's store");
    sqlx::query("SELECT pg_terminate_backend($1)").bind(pids[0]).execute(&mut admin).await.unwrap();
    // Wait for the listener to be back, on a new connection.
    let mut back = false;
    for _ in 0..400 {
        let now = listening(&mut admin).await;
        if now.len() == 1 && now[0] != pids[0] {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(back, "the listener reconnected");

    let stream = StreamId::new("thing", 2).unwrap();
    let appended =
        db.store.append(&stream, ExpectedVersion::NoStream, vec![event()]).await.unwrap();
    assert_eq!(
        next(&mut received, "an append after the reconnection").await,
        appended.last_position
    );

    handle.stop().await.unwrap();
    reader.pool().close().await;
    drop(admin);
    db.drop_database().await;
}

#[tokio::test]
async fn each_schema_notifies_its_own_channel() {
    let db = test_database().await;
    let in_schema = PostgresEventStore::builder()
        .connect_options(db.options())
        .schema("billing")
        .unwrap()
        .connect()
        .await
        .unwrap();
    in_schema.migrate().await.unwrap();
    let mut listener = PgListener::connect_with(db.store.pool()).await.unwrap();
    listener.listen_all(["composable_events", "composable_events_billing"]).await.unwrap();

    let stream = StreamId::new("invoice", 1).unwrap();
    in_schema.append(&stream, ExpectedVersion::NoStream, vec![event()]).await.unwrap();
    let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification within 10 s")
        .unwrap();
    assert_eq!(notification.channel(), "composable_events_billing");

    db.store.append(&stream, ExpectedVersion::NoStream, vec![event()]).await.unwrap();
    let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification within 10 s")
        .unwrap();
    assert_eq!(notification.channel(), "composable_events");

    drop(listener);
    in_schema.pool().close().await;
    db.drop_database().await;
}
