//! Consuming the event store's global log: a checkpointed reader, and the service that runs a
//! handler on it.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Checkpoint, EventHandler, Saved};
use crate::BoxError;
use crate::backoff::{Backoff, Failures};
use crate::checkpoint::{CheckpointError, CheckpointStore};
use crate::clock::{Clock, SystemClock};
use crate::envelope::RecordedEvent;
use crate::event_store::{Appends, EventStore, EventStoreError};
use crate::service::{Service, ServiceContext};
use crate::stream::Position;

/// A log consumer's step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError<E: std::error::Error + 'static> {
    /// Reading the global log (or its head) failed.
    #[error("consumer `{consumer}` could not read the event store: {source}")]
    Store {
        /// The consumer's checkpoint name.
        consumer: String,
        /// The store's error.
        #[source]
        source: EventStoreError,
    },
    /// Loading or saving the checkpoint failed.
    #[error("consumer `{consumer}`: {source}")]
    Checkpoint {
        /// The consumer's checkpoint name.
        consumer: String,
        /// The checkpoint store's error.
        #[source]
        source: CheckpointError,
    },
    /// The handler failed on the batch after `after`; the checkpoint stays before it.
    #[error("consumer `{consumer}` failed to handle the events after {after}: {source}")]
    Handler {
        /// The consumer's checkpoint name.
        consumer: String,
        /// The checkpoint the batch started after.
        after: Position,
        /// The handler's error.
        #[source]
        source: E,
    },
    /// Events committed up to `head` stayed out of the gap-safe log for `waited`: a transaction
    /// older than those commits has not finished (on PostgreSQL, any write transaction on the
    /// cluster).
    #[error(
        "consumer `{consumer}`: the global log stayed behind its head {head} (read up to \
         {reached}) for {waited:?}: a transaction older than those commits is still running in \
         the event store"
    )]
    Behind {
        /// The consumer's checkpoint name.
        consumer: String,
        /// The head to reach.
        head: Position,
        /// How far the log could be read.
        reached: Position,
        /// How long it waited without reading anything.
        waited: Duration,
    },
}

/// What the reader's own steps fail with: a [`ConsumerError`] that cannot be a handler's.
pub type ReadError = ConsumerError<Infallible>;

impl ReadError {
    /// The same error as one of a consumer whose handler fails with `E`.
    pub fn widen<E: std::error::Error + 'static>(self) -> ConsumerError<E> {
        match self {
            Self::Store { consumer, source } => ConsumerError::Store { consumer, source },
            Self::Checkpoint { consumer, source } => ConsumerError::Checkpoint { consumer, source },
            Self::Handler { source, .. } => match source {},
            Self::Behind { consumer, head, reached, waited } => {
                ConsumerError::Behind { consumer, head, reached, waited }
            }
        }
    }
}

impl<E: std::error::Error + 'static> ConsumerError<E> {
    /// Whether the store or the checkpoint store was unreachable, so that trying again may
    /// succeed. A handler's error is judged by [`EventHandler::is_retryable`].
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store { source, .. } => source.is_transient(),
            Self::Checkpoint { source, .. } => source.is_transient(),
            Self::Handler { .. } => false,
            Self::Behind { .. } => true,
        }
    }
}

/// Reads the global log after a named checkpoint, a batch at a time, gap-safe: the half of a
/// [`LogConsumer`] that knows where events come from. Useful on its own to read up to the head
/// ([`read_to_head`](Self::read_to_head)), or to drive a handler under another lifecycle (a
/// saga's [`run_until_idle`](crate::SagaRunner::run_until_idle)).
///
/// ```
/// use composable::checkpoint::InMemoryCheckpointStore;
/// use composable::consumer::LogReader;
/// # use composable::{EventMetadata, EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, StreamId};
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// # let event = || NewEvent {
/// #     event_id: uuid::Uuid::now_v7(), name: "thing.happened".into(), version: 1,
/// #     format: "raw".into(), payload: vec![], metadata: EventMetadata::new_flow(chrono::Utc::now()),
/// # };
/// let store = InMemoryEventStore::new();
/// store.append(&StreamId::new("thing", "1")?, ExpectedVersion::NoStream, vec![event(), event()]).await?;
///
/// let checkpoints = InMemoryCheckpointStore::new();
/// let mut reader = LogReader::new("audit", store.clone(), checkpoints.clone()).batch_size(1);
/// let first = reader.next_batch().await?;
/// assert_eq!(first.len(), 1);
/// reader.commit(first[0].position).await?;
/// assert_eq!(reader.read_to_head().await?.len(), 1, "the rest, up to the head");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct LogReader<S, K> {
    name: String,
    store: S,
    checkpoints: K,
    batch_size: usize,
    clock: Arc<dyn Clock>,
    settle_poll: Duration,
    settle_timeout: Duration,
    position: Option<Position>,
    /// Whether the store's wake-ups end its waits early.
    woken: bool,
    /// The handler answered [`Saved::Retired`]: its work has passed to a newer version.
    retired: bool,
}

impl<S, K> fmt::Debug for LogReader<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogReader")
            .field("name", &self.name)
            .field("batch_size", &self.batch_size)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl<S: EventStore, K: CheckpointStore> LogReader<S, K> {
    /// A reader of `store`'s log keeping its position in `checkpoints` as `name`; batches of up
    /// to 500 events; while the gap-safe log lags behind the head it looks again every 2 ms, for
    /// up to 30 s, on the system clock.
    pub fn new(name: impl Into<String>, store: S, checkpoints: K) -> Self {
        Self {
            name: name.into(),
            store,
            checkpoints,
            batch_size: 500,
            clock: Arc::new(SystemClock),
            settle_poll: Duration::from_millis(2),
            settle_timeout: Duration::from_secs(30),
            position: None,
            woken: true,
            retired: false,
        }
    }

    /// The most events in one batch (at least 1).
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Waits on `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How often to look again while the log lags behind the head, and for how long without
    /// reading anything before giving up with [`ConsumerError::Behind`].
    #[must_use]
    pub fn settle(mut self, poll: Duration, timeout: Duration) -> Self {
        self.settle_poll = poll;
        self.settle_timeout = timeout;
        self
    }

    /// Whether the store's wake-ups ([`EventStore::appends`]) end a wait early (by default
    /// they do); without them it only polls.
    #[must_use]
    pub fn woken_by_appends(mut self, woken: bool) -> Self {
        self.woken = woken;
        self
    }

    /// The store's wake-ups, or none when they were turned off.
    fn appends(&self) -> Appends {
        if self.woken { self.store.appends() } else { Appends::never() }
    }

    /// The checkpoint's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The event store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The checkpoint store.
    pub fn checkpoints(&self) -> &K {
        &self.checkpoints
    }

    /// Reads after `position` from now on, whatever the checkpoint says (until the next
    /// [`commit`](Self::commit) saves a position).
    #[must_use]
    pub fn starting_after(mut self, position: Position) -> Self {
        self.position = Some(position);
        self
    }

    /// The clock it waits on.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// The most events in one batch.
    pub fn max_batch(&self) -> usize {
        self.batch_size
    }

    /// The position after which it reads: the saved checkpoint, loaded once, then tracked.
    ///
    /// # Errors
    /// When the checkpoint store fails.
    pub async fn position<E: std::error::Error + 'static>(
        &mut self,
    ) -> Result<Position, ConsumerError<E>> {
        match self.position {
            Some(position) => Ok(position),
            None => {
                let position = self.checkpoints.load(&self.name).await.map_err(|source| {
                    ConsumerError::Checkpoint { consumer: self.name.clone(), source }
                })?;
                self.position = Some(position);
                Ok(position)
            }
        }
    }

    /// The next batch after the position, empty when there is none yet. The position does not
    /// move until [`commit`](Self::commit).
    ///
    /// # Errors
    /// When the store or the checkpoint store fails.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, ReadError> {
        let after = self.position().await?;
        self.store
            .read_all(after, self.batch_size)
            .await
            .map_err(|source| ConsumerError::Store { consumer: self.name.clone(), source })
    }

    /// Saves `position` (the last event handled) as the checkpoint; the next batch starts after
    /// it.
    ///
    /// # Errors
    /// When the checkpoint store fails; the position is then unchanged.
    pub async fn commit(&mut self, position: Position) -> Result<(), ReadError> {
        if self.position == Some(position) {
            return Ok(());
        }
        self.checkpoints
            .save(&self.name, position)
            .await
            .map_err(|source| ConsumerError::Checkpoint { consumer: self.name.clone(), source })?;
        self.position = Some(position);
        Ok(())
    }

    /// Whether the handler answered [`Saved::Retired`]: its work has passed to a newer version
    /// of it, and the reader reads no further.
    pub fn is_retired(&self) -> bool {
        self.retired
    }

    /// The store's committed head.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn head(&self) -> Result<Position, ReadError> {
        self.store
            .head()
            .await
            .map_err(|source| ConsumerError::Store { consumer: self.name.clone(), source })
    }

    /// Every event after the position up to the head as it is now, committing as it goes,
    /// waiting while the gap-safe log holds committed events back (the last batch may go past
    /// the head).
    ///
    /// # Errors
    /// When the store or the checkpoint store fails, or [`ConsumerError::Behind`] when the log
    /// stayed behind the head for the settle timeout.
    pub async fn read_to_head(&mut self) -> Result<Vec<RecordedEvent>, ReadError> {
        let mut events = Vec::new();
        self.handle_to_head(&mut async |batch: &[RecordedEvent]| {
            events.extend_from_slice(batch);
            Ok::<(), Infallible>(())
        })
        .await?;
        Ok(events)
    }

    /// Hands every batch after the position, up to the head as it is now, to `handle`,
    /// committing after each; waits while the gap-safe log holds committed events back. Returns
    /// how many events it read.
    ///
    /// # Errors
    /// The first failure of the store, the checkpoint store or `handle` (the checkpoint stays
    /// before that batch), or [`ConsumerError::Behind`] after the settle timeout.
    pub async fn handle_to_head<E, F>(&mut self, handle: &mut F) -> Result<usize, ConsumerError<E>>
    where
        E: std::error::Error + 'static,
        F: AsyncFnMut(&[RecordedEvent]) -> Result<(), E>,
    {
        self.handle_to_head_at(&mut async |_at: Checkpoint<'_>, batch: &[RecordedEvent]| {
            handle(batch).await.map(|()| Saved::ByConsumer)
        })
        .await
    }

    /// [`handle_to_head`](Self::handle_to_head) for a handler that may save the checkpoint
    /// itself ([`EventHandler::handle_at`]): `handle` gets each batch with where it sits and
    /// says who saved the checkpoint.
    ///
    /// # Errors
    /// As [`handle_to_head`](Self::handle_to_head).
    pub async fn handle_to_head_at<E, F>(
        &mut self,
        handle: &mut F,
    ) -> Result<usize, ConsumerError<E>>
    where
        E: std::error::Error + 'static,
        F: AsyncFnMut(Checkpoint<'_>, &[RecordedEvent]) -> Result<Saved, E>,
    {
        // Subscribed before the head is read, so the commit that closes a gap wakes the wait.
        let mut appends = self.appends();
        let head = self.head().await.map_err(ReadError::widen)?;
        let mut read = 0;
        // Time spent lagging, added up pass by pass so a step of the wall clock costs one pass.
        let mut lagging: Option<(Duration, chrono::DateTime<chrono::Utc>)> = None;
        loop {
            let after = self.position().await.map_err(ReadError::widen)?;
            if after >= head || self.retired {
                return Ok(read);
            }
            let batch = self.next_batch().await.map_err(ReadError::widen)?;
            let Some(last) = batch.last().map(|event| event.position) else {
                let now = self.clock.now();
                let waited = match lagging {
                    Some((waited, last)) => waited + (now - last).to_std().unwrap_or_default(),
                    None => Duration::ZERO,
                };
                lagging = Some((waited, now));
                if waited >= self.settle_timeout {
                    return Err(ConsumerError::Behind {
                        consumer: self.name.clone(),
                        head,
                        reached: after,
                        waited,
                    });
                }
                tokio::select! {
                    () = appends.changed() => {}
                    () = self.clock.sleep(self.settle_poll) => {}
                }
                continue;
            };
            lagging = None;
            let at = Checkpoint { name: &self.name, after, to: last };
            let saved = handle(at, &batch).await.map_err(|source| ConsumerError::Handler {
                consumer: self.name.clone(),
                after,
                source,
            })?;
            if matches!(saved, Saved::ByConsumer | Saved::ByHandler) {
                read += batch.len();
            }
            self.saved(saved, &batch).await.map_err(ReadError::widen)?;
            if saved == Saved::Retired {
                return Ok(read);
            }
        }
    }

    /// Moves on after `batch` (not empty), as the handler said the checkpoint was saved.
    async fn saved(&mut self, saved: Saved, batch: &[RecordedEvent]) -> Result<(), ReadError> {
        let Some(last) = batch.last() else {
            return Ok(());
        };
        if matches!(saved, Saved::ByConsumer | Saved::ByHandler) {
            let now = self.clock.now();
            crate::metrics::consumer_handled(&self.name, batch.len(), last.recorded_at, now);
        }
        let last = last.position;
        match saved {
            Saved::ByConsumer => self.commit(last).await,
            Saved::ByHandler => {
                self.position = Some(last);
                Ok(())
            }
            Saved::Moved => {
                // Read the checkpoint again: whoever moved it decides where this one resumes.
                self.position = None;
                Ok(())
            }
            Saved::Retired => {
                self.retired = true;
                Ok(())
            }
        }
    }
}

/// An [`EventHandler`] fed from the global log as a [`Service`]: see the [module
/// docs](super).
///
/// Its loop: read a batch after the checkpoint, hand it to the handler, save the checkpoint, and
/// go on at once while batches come back full — reading the next batch while the handler works
/// on a full one, so that a handler waiting on I/O (the relay on the broker) and the store's
/// read overlap. Once a batch comes back short it compares its
/// position with the committed head: behind (the gap-safe log is holding recent commits back)
/// it looks again at the next wake-up (the commit that closes the gap sends one) or after the
/// settle poll; caught up, it reports so and waits for the store's
/// next wake-up ([`EventStore::appends`]) or the poll interval, whichever comes first. A failure
/// is retried with the back-off; a handler error that is not retryable, or one that outlasts the
/// back-off's attempts, stops the service with that error. When asked to stop, it finishes the
/// batch in hand.
///
/// ```
/// use composable::checkpoint::InMemoryCheckpointStore;
/// use composable::consumer::{EventHandler, LogConsumer};
/// use composable::service;
/// # use composable::{EventMetadata, EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, RecordedEvent, StreamId};
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// # let event = || NewEvent {
/// #     event_id: uuid::Uuid::now_v7(), name: "thing.happened".into(), version: 1,
/// #     format: "raw".into(), payload: vec![], metadata: EventMetadata::new_flow(chrono::Utc::now()),
/// # };
/// struct Count(tokio::sync::watch::Sender<usize>);
///
/// impl EventHandler for Count {
///     type Error = std::convert::Infallible;
///     async fn handle(&mut self, events: &[RecordedEvent]) -> Result<(), Self::Error> {
///         self.0.send_modify(|count| *count += events.len());
///         Ok(())
///     }
/// }
///
/// let store = InMemoryEventStore::new();
/// let (count, mut counted) = tokio::sync::watch::channel(0);
/// let consumer = LogConsumer::new("counter", store.clone(), InMemoryCheckpointStore::new(), Count(count));
/// let handle = service::spawn(consumer);
/// store.append(&StreamId::new("thing", "1")?, ExpectedVersion::NoStream, vec![event(), event()]).await?;
/// counted.wait_for(|count| *count == 2).await?;
/// handle.stop().await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct LogConsumer<S, K, H> {
    reader: LogReader<S, K>,
    handler: H,
    poll_interval: Duration,
    backoff: Backoff,
    claim: Option<Claim>,
}

/// A consumer's claim on its checkpoint's work: see [`LogConsumer::claimed`].
#[derive(Debug, Clone, Copy)]
struct Claim {
    holder: uuid::Uuid,
    ttl: Duration,
    /// When it was last taken or renewed, while held.
    renewed: Option<std::time::Instant>,
}

impl Claim {
    /// How often a held claim is renewed, and a standby looks again.
    fn every(&self) -> Duration {
        self.ttl / 3
    }
}

impl<S, K, H> fmt::Debug for LogConsumer<S, K, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogConsumer")
            .field("reader", &self.reader)
            .field("poll_interval", &self.poll_interval)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl<S: EventStore, K: CheckpointStore, H: EventHandler> LogConsumer<S, K, H> {
    /// `handler` fed from `store`'s log after the checkpoint `name` in `checkpoints`; batches of
    /// up to 500 events, polling every second when no wake-up comes, retrying failures from
    /// 10 ms doubling up to 5 s, without a limit.
    pub fn new(name: impl Into<String>, store: S, checkpoints: K, handler: H) -> Self {
        Self::from_reader(LogReader::new(name, store, checkpoints), handler)
    }

    /// `handler` fed by `reader`.
    pub fn from_reader(reader: LogReader<S, K>, handler: H) -> Self {
        Self {
            reader,
            handler,
            poll_interval: Duration::from_secs(1),
            backoff: Backoff::exponential(Duration::from_millis(10))
                .max_delay(Duration::from_secs(5))
                .jitter(0.2),
            claim: None,
        }
    }

    /// Runs only while `holder` holds the claim on the checkpoint's work
    /// ([`CheckpointStore::claim`]), renewing it every third of `ttl`: run in several
    /// processes, one handles the log and the others stand by ([`Health::standby`](crate::service::Health::standby)),
    /// taking over from the checkpoint once its claim lapses — `ttl` after its last renewal, so
    /// a process killed mid-batch is replaced within `ttl`. A batch that takes longer than `ttl`
    /// may be handled again by the next holder (handlers are idempotent, as for any
    /// redelivery). Stopping releases the claim. [`run_once`](Self::run_once) and
    /// [`catch_up`](Self::catch_up) do not claim.
    #[must_use]
    pub fn claimed(mut self, holder: uuid::Uuid, ttl: Duration) -> Self {
        self.claim = Some(Claim { holder, ttl, renewed: None });
        self
    }

    /// The most events handed to the handler at once (at least 1).
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.reader = self.reader.batch_size(batch_size);
        self
    }

    /// How long to wait for a wake-up before looking anyway once caught up: the delay a missed
    /// wake-up (or a store that cannot wake) costs at most.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How failures are retried.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Whether the store's wake-ups ([`EventStore::appends`]) end a wait early (by default
    /// they do); without them the consumer only polls. For measuring what the wake-ups save.
    #[must_use]
    pub fn woken_by_appends(mut self, woken: bool) -> Self {
        self.reader = self.reader.woken_by_appends(woken);
        self
    }

    /// Waits (polls, back-offs, settling) on `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.reader = self.reader.with_clock(clock);
        self
    }

    /// The reader.
    pub fn reader(&mut self) -> &mut LogReader<S, K> {
        &mut self.reader
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, given back: to feed it from elsewhere once the log is caught up with (a
    /// projection that follows the bus from there).
    pub fn into_handler(self) -> H {
        self.handler
    }

    /// Handles one batch after the checkpoint and saves the checkpoint after it: the number of
    /// events handled, 0 when there was nothing new.
    ///
    /// # Errors
    /// When reading, handling or saving fails; the checkpoint then stays where it was, and the
    /// next call hands the handler the same events again.
    pub async fn run_once(&mut self) -> Result<usize, ConsumerError<H::Error>> {
        self.step(&mut None, false).await
    }

    /// Handles batch after batch — reading the next one while the handler works on a full
    /// one, as the running service does — until a batch comes back short, then what the
    /// gap-safe log still held back, up to the head ([`catch_up`](Self::catch_up)). `progress`
    /// gets the number of events of each batch handled. Returns how many events it read.
    ///
    /// # Errors
    /// As [`catch_up`](Self::catch_up); the checkpoint stays after the last batch handled.
    pub async fn drain(
        &mut self,
        mut progress: impl FnMut(usize) + Send,
    ) -> Result<usize, ConsumerError<H::Error>> {
        let (mut ahead, mut read) = (None, 0);
        loop {
            let handled = self.step(&mut ahead, true).await?;
            if handled > 0 {
                read += handled;
                progress(handled);
            }
            if handled < self.reader.batch_size {
                break;
            }
        }
        let rest = self.catch_up().await?;
        if rest > 0 {
            progress(rest);
        }
        Ok(read + rest)
    }

    /// One batch: `ahead`, or the next one read now, handled and checkpointed. With
    /// `read_ahead`, a full batch is handled while the next one is read, and `ahead` keeps that
    /// read for the next step; a batch read ahead is used only once the one before it is handled
    /// and checkpointed.
    async fn step(
        &mut self,
        ahead: &mut Option<Vec<RecordedEvent>>,
        read_ahead: bool,
    ) -> Result<usize, ConsumerError<H::Error>> {
        let after = self.reader.position().await.map_err(ReadError::widen)?;
        let batch = match ahead.take() {
            Some(batch) => batch,
            None => self.reader.next_batch().await.map_err(ReadError::widen)?,
        };
        let Some(last) = batch.last().map(|event| event.position) else {
            return Ok(0);
        };
        let at = Checkpoint { name: &self.reader.name, after, to: last };
        // A batch may take longer than the claim lasts (a saga's step waiting on replies): the
        // claim is renewed while it runs, so that no standby takes the same work over meanwhile.
        let handling = keeping_claim(
            self.handler.handle_at(at, &batch),
            self.claim,
            &self.reader.checkpoints,
            &self.reader.name,
            &*self.reader.clock,
        );
        let (handled, next) = if read_ahead && batch.len() == self.reader.batch_size {
            let next = self.reader.store.read_all(last, self.reader.batch_size);
            let (handled, next) = tokio::join!(handling, next);
            (handled, next.ok())
        } else {
            (handling.await, None)
        };
        let saved = handled.map_err(|source| ConsumerError::Handler {
            consumer: self.reader.name.clone(),
            after,
            source,
        })?;
        self.reader.saved(saved, &batch).await.map_err(ReadError::widen)?;
        if matches!(saved, Saved::Moved | Saved::Retired) {
            return Ok(0);
        }
        // A failed read ahead is not an error: the next step reads again.
        *ahead = next.filter(|next| !next.is_empty());
        Ok(batch.len())
    }

    /// Handles everything committed up to the head as it is now (see
    /// [`LogReader::handle_to_head`]); the number of events read.
    ///
    /// # Errors
    /// As [`LogReader::handle_to_head`].
    pub async fn catch_up(&mut self) -> Result<usize, ConsumerError<H::Error>> {
        let handler = &mut self.handler;
        let read = self
            .reader
            .handle_to_head_at(&mut async |at: Checkpoint<'_>, batch: &[RecordedEvent]| {
                handler.handle_at(at, batch).await
            })
            .await?;
        self.reached_head().await?;
        Ok(read)
    }

    /// Tells the handler it has caught up with the head (unless it retired).
    async fn reached_head(&mut self) -> Result<(), ConsumerError<H::Error>> {
        if self.reader.retired {
            return Ok(());
        }
        let at = self.reader.position.unwrap_or(Position::START);
        self.handler.caught_up(at).await.map_err(|source| ConsumerError::Handler {
            consumer: self.reader.name.clone(),
            after: at,
            source,
        })?;
        crate::metrics::consumer_caught_up(&self.reader.name);
        Ok(())
    }

    fn retryable(&self, error: &ConsumerError<H::Error>) -> bool {
        match error {
            ConsumerError::Handler { source, .. } => self.handler.is_retryable(source),
            other => other.is_transient(),
        }
    }

    /// Runs the loop described on the type until `context` asks it to stop.
    ///
    /// # Errors
    /// The first failure it may not retry.
    pub async fn run_until_stopped(
        &mut self,
        context: &mut ServiceContext,
    ) -> Result<(), ConsumerError<H::Error>> {
        self.run_loop(context, false).await.map(|_| ())
    }

    /// Runs the loop described on the type until it has caught up with the head (`true`: the
    /// handler's [`caught_up`](EventHandler::caught_up) was called), or until `context` asks it
    /// to stop or the handler retires (`false`).
    ///
    /// # Errors
    /// The first failure it may not retry.
    pub async fn run_until_caught_up(
        &mut self,
        context: &mut ServiceContext,
    ) -> Result<bool, ConsumerError<H::Error>> {
        self.run_loop(context, true).await
    }

    /// The loop; with `until_caught_up`, it returns once caught up.
    async fn run_loop(
        &mut self,
        context: &mut ServiceContext,
        until_caught_up: bool,
    ) -> Result<bool, ConsumerError<H::Error>> {
        let mut caught_up = false;
        let mut appends = self.reader.appends();
        let clock = Arc::clone(&self.reader.clock);
        let mut failures = Failures::new(self.backoff);
        let mut ahead = None;
        while !context.stop_requested() && !self.reader.retired {
            match self.hold_claim(&mut failures).await? {
                Holding::Yes => {}
                Holding::Lost => {
                    // Another holder moves the checkpoint on: read it again when back.
                    ahead = None;
                    self.reader.position = None;
                    context.standby();
                    tokio::select! {
                        biased;
                        () = context.stopped() => {}
                        () = clock.sleep(self.claim.map_or(self.poll_interval, |claim| claim.every())) => {}
                    }
                    continue;
                }
                Holding::Retry(wait) => {
                    tokio::select! {
                        biased;
                        () = context.stopped() => {}
                        () = clock.sleep(wait) => {}
                    }
                    continue;
                }
            }
            let mut lagging = false;
            let wait = match self.step(&mut ahead, true).await {
                Ok(handled) if handled == self.reader.batch_size => {
                    failures.succeeded();
                    context.behind(self.reader.position);
                    continue;
                }
                Ok(_) => {
                    failures.succeeded();
                    let head = self.reader.head().await;
                    match head {
                        Ok(head) if self.reader.position.unwrap_or(Position::START) < head => {
                            context.behind(self.reader.position);
                            lagging = true;
                            Some(self.reader.settle_poll)
                        }
                        Ok(_) => match self.reached_head().await {
                            Ok(()) => {
                                context.caught_up(self.reader.position);
                                if until_caught_up {
                                    caught_up = true;
                                    break;
                                }
                                None
                            }
                            Err(error) => self.failed(error, &mut failures)?,
                        },
                        Err(error) => self.failed(error.widen(), &mut failures)?,
                    }
                }
                Err(error) => self.failed(error, &mut failures)?,
            };
            match wait {
                // Behind the head (the commit closing the gap wakes it) or retrying.
                Some(delay) => tokio::select! {
                    biased;
                    () = context.stopped() => {}
                    () = appends.changed(), if lagging => {}
                    () = clock.sleep(delay) => {}
                },
                None => tokio::select! {
                    biased;
                    () = context.stopped() => {}
                    () = appends.changed() => {}
                    () = clock.sleep(self.poll_interval) => {}
                    // A held claim is renewed even while nothing happens.
                    () = clock.sleep(self.claim.map_or(self.poll_interval, |claim| claim.every())) => {}
                },
            }
        }
        if self.reader.retired {
            tracing::info!(
                consumer = %self.reader.name,
                "retired: a newer version of the handler has taken its work over"
            );
        }
        if let Some(claim) = self.claim.filter(|claim| claim.renewed.is_some())
            && let Err(error) =
                self.reader.checkpoints.release(&self.reader.name, claim.holder).await
        {
            // It lapses on its own after its ttl.
            tracing::warn!(consumer = %self.reader.name, %error, "could not release the claim");
        }
        Ok(caught_up)
    }

    /// Takes or renews the claim when one is asked for and due.
    async fn hold_claim(
        &mut self,
        failures: &mut Failures,
    ) -> Result<Holding, ConsumerError<H::Error>> {
        let Some(claim) = self.claim else {
            return Ok(Holding::Yes);
        };
        if claim.renewed.is_some_and(|renewed| renewed.elapsed() < claim.every()) {
            return Ok(Holding::Yes);
        }
        let claimed =
            self.reader.checkpoints.claim(&self.reader.name, claim.holder, claim.ttl).await;
        let held = match claimed {
            Ok(held) => held,
            Err(source) => {
                let error =
                    ConsumerError::Checkpoint { consumer: self.reader.name.clone(), source };
                let wait = self.failed(error, failures)?.unwrap_or(claim.every());
                return Ok(Holding::Retry(wait));
            }
        };
        let was_held = claim.renewed.is_some();
        self.claim = Some(Claim { renewed: held.then(std::time::Instant::now), ..claim });
        if held && !was_held {
            // Taken (over): start from the checkpoint as the last holder left it.
            self.reader.position = None;
            tracing::info!(consumer = %self.reader.name, "claimed the consumer's work");
        }
        Ok(if held { Holding::Yes } else { Holding::Lost })
    }

    /// The wait before retrying `error`, or the error when it may not be retried.
    fn failed(
        &self,
        error: ConsumerError<H::Error>,
        failures: &mut Failures,
    ) -> Result<Option<Duration>, ConsumerError<H::Error>> {
        let wait = match failures.failed() {
            Some(wait) if self.retryable(&error) => wait,
            _ => {
                crate::metrics::consumer_failed(&self.reader.name, false);
                return Err(error);
            }
        };
        crate::metrics::consumer_failed(&self.reader.name, true);
        tracing::warn!(consumer = %self.reader.name, %error, retry_in = ?wait, "consumer step failed");
        Ok(Some(wait))
    }
}

/// Runs `work` while renewing `claim` (when held) every [`Claim::every`] on `clock`. A renewal
/// that finds the claim taken, or that fails, is logged: the work in hand still finishes, and
/// the next [`LogConsumer::hold_claim`] acts on what it finds.
async fn keeping_claim<F: Future, K: CheckpointStore>(
    work: F,
    claim: Option<Claim>,
    checkpoints: &K,
    name: &str,
    clock: &dyn Clock,
) -> F::Output {
    let Some(claim) = claim.filter(|claim| claim.renewed.is_some()) else {
        return work.await;
    };
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            biased;
            output = &mut work => return output,
            () = clock.sleep(claim.every()) => {
                match checkpoints.claim(name, claim.holder, claim.ttl).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(
                        consumer = name,
                        "another process took the claim while a batch was in hand"
                    ),
                    Err(error) => tracing::warn!(
                        consumer = name, %error, "could not renew the claim while handling a batch"
                    ),
                }
            }
        }
    }
}

/// Whether a claimed consumer may work now.
enum Holding {
    /// It holds its claim (or needs none).
    Yes,
    /// Another holder has it.
    Lost,
    /// Claiming failed; try again after this.
    Retry(Duration),
}

impl<S: EventStore, K: CheckpointStore, H: EventHandler> Service for LogConsumer<S, K, H> {
    fn name(&self) -> String {
        self.reader.name.clone()
    }

    async fn run(mut self, mut context: ServiceContext) -> Result<(), BoxError> {
        self.run_until_stopped(&mut context).await.map_err(BoxError::from)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chrono::Utc;

    use super::*;
    use crate::checkpoint::InMemoryCheckpointStore;
    use crate::envelope::{EventMetadata, NewEvent};
    use crate::event_store::InMemoryEventStore;
    use crate::service::{self, ServiceState};
    use crate::stream::{ExpectedVersion, StreamId};
    use crate::testing::read_all_to_head;

    fn events(count: usize) -> Vec<NewEvent> {
        (0..count)
            .map(|_| NewEvent {
                event_id: uuid::Uuid::now_v7(),
                name: "thing.happened".into(),
                version: 1,
                format: "raw".into(),
                payload: vec![],
                metadata: EventMetadata::new_flow(Utc::now()),
            })
            .collect()
    }

    #[derive(Debug, thiserror::Error)]
    #[error("handler refused: {0}")]
    struct Refused(&'static str);

    /// Records what it handled; fails the first `failures` batches.
    #[derive(Clone, Default)]
    struct Recorder {
        seen: Arc<Mutex<Vec<Position>>>,
        failures: Arc<AtomicUsize>,
        fatal: bool,
    }

    impl EventHandler for Recorder {
        type Error = Refused;

        async fn handle(&mut self, events: &[RecordedEvent]) -> Result<(), Refused> {
            if self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(Refused("not now"));
            }
            self.seen.lock().unwrap().extend(events.iter().map(|event| event.position));
            Ok(())
        }

        fn is_retryable(&self, _: &Refused) -> bool {
            !self.fatal
        }
    }

    #[tokio::test]
    async fn a_consumer_handles_each_event_once_in_order_and_resumes_from_its_checkpoint() {
        let store = InMemoryEventStore::new();
        let stream = StreamId::new("a", 1).unwrap();
        store.append(&stream, ExpectedVersion::Any, events(5)).await.unwrap();
        let checkpoints = InMemoryCheckpointStore::new();
        let recorder = Recorder::default();
        let mut consumer =
            LogConsumer::new("recorder", store.clone(), checkpoints.clone(), recorder.clone())
                .batch_size(2);
        assert_eq!(consumer.run_once().await.unwrap(), 2);
        assert_eq!(consumer.catch_up().await.unwrap(), 3);
        store.append(&stream, ExpectedVersion::Any, events(1)).await.unwrap();

        let mut restarted =
            LogConsumer::new("recorder", store.clone(), checkpoints, recorder.clone());
        assert_eq!(restarted.run_once().await.unwrap(), 1);
        let all: Vec<Position> =
            read_all_to_head(&store, Position::START).await.iter().map(|e| e.position).collect();
        assert_eq!(*recorder.seen.lock().unwrap(), all);
    }

    #[tokio::test]
    async fn a_running_consumer_is_woken_by_appends_not_by_its_poll() {
        let store = InMemoryEventStore::new();
        let recorder = Recorder::default();
        let consumer = LogConsumer::new(
            "woken",
            store.clone(),
            InMemoryCheckpointStore::new(),
            recorder.clone(),
        )
        .poll_interval(Duration::from_secs(3600));
        let mut handle = service::spawn(consumer);
        handle.wait_until(|health| health.caught_up).await;
        let stream = StreamId::new("a", 1).unwrap();
        let appended = store.append(&stream, ExpectedVersion::Any, events(3)).await.unwrap();
        let health = tokio::time::timeout(
            Duration::from_secs(5),
            handle.wait_until(|health| health.position == Some(appended.last_position)),
        )
        .await
        .expect("woken long before the hour-long poll");
        assert!(health.caught_up);
        assert_eq!(recorder.seen.lock().unwrap().len(), 3);
        handle.stop().await.unwrap();
    }

    #[tokio::test]
    async fn of_two_claimed_consumers_one_works_and_the_other_takes_over_when_it_stops() {
        let store = InMemoryEventStore::new();
        let checkpoints = InMemoryCheckpointStore::new();
        let ttl = Duration::from_millis(150);
        let (first, second) = (Recorder::default(), Recorder::default());
        let consumer = |recorder: &Recorder| {
            LogConsumer::new("claimed", store.clone(), checkpoints.clone(), recorder.clone())
                .claimed(uuid::Uuid::now_v7(), ttl)
        };
        let mut active = service::spawn(consumer(&first));
        active.wait_until(|health| health.caught_up).await;
        let mut standby = service::spawn(consumer(&second));
        standby.wait_until(|health| health.standby).await;

        let stream = StreamId::new("a", 1).unwrap();
        let appended = store.append(&stream, ExpectedVersion::Any, events(3)).await.unwrap();
        active.wait_until(|health| health.position == Some(appended.last_position)).await;
        assert_eq!(first.seen.lock().unwrap().len(), 3);
        assert!(standby.health().standby, "the standby stays out of it");

        // Stopping releases the claim: the standby carries on from the checkpoint.
        active.stop().await.unwrap();
        let appended = store.append(&stream, ExpectedVersion::Any, events(2)).await.unwrap();
        let health = tokio::time::timeout(
            Duration::from_secs(5),
            standby.wait_until(|health| health.position == Some(appended.last_position)),
        )
        .await
        .expect("the standby took over");
        assert!(!health.standby);
        assert_eq!(second.seen.lock().unwrap().len(), 2, "only what came after the checkpoint");
        let claims = checkpoints.claim("claimed", uuid::Uuid::now_v7(), ttl).await.unwrap();
        assert!(!claims, "the new holder keeps renewing its claim");
        standby.stop().await.unwrap();
        assert!(checkpoints.claim("claimed", uuid::Uuid::now_v7(), ttl).await.unwrap(), "released");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn failures_back_off_on_the_clock_and_a_fatal_one_stops_the_service() {
        let clock = crate::TestClock::new();
        let store = InMemoryEventStore::new();
        let stream = StreamId::new("a", 1).unwrap();
        store.append(&stream, ExpectedVersion::Any, events(1)).await.unwrap();
        let recorder = Recorder { failures: Arc::new(AtomicUsize::new(2)), ..Recorder::default() };
        let consumer = LogConsumer::new(
            "retrying",
            store.clone(),
            InMemoryCheckpointStore::new(),
            recorder.clone(),
        )
        .backoff(Backoff::exponential(Duration::from_secs(10)))
        .with_clock(clock.clone());
        let mut handle = service::spawn(consumer);
        clock.advance(Duration::from_secs(9)).await;
        assert!(recorder.seen.lock().unwrap().is_empty(), "first retry after 10 s");
        clock.advance(Duration::from_secs(1 + 20)).await;
        let health = handle.wait_until(|health| health.caught_up).await;
        assert_eq!(health.state, ServiceState::Running);
        assert_eq!(recorder.seen.lock().unwrap().len(), 1);
        handle.stop().await.unwrap();

        let fatal = Recorder {
            failures: Arc::new(AtomicUsize::new(1)),
            fatal: true,
            ..Recorder::default()
        };
        let consumer = LogConsumer::new("fatal", store, InMemoryCheckpointStore::new(), fatal);
        let error = service::spawn(consumer).join().await.unwrap_err();
        assert!(error.to_string().contains("handler refused: not now"), "{error}");
    }

    /// Fails its `fail_at`-th call (from 1); records what it handled.
    struct FailsOnce {
        calls: usize,
        fail_at: usize,
        seen: Arc<Mutex<Vec<Position>>>,
    }

    impl EventHandler for FailsOnce {
        type Error = Refused;

        async fn handle(&mut self, events: &[RecordedEvent]) -> Result<(), Refused> {
            self.calls += 1;
            if self.calls == self.fail_at {
                return Err(Refused("the second batch, once"));
            }
            self.seen.lock().unwrap().extend(events.iter().map(|event| event.position));
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_batch_read_ahead_is_dropped_when_the_one_before_it_fails() {
        let store = InMemoryEventStore::new();
        let stream = StreamId::new("a", 1).unwrap();
        store.append(&stream, ExpectedVersion::Any, events(7)).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler = FailsOnce { calls: 0, fail_at: 2, seen: Arc::clone(&seen) };
        let consumer =
            LogConsumer::new("ahead", store.clone(), InMemoryCheckpointStore::new(), handler)
                .batch_size(2)
                .backoff(Backoff::immediate(5));
        let mut handle = service::spawn(consumer);
        let head = store.head().await.unwrap();
        let health = tokio::time::timeout(
            Duration::from_secs(5),
            handle.wait_until(|health| health.caught_up && health.position == Some(head)),
        )
        .await
        .unwrap();
        assert_eq!(health.state, ServiceState::Running);
        let all: Vec<Position> =
            read_all_to_head(&store, Position::START).await.iter().map(|e| e.position).collect();
        assert_eq!(*seen.lock().unwrap(), all, "each event once, in order, none skipped");
        handle.stop().await.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn read_to_head_reports_a_log_that_never_reaches_its_head() {
        let inner = InMemoryEventStore::new();
        inner
            .append(&StreamId::new("a", 1).unwrap(), ExpectedVersion::Any, events(1))
            .await
            .unwrap();
        let clock = crate::TestClock::new();
        // Its head is ahead of anything its log shows.
        let stuck = crate::testing::HookedStore::new(inner).filter_reads(|_| Vec::new());
        let mut reader = LogReader::new("stuck", stuck, InMemoryCheckpointStore::new())
            .settle(Duration::from_millis(5), Duration::from_secs(1))
            .with_clock(clock.clone());
        let (outcome, ()) =
            tokio::join!(reader.read_to_head(), clock.advance(Duration::from_secs(2)));
        let error = outcome.unwrap_err();
        assert!(
            matches!(error, ConsumerError::Behind { waited, .. } if waited >= Duration::from_secs(1)),
            "{error}"
        );
    }
}
