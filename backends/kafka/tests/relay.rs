//! The outbox relay from PostgreSQL (`DATABASE_URL`) to Kafka (`KAFKA_BROKERS`): killed in the
//! middle of a batch and restarted, it loses no committed event and keeps each stream's order.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use composable::bus::{BusError, BusMessage, EventBus, Subscription};
use composable::checkpoint::CheckpointStore;
use composable::relay::Relay;
use composable::service::{Service, ServiceContext};
use composable::{EventMetadata, EventStore, ExpectedVersion, NewEvent, Position, StreamId};
use composable_kafka::KafkaBus;
use composable_postgres::PostgresCheckpointStore;
use tokio::sync::Notify;

const STREAMS: usize = 6;
const EVENTS_PER_APPEND: usize = 5;
const APPENDS_PER_STREAM: usize = 10;
const TOTAL: usize = STREAMS * EVENTS_PER_APPEND * APPENDS_PER_STREAM;

/// A bus that lets `whole_batches` publishes through, then publishes the first half of the
/// next batch, says so, and never returns: the relay process "dies" there when it is aborted.
#[derive(Debug, Clone)]
struct DiesMidBatch {
    inner: KafkaBus,
    whole_batches: Arc<std::sync::atomic::AtomicUsize>,
    half_published: Arc<Notify>,
}

impl EventBus for DiesMidBatch {
    async fn publish(&self, messages: Vec<BusMessage>) -> Result<(), BusError> {
        use std::sync::atomic::Ordering;
        if self.whole_batches.load(Ordering::SeqCst) > 0 {
            self.whole_batches.fetch_sub(1, Ordering::SeqCst);
            return self.inner.publish(messages).await;
        }
        let half = messages.len() / 2;
        self.inner.publish(messages.into_iter().take(half).collect()).await?;
        self.half_published.notify_one();
        std::future::pending().await
    }

    async fn subscribe(
        &self,
        group: Option<&str>,
        topics: &[&str],
    ) -> Result<Subscription, BusError> {
        self.inner.subscribe(group, topics).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_batch_and_restarted_loses_nothing_and_keeps_stream_order() {
    let store = common::fresh_store().await;
    let checkpoints = PostgresCheckpointStore::new(store.pool().clone());
    let bus = common::bus().await;
    let category = common::unique("relay");
    let topic = composable::bus::topic_for(&category);
    common::create_topics(&bus, &[&topic], 3).await;

    // Interleaved appends: the global log mixes the streams.
    let mut ids = HashSet::new();
    for _ in 0..APPENDS_PER_STREAM {
        for stream in 0..STREAMS {
            let stream = StreamId::new(&category, stream).unwrap();
            let events: Vec<NewEvent> = (0..EVENTS_PER_APPEND)
                .map(|_| NewEvent {
                    event_id: uuid::Uuid::now_v7(),
                    name: "thing.happened".into(),
                    version: 1,
                    format: "raw".into(),
                    payload: b"x".to_vec(),
                    metadata: EventMetadata::new_flow(Utc::now()),
                })
                .collect();
            ids.extend(events.iter().map(|event| event.event_id));
            store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
        }
    }

    // The first relay publishes one whole batch, half of the next, and is killed.
    let dying = DiesMidBatch {
        inner: bus.clone(),
        whole_batches: Arc::new(1.into()),
        half_published: Arc::new(Notify::new()),
    };
    let half_published = Arc::clone(&dying.half_published);
    let relay = Relay::named("relay", store.clone(), dying, checkpoints.clone()).batch_size(100);
    // Run inline (not through a handle), so that aborting the task kills it mid-batch.
    let (_never_stopped, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(Service::run(relay, ServiceContext::detached(stop)));
    tokio::time::timeout(Duration::from_secs(30), half_published.notified())
        .await
        .expect("the relay published half of its second batch");
    task.abort();
    let _ = task.await;
    let log = store.read_all(Position::START, TOTAL).await.unwrap();
    assert_eq!(checkpoints.load("relay").await.unwrap(), log[99].position);

    // Restarted, it resumes from its checkpoint and publishes the rest.
    let mut restarted =
        Relay::named("relay", store.clone(), bus.clone(), checkpoints.clone()).batch_size(100);
    let published = restarted.catch_up().await.unwrap().published;
    assert_eq!(published, TOTAL - 100);
    assert_eq!(checkpoints.load("relay").await.unwrap(), log[TOTAL - 1].position);

    // Every committed event reached the topic at least once; each stream's events arrive in
    // version order once repeats are dropped.
    let mut subscription = bus.subscribe(None, &[&topic]).await.unwrap();
    let mut seen = HashSet::new();
    let mut versions: HashMap<StreamId, u64> = HashMap::new();
    let mut received = 0;
    let started = Instant::now();
    while seen.len() < TOTAL {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {} of {TOTAL} events reached the topic",
            seen.len()
        );
        let delivery = common::next(&mut subscription, Duration::from_secs(30), "an event").await;
        let event = delivery.event().unwrap();
        received += 1;
        if seen.insert(event.event_id) {
            let last = versions.entry(event.stream_id.clone()).or_insert(0);
            assert_eq!(event.stream_version.get(), *last + 1, "order of {}", event.stream_id);
            *last += 1;
        }
        delivery.ack();
    }
    assert_eq!(seen, ids);
    // The half batch published before the kill is on the topic twice.
    while received < TOTAL + 50 {
        common::next(&mut subscription, Duration::from_secs(30), "a repeated event").await.ack();
        received += 1;
    }
}
