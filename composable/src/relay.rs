//! The outbox relay: moves committed events from the event store to the bus.
//!
//! In the flow of DESIGN.md an append commits events to the store and nothing else; there is
//! no second write to the bus that could fail on its own. The events table *is* the outbox: a
//! [`Relay`] reads the global log gap-safe ([`EventStore::read_all`]), publishes each batch in
//! position order (so every stream's events keep their order), and saves its checkpoint in a
//! [`CheckpointStore`] only after the bus acknowledged the whole batch.
//!
//! A relay that dies between publishing and saving its checkpoint publishes that batch again
//! when it restarts: every committed event reaches the bus **at least once**, some more than
//! once. Subscribers that are not idempotent by nature filter by event id with
//! [`Dedupe`](crate::bus::Dedupe).
//!
//! Run one relay per checkpoint name: two relays sharing a name publish the same events twice
//! (harmless, but wasted work).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::bus::{BusError, BusMessage, EventBus};
use crate::event_store::{EventStore, EventStoreError};
use crate::stream::Position;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A checkpoint could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The store could not be reached; retrying may succeed.
    #[error("checkpoint store unavailable while trying to {operation} `{name}`: {source}")]
    Unavailable {
        /// What was being done.
        operation: &'static str,
        /// The checkpoint's name.
        name: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// A stored checkpoint cannot be read back.
    #[error("checkpoint `{name}` is corrupt: {reason}")]
    Corrupt {
        /// The checkpoint's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store failed in a way retrying will not fix.
    #[error("checkpoint store failed to {operation} `{name}`: {source}")]
    Backend {
        /// What was being done.
        operation: &'static str,
        /// The checkpoint's name.
        name: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

/// Durable positions in the global log, by name: how far a relay (or a projection) got.
///
/// Implemented by [`InMemoryCheckpointStore`] and by `composable-postgres`.
pub trait CheckpointStore: Send + Sync + 'static {
    /// The saved position of `name`, [`Position::START`] when none was saved.
    fn load(&self, name: &str) -> impl Future<Output = Result<Position, CheckpointError>> + Send;

    /// Saves `position` as `name`'s checkpoint.
    fn save(
        &self,
        name: &str,
        position: Position,
    ) -> impl Future<Output = Result<(), CheckpointError>> + Send;
}

/// A [`CheckpointStore`] in memory; clones share the checkpoints.
///
/// ```
/// use composable::relay::{CheckpointStore, InMemoryCheckpointStore};
/// use composable::Position;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let checkpoints = InMemoryCheckpointStore::new();
/// assert_eq!(checkpoints.load("relay").await?, Position::START);
/// checkpoints.save("relay", Position::new(7, 42)).await?;
/// assert_eq!(checkpoints.load("relay").await?, Position::new(7, 42));
/// # Ok::<(), composable::relay::CheckpointError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct InMemoryCheckpointStore {
    positions: Arc<Mutex<HashMap<String, Position>>>,
}

impl InMemoryCheckpointStore {
    /// No checkpoints.
    pub fn new() -> Self {
        Self::default()
    }
}

impl CheckpointStore for InMemoryCheckpointStore {
    async fn load(&self, name: &str) -> Result<Position, CheckpointError> {
        let positions = self.positions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(positions.get(name).copied().unwrap_or(Position::START))
    }

    async fn save(&self, name: &str, position: Position) -> Result<(), CheckpointError> {
        let mut positions =
            self.positions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        positions.insert(name.to_owned(), position);
        Ok(())
    }
}

/// One step of the relay failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// Reading the global log failed.
    #[error("relay `{name}` could not read the event store: {source}")]
    Store {
        /// The relay's checkpoint name.
        name: String,
        /// The store's error.
        #[source]
        source: EventStoreError,
    },
    /// Publishing a batch failed; its checkpoint was not saved, so it is published again.
    #[error("relay `{name}` could not publish events after position {after}: {source}")]
    Bus {
        /// The relay's checkpoint name.
        name: String,
        /// The checkpoint the failed batch started after.
        after: Position,
        /// The bus's error.
        #[source]
        source: BusError,
    },
    /// Loading or saving the checkpoint failed.
    #[error("relay checkpoint failed: {0}")]
    Checkpoint(#[from] CheckpointError),
}

impl RelayError {
    /// Whether running the relay again may get past the failure: the store, the bus or the
    /// checkpoint store was unreachable.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store { source, .. } => source.is_transient(),
            Self::Bus { source, .. } => source.is_transient(),
            Self::Checkpoint(error) => matches!(error, CheckpointError::Unavailable { .. }),
        }
    }
}

/// What one [`Relay::run_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayBatch {
    /// How many events it published.
    pub published: usize,
    /// The checkpoint after it: the position of the last event published.
    pub checkpoint: Position,
}

/// Moves committed events from an [`EventStore`] to an [`EventBus`], checkpointed in a
/// [`CheckpointStore`]. See the [module docs](self) for its guarantees.
///
/// ```
/// use composable::bus::{EventBus, InMemoryBus};
/// use composable::relay::{InMemoryCheckpointStore, Relay};
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
/// let mut relay = Relay::new(store.clone(), bus.clone(), InMemoryCheckpointStore::new())
///     .wake_on(store.subscribe_appends());
/// let batch = relay.run_once(100).await?;
/// assert_eq!(batch.published, 1);
/// let published = bus.messages("order-events");
/// assert_eq!(published[0].key, "order-1");
///
/// // As a task inside an app: it stops when the shutdown future completes.
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let task = tokio::spawn(async move { relay.run(async { let _ = stopped.await; }).await });
/// let _ = stop.send(());
/// task.await??;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct Relay<S, B, K> {
    store: S,
    bus: B,
    checkpoints: K,
    name: String,
    batch_size: usize,
    poll_interval: Duration,
    max_backoff: Duration,
    wake: Option<watch::Receiver<Position>>,
    checkpoint: Option<Position>,
}

impl<S: EventStore, B: EventBus, K: CheckpointStore> Relay<S, B, K> {
    /// A relay named `relay` (its checkpoint's name), publishing batches of up to 500 events and
    /// polling every 100 ms when it has caught up.
    pub fn new(store: S, bus: B, checkpoints: K) -> Self {
        Self {
            store,
            bus,
            checkpoints,
            name: "relay".into(),
            batch_size: 500,
            poll_interval: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            wake: None,
            checkpoint: None,
        }
    }

    /// The checkpoint's name; relays with different names each publish every event.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The most events [`run`](Self::run) publishes in one batch (at least 1).
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// How long [`run`](Self::run) waits before looking again once it has caught up.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The longest wait between retries after a transient failure.
    #[must_use]
    pub fn max_backoff(mut self, max_backoff: Duration) -> Self {
        self.max_backoff = max_backoff;
        self
    }

    /// Wakes [`run`](Self::run) as soon as `appends` changes, instead of at the next poll: give
    /// it [`InMemoryEventStore::subscribe_appends`](crate::InMemoryEventStore::subscribe_appends).
    #[must_use]
    pub fn wake_on(mut self, appends: watch::Receiver<Position>) -> Self {
        self.wake = Some(appends);
        self
    }

    /// The saved checkpoint (loaded once, then tracked).
    ///
    /// # Errors
    /// When the checkpoint store fails.
    pub async fn checkpoint(&mut self) -> Result<Position, RelayError> {
        match self.checkpoint {
            Some(position) => Ok(position),
            None => {
                let position = self.checkpoints.load(&self.name).await?;
                self.checkpoint = Some(position);
                Ok(position)
            }
        }
    }

    /// Publishes up to `batch` events after the checkpoint, then saves the checkpoint. Returns
    /// at once with nothing published when the relay has caught up.
    ///
    /// # Errors
    /// When reading, publishing or saving fails; the checkpoint is then unchanged and the next
    /// call publishes the same events again.
    pub async fn run_once(&mut self, batch: usize) -> Result<RelayBatch, RelayError> {
        let after = self.checkpoint().await?;
        let events = self
            .store
            .read_all(after, batch.max(1))
            .await
            .map_err(|source| RelayError::Store { name: self.name.clone(), source })?;
        let Some(last) = events.last().map(|event| event.position) else {
            return Ok(RelayBatch { published: 0, checkpoint: after });
        };
        let published = events.len();
        let messages: Vec<BusMessage> = events.iter().map(BusMessage::from_event).collect();
        self.bus.publish(messages).await.map_err(|source| RelayError::Bus {
            name: self.name.clone(),
            after,
            source,
        })?;
        self.checkpoints.save(&self.name, last).await?;
        self.checkpoint = Some(last);
        Ok(RelayBatch { published, checkpoint: last })
    }

    /// Relays until `shutdown` completes: a full batch is followed by the next one at once; once
    /// caught up it waits for the poll interval (or an append, see [`wake_on`](Self::wake_on)).
    /// Transient failures are logged and retried with a doubling backoff; a batch in flight is
    /// finished before shutting down.
    ///
    /// # Errors
    /// The first failure that retrying cannot fix (a corrupt row, a message the bus refuses).
    pub async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), RelayError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = self.poll_interval;
        loop {
            let wait = match self.run_once(self.batch_size).await {
                Ok(batch) if batch.published == self.batch_size => {
                    backoff = self.poll_interval;
                    Duration::ZERO
                }
                Ok(_) => {
                    backoff = self.poll_interval;
                    self.poll_interval
                }
                Err(error) if error.is_transient() => {
                    tracing::warn!(relay = %self.name, %error, retry_in = ?backoff, "relay step failed");
                    let wait = backoff;
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), self.max_backoff);
                    wait
                }
                Err(error) => return Err(error),
            };
            let woken = async {
                match &mut self.wake {
                    Some(appends) => {
                        if appends.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(wait) => {}
                () = woken, if !wait.is_zero() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chrono::Utc;

    use super::*;
    use crate::bus::{InMemoryBus, Subscription};
    use crate::envelope::{EventMetadata, NewEvent};
    use crate::memory::InMemoryEventStore;
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

        let mut relay = Relay::new(store.clone(), flaky, checkpoints.clone());
        let error = relay.run_once(10).await.unwrap_err();
        assert!(error.is_transient(), "{error}");
        assert_eq!(checkpoints.load("relay").await.unwrap(), Position::START);

        let mut restarted = Relay::new(store.clone(), inner.clone(), checkpoints.clone());
        assert_eq!(restarted.run_once(10).await.unwrap().published, 7);
        assert_eq!(checkpoints.load("relay").await.unwrap(), Position::new(3, 2));
        assert_eq!(restarted.run_once(10).await.unwrap().published, 0);

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
    async fn run_relays_appends_as_they_happen_and_stops_on_shutdown() {
        let store = InMemoryEventStore::new();
        let bus = InMemoryBus::new();
        let mut subscription = bus.subscribe(None, &["a-events"]).await.unwrap();
        let mut relay = Relay::new(store.clone(), bus.clone(), InMemoryCheckpointStore::new())
            .poll_interval(Duration::from_secs(3600))
            .batch_size(2)
            .wake_on(store.subscribe_appends());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            relay
                .run(async {
                    let _ = stopped.await;
                })
                .await
        });
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
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}
