//! The event bus on Kafka, measured against baselines in the same run:
//!
//! 1. publish throughput: `KafkaBus::publish` against a raw rdkafka `FutureProducer` with the
//!    same settings, the same messages (event-shaped: key, 100-byte payload, envelope headers)
//!    and the same batching;
//! 2. relay throughput from PostgreSQL to Kafka, against a raw producer publishing the same
//!    events as the same messages (and reading them alone, for scale);
//! 3. latency from an append to a subscriber receiving the event (p50, p99).
//!
//! Needs `KAFKA_BROKERS` and `DATABASE_URL` (`scripts/bench` starts both). Sizes can be changed
//! with `BENCH_MESSAGES` (default 200 000) and `BENCH_EVENTS` (default 50 000).

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use chrono::Utc;
use composable::bus::{BusMessage, EventBus};
use composable::checkpoint::{CheckpointStore, InMemoryCheckpointStore};
use composable::relay::Relay;
use composable::{
    EventMetadata, EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, Position,
    RecordedEvent, StreamId, Version,
};
use composable_bench_support::env_usize;
use composable_kafka::rdkafka::message::{Header, OwnedHeaders};
use composable_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use composable_kafka::{KafkaBus, KafkaConfig};
use composable_postgres::PostgresEventStore;

const BATCH: usize = 1_000;

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

fn new_event(n: usize) -> NewEvent {
    let mut payload = vec![0u8; 100];
    payload[..8].copy_from_slice(&(n as u64).to_le_bytes());
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        name: "bench.happened".into(),
        version: 1,
        format: "raw".into(),
        payload,
        metadata: EventMetadata::new_flow(Utc::now()),
    }
}

/// Event-shaped messages: what the relay publishes.
fn messages(topic_category: &str, count: usize) -> Vec<BusMessage> {
    (0..count)
        .map(|n| {
            let event = new_event(n);
            BusMessage::from_event(&RecordedEvent {
                position: Position::new(n as u64 + 1, n as u64 + 1),
                stream_id: StreamId::new(topic_category, n % 1_000).unwrap(),
                stream_version: Version(n as u64 / 1_000 + 1),
                event_id: event.event_id,
                name: event.name,
                version: event.version,
                format: event.format,
                payload: event.payload,
                metadata: event.metadata,
                recorded_at: Utc::now(),
            })
        })
        .collect()
}

async fn raw_publish(producer: &FutureProducer, messages: &[BusMessage]) {
    for batch in messages.chunks(BATCH) {
        let mut pending = Vec::with_capacity(batch.len());
        for message in batch {
            let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
            for (key, value) in &message.headers {
                headers = headers.insert(Header { key, value: Some(value.as_slice()) });
            }
            let mut record = FutureRecord::to(&message.topic)
                .key(message.key.as_str())
                .payload(message.payload.as_slice())
                .headers(headers);
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((_, back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        }
        for delivery in pending {
            delivery.await.unwrap().unwrap();
        }
    }
}

async fn bus_publish(bus: &KafkaBus, messages: &[BusMessage]) {
    for batch in messages.chunks(BATCH) {
        bus.publish(batch.to_vec()).await.unwrap();
    }
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

async fn publish_throughput(config: &KafkaConfig) {
    let count = env_usize("BENCH_MESSAGES", 200_000);
    let bus = KafkaBus::new(config.clone()).unwrap();
    let raw: FutureProducer = config.producer_config().create().unwrap();
    let category = unique("benchpublish");
    let topic = composable::bus::topic_for(&category);
    bus.create_topics(&[&topic], 4, 1).await.unwrap();
    let messages = messages(&category, count);
    // Warm up both producers (connections, metadata).
    raw_publish(&raw, &messages[..BATCH]).await;
    bus_publish(&bus, &messages[..BATCH]).await;

    let (mut best_raw, mut best_bus) = (0f64, 0f64);
    for _ in 0..3 {
        let started = Instant::now();
        raw_publish(&raw, &messages).await;
        best_raw = best_raw.max(rate(count, started.elapsed()));
        let started = Instant::now();
        bus_publish(&bus, &messages).await;
        best_bus = best_bus.max(rate(count, started.elapsed()));
    }
    println!(
        "publish, {count} messages of 100 B + envelope headers, batches of {BATCH}, best of 3:"
    );
    println!("  raw FutureProducer   {best_raw:>12.0} msg/s");
    println!("  KafkaBus::publish    {best_bus:>12.0} msg/s   ({:.2}x)", best_bus / best_raw);
}

async fn append_events(store: &impl EventStore, category: &str, count: usize) {
    let per_append = 10;
    for n in (0..count).step_by(per_append) {
        let stream = StreamId::new(category, n / per_append % 100).unwrap();
        let events = (n..n + per_append).map(new_event).collect();
        store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
    }
}

async fn relay_throughput(config: &KafkaConfig, store: &PostgresEventStore) {
    let count = env_usize("BENCH_EVENTS", 50_000);
    let bus = KafkaBus::new(config.clone()).unwrap();
    let raw: FutureProducer = config.producer_config().create().unwrap();
    let category = unique("benchrelay");
    bus.create_topics(&[&composable::bus::topic_for(&category)], 4, 1).await.unwrap();
    let start = store.head().await.unwrap();
    append_events(store, &category, count).await;

    let started = Instant::now();
    let mut position = start;
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        let batch = store.read_all(position, BATCH).await.unwrap();
        position = batch.last().unwrap().position;
        events.extend(batch);
    }
    let read_rate = rate(count, started.elapsed());
    // The baseline: the same events, as the same messages, through a raw producer.
    let messages: Vec<BusMessage> = events.iter().map(BusMessage::from_event).collect();
    raw_publish(&raw, &messages[..BATCH]).await;

    let (mut best_raw, mut best_relay) = (0f64, 0f64);
    for _ in 0..3 {
        let started = Instant::now();
        raw_publish(&raw, &messages).await;
        best_raw = best_raw.max(rate(count, started.elapsed()));

        // The relay as it runs in an application: a service, reading ahead while it publishes.
        let checkpoints = InMemoryCheckpointStore::new();
        checkpoints.save("relay", start).await.unwrap();
        let relay = Relay::new(store.clone(), bus.clone(), checkpoints).batch_size(BATCH);
        let started = Instant::now();
        let mut relay = composable::service::spawn(relay);
        relay.wait_until(|health| health.position == Some(position)).await;
        best_relay = best_relay.max(rate(count, started.elapsed()));
        relay.stop().await.unwrap();
    }
    println!("relay PostgreSQL -> Kafka, {count} events of 100 B, batches of {BATCH}, best of 3:");
    println!("  read_all alone       {read_rate:>12.0} events/s");
    println!("  raw FutureProducer, the same messages {best_raw:>8.0} msg/s");
    println!(
        "  relay (read+publish+checkpoint) {best_relay:>8.0} events/s   ({:.2}x the raw producer)",
        best_relay / best_raw
    );
}

/// Appends one event at a time and measures until a subscriber holds it.
async fn latency<S: EventStore + Clone>(
    label: &str,
    config: &KafkaConfig,
    store: S,
    woken: bool,
    poll: Duration,
) {
    let samples = 300;
    let bus = KafkaBus::new(config.clone()).unwrap();
    let category = unique("benchlatency");
    let topic = composable::bus::topic_for(&category);
    bus.create_topics(&[&topic], 4, 1).await.unwrap();
    let mut subscription = bus.subscribe(None, &[&topic]).await.unwrap();

    // Start the relay at the end of the log: earlier runs' events are not part of this figure.
    let checkpoints = InMemoryCheckpointStore::new();
    let mut end = Position::START;
    while let Some(last) = store.read_all(end, 10_000).await.unwrap().last() {
        end = last.position;
    }
    checkpoints.save("relay", end).await.unwrap();
    let relay = Relay::new(store.clone(), bus.clone(), checkpoints)
        .poll_interval(poll)
        .woken_by_appends(woken);
    let relay = composable::service::spawn(relay);

    // One warm-up event: the consumer joins its group and gets its partitions.
    let stream = StreamId::new(&category, 0).unwrap();
    store.append(&stream, ExpectedVersion::Any, vec![new_event(0)]).await.unwrap();
    subscription.next().await.unwrap().unwrap().ack();

    let mut latencies = Vec::with_capacity(samples);
    for n in 1..=samples {
        let started = Instant::now();
        store.append(&stream, ExpectedVersion::Any, vec![new_event(n)]).await.unwrap();
        let delivery = subscription.next().await.unwrap().unwrap();
        latencies.push(started.elapsed());
        delivery.ack();
    }
    relay.stop().await.unwrap();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "  {label:<44} p50 {:>7.2} ms   p99 {:>7.2} ms",
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    );
}

fn main() {
    let brokers = std::env::var("KAFKA_BROKERS")
        .expect("KAFKA_BROKERS is not set: run scripts/bench, or `source scripts/lib/kafka.sh && kafka_start`");
    let database_url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: run scripts/bench, or `source scripts/lib/postgres.sh && pg_start`");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let config = KafkaConfig::new(brokers);
        println!(
            "settings: KafkaConfig defaults (acks=all, idempotent, linger 5 ms, no compression)"
        );
        publish_throughput(&config).await;

        let store = PostgresEventStore::connect(&database_url).await.unwrap();
        store.migrate().await.unwrap();
        relay_throughput(&config, &store).await;

        // tansu answers a consumer's fetch only when fetch.wait.max.ms (librdkafka's default:
        // 500 ms) runs out, not when data arrives as Kafka does; poll it every 5 ms instead.
        let config = config.set("fetch.wait.max.ms", "5");
        println!("latency, append -> subscriber holds the event, 300 sequential events, fetch.wait.max.ms=5:");
        latency(
            "PostgreSQL store, relay polling every 5 ms",
            &config,
            store.clone(),
            false,
            Duration::from_millis(5),
        )
        .await;
        latency(
            "PostgreSQL store, relay woken by LISTEN/NOTIFY",
            &config,
            store.clone(),
            true,
            Duration::from_secs(1),
        )
        .await;
        latency(
            "in-memory store, relay woken by appends",
            &config,
            InMemoryEventStore::new(),
            true,
            Duration::from_secs(1),
        )
        .await;
        latency(
            "in-memory store, woken relay, linger 0 ms",
            &config.clone().linger(Duration::ZERO),
            InMemoryEventStore::new(),
            true,
            Duration::from_secs(1),
        )
        .await;
    });
}
