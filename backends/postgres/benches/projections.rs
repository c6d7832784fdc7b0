//! Read models on PostgreSQL against the same work written by hand, in the same run on the same
//! server.
//!
//! ```text
//! DATABASE_URL=postgres://... cargo bench -p composable-postgres --bench projections
//! ```
//!
//! Sizes: `BENCH_EVENTS` events in the log (default 200000; `docs/performance.md` records
//! 1000000), `BENCH_READS` reads per latency measurement (default 5000), `BENCH_COMMANDS`
//! commands for read-your-writes (default 500), `BENCH_ROUNDS` rounds of the rebuild, of which
//! the median is reported (default 3), `BENCH_BATCHES` the batch sizes of the rebuild (default
//! `500,2000`).
//!
//! * rebuild: a `ProjectionRunner` applying the whole log from the start — read in batches of
//!   each size, decode, one document per event, each batch committed with the checkpoint — against a
//!   hand-written loop over the same batches doing the same (`read_all`, bincode decode, one
//!   `INSERT .. SELECT FROM unnest(..) ON CONFLICT DO UPDATE` of the batch's documents and the
//!   checkpoint's `UPDATE`, in a transaction) into a plain table;
//! * reads: `PostgresReadStore::get` of a random document (the active version's, one query
//!   joining the versions) against a raw `SELECT` by primary key of the plain table;
//! * read-your-writes: from a command's return until the hosted projection has applied it
//!   (`ServiceHandle::reached`, woken by `LISTEN/NOTIFY`), against the same wait for a log
//!   consumer whose handler does nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up stops

use std::sync::Arc;
use std::time::{Duration, Instant};

use composable::consumer::{EventHandler, LogConsumer};
use composable::projection::ProjectionRunner;
use composable::{
    AggregateRunner, Bincode, Codec, EventMetadata, EventStore, ExpectedVersion, NewEvent,
    Position, RecordedEvent, StreamId, aggregate, apply, command, event, project, projection,
    service,
};
use composable_bench_support::{env_sizes, env_usize, median, percentile};
use composable_postgres::{PgConnectOptions, PostgresBatch, PostgresEventStore, PostgresReadStore};
use composable_postgres::{PgPool, ReadModelError};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

#[event(name = "bench.ordered", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ordered {
    pub customer: u32,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub customer: u32,
    pub total: u64,
}

#[derive(Debug, Default)]
pub struct Shop;

#[aggregate(stream = "shop")]
impl Shop {
    #[command]
    fn order(&self, command: Order) -> Ordered {
        Ordered { customer: command.customer, total: command.total }
    }

    #[apply]
    fn ordered(&mut self, _: &Ordered) {}
}

/// The document of one order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub customer: u32,
    pub total: u64,
}

/// One document per order, by its stream.
#[derive(Debug)]
pub struct Summaries;

#[projection(name = "bench_summaries", store = PostgresReadStore)]
impl Summaries {
    #[project]
    async fn ordered(
        &self,
        batch: &mut PostgresBatch,
        event: &Ordered,
        envelope: &RecordedEvent,
    ) -> Result<(), ReadModelError> {
        let summary = Summary { customer: event.customer, total: event.total };
        batch.put("summaries", envelope.stream_id.as_str(), &summary).await
    }
}

/// A handler that does nothing: the floor of a log consumer's wake-up.
#[derive(Debug)]
struct Nothing;

impl EventHandler for Nothing {
    type Error = std::convert::Infallible;

    async fn handle(&mut self, _events: &[RecordedEvent]) -> Result<(), Self::Error> {
        Ok(())
    }
}

async fn database(admin: &PgConnectOptions, connection: &mut PgConnection) -> (String, PgPool) {
    let name = format!("composable_bench_{}", Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut *connection)
        .await
        .unwrap();
    let pool = composable_postgres::PgPoolOptions::new()
        .max_connections(16)
        .connect_with(admin.clone().database(&name))
        .await
        .unwrap();
    (name, pool)
}

/// The hand-written projection: the same batches, decoded, upserted in one statement with the
/// checkpoint moved, in a transaction each.
async fn by_hand(store: &PostgresEventStore, pool: &PgPool, batch: usize) -> usize {
    let mut after = Position::START;
    let mut applied = 0;
    loop {
        let batch = store.read_all(after, batch).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.position;
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for event in &batch {
            let ordered: Ordered = Bincode.decode(&event.payload).unwrap();
            let summary = Summary { customer: ordered.customer, total: ordered.total };
            keys.push(event.stream_id.as_str().to_owned());
            values.push(Bincode.encode(&summary).unwrap());
        }
        let mut transaction = pool.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO raw_summaries (key, value) SELECT * FROM unnest($1::text[], $2::bytea[]) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(&keys)
        .bind(&values)
        .execute(&mut *transaction)
        .await
        .unwrap();
        sqlx::query("UPDATE raw_checkpoint SET transaction_id = $1, position = $2")
            .bind(i64::try_from(after.transaction()).unwrap())
            .bind(i64::try_from(after.sequence()).unwrap())
            .execute(&mut *transaction)
            .await
            .unwrap();
        transaction.commit().await.unwrap();
        applied += batch.len();
    }
    applied
}

#[tokio::main]
async fn main() {
    let total = env_usize("BENCH_EVENTS", 200_000);
    let reads = env_usize("BENCH_READS", 5_000);
    let commands = env_usize("BENCH_COMMANDS", 500);
    let rounds = env_usize("BENCH_ROUNDS", 3).max(1);
    let batches = env_sizes("BENCH_BATCHES", &[500, 2000]);
    let url = std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: start PostgreSQL with `source scripts/lib/postgres.sh && pg_start`",
    );
    let admin: PgConnectOptions = url.parse().expect("DATABASE_URL is a valid URL");
    let mut connection = PgConnection::connect_with(&admin).await.expect("connect to DATABASE_URL");
    let (events_db, events_pool) = database(&admin, &mut connection).await;
    let store = PostgresEventStore::from_pool(events_pool.clone());
    store.migrate().await.unwrap();

    // The log: `total` orders, one per stream, appended 10000 at a time.
    let metadata = EventMetadata::new_flow(chrono::Utc::now());
    let mut written = 0;
    while written < total {
        let chunk = (total - written).min(10_000);
        let appends = (written..written + chunk).map(|index| {
            let store = store.clone();
            let event = ShopEvent::from(Ordered { customer: (index % 10_000) as u32, total: 100 });
            let new = NewEvent::encode(&event, &Bincode, metadata.clone()).unwrap();
            async move {
                let stream = StreamId::new("shop", index).unwrap();
                store.append(&stream, ExpectedVersion::NoStream, vec![new]).await.unwrap();
            }
        });
        futures::future::join_all(appends).await;
        written += chunk;
    }
    println!("log: {total} events");

    // (a) rebuild, framework and by hand alternating, at each batch size.
    let rate = |elapsed: Duration| total as f64 / elapsed.as_secs_f64();
    let mut rows = Vec::new();
    let mut last_read = None;
    for &batch in &batches {
        let (mut framework, mut baseline) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (name, pool) = database(&admin, &mut connection).await;
            let read = PostgresReadStore::new(pool.clone());
            read.migrate().await.unwrap();
            let started = Instant::now();
            let done = ProjectionRunner::new(Summaries, read.clone())
                .batch_size(batch)
                .rebuild(store.clone(), |_| {})
                .await
                .unwrap();
            framework.push(started.elapsed());
            assert_eq!(done.done, total as u64);

            sqlx::query(
                "CREATE TABLE raw_summaries (key text COLLATE \"C\" PRIMARY KEY, value bytea NOT NULL)",
            )
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query("CREATE TABLE raw_checkpoint (transaction_id bigint, position bigint)")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("INSERT INTO raw_checkpoint VALUES (0, 0)").execute(&pool).await.unwrap();
            let started = Instant::now();
            assert_eq!(by_hand(&store, &pool, batch).await, total);
            baseline.push(started.elapsed());
            if let Some((old_name, old_pool)) = last_read.replace((name, pool)) {
                drop_database(&mut connection, &old_name, old_pool).await;
            }
        }
        rows.push((batch, rate(median(framework)), rate(median(baseline))));
    }
    println!(
        "\n| rebuild of {total} events, batch | ProjectionRunner::rebuild (documents), events/s \
         | by hand (read_all, decode, unnest upsert, checkpoint), events/s | ratio |\n\
         |---:|---:|---:|---:|"
    );
    for (batch, ours, raw) in rows {
        println!("| {batch} | {ours:.0} | {raw:.0} | {:.2} |", ours / raw);
    }

    // (b) reads of random documents.
    let (read_name, read_pool) = last_read.expect("a read model");
    let read = PostgresReadStore::new(read_pool.clone());
    let keys: Vec<String> = (0..reads).map(|i| format!("shop-{}", (i * 7919) % total)).collect();
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for key in &keys {
        let started = Instant::now();
        let found: Option<Summary> = read.get("summaries", key).await.unwrap();
        ours.push(started.elapsed());
        assert!(found.is_some());
        let started = Instant::now();
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT value FROM raw_summaries WHERE key = $1")
                .bind(key)
                .fetch_optional(&read_pool)
                .await
                .unwrap();
        raw.push(started.elapsed());
        assert!(row.is_some());
    }
    let (ours50, ours99) = (percentile(&mut ours, 0.5), percentile(&mut ours, 0.99));
    let (raw50, raw99) = (percentile(&mut raw, 0.5), percentile(&mut raw, 0.99));
    println!("\n| {reads} reads | p50 | p99 |\n|---|---:|---:|");
    println!("| PostgresReadStore::get | {ours50:.2?} | {ours99:.2?} |");
    println!("| raw SELECT by key | {raw50:.2?} | {raw99:.2?} |");
    println!(
        "| ratio (raw / ours) | {:.2} | {:.2} |",
        raw50.as_secs_f64() / ours50.as_secs_f64(),
        raw99.as_secs_f64() / ours99.as_secs_f64()
    );

    // (c) read-your-writes: the hosted projection, and a consumer doing nothing, both live.
    let shops = Arc::new(AggregateRunner::<Shop, _>::new(store.clone(), ()));
    let view =
        service::spawn(ProjectionRunner::new(Summaries, read.clone()).consumer(store.clone()));
    let floor = service::spawn(LogConsumer::new(
        "bench.nothing",
        store.clone(),
        composable::projection::ReadStore::checkpoints(&read),
        Nothing,
    ));
    let head = composable::consistency::ReadToken::new(store.head().await.unwrap());
    view.reached(head, Duration::from_secs(600)).await.unwrap();
    floor.reached(head, Duration::from_secs(600)).await.unwrap();
    let (mut projected, mut nothing) = (Vec::new(), Vec::new());
    for index in 0..commands {
        let executed =
            shops.execute(format!("ryw-{index}"), Order { customer: 1, total: 1 }).await.unwrap();
        let returned = Instant::now();
        let token = executed.token.unwrap();
        // Alternating which is waited for first, so neither always gets the head start.
        if index % 2 == 0 {
            view.reached(token, Duration::from_secs(10)).await.unwrap();
            projected.push(returned.elapsed());
            floor.reached(token, Duration::from_secs(10)).await.unwrap();
            nothing.push(returned.elapsed());
        } else {
            floor.reached(token, Duration::from_secs(10)).await.unwrap();
            nothing.push(returned.elapsed());
            view.reached(token, Duration::from_secs(10)).await.unwrap();
            projected.push(returned.elapsed());
        }
    }
    let (p50, p99) = (percentile(&mut projected, 0.5), percentile(&mut projected, 0.99));
    let (n50, n99) = (percentile(&mut nothing, 0.5), percentile(&mut nothing, 0.99));
    println!("\n| read-your-writes, {commands} commands | p50 | p99 |\n|---|---:|---:|");
    println!("| until the projection applied the command | {p50:.2?} | {p99:.2?} |");
    println!("| until a consumer doing nothing saw it | {n50:.2?} | {n99:.2?} |");
    view.stop().await.unwrap();
    floor.stop().await.unwrap();

    drop_database(&mut connection, &read_name, read_pool).await;
    drop_database(&mut connection, &events_db, events_pool).await;
}

async fn drop_database(connection: &mut PgConnection, name: &str, pool: PgPool) {
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\" WITH (FORCE)")))
        .execute(connection)
        .await
        .unwrap();
}
