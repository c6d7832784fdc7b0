//! Projections that follow the bus: the relay's events, delivered at least once and ordered by
//! stream only, applied once each because the read store keeps — with the read model, in the
//! same commit — the version of every stream the projection has applied.
//!
//! [`ProjectionRunner::from_bus`] builds the service: it catches up from the log first (fast,
//! in batches, with the checkpoint), then follows the topics in the projection's own consumer
//! group, where several processes share the partitions. A delivery the bus makes again — after
//! a crash, a rebalance, a redelivery — finds its stream's version applied and changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{Projection, ProjectionError, ProjectionRunner, ReadStore, RunnerError};
use crate::BoxError;
use crate::backoff::Backoff;
use crate::bus::{BusMessage, EventBus};
use crate::clock::{Clock, SystemClock};
use crate::codec::Codec;
use crate::consumer::{
    BusConsumer, Checkpoint, EventHandler, LogConsumer, MessageHandler, OnError, Saved,
};
use crate::envelope::RecordedEvent;
use crate::event::EventSet;
use crate::event_store::EventStore;
use crate::metrics;
use crate::service::{Service, ServiceContext};
use crate::stream::{Position, Version};

/// A read store that keeps, for each version of a projection, the version of every stream it
/// has applied, and moves it with each batch: what lets a projection follow the bus, where a
/// delivery may come twice and streams interleave in any order
/// ([`ProjectionRunner::from_bus`]). The in-memory, PostgreSQL, Redis and cached stores keep
/// them.
pub trait StreamGuards: ReadStore {
    /// The versions of `streams` that the batch's version of its projection has applied, as
    /// `batch` sees them; a stream it never applied is absent.
    fn applied(
        batch: &mut Self::Batch,
        streams: &[&str],
    ) -> impl Future<Output = Result<BTreeMap<String, Version>, Self::Error>> + Send;

    /// Notes in `batch` that it applies stream `stream` up to version `to`, from `from` (what
    /// [`applied`](Self::applied) read; `None`: nothing yet). Its commit moves the stream's
    /// version with everything else — or, when the stream's version is no longer `from`
    /// (another consumer applied it meanwhile), applies nothing and answers [`Saved::Moved`].
    fn guard(batch: &mut Self::Batch, stream: &str, from: Option<Version>, to: Version);
}

/// Which of the candidate events a batch applies: a bus-fed runner's guard. Indexes into the
/// events given, in their order.
pub(super) type Fresh<S> = for<'a> fn(
    &'a mut <S as ReadStore>::Batch,
    &'a [&'a RecordedEvent],
)
    -> BoxFuture<'a, Result<Vec<usize>, <S as ReadStore>::Error>>;

/// The events of `events` that their streams have not applied yet, guarding each of their
/// streams in `batch` from the version it had to the newest one kept.
fn fresh<'a, S: StreamGuards>(
    batch: &'a mut S::Batch,
    events: &'a [&'a RecordedEvent],
) -> BoxFuture<'a, Result<Vec<usize>, S::Error>> {
    Box::pin(async move {
        let streams: BTreeSet<&str> = events.iter().map(|event| event.stream_id.as_str()).collect();
        if streams.is_empty() {
            return Ok(Vec::new());
        }
        let streams: Vec<&str> = streams.into_iter().collect();
        let applied = S::applied(batch, &streams).await?;
        let mut newest: BTreeMap<&str, Version> = BTreeMap::new();
        let mut kept = Vec::new();
        for (index, event) in events.iter().enumerate() {
            let stream = event.stream_id.as_str();
            let seen = newest.get(stream).or_else(|| applied.get(stream)).copied();
            if seen.is_some_and(|seen| event.stream_version <= seen) {
                continue;
            }
            newest.insert(stream, event.stream_version);
            kept.push(index);
        }
        for (stream, to) in newest {
            S::guard(batch, stream, applied.get(stream).copied(), to);
        }
        Ok(kept)
    })
}

/// A projection's runner that guards every stream ([`StreamGuards`]): fed from the log (with
/// its checkpoint) and then from the bus, each event takes effect once. What
/// [`ProjectionFromBus`] runs.
pub struct Guarded<P: Projection, C> {
    runner: ProjectionRunner<P, C>,
    /// Every event up to here was handled from the log: deliveries of them change nothing.
    floor: Position,
    /// The newest event handled.
    position: Option<Position>,
    /// A newer version serves queries (said once).
    retired: bool,
}

impl<P: Projection, C> fmt::Debug for Guarded<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("projection", &P::NAME)
            .field("floor", &self.floor)
            .finish_non_exhaustive()
    }
}

impl<P: Projection, C: Codec> Guarded<P, C>
where
    P::Store: StreamGuards,
{
    fn new(runner: ProjectionRunner<P, C>) -> Self {
        Self { runner, floor: Position::START, position: None, retired: false }
    }

    /// The runner.
    pub fn runner(&self) -> &ProjectionRunner<P, C> {
        &self.runner
    }

    fn saw(&mut self, position: Position) {
        self.position = Some(self.position.map_or(position, |seen| seen.max(position)));
    }

    fn retired(&mut self) {
        if !self.retired {
            self.retired = true;
            tracing::info!(
                projection = P::NAME,
                version = P::VERSION,
                "a newer version serves queries: this one applies nothing"
            );
        }
    }
}

impl<P: Projection, C: Codec> EventHandler for Guarded<P, C>
where
    P::Store: StreamGuards,
{
    type Error = RunnerError<P>;

    /// Applies what its streams have not applied yet, without a checkpoint: built again when
    /// another consumer applied some of it meanwhile.
    async fn handle(&mut self, events: &[RecordedEvent]) -> Result<(), Self::Error> {
        let handled = |event: &&RecordedEvent| {
            event.position > self.floor && P::Event::NAMES.contains(&event.name.as_str())
        };
        let newest = events.iter().map(|event| event.position).max();
        if events.iter().any(|event| handled(&event)) {
            loop {
                let took = metrics::Stopwatch::start();
                let batch = self.runner.build(events, Some(fresh::<P::Store>)).await?;
                let committed = self.runner.store.commit_batch(batch);
                match super::through::<P, _>(self.runner.breaker.as_ref(), committed).await? {
                    Saved::Moved => {}
                    Saved::Retired => {
                        self.retired();
                        break;
                    }
                    Saved::ByConsumer | Saved::ByHandler => {
                        self.runner.committed(events, took);
                        break;
                    }
                }
            }
        }
        if let Some(newest) = newest {
            self.saw(newest);
        }
        Ok(())
    }

    /// As the runner's own, the guards moving with the checkpoint.
    async fn handle_at(
        &mut self,
        at: Checkpoint<'_>,
        events: &[RecordedEvent],
    ) -> Result<Saved, Self::Error> {
        let took = metrics::Stopwatch::start();
        let batch = self.runner.build(events, Some(fresh::<P::Store>)).await?;
        let committed = self.runner.store.commit(batch, at);
        let saved = super::through::<P, _>(self.runner.breaker.as_ref(), committed).await?;
        if matches!(saved, Saved::ByHandler | Saved::ByConsumer) {
            self.runner.committed(events, took);
            self.floor = at.to;
            self.saw(at.to);
        }
        Ok(saved)
    }

    async fn caught_up(&mut self, at: Position) -> Result<(), Self::Error> {
        self.floor = self.floor.max(at);
        self.saw(at);
        self.runner.caught_up(at).await
    }

    fn is_retryable(&self, error: &Self::Error) -> bool {
        self.runner.is_retryable(error)
    }
}

impl<P: Projection, C: Codec> MessageHandler for Guarded<P, C>
where
    P::Store: StreamGuards,
{
    type Error = RunnerError<P>;

    async fn handle(&mut self, message: &BusMessage) -> Result<(), Self::Error> {
        let event = message.to_event().map_err(|source| ProjectionError::Message {
            projection: P::NAME,
            topic: message.topic.clone(),
            source,
        })?;
        EventHandler::handle(self, std::slice::from_ref(&event)).await
    }

    /// A message that is not an event goes to the dead letters of the bus; a failure that may
    /// pass, or an event with attempts left (the runner parks it after the last), is tried
    /// again and again — the bus never skips an event of the projection; anything else stops.
    fn on_error(&self, error: &Self::Error) -> OnError {
        match error {
            ProjectionError::Message { .. } => OnError::Refuse,
            error if self.runner.is_retryable(error) => OnError::Retry,
            _ => OnError::Stop,
        }
    }

    fn position(&self) -> Option<Position> {
        self.position
    }
}

/// Projection `P` as a service that catches up from the log, then follows the bus: what
/// [`ProjectionRunner::from_bus`] builds; [`StreamGuards`] says how each event is applied once.
///
/// * **From the log** first, as the log-fed runner does: batches after its checkpoint, each
///   committed with it; once at the head, a version that builds beside an older one takes over
///   the queries ([`ReadStore::activate`]).
/// * **Then from the bus**, in consumer group `group` (by default the projection's checkpoint
///   name, so each version reads the topics from their start in a group of its own): deliveries
///   of events the log part handled are acknowledged at once, the others applied unless their
///   stream's version says they were. Several processes share the partitions.
/// * **Failures**: an event that keeps failing is parked after the runner's attempts, with the
///   later events of its stream, as from the log; a read store that fails is retried with the
///   back-off for as long as it runs — the bus never dead-letters the projection's events.
///   Only a message that is not an event goes to the bus's dead letters.
///
/// **Order** holds per stream; the events of different streams arrive in any order, so the
/// handlers must not depend on it (the log-fed runner gives the total order). Its health
/// reports the newest event it handled.
pub struct ProjectionFromBus<P: Projection, C, S, B> {
    runner: Guarded<P, C>,
    events: S,
    bus: B,
    topics: Vec<String>,
    group: String,
    backoff: Backoff,
    clock: Arc<dyn Clock>,
}

impl<P: Projection, C, S, B> fmt::Debug for ProjectionFromBus<P, C, S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionFromBus")
            .field("projection", &P::NAME)
            .field("topics", &self.topics)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl<P: Projection, C: Codec> ProjectionRunner<P, C>
where
    P::Store: StreamGuards,
{
    /// The service that runs it from `events`' log up to the head, then from `topics` on
    /// `bus` (where the relay publishes the events it handles): see [`ProjectionFromBus`].
    pub fn from_bus<S: EventStore, B: EventBus>(
        self,
        events: S,
        bus: B,
        topics: impl IntoIterator<Item = impl Into<String>>,
    ) -> ProjectionFromBus<P, C, S, B> {
        ProjectionFromBus {
            runner: Guarded::new(self),
            events,
            bus,
            topics: topics.into_iter().map(Into::into).collect(),
            group: Self::name(),
            backoff: Backoff::exponential(Duration::from_millis(100))
                .max_delay(Duration::from_secs(5))
                .jitter(0.2)
                .forever(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl<P: Projection, C: Codec, S: EventStore, B: EventBus> ProjectionFromBus<P, C, S, B>
where
    P::Store: StreamGuards,
{
    /// Consumes in consumer group `group` instead of the projection's checkpoint name.
    #[must_use]
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// How failures are retried (100 ms doubling up to 5 s, without a limit, by default).
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Waits on `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The topics it follows.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// Its consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }
}

impl<P: Projection, C: Codec, S: EventStore, B: EventBus> Service for ProjectionFromBus<P, C, S, B>
where
    P::Store: StreamGuards,
{
    fn name(&self) -> String {
        ProjectionRunner::<P, C>::name()
    }

    async fn run(self, mut context: ServiceContext) -> Result<(), BoxError> {
        let Self { runner, events, bus, topics, group, backoff, clock } = self;
        let name = ProjectionRunner::<P, C>::name();
        context.behind(None);
        let checkpoints = runner.runner.store().checkpoints();
        let mut log = LogConsumer::new(name.clone(), events, checkpoints, runner)
            .backoff(backoff)
            .with_clock(Arc::clone(&clock));
        // `false`: asked to stop, or a newer version serves queries and there is nothing for
        // this one to follow.
        if !log.run_until_caught_up(&mut context).await? {
            return Ok(());
        }
        let mut consumer = BusConsumer::new(name, bus, topics, log.into_handler())
            .with_group(group)
            .backoff(backoff)
            .with_clock(clock);
        consumer.run_until_stopped(&mut context).await.map_err(BoxError::from)
    }
}
