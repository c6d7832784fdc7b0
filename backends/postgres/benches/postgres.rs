//! Event store throughput against baselines measured in the same run on the same server.
//!
//! ```text
//! DATABASE_URL=postgres://... cargo bench -p composable-postgres --bench postgres
//! ```
//!
//! Sizes: `BENCH_BATCH` events per batch append and per stream read (default 100000),
//! `BENCH_SINGLE` single-event appends per writer setup (default 2000), `BENCH_ROUNDS`
//! repetitions of each measurement, of which the median is reported (default 3).
//!
//! * batch append: one `append` of `BENCH_BATCH` events vs one raw multi-row `INSERT ...
//!   SELECT FROM unnest(...)` of the same rows into a plain table of the same shape and indexes;
//! * single appends: one-event `append`s with `Exact` expected versions, by 1 writer and by 16
//!   writers on different streams, vs single-row `INSERT`s (one transaction each);
//! * stream read: `read_stream` of a `BENCH_BATCH`-event stream vs one raw `SELECT` of the same
//!   rows. Neither decodes payloads: decoding and applying are measured at the aggregate level.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up stops

use std::time::{Duration, Instant};

use composable::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StreamId, Version};
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
    metadata        jsonb NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    transaction_id  xid8 NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (stream_id, stream_version)
)";

const RAW_INSERT: &str = "INSERT INTO raw_events (stream_id, stream_version, event_id, \
     event_name, event_version, payload_format, payload, metadata) \
     SELECT $1, $8 + e.ord, e.event_id, e.event_name, e.event_version, e.payload_format, e.payload, \
            e.metadata::jsonb \
     FROM unnest($2::uuid[], $3::text[], $4::int4[], $5::text[], $6::bytea[], $7::text[]) \
          WITH ORDINALITY AS e(event_id, event_name, event_version, payload_format, payload, \
                               metadata, ord)";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

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

async fn raw_insert(pool: &PgPool, stream: &str, after: i64, events: &[NewEvent]) {
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    let versions: Vec<i32> = events.iter().map(|e| i32::from(e.version)).collect();
    let formats: Vec<&str> = events.iter().map(|e| e.format.as_str()).collect();
    let payloads: Vec<&[u8]> = events.iter().map(|e| e.payload.as_slice()).collect();
    let metadata: Vec<String> =
        events.iter().map(|e| serde_json::to_string(&e.metadata).unwrap()).collect();
    sqlx::query(RAW_INSERT)
        .bind(stream)
        .bind(&ids)
        .bind(&names)
        .bind(&versions)
        .bind(&formats)
        .bind(&payloads)
        .bind(&metadata)
        .bind(after)
        .execute(pool)
        .await
        .unwrap();
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
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

async fn raw_single_inserts(pool: &PgPool, round: usize, writers: usize, total: usize) {
    let each = total / writers;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("rawsingle-{round}x{writers}x{writer}");
            for index in 0..each {
                raw_insert(&pool, &stream, index as i64, &[event(index)]).await;
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
    let single = env_usize("BENCH_SINGLE", 2_000);
    let rounds = env_usize("BENCH_ROUNDS", 3).max(1);
    let url = std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: start PostgreSQL with `source scripts/lib/postgres.sh && pg_start`",
    );
    let admin: PgConnectOptions = url.parse().expect("DATABASE_URL is a valid URL");
    let name = format!("composable_bench_{}", Uuid::now_v7().simple());
    let mut connection = PgConnection::connect_with(&admin).await.expect("connect to DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut connection).await.unwrap();
    let store = PostgresEventStore::builder()
        .connect_options(admin.clone().database(&name))
        .max_connections(20)
        .connect()
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let pool = store.pool().clone();
    sqlx::query(RAW_TABLE).execute(&pool).await.unwrap();
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
        raw_insert(&pool, &format!("rawbatch-{round}"), 0, &raw).await;
        baseline.push(started.elapsed());
    }
    rows.push(Row {
        name: format!("batch append, {batch} events in one call"),
        events: batch,
        framework: median(framework),
        baseline: median(baseline),
    });

    // (b) single-event appends
    for writers in [1, 16] {
        let (mut framework, mut baseline) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let started = Instant::now();
            single_appends(&store, round, writers, single).await;
            framework.push(started.elapsed());
            let started = Instant::now();
            raw_single_inserts(&pool, round, writers, single).await;
            baseline.push(started.elapsed());
        }
        rows.push(Row {
            name: format!("single-event appends, {writers} writer(s)"),
            events: single / writers * writers,
            framework: median(framework),
            baseline: median(baseline),
        });
    }

    // (c) stream read of the first batch stream
    let stream = StreamId::new("batch", 0).unwrap();
    let select = "SELECT position, stream_id, stream_version, event_id, event_name, \
         event_version, payload_format, payload, metadata::text AS metadata, recorded_at \
         FROM events WHERE stream_id = $1 ORDER BY stream_version";
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

    println!("| measurement | composable events/s | raw sqlx events/s | ratio |");
    println!("|---|---:|---:|---:|");
    for row in &rows {
        let ours = Row::rate(row.events, row.framework);
        let raw = Row::rate(row.events, row.baseline);
        println!("| {} | {:.0} | {:.0} | {:.2} |", row.name, ours, raw, ours / raw);
    }
    println!("\n(median of {rounds} rounds; ratio = composable / raw, higher is better)");

    store.pool().close().await;
    sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&mut connection)
        .await
        .unwrap();
}
