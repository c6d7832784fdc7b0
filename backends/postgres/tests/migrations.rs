//! Upgrading a database written by an older schema: before the global log was ordered by
//! transaction (stored events keep their order, checkpoints carry over), and before metadata had
//! typed columns (every stored value reads back the same, and nothing unreadable is dropped).

#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

mod common;

use composable::checkpoint::CheckpointStore;
use composable::event_store::EventStoreError;
use composable::testing::read_all_to_head;
use composable::{
    EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId, Version,
};
use composable_conformance::event_store::{new_event, new_events};
use composable_postgres::{PostgresCheckpointStore, PostgresEventStore};
use futures::TryStreamExt;
use sqlx::{Connection, Executor, PgConnection};

const BEFORE: [&str; 3] = [
    include_str!("../migrations/20250101000001_event_store.sql"),
    include_str!("../migrations/20250101000002_timers.sql"),
    include_str!("../migrations/20250101000003_checkpoints.sql"),
];
/// The migrations since: the order by transaction (4), that order as the primary key (5),
/// appends without a sequence (6), checkpoint claims (7) and typed metadata (8).
const UPGRADE: [&str; 5] = [
    include_str!("../migrations/20250101000004_transaction_order.sql"),
    include_str!("../migrations/20250101000005_global_order_key.sql"),
    include_str!("../migrations/20250101000006_sequence_free_append.sql"),
    include_str!("../migrations/20250101000007_checkpoint_claims.sql"),
    TYPED_METADATA,
];

const TYPED_METADATA: &str = include_str!("../migrations/20250101000008_typed_metadata.sql");

/// A new database named for this test, and a connection to it.
async fn fresh_database(purpose: &str) -> (String, PgConnection) {
    let name = format!("composable_{purpose}_{}", uuid::Uuid::now_v7().simple());
    let mut admin = common::admin_connection().await;
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).await.unwrap();
    let options = common::admin_options().database(&name);
    (name, PgConnection::connect_with(&options).await.unwrap())
}

async fn drop_database(name: &str) {
    let mut admin = common::admin_connection().await;
    admin
        .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\" WITH (FORCE)")))
        .await
        .unwrap();
}

/// An append through the previous `composable_append`; returns its last position.
async fn old_append(connection: &mut PgConnection, stream: &str, events: usize) -> i64 {
    sqlx::query_scalar(
        "SELECT last_position FROM composable_append($1, NULL, \
             ARRAY(SELECT gen_random_uuid() FROM generate_series(1, $2)), \
             array_fill('thing.happened'::text, ARRAY[$2]), array_fill(1, ARRAY[$2]), \
             array_fill('raw'::text, ARRAY[$2]), array_fill('\\x01'::bytea, ARRAY[$2]), \
             array_fill($3::text, ARRAY[$2]))",
    )
    .bind(stream)
    .bind(i32::try_from(events).unwrap())
    .bind(r#"{"correlation_id":"0190f7a0-0000-7000-8000-000000000001","causation_id":null,"occurred_at":"2025-01-01T00:00:00Z"}"#)
    .fetch_one(&mut *connection)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_upgraded_database_keeps_its_order_and_its_checkpoints() {
    let (name, mut connection) = fresh_database("upgrade").await;
    let options = common::admin_options().database(&name);
    for migration in BEFORE {
        sqlx::raw_sql(migration).execute(&mut connection).await.unwrap();
    }
    // Three appends of two events: positions 1..=6, the relay stopped inside the second.
    old_append(&mut connection, "thing-a", 2).await;
    old_append(&mut connection, "thing-b", 2).await;
    old_append(&mut connection, "thing-a", 2).await;
    sqlx::query("INSERT INTO checkpoints (name, position) VALUES ('relay', 3), ('fresh', 0)")
        .execute(&mut connection)
        .await
        .unwrap();

    for migration in UPGRADE {
        sqlx::raw_sql(migration).execute(&mut connection).await.unwrap();
    }

    let store = PostgresEventStore::builder().connect_options(options).connect().await.unwrap();
    let checkpoints = PostgresCheckpointStore::new(store.pool().clone());
    assert_eq!(checkpoints.load("fresh").await.unwrap(), Position::START);
    let relay = checkpoints.load("relay").await.unwrap();
    assert_eq!(relay.sequence(), 3);
    let log = read_all_to_head(&store, Position::START).await;
    let sequences: Vec<u64> = log.iter().map(|event| event.position.sequence()).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5, 6], "the old order is the new order");
    assert_eq!(relay, log[2].position);
    let rest = read_all_to_head(&store, relay).await;
    assert_eq!(rest.iter().map(|event| event.position.sequence()).collect::<Vec<_>>(), [4, 5, 6]);

    // Versions now come from the events themselves; appends go on where they left off.
    let a = StreamId::new("thing", "a").unwrap();
    assert_eq!(store.stream_version(&a).await.unwrap(), Version(4));
    let stale = store.append(&a, ExpectedVersion::Exact(Version(2)), new_events(0, 1)).await;
    assert!(
        matches!(stale, Err(EventStoreError::Conflict { actual: Version(4), .. })),
        "a stale expected version is still a conflict: {stale:?}"
    );
    let appended =
        store.append(&a, ExpectedVersion::Exact(Version(4)), new_events(1, 2)).await.unwrap();
    assert!(appended.last_position > log[5].position);
    assert_eq!(appended.last_position.sequence(), 2, "numbered within its transaction now");
    let after_upgrade = read_all_to_head(&store, log[5].position).await;
    let versions: Vec<Version> = after_upgrade.iter().map(|event| event.stream_version).collect();
    assert_eq!(versions, [Version(5), Version(6)]);

    // Migration 6 left no function and no sequence behind: a writer of an older version fails
    // (its function is gone) rather than writing beside the new appends.
    let (function, sequence): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT to_regprocedure('composable_append(text, bigint, uuid[], text[], integer[], \
             text[], bytea[], text[])')::text, pg_get_serial_sequence('events', 'position')",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!((function, sequence), (None, None));

    store.pool().close().await;
    drop(connection);
    drop_database(&name).await;
}

/// An append as the store wrote it before migration 8: metadata as a JSON document.
const JSON_METADATA_APPEND: &str = "INSERT INTO events (position, stream_id, stream_version, \
         event_id, event_name, event_version, payload_format, payload, metadata) \
     SELECT e.ord, $1, e.ord, e.event_id, e.event_name, e.event_version, e.payload_format, \
            e.payload, e.metadata::jsonb \
       FROM unnest($2::uuid[], $3::text[], $4::int4[], $5::text[], $6::bytea[], $7::text[]) \
            WITH ORDINALITY AS e(event_id, event_name, event_version, payload_format, payload, \
                                 metadata, ord) \
     RETURNING transaction_id::text::bigint";

async fn json_append(connection: &mut PgConnection, stream: &str, events: &[NewEvent]) {
    let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.event_id).collect();
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    let versions: Vec<i32> = events.iter().map(|e| i32::from(e.version)).collect();
    let formats: Vec<&str> = events.iter().map(|e| e.format.as_str()).collect();
    let payloads: Vec<&[u8]> = events.iter().map(|e| e.payload.as_slice()).collect();
    let metadata: Vec<String> =
        events.iter().map(|e| serde_json::to_string(&e.metadata).unwrap()).collect();
    sqlx::query(JSON_METADATA_APPEND)
        .bind(stream)
        .bind(&ids)
        .bind(&names)
        .bind(&versions)
        .bind(&formats)
        .bind(&payloads)
        .bind(&metadata)
        .fetch_all(&mut *connection)
        .await
        .unwrap();
}

#[tokio::test]
async fn typed_metadata_reads_back_every_stored_document_and_keeps_what_it_cannot_read() {
    let (name, mut connection) = fresh_database("typed_metadata").await;
    for migration in BEFORE.iter().chain(&UPGRADE[..UPGRADE.len() - 1]) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*migration)).execute(&mut connection).await.unwrap();
    }
    // Nanoseconds, traces and their absence, causation ids: every case `new_event` varies.
    let sent = new_events(0, 8);
    json_append(&mut connection, "thing-typed", &sent).await;
    // A time before 1970 with a fraction, and a document with a field the store never wrote.
    let mut early = new_event(8);
    early.metadata.occurred_at = chrono::DateTime::from_timestamp(-2, 250_000_001).unwrap();
    early.metadata.causation_id = None;
    json_append(&mut connection, "thing-early", std::slice::from_ref(&early)).await;
    sqlx::query(
        "INSERT INTO events (position, stream_id, stream_version, event_id, event_name, \
             event_version, payload_format, payload, metadata) VALUES \
         (1, 'thing-odd', 1, gen_random_uuid(), 'x', 1, 'raw', '\\x01', \
          '{\"correlation_id\": \"0190f7a0-0000-7000-8000-000000000001\", \
            \"occurred_at\": \"2025-01-01T00:00:00Z\", \"tenant\": \"acme\"}'), \
         (2, 'thing-odd', 2, gen_random_uuid(), 'x', 1, 'raw', '\\x01', \
          '{\"correlation_id\": 7, \"occurred_at\": \"yesterday\"}')",
    )
    .execute(&mut connection)
    .await
    .unwrap();

    sqlx::raw_sql(sqlx::AssertSqlSafe(TYPED_METADATA)).execute(&mut connection).await.unwrap();

    let options = common::admin_options().database(&name);
    let store = PostgresEventStore::builder().connect_options(options).connect().await.unwrap();
    let typed = StreamId::parse("thing-typed").unwrap();
    let read: Vec<RecordedEvent> =
        store.read_stream(&typed, Version::ZERO).try_collect().await.unwrap();
    assert_eq!(read.len(), sent.len());
    for (recorded, sent) in read.iter().zip(&sent) {
        assert_eq!(recorded.event_id, sent.event_id);
        assert_eq!(recorded.metadata, sent.metadata, "to the nanosecond, with its trace");
        assert_eq!(recorded.payload, sent.payload);
    }
    let early_stream = StreamId::parse("thing-early").unwrap();
    let read: Vec<RecordedEvent> =
        store.read_stream(&early_stream, Version::ZERO).try_collect().await.unwrap();
    assert_eq!(read[0].metadata, early.metadata);

    let odd = StreamId::parse("thing-odd").unwrap();
    let mut odd_events = store.read_stream(&odd, Version::ZERO);
    let extra = odd_events.try_next().await.unwrap().unwrap();
    assert_eq!(extra.metadata.correlation_id.to_string(), "0190f7a0-0000-7000-8000-000000000001");
    match odd_events.try_next().await {
        Err(EventStoreError::Corrupt { reason, .. }) => {
            assert!(reason.contains("events_metadata_documents"), "{reason}");
        }
        other => panic!("expected a corrupt row, got {other:?}"),
    }
    drop(odd_events);
    let kept: Vec<(i64, String)> = sqlx::query_as(
        "SELECT position, metadata::text FROM events_metadata_documents ORDER BY position",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept[0].1.contains("acme"), "the unknown field is kept: {kept:?}");
    assert!(kept[1].1.contains("yesterday"), "the unreadable document is kept: {kept:?}");

    // The store goes on writing the upgraded table, under the same constraint names.
    let appended =
        store.append(&typed, ExpectedVersion::Exact(Version(8)), new_events(20, 1)).await.unwrap();
    assert_eq!(appended.last_version, Version(9));
    let stale = store.append(&typed, ExpectedVersion::Exact(Version(8)), new_events(21, 1)).await;
    assert!(matches!(stale, Err(EventStoreError::Conflict { .. })), "{stale:?}");

    store.pool().close().await;
    drop(connection);
    drop_database(&name).await;
}
