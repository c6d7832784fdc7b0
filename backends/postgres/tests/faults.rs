//! Failure modes of the PostgreSQL event store that the conformance suite cannot provoke:
//! transactions left open across a read, corrupt rows, lost responses.

#![allow(clippy::unwrap_used)] // test helpers: a failure is the test failing

mod common;

use std::sync::Arc;

use composable::testing::conformance::{new_event, new_events};
use composable::testing::read_all_to_head;
use composable::{EventStore, EventStoreError, ExpectedVersion, Position, StreamId, Version};
use futures::TryStreamExt;
use sqlx::Connection;

fn stream(name: &str) -> StreamId {
    StreamId::new("fault", name).unwrap()
}

/// Writes `count` events of version 1 onwards to `stream` in `connection`'s transaction, the
/// way an append lays them out (positions 1 to `count` of the transaction), and returns the
/// last one's position. The transaction stays as the caller left it: open, or autocommitted.
async fn insert_events(
    connection: &mut sqlx::PgConnection,
    stream: &StreamId,
    count: i64,
) -> Position {
    let metadata = serde_json::to_string(&new_event(0).metadata).unwrap();
    let (writer, last): (i64, i64) = sqlx::query_as(
        "INSERT INTO events (position, stream_id, stream_version, event_id, event_name, \
             event_version, payload_format, payload, metadata) \
         SELECT n, $1, n, gen_random_uuid(), 'raw', 1, 'raw', '\\x01'::bytea, $2::jsonb \
           FROM generate_series(1, $3::bigint) AS n \
         RETURNING transaction_id::text::bigint, position",
    )
    .bind(stream.as_str())
    .bind(&metadata)
    .bind(count)
    .fetch_all(&mut *connection)
    .await
    .unwrap()
    .into_iter()
    .max()
    .unwrap();
    Position::new(u64::try_from(writer).unwrap(), u64::try_from(last).unwrap())
}

async fn positions(store: &impl EventStore, after: Position) -> Vec<Position> {
    store.read_all(after, 100).await.unwrap().iter().map(|event| event.position).collect()
}

/// The positions after `after` up to the head of the log: tests beside this one on the same
/// cluster may hold the gap-safe reader back for a moment.
async fn settled_positions(store: &impl EventStore, after: Position) -> Vec<Position> {
    read_all_to_head(store, after).await.iter().map(|event| event.position).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_all_holds_back_events_behind_an_open_transaction() {
    let db = common::test_database().await;
    let store = &db.store;
    let first =
        store.append(&stream("before"), ExpectedVersion::Any, new_events(0, 1)).await.unwrap();
    assert_eq!(settled_positions(store, Position::START).await, [first.last_position]);

    // A writer writes the next events and stays open.
    let mut slow = db.connection().await;
    let mut open = slow.begin().await.unwrap();
    let slow_last = insert_events(&mut open, &stream("slow"), 2).await;

    // Later writers commit higher positions while it is open.
    let later =
        store.append(&stream("later"), ExpectedVersion::NoStream, new_events(3, 2)).await.unwrap();
    assert!(later.last_position > slow_last);
    assert_eq!(store.head().await.unwrap(), later.last_position, "the head ignores open writes");
    for _ in 0..5 {
        assert_eq!(
            positions(store, Position::START).await,
            [first.last_position],
            "nothing past the open transaction's positions is returned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    open.commit().await.unwrap();
    let after_gap = settled_positions(store, first.last_position).await;
    assert_eq!(after_gap.len(), 4, "the reader continues with nothing skipped");
    assert_eq!(*after_gap.last().unwrap(), later.last_position);
    assert!(after_gap.windows(2).all(|w| w[0] < w[1]));
    let names: Vec<String> = store
        .read_all(first.last_position, 100)
        .await
        .unwrap()
        .iter()
        .map(|event| event.stream_id.to_string())
        .collect();
    assert_eq!(names, ["fault-slow", "fault-slow", "fault-later", "fault-later"]);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_append_leaves_no_event_and_blocks_nothing() {
    let db = common::test_database().await;
    let store = &db.store;
    let mut connection = db.connection().await;
    let mut open = connection.begin().await.unwrap();
    insert_events(&mut open, &stream("gone"), 2).await;
    let later =
        store.append(&stream("kept"), ExpectedVersion::Any, new_events(2, 1)).await.unwrap();
    assert!(positions(store, Position::START).await.is_empty());
    assert_eq!(store.head().await.unwrap(), later.last_position, "the head ignores open writes");
    open.rollback().await.unwrap();
    assert_eq!(store.head().await.unwrap(), later.last_position);
    assert_eq!(settled_positions(store, Position::START).await, [later.last_position]);
    assert_eq!(store.stream_version(&stream("gone")).await.unwrap(), Version::ZERO);
    db.drop_database().await;
}

/// An append refused for its expected version writes nothing: not when the stream exists
/// already (the version's unique key refuses it), and not when the stream is behind the
/// expected version (the statement finds no event to follow).
#[tokio::test]
async fn refused_appends_leave_nothing_behind() {
    let db = common::test_database().await;
    let store = &db.store;
    let s = stream("refused");
    let first = store.append(&s, ExpectedVersion::NoStream, new_events(0, 1)).await.unwrap();
    for tag in 1..5 {
        let refused = store.append(&s, ExpectedVersion::NoStream, new_events(tag, 3)).await;
        assert!(
            matches!(refused, Err(EventStoreError::Conflict { actual: Version(1), .. })),
            "{refused:?}"
        );
    }
    let ahead = store.append(&s, ExpectedVersion::Exact(Version(5)), new_events(5, 1)).await;
    assert!(
        matches!(ahead, Err(EventStoreError::Conflict { actual: Version(1), .. })),
        "{ahead:?}"
    );
    assert_eq!(store.head().await.unwrap(), first.last_position, "refusals leave the head");

    let next =
        store.append(&s, ExpectedVersion::Exact(Version(1)), new_events(10, 1)).await.unwrap();
    assert_eq!(next.last_position.sequence(), 1, "the first event of its transaction");
    assert_eq!(
        settled_positions(store, Position::START).await,
        [first.last_position, next.last_position]
    );
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(store.pool()).await.unwrap();
    assert_eq!(count, 2);
    db.drop_database().await;
}

async fn insert_raw_row(db: &common::TestDatabase, metadata: &str, event_version: i32) -> Position {
    let mut connection = db.connection().await;
    let (writer, position): (i64, i64) = sqlx::query_as(
        "INSERT INTO events (position, stream_id, stream_version, event_id, event_name, \
             event_version, payload_format, payload, metadata) \
         VALUES (1, 'fault-raw', 1, gen_random_uuid(), 'raw', $1, 'bincode2', \
             '\\xdeadbeef'::bytea, $2::jsonb) \
         RETURNING transaction_id::text::bigint, position",
    )
    .bind(event_version)
    .bind(metadata)
    .fetch_one(&mut connection)
    .await
    .unwrap();
    Position::new(u64::try_from(writer).unwrap(), u64::try_from(position).unwrap())
}

/// The first non-empty answer (or error) of `read_all` from the start.
async fn settled_read_all(
    store: &impl EventStore,
) -> Result<Vec<composable::RecordedEvent>, EventStoreError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let result = store.read_all(Position::START, 10).await;
        if !matches!(&result, Ok(events) if events.is_empty())
            || tokio::time::Instant::now() > deadline
        {
            return result;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

async fn read_raw_stream(
    db: &common::TestDatabase,
) -> Result<Vec<composable::RecordedEvent>, EventStoreError> {
    let s = stream("raw");
    db.store.read_stream(&s, Version::ZERO).try_collect().await
}

#[tokio::test]
async fn metadata_of_the_wrong_shape_is_a_corrupt_row() {
    let db = common::test_database().await;
    let position = insert_raw_row(&db, r#"{"correlation": 7}"#, 1).await;
    for result in [settled_read_all(&db.store).await, read_raw_stream(&db).await] {
        match result {
            Err(EventStoreError::Corrupt { position: at, reason }) => {
                assert_eq!(at, position);
                assert!(reason.contains("metadata"), "{reason}");
            }
            other => panic!("expected a corrupt row, got {other:?}"),
        }
    }
    db.drop_database().await;
}

#[tokio::test]
async fn an_impossible_event_version_is_a_corrupt_row() {
    let db = common::test_database().await;
    let metadata = serde_json::to_string(&new_event(0).metadata).unwrap();
    let position = insert_raw_row(&db, &metadata, -3).await;
    match settled_read_all(&db.store).await {
        Err(EventStoreError::Corrupt { position: at, reason }) => {
            assert_eq!(at, position);
            assert!(reason.contains("event version -3"), "{reason}");
        }
        other => panic!("expected a corrupt row, got {other:?}"),
    }
    db.drop_database().await;
}

#[tokio::test]
async fn payload_bytes_are_returned_as_stored_even_when_they_do_not_decode() {
    let db = common::test_database().await;
    let metadata = serde_json::to_string(&new_event(0).metadata).unwrap();
    let position = insert_raw_row(&db, &metadata, 1).await;
    let events = read_raw_stream(&db).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload, [0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(events[0].position, position);
    let decoded = events[0].decode::<NoEvents, _>(&composable::Bincode);
    assert!(decoded.is_err(), "decoding is the caller's job, and fails there");
    db.drop_database().await;
}

/// An event set that knows no events: anything fails to decode.
#[derive(Clone, Debug, PartialEq)]
struct NoEvents;

impl composable::EventSet for NoEvents {
    const NAMES: &'static [&'static str] = &[];
    fn event_name(&self) -> &'static str {
        "none"
    }
    fn event_version(&self) -> u16 {
        1
    }
    fn encode<C: composable::Codec>(&self, _: &C) -> Result<Vec<u8>, composable::CodecError> {
        Ok(Vec::new())
    }
    fn decode<C: composable::Codec>(
        codec: &C,
        name: &str,
        version: u16,
        bytes: &[u8],
    ) -> Result<Self, composable::DecodeError> {
        let _: (u64, u64) = codec
            .decode(bytes)
            .map_err(|source| composable::DecodeError::Payload { name: "none", version, source })?;
        let _ = name;
        Ok(NoEvents)
    }
}

#[tokio::test]
async fn a_retry_after_a_lost_response_returns_the_original_result() {
    let db = common::test_database().await;
    let s = stream("lost");
    db.store.append(&s, ExpectedVersion::NoStream, new_events(0, 1)).await.unwrap();
    let batch = new_events(1, 3);
    // The append reached the database and committed, but its answer never came back.
    let lost =
        db.store.append(&s, ExpectedVersion::Exact(Version(1)), batch.clone()).await.unwrap();

    let retried = db.store.append(&s, ExpectedVersion::Exact(Version(1)), batch).await.unwrap();
    assert_eq!(retried, lost);
    assert_eq!(retried.first_version, Version(2));
    assert_eq!(retried.last_version, Version(4));
    assert_eq!(db.store.stream_version(&s).await.unwrap(), Version(4));
    let stored = read_all_to_head(&db.store, Position::START).await;
    assert_eq!(stored.len(), 4, "the retry stored nothing more");
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_retries_of_one_append_store_it_once() {
    let db = common::test_database().await;
    let store = Arc::new(db.store.clone());
    let s = stream("racingretry");
    let batch = new_events(0, 50);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, s, batch) = (Arc::clone(&store), s.clone(), batch.clone());
        tasks.push(tokio::spawn(async move {
            store.append(&s, ExpectedVersion::NoStream, batch).await
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap().unwrap());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
    assert_eq!(store.stream_version(&s).await.unwrap(), Version(50));
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_racing_with_any_on_one_stream_lose_nothing() {
    let db = common::test_database().await;
    let store = Arc::new(db.store.clone());
    let s = stream("anyrace");
    let mut tasks = Vec::new();
    for writer in 0..16u32 {
        let (store, s) = (Arc::clone(&store), s.clone());
        tasks.push(tokio::spawn(async move {
            for batch in 0..5u32 {
                store
                    .append(&s, ExpectedVersion::Any, new_events(writer * 100 + batch * 2, 2))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let events: Vec<_> = store.read_stream(&s, Version::ZERO).try_collect().await.unwrap();
    assert_eq!(events.len(), 160);
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event.stream_version, Version(index as u64 + 1));
    }
    // Each append that won saw the ones before it committed, so it wrote under a younger
    // transaction: the global log holds the stream in version order too.
    let log = read_all_to_head(&*store, Position::START).await;
    assert_eq!(log, events, "the global log has the stream's events in version order");
    db.drop_database().await;
}

#[tokio::test]
async fn unreachable_database_is_unavailable_not_a_panic() {
    let store = composable_postgres::PostgresEventStore::builder()
        .url("postgres://postgres@127.0.0.1:1/nothing")
        .unwrap()
        .acquire_timeout(std::time::Duration::from_millis(300))
        .connect_lazy()
        .unwrap();
    let error = store.stream_version(&stream("x")).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    let error =
        store.append(&stream("x"), ExpectedVersion::Any, new_events(0, 1)).await.unwrap_err();
    assert!(matches!(error, EventStoreError::Unavailable { .. }), "{error}");
}

/// The order that makes the log gap-safe without a global lock: by writing transaction. A
/// transaction that took its id early and wrote late comes first, although its event committed
/// after a younger one; a reader never saw the younger event before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_ordered_by_writing_transaction() {
    let db = common::test_database().await;
    let store = &db.store;
    let mut connection = db.connection().await;
    let mut older = connection.begin().await.unwrap();
    let older_id: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *older)
        .await
        .unwrap();
    let younger = store
        .append(&stream("younger"), ExpectedVersion::NoStream, new_events(0, 1))
        .await
        .unwrap();
    let older_position = insert_events(&mut older, &stream("older"), 1).await;
    assert_eq!(older_position, Position::new(u64::try_from(older_id).unwrap(), 1));
    assert!(older_position < younger.last_position);
    assert!(positions(store, Position::START).await.is_empty(), "the older one is still open");

    older.commit().await.unwrap();
    let log = settled_positions(store, Position::START).await;
    assert_eq!(log, [older_position, younger.last_position]);
    db.drop_database().await;
}
