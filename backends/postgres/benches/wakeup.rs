//! Latency from an append on PostgreSQL to a log consumer's handler holding the event (what a
//! saga's log input or a projection sees): woken by `LISTEN/NOTIFY` from another pool (as from
//! another process), woken in process, and polling every 5 ms without wake-ups — the baseline,
//! in the same run.
//!
//! Needs `DATABASE_URL`; `scripts/bench` provides it.
//!
//! `cargo bench -p composable-postgres --bench wakeup`

use std::time::{Duration, Instant};

use chrono::Utc;
use composable::checkpoint::InMemoryCheckpointStore;
use composable::consumer::{EventHandler, LogConsumer};
use composable::{
    EventMetadata, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId,
    service,
};
use composable_postgres::{PgConnectOptions, PostgresEventStore};
use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::mpsc;

const SAMPLES: usize = 500;

struct Arrivals(mpsc::UnboundedSender<(Position, Instant)>);

impl EventHandler for Arrivals {
    type Error = mpsc::error::SendError<(Position, Instant)>;

    async fn handle(&mut self, events: &[RecordedEvent]) -> Result<(), Self::Error> {
        let now = Instant::now();
        events.iter().try_for_each(|event| self.0.send((event.position, now)))
    }
}

fn event() -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        name: "bench.tick".into(),
        version: 1,
        format: "raw".into(),
        payload: vec![0; 64],
        metadata: EventMetadata::new_flow(Utc::now()),
    }
}

/// `SAMPLES` appends one at a time on `writer`, each timed until `reader`'s consumer holds it.
async fn run(
    label: &str,
    writer: &PostgresEventStore,
    reader: PostgresEventStore,
    woken: bool,
    poll: Duration,
) -> Vec<Duration> {
    let head = writer.head().await.expect("the head");
    let checkpoints = InMemoryCheckpointStore::new();
    composable::checkpoint::CheckpointStore::save(&checkpoints, "bench", head)
        .await
        .expect("a checkpoint");
    let (sender, mut arrivals) = mpsc::unbounded_channel();
    let consumer = LogConsumer::new("bench", reader, checkpoints, Arrivals(sender))
        .poll_interval(poll)
        .woken_by_appends(woken);
    let mut handle = service::spawn(consumer);
    handle.wait_until(|health| health.caught_up).await;
    // Let the listener connect.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stream = StreamId::new("bench", uuid::Uuid::now_v7().simple()).expect("a stream id");
    let mut latencies = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let appended =
            writer.append(&stream, ExpectedVersion::Any, vec![event()]).await.expect("append");
        loop {
            let (position, at) = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
                .await
                .unwrap_or_else(|_| panic!("{label}: no event within 30 s"))
                .expect("the consumer runs");
            if position == appended.last_position {
                latencies.push(at - started);
                break;
            }
        }
    }
    handle.stop().await.expect("the consumer stops");
    latencies.sort_unstable();
    latencies
}

fn at(latencies: &[Duration], percent: usize) -> f64 {
    latencies[(latencies.len() * percent / 100).min(latencies.len() - 1)].as_secs_f64() * 1e3
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL (run `scripts/bench`)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let admin: PgConnectOptions = url.parse().expect("a valid DATABASE_URL");
        let mut connection = PgConnection::connect_with(&admin).await.expect("PostgreSQL");
        let name = format!("wakeup_bench_{}", uuid::Uuid::now_v7().simple());
        connection
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("a database");
        let options = admin.database(&name);
        let connect = || {
            PostgresEventStore::builder()
                .connect_options(options.clone())
                .max_connections(4)
                .connect()
        };
        let writer = connect().await.expect("the writer's pool");
        writer.migrate().await.expect("migrations");
        let elsewhere = connect().await.expect("the reader's pool");

        let rows = [
            (
                "polling every 5 ms, no wake-ups (baseline)",
                run("poll", &writer, elsewhere.clone(), false, Duration::from_millis(5)).await,
            ),
            (
                "another pool, woken by LISTEN/NOTIFY",
                run("notify", &writer, elsewhere.clone(), true, Duration::from_secs(1)).await,
            ),
            (
                "the same pool, woken in process",
                run("local", &writer, writer.clone(), true, Duration::from_secs(1)).await,
            ),
        ];
        println!("append -> consumer's handler holds the event, {SAMPLES} sequential appends:");
        println!("| reader | p50 | p99 | p50 vs the 5 ms poll |");
        println!("|---|---:|---:|---:|");
        let baseline = at(&rows[0].1, 50);
        for (label, latencies) in &rows {
            let p50 = at(latencies, 50);
            println!(
                "| {label} | {p50:.2} ms | {:.2} ms | {:.2}× |",
                at(latencies, 99),
                baseline / p50
            );
        }
        elsewhere.pool().close().await;
        writer.pool().close().await;
        let _ = connection
            .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
            .await;
    });
}
