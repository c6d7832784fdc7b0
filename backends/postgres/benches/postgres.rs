//! Event store throughput against baselines measured in the same run on the same server.
//!
//! ```text
//! DATABASE_URL=postgres://... cargo bench -p composable-postgres --bench postgres
//! ```
//!
//! Sizes: `BENCH_BATCH` events per batch append and per stream read (default 100000),
//! `BENCH_SINGLE` single-event appends per writer setup (default 6000), `BENCH_ROUNDS`
//! repetitions of each measurement, of which the median is reported (default 3).
//!
//! * batch append: one `append` of `BENCH_BATCH` events vs one raw multi-row `INSERT ...
//!   SELECT FROM unnest(...)` of the same rows into a plain table with the same columns and as
//!   many indexes: an identity key on `position`, the usual order of a hand-written log, and
//!   the two unique constraints;
//! * single appends: one-event `append`s with `Exact` expected versions, by 1 writer and by 16
//!   writers on different streams, vs single-row `INSERT`s (one transaction each) into that
//!   table, and into a table keyed like the store's, by `(transaction_id, position)` with no
//!   sequence (each round times the store, then both tables in alternating order);
//! * stream read: `read_stream` of a `BENCH_BATCH`-event stream vs one raw `SELECT` of the same
//!   rows and columns (a position is two columns: the transaction id and the sequence). Neither
//!   decodes payloads;
//! * replay: `AggregateRunner::load` (read, decode, apply) of a `BENCH_BATCH`-event aggregate vs
//!   the raw `SELECT` of the same rows and of the six columns a fold reads;
//! * snapshot: loading a 10000-event aggregate from a snapshot at its last version vs replaying
//!   all of its events (both through the runner).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up stops

use std::time::{Duration, Instant};

use composable::{
    Aggregate, AggregateRunner, Bincode, EventMetadata, EventStore, ExpectedVersion, NewEvent,
    StreamId, Version, apply, command,
};
use composable_bench_support::{env_usize, median};
use composable_postgres::{PgConnectOptions, PgPool, PostgresEventStore};
use futures::TryStreamExt;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const RAW_TABLE: &str = "CREATE TABLE raw_events (
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id       text NOT NULL,
    stream_version  bigint NOT NULL,
    event_id        uuid NOT NULL UNIQUE,
    event_name      text NOT NULL,
    event_version   integer NOT NULL,
    payload_format  text NOT NULL,
    payload         bytea NOT NULL,
    correlation_id  uuid NOT NULL,
    causation_id    uuid,
    occurred_at_ns  bigint NOT NULL,
    traceparent     text,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    transaction_id  xid8 NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (stream_id, stream_version)
)";

const RAW_INSERT: &str = "INSERT INTO raw_events (stream_id, stream_version, event_id, \
     event_name, event_version, payload_format, payload, correlation_id, causation_id, \
     occurred_at_ns) \
     SELECT $1, $10 + e.ord, e.event_id, e.event_name, e.event_version, e.payload_format, \
            e.payload, e.correlation_id, e.causation_id, e.occurred_at_ns \
     FROM unnest($2::uuid[], $3::text[], $4::int4[], $5::text[], $6::bytea[], $7::uuid[], \
                 $8::uuid[], $9::int8[]) \
          WITH ORDINALITY AS e(event_id, event_name, event_version, payload_format, payload, \
                               correlation_id, causation_id, occurred_at_ns, ord)";

/// The store's own table shape without the store: keyed by `(transaction_id, position)`, with
/// positions numbered within the transaction and no sequence.
const RAW_KEYED_TABLE: &str = "CREATE TABLE raw_keyed_events (
    position        bigint NOT NULL,
    stream_id       text NOT NULL,
    stream_version  bigint NOT NULL,
    event_id        uuid NOT NULL UNIQUE,
    event_name      text NOT NULL,
    event_version   integer NOT NULL,
    payload_format  text NOT NULL,
    payload         bytea NOT NULL,
    correlation_id  uuid NOT NULL,
    causation_id    uuid,
    occurred_at_ns  bigint NOT NULL,
    traceparent     text,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    transaction_id  xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (transaction_id, position),
    UNIQUE (stream_id, stream_version)
)";

const RAW_KEYED_INSERT: &str = "INSERT INTO raw_keyed_events (position, stream_id, \
     stream_version, event_id, event_name, event_version, payload_format, payload, \
     correlation_id, causation_id, occurred_at_ns) \
     SELECT e.ord, $1, $10 + e.ord, e.event_id, e.event_name, e.event_version, e.payload_format, \
            e.payload, e.correlation_id, e.causation_id, e.occurred_at_ns \
     FROM unnest($2::uuid[], $3::text[], $4::int4[], $5::text[], $6::bytea[], $7::uuid[], \
                 $8::uuid[], $9::int8[]) \
          WITH ORDINALITY AS e(event_id, event_name, event_version, payload_format, payload, \
                               correlation_id, causation_id, occurred_at_ns, ord)";

fn event(index: usize) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        name: "bench.happened".into(),
        version: 1,
        format: "bincode2".into(),
        payload: vec![u8::try_from(index % 251).unwrap(); 100],
        metadata: EventMetadata::new_flow(chrono::Utc::now()),
    }
}

async fn raw_insert(
    pool: &PgPool,
    sql: &'static str,
    stream: &str,
    after: i64,
    events: &[NewEvent],
) {
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    let versions: Vec<i32> = events.iter().map(|e| i32::from(e.version)).collect();
    let formats: Vec<&str> = events.iter().map(|e| e.format.as_str()).collect();
    let payloads: Vec<&[u8]> = events.iter().map(|e| e.payload.as_slice()).collect();
    let correlations: Vec<Uuid> = events.iter().map(|e| e.metadata.correlation_id).collect();
    let causations: Vec<Option<Uuid>> = events.iter().map(|e| e.metadata.causation_id).collect();
    let occurred: Vec<i64> =
        events.iter().map(|e| e.metadata.occurred_at.timestamp_nanos_opt().unwrap()).collect();
    sqlx::query(sql)
        .bind(stream)
        .bind(&ids)
        .bind(&names)
        .bind(&versions)
        .bind(&formats)
        .bind(&payloads)
        .bind(&correlations)
        .bind(&causations)
        .bind(&occurred)
        .bind(after)
        .execute(pool)
        .await
        .unwrap();
}

/// A running total: the aggregate the replay and snapshot measurements load.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Tally {
    total: u64,
}

#[composable::event(name = "tally.added", version = 1)]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Added {
    amount: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct Add(u64);

#[composable::aggregate(stream = "tally", vis = "pub(crate)")]
impl Tally {
    #[command]
    fn add(&self, cmd: Add) -> Added {
        Added { amount: cmd.0 }
    }

    #[apply]
    fn added(&mut self, event: &Added) {
        self.total += event.amount;
    }
}

const SNAPSHOT_AT: u64 = 10_000;

/// The same aggregate, snapshotted every `SNAPSHOT_AT` events.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct SnapshotTally {
    total: u64,
}

#[composable::aggregate(stream = "tally", snapshot_every = 10_000, vis = "pub(crate)")]
impl SnapshotTally {
    #[command]
    fn add(&self, cmd: Add) -> Added {
        Added { amount: cmd.0 }
    }

    #[apply]
    fn added(&mut self, event: &Added) {
        self.total += event.amount;
    }
}

/// Appends `count` encoded `Added { amount: 1 }` events to `stream`, in batches.
async fn append_tally_events(store: &PostgresEventStore, stream: &StreamId, count: usize) {
    let encoded = NewEvent::encode(
        &TallyEvent::from(Added { amount: 1 }),
        &Bincode,
        EventMetadata::new_flow(chrono::Utc::now()),
    )
    .unwrap();
    let mut written = 0;
    while written < count {
        let events: Vec<NewEvent> = (0..(count - written).min(10_000))
            .map(|_| NewEvent { event_id: Uuid::now_v7(), ..encoded.clone() })
            .collect();
        let expected = ExpectedVersion::Exact(Version(written as u64));
        written += events.len();
        store.append(stream, expected, events).await.unwrap();
    }
}

struct Row {
    name: String,
    events: usize,
    framework: Duration,
    baseline: Duration,
}

impl Row {
    fn rate(events: usize, time: Duration) -> f64 {
        events as f64 / time.as_secs_f64()
    }
}

/// Single-event appends by `writers` concurrent writers on different streams, `total` in all.
async fn single_appends(store: &PostgresEventStore, round: usize, writers: usize, total: usize) {
    let each = total / writers;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::new("single", format!("{round}x{writers}x{writer}")).unwrap();
            for index in 0..each {
                store
                    .append(
                        &stream,
                        ExpectedVersion::Exact(Version(index as u64)),
                        vec![event(index)],
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

async fn raw_single_inserts(
    pool: &PgPool,
    sql: &'static str,
    round: usize,
    writers: usize,
    total: usize,
) {
    let each = total / writers;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("rawsingle-{round}x{writers}x{writer}");
            for index in 0..each {
                raw_insert(&pool, sql, &stream, index as i64, &[event(index)]).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let batch = env_usize("BENCH_BATCH", 100_000);
    let single = env_usize("BENCH_SINGLE", 6_000);
    let rounds = env_usize("BENCH_ROUNDS", 3).max(1);
    let url = std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: start PostgreSQL with `source scripts/lib/postgres.sh && pg_start`",
    );
    let admin: PgConnectOptions = url.parse().expect("DATABASE_URL is a valid URL");
    let name = format!("composable_bench_{}", Uuid::now_v7().simple());
    let mut connection = PgConnection::connect_with(&admin).await.expect("connect to DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut connection)
        .await
        .unwrap();
    let store = PostgresEventStore::builder()
        .connect_options(admin.clone().database(&name))
        .max_connections(20)
        .connect()
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let pool = store.pool().clone();
    sqlx::query(RAW_TABLE).execute(&pool).await.unwrap();
    sqlx::query(RAW_KEYED_TABLE).execute(&pool).await.unwrap();
    let mut rows = Vec::new();

    // (a) batch append
    let (mut framework, mut baseline) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let events: Vec<NewEvent> = (0..batch).map(event).collect();
        let raw = events.clone();
        let stream = StreamId::new("batch", round).unwrap();
        let started = Instant::now();
        store.append(&stream, ExpectedVersion::NoStream, events).await.unwrap();
        framework.push(started.elapsed());
        let started = Instant::now();
        raw_insert(&pool, RAW_INSERT, &format!("rawbatch-{round}"), 0, &raw).await;
        baseline.push(started.elapsed());
        // Untimed: the keyed table holds as many rows as the other two.
        raw_insert(&pool, RAW_KEYED_INSERT, &format!("rawbatch-{round}"), 0, &raw).await;
    }
    rows.push(Row {
        name: format!("batch append, {batch} events in one call"),
        events: batch,
        framework: median(framework),
        baseline: median(baseline),
    });

    // (b) single-event appends, against a plain table and against one keyed like the store's.
    // Each round times the store and then both tables, in alternating order, so both ratios
    // divide the same figure of the store's.
    for writers in [1, 16] {
        let (mut framework, mut plain, mut keyed) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let started = Instant::now();
            single_appends(&store, round, writers, single).await;
            framework.push(started.elapsed());
            let mut tables = [(RAW_INSERT, &mut plain), (RAW_KEYED_INSERT, &mut keyed)];
            if round % 2 == 1 {
                tables.reverse();
            }
            for (sql, times) in tables {
                let started = Instant::now();
                raw_single_inserts(&pool, sql, round, writers, single).await;
                times.push(started.elapsed());
            }
        }
        let framework = median(framework);
        let events = single / writers * writers;
        rows.push(Row {
            name: format!("single-event appends, {writers} writer(s)"),
            events,
            framework,
            baseline: median(plain),
        });
        rows.push(Row {
            name: format!("single-event appends, {writers} writer(s), raw table keyed like ours"),
            events,
            framework,
            baseline: median(keyed),
        });
    }

    // (c) stream read of the first batch stream
    let stream = StreamId::new("batch", 0).unwrap();
    let select = "SELECT position, stream_id, stream_version, event_id, event_name, \
         event_version, payload_format, payload, correlation_id, causation_id, occurred_at_ns, \
         traceparent, recorded_at, transaction_id FROM events WHERE stream_id = $1 \
         ORDER BY stream_version";
    let (mut framework, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        let read: Vec<_> = store.read_stream(&stream, Version::ZERO).try_collect().await.unwrap();
        framework.push(started.elapsed());
        assert_eq!(read.len(), batch);
        let started = Instant::now();
        let raw = sqlx::query(select).bind(stream.as_str()).fetch_all(&pool).await.unwrap();
        baseline.push(started.elapsed());
        assert_eq!(raw.len(), batch);
    }
    rows.push(Row {
        name: format!("read_stream of {batch} events (no decoding)"),
        events: batch,
        framework: median(framework),
        baseline: median(baseline),
    });

    // (d) replay: load + decode + apply of a `batch`-event aggregate through the runner, against
    // the raw SELECT of the same rows and of the columns a fold reads (which decodes and applies
    // nothing).
    let select = "SELECT stream_version, event_id, event_name, event_version, payload_format, \
         payload FROM events WHERE stream_id = $1 ORDER BY stream_version";
    let tallies = AggregateRunner::<Tally, _>::new(store.clone(), ());
    let replayed = StreamId::new(Tally::STREAM, "replay").unwrap();
    append_tally_events(&store, &replayed, batch).await;
    let (mut framework, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        let loaded = tallies.load("replay").await.unwrap();
        framework.push(started.elapsed());
        assert_eq!(loaded.state.total, batch as u64);
        let started = Instant::now();
        let raw = sqlx::query(select).bind(replayed.as_str()).fetch_all(&pool).await.unwrap();
        baseline.push(started.elapsed());
        assert_eq!(raw.len(), batch);
    }
    rows.push(Row {
        name: format!("replay (load + decode + apply) of {batch} events vs raw SELECT"),
        events: batch,
        framework: median(framework),
        baseline: median(baseline),
    });

    // (e) a 10k-event aggregate loaded from a snapshot at its last version, against a full
    // replay of the same stream (the baseline here is the framework without a snapshot).
    let snapshotting = AggregateRunner::<SnapshotTally, _>::new(store.clone(), ());
    let plain = AggregateRunner::<Tally, _>::new(store.clone(), ());
    let large = StreamId::new(Tally::STREAM, "large").unwrap();
    append_tally_events(&store, &large, SNAPSHOT_AT as usize - 1).await;
    // The command that crosses `SNAPSHOT_AT` writes the snapshot.
    snapshotting.execute("large", Add(1)).await.unwrap();
    let (mut framework, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        let loaded = snapshotting.load("large").await.unwrap();
        framework.push(started.elapsed());
        assert_eq!(loaded.snapshot, Some(Version(SNAPSHOT_AT)));
        let started = Instant::now();
        let replayed = plain.load("large").await.unwrap();
        baseline.push(started.elapsed());
        assert_eq!((replayed.snapshot, replayed.state.total), (None, SNAPSHOT_AT));
    }
    rows.push(Row {
        name: format!("load of a {SNAPSHOT_AT}-event aggregate: snapshot vs full replay"),
        events: SNAPSHOT_AT as usize,
        framework: median(framework),
        baseline: median(baseline),
    });

    println!("| measurement | composable events/s | raw sqlx events/s | ratio |");
    println!("|---|---:|---:|---:|");
    for row in &rows {
        let ours = Row::rate(row.events, row.framework);
        let raw = Row::rate(row.events, row.baseline);
        println!("| {} | {:.0} | {:.0} | {:.2} |", row.name, ours, raw, ours / raw);
    }
    println!("\n(median of {rounds} rounds; ratio = composable / raw, higher is better)");

    store.pool().close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\" WITH (FORCE)")))
        .execute(&mut connection)
        .await
        .unwrap();
}
