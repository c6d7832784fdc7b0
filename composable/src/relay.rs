//! The outbox relay: moves committed events from the event store to the bus.
//!
//! In the flow of `docs/architecture.md` an append commits events to the store and nothing else;
//! there is no second write to the bus that could fail on its own. The events table *is* the
//! outbox: a [`Relay`] is a [log consumer](crate::consumer::LogConsumer) whose handler publishes
//! each batch in position order (so every stream's events keep their order); the consumer saves
//! its checkpoint only after the bus acknowledged the whole batch.
//!
//! A relay that dies between publishing and saving its checkpoint publishes that batch again
//! when it restarts: every committed event reaches the bus **at least once**, some more than
//! once. Subscribers that are not idempotent by nature filter by event id with
//! [`Dedupe`](crate::bus::Dedupe).
//!
//! Run one relay per checkpoint name: two relays sharing a name publish the same events twice
//! (harmless, but wasted work).

use std::time::Duration;

use tracing::Instrument;

use crate::BoxError;
use crate::backoff::Backoff;
use crate::bus::{BusError, BusMessage, EventBus};
use crate::checkpoint::CheckpointStore;
use crate::clock::Clock;
use crate::consumer::{ConsumerError, EventHandler, LogConsumer, ReadError};
use crate::envelope::RecordedEvent;
use crate::event_store::EventStore;
use crate::service::{Service, ServiceContext};
use crate::stream::Position;

/// One step of the relay failed: reading the log, publishing (the handler's error is the bus's)
/// or the checkpoint.
pub type RelayError = ConsumerError<BusError>;

/// What one [`Relay::run_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayBatch {
    /// How many events it published.
    pub published: usize,
    /// The checkpoint after it: the position of the last event published.
    pub checkpoint: Position,
}

/// The relay's handler: publishes a batch of events to the bus, each to [`topic_for`] its
/// category, keyed by its stream id ([`BusMessage::from_event`]).
///
/// [`topic_for`]: crate::bus::topic_for
#[derive(Debug, Clone)]
pub struct Publisher<B>(pub B);

impl<B: EventBus> EventHandler for Publisher<B> {
    type Error = BusError;

    async fn handle(&mut self, events: &[RecordedEvent]) -> Result<(), BusError> {
        let span = tracing::info_span!(
            "relay.batch",
            events = events.len(),
            first = %events.first().map_or(Position::START, |event| event.position),
            last = %events.last().map_or(Position::START, |event| event.position),
        );
        self.0.publish(events.iter().map(BusMessage::from_event).collect()).instrument(span).await
    }

    fn is_retryable(&self, error: &BusError) -> bool {
        error.is_transient()
    }
}

/// Moves committed events from an [`EventStore`] to an [`EventBus`], checkpointed in a
/// [`CheckpointStore`]: a [`LogConsumer`] with a [`Publisher`]. See the [module docs](self)
/// for its guarantees.
///
/// ```
/// use composable::bus::{EventBus, InMemoryBus};
/// use composable::checkpoint::InMemoryCheckpointStore;
/// use composable::relay::Relay;
/// use composable::service;
/// use composable::{EventMetadata, EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, StreamId};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let store = InMemoryEventStore::new();
/// let bus = InMemoryBus::new();
/// let stream = StreamId::new("order", 1)?;
/// let event = NewEvent {
///     event_id: uuid::Uuid::now_v7(),
///     name: "order.placed".into(),
///     version: 1,
///     format: "json".into(),
///     payload: b"{}".to_vec(),
///     metadata: EventMetadata::new_flow(chrono::Utc::now()),
/// };
/// store.append(&stream, ExpectedVersion::NoStream, vec![event]).await?;
///
/// let mut relay = Relay::new(store.clone(), bus.clone(), InMemoryCheckpointStore::new());
/// let batch = relay.run_once().await?;
/// assert_eq!(batch.published, 1);
/// let published = bus.messages("order-events");
/// assert_eq!(published[0].key, "order-1");
///
/// // As a service inside an app: woken by appends, stopped through its handle.
/// let handle = service::spawn(relay);
/// handle.stop().await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct Relay<S, B, K> {
    consumer: LogConsumer<S, K, Publisher<B>>,
}

impl<S: EventStore, B: EventBus, K: CheckpointStore> Relay<S, B, K> {
    /// A relay named `relay` (its checkpoint's name), publishing batches of up to 500 events,
    /// woken by the store's appends and polling every 100 ms without them, retrying transient
    /// failures from 10 ms doubling up to 5 s.
    pub fn new(store: S, bus: B, checkpoints: K) -> Self {
        Self::named("relay", store, bus, checkpoints)
    }

    /// A relay whose checkpoint is called `name`; relays with different names each publish
    /// every event.
    pub fn named(name: impl Into<String>, store: S, bus: B, checkpoints: K) -> Self {
        let consumer = LogConsumer::new(name, store, checkpoints, Publisher(bus))
            .poll_interval(Duration::from_millis(100));
        Self { consumer }
    }

    /// The most events published in one batch (at least 1).
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.consumer = self.consumer.batch_size(batch_size);
        self
    }

    /// How long the running relay waits for a wake-up before looking again once it has caught up.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.consumer = self.consumer.poll_interval(interval);
        self
    }

    /// Whether the store's wake-ups end the relay's wait early (by default they do).
    #[must_use]
    pub fn woken_by_appends(mut self, woken: bool) -> Self {
        self.consumer = self.consumer.woken_by_appends(woken);
        self
    }

    /// How transient failures are retried.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.consumer = self.consumer.backoff(backoff);
        self
    }

    /// Waits on `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.consumer = self.consumer.with_clock(clock);
        self
    }

    /// Relays only while `holder` holds the claim on its checkpoint: one of several relay
    /// processes publishes, the others stand by (see [`LogConsumer::claimed`]).
    #[must_use]
    pub fn claimed(mut self, holder: uuid::Uuid, ttl: Duration) -> Self {
        self.consumer = self.consumer.claimed(holder, ttl);
        self
    }

    /// The saved checkpoint (loaded once, then tracked).
    ///
    /// # Errors
    /// When the checkpoint store fails.
    pub async fn checkpoint(&mut self) -> Result<Position, RelayError> {
        self.consumer.reader().position().await.map_err(ReadError::widen)
    }

    /// Publishes one batch after the checkpoint, then saves the checkpoint. Returns at once with
    /// nothing published when the relay has caught up.
    ///
    /// # Errors
    /// When reading, publishing or saving fails; the checkpoint is then unchanged and the next
    /// call publishes the same events again.
    pub async fn run_once(&mut self) -> Result<RelayBatch, RelayError> {
        let published = self.consumer.run_once().await?;
        let checkpoint = self.checkpoint().await?;
        Ok(RelayBatch { published, checkpoint })
    }

    /// Publishes everything committed up to the head of the log as it is now, batch after
    /// batch, waiting while the gap-safe log still holds commits back (other transactions on
    /// the database), and saves the checkpoint after each batch. Returns how many events it
    /// published and the checkpoint reached.
    ///
    /// # Errors
    /// When reading, publishing or saving fails, or the log stays behind the head for the settle
    /// timeout; the checkpoint stays after the last batch published.
    pub async fn catch_up(&mut self) -> Result<RelayBatch, RelayError> {
        let published = self.consumer.catch_up().await?;
        let checkpoint = self.checkpoint().await?;
        Ok(RelayBatch { published, checkpoint })
    }
}

impl<S: EventStore, B: EventBus, K: CheckpointStore> Service for Relay<S, B, K> {
    fn name(&self) -> String {
        self.consumer.name()
    }

    async fn run(self, context: ServiceContext) -> Result<(), BoxError> {
        self.consumer.run(context).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chrono::Utc;

    use super::*;
    use crate::bus::{InMemoryBus, Subscription};
    use crate::checkpoint::InMemoryCheckpointStore;
    use crate::envelope::{EventMetadata, NewEvent};
    use crate::event_store::InMemoryEventStore;
    use crate::stream::{ExpectedVersion, StreamId};

    fn events(count: usize) -> Vec<NewEvent> {
        (0..count)
            .map(|n| NewEvent {
                event_id: uuid::Uuid::now_v7(),
                name: "thing.happened".into(),
                version: 1,
                format: "raw".into(),
                payload: n.to_string().into_bytes(),
                metadata: EventMetadata::new_flow(Utc::now()),
            })
            .collect()
    }

    /// A bus that publishes the first `fail_after` messages of its life and then fails.
    #[derive(Debug, Clone)]
    struct FlakyBus {
        inner: InMemoryBus,
        budget: Arc<AtomicUsize>,
    }

    impl EventBus for FlakyBus {
        async fn publish(&self, messages: Vec<BusMessage>) -> Result<(), BusError> {
            let budget = self.budget.load(Ordering::SeqCst);
            let take = budget.min(messages.len());
            self.budget.fetch_sub(take, Ordering::SeqCst);
            let complete = take == messages.len();
            self.inner.publish(messages.into_iter().take(take).collect()).await?;
            if complete {
                Ok(())
            } else {
                Err(BusError::Unavailable { operation: "publish", source: "broker gone".into() })
            }
        }

        async fn subscribe(
            &self,
            group: Option<&str>,
            topics: &[&str],
        ) -> Result<Subscription, BusError> {
            self.inner.subscribe(group, topics).await
        }
    }

    #[tokio::test]
    async fn a_failed_publish_keeps_the_checkpoint_and_a_restart_loses_nothing() {
        let store = InMemoryEventStore::new();
        let a = StreamId::new("a", 1).unwrap();
        let b = StreamId::new("b", 1).unwrap();
        store.append(&a, ExpectedVersion::Any, events(3)).await.unwrap();
        store.append(&b, ExpectedVersion::Any, events(2)).await.unwrap();
        store.append(&a, ExpectedVersion::Any, events(2)).await.unwrap();
        let inner = InMemoryBus::new();
        let checkpoints = InMemoryCheckpointStore::new();
        let flaky = FlakyBus { inner: inner.clone(), budget: Arc::new(AtomicUsize::new(4)) };

        let mut relay = Relay::new(store.clone(), flaky, checkpoints.clone()).batch_size(10);
        let error = relay.run_once().await.unwrap_err();
        assert!(
            matches!(&error, ConsumerError::Handler { source, .. } if source.is_transient()),
            "{error}"
        );
        assert_eq!(checkpoints.load("relay").await.unwrap(), Position::START);

        let mut restarted =
            Relay::new(store.clone(), inner.clone(), checkpoints.clone()).batch_size(10);
        assert_eq!(restarted.run_once().await.unwrap().published, 7);
        assert_eq!(checkpoints.load("relay").await.unwrap(), Position::new(3, 2));
        assert_eq!(restarted.run_once().await.unwrap().published, 0);

        // Every event arrived at least once, and each stream's first copies are in order.
        let mut published = inner.messages("a-events");
        published.extend(inner.messages("b-events"));
        let mut seen = std::collections::HashSet::new();
        let mut last_version: HashMap<String, u64> = HashMap::new();
        for message in &published {
            let event = message.to_event().unwrap();
            if seen.insert(event.event_id) {
                let last = last_version.entry(message.key.clone()).or_insert(0);
                assert_eq!(event.stream_version.get(), *last + 1);
                *last += 1;
            }
        }
        assert_eq!(seen.len(), 7);
    }

    #[tokio::test]
    async fn catch_up_publishes_every_batch_up_to_the_head() {
        let store = InMemoryEventStore::new();
        let stream = StreamId::new("a", 1).unwrap();
        store.append(&stream, ExpectedVersion::Any, events(7)).await.unwrap();
        let bus = InMemoryBus::new();
        let mut relay =
            Relay::new(store.clone(), bus.clone(), InMemoryCheckpointStore::new()).batch_size(3);
        let caught_up = relay.catch_up().await.unwrap();
        assert_eq!(caught_up.published, 7);
        assert_eq!(caught_up.checkpoint, store.head().await.unwrap());
        assert_eq!(bus.messages("a-events").len(), 7);
        assert_eq!(relay.catch_up().await.unwrap().published, 0, "nothing new");
    }

    #[tokio::test]
    async fn run_relays_appends_as_they_happen_and_stops_on_shutdown() {
        let store = InMemoryEventStore::new();
        let bus = InMemoryBus::new();
        let mut subscription = bus.subscribe(None, &["a-events"]).await.unwrap();
        let relay = Relay::new(store.clone(), bus.clone(), InMemoryCheckpointStore::new())
            .poll_interval(Duration::from_secs(3600))
            .batch_size(2);
        let handle = crate::service::spawn(relay);
        let stream = StreamId::new("a", 1).unwrap();
        store.append(&stream, ExpectedVersion::Any, events(5)).await.unwrap();
        for version in 1..=5 {
            let delivery = tokio::time::timeout(Duration::from_secs(5), subscription.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(delivery.event().unwrap().stream_version.get(), version);
            delivery.ack();
        }
        handle.stop().await.unwrap();
    }
}
