//! Upgrading a database written before the global log was ordered by transaction: stored events
//! keep their order, checkpoints carry over, and the store works on the upgraded schema.

#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

mod common;

use composable::checkpoint::CheckpointStore;
use composable::event_store::EventStoreError;
use composable::testing::read_all_to_head;
use composable::{EventStore, ExpectedVersion, Position, StreamId, Version};
use composable_conformance::event_store::new_events;
use composable_postgres::{PostgresCheckpointStore, PostgresEventStore};
use sqlx::{Connection, Executor, PgConnection};

const BEFORE: [&str; 3] = [
    include_str!("../migrations/20250101000001_event_store.sql"),
    include_str!("../migrations/20250101000002_timers.sql"),
    include_str!("../migrations/20250101000003_checkpoints.sql"),
];
/// The migrations since: the order by transaction (4), that order as the primary key (5), and
/// appends without a sequence (6).
const UPGRADE: [&str; 3] = [
    include_str!("../migrations/20250101000004_transaction_order.sql"),
    include_str!("../migrations/20250101000005_global_order_key.sql"),
    include_str!("../migrations/20250101000006_sequence_free_append.sql"),
];

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
    let name = format!("composable_upgrade_{}", uuid::Uuid::now_v7().simple());
    let mut admin = common::admin_connection().await;
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).await.unwrap();
    let options = common::admin_options().database(&name);
    let mut connection = PgConnection::connect_with(&options).await.unwrap();
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
    admin
        .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\" WITH (FORCE)")))
        .await
        .unwrap();
}
