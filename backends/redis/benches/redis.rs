//! Read models on Redis against the same commands sent by hand, in the same run on the same
//! server; read latencies from Redis, PostgreSQL and a cached hit.
//!
//! ```text
//! REDIS_URL=redis://... DATABASE_URL=postgres://... cargo bench -p composable-redis --bench redis
//! ```
//!
//! Sizes: `BENCH_EVENTS` events applied (default 200000), `BENCH_READS` reads per latency
//! measurement (default 5000), `BENCH_ROUNDS` rounds of the apply, of which the median is
//! reported (default 3), `BENCH_BATCHES` the batch sizes of the apply (default `500,2000`).
//!
//! * apply: a `ProjectionRunner` on a `RedisReadStore` catching up with an in-memory log of
//!   scores (a sorted-set increment and a counter per event; batches of each size, each one atomic
//!   script with the checkpoint and the per-key guards) against a raw pipeline per batch of the
//!   same commands (`ZINCRBY`, `INCRBY`) and the checkpoint's `SET`, in `MULTI`/`EXEC`;
//! * reads: `RedisReadStore::get` (one script that looks up the serving version and reads the
//!   key) against a raw `GET`; `Cached::get` hitting Redis in front of PostgreSQL, and
//!   `PostgresReadStore::get` on its own, against the same raw `GET`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up stops

use std::time::{Duration, Instant};

use composable::projection::{Cached, ProjectionRunner, ReadStore, Scope};
use composable::{
    Bincode, Codec, EventMetadata, EventStore, ExpectedVersion, InMemoryEventStore, NewEvent,
    StreamId, event, project, projection,
};
use composable_bench_support::{env_sizes, env_usize, median, percentile};
use composable_postgres::{PgConnectOptions, PgPoolOptions, PostgresReadStore};
use composable_redis::{RedisBatch, RedisCache, RedisReadError, RedisReadStore};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[event(name = "bench.scored", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub player: u32,
    pub points: u32,
}

/// Points per player and the games played.
#[derive(Debug)]
pub struct Board;

#[projection(name = "bench_board", store = RedisReadStore)]
impl Board {
    #[project]
    fn scored(&self, batch: &mut RedisBatch, event: &Scored) -> Result<(), RedisReadError> {
        batch.zincr_by("points", &event.player.to_string(), f64::from(event.points))?;
        batch.incr_by("games", 1)
    }
}

fn env(name: &str) -> String {
    std::env::var(name).ok().filter(|value| !value.is_empty()).unwrap_or_else(|| {
        panic!("{name} is not set: start Redis and PostgreSQL with scripts/lib/redis.sh and scripts/lib/postgres.sh")
    })
}

async fn latencies<F, Fut>(reads: usize, mut read: F) -> (Duration, Duration)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(reads);
    for index in 0..reads {
        let started = Instant::now();
        read(index).await;
        samples.push(started.elapsed());
    }
    (percentile(&mut samples, 0.5), percentile(&mut samples, 0.99))
}

#[tokio::main]
async fn main() {
    let total = env_usize("BENCH_EVENTS", 200_000);
    let reads = env_usize("BENCH_READS", 5_000);
    let rounds = env_usize("BENCH_ROUNDS", 3).max(1);
    let batches = env_sizes("BENCH_BATCHES", &[500, 2000]);
    let redis_url = env("REDIS_URL");
    let run = Uuid::now_v7().simple().to_string();

    // The log, in memory: the apply measures Redis, not an event store.
    let events = InMemoryEventStore::new();
    let metadata = EventMetadata::new_flow(chrono::Utc::now());
    for chunk in 0..total.div_ceil(1000) {
        let batch: Vec<NewEvent> = (chunk * 1000..((chunk + 1) * 1000).min(total))
            .map(|index| {
                let event = BoardEvent::from(Scored { player: (index % 1000) as u32, points: 1 });
                NewEvent::encode(&event, &Bincode, metadata.clone()).unwrap()
            })
            .collect();
        let stream = StreamId::new("game", chunk).unwrap();
        events.append(&stream, ExpectedVersion::NoStream, batch).await.unwrap();
    }
    let log = events.read_all(composable::Position::START, usize::MAX).await.unwrap();

    // (a) apply, framework and by hand alternating, at each batch size.
    let rate = |elapsed: Duration| total as f64 / elapsed.as_secs_f64();
    let mut rows = Vec::new();
    for &batch in &batches {
        let (mut framework, mut baseline) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let store =
                RedisReadStore::connect(&redis_url, &format!("bench-{run}-{batch}-{round}"))
                    .await
                    .unwrap();
            let started = Instant::now();
            ProjectionRunner::new(Board, store.clone())
                .batch_size(batch)
                .consumer(events.clone())
                .catch_up()
                .await
                .unwrap();
            framework.push(started.elapsed());
            assert_eq!(store.counter("games").await.unwrap(), total as i64);
            store.clear(Scope::of::<Board>()).await.unwrap();

            let mut connection = store.connection().clone();
            let prefix = format!("raw-{run}-{batch}-{round}");
            let started = Instant::now();
            for chunk in log.chunks(batch) {
                let mut pipeline = redis::pipe();
                pipeline.atomic();
                for recorded in chunk {
                    let scored: Scored = Bincode.decode(&recorded.payload).unwrap();
                    pipeline
                        .cmd("ZINCRBY")
                        .arg(format!("{prefix}:points"))
                        .arg(scored.points)
                        .arg(scored.player.to_string())
                        .ignore();
                    pipeline.cmd("INCRBY").arg(format!("{prefix}:games")).arg(1).ignore();
                }
                let last = chunk.last().unwrap().position;
                pipeline
                    .cmd("SET")
                    .arg(format!("{prefix}:checkpoint"))
                    .arg(last.to_string())
                    .ignore();
                pipeline.exec_async(&mut connection).await.unwrap();
            }
            baseline.push(started.elapsed());
            let games: i64 = redis::cmd("GET")
                .arg(format!("{prefix}:games"))
                .query_async(&mut connection)
                .await
                .unwrap();
            assert_eq!(games, total as i64);
            let _: i64 = redis::cmd("DEL")
                .arg(format!("{prefix}:points"))
                .arg(format!("{prefix}:games"))
                .arg(format!("{prefix}:checkpoint"))
                .query_async(&mut connection)
                .await
                .unwrap();
        }
        rows.push((batch, rate(median(framework)), rate(median(baseline))));
    }
    println!(
        "| apply of {total} events on Redis, batch | ProjectionRunner on RedisReadStore (script, \
         guards, checkpoint), events/s | a raw MULTI pipeline of the same commands and the \
         checkpoint, events/s | ratio |\n|---:|---:|---:|---:|"
    );
    for (batch, ours, raw) in rows {
        println!("| {batch} | {ours:.0} | {raw:.0} | {:.2} |", ours / raw);
    }

    // (b) reads: documents in PostgreSQL, cached in Redis, and the same bytes under a raw key.
    let admin: PgConnectOptions = env("DATABASE_URL").parse().unwrap();
    let name = format!("composable_bench_{run}");
    let admin_pool =
        PgPoolOptions::new().max_connections(1).connect_with(admin.clone()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&admin_pool)
        .await
        .unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(admin.clone().database(&name))
        .await
        .unwrap();
    let documents = PostgresReadStore::new(pool.clone());
    documents.migrate().await.unwrap();
    let values = RedisReadStore::connect(&redis_url, &format!("bench-{run}-values")).await.unwrap();
    let cache = RedisCache::new(
        values.connection().clone(),
        &format!("bench-{run}-cache"),
        Duration::from_secs(600),
    )
    .unwrap();
    let cached = Cached::new(documents.clone(), cache);
    let keys = 1000;
    let scope = Scope::new("bench_values", 1);
    let mut batch = cached.begin(scope).await.unwrap();
    let mut redis_batch = values.begin(scope).await.unwrap();
    for key in 0..keys {
        batch.put("values", &key.to_string(), &(key as u64)).await.unwrap();
        redis_batch.set(&key.to_string(), &(key as u64)).unwrap();
    }
    cached.commit_batch(batch).await.unwrap();
    values.commit_batch(redis_batch).await.unwrap();
    let mut connection = values.connection().clone();
    for key in 0..keys {
        let _: () = redis::cmd("SET")
            .arg(format!("raw-{run}:{key}"))
            .arg(Bincode.encode(&(key as u64)).unwrap())
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    let key = |index: usize| ((index * 7919) % keys).to_string();
    let raw = latencies(reads, |index| {
        let mut connection = connection.clone();
        let key = format!("raw-{run}:{}", key(index));
        async move {
            let bytes: Option<Vec<u8>> =
                redis::cmd("GET").arg(key).query_async(&mut connection).await.unwrap();
            assert!(bytes.is_some());
        }
    })
    .await;
    let redis = latencies(reads, |index| {
        let values = values.clone();
        async move { assert!(values.get::<u64>(&key(index)).await.unwrap().is_some()) }
    })
    .await;
    let hit = latencies(reads, |index| {
        let cached = cached.clone();
        async move { assert!(cached.get::<u64>("values", &key(index)).await.unwrap().is_some()) }
    })
    .await;
    let postgres = latencies(reads, |index| {
        let documents = documents.clone();
        async move { assert!(documents.get::<u64>("values", &key(index)).await.unwrap().is_some()) }
    })
    .await;
    let stats = cached.stats();
    assert!(stats.hits >= reads as u64, "{stats:?}");
    println!("\n| {reads} reads | p50 | p99 | p50 vs a raw GET |\n|---|---:|---:|---:|");
    for (name, (p50, p99)) in [
        ("a raw GET (baseline)", raw),
        ("RedisReadStore::get", redis),
        ("Cached::get, a hit (Redis in front of PostgreSQL)", hit),
        ("PostgresReadStore::get", postgres),
    ] {
        println!(
            "| {name} | {p50:.2?} | {p99:.2?} | {:.2} |",
            raw.0.as_secs_f64() / p50.as_secs_f64()
        );
    }
    println!("(cache: {} hits, {} misses)", stats.hits, stats.misses);

    values.clear(scope).await.unwrap();
    composable::projection::DocumentCache::clear(cached.cache()).await.unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg((0..keys).map(|key| format!("raw-{run}:{key}")).collect::<Vec<_>>())
        .query_async(&mut connection)
        .await
        .unwrap();
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\" WITH (FORCE)")))
        .execute(&admin_pool)
        .await
        .unwrap();
}
