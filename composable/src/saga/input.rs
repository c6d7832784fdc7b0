//! A saga's inputs as services: its events from the log or from the bus, and its timers.
//!
//! A [`SagaRunner`] handles one input at a time ([`SagaRunner::handle`], [`SagaRunner::fire`]).
//! What feeds it is a [consumer](crate::consumer): [`SagaEvents`] is the [`EventHandler`] that
//! hands each event to the runner, run by a [`LogConsumer`] ([`from_log`]) or, behind
//! [`Events`], by a [`BusConsumer`] ([`from_bus`]); [`SagaTimers`] fires the due timers on the
//! runner's clock. Each is a [`Service`](crate::service::Service), so they start, stop and
//! report their health like every other long-running part.
//!
//! ```
//! # use composable::{saga, start, step, Dispatch};
//! # use composable::saga::InMemoryTimerStore;
//! # use serde::{Deserialize, Serialize};
//! # #[composable::event(name = "thing.started", version = 1)]
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! # pub struct Started { pub id: String }
//! # #[composable::event(name = "thing.done", version = 1)]
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! # pub struct Done { pub id: String }
//! # #[derive(Default)] pub struct Watch;
//! # #[saga(name = "watch", key = id)]
//! # impl Watch {
//! #     #[start(no_compensation)] fn started(&mut self, _e: &Started) {}
//! #     #[step(end)] fn done(&mut self, _e: &Done) {}
//! # }
//! use std::sync::Arc;
//! use composable::checkpoint::InMemoryCheckpointStore;
//! use composable::dispatch::LocalDispatcher;
//! use composable::saga::{self as sagas, SagaRunner};
//! use composable::{InMemoryEventStore, service};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let store = InMemoryEventStore::new();
//! let runner = Arc::new(SagaRunner::<Watch, _, _, _>::new(
//!     store.clone(),
//!     LocalDispatcher::new(),
//!     InMemoryTimerStore::new(),
//! ));
//! let input = service::spawn(sagas::from_log(&runner, InMemoryCheckpointStore::new()));
//! let timers = service::spawn(sagas::SagaTimers::new(Arc::clone(&runner)));
//! input.stop().await?;
//! timers.stop().await?;
//! # Ok::<(), composable::service::ServiceError>(())
//! # }).unwrap();
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::error::SagaError;
use super::runner::SagaRunner;
use super::timer::TimerStore;
use super::{Saga, category};
use crate::BoxError;
use crate::backoff::{Backoff, Failures};
use crate::bus::EventBus;
use crate::checkpoint::{CheckpointStore, SharedCheckpoints};
use crate::codec::Codec;
use crate::consumer::{BusConsumer, EventHandler, Events, LogConsumer};
use crate::dispatch::Dispatcher;
use crate::envelope::RecordedEvent;
use crate::event_store::EventStore;
use crate::service::{Service, ServiceContext};
use crate::stream::Position;

/// Hands the events of a batch to a saga's runner: the saga's [`EventHandler`].
///
/// Events of one flow (one correlation id: a saga instance and everything its commands cause)
/// are handled in log order, one after the other; different flows are handled concurrently, up
/// to [`CONCURRENT_FLOWS`] at a time, so that a step waiting on a command's reply does not hold
/// up every other checkout. Should two flows touch one instance, its records are still appended
/// at the version each read, so the second gets a conflict and the batch is handled again.
///
/// A failure fails the batch; the consumer hands it over again later, and the instances ignore
/// what they recorded already. Errors retrying cannot fix — an event or a record that does not
/// decode, a key that is no stream id, a step the saga no longer has — are not retried.
pub struct SagaEvents<G: Saga, S, D, T, C>(pub Arc<SagaRunner<G, S, D, T, C>>);

/// How many flows [`SagaEvents`] handles at once.
pub const CONCURRENT_FLOWS: usize = 16;

impl<G: Saga, S, D, T, C> fmt::Debug for SagaEvents<G, S, D, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SagaEvents").field(&G::NAME).finish()
    }
}

impl<G, S, D, T, C> EventHandler for SagaEvents<G, S, D, T, C>
where
    G: Saga,
    S: EventStore,
    D: Dispatcher,
    T: TimerStore,
    C: Codec,
{
    type Error = SagaError;

    async fn handle(&mut self, events: &[RecordedEvent]) -> Result<(), SagaError> {
        // Each flow's events, as indexes into the batch, in log order.
        let mut flows: Vec<(uuid::Uuid, Vec<usize>)> = Vec::new();
        for (index, event) in events.iter().enumerate() {
            let flow = event.metadata.correlation_id;
            match flows.iter_mut().find(|(id, _)| *id == flow) {
                Some((_, indexes)) => indexes.push(index),
                None => flows.push((flow, vec![index])),
            }
        }
        let runner = &self.0;
        futures::stream::iter(flows.into_iter().map(|(_, indexes)| indexes))
            .map(|indexes: Vec<usize>| async move {
                for index in indexes {
                    runner.handle(&events[index]).await?;
                }
                Ok::<(), SagaError>(())
            })
            .buffer_unordered(CONCURRENT_FLOWS)
            .try_collect::<()>()
            .await
    }

    fn is_retryable(&self, error: &SagaError) -> bool {
        !matches!(
            error,
            SagaError::Decode(_)
                | SagaError::Encode { .. }
                | SagaError::InvalidKey { .. }
                | SagaError::UnknownStep { .. }
        )
    }
}

/// A saga's input from the log: what [`from_log`] builds.
pub type SagaLogInput<G, S, D, T, C, K> = LogConsumer<Arc<S>, K, SagaEvents<G, S, D, T, C>>;

/// A saga's input from the bus: what [`from_bus`] builds.
pub type SagaBusInput<G, S, D, T, C, B> = BusConsumer<B, Events<SagaEvents<G, S, D, T, C>>>;

/// The saga's events from the event store's log, after the checkpoint
/// [`SagaRunner::checkpoint_name`] in `checkpoints`: a [`LogConsumer`] of [`SagaEvents`].
///
/// Run either this service or the runner's own [`poll`](SagaRunner::poll) /
/// [`run_until_idle`](SagaRunner::run_until_idle), not both on one checkpoint.
pub fn from_log<G, S, D, T, C, K>(
    runner: &Arc<SagaRunner<G, S, D, T, C>>,
    checkpoints: K,
) -> SagaLogInput<G, S, D, T, C, K>
where
    G: Saga,
    S: EventStore,
    D: Dispatcher,
    T: TimerStore,
    C: Codec,
    K: CheckpointStore,
{
    LogConsumer::new(
        category(G::NAME),
        runner.shared_store(),
        checkpoints,
        SagaEvents(Arc::clone(runner)),
    )
}

/// The saga's events from `topics` on the bus (where the relay published them), in consumer
/// group `group`: a [`BusConsumer`] of [`SagaEvents`]. Several processes in one group share the
/// topics' partitions.
///
/// **Order.** The bus keeps the order of each stream's events, not the order across streams:
/// an instance's start event and its next step's event live in different streams (the order,
/// the payment) and so in different partitions. In normal operation the next step is caused by
/// the saga's own command and comes later; but after a crash, the start event is delivered
/// again and may arrive after the step's event, which the saga ignores (its instance has not
/// started), and the instance then waits for its step's timeout. Prefer [`from_log`], whose
/// order is total, unless the saga's steps tolerate that (the host's sagas read the log).
pub fn from_bus<G, S, D, T, C, B>(
    runner: &Arc<SagaRunner<G, S, D, T, C>>,
    bus: B,
    group: impl Into<String>,
    topics: impl IntoIterator<Item = impl Into<String>>,
) -> SagaBusInput<G, S, D, T, C, B>
where
    G: Saga,
    S: EventStore,
    D: Dispatcher,
    T: TimerStore,
    C: Codec,
    B: EventBus,
{
    BusConsumer::new(category(G::NAME), bus, topics, Events(SagaEvents(Arc::clone(runner))))
        .with_group(group)
}

/// Fires a saga's due timers, looking every `every` on the runner's clock: a [`Service`].
/// Several processes may run it; each timer is claimed by one of them at a time (its lease).
///
/// With [`wait_for_input`](Self::wait_for_input) a timeout waits until the saga's input from the
/// log has handled every event committed before it fell due, so that an input running behind
/// never lets a timeout overtake the event that would have cancelled it.
pub struct SagaTimers<G: Saga, S, D, T, C> {
    runner: Arc<SagaRunner<G, S, D, T, C>>,
    every: Duration,
    backoff: Backoff,
    input: Option<InputWatermark>,
}

impl<G: Saga, S, D, T, C> fmt::Debug for SagaTimers<G, S, D, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaTimers")
            .field("saga", &G::NAME)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl<G, S, D, T, C> SagaTimers<G, S, D, T, C>
where
    G: Saga,
    S: EventStore,
    D: Dispatcher,
    T: TimerStore,
    C: Codec,
{
    /// Fires `runner`'s due timers every second; after a failure it looks again after a back-off
    /// from 100 ms doubling up to the interval.
    pub fn new(runner: Arc<SagaRunner<G, S, D, T, C>>) -> Self {
        Self::every(runner, Duration::from_secs(1))
    }

    /// Fires `runner`'s due timers every `every` (at least every millisecond).
    pub fn every(runner: Arc<SagaRunner<G, S, D, T, C>>, every: Duration) -> Self {
        let every = every.max(Duration::from_millis(1));
        let backoff = Backoff::exponential(Duration::from_millis(100)).max_delay(every);
        Self { runner, every, backoff, input: None }
    }

    /// Fires the timers due now, or those due by the time the input has caught up with.
    async fn pass(&mut self) -> Result<(), SagaError> {
        let now = self.runner.clock().now();
        let due_by = match &mut self.input {
            Some(input) => input.reached(self.runner.store(), now).await?,
            None => Some(now),
        };
        if let Some(due_by) = due_by {
            self.runner.fire_due_by(due_by).await?;
        }
        Ok(())
    }
}

impl<G: Saga, S, D, T, C> SagaTimers<G, S, D, T, C> {
    /// How a failed pass is retried (by default from 100 ms doubling up to the interval, for
    /// ever); once `backoff`'s attempts are spent, the service stops with the error.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Holds each timeout back until the saga's input from the log ([`from_log`], keeping its
    /// checkpoint in `checkpoints`) has handled every event committed before the timeout fell
    /// due: the event that completes a step in time is never overtaken by the step's timeout
    /// because the input was running behind (a slow or restarted process, a backlog). The input
    /// may run in another process; its checkpoint is what tells how far it got.
    ///
    /// Without it (the default) timers fire on the clock alone, which suits an input that is
    /// not the log's: [`from_bus`] has no position to wait for.
    #[must_use]
    pub fn wait_for_input(mut self, checkpoints: impl CheckpointStore) -> Self {
        self.input =
            Some(InputWatermark::new(category(G::NAME), SharedCheckpoints::new(checkpoints)));
        self
    }
}

/// How far a saga's input from the log has got in time: the head of the log is noted at every
/// pass of the timers, and once the input's checkpoint reaches a noted head, every event
/// committed before that pass has been handled.
#[derive(Debug)]
struct InputWatermark {
    /// The input's checkpoint name.
    name: String,
    checkpoints: SharedCheckpoints,
    /// The passes whose head the input has not reached: when, and the head then.
    marks: VecDeque<(DateTime<Utc>, Position)>,
    /// The time of the latest pass whose head the input has reached.
    reached: Option<DateTime<Utc>>,
}

impl InputWatermark {
    /// The most passes remembered while the input is behind; beyond it the newest is moved on,
    /// which only holds timeouts back longer.
    const MARKS: usize = 4096;

    fn new(name: String, checkpoints: SharedCheckpoints) -> Self {
        Self { name, checkpoints, marks: VecDeque::new(), reached: None }
    }

    /// Notes the head at `now` and returns the time by which the input has handled every
    /// committed event; `None` until it reaches the first head noted.
    async fn reached(
        &mut self,
        store: &impl EventStore,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, SagaError> {
        let head = store.head().await.map_err(SagaError::Store)?;
        let full = self.marks.len() >= Self::MARKS;
        match self.marks.back_mut() {
            Some(last) if last.1 == head || full => *last = (now, head),
            _ => self.marks.push_back((now, head)),
        }
        let checkpoint = self.checkpoints.load(&self.name).await?;
        while let Some(&(at, head)) = self.marks.front()
            && head <= checkpoint
        {
            self.reached = Some(at);
            self.marks.pop_front();
        }
        Ok(self.reached)
    }
}

impl<G, S, D, T, C> Service for SagaTimers<G, S, D, T, C>
where
    G: Saga,
    S: EventStore,
    D: Dispatcher,
    T: TimerStore,
    C: Codec,
{
    fn name(&self) -> String {
        format!("{}.timers", category(G::NAME))
    }

    async fn run(mut self, mut context: ServiceContext) -> Result<(), BoxError> {
        let mut failures = Failures::new(self.backoff);
        let runner = Arc::clone(&self.runner);
        let clock = runner.clock();
        while !context.stop_requested() {
            let started = clock.now();
            let wait = match self.pass().await {
                Ok(_) => {
                    failures.succeeded();
                    context.caught_up(None);
                    // The next pass is due `every` after this one began: when the clock moved
                    // on while it ran (a test clock advanced past a deadline), right away.
                    let took = (clock.now() - started).to_std().unwrap_or_default();
                    self.every.saturating_sub(took)
                }
                Err(error) => {
                    let Some(wait) = failures.failed() else {
                        return Err(error.into());
                    };
                    tracing::warn!(saga = G::NAME, %error, retry_in = ?wait, "firing due timers failed");
                    context.behind(None);
                    wait
                }
            };
            if wait.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                biased;
                () = context.stopped() => {}
                () = clock.sleep(wait) => {}
            }
        }
        Ok(())
    }
}
