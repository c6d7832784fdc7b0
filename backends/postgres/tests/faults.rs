//! Failure modes of the PostgreSQL event store that the conformance suite cannot provoke:
//! transactions left open across a read or an append, corrupt rows, racing retries, a
//! serializable default isolation.

#![allow(clippy::unwrap_used)] // test helpers: a failure is the test failing

mod common;

use std::sync::Arc;

use composable::event_store::EventStoreError;
use composable::testing::read_all_to_head;
use composable::{EventStore, ExpectedVersion, Position, StreamId, Version};
use composable_conformance::event_store::{new_event, new_events};
use composable_postgres::PostgresEventStore;
use futures::TryStreamExt;
use sqlx::Connection;
use uuid::Uuid;

fn stream(name: &str) -> StreamId {
    StreamId::new("fault", name).unwrap()
}

/// Writes `count` events of version `first` onwards to `stream` in `connection`'s transaction,
/// the way an append lays them out (positions 1 to `count` of the transaction), and returns the
/// last one's position. The transaction stays as the caller left it: open, or autocommitted.
async fn insert_events(
    connection: &mut sqlx::PgConnection,
    stream: &StreamId,
    first: i64,
    count: i64,
) -> Position {
    let (writer, last): (i64, i64) = sqlx::query_as(
        "INSERT INTO events (position, stream_id, stream_version, event_id, event_name, \
             event_version, payload_format, payload, correlation_id, occurred_at_ns) \
         SELECT n, $1, $3 + n - 1, gen_random_uuid(), 'raw', 1, 'raw', '\\x01'::bytea, \
                $2, 0 \
           FROM generate_series(1, $4::bigint) AS n \
         RETURNING transaction_id::text::bigint, position",
    )
    .bind(stream.as_str())
    .bind(Uuid::now_v7())
    .bind(first)
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
async fn settled_positions(store: &(impl EventStore + Clone), after: Position) -> Vec<Position> {
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
    let slow_last = insert_events(&mut open, &stream("slow"), 1, 2).await;

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
    insert_events(&mut open, &stream("gone"), 1, 2).await;
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

/// Writes one event by hand; `correlation_id` NULL is how a row whose metadata could not be
/// converted by migration 8 is stored.
async fn insert_raw_row(
    db: &common::TestDatabase,
    correlation_id: Option<Uuid>,
    event_version: i32,
) -> Position {
    let mut connection = db.connection().await;
    let (writer, position): (i64, i64) = sqlx::query_as(
        "INSERT INTO events (position, stream_id, stream_version, event_id, event_name, \
             event_version, payload_format, payload, correlation_id, occurred_at_ns) \
         VALUES (1, 'fault-raw', 1, gen_random_uuid(), 'raw', $1, 'bincode2', \
             '\\xdeadbeef'::bytea, $2, 1700000000123456789) \
         RETURNING transaction_id::text::bigint, position",
    )
    .bind(event_version)
    .bind(correlation_id)
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
async fn a_row_without_its_metadata_is_a_corrupt_row() {
    let db = common::test_database().await;
    let position = insert_raw_row(&db, None, 1).await;
    for result in [settled_read_all(&db.store).await, read_raw_stream(&db).await] {
        match result {
            Err(EventStoreError::Corrupt { position: at, reason }) => {
                assert_eq!(at, position);
                assert!(reason.contains("no correlation id"), "{reason}");
                assert!(reason.contains("events_metadata_documents"), "{reason}");
            }
            other => panic!("expected a corrupt row, got {other:?}"),
        }
    }
    db.drop_database().await;
}

#[tokio::test]
async fn an_impossible_event_version_is_a_corrupt_row() {
    let db = common::test_database().await;
    let position = insert_raw_row(&db, Some(Uuid::now_v7()), -3).await;
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
    let position = insert_raw_row(&db, Some(Uuid::now_v7()), 1).await;
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

impl composable::event::EventSet for NoEvents {
    const NAMES: &'static [&'static str] = &[];
    fn event_name(&self) -> &'static str {
        "none"
    }
    fn event_version(&self) -> u16 {
        1
    }
    fn encode<C: composable::Codec>(
        &self,
        _: &C,
    ) -> Result<Vec<u8>, composable::codec::CodecError> {
        Ok(Vec::new())
    }
    fn decode<C: composable::Codec>(
        codec: &C,
        name: &str,
        version: u16,
        bytes: &[u8],
    ) -> Result<Self, composable::event::DecodeError> {
        let _: (u64, u64) = codec.decode(bytes).map_err(|source| {
            composable::event::DecodeError::Payload { name: "none", version, source }
        })?;
        let _ = name;
        Ok(NoEvents)
    }
}

/// A writer that holds version 3 of a stream open, and the append racing it for that version.
struct RacedVersion {
    db: common::TestDatabase,
    stream: StreamId,
    /// The id of the racing append's one event.
    event_id: uuid::Uuid,
    racing: tokio::task::JoinHandle<Result<composable::event_store::AppendResult, EventStoreError>>,
}

/// Appends versions 1 and 2, writes version 3 in a transaction left open (returned), then
/// starts an append with `expected`, which reads version 2 as the last and must wait for the
/// open writer's outcome.
async fn race_for_version_three(expected: ExpectedVersion) -> (RacedVersion, sqlx::PgConnection) {
    let db = common::test_database().await;
    let s = stream("raced");
    db.store.append(&s, ExpectedVersion::NoStream, new_events(0, 2)).await.unwrap();
    let mut connection = db.connection().await;
    sqlx::query("BEGIN").execute(&mut connection).await.unwrap();
    insert_events(&mut connection, &s, 3, 1).await;
    let event = new_event(10);
    let event_id = event.event_id;
    let racing = {
        let (store, s) = (db.store.clone(), s.clone());
        tokio::spawn(async move { store.append(&s, expected, vec![event]).await })
    };
    // The append is under way once it waits for the open writer's transaction to end.
    let mut watcher = db.connection().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
             WHERE NOT l.granted AND l.locktype = 'transactionid' \
               AND a.datname = current_database()",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting == 1 {
            break;
        }
        assert!(!racing.is_finished(), "the append must wait for the open writer of its version");
        assert!(tokio::time::Instant::now() < deadline, "the append never waited");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    (RacedVersion { db, stream: s, event_id, racing }, connection)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_at_any_version_that_loses_a_race_goes_after_the_winner() {
    let (race, mut open) = race_for_version_three(ExpectedVersion::Any).await;
    sqlx::query("COMMIT").execute(&mut open).await.unwrap();
    let appended = race.racing.await.unwrap().unwrap();
    assert_eq!((appended.first_version, appended.last_version), (Version(4), Version(4)));
    let log = read_all_to_head(&race.db.store, Position::START).await;
    let versions: Vec<Version> = log.iter().map(|event| event.stream_version).collect();
    assert_eq!(versions, [Version(1), Version(2), Version(3), Version(4)]);
    assert_eq!(log[3].position, appended.last_position);
    race.db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_append_that_loses_a_race_is_a_conflict() {
    let (race, mut open) = race_for_version_three(ExpectedVersion::Exact(Version(2))).await;
    sqlx::query("COMMIT").execute(&mut open).await.unwrap();
    match race.racing.await.unwrap() {
        Err(EventStoreError::Conflict { stream, actual, .. }) => {
            assert_eq!((stream, actual), (race.stream.clone(), Version(3)));
        }
        other => panic!("expected a conflict at version 3, got {other:?}"),
    }
    race.db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_waiting_on_a_writer_that_rolls_back_goes_ahead() {
    let (race, mut open) = race_for_version_three(ExpectedVersion::Exact(Version(2))).await;
    sqlx::query("ROLLBACK").execute(&mut open).await.unwrap();
    let appended = race.racing.await.unwrap().unwrap();
    assert_eq!(appended.first_version, Version(3));
    let stored: Vec<_> =
        race.db.store.read_stream(&race.stream, Version::ZERO).try_collect().await.unwrap();
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[2].event_id, race.event_id);
    race.db.drop_database().await;
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

/// 16 writers append to one stream with `Any`, five times each: every append lands, at
/// contiguous versions, and the global log holds the stream in version order.
async fn writers_racing_with_any_lose_nothing(store: PostgresEventStore) {
    let store = Arc::new(store);
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_racing_with_any_on_one_stream_lose_nothing() {
    let db = common::test_database().await;
    writers_racing_with_any_lose_nothing(db.store.clone()).await;
    db.drop_database().await;
}

/// A fresh store on a database whose sessions default to the serializable isolation level,
/// where a lost race can end in a serialization failure instead of a unique violation. Its
/// database is left to the test server, which `pg_stop` removes whole.
async fn serializable_store() -> PostgresEventStore {
    let db = common::test_database().await;
    let set = format!(
        "ALTER DATABASE \"{}\" SET default_transaction_isolation = 'serializable'",
        db.name
    );
    sqlx::query(sqlx::AssertSqlSafe(set)).execute(db.store.pool()).await.unwrap();
    db.store.pool().close().await;
    let store = PostgresEventStore::builder()
        .connect_options(db.options())
        .max_connections(8)
        .connect()
        .await
        .unwrap();
    let isolation: String =
        sqlx::query_scalar("SHOW transaction_isolation").fetch_one(store.pool()).await.unwrap();
    assert_eq!(isolation, "serializable");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_racing_with_any_under_a_serializable_default_lose_nothing() {
    writers_racing_with_any_lose_nothing(serializable_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_racing_for_versions_under_a_serializable_default_get_conflicts() {
    composable_conformance::event_store::concurrent_writers_on_one_stream_get_one_winner_per_version(
        serializable_store,
    )
    .await;
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
    let older_position = insert_events(&mut older, &stream("older"), 1, 1).await;
    assert_eq!(older_position, Position::new(u64::try_from(older_id).unwrap(), 1));
    assert!(older_position < younger.last_position);
    assert!(positions(store, Position::START).await.is_empty(), "the older one is still open");

    older.commit().await.unwrap();
    let log = settled_positions(store, Position::START).await;
    assert_eq!(log, [older_position, younger.last_position]);
    db.drop_database().await;
}
